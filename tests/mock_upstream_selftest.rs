//! Self-test of `tests/common/mock_upstream.rs`: real hyper-rustls clients that trust only
//! `certs/ca.pem`, over HTTP/1.1 and h2, check what the mock serves and records.

mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::mock_upstream::{MockUpstream, Reply, client_tls_config, fixture};
use http::{Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

const WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    H1,
    H2,
}

impl Proto {
    const BOTH: [Proto; 2] = [Proto::H1, Proto::H2];

    fn version(self) -> Version {
        match self {
            Proto::H1 => Version::HTTP_11,
            Proto::H2 => Version::HTTP_2,
        }
    }
}

type TestClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A client like the proxy's: TCP_NODELAY, ALPN offering only the given protocol.
fn client(proto: Proto) -> TestClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let tls = HttpsConnectorBuilder::new()
        .with_tls_config(client_tls_config())
        .https_or_http();
    match proto {
        Proto::H1 => {
            Client::builder(TokioExecutor::new()).build(tls.enable_http1().wrap_connector(http))
        }
        Proto::H2 => Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build(tls.enable_http2().wrap_connector(http)),
    }
}

fn post(url: &str, body: &'static str) -> Request<Full<Bytes>> {
    Request::post(url)
        .header("authorization", "Bearer sk-test-123")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("valid request")
}

async fn send(client: &TestClient, req: Request<Full<Bytes>>) -> Response<Incoming> {
    tokio::time::timeout(WAIT, client.request(req))
        .await
        .expect("response in time")
        .expect("request")
}

async fn body_bytes(resp: Response<Incoming>) -> Bytes {
    tokio::time::timeout(WAIT, resp.into_body().collect())
        .await
        .expect("body in time")
        .expect("body")
        .to_bytes()
}

/// Reads data frames until the body ends or fails; returns the bytes and whether it failed.
async fn read_until_error(resp: Response<Incoming>) -> (Bytes, bool) {
    let mut body = resp.into_body();
    let mut got = BytesMut::new();
    loop {
        match tokio::time::timeout(WAIT, body.frame())
            .await
            .expect("frame in time")
        {
            None => return (got.freeze(), false),
            Some(Err(_)) => return (got.freeze(), true),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    got.extend_from_slice(&data);
                }
            }
        }
    }
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("valid gzip");
    out
}

#[tokio::test]
async fn serves_json_and_sse_over_h1_and_h2() {
    let json = fixture("openai/chat_completion.json");
    let sse = fixture("openai/chat_stream_include_usage.sse");
    for proto in Proto::BOTH {
        let upstream = MockUpstream::tls()
            .route(
                "POST",
                "/v1/chat/completions",
                Reply::json(200, json.clone()).header("x-request-id", "req_1"),
            )
            .route(
                "POST",
                "/v1/stream",
                Reply::sse(sse.clone())
                    .chunked_every(64)
                    .delay_per_chunk(Duration::from_millis(1)),
            )
            .start()
            .await;
        let client = client(proto);

        let resp = send(
            &client,
            post(
                &upstream.url("/v1/chat/completions?x=1"),
                r#"{"model":"gpt-4o"}"#,
            ),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.version(), proto.version());
        assert_eq!(resp.headers()["content-type"], "application/json");
        assert_eq!(resp.headers()["x-request-id"], "req_1");
        assert_eq!(
            resp.headers()["content-length"],
            json.len().to_string().as_str()
        );
        assert_eq!(body_bytes(resp).await, json);

        let started = Instant::now();
        let resp = send(
            &client,
            post(&upstream.url("/v1/stream"), r#"{"stream":true}"#),
        )
        .await;
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        assert!(resp.headers().get("content-length").is_none());
        assert_eq!(body_bytes(resp).await, sse);
        let chunks = sse.len().div_ceil(64) as u32;
        assert!(
            started.elapsed() >= Duration::from_millis(1) * chunks,
            "chunks were paced"
        );
        assert_eq!(upstream.served_bytes(), sse);

        let requests = upstream.wait_for_requests(2, WAIT).await;
        assert_eq!(requests.len(), 2);
        let first = &requests[0];
        assert_eq!(first.method, "POST");
        assert_eq!(first.path_and_query, "/v1/chat/completions?x=1");
        assert_eq!(
            (first.path(), first.query()),
            ("/v1/chat/completions", Some("x=1"))
        );
        assert_eq!(first.header("authorization"), Some("Bearer sk-test-123"));
        assert_eq!(first.body, r#"{"model":"gpt-4o"}"#);
        assert_eq!(first.body_json()["model"], "gpt-4o");
        assert_eq!(first.version, proto.version());
        assert_eq!(requests[1].path_and_query, "/v1/stream");
        assert_eq!(upstream.request_count(), 2);
        assert_eq!(upstream.cancelled_streams(), 0);
        assert_eq!(upstream.tls_failures(), 0);
    }
}

#[tokio::test]
async fn localhost_name_validates_too() {
    let upstream = MockUpstream::tls()
        .route("GET", "/ping", Reply::json(200, "{}"))
        .start()
        .await;
    for proto in Proto::BOTH {
        let req = Request::get(format!("{}/ping", upstream.localhost_url()))
            .body(Full::default())
            .unwrap();
        assert_eq!(body_bytes(send(&client(proto), req).await).await, "{}");
    }
}

#[tokio::test]
async fn func_reply_picks_the_fixture_from_the_request() {
    let upstream = MockUpstream::tls()
        .route(
            "POST",
            "/v1/chat/completions",
            Reply::func(|req| {
                if req.body_text().contains("include_usage") {
                    Reply::sse(fixture("openai/chat_stream_include_usage.sse"))
                } else {
                    Reply::sse(fixture("openai/chat_stream_no_usage.sse"))
                }
            }),
        )
        .start()
        .await;
    let client = client(Proto::H2);
    let url = upstream.url("/v1/chat/completions");
    let with = send(
        &client,
        post(
            &url,
            r#"{"stream":true,"stream_options":{"include_usage":true}}"#,
        ),
    )
    .await;
    assert_eq!(
        body_bytes(with).await,
        fixture("openai/chat_stream_include_usage.sse")
    );
    let without = send(&client, post(&url, r#"{"stream":true}"#)).await;
    assert_eq!(
        body_bytes(without).await,
        fixture("openai/chat_stream_no_usage.sse")
    );
}

#[tokio::test]
async fn gzip_replies_decode_to_the_payload() {
    let json = fixture("anthropic/messages.json");
    let sse = fixture("anthropic/messages_stream.sse");
    let upstream = MockUpstream::tls()
        .route("POST", "/json", Reply::json(200, json.clone()).gzip())
        .route("POST", "/sse", Reply::sse(sse.clone()).gzip())
        .route("POST", "/deflate", Reply::json(200, json.clone()).deflate())
        .start()
        .await;
    for proto in Proto::BOTH {
        let client = client(proto);
        let resp = send(&client, post(&upstream.url("/json"), "{}")).await;
        assert_eq!(resp.headers()["content-encoding"], "gzip");
        let wire = body_bytes(resp).await;
        assert_eq!(wire, upstream.served_bytes());
        assert_eq!(gunzip(&wire), json);

        let resp = send(&client, post(&upstream.url("/sse"), "{}")).await;
        assert_eq!(resp.headers()["content-encoding"], "gzip");
        assert_eq!(gunzip(&body_bytes(resp).await), sse);

        let resp = send(&client, post(&upstream.url("/deflate"), "{}")).await;
        assert_eq!(resp.headers()["content-encoding"], "deflate");
        let mut out = Vec::new();
        flate2::read::ZlibDecoder::new(&body_bytes(resp).await[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, json);
    }
}

#[tokio::test]
async fn stalled_stream_counts_as_cancelled_when_the_client_leaves() {
    let sse = fixture("openai/chat_stream_include_usage.sse");
    let upstream = MockUpstream::tls()
        .route(
            "POST",
            "/stall",
            Reply::sse(sse.clone()).chunked_every(10).stall_after(25),
        )
        .start()
        .await;
    for (i, proto) in Proto::BOTH.into_iter().enumerate() {
        let resp = send(&client(proto), post(&upstream.url("/stall"), "{}")).await;
        let mut body = resp.into_body();
        let mut got = BytesMut::new();
        while got.len() < 25 {
            let frame = tokio::time::timeout(WAIT, body.frame())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            got.extend_from_slice(&frame.into_data().unwrap());
        }
        assert_eq!(got, sse[..25]);
        // Nothing more comes.
        assert!(
            tokio::time::timeout(Duration::from_millis(50), body.frame())
                .await
                .is_err()
        );
        drop(body);
        upstream.wait_for_cancelled(i + 1, WAIT).await;
    }
    assert_eq!(upstream.served_bytes(), sse[..25]);
    assert_eq!(upstream.completed_streams(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_stream_delivers_the_prefix_then_fails() {
    let sse = fixture("openai/chat_stream_include_usage.sse");
    let json = fixture("openai/chat_completion.json");
    let upstream = MockUpstream::tls()
        .route(
            "POST",
            "/cut-sse",
            Reply::sse(sse.clone()).chunked_every(30).cut_after(100),
        )
        .route(
            "POST",
            "/cut-json",
            Reply::json(200, json.clone()).cut_after(200),
        )
        .start()
        .await;
    // Repeat: the cut must wait for the bytes to leave, every time.
    for round in 0..20 {
        for proto in Proto::BOTH {
            let (got, failed) =
                read_until_error(send(&client(proto), post(&upstream.url("/cut-sse"), "{}")).await)
                    .await;
            assert_eq!(got, sse[..100], "{proto:?} round {round}");
            assert!(failed, "{proto:?}: a cut stream must end in an error");

            let (got, failed) = read_until_error(
                send(&client(proto), post(&upstream.url("/cut-json"), "{}")).await,
            )
            .await;
            assert_eq!(got, json[..200], "{proto:?} round {round}");
            assert!(
                failed,
                "{proto:?}: a short Content-Length body must end in an error"
            );
        }
    }
    assert_eq!(upstream.cancelled_streams(), 0);
}

#[tokio::test]
async fn untrusted_certificate_is_refused() {
    let upstream = MockUpstream::tls_untrusted()
        .route("GET", "/", Reply::json(200, "{}"))
        .start()
        .await;
    for proto in Proto::BOTH {
        let req = Request::get(upstream.url("/"))
            .body(Full::default())
            .unwrap();
        let err = tokio::time::timeout(WAIT, client(proto).request(req))
            .await
            .unwrap()
            .unwrap_err();
        let chain = format!("{:?}", anyhow::Error::from(err));
        assert!(chain.contains("UnknownIssuer"), "{chain}");
    }
    upstream.wait_for_tls_failures(2, WAIT).await;
    assert_eq!(upstream.request_count(), 0);
}

#[tokio::test]
async fn plain_http_prefix_routes_and_404() {
    let upstream = MockUpstream::plain()
        .route(
            "*",
            "/v1beta/models/*",
            Reply::json(200, r#"{"ok":true}"#).delay_headers(Duration::from_millis(1)),
        )
        .route("GET", "/empty", Reply::empty(204))
        .start()
        .await;
    assert!(upstream.base_url().starts_with("http://127.0.0.1:"));
    let client = client(Proto::H1);
    let resp = send(
        &client,
        post(
            &upstream.url("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"),
            "{}",
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(body_bytes(resp).await, r#"{"ok":true}"#);

    let resp = send(
        &client,
        Request::get(upstream.url("/empty"))
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(body_bytes(resp).await, "");

    let resp = send(&client, post(&upstream.url("/v1/unknown"), "{}")).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let body = body_bytes(resp).await;
    assert!(String::from_utf8_lossy(&body).contains("no route for POST /v1/unknown"));

    let requests = upstream.wait_for_requests(3, WAIT).await;
    assert_eq!(requests[0].query(), Some("alt=sse"));
    assert_eq!(requests[0].version, Version::HTTP_11);
    assert_eq!(requests[1].method, "GET");
    assert_eq!(requests[2].path(), "/v1/unknown");
}
