//! The admin listener (axum): auth, API keys, provider keys, the query API, the
//! dashboard, `/healthz` and `/metrics`.
//!
//! - [`auth_routes`]: `/auth/*` (signup, login, logout, me, API keys, password).
//! - [`api_routes`]: `/api/*` (provider keys, stats, events, customers, time series).
//! - [`extract`]: the session extractor `AuthUser` and error-shaped JSON/query/path.
//! - [`error`]: `ApiError` → `{"error":{"code","message"}}`.
//! - [`rate_limit`]: per-address limits and the argon2 concurrency bound.
//!
//! Request bodies are capped at 64 KiB. CORS is closed unless `--cors-origins` names
//! origins: the dashboard is served from this same listener.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRef, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{delete, get, post, put};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::auth::jwt::JwtKeys;
use crate::auth::sessions::RevokedSessions;
use crate::state::AppState;

pub mod api_routes;
pub mod auth_routes;
mod csv;
pub mod error;
pub mod extract;
pub mod rate_limit;

use error::ApiError;
use rate_limit::{HashGate, RateLimiter};

/// argon2 jobs run at once, and how many more may wait before `429 busy`.
const HASH_WORKERS: usize = 4;
const HASH_QUEUE: usize = 32;

/// State of the admin router: the shared `AppState` plus what only this listener
/// uses. Cheap to clone.
#[derive(Clone)]
pub struct AdminState {
    pub app: AppState,
    pub jwt: Arc<JwtKeys>,
    pub limiter: Arc<RateLimiter>,
    pub hashing: Arc<HashGate>,
    /// Sessions ended by logout before their expiry.
    pub revoked: Arc<RevokedSessions>,
}

impl AdminState {
    /// Blocking: loads the logged-out sessions from the store (called once at start).
    pub fn new(app: AppState) -> AdminState {
        let revoked = match app.store.revoked_sessions(crate::auth::jwt::now_secs()) {
            Ok(entries) => RevokedSessions::from_entries(entries),
            Err(e) => {
                tracing::error!(error = %e, "could not load logged-out sessions");
                RevokedSessions::default()
            }
        };
        AdminState {
            revoked: Arc::new(revoked),
            jwt: Arc::new(JwtKeys::new(&app.jwt_secret)),
            limiter: Arc::new(RateLimiter::new(
                rate_limit::AUTH_BURST,
                rate_limit::AUTH_REFILL,
            )),
            hashing: Arc::new(HashGate::new(HASH_WORKERS, HASH_QUEUE)),
            app,
        }
    }
}

impl FromRef<AdminState> for AppState {
    fn from_ref(s: &AdminState) -> AppState {
        s.app.clone()
    }
}

/// Every admin route. Blocking: reads the logged-out sessions from the store.
pub fn router(state: AppState) -> Router {
    let admin = AdminState::new(state);
    let password_routes = Router::new()
        .route("/auth/signup", post(auth_routes::signup))
        .route("/auth/login", post(auth_routes::login))
        .route("/auth/password", post(auth_routes::change_password))
        .route_layer(axum::middleware::from_fn_with_state(
            admin.clone(),
            rate_limit::limit_auth_attempts,
        ));
    let routes = Router::new()
        .route("/auth/logout", post(auth_routes::logout))
        .route(
            "/auth/me",
            get(auth_routes::me).delete(auth_routes::delete_me),
        )
        .route("/auth/api-keys", post(auth_routes::create_key))
        .route("/auth/api-keys/{id}", delete(auth_routes::revoke_key))
        .route("/api/provider-keys", get(api_routes::list_provider_keys))
        .route(
            "/api/provider-keys/{provider}",
            put(api_routes::put_provider_key).delete(api_routes::delete_provider_key),
        )
        .route("/api/stats", get(api_routes::stats))
        .route("/api/events", get(api_routes::events))
        .route("/api/events.csv", get(api_routes::events_csv))
        .route("/api/customers", get(api_routes::customers))
        .route("/api/customers/{id}", get(api_routes::customer))
        .route("/api/timeseries", get(api_routes::timeseries))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics));
    let cors = cors_layer(&admin.app.config.cors_origins);
    let router = Router::new()
        .merge(password_routes)
        .merge(routes)
        .merge(dashboard(&admin))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(extract::MAX_BODY_BYTES))
        .with_state(admin);
    match cors {
        Some(cors) => router.layer(cors),
        None => router,
    }
}

/// The dashboard pages. A page counts as signed in when its session cookie carries a
/// valid, unexpired token that was not logged out (memory checks only: this runs on
/// the async runtime); the page scripts then get `401` from the API (and go to
/// `/login`) if the account was deleted or its password changed since.
fn dashboard(admin: &AdminState) -> Router<AdminState> {
    let jwt = admin.jwt.clone();
    let revoked = admin.revoked.clone();
    let has_session = move |headers: &HeaderMap| {
        extract::session_cookie(headers)
            .and_then(|t| jwt.verify(t).ok())
            .is_some_and(|claims| !revoked.contains(&claims.jti))
    };
    let config = crate::dashboard::DashboardConfig {
        proxy_url: admin.app.proxy_url.clone(),
    };
    crate::dashboard::router(config, has_session)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// CORS only for the origins named by `--cors-origins`; none by default.
fn cors_layer(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let list: Vec<HeaderValue> = origins
        .iter()
        .map(|o| o.trim().trim_end_matches('/'))
        .filter(|o| !o.is_empty())
        .filter_map(|o| match HeaderValue::from_str(o) {
            Ok(v) => Some(v),
            Err(_) => {
                tracing::warn!(origin = o, "ignoring unusable --cors-origins entry");
                None
            }
        })
        .collect();
    if list.is_empty() {
        return None;
    }
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(list))
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .allow_credentials(true)
            .max_age(Duration::from_secs(3600)),
    )
}

async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    let stats = state.events.stats();
    let degraded = stats.degraded.load(Ordering::Relaxed);
    let body = serde_json::json!({
        "status": if degraded { "degraded" } else { "ok" },
        "writer_queue_depth": stats.queue_depth(),
        "events_dropped": stats.dropped.load(Ordering::Relaxed),
    });
    // Still 200 when degraded: the proxy keeps serving, only event commits are waiting.
    (StatusCode::OK, axum::Json(body))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(state.events.stats()),
    )
}

/// Serves the admin router on the shared accept loop (header timeouts, TLS, drain).
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    state: AppState,
    shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let limits = crate::server::Limits::new(&state.config, grace);
    // Building the router reads the logged-out sessions from the store: off the runtime.
    let app = match tokio::task::spawn_blocking(move || router(state)).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(error = %e, "admin router could not be built");
            return;
        }
    };
    let handler = move |peer, mut req: http::Request<crate::server::RequestBody>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        let app = app.clone();
        async move {
            match app.oneshot(req).await {
                Ok(r) => r,
                Err(never) => match never {},
            }
        }
    };
    crate::server::serve(listener, tls, handler, shutdown, limits, None).await;
}
