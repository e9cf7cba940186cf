//! Builds the shared state, binds both listeners, and owns shutdown:
//! stop accepting → let in-flight calls finish (bounded) → commit every event.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::auth::keys::{KeyCache, ProviderKeys};
use crate::auth::secrets::{self, SecretBox};
use crate::config::Config;
use crate::pricing::PriceTable;
use crate::server::Workers;
use crate::state::{AppState, Shared};
use crate::store::writer::EventWriter;
use crate::telemetry::Metrics;

pub const DB_FILE: &str = "llmobserve.redb";

/// State plus the writer that owns the event queue.
pub struct Core {
    pub state: AppState,
    pub writer: EventWriter,
}

/// Opens the data dir, the store, prices, secrets and the writer. No listeners.
pub async fn build_core(config: Config) -> anyhow::Result<Core> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    let db_path = config.data_dir.join(DB_FILE);
    let faults = config.storage_faults.clone();
    let cache_bytes = config.db_cache_mib.saturating_mul(1024 * 1024);
    let quick_repair = config.store_quick_repair;
    let store = tokio::task::spawn_blocking(move || {
        crate::store::Store::open_with(&db_path, cache_bytes, faults)
            .map(|s| s.with_quick_repair(quick_repair))
    })
    .await?
    .context("opening the database (is another llmobserve using this data dir?)")?;

    let mut prices = PriceTable::embedded().context("loading embedded price tables")?;
    if let Some(path) = &config.pricing_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading pricing file {}", path.display()))?;
        prices = prices
            .with_override(&text)
            .with_context(|| format!("parsing pricing file {}", path.display()))?;
    }

    let secret_key =
        secrets::load_or_create(config.secret_key.as_deref(), &config.data_dir, "secret.key")
            .context("loading secret.key")?;
    let jwt_secret =
        secrets::load_or_create(config.jwt_secret.as_deref(), &config.data_dir, "jwt.secret")
            .context("loading jwt.secret")?;

    let keys = {
        let store = store.clone();
        let records = tokio::task::spawn_blocking(move || store.all_api_keys()).await??;
        KeyCache::from_records(&records)
    };
    let writer =
        EventWriter::start(store.clone(), config.writer_queue).context("starting event writer")?;
    let upstream = crate::proxy::client::build(
        config.upstream_ca.as_deref(),
        config.connect_timeout,
        config.proxy_workers,
    )
    .context("building upstream clients")?;
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let proxy_url = config
        .public_proxy_url
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{}", config.proxy_addr));

    let state = AppState::new(Shared {
        config,
        store,
        prices,
        keys,
        provider_keys: ProviderKeys::default(),
        secret_box: SecretBox::new(&secret_key),
        jwt_secret,
        events: writer.sink(),
        metrics: Metrics::default(),
        upstream,
        proxy_url,
        last_event_id: std::sync::Mutex::new(0),
    });
    {
        let st = state.clone();
        tokio::task::spawn_blocking(move || crate::accounts::load_provider_keys(&st)).await??;
    }
    Ok(Core { state, writer })
}

/// A running LLMObserve: both listeners up.
pub struct RunningApp {
    pub proxy_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub state: AppState,
    writer: EventWriter,
    shutdown: watch::Sender<bool>,
    servers: Vec<JoinHandle<()>>,
    workers: Arc<Workers>,
}

/// Starts both listeners on the configured addresses (port 0 picks a free port).
pub async fn start(config: Config) -> anyhow::Result<RunningApp> {
    let proxy_listener = TcpListener::bind(config.proxy_addr)
        .await
        .with_context(|| format!("binding proxy address {}", config.proxy_addr))?;
    let admin_listener = TcpListener::bind(config.admin_addr)
        .await
        .with_context(|| format!("binding admin address {}", config.admin_addr))?;
    let proxy_addr = proxy_listener.local_addr()?;
    let admin_addr = admin_listener.local_addr()?;
    let tls = match &config.tls {
        Some((cert, key)) => Some(crate::server::tls_acceptor(cert, key)?),
        None => None,
    };
    let mut config = config;
    config.proxy_addr = proxy_addr;
    config.admin_addr = admin_addr;
    let Core { state, writer } = build_core(config).await?;

    let workers = Arc::new(
        Workers::start(state.config.proxy_workers, "llmo-proxy")
            .context("starting proxy worker threads")?,
    );
    let (shutdown, rx) = watch::channel(false);
    let grace = state.config.shutdown_grace;
    let proxy = tokio::spawn(crate::proxy::server::run(
        proxy_listener,
        tls.clone(),
        state.clone(),
        rx.clone(),
        grace,
        workers.clone(),
    ));
    let admin = tokio::spawn(crate::admin::serve(
        admin_listener,
        tls,
        state.clone(),
        rx,
        grace,
    ));
    Ok(RunningApp {
        proxy_addr,
        admin_addr,
        state,
        writer,
        shutdown,
        servers: vec![proxy, admin],
        workers,
    })
}

impl RunningApp {
    /// Waits until every event recorded so far is committed (tests use this).
    pub async fn flush_events(&self) {
        self.state.events.flush().await;
    }

    /// Stops accepting, lets open calls finish within the grace period, then commits
    /// every queued event and stops the writer.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for s in self.servers {
            let _ = s.await;
        }
        // Connections still open after the grace period are dropped with their worker;
        // each open call records its event on the way out, before the writer stops.
        if let Ok(workers) = Arc::try_unwrap(self.workers) {
            workers.stop().await;
        }
        self.writer.shutdown().await;
    }
}
