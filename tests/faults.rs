//! The upstream fault matrix (issue 6, item 1): every way an upstream can fail, each
//! against an in-process upstream on loopback. Every test checks what the client gets,
//! the call's one event (outcome, `usage_status`), and that after draining the store
//! holds exactly one event per authenticated request.
//!
//! | fault | client gets | outcome | usage |
//! |---|---|---|---|
//! | connection refused | 502 at once, provider-shaped | proxy_error | missing |
//! | no response headers | 504 at the first-byte timeout | proxy_error | missing |
//! | stream stalls | the bytes so far, then an aborted body at the idle timeout | upstream_error | partial |
//! | TCP reset / abrupt close mid-stream | the bytes so far, then an aborted body | upstream_error | partial |
//! | 429/500/503/529, HTML error page | the upstream's answer byte for byte | upstream_error | missing |
//! | `event: error` in a 200 stream | the stream byte for byte | upstream_error | partial / missing |
//! | one byte per frame | the stream byte for byte | ok | reported |
//! | untrusted certificate | 502 naming TLS | proxy_error | missing |
//! | gzip / br body | the compressed bytes | ok | reported |
//! | zstd body (no decoder) | the compressed bytes | ok | missing |
//! | truncated gzip body | the bytes as sent | upstream_error | missing |
//! | one 10 MiB SSE line | the stream byte for byte, proxy memory bounded | ok | reported |
//! | redirect | the 3xx with its Location, never followed | ok | missing |

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::app::{Account, TestApp};
use common::mock_upstream::{MockUpstream, Reply, fixture};
use llmobserve::store::model::{CostEvent, Outcome, UsageStatus};
use support::{Canary, assert_one_event_per_authenticated_request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

const CHAT: &str = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;
const MESSAGES: &str = r#"{"model":"claude-sonnet-4-5","max_tokens":100,"messages":[]}"#;

/// Generous upper bound for "about at the timeout" on a loaded 2-core machine.
const SLACK: Duration = Duration::from_secs(3);

async fn post(app: &TestApp, acct: &Account, path: &str, body: &str) -> reqwest::Response {
    app.http
        .post(app.url(path))
        .header("x-llmobserve-key", &acct.key)
        .header("authorization", "Bearer sk-provider")
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

/// Reads a body chunk by chunk until its end or its first error.
async fn read_body(mut resp: reqwest::Response) -> (Vec<u8>, Option<reqwest::Error>) {
    let mut got = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => got.extend_from_slice(&c),
            Ok(None) => return (got, None),
            Err(e) => return (got, Some(e)),
        }
    }
}

fn assert_no_usage(e: &CostEvent) {
    assert_eq!(e.usage_status, UsageStatus::Missing);
    assert_eq!(e.usage, None, "missing usage is null, never zero");
    assert_eq!(e.cost, None);
}

fn first_sse_event_len(body: &[u8]) -> usize {
    body.windows(2).position(|w| w == b"\n\n").unwrap() + 2
}

/// A plain-HTTP upstream written by hand: it reads each request (head and
/// `Content-Length` body), then hands the socket and the request head to `respond`.
async fn raw_upstream<F, Fut>(respond: F) -> (SocketAddr, tokio::task::JoinHandle<()>)
where
    F: Fn(TcpStream, String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let respond = Arc::new(respond);
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let respond = respond.clone();
            tokio::spawn(async move {
                let head = read_request(&mut s).await;
                respond(s, head).await;
            });
        }
    });
    (addr, task)
}

async fn read_request(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "request cut short");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    while buf.len() < head_end + len {
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "request body cut short");
        buf.extend_from_slice(&chunk[..n]);
    }
    head
}

/// Writes one HTTP/1.1 chunk.
async fn write_chunk(s: &mut TcpStream, data: &[u8]) -> std::io::Result<()> {
    s.write_all(format!("{:x}\r\n", data.len()).as_bytes())
        .await?;
    s.write_all(data).await?;
    s.write_all(b"\r\n").await
}

const SSE_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
transfer-encoding: chunked\r\n\r\n";

#[tokio::test]
async fn connection_refused_is_a_fast_502_in_the_provider_shape() {
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let app = TestApp::spawn(&format!("http://127.0.0.1:{port}")).await;
    let acct = app.account("refused@example.com").await;

    let started = Instant::now();
    let r = post(&app, &acct, "/v1/chat/completions", CHAT).await;
    assert_eq!(r.status(), 502);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "upstream_unreachable");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("connect"), "{msg}");
    let r = post(&app, &acct, "/anthropic/v1/messages", MESSAGES).await;
    assert_eq!(r.status(), 502);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "api_error");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a refused connection must not wait for the connect timeout"
    );

    for e in app.wait_events(&acct.user_id, 2).await {
        assert_eq!((e.status, e.outcome), (502, Outcome::ProxyError));
        assert_no_usage(&e);
    }
    assert_one_event_per_authenticated_request(&app, 2).await;
}

#[tokio::test]
async fn an_upstream_that_never_answers_is_a_504_at_the_first_byte_timeout() {
    let mock = MockUpstream::tls()
        .route(
            "POST",
            "/v1/chat/completions",
            Reply::json(200, fixture("openai/chat_completion.json"))
                .delay_headers(Duration::from_secs(60)),
        )
        .start()
        .await;
    let timeout = Duration::from_millis(400);
    let app = TestApp::spawn_with(&mock.base_url(), |c| c.first_byte_timeout = timeout).await;
    let acct = app.account("silent@example.com").await;

    let started = Instant::now();
    let r = post(&app, &acct, "/v1/chat/completions", CHAT).await;
    let took = started.elapsed();
    assert_eq!(r.status(), 504);
    assert!(took >= timeout, "answered after {took:?}");
    assert!(took < timeout + SLACK, "answered after {took:?}");
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "upstream_timeout");
    assert!(v["error"]["message"].as_str().unwrap().contains("400 ms"));

    let e = app.only_event(&acct.user_id).await;
    assert_eq!((e.status, e.outcome), (504, Outcome::ProxyError));
    assert_no_usage(&e);
    assert_eq!(mock.request_count(), 1);
    assert_one_event_per_authenticated_request(&app, 1).await;
}

/// A client that gives up while the upstream is still thinking (a client-side timeout
/// on a slow call) leaves a `cancelled` event, and the upstream request is dropped.
#[tokio::test]
async fn a_client_that_leaves_before_the_answer_is_recorded_as_cancelled() {
    let mock = MockUpstream::tls()
        .route(
            "POST",
            "/v1/chat/completions",
            Reply::json(200, fixture("openai/chat_completion.json"))
                .delay_headers(Duration::from_secs(60)),
        )
        .start()
        .await;
    let app = TestApp::spawn(&mock.base_url()).await;
    let acct = app.account("impatient@example.com").await;
    let gave_up = Duration::from_millis(300);
    let r = app
        .http
        .post(app.url("/v1/chat/completions"))
        .header("x-llmobserve-key", &acct.key)
        .header("authorization", "Bearer sk-provider")
        .header("x-customer-id", "alice")
        .timeout(gave_up)
        .body(CHAT)
        .send()
        .await;
    assert!(r.is_err_and(|e| e.is_timeout()), "the client gave up");

    let e = app.only_event(&acct.user_id).await;
    assert_eq!((e.status, e.outcome), (499, Outcome::Cancelled));
    assert_no_usage(&e);
    assert_eq!(e.customer_id.as_deref(), Some("alice"));
    assert_eq!(e.model.as_deref(), Some("gpt-4o"), "from the request");
    // The client's clock starts before the proxy's (connecting, sending) and the event
    // keeps whole milliseconds, so the proxy saw a little less than the client's wait.
    let waited = Duration::from_millis(e.latency_ms);
    assert!(
        waited >= gave_up / 2 && waited < gave_up + SLACK,
        "recorded after {waited:?}"
    );
    assert_eq!(mock.request_count(), 1);
    assert_one_event_per_authenticated_request(&app, 1).await;
}

#[tokio::test]
async fn a_stream_that_stalls_is_aborted_at_the_idle_timeout_with_its_bytes_intact() {
    let sse = fixture("anthropic/messages_stream.sse");
    // message_start (with the input usage) and a few bytes of the next event.
    let keep = first_sse_event_len(&sse) + 10;
    let mock = MockUpstream::tls()
        .route(
            "POST",
            "/v1/messages",
            Reply::sse(sse.clone()).stall_after(keep),
        )
        .start()
        .await;
    let idle = Duration::from_millis(300);
    let app = TestApp::spawn_with(&mock.base_url(), |c| c.stream_idle_timeout = idle).await;
    let acct = app.account("stall@example.com").await;

    let started = Instant::now();
    let r = post(&app, &acct, "/anthropic/v1/messages", MESSAGES).await;
    assert_eq!(r.status(), 200);
    let (got, err) = read_body(r).await;
    let took = started.elapsed();
    assert_eq!(got, sse[..keep], "the bytes before the stall arrive intact");
    assert!(
        err.is_some(),
        "a stalled stream must end in an error, not look complete"
    );
    assert!(took >= idle && took < idle + SLACK, "closed after {took:?}");
    // The upstream call was abandoned too.
    mock.wait_for_cancelled(1, SLACK).await;

    let e = app.only_event(&acct.user_id).await;
    assert_eq!((e.status, e.outcome), (200, Outcome::UpstreamError));
    assert_eq!(e.usage_status, UsageStatus::Partial);
    assert_eq!(e.usage.unwrap().input_tokens, 24 + 3072 + 14336);
    assert!(e.streamed);
    assert_one_event_per_authenticated_request(&app, 1).await;
}

#[tokio::test]
async fn an_upstream_that_dies_mid_stream_fails_the_client_body() {
    let sse = fixture("anthropic/messages_stream.sse");
    let keep = first_sse_event_len(&sse) + 25;
    let mock = MockUpstream::tls()
        .route(
            "POST",
            "/v1/messages",
            Reply::sse(sse.clone()).cut_after(keep),
        )
        .start()
        .await;
    let app = TestApp::spawn(&mock.base_url()).await;
    let acct = app.account("cut@example.com").await;

    let r = post(&app, &acct, "/anthropic/v1/messages", MESSAGES).await;
    assert_eq!(r.status(), 200);
    let (got, err) = read_body(r).await;
    assert_eq!(got, sse[..keep]);
    assert!(err.is_some(), "a cut stream must end in an error");

    let e = app.only_event(&acct.user_id).await;
    assert_eq!((e.status, e.outcome), (200, Outcome::UpstreamError));
    assert_eq!(e.usage_status, UsageStatus::Partial);
    assert_eq!(e.usage.unwrap().input_tokens, 24 + 3072 + 14336);
    assert_one_event_per_authenticated_request(&app, 1).await;
}

#[tokio::test]
async fn a_tcp_reset_mid_stream_fails_the_client_body() {
    let sse = fixture("anthropic/messages_stream.sse");
    let first = Bytes::copy_from_slice(&sse[..first_sse_event_len(&sse)]);
    let delivered = Arc::new(Notify::new());
    let (addr, _upstream) = {
        let (first, delivered) = (first.clone(), delivered.clone());
        raw_upstream(move |mut s, _| {
            let (first, delivered) = (first.clone(), delivered.clone());
            async move {
                s.write_all(SSE_HEAD).await.unwrap();
                write_chunk(&mut s, &first).await.unwrap();
                // Reset only once the client has the bytes: a reset can discard data
                // still queued in the receiver's kernel.
                delivered.notified().await;
                s.set_zero_linger().unwrap();
                drop(s);
            }
        })
        .await
    };
    let app = TestApp::spawn(&format!("http://{addr}")).await;
    let acct = app.account("reset@example.com").await;

    let mut r = post(&app, &acct, "/anthropic/v1/messages", MESSAGES).await;
    assert_eq!(r.status(), 200);
    let mut got = Vec::new();
    while got.len() < first.len() {
        got.extend_from_slice(&r.chunk().await.unwrap().unwrap());
    }
    delivered.notify_one();
    let (rest, err) = read_body(r).await;
    got.extend_from_slice(&rest);
    assert_eq!(got, first);
    assert!(err.is_some(), "a reset stream must end in an error");

    let e = app.only_event(&acct.user_id).await;
    assert_eq!((e.status, e.outcome), (200, Outcome::UpstreamError));
    assert_eq!(e.usage_status, UsageStatus::Partial);
    assert_eq!(e.usage.unwrap().input_tokens, 24 + 3072 + 14336);
    assert_one_event_per_authenticated_request(&app, 1).await;
}

#[tokio::test]
async fn error_statuses_and_html_pages_pass_through_byte_for_byte() {
    let html = "<html><head><title>502 Bad Gateway</title></head>\n<body><center><h1>502 Bad Gateway</h1></center><hr><center>cloudflare</center></body></html>\n";
    let cases: Vec<(&str, u16, Bytes, &str)> = vec![
        (
            "/v1/chat/completions",
            429,
            fixture("openai/error_429_rate_limit.json"),
            "application/json",
        ),
        (
            "/v1/chat/completions",
            500,
            Bytes::from_static(br#"{"error":{"message":"The server had an error while processing your request.","type":"server_error","param":null,"code":null}}"#),
            "application/json",
        ),
        (
            "/v1/chat/completions",
            503,
            Bytes::from_static(br#"{"error":{"message":"Service Unavailable.","type":"server_error"}}"#),
            "application/json",
        ),
        (
            "/v1/messages",
            529,
            fixture("anthropic/error_529_overloaded.json"),
            "application/json",
        ),
        ("/v1/chat/completions", 502, Bytes::from(html), "text/html"),
    ];
    let mock = MockUpstream::tls()
        .route(
            "POST",
            "/*",
            Reply::func(|req| {
                let status: u16 = req.header("x-test-status").unwrap().parse().unwrap();
                let body = req.body.clone();
                let ct = req.header("x-test-type").unwrap().to_owned();
                Reply::bytes(status, &ct, body)
                    .header("retry-after", "7")
                    .header("x-request-id", "req_fault")
            }),
        )
        .start()
        .await;
    let app = TestApp::spawn(&mock.base_url()).await;
    let acct = app.account("statuses@example.com").await;
    for (path, status, body, ct) in &cases {
        // The mock echoes the request body back as its error body.
        let proxied = if path.starts_with("/v1/messages") {
            "/anthropic/v1/messages".to_owned()
        } else {
            (*path).to_owned()
        };
        let r = app
            .http
            .post(app.url(&proxied))
            .header("x-llmobserve-key", &acct.key)
            .header("x-test-status", status.to_string())
            .header("x-test-type", *ct)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), *status);
        assert_eq!(r.headers()["retry-after"], "7");
        assert_eq!(r.headers()["content-type"], *ct);
        assert_eq!(r.bytes().await.unwrap(), body, "{status} body");
    }
    let events = app.wait_events(&acct.user_id, cases.len()).await;
    for (e, (_, status, _, _)) in events.iter().rev().zip(&cases) {
        assert_eq!((e.status, e.outcome), (*status, Outcome::UpstreamError));
        assert_no_usage(e);
        assert_eq!(e.upstream_request_id.as_deref(), Some("req_fault"));
    }
    assert_one_event_per_authenticated_request(&app, cases.len() as u64).await;
}

#[tokio::test]
async fn an_error_event_inside_a_200_stream_is_an_upstream_error() {
    let openai_error = "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n\
data: {\"error\":{\"message\":\"The server had an error while processing your request.\",\"type\":\"server_error\"}}\n\n";
    let mock = MockUpstream::tls()
        .sse("/v1/messages", "anthropic/messages_stream_error.sse")
        .route("POST", "/v1/chat/completions", Reply::sse(openai_error))
        .start()
        .await;
    let app = TestApp::spawn(&mock.base_url()).await;
    let acct = app.account("inband@example.com").await;

    let r = post(&app, &acct, "/anthropic/v1/messages", MESSAGES).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.bytes().await.unwrap(),
        fixture("anthropic/messages_stream_error.sse")
    );
    let stream_with_usage = r#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[]}"#;
    let r = post(&app, &acct, "/v1/chat/completions", stream_with_usage).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), openai_error.as_bytes());

    let ev = app.wait_events(&acct.user_id, 2).await;
    let (openai, anthropic) = (&ev[0], &ev[1]);
    assert_eq!(
        (anthropic.status, anthropic.outcome),
        (200, Outcome::UpstreamError)
    );
    assert_eq!(anthropic.usage_status, UsageStatus::Partial);
    assert_eq!(anthropic.usage.unwrap().input_tokens, 1200);
    assert_eq!(
        (openai.status, openai.outcome),
        (200, Outcome::UpstreamError)
    );
    assert_no_usage(openai);
    assert_one_event_per_authenticated_request(&app, 2).await;
}

#[tokio::test]
async fn a_slow_drip_of_one_byte_per_frame_is_forwarded_and_metered_exactly() {
    let sse = "event: message_start\n\
data: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-sonnet-4-5-20250929\",\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}}\n\n\
event: message_delta\n\
data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":5}}\n\n\
event: message_stop\n\
data: {\"type\":\"message_stop\"}\n\n";
    let mock = MockUpstream::tls()
        .route(
            "POST",
            "/v1/messages",
            Reply::sse(sse)
                .chunked_every(1)
                .delay_per_chunk(Duration::from_millis(1)),
        )
        .start()
        .await;
    // Shorter than the whole stream: the idle timer restarts with every byte.
    let idle = Duration::from_millis(250);
    let app = TestApp::spawn_with(&mock.base_url(), |c| c.stream_idle_timeout = idle).await;
    let acct = app.account("drip@example.com").await;

    let started = Instant::now();
    let mut r = post(&app, &acct, "/anthropic/v1/messages", MESSAGES).await;
    let mut got = Vec::new();
    let mut chunks = 0;
    while let Some(c) = r.chunk().await.unwrap() {
        chunks += 1;
        got.extend_from_slice(&c);
    }
    assert_eq!(got, sse.as_bytes());
    assert!(
        chunks > 10,
        "bytes were held back: {chunks} chunks for {} bytes",
        sse.len()
    );
    assert!(
        started.elapsed() > idle,
        "the drip outlasted the idle timeout"
    );

    let e = app.only_event(&acct.user_id).await;
    assert_eq!((e.status, e.outcome), (200, Outcome::Ok));
    assert_eq!(e.usage_status, UsageStatus::Reported);
    let u = e.usage.unwrap();
    assert_eq!((u.input_tokens, u.output_tokens), (10, 5));
    assert!(e.cost.is_some());
    assert_one_event_per_authenticated_request(&app, 1).await;
}

#[tokio::test]
async fn an_untrusted_upstream_certificate_is_a_502_naming_tls() {
    let mock = MockUpstream::tls_untrusted()
        .json("/v1/chat/completions", "openai/chat_completion.json")
        .start()
        .await;
    let app = TestApp::spawn(&mock.base_url()).await;
    let acct = app.account("badcert@example.com").await;

    let r = post(&app, &acct, "/v1/chat/completions", CHAT).await;
    assert_eq!(r.status(), 502);
    let v: serde_json::Value = r.json().await.unwrap();
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("TLS"), "{msg}");
    assert!(msg.contains("certificate"), "{msg}");
    mock.wait_for_tls_failures(1, SLACK).await;
    assert_eq!(mock.request_count(), 0);

    let e = app.only_event(&acct.user_id).await;
    assert_eq!((e.status, e.outcome), (502, Outcome::ProxyError));
    assert_no_usage(&e);
    assert_one_event_per_authenticated_request(&app, 1).await;
}

/// `data` as a brotli stream of stored (uncompressed) meta-blocks, RFC 7932 §9.
fn brotli_stored(data: &[u8]) -> Vec<u8> {
    struct Bits {
        out: Vec<u8>,
        acc: u64,
        n: u32,
    }
    impl Bits {
        fn put(&mut self, value: u64, bits: u32) {
            self.acc |= value << self.n;
            self.n += bits;
            while self.n >= 8 {
                self.out.push(self.acc as u8);
                self.acc >>= 8;
                self.n -= 8;
            }
        }
        fn align(&mut self) {
            if self.n > 0 {
                self.put(0, 8 - self.n);
            }
        }
    }
    let mut b = Bits {
        out: Vec::new(),
        acc: 0,
        n: 0,
    };
    b.put(0, 1); // WBITS = 16
    for block in data.chunks(16 * 1024) {
        b.put(0, 1); // ISLAST
        b.put(0, 2); // MNIBBLES = 4
        b.put(block.len() as u64 - 1, 16); // MLEN - 1
        b.put(1, 1); // ISUNCOMPRESSED
        b.align();
        b.out.extend_from_slice(block);
    }
    b.put(1, 1); // ISLAST
    b.put(1, 1); // ISLASTEMPTY
    b.align();
    b.out
}

/// `data` as a zstd frame of raw blocks (RFC 8878 §3.1.1).
fn zstd_raw(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x28, 0xb5, 0x2f, 0xfd, 0xa0]; // magic; single segment, 4-byte size
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    let blocks: Vec<&[u8]> = data.chunks(128 * 1024).collect();
    for (i, block) in blocks.iter().enumerate() {
        let last = u32::from(i + 1 == blocks.len());
        let header = last | ((block.len() as u32) << 3); // block type 0: raw
        out.extend_from_slice(&header.to_le_bytes()[..3]);
        out.extend_from_slice(block);
    }
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[tokio::test]
async fn compressed_bodies_reach_the_client_unchanged() {
    let json = fixture("openai/chat_completion.json");
    let gz = gzip(&json);
    let truncated = gz[..gz.len() / 2].to_vec();
    // (coding, body as sent, outcome, usage status)
    let cases: Vec<(&str, Vec<u8>, Outcome, UsageStatus)> = vec![
        ("gzip", gz.clone(), Outcome::Ok, UsageStatus::Reported),
        (
            "br",
            brotli_stored(&json),
            Outcome::Ok,
            UsageStatus::Reported,
        ),
        // No zstd decoder: the bytes pass, usage is unknown (never garbage, never 0).
        ("zstd", zstd_raw(&json), Outcome::Ok, UsageStatus::Missing),
        // Complete at the HTTP level, broken as gzip: the upstream sent a bad body.
        (
            "gzip",
            truncated,
            Outcome::UpstreamError,
            UsageStatus::Missing,
        ),
    ];
    let mock = MockUpstream::tls()
        .route(
            "POST",
            "/v1/chat/completions",
            Reply::func(|req| {
                Reply::bytes(200, "application/json", req.body.clone())
                    .header("content-encoding", req.header("x-test-coding").unwrap())
            }),
        )
        .start()
        .await;
    let app = TestApp::spawn(&mock.base_url()).await;
    let acct = app.account("codings@example.com").await;
    for (coding, body, _, _) in &cases {
        // The mock echoes the request body: the request stands for what it should send.
        let r = app
            .http
            .post(app.url("/v1/chat/completions"))
            .header("x-llmobserve-key", &acct.key)
            .header("x-test-coding", *coding)
            .header("accept-encoding", "gzip, br, zstd")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-encoding"], *coding);
        assert_eq!(r.bytes().await.unwrap(), body.as_slice(), "{coding}");
    }
    let events = app.wait_events(&acct.user_id, cases.len()).await;
    for (e, (coding, _, outcome, status)) in events.iter().rev().zip(&cases) {
        assert_eq!(e.outcome, *outcome, "{coding}");
        assert_eq!(e.usage_status, *status, "{coding}");
        match status {
            UsageStatus::Reported => {
                assert_eq!(e.usage.unwrap().input_tokens, 1536, "{coding}");
                assert_eq!(e.cost.unwrap().to_string(), "0.00436", "{coding}");
            }
            _ => assert_no_usage(e),
        }
    }
    assert_one_event_per_authenticated_request(&app, cases.len() as u64).await;
}

#[tokio::test]
async fn a_redirect_is_passed_to_the_client_and_never_followed() {
    let canary = Canary::start().await;
    let location = format!("{}/v1/chat/completions", canary.url());
    let mock = MockUpstream::tls()
        .route(
            "POST",
            "/v1/chat/completions",
            Reply::func(move |req| {
                let status = req.header("x-test-status").unwrap().parse().unwrap();
                Reply::json(status, r#"{"moved":true}"#).header("location", &location)
            }),
        )
        .start()
        .await;
    let app = TestApp::spawn(&mock.base_url()).await;
    let acct = app.account("redirect@example.com").await;
    let no_follow = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for status in [301u16, 302, 307, 308] {
        let r = no_follow
            .post(app.url("/v1/chat/completions"))
            .header("x-llmobserve-key", &acct.key)
            .header("x-test-status", status.to_string())
            .body(CHAT)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status);
        assert_eq!(
            r.headers()["location"].to_str().unwrap(),
            format!("{}/v1/chat/completions", canary.url())
        );
        assert_eq!(r.bytes().await.unwrap(), r#"{"moved":true}"#);
    }
    assert_eq!(mock.request_count(), 4);
    let events = app.wait_events(&acct.user_id, 4).await;
    for (e, status) in events.iter().rev().zip([301u16, 302, 307, 308]) {
        assert_eq!((e.status, e.outcome), (status, Outcome::Ok));
        assert_no_usage(e);
    }
    assert_one_event_per_authenticated_request(&app, 4).await;
    canary.assert_untouched();
}

// ---------------------------------------------------------------------------------------
// One 10 MiB SSE line, with the proxy's memory measured in a process of its own
// ---------------------------------------------------------------------------------------

const CHILD_ENV: &str = "LLMO_FAULTS_MEMORY_CHILD";
const LINE_BYTES: usize = 10 << 20;
/// What the proxy may add to the process's peak memory while the line passes: a small
/// fraction of the line (it buffers at most one SSE event of 1 MiB for the parser).
const PEAK_GROWTH_LIMIT: u64 = 6 << 20;

#[tokio::test]
async fn one_10_mib_sse_line_streams_through_in_bounded_memory() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return ten_mib_line_in_this_process().await;
    }
    // Measured alone: other tests of this binary would share the process's memory.
    let out = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "one_10_mib_sse_line_streams_through_in_bounded_memory",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.contains("MEMORY-CHECK peak_growth="),
        "child run failed:\n{stdout}\n{stderr}"
    );
}

/// A memory figure of this process from `/proc/self/status`: `VmRSS:` (resident now) or
/// `VmHWM:` (peak resident since the last [`reset_peak_rss`]).
fn rss(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .map(|v| v.trim().parse::<u64>().unwrap() * 1024)
        .unwrap()
}

/// Linux `clear_refs` 5: the peak restarts from the current resident size.
fn reset_peak_rss() {
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
}

async fn ten_mib_line_in_this_process() {
    const START: &[u8] = b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-sonnet-4-5-20250929\",\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}}\n\n";
    const LINE_HEAD: &[u8] = b"event: ping\ndata: {\"type\":\"ping\",\"pad\":\"";
    const LINE_TAIL: &[u8] = b"\"}\n\n";
    const END: &[u8] = b"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":5}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    static PAD: [u8; 64 * 1024] = [b'a'; 64 * 1024];
    let (addr, _upstream) = raw_upstream(|mut s, head| async move {
        s.write_all(SSE_HEAD).await.unwrap();
        write_chunk(&mut s, START).await.unwrap();
        if head.contains("small=1") {
            write_chunk(&mut s, END).await.unwrap();
            s.write_all(b"0\r\n\r\n").await.unwrap();
            return;
        }
        write_chunk(&mut s, LINE_HEAD).await.unwrap();
        for _ in 0..LINE_BYTES / PAD.len() {
            if write_chunk(&mut s, &PAD).await.is_err() {
                return;
            }
        }
        write_chunk(&mut s, LINE_TAIL).await.unwrap();
        write_chunk(&mut s, END).await.unwrap();
        s.write_all(b"0\r\n\r\n").await.unwrap();
        let _ = s.shutdown().await;
    })
    .await;
    let app = TestApp::spawn(&format!("http://{addr}")).await;
    let acct = app.account("bigline@example.com").await;
    // Warm up the connection pools with a small call (a big one would leave freed
    // memory behind that the measured call could reuse unseen).
    let warm = post(&app, &acct, "/anthropic/v1/messages?small=1", MESSAGES).await;
    let _ = read_body(warm).await;

    let baseline = rss("VmRSS:");
    reset_peak_rss();
    let mut r = post(&app, &acct, "/anthropic/v1/messages", MESSAGES).await;
    let expected = START.len() + LINE_HEAD.len() + LINE_BYTES + LINE_TAIL.len() + END.len();
    let mut total = 0usize;
    let mut tail = Vec::new();
    while let Some(c) = r.chunk().await.unwrap() {
        total += c.len();
        tail.extend_from_slice(&c);
        if tail.len() > 4096 {
            tail.drain(..tail.len() - 4096);
        }
    }
    let peak = rss("VmHWM:");
    assert_eq!(total, expected);
    assert!(tail.ends_with(END));
    let growth = peak.saturating_sub(baseline);
    eprintln!("MEMORY-CHECK peak_growth={growth} baseline={baseline}");
    assert!(
        growth < PEAK_GROWTH_LIMIT,
        "peak memory grew by {growth} bytes while a {LINE_BYTES}-byte line passed"
    );

    let ev = app.wait_events(&acct.user_id, 2).await;
    let e = &ev[0];
    assert_eq!((e.status, e.outcome), (200, Outcome::Ok));
    assert_eq!(e.usage_status, UsageStatus::Reported);
    let u = e.usage.unwrap();
    assert_eq!((u.input_tokens, u.output_tokens), (10, 5));
    assert_one_event_per_authenticated_request(&app, 2).await;
}

#[tokio::test]
async fn an_upstream_that_closes_each_kept_alive_connection_costs_no_call() {
    // Answers one request per connection without `Connection: close`, then hangs up, as
    // a provider's edge does when its keep-alive timer ends: the pooled connection is dead
    // by the next call.
    let body = fixture("openai/chat_completion.json");
    let (addr, _server) = raw_upstream(move |mut s, _head| {
        let body = body.clone();
        async move {
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes()).await;
            let _ = s.write_all(&body).await;
        }
    })
    .await;
    let app = TestApp::spawn_with(&format!("http://{addr}"), |c| c.proxy_workers = 1).await;
    let acct = app.account("closing@example.com").await;
    for pause in [0, 0, 0, 20, 20, 0] {
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let r = post(&app, &acct, "/v1/chat/completions", CHAT).await;
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.bytes().await.unwrap(),
            fixture("openai/chat_completion.json")
        );
    }
    for e in app.wait_events(&acct.user_id, 6).await {
        assert_eq!((e.status, e.outcome), (200, Outcome::Ok));
        let u = e.usage.unwrap();
        assert_eq!((u.input_tokens, u.output_tokens), (1536, 212));
    }
    assert_one_event_per_authenticated_request(&app, 6).await;
}
