//! axum extractors for the admin API: [`AuthUser`] (the session), and JSON, query and
//! path extractors whose rejections are [`ApiError`]s, so every failure has the same
//! `{"error":{..}}` shape.
//!
//! A session arrives either as `Authorization: Bearer <jwt>` (scripts) or as the
//! `llmo_session` cookie (the dashboard). A cookie is an ambient credential a
//! browser attaches to cross-site requests too, so a state-changing request that is
//! authenticated by it must also show it comes from the dashboard's own origin
//! (`Sec-Fetch-Site: same-origin`, or an `Origin` equal to ours or to an opted-in
//! `--cors-origins` entry); otherwise `403 cross_origin`.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, Method, StatusCode, Uri, header};
use serde::de::DeserializeOwned;

use super::AdminState;
use super::error::ApiError;
use crate::store::model::User;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "llmo_session";
/// Largest JSON body the admin API reads (also the router's `DefaultBodyLimit`).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

static SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

/// The signed-in account of a request.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub user: User,
    /// True when the session came from the cookie (the origin check applied).
    pub via_cookie: bool,
}

impl FromRequestParts<AdminState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AdminState,
    ) -> Result<AuthUser, ApiError> {
        let (token, via_cookie) = session_token(&parts.headers)?;
        if via_cookie && changes_state(&parts.method) {
            check_origin(&parts.headers, &parts.uri, state)?;
        }
        let claims = state.jwt.verify(token)?;
        if state.revoked.contains(&claims.jti) {
            return Err(ApiError::Unauthenticated(
                "session ended (logged out): log in again",
            ));
        }
        let store = state.app.store.clone();
        let user_id = claims.sub.clone();
        let user = tokio::task::spawn_blocking(move || store.user(&user_id))
            .await??
            .ok_or(ApiError::Unauthenticated(
                "this session's account no longer exists",
            ))?;
        if claims.generation != user.sessions_valid_after_ms {
            return Err(ApiError::Unauthenticated(
                "session ended (password changed): log in again",
            ));
        }
        Ok(AuthUser { user, via_cookie })
    }
}

fn changes_state(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The session token and whether it came from the cookie. A request with an
/// `Authorization` header is judged by it alone.
pub fn session_token(headers: &HeaderMap) -> Result<(&str, bool), ApiError> {
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        let v = v
            .to_str()
            .map_err(|_| ApiError::Unauthenticated("Authorization header is not text"))?;
        let token = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
            .map(str::trim)
            .ok_or(ApiError::Unauthenticated(
                "Authorization must be \"Bearer <token>\" with the token from /auth/login",
            ))?;
        if token.starts_with(crate::auth::api_key::KEY_PREFIX) {
            return Err(ApiError::Unauthenticated(
                "llmo_sk_ keys are for the proxy; the admin API takes the session token from /auth/login",
            ));
        }
        return Ok((token, false));
    }
    match session_cookie(headers) {
        Some(t) => Ok((t, true)),
        None => Err(ApiError::Unauthenticated(
            "not signed in: send Authorization: Bearer <token> from /auth/login, or the session cookie",
        )),
    }
}

/// The value of the `llmo_session` cookie, if any (empty values are ignored).
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, value)| *name == SESSION_COOKIE && !value.is_empty())
        .map(|(_, value)| value)
}

/// Passes when the request shows it comes from our own origin or an opted-in one.
pub fn check_origin(headers: &HeaderMap, uri: &Uri, state: &AdminState) -> Result<(), ApiError> {
    let tls = state.app.config.tls.is_some();
    if is_same_origin(headers, uri, tls, &state.app.config.cors_origins) {
        Ok(())
    } else {
        Err(ApiError::CrossOrigin)
    }
}

fn is_same_origin(headers: &HeaderMap, uri: &Uri, tls: bool, allowed: &[String]) -> bool {
    let text = |name: &HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    if text(&SEC_FETCH_SITE).is_some_and(|s| s.eq_ignore_ascii_case("same-origin")) {
        return true;
    }
    let Some(origin) = text(&header::ORIGIN).map(|o| o.trim_end_matches('/')) else {
        return false;
    };
    let host = text(&header::HOST).or_else(|| uri.authority().map(|a| a.as_str()));
    let scheme = if tls { "https" } else { "http" };
    let own = host.is_some_and(|h| {
        origin.len() == scheme.len() + 3 + h.len()
            && origin[..scheme.len() + 3].eq_ignore_ascii_case(&format!("{scheme}://"))
            && origin[scheme.len() + 3..].eq_ignore_ascii_case(h)
    });
    own || allowed
        .iter()
        .any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(origin))
}

/// A JSON body (`Content-Type: application/json`), rejected as [`ApiError`].
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(e) => Err(json_rejection(e)),
        }
    }
}

fn json_rejection(e: JsonRejection) -> ApiError {
    match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(MAX_BODY_BYTES),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType,
        _ => ApiError::InvalidJson(e.body_text()),
    }
}

/// Like [`ApiJson`], but an empty body means `T::default()` (`POST /auth/api-keys`
/// with no body creates an unnamed key).
pub struct JsonOrEmpty<T>(pub T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for JsonOrEmpty<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let declared_empty = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() == b"0");
        let untyped = !req.headers().contains_key(header::CONTENT_TYPE);
        if declared_empty || untyped {
            let bytes = axum::body::Bytes::from_request(req, state)
                .await
                .map_err(|_| ApiError::PayloadTooLarge(MAX_BODY_BYTES))?;
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Ok(JsonOrEmpty(T::default()));
            }
            return Err(ApiError::UnsupportedMediaType);
        }
        ApiJson::<T>::from_request(req, state)
            .await
            .map(|ApiJson(v)| JsonOrEmpty(v))
    }
}

/// Query parameters, rejected as [`ApiError`].
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Query::<T>::try_from_uri(&parts.uri)
            .map(|Query(v)| ApiQuery(v))
            .map_err(|e: QueryRejection| ApiError::InvalidQuery(e.body_text()))
    }
}

/// Path parameters, rejected as [`ApiError`].
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| ApiPath(v))
            .map_err(|e: PathRejection| ApiError::InvalidPath(e.body_text()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn finds_the_session_cookie_among_others() {
        let h = headers(&[("cookie", "a=1; llmo_session=tok.en.x; b=2")]);
        assert_eq!(session_cookie(&h), Some("tok.en.x"));
        assert_eq!(
            session_cookie(&headers(&[("cookie", "llmo_session=")])),
            None
        );
        assert_eq!(session_token(&h).unwrap(), ("tok.en.x", true));
        let bearer = headers(&[
            ("authorization", "Bearer abc"),
            ("cookie", "llmo_session=x"),
        ]);
        assert_eq!(session_token(&bearer).unwrap(), ("abc", false));
        assert!(session_token(&headers(&[("authorization", "Basic abc")])).is_err());
        assert!(session_token(&HeaderMap::new()).is_err());
    }

    #[test]
    fn origin_rules() {
        let uri: Uri = "/auth/api-keys".parse().unwrap();
        let own = headers(&[
            ("host", "127.0.0.1:3000"),
            ("origin", "http://127.0.0.1:3000"),
        ]);
        assert!(is_same_origin(&own, &uri, false, &[]));
        assert!(!is_same_origin(&own, &uri, true, &[]), "scheme must match");
        let evil = headers(&[
            ("host", "127.0.0.1:3000"),
            ("origin", "http://evil.example"),
        ]);
        assert!(!is_same_origin(&evil, &uri, false, &[]));
        assert!(is_same_origin(
            &evil,
            &uri,
            false,
            &["http://evil.example/".to_owned()]
        ));
        let fetch = headers(&[("sec-fetch-site", "same-origin")]);
        assert!(is_same_origin(&fetch, &uri, false, &[]));
        let cross = headers(&[("sec-fetch-site", "cross-site"), ("host", "h")]);
        assert!(!is_same_origin(&cross, &uri, false, &[]));
        assert!(!is_same_origin(
            &headers(&[("host", "h")]),
            &uri,
            false,
            &[]
        ));
        let null = headers(&[("host", "h"), ("origin", "null")]);
        assert!(!is_same_origin(&null, &uri, false, &[]));
    }
}
