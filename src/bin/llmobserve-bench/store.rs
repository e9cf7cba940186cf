//! Store benchmarks: events/s through the writer, the stats query over many events,
//! and a restart (open + key cache) on a large file.
//!
//! The stats query is `Store::stats`, what `GET /api/stats` runs (without the HTTP and
//! session layers around it).

use std::sync::atomic::Ordering;
use std::time::Instant;

use llmobserve::providers::{Endpoint, Provider, Usage};
use llmobserve::store::Store;
use llmobserve::store::model::{CostEvent, Outcome, Totals, UsageStatus};
use llmobserve::store::query::QueryFilter;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct StoreReport {
    /// Events pushed through `EventSink::record` and committed by the writer.
    pub writer_events: u64,
    pub writer_events_per_s: f64,
    /// Events the writer dropped (must be 0).
    pub writer_dropped: u64,
    pub writer_batches: u64,
    /// Events bulk-loaded with `Store::write_events` for the query and restart runs.
    pub bulk_events: u64,
    pub bulk_load_s: f64,
    pub bulk_events_per_s: f64,
    pub db_file_mib: f64,
    /// Calls the stats answer counted (must equal writer + bulk events).
    pub stats_calls: u64,
    /// Models in the stats answer (a sanity check).
    pub models: u64,
    /// Median of 5 runs of `Store::stats` over every event of the account.
    pub stats_ms: f64,
    /// `app::build_core` on the loaded file (open, tables, key cache, writer start).
    pub restart_ms: f64,
}

/// Days the generated events span (they arrive in time order, as real ones do).
const SPAN_MS: i64 = 30 * 24 * 3_600_000;

/// The `i`th of `total` realistic events: one of 5 models, 20 customers, arrival times
/// spread evenly over the 30 days after `t0_ms`.
pub fn event(i: u64, user: &str, key_id: &str, t0_ms: i64, total: u64) -> CostEvent {
    const MODELS: [&str; 5] = [
        "gpt-4o-mini-2024-07-18",
        "gpt-4o-2024-08-06",
        "claude-sonnet-4-5",
        "gemini-2.5-flash",
        "o3-mini",
    ];
    let ts_ms = t0_ms + (i128::from(i) * i128::from(SPAN_MS) / i128::from(total.max(1))) as i64;
    let rand_part = u128::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let id = ulid::Ulid::from_parts(ts_ms as u64, rand_part);
    CostEvent {
        id: id.to_string(),
        user_id: user.to_owned(),
        ts_ms,
        provider: Provider::OpenAi,
        endpoint: Endpoint::ChatCompletions,
        model: Some(MODELS[(i % 5) as usize].to_owned()),
        customer_id: Some(format!("customer-{:02}", i % 20)),
        api_key_id: key_id.to_owned(),
        status: 200,
        outcome: Outcome::Ok,
        streamed: i.is_multiple_of(2),
        latency_ms: 800 + i % 400,
        ttft_ms: Some(200 + i % 100),
        usage: Some(Usage {
            input_tokens: 1536,
            cached_input_tokens: 1280,
            output_tokens: 212,
            ..Usage::default()
        }),
        usage_status: UsageStatus::Reported,
        cost: Some(llmobserve::pricing::Money::from_femto(
            123_450_000_000 + i128::from(i % 1000),
        )),
        upstream_request_id: Some(format!("req_{i:024}")),
        service_tier: Some("default".into()),
    }
}

/// Runs all three measurements in `dir` (a fresh directory).
pub async fn run(
    dir: &std::path::Path,
    writer_events: u64,
    bulk_events: u64,
) -> anyhow::Result<StoreReport> {
    let data = dir.join("store-bench");
    std::fs::create_dir_all(&data)?;
    let config = llmobserve::config::Config::for_data_dir(&data);
    let core = llmobserve::app::build_core(config.clone()).await?;
    let state = core.state.clone();
    let (user, key) = tokio::task::spawn_blocking(move || {
        llmobserve::accounts::create_account(&state, "store@example.com", None, None)
    })
    .await??;
    let (user_id, key_id) = (user.id.clone(), key.record.id.clone());
    let t0_ms = llmobserve::time::now_ms() - SPAN_MS;
    let total = writer_events + bulk_events;

    // 1. The writer: record as fast as one task can, then wait for the last commit.
    let sink = core.state.events.clone();
    let started = Instant::now();
    for i in 0..writer_events {
        sink.record(event(i, &user_id, &key_id, t0_ms, total));
        if i.is_multiple_of(1024) {
            // Sustained load, not a burst: keep the queue under half full (a burst past
            // the queue and its waiting senders is dropped by design).
            while sink.stats().queue_depth() > 32_768 {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        }
    }
    // Senders that met a full queue wait in tasks: done when every event is accounted for.
    let stats = sink.stats().clone();
    let done = || {
        stats.written.load(Ordering::Relaxed) + stats.dropped.load(Ordering::Relaxed)
            >= writer_events
    };
    let give_up = Instant::now() + std::time::Duration::from_secs(120);
    while !done() && Instant::now() < give_up {
        sink.flush().await;
    }
    let writer_s = started.elapsed().as_secs_f64();
    let written = stats.written.load(Ordering::Relaxed);
    let dropped = stats.dropped.load(Ordering::Relaxed);
    let batches = stats.batches.load(Ordering::Relaxed);
    eprintln!(
        "store: writer committed {written} events in {writer_s:.2} s ({:.0}/s), {dropped} dropped",
        written as f64 / writer_s
    );
    let store = core.state.store.clone();
    core.writer.shutdown().await;
    drop(core.state);

    // 2. Bulk load in big transactions (how a large file is built in bounded time).
    let (bulk_s, store) = {
        let user_id = user_id.clone();
        let key_id = key_id.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<(f64, Store)> {
            let started = Instant::now();
            let mut i = writer_events;
            let end = writer_events + bulk_events;
            let mut batch = Vec::with_capacity(50_000);
            while i < end {
                batch.clear();
                let stop = (i + 50_000).min(end);
                batch.extend((i..stop).map(|j| event(j, &user_id, &key_id, t0_ms, total)));
                store.write_events(&batch)?;
                i = stop;
            }
            Ok((started.elapsed().as_secs_f64(), store))
        })
        .await??
    };

    // 3. Stats: sum one account's rollups (every hour of the 30 days).
    let (stats_ms, rows, stats_calls) = {
        let store = store.clone();
        let user_id = user_id.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<(f64, u64, u64)> {
            let mut times = Vec::new();
            let mut rows = 0;
            let mut calls = 0;
            for _ in 0..5 {
                let t = Instant::now();
                let (total, n) = stats_scan(&store, &user_id)?;
                times.push(t.elapsed());
                rows = n;
                calls = total.calls;
            }
            times.sort();
            Ok((times[2].as_secs_f64() * 1e3, rows, calls))
        })
        .await??
    };
    drop(store);

    // 4. Restart: everything `llmobserve` does before it can serve.
    let t = Instant::now();
    let core = llmobserve::app::build_core(config).await?;
    let restart = t.elapsed();
    core.writer.shutdown().await;
    let file = std::fs::metadata(data.join(llmobserve::app::DB_FILE))?.len();

    Ok(StoreReport {
        writer_events: written,
        writer_events_per_s: written as f64 / writer_s,
        writer_dropped: dropped,
        writer_batches: batches,
        bulk_events,
        bulk_load_s: bulk_s,
        bulk_events_per_s: bulk_events as f64 / bulk_s.max(1e-9),
        db_file_mib: file as f64 / (1024.0 * 1024.0),
        models: rows,
        stats_calls,
        stats_ms,
        restart_ms: restart.as_secs_f64() * 1e3,
    })
}

/// `/api/stats` for the dashboard's default range (the last 30 days, which starts
/// mid-hour: whole hours come from rollups, the two edge hours from raw events).
fn stats_scan(store: &Store, user_id: &str) -> anyhow::Result<(Totals, u64)> {
    let now = llmobserve::time::now_ms();
    let f = QueryFilter {
        from_ms: now - 31 * 24 * 3_600_000,
        ..QueryFilter::all(now)
    };
    let stats = store.stats(user_id, &f)?;
    Ok((stats.total, stats.by_model.len() as u64))
}
