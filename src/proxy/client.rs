//! The upstream connections: one pool per proxy worker, over rustls, HTTP/1.1 or h2 by
//! ALPN, certificates checked against webpki roots plus an optional extra CA.
//!
//! A pool of our own rather than hyper-util's legacy client: per call that client hashes
//! its pool key with SipHash twice, formats `Host`, and spawns a task to hand an HTTP/1.1
//! connection back once it is idle again (10k instructions a call, ~2 µs of CPU at 64
//! connections in the bench's pass-through). Here a worker's pool is a short `Vec` behind
//! an uncontended lock, and an HTTP/1.1 connection goes back when its response body ends.
//!
//! An HTTP/1.1 connection has no task of its own: the call that holds it drives it from
//! its own task (see [`H1`]). An h2 connection, shared by many calls, runs as a task on
//! the runtime that opened it, and each call opens its stream and waits for its answer
//! from its own task (see `upstream_h2`). Either way a connection belongs to one worker,
//! so each worker has its own pool.

use std::error::Error as StdError;
use std::future::{Future, poll_fn};
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::{Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tower::ServiceExt;

use super::upstream_h2::{self, NotStarted, RecvBody};
use crate::config::BaseUrl;

type Connector = HttpsConnector<HttpConnector>;
type ReqBody = Full<Bytes>;
type Io = <Connector as tower::Service<Uri>>::Response;

/// How long a connection may sit unused before it is closed rather than reused: a
/// connection a NAT or the provider dropped silently would otherwise hang a call.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle HTTP/1.1 connections kept per worker, all upstreams together.
const MAX_IDLE: usize = 256;
/// How often a worker looks over its pooled connections while it has any: an HTTP/1.1
/// one has no task of its own to notice that the upstream closed it (the socket would
/// sit half-closed until its next call), and one unused past `IDLE_TIMEOUT` is closed
/// rather than kept until a call finds it. A look is a poll of each, no syscall unless
/// the socket has something to read.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// Closed pooled connections (or refused h2 streams) one call may run into before it
/// opens a new connection (or gives up).
const MAX_STALE: usize = 4;
/// Most calls one h2 connection carries at once; the next one opens another connection.
/// Servers cap the streams of a connection (`SETTINGS_MAX_CONCURRENT_STREAMS`, 100 to 256
/// at the big providers) and h2 holds a call past that cap until a stream ends, which
/// for an LLM stream can be minutes; a server's lower cap is kept too (a new connection
/// takes calls once the server's SETTINGS have said it, see `upstream_h2::handshake`).
/// This is RFC 9113's recommended minimum for that setting. (The RFC asks clients not
/// to open a second connection to one origin; proxies do, as Go's HTTP/2 transport does
/// by default.)
const MAX_H2_STREAMS: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("reading upstream CA {path}: {source}")]
    CaFile {
        path: String,
        source: std::io::Error,
    },
    #[error("upstream CA {0} holds no usable certificate")]
    CaEmpty(String),
}

/// Why a call got no response from the upstream.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The upstream's URI could not be put together (a bug: the parts were checked).
    #[error("invalid upstream URI")]
    BadUri,
    /// TCP connect or TLS handshake.
    #[error("connecting: {0}")]
    Connect(Box<dyn StdError + Send + Sync>),
    /// The HTTP/1.1 handshake, sending the request or reading the response head.
    #[error("{0}")]
    Http(#[from] hyper::Error),
    /// The same over h2.
    #[error("{0}")]
    H2(#[from] h2::Error),
    /// The connection this call waited for failed to open, for this reason.
    #[error("{0}")]
    Waited(String),
}

impl UpstreamError {
    /// A short, secret-free reason ("connect error: Connection refused", "TLS error: ...").
    pub fn describe(&self) -> String {
        let mut msg = String::new();
        let mut src: Option<&dyn StdError> = match self {
            UpstreamError::BadUri => None,
            UpstreamError::Waited(why) => return why.clone(),
            UpstreamError::Connect(e) => Some(e.as_ref()),
            UpstreamError::Http(e) => Some(e),
            UpstreamError::H2(e) => Some(e),
        };
        while let Some(s) = src {
            msg = s.to_string();
            src = s.source();
        }
        if msg.is_empty() {
            msg = self.to_string();
        }
        if let UpstreamError::Connect(_) = self {
            let lower = msg.to_ascii_lowercase();
            if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake")
            {
                return format!("TLS error: {msg}");
            }
            return format!("connect error: {msg}");
        }
        msg
    }
}

/// The pools: one for each proxy worker, and one for any other thread.
pub struct Upstream {
    pools: Vec<Arc<Pool>>,
}

impl Upstream {
    /// The pool of the calling thread's worker.
    pub fn here(&self) -> &Arc<Pool> {
        let i = crate::server::current_worker().map_or(0, |w| w + 1);
        self.pools.get(i).unwrap_or(&self.pools[0])
    }
}

/// Builds the pools for `workers` proxy workers.
pub fn build(
    extra_ca: Option<&Path>,
    connect_timeout: Duration,
    workers: usize,
) -> Result<Upstream, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = extra_ca {
        let shown = path.display().to_string();
        let pem = std::fs::read(path).map_err(|source| ClientError::CaFile {
            path: shown.clone(),
            source,
        })?;
        let mut added = 0;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()).flatten() {
            if roots.add(cert).is_ok() {
                added += 1;
            }
        }
        if added == 0 {
            return Err(ClientError::CaEmpty(shown));
        }
    }
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();

    let mut http = HttpConnector::new();
    http.enforce_http(false);
    // Without TCP_NODELAY, Nagle plus delayed ACK adds ~40 ms to small SSE writes.
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_keepalive(Some(Duration::from_secs(60)));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);

    let pools = (0..=workers)
        .map(|_| {
            Arc::new(Pool {
                connector: connector.clone(),
                idle: Mutex::new(Vec::new()),
                openers: Mutex::new(Vec::new()),
                sweeping: AtomicBool::new(false),
            })
        })
        .collect();
    Ok(Upstream { pools })
}

/// One worker's connections.
pub struct Pool {
    connector: Connector,
    /// Oldest first: HTTP/1.1 connections are pushed when they become idle, h2 ones when
    /// opened (and stay while open, shared by every call).
    idle: Mutex<Vec<Idle>>,
    /// One per upstream this worker has opened a connection to: whether it speaks
    /// HTTP/1.1, and the turn to take while opening one if it may not (see [`Opener`]).
    openers: Mutex<Vec<Opener>>,
    /// Whether a task is sweeping `idle` (see [`Pool::watch`]).
    sweeping: AtomicBool,
}

/// Takes turns opening connections to one upstream unless it is known to speak
/// HTTP/1.1. Calls that find no connection with room would otherwise each open one at
/// once: a burst of 50 past an h2 connection's cap, 50 TLS handshakes for connections
/// of 100 streams each; a burst of 256 calls at start-up, 256 handshakes where the
/// upstream turns out to speak h2 (measured in the bench: 247 connections, of which 4
/// were used). Instead one opens and the rest take slots on it; once an upstream
/// answered with HTTP/1.1, whose connections carry one call each, calls open theirs
/// at once again.
struct Opener {
    https: bool,
    authority: Authority,
    turn: Arc<Turn>,
}

struct Turn {
    /// Held while opening, with why the last attempt failed: calls that waited for that
    /// attempt fail with it rather than each try again, one connect timeout after
    /// another.
    lock: tokio::sync::Mutex<Option<Failed>>,
    /// Whether the last connection opened spoke HTTP/1.1.
    h1: AtomicBool,
}

struct Failed {
    at: Instant,
    why: String,
}

struct Idle {
    conn: Conn,
    since: Instant,
}

impl Idle {
    /// Unused for `IDLE_TIMEOUT`: an HTTP/1.1 connection since it was pooled, an h2 one
    /// since a call last started on it, with none on it now.
    fn expired(&self, now: Instant) -> bool {
        now.duration_since(self.since) >= IDLE_TIMEOUT
            && match &self.conn.sender {
                Sender::H1(_) => true,
                Sender::H2(_, streams) => streams.calls.load(Ordering::Acquire) == 0,
            }
    }
}

struct Conn {
    https: bool,
    authority: Authority,
    /// `Host` for HTTP/1.1 requests: the host, and the port unless it is the default.
    host: HeaderValue,
    sender: Sender,
}

enum Sender {
    H1(H1),
    /// With the count of calls on the connection, shared by all its handles.
    H2(h2::client::SendRequest<Bytes>, Arc<Streams>),
}

impl Conn {
    /// Another handle on this connection, whose sender is the h2 `s` with `streams`:
    /// the pool's and every call's share the stream count.
    fn h2_handle(&self, s: &h2::client::SendRequest<Bytes>, streams: &Arc<Streams>) -> Conn {
        Conn {
            https: self.https,
            authority: self.authority.clone(),
            host: self.host.clone(),
            sender: Sender::H2(s.clone(), Arc::clone(streams)),
        }
    }
}

impl Sender {
    fn is_closed(&self) -> bool {
        match self {
            Sender::H1(h) => h.send.is_closed(),
            Sender::H2(_, streams) => streams.ended.load(Ordering::Acquire),
        }
    }
}

/// An HTTP/1.1 connection and its request handle. The connection is driven (request
/// written, response read) by whichever call holds it, from that call's task: a task of
/// its own per connection would cost each call two hand-offs between tasks (the request
/// in, the response and each body chunk out), each a wake-up and a turn of the scheduler.
struct H1 {
    send: http1::SendRequest<ReqBody>,
    conn: Driven,
}

/// The connection half of an [`H1`].
struct Driven {
    /// `None` once the connection has ended; the request handle then reports it closed.
    inner: Option<Box<http1::Connection<Io, ReqBody>>>,
    /// The task that holds the connection, if any.
    owner: Arc<Owner>,
    /// The connection is always polled with this waker, which wakes `owner`.
    waker: Waker,
}

/// Wakes the task that holds a connection. hyper and tokio keep the waker a connection
/// was last polled with (for its socket, its request queue); one that stays the same
/// and points at the current holder means a call that takes a pooled connection need
/// not poll it first just to move those wake-ups off the task that used it before.
#[derive(Default)]
struct Owner(atomic_waker::AtomicWaker);

impl Wake for Owner {
    fn wake(self: Arc<Self>) {
        self.0.wake();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.wake();
    }
}

impl H1 {
    fn new(send: http1::SendRequest<ReqBody>, conn: http1::Connection<Io, ReqBody>) -> H1 {
        let owner = Arc::new(Owner::default());
        let conn = Driven {
            inner: Some(Box::new(conn)),
            waker: Waker::from(Arc::clone(&owner)),
            owner,
        };
        H1 { send, conn }
    }

    /// Waits for what `poll` polls on the request handle (its readiness, a response),
    /// driving the connection meanwhile (see [`Driven::poll`]).
    async fn run<T>(
        &mut self,
        mut poll: impl FnMut(&mut http1::SendRequest<ReqBody>, &mut Context<'_>) -> Poll<T>,
    ) -> T {
        poll_fn(|cx| self.conn.poll(cx, |c| poll(&mut self.send, c))).await
    }
}

impl Driven {
    /// Lets the connection do what it can (write, read, hand over a response or body
    /// chunk), with `cx`'s task woken when it can do more. False once it has ended: it
    /// is dropped then, which fails whatever it still held for a call (a request it had
    /// not written yet comes back to be sent again; hyper reads before it writes, so a
    /// close that came while the connection sat in the pool is seen first).
    fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        if self.inner.is_none() {
            return false;
        }
        self.owner.0.register(cx.waker());
        self.alive()
    }

    /// Polls the connection for whoever is registered in `owner` (nobody while it is
    /// pooled); false once it has ended, as [`Driven::drive`].
    fn alive(&mut self) -> bool {
        let Some(conn) = self.inner.as_mut() else {
            return false;
        };
        let Poll::Ready(ended) = Pin::new(&mut **conn).poll(&mut Context::from_waker(&self.waker))
        else {
            return true;
        };
        if let Err(e) = ended {
            tracing::debug!(error = %e, "upstream connection ended");
        }
        self.inner = None;
        false
    }

    /// Polls with `poll` something only this connection's progress completes (its
    /// readiness, a response, a body chunk), driving the connection once if it is not
    /// ready yet. `poll` gets a waker that does nothing while the connection is alive:
    /// the connection's I/O wakes the task, so handing it a request or taking what it
    /// read wakes nobody.
    fn poll<T>(
        &mut self,
        cx: &mut Context<'_>,
        mut poll: impl FnMut(&mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        let mut quiet = Context::from_waker(Waker::noop());
        if let Poll::Ready(out) = poll(&mut quiet) {
            return Poll::Ready(out);
        }
        if self.drive(cx) {
            poll(&mut quiet)
        } else {
            // Dropping the connection completed or will complete it.
            poll(cx)
        }
    }
}

/// A connection for one call, with its slot when the connection is a shared h2 one.
type Checkout = (Conn, Option<StreamSlot>);

/// Why the pool had no connection for a call.
struct Miss {
    /// The upstream's h2 connections were all full (so it speaks h2).
    h2_full: bool,
}

/// Calls in flight on one h2 connection, and whether it has ended.
#[derive(Default)]
struct Streams {
    calls: AtomicUsize,
    /// Set when the connection's task ends or the connection refuses a new stream
    /// (it ended, or the upstream sent GOAWAY).
    ended: AtomicBool,
}

impl Streams {
    /// One more call on the connection `s`, unless it already carries as many as it
    /// may: [`MAX_H2_STREAMS`], or fewer if the upstream says so (at least one, so a
    /// server that briefly allows none holds calls rather than multiplying connections).
    fn take(self: &Arc<Self>, s: &h2::client::SendRequest<Bytes>) -> Option<StreamSlot> {
        self.take_under(s.current_max_send_streams().clamp(1, MAX_H2_STREAMS))
    }

    fn take_under(self: &Arc<Self>, cap: usize) -> Option<StreamSlot> {
        self.calls
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < cap).then_some(n + 1)
            })
            .ok()
            .map(|_| StreamSlot(Arc::clone(self)))
    }
}

/// A call's place on an h2 connection, given back when the call's response ends or is
/// dropped (or the call fails before it).
struct StreamSlot(Arc<Streams>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.calls.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Pool {
    /// Sends `req` to the upstream at `to`, on a pooled connection or a new one. `req`
    /// carries the origin-form target (path and query), which HTTP/1.1 sends as it is
    /// with `Host`; h2 takes the absolute form, built only then. A request that never
    /// left because a reused connection had just closed is sent again, and so is one
    /// whose h2 stream the upstream turned away unprocessed (`REFUSED_STREAM`, or a
    /// GOAWAY below it), up to `MAX_STALE` times.
    pub async fn send(
        self: &Arc<Self>,
        to: &BaseUrl,
        mut req: Request<ReqBody>,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        let https = to.scheme == Scheme::HTTPS;
        let authority = &to.authority;
        // Pooled connections that turned out closed, or streams refused; past a few, a
        // new connection is opened (and a refused stream is not sent again).
        let mut stale = 0;
        loop {
            let pooled = if stale < MAX_STALE {
                self.checkout(https, authority)
            } else {
                Err(Miss { h2_full: false })
            };
            let ((mut conn, slot), reused) = match pooled {
                Ok(c) => (c, true),
                // Boxed: the connect state (TLS, handshakes) is large and rarely
                // needed; inline it would be copied with every call's future.
                Err(miss) => Box::pin(self.open(https, authority, miss)).await?,
            };
            let sent = match &mut conn.sender {
                Sender::H1(h) => {
                    if let Err(e) = h.run(|s, cx| s.poll_ready(cx)).await {
                        if reused {
                            stale += 1;
                            continue;
                        }
                        return Err(e.into());
                    }
                    req.headers_mut()
                        .entry(header::HOST)
                        .or_insert_with(|| conn.host.clone());
                    origin_form(req.uri_mut());
                    let mut response = std::pin::pin!(h.send.try_send_request(req));
                    match h.run(|_, cx| response.as_mut().poll(cx)).await {
                        Ok(resp) => resp.map(Inner::H1),
                        Err(mut e) => match e.take_message() {
                            Some(back) if reused => {
                                stale += 1;
                                req = back;
                                continue;
                            }
                            _ => return Err(e.into_error().into()),
                        },
                    }
                }
                Sender::H2(s, streams) => {
                    absolute_form(req.uri_mut(), &to.scheme, authority)?;
                    // Kept to send again should the upstream refuse the stream unread.
                    let again = (stale < MAX_STALE).then(|| upstream_h2::copy(&req));
                    let response = match upstream_h2::start(s, req) {
                        Ok(response) => response,
                        Err(NotStarted { unsent, error }) => {
                            if let Some(back) = unsent {
                                // Ended or told to go away: no call may start on it again.
                                streams.ended.store(true, Ordering::Release);
                                if reused {
                                    stale += 1;
                                    req = *back;
                                    continue;
                                }
                            }
                            return Err(error.into());
                        }
                    };
                    match (response.await, again) {
                        (Ok(head), _) => RecvBody::new(head).map(Inner::H2),
                        (Err(e), Some(back)) if upstream_h2::unprocessed(&e) => {
                            stale += 1;
                            req = back;
                            continue;
                        }
                        (Err(e), _) => return Err(e.into()),
                    }
                }
            };
            let lease = match conn.sender {
                Sender::H1(_) => Some(Lease {
                    pool: Arc::clone(self),
                    conn,
                }),
                // The pool kept its own handle on the connection.
                Sender::H2(..) => None,
            };
            return Ok(sent.map(|inner| UpstreamBody { inner, lease, slot }));
        }
    }

    fn idle(&self) -> MutexGuard<'_, Vec<Idle>> {
        // Nothing is left half-done under the lock: ignore poisoning.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An open connection to the upstream: the newest HTTP/1.1 one, taken out, or the h2
    /// one carrying the fewest calls (the newest of equals), shared, with the call's slot
    /// on it. Calls spread evenly over the h2 connections they need: a full one next to
    /// a nearly empty one served its calls' frames in turns with it, so its streams fell
    /// behind (TTLB p99 at 256 connections in the bench). Connections idle longer than
    /// `IDLE_TIMEOUT` are closed on the way (an h2 one is idle when no call is on it and
    /// none started on it for that long).
    fn checkout(&self, https: bool, authority: &Authority) -> Result<Checkout, Miss> {
        // Connections to close, dropped after the lock (declared first, dropped last).
        let mut gone: Vec<Idle> = Vec::new();
        let mut idle = self.idle();
        let now = Instant::now();
        // The least busy h2 connection so far: its index and calls.
        let mut best: Option<(usize, usize)> = None;
        let mut i = idle.len();
        while i > 0 {
            i -= 1;
            let e = &idle[i];
            if e.conn.https != https || e.conn.authority != *authority {
                continue;
            }
            if e.conn.sender.is_closed()
                || matches!(e.conn.sender, Sender::H2(..) if e.expired(now))
            {
                // For an h2 one the pool's handle is the last: dropping it closes it.
                gone.push(idle.remove(i));
                // `best` was found above `i`: it moved down one.
                if let Some((b, _)) = &mut best {
                    *b -= 1;
                }
                continue;
            }
            match &e.conn.sender {
                Sender::H2(_, streams) => {
                    let calls = streams.calls.load(Ordering::Acquire);
                    if best.is_none_or(|(_, fewest)| calls < fewest) {
                        best = Some((i, calls));
                    }
                }
                // An upstream that switched protocols: its h2 connections come first.
                Sender::H1(_) if best.is_some() => break,
                Sender::H1(_) if e.expired(now) => {
                    // Every HTTP/1.1 connection before it has waited longer still; the
                    // h2 ones are not idle, only shared.
                    gone.extend(idle.extract_if(..=i, |e| matches!(e.conn.sender, Sender::H1(_))));
                    return Err(Miss { h2_full: false });
                }
                Sender::H1(_) => return Ok((idle.remove(i).conn, None)),
            }
        }
        let Some((i, _)) = best else {
            return Err(Miss { h2_full: false });
        };
        let e = &mut idle[i];
        if let Sender::H2(s, streams) = &e.conn.sender
            && let Some(slot) = streams.take(s)
        {
            let conn = e.conn.h2_handle(s, streams);
            e.since = now;
            return Ok((conn, Some(slot)));
        }
        // The least busy is full, so all are.
        Err(Miss { h2_full: true })
    }

    /// A connection for a call that found none free in the pool, and whether it is a
    /// pooled one after all (another call opened it meanwhile).
    async fn open(
        self: &Arc<Self>,
        https: bool,
        authority: &Authority,
        miss: Miss,
    ) -> Result<(Checkout, bool), UpstreamError> {
        let turn = self.opener(https, authority);
        let h1 = || !miss.h2_full && turn.h1.load(Ordering::Relaxed);
        if h1() {
            return Ok((self.connect_learning(https, authority, &turn).await?, false));
        }
        let waiting_since = Instant::now();
        let mut failed = turn.lock.lock().await;
        if let Some(f) = failed.as_ref().filter(|f| f.at >= waiting_since) {
            return Err(UpstreamError::Waited(f.why.clone()));
        }
        if let Ok(c) = self.checkout(https, authority) {
            return Ok((c, true));
        }
        if h1() {
            // Learned while waiting: nothing to share, so no reason to queue.
            drop(failed);
            return Ok((self.connect_learning(https, authority, &turn).await?, false));
        }
        match self.connect_learning(https, authority, &turn).await {
            Ok(c) => {
                *failed = None;
                Ok((c, false))
            }
            Err(e) => {
                *failed = Some(Failed {
                    at: Instant::now(),
                    why: e.describe(),
                });
                Err(e)
            }
        }
    }

    /// [`Pool::connect`], noting in `turn` which protocol the upstream spoke.
    async fn connect_learning(
        self: &Arc<Self>,
        https: bool,
        authority: &Authority,
        turn: &Turn,
    ) -> Result<Checkout, UpstreamError> {
        let c = self.connect(https, authority).await?;
        turn.h1
            .store(matches!(c.0.sender, Sender::H1(_)), Ordering::Relaxed);
        Ok(c)
    }

    fn opener(&self, https: bool, authority: &Authority) -> Arc<Turn> {
        let mut openers = self.openers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(o) = openers
            .iter()
            .find(|o| o.https == https && o.authority == *authority)
        {
            return Arc::clone(&o.turn);
        }
        let turn = Arc::new(Turn {
            lock: tokio::sync::Mutex::new(None),
            h1: AtomicBool::new(false),
        });
        openers.push(Opener {
            https,
            authority: authority.clone(),
            turn: Arc::clone(&turn),
        });
        turn
    }

    /// Puts an HTTP/1.1 connection whose response has ended back for the next call.
    fn put(self: &Arc<Self>, conn: Conn) {
        if conn.sender.is_closed() {
            return;
        }
        if let Sender::H1(h) = &conn.sender {
            // Whatever the connection notices while pooled (a close) waits for the next
            // sweep or call, whichever comes first (hyper reads before it writes).
            drop(h.conn.owner.0.take());
        }
        let mut idle = self.idle();
        let oldest = if idle.len() >= MAX_IDLE {
            // The HTTP/1.1 one idle longest; shared h2 connections stay.
            idle.iter()
                .position(|e| matches!(e.conn.sender, Sender::H1(_)))
                .map(|j| idle.remove(j))
        } else {
            None
        };
        idle.push(Idle {
            conn,
            since: Instant::now(),
        });
        drop(idle);
        drop(oldest);
        self.watch();
    }

    /// Makes sure a task on this runtime sweeps the pool (see [`SWEEP_EVERY`]) while
    /// it holds connections; the task ends once the pool is empty, so an idle proxy has
    /// no timer running. Called after a connection is pooled: a sweep that found the
    /// pool empty cleared the flag under the lock, so it cannot miss this one.
    fn watch(self: &Arc<Self>) {
        if self.sweeping.load(Ordering::Acquire) || self.sweeping.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.sweeping.store(false, Ordering::Release);
            return;
        };
        let pool = Arc::downgrade(self);
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(SWEEP_EVERY).await;
                let Some(pool) = pool.upgrade() else {
                    return;
                };
                if !pool.sweep(Instant::now()) {
                    return;
                }
            }
        });
    }

    /// Closes the pooled connections that ended or were unused past `IDLE_TIMEOUT` at
    /// `now`. False, with the sweep flag cleared, once the pool is empty.
    fn sweep(&self, now: Instant) -> bool {
        let mut gone: Vec<Idle> = Vec::new();
        let mut idle = self.idle();
        gone.extend(idle.extract_if(.., |e| {
            e.expired(now)
                || match &mut e.conn.sender {
                    Sender::H1(h) => !h.conn.alive(),
                    Sender::H2(_, streams) => streams.ended.load(Ordering::Acquire),
                }
        }));
        let watching = !idle.is_empty();
        if !watching {
            self.sweeping.store(false, Ordering::Release);
        }
        drop(idle);
        drop(gone);
        watching
    }

    async fn connect(
        self: &Arc<Self>,
        https: bool,
        authority: &Authority,
    ) -> Result<Checkout, UpstreamError> {
        let scheme = if https { Scheme::HTTPS } else { Scheme::HTTP };
        let uri = Uri::builder()
            .scheme(scheme)
            .authority(authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|_| UpstreamError::BadUri)?;
        let io = self
            .connector
            .clone()
            .oneshot(uri)
            .await
            .map_err(UpstreamError::Connect)?;
        let h2 = io.connected().is_negotiated_h2();
        let sender = if h2 {
            let (s, c) = upstream_h2::handshake(TokioIo::new(io)).await?;
            let streams = Arc::new(Streams::default());
            let ended = Arc::clone(&streams);
            tokio::spawn(async move {
                if let Err(e) = c.await {
                    tracing::debug!(error = %e, "upstream h2 connection ended");
                }
                ended.ended.store(true, Ordering::Release);
            });
            Sender::H2(s, streams)
        } else {
            let (send, conn) = http1::handshake(io).await?;
            Sender::H1(H1::new(send, conn))
        };
        let conn = Conn {
            https,
            authority: authority.clone(),
            host: host_header(https, authority),
            sender,
        };
        let slot = match &conn.sender {
            Sender::H2(s, streams) => {
                // Shared from now on by every call to this upstream on this worker.
                self.idle().push(Idle {
                    conn: conn.h2_handle(s, streams),
                    since: Instant::now(),
                });
                self.watch();
                // A new connection has room for the call that opened it.
                streams.take(s)
            }
            Sender::H1(_) => None,
        };
        Ok((conn, slot))
    }
}

/// `Host` as hyper-util's client sets it: the port only when it is not the scheme's.
fn host_header(https: bool, authority: &Authority) -> HeaderValue {
    let default = if https { 443 } else { 80 };
    let text = match authority.port_u16() {
        Some(p) if p != default => format!("{}:{p}", authority.host()),
        _ => authority.host().to_owned(),
    };
    // An authority is always a valid header value; `from_static` cannot fail.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("localhost"))
}

/// Makes `uri` the request target of an HTTP/1.1 request: path and query only. A
/// request put back after an h2 attempt arrives in absolute form.
fn origin_form(uri: &mut Uri) {
    if uri.scheme().is_none() && uri.authority().is_none() {
        return;
    }
    *uri = match std::mem::take(uri).into_parts().path_and_query {
        Some(pq) if pq.as_str() != "" => Uri::from(pq),
        _ => Uri::from_static("/"),
    };
}

/// Makes `uri` absolute, as h2 sends it (`:scheme`, `:authority`, `:path`).
fn absolute_form(
    uri: &mut Uri,
    scheme: &Scheme,
    authority: &Authority,
) -> Result<(), UpstreamError> {
    if uri.scheme().is_some() {
        return Ok(());
    }
    let mut parts = std::mem::take(uri).into_parts();
    parts.scheme = Some(scheme.clone());
    parts.authority = Some(authority.clone());
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(PathAndQuery::from_static("/"));
    }
    *uri = Uri::from_parts(parts).map_err(|_| UpstreamError::BadUri)?;
    Ok(())
}

/// An HTTP/1.1 connection lent to one call until its response body ends.
struct Lease {
    pool: Arc<Pool>,
    conn: Conn,
}

/// A response body from the upstream. When it ends, its HTTP/1.1 connection goes back
/// to the pool; one dropped before its end is closed (hyper cannot reuse it).
pub struct UpstreamBody {
    inner: Inner,
    lease: Option<Lease>,
    /// The call's place on its h2 connection, given back as the body ends.
    slot: Option<StreamSlot>,
}

enum Inner {
    H1(Incoming),
    H2(RecvBody),
}

impl Inner {
    fn is_end_stream(&self) -> bool {
        match self {
            Inner::H1(b) => b.is_end_stream(),
            Inner::H2(b) => b.is_end_stream(),
        }
    }
}

/// Why a response body failed.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error(transparent)]
    H1(#[from] hyper::Error),
    #[error(transparent)]
    H2(#[from] h2::Error),
}

impl UpstreamBody {
    fn release(&mut self) {
        self.slot = None;
        if let Some(l) = self.lease.take() {
            l.pool.put(l.conn);
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        let h1 = this.lease.as_mut().and_then(|l| match &mut l.conn.sender {
            Sender::H1(h) => Some(&mut h.conn),
            Sender::H2(..) => None,
        });
        let frame = match (&mut this.inner, h1) {
            // The body's bytes come from the connection this task drives.
            (Inner::H1(inner), Some(conn)) => ready!(
                conn.poll(cx, |c| Pin::new(&mut *inner).poll_frame(c))
                    .map_err(BodyError::from)
            ),
            (Inner::H1(inner), None) => {
                ready!(Pin::new(inner).poll_frame(cx).map_err(BodyError::from))
            }
            (Inner::H2(inner), _) => ready!(inner.poll_frame(cx).map_err(BodyError::from)),
        };
        match &frame {
            None => self.release(),
            Some(Ok(_)) if self.inner.is_end_stream() => self.release(),
            Some(Err(_)) => self.lease = None,
            Some(Ok(_)) => {}
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::H1(b) => b.size_hint(),
            Inner::H2(b) => b.size_hint(),
        }
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        if self.inner.is_end_stream() {
            self.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper_util::rt::TokioExecutor;

    /// The pool of a client without workers (the one calls from a test's thread use),
    /// trusting `ca` besides the webpki roots.
    fn test_pool(ca: Option<&Path>) -> Arc<Pool> {
        let upstream = build(ca, Duration::from_secs(5), 0).unwrap();
        Arc::clone(upstream.here())
    }

    /// The test certificates (`certs/` at the crate root).
    fn certs() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("certs")
    }

    #[test]
    fn host_names_the_port_only_when_it_is_not_the_default() {
        let host = |https, a: &str| host_header(https, &a.parse().unwrap());
        assert_eq!(host(true, "api.openai.com"), "api.openai.com");
        assert_eq!(host(true, "api.openai.com:443"), "api.openai.com");
        assert_eq!(host(false, "127.0.0.1:80"), "127.0.0.1");
        assert_eq!(host(false, "127.0.0.1:8080"), "127.0.0.1:8080");
        assert_eq!(host(true, "[::1]:8443"), "[::1]:8443");
    }

    #[test]
    fn http1_requests_carry_only_path_and_query() {
        let o = |u: &str| {
            let mut uri: Uri = u.parse().unwrap();
            origin_form(&mut uri);
            uri.to_string()
        };
        assert_eq!(o("https://a.example/v1/x?alt=sse"), "/v1/x?alt=sse");
        assert_eq!(o("http://a.example"), "/");
        assert_eq!(o("/v1/x?alt=sse"), "/v1/x?alt=sse");
    }

    #[test]
    fn h2_requests_carry_the_absolute_form() {
        let a = |u: &str, https: bool| {
            let mut uri: Uri = u.parse().unwrap();
            let scheme = if https { Scheme::HTTPS } else { Scheme::HTTP };
            absolute_form(&mut uri, &scheme, &"a.example:8443".parse().unwrap()).unwrap();
            uri.to_string()
        };
        assert_eq!(
            a("/v1/x?alt=sse", true),
            "https://a.example:8443/v1/x?alt=sse"
        );
        assert_eq!(a("/", false), "http://a.example:8443/");
        // Already absolute (a request put back after an attempt): left as it is.
        assert_eq!(a("https://b.example/v1", true), "https://b.example/v1");
    }

    #[test]
    fn an_h2_connection_takes_calls_up_to_its_cap_and_frees_a_slot_when_one_ends() {
        let streams = Arc::new(Streams::default());
        let mut slots: Vec<StreamSlot> = (0..MAX_H2_STREAMS)
            .map(|_| streams.take_under(MAX_H2_STREAMS).expect("room"))
            .collect();
        assert!(
            streams.take_under(MAX_H2_STREAMS).is_none(),
            "full at {MAX_H2_STREAMS}"
        );
        slots.pop();
        let again = streams.take_under(MAX_H2_STREAMS);
        assert!(again.is_some(), "a call that ended gave its slot back");
        drop((slots, again));
        assert_eq!(streams.calls.load(Ordering::Acquire), 0);
    }

    /// An h2 server (prior knowledge, plain TCP) answering every request with an empty
    /// 200, reporting each connection that ends.
    async fn h2_upstream() -> (
        std::net::SocketAddr,
        tokio::sync::mpsc::UnboundedReceiver<()>,
        tokio::task::JoinHandle<()>,
    ) {
        use hyper_util::rt::TokioIo;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (closed_tx, closed) = tokio::sync::mpsc::unbounded_channel();
        let server = tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                let closed_tx = closed_tx.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(|_req| async {
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::new())))
                    });
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                    let _ = closed_tx.send(());
                });
            }
        });
        (addr, closed, server)
    }

    /// A new h2 connection to `addr` counting its calls in `streams`.
    async fn h2_conn(addr: std::net::SocketAddr, streams: Arc<Streams>) -> Conn {
        let authority: Authority = addr.to_string().parse().unwrap();
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (s, c) = upstream_h2::handshake(tcp).await.unwrap();
        tokio::spawn(c);
        Conn {
            https: false,
            host: host_header(false, &authority),
            authority,
            sender: Sender::H2(s, streams),
        }
    }

    #[tokio::test]
    async fn calls_go_to_the_h2_connection_carrying_the_fewest_the_newest_of_equals() {
        let (addr, _closed, server) = h2_upstream().await;
        let authority: Authority = addr.to_string().parse().unwrap();
        let pool = test_pool(None);
        let (older, newer) = (Arc::new(Streams::default()), Arc::new(Streams::default()));
        for streams in [&older, &newer] {
            let conn = h2_conn(addr, Arc::clone(streams)).await;
            pool.idle().push(Idle {
                conn,
                since: Instant::now(),
            });
        }
        let on = |slot: &Option<StreamSlot>, streams: &Arc<Streams>| {
            slot.as_ref().is_some_and(|s| Arc::ptr_eq(&s.0, streams))
        };
        let mut calls = Vec::new();
        for want in [&newer, &older, &newer, &older] {
            let (conn, slot) = pool.checkout(false, &authority).ok().expect("room");
            assert!(on(&slot, want), "call {} went elsewhere", calls.len());
            calls.push((conn, slot));
        }
        assert_eq!(older.calls.load(Ordering::Acquire), 2);
        assert_eq!(newer.calls.load(Ordering::Acquire), 2);
        // The older one's calls end: it is the least busy now.
        calls.remove(3);
        calls.remove(1);
        let (_, slot) = pool.checkout(false, &authority).ok().expect("room");
        assert!(on(&slot, &older));
        server.abort();
    }

    #[tokio::test]
    async fn h2_connections_unused_past_the_timeout_are_closed_and_busy_ones_kept() {
        let (addr, mut closed, server) = h2_upstream().await;
        let authority: Authority = addr.to_string().parse().unwrap();
        let h2 = |streams: Arc<Streams>| h2_conn(addr, streams);
        let pool = test_pool(None);
        let long_ago = Instant::now()
            .checked_sub(IDLE_TIMEOUT + Duration::from_secs(1))
            .unwrap();
        // Both last lent long ago; the older one still has a call on it.
        let busy = Arc::new(Streams::default());
        let call = busy.take_under(1).unwrap();
        for streams in [Arc::clone(&busy), Arc::default()] {
            let conn = h2(streams).await;
            pool.idle().push(Idle {
                conn,
                since: long_ago,
            });
        }

        let (conn, slot) = pool.checkout(false, &authority).ok().expect("the busy one");
        assert!(matches!(&conn.sender, Sender::H2(_, s) if Arc::ptr_eq(s, &busy)));
        assert_eq!(pool.idle().len(), 1, "the unused one left the pool");
        tokio::time::timeout(Duration::from_secs(5), closed.recv())
            .await
            .expect("the unused one is closed")
            .unwrap();
        // Lent just now, so it stays pooled once its calls end.
        drop((conn, slot, call));
        assert!(pool.checkout(false, &authority).is_ok());
        assert!(closed.try_recv().is_err(), "the busy one stays open");
        server.abort();
    }

    /// A server on loopback handing each connection it accepts, with how many it accepted
    /// before (0 for the first), to a task running `serve`; with the count of connections
    /// it accepted.
    async fn counting_server<F, Fut>(
        serve: F,
    ) -> (
        std::net::SocketAddr,
        Arc<AtomicUsize>,
        tokio::task::JoinHandle<()>,
    )
    where
        F: Fn(tokio::net::TcpStream, usize) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let server = {
            let accepted = Arc::clone(&accepted);
            tokio::spawn(async move {
                while let Ok((s, _)) = listener.accept().await {
                    let before = accepted.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(serve(s, before));
                }
            })
        };
        (addr, accepted, server)
    }

    /// TLS with the test certificate (`certs/localhost.pem`), ALPN h2 and http/1.1.
    fn test_acceptor() -> tokio_rustls::TlsAcceptor {
        let certs = certs();
        crate::server::tls_acceptor(&certs.join("localhost.pem"), &certs.join("localhost.key"))
            .unwrap()
    }

    #[tokio::test]
    async fn calls_waiting_for_an_h2_connection_that_fails_to_open_fail_with_it() {
        // Accepts and hangs up at once: every TLS handshake fails quickly.
        let (addr, accepted, server) = counting_server(|s, _| async move { drop(s) }).await;
        let pool = test_pool(None);
        let authority: Authority = addr.to_string().parse().unwrap();
        // Eight calls that found the upstream's h2 connections full, at once.
        let calls = (0..8).map(|_| pool.open(true, &authority, Miss { h2_full: true }));
        let results = futures::future::join_all(calls).await;
        let errors: Vec<String> = results
            .into_iter()
            .map(|r| r.err().expect("nothing to connect to").describe())
            .collect();
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "one attempt for all eight"
        );
        assert!(errors[0].contains("error"), "{errors:?}");
        assert!(errors.iter().all(|e| *e == errors[0]), "{errors:?}");
        // A later call tries again.
        let again = pool.open(true, &authority, Miss { h2_full: true }).await;
        assert!(again.is_err());
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        server.abort();
    }

    /// An upstream on loopback that reports each connection the client closes; with
    /// `hang_up`, it closes its own side first, as an upstream ending a keep-alive
    /// connection does.
    async fn upstream_reporting_closes(
        hang_up: bool,
    ) -> (
        Authority,
        tokio::sync::mpsc::UnboundedReceiver<()>,
        tokio::task::JoinHandle<()>,
    ) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority = listener.local_addr().unwrap().to_string().parse().unwrap();
        let (closed_tx, closed) = tokio::sync::mpsc::unbounded_channel();
        let server = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let closed_tx = closed_tx.clone();
                tokio::spawn(async move {
                    if hang_up {
                        s.shutdown().await.unwrap();
                    }
                    let mut buf = [0u8; 64];
                    while s.read(&mut buf).await.is_ok_and(|n| n > 0) {}
                    let _ = closed_tx.send(());
                });
            }
        });
        (authority, closed, server)
    }

    #[tokio::test]
    async fn a_pooled_connection_the_upstream_closed_is_closed_without_waiting_for_a_call() {
        let (authority, mut closed, server) = upstream_reporting_closes(true).await;
        let pool = test_pool(None);
        let (conn, _) = pool.connect(false, &authority).await.unwrap();
        pool.put(conn);
        assert_eq!(pool.idle().len(), 1);
        // No call comes: the sweep notices the upstream's close and closes our side.
        tokio::time::timeout(SWEEP_EVERY * 5, closed.recv())
            .await
            .expect("our side closed by the sweep, not left half-closed")
            .unwrap();
        assert_eq!(pool.idle().len(), 0);
        assert!(
            !pool.sweeping.load(Ordering::Acquire),
            "the sweep stops once the pool is empty"
        );
        // The next connection pooled is watched again.
        let (conn, _) = pool.connect(false, &authority).await.unwrap();
        pool.put(conn);
        assert!(pool.sweeping.load(Ordering::Acquire));
        tokio::time::timeout(SWEEP_EVERY * 5, closed.recv())
            .await
            .expect("the second one is closed too")
            .unwrap();
        server.abort();
    }

    #[tokio::test]
    async fn the_sweep_closes_connections_unused_past_the_timeout_and_keeps_the_rest() {
        let (authority, mut closed, server) = upstream_reporting_closes(false).await;
        let pool = test_pool(None);
        let now = Instant::now();
        for age in [IDLE_TIMEOUT / 2, Duration::ZERO] {
            let (conn, _) = pool.connect(false, &authority).await.unwrap();
            pool.idle().push(Idle {
                conn,
                since: now.checked_sub(age).unwrap(),
            });
        }
        // Open and not yet unused for long enough: both stay.
        assert!(pool.sweep(now));
        assert_eq!(pool.idle().len(), 2);
        assert!(closed.try_recv().is_err());
        // The older one's time is up.
        assert!(pool.sweep(now + IDLE_TIMEOUT / 2));
        assert_eq!(pool.idle().len(), 1);
        assert!(pool.sweep(now + IDLE_TIMEOUT - Duration::from_millis(1)));
        assert!(!pool.sweep(now + IDLE_TIMEOUT));
        assert_eq!(pool.idle().len(), 0);
        for _ in 0..2 {
            tokio::time::timeout(Duration::from_secs(5), closed.recv())
                .await
                .expect("an unused connection is closed")
                .unwrap();
        }
        server.abort();
    }

    /// An upstream on loopback answering every request after `delay`, over TLS (the
    /// test certificate, ALPN h2 and http/1.1) or plain HTTP/1.1; with the count of
    /// connections it accepted.
    async fn slow_upstream(
        tls: bool,
        delay: Duration,
    ) -> (BaseUrl, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
        use hyper_util::rt::TokioIo;
        let acceptor = tls.then(test_acceptor);
        let (addr, accepted, server) = counting_server(move |s, _| {
            let acceptor = acceptor.clone();
            async move {
                let svc = hyper::service::service_fn(move |_req| async move {
                    tokio::time::sleep(delay).await;
                    Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(
                        b"ok",
                    ))))
                });
                let server = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                match acceptor {
                    Some(a) => {
                        let Ok(s) = a.accept(s).await else { return };
                        let _ = server.serve_connection(TokioIo::new(s), svc).await;
                    }
                    None => {
                        let _ = server.serve_connection(TokioIo::new(s), svc).await;
                    }
                }
            }
        })
        .await;
        let scheme = if tls { "https" } else { "http" };
        let base = BaseUrl::parse(&format!("{scheme}://{addr}")).unwrap();
        (base, accepted, server)
    }

    /// Sends `n` calls at once through `pool`; each must be answered `ok`.
    async fn burst(pool: &Arc<Pool>, to: &BaseUrl, n: usize) {
        use http_body_util::BodyExt;
        let calls = (0..n).map(|_| async {
            let req = Request::post("/v1/x")
                .body(Full::new(Bytes::new()))
                .unwrap();
            let resp = pool.send(to, req).await.expect("answered");
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body, "ok");
        });
        futures::future::join_all(calls).await;
    }

    #[tokio::test]
    async fn a_burst_of_calls_to_an_h2_upstream_not_yet_connected_shares_one_connection() {
        let (to, accepted, server) = slow_upstream(true, Duration::from_millis(50)).await;
        let pool = test_pool(Some(&certs().join("ca.pem")));
        burst(&pool, &to, 40).await;
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "one TLS handshake for all"
        );
        server.abort();
    }

    /// An h2 upstream (TLS, the test certificate) that answers `/slow` after 500 ms and
    /// anything else at once, and says GOAWAY on its first connection once that has
    /// answered a fast call, finishing the calls it already took. With the count of
    /// connections it accepted.
    async fn upstream_going_away() -> (BaseUrl, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
        use hyper_util::rt::TokioIo;
        let acceptor = test_acceptor();
        let (addr, accepted, server) = counting_server(move |s, before| {
            let acceptor = acceptor.clone();
            async move {
                let Ok(s) = acceptor.accept(s).await else {
                    return;
                };
                let answered = Arc::new(tokio::sync::Notify::new());
                let svc = {
                    let answered = Arc::clone(&answered);
                    hyper::service::service_fn(move |req: Request<Incoming>| {
                        let answered = Arc::clone(&answered);
                        async move {
                            if req.uri().path() == "/slow" {
                                tokio::time::sleep(Duration::from_millis(500)).await;
                            } else {
                                answered.notify_one();
                            }
                            Ok::<_, std::convert::Infallible>(Response::new(Full::new(
                                Bytes::from_static(b"ok"),
                            )))
                        }
                    })
                };
                let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc);
                let mut conn = std::pin::pin!(conn);
                if before == 0 {
                    tokio::select! {
                        _ = conn.as_mut() => return,
                        _ = answered.notified() => {}
                    }
                    // Let the answer go out before the GOAWAY.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    conn.as_mut().graceful_shutdown();
                }
                let _ = conn.await;
            }
        })
        .await;
        let base = BaseUrl::parse(&format!("https://{addr}")).unwrap();
        (base, accepted, server)
    }

    #[tokio::test]
    async fn a_call_after_an_h2_upstream_said_goaway_goes_out_on_a_new_connection() {
        use http_body_util::BodyExt;
        let (to, accepted, server) = upstream_going_away().await;
        let pool = test_pool(Some(&certs().join("ca.pem")));
        let call = |path: &'static str| {
            let pool = Arc::clone(&pool);
            let to = to.clone();
            async move {
                let req = Request::post(path).body(Full::new(Bytes::new())).unwrap();
                let resp = pool.send(&to, req).await.expect("answered");
                resp.into_body().collect().await.unwrap().to_bytes()
            }
        };
        // A slow call keeps the first connection open through its GOAWAY.
        let slow = tokio::spawn(call("/slow"));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(call("/fast").await, "ok");
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        // The connection refuses new streams now: the call goes on a new one.
        assert_eq!(call("/fast").await, "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        assert_eq!(slow.await.unwrap(), "ok", "the call it had taken finished");
        server.abort();
    }

    /// Answers every request on an h2 connection (over `io`) with `ok`, after reading its
    /// body into `bodies`; the first request of the connection is refused unread
    /// (`REFUSED_STREAM`) when `refuse_first`.
    async fn serve_h2<T>(io: T, refuse_first: bool, bodies: Bodies)
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let Ok(mut conn) = h2::server::handshake(io).await else {
            return;
        };
        let mut refuse = refuse_first;
        while let Some(Ok((req, mut respond))) = conn.accept().await {
            if std::mem::take(&mut refuse) {
                respond.send_reset(h2::Reason::REFUSED_STREAM);
                continue;
            }
            let bodies = Arc::clone(&bodies);
            tokio::spawn(async move {
                let mut body = req.into_body();
                let mut got = Vec::new();
                while let Some(Ok(chunk)) = body.data().await {
                    let _ = body.flow_control().release_capacity(chunk.len());
                    got.extend_from_slice(&chunk);
                }
                bodies.lock().unwrap().push(Bytes::from(got));
                let mut send = respond.send_response(Response::new(()), false).unwrap();
                let _ = send.send_data(Bytes::from_static(b"ok"), true);
            });
        }
    }

    /// POSTs `body` through `pool`; the answer's body.
    async fn post(pool: &Arc<Pool>, to: &BaseUrl, body: &'static str) -> Result<Bytes, String> {
        use http_body_util::BodyExt;
        let req = Request::post("/v1/chat/completions")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap();
        let resp = pool.send(to, req).await.map_err(|e| e.describe())?;
        Ok(resp.into_body().collect().await.unwrap().to_bytes())
    }

    const BODY: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;

    /// Bodies an upstream read, in the order it answered them.
    type Bodies = Arc<Mutex<Vec<Bytes>>>;

    /// An upstream on loopback over TLS (the test certificate) handing each connection,
    /// with how many came before it and where to note the bodies it reads, to `serve`;
    /// with its URL, the count of connections it accepted and those bodies.
    async fn tls_upstream<F, Fut>(
        serve: F,
    ) -> (
        BaseUrl,
        Arc<AtomicUsize>,
        Bodies,
        tokio::task::JoinHandle<()>,
    )
    where
        F: Fn(tokio_rustls::server::TlsStream<tokio::net::TcpStream>, usize, Bodies) -> Fut
            + Send
            + Sync
            + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let acceptor = test_acceptor();
        let bodies = Bodies::default();
        let serve = Arc::new(serve);
        let (addr, accepted, server) = counting_server({
            let bodies = Arc::clone(&bodies);
            move |s, before| {
                let (acceptor, bodies, serve) =
                    (acceptor.clone(), Arc::clone(&bodies), Arc::clone(&serve));
                async move {
                    if let Ok(s) = acceptor.accept(s).await {
                        serve(s, before, bodies).await;
                    }
                }
            }
        })
        .await;
        let to = BaseUrl::parse(&format!("https://{addr}")).unwrap();
        (to, accepted, bodies, server)
    }

    #[tokio::test]
    async fn a_stream_the_h2_upstream_refuses_is_sent_again() {
        let (to, accepted, bodies, server) =
            tls_upstream(|s, before, bodies| serve_h2(s, before == 0, bodies)).await;
        let pool = test_pool(Some(&certs().join("ca.pem")));
        assert_eq!(post(&pool, &to, BODY).await.unwrap(), "ok");
        assert_eq!(
            *bodies.lock().unwrap(),
            [Bytes::from_static(BODY.as_bytes())]
        );
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "sent again on the same connection"
        );
        server.abort();
    }

    /// An h2 frame: 24-bit length, type, flags, stream id, payload.
    fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        f.extend([kind, flags]);
        f.extend(stream.to_be_bytes());
        f.extend(payload);
        f
    }

    /// An h2 upstream (TLS) whose first connection, written frame by frame, answers the
    /// first request's HEADERS with a GOAWAY naming as its last stream the one before
    /// (`took: false`: the call was not processed) or that one (`took: true`, then the
    /// connection closes: the call may have been). Later connections answer `ok`.
    async fn upstream_saying_goaway(
        took: bool,
    ) -> (
        BaseUrl,
        Arc<AtomicUsize>,
        Bodies,
        tokio::task::JoinHandle<()>,
    ) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        tls_upstream(move |mut s, before, bodies| async move {
            if before > 0 {
                return serve_h2(s, false, bodies).await;
            }
            let mut preface = [0u8; 24];
            s.read_exact(&mut preface).await.unwrap();
            assert_eq!(&preface, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
            s.write_all(&h2_frame(0x4, 0, 0, &[])).await.unwrap();
            let stream = loop {
                let mut head = [0u8; 9];
                s.read_exact(&mut head).await.unwrap();
                let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
                let mut payload = vec![0u8; len];
                s.read_exact(&mut payload).await.unwrap();
                let id = u32::from_be_bytes(head[5..9].try_into().unwrap()) & 0x7fff_ffff;
                match (head[3], head[4]) {
                    (0x4, 0) => s.write_all(&h2_frame(0x4, 0x1, 0, &[])).await.unwrap(),
                    (0x1, _) => break id,
                    _ => {}
                }
            };
            let last = if took {
                stream
            } else {
                stream.saturating_sub(2)
            };
            let mut goaway = last.to_be_bytes().to_vec();
            goaway.extend(0u32.to_be_bytes()); // NO_ERROR
            s.write_all(&h2_frame(0x7, 0, 0, &goaway)).await.unwrap();
            s.flush().await.unwrap();
            if took {
                return; // Hangs up with the call it took unanswered.
            }
            // A graceful GOAWAY: the connection stays until the client leaves.
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest).await;
        })
        .await
    }

    #[tokio::test]
    async fn a_stream_above_an_h2_upstreams_goaway_is_sent_again_on_a_new_connection() {
        let (to, accepted, bodies, server) = upstream_saying_goaway(false).await;
        let pool = test_pool(Some(&certs().join("ca.pem")));
        assert_eq!(post(&pool, &to, BODY).await.unwrap(), "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        assert_eq!(
            *bodies.lock().unwrap(),
            [Bytes::from_static(BODY.as_bytes())]
        );
        server.abort();
    }

    #[tokio::test]
    async fn a_stream_an_h2_upstream_took_before_going_away_is_not_sent_twice() {
        let (to, accepted, bodies, server) = upstream_saying_goaway(true).await;
        let pool = test_pool(Some(&certs().join("ca.pem")));
        let err = post(&pool, &to, BODY).await.unwrap_err();
        assert!(!err.is_empty());
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "not sent again: {err}");
        assert!(bodies.lock().unwrap().is_empty());
        server.abort();
    }

    #[tokio::test]
    async fn calls_to_an_http1_upstream_open_their_connections_at_once() {
        let delay = Duration::from_millis(300);
        let (to, accepted, server) = slow_upstream(false, delay).await;
        let pool = test_pool(None);
        // First contact: one connection opens while the rest wait for it, then (the
        // upstream having answered HTTP/1.1) each opens its own; no call waits for
        // another's answer.
        let started = Instant::now();
        burst(&pool, &to, 8).await;
        assert!(
            started.elapsed() < delay * 3,
            "calls waited for each other: {:?}",
            started.elapsed()
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 8);
        // Known now: the next burst does not queue at all.
        let started = Instant::now();
        burst(&pool, &to, 16).await;
        assert!(started.elapsed() < delay * 3, "{:?}", started.elapsed());
        assert_eq!(accepted.load(Ordering::SeqCst), 16, "8 reused, 8 new");
        server.abort();
    }

    #[tokio::test]
    async fn connections_idle_past_the_timeout_are_closed_not_reused() {
        // Never answers; reports each connection the client closes.
        let (authority, mut closed, server) = upstream_reporting_closes(false).await;
        let pool = test_pool(None);
        for age in [IDLE_TIMEOUT * 2, IDLE_TIMEOUT + Duration::from_secs(1)] {
            let (conn, slot) = pool.connect(false, &authority).await.unwrap();
            assert!(slot.is_none(), "only h2 calls take a slot");
            assert!(
                matches!(conn.sender, Sender::H1(_)),
                "plain HTTP is HTTP/1.1"
            );
            pool.idle().push(Idle {
                conn,
                since: Instant::now().checked_sub(age).unwrap(),
            });
        }
        let (fresh, _) = pool.connect(false, &authority).await.unwrap();
        pool.put(fresh);
        assert_eq!(pool.idle().len(), 3);

        // Another upstream's connections are never lent.
        let other: Authority = "127.0.0.1:1".parse().unwrap();
        assert!(pool.checkout(false, &other).is_err());
        assert!(pool.checkout(true, &authority).is_err());
        // The newest comes out; the next checkout finds only stale ones and closes them.
        let newest = pool.checkout(false, &authority);
        assert!(newest.is_ok());
        assert!(pool.checkout(false, &authority).is_err());
        assert_eq!(pool.idle().len(), 0);
        for _ in 0..2 {
            tokio::time::timeout(Duration::from_secs(5), closed.recv())
                .await
                .expect("a stale connection is closed")
                .unwrap();
        }
        assert!(closed.try_recv().is_err(), "the lent one stays open");
        drop(newest);
        server.abort();
    }
}
