//! The admin listener (axum): auth, API keys, provider keys, the query API, the
//! dashboard, `/healthz` and `/metrics`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::state::AppState;

/// Every admin route.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    let stats = state.events.stats();
    let degraded = stats.degraded.load(Ordering::Relaxed);
    let body = serde_json::json!({
        "status": if degraded { "degraded" } else { "ok" },
        "writer_queue_depth": stats.queue_depth(),
        "events_dropped": stats.dropped.load(Ordering::Relaxed),
    });
    let code = if degraded {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, axum::Json(body))
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
    let app = router(state);
    let handler = move |peer, mut req: http::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        let app = app.clone();
        async move {
            match app.oneshot(req).await {
                Ok(r) => r,
                Err(never) => match never {},
            }
        }
    };
    crate::server::serve(listener, tls, handler, shutdown, grace).await;
}
