//! The bench's mock upstream: a fast plain-HTTP hyper server on loopback, with (for
//! `--upstream-tls`) a second listener serving the same over TLS, h2 or HTTP/1.1 by ALPN,
//! as the providers do, with the test certificate of `certs/`.
//!
//! `POST .../chat/completions` answers a fixed `chat.completion` JSON with usage, or,
//! when the body says `"stream":true`, an SSE stream of `x-bench-chunks` content chunks
//! (default 20), one usage chunk and `data: [DONE]`, each chunk its own frame, with an
//! optional pause of `x-bench-delay-ms` before each one. The headers pass through every
//! proxy unchanged, so one mock serves every scenario. The bytes are built once.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::time::Sleep;
use tokio_rustls::TlsAcceptor;

/// The non-streamed answer (OpenAI `chat.completion`, priced model, with usage).
pub const CHAT_JSON: &str = r#"{"id":"chatcmpl-bench0000000000000000000000","object":"chat.completion","created":1754329412,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"Here is a summary of the incident report: the outage began at 09:12 UTC when the primary database failed over; reads were served from replicas within 40 seconds.","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":1536,"completion_tokens":212,"total_tokens":1748,"prompt_tokens_details":{"cached_tokens":1280,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default","system_fingerprint":"fp_07871e2ad8"}"#;

/// The request body the load generator sends for a non-streamed call.
pub const CHAT_REQUEST: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a terse assistant."},{"role":"user","content":"Summarize the incident report in three sentences."}],"temperature":0.2}"#;

/// The request body for a streamed call. It asks for usage itself, so the proxy
/// neither injects nor filters and the client must get the mock's bytes exactly.
pub const STREAM_REQUEST: &str = r#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"system","content":"You are a terse assistant."},{"role":"user","content":"Summarize the incident report in three sentences."}],"temperature":0.2}"#;

pub const CHUNKS_HEADER: &str = "x-bench-chunks";
pub const DELAY_HEADER: &str = "x-bench-delay-ms";
pub const DEFAULT_CHUNKS: usize = 20;

const CONTENT_CHUNK: &str = r#"data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1761904387,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_560af6e559","choices":[{"index":0,"delta":{"content":" token"},"logprobs":null,"finish_reason":null}],"usage":null}

"#;
const USAGE_CHUNK: &str = r#"data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1761904387,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_560af6e559","choices":[],"usage":{"prompt_tokens":24,"completion_tokens":20,"total_tokens":44,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}

"#;
const DONE_CHUNK: &str = "data: [DONE]\n\n";

/// The exact bytes a stream of `chunks` content chunks carries (what clients must get).
pub fn stream_bytes(chunks: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(CONTENT_CHUNK.len() * chunks + 600);
    for _ in 0..chunks {
        v.extend_from_slice(CONTENT_CHUNK.as_bytes());
    }
    v.extend_from_slice(USAGE_CHUNK.as_bytes());
    v.extend_from_slice(DONE_CHUNK.as_bytes());
    v
}

/// The test CA that signed the mock's TLS certificate (what the proxies must trust).
pub fn ca_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("certs/ca.pem")
}

/// A running mock; dropping it does not stop the server (the process exits instead).
pub struct Mock {
    pub addr: SocketAddr,
    /// The TLS listener's address, when asked for.
    pub tls_addr: Option<SocketAddr>,
}

/// Binds `127.0.0.1:0` (and, with `tls`, a second port serving TLS) and serves until
/// the runtime ends.
pub async fn start(tls: bool) -> anyhow::Result<Mock> {
    let shared = Arc::new(Frames {
        content: Bytes::from_static(CONTENT_CHUNK.as_bytes()),
        usage: Bytes::from_static(USAGE_CHUNK.as_bytes()),
        done: Bytes::from_static(DONE_CHUNK.as_bytes()),
        json: Bytes::from_static(CHAT_JSON.as_bytes()),
    });
    let addr = listen(Arc::clone(&shared), None).await?;
    let tls_addr = if tls {
        let certs = Path::new(env!("CARGO_MANIFEST_DIR")).join("certs");
        let acceptor = llmobserve::server::tls_acceptor(
            &certs.join("localhost.pem"),
            &certs.join("localhost.key"),
        )?;
        Some(listen(shared, Some(acceptor)).await?)
    } else {
        None
    };
    Ok(Mock { addr, tls_addr })
}

/// Serves `shared` on a new port of loopback: plain HTTP/1.1, or through `tls` with
/// whichever protocol the client chose by ALPN.
async fn listen(shared: Arc<Frames>, tls: Option<TlsAcceptor>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let _ = stream.set_nodelay(true);
            let shared = shared.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let shared = shared.clone();
                    async move { Ok::<_, Infallible>(answer(&shared, req).await) }
                });
                let mut server = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                match tls {
                    None => {
                        let _ = server
                            .http1_only()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    }
                    Some(tls) => {
                        let Ok(stream) = tls.accept(stream).await else {
                            return;
                        };
                        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                        if h2 {
                            server = server.http2_only();
                        } else {
                            server = server.http1_only();
                        }
                        let _ = server.serve_connection(TokioIo::new(stream), svc).await;
                    }
                }
            });
        }
    });
    Ok(addr)
}

struct Frames {
    content: Bytes,
    usage: Bytes,
    done: Bytes,
    json: Bytes,
}

fn header_num(req: &Request<Incoming>, name: &str) -> Option<u64> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

async fn answer(f: &Frames, req: Request<Incoming>) -> Response<MockBody> {
    let chunks = header_num(&req, CHUNKS_HEADER).map_or(DEFAULT_CHUNKS, |n| n as usize);
    let delay = header_num(&req, DELAY_HEADER)
        .filter(|d| *d > 0)
        .map(Duration::from_millis);
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let streamed = memchr_find(&body, br#""stream":true"#);
    let mut resp = if streamed {
        let mut r = Response::new(MockBody::Stream(Stream {
            content: f.content.clone(),
            usage: f.usage.clone(),
            done: f.done.clone(),
            left: chunks + 2,
            delay,
            sleep: None,
        }));
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        r
    } else {
        let mut r = Response::new(MockBody::Json(Some(f.json.clone())));
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    };
    resp.headers_mut().insert(
        "x-request-id",
        HeaderValue::from_static("req_bench_0000000000000000"),
    );
    resp
}

fn memchr_find(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// A body that is either one JSON frame or a paced SSE stream.
pub enum MockBody {
    Json(Option<Bytes>),
    Stream(Stream),
}

pub struct Stream {
    content: Bytes,
    usage: Bytes,
    done: Bytes,
    /// Frames still to send: content chunks, then usage, then done.
    left: usize,
    delay: Option<Duration>,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            MockBody::Json(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            MockBody::Stream(s) => {
                if s.left == 0 {
                    return Poll::Ready(None);
                }
                if let Some(d) = s.delay {
                    let sleep = s
                        .sleep
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(d)));
                    if sleep.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    s.sleep = None;
                }
                s.left -= 1;
                let frame = match s.left {
                    0 => s.done.clone(),
                    1 => s.usage.clone(),
                    _ => s.content.clone(),
                };
                Poll::Ready(Some(Ok(Frame::data(frame))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            MockBody::Json(b) => b.is_none(),
            MockBody::Stream(s) => s.left == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            MockBody::Json(Some(b)) => SizeHint::with_exact(b.len() as u64),
            MockBody::Json(None) => SizeHint::with_exact(0),
            MockBody::Stream(_) => SizeHint::default(),
        }
    }
}
