//! `AppState`: everything both listeners share, behind one `Arc`.

use std::ops::Deref;
use std::sync::Arc;

use crate::auth::keys::{KeyCache, ProviderKeys};
use crate::auth::secrets::SecretBox;
use crate::config::Config;
use crate::pricing::PriceTable;
use crate::proxy::client::Upstream;
use crate::store::Store;
use crate::store::writer::EventSink;
use crate::telemetry::Metrics;

/// Cheap to clone; per-request data lives in the proxy's `CallCtx` or axum extractors.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub config: Config,
    pub store: Store,
    pub prices: PriceTable,
    pub keys: KeyCache,
    pub provider_keys: ProviderKeys,
    pub secret_box: SecretBox,
    /// HS256 secret for dashboard sessions.
    pub jwt_secret: [u8; 32],
    pub events: EventSink,
    pub metrics: Metrics,
    pub upstream: Upstream,
    /// The proxy's base URL as users should type it (snippets, README).
    pub proxy_url: String,
    /// Last event id handed out, so ids (and list order) follow arrival order even
    /// within one millisecond. Locked for a compare and an add.
    pub last_event_id: std::sync::Mutex<u128>,
}

impl AppState {
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }

    /// A ULID for an event that arrived at `ts_ms`, greater than every earlier one.
    pub fn next_event_id(&self, ts_ms: i64) -> ulid::Ulid {
        use rand::RngExt;
        let candidate = u128::from(ulid::Ulid::from_parts(
            u64::try_from(ts_ms).unwrap_or(0),
            rand::rng().random::<u128>(),
        ));
        let mut last = self.last_event_id.lock().unwrap_or_else(|p| p.into_inner());
        let id = if candidate > *last {
            candidate
        } else {
            *last + 1
        };
        *last = id;
        ulid::Ulid(id)
    }
}

impl Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}
