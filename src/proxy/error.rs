//! Errors the proxy itself answers, rendered in the calling provider's own error shape
//! (DESIGN.md, "Authenticating a request"; PROVIDERS.md §8) so SDKs surface them.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use crate::auth::api_key::KeyFormatError;
use crate::providers::Dialect;
use crate::server::BodyError;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error(
        "unknown route: the first path segment must name a provider (v1, openai, anthropic, gemini, groq, mistral, deepseek, together, openrouter, xai, fireworks, azure)"
    )]
    UnknownRoute,
    #[error(
        "Azure OpenAI is not configured: set LLMO_AZURE_BASE_URL to your resource, e.g. https://NAME.openai.azure.com"
    )]
    AzureNotConfigured,
    #[error("path segments '.' and '..' are not allowed")]
    DotSegment,
    #[error(
        "missing LLMObserve key: send X-LLMObserve-Key: llmo_sk_..., or use your llmo_sk_ key as the provider API key"
    )]
    MissingKey,
    #[error("malformed LLMObserve key: {0}")]
    MalformedKey(KeyFormatError),
    #[error("unknown or revoked LLMObserve key")]
    UnknownKey,
    #[error(
        "no {0} provider key is stored for this account: add it in the dashboard under Settings, or send your own provider key with X-LLMObserve-Key (pass-through mode)"
    )]
    NoProviderKey(&'static str),
    #[error("invalid X-Customer-Id: {0}")]
    BadCustomerId(&'static str),
    #[error("request body is larger than the proxy's limit of {0} bytes")]
    BodyTooLarge(usize),
    #[error("could not read the request body: {0}")]
    BodyRead(String),
    #[error("the request body stalled: no bytes arrived for {0} ms")]
    BodyTimeout(u128),
    #[error("the proxy is holding too many request bytes for other calls right now; retry shortly")]
    Busy,
    #[error("method {0} is not supported by the proxy")]
    BadMethod(String),
    #[error(
        "protocol upgrades (Upgrade: {0}) are not supported by the proxy: send plain HTTP requests"
    )]
    UpgradeRefused(String),
    #[error("upstream did not answer within {0} ms")]
    UpstreamTimeout(u128),
    #[error("upstream unreachable: {0}")]
    Upstream(String),
    #[error("internal proxy error")]
    Internal,
}

impl ProxyError {
    /// Why reading a request body (through `Limited`, over the server's
    /// [`RequestBody`](crate::server::RequestBody)) failed, as the client should hear it.
    pub fn from_body_error(
        e: Box<dyn std::error::Error + Send + Sync>,
        limit: usize,
    ) -> ProxyError {
        if e.is::<http_body_util::LengthLimitError>() {
            return ProxyError::BodyTooLarge(limit);
        }
        match e.downcast_ref::<BodyError>() {
            Some(BodyError::Idle(d)) => ProxyError::BodyTimeout(d.as_millis()),
            Some(BodyError::Busy) => ProxyError::Busy,
            _ => ProxyError::BodyRead(e.to_string()),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::UnknownRoute | ProxyError::AzureNotConfigured => StatusCode::NOT_FOUND,
            ProxyError::DotSegment
            | ProxyError::BadCustomerId(_)
            | ProxyError::BodyRead(_)
            | ProxyError::UpgradeRefused(_) => StatusCode::BAD_REQUEST,
            ProxyError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ProxyError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::MissingKey
            | ProxyError::MalformedKey(_)
            | ProxyError::UnknownKey
            | ProxyError::NoProviderKey(_) => StatusCode::UNAUTHORIZED,
            ProxyError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::BadMethod(_) => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ProxyError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// OpenAI-style `code` and `type`, Anthropic `error.type`, Gemini `status`.
    fn codes(&self) -> (&'static str, &'static str, &'static str, &'static str) {
        // (openai type, openai code, anthropic type, gemini status)
        match self {
            ProxyError::UnknownRoute | ProxyError::AzureNotConfigured => (
                "invalid_request_error",
                "not_found",
                "not_found_error",
                "NOT_FOUND",
            ),
            ProxyError::DotSegment
            | ProxyError::BodyRead(_)
            | ProxyError::BadCustomerId(_)
            | ProxyError::UpgradeRefused(_) => (
                "invalid_request_error",
                "invalid_request",
                "invalid_request_error",
                "INVALID_ARGUMENT",
            ),
            ProxyError::BodyTimeout(_) => (
                "invalid_request_error",
                "request_timeout",
                "invalid_request_error",
                "DEADLINE_EXCEEDED",
            ),
            ProxyError::Busy => (
                "server_error",
                "overloaded",
                "overloaded_error",
                "UNAVAILABLE",
            ),
            ProxyError::MissingKey
            | ProxyError::MalformedKey(_)
            | ProxyError::UnknownKey
            | ProxyError::NoProviderKey(_) => (
                "invalid_request_error",
                "invalid_api_key",
                "authentication_error",
                "UNAUTHENTICATED",
            ),
            ProxyError::BodyTooLarge(_) => (
                "invalid_request_error",
                "request_too_large",
                "request_too_large",
                "INVALID_ARGUMENT",
            ),
            ProxyError::BadMethod(_) => (
                "invalid_request_error",
                "method_not_allowed",
                "invalid_request_error",
                "INVALID_ARGUMENT",
            ),
            ProxyError::UpstreamTimeout(_) => (
                "server_error",
                "upstream_timeout",
                "timeout_error",
                "DEADLINE_EXCEEDED",
            ),
            ProxyError::Upstream(_) => (
                "server_error",
                "upstream_unreachable",
                "api_error",
                "UNAVAILABLE",
            ),
            ProxyError::Internal => ("server_error", "internal_error", "api_error", "INTERNAL"),
        }
    }

    /// The error as the provider's SDKs expect it.
    pub fn to_response(&self, dialect: Dialect) -> Response<Bytes> {
        let status = self.status();
        let message = self.to_string();
        let (oa_type, oa_code, an_type, g_status) = self.codes();
        let body = match dialect {
            Dialect::OpenAi => serde_json::json!({
                "error": {"message": message, "type": oa_type, "param": null, "code": oa_code}
            }),
            Dialect::Anthropic => serde_json::json!({
                "type": "error", "error": {"type": an_type, "message": message}
            }),
            Dialect::Gemini => serde_json::json!({
                "error": {"code": status.as_u16(), "message": message, "status": g_status}
            }),
        };
        let mut resp = Response::new(Bytes::from(body.to_string()));
        *resp.status_mut() = status;
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let r = ProxyError::UnknownKey.to_response(Dialect::OpenAi);
        assert_eq!(r.status(), 401);
        let v: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
        assert_eq!(v["error"]["code"], "invalid_api_key");
        assert!(v["error"]["param"].is_null());

        let r = ProxyError::UnknownKey.to_response(Dialect::Anthropic);
        let v: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "authentication_error");

        let r = ProxyError::UnknownKey.to_response(Dialect::Gemini);
        let v: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
        assert_eq!(v["error"]["code"], 401);
        assert_eq!(v["error"]["status"], "UNAUTHENTICATED");

        assert_eq!(ProxyError::BodyTooLarge(1).status(), 413);
    }

    #[test]
    fn stalled_and_busy_bodies_map_to_408_and_503() {
        let idle = ProxyError::from_body_error(
            Box::new(BodyError::Idle(std::time::Duration::from_millis(250))),
            10,
        );
        assert_eq!(idle.status(), 408);
        assert!(idle.to_string().contains("250 ms"));
        let busy = ProxyError::from_body_error(Box::new(BodyError::Busy), 10);
        assert_eq!(busy.status(), 503);
        let r = busy.to_response(Dialect::Anthropic);
        let v: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
        assert_eq!(v["error"]["type"], "overloaded_error");
    }

    #[tokio::test]
    async fn a_body_over_the_limit_maps_to_413() {
        use http_body_util::{BodyExt, Full, Limited};
        let e = Limited::new(Full::new(Bytes::from_static(b"0123456789ab")), 10)
            .collect()
            .await
            .unwrap_err();
        assert_eq!(ProxyError::from_body_error(e, 10).status(), 413);
    }
}
