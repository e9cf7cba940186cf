//! The official `openai` Python SDK pointed at the proxy by `OPENAI_BASE_URL`: a chat
//! call and a streamed chat call, each metered exactly. Needs a Python with `openai`
//! (`.ci/run` makes `target/ci-venv`); skipped with a notice elsewhere, fatal under CI.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::app::TestApp;
use common::mock_upstream::{MockUpstream, Reply, fixture};
use llmobserve::store::model::UsageStatus;

fn python_with(module: &str) -> Option<String> {
    let candidates = [
        std::env::var("LLMO_TEST_PYTHON").ok(),
        Some(format!(
            "{}/target/ci-venv/bin/python",
            env!("CARGO_MANIFEST_DIR")
        )),
        Some(format!("{}/.venv/bin/python", env!("CARGO_MANIFEST_DIR"))),
        Some("python3".to_owned()),
    ];
    candidates.into_iter().flatten().find(|py| {
        Command::new(py)
            .args(["-c", &format!("import {module}")])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

fn require_python(module: &str) -> Option<String> {
    let py = python_with(module);
    if py.is_none() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("CI=true but no python with `{module}` (run .ci/run, or set LLMO_TEST_PYTHON)");
        }
        eprintln!(
            "SKIPPED: no python with `{module}`; run `python3 -m venv target/ci-venv && target/ci-venv/bin/pip install openai anthropic`"
        );
    }
    py
}

const SCRIPT: &str = r#"
import os, openai
client = openai.OpenAI()  # OPENAI_BASE_URL and OPENAI_API_KEY from the environment
r = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}],
                                   extra_headers={"X-Customer-Id": "py-customer"})
print("CHAT", r.usage.prompt_tokens, r.usage.completion_tokens, r.model)
text = ""
chunks = 0
for ch in client.chat.completions.create(model="gpt-4o-mini", stream=True,
                                         messages=[{"role": "user", "content": "hi"}]):
    chunks += 1
    if ch.choices and ch.choices[0].delta.content:
        text += ch.choices[0].delta.content
print("STREAM", repr(text), chunks)
"#;

#[tokio::test]
async fn openai_python_sdk_chat_and_stream_are_metered_exactly() {
    let Some(py) = require_python("openai") else {
        return;
    };
    let mock = MockUpstream::tls()
        .route(
            "POST",
            "/v1/chat/completions",
            Reply::func(|req| {
                let body = req.body_json();
                if body["stream"] == true {
                    let name = if body["stream_options"]["include_usage"] == true {
                        "openai/chat_stream_include_usage.sse"
                    } else {
                        "openai/chat_stream_no_usage.sse"
                    };
                    Reply::sse(fixture(name))
                } else {
                    Reply::json(200, fixture("openai/chat_completion.json"))
                }
            }),
        )
        .start()
        .await;
    let app = TestApp::spawn(&mock.base_url()).await;
    let acct = app.account("python@example.com").await;
    let state = app.app.state.clone();
    let uid = acct.user_id.clone();
    tokio::task::spawn_blocking(move || {
        llmobserve::accounts::set_provider_key(
            &state,
            &uid,
            llmobserve::providers::Provider::OpenAi,
            "sk-stored",
        )
    })
    .await
    .unwrap()
    .unwrap();

    let out = tokio::process::Command::new(&py)
        .args(["-c", SCRIPT])
        .env("OPENAI_BASE_URL", format!("{}/v1", app.proxy))
        .env("OPENAI_API_KEY", &acct.key)
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env_remove("ALL_PROXY")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python failed: {}\n{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("CHAT 1536 212 gpt-4o-2024-08-06"),
        "{stdout}"
    );
    assert!(
        stdout.contains("STREAM 'The capital of France is Paris.'"),
        "{stdout}"
    );

    let ev = app.wait_events(&acct.user_id, 2).await;
    assert_eq!(ev.len(), 2);
    let (stream, chat) = (&ev[0], &ev[1]);
    assert_eq!(chat.customer_id.as_deref(), Some("py-customer"));
    assert_eq!(chat.usage.unwrap().input_tokens, 1536);
    assert_eq!(chat.usage.unwrap().cached_input_tokens, 1280);
    assert_eq!(chat.usage.unwrap().output_tokens, 212);
    assert!(stream.streamed);
    assert_eq!(stream.usage_status, UsageStatus::Reported);
    assert_eq!(stream.usage.unwrap().input_tokens, 24);
    assert_eq!(stream.usage.unwrap().output_tokens, 8);
    assert!(chat.cost.is_some() && stream.cost.is_some());
    for r in mock.requests() {
        assert_eq!(r.header("authorization"), Some("Bearer sk-stored"));
    }
}

const ANTHROPIC_SCRIPT: &str = r#"
import anthropic
client = anthropic.Anthropic()  # ANTHROPIC_BASE_URL and ANTHROPIC_API_KEY from the environment
m = client.messages.create(model="claude-sonnet-4-5", max_tokens=100,
                           messages=[{"role": "user", "content": "hi"}],
                           metadata={"user_id": "anthropic-customer"})
print("MSG", m.usage.input_tokens, m.usage.cache_read_input_tokens, m.usage.output_tokens, m.model)
with client.messages.stream(model="claude-sonnet-4-5", max_tokens=100,
                            messages=[{"role": "user", "content": "hi"}]) as s:
    final = s.get_final_message()
print("STREAM", final.usage.output_tokens)
"#;

#[tokio::test]
async fn anthropic_python_sdk_message_and_stream_are_metered_exactly() {
    let Some(py) = require_python("anthropic") else {
        return;
    };
    let mock = MockUpstream::tls()
        .route(
            "POST",
            "/v1/messages",
            Reply::func(|req| {
                if req.body_json()["stream"] == true {
                    Reply::sse(fixture("anthropic/messages_stream.sse"))
                } else {
                    Reply::json(200, fixture("anthropic/messages.json"))
                }
            }),
        )
        .start()
        .await;
    let app = TestApp::spawn(&mock.base_url()).await;
    let acct = app.account("anthropic-sdk@example.com").await;
    let state = app.app.state.clone();
    let uid = acct.user_id.clone();
    tokio::task::spawn_blocking(move || {
        llmobserve::accounts::set_provider_key(
            &state,
            &uid,
            llmobserve::providers::Provider::Anthropic,
            "sk-ant-stored",
        )
    })
    .await
    .unwrap()
    .unwrap();

    let out = tokio::process::Command::new(&py)
        .args(["-c", ANTHROPIC_SCRIPT])
        .env("ANTHROPIC_BASE_URL", format!("{}/anthropic", app.proxy))
        .env("ANTHROPIC_API_KEY", &acct.key)
        .env_remove("ANTHROPIC_AUTH_TOKEN")
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env_remove("ALL_PROXY")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python failed: {}\n{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("MSG 312 9600 428 claude-sonnet-4-5-20250929"),
        "{stdout}"
    );
    assert!(stdout.contains("STREAM 156"), "{stdout}");

    let ev = app.wait_events(&acct.user_id, 2).await;
    assert_eq!(ev.len(), 2);
    let (stream, msg) = (&ev[0], &ev[1]);
    assert_eq!(msg.customer_id.as_deref(), Some("anthropic-customer"));
    assert_eq!(
        msg.cost.map(|c| c.to_string()).as_deref(),
        Some("0.0171735")
    );
    assert_eq!(
        stream.cost.map(|c| c.to_string()).as_deref(),
        Some("0.0251448")
    );
    assert_eq!(stream.usage_status, UsageStatus::Reported);
    for r in mock.requests() {
        assert_eq!(r.header("x-api-key"), Some("sk-ant-stored"));
        assert_eq!(r.header("authorization"), None);
    }
}
