//! `ApiError`: every admin API failure, rendered in one place as
//! `{"error":{"code","message"}}` with its status (DESIGN.md, "Admin API").
//!
//! Client mistakes get a 4xx whose message says what to fix; our own faults get a
//! 500 with a generic message, and the detail goes to the log here, once.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::accounts::AccountError;
use crate::auth::jwt::JwtError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid JSON body: {0}")]
    InvalidJson(String),
    #[error("send the body as JSON with Content-Type: application/json")]
    UnsupportedMediaType,
    #[error("request body too large (limit {0} bytes)")]
    PayloadTooLarge(usize),
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    #[error("invalid path: {0}")]
    InvalidPath(String),
    #[error("email is not valid: use the form name@example.com")]
    InvalidEmail,
    #[error("password must be at least 8 characters")]
    WeakPassword,
    #[error("password must be at most 1024 bytes")]
    PasswordTooLong,
    #[error("name must be at most 100 characters, without control characters")]
    InvalidName,
    #[error("unknown provider {0:?}; known providers: {list}", list = known_providers())]
    UnknownProvider(String),
    #[error("invalid provider key: {0}")]
    InvalidProviderKey(&'static str),
    #[error("an account with this email already exists: log in instead")]
    EmailTaken,
    #[error("invalid email or password")]
    InvalidCredentials,
    #[error("current password is wrong")]
    WrongPassword,
    #[error("{0}")]
    Unauthenticated(&'static str),
    #[error(
        "cross-origin request refused: a cookie-authenticated change must come from the dashboard's own origin (send Authorization: Bearer from scripts)"
    )]
    CrossOrigin,
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("method not allowed on this path")]
    MethodNotAllowed,
    #[error("too many attempts from your address: retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("the server is busy: retry in a moment")]
    Busy,
    #[error("the database is recovering from an I/O error: retry in a moment")]
    Unavailable,
    #[error("internal error")]
    Internal(String),
}

fn known_providers() -> String {
    crate::providers::Provider::ALL
        .iter()
        .map(|p| p.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl ApiError {
    /// Wraps an unexpected failure; the detail is logged when it becomes a response.
    pub fn internal(e: impl std::fmt::Display) -> ApiError {
        ApiError::Internal(e.to_string())
    }

    /// Status and stable machine-readable code. Exhaustive: a new variant needs a decision.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        use ApiError::*;
        match self {
            InvalidJson(_) => (StatusCode::BAD_REQUEST, "invalid_json"),
            UnsupportedMediaType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            InvalidQuery(_) => (StatusCode::BAD_REQUEST, "invalid_query"),
            InvalidPath(_) => (StatusCode::BAD_REQUEST, "invalid_path"),
            InvalidEmail => (StatusCode::BAD_REQUEST, "invalid_email"),
            WeakPassword => (StatusCode::BAD_REQUEST, "weak_password"),
            PasswordTooLong => (StatusCode::BAD_REQUEST, "password_too_long"),
            InvalidName => (StatusCode::BAD_REQUEST, "invalid_name"),
            UnknownProvider(_) => (StatusCode::BAD_REQUEST, "unknown_provider"),
            InvalidProviderKey(_) => (StatusCode::BAD_REQUEST, "invalid_provider_key"),
            EmailTaken => (StatusCode::CONFLICT, "email_taken"),
            InvalidCredentials => (StatusCode::UNAUTHORIZED, "invalid_credentials"),
            WrongPassword => (StatusCode::FORBIDDEN, "wrong_password"),
            Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            CrossOrigin => (StatusCode::FORBIDDEN, "cross_origin"),
            NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            Busy => (StatusCode::TOO_MANY_REQUESTS, "busy"),
            Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            ApiError::RateLimited { retry_after_secs } => Some(*retry_after_secs),
            ApiError::Busy | ApiError::Unavailable => Some(1),
            _ => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let ApiError::Internal(detail) = &self {
            tracing::error!(error = %detail, "admin request failed");
        }
        let body = serde_json::json!({
            "error": { "code": code, "message": self.to_string() }
        });
        let mut resp = (status, Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs() {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"llmobserve\""),
            );
        }
        resp
    }
}

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::BadEmail => ApiError::InvalidEmail,
            AccountError::WeakPassword => ApiError::WeakPassword,
            AccountError::EmailTaken => ApiError::EmailTaken,
            AccountError::NotFound => ApiError::NotFound("resource"),
            AccountError::Store(e) => e.into(),
            AccountError::Hash => ApiError::internal("password hashing failed"),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::NotFound("resource"),
            StoreError::EmailTaken => ApiError::EmailTaken,
            StoreError::Reopening => ApiError::Unavailable,
            StoreError::Db(_) | StoreError::Corrupt(_) => ApiError::internal(e),
        }
    }
}

impl From<JwtError> for ApiError {
    fn from(e: JwtError) -> Self {
        match e {
            JwtError::Expired => ApiError::Unauthenticated("session expired: log in again"),
            JwtError::Invalid => ApiError::Unauthenticated("invalid session token: log in again"),
            JwtError::Sign => ApiError::internal(e),
        }
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        ApiError::internal(format!("blocking task failed: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn renders_code_message_and_retry_after() {
        let resp = ApiError::RateLimited {
            retry_after_secs: 7,
        }
        .into_response();
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "7");
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "rate_limited");
        assert!(v["error"]["message"].as_str().unwrap().contains("7 s"));
    }

    #[tokio::test]
    async fn internal_details_stay_in_the_log() {
        let resp = ApiError::internal("disk on fire at /secret/path").into_response();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(!text.contains("secret"));
        assert!(text.contains("\"internal\""));
    }
}
