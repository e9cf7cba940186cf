//! The proxy listener's request path, as phases around one `CallCtx`:
//! route → authenticate → read the body → build the upstream request → send →
//! wrap the response body in the meter → respond.
//!
//! `handle` is the outer function: it turns any `ProxyError` into the provider's own
//! error JSON and makes sure an authenticated call always leaves one event.

pub mod auth;
pub mod client;
pub mod error;
pub mod headers;
pub mod meter;
pub mod request;
pub mod route;
pub mod server;
mod upstream_h2;

use std::borrow::Cow;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Response, Uri, Version};
use http_body_util::{BodyExt, Either, Full, Limited};

use self::auth::{Authed, Mode, Slot};
use self::error::ProxyError;
use self::meter::{CallCtx, Meter, MeteredBody};
use self::request::RequestInfo;
use crate::providers::openai::UsageChunkFilter;
use crate::providers::{Dialect, Endpoint, Provider};
use crate::server::RequestBody;
use crate::state::AppState;

pub type ProxyBody = Either<MeteredBody, Full<Bytes>>;

static REQUEST_ID_HEADERS: [header::HeaderName; 3] = [
    header::HeaderName::from_static("x-request-id"),
    header::HeaderName::from_static("request-id"),
    header::HeaderName::from_static("apim-request-id"),
];

/// Serves one proxied request. Never fails: errors become provider-shaped responses.
pub async fn handle(state: AppState, req: Request<RequestBody>) -> Response<ProxyBody> {
    let started = Instant::now();
    let ts_ms = crate::time::now_ms();
    let mut dialect = Dialect::OpenAi;
    let mut pending = PendingCall(None);
    match handle_inner(&state, req, started, ts_ms, &mut dialect, &mut pending.0).await {
        Ok(resp) => resp,
        Err(e) => {
            let status = e.status();
            match &e {
                ProxyError::Internal | ProxyError::Upstream(_) | ProxyError::UpstreamTimeout(_) => {
                    tracing::warn!(error = %e, status = status.as_u16(), "proxy error")
                }
                _ => tracing::debug!(error = %e, status = status.as_u16(), "request refused"),
            }
            match pending.0.take() {
                // Authenticated: the call is an event even though it went nowhere.
                Some(ctx) => meter::record_without_body(ctx, status.as_u16()),
                None => state.metrics.record_rejected(status.as_u16()),
            }
            e.to_response(dialect).map(|b| Either::Right(Full::new(b)))
        }
    }
}

/// An authenticated call until the meter takes it over. If the client goes away while
/// the proxy still waits (for the request body or the upstream's headers), hyper drops
/// the handler's future, and with it this guard: the call is recorded as `cancelled`.
struct PendingCall(Option<CallCtx>);

impl Drop for PendingCall {
    fn drop(&mut self) {
        if let Some(ctx) = self.0.take() {
            meter::record_cancelled_before_answer(ctx);
        }
    }
}

async fn handle_inner(
    state: &AppState,
    req: Request<RequestBody>,
    started: Instant,
    ts_ms: i64,
    dialect: &mut Dialect,
    ctx_slot: &mut Option<CallCtx>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let (mut parts, body) = req.into_parts();

    // Route: the upstream comes from the table and nothing else.
    let path = parts.uri.path();
    let (provider, rest) = route::split(path).ok_or(ProxyError::UnknownRoute)?;
    // Errors take the shape of the endpoint called: `/gemini/v1beta/openai/...` is
    // used with OpenAI's SDK and gets OpenAI's error JSON.
    let endpoint = Endpoint::from_path(rest);
    *dialect = endpoint.dialect(provider);
    if route::has_dot_segment(rest) {
        return Err(ProxyError::DotSegment);
    }
    let base = match state.config.upstreams.get(&provider) {
        Some(b) => b,
        None if provider == Provider::Azure => return Err(ProxyError::AzureNotConfigured),
        None => return Err(ProxyError::UnknownRoute),
    };
    if parts.method == http::Method::CONNECT {
        return Err(ProxyError::BadMethod(parts.method.to_string()));
    }
    // WebSocket and h2c upgrades would turn the call into a tunnel nobody meters.
    if let Some(u) = parts.headers.get(header::UPGRADE) {
        let shown = String::from_utf8_lossy(u.as_bytes())
            .chars()
            .take(32)
            .collect();
        return Err(ProxyError::UpgradeRefused(shown));
    }

    // Authenticate: a memory lookup.
    let Authed { owner, mode } =
        auth::authenticate(&parts.headers, parts.uri.query(), &state.keys)?;
    let ctx = ctx_slot.insert(CallCtx {
        state: state.clone(),
        started,
        ts_ms,
        id: state.next_event_id(ts_ms),
        provider,
        endpoint,
        request_model: None,
        customer_id: None,
        owner,
        billable: parts.method == http::Method::POST,
    });
    // Checked once the call has its context, so a refused id is still one event.
    let header_customer = match parts.headers.get(&headers::X_CUSTOMER_ID) {
        Some(v) => {
            let c = v.to_str().map_err(|_| {
                ProxyError::BadCustomerId("only printable ASCII characters are allowed")
            })?;
            request::check_customer_id(c).map_err(ProxyError::BadCustomerId)?;
            Some(c.to_owned())
        }
        None => None,
    };

    // Body: buffered up to the limit (requests are small JSON), refused early by length.
    let limit = state.config.max_body_bytes;
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ProxyError::BodyTooLarge(limit));
    }
    // The server's body type enforces the idle timeout and the buffered-bytes budget.
    let body = match Limited::new(body, limit).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) => return Err(ProxyError::from_body_error(e, limit)),
    };
    let mut info = RequestInfo::parse(&body);
    ctx.request_model = info.model.take();
    ctx.customer_id = header_customer.or_else(|| {
        info.body_customer
            .take()
            .filter(|c| request::check_customer_id(c).is_ok())
    });

    // include_usage injection for OpenAI-style streams that did not ask for usage.
    let inject = state.config.inject_stream_usage
        && info.stream
        && info.include_usage != Some(true)
        && matches!(endpoint, Endpoint::ChatCompletions | Endpoint::Completions)
        && injects_usage(provider);
    let (body, filter) = match inject
        .then(|| request::inject_include_usage(&body, &info))
        .flatten()
    {
        Some(b) => (Bytes::from(b), Some(UsageChunkFilter::new())),
        None => (body, None),
    };

    // Upstream request.
    let query = parts.uri.query().map(|q| match mode {
        Mode::Managed(Slot::QueryKey) => Cow::Owned(auth::strip_query_key(q)),
        _ => Cow::Borrowed(q),
    });
    let mut pq = String::with_capacity(
        base.path.len() + rest.len() + 1 + query.as_ref().map_or(0, |q| q.len()),
    );
    pq.push_str(&base.path);
    pq.push_str(rest);
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        pq.push('?');
        pq.push_str(&q);
    }
    // Origin form: the pool adds scheme and authority only for h2, which needs them.
    let uri = PathAndQuery::try_from(pq)
        .map(Uri::from)
        .map_err(|_| ProxyError::BodyRead("invalid request path".into()))?;
    headers::clean_request_headers(&mut parts.headers, body.len());
    if let Mode::Managed(slot) = mode {
        swap_provider_key(state, ctx, &mut parts.headers, slot)?;
    }
    parts.uri = uri;
    // The pool picks h1 or h2 by ALPN, whatever version the client spoke.
    parts.version = Version::HTTP_11;
    let upstream_req = Request::from_parts(parts, Full::new(body));

    let sent_at = tokio::time::Instant::now();
    let overhead_before = sent_at.into_std().saturating_duration_since(started);
    // The deadline from the reading just taken rather than a clock read of its own.
    let resp = match tokio::time::timeout_at(
        sent_at + state.config.first_byte_timeout,
        state.upstream.here().send(base, upstream_req),
    )
    .await
    {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return Err(ProxyError::Upstream(e.describe())),
        Err(_) => {
            return Err(ProxyError::UpstreamTimeout(
                state.config.first_byte_timeout.as_millis(),
            ));
        }
    };
    let headers_at = tokio::time::Instant::now();

    let (mut rparts, rbody) = resp.into_parts();
    headers::strip_hop_by_hop(&mut rparts.headers);
    let streamed = rparts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
    let filter = if streamed { filter } else { None };
    if filter.is_some() {
        rparts.headers.remove(header::CONTENT_LENGTH);
    }
    let request_id = REQUEST_ID_HEADERS
        .iter()
        .find_map(|h| rparts.headers.get(h))
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let encoding = rparts
        .headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok());
    let ctx = ctx_slot.take().ok_or(ProxyError::Internal)?;
    let meter = Meter::new(ctx, rparts.status.as_u16(), streamed, encoding, request_id);
    let done = tokio::time::Instant::now();
    let body = MeteredBody::new(rbody, meter, filter, state.config.stream_idle_timeout, done);
    let overhead = overhead_before + done.saturating_duration_since(headers_at);
    state
        .metrics
        .record_overhead_us(overhead.as_micros() as u64);
    Ok(Response::from_parts(rparts, Either::Left(body)))
}

/// Providers whose OpenAI-style streams carry usage only when asked
/// (`stream_options.include_usage`), the OpenAI-compatible endpoints of Anthropic and
/// Gemini included. Mistral and Groq send it anyway; OpenRouter ignores the option.
fn injects_usage(p: Provider) -> bool {
    !matches!(p, Provider::Mistral | Provider::Groq | Provider::OpenRouter)
}

/// Managed mode: removes the `llmo_sk_` key and attaches the account's provider key in
/// the slot that provider's API reads.
fn swap_provider_key(
    state: &AppState,
    ctx: &CallCtx,
    h: &mut http::HeaderMap,
    slot: Slot,
) -> Result<(), ProxyError> {
    match slot {
        Slot::Authorization => drop(h.remove(header::AUTHORIZATION)),
        Slot::XApiKey => drop(h.remove(&auth::X_API_KEY)),
        Slot::ApiKey => drop(h.remove(&auth::API_KEY)),
        Slot::XGoogApiKey => drop(h.remove(&auth::X_GOOG_API_KEY)),
        Slot::QueryKey => {}
    }
    let key = state
        .provider_keys
        .get(&ctx.owner.user_id, ctx.provider)
        .ok_or(ProxyError::NoProviderKey(ctx.provider.as_str()))?;
    let bad = |_| ProxyError::Internal;
    match ctx.provider {
        Provider::Anthropic => {
            h.insert(&auth::X_API_KEY, HeaderValue::from_str(&key).map_err(bad)?);
        }
        Provider::Gemini => {
            h.insert(
                &auth::X_GOOG_API_KEY,
                HeaderValue::from_str(&key).map_err(bad)?,
            );
        }
        Provider::Azure => {
            h.insert(&auth::API_KEY, HeaderValue::from_str(&key).map_err(bad)?);
        }
        _ => {
            let mut v = HeaderValue::from_str(&format!("Bearer {key}")).map_err(bad)?;
            v.set_sensitive(true);
            h.insert(header::AUTHORIZATION, v);
        }
    }
    Ok(())
}
