//! `llmobserve-soak`: the release binary under a fixed request rate for a long time,
//! watching its memory, file descriptors and latency.
//!
//! ```sh
//! cargo build --release && target/release/llmobserve-soak --minutes 10 --rate 100
//! ```
//!
//! An in-process mock upstream answers a chat.completion JSON and a 20-chunk SSE stream
//! (half the calls each). LLMObserve runs as a child process in pass-through mode with
//! metering and storing on. Every 10 s the child's RSS and open descriptors are sampled;
//! latency is summarized per minute. The run fails (exit 1) if RSS grows faster than
//! 1 MiB/min over the second half, descriptors leak, or the last minute's p99 is more
//! than 3× the first's. Results: a table on stdout and `target/bench/soak.json`.

#![allow(clippy::print_stdout)] // a command-line report

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncBufReadExt, BufReader};

#[derive(Debug, Parser)]
#[command(
    name = "llmobserve-soak",
    about = "Fixed-rate soak of the llmobserve binary"
)]
struct Cli {
    /// How long to run.
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
    /// Requests per second (half JSON, half SSE).
    #[arg(long, default_value_t = 100)]
    rate: u32,
    /// The llmobserve binary (default: next to this one).
    #[arg(long)]
    binary: Option<PathBuf>,
    /// Where soak.json goes.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// redb page cache of the soaked process (`--db-cache-mib`). Small by default so the
    /// cache is full within the first minute and any later growth is a leak: with the
    /// default 16 MiB and ~240-byte events, filling it takes ~8 minutes at 100 req/s.
    #[arg(long, default_value_t = 2)]
    db_cache_mib: u64,
}

const CHAT_JSON: &str = r#"{"id":"chatcmpl-soak","object":"chat.completion","created":1761904387,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"Paris."},"finish_reason":"stop"}],"usage":{"prompt_tokens":24,"completion_tokens":8,"total_tokens":32}}"#;

fn sse_chunk(i: usize) -> String {
    format!(
        "data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"tok{i} \"}},\"finish_reason\":null}}]}}\n\n"
    )
}

const SSE_USAGE: &str = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[],\"usage\":{\"prompt_tokens\":24,\"completion_tokens\":20,\"total_tokens\":44}}\n\ndata: [DONE]\n\n";

type MockBody =
    http_body_util::Either<Full<Bytes>, http_body_util::channel::Channel<Bytes, Infallible>>;

/// Answers `/v1/chat/completions` with JSON, or with a paced 20-chunk SSE stream when
/// the request asks for a stream.
async fn mock_reply(
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<MockBody>, Infallible> {
    let body = req
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let streamed = body.windows(13).any(|w| w == br#""stream":true"#);
    if !streamed {
        let mut r = hyper::Response::new(http_body_util::Either::Left(Full::new(
            Bytes::from_static(CHAT_JSON.as_bytes()),
        )));
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        return Ok(r);
    }
    let (mut tx, channel) = http_body_util::channel::Channel::<Bytes, Infallible>::new(4);
    tokio::spawn(async move {
        for i in 0..20 {
            if tx.send_data(Bytes::from(sse_chunk(i))).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let _ = tx.send_data(Bytes::from_static(SSE_USAGE.as_bytes())).await;
    });
    let mut r = hyper::Response::new(http_body_util::Either::Right(channel));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/event-stream"),
    );
    Ok(r)
}

async fn start_mock() -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), hyper::service::service_fn(mock_reply))
                    .await;
            });
        }
    });
    Ok(format!("http://{addr}"))
}

fn create_account(bin: &Path, data_dir: &Path) -> anyhow::Result<String> {
    let out = std::process::Command::new(bin)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["account", "create", "--email", "soak@example.com"])
        .output()
        .context("running llmobserve account create")?;
    if !out.status.success() {
        bail!(
            "account create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with("llmo_sk_"))
        .map(str::to_owned)
        .context("no key printed")
}

async fn start_server(
    bin: &Path,
    data_dir: &Path,
    upstream: &str,
    db_cache_mib: u64,
) -> anyhow::Result<(tokio::process::Child, String)> {
    let mut child = tokio::process::Command::new(bin)
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--db-cache-mib")
        .arg(db_cache_mib.to_string())
        .args([
            "--proxy-addr",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ])
        .env("LLMO_OPENAI_BASE_URL", upstream)
        .env("LLMO_LOG", "warn,llmobserve=info")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("starting llmobserve")?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let proxy = loop {
        let line = lines
            .next_line()
            .await?
            .context("llmobserve exited before listening")?;
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
            && let Some(p) = v["fields"]["proxy"].as_str()
        {
            break p.to_owned();
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, proxy))
}

/// (RSS in KiB, open descriptors) of a process, from /proc.
fn sample(pid: u32) -> (u64, usize) {
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0);
    (rss, fds)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Median of the samples between two fractions of the run.
fn median_of(v: &[usize], from: f64, to: f64) -> usize {
    let (a, b) = (
        (v.len() as f64 * from) as usize,
        (v.len() as f64 * to) as usize,
    );
    let mut part = v
        .get(a..b.max(a + 1).min(v.len()))
        .unwrap_or_default()
        .to_vec();
    part.sort_unstable();
    part.get(part.len() / 2).copied().unwrap_or(0)
}

/// Least-squares slope of (minutes, MiB) points, in MiB per minute.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let num: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let den: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if den == 0.0 { 0.0 } else { num / den }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let bin = match cli.binary {
        Some(b) => b,
        None => std::env::current_exe()?.with_file_name("llmobserve"),
    };
    let data_dir = std::env::temp_dir().join(format!("llmobserve-soak-{}", std::process::id()));
    std::fs::create_dir_all(&data_dir)?;
    let upstream = start_mock().await?;
    let key = create_account(&bin, &data_dir)?;
    let (mut child, proxy) = start_server(&bin, &data_dir, &upstream, cli.db_cache_mib).await?;
    let pid = child.id().context("child pid")?;

    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let latencies: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let total = Duration::from_secs_f64(cli.minutes * 60.0);
    let interval = Duration::from_secs(1) / cli.rate.max(1);
    let start = Instant::now();
    let mut next_sample = start;
    let mut minute_end = start + Duration::from_secs(60);
    let mut samples: Vec<(f64, u64, usize)> = Vec::new();
    let mut minutes: Vec<(u64, Duration, Duration, u64)> = Vec::new();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n: u64 = 0;
    println!(
        "soak: {} req/s for {:.1} min against {proxy} (pid {pid})",
        cli.rate, cli.minutes
    );
    while start.elapsed() < total {
        ticker.tick().await;
        let body = if n.is_multiple_of(2) {
            r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#
        } else {
            r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}"#
        };
        n += 1;
        let req = hyper::Request::post(format!("{proxy}/v1/chat/completions"))
            .header("x-llmobserve-key", &key)
            .header("authorization", "Bearer sk-soak")
            .header("x-customer-id", format!("c{}", n % 50))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(body.as_bytes())))?;
        let (client, lat, errs) = (client.clone(), latencies.clone(), errors.clone());
        tokio::spawn(async move {
            let t = Instant::now();
            let ok = match client.request(req).await {
                Ok(r) if r.status() == 200 => r.into_body().collect().await.is_ok(),
                _ => false,
            };
            if ok {
                lat.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(t.elapsed());
            } else {
                errs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
        let now = Instant::now();
        if now >= next_sample {
            let (rss, fds) = sample(pid);
            samples.push((start.elapsed().as_secs_f64() / 60.0, rss, fds));
            next_sample += Duration::from_secs(10);
        }
        if now >= minute_end {
            let mut l = std::mem::take(&mut *latencies.lock().unwrap_or_else(|p| p.into_inner()));
            l.sort();
            let (rss, _) = sample(pid);
            let row = (
                l.len() as u64,
                percentile(&l, 0.5),
                percentile(&l, 0.99),
                rss,
            );
            println!(
                "minute {:>2}: {:>6} ok  p50 {:>7.2} ms  p99 {:>7.2} ms  rss {:>6.1} MiB",
                minutes.len() + 1,
                row.0,
                row.1.as_secs_f64() * 1e3,
                row.2.as_secs_f64() * 1e3,
                row.3 as f64 / 1024.0
            );
            minutes.push(row);
            minute_end += Duration::from_secs(60);
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, fds_end) = sample(pid);
    let _ = child.start_kill();
    let _ = std::fs::remove_dir_all(&data_dir);

    let half = samples.len() / 2;
    let second_half: Vec<(f64, f64)> = samples[half..]
        .iter()
        .map(|s| (s.0, s.1 as f64 / 1024.0))
        .collect();
    let growth = slope(&second_half);
    let fds_start = samples.get(1).map_or(0, |s| s.2);
    let first_p99 = minutes.first().map_or(Duration::ZERO, |m| m.2);
    let last_p99 = minutes.last().map_or(Duration::ZERO, |m| m.2);
    let errors = errors.load(std::sync::atomic::Ordering::Relaxed);
    let rss_start = samples.get(1).map_or(0, |s| s.1);
    let rss_end = samples.last().map_or(0, |s| s.1);
    println!(
        "\nrequests {n}, errors {errors}; RSS {:.1} → {:.1} MiB, growth over the second half {growth:+.3} MiB/min; fds {fds_start} → {fds_end}; p99 first {:.2} ms, last {:.2} ms",
        rss_start as f64 / 1024.0,
        rss_end as f64 / 1024.0,
        first_p99.as_secs_f64() * 1e3,
        last_p99.as_secs_f64() * 1e3
    );
    std::fs::create_dir_all(&cli.out)?;
    let json = serde_json::json!({
        "minutes": cli.minutes, "rate": cli.rate, "requests": n, "errors": errors,
        "rss_kib": samples.iter().map(|s| [s.0, s.1 as f64]).collect::<Vec<_>>(),
        "fds": samples.iter().map(|s| s.2).collect::<Vec<_>>(),
        "fds_end": fds_end,
        "rss_growth_mib_per_min_second_half": growth,
        "per_minute": minutes.iter().map(|m| serde_json::json!({
            "ok": m.0, "p50_ms": m.1.as_secs_f64() * 1e3, "p99_ms": m.2.as_secs_f64() * 1e3, "rss_mib": m.3 as f64 / 1024.0
        })).collect::<Vec<_>>(),
    });
    std::fs::write(cli.out.join("soak.json"), serde_json::to_vec_pretty(&json)?)?;

    let mut failures = Vec::new();
    if growth > 1.0 {
        failures.push(format!("memory grows {growth:.3} MiB/min (limit 1)"));
    }
    // Open descriptors move with the number of live connections; a leak shows as a
    // rising level. Compare the second quarter's median with the last quarter's.
    let fds: Vec<usize> = samples.iter().map(|s| s.2).collect();
    let (q2, q4) = (median_of(&fds, 0.25, 0.5), median_of(&fds, 0.75, 1.0));
    if q4 > q2 + 8 {
        failures.push(format!("descriptors rose from ~{q2} to ~{q4}"));
    }
    if minutes.len() >= 2 && last_p99 > first_p99 * 3 + Duration::from_millis(5) {
        failures.push("p99 not steady".to_owned());
    }
    if errors > n / 1000 {
        failures.push(format!("{errors} failed requests"));
    }
    if failures.is_empty() {
        println!("PASS");
        Ok(())
    } else {
        bail!("soak failed: {}", failures.join("; "))
    }
}
