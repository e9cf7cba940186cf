//! Binds the proxy's request handler to the shared accept loop, on the proxy's workers.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::server::Workers;
use crate::state::AppState;

pub async fn run(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    state: AppState,
    shutdown: watch::Receiver<bool>,
    grace: Duration,
    workers: Arc<Workers>,
) {
    let limits = crate::server::Limits::new(&state.config, grace);
    let handler = move |_peer, req| super::handle(state.clone(), req);
    crate::server::serve(listener, tls, handler, shutdown, limits, Some(workers)).await;
}
