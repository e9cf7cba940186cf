//! The pooled upstream clients: hyper-util's legacy client over rustls, HTTP/1.1 or h2
//! by ALPN, certificate verification against webpki roots plus an optional extra CA.
//! One client (and so one connection pool) per proxy worker: a pooled connection is
//! driven by a task on the runtime that opened it, so sharing pools across workers
//! would send every call's bytes through another thread.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

pub type UpstreamClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

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

/// The upstream clients: one for each proxy worker, and one for any other thread.
pub struct Upstream {
    clients: Vec<UpstreamClient>,
}

impl Upstream {
    /// The client of the calling thread's worker.
    pub fn here(&self) -> &UpstreamClient {
        let i = crate::server::current_worker().map_or(0, |w| w + 1);
        self.clients.get(i).unwrap_or(&self.clients[0])
    }
}

/// Builds the clients for `workers` proxy workers.
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

    let clients = (0..=workers)
        .map(|_| {
            let https = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls.clone())
                .https_or_http()
                .enable_http1()
                .enable_http2()
                .wrap_connector(http.clone());
            Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(90))
                .pool_max_idle_per_host(256)
                .build(https)
        })
        .collect();
    Ok(Upstream { clients })
}
