//! The load generator: fixed concurrency over keep-alive HTTP/1.1 connections (hyper's
//! client `conn` API, one connection per worker, no pool), for a bounded time.
//!
//! Every response is checked byte for byte against what the mock sent (without copying:
//! each frame is compared with the matching slice). Latency is recorded per request in
//! microseconds: time to first body byte (TTFB) and to the last byte (TTLB), from the
//! moment the request was handed to the connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// One kind of request and the exact response body it must produce.
#[derive(Clone)]
pub struct Scenario {
    pub name: &'static str,
    pub path: &'static str,
    pub body: Bytes,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub expected: Bytes,
}

/// How hard and how long to push one target.
#[derive(Clone, Copy, Debug)]
pub struct LoadSpec {
    pub concurrency: usize,
    /// Measured window; requests started before `warmup` elapsed are not recorded.
    pub duration: Duration,
    pub warmup: Duration,
    /// Stop each connection after this many requests (slow-stream runs use 1).
    pub requests_per_conn: Option<u64>,
    /// Open-loop pacing: each connection starts a request this often (instead of as soon
    /// as the previous one ends), so the total rate is fixed below every target's
    /// capacity and latency shows processing, not queueing. Latency still counts from
    /// the actual send.
    pub pace: Option<Duration>,
}

#[derive(Debug, Default, Clone)]
pub struct LoadResult {
    pub ok: u64,
    /// Transport errors and non-200 answers.
    pub errors: u64,
    /// 200 answers whose body differed from the mock's.
    pub wrong_bytes: u64,
    /// Every request answered, warm-up included (for CPU per request).
    pub answered: u64,
    /// The measured window (after warm-up).
    pub elapsed: Duration,
    pub ttfb_us: Vec<u32>,
    pub ttlb_us: Vec<u32>,
}

impl LoadResult {
    pub fn rps(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 { self.ok as f64 / s } else { 0.0 }
    }

    fn merge(&mut self, o: LoadResult) {
        self.ok += o.ok;
        self.errors += o.errors;
        self.wrong_bytes += o.wrong_bytes;
        self.answered += o.answered;
        self.ttfb_us.extend(o.ttfb_us);
        self.ttlb_us.extend(o.ttlb_us);
    }

    /// Sorts the samples so [`percentile`] can read them.
    pub fn sort(&mut self) {
        self.ttfb_us.sort_unstable();
        self.ttlb_us.sort_unstable();
    }
}

/// The `q` quantile (0..=1) of sorted samples, in microseconds (0 when empty).
pub fn percentile(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    f64::from(sorted[i.min(sorted.len() - 1)])
}

/// Drives `spec.concurrency` connections at `addr` and returns merged, sorted results.
/// Bounded: every connection stops at the deadline, and the whole run is abandoned
/// 30 s after it.
pub async fn run(addr: SocketAddr, scenario: &Scenario, spec: LoadSpec) -> LoadResult {
    let scenario = Arc::new(scenario.clone());
    let host = HeaderValue::from_str(&addr.to_string()).unwrap_or(HeaderValue::from_static("x"));
    // Connect everything first, so the window measures requests, not handshakes.
    let mut conns = Vec::with_capacity(spec.concurrency);
    for _ in 0..spec.concurrency {
        conns.push(connect(addr).await);
    }
    let start = Instant::now();
    let record_from = start + spec.warmup;
    let deadline = record_from + spec.duration;
    let mut tasks = tokio::task::JoinSet::new();
    let n = conns.len().max(1) as u32;
    for (i, conn) in conns.into_iter().enumerate() {
        // Paced connections start staggered across one interval, not all at once.
        let first = spec
            .pace
            .map_or(start, |p| start + p * u32::try_from(i).unwrap_or(0) / n);
        let scenario = scenario.clone();
        let host = host.clone();
        tasks.spawn(worker(
            addr,
            conn,
            scenario,
            host,
            spec,
            first,
            record_from,
            deadline,
        ));
    }
    let mut total = LoadResult::default();
    let hard_stop = tokio::time::Instant::from_std(deadline) + Duration::from_secs(30);
    loop {
        match tokio::time::timeout_at(hard_stop, tasks.join_next()).await {
            Ok(Some(Ok(r))) => total.merge(r),
            Ok(Some(Err(_))) => total.errors += 1,
            Ok(None) => break,
            Err(_) => {
                tasks.abort_all();
                total.errors += tasks.len() as u64;
                break;
            }
        }
    }
    // For runs that end early (one request per connection), the window is the real one.
    let end = Instant::now().min(deadline);
    total.elapsed = end.saturating_duration_since(record_from);
    if spec.requests_per_conn.is_some() {
        total.elapsed = end.saturating_duration_since(start);
    }
    total.sort();
    total
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> Option<Sender> {
    let stream = TcpStream::connect(addr).await.ok()?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Some(sender)
}

#[allow(clippy::too_many_arguments)]
async fn worker(
    addr: SocketAddr,
    mut conn: Option<Sender>,
    s: Arc<Scenario>,
    host: HeaderValue,
    spec: LoadSpec,
    first: Instant,
    record_from: Instant,
    deadline: Instant,
) -> LoadResult {
    let mut r = LoadResult::default();
    let mut sent = 0u64;
    let mut next = first;
    while Instant::now() < deadline && spec.requests_per_conn.is_none_or(|n| sent < n) {
        if let Some(pace) = spec.pace {
            tokio::time::sleep_until(tokio::time::Instant::from_std(next)).await;
            // A late connection does not burst to catch up.
            next = (next + pace).max(Instant::now());
        }
        let Some(sender) = conn.as_mut() else {
            r.errors += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
            conn = connect(addr).await;
            continue;
        };
        if sender.ready().await.is_err() {
            conn = None;
            continue;
        }
        let mut req = Request::post(s.path)
            .header(http::header::HOST, host.clone())
            .header(http::header::CONTENT_TYPE, "application/json");
        for (k, v) in &s.headers {
            req = req.header(k, v);
        }
        let Ok(req) = req.body(Full::new(s.body.clone())) else {
            r.errors += 1;
            break;
        };
        sent += 1;
        let t0 = Instant::now();
        let resp = match sender.send_request(req).await {
            Ok(resp) => resp,
            Err(_) => {
                r.errors += 1;
                conn = None;
                continue;
            }
        };
        let status_ok = resp.status() == http::StatusCode::OK;
        let mut body = resp.into_body();
        let mut off = 0usize;
        let mut same = true;
        let mut ttfb = None;
        let mut failed = false;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else {
                failed = true;
                break;
            };
            if let Ok(data) = frame.into_data() {
                if ttfb.is_none() {
                    ttfb = Some(t0.elapsed());
                }
                let end = off + data.len();
                same = same && end <= s.expected.len() && s.expected[off..end] == data[..];
                off = end;
            }
        }
        let ttlb = t0.elapsed();
        r.answered += 1;
        if failed || !status_ok {
            r.errors += 1;
            if failed {
                conn = None;
            }
            continue;
        }
        if !same || off != s.expected.len() {
            r.wrong_bytes += 1;
            continue;
        }
        if t0 >= record_from || spec.requests_per_conn.is_some() {
            r.ok += 1;
            r.ttfb_us.push(micros(ttfb.unwrap_or(ttlb)));
            r.ttlb_us.push(micros(ttlb));
        }
    }
    r
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}
