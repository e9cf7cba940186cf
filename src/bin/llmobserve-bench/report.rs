//! Aggregation (medians over rounds) and output: the text table and the JSON file.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use serde::Serialize;

use crate::load::{LoadResult, percentile};
use crate::store::StoreReport;
use crate::{ProcUsage, Sides};

/// One target's numbers from one round.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Round {
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub ttfb_p50_us: f64,
    pub ttfb_p99_us: f64,
    pub ttlb_p50_us: f64,
    pub ttlb_p99_us: f64,
    pub errors: u64,
    pub wrong_bytes: u64,
    pub requests: u64,
    pub peak_rss_kib: u64,
    /// CPU time (user + system) the target process spent per answered request, µs.
    /// Less noisy than throughput on a shared machine: it does not depend on how the
    /// load generator and the mock share the cores.
    pub cpu_us_per_req: f64,
    /// The same split into user and kernel time.
    pub user_us_per_req: f64,
    pub sys_us_per_req: f64,
    /// Of `cpu_us_per_req`, what LLMObserve's event writer thread spent (its share of
    /// storing the calls; 0 for the other targets).
    pub writer_us_per_req: f64,
    /// The target's threads preempted (involuntary context switches), and blocked
    /// (voluntary ones), per second of the window.
    pub preempted_per_s: f64,
    pub blocked_per_s: f64,
    /// CPU time the mock upstream and the load generator spent per answered request
    /// meanwhile (for the direct target the mock is the target itself).
    pub mock_us_per_req: f64,
    pub client_us_per_req: f64,
}

impl Round {
    pub fn from_result(
        r: &LoadResult,
        peak_rss_kib: u64,
        usage: ProcUsage,
        sides: Sides,
        window: Duration,
    ) -> Round {
        let per_req = |us: u64| {
            if r.answered > 0 {
                us as f64 / r.answered as f64
            } else {
                0.0
            }
        };
        let per_s = |n: u64| n as f64 / window.as_secs_f64().max(1e-9);
        Round {
            rps: r.rps(),
            p50_us: percentile(&r.ttlb_us, 0.50),
            p99_us: percentile(&r.ttlb_us, 0.99),
            p999_us: percentile(&r.ttlb_us, 0.999),
            ttfb_p50_us: percentile(&r.ttfb_us, 0.50),
            ttfb_p99_us: percentile(&r.ttfb_us, 0.99),
            ttlb_p50_us: percentile(&r.ttlb_us, 0.50),
            ttlb_p99_us: percentile(&r.ttlb_us, 0.99),
            errors: r.errors,
            wrong_bytes: r.wrong_bytes,
            requests: r.ok,
            peak_rss_kib,
            cpu_us_per_req: per_req(usage.user_us + usage.sys_us),
            user_us_per_req: per_req(usage.user_us),
            sys_us_per_req: per_req(usage.sys_us),
            writer_us_per_req: per_req(usage.writer_us),
            preempted_per_s: per_s(usage.involuntary),
            blocked_per_s: per_s(usage.voluntary),
            mock_us_per_req: per_req(sides.mock_us),
            client_us_per_req: per_req(sides.client_us),
        }
    }
}

/// Median of each field over rounds (errors and byte mismatches are summed; RSS is the max).
pub fn median(rounds: &[Round]) -> Round {
    let med = |f: fn(&Round) -> f64| {
        let mut v: Vec<f64> = rounds.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        if v.is_empty() { 0.0 } else { v[v.len() / 2] }
    };
    Round {
        rps: med(|r| r.rps),
        p50_us: med(|r| r.p50_us),
        p99_us: med(|r| r.p99_us),
        p999_us: med(|r| r.p999_us),
        ttfb_p50_us: med(|r| r.ttfb_p50_us),
        ttfb_p99_us: med(|r| r.ttfb_p99_us),
        ttlb_p50_us: med(|r| r.ttlb_p50_us),
        ttlb_p99_us: med(|r| r.ttlb_p99_us),
        errors: rounds.iter().map(|r| r.errors).sum(),
        wrong_bytes: rounds.iter().map(|r| r.wrong_bytes).sum(),
        requests: rounds.iter().map(|r| r.requests).sum(),
        peak_rss_kib: rounds.iter().map(|r| r.peak_rss_kib).max().unwrap_or(0),
        cpu_us_per_req: med(|r| r.cpu_us_per_req),
        user_us_per_req: med(|r| r.user_us_per_req),
        sys_us_per_req: med(|r| r.sys_us_per_req),
        writer_us_per_req: med(|r| r.writer_us_per_req),
        preempted_per_s: med(|r| r.preempted_per_s),
        blocked_per_s: med(|r| r.blocked_per_s),
        mock_us_per_req: med(|r| r.mock_us_per_req),
        client_us_per_req: med(|r| r.client_us_per_req),
    }
}

/// Every round of every (scenario, connections, target).
#[derive(Debug, Default, Serialize)]
pub struct Runs {
    /// scenario → connections → target → rounds.
    pub rounds: BTreeMap<String, BTreeMap<usize, BTreeMap<String, Vec<Round>>>>,
}

impl Runs {
    pub fn push(&mut self, scenario: &str, conns: usize, target: &str, r: Round) {
        self.rounds
            .entry(scenario.to_owned())
            .or_default()
            .entry(conns)
            .or_default()
            .entry(target.to_owned())
            .or_default()
            .push(r);
    }

    /// Medians: scenario → connections → target → median round.
    pub fn medians(&self) -> BTreeMap<String, BTreeMap<usize, BTreeMap<String, Round>>> {
        self.rounds
            .iter()
            .map(|(s, by_c)| {
                let by_c = by_c
                    .iter()
                    .map(|(c, by_t)| {
                        let by_t = by_t.iter().map(|(t, r)| (t.clone(), median(r))).collect();
                        (*c, by_t)
                    })
                    .collect();
                (s.clone(), by_c)
            })
            .collect()
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct MemoryReport {
    pub idle_rss_kib: u64,
    pub streams: usize,
    pub short_chunks: usize,
    pub long_chunks: usize,
    pub chunk_delay_ms: u64,
    pub short_peak_rss_kib: u64,
    pub long_peak_rss_kib: u64,
    pub baseline_idle_rss_kib: u64,
    pub baseline_long_peak_rss_kib: u64,
    pub short_errors: u64,
    pub long_errors: u64,
    /// Streams finished / streams started, and TTLB p99 through LLMObserve and direct.
    pub long_ok: u64,
    pub long_ttlb_p99_ms: f64,
    pub direct_long_ttlb_p99_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub machine: String,
    /// How the proxies reach the mock upstream.
    pub upstream: String,
    pub when_unix_ms: i64,
    pub quick: bool,
    pub seconds_per_run: f64,
    pub rounds: usize,
    pub medians: BTreeMap<String, BTreeMap<usize, BTreeMap<String, Round>>>,
    pub runs: Runs,
    pub memory: Option<MemoryReport>,
    pub store: Option<StoreReport>,
}

pub const DIRECT: &str = "direct";
pub const BASELINE: &str = "pass-through";
pub const NGINX: &str = "nginx";
pub const LLMOBSERVE: &str = "llmobserve";

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The human-readable tables.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "machine: {}", r.machine);
    let _ = writeln!(out, "upstream: {}", r.upstream);
    let _ = writeln!(
        out,
        "{} rounds x {:.1} s per target and level, targets interleaved; medians over rounds.\n",
        r.rounds, r.seconds_per_run
    );
    for (scenario, by_c) in &r.medians {
        let streamed = scenario.starts_with("stream");
        let _ = writeln!(out, "## {scenario}");
        if streamed {
            let _ = writeln!(
                out,
                "| conns | target | req/s | TTFB p50 µs | TTFB p99 µs | TTLB p50 µs | TTLB p99 µs | p99.9 µs | +TTFB p99 | +TTLB p99 | × pass-through | CPU µs/req | × pass-through CPU | peak RSS MiB | errors |"
            );
            let _ = writeln!(
                out,
                "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
            );
        } else {
            let _ = writeln!(
                out,
                "| conns | target | req/s | p50 µs | p99 µs | p99.9 µs | +p50 µs | +p99 µs | × pass-through | CPU µs/req | × pass-through CPU | peak RSS MiB | errors |"
            );
            let _ = writeln!(
                out,
                "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
            );
        }
        for (conns, by_t) in by_c {
            let direct = by_t.get(DIRECT).copied().unwrap_or_default();
            let base = by_t.get(BASELINE).copied().unwrap_or_default();
            for t in [DIRECT, BASELINE, NGINX, LLMOBSERVE] {
                let Some(m) = by_t.get(t) else { continue };
                let ratio = if t == DIRECT || base.rps == 0.0 {
                    "".to_owned()
                } else {
                    format!("{:.2}", m.rps / base.rps)
                };
                let added = |a: f64, b: f64| {
                    if t == DIRECT {
                        "".to_owned()
                    } else {
                        format!("{:+.0}", a - b)
                    }
                };
                let cpu_ratio = if t == DIRECT || base.cpu_us_per_req == 0.0 {
                    "".to_owned()
                } else {
                    format!("{:.2}", m.cpu_us_per_req / base.cpu_us_per_req)
                };
                let bad = m.errors + m.wrong_bytes;
                if streamed {
                    let _ = writeln!(
                        out,
                        "| {conns} | {t} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {} | {ratio} | {:.1} | {cpu_ratio} | {:.1} | {bad} |",
                        m.rps,
                        m.ttfb_p50_us,
                        m.ttfb_p99_us,
                        m.ttlb_p50_us,
                        m.ttlb_p99_us,
                        m.p999_us,
                        added(m.ttfb_p99_us, direct.ttfb_p99_us),
                        added(m.ttlb_p99_us, direct.ttlb_p99_us),
                        m.cpu_us_per_req,
                        mib(m.peak_rss_kib),
                    );
                } else {
                    let _ = writeln!(
                        out,
                        "| {conns} | {t} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {} | {ratio} | {:.1} | {cpu_ratio} | {:.1} | {bad} |",
                        m.rps,
                        m.p50_us,
                        m.p99_us,
                        m.p999_us,
                        added(m.p50_us, direct.p50_us),
                        added(m.p99_us, direct.p99_us),
                        m.cpu_us_per_req,
                        mib(m.peak_rss_kib),
                    );
                }
            }
        }
        out.push('\n');
    }
    render_cpu_split(&mut out, r);
    render_cpu_budget(&mut out, r);
    render_against_nginx(&mut out, r);
    if let Some(m) = &r.memory {
        let _ = writeln!(out, "## memory (LLMObserve process)");
        let _ = writeln!(out, "| measure | value |\n|---|---:|");
        let _ = writeln!(out, "| idle RSS | {:.1} MiB |", mib(m.idle_rss_kib));
        let _ = writeln!(
            out,
            "| peak RSS, {} streams x {} chunks ({} ms apart) | {:.1} MiB |",
            m.streams,
            m.short_chunks,
            m.chunk_delay_ms,
            mib(m.short_peak_rss_kib)
        );
        let _ = writeln!(
            out,
            "| peak RSS, {} streams x {} chunks | {:.1} MiB |",
            m.streams,
            m.long_chunks,
            mib(m.long_peak_rss_kib)
        );
        let per = |p: u64| (p.saturating_sub(m.idle_rss_kib)) as f64 / m.streams.max(1) as f64;
        let _ = writeln!(
            out,
            "| per stream (peak − idle) / streams, short / long | {:.1} / {:.1} KiB |",
            per(m.short_peak_rss_kib),
            per(m.long_peak_rss_kib)
        );
        let _ = writeln!(
            out,
            "| pass-through proxy: idle / long-stream peak | {:.1} / {:.1} MiB |",
            mib(m.baseline_idle_rss_kib),
            mib(m.baseline_long_peak_rss_kib)
        );
        let _ = writeln!(
            out,
            "| long streams: finished, TTLB p99 via LLMObserve / direct | {} of {}, {:.0} / {:.0} ms |",
            m.long_ok, m.streams, m.long_ttlb_p99_ms, m.direct_long_ttlb_p99_ms
        );
        let _ = writeln!(
            out,
            "| stream errors short / long | {} / {} |\n",
            m.short_errors, m.long_errors
        );
    }
    if let Some(s) = &r.store {
        let _ = writeln!(out, "## store");
        let _ = writeln!(out, "| measure | value |\n|---|---:|");
        let _ = writeln!(
            out,
            "| writer: events committed via EventSink | {} in {} batches, {:.0} events/s, {} dropped |",
            s.writer_events, s.writer_batches, s.writer_events_per_s, s.writer_dropped
        );
        let _ = writeln!(
            out,
            "| bulk load via Store::write_events | {} events in {:.1} s ({:.0}/s), file {:.0} MiB |",
            s.bulk_events, s.bulk_load_s, s.bulk_events_per_s, s.db_file_mib
        );
        let _ = writeln!(
            out,
            "| /api/stats query (Store::stats, 31 days) over {} events, {} models | {:.2} ms |",
            s.writer_events + s.bulk_events,
            s.models,
            s.stats_ms
        );
        if s.stats_calls != s.writer_events + s.bulk_events {
            let _ = writeln!(
                out,
                "| **stats counted {} calls, expected {}** | mismatch |",
                s.stats_calls,
                s.writer_events + s.bulk_events
            );
        }
        let _ = writeln!(out, "| restart (build_core) | {:.1} ms |\n", s.restart_ms);
    }
    out
}

/// The `--callgrind` table: instructions per request, and LLMObserve over the pass-through.
pub fn render_callgrind(counts: &[crate::callgrind::Count]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## instructions per request (callgrind, 1 connection)\n\
         | scenario | target | requests | instructions/request | of which event writer | request path × pass-through | total × pass-through | errors |\n\
         |---|---|---:|---:|---:|---:|---:|---:|"
    );
    for c in counts {
        let base = counts
            .iter()
            .find(|b| b.scenario == c.scenario && b.target == BASELINE)
            .map_or(0.0, |b| b.instructions_per_request);
        let ratio = |n: f64| {
            if c.target == BASELINE || base == 0.0 {
                String::new()
            } else {
                format!("{:.2}", n / base)
            }
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.0} | {:.0} | {} | {} | {} |",
            c.scenario,
            c.target,
            c.requests,
            c.instructions_per_request,
            c.writer_per_request,
            ratio(c.instructions_per_request - c.writer_per_request),
            ratio(c.instructions_per_request),
            c.errors
        );
    }
    out
}

/// Where each proxy's CPU goes: user and kernel time per request, the part of it
/// LLMObserve's event writer spent, and how often its threads were preempted or blocked.
/// On a shared machine a busier proxy is preempted more, and that shows up as kernel
/// time and lost throughput.
fn render_cpu_split(out: &mut String, r: &Report) {
    let _ = writeln!(out, "## CPU split and context switches (proxies)");
    let _ = writeln!(
        out,
        "| scenario | conns | target | user µs/req | kernel µs/req | of which writer µs/req | preempted /s | blocked /s |"
    );
    let _ = writeln!(out, "|---|---:|---|---:|---:|---:|---:|---:|");
    for (scenario, by_c) in &r.medians {
        for (conns, by_t) in by_c {
            for t in [BASELINE, NGINX, LLMOBSERVE] {
                let Some(m) = by_t.get(t) else { continue };
                let _ = writeln!(
                    out,
                    "| {scenario} | {conns} | {t} | {:.1} | {:.1} | {} | {:.0} | {:.0} |",
                    m.user_us_per_req,
                    m.sys_us_per_req,
                    if t == LLMOBSERVE {
                        format!("{:.1}", m.writer_us_per_req)
                    } else {
                        String::new()
                    },
                    m.preempted_per_s,
                    m.blocked_per_s,
                );
            }
        }
    }
    out.push('\n');
}

/// LLMObserve beside nginx, where nginx was measured: throughput, CPU a request and the
/// p99 each adds over a direct call (time to first byte for streams).
fn render_against_nginx(out: &mut String, r: &Report) {
    let mut rows = String::new();
    for (scenario, by_c) in &r.medians {
        let streamed = scenario.starts_with("stream");
        for (conns, by_t) in by_c {
            let (Some(n), Some(l)) = (by_t.get(NGINX), by_t.get(LLMOBSERVE)) else {
                continue;
            };
            let direct = by_t.get(DIRECT).copied().unwrap_or_default();
            let p99 = |m: &Round| if streamed { m.ttfb_p99_us } else { m.p99_us };
            let added = |m: &Round| {
                if direct.rps > 0.0 {
                    format!("{:+.0}", p99(m) - p99(&direct))
                } else {
                    String::new()
                }
            };
            let ratio = if n.rps > 0.0 { l.rps / n.rps } else { 0.0 };
            let _ = writeln!(
                rows,
                "| {scenario} | {conns} | {:.0} | {:.0} | {ratio:.2} | {:.1} | {:.1} | {} | {} |",
                n.rps,
                l.rps,
                n.cpu_us_per_req,
                l.cpu_us_per_req,
                added(n),
                added(l),
            );
        }
    }
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(out, "## LLMObserve against nginx");
    let _ = writeln!(
        out,
        "| scenario | conns | nginx req/s | LLMObserve req/s | × nginx | nginx CPU µs/req | LLMObserve CPU µs/req | nginx +p99 µs | LLMObserve +p99 µs |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    out.push_str(&rows);
    let _ = writeln!(
        out,
        "(+p99: over a direct call; time to first byte for streams)\n"
    );
}

/// The throughput target of the closed-loop runs: LLMObserve at this fraction of the
/// pass-through's req/s (issue 5).
const THROUGHPUT_TARGET: f64 = 0.9;

/// Closed-loop throughput on a machine whose cores the proxy, the mock and the load
/// generator share, read as CPU: each answered request costs all three some CPU time, so
/// req/s goes as the inverse of their sum.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Budget {
    /// CPU per request of all three processes, pass-through and LLMObserve runs.
    base_total_us: f64,
    llmo_total_us: f64,
    /// The throughput ratio those sums predict.
    predicted: f64,
    /// The CPU per request LLMObserve may use for [`THROUGHPUT_TARGET`], the mock and
    /// the load generator costing what they did in its run.
    allowed_us: f64,
}

/// From the median rounds: each term is its own median over rounds, so a total is a sum
/// of medians, close enough to the median of sums for a report.
fn budget(base: &Round, llmo: &Round) -> Budget {
    let total = |m: &Round| m.cpu_us_per_req + m.mock_us_per_req + m.client_us_per_req;
    let (base_total_us, llmo_total_us) = (total(base), total(llmo));
    Budget {
        base_total_us,
        llmo_total_us,
        predicted: if llmo_total_us > 0.0 {
            base_total_us / llmo_total_us
        } else {
            0.0
        },
        allowed_us: base_total_us / THROUGHPUT_TARGET
            - llmo.mock_us_per_req
            - llmo.client_us_per_req,
    }
}

/// For each saturated closed-loop run: what every process spent per request, the
/// throughput ratio that predicts, and how much CPU a call LLMObserve may use to stay at
/// 0.9x the pass-through. Tells "the proxy got slower" from "the machine was busier", and
/// says in microseconds how far a change has to go.
fn render_cpu_budget(out: &mut String, r: &Report) {
    let _ = writeln!(
        out,
        "## CPU budget (closed loop; proxy, mock and load generator share the cores)"
    );
    let _ = writeln!(
        out,
        "| scenario | conns | mock µs/req pass-through / LLMObserve | load generator µs/req | all three µs/req | × predicted from CPU | × measured | LLMObserve may use for {THROUGHPUT_TARGET}× µs/req | uses |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (scenario, by_c) in &r.medians {
        if scenario.ends_with("-paced") {
            continue;
        }
        for (conns, by_t) in by_c {
            let (Some(base), Some(llmo)) = (by_t.get(BASELINE), by_t.get(LLMOBSERVE)) else {
                continue;
            };
            // One connection is bound by round trips, not by CPU.
            if *conns < 2 || base.rps == 0.0 {
                continue;
            }
            let b = budget(base, llmo);
            let _ = writeln!(
                out,
                "| {scenario} | {conns} | {:.1} / {:.1} | {:.1} / {:.1} | {:.1} / {:.1} | {:.2} | {:.2} | {:.1} | {:.1} |",
                base.mock_us_per_req,
                llmo.mock_us_per_req,
                base.client_us_per_req,
                llmo.client_us_per_req,
                b.base_total_us,
                b.llmo_total_us,
                b.predicted,
                llmo.rps / base.rps,
                b.allowed_us,
                llmo.cpu_us_per_req,
            );
        }
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_counts_every_process() {
        let base = Round {
            cpu_us_per_req: 20.0,
            mock_us_per_req: 9.0,
            client_us_per_req: 10.0,
            ..Round::default()
        };
        let llmo = Round {
            cpu_us_per_req: 26.0,
            mock_us_per_req: 9.0,
            client_us_per_req: 11.0,
            ..Round::default()
        };
        let b = budget(&base, &llmo);
        assert_eq!((b.base_total_us, b.llmo_total_us), (39.0, 46.0));
        assert!((b.predicted - 39.0 / 46.0).abs() < 1e-12);
        // 39 / 0.9 = 43.33 for all three, of which mock and client take 20.
        assert!((b.allowed_us - (39.0 / 0.9 - 20.0)).abs() < 1e-12);
    }

    #[test]
    fn budget_of_an_empty_run_is_no_division_by_zero() {
        let b = budget(&Round::default(), &Round::default());
        assert_eq!((b.predicted, b.allowed_us), (0.0, 0.0));
    }
}
