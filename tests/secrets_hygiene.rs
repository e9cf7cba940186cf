//! No secret ever reaches a log line or the database file: provider keys (sent or
//! stored), `llmo_sk_` keys (valid or not), session tokens and `?key=` values are
//! planted in real traffic against the real binary at debug/trace log levels, then the
//! logs and the redb file are searched for them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::mock_upstream::{MockUpstream, Reply, fixture};
use common::process::start_server;

const CHAT: &str = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;
const GEMINI: &str = r#"{"contents":[{"parts":[{"text":"hi"}]}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_logs_or_the_database_file() {
    let mock = MockUpstream::tls()
        .json("/v1/chat/completions", "openai/chat_completion.json")
        .route(
            "POST",
            "/v1/messages",
            Reply::json(401, fixture("anthropic/error_401.json")),
        )
        .json("/v1beta/models/*", "gemini/generate_content.json")
        .start()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let mut server = start_server(dir.path(), &mock.base_url(), "trace").await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();

    // A session and a key from the admin API.
    let signup: serde_json::Value = http
        .post(format!("{}/auth/signup", server.admin))
        .json(&serde_json::json!({"email": "secrets@example.com", "password": "planted-password-789"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwt = signup["token"].as_str().expect("token").to_owned();
    let key = signup["api_key"]["key"].as_str().expect("key").to_owned();
    let stored_provider_key = "sk-planted-STORED-provider-secret-456";
    let r = http
        .put(format!("{}/api/provider-keys/openai", server.admin))
        .bearer_auth(&jwt)
        .json(&serde_json::json!({ "key": stored_provider_key }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let r = http
        .put(format!("{}/api/provider-keys/gemini", server.admin))
        .bearer_auth(&jwt)
        .json(&serde_json::json!({ "key": "AIza-planted-GEMINI-stored-secret" }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let me = http
        .get(format!("{}/auth/me", server.admin))
        .bearer_auth(&jwt)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);

    // Managed mode (the key in Authorization), pass-through with a provider key,
    // Gemini with ?key=, an upstream 401, a bad key and a malformed one.
    let sent_provider_key = "sk-planted-SENT-provider-secret-123";
    let r = http
        .post(format!("{}/v1/chat/completions", server.proxy))
        .bearer_auth(&key)
        .body(CHAT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .post(format!("{}/anthropic/v1/messages", server.proxy))
        .header("x-llmobserve-key", &key)
        .header("x-api-key", sent_provider_key)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .post(format!(
            "{}/gemini/v1beta/models/gemini-2.5-flash:generateContent?key={key}",
            server.proxy
        ))
        .body(GEMINI)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let unknown_key = "llmo_sk_PLANTEDunknownKEY0123456789abcdefghijklmn";
    let r = http
        .post(format!("{}/v1/chat/completions", server.proxy))
        .bearer_auth(unknown_key)
        .body(CHAT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let malformed = "llmo_sk_PLANTED-malformed!";
    let r = http
        .post(format!("{}/v1/chat/completions", server.proxy))
        .header("x-llmobserve-key", malformed)
        .body(CHAT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http.post(format!("{}/auth/login", server.admin)).json(&serde_json::json!({"email": "secrets@example.com", "password": "planted-WRONG-password"})).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // The stored provider key really was used upstream.
    assert!(
        mock.requests()
            .iter()
            .any(|r| r.header("authorization") == Some(&format!("Bearer {stored_provider_key}")))
    );

    server.terminate().await;
    let logs = server.logs.lock().unwrap().join("\n");
    assert!(
        logs.len() > 1000,
        "expected real trace output, got {} bytes",
        logs.len()
    );
    let db = std::fs::read(dir.path().join("llmobserve.redb")).unwrap();
    let planted = [
        key.as_str(),
        &key["llmo_sk_".len()..],
        &jwt,
        jwt.rsplit('.').next().unwrap(),
        sent_provider_key,
        stored_provider_key,
        "AIza-planted-GEMINI-stored-secret",
        unknown_key,
        malformed,
        "planted-password-789",
        "planted-WRONG-password",
    ];
    for secret in planted {
        assert!(
            !logs.contains(secret),
            "secret {secret:.12}… found in the logs"
        );
        assert!(
            !contains(&db, secret.as_bytes()),
            "secret {secret:.12}… found in the database file"
        );
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
