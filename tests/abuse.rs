//! Client abuse (issue 6, item 2), on loopback with short limits: slow and stalled
//! clients on both listeners, bodies and heads over their limits, the connection cap and
//! the buffered-bytes budget, request smuggling shapes, CONNECT, absolute-form targets,
//! upgrades, dot segments, and every client-controlled way to name another host.
//!
//! A canary listener stands for "anywhere else": its address is put in Host headers,
//! forwarding headers, absolute-form targets, CONNECT targets and body fields, and every
//! test asserts it was never connected to. Every test also checks that the store holds
//! exactly one event per authenticated request.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::app::{Account, TestApp};
use common::mock_upstream::{MockUpstream, MockUpstreamHandle, Reply, fixture};
use llmobserve::store::model::Outcome;
use support::{Canary, Raw, assert_one_event_per_authenticated_request, raw_post};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CHAT: &str = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;
const MESSAGES: &str = r#"{"model":"claude-sonnet-4-5","max_tokens":100,"messages":[]}"#;
/// Generous upper bound for "about at the timeout" on a loaded 2-core machine.
const SLACK: Duration = Duration::from_secs(3);

/// Answers every path with a chat completion (or a Messages reply under `/v1/messages`).
async fn mock() -> MockUpstreamHandle {
    MockUpstream::tls()
        .json("/v1/messages", "anthropic/messages.json")
        .route(
            "*",
            "/*",
            Reply::json(200, fixture("openai/chat_completion.json")),
        )
        .start()
        .await
}

struct Setup {
    mock: MockUpstreamHandle,
    app: TestApp,
    acct: Account,
    canary: Canary,
}

impl Setup {
    async fn new(tweak: impl FnOnce(&mut llmobserve::config::Config)) -> Setup {
        let canary = Canary::start().await;
        let mock = mock().await;
        let app = TestApp::spawn_with(&mock.base_url(), tweak).await;
        let acct = app.account("abuse@example.com").await;
        Setup {
            mock,
            app,
            acct,
            canary,
        }
    }

    fn proxy(&self) -> SocketAddr {
        self.app.app.proxy_addr
    }

    fn admin(&self) -> SocketAddr {
        self.app.app.admin_addr
    }

    /// Checks the invariants every abuse test ends with.
    async fn finish(&self, authenticated: u64, forwarded: usize) {
        assert_eq!(self.mock.request_count(), forwarded, "requests upstream");
        assert_one_event_per_authenticated_request(&self.app, authenticated).await;
        self.canary.assert_untouched();
    }
}

/// Connects and keeps dripping `bytes`, one write per 50 ms, until the server closes the
/// connection; returns how long that took. Panics after `limit`.
async fn drip_until_closed(addr: SocketAddr, drip: &[&[u8]], limit: Duration) -> Duration {
    let mut s = TcpStream::connect(addr).await.unwrap();
    drip_on(&mut s, drip, limit).await
}

/// [`drip_until_closed`] on a connection already open.
async fn drip_on(s: &mut TcpStream, drip: &[&[u8]], limit: Duration) -> Duration {
    let addr = s.peer_addr().unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    let mut next = drip.iter().cycle();
    loop {
        assert!(
            start.elapsed() < limit,
            "{addr} still open after {limit:?} of dripping"
        );
        tokio::select! {
            r = s.read(&mut buf) => match r {
                Ok(0) | Err(_) => return start.elapsed(),
                Ok(_) => {} // a 408 or similar before the close is fine
            },
            () = tokio::time::sleep(Duration::from_millis(50)) => {
                if s.write_all(next.next().unwrap()).await.is_err() {
                    return start.elapsed();
                }
            }
        }
    }
}

#[tokio::test]
async fn slowloris_and_silent_connections_are_cut_at_the_header_timeout_on_both_listeners() {
    let timeout = Duration::from_millis(400);
    let s = Setup::new(|c| c.header_read_timeout = timeout).await;
    let head: &[&[u8]] = &[
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n",
        b"X-Drip: 1\r\n",
    ];
    let preface: Vec<&[u8]> = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".chunks(1).collect();
    for (name, addr) in [("proxy", s.proxy()), ("admin", s.admin())] {
        // Headers dripped one line at a time (the classic slowloris).
        let took = drip_until_closed(addr, head, timeout + SLACK).await;
        assert!(took >= timeout * 3 / 4, "{name}: closed after {took:?}");
        // A connection that never sends a byte.
        let mut silent = Raw::connect(addr).await;
        let took = silent.closed_within(timeout + SLACK).await;
        assert!(
            took >= timeout * 3 / 4,
            "{name}: silent closed after {took:?}"
        );
        // The h2 preface, a byte at a time.
        let took = drip_until_closed(addr, &preface, timeout + SLACK).await;
        assert!(
            took >= timeout * 3 / 4,
            "{name}: preface closed after {took:?}"
        );
    }
    // Both listeners still serve.
    let r = s
        .app
        .http
        .get(format!("{}/healthz", s.app.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = s
        .app
        .http
        .post(s.app.url("/v1/chat/completions"))
        .header("x-llmobserve-key", &s.acct.key)
        .body(CHAT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    s.finish(1, 1).await;
}

#[tokio::test]
async fn a_stalled_request_body_gets_408_on_the_proxy_and_an_answer_on_the_admin() {
    let timeout = Duration::from_millis(400);
    let s = Setup::new(|c| c.body_idle_timeout = timeout).await;
    let proxy = s.proxy().to_string();

    // Content-Length 100, 10 bytes sent, then nothing.
    let mut conn = Raw::connect(s.proxy()).await;
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {proxy}\r\nX-LLMObserve-Key: {}\r\n\
         Content-Length: 100\r\n\r\n{{\"model\":\"",
        s.acct.key
    );
    let start = Instant::now();
    conn.send(head.as_bytes()).await;
    let r = conn.response(timeout + SLACK).await;
    let took = start.elapsed();
    assert_eq!(r.status, 408);
    assert!(took >= timeout * 3 / 4, "answered after {took:?}");
    assert_eq!(r.json()["error"]["code"], "request_timeout");
    conn.closed_within(SLACK).await;

    // Chunked, on the Anthropic route: the error comes in Anthropic's shape.
    let mut conn = Raw::connect(s.proxy()).await;
    let head = format!(
        "POST /anthropic/v1/messages HTTP/1.1\r\nHost: {proxy}\r\nX-LLMObserve-Key: {}\r\n\
         Transfer-Encoding: chunked\r\n\r\n9\r\n{{\"model\":\r\n",
        s.acct.key
    );
    conn.send(head.as_bytes()).await;
    let r = conn.response(timeout + SLACK).await;
    assert_eq!(r.status, 408);
    let v = r.json();
    assert_eq!(v["type"], "error");
    assert!(v["error"]["message"].as_str().unwrap().contains("stalled"));
    conn.closed_within(SLACK).await;

    // The admin listener: a login whose body stops half way.
    let mut conn = Raw::connect(s.admin()).await;
    let start = Instant::now();
    conn.send(
        b"POST /auth/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
          Content-Length: 200\r\n\r\n{\"email\":\"",
    )
    .await;
    let r = conn.response(timeout + SLACK).await;
    let took = start.elapsed();
    assert!(
        (400..500).contains(&r.status),
        "admin answered {}",
        r.status
    );
    assert!(took >= timeout * 3 / 4, "admin answered after {took:?}");
    conn.closed_within(SLACK).await;

    for e in s.app.wait_events(&s.acct.user_id, 2).await {
        assert_eq!((e.status, e.outcome), (408, Outcome::ProxyError));
    }
    s.finish(2, 0).await;
}

#[tokio::test]
async fn bodies_over_the_limit_are_413_before_they_are_read_or_forwarded() {
    let s = Setup::new(|c| c.max_body_bytes = 1024).await;
    let proxy = s.proxy().to_string();

    // A declared length over the limit is refused before a byte of the body is sent.
    let mut conn = Raw::connect(s.proxy()).await;
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {proxy}\r\nX-LLMObserve-Key: {}\r\n\
         Content-Length: 10485760\r\n\r\n",
        s.acct.key
    );
    conn.send(head.as_bytes()).await;
    let r = conn.response(SLACK).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["error"]["code"], "request_too_large");

    // Chunked: refused once the chunks pass the limit.
    let mut conn = Raw::connect(s.proxy()).await;
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {proxy}\r\nX-LLMObserve-Key: {}\r\n\
         Transfer-Encoding: chunked\r\n\r\n",
        s.acct.key
    );
    conn.send(head.as_bytes()).await;
    let chunk = format!("200\r\n{}\r\n", "x".repeat(0x200));
    for _ in 0..3 {
        conn.send(chunk.as_bytes()).await;
    }
    let r = conn.response(SLACK).await;
    assert_eq!(r.status, 413);

    for e in s.app.wait_events(&s.acct.user_id, 2).await {
        assert_eq!((e.status, e.outcome), (413, Outcome::ProxyError));
    }
    s.finish(2, 0).await;
}

#[tokio::test]
async fn past_the_connection_cap_a_listener_answers_503_and_recovers() {
    let s = Setup::new(|c| {
        c.max_connections = 3;
        // Idle connections must hold their slots for the whole test.
        c.header_read_timeout = Duration::from_secs(30);
    })
    .await;
    for (name, addr, path, ok_status) in [
        ("proxy", s.proxy(), "/v1/models", 401),
        ("admin", s.admin(), "/healthz", 200),
    ] {
        let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        let mut idle = Vec::new();
        for _ in 0..3 {
            idle.push(Raw::connect(addr).await);
        }
        let start = Instant::now();
        let mut over = Raw::connect(addr).await;
        over.send(request.as_bytes()).await;
        let r = over.response(SLACK).await;
        assert_eq!(r.status, 503, "{name}");
        assert_eq!(r.header("retry-after"), Some("1"));
        assert_eq!(r.json()["error"]["code"], "overloaded");
        assert!(start.elapsed() < SLACK, "{name}: the 503 must be quick");
        over.closed_within(SLACK).await;

        // The other listener has its own cap (a raw connection: a pooled one would
        // keep holding a slot there). Its slots may still be coming back from the
        // previous round's connections, closed a moment ago: a server frees a slot when
        // its worker reads the FIN, which can take a few ms on a busy machine. A shared
        // cap would never free one, since this listener's idle connections stay open.
        let other = if name == "proxy" {
            s.admin()
        } else {
            s.proxy()
        };
        let deadline = Instant::now() + SLACK;
        loop {
            let mut conn = Raw::connect(other).await;
            conn.send(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .await;
            let r = conn.response(SLACK).await;
            if r.status != 503 {
                conn.closed_within(SLACK).await;
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{name}: the caps are per listener"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        // A slot freed is a slot usable again.
        drop(idle.pop());
        let deadline = Instant::now() + SLACK;
        loop {
            let mut conn = Raw::connect(addr).await;
            conn.send(request.as_bytes()).await;
            let r = conn.response(SLACK).await;
            if r.status == ok_status {
                break;
            }
            assert_eq!(r.status, 503, "{name}");
            assert!(
                Instant::now() < deadline,
                "{name}: the freed slot never came back"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    s.finish(0, 0).await;
}

#[tokio::test]
async fn past_the_buffered_bytes_budget_the_proxy_answers_503_and_recovers() {
    const BODY: usize = 40_000;
    let s = Setup::new(|c| {
        c.max_body_bytes = BODY;
        c.max_buffered_request_bytes = 64_000;
    })
    .await;
    let proxy = s.proxy().to_string();
    let key = &s.acct.key;
    let body = format!(
        r#"{{"model":"gpt-4o","pad":"{}"}}"#,
        "a".repeat(BODY - r#"{"model":"gpt-4o","pad":""}"#.len())
    );
    assert_eq!(body.len(), BODY);

    // A declares 40 000 bytes. `100 Continue` comes when the proxy starts reading the
    // body, i.e. once A's share of the budget is taken; then A sends half and waits.
    let mut a = Raw::connect(s.proxy()).await;
    a.send(
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: {proxy}\r\nX-LLMObserve-Key: {key}\r\n\
             Content-Length: {BODY}\r\nExpect: 100-continue\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(a.response(SLACK).await.status, 100);
    a.send(&body.as_bytes()[..BODY / 2]).await;

    // B declares 40 000 too: 24 000 are left, so B is refused before sending its body.
    let mut b = Raw::connect(s.proxy()).await;
    b.send(
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: {proxy}\r\nX-LLMObserve-Key: {key}\r\n\
             Content-Length: {BODY}\r\nExpect: 100-continue\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    let r = b.response(SLACK).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["error"]["code"], "overloaded");

    // C is chunked: its chunks are counted as they come; 24 000 fit, one more byte not.
    let mut c = Raw::connect(s.proxy()).await;
    c.send(
        format!(
            "POST /anthropic/v1/messages HTTP/1.1\r\nHost: {proxy}\r\nX-LLMObserve-Key: {key}\r\n\
             Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(c.response(SLACK).await.status, 100);
    c.send(format!("{:x}\r\n{}\r\n", 24_000, "b".repeat(24_000)).as_bytes())
        .await;
    c.send(b"1\r\nb\r\n").await;
    let r = c.response(SLACK).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["error"]["type"], "overloaded_error");

    // A finishes normally, and then a full-size call fits again.
    a.send(&body.as_bytes()[BODY / 2..]).await;
    assert_eq!(a.response(SLACK).await.status, 200);
    let r = s
        .app
        .http
        .post(s.app.url("/v1/chat/completions"))
        .header("x-llmobserve-key", key)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(s.mock.requests()[0].body, body.as_bytes());

    let ev = s.app.wait_events(&s.acct.user_id, 4).await;
    let busy: Vec<_> = ev.iter().filter(|e| e.status == 503).collect();
    assert_eq!(busy.len(), 2);
    assert!(busy.iter().all(|e| e.outcome == Outcome::ProxyError));
    s.finish(4, 2).await;
}

#[tokio::test]
async fn oversized_heads_get_431_on_both_listeners() {
    let s = Setup::new(|c| c.max_header_bytes = 16 * 1024).await;
    let big_value = format!(
        "GET /v1/models HTTP/1.1\r\nHost: localhost\r\nX-LLMObserve-Key: {}\r\nX-Big: {}\r\n\r\n",
        s.acct.key,
        "v".repeat(32 * 1024)
    );
    let mut many = String::from("GET /v1/models HTTP/1.1\r\nHost: localhost\r\n");
    for i in 0..150 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    for addr in [s.proxy(), s.admin()] {
        for req in [&big_value, &many] {
            let mut conn = Raw::connect(addr).await;
            conn.send(req.as_bytes()).await;
            let r = conn.response(SLACK).await;
            assert_eq!(r.status, 431, "{addr}");
        }
    }
    s.finish(0, 0).await;
}

#[tokio::test]
async fn content_length_with_transfer_encoding_is_read_as_chunked_and_reframed() {
    let s = Setup::new(|_| {}).await;
    let canary = s.canary.authority();
    let mut conn = Raw::connect(s.proxy()).await;
    // RFC 9112 §6.3: Transfer-Encoding wins and the connection closes after the answer.
    // Read by Content-Length instead, the body's rest would be parsed as a request; the
    // trailing GET is never read at all.
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {canary}\r\nX-LLMObserve-Key: {}\r\n\
         Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{CHAT}\r\n0\r\n\r\n\
         GET /v1/models HTTP/1.1\r\nHost: {canary}\r\n\r\n",
        s.acct.key,
        CHAT.len()
    );
    conn.send(req.as_bytes()).await;
    let r = conn.response(SLACK).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));
    conn.closed_within(SLACK).await;
    let sent = &s.mock.requests()[0];
    assert_eq!(sent.body, CHAT.as_bytes());
    assert_eq!(sent.header("transfer-encoding"), None);
    if let Some(len) = sent.header("content-length") {
        assert_eq!(len, CHAT.len().to_string());
    }
    s.finish(1, 1).await;
}

#[tokio::test]
async fn connect_upgrade_and_absolute_form_never_reach_another_host() {
    let s = Setup::new(|_| {}).await;
    let canary = s.canary.authority();
    let key = &s.acct.key;

    // CONNECT: no tunnel, whatever the target.
    for target in [canary.clone(), "/v1/chat/completions".to_owned()] {
        let mut conn = Raw::connect(s.proxy()).await;
        conn.send(
            format!(
                "CONNECT {target} HTTP/1.1\r\nHost: {canary}\r\nX-LLMObserve-Key: {key}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
        let r = conn.response(SLACK).await;
        assert!(
            (400..500).contains(&r.status),
            "CONNECT {target}: {}",
            r.status
        );
    }

    // Upgrades (WebSocket, h2c) are refused with a clear 400.
    for upgrade in [
        "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
        "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n",
    ] {
        let mut conn = Raw::connect(s.proxy()).await;
        conn.send(
            format!(
                "GET /v1/realtime?model=gpt-4o-realtime-preview HTTP/1.1\r\nHost: {canary}\r\n\
                 Authorization: Bearer {key}\r\n{upgrade}\r\n"
            )
            .as_bytes(),
        )
        .await;
        let r = conn.response(SLACK).await;
        assert_eq!(r.status, 400);
        let msg = r.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(msg.contains("Upgrade"), "{msg}");
    }

    // Absolute-form targets are routed by their path alone.
    for (target, body, upstream_path) in [
        (
            format!("http://{canary}/v1/chat/completions"),
            CHAT,
            "/v1/chat/completions",
        ),
        (
            format!("https://{canary}/anthropic/v1/messages"),
            MESSAGES,
            "/v1/messages",
        ),
    ] {
        let mut conn = Raw::connect(s.proxy()).await;
        conn.send(&raw_post(&target, &canary, key, body, "")).await;
        let r = conn.response(SLACK).await;
        assert_eq!(r.status, 200, "{target}");
        assert_eq!(s.mock.requests().last().unwrap().path(), upstream_path);
    }
    s.finish(2, 2).await;
}

#[tokio::test]
async fn dot_segment_paths_are_refused() {
    let s = Setup::new(|_| {}).await;
    for path in [
        "/v1/../admin",
        "/v1/%2e%2e/admin",
        "/v1/chat/%2E%2E/%2e%2e/completions",
        "/anthropic/v1/./messages",
        "/openai/%2e%2e/v1/chat/completions",
        "/v1/chat%2f..%2fcompletions",
    ] {
        let mut conn = Raw::connect(s.proxy()).await;
        conn.send(&raw_post(path, "localhost", &s.acct.key, CHAT, ""))
            .await;
        let r = conn.response(SLACK).await;
        assert_eq!(r.status, 400, "{path}");
    }
    s.finish(0, 0).await;
}

#[tokio::test]
async fn host_forwarding_headers_and_body_urls_cannot_choose_the_upstream() {
    let s = Setup::new(|_| {}).await;
    let canary = s.canary.authority();
    let url = s.canary.url();
    let extra = format!(
        "X-Forwarded-Host: {canary}\r\nX-Forwarded-Proto: http\r\nX-Forwarded-For: 10.0.0.1\r\n\
         Forwarded: for=10.0.0.1;host={canary};proto=http\r\nX-Original-URL: {url}/v1/x\r\n\
         X-Rewrite-URL: {url}/v1/x\r\nX-Host: {canary}\r\nOrigin: {url}\r\nReferer: {url}/\r\n"
    );
    let openai = format!(
        r#"{{"model":"gpt-4o","messages":[],"api_base":"{url}/v1","base_url":"{url}/v1","azure_endpoint":"{url}"}}"#
    );
    let anthropic = format!(
        r#"{{"model":"claude-sonnet-4-5","max_tokens":1,"messages":[],"base_url":"{url}"}}"#
    );
    let calls = [
        ("/v1/chat/completions".to_owned(), openai.clone()),
        (
            format!("/v1/chat/completions?api_base={url}&base_url={url}"),
            openai.clone(),
        ),
        ("/anthropic/v1/messages".to_owned(), anthropic),
        (
            "/azure/openai/deployments/d/chat/completions?api-version=2024-10-21".to_owned(),
            openai,
        ),
    ];
    for (path, body) in &calls {
        let mut conn = Raw::connect(s.proxy()).await;
        conn.send(&raw_post(path, &canary, &s.acct.key, body, &extra))
            .await;
        let r = conn.response(SLACK).await;
        assert_eq!(r.status, 200, "{path}");
    }
    let mock_authority = s.mock.addr().to_string();
    for r in s.mock.requests() {
        if let Some(host) = r.header("host") {
            assert_eq!(host, mock_authority, "the upstream saw Host {host}");
        }
    }
    s.finish(calls.len() as u64, calls.len()).await;
}

#[tokio::test]
async fn the_raw_helper_round_trips_a_normal_call() {
    // Guards the helpers the other tests rely on: a plain call over `Raw` works.
    let s = Setup::new(|_| {}).await;
    let mut conn = Raw::connect(s.proxy()).await;
    conn.send(&raw_post(
        "/v1/chat/completions",
        "localhost",
        &s.acct.key,
        CHAT,
        "",
    ))
    .await;
    let r = conn.response(SLACK).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, fixture("openai/chat_completion.json"));
    // Keep-alive: a second call on the same connection.
    conn.send(&raw_post(
        "/v1/chat/completions",
        "localhost",
        &s.acct.key,
        CHAT,
        "",
    ))
    .await;
    assert_eq!(conn.response(SLACK).await.status, 200);
    let _ = conn.stream.shutdown().await;
    s.finish(2, 2).await;
}

#[tokio::test]
async fn a_head_dripped_after_a_keep_alive_call_is_cut_at_the_header_timeout() {
    // The idle watcher, not hyper, times heads: the clock starts when the previous
    // response ended, so a slow second head on a reused connection is cut too.
    let timeout = Duration::from_millis(400);
    let s = Setup::new(|c| c.header_read_timeout = timeout).await;
    let mut conn = Raw::connect(s.proxy()).await;
    conn.send(&raw_post(
        "/v1/chat/completions",
        "localhost",
        &s.acct.key,
        CHAT,
        "",
    ))
    .await;
    assert_eq!(conn.response(SLACK).await.status, 200);
    let drip: &[&[u8]] = &[b"POST /v1/chat/completions HTTP/1.1\r\n", b"X-Drip: 1\r\n"];
    let took = drip_on(&mut conn.stream, drip, timeout + SLACK).await;
    assert!(took >= timeout * 3 / 4, "closed after {took:?}");
    s.finish(1, 1).await;
}

/// Serves both listeners over TLS with the test certificate.
fn serve_tls(c: &mut llmobserve::config::Config) {
    let dir = common::mock_upstream::certs_dir();
    c.tls = Some((dir.join("localhost.pem"), dir.join("localhost.key")));
}

async fn tls_connect(
    addr: SocketAddr,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let config = std::sync::Arc::new(common::mock_upstream::client_tls_config());
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tcp = TcpStream::connect(addr).await?;
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}

#[tokio::test]
async fn a_tls_listener_serves_and_times_out_silent_clients() {
    let timeout = Duration::from_millis(400);
    let s = Setup::new(|c| {
        serve_tls(c);
        c.header_read_timeout = timeout;
    })
    .await;

    // A plain call over TLS works.
    let mut conn = tls_connect(s.proxy()).await.unwrap();
    let mut req = raw_post("/v1/chat/completions", "localhost", &s.acct.key, CHAT, "");
    let at = req.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    req.splice(at + 2..at + 2, b"Connection: close\r\n".iter().copied());
    conn.write_all(&req).await.unwrap();
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).await.unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 200 "),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    // No ClientHello: closed at the header timeout.
    let mut silent = Raw::connect(s.proxy()).await;
    let took = silent.closed_within(timeout + SLACK).await;
    assert!(took >= timeout * 3 / 4, "closed after {took:?}");
    // A handshake and then nothing: closed at the header timeout too.
    let start = Instant::now();
    let mut idle = tls_connect(s.proxy()).await.unwrap();
    let mut buf = [0u8; 64];
    let r = tokio::time::timeout(timeout + SLACK, idle.read(&mut buf)).await;
    assert!(matches!(r, Ok(Ok(0)) | Ok(Err(_))), "still open: {r:?}");
    assert!(start.elapsed() >= timeout * 3 / 4);
    s.finish(1, 1).await;
}

#[tokio::test]
async fn over_the_cap_a_tls_listener_closes_new_connections() {
    let s = Setup::new(|c| {
        serve_tls(c);
        c.max_connections = 2;
        c.header_read_timeout = Duration::from_secs(30);
    })
    .await;
    let held = [
        tls_connect(s.proxy()).await.unwrap(),
        tls_connect(s.proxy()).await.unwrap(),
    ];
    assert!(
        tls_connect(s.proxy()).await.is_err(),
        "the handshake over the cap must fail"
    );
    drop(held);
    let deadline = Instant::now() + SLACK;
    while tls_connect(s.proxy()).await.is_err() {
        assert!(Instant::now() < deadline, "the freed slots never came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.finish(0, 0).await;
}

#[tokio::test]
async fn shutdown_does_not_wait_for_silent_handshakes_or_idle_connections() {
    // Both far longer than the test: shutdown must not sit them out.
    let long = Duration::from_secs(30);
    let Setup {
        mock: _mock,
        app,
        acct: _acct,
        canary: _canary,
    } = Setup::new(|c| {
        serve_tls(c);
        c.header_read_timeout = long;
        c.shutdown_grace = long;
    })
    .await;
    let proxy = app.app.proxy_addr;
    // TCP only, no ClientHello: the task is still in the TLS handshake.
    let _silent = Raw::connect(proxy).await;
    // A finished handshake and no request: an idle connection.
    let _idle = tls_connect(proxy).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let start = Instant::now();
    app.app.shutdown().await;
    let took = start.elapsed();
    assert!(took < Duration::from_secs(3), "shutdown took {took:?}");
}
