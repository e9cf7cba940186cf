//! `MockUpstream`: an in-process stand-in for an LLM provider, for integration tests.
//!
//! A hyper 1 server on `127.0.0.1:0` that speaks HTTP/1.1 and h2 over TLS (ALPN `h2`,
//! `http/1.1`, certificate `certs/localhost.pem`, trusted by [`ca_pem_path`]) or plain HTTP.
//! It serves canned replies per route, records every request it receives, and can misbehave
//! on purpose: pace a stream, stall it, or cut the connection mid-body. It also counts the
//! response bodies a client abandoned, so a test can check that a client disconnect really
//! cancelled the upstream call.
//!
//! ```ignore
//! let upstream = MockUpstream::tls()
//!     .route("POST", "/v1/chat/completions", Reply::json(200, fixture("openai/chat_completion.json")))
//!     .route("POST", "/v1/stream", Reply::sse(fixture("openai/chat_stream_include_usage.sse")).chunked_every(16))
//!     .start()
//!     .await;
//! // ... point the proxy at upstream.base_url(), make calls ...
//! let requests = upstream.wait_for_requests(1, Duration::from_secs(5)).await;
//! ```
//!
//! Nothing here sleeps except the delays a [`Reply`] asks for. Dropping the
//! [`MockUpstreamHandle`] stops the server and closes every connection.

mod body;
mod reply;

use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use body::{ConnCtl, CutWhenFlushed, MockBody, TrackedIo};
pub use reply::Reply;

/// Reads `tests/fixtures/<path>`. Panics with the path if the file is missing.
pub fn fixture(path: &str) -> Bytes {
    let full = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path);
    match std::fs::read(&full) {
        Ok(bytes) => Bytes::from(bytes),
        Err(e) => panic!("reading fixture {}: {e}", full.display()),
    }
}

/// The folder holding the test certificates (`certs/` at the crate root).
pub fn certs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("certs")
}

/// The test CA (`certs/ca.pem`) that signed the mock's certificate: the one root a test
/// client should trust.
pub fn ca_pem_path() -> PathBuf {
    certs_dir().join("ca.pem")
}

/// A root store holding only the test CA.
pub fn ca_root_store() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_pem_path()).expect("opening certs/ca.pem") {
        roots
            .add(cert.expect("parsing certs/ca.pem"))
            .expect("adding the test CA");
    }
    roots
}

/// A rustls client config (ring provider, no ALPN) that trusts only the test CA. Hand it to
/// `hyper_rustls::HttpsConnectorBuilder::with_tls_config`, which sets ALPN itself.
pub fn client_tls_config() -> rustls::ClientConfig {
    install_crypto_provider();
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(ca_root_store())
        .with_no_client_auth()
}

/// Installs ring as the process-wide rustls provider; a no-op when one is already installed.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

// ---------------------------------------------------------------------------------------
// Recorded requests
// ---------------------------------------------------------------------------------------

/// One request as the mock received it, body included.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: Method,
    /// Path plus `?query` when there is one, e.g. `/v1beta/models/x:streamGenerateContent?alt=sse`.
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// `HTTP_11` or `HTTP_2`.
    pub version: Version,
}

impl RecordedRequest {
    /// The path without the query.
    pub fn path(&self) -> &str {
        self.path_and_query.split('?').next().unwrap_or_default()
    }

    /// The query string without `?`, if any.
    pub fn query(&self) -> Option<&str> {
        self.path_and_query.split_once('?').map(|(_, q)| q)
    }

    /// A header as text; `None` if absent or not visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as UTF-8 (lossy).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON. Panics if it is not JSON.
    pub fn body_json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("request body is not JSON")
    }
}

// ---------------------------------------------------------------------------------------
// Builder
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Route {
    method: Option<Method>,
    path: String,
    reply: Reply,
}

impl Route {
    fn matches(&self, method: &Method, path: &str) -> bool {
        self.method.as_ref().is_none_or(|m| m == method)
            && match self.path.strip_suffix('*') {
                Some(prefix) => path.starts_with(prefix),
                None => path == self.path,
            }
    }
}

#[derive(Debug, Clone)]
enum Transport {
    Plain,
    Tls { cert: PathBuf, key: PathBuf },
}

/// Builder for a mock upstream. Routes are tried in the order added; an unmatched request
/// is still recorded and answered `404` with an OpenAI-style error body.
#[derive(Debug, Clone)]
#[must_use = "call .start().await to run the mock"]
pub struct MockUpstream {
    transport: Transport,
    routes: Vec<Route>,
    h2_max_streams: Option<u32>,
}

impl MockUpstream {
    /// HTTPS with `certs/localhost.pem` (signed by the test CA), HTTP/1.1 and h2 via ALPN.
    pub fn tls() -> MockUpstream {
        let dir = certs_dir();
        MockUpstream::with_transport(Transport::Tls {
            cert: dir.join("localhost.pem"),
            key: dir.join("localhost.key"),
        })
    }

    /// HTTPS with `certs/untrusted.pem`: valid names, but not signed by the test CA, so a
    /// client trusting only [`ca_pem_path`] must refuse it.
    pub fn tls_untrusted() -> MockUpstream {
        let dir = certs_dir();
        MockUpstream::with_transport(Transport::Tls {
            cert: dir.join("untrusted.pem"),
            key: dir.join("untrusted.key"),
        })
    }

    /// Plain HTTP (HTTP/1.1, or h2 with prior knowledge).
    pub fn plain() -> MockUpstream {
        MockUpstream::with_transport(Transport::Plain)
    }

    fn with_transport(transport: Transport) -> MockUpstream {
        MockUpstream {
            transport,
            routes: Vec::new(),
            h2_max_streams: None,
        }
    }

    /// Answers `method` (`"*"`: any) on `path` with `reply`. The path is matched without
    /// the query; a trailing `*` makes it a prefix (`"/v1beta/models/*"`).
    pub fn route(mut self, method: &str, path: &str, reply: Reply) -> MockUpstream {
        let method =
            (method != "*").then(|| Method::from_bytes(method.as_bytes()).expect("valid method"));
        self.routes.push(Route {
            method,
            path: path.to_owned(),
            reply,
        });
        self
    }

    /// Advertises `n` as each h2 connection's `SETTINGS_MAX_CONCURRENT_STREAMS` (hyper's
    /// default is 200); streams past it wait on the client's side.
    pub fn h2_max_concurrent_streams(mut self, n: u32) -> MockUpstream {
        self.h2_max_streams = Some(n);
        self
    }

    /// `POST path` answered with the SSE fixture `tests/fixtures/<fixture_path>`, one event per frame.
    pub fn sse(self, path: &str, fixture_path: &str) -> MockUpstream {
        self.route("POST", path, Reply::sse(fixture(fixture_path)))
    }

    /// `POST path` answered `200` with the JSON fixture `tests/fixtures/<fixture_path>`.
    pub fn json(self, path: &str, fixture_path: &str) -> MockUpstream {
        self.route("POST", path, Reply::json(200, fixture(fixture_path)))
    }

    /// Binds `127.0.0.1:0` and starts serving in the background. Panics if the certificate
    /// cannot be loaded or the port cannot be bound.
    /// Also installs ring as the process-wide rustls provider, for the test's own clients.
    pub async fn start(self) -> MockUpstreamHandle {
        install_crypto_provider();
        let acceptor = match &self.transport {
            Transport::Plain => None,
            Transport::Tls { cert, key } => Some(tls_acceptor(cert, key)),
        };
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding 127.0.0.1:0");
        let addr = listener.local_addr().expect("listener address");
        let shared = Arc::new(Shared {
            routes: self.routes,
            h2_max_streams: self.h2_max_streams,
            ..Shared::default()
        });
        let tls = acceptor.is_some();
        let accept_loop = tokio::spawn(accept_loop(listener, acceptor, Arc::clone(&shared)));
        MockUpstreamHandle {
            addr,
            tls,
            shared,
            accept_loop,
        }
    }
}

fn tls_acceptor(cert: &Path, key: &Path) -> TlsAcceptor {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .unwrap_or_else(|e| panic!("opening {}: {e}", cert.display()))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("parsing {}: {e}", cert.display()));
    let key = PrivateKeyDer::from_pem_file(key)
        .unwrap_or_else(|e| panic!("reading {}: {e}", key.display()));
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("certificate and key match");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    TlsAcceptor::from(Arc::new(config))
}

// ---------------------------------------------------------------------------------------
// Running server
// ---------------------------------------------------------------------------------------

/// State shared by the handle, the accept loop, connections and response bodies.
///
/// A std `Mutex` is fine: it is held only to push or copy a record, never across an await.
#[derive(Default)]
struct Shared {
    routes: Vec<Route>,
    h2_max_streams: Option<u32>,
    exchanges: Mutex<Vec<Exchange>>,
    cancelled: AtomicUsize,
    completed: AtomicUsize,
    tls_failures: AtomicUsize,
    /// TCP connections accepted.
    connections: AtomicUsize,
    /// Woken on every new request, cancelled body and TLS failure.
    changed: Notify,
}

impl Shared {
    fn exchanges(&self) -> MutexGuard<'_, Vec<Exchange>> {
        // A panicking test thread cannot leave a half-pushed Vec behind: ignore poisoning.
        self.exchanges.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct Exchange {
    request: RecordedRequest,
    served: Bytes,
}

/// A running mock upstream. Dropping it stops the server and closes all connections.
pub struct MockUpstreamHandle {
    addr: SocketAddr,
    tls: bool,
    shared: Arc<Shared>,
    accept_loop: tokio::task::JoinHandle<()>,
}

impl Drop for MockUpstreamHandle {
    fn drop(&mut self) {
        // The accept loop owns the JoinSet of connections: aborting it aborts them all.
        self.accept_loop.abort();
    }
}

impl fmt::Debug for MockUpstreamHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockUpstreamHandle")
            .field("base_url", &self.base_url())
            .finish()
    }
}

impl MockUpstreamHandle {
    /// `https://127.0.0.1:PORT` (or `http://` for [`MockUpstream::plain`]); no trailing slash.
    /// The certificate also names `localhost`, see [`localhost_url`](Self::localhost_url).
    pub fn base_url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme(), self.addr.port())
    }

    /// `https://localhost:PORT`, for tests that need a DNS name (SNI). The mock listens on
    /// IPv4 only.
    pub fn localhost_url(&self) -> String {
        format!("{}://localhost:{}", self.scheme(), self.addr.port())
    }

    /// `base_url()` followed by `path_and_query` (which starts with `/`).
    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.base_url())
    }

    /// The bound address (`127.0.0.1:PORT`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared
            .exchanges()
            .iter()
            .map(|e| e.request.clone())
            .collect()
    }

    /// How many requests were received so far.
    pub fn request_count(&self) -> usize {
        self.shared.exchanges().len()
    }

    /// The response body bytes the mock sent for each request, in arrival order, as on the
    /// wire (compressed if the reply was; only the part before a stall or cut).
    pub fn served(&self) -> Vec<Bytes> {
        self.shared
            .exchanges()
            .iter()
            .map(|e| e.served.clone())
            .collect()
    }

    /// The body bytes of the most recent response; empty before the first request.
    pub fn served_bytes(&self) -> Bytes {
        self.shared
            .exchanges()
            .last()
            .map(|e| e.served.clone())
            .unwrap_or_default()
    }

    /// Waits until at least `n` requests arrived and returns them all. Panics after `timeout`.
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> Vec<RecordedRequest> {
        self.wait_until(timeout, || self.request_count() >= n)
            .await
            .unwrap_or_else(|()| {
                panic!(
                    "mock upstream: {} of {n} requests after {timeout:?}",
                    self.request_count()
                )
            });
        self.requests()
    }

    /// Response bodies dropped before they were fully sent because the client went away
    /// (reset the h2 stream or closed the connection). Bodies the mock itself cut with
    /// [`Reply::cut_after`] do not count; stalled ones do once the client gives up.
    pub fn cancelled_streams(&self) -> usize {
        self.shared.cancelled.load(Ordering::SeqCst)
    }

    /// Response bodies sent to the end.
    pub fn completed_streams(&self) -> usize {
        self.shared.completed.load(Ordering::SeqCst)
    }

    /// TCP connections accepted so far (a client that reuses connections opens few).
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// TLS handshakes that failed (e.g. a client that does not trust the certificate).
    pub fn tls_failures(&self) -> usize {
        self.shared.tls_failures.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` response bodies were cancelled by the client. Panics after
    /// `timeout`.
    pub async fn wait_for_cancelled(&self, n: usize, timeout: Duration) {
        self.wait_until(timeout, || self.cancelled_streams() >= n)
            .await
            .unwrap_or_else(|()| {
                panic!(
                    "mock upstream: {} of {n} cancelled streams after {timeout:?}",
                    self.cancelled_streams()
                )
            });
    }

    /// Waits until at least `n` TLS handshakes failed. Panics after `timeout`.
    pub async fn wait_for_tls_failures(&self, n: usize, timeout: Duration) {
        self.wait_until(timeout, || self.tls_failures() >= n)
            .await
            .unwrap_or_else(|()| {
                panic!(
                    "mock upstream: {} of {n} TLS failures after {timeout:?}",
                    self.tls_failures()
                )
            });
    }

    async fn wait_until(&self, timeout: Duration, done: impl Fn() -> bool) -> Result<(), ()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.shared.changed.notified();
            let mut changed = std::pin::pin!(changed);
            // Register before checking, so a change between the check and the await is seen.
            changed.as_mut().enable();
            if done() {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return if done() { Ok(()) } else { Err(()) };
            }
        }
    }
}

async fn accept_loop(listener: TcpListener, acceptor: Option<TlsAcceptor>, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(_) => {
                // Out of file descriptors or similar: try again rather than stop serving.
                tokio::task::yield_now().await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        shared.connections.fetch_add(1, Ordering::SeqCst);
        connections.spawn(serve_tcp(tcp, acceptor.clone(), Arc::clone(&shared)));
    }
}

async fn serve_tcp(tcp: TcpStream, acceptor: Option<TlsAcceptor>, shared: Arc<Shared>) {
    match acceptor {
        None => serve_io(tcp, shared).await,
        Some(acceptor) => match acceptor.accept(tcp).await {
            Ok(tls) => serve_io(tls, shared).await,
            Err(_) => {
                shared.tls_failures.fetch_add(1, Ordering::SeqCst);
                shared.changed.notify_waiters();
            }
        },
    }
}

async fn serve_io<T: AsyncRead + AsyncWrite + Unpin + Send + 'static>(io: T, shared: Arc<Shared>) {
    let ctl = Arc::new(ConnCtl::default());
    let io = TokioIo::new(TrackedIo {
        inner: io,
        ctl: Arc::clone(&ctl),
    });
    let h2_max_streams = shared.h2_max_streams;
    let service = {
        let ctl = Arc::clone(&ctl);
        service_fn(move |req| {
            let (shared, ctl) = (Arc::clone(&shared), Arc::clone(&ctl));
            async move { Ok::<_, Infallible>(respond(req, shared, ctl).await) }
        })
    };
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    if let Some(n) = h2_max_streams {
        builder.http2().max_concurrent_streams(n);
    }
    let connection = builder.serve_connection(io, service);
    // Errors (a client that vanished, a cut) just end the connection.
    let _ = CutWhenFlushed {
        connection: std::pin::pin!(connection),
        ctl,
    }
    .await;
}

async fn respond(
    req: Request<Incoming>,
    shared: Arc<Shared>,
    ctl: Arc<ConnCtl>,
) -> Response<MockBody> {
    let (parts, body) = req.into_parts();
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        // The client gave up while sending the request: nothing to record.
        let mut response = Response::new(MockBody::empty(shared, ctl));
        *response.status_mut() = StatusCode::BAD_REQUEST;
        return response;
    };
    let request = RecordedRequest {
        method: parts.method,
        path_and_query: parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned()),
        headers: parts.headers,
        body,
        version: parts.version,
    };
    let reply = match shared
        .routes
        .iter()
        .find(|r| r.matches(&request.method, request.path()))
    {
        Some(route) => route.reply.resolve(&request),
        None => Reply::json(
            404,
            format!(
                r#"{{"error":{{"message":"mock upstream: no route for {} {}","type":"invalid_request_error"}}}}"#,
                request.method,
                request.path()
            ),
        ),
    };
    let planned = reply.plan();
    shared.exchanges().push(Exchange {
        request,
        served: planned.served(),
    });
    shared.changed.notify_waiters();

    if !planned.delay_headers.is_zero() {
        tokio::time::sleep(planned.delay_headers).await;
    }
    let body = MockBody::new(
        planned.frames,
        planned.delay_per_chunk,
        planned.end,
        shared,
        ctl,
    );
    let mut response = Response::new(body);
    *response.status_mut() = planned.status;
    *response.headers_mut() = planned.headers;
    response
}
