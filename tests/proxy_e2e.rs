//! End to end through the proxy against the in-process TLS mock upstream: bytes
//! forwarded untouched, exact tokens and costs per fixture, both key modes, header
//! hygiene, errors, cancellation, limits, compression, and persistence.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::app::TestApp;
use common::mock_upstream::{MockUpstream, MockUpstreamHandle, Reply, fixture};
use llmobserve::providers::Provider;
use llmobserve::store::model::{Outcome, UsageStatus};

/// Serves the fixture named by the request's `x-test-fixture` header (forwarded by the
/// proxy like any other client header), as SSE when it ends in `.sse`.
async fn fixture_mock() -> MockUpstreamHandle {
    MockUpstream::tls()
        .route(
            "*",
            "/*",
            Reply::func(|req| {
                let name = req
                    .header("x-test-fixture")
                    .unwrap_or("openai/chat_completion.json");
                let body = fixture(name);
                if name.ends_with(".sse") {
                    Reply::sse(body).chunked_every(97)
                } else {
                    Reply::json(200, body).header("x-request-id", "req_test_123")
                }
            }),
        )
        .start()
        .await
}

struct Case {
    fixture: &'static str,
    path: &'static str,
    body: &'static str,
    model: &'static str,
    input: u64,
    cached: u64,
    cache_write: u64,
    output: u64,
    reasoning: u64,
    status: UsageStatus,
    cost: Option<&'static str>,
}

const CHAT: &str = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;
const CHAT_STREAM_WITH_USAGE: &str = r#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[]}"#;
const MESSAGES: &str = r#"{"model":"claude-sonnet-4-5","max_tokens":100,"messages":[]}"#;
const GEMINI: &str = r#"{"contents":[{"parts":[{"text":"hi"}]}]}"#;

fn cases() -> Vec<Case> {
    use UsageStatus::*;
    vec![
        Case {
            fixture: "openai/chat_completion.json",
            path: "/v1/chat/completions",
            body: CHAT,
            model: "gpt-4o-2024-08-06",
            input: 1536,
            cached: 1280,
            cache_write: 0,
            output: 212,
            reasoning: 0,
            status: Reported,
            cost: COST_OPENAI_CHAT,
        },
        Case {
            fixture: "openai/chat_completion_reasoning.json",
            path: "/openai/v1/chat/completions",
            body: CHAT,
            model: "o4-mini-2025-04-16",
            input: 3120,
            cached: 2944,
            cache_write: 0,
            output: 1873,
            reasoning: 1600,
            status: Reported,
            cost: COST_O4_MINI_FLEX,
        },
        Case {
            fixture: "openai/chat_stream_include_usage.sse",
            path: "/v1/chat/completions",
            body: CHAT_STREAM_WITH_USAGE,
            model: "gpt-4o-mini-2024-07-18",
            input: 24,
            cached: 0,
            cache_write: 0,
            output: 8,
            reasoning: 0,
            status: Reported,
            cost: COST_4O_MINI_STREAM,
        },
        Case {
            fixture: "openai/responses.json",
            path: "/v1/responses",
            body: CHAT,
            model: "gpt-5-mini-2025-08-07",
            input: 1472,
            cached: 1152,
            cache_write: 0,
            output: 938,
            reasoning: 768,
            status: Reported,
            cost: COST_RESPONSES,
        },
        Case {
            fixture: "openai/responses_stream.sse",
            path: "/v1/responses",
            body: CHAT,
            model: "gpt-4.1-2025-04-14",
            input: 37,
            cached: 0,
            cache_write: 0,
            output: 10,
            reasoning: 0,
            status: Reported,
            cost: COST_RESPONSES_STREAM,
        },
        Case {
            fixture: "openai/embeddings.json",
            path: "/v1/embeddings",
            body: r#"{"model":"text-embedding-3-small","input":["a","b"]}"#,
            model: "text-embedding-3-small",
            input: 17,
            cached: 0,
            cache_write: 0,
            output: 0,
            reasoning: 0,
            status: Reported,
            cost: COST_EMBEDDINGS,
        },
        Case {
            fixture: "openai/completions_legacy.json",
            path: "/v1/completions",
            body: r#"{"model":"gpt-3.5-turbo-instruct","prompt":"x"}"#,
            model: "gpt-3.5-turbo-instruct",
            input: 12,
            cached: 0,
            cache_write: 0,
            output: 24,
            reasoning: 0,
            status: Reported,
            cost: COST_LEGACY,
        },
        Case {
            fixture: "azure/chat_completion.json",
            path: "/azure/openai/deployments/prod-4o/chat/completions?api-version=2024-10-21",
            body: r#"{"messages":[]}"#,
            model: "gpt-4o-2024-11-20",
            input: 58,
            cached: 0,
            cache_write: 0,
            output: 120,
            reasoning: 0,
            status: Reported,
            cost: COST_AZURE,
        },
        Case {
            fixture: "anthropic/messages.json",
            path: "/anthropic/v1/messages",
            body: MESSAGES,
            model: "claude-sonnet-4-5-20250929",
            input: 11762,
            cached: 9600,
            cache_write: 1850,
            output: 428,
            reasoning: 0,
            status: Reported,
            cost: COST_ANTHROPIC,
        },
        Case {
            fixture: "anthropic/messages_web_search.json",
            path: "/anthropic/v1/messages",
            body: MESSAGES,
            model: "claude-sonnet-4-5-20250929",
            input: 6412,
            cached: 0,
            cache_write: 0,
            output: 512,
            reasoning: 0,
            status: Reported,
            cost: COST_ANTHROPIC_SEARCH,
        },
        Case {
            fixture: "anthropic/messages_stream.sse",
            path: "/anthropic/v1/messages",
            body: MESSAGES,
            model: "claude-sonnet-4-5-20250929",
            input: 17432,
            cached: 14336,
            cache_write: 3072,
            output: 156,
            reasoning: 0,
            status: Reported,
            cost: COST_ANTHROPIC_STREAM,
        },
        Case {
            fixture: "anthropic/messages_stream_error.sse",
            path: "/anthropic/v1/messages",
            body: MESSAGES,
            model: "claude-opus-4-1-20250805",
            input: 1200,
            cached: 0,
            cache_write: 0,
            output: 1,
            reasoning: 0,
            status: Partial,
            cost: COST_OPUS_PARTIAL,
        },
        Case {
            fixture: "gemini/generate_content.json",
            path: "/gemini/v1beta/models/gemini-2.5-flash:generateContent",
            body: GEMINI,
            model: "gemini-2.5-flash",
            input: 4120,
            cached: 2048,
            cache_write: 0,
            output: 1282,
            reasoning: 926,
            status: Reported,
            cost: COST_GEMINI_FLASH,
        },
        Case {
            fixture: "gemini/generate_content_long_context.json",
            path: "/gemini/v1beta/models/gemini-2.5-pro:generateContent",
            body: GEMINI,
            model: "gemini-2.5-pro",
            input: 245760,
            cached: 0,
            cache_write: 0,
            output: 3072,
            reasoning: 2048,
            status: Reported,
            cost: COST_GEMINI_LONG,
        },
        Case {
            fixture: "gemini/stream_generate_content_crlf.sse",
            path: "/gemini/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse",
            body: GEMINI,
            model: "gemini-2.5-pro",
            input: 812,
            cached: 0,
            cache_write: 0,
            output: 574,
            reasoning: 511,
            status: Reported,
            cost: COST_GEMINI_STREAM,
        },
        Case {
            fixture: "deepseek/chat_completion.json",
            path: "/deepseek/v1/chat/completions",
            body: CHAT,
            model: "deepseek-chat",
            input: 1830,
            cached: 1792,
            cache_write: 0,
            output: 295,
            reasoning: 0,
            status: Reported,
            cost: COST_DEEPSEEK,
        },
        Case {
            fixture: "groq/chat_stream_x_groq.sse",
            path: "/groq/v1/chat/completions",
            body: r#"{"model":"llama-3.3-70b-versatile","stream":true,"messages":[]}"#,
            model: "llama-3.3-70b-versatile",
            input: 45,
            cached: 0,
            cache_write: 0,
            output: 28,
            reasoning: 0,
            status: Reported,
            cost: COST_GROQ,
        },
        Case {
            fixture: "mistral/chat_stream.sse",
            path: "/mistral/v1/chat/completions",
            body: r#"{"model":"mistral-small-latest","stream":true,"messages":[]}"#,
            model: "mistral-small-latest",
            input: 27,
            cached: 0,
            cache_write: 0,
            output: 15,
            reasoning: 0,
            status: Reported,
            cost: COST_MISTRAL,
        },
        Case {
            fixture: "openrouter/chat_completion.json",
            path: "/openrouter/v1/chat/completions",
            body: CHAT,
            model: "anthropic/claude-sonnet-4.5",
            input: 2250,
            cached: 2048,
            cache_write: 0,
            output: 310,
            reasoning: 0,
            status: Reported,
            cost: Some("0.0058704"),
        },
        Case {
            fixture: "xai/chat_completion.json",
            path: "/xai/v1/chat/completions",
            body: CHAT,
            model: "grok-4-0709",
            input: 840,
            cached: 640,
            cache_write: 0,
            output: 1583,
            reasoning: 1371,
            status: Reported,
            cost: Some("0.024825"),
        },
    ]
}

// Exact costs worked out by hand from pricing/*.toml (USD per million tokens).
/// gpt-4o: 256 × 2.50 + 1280 × 1.25 + 212 × 10.00 = 640 + 1600 + 2120 = 4360 µ$
const COST_OPENAI_CHAT: Option<&str> = Some("0.00436");
/// o4-mini at the flex tier the response names (0.5 ×): 176 × 0.55 + 2944 × 0.1375 + 1873 × 2.20 = 4622.2 µ$
const COST_O4_MINI_FLEX: Option<&str> = Some("0.0046222");
/// gpt-4o-mini: 24 × 0.15 + 8 × 0.60 = 8.4 µ$
const COST_4O_MINI_STREAM: Option<&str> = Some("0.0000084");
/// gpt-5-mini: 320 × 0.25 + 1152 × 0.025 + 938 × 2.00 = 80 + 28.8 + 1876 = 1984.8 µ$
const COST_RESPONSES: Option<&str> = Some("0.0019848");
/// gpt-4.1: 37 × 2.00 + 10 × 8.00 = 154 µ$
const COST_RESPONSES_STREAM: Option<&str> = Some("0.000154");
/// text-embedding-3-small: 17 × 0.02 = 0.34 µ$
const COST_EMBEDDINGS: Option<&str> = Some("0.00000034");
/// gpt-3.5-turbo-instruct: 12 × 1.50 + 24 × 2.00 = 66 µ$
const COST_LEGACY: Option<&str> = Some("0.000066");
/// Azure, priced by the response model gpt-4o-2024-11-20: 58 × 2.50 + 120 × 10.00 = 1345 µ$
const COST_AZURE: Option<&str> = Some("0.001345");
/// claude-sonnet-4-5: 312 × 3 + 9600 × 0.30 + 1850 × 3.75 (5m write) + 428 × 15 = 17173.5 µ$
const COST_ANTHROPIC: Option<&str> = Some("0.0171735");
/// 6412 × 3 + 512 × 15 = 26916 µ$ + 2 web searches × $10/1000 = 46916 µ$
const COST_ANTHROPIC_SEARCH: Option<&str> = Some("0.046916");
/// 24 × 3 + 14336 × 0.30 + 3072 × 6.00 (1h write) + 156 × 15 = 25144.8 µ$
const COST_ANTHROPIC_STREAM: Option<&str> = Some("0.0251448");
/// claude-opus-4-1, partial (lower bound): 1200 × 15 + 1 × 75 = 18075 µ$
const COST_OPUS_PARTIAL: Option<&str> = Some("0.018075");
/// gemini-2.5-flash: 2072 × 0.30 + 2048 × 0.03 + 1282 × 2.50 = 3888.04 µ$
const COST_GEMINI_FLASH: Option<&str> = Some("0.00388804");
/// gemini-2.5-pro over 200k prompt tokens: 245760 × 2.50 + 3072 × 15 = 660480 µ$
const COST_GEMINI_LONG: Option<&str> = Some("0.66048");
/// gemini-2.5-pro: 812 × 1.25 + 574 × 10 = 6755 µ$
const COST_GEMINI_STREAM: Option<&str> = Some("0.006755");
/// deepseek-chat (latest entry): 38 × 0.14 + 1792 × 0.0028 + 295 × 0.28 = 5.32 + 5.0176 + 82.6 = 92.9376 µ$
const COST_DEEPSEEK: Option<&str> = Some("0.0000929376");
/// llama-3.3-70b-versatile: 45 × 0.59 + 28 × 0.79 = 48.67 µ$
const COST_GROQ: Option<&str> = Some("0.00004867");
/// mistral-small-latest: 27 × 0.10 + 15 × 0.30 = 7.2 µ$
const COST_MISTRAL: Option<&str> = Some("0.0000072");

#[tokio::test]
async fn every_fixture_is_forwarded_byte_for_byte_and_metered_exactly() {
    let mock = fixture_mock().await;
    let app = TestApp::spawn(&mock.base_url()).await;
    let acct = app.account("fixtures@example.com").await;
    for (i, case) in cases().iter().enumerate() {
        let resp = app
            .passthrough(case.path, &acct.key)
            .header("authorization", "Bearer sk-provider-own-key")
            .header("x-test-fixture", case.fixture)
            .header("content-type", "application/json")
            .body(case.body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{}", case.fixture);
        let got = resp.bytes().await.unwrap();
        assert_eq!(
            got,
            fixture(case.fixture),
            "client bytes differ for {}",
            case.fixture
        );

        let events = app.wait_events(&acct.user_id, i + 1).await;
        let e = &events[0];
        let u = e
            .usage
            .unwrap_or_else(|| panic!("no usage for {}", case.fixture));
        assert_eq!(e.model.as_deref(), Some(case.model), "{}", case.fixture);
        assert_eq!(
            (
                u.input_tokens,
                u.cached_input_tokens,
                u.cache_write_tokens(),
                u.output_tokens,
                u.reasoning_tokens
            ),
            (
                case.input,
                case.cached,
                case.cache_write,
                case.output,
                case.reasoning
            ),
            "tokens for {}",
            case.fixture
        );
        assert_eq!(e.usage_status, case.status, "{}", case.fixture);
        assert_eq!(
            e.cost.map(|c| c.to_string()).as_deref(),
            case.cost,
            "cost for {}",
            case.fixture
        );
        // A stream that ends in `event: error` is a 200 whose call failed upstream.
        let outcome = if case.fixture.ends_with("_error.sse") {
            Outcome::UpstreamError
        } else {
            Outcome::Ok
        };
        assert_eq!(e.outcome, outcome, "{}", case.fixture);
        assert_eq!(e.status, 200);
        assert_eq!(
            e.streamed,
            case.fixture.ends_with(".sse"),
            "{}",
            case.fixture
        );
        assert_eq!(e.api_key_id, acct.key_id);
    }
    assert_eq!(mock.request_count(), cases().len());
}

/// PROVIDERS.md §6: without `alt=sse`, `streamGenerateContent` answers one JSON array of
/// chunks (`[{…},\r\n{…}]`) delivered bit by bit. Each chunk carries a cumulative usage
/// snapshot: the last one counts, never the sum.
#[tokio::test]
async fn gemini_stream_as_a_json_array_without_alt_sse_is_metered_exactly() {
    let sse = String::from_utf8(fixture("gemini/stream_generate_content.sse").to_vec()).unwrap();
    let chunks: Vec<&str> = sse
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(chunks.len(), 3);
    let array = format!("[{}]", chunks.join(",\r\n"));
    let mock = MockUpstream::tls()
        .route(
            "POST",
            "/v1beta/models/gemini-2.5-pro:streamGenerateContent",
            Reply::json(200, array.clone()).chunked_every(61),
        )
        .start()
        .await;
    let app = TestApp::spawn(&mock.base_url()).await;
    let acct = app.account("gemini-array@example.com").await;
    let r = app
        .passthrough(
            "/gemini/v1beta/models/gemini-2.5-pro:streamGenerateContent",
            &acct.key,
        )
        .header("x-goog-api-key", "AIza-own")
        .body(GEMINI)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.bytes().await.unwrap(), array.as_bytes());
    let req = &mock.requests()[0];
    assert_eq!(req.query(), None, "no alt=sse added");
    assert_eq!(req.body, GEMINI.as_bytes());

    let e = app.only_event(&acct.user_id).await;
    assert_eq!(e.provider, Provider::Gemini);
    assert_eq!(e.model.as_deref(), Some("gemini-2.5-pro"));
    assert!(
        e.streamed,
        "streamGenerateContent streams its array, SSE or not"
    );
    assert_eq!(e.outcome, Outcome::Ok);
    assert_eq!(e.usage_status, UsageStatus::Reported);
    let u = e.usage.unwrap();
    assert_eq!(
        (
            u.input_tokens,
            u.cached_input_tokens,
            u.cache_write_tokens(),
            u.output_tokens,
            u.reasoning_tokens
        ),
        (812, 0, 0, 574, 511)
    );
    assert_eq!(e.cost.map(|c| c.to_string()).as_deref(), COST_GEMINI_STREAM);
    assert_eq!(e.to_api_json()["endpoint"], "streamGenerateContent");
}

/// The same array cut by a dying upstream after its second chunk: the last snapshot seen
/// is kept as a lower bound, flagged partial.
#[tokio::test]
async fn gemini_json_array_stream_cut_short_keeps_the_last_snapshot_as_partial() {
    let sse = String::from_utf8(fixture("gemini/stream_generate_content.sse").to_vec()).unwrap();
    let chunks: Vec<&str> = sse
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    let array = format!("[{}]", chunks.join(",\r\n"));
    let cut = 1 + chunks[0].len() + 3 + chunks[1].len() + 3;
    let mock = MockUpstream::tls()
        .route(
            "POST",
            "/v1beta/models/*",
            Reply::json(200, array).chunked_every(61).cut_after(cut),
        )
        .start()
        .await;
    let app = TestApp::spawn(&mock.base_url()).await;
    let acct = app.account("gemini-array-cut@example.com").await;
    let r = app
        .passthrough(
            "/gemini/v1beta/models/gemini-2.5-pro:streamGenerateContent",
            &acct.key,
        )
        .body(GEMINI)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.is_err(), "the client sees the cut");
    let e = app.only_event(&acct.user_id).await;
    assert_eq!(e.usage_status, UsageStatus::Partial);
    let u = e.usage.unwrap();
    // The second snapshot: 812 prompt, 47 candidates + 511 thoughts.
    assert_eq!(
        (u.input_tokens, u.output_tokens, u.reasoning_tokens),
        (812, 558, 511)
    );
    // gemini-2.5-pro: 812 × 1.25 + 558 × 10 = 6595 µ$
    assert_eq!(e.cost.map(|c| c.to_string()).as_deref(), Some("0.006595"));
    assert_eq!(e.outcome, Outcome::UpstreamError);
}

/// A price file in the format of `pricing/*.toml`: gpt-4o repriced, one model added.
const PRICE_OVERRIDE: &str = r#"
provider = "openai"

[[model]]
name = "gpt-4o"
effective = 2024-01-01
input = "3.00"
cached_input = "1.00"
output = "12.00"

[[model]]
name = "acme-llm-1"
effective = "2024-01-01"
input = "1.50"
output = "4.50"
note = "no cached rate: cache reads are billed as input"
"#;

/// The OpenAI chat fixture answered as model `model`.
fn chat_completion_as(model: &str) -> String {
    String::from_utf8(fixture("openai/chat_completion.json").to_vec())
        .unwrap()
        .replace("\"gpt-4o-2024-08-06\"", &format!("\"{model}\""))
}

/// Answers chat completions by the model the request names: `acme-llm-1`, a
/// `gpt-4o-mini` stream with usage, or the gpt-4o fixture.
async fn pricing_mock() -> MockUpstreamHandle {
    MockUpstream::tls()
        .route(
            "POST",
            "/v1/chat/completions",
            Reply::func(|req| {
                let model = req.body_json()["model"].as_str().unwrap_or("").to_owned();
                match model.as_str() {
                    "acme-llm-1" => Reply::json(200, chat_completion_as("acme-llm-1")),
                    "gpt-4o-mini" => Reply::sse(fixture("openai/chat_stream_include_usage.sse")),
                    _ => Reply::json(200, fixture("openai/chat_completion.json")),
                }
            }),
        )
        .start()
        .await
}

/// Signs up through the admin API; returns (token, llmo key, user id).
async fn admin_get(app: &TestApp, token: &str, path: &str) -> serde_json::Value {
    let (status, v) = app.api_get(token, path).await;
    assert_eq!(status, 200, "{path}");
    v
}

/// DESIGN: prices are overridable by a file (`--pricing-file`): a model named there
/// replaces the embedded prices, a new one is added, every other model keeps its price.
#[tokio::test]
async fn a_pricing_file_reprices_a_model_and_adds_one_end_to_end() {
    let mock = pricing_mock().await;
    let prices = tempfile::tempdir().unwrap();
    let price_file = prices.path().join("prices.toml");
    std::fs::write(&price_file, PRICE_OVERRIDE).unwrap();
    let app = TestApp::spawn_with(&mock.base_url(), |c| {
        c.pricing_file = Some(price_file.clone());
    })
    .await;
    let s = app.signup("pricing@example.com").await;
    let (token, key, user_id) = (s.token, s.key, s.user_id);
    let calls = [
        (
            "/v1/chat/completions",
            r#"{"model":"gpt-4o","messages":[]}"#,
        ),
        (
            "/v1/chat/completions",
            r#"{"model":"acme-llm-1","messages":[]}"#,
        ),
        ("/v1/chat/completions", CHAT_STREAM_WITH_USAGE),
        // The added model belongs to OpenAI only: on Groq it has no price.
        (
            "/groq/v1/chat/completions",
            r#"{"model":"acme-llm-1","messages":[]}"#,
        ),
    ];
    for (path, body) in calls {
        let r = app
            .passthrough(path, &key)
            .header("authorization", "Bearer sk-own")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{body}");
        r.bytes().await.unwrap();
    }
    assert_eq!(mock.request_count(), 4);
    assert_eq!(app.wait_events(&user_id, 4).await.len(), 4);

    let v = admin_get(&app, &token, "/api/events").await;
    let got: Vec<(&str, &str, &serde_json::Value, &serde_json::Value)> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|e| {
            (
                e["provider"].as_str().unwrap(),
                e["model"].as_str().unwrap(),
                &e["cost_usd"],
                &e["priced"],
            )
        })
        .collect();
    use serde_json::json;
    assert_eq!(
        got,
        [
            // The dated name falls back to the overridden family:
            // 256 × 3.00 + 1280 × 1.00 + 212 × 12.00 = 768 + 1280 + 2544 = 4592 µ$
            (
                "openai",
                "gpt-4o-2024-08-06",
                &json!("0.004592"),
                &json!(true)
            ),
            // 1536 × 1.50 (cache reads at the input rate) + 212 × 4.50 = 3258 µ$
            ("openai", "acme-llm-1", &json!("0.003258"), &json!(true)),
            // Not in the file: the embedded price (24 × 0.15 + 8 × 0.60 = 8.4 µ$).
            (
                "openai",
                "gpt-4o-mini-2024-07-18",
                &json!("0.0000084"),
                &json!(true)
            ),
            ("groq", "acme-llm-1", &json!(null), &json!(false)),
        ]
    );
    let st = admin_get(&app, &token, "/api/stats").await;
    assert_eq!(st["total_cost_usd"], "0.0078584");
    assert_eq!(
        (&st["calls"], &st["unpriced_calls"]),
        (&json!(4), &json!(1))
    );
}

/// The same override through the real binary's `--pricing-file` flag; a file with a
/// typo stops the start with an error naming the file instead of dropping a price.
#[tokio::test]
async fn the_pricing_file_flag_of_the_binary_reprices_calls() {
    use common::process::{bin, create_account, start_server_with};
    let mock = pricing_mock().await;
    let data = tempfile::tempdir().unwrap();
    let prices = tempfile::tempdir().unwrap();
    let price_file = prices.path().join("prices.toml");
    std::fs::write(&price_file, PRICE_OVERRIDE).unwrap();
    let key = create_account(data.path(), "bin-pricing@example.com");
    let mut server = start_server_with(
        data.path(),
        &mock.base_url(),
        "info",
        &["--pricing-file", price_file.to_str().unwrap()],
    )
    .await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    for body in [
        r#"{"model":"gpt-4o","messages":[]}"#,
        r#"{"model":"acme-llm-1","messages":[]}"#,
    ] {
        let r = http
            .post(format!("{}/v1/chat/completions", server.proxy))
            .header("x-llmobserve-key", &key)
            .header("authorization", "Bearer sk-own")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    }
    // A clean shutdown commits every event; then read them from the file.
    server.terminate().await;
    let store = llmobserve::store::Store::open(&data.path().join("llmobserve.redb")).unwrap();
    let user = store.all_api_keys().unwrap()[0].user_id.clone();
    let costs: Vec<Option<String>> = store
        .events_desc(&user, None, usize::MAX, |_| true)
        .unwrap()
        .iter()
        .rev()
        .map(|e| e.cost.map(|c| c.to_string()))
        .collect();
    assert_eq!(
        costs,
        [Some("0.004592".to_owned()), Some("0.003258".to_owned())]
    );
    drop(store);

    let typo = prices.path().join("typo.toml");
    std::fs::write(
        &typo,
        PRICE_OVERRIDE.replace("cached_input = ", "cached_inptu = "),
    )
    .unwrap();
    let other = tempfile::tempdir().unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(bin())
            .args(["--data-dir", other.path().to_str().unwrap()])
            .args(["--proxy-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"])
            .args(["--pricing-file", typo.to_str().unwrap()])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("a bad price file stops the start")
    .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(typo.to_str().unwrap()) && stderr.contains("cached_inptu"),
        "{stderr}"
    );
}

#[tokio::test]
async fn stream_without_include_usage_is_asked_for_usage_and_the_extra_chunk_is_hidden() {
    usage_is_injected_and_hidden(
        "/v1/chat/completions",
        "/v1/chat/completions",
        Provider::OpenAi,
    )
    .await;
}

/// The OpenAI-compatible endpoints of Gemini and Anthropic take `stream_options` too
/// (PROVIDERS.md §6), and without it their streams carry no usage.
#[tokio::test]
async fn openai_compatible_streams_of_gemini_and_anthropic_are_asked_for_usage_too() {
    usage_is_injected_and_hidden(
        "/gemini/v1beta/openai/chat/completions",
        "/v1beta/openai/chat/completions",
        Provider::Gemini,
    )
    .await;
    usage_is_injected_and_hidden(
        "/anthropic/v1/chat/completions",
        "/v1/chat/completions",
        Provider::Anthropic,
    )
    .await;
}

async fn usage_is_injected_and_hidden(route: &str, upstream_path: &str, provider: Provider) {
    let mock = MockUpstream::tls()
        .route(
            "POST",
            upstream_path,
            Reply::func(|req| {
                let asked = req.body_json()["stream_options"]["include_usage"] == true;
                let name = if asked {
                    "openai/chat_stream_include_usage.sse"
                } else {
                    "openai/chat_stream_no_usage.sse"
                };
                Reply::sse(fixture(name)).chunked_every(61)
            }),
        )
        .start()
        .await;
    let app = TestApp::spawn(&mock.base_url()).await;
    let acct = app.account("inject@example.com").await;
    let body =
        r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let got = app
        .passthrough(route, &acct.key)
        .header("authorization", "Bearer sk-own")
        .body(body)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    // What the client gets: the stream with usage, minus its usage event.
    let full = String::from_utf8(fixture("openai/chat_stream_include_usage.sse").to_vec()).unwrap();
    let expected: String = full
        .split_inclusive("\n\n")
        .filter(|ev| !ev.contains("\"choices\":[]"))
        .collect();
    assert_eq!(String::from_utf8(got.to_vec()).unwrap(), expected);
    assert!(!expected.contains("\"usage\":{"));
    let sent = mock.requests()[0].body_json();
    assert_eq!(sent["stream_options"]["include_usage"], true);
    assert_eq!(sent["model"], "gpt-4o-mini");

    let e = app.only_event(&acct.user_id).await;
    let u = e.usage.expect("usage read from the injected chunk");
    assert_eq!((u.input_tokens, u.output_tokens), (24, 8));
    assert_eq!(e.usage_status, UsageStatus::Reported);
    assert_eq!(e.provider, provider);
    // The fixture's model is OpenAI's, priced only under `openai`.
    if provider == Provider::OpenAi {
        assert_eq!(
            e.cost.map(|c| c.to_string()).as_deref(),
            COST_4O_MINI_STREAM
        );
    }
}

#[tokio::test]
async fn injection_switched_off_records_missing_usage_not_zero() {
    let mock = MockUpstream::tls()
        .sse("/v1/chat/completions", "openai/chat_stream_no_usage.sse")
        .start()
        .await;
    let app = TestApp::spawn_with(&mock.base_url(), |c| c.inject_stream_usage = false).await;
    let acct = app.account("noinject@example.com").await;
    let body = r#"{"model":"gpt-4o-mini","stream":true,"messages":[]}"#;
    let got = app
        .http
        .post(app.url("/v1/chat/completions"))
        .header("authorization", format!("Bearer {}", "sk-own"))
        .header("x-llmobserve-key", &acct.key)
        .body(body)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got, fixture("openai/chat_stream_no_usage.sse"));
    assert_eq!(mock.requests()[0].body, body.as_bytes());
    let e = app.only_event(&acct.user_id).await;
    assert_eq!(e.usage, None);
    assert_eq!(e.usage_status, UsageStatus::Missing);
    assert_eq!(e.cost, None);
    let json = e.to_api_json();
    assert!(json["input_tokens"].is_null() && json["cost_usd"].is_null());
    assert_eq!(json["priced"], false);
}

#[tokio::test]
async fn headers_are_cleaned_and_the_body_is_forwarded_unchanged() {
    let mock = MockUpstream::tls()
        .json("/v1/chat/completions", "openai/chat_completion.json")
        .start()
        .await;
    let app = TestApp::spawn(&mock.base_url()).await;
    let acct = app.account("headers@example.com").await;
    let body = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"héllo"}],"user":"ignored-because-header"}"#;
    let resp = app
        .passthrough("/v1/chat/completions?foo=bar&x=1", &acct.key)
        .header("x-llmobserve-debug", "1")
        .header("x-customer-id", "alice")
        .header("authorization", "Bearer sk-provider")
        .header("x-stainless-lang", "python")
        .header("openai-organization", "org-1")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "secret-hop")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let r = &mock.requests()[0];
    assert_eq!(r.path_and_query, "/v1/chat/completions?foo=bar&x=1");
    assert_eq!(r.body, body.as_bytes());
    assert_eq!(r.header("authorization"), Some("Bearer sk-provider"));
    assert_eq!(r.header("x-stainless-lang"), Some("python"));
    assert_eq!(r.header("openai-organization"), Some("org-1"));
    for gone in [
        "x-llmobserve-key",
        "x-llmobserve-debug",
        "x-customer-id",
        "x-hop",
    ] {
        assert_eq!(r.header(gone), None, "{gone} must not reach the upstream");
    }
    assert_ne!(
        r.header("host"),
        Some(app.proxy.trim_start_matches("http://"))
    );
    let e = app.only_event(&acct.user_id).await;
    assert_eq!(e.customer_id.as_deref(), Some("alice"));
}

#[tokio::test]
async fn managed_mode_swaps_the_key_in_every_slot() {
    let mock = MockUpstream::tls()
        .json("/v1/chat/completions", "openai/chat_completion.json")
        .json("/v1/messages", "anthropic/messages.json")
        .json("/v1beta/models/*", "gemini/generate_content.json")
        .json("/openai/deployments/*", "azure/chat_completion.json")
        .start()
        .await;
    let app = TestApp::spawn(&mock.base_url()).await;
    let acct = app.account("managed@example.com").await;
    for (p, k) in [
        (Provider::OpenAi, "sk-openai-stored"),
        (Provider::Anthropic, "sk-ant-stored"),
        (Provider::Gemini, "AIza-stored"),
        (Provider::Azure, "azure-stored"),
    ] {
        app.provider_key(&acct.user_id, p, k).await;
    }
    let k = &acct.key;
    let calls: Vec<(&str, &str, String, &str)> = vec![
        (
            "/v1/chat/completions",
            "authorization",
            format!("Bearer {k}"),
            CHAT,
        ),
        (
            "/anthropic/v1/messages",
            "authorization",
            format!("Bearer {k}"),
            MESSAGES,
        ),
        ("/anthropic/v1/messages", "x-api-key", k.clone(), MESSAGES),
        (
            "/gemini/v1beta/models/gemini-2.5-flash:generateContent",
            "x-goog-api-key",
            k.clone(),
            GEMINI,
        ),
        (
            "/azure/openai/deployments/d/chat/completions?api-version=2024-10-21",
            "api-key",
            k.clone(),
            CHAT,
        ),
    ];
    for (path, header, value, body) in &calls {
        let resp = app
            .http
            .post(app.url(path))
            .header(*header, value)
            .body(*body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path} via {header}");
    }
    // Gemini style: the key in the query string.
    let resp = app
        .http
        .post(app.url(&format!(
            "/gemini/v1beta/models/gemini-2.5-flash:generateContent?key={k}&alt=json"
        )))
        .body(GEMINI)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let reqs = mock.requests();
    assert_eq!(reqs.len(), 6);
    assert_eq!(
        reqs[0].header("authorization"),
        Some("Bearer sk-openai-stored")
    );
    assert_eq!(reqs[1].header("x-api-key"), Some("sk-ant-stored"));
    assert_eq!(reqs[1].header("authorization"), None);
    assert_eq!(reqs[2].header("x-api-key"), Some("sk-ant-stored"));
    assert_eq!(reqs[3].header("x-goog-api-key"), Some("AIza-stored"));
    assert_eq!(reqs[4].header("api-key"), Some("azure-stored"));
    assert_eq!(reqs[5].header("x-goog-api-key"), Some("AIza-stored"));
    assert_eq!(reqs[5].query(), Some("alt=json"));
    for r in &reqs {
        for (_, v) in r.headers.iter() {
            assert!(
                !v.to_str().unwrap_or("").contains("llmo_sk_"),
                "our key leaked upstream"
            );
        }
        assert!(!r.path_and_query.contains("llmo_sk_"));
    }
    assert_eq!(app.wait_events(&acct.user_id, 6).await.len(), 6);
}

#[tokio::test]
async fn managed_mode_without_a_stored_provider_key_is_a_clear_401() {
    let mock = MockUpstream::tls()
        .json("/v1/chat/completions", "openai/chat_completion.json")
        .start()
        .await;
    let app = TestApp::spawn(&mock.base_url()).await;
    let acct = app.account("nokey@example.com").await;
    let resp = app
        .http
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(&acct.key)
        .body(CHAT)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no openai provider key")
    );
    assert_eq!(mock.request_count(), 0);
}

#[tokio::test]
async fn bad_missing_and_revoked_keys_get_401_in_the_provider_shape_and_nothing_is_forwarded() {
    let mock = MockUpstream::tls()
        .json("/v1/chat/completions", "openai/chat_completion.json")
        .json("/v1/messages", "anthropic/messages.json")
        .json("/v1beta/models/*", "gemini/generate_content.json")
        .start()
        .await;
    let app = TestApp::spawn(&mock.base_url()).await;
    let acct = app.account("revoke@example.com").await;
    let unknown = "llmo_sk_0123456789abcdefghijklmnopqrstuvwxyzABCD";

    let send = |path: &'static str, key: Option<String>| {
        let mut rb = app
            .http
            .post(app.url(path))
            .header("authorization", "Bearer sk-provider")
            .body(CHAT);
        if let Some(k) = key {
            rb = rb.header("x-llmobserve-key", k);
        }
        rb.send()
    };
    let r = send("/v1/chat/completions", None).await.unwrap();
    assert_eq!(r.status(), 401);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "invalid_api_key");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("X-LLMObserve-Key")
    );

    let r = send("/anthropic/v1/messages", Some(unknown.into()))
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "authentication_error");

    let r = send(
        "/gemini/v1beta/models/gemini-2.5-flash:generateContent",
        Some("llmo_sk_bad".into()),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 401);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["status"], "UNAUTHENTICATED");
    assert_eq!(v["error"]["code"], 401);

    // The shape follows the endpoint called, not the provider: Gemini's and Anthropic's
    // OpenAI-compatible endpoints are used with OpenAI's SDK, DeepSeek's
    // Anthropic-compatible one with Anthropic's.
    for path in [
        "/gemini/v1beta/openai/chat/completions",
        "/anthropic/v1/chat/completions",
    ] {
        let r = send(path, Some(unknown.into())).await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "invalid_api_key", "{path}: {v}");
        assert_eq!(v["error"]["type"], "invalid_request_error", "{path}: {v}");
    }
    let r = send("/deepseek/anthropic/v1/messages", Some(unknown.into()))
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        (&v["type"], &v["error"]["type"]),
        (
            &serde_json::json!("error"),
            &serde_json::json!("authentication_error")
        ),
        "{v}"
    );

    // The real key works, then stops working the moment it is revoked.
    let r = send("/v1/chat/completions", Some(acct.key.clone()))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let state = app.app.state.clone();
    let (uid, kid) = (acct.user_id.clone(), acct.key_id.clone());
    tokio::task::spawn_blocking(move || {
        llmobserve::accounts::revoke_api_key(&state, &uid, &kid).unwrap()
    })
    .await
    .unwrap();
    let r = send("/v1/chat/completions", Some(acct.key.clone()))
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        mock.request_count(),
        1,
        "only the authenticated call reached the upstream"
    );
    assert_eq!(app.events(&acct.user_id).await.len(), 1);
}

/// DESIGN: the proxy strips the provider segment and appends the rest of the path, and
/// the query, to the upstream base URL, whose own path stays in front (Groq's default is
/// `https://api.groq.com/openai`, OpenRouter's `…/api`, Fireworks' `…/inference`).
#[tokio::test]
async fn upstream_base_urls_with_a_path_keep_it_in_front_of_the_forwarded_path() {
    let fireworks_body = String::from_utf8(fixture("openai/chat_completion.json").to_vec())
        .unwrap()
        .replace(
            "\"gpt-4o-2024-08-06\"",
            "\"accounts/fireworks/models/llama-v3p3-70b-instruct\"",
        );
    let mock = MockUpstream::tls()
        .sse("/openai/v1/chat/completions", "groq/chat_stream_x_groq.sse")
        .json(
            "/api/v1/chat/completions",
            "openrouter/chat_completion.json",
        )
        .route(
            "POST",
            "/inference/v1/chat/completions",
            Reply::json(200, fireworks_body.clone()),
        )
        .start()
        .await;
    let base = mock.base_url();
    let app = TestApp::spawn_with(&base, |c| {
        use llmobserve::config::BaseUrl;
        for (p, path) in [
            (Provider::Groq, "/openai"),
            // A trailing slash must not double up.
            (Provider::OpenRouter, "/api/"),
            (Provider::Fireworks, "/inference"),
        ] {
            c.upstreams
                .insert(p, BaseUrl::parse(&format!("{base}{path}")).unwrap());
        }
    })
    .await;
    let acct = app.account("basepath@example.com").await;
    let calls = [
        (
            "/groq/v1/chat/completions?foo=bar&x=1",
            r#"{"model":"llama-3.3-70b-versatile","stream":true,"stream_options":{"include_usage":true},"messages":[]}"#,
            "/openai/v1/chat/completions?foo=bar&x=1",
            fixture("groq/chat_stream_x_groq.sse"),
        ),
        (
            "/openrouter/v1/chat/completions?a=%2F&b=",
            CHAT,
            "/api/v1/chat/completions?a=%2F&b=",
            fixture("openrouter/chat_completion.json"),
        ),
        (
            "/fireworks/v1/chat/completions?q=1",
            CHAT,
            "/inference/v1/chat/completions?q=1",
            bytes::Bytes::from(fireworks_body),
        ),
    ];
    for (path, body, _, answer) in &calls {
        let r = app
            .passthrough(path, &acct.key)
            .header("authorization", "Bearer sk-provider")
            .header("content-type", "application/json")
            .body(*body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(&r.bytes().await.unwrap(), answer, "{path}");
    }
    let reqs = mock.requests();
    let got: Vec<&str> = reqs.iter().map(|r| r.path_and_query.as_str()).collect();
    let want: Vec<&str> = calls.iter().map(|c| c.2).collect();
    assert_eq!(got, want);
    for (r, (_, body, _, _)) in reqs.iter().zip(&calls) {
        assert_eq!(r.body, body.as_bytes(), "{}", r.path_and_query);
    }

    let ev = app.wait_events(&acct.user_id, 3).await;
    let seen: Vec<(Provider, Option<&str>, Option<String>)> = ev
        .iter()
        .rev()
        .map(|e| {
            (
                e.provider,
                e.model.as_deref(),
                e.cost.map(|c| c.to_string()),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (
                Provider::Groq,
                Some("llama-3.3-70b-versatile"),
                COST_GROQ.map(str::to_owned)
            ),
            (
                Provider::OpenRouter,
                Some("anthropic/claude-sonnet-4.5"),
                Some("0.0058704".to_owned())
            ),
            (
                Provider::Fireworks,
                Some("accounts/fireworks/models/llama-v3p3-70b-instruct"),
                // No cached rate: 1536 × 0.90 + 212 × 0.90 = 1573.2 µ$
                Some("0.0015732".to_owned())
            ),
        ]
    );
}

#[tokio::test]
async fn unknown_routes_and_unset_azure_are_404() {
    let mock = MockUpstream::tls().start().await;
    let app = TestApp::spawn_with(&mock.base_url(), |c| {
        c.upstreams.remove(&llmobserve::providers::Provider::Azure);
    })
    .await;
    let acct = app.account("routes@example.com").await;
    let r = app
        .passthrough("/nope/v1/chat/completions", &acct.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = app
        .passthrough("/azure/openai/deployments/d/chat/completions", &acct.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("LLMO_AZURE_BASE_URL")
    );
    assert_eq!(mock.request_count(), 0);
}

#[tokio::test]
async fn upstream_errors_pass_through_byte_for_byte_and_are_recorded() {
    let mock = MockUpstream::tls()
        .route(
            "POST",
            "/v1/chat/completions",
            Reply::json(429, fixture("openai/error_429_rate_limit.json"))
                .header("retry-after", "7"),
        )
        .route(
            "POST",
            "/v1/messages",
            Reply::json(500, fixture("anthropic/error_529_overloaded.json")),
        )
        .start()
        .await;
    let app = TestApp::spawn(&mock.base_url()).await;
    let acct = app.account("errors@example.com").await;
    let r = app
        .passthrough("/v1/chat/completions", &acct.key)
        .body(CHAT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "7");
    assert_eq!(
        r.bytes().await.unwrap(),
        fixture("openai/error_429_rate_limit.json")
    );
    let r = app
        .passthrough("/anthropic/v1/messages", &acct.key)
        .body(MESSAGES)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(
        r.bytes().await.unwrap(),
        fixture("anthropic/error_529_overloaded.json")
    );
    let ev = app.wait_events(&acct.user_id, 2).await;
    assert_eq!(ev.len(), 2);
    for e in &ev {
        assert_eq!(e.outcome, Outcome::UpstreamError);
        assert_eq!(e.usage_status, UsageStatus::Missing);
        assert_eq!(e.cost, None);
    }
    assert_eq!(ev[0].status, 500);
    assert_eq!(ev[1].status, 429);
}

/// An Anthropic stream answered by `reply` (the Messages stream fixture, one event a
/// chunk), through an app set up by `tweak`: returns the response once its first event
/// (`message_start`, with the input usage) has been read.
async fn anthropic_stream_started(
    reply: impl FnOnce(Reply) -> Reply,
    tweak: impl FnOnce(&mut llmobserve::config::Config),
) -> (
    MockUpstreamHandle,
    TestApp,
    common::app::Account,
    reqwest::Response,
) {
    anthropic_stream_started_from(MockUpstream::tls(), reply, tweak).await
}

/// [`anthropic_stream_started`] from `mock` (`plain()` for HTTP/1.1, `tls()` for h2).
async fn anthropic_stream_started_from(
    mock: MockUpstream,
    reply: impl FnOnce(Reply) -> Reply,
    tweak: impl FnOnce(&mut llmobserve::config::Config),
) -> (
    MockUpstreamHandle,
    TestApp,
    common::app::Account,
    reqwest::Response,
) {
    let mock = mock
        .route(
            "POST",
            "/v1/messages",
            reply(Reply::sse(fixture("anthropic/messages_stream.sse")).chunked_by_event()),
        )
        .start()
        .await;
    let app = TestApp::spawn_with(&mock.base_url(), tweak).await;
    let acct = app.account("stream@example.com").await;
    let mut resp = app
        .passthrough("/anthropic/v1/messages", &acct.key)
        .body(MESSAGES)
        .send()
        .await
        .unwrap();
    let first = resp.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("message_start"));
    (mock, app, acct, resp)
}

/// The Anthropic stream fixture served one event a chunk, `delay` before each, as the
/// client's body frames arrived (the first is `message_start` alone); checks the bytes
/// and the event on the way. Also returns the fixture's number of events.
async fn anthropic_stream_frames(mock: MockUpstream, delay: Duration) -> (usize, usize) {
    let sse = fixture("anthropic/messages_stream.sse");
    let text = String::from_utf8_lossy(&sse).into_owned();
    let events = text.matches("\n\n").count();
    let first_event = text.find("\n\n").unwrap() + 2;
    let (_mock, app, acct, mut resp) =
        anthropic_stream_started_from(mock, |r| r.delay_per_chunk(delay), |_| {}).await;
    let mut rest = Vec::new();
    while let Some(f) = resp.chunk().await.unwrap() {
        rest.push(f);
    }
    assert_eq!(rest.concat(), sse[first_event..].to_vec());
    let e = app.only_event(&acct.user_id).await;
    assert_eq!(e.usage_status, UsageStatus::Reported);
    assert_eq!(e.usage.unwrap().output_tokens, 156);
    (1 + rest.len(), events)
}

/// Events the upstream sends at once leave at once: the first as it comes, the rest
/// gathered into a few writes instead of one a event (hyper flushes each frame). Over
/// HTTP/1.1 (the call reads its connection itself) and h2 (the connection's task feeds
/// the body), whose bursts end differently (`proxy::meter`, `BURST_YIELDS`).
#[tokio::test]
async fn stream_events_that_come_together_go_out_together() {
    for (name, mock) in [
        ("http/1.1", MockUpstream::plain()),
        ("h2", MockUpstream::tls()),
    ] {
        let (frames, events) = anthropic_stream_frames(mock, Duration::ZERO).await;
        assert!(events >= 10, "fixture has {events} events");
        // Slack for a test machine that preempts the proxy mid-burst.
        assert!(
            frames <= events / 2,
            "{name}: {frames} frames for {events} events"
        );
    }
}

/// Events that trickle in (as tokens do) are not held back for company: one frame each.
#[tokio::test]
async fn stream_events_that_trickle_go_out_one_by_one() {
    for (name, mock) in [
        ("http/1.1", MockUpstream::plain()),
        ("h2", MockUpstream::tls()),
    ] {
        let (frames, events) = anthropic_stream_frames(mock, Duration::from_millis(20)).await;
        assert_eq!(frames, events, "{name}");
    }
}

#[tokio::test]
async fn client_disconnect_mid_stream_cancels_upstream_and_records_cancelled() {
    let (mock, app, acct, resp) =
        anthropic_stream_started(|r| r.delay_per_chunk(Duration::from_millis(150)), |_| {}).await;
    // Hang up after the first event.
    drop(resp);
    mock.wait_for_cancelled(1, Duration::from_secs(5)).await;
    let e = app.only_event(&acct.user_id).await;
    assert_eq!(e.outcome, Outcome::Cancelled);
    assert_eq!(e.usage_status, UsageStatus::Partial);
    let u = e.usage.unwrap();
    assert_eq!(u.input_tokens, 17432, "input known from message_start");
    assert!(e.cost.is_some(), "partial usage is priced as a lower bound");
}

#[tokio::test]
async fn a_stream_still_open_after_the_grace_period_is_recorded_at_shutdown() {
    // `message_start` (448 bytes), then silence until the proxy gives up at shutdown.
    let (_mock, app, acct, resp) = anthropic_stream_started(
        |r| r.stall_after(448),
        |c| c.shutdown_grace = Duration::from_millis(300),
    )
    .await;
    let TestApp { app, dir, .. } = app;
    tokio::time::timeout(Duration::from_secs(10), app.shutdown())
        .await
        .expect("shutdown ends soon after the grace period");
    // The call was cut by shutdown, not lost: its event is in the file.
    let store = llmobserve::store::Store::open(&dir.path().join(llmobserve::app::DB_FILE)).unwrap();
    let events = store
        .events_desc(&acct.user_id, None, 10, |_| true)
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].outcome, Outcome::Cancelled);
    assert_eq!(events[0].usage_status, UsageStatus::Partial);
    assert_eq!(events[0].usage.as_ref().unwrap().input_tokens, 17432);
    drop(resp);
}

#[tokio::test]
async fn body_over_the_limit_is_413_and_not_forwarded() {
    let mock = MockUpstream::tls()
        .json("/v1/chat/completions", "openai/chat_completion.json")
        .start()
        .await;
    let app = TestApp::spawn_with(&mock.base_url(), |c| c.max_body_bytes = 1024).await;
    let acct = app.account("big@example.com").await;
    let big = format!(
        r#"{{"model":"gpt-4o","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(4096)
    );
    // With Content-Length.
    let r = app
        .passthrough("/v1/chat/completions", &acct.key)
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "request_too_large");
    // Chunked, without Content-Length.
    let stream = futures::stream::iter(
        big.into_bytes()
            .chunks(500)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let r = app
        .passthrough("/v1/chat/completions", &acct.key)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(mock.request_count(), 0);
    let ev = app.wait_events(&acct.user_id, 2).await;
    assert!(
        ev.iter()
            .all(|e| e.status == 413 && e.outcome == Outcome::ProxyError)
    );
}

#[tokio::test]
async fn invalid_customer_id_is_400_and_body_fields_attribute_calls() {
    let mock = MockUpstream::tls()
        .json("/v1/chat/completions", "openai/chat_completion.json")
        .json("/v1/messages", "anthropic/messages.json")
        .start()
        .await;
    let app = TestApp::spawn(&mock.base_url()).await;
    let acct = app.account("cust@example.com").await;
    let long = "x".repeat(129);
    for bad in [&b"tab\tinside"[..], &b"caf\xc3\xa9"[..], long.as_bytes()] {
        let bad = reqwest::header::HeaderValue::from_bytes(bad).unwrap();
        let r = app
            .passthrough("/v1/chat/completions", &acct.key)
            .header("x-customer-id", bad.clone())
            .body(CHAT)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad:?}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("X-Customer-Id")
        );
    }
    assert_eq!(mock.request_count(), 0);
    app.passthrough("/v1/chat/completions", &acct.key)
        .body(r#"{"model":"gpt-4o","messages":[],"user":"from-body"}"#)
        .send()
        .await
        .unwrap();
    app.passthrough("/anthropic/v1/messages", &acct.key)
        .body(r#"{"model":"claude","messages":[],"metadata":{"user_id":"from-metadata"}}"#)
        .send()
        .await
        .unwrap();
    // One event per authenticated call, the three refused ones included.
    let ev = app.wait_events(&acct.user_id, 5).await;
    assert_eq!(ev.len(), 5);
    assert!(ev[2..].iter().all(|e| e.status == 400));
    assert_eq!(ev[0].customer_id.as_deref(), Some("from-metadata"));
    assert_eq!(ev[1].customer_id.as_deref(), Some("from-body"));
}

/// A request over HTTP/2 with prior knowledge: unlike HTTP/1.1, where spaces around a
/// header value are optional whitespace the parser drops, h2 delivers the value as sent.
async fn h2_post(
    app: &TestApp,
    path: &str,
    headers: &[(&str, &str)],
    body: &'static str,
) -> (u16, serde_json::Value) {
    use http_body_util::BodyExt;
    let addr = app.app.proxy_addr;
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let mut req = http::Request::post(format!("http://{addr}{path}"));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = req
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            body.as_bytes(),
        )))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap())
}

/// DESIGN: `X-Customer-Id` is 1–128 printable ASCII characters without a leading or
/// trailing space; anything else is a 400 in the caller's provider shape and nothing is
/// forwarded. (Control characters, non-ASCII and 129 characters are in the test above.)
#[tokio::test]
async fn customer_id_empty_or_with_edge_spaces_is_400_in_each_shape_and_128_printable_is_kept() {
    let mock = MockUpstream::tls()
        .json("/v1/chat/completions", "openai/chat_completion.json")
        .json("/v1/messages", "anthropic/messages.json")
        .json("/v1beta/models/*", "gemini/generate_content.json")
        .start()
        .await;
    let app = TestApp::spawn(&mock.base_url()).await;
    let acct = app.account("cust-edges@example.com").await;
    let routes = [
        ("/v1/chat/completions", CHAT),
        ("/anthropic/v1/messages", MESSAGES),
        (
            "/gemini/v1beta/models/gemini-2.5-flash:generateContent",
            GEMINI,
        ),
    ];
    let shape = |route: &str, message: &str| match route {
        "/v1/chat/completions" => serde_json::json!({"error": {
            "message": message, "type": "invalid_request_error",
            "param": null, "code": "invalid_request"}}),
        "/anthropic/v1/messages" => serde_json::json!({"type": "error", "error": {
            "type": "invalid_request_error", "message": message}}),
        _ => serde_json::json!({"error": {
            "code": 400, "message": message, "status": "INVALID_ARGUMENT"}}),
    };
    let mut refused = 0;
    for (route, body) in routes {
        // Empty: over HTTP/1.1 as any client sends it.
        let r = app
            .passthrough(route, &acct.key)
            .header("x-customer-id", "")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{route}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v, shape(route, "invalid X-Customer-Id: empty"), "{route}");
        refused += 1;
        // Empty, leading and trailing space over h2, which keeps the spaces.
        for (bad, why) in [
            ("", "empty"),
            (" alice", "leading or trailing space"),
            ("alice ", "leading or trailing space"),
            (" ", "leading or trailing space"),
        ] {
            let (status, v) = h2_post(
                &app,
                route,
                &[("x-llmobserve-key", &acct.key), ("x-customer-id", bad)],
                body,
            )
            .await;
            assert_eq!(status, 400, "{route} {bad:?}");
            assert_eq!(
                v,
                shape(route, &format!("invalid X-Customer-Id: {why}")),
                "{route} {bad:?}"
            );
            refused += 1;
        }
    }
    assert_eq!(
        mock.request_count(),
        0,
        "a refused call reached the upstream"
    );

    // HTTP/1.1 has no way to carry edge spaces: they are optional whitespace around the
    // value, dropped by the parser, so the id that arrives is the trimmed one.
    let r = app
        .passthrough("/v1/chat/completions", &acct.key)
        .header("x-customer-id", "  alice ")
        .body(CHAT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();

    // 128 printable characters, spaces inside, every kind of punctuation: accepted as is,
    // over both protocols.
    let printable: Vec<u8> = (b'!'..=b'~').chain(b" \"\\,;= ".iter().copied()).collect();
    let long: String = printable
        .iter()
        .cycle()
        .take(128)
        .map(|&b| b as char)
        .collect();
    assert_eq!(long.len(), 128);
    assert!(!long.starts_with(' ') && !long.ends_with(' '));
    assert!(long.contains(' ') && long.contains('"') && long.contains('\\'));
    let r = app
        .passthrough("/v1/chat/completions", &acct.key)
        .header("x-customer-id", &long)
        .body(CHAT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    let (status, _) = h2_post(
        &app,
        "/anthropic/v1/messages",
        &[("x-llmobserve-key", &acct.key), ("x-customer-id", &long)],
        MESSAGES,
    )
    .await;
    assert_eq!(status, 200);
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 3);
    assert!(reqs.iter().all(|r| r.header("x-customer-id").is_none()));

    let ev = app.wait_events(&acct.user_id, refused + 3).await;
    assert_eq!(ev.len(), refused + 3);
    assert_eq!(ev[0].customer_id.as_deref(), Some(long.as_str()));
    assert_eq!(ev[0].outcome, Outcome::Ok);
    assert_eq!(ev[1].customer_id.as_deref(), Some(long.as_str()));
    assert_eq!(ev[2].customer_id.as_deref(), Some("alice"));
    for e in &ev[3..] {
        assert_eq!(e.status, 400);
        assert_eq!(e.outcome, Outcome::ProxyError);
        assert_eq!(e.customer_id, None, "a refused id is never stored");
    }
}

#[tokio::test]
async fn gzip_response_reaches_the_client_compressed_and_is_metered() {
    let mock = MockUpstream::tls()
        .route(
            "POST",
            "/v1/chat/completions",
            Reply::json(200, fixture("openai/chat_completion.json")).gzip(),
        )
        .route(
            "POST",
            "/v1/messages",
            Reply::sse(fixture("anthropic/messages_stream.sse"))
                .gzip()
                .chunked_every(50),
        )
        .start()
        .await;
    let app = TestApp::spawn(&mock.base_url()).await;
    let acct = app.account("gzip@example.com").await;
    let r = app
        .passthrough("/v1/chat/completions", &acct.key)
        .header("accept-encoding", "gzip")
        .body(CHAT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-encoding"], "gzip");
    let got = r.bytes().await.unwrap();
    assert_eq!(
        got,
        mock.served()[0],
        "client gets the compressed bytes as sent"
    );
    let r = app
        .passthrough("/anthropic/v1/messages", &acct.key)
        .header("accept-encoding", "gzip")
        .body(MESSAGES)
        .send()
        .await
        .unwrap();
    let _ = r.bytes().await.unwrap();
    let ev = app.wait_events(&acct.user_id, 2).await;
    assert_eq!(ev[1].usage.unwrap().input_tokens, 1536);
    assert_eq!(
        ev[1].cost.map(|c| c.to_string()).as_deref(),
        COST_OPENAI_CHAT
    );
    assert_eq!(ev[0].usage.unwrap().output_tokens, 156);
    assert_eq!(ev[0].usage_status, UsageStatus::Reported);
}

#[tokio::test]
async fn events_survive_a_restart_on_the_same_data_dir() {
    let mock = MockUpstream::tls()
        .json("/v1/chat/completions", "openai/chat_completion.json")
        .start()
        .await;
    let app = TestApp::spawn(&mock.base_url()).await;
    let acct = app.account("restart@example.com").await;
    for _ in 0..3 {
        let r = app
            .passthrough("/v1/chat/completions", &acct.key)
            .body(CHAT)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    }
    // No flush: shutdown itself must commit everything.
    let app = app.restart(&mock.base_url()).await;
    let ev = app.events(&acct.user_id).await;
    assert_eq!(ev.len(), 3);
    assert!(
        ev.iter()
            .all(|e| e.cost.map(|c| c.to_string()).as_deref() == COST_OPENAI_CHAT)
    );
    // The key still works after the restart (cache rebuilt from the store).
    let r = app
        .passthrough("/v1/chat/completions", &acct.key)
        .body(CHAT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn reading_back_a_stored_response_is_not_billed_again() {
    let mock = MockUpstream::tls()
        .route(
            "GET",
            "/v1/responses/*",
            Reply::json(200, fixture("openai/responses.json")),
        )
        .start()
        .await;
    let app = TestApp::spawn(&mock.base_url()).await;
    let acct = app.account("getresp@example.com").await;
    let r = app
        .http
        .get(app.url("/v1/responses/resp_123"))
        .header("x-llmobserve-key", &acct.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap(), fixture("openai/responses.json"));
    let e = app.only_event(&acct.user_id).await;
    assert_eq!(e.outcome, Outcome::Ok);
    assert_eq!(
        e.usage, None,
        "a GET carries the original call's usage: never bill it twice"
    );
    assert_eq!(e.cost, None);
}

/// Sends `n` chat calls at once and checks each answer.
async fn chat_calls(app: &TestApp, key: &str, n: usize) {
    let calls = (0..n).map(|_| async {
        let r = app
            .passthrough("/v1/chat/completions", key)
            .body(CHAT)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap()
    });
    for body in futures::future::join_all(calls).await {
        assert_eq!(body, fixture("openai/chat_completion.json"));
    }
}

#[tokio::test]
async fn a_pooled_upstream_connection_wakes_the_call_that_holds_it_now() {
    // The upstream answers after a pause and streams with pauses, so every call waits on
    // the upstream socket. Each call comes on a client connection of its own (a task of
    // its own on the proxy) and takes the one pooled connection: the socket's wake-ups
    // must reach that call, not one that held the connection before.
    let mock = MockUpstream::plain()
        .route(
            "POST",
            "/v1/chat/completions",
            Reply::json(200, fixture("openai/chat_completion.json"))
                .delay_headers(Duration::from_millis(30)),
        )
        .route(
            "POST",
            "/v1/messages",
            Reply::sse(fixture("anthropic/messages_stream.sse"))
                .chunked_by_event()
                .delay_per_chunk(Duration::from_millis(5)),
        )
        .start()
        .await;
    let app = TestApp::spawn_with(&mock.base_url(), |c| c.proxy_workers = 1).await;
    let acct = app.account("holder@example.com").await;
    for round in 0..6 {
        let (path, body, want) = if round % 2 == 0 {
            ("/v1/chat/completions", CHAT, "openai/chat_completion.json")
        } else {
            (
                "/anthropic/v1/messages",
                MESSAGES,
                "anthropic/messages_stream.sse",
            )
        };
        let started = std::time::Instant::now();
        let call = async {
            let r = reqwest::Client::new()
                .post(app.url(path))
                .header("x-llmobserve-key", &acct.key)
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.bytes().await.unwrap()
        };
        let got = tokio::time::timeout(Duration::from_secs(5), call)
            .await
            .unwrap_or_else(|_| panic!("round {round}: the call was never woken"));
        assert_eq!(got, fixture(want), "round {round}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "round {round}: {:?}",
            started.elapsed()
        );
    }
    assert_eq!(
        mock.connections(),
        1,
        "every call had the pooled connection"
    );
    assert_eq!(app.wait_events(&acct.user_id, 6).await.len(), 6);
}

#[tokio::test]
async fn upstream_connections_are_pooled_per_protocol_and_a_cut_stream_is_not_reused() {
    for tls in [false, true] {
        let mock = if tls {
            MockUpstream::tls()
        } else {
            MockUpstream::plain()
        };
        let mock = mock
            .json("/v1/chat/completions", "openai/chat_completion.json")
            .route(
                "POST",
                "/v1/messages",
                Reply::sse(fixture("anthropic/messages_stream.sse"))
                    .chunked_by_event()
                    .delay_per_chunk(Duration::from_millis(100)),
            )
            .start()
            .await;
        // One worker, so every call shares one pool.
        let app = TestApp::spawn_with(&mock.base_url(), |c| c.proxy_workers = 1).await;
        let acct = app.account("pool@example.com").await;

        // One after another: one connection, HTTP/1.1 or h2 as ALPN chose.
        for _ in 0..5 {
            chat_calls(&app, &acct.key, 1).await;
        }
        assert_eq!(
            mock.connections(),
            1,
            "tls {tls}: sequential calls reuse it"
        );
        // Eight at once, twice: h2 multiplexes them on that connection; HTTP/1.1 opens
        // more, and they stay pooled, so there are never more than calls at once.
        for _ in 0..2 {
            chat_calls(&app, &acct.key, 8).await;
        }
        let after_bursts = mock.connections();
        if tls {
            assert_eq!(after_bursts, 1, "h2 calls share one connection");
        } else {
            assert!(
                (2..=8).contains(&after_bursts),
                "{after_bursts} connections"
            );
        }
        let versions: Vec<_> = mock.requests().iter().map(|r| r.version).collect();
        let want = if tls {
            http::Version::HTTP_2
        } else {
            http::Version::HTTP_11
        };
        assert!(versions.iter().all(|v| *v == want), "{versions:?}");

        // A stream the client leaves halfway: its HTTP/1.1 connection is not lent again
        // (it still holds the rest of the stream); an h2 stream is reset instead.
        let mut resp = app
            .passthrough("/anthropic/v1/messages", &acct.key)
            .body(MESSAGES)
            .send()
            .await
            .unwrap();
        resp.chunk().await.unwrap().unwrap();
        drop(resp);
        mock.wait_for_cancelled(1, Duration::from_secs(5)).await;
        for _ in 0..3 {
            chat_calls(&app, &acct.key, 1).await;
        }
        let events = app.wait_events(&acct.user_id, 25).await;
        assert_eq!(events.len(), 25);
        let new = mock.connections() - after_bursts;
        if tls {
            assert_eq!(new, 0, "the h2 connection outlives a reset stream");
        } else {
            assert!(new <= 1, "{new} new connections after the left stream");
        }
        let ok = events
            .iter()
            .filter(|e| e.provider == Provider::OpenAi)
            .inspect(|e| {
                assert_eq!(e.outcome, Outcome::Ok);
                let u = e.usage.as_ref().unwrap();
                assert_eq!((u.input_tokens, u.output_tokens), (1536, 212));
                assert_eq!(e.cost.map(|c| c.to_string()).as_deref(), COST_OPENAI_CHAT);
            })
            .count();
        assert_eq!(ok, 24, "tls {tls}");
        assert!(
            events.iter().any(|e| e.outcome == Outcome::Cancelled),
            "tls {tls}: the left stream is recorded"
        );
        mock.wait_for_requests(25, Duration::from_secs(5)).await;
    }
}

/// An LLM stream holds its h2 stream for minutes, and h2 holds a call past a
/// connection's stream cap until one ends: past 100 calls at once on one connection the
/// pool opens another, so the 101st call reaches the upstream now.
#[tokio::test]
async fn h2_calls_past_a_connections_stream_cap_go_out_on_another_connection() {
    calls_past_the_stream_cap(100, 110).await;
}

/// The same when the upstream allows fewer streams a connection than the pool would
/// put on one: its `SETTINGS_MAX_CONCURRENT_STREAMS` is the cap.
#[tokio::test]
async fn an_upstreams_lower_stream_cap_is_kept() {
    calls_past_the_stream_cap(10, 15).await;
}

/// An h2 upstream (TLS) allowing `cap` streams a connection, answering chat calls and
/// holding Anthropic streams open after their first byte, as a long generation does;
/// and the app proxying to it from one worker (one pool).
async fn capped_upstream(cap: u32) -> (MockUpstreamHandle, TestApp) {
    let mock = MockUpstream::tls()
        .h2_max_concurrent_streams(cap)
        .json("/v1/chat/completions", "openai/chat_completion.json")
        .route(
            "POST",
            "/v1/messages",
            Reply::sse(fixture("anthropic/messages_stream.sse")).stall_after(1),
        )
        .start()
        .await;
    let app = TestApp::spawn_with(&mock.base_url(), |c| c.proxy_workers = 1).await;
    (mock, app)
}

/// `calls` Anthropic streams at once through the proxy, each answered `200` (the mock
/// holds them open after their first byte); `None` if not all are answered in 20 s.
async fn held_streams(app: &TestApp, key: &str, calls: usize) -> Option<Vec<reqwest::Response>> {
    let streams = (0..calls).map(|_| async {
        let r = app
            .passthrough("/anthropic/v1/messages", key)
            .body(MESSAGES)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r
    });
    tokio::time::timeout(Duration::from_secs(20), futures::future::join_all(streams))
        .await
        .ok()
}

/// `calls` streams at once to an upstream allowing `cap` a connection (more than `cap`,
/// at most twice it) all reach it, over two connections.
async fn calls_past_the_stream_cap(cap: u32, calls: usize) {
    let (mock, app) = capped_upstream(cap).await;
    let acct = app.account("h2cap@example.com").await;
    // The pool's h2 connection exists before the burst.
    chat_calls(&app, &acct.key, 1).await;
    assert_eq!(mock.connections(), 1);

    let open = held_streams(&app, &acct.key, calls)
        .await
        .unwrap_or_else(|| {
            panic!(
                "only {} of {calls} streams reached the upstream",
                mock.request_count() - 1
            )
        });
    assert_eq!(mock.request_count(), 1 + calls);
    // The first connection carries `cap`; one more opened for the rest, which waited
    // for it rather than each open their own.
    assert_eq!(mock.connections(), 2);
    assert!(
        mock.requests()
            .iter()
            .all(|r| r.version == http::Version::HTTP_2)
    );

    drop(open);
    mock.wait_for_cancelled(calls, Duration::from_secs(10))
        .await;
    let events = app.wait_events(&acct.user_id, 1 + calls).await;
    let cancelled = events
        .iter()
        .filter(|e| e.outcome == Outcome::Cancelled)
        .count();
    assert_eq!(cancelled, calls);
}

/// A cold start: a burst of calls to an upstream not yet connected, past its stream
/// cap. The pool waits for the upstream's SETTINGS before a new connection takes calls,
/// so each connection carries the cap and no more. Sent before the cap was known, the
/// calls past it were refused (a 502 each) or held by h2 until a stream ended (never,
/// for these); with refused calls sent again, most runs still left 1 or 2 of the 60
/// hanging (7 of 9 tried).
#[tokio::test]
async fn a_cold_burst_past_an_upstreams_stream_cap_fills_connections_to_the_cap() {
    const CAP: u32 = 4;
    const CALLS: usize = 60;
    let (mock, app) = capped_upstream(CAP).await;
    let acct = app.account("h2cold@example.com").await;

    let open = held_streams(&app, &acct.key, CALLS)
        .await
        .expect("every call answered");
    // Each reached the upstream once, over as many connections as the cap requires.
    assert_eq!(mock.request_count(), CALLS);
    assert_eq!(mock.connections(), CALLS / CAP as usize);

    drop(open);
    mock.wait_for_cancelled(CALLS, Duration::from_secs(10))
        .await;
    let events = app.wait_events(&acct.user_id, CALLS).await;
    assert!(events.iter().all(|e| e.outcome == Outcome::Cancelled));
}

/// A request body larger than the upstream's h2 send windows (1 MiB a stream in hyper's
/// server) is queued whole and goes out as the upstream grants capacity, byte for byte.
#[tokio::test]
async fn a_request_larger_than_the_h2_send_window_arrives_whole() {
    let mock = MockUpstream::tls()
        .json("/v1/chat/completions", "openai/chat_completion.json")
        .start()
        .await;
    let app = TestApp::spawn(&mock.base_url()).await;
    let acct = app.account("bigbody@example.com").await;
    let filler = "x".repeat(3 * 1024 * 1024);
    let body =
        format!(r#"{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"{filler}"}}]}}"#);
    let r = app
        .passthrough("/v1/chat/completions", &acct.key)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.bytes().await.unwrap(),
        fixture("openai/chat_completion.json")
    );
    let seen = mock.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].version, http::Version::HTTP_2);
    assert_eq!(seen[0].body.len(), body.len());
    assert!(
        seen[0].body == body.as_bytes(),
        "the body arrived unchanged"
    );
    assert_eq!(
        seen[0].headers[http::header::CONTENT_LENGTH],
        body.len().to_string().as_str()
    );
    let events = app.wait_events(&acct.user_id, 1).await;
    assert_eq!(events[0].outcome, Outcome::Ok);
}
