//! Accept loop shared by both listeners: TCP_NODELAY, optional TLS, HTTP/1.1 keep-alive
//! and h2 (hyper-util auto), and graceful shutdown that lets in-flight requests and
//! streams finish within a bounded grace period.
//!
//! Every limit a client could otherwise exhaust is enforced here, for both listeners
//! ([`Limits`], from `Config`):
//! * open connections: past `max_connections` a new connection gets a minimal `503` and is
//!   closed (TLS listeners just close it: a handshake is what overload cannot afford);
//! * request heads: `max_header_bytes` (hyper answers `431`, HTTP/1.1 and h2 alike);
//! * idle connections and slow heads: a connection with no request in flight must send a
//!   whole request head within the header-read timeout, counted from when it went idle
//!   (a head still arriving is not in flight yet). This covers a client that connects
//!   and sends nothing, one that drips a head or the h2 preface, and idle h2 connections;
//! * request bodies ([`RequestBody`]): a pause longer than `body_idle_timeout` between two
//!   chunks fails the body, and all in-flight requests of a listener together hold at most
//!   `max_buffered_request_bytes` of body (the handlers turn both into `408` and `503`).

mod body;
mod supervise;
mod workers;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

pub use body::{BodyError, RequestBody};
use supervise::Supervised;
pub use workers::{Workers, current as current_worker, one_per_core};

use crate::config::Config;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Connections being answered `503` at once; past it, extra connections are just closed.
const REFUSING_AT_ONCE: usize = 64;
/// How long a refused connection may take to receive its `503`.
const REFUSE_LINGER: Duration = Duration::from_secs(1);
/// The answer to a connection over the cap: OpenAI-shaped JSON, which also fits the admin
/// API's `{"error":{"code","message"}}`.
const BUSY_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
retry-after: 1\r\n\
connection: close\r\n\
content-length: 134\r\n\
\r\n\
{\"error\":{\"message\":\"too many open connections to this server; retry shortly\",\"type\":\"server_error\",\"param\":null,\"code\":\"overloaded\"}}";

/// What one listener allows a client to hold. See the module docs.
#[derive(Debug, Clone)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub body_idle_timeout: Duration,
    pub max_connections: usize,
    pub max_buffered_request_bytes: usize,
    pub max_header_bytes: usize,
    /// How long shutdown waits for open connections.
    pub grace: Duration,
}

impl Limits {
    /// The limits `config` sets, with this shutdown grace period.
    pub fn new(config: &Config, grace: Duration) -> Limits {
        Limits {
            header_read_timeout: config.header_read_timeout,
            body_idle_timeout: config.body_idle_timeout,
            max_connections: config.max_connections,
            max_buffered_request_bytes: config.max_buffered_request_bytes,
            max_header_bytes: config.max_header_bytes,
            grace,
        }
    }
}

/// Loads a PEM certificate chain and key into a TLS acceptor (ALPN h2, http/1.1).
pub fn tls_acceptor(cert: &Path, key: &Path) -> anyhow::Result<TlsAcceptor> {
    use anyhow::Context;
    let certs: Vec<_> = rustls_pemfile::certs(
        &mut std::fs::read(cert)
            .context("reading --tls-cert")?
            .as_slice(),
    )
    .collect::<Result<_, _>>()
    .context("parsing --tls-cert")?;
    let key = rustls_pemfile::private_key(
        &mut std::fs::read(key).context("reading --tls-key")?.as_slice(),
    )
    .context("parsing --tls-key")?
    .context("--tls-key holds no private key")?;
    let mut cfg = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("building TLS config")?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

/// Serves connections until `shutdown` turns true, then waits up to `limits.grace` for
/// open connections to finish. `handler` is called per request with the peer address.
/// With `workers`, connections are accepted here and served on the workers, in turn.
pub async fn serve<H, Fut, B>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    handler: H,
    mut shutdown: watch::Receiver<bool>,
    limits: Limits,
    workers: Option<Arc<Workers>>,
) where
    H: Fn(SocketAddr, Request<RequestBody>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // Slow heads are the idle watcher's job (`Activity`): an h1 head is read while no
        // request is in flight, so the watcher's deadline is never later than hyper's,
        // and hyper's would cost a boxed timer registered and dropped per request.
        .header_read_timeout(None)
        // The head must fit the read buffer; hyper answers 431 past it.
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    let builder = Arc::new(builder);
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let refusing = Arc::new(Semaphore::new(REFUSING_AT_ONCE));
    let buffered = Arc::new(Semaphore::new(
        limits
            .max_buffered_request_bytes
            .min(Semaphore::MAX_PERMITS),
    ));
    // Logged once per stretch at the cap, not once per refused connection.
    let mut at_cap = false;
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: back off briefly rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let Ok(slot) = connections.clone().try_acquire_owned() else {
            if !at_cap {
                at_cap = true;
                tracing::warn!(
                    max_connections = limits.max_connections,
                    "connection limit reached, refusing new connections"
                );
            }
            refuse(stream, tls.is_some(), &refusing);
            continue;
        };
        at_cap = false;
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::new());
        let service = {
            let (handler, activity, buffered) =
                (handler.clone(), activity.clone(), buffered.clone());
            let body_idle = limits.body_idle_timeout;
            hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let in_flight = activity.begin();
                let (req, held) = RequestBody::wrap(req, body_idle, &buffered);
                let fut = handler(peer, req);
                async move {
                    let resp = fut.await;
                    // The body is parsed and sent on by now: its bytes no longer count.
                    drop(held);
                    Ok::<_, Infallible>(resp.map(|inner| Tracked {
                        inner,
                        _in_flight: in_flight,
                    }))
                }
            })
        };
        let conn = Connection {
            builder: builder.clone(),
            signal: shutdown.clone(),
            tls: tls.clone(),
            header_timeout: limits.header_read_timeout,
            activity,
            _slot: slot,
        };
        match &workers {
            None => {
                tokio::spawn(conn.run(stream, service));
            }
            Some(workers) => {
                workers.serve_connection(stream, move |stream| conn.run(stream, service));
            }
        }
    }
    drop(listener);
    // Every connection task holds one slot until it ends; shutdown has told each of them
    // to finish (see `Supervised`), so all slots coming back means all are done.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(limits.grace, connections.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(
            grace_ms = limits.grace.as_millis() as u64,
            "grace period over, closing remaining connections"
        );
    }
}

/// One accepted connection, ready to be served on whichever runtime runs [`Connection::run`].
struct Connection {
    builder: Arc<auto::Builder<TokioExecutor>>,
    signal: watch::Receiver<bool>,
    tls: Option<TlsAcceptor>,
    header_timeout: Duration,
    activity: Arc<Activity>,
    /// Released when the connection ends: shutdown waits for every slot.
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl Connection {
    async fn run<S, B>(self, stream: TcpStream, service: S)
    where
        S: hyper::service::Service<Request<hyper::body::Incoming>, Response = Response<B>>
            + Send
            + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let Connection {
            builder,
            signal,
            tls,
            header_timeout,
            activity,
            _slot,
        } = self;
        let result = match tls {
            None => {
                let conn = builder.serve_connection(TokioIo::new(stream), service);
                Supervised::new(conn.into_owned(), activity, header_timeout, signal).await
            }
            Some(acceptor) => {
                let mut signal = signal;
                let handshake = tokio::time::timeout(header_timeout, acceptor.accept(stream));
                let tls_stream = tokio::select! {
                    r = handshake => match r {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    },
                    () = supervise::shutdown_signalled(&mut signal) => return,
                };
                let conn = builder.serve_connection(TokioIo::new(tls_stream), service);
                Supervised::new(conn.into_owned(), activity, header_timeout, signal).await
            }
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "connection ended with error");
        }
    }
}

/// Answers a connection over the cap with [`BUSY_RESPONSE`] and closes it, in a task
/// bounded in number and time. Plain HTTP only.
fn refuse(stream: TcpStream, tls: bool, refusing: &Arc<Semaphore>) {
    if tls {
        return;
    }
    let Ok(permit) = refusing.clone().try_acquire_owned() else {
        return;
    };
    tokio::spawn(async move {
        let _permit = permit;
        let mut stream = stream;
        let _ = tokio::time::timeout(REFUSE_LINGER, async {
            stream.write_all(BUSY_RESPONSE).await?;
            stream.shutdown().await?;
            // Read what the client already sent: closing a socket with unread input
            // resets it, and the reset can destroy the answer before the client reads it.
            let mut sink = [0u8; 4096];
            while stream.read(&mut sink).await? > 0 {}
            Ok::<_, std::io::Error>(())
        })
        .await;
    });
}

/// Requests of one connection that are still running (until their response body ends),
/// and when the last of them ended. Starting and ending a request only touches two
/// atomics: the idle watcher reads them when its one timer fires, instead of being woken
/// (and re-arming a timer) on every request.
struct Activity {
    in_flight: AtomicUsize,
    /// Milliseconds from `opened` to when the connection last went idle.
    idle_since_ms: AtomicU64,
    opened: tokio::time::Instant,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
            opened: tokio::time::Instant::now(),
        }
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(self.clone())
    }

    /// Returns once the connection has had no request in flight for `limit`.
    async fn idle_too_long(&self, limit: Duration) {
        let mut deadline = self.opened + limit;
        loop {
            tokio::time::sleep_until(deadline).await;
            let now = tokio::time::Instant::now();
            if self.in_flight.load(Ordering::SeqCst) > 0 {
                // Busy: whenever it goes idle, it gets at least `limit` from then.
                deadline = now + limit;
                continue;
            }
            let since =
                self.opened + Duration::from_millis(self.idle_since_ms.load(Ordering::SeqCst));
            if now >= since + limit && self.in_flight.load(Ordering::SeqCst) == 0 {
                tracing::debug!(
                    idle_ms = limit.as_millis() as u64,
                    "closing idle connection"
                );
                return;
            }
            deadline = (since + limit).max(now + Duration::from_millis(1));
        }
    }
}

/// One running request; dropped with its response body.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        // Stamped before the count drops, so a watcher that sees no request in flight
        // also sees when the last one ended.
        let ms = u64::try_from(a.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        a.idle_since_ms.fetch_max(ms, Ordering::SeqCst);
        a.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A response body that keeps its request counted as in flight until it ends.
/// Forwards every call untouched.
struct Tracked<B> {
    inner: B,
    _in_flight: InFlight,
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    #[inline]
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One `Connection: close` GET; returns the response body.
    async fn get_once(addr: SocketAddr) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out.split_once("\r\n\r\n").unwrap().1.to_owned()
    }

    #[tokio::test]
    async fn connections_are_served_on_the_workers_in_turn() {
        let workers = Arc::new(Workers::start(2, "t-serve").unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, rx) = watch::channel(false);
        let limits = Limits::new(&Config::for_data_dir("unused"), Duration::from_secs(5));
        let handler = |_peer, _req| async {
            let name = std::thread::current().name().unwrap_or("").to_owned();
            Response::new(http_body_util::Full::new(bytes::Bytes::from(name)))
        };
        let server = tokio::spawn(serve(
            listener,
            None,
            handler,
            rx,
            limits,
            Some(workers.clone()),
        ));
        let mut seen = Vec::new();
        for _ in 0..4 {
            seen.push(get_once(addr).await);
        }
        assert_eq!(seen, ["t-serve-0", "t-serve-1", "t-serve-0", "t-serve-1"]);
        stop.send(true).unwrap();
        server.await.unwrap();
        let Ok(workers) = Arc::try_unwrap(workers) else {
            panic!("serve kept the workers after it returned");
        };
        workers.stop().await;
    }

    #[test]
    fn the_busy_answer_declares_its_true_length() {
        let text = std::str::from_utf8(BUSY_RESPONSE).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let declared = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap();
        assert_eq!(declared.parse::<usize>().unwrap(), body.len());
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], "overloaded");
    }
}
