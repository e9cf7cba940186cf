//! The official `openai` Python SDK pointed at the proxy by `OPENAI_BASE_URL`: a chat
//! call and a streamed chat call, each metered exactly. Needs a Python with `openai`
//! (`.ci/run` makes `target/ci-venv`); skipped with a notice elsewhere, fatal under CI.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::app::TestApp;
use common::mock_upstream::{MockUpstream, Reply, fixture};
use llmobserve::providers::Provider;
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

/// Runs `script` with `env` (and no proxy or stray credentials); returns its stdout.
async fn run_python(py: &str, script: &str, env: &[(&str, &str)]) -> String {
    let mut cmd = tokio::process::Command::new(py);
    cmd.args(["-c", script]);
    for var in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "ANTHROPIC_AUTH_TOKEN",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "python failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
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
    app.provider_key(&acct.user_id, Provider::OpenAi, "sk-stored")
        .await;

    let base = format!("{}/v1", app.proxy);
    let stdout = run_python(
        &py,
        SCRIPT,
        &[("OPENAI_BASE_URL", &base), ("OPENAI_API_KEY", &acct.key)],
    )
    .await;
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
    app.provider_key(&acct.user_id, Provider::Anthropic, "sk-ant-stored")
        .await;

    let base = format!("{}/anthropic", app.proxy);
    let stdout = run_python(
        &py,
        ANTHROPIC_SCRIPT,
        &[
            ("ANTHROPIC_BASE_URL", &base),
            ("ANTHROPIC_API_KEY", &acct.key),
        ],
    )
    .await;
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
