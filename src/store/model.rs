//! Records kept in the store: accounts, API keys, provider keys and cost events.

use serde::{Deserialize, Serialize};

use crate::pricing::Money;
use crate::providers::{Endpoint, Provider, Usage};

/// An account. Ids are ULID strings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub email: String,
    #[serde(default)]
    pub name: Option<String>,
    /// argon2id PHC string; `None` for accounts made by the CLI without a password.
    #[serde(default)]
    pub password_hash: Option<String>,
    pub created_at_ms: i64,
    /// Bumped on password change or logout-everywhere: sessions issued before it are void.
    #[serde(default)]
    pub sessions_valid_after_ms: i64,
}

/// An `llmo_sk_` key as stored: only its SHA-256 hash and a display prefix.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub id: String,
    pub user_id: String,
    pub name: String,
    /// First characters of the key, safe to show (`llmo_sk_AbCd`).
    pub prefix: String,
    /// Lowercase hex SHA-256 of the full key.
    pub hash_hex: String,
    pub created_at_ms: i64,
    #[serde(default)]
    pub last_used_at_ms: Option<i64>,
    #[serde(default)]
    pub revoked: bool,
}

impl std::fmt::Debug for ApiKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyRecord")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("prefix", &self.prefix)
            .field("revoked", &self.revoked)
            .finish_non_exhaustive()
    }
}

/// A provider key kept for managed mode, encrypted at rest.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProviderKeyRecord {
    pub provider: Provider,
    /// AEAD nonce and ciphertext (see `auth::secrets`).
    pub sealed: Vec<u8>,
    pub last4: String,
    pub updated_at_ms: i64,
}

impl std::fmt::Debug for ProviderKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderKeyRecord")
            .field("provider", &self.provider)
            .field("last4", &self.last4)
            .finish_non_exhaustive()
    }
}

/// How a proxied call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    UpstreamError,
    Cancelled,
    ProxyError,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::UpstreamError => "upstream_error",
            Outcome::Cancelled => "cancelled",
            Outcome::ProxyError => "proxy_error",
        }
    }
}

/// How much we know about a call's tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageStatus {
    /// The provider's final usage was read.
    Reported,
    /// The stream stopped early: counts are lower bounds.
    Partial,
    /// No usage came: token fields are unknown (null), never zero.
    Missing,
}

/// One proxied call: the unit of metering. Stored once, never updated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CostEvent {
    /// ULID whose timestamp is `ts_ms`; orders events in time.
    pub id: String,
    pub user_id: String,
    /// When the request arrived, Unix milliseconds.
    pub ts_ms: i64,
    pub provider: Provider,
    pub endpoint: Endpoint,
    pub model: Option<String>,
    pub customer_id: Option<String>,
    pub api_key_id: String,
    pub status: u16,
    pub outcome: Outcome,
    pub streamed: bool,
    pub latency_ms: u64,
    pub ttft_ms: Option<u64>,
    pub usage: Option<Usage>,
    pub usage_status: UsageStatus,
    /// Exact cost, `None` when unpriced or usage is missing.
    pub cost: Option<Money>,
    pub upstream_request_id: Option<String>,
    #[serde(default)]
    pub service_tier: Option<String>,
}

impl CostEvent {
    pub fn priced(&self) -> bool {
        self.cost.is_some()
    }

    /// The event as `/api/events` returns it (DESIGN.md, "The event").
    pub fn to_api_json(&self) -> serde_json::Value {
        let u = self.usage.as_ref();
        serde_json::json!({
            "id": self.id,
            "ts": crate::time::rfc3339_ms(self.ts_ms),
            "provider": self.provider,
            "endpoint": self.endpoint,
            "model": self.model,
            "customer_id": self.customer_id,
            "api_key_id": self.api_key_id,
            "status": self.status,
            "outcome": self.outcome,
            "streamed": self.streamed,
            "latency_ms": self.latency_ms,
            "ttft_ms": self.ttft_ms,
            "input_tokens": u.map(|u| u.input_tokens),
            "cached_input_tokens": u.map(|u| u.cached_input_tokens),
            "cache_write_tokens": u.map(|u| u.cache_write_tokens()),
            "output_tokens": u.map(|u| u.output_tokens),
            "reasoning_tokens": u.map(|u| u.reasoning_tokens),
            "usage_status": self.usage_status,
            "cost_usd": self.cost.map(|c| c.to_string()),
            "priced": self.priced(),
            "upstream_request_id": self.upstream_request_id,
        })
    }
}

/// Sums kept in the rollup tables, per (account, hour, provider, model, customer).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub calls: u64,
    /// Calls with no price (unpriced model or missing usage): counted apart, never as $0.
    pub unpriced_calls: u64,
    pub cost: Money,
    pub input_tokens: u64,
    pub cached_input_tokens: u64,
    pub cache_write_tokens: u64,
    pub output_tokens: u64,
    pub reasoning_tokens: u64,
    pub last_seen_ms: i64,
}

impl Totals {
    pub fn add_event(&mut self, e: &CostEvent) {
        self.calls += 1;
        match e.cost {
            Some(c) => self.cost += c,
            None => self.unpriced_calls += 1,
        }
        if let Some(u) = &e.usage {
            self.input_tokens += u.input_tokens;
            self.cached_input_tokens += u.cached_input_tokens;
            self.cache_write_tokens += u.cache_write_tokens();
            self.output_tokens += u.output_tokens;
            self.reasoning_tokens += u.reasoning_tokens;
        }
        self.last_seen_ms = self.last_seen_ms.max(e.ts_ms);
    }

    pub fn merge(&mut self, o: &Totals) {
        self.calls += o.calls;
        self.unpriced_calls += o.unpriced_calls;
        self.cost += o.cost;
        self.input_tokens += o.input_tokens;
        self.cached_input_tokens += o.cached_input_tokens;
        self.cache_write_tokens += o.cache_write_tokens;
        self.output_tokens += o.output_tokens;
        self.reasoning_tokens += o.reasoning_tokens;
        self.last_seen_ms = self.last_seen_ms.max(o.last_seen_ms);
    }
}
