//! `/auth/*`: signup, login, logout, the signed-in account, its API keys, password
//! change and account deletion (DESIGN.md, "Admin API").
//!
//! Signup and login answer the session token in JSON (scripts send it as Bearer)
//! and also set it as the `llmo_session` cookie: HttpOnly, SameSite=Strict, Path=/,
//! Secure when the listener serves TLS. Password work (argon2id) runs on the blocking
//! pool behind `HashGate`; these routes are rate-limited per client address.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AdminState;
use super::error::ApiError;
use super::extract::{ApiJson, ApiPath, AuthUser, JsonOrEmpty, SESSION_COOKIE, check_origin};
use crate::accounts::{self, MAX_PASSWORD_LEN, MIN_PASSWORD_LEN, NewKey};
use crate::auth::jwt::{self, Issued, SESSION_TTL_SECS};
use crate::auth::password;
use crate::store::Store;
use crate::store::model::{ApiKeyRecord, User};
use crate::time::rfc3339_ms;

const MAX_NAME_CHARS: usize = 100;
/// Name of a key created without one.
const DEFAULT_KEY_NAME: &str = "default";

#[derive(Deserialize)]
pub struct SignupBody {
    email: String,
    password: String,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
pub struct LoginBody {
    email: String,
    password: String,
}

#[derive(Deserialize, Default)]
pub struct CreateKeyBody {
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
pub struct PasswordBody {
    #[serde(default)]
    current_password: Option<String>,
    new_password: String,
}

/// `POST /auth/signup` → `201 {token, expires_at, user, api_key}`.
pub async fn signup(
    State(s): State<AdminState>,
    ApiJson(body): ApiJson<SignupBody>,
) -> Result<Response, ApiError> {
    check_password_shape(&body.password)?;
    let name = clean_name(body.name.as_deref())?;
    let app = s.app.clone();
    let (user, key) = s
        .hashing
        .run(move || {
            accounts::create_account(&app, &body.email, Some(&body.password), name.as_deref())
        })
        .await??;
    let issued = issue(&s, &user)?;
    let body = json!({
        "token": issued.token,
        "expires_at": expires_at(&issued),
        "user": user_json(&user),
        "api_key": new_key_json(&key),
    });
    Ok(with_session_cookie(&s, StatusCode::CREATED, body, &issued))
}

/// `POST /auth/login` → `200 {token, expires_at, user}`. One answer for an unknown
/// email and a wrong password, and the same argon2 work for both.
pub async fn login(
    State(s): State<AdminState>,
    ApiJson(body): ApiJson<LoginBody>,
) -> Result<Response, ApiError> {
    if body.password.len() > MAX_PASSWORD_LEN {
        return Err(ApiError::InvalidCredentials);
    }
    let store = s.app.store.clone();
    let user = s
        .hashing
        .run(move || check_credentials(&store, &body.email, &body.password))
        .await??;
    let issued = issue(&s, &user)?;
    let body = json!({
        "token": issued.token,
        "expires_at": expires_at(&issued),
        "user": user_json(&user),
    });
    Ok(with_session_cookie(&s, StatusCode::OK, body, &issued))
}

/// `POST /auth/logout` → `204`, clearing the cookie. Sessions are stateless: a
/// Bearer token stays valid until it expires or the password changes.
pub async fn logout(State(s): State<AdminState>, req: axum::extract::Request) -> Response {
    let (parts, _) = req.into_parts();
    if super::extract::session_cookie(&parts.headers).is_some()
        && let Err(e) = check_origin(&parts.headers, &parts.uri, &s)
    {
        return e.into_response();
    }
    // End the presented session for good, not just in this browser: a copy of the
    // token (a script, another tab) must stop working too.
    if let Ok((token, _)) = super::extract::session_token(&parts.headers)
        && let Ok(claims) = s.jwt.verify(token)
    {
        let now = crate::auth::jwt::now_secs();
        s.revoked.insert(&claims.jti, claims.exp, now);
        let store = s.app.store.clone();
        let stored =
            tokio::task::spawn_blocking(move || store.revoke_session(&claims.jti, claims.exp, now))
                .await;
        if !matches!(stored, Ok(Ok(()))) {
            tracing::error!("could not persist a logout; the session stays ended until restart");
        }
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    set_cookie(resp.headers_mut(), &clear_cookie(&s));
    resp
}

/// `GET /auth/me` → `{user, api_keys:[{id,name,prefix,created_at,last_used_at,revoked}]}`.
pub async fn me(State(s): State<AdminState>, auth: AuthUser) -> Result<Json<Value>, ApiError> {
    let store = s.app.store.clone();
    let user_id = auth.user.id.clone();
    let keys = tokio::task::spawn_blocking(move || store.api_keys_for(&user_id)).await??;
    Ok(Json(json!({
        "user": user_json(&auth.user),
        "api_keys": keys.iter().map(key_json).collect::<Vec<_>>(),
    })))
}

/// `POST /auth/api-keys` `{name?}` → `201 {id,key,prefix,name,created_at}`; the only
/// time the full key is shown.
pub async fn create_key(
    State(s): State<AdminState>,
    auth: AuthUser,
    JsonOrEmpty(body): JsonOrEmpty<CreateKeyBody>,
) -> Result<Response, ApiError> {
    let name = clean_name(body.name.as_deref())?.unwrap_or_else(|| DEFAULT_KEY_NAME.to_owned());
    let app = s.app.clone();
    let key =
        tokio::task::spawn_blocking(move || accounts::create_api_key(&app, &auth.user.id, &name))
            .await??;
    Ok((StatusCode::CREATED, Json(new_key_json(&key))).into_response())
}

/// `DELETE /auth/api-keys/{id}` → `204`; the key stops working on the proxy at once.
/// `404` for a key of another account, exactly as for one that never existed.
pub async fn revoke_key(
    State(s): State<AdminState>,
    auth: AuthUser,
    ApiPath(key_id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let app = s.app.clone();
    tokio::task::spawn_blocking(move || accounts::revoke_api_key(&app, &auth.user.id, &key_id))
        .await?
        .map_err(|e| match e {
            accounts::AccountError::NotFound => ApiError::NotFound("API key"),
            other => other.into(),
        })?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /auth/password` `{current_password, new_password}` → `200 {token, expires_at,
/// user}`: ends every other session and starts a new one.
pub async fn change_password(
    State(s): State<AdminState>,
    auth: AuthUser,
    ApiJson(body): ApiJson<PasswordBody>,
) -> Result<Response, ApiError> {
    check_password_shape(&body.new_password)?;
    let store = s.app.store.clone();
    let user_id = auth.user.id.clone();
    let user = s
        .hashing
        .run(move || {
            set_password(
                &store,
                &user_id,
                body.current_password.as_deref(),
                &body.new_password,
            )
        })
        .await??;
    let issued = issue(&s, &user)?;
    let body = json!({
        "token": issued.token,
        "expires_at": expires_at(&issued),
        "user": user_json(&user),
    });
    Ok(with_session_cookie(&s, StatusCode::OK, body, &issued))
}

/// `DELETE /auth/me` → `204`: deletes the account, its keys, provider keys and
/// events; its keys and sessions stop working at once.
pub async fn delete_me(State(s): State<AdminState>, auth: AuthUser) -> Result<Response, ApiError> {
    let app = s.app.clone();
    let user_id = auth.user.id;
    tokio::task::spawn_blocking(move || -> Result<(), ApiError> {
        app.store.delete_user(&user_id)?;
        app.keys.remove_user(&user_id);
        app.provider_keys.remove_user(&user_id);
        Ok(())
    })
    .await??;
    let mut resp = StatusCode::NO_CONTENT.into_response();
    set_cookie(resp.headers_mut(), &clear_cookie(&s));
    Ok(resp)
}

// ---- logic ----

fn check_password_shape(password: &str) -> Result<(), ApiError> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(ApiError::WeakPassword);
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(ApiError::PasswordTooLong);
    }
    Ok(())
}

/// Trimmed; `None` when absent or blank.
fn clean_name(name: Option<&str>) -> Result<Option<String>, ApiError> {
    let Some(n) = name.map(str::trim).filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    if n.chars().count() > MAX_NAME_CHARS || n.chars().any(char::is_control) {
        return Err(ApiError::InvalidName);
    }
    Ok(Some(n.to_owned()))
}

/// The account for these credentials. Blocking (argon2). Runs one verification
/// whatever happens, against a dummy hash when there is no account or no password,
/// so timing does not tell whether an email is registered.
fn check_credentials(store: &Store, email: &str, password: &str) -> Result<User, ApiError> {
    let user = match accounts::normalize_email(email) {
        Some(e) => store.user_by_email(&e)?,
        None => None,
    };
    let hash = user
        .as_ref()
        .and_then(|u| u.password_hash.as_deref())
        .unwrap_or_else(|| password::dummy_hash());
    let ok = password::verify(password, hash);
    match user {
        Some(u) if ok && u.password_hash.is_some() => Ok(u),
        _ => Err(ApiError::InvalidCredentials),
    }
}

/// Replaces the password and voids every session issued before. Blocking (argon2).
/// An account made without a password (CLI) may set one without `current`.
fn set_password(
    store: &Store,
    user_id: &str,
    current: Option<&str>,
    new: &str,
) -> Result<User, ApiError> {
    let mut user = store.user(user_id)?.ok_or(ApiError::Unauthenticated(
        "this session's account no longer exists",
    ))?;
    if let Some(hash) = user.password_hash.as_deref() {
        let current = current.unwrap_or_default();
        if current.len() > MAX_PASSWORD_LEN || !password::verify(current, hash) {
            return Err(ApiError::WrongPassword);
        }
    }
    user.password_hash = Some(password::hash(new).map_err(ApiError::internal)?);
    user.sessions_valid_after_ms = crate::time::now_ms().max(user.sessions_valid_after_ms + 1);
    store.update_user(&user)?;
    Ok(user)
}

fn issue(s: &AdminState, user: &User) -> Result<Issued, ApiError> {
    Ok(s.jwt
        .issue(&user.id, user.sessions_valid_after_ms, jwt::now_secs())?)
}

fn expires_at(issued: &Issued) -> String {
    let secs = i64::try_from(issued.expires_at_secs).unwrap_or(i64::MAX / 1000);
    rfc3339_ms(secs.saturating_mul(1000))
}

// ---- cookies ----

fn session_cookie_value(s: &AdminState, token: &str) -> String {
    format!(
        "{SESSION_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={SESSION_TTL_SECS}{}",
        secure_attr(s)
    )
}

fn clear_cookie(s: &AdminState) -> String {
    format!(
        "{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{}",
        secure_attr(s)
    )
}

fn secure_attr(s: &AdminState) -> &'static str {
    if s.app.config.tls.is_some() {
        "; Secure"
    } else {
        ""
    }
}

fn set_cookie(headers: &mut HeaderMap, cookie: &str) {
    // A JWT is base64url and dots: always a valid header value.
    if let Ok(v) = HeaderValue::from_str(cookie) {
        headers.append(header::SET_COOKIE, v);
    }
}

fn with_session_cookie(
    s: &AdminState,
    status: StatusCode,
    body: Value,
    issued: &Issued,
) -> Response {
    let mut resp = (status, Json(body)).into_response();
    set_cookie(resp.headers_mut(), &session_cookie_value(s, &issued.token));
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

// ---- JSON shapes ----

fn user_json(u: &User) -> Value {
    json!({
        "id": u.id,
        "email": u.email,
        "name": u.name,
        "created_at": rfc3339_ms(u.created_at_ms),
    })
}

fn key_json(k: &ApiKeyRecord) -> Value {
    json!({
        "id": k.id,
        "name": k.name,
        "prefix": k.prefix,
        "created_at": rfc3339_ms(k.created_at_ms),
        "last_used_at": k.last_used_at_ms.map(rfc3339_ms),
        "revoked": k.revoked,
    })
}

fn new_key_json(k: &NewKey) -> Value {
    json!({
        "id": k.record.id,
        "key": k.secret.expose(),
        "prefix": k.record.prefix,
        "name": k.record.name,
        "created_at": rfc3339_ms(k.record.created_at_ms),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_passwords() {
        assert_eq!(
            clean_name(Some("  prod  ")).unwrap().as_deref(),
            Some("prod")
        );
        assert_eq!(clean_name(Some("   ")).unwrap(), None);
        assert_eq!(clean_name(None).unwrap(), None);
        assert!(clean_name(Some("a\nb")).is_err());
        assert!(clean_name(Some(&"x".repeat(101))).is_err());
        assert!(matches!(
            check_password_shape("short"),
            Err(ApiError::WeakPassword)
        ));
        assert!(check_password_shape("eight ch").is_ok());
        assert!(matches!(
            check_password_shape(&"x".repeat(2000)),
            Err(ApiError::PasswordTooLong)
        ));
    }
}
