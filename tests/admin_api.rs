//! The admin API over real HTTP: signup, login, sessions (Bearer and cookie), API keys
//! and their effect on the proxy, provider keys, tenant isolation, token tampering,
//! rate limits, body caps, CORS and error shapes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::app::{PASSWORD, TestApp};
use common::mock_upstream::{MockUpstream, MockUpstreamHandle};
use reqwest::StatusCode;
use serde_json::{Value, json};

const CHAT: &str = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;

async fn mock() -> MockUpstreamHandle {
    MockUpstream::tls()
        .json("/v1/chat/completions", "openai/chat_completion.json")
        .start()
        .await
}

/// A proxied chat call in pass-through mode with `key`; returns the status.
async fn proxy_call(app: &TestApp, key: &str, customer: Option<&str>) -> StatusCode {
    let mut req = app
        .http
        .post(app.url("/v1/chat/completions"))
        .header("x-llmobserve-key", key)
        .header("authorization", "Bearer sk-client-own")
        .header("content-type", "application/json")
        .body(CHAT);
    if let Some(c) = customer {
        req = req.header("x-customer-id", c);
    }
    req.send().await.unwrap().status()
}

/// A managed-mode call: the llmo key stands where the provider key goes.
async fn managed_call(app: &TestApp, key: &str) -> StatusCode {
    app.http
        .post(app.url("/v1/chat/completions"))
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(CHAT)
        .send()
        .await
        .unwrap()
        .status()
}

async fn get(app: &TestApp, token: &str, path: &str) -> (StatusCode, Value) {
    let r = app
        .http
        .get(format!("{}{path}", app.admin))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn send(
    app: &TestApp,
    method: reqwest::Method,
    token: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = app
        .http
        .request(method, format!("{}{path}", app.admin))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn error_code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<none>")
}

#[tokio::test]
async fn bearer_flow_signup_key_login_me_create_revoke() {
    let upstream = mock().await;
    let app = TestApp::spawn(&upstream.base_url()).await;

    // Signup: 201 with token, user and the first key, shown once.
    let r = app
        .http
        .post(format!("{}/auth/signup", app.admin))
        .json(&json!({"email": "  Alice@Example.COM ", "password": PASSWORD, "name": "Alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["user"]["email"], "alice@example.com");
    assert_eq!(v["user"]["name"], "Alice");
    let key = v["api_key"]["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("llmo_sk_") && key.len() >= 40);
    assert!(key.starts_with(v["api_key"]["prefix"].as_str().unwrap()));
    let first_key_id = v["api_key"]["id"].as_str().unwrap().to_owned();

    // The key works on the proxy at once.
    assert_eq!(proxy_call(&app, &key, None).await, StatusCode::OK);

    // Login (email normalized), then me.
    let r = app
        .http
        .post(format!("{}/auth/login", app.admin))
        .json(&json!({"email": "ALICE@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    let token = v["token"].as_str().unwrap().to_owned();
    assert_eq!(v["user"]["email"], "alice@example.com");
    let (status, me) = get(&app, &token, "/auth/me").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["user"]["email"], "alice@example.com");
    let keys = me["api_keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["id"], first_key_id.as_str());
    assert_eq!(keys[0]["revoked"], false);
    assert!(keys[0].get("key").is_none(), "full keys are never listed");
    for field in [
        "id",
        "name",
        "prefix",
        "created_at",
        "last_used_at",
        "revoked",
    ] {
        assert!(keys[0].get(field).is_some(), "missing {field}");
    }

    // Create a second key; it works; revoke it; it gets 401 at once.
    let (status, created) = send(
        &app,
        reqwest::Method::POST,
        &token,
        "/auth/api-keys",
        Some(json!({"name": "ci"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(created["name"], "ci");
    let key2 = created["key"].as_str().unwrap().to_owned();
    let key2_id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(proxy_call(&app, &key2, None).await, StatusCode::OK);
    let (status, _) = send(
        &app,
        reqwest::Method::DELETE,
        &token,
        &format!("/auth/api-keys/{key2_id}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        proxy_call(&app, &key2, None).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(proxy_call(&app, &key, None).await, StatusCode::OK);
    let (_, me) = get(&app, &token, "/auth/me").await;
    let revoked: Vec<bool> = me["api_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["revoked"].as_bool().unwrap())
        .collect();
    assert_eq!(revoked, [false, true]);

    // A key with no body at all gets the default name.
    let r = app
        .http
        .post(format!("{}/auth/api-keys", app.admin))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.json::<Value>().await.unwrap()["name"], "default");

    // Unknown key id: 404 in the error shape.
    let (status, body) = send(
        &app,
        reqwest::Method::DELETE,
        &token,
        "/auth/api-keys/nope",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "not_found");

    // The first key's last use shows up once its event is committed.
    app.app.flush_events().await;
    let (_, me) = get(&app, &token, "/auth/me").await;
    assert!(me["api_keys"][0]["last_used_at"].is_string());
}

#[tokio::test]
async fn cookie_flow_with_origin_checks() {
    let upstream = mock().await;
    let app = TestApp::spawn(&upstream.base_url()).await;
    let browser = reqwest::Client::builder()
        .no_proxy()
        .cookie_store(true)
        .build()
        .unwrap();
    let own_origin = app.admin.clone();

    let r = browser
        .post(format!("{}/auth/signup", app.admin))
        .json(&json!({"email": "cookie@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    for attr in [
        "llmo_session=",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/",
        "Max-Age=604800",
    ] {
        assert!(cookie.contains(attr), "{attr} missing in {cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP listener: no Secure");
    let v: Value = r.json().await.unwrap();
    let key = v["api_key"]["key"].as_str().unwrap().to_owned();
    let first_token = v["token"].as_str().unwrap().to_owned();
    assert!(cookie.contains(&first_token));

    // Reads work with the cookie alone.
    let r = browser
        .get(format!("{}/auth/me", app.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // A state change with the cookie but no origin proof, or a foreign origin: 403.
    for origin in [None, Some("http://evil.example")] {
        let mut req = browser
            .post(format!("{}/auth/api-keys", app.admin))
            .json(&json!({"name": "x"}));
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "origin {origin:?}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(error_code(&v), "cross_origin");
    }
    let r = browser
        .put(format!("{}/api/provider-keys/openai", app.admin))
        .header("origin", "http://evil.example")
        .header("sec-fetch-site", "cross-site")
        .json(&json!({"key": "sk-stolen-by-evil"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // From our own origin (Origin header, or Sec-Fetch-Site), it works.
    let r = browser
        .post(format!("{}/auth/api-keys", app.admin))
        .header("origin", &own_origin)
        .json(&json!({"name": "dashboard"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let created: Value = r.json().await.unwrap();
    let key2 = created["key"].as_str().unwrap().to_owned();
    assert_eq!(proxy_call(&app, &key2, None).await, StatusCode::OK);
    let r = browser
        .delete(format!(
            "{}/auth/api-keys/{}",
            app.admin,
            created["id"].as_str().unwrap()
        ))
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        proxy_call(&app, &key2, None).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(proxy_call(&app, &key, None).await, StatusCode::OK);

    // Logout clears the cookie; the next read is 401.
    let r = browser
        .post(format!("{}/auth/logout", app.admin))
        .header("origin", &own_origin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let r = browser
        .get(format!("{}/auth/me", app.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // A copy of the logged-out cookie does not open the dashboard pages either.
    let pages = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = pages
        .get(format!("{}/settings", app.admin))
        .header("cookie", format!("llmo_session={first_token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);

    // Login sets it again.
    let r = browser
        .post(format!("{}/auth/login", app.admin))
        .json(&json!({"email": "cookie@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = browser
        .get(format!("{}/auth/me", app.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // The dashboard pages see a live session.
    let r = pages.get(format!("{}/", app.admin)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let login: Value = browser
        .post(format!("{}/auth/login", app.admin))
        .json(&json!({"email": "cookie@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = pages
        .get(format!("{}/", app.admin))
        .header(
            "cookie",
            format!("llmo_session={}", login["token"].as_str().unwrap()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

/// The `Set-Cookie` of signup, login and logout, made by a hyper-rustls client that
/// trusts only the test CA (reqwest here has no TLS), over `https://localhost:PORT` when
/// `tls`, plain HTTP otherwise.
async fn session_cookies(app: &TestApp, tls: bool, email: &str) -> Vec<String> {
    use http_body_util::{BodyExt, Full};
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(common::mock_upstream::client_tls_config())
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, Full<bytes::Bytes>>(connector);
    let base = if tls {
        format!("https://localhost:{}", app.app.admin_addr.port())
    } else {
        app.admin.clone()
    };
    let login = json!({"email": email, "password": PASSWORD}).to_string();
    let mut cookies = Vec::new();
    let mut token = String::new();
    for (path, body, want) in [
        ("/auth/signup", login.clone(), StatusCode::CREATED),
        ("/auth/login", login, StatusCode::OK),
        ("/auth/logout", String::new(), StatusCode::NO_CONTENT),
    ] {
        let mut req = http::Request::post(format!("{base}{path}"))
            .header("content-type", "application/json")
            .header("sec-fetch-site", "same-origin");
        if !token.is_empty() {
            req = req.header("cookie", format!("llmo_session={token}"));
        }
        let resp = client
            .request(req.body(Full::new(bytes::Bytes::from(body))).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), want.as_u16(), "{path}");
        let set: Vec<String> = resp
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        assert_eq!(set.len(), 1, "{path}: {set:?}");
        cookies.push(set[0].clone());
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        if let Ok(v) = serde_json::from_slice::<Value>(&body) {
            token = v["token"].as_str().unwrap_or_default().to_owned();
        }
    }
    cookies
}

/// DESIGN: the session cookie is Secure when served over TLS (`--tls-cert`/`--tls-key`),
/// and only then; signup, login and logout's clearing cookie alike.
#[tokio::test]
async fn the_session_cookie_is_secure_exactly_when_the_admin_listener_serves_tls() {
    let upstream = mock().await;
    let certs = common::mock_upstream::certs_dir();
    let tls_app = TestApp::spawn_with(&upstream.base_url(), |c| {
        c.tls = Some((certs.join("localhost.pem"), certs.join("localhost.key")));
    })
    .await;
    let plain_app = TestApp::spawn(&upstream.base_url()).await;
    for (app, tls) in [(&tls_app, true), (&plain_app, false)] {
        let cookies = session_cookies(app, tls, "secure@example.com").await;
        let secure = if tls { "; Secure" } else { "" };
        for (i, c) in cookies.iter().enumerate() {
            let (value, attrs) = c.split_once(';').unwrap();
            let max_age = if i == 2 { "0" } else { "604800" };
            assert_eq!(
                attrs,
                format!(" HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}"),
                "tls {tls}, cookie {i}"
            );
            let token = value.strip_prefix("llmo_session=").unwrap();
            assert_eq!(token.is_empty(), i == 2, "tls {tls}, cookie {i}");
        }
    }
    // The TLS listener really is TLS: plain HTTP to it gets no answer.
    let r = plain_app
        .http
        .get(format!("http://{}/healthz", tls_app.app.admin_addr))
        .send()
        .await;
    assert!(r.is_err() || !r.unwrap().status().is_success());
}

#[tokio::test]
async fn tenant_isolation_on_every_route() {
    let upstream = mock().await;
    let app = TestApp::spawn(&upstream.base_url()).await;
    let a = app.signup("a@example.com").await;
    let b = app.signup("b@example.com").await;

    // A has events, a customer, a provider key.
    assert_eq!(
        proxy_call(&app, &a.key, Some("alice")).await,
        StatusCode::OK
    );
    let (status, _) = send(
        &app,
        reqwest::Method::PUT,
        &a.token,
        "/api/provider-keys/openai",
        Some(json!({"key": "sk-a-secret-1234"})),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(app.wait_events(&a.user_id, 1).await.len(), 1);
    let a_event = app.events(&a.user_id).await[0].id.clone();

    // A sees its own data.
    let (_, st) = get(&app, &a.token, "/api/stats").await;
    assert_eq!(st["calls"], 1);

    // B sees none of it, on every read route.
    let (_, st) = get(&app, &b.token, "/api/stats").await;
    assert_eq!(st["calls"], 0);
    assert_eq!(st["total_cost_usd"], "0");
    assert_eq!(st["by_provider"], json!([]));
    let (_, ev) = get(&app, &b.token, "/api/events").await;
    assert_eq!(ev["events"], json!([]));
    let (_, ev) = get(&app, &b.token, &format!("/api/events?cursor={a_event}")).await;
    assert_eq!(ev["events"], json!([]));
    let (_, cs) = get(&app, &b.token, "/api/customers").await;
    assert_eq!(cs, json!([]));
    let (status, _) = get(&app, &b.token, "/api/customers/alice").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, ts) = get(&app, &b.token, "/api/timeseries?bucket=day").await;
    assert_eq!(ts, json!([]));
    let (_, pk) = get(&app, &b.token, "/api/provider-keys").await;
    assert_eq!(pk, json!([]));
    let r = app
        .http
        .get(format!("{}/api/events.csv", app.admin))
        .bearer_auth(&b.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap().lines().count(), 1, "header only");
    let (_, me) = get(&app, &b.token, "/auth/me").await;
    assert_eq!(me["user"]["email"], "b@example.com");
    let ids: Vec<&str> = me["api_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [b.key_id.as_str()]);

    // B cannot revoke A's key or delete A's provider key.
    let (status, _) = send(
        &app,
        reqwest::Method::DELETE,
        &b.token,
        &format!("/auth/api-keys/{}", a.key_id),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(proxy_call(&app, &a.key, None).await, StatusCode::OK);
    let (status, _) = send(
        &app,
        reqwest::Method::DELETE,
        &b.token,
        "/api/provider-keys/openai",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // B setting its own OpenAI key does not touch A's: each managed call uses its own.
    let (status, _) = send(
        &app,
        reqwest::Method::PUT,
        &b.token,
        "/api/provider-keys/openai",
        Some(json!({"key": "sk-b-secret-5678"})),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, pk) = get(&app, &a.token, "/api/provider-keys").await;
    assert_eq!(pk[0]["last4"], "1234");
    let before = upstream.request_count();
    assert_eq!(managed_call(&app, &a.key).await, StatusCode::OK);
    assert_eq!(managed_call(&app, &b.key).await, StatusCode::OK);
    let reqs = upstream.requests();
    let auths: Vec<&str> = reqs[before..]
        .iter()
        .map(|r| r.header("authorization").unwrap())
        .collect();
    assert_eq!(
        auths,
        ["Bearer sk-a-secret-1234", "Bearer sk-b-secret-5678"]
    );

    // B deleting its account leaves A whole.
    let (status, _) = send(&app, reqwest::Method::DELETE, &b.token, "/auth/me", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(proxy_call(&app, &a.key, None).await, StatusCode::OK);
    let (_, pk) = get(&app, &a.token, "/api/provider-keys").await;
    assert_eq!(pk.as_array().unwrap().len(), 1);
    app.wait_events(&a.user_id, 4).await;
    let (_, st) = get(&app, &a.token, "/api/stats").await;
    assert_eq!(st["calls"], 4);
    let (status, _) = get(&app, &a.token, "/api/customers/alice").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn tampered_and_expired_tokens_get_401() {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};

    let upstream = mock().await;
    let app = TestApp::spawn(&upstream.base_url()).await;
    let s = app.signup("jwt@example.com").await;
    let secret = app.app.state.jwt_secret;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = |iat: u64, exp: u64| json!({"sub": s.user_id, "iat": iat, "exp": exp, "jti": "t", "gen": 0});
    let sign = |alg: Algorithm, key: &[u8], c: &Value| {
        jsonwebtoken::encode(&Header::new(alg), c, &EncodingKey::from_secret(key)).unwrap()
    };

    // The genuine token, and one we sign the same way, both work.
    assert_eq!(get(&app, &s.token, "/auth/me").await.0, StatusCode::OK);
    let good = sign(Algorithm::HS256, &secret, &claims(now, now + 3600));
    assert_eq!(get(&app, &good, "/auth/me").await.0, StatusCode::OK);

    let none_alg = format!(
        "{}.{}.",
        B64.encode(br#"{"alg":"none","typ":"JWT"}"#),
        B64.encode(claims(now, now + 3600).to_string())
    );
    let wrong_sig = sign(
        Algorithm::HS256,
        b"some other secret",
        &claims(now, now + 3600),
    );
    let other_alg = sign(Algorithm::HS512, &secret, &claims(now, now + 3600));
    let expired = sign(Algorithm::HS256, &secret, &claims(now - 7200, now - 3600));
    let too_long = sign(Algorithm::HS256, &secret, &claims(now, now + 30 * 86_400));
    let no_exp = sign(
        Algorithm::HS256,
        &secret,
        &json!({"sub": s.user_id, "iat": now, "jti": "t", "gen": 0}),
    );
    let unknown_user = sign(
        Algorithm::HS256,
        &secret,
        &json!({"sub": "01NOSUCHUSER", "iat": now, "exp": now + 60, "jti": "t", "gen": 0}),
    );
    // Payload swapped under a genuine signature.
    let mut parts: Vec<String> = s.token.split('.').map(str::to_owned).collect();
    parts[1] = B64.encode(claims(now, now + 999_999).to_string());
    let swapped = parts.join(".");

    for (name, token) in [
        ("alg none", none_alg.as_str()),
        ("wrong signature", &wrong_sig),
        ("HS512", &other_alg),
        ("expired", &expired),
        ("lifetime over 7 days", &too_long),
        ("no exp", &no_exp),
        ("unknown account", &unknown_user),
        ("swapped payload", &swapped),
        ("garbage", "garbage"),
        ("empty-ish", "a.b.c"),
    ] {
        let (status, body) = get(&app, token, "/api/stats").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}");
        assert_eq!(error_code(&body), "unauthorized", "{name}");
        // Also as a cookie.
        let r = app
            .http
            .get(format!("{}/auth/me", app.admin))
            .header("cookie", format!("llmo_session={token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{name} as cookie");
    }
    let (_, body) = get(&app, &expired, "/auth/me").await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired")
    );

    // No credentials at all, or an llmo_sk_ key where a session belongs.
    let r = app
        .http
        .get(format!("{}/api/stats", app.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let (status, body) = get(&app, &s.key, "/api/stats").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body["error"]["message"].as_str().unwrap().contains("proxy"));
}

#[tokio::test]
async fn deleted_account_token_and_keys_stop_working() {
    let upstream = mock().await;
    let app = TestApp::spawn(&upstream.base_url()).await;
    let s = app.signup("gone@example.com").await;
    assert_eq!(proxy_call(&app, &s.key, None).await, StatusCode::OK);
    let (status, _) = send(&app, reqwest::Method::DELETE, &s.token, "/auth/me", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = get(&app, &s.token, "/auth/me").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        proxy_call(&app, &s.key, None).await,
        StatusCode::UNAUTHORIZED
    );
    let r = app
        .http
        .post(format!("{}/auth/login", app.admin))
        .json(&json!({"email": "gone@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // The email is free again.
    app.signup("gone@example.com").await;
}

#[tokio::test]
async fn password_change_ends_older_sessions() {
    let upstream = mock().await;
    let app = TestApp::spawn(&upstream.base_url()).await;
    let s = app.signup("pw@example.com").await;
    let (status, body) = send(
        &app,
        reqwest::Method::POST,
        &s.token,
        "/auth/password",
        Some(json!({"current_password": "not it at all", "new_password": "brand new secret"})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(error_code(&body), "wrong_password");
    let (status, body) = send(
        &app,
        reqwest::Method::POST,
        &s.token,
        "/auth/password",
        Some(json!({"current_password": PASSWORD, "new_password": "brand new secret"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let new_token = body["token"].as_str().unwrap().to_owned();
    assert_eq!(
        get(&app, &s.token, "/auth/me").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(get(&app, &new_token, "/auth/me").await.0, StatusCode::OK);
    let login = |pw: &'static str| {
        app.http
            .post(format!("{}/auth/login", app.admin))
            .json(&json!({"email": "pw@example.com", "password": pw}))
            .send()
    };
    assert_eq!(login(PASSWORD).await.unwrap().status(), 401);
    assert_eq!(login("brand new secret").await.unwrap().status(), 200);
    // API keys are not sessions: they keep working.
    assert_eq!(proxy_call(&app, &s.key, None).await, StatusCode::OK);
}

#[tokio::test]
async fn signup_and_login_validation_and_uniform_login_errors() {
    let upstream = mock().await;
    let app = TestApp::spawn(&upstream.base_url()).await;
    let post = |path: &'static str, body: Value| {
        app.http
            .post(format!("{}{path}", app.admin))
            .json(&body)
            .send()
    };
    let r = post(
        "/auth/signup",
        json!({"email": "not-an-email", "password": PASSWORD}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(&r.json().await.unwrap()), "invalid_email");
    let r = post(
        "/auth/signup",
        json!({"email": "x@example.com", "password": "short"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(&r.json().await.unwrap()), "weak_password");
    let r = post("/auth/signup", json!({"email": "x@example.com"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(error_code(&v), "invalid_json");
    assert!(v["error"]["message"].as_str().unwrap().contains("password"));
    let r = app
        .http
        .post(format!("{}/auth/signup", app.admin))
        .body(r#"{"email":"x@example.com","password":"long enough"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);

    app.signup("taken@example.com").await;
    let r = post(
        "/auth/signup",
        json!({"email": " TAKEN@example.com", "password": PASSWORD}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 409);
    assert_eq!(error_code(&r.json().await.unwrap()), "email_taken");

    // Wrong password and unknown email: the same answer.
    let wrong = post(
        "/auth/login",
        json!({"email": "taken@example.com", "password": "wrong password"}),
    )
    .await
    .unwrap();
    let unknown = post(
        "/auth/login",
        json!({"email": "nobody@example.com", "password": "wrong password"}),
    )
    .await
    .unwrap();
    assert_eq!(wrong.status(), 401);
    assert_eq!(unknown.status(), 401);
    assert_eq!(
        wrong.json::<Value>().await.unwrap(),
        unknown.json::<Value>().await.unwrap()
    );
}

#[tokio::test]
async fn auth_attempts_are_rate_limited_per_address() {
    let upstream = mock().await;
    let app = TestApp::spawn(&upstream.base_url()).await;
    let attempt = || {
        app.http
            .post(format!("{}/auth/login", app.admin))
            .json(&json!({"email": "nobody@example.com", "password": "whatever1"}))
            .send()
    };
    for i in 0..llmobserve::admin::rate_limit::AUTH_BURST {
        assert_eq!(attempt().await.unwrap().status(), 401, "attempt {i}");
    }
    let r = attempt().await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "retry-after {retry}");
    assert_eq!(error_code(&r.json().await.unwrap()), "rate_limited");
    // Signup shares the budget; other routes do not.
    let r = app
        .http
        .post(format!("{}/auth/signup", app.admin))
        .json(&json!({"email": "new@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let r = app
        .http
        .get(format!("{}/healthz", app.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn bodies_are_capped_and_errors_are_json() {
    let upstream = mock().await;
    let app = TestApp::spawn(&upstream.base_url()).await;
    let huge = json!({"email": "x@example.com", "password": "y".repeat(100 * 1024)});
    let r = app
        .http
        .post(format!("{}/auth/signup", app.admin))
        .json(&huge)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(&r.json().await.unwrap()), "payload_too_large");

    let r = app
        .http
        .get(format!("{}/api/nothing-here", app.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(&r.json().await.unwrap()), "not_found");
    let r = app
        .http
        .patch(format!("{}/api/stats", app.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(error_code(&r.json().await.unwrap()), "method_not_allowed");

    // healthz and metrics are still served.
    let r = app
        .http
        .get(format!("{}/healthz", app.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = app
        .http
        .get(format!("{}/metrics", app.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn provider_keys_are_listed_without_secrets_and_validated() {
    let upstream = mock().await;
    let app = TestApp::spawn(&upstream.base_url()).await;
    let s = app.signup("pk@example.com").await;
    let put = async |provider: &str, key: &str| {
        let path = format!("/api/provider-keys/{provider}");
        send(
            &app,
            reqwest::Method::PUT,
            &s.token,
            &path,
            Some(json!({ "key": key })),
        )
        .await
    };
    assert_eq!(put("openai", "sk-proj-abcdefWXYZ").await.0, 204);
    assert_eq!(put("anthropic", "sk-ant-0123456789").await.0, 204);
    let (status, body) = put("nosuch", "sk-0123456789").await;
    assert_eq!(status, 400);
    assert_eq!(error_code(&body), "unknown_provider");
    let (status, body) = put("openai", "tiny").await;
    assert_eq!(status, 400);
    assert_eq!(error_code(&body), "invalid_provider_key");

    let (status, list) = get(&app, &s.token, "/api/provider-keys").await;
    assert_eq!(status, 200);
    let text = list.to_string();
    assert!(
        !text.contains("abcdef") && !text.contains("0123456"),
        "{text}"
    );
    let mut rows: Vec<(String, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert!(r["updated_at"].is_string());
            (
                r["provider"].as_str().unwrap().to_owned(),
                r["last4"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        [
            ("anthropic".to_owned(), "6789".to_owned()),
            ("openai".to_owned(), "WXYZ".to_owned())
        ]
    );

    // Managed mode uses the stored key; after DELETE it no longer can.
    assert_eq!(managed_call(&app, &s.key).await, 200);
    let last = upstream.requests().pop().unwrap();
    assert_eq!(
        last.header("authorization"),
        Some("Bearer sk-proj-abcdefWXYZ")
    );
    let (status, _) = send(
        &app,
        reqwest::Method::DELETE,
        &s.token,
        "/api/provider-keys/openai",
        None,
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(managed_call(&app, &s.key).await, 401);
    let (status, _) = send(
        &app,
        reqwest::Method::DELETE,
        &s.token,
        "/api/provider-keys/openai",
        None,
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn cors_is_closed_by_default_and_opens_only_for_listed_origins() {
    let upstream = mock().await;
    let preflight = |app: &TestApp, origin: &str| {
        app.http
            .request(reqwest::Method::OPTIONS, format!("{}/api/stats", app.admin))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    let closed = TestApp::spawn(&upstream.base_url()).await;
    let r = preflight(&closed, "http://app.example").await.unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());

    let open = TestApp::spawn_with(&upstream.base_url(), |c| {
        c.cors_origins = vec!["http://app.example".to_owned()];
    })
    .await;
    let r = preflight(&open, "http://app.example").await.unwrap();
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "http://app.example"
    );
    let r = preflight(&open, "http://evil.example").await.unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());

    // The listed origin also passes the cookie origin check.
    let s = open.signup("cors@example.com").await;
    let r = open
        .http
        .post(format!("{}/auth/api-keys", open.admin))
        .header("cookie", format!("llmo_session={}", s.token))
        .header("origin", "http://app.example")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
}
