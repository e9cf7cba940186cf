//! Helpers for the fault and abuse suites (`tests/faults.rs`, `tests/abuse.rs`):
//! a canary listener that must never be reached, a raw HTTP/1.1 client for requests
//! reqwest will not send (slow, malformed, smuggled), and the metering invariant.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common::app::TestApp;

/// A listener standing for "anywhere else": its address goes into Host headers,
/// absolute-form targets, redirects and body fields. The proxy must never connect to it.
pub struct Canary {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Canary {
    pub async fn start() -> Canary {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                drop(conn);
            }
        });
        Canary { addr, hits, task }
    }

    /// `127.0.0.1:PORT`.
    pub fn authority(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Connections accepted so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Asserts the canary was never reached.
    pub fn assert_untouched(&self) {
        assert_eq!(
            self.hits(),
            0,
            "the canary at {} was connected to",
            self.addr
        );
    }
}

impl Drop for Canary {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// After draining: the store holds exactly one event per authenticated request.
/// Waits (bounded) for late events, e.g. of a stream ended by a timeout.
pub async fn assert_one_event_per_authenticated_request(app: &TestApp, authenticated: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stored = 0;
    while Instant::now() < deadline {
        stored = stored_events(app).await;
        if stored >= authenticated {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // An extra event would show up right behind the expected ones.
    tokio::time::sleep(Duration::from_millis(50)).await;
    stored = stored.max(stored_events(app).await);
    assert_eq!(
        stored, authenticated,
        "stored events vs authenticated requests"
    );
}

async fn stored_events(app: &TestApp) -> u64 {
    app.app.flush_events().await;
    let store = app.app.state.store.clone();
    tokio::task::spawn_blocking(move || store.event_count())
        .await
        .unwrap()
        .unwrap()
}

/// A response read off a raw connection.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// Lower-cased names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// A plain TCP connection speaking HTTP/1.1 by hand.
pub struct Raw {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Raw {
            stream,
            buf: Vec::new(),
        }
    }

    /// Writes bytes; `false` if the server already closed the connection.
    pub async fn send(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).await.is_ok()
    }

    async fn fill(&mut self, deadline: Instant) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, self.stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => false,
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(_) => panic!("no response within the time limit"),
        }
    }

    /// Reads one response (by Content-Length, chunked, or up to the close). Panics if
    /// none arrives within `limit`.
    pub async fn response(&mut self, limit: Duration) -> RawResponse {
        let deadline = Instant::now() + limit;
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i;
            }
            assert!(
                self.fill(deadline).await,
                "connection closed before a response head; got {:?}",
                String::from_utf8_lossy(&self.buf)
            );
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        self.buf.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let mut resp = RawResponse {
            status,
            headers,
            body: Vec::new(),
        };
        if let Some(len) = resp.header("content-length") {
            let len: usize = len.parse().unwrap();
            while self.buf.len() < len {
                assert!(self.fill(deadline).await, "body cut short");
            }
            resp.body = self.buf.drain(..len).collect();
        } else if resp
            .header("transfer-encoding")
            .is_some_and(|t| t.contains("chunked"))
        {
            loop {
                let line_end = loop {
                    if let Some(i) = find(&self.buf, b"\r\n") {
                        break i;
                    }
                    assert!(self.fill(deadline).await, "chunked body cut short");
                };
                let size_text = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
                let size =
                    usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
                while self.buf.len() < line_end + 2 + size + 2 {
                    assert!(self.fill(deadline).await, "chunked body cut short");
                }
                resp.body
                    .extend_from_slice(&self.buf[line_end + 2..line_end + 2 + size]);
                self.buf.drain(..line_end + 2 + size + 2);
                if size == 0 {
                    break;
                }
            }
        } else if status != 204 && status != 304 && !(100..200).contains(&status) {
            while self.fill(deadline).await {}
            resp.body = std::mem::take(&mut self.buf);
        }
        resp
    }

    /// Waits until the server closes the connection (EOF or reset), discarding what it
    /// sends; returns how long that took. Panics after `limit`.
    pub async fn closed_within(&mut self, limit: Duration) -> Duration {
        let start = Instant::now();
        let mut chunk = [0u8; 4096];
        loop {
            let left = limit.saturating_sub(start.elapsed());
            match tokio::time::timeout(left, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return start.elapsed(),
                Ok(Ok(_)) => {}
                Err(_) => panic!("the server kept the connection open for {limit:?}"),
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `POST <path>` with a JSON body and the pass-through key header, as raw bytes.
pub fn raw_post(path: &str, host: &str, key: &str, body: &str, extra: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nX-LLMObserve-Key: {key}\r\n\
         Authorization: Bearer sk-provider\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n{extra}\r\n{body}",
        body.len()
    )
    .into_bytes()
}
