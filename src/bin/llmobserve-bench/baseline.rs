//! The baseline: a minimal hyper pass-through proxy, "the cost of being a proxy at all".
//!
//! It accepts HTTP/1.1 with keep-alive, rewrites the URI to the upstream, drops the
//! hop-by-hop headers and `Host`, and streams both bodies through untouched with a pooled
//! hyper-util client: no auth, no parsing, no metering, no store. Built with the same
//! hyper stack and flags as LLMObserve, and by default on the same thread-per-core runtimes
//! (`llmobserve::server::Workers`, a client per worker), so the difference is what
//! LLMObserve adds. With 0 workers it runs on the caller's runtime instead, as a
//! `#[tokio::main]` forwarder would.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use http::header::{self, HeaderName};
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

type Forwarder = Client<HttpConnector, Incoming>;

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");

/// Binds `127.0.0.1:0` and forwards everything to `upstream` until the runtime ends, on
/// `workers` thread-per-core runtimes (0: on the caller's runtime).
pub async fn start(upstream: SocketAddr, workers: usize) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let client = new_client();
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
                Some(w) => w.serve_connection(stream, move |stream| async move {
                    let client = LOCAL.with(|c| c.get_or_init(new_client).clone());
                    serve_conn(stream, client, authority).await;
                }),
            }
        }
    });
    Ok(addr)
}

thread_local! {
    /// The client of the worker running this thread.
    static LOCAL: std::cell::OnceCell<Forwarder> = const { std::cell::OnceCell::new() };
}

fn new_client() -> Forwarder {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(1024)
        .build(http)
}

async fn serve_conn(
    stream: tokio::net::TcpStream,
    client: Forwarder,
    authority: http::uri::Authority,
) {
    let svc = hyper::service::service_fn(move |req| {
        let client = client.clone();
        let authority = authority.clone();
        async move { Ok::<_, Infallible>(forward(&client, authority, req).await) }
    });
    let mut b = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    b.http1().keep_alive(true);
    let _ = b.serve_connection(TokioIo::new(stream), svc).await;
}

async fn forward(
    client: &Forwarder,
    authority: http::uri::Authority,
    req: Request<Incoming>,
) -> Response<http_body_util::Either<Incoming, String>> {
    let (mut parts, body) = req.into_parts();
    let pq = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    let uri = Uri::builder()
        .scheme("http")
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
