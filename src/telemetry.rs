//! Logs (tracing) and the counters behind `/metrics`.
//!
//! Metric labels are provider, model and outcome only: customer ids are unbounded and
//! never become labels. Counters are updated once per finished call.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::hash::FastMap;
use crate::pricing::Money;
use crate::providers::Provider;
use crate::store::model::Outcome;

/// Installs the global tracing subscriber (`RUST_LOG` or `LLMO_LOG` filter, default info).
pub fn init_logging(format: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("LLMO_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Upper bounds (µs) of the proxy-overhead histogram buckets.
const OVERHEAD_BUCKETS_US: [u64; 12] = [
    25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 25_000, 100_000, 1_000_000,
];

/// Distinct model labels kept per (provider, outcome). Model names come from requests,
/// so without a cap any caller with a key could grow `/metrics` (and memory) without
/// end; past it, calls count under [`OTHER_MODELS`].
const MAX_MODELS_PER_SERIES: usize = 200;
/// The label for models past the cap; parentheses cannot start a real model id.
const OTHER_MODELS: &str = "(other)";

#[derive(Default)]
struct CallCounts {
    calls: u64,
    cost: Money,
}

/// Process-wide counters, owned by `AppState`.
#[derive(Default)]
pub struct Metrics {
    /// (provider, outcome) → model → calls and cost. Locked once per finished call, for
    /// a lookup by `&str` (no allocation once a model has been seen).
    calls: Mutex<FastMap<(Provider, Outcome), FastMap<String, CallCounts>>>,
    overhead_buckets: [AtomicU64; OVERHEAD_BUCKETS_US.len()],
    overhead_count: AtomicU64,
    overhead_sum_us: AtomicU64,
    /// Requests refused before reaching an upstream (auth, route, limits), by status.
    rejected: Mutex<HashMap<u16, u64>>,
}

impl Metrics {
    pub fn record_call(
        &self,
        provider: Provider,
        model: Option<&str>,
        outcome: Outcome,
        cost: Option<Money>,
    ) {
        let model = model.filter(|m| !m.is_empty()).unwrap_or("unknown");
        // Cap label length: a model name is client-controlled text.
        let model = match model.char_indices().nth(64) {
            Some((end, _)) => &model[..end],
            None => model,
        };
        let mut m = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        let by_model = m.entry((provider, outcome)).or_default();
        let bump = |c: &mut CallCounts| {
            c.calls += 1;
            if let Some(cost) = cost {
                c.cost += cost;
            }
        };
        // One lookup for a model already seen (nearly every call).
        match by_model.get_mut(model) {
            Some(c) => bump(c),
            None => {
                let label = if by_model.len() < MAX_MODELS_PER_SERIES {
                    model
                } else {
                    OTHER_MODELS
                };
                bump(by_model.entry(label.to_owned()).or_default());
            }
        }
    }

    pub fn record_overhead_us(&self, us: u64) {
        self.overhead_count.fetch_add(1, Ordering::Relaxed);
        self.overhead_sum_us.fetch_add(us, Ordering::Relaxed);
        if let Some(i) = OVERHEAD_BUCKETS_US.iter().position(|b| us <= *b) {
            self.overhead_buckets[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn record_rejected(&self, status: u16) {
        *self
            .rejected
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(status)
            .or_default() += 1;
    }

    /// Prometheus text exposition (version 0.0.4).
    pub fn render(&self, writer: &crate::store::writer::WriterStats) -> String {
        let mut out = String::new();
        let calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        let mut rows: Vec<_> = calls
            .iter()
            .flat_map(|((p, o), by_model)| by_model.iter().map(move |(m, c)| ((p, m, o), c)))
            .collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        out.push_str("# HELP llmobserve_requests_total Proxied calls by provider, model and outcome.\n# TYPE llmobserve_requests_total counter\n");
        for ((p, m, o), c) in &rows {
            let _ = writeln!(
                out,
                "llmobserve_requests_total{{provider=\"{p}\",model=\"{}\",outcome=\"{}\"}} {}",
                escape(m),
                o.as_str(),
                c.calls
            );
        }
        out.push_str("# HELP llmobserve_cost_usd_total Metered cost in USD by provider, model and outcome.\n# TYPE llmobserve_cost_usd_total counter\n");
        for ((p, m, o), c) in &rows {
            let _ = writeln!(
                out,
                "llmobserve_cost_usd_total{{provider=\"{p}\",model=\"{}\",outcome=\"{}\"}} {}",
                escape(m),
                o.as_str(),
                c.cost
            );
        }
        drop(calls);
        out.push_str("# HELP llmobserve_proxy_overhead_seconds Time spent in the proxy itself per call (excluding upstream time).\n# TYPE llmobserve_proxy_overhead_seconds histogram\n");
        let mut cumulative = 0;
        for (i, b) in OVERHEAD_BUCKETS_US.iter().enumerate() {
            cumulative += self.overhead_buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "llmobserve_proxy_overhead_seconds_bucket{{le=\"{}\"}} {cumulative}",
                *b as f64 / 1e6
            );
        }
        let count = self.overhead_count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "llmobserve_proxy_overhead_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "llmobserve_proxy_overhead_seconds_sum {}",
            self.overhead_sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "llmobserve_proxy_overhead_seconds_count {count}");
        out.push_str("# HELP llmobserve_rejected_total Requests the proxy refused itself, by status.\n# TYPE llmobserve_rejected_total counter\n");
        let rejected = self.rejected.lock().unwrap_or_else(|p| p.into_inner());
        let mut r: Vec<_> = rejected.iter().collect();
        r.sort();
        for (status, n) in r {
            let _ = writeln!(out, "llmobserve_rejected_total{{status=\"{status}\"}} {n}");
        }
        drop(rejected);
        let gauges = [
            (
                "llmobserve_writer_queue_depth",
                "gauge",
                "Events waiting for the writer.",
                writer.queue_depth(),
            ),
            (
                "llmobserve_events_written_total",
                "counter",
                "Events committed to the store.",
                writer.written.load(Ordering::Relaxed),
            ),
            (
                "llmobserve_events_dropped_total",
                "counter",
                "Events lost (must stay 0).",
                writer.dropped.load(Ordering::Relaxed),
            ),
            (
                "llmobserve_writer_backpressure_total",
                "counter",
                "Times a full writer queue made a sender wait.",
                writer.backpressure_waits.load(Ordering::Relaxed),
            ),
            (
                "llmobserve_writer_errors_total",
                "counter",
                "Failed event commits (retried).",
                writer.write_errors.load(Ordering::Relaxed),
            ),
            (
                "llmobserve_store_reopens_total",
                "counter",
                "Times the database was reopened after a failed commit.",
                writer.reopens.load(Ordering::Relaxed),
            ),
            (
                "llmobserve_writer_batches_total",
                "counter",
                "Committed write transactions.",
                writer.batches.load(Ordering::Relaxed),
            ),
        ];
        for (name, kind, help, v) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        }
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_labels_are_capped_and_nothing_is_lost() {
        let m = Metrics::default();
        let n = MAX_MODELS_PER_SERIES + 50;
        for i in 0..n {
            m.record_call(
                Provider::OpenAi,
                Some(&format!("model-{i}")),
                Outcome::Ok,
                Some(Money::from_femto(1)),
            );
        }
        // A model seen before the cap keeps its own label.
        m.record_call(Provider::OpenAi, Some("model-0"), Outcome::Ok, None);
        let calls = m.calls.lock().unwrap();
        let by_model = &calls[&(Provider::OpenAi, Outcome::Ok)];
        assert_eq!(by_model.len(), MAX_MODELS_PER_SERIES + 1);
        assert_eq!(by_model[OTHER_MODELS].calls, 50);
        assert_eq!(by_model["model-0"].calls, 2);
        let total: u64 = by_model.values().map(|c| c.calls).sum();
        assert_eq!(total, n as u64 + 1);
        let cost: Money = by_model.values().fold(Money::ZERO, |a, c| a + c.cost);
        assert_eq!(cost, Money::from_femto(n as i128));
    }
}
