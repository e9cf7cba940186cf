//! The baseline: a minimal hyper pass-through proxy, "the cost of being a proxy at all".
//!
//! It accepts HTTP/1.1 with keep-alive, rewrites the URI to the upstream, drops the
//! hop-by-hop headers and `Host`, and streams both bodies through untouched with a pooled
//! hyper-util client: no auth, no parsing, no metering, no store. Built with the same
//! hyper stack and flags as LLMObserve, and by default on the same thread-per-core runtimes
//! (`llmobserve::server::Workers`, a client per worker), so the difference is what
//! LLMObserve adds. With 0 workers it runs on the caller's runtime instead, as a
//! `#[tokio::main]` forwarder would. With `--upstream-tls` it reaches the upstream over
//! TLS (h2 or HTTP/1.1 by ALPN, trusting the test CA), as LLMObserve then does.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use http::header::{self, HeaderName};
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// A pooled hyper-util client: plain, or over TLS.
#[derive(Clone)]
enum Forwarder {
    Plain(Client<HttpConnector, Incoming>),
    Tls(Client<HttpsConnector<HttpConnector>, Incoming>),
}

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");

/// Binds `127.0.0.1:0` and forwards everything to `upstream` (over TLS when `tls`)
/// until the runtime ends, on `workers` thread-per-core runtimes (0: on the caller's
/// runtime).
pub async fn start(upstream: SocketAddr, workers: usize, tls: bool) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let tls = if tls { Some(tls_config()?) } else { None };
    let client = new_client(tls.as_ref());
    let authority: http::uri::Authority = upstream
        .to_string()
        .parse()
        .map_err(|_| std::io::Error::other("bad upstream address"))?;
    let workers = match workers {
        0 => None,
        n => Some(llmobserve::server::Workers::start(n, "baseline")?),
    };
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let _ = stream.set_nodelay(true);
            let authority = authority.clone();
            match &workers {
                None => {
                    tokio::spawn(serve_conn(stream, client.clone(), authority));
                }
                // As LLMObserve does, each worker forwarding with its own client.
                Some(w) => {
                    let tls = tls.clone();
                    w.serve_connection(stream, move |stream| async move {
                        let client =
                            LOCAL.with(|c| c.get_or_init(|| new_client(tls.as_ref())).clone());
                        serve_conn(stream, client, authority).await;
                    })
                }
            }
        }
    });
    Ok(addr)
}

thread_local! {
    /// The client of the worker running this thread.
    static LOCAL: std::cell::OnceCell<Forwarder> = const { std::cell::OnceCell::new() };
}

/// Client TLS trusting only the test CA, as LLMObserve is set up in the bench.
fn tls_config() -> anyhow::Result<rustls::ClientConfig> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(crate::mock::ca_path())?;
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert?)?;
    }
    Ok(rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth())
}

fn new_client(tls: Option<&rustls::ClientConfig>) -> Forwarder {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(1024);
    match tls {
        None => Forwarder::Plain(builder.build(http)),
        Some(tls) => {
            http.enforce_http(false);
            let https = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls.clone())
                .https_only()
                .enable_http1()
                .enable_http2()
                .wrap_connector(http);
            Forwarder::Tls(builder.build(https))
        }
    }
}

async fn serve_conn(
    stream: tokio::net::TcpStream,
    client: Forwarder,
    authority: http::uri::Authority,
) {
    // Chosen once a connection, so each call's path is the plain forwarder's as it was.
    match client {
        Forwarder::Plain(c) => serve_with(stream, c, "http", authority).await,
        Forwarder::Tls(c) => serve_with(stream, c, "https", authority).await,
    }
}

async fn serve_with<C>(
    stream: tokio::net::TcpStream,
    client: Client<C, Incoming>,
    scheme: &'static str,
    authority: http::uri::Authority,
) where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    let svc = hyper::service::service_fn(move |req| {
        let client = client.clone();
        let authority = authority.clone();
        async move { Ok::<_, Infallible>(forward(&client, scheme, authority, req).await) }
    });
    let mut b = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    b.http1().keep_alive(true);
    let _ = b.serve_connection(TokioIo::new(stream), svc).await;
}

async fn forward<C>(
    client: &Client<C, Incoming>,
    scheme: &'static str,
    authority: http::uri::Authority,
    req: Request<Incoming>,
) -> Response<http_body_util::Either<Incoming, String>>
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    let (mut parts, body) = req.into_parts();
    let pq = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    let uri = Uri::builder()
        .scheme(scheme)
        .authority(authority)
        .path_and_query(pq)
        .build();
    let Ok(uri) = uri else {
        return bad_gateway();
    };
    parts.uri = uri;
    for h in [
        &header::HOST,
        &header::CONNECTION,
        &KEEP_ALIVE,
        &header::TE,
        &header::TRAILER,
        &header::UPGRADE,
    ] {
        parts.headers.remove(h);
    }
    match client.request(Request::from_parts(parts, body)).await {
        Ok(resp) => {
            let (mut parts, body) = resp.into_parts();
            parts.headers.remove(header::CONNECTION);
            parts.headers.remove(&KEEP_ALIVE);
            Response::from_parts(parts, http_body_util::Either::Left(body))
        }
        Err(_) => bad_gateway(),
    }
}

fn bad_gateway() -> Response<http_body_util::Either<Incoming, String>> {
    let mut r = Response::new(http_body_util::Either::Right("bad gateway".to_owned()));
    *r.status_mut() = http::StatusCode::BAD_GATEWAY;
    r
}
