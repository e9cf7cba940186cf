//! `llmobserve-bench`: LLMObserve against a direct call and a plain pass-through proxy,
//! on one machine, in one run, targets interleaved.
//!
//! ```sh
//! cargo run --release --bin llmobserve-bench            # full run (~5 min)
//! cargo run --release --bin llmobserve-bench -- --quick # seconds, for CI
//! ```
//!
//! The mock upstream, the pass-through proxy and LLMObserve each run as a child process
//! (this same binary, `serve <role>`), so each has its own runtime and its RSS is its
//! own; the load generator runs here on one thread. Results: a table on stdout,
//! `target/bench/results.json` and `target/bench/summary.md`.
//!
//! Modules: [`mock`] (upstream), [`baseline`] (pass-through), [`nginx`] (nginx as a
//! second pass-through, when installed), [`load`] (client), [`report`] (medians, table),
//! [`store`] (writer, stats, restart).

mod baseline;
mod callgrind;
mod load;
mod mock;
mod nginx;
mod report;
mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use clap::{Parser, Subcommand, ValueEnum};
use http::{HeaderName, HeaderValue};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

use load::{LoadSpec, Scenario};
use report::{BASELINE, DIRECT, LLMOBSERVE, MemoryReport, NGINX, Report, Round, Runs};

// The same allocator as the `llmobserve` binary, for every role (mock, pass-through and
// LLMObserve alike), so the comparison is of the proxies, not of allocators.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "llmobserve-bench",
    about = "Benchmark LLMObserve against a direct call and a plain proxy"
)]
struct Cli {
    /// A short run for CI: one level (64 connections), short windows, small store run.
    #[arg(long)]
    quick: bool,
    /// Measured seconds per target, level and round.
    #[arg(long)]
    seconds: Option<f64>,
    /// Rounds (targets interleaved within each); medians are reported.
    #[arg(long)]
    rounds: Option<usize>,
    /// Connection counts to measure.
    #[arg(long, value_delimiter = ',')]
    levels: Option<Vec<usize>>,
    /// Content chunks per streamed response.
    #[arg(long, default_value_t = mock::DEFAULT_CHUNKS)]
    stream_chunks: usize,
    /// Concurrent slow streams in the memory run.
    #[arg(long, default_value_t = 1000)]
    slow_streams: usize,
    /// Events pushed through the writer in the store run.
    #[arg(long)]
    writer_events: Option<u64>,
    /// Events bulk-loaded for the stats and restart measurements.
    #[arg(long)]
    store_events: Option<u64>,
    /// Worker threads of the pass-through, each with its own current-thread runtime as
    /// LLMObserve's proxy runs (default: one per core). 0 runs it on one multi-thread
    /// runtime instead, as a `#[tokio::main]` forwarder would.
    #[arg(long)]
    baseline_workers: Option<usize>,
    /// Targets to measure (for profiling one of them): direct, pass-through, nginx,
    /// llmobserve.
    #[arg(long, value_delimiter = ',')]
    targets: Option<Vec<String>>,
    /// nginx as a second pass-through target: `auto` (when installed: on PATH or
    /// /usr/sbin), `off`, or the path of an nginx binary.
    #[arg(long, default_value = "auto")]
    nginx: String,
    /// Count instructions per request under valgrind's callgrind instead of timing:
    /// this many requests per scenario and proxy, on one connection. Noise-free, so it
    /// is the way to compare two builds of the hot path on a busy machine.
    #[arg(long, value_name = "REQUESTS")]
    callgrind: Option<u64>,
    /// Total rate of the paced JSON run (64 connections, open loop, below every
    /// target's capacity: added latency without queueing). 0 skips it.
    #[arg(long, default_value_t = 10_000.0)]
    paced_json_rate: f64,
    /// Total rate of the paced stream run (64 connections). 0 skips it.
    #[arg(long, default_value_t = 2_000.0)]
    paced_stream_rate: f64,
    /// Reach the upstream as the providers are reached: over TLS, h2 or HTTP/1.1 by ALPN
    /// (both proxies pick h2), instead of plain HTTP/1.1. The mock then also serves TLS
    /// with the test certificate of `certs/`, which both proxies trust; the direct target
    /// stays plain (so "added" includes the TLS hop) and nginx is left out.
    #[arg(long)]
    upstream_tls: bool,
    /// Skip the memory run.
    #[arg(long)]
    no_memory: bool,
    /// Skip the store run.
    #[arg(long)]
    no_store: bool,
    /// Where results.json and summary.md go.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    #[command(subcommand)]
    serve: Option<Serve>,
}

#[derive(Debug, Subcommand)]
enum Serve {
    /// Internal: run one server role until stdin closes, after printing `READY addr [key]`.
    Serve {
        role: Role,
        #[arg(long)]
        upstream: Option<SocketAddr>,
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Baseline only: its worker threads (0: the multi-thread runtime alone).
        #[arg(long)]
        workers: Option<usize>,
        /// The mock: serve TLS on a second port too. The proxies: `--upstream` is TLS.
        #[arg(long)]
        tls: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Role {
    Mock,
    Baseline,
    Llmobserve,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Serve::Serve {
        role,
        upstream,
        data_dir,
        workers,
        tls,
    }) = cli.serve
    {
        return serve(role, upstream, data_dir, workers, tls);
    }
    // The load generator: one thread, like `wrk -t1`, leaving the cores to the servers.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(bench(cli))
}

// ---------------------------------------------------------------------------------------
// Child roles
// ---------------------------------------------------------------------------------------

fn serve(
    role: Role,
    upstream: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    workers: Option<usize>,
    tls: bool,
) -> anyhow::Result<()> {
    let rt = match role {
        // The mock is shared by every target; one worker keeps it from taking both cores.
        Role::Mock => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?,
        // Both proxies run as `#[tokio::main]` would run them: one worker per core.
        Role::Baseline | Role::Llmobserve => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?,
    };
    let r = rt.block_on(async move {
        let ready = match role {
            Role::Mock => {
                let _ = rustls::crypto::ring::default_provider().install_default();
                let m = mock::start(tls).await?;
                match m.tls_addr {
                    Some(t) => format!("READY {} {t}", m.addr),
                    None => format!("READY {}", m.addr),
                }
            }
            Role::Baseline => {
                let up = upstream.context("--upstream")?;
                let workers = workers.unwrap_or_else(llmobserve::server::one_per_core);
                format!("READY {}", baseline::start(up, workers, tls).await?)
            }
            Role::Llmobserve => {
                let up = upstream.context("--upstream")?;
                let dir = data_dir.context("--data-dir")?;
                // As `llmobserve` runs by default: info logs (to stderr here).
                llmobserve::telemetry::init_logging("text");
                let scheme = if tls { "https" } else { "http" };
                let mut config = llmobserve::config::Config::for_data_dir(dir)
                    .with_all_upstreams(&format!("{scheme}://{up}"))?;
                if tls {
                    config.upstream_ca = Some(mock::ca_path());
                }
                let app = llmobserve::app::start(config).await?;
                let state = app.state.clone();
                let (_, key) = tokio::task::spawn_blocking(move || {
                    llmobserve::accounts::create_account(&state, "bench@example.com", None, None)
                })
                .await??;
                let line = format!("READY {} {}", app.proxy_addr, key.secret.expose());
                // Kept alive until the process exits.
                std::mem::forget(app);
                line
            }
        };
        say(&ready);
        // Serve until the parent closes our stdin (or dies).
        let mut sink = [0u8; 64];
        let mut stdin = tokio::io::stdin();
        while stdin.read(&mut sink).await.is_ok_and(|n| n > 0) {}
        anyhow::Ok(())
    });
    rt.shutdown_timeout(Duration::from_millis(100));
    r
}

#[allow(clippy::print_stdout)]
fn say(line: &str) {
    println!("{line}");
}

/// Connections of the paced runs.
const PACED_CONNS: usize = 64;

/// A server role running as a child process; killed when dropped.
struct Server {
    child: Child,
    pid: u32,
    addr: SocketAddr,
    /// The second word of its `READY` line: LLMObserve's key, the mock's TLS address.
    key: Option<String>,
}

/// Starts `role` as a child process, under `wrapper` (a command and its arguments, such
/// as valgrind) when given.
async fn spawn_role(
    role: &str,
    args: &[String],
    wrapper: Option<&[String]>,
) -> anyhow::Result<Server> {
    let exe = std::env::current_exe()?;
    let mut command = match wrapper {
        Some([program, rest @ ..]) => {
            let mut c = Command::new(program);
            c.args(rest).arg(exe);
            c
        }
        _ => Command::new(exe),
    };
    let mut child = command
        .arg("serve")
        .arg(role)
        .args(args)
        .env("LLMO_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {role}"))?;
    let pid = child.id().context("child pid")?;
    let stdout = child.stdout.take().context("child stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    // Under valgrind, start-up alone takes seconds.
    let ready = tokio::time::timeout(Duration::from_secs(120), async {
        while let Ok(Some(l)) = lines.next_line().await {
            if let Some(rest) = l.strip_prefix("READY ") {
                return Some(rest.to_owned());
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .with_context(|| format!("{role} did not start"))?;
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let mut parts = ready.split_whitespace();
    let addr: SocketAddr = parts.next().context("READY addr")?.parse()?;
    let key = parts.next().map(str::to_owned);
    Ok(Server {
        child,
        pid,
        addr,
        key,
    })
}

impl Server {
    async fn stop(mut self) {
        drop(self.child.stdin.take());
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Memory sampling
// ---------------------------------------------------------------------------------------

/// `VmRSS` of a process, in KiB (0 if unreadable).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| status_field(&s, "VmRSS:"))
        .unwrap_or(0)
}

/// A numeric field of a `/proc/.../status` file (`VmRSS:  1234 kB` gives 1234).
fn status_field(status: &str, name: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// What a process has used so far: CPU time (all threads, live and exited), the part
/// of it LLMObserve's event writer thread spent, and the context switches of its live
/// threads.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcUsage {
    pub user_us: u64,
    pub sys_us: u64,
    /// User + system time of the thread named `event-writer` (0 for other targets).
    pub writer_us: u64,
    /// Switches where a thread blocked (waiting for I/O, a lock, work).
    pub voluntary: u64,
    /// Switches where a runnable thread was preempted: on a shared machine, the cost of
    /// using the cores other processes also need.
    pub involuntary: u64,
}

/// The thread name `llmobserve::store::writer` gives its thread.
const WRITER_THREAD: &str = "event-writer";

impl ProcUsage {
    /// `/proc/<pid>/stat` counts clock ticks (100 per second): over windows of a second
    /// or more at thousands of requests per second the rounding is under 1%.
    fn read(pid: u32) -> ProcUsage {
        let mut u = ProcUsage::default();
        if let Some((user, sys)) = cpu_us(format!("/proc/{pid}/stat")) {
            u.user_us = user;
            u.sys_us = sys;
        }
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return u;
        };
        for t in tasks.flatten() {
            let Ok(status) = std::fs::read_to_string(t.path().join("status")) else {
                continue;
            };
            let count = |name| status_field(&status, name).unwrap_or(0);
            u.voluntary += count("voluntary_ctxt_switches:");
            u.involuntary += count("nonvoluntary_ctxt_switches:");
            let writer = status
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("Name:"))
                .is_some_and(|n| n.trim() == WRITER_THREAD);
            if writer && let Some((user, sys)) = cpu_us(t.path().join("stat")) {
                u.writer_us = user + sys;
            }
        }
        u
    }

    /// [`ProcUsage::read`] of each of a target's processes, added up.
    fn read_all(pids: &[u32]) -> ProcUsage {
        pids.iter()
            .map(|&p| ProcUsage::read(p))
            .fold(ProcUsage::default(), |a, b| ProcUsage {
                user_us: a.user_us + b.user_us,
                sys_us: a.sys_us + b.sys_us,
                writer_us: a.writer_us + b.writer_us,
                voluntary: a.voluntary + b.voluntary,
                involuntary: a.involuntary + b.involuntary,
            })
    }

    fn since(self, before: ProcUsage) -> ProcUsage {
        ProcUsage {
            user_us: self.user_us.saturating_sub(before.user_us),
            sys_us: self.sys_us.saturating_sub(before.sys_us),
            writer_us: self.writer_us.saturating_sub(before.writer_us),
            voluntary: self.voluntary.saturating_sub(before.voluntary),
            involuntary: self.involuntary.saturating_sub(before.involuntary),
        }
    }
}

/// CPU time (user + system, µs) of the processes that share the cores with the target
/// under test: the mock upstream and this process, the load generator. At saturation
/// every process's time per request counts against throughput, not only the proxy's.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sides {
    pub mock_us: u64,
    pub client_us: u64,
}

impl Sides {
    fn read(mock_pid: u32) -> Sides {
        let total =
            |pid: u32| cpu_us(format!("/proc/{pid}/stat")).map_or(0, |(user, sys)| user + sys);
        Sides {
            mock_us: total(mock_pid),
            client_us: total(std::process::id()),
        }
    }

    fn since(self, before: Sides) -> Sides {
        Sides {
            mock_us: self.mock_us.saturating_sub(before.mock_us),
            client_us: self.client_us.saturating_sub(before.client_us),
        }
    }
}

/// The fields of a `/proc/.../stat` line from field 3 on: those after the parenthesised
/// command name, which may itself hold spaces and parentheses.
pub fn stat_fields(stat: &str) -> Option<std::str::SplitWhitespace<'_>> {
    Some(stat.rsplit_once(')')?.1.split_whitespace())
}

/// User and system CPU time, µs, from a `/proc/.../stat` file (a process or one thread).
fn cpu_us(path: impl AsRef<std::path::Path>) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(path).ok()?;
    // utime is field 14, stime 15. Linux reports them in USER_HZ, 100 on every
    // architecture.
    let mut f = stat_fields(&s)?.skip(14 - 3);
    let user: u64 = f.next()?.parse().ok()?;
    let sys: u64 = f.next()?.parse().ok()?;
    Some((user * 10_000, sys * 10_000))
}

/// `VmRSS` of a target's processes added up (nginx's master and workers; their shared
/// pages count once per process, as `ps` shows them).
fn rss_kib_all(pids: &[u32]) -> u64 {
    pids.iter().map(|&p| rss_kib(p)).sum()
}

/// Samples a target's RSS every 20 ms until stopped; returns the peak.
struct RssSampler {
    pids: Vec<u32>,
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    fn start(pids: &[u32]) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(rss_kib_all(pids)));
        let task = {
            let (stop, peak, pids) = (stop.clone(), peak.clone(), pids.to_vec());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(rss_kib_all(&pids), Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        RssSampler {
            pids: pids.to_vec(),
            stop,
            peak,
            task,
        }
    }

    async fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        self.peak
            .fetch_max(rss_kib_all(&self.pids), Ordering::Relaxed);
        self.peak.load(Ordering::Relaxed)
    }
}

// ---------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------

fn scenarios(key: &str, chunks: usize) -> anyhow::Result<Vec<Scenario>> {
    let auth = vec![
        (
            HeaderName::from_static("x-llmobserve-key"),
            HeaderValue::from_str(key)?,
        ),
        (
            http::header::AUTHORIZATION,
            HeaderValue::from_static("Bearer sk-bench-provider-key"),
        ),
    ];
    let mut stream_headers = auth.clone();
    stream_headers.push((
        HeaderName::from_static(mock::CHUNKS_HEADER),
        HeaderValue::from(chunks),
    ));
    Ok(vec![
        Scenario {
            name: "json",
            path: "/v1/chat/completions",
            body: Bytes::from_static(mock::CHAT_REQUEST.as_bytes()),
            headers: auth,
            expected: Bytes::from_static(mock::CHAT_JSON.as_bytes()),
        },
        Scenario {
            name: "stream",
            path: "/v1/chat/completions",
            body: Bytes::from_static(mock::STREAM_REQUEST.as_bytes()),
            headers: stream_headers,
            expected: Bytes::from(mock::stream_bytes(chunks)),
        },
    ])
}

fn slow_scenario(base: &Scenario, chunks: usize, delay_ms: u64) -> Scenario {
    let mut s = base.clone();
    s.name = "slow-stream";
    s.headers.retain(|(k, _)| k.as_str() != mock::CHUNKS_HEADER);
    s.headers.push((
        HeaderName::from_static(mock::CHUNKS_HEADER),
        HeaderValue::from(chunks),
    ));
    s.headers.push((
        HeaderName::from_static(mock::DELAY_HEADER),
        HeaderValue::from(delay_ms),
    ));
    s.expected = Bytes::from(mock::stream_bytes(chunks));
    s
}

/// The proxies' `--upstream` arguments: the mock's plain port, or its TLS one.
fn upstream_args(mock: &Server, tls: bool) -> anyhow::Result<Vec<String>> {
    if !tls {
        return Ok(vec!["--upstream".to_owned(), mock.addr.to_string()]);
    }
    let addr = mock.key.as_deref().context("the mock's TLS address")?;
    Ok(vec![
        "--upstream".to_owned(),
        addr.to_owned(),
        "--tls".to_owned(),
    ])
}

#[allow(clippy::print_stdout)]
async fn bench(cli: Cli) -> anyhow::Result<()> {
    let quick = cli.quick;
    let seconds = cli.seconds.unwrap_or(if quick { 0.8 } else { 3.0 });
    let rounds = cli.rounds.unwrap_or(3).max(1);
    let levels = cli
        .levels
        .clone()
        .unwrap_or_else(|| if quick { vec![64] } else { vec![1, 64, 256] });
    let tmp = TempDir::new()?;

    let mock_args = if cli.upstream_tls {
        vec!["--tls".to_owned()]
    } else {
        Vec::new()
    };
    let mock = spawn_role("mock", &mock_args, None).await?;
    let up = upstream_args(&mock, cli.upstream_tls)?;
    if let Some(requests) = cli.callgrind {
        let scenarios = scenarios("llmo_sk_placeholder", cli.stream_chunks)?;
        // The dumps are kept for `callgrind_annotate`.
        let dumps = cli.out.join("callgrind");
        let _ = std::fs::remove_dir_all(&dumps);
        std::fs::create_dir_all(&dumps)?;
        let counts = callgrind::run(
            &up,
            &scenarios,
            "x-llmobserve-key",
            requests,
            &dumps,
            tmp.path(),
        )
        .await?;
        mock.stop().await;
        let text = report::render_callgrind(&counts);
        println!("{text}");
        std::fs::create_dir_all(&cli.out)?;
        std::fs::write(
            cli.out.join("callgrind.json"),
            serde_json::to_vec_pretty(&counts)?,
        )?;
        eprintln!("wrote {}/callgrind.json", cli.out.display());
        return Ok(());
    }
    let base_workers = cli
        .baseline_workers
        .unwrap_or_else(llmobserve::server::one_per_core);
    let mut base_args = up.clone();
    base_args.extend(["--workers".to_owned(), base_workers.to_string()]);
    let base = spawn_role("baseline", &base_args, None).await?;
    let llmo_dir = tmp.path().join("llmobserve");
    let mut llmo_args = up.clone();
    llmo_args.extend(["--data-dir".to_owned(), llmo_dir.display().to_string()]);
    let llmo = spawn_role("llmobserve", &llmo_args, None).await?;
    let key = llmo.key.clone().context("llmobserve key")?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle_rss = rss_kib(llmo.pid);

    let wanted = |t: &str| {
        cli.targets
            .as_ref()
            .is_none_or(|o| o.iter().any(|o| o == t))
    };
    let nginx = match nginx::find(&cli.nginx) {
        Some(_) if cli.upstream_tls => {
            if wanted(NGINX) {
                eprintln!("nginx target skipped: it is set up for a plain upstream only");
            }
            None
        }
        Some(bin) if wanted(NGINX) => {
            // As many workers as the pass-through (whose 0 means one shared runtime).
            let workers = match base_workers {
                0 => llmobserve::server::one_per_core(),
                n => n,
            };
            match nginx::start(&bin, &tmp.path().join("nginx"), mock.addr, workers).await {
                Ok(n) => Some(n),
                // Found but broken: an installed nginx is a bonus, not a requirement.
                Err(e) if cli.nginx == "auto" => {
                    eprintln!("nginx target skipped: {e:#}");
                    None
                }
                Err(e) => return Err(e),
            }
        }
        Some(_) => None,
        None => {
            if wanted(NGINX) && cli.nginx == "auto" {
                eprintln!("nginx not found: no nginx target (Debian: apt-get install nginx-light)");
            }
            None
        }
    };
    let mut targets = vec![
        (DIRECT, mock.addr, vec![mock.pid]),
        (BASELINE, base.addr, vec![base.pid]),
    ];
    if let Some(n) = &nginx {
        targets.push((NGINX, n.addr, n.pids.clone()));
    }
    targets.push((LLMOBSERVE, llmo.addr, vec![llmo.pid]));
    targets.retain(|t| wanted(t.0));
    eprintln!(
        "pids: mock {} pass-through {} nginx {:?} llmobserve {}",
        mock.pid,
        base.pid,
        nginx.as_ref().map(|n| &n.pids),
        llmo.pid
    );
    let scenarios = scenarios(&key, cli.stream_chunks)?;
    let mut runs = Runs::default();
    let warmup = Duration::from_secs_f64((seconds / 4.0).min(0.5));
    // Closed loop at each level, then (full runs) a paced run of each scenario at
    // 64 connections.
    let mut plan: Vec<(Scenario, usize, Option<Duration>)> = Vec::new();
    for s in &scenarios {
        for &conns in &levels {
            plan.push((s.clone(), conns, None));
        }
    }
    if !quick {
        for (s, rate) in scenarios
            .iter()
            .zip([cli.paced_json_rate, cli.paced_stream_rate])
        {
            if rate > 0.0 {
                let mut paced = s.clone();
                paced.name = if s.name == "json" {
                    "json-paced"
                } else {
                    "stream-paced"
                };
                let conns = PACED_CONNS;
                let pace = Duration::from_secs_f64(conns as f64 / rate);
                plan.push((paced, conns, Some(pace)));
            }
        }
    }
    for (s, conns, pace) in &plan {
        let (s, conns, pace) = (s, *conns, *pace);
        {
            for round in 0..rounds {
                // Rotate the order each round so no target always runs first (warm caches,
                // a noisy neighbour's burst) or last.
                for i in 0..targets.len() {
                    let (name, addr, pids) = &targets[(i + round) % targets.len()];
                    let (name, addr) = (*name, *addr);
                    let sampler = RssSampler::start(pids);
                    let usage_before = ProcUsage::read_all(pids);
                    let sides_before = Sides::read(mock.pid);
                    let started = std::time::Instant::now();
                    let spec = LoadSpec {
                        concurrency: conns,
                        duration: Duration::from_secs_f64(seconds),
                        warmup,
                        requests_per_conn: None,
                        pace,
                    };
                    let r = load::run(addr, s, spec).await;
                    let usage = ProcUsage::read_all(pids).since(usage_before);
                    let sides = Sides::read(mock.pid).since(sides_before);
                    let window = started.elapsed();
                    let peak = sampler.finish().await;
                    let m = Round::from_result(&r, peak, usage, sides, window);
                    eprintln!(
                        "{:<7} conns={conns:<4} round={round} {name:<13} {:>8.0} req/s  p50 {:>6.0} µs  p99 {:>6.0} µs  cpu {:>5.1} µs/req  errors {}",
                        s.name,
                        m.rps,
                        m.p50_us,
                        m.p99_us,
                        m.cpu_us_per_req,
                        m.errors + m.wrong_bytes,
                    );
                    runs.push(s.name, conns, name, m);
                }
            }
        }
    }

    let memory = if cli.no_memory || quick {
        None
    } else {
        Some(
            memory_run(
                &scenarios[1],
                &mock,
                &base,
                cli.slow_streams,
                &tmp,
                &up,
                idle_rss,
            )
            .await?,
        )
    };
    base.stop().await;
    llmo.stop().await;
    if let Some(n) = nginx {
        n.stop().await;
    }

    let store = if cli.no_store {
        None
    } else {
        let writer = cli
            .writer_events
            .unwrap_or(if quick { 20_000 } else { 200_000 });
        let bulk = cli
            .store_events
            .unwrap_or(if quick { 50_000 } else { 1_000_000 });
        eprintln!("store: {writer} events through the writer, {bulk} bulk-loaded ...");
        Some(store::run(tmp.path(), writer, bulk).await?)
    };
    mock.stop().await;

    let report = Report {
        machine: machine(),
        upstream: if cli.upstream_tls {
            "TLS (the proxies negotiate h2 by ALPN; direct calls stay plain)"
        } else {
            "plain HTTP/1.1"
        }
        .to_owned(),
        when_unix_ms: llmobserve::time::now_ms(),
        quick,
        seconds_per_run: seconds,
        rounds,
        medians: runs.medians(),
        runs,
        memory,
        store,
    };
    let text = report::render(&report);
    println!("{text}");
    std::fs::create_dir_all(&cli.out)?;
    std::fs::write(
        cli.out.join("results.json"),
        serde_json::to_vec_pretty(&report)?,
    )?;
    std::fs::write(cli.out.join("summary.md"), &text)?;
    eprintln!("wrote {}/results.json and summary.md", cli.out.display());
    Ok(())
}

/// 1,000 slow streams, short then long bodies, through a fresh LLMObserve (and the
/// pass-through for reference); peak RSS of each.
async fn memory_run(
    stream: &Scenario,
    mock: &Server,
    base: &Server,
    streams: usize,
    tmp: &TempDir,
    up: &[String],
    _first_idle: u64,
) -> anyhow::Result<MemoryReport> {
    const DELAY_MS: u64 = 10;
    const SHORT: usize = 50;
    const LONG: usize = 300;
    let dir = tmp.path().join("llmobserve-mem");
    let mut args = up.to_vec();
    args.extend(["--data-dir".to_owned(), dir.display().to_string()]);
    let llmo = spawn_role("llmobserve", &args, None).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = rss_kib(llmo.pid);
    let mut stream = stream.clone();
    if let Some(key) = &llmo.key {
        stream
            .headers
            .retain(|(k, _)| k.as_str() != "x-llmobserve-key");
        stream.headers.push((
            HeaderName::from_static("x-llmobserve-key"),
            HeaderValue::from_str(key)?,
        ));
    }
    let spec = LoadSpec {
        concurrency: streams,
        duration: Duration::from_secs(30),
        warmup: Duration::ZERO,
        requests_per_conn: Some(1),
        pace: None,
    };
    let one = |chunks| slow_scenario(&stream, chunks, DELAY_MS);
    let short_s = one(SHORT);
    let long_s = one(LONG);

    eprintln!("memory: {streams} streams x {SHORT} chunks via llmobserve ...");
    let sampler = RssSampler::start(&[llmo.pid]);
    let short = load::run(llmo.addr, &short_s, spec).await;
    let short_peak = sampler.finish().await;
    eprintln!("memory: {streams} streams x {LONG} chunks via llmobserve ...");
    let sampler = RssSampler::start(&[llmo.pid]);
    let long = load::run(llmo.addr, &long_s, spec).await;
    let long_peak = sampler.finish().await;
    eprintln!("memory: {streams} streams x {LONG} chunks direct and via pass-through ...");
    let direct = load::run(mock.addr, &long_s, spec).await;
    let base_idle = rss_kib(base.pid);
    let sampler = RssSampler::start(&[base.pid]);
    let _ = load::run(base.addr, &long_s, spec).await;
    let base_peak = sampler.finish().await;
    llmo.stop().await;
    Ok(MemoryReport {
        idle_rss_kib: idle,
        streams,
        short_chunks: SHORT,
        long_chunks: LONG,
        chunk_delay_ms: DELAY_MS,
        short_peak_rss_kib: short_peak,
        long_peak_rss_kib: long_peak,
        baseline_idle_rss_kib: base_idle,
        baseline_long_peak_rss_kib: base_peak,
        short_errors: short.errors + short.wrong_bytes,
        long_errors: long.errors + long.wrong_bytes,
        long_ok: long.ok,
        long_ttlb_p99_ms: load::percentile(&long.ttlb_us, 0.99) / 1e3,
        direct_long_ttlb_p99_ms: load::percentile(&direct.ttlb_us, 0.99) / 1e3,
    })
}

/// A scratch directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> std::io::Result<TempDir> {
        let p = std::env::temp_dir().join(format!(
            "llmobserve-bench-{}-{}",
            std::process::id(),
            llmobserve::time::now_ms()
        ));
        std::fs::create_dir_all(&p)?;
        Ok(TempDir(p))
    }

    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// CPU model, cores, memory and kernel, from /proc.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |k| k / 1024.0 / 1024.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cpu}, {cores} cores, {mem_gib:.0} GiB, Linux {}",
        kernel.trim()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_usage_sees_this_process_work_and_block() {
        let pid = std::process::id();
        let before = ProcUsage::read(pid);
        // Spin until the kernel has counted 30 ms of CPU (3 ticks), for 10 s at most.
        let start = std::time::Instant::now();
        let cpu = |u: ProcUsage| u.user_us + u.sys_us;
        let mut x = 0u64;
        while cpu(ProcUsage::read(pid).since(before)) < 30_000
            && start.elapsed() < Duration::from_secs(10)
        {
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
        }
        let d = ProcUsage::read(pid).since(before);
        assert!(cpu(d) >= 30_000, "{d:?}");
        // A sleep is a voluntary switch. Switches are summed over live threads, so
        // another test's thread ending meanwhile takes its own out of the sum: a few
        // tries.
        let blocked = (0..20).any(|_| {
            let b = ProcUsage::read(pid);
            std::thread::sleep(Duration::from_millis(5));
            ProcUsage::read(pid).since(b).voluntary >= 1
        });
        assert!(blocked, "no voluntary switch seen");
    }
}
