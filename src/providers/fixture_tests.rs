//! Every token fixture in `tests/fixtures` must parse to exactly what `expected.json` says,
//! through [`parser_for`], whole and in any chunking.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde::Deserialize;

use super::*;

#[derive(Debug, Deserialize)]
struct Expected {
    token_fixtures: BTreeMap<String, Fixture>,
}

#[derive(Debug, Clone, Deserialize)]
struct Fixture {
    provider: String,
    api: String,
    #[serde(default)]
    path: Option<String>,
    stream: bool,
    model: String,
    #[serde(default)]
    service_tier: Option<String>,
    #[serde(default)]
    tokens: Option<Tokens>,
    #[serde(default)]
    extra: Option<Extra>,
    #[serde(default)]
    stream_complete: Option<bool>,
    #[serde(default)]
    provider_reported_cost_usd: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
struct Tokens {
    input_total: u64,
    input_fresh: u64,
    cached_input: u64,
    cache_write: u64,
    cache_write_5m: u64,
    cache_write_1h: u64,
    output: u64,
    reasoning: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct Extra {
    #[serde(default)]
    web_search_requests: u64,
    #[serde(default)]
    grounded_prompts: u64,
}

fn root() -> String {
    format!("{}/tests/fixtures", env!("CARGO_MANIFEST_DIR"))
}

fn fixture_bytes(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/{name}", root())).unwrap()
}

/// The token fixtures this parser set handles (batch output files are not a response body).
fn fixtures() -> Vec<(String, Fixture)> {
    let text = std::fs::read_to_string(format!("{}/expected.json", root())).unwrap();
    let expected: Expected = serde_json::from_str(&text).unwrap();
    expected
        .token_fixtures
        .into_iter()
        .filter(|(name, _)| !name.ends_with(".jsonl"))
        .collect()
}

fn provider(f: &Fixture) -> Provider {
    match f.provider.as_str() {
        "azure_openai" => Provider::Azure,
        other => Provider::from_name(other).unwrap(),
    }
}

fn endpoint(f: &Fixture) -> Endpoint {
    // "chat.completions (OpenAI-compatible)" -> "chat.completions"
    let api = f.api.split_whitespace().next().unwrap();
    let from_api: Endpoint = serde_json::from_value(serde_json::json!(api)).unwrap();
    if let Some(path) = &f.path {
        let path = path.split([' ', '?']).next().unwrap();
        assert_eq!(Endpoint::from_path(path), from_api, "path {path}");
    }
    from_api
}

fn parse_chunked(f: &Fixture, body: &[u8], sizes: &[usize]) -> ParsedUsage {
    let mut parser = parser_for(provider(f), endpoint(f), f.stream);
    let mut rest = body;
    for &size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (chunk, tail) = rest.split_at(size.clamp(1, rest.len()));
        parser.feed(chunk);
        rest = tail;
    }
    parser.finish()
}

fn check(name: &str, f: &Fixture, got: &ParsedUsage) {
    assert_eq!(
        got.model.as_deref(),
        Some(f.model.as_str()),
        "{name}: model"
    );
    if let Some(tier) = &f.service_tier {
        assert_eq!(
            got.service_tier.as_deref(),
            Some(tier.as_str()),
            "{name}: tier"
        );
    }
    let want_complete = f.stream_complete.unwrap_or(true);
    assert_eq!(got.complete, want_complete, "{name}: complete");
    let want_cost = f
        .provider_reported_cost_usd
        .map(|c| wire::decimal_from_f64(c).unwrap());
    assert_eq!(got.provider_cost_usd, want_cost, "{name}: cost");
    let Some(t) = &f.tokens else {
        assert_eq!(got.usage, None, "{name}: usage must be missing");
        return;
    };
    let u = got.usage.unwrap_or_else(|| panic!("{name}: no usage"));
    let extra = f.extra.clone().unwrap_or_default();
    let want = Usage {
        input_tokens: t.input_total,
        cached_input_tokens: t.cached_input,
        cache_write_5m_tokens: t.cache_write_5m,
        cache_write_1h_tokens: t.cache_write_1h,
        output_tokens: t.output,
        reasoning_tokens: t.reasoning,
        web_search_requests: extra.web_search_requests,
        grounded_prompts: extra.grounded_prompts,
    };
    assert_eq!(u, want, "{name}: usage");
    assert_eq!(u.input_fresh_tokens(), t.input_fresh, "{name}: fresh");
    assert_eq!(u.cache_write_tokens(), t.cache_write, "{name}: cache write");
}

#[test]
fn every_token_fixture_parses_exactly() {
    let all = fixtures();
    assert!(all.len() >= 27, "{} fixtures", all.len());
    for (name, f) in &all {
        let body = fixture_bytes(name);
        check(name, f, &parse_chunked(f, &body, &[body.len()]));
        check(name, f, &parse_chunked(f, &body, &[1]));
    }
}

#[test]
fn provider_costs_are_exact_strings() {
    let all: BTreeMap<_, _> = fixtures().into_iter().collect();
    for (name, want) in [
        ("openrouter/chat_completion.json", "0.0058704"),
        ("xai/chat_completion.json", "0.024825"),
    ] {
        let f = &all[name];
        let got = parse_chunked(f, &fixture_bytes(name), &[usize::MAX]);
        assert_eq!(got.provider_cost_usd.as_deref(), Some(want), "{name}");
    }
}

/// Gemini's `streamGenerateContent` without `alt=sse`: the same chunks as one JSON array.
fn gemini_array_stream() -> Vec<u8> {
    let sse = String::from_utf8(fixture_bytes("gemini/stream_generate_content.sse")).unwrap();
    let elements: Vec<&str> = sse
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    format!("[{}]", elements.join(",\r\n")).into_bytes()
}

#[test]
fn gemini_json_array_stream_takes_last_snapshot() {
    let all: BTreeMap<_, _> = fixtures().into_iter().collect();
    let mut f = all["gemini/stream_generate_content.sse"].clone();
    f.stream = false;
    let body = gemini_array_stream();
    for size in [1, 7, body.len()] {
        check("gemini array", &f, &parse_chunked(&f, &body, &[size]));
    }
    // Cut inside the chunk with finishReason: lower bounds, incomplete.
    let cut = body.len() - 300;
    let got = parse_chunked(&f, &body[..cut], &[64]);
    assert!(!got.complete);
    assert_eq!(got.usage.map(|u| u.input_tokens), Some(812));
}

#[test]
fn truncated_streams_are_incomplete() {
    let all: BTreeMap<_, _> = fixtures().into_iter().collect();
    for name in [
        "openai/chat_stream_include_usage.sse",
        "openai/chat_stream_no_usage.sse",
        "openai/responses_stream.sse",
        "anthropic/messages_stream.sse",
        "gemini/stream_generate_content.sse",
    ] {
        let f = &all[name];
        let text = String::from_utf8(fixture_bytes(name)).unwrap();
        // Drop the last two events (usage chunk or terminal event, and [DONE]).
        let events: Vec<&str> = text.split_inclusive("\n\n").collect();
        let cut: String = events[..events.len() - 2].concat();
        let got = parse_chunked(f, cut.as_bytes(), &[cut.len()]);
        assert!(!got.complete, "{name}");
    }
}

#[test]
fn huge_embeddings_body_keeps_exact_usage_in_bounded_memory() {
    const MIB: usize = 1024 * 1024;
    let mut body = String::with_capacity(21 * MIB);
    body.push_str(r#"{"object":"list","data":["#);
    let mut i = 0;
    while body.len() < 20 * MIB {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&format!(
            r#"{{"object":"embedding","index":{i},"embedding":[0.0213,-0.4471,0.312,0.0785,-0.6532,0.1094,0.4418,-0.2087]}}"#
        ));
        i += 1;
    }
    body.push_str(
        r#"],"model":"text-embedding-3-large","usage":{"prompt_tokens":123456,"total_tokens":123456}}"#,
    );
    let mut parser = openai::OpenAiJsonParser::new(json_tail::DEFAULT_MAX_JSON_BYTES);
    let mut peak = 0;
    for chunk in body.as_bytes().chunks(16 * 1024 + 3) {
        parser.feed(chunk);
        peak = peak.max(parser.retained_bytes());
    }
    assert!(peak <= json_tail::DEFAULT_MAX_JSON_BYTES, "peak {peak}");
    assert!(
        parser.retained_bytes() <= 256 * 1024,
        "{}",
        parser.retained_bytes()
    );
    let got = parser.finish();
    assert!(got.complete);
    assert_eq!(got.model.as_deref(), Some("text-embedding-3-large"));
    let u = got.usage.unwrap();
    assert_eq!((u.input_tokens, u.output_tokens), (123_456, 0));
}

#[test]
fn other_endpoints_read_recognizable_usage() {
    let mut p = parser_for(Provider::OpenAi, Endpoint::Other, false);
    p.feed(&fixture_bytes("openai/transcription_tokens.json"));
    let u = p.finish().usage.unwrap();
    assert_eq!((u.input_tokens, u.output_tokens), (214, 41));
    let mut p = parser_for(Provider::OpenAi, Endpoint::Other, false);
    p.feed(&fixture_bytes("openai/transcription_duration.json"));
    assert_eq!(p.finish().usage, None);
    let mut p = parser_for(Provider::OpenAi, Endpoint::Other, false);
    p.feed(&fixture_bytes("openai/image_generation.json"));
    let u = p.finish().usage.unwrap();
    assert_eq!((u.input_tokens, u.output_tokens), (42, 1056));
    for (provider, name) in [
        (Provider::OpenAi, "openai/error_401.json"),
        (Provider::Anthropic, "anthropic/error_529_overloaded.json"),
        (Provider::Gemini, "gemini/error_400_api_key.json"),
    ] {
        let mut p = parser_for(provider, Endpoint::Other, false);
        p.feed(&fixture_bytes(name));
        assert_eq!(p.finish().usage, None, "{name}");
    }
}

fn any_parser() -> impl Strategy<Value = (Provider, Endpoint, bool)> {
    (
        prop::sample::select(Provider::ALL.to_vec()),
        prop::sample::select(Endpoint::ALL.to_vec()),
        any::<bool>(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn fixtures_parse_the_same_in_any_chunking(
        sizes in proptest::collection::vec(1usize..200, 1..16),
    ) {
        for (name, f) in fixtures() {
            let body = fixture_bytes(&name);
            check(&name, &f, &parse_chunked(&f, &body, &sizes));
        }
        let all: BTreeMap<_, _> = fixtures().into_iter().collect();
        let mut f = all["gemini/stream_generate_content.sse"].clone();
        f.stream = false;
        check("gemini array", &f, &parse_chunked(&f, &gemini_array_stream(), &sizes));
    }

    #[test]
    fn no_parser_panics_on_any_bytes(
        (provider, endpoint, streamed) in any_parser(),
        body in proptest::collection::vec(any::<u8>(), 0..512),
        size in 1usize..64,
    ) {
        let mut p = parser_for_with(provider, endpoint, streamed, ParserLimits {
            max_json_body_bytes: 128,
            max_sse_event_bytes: 96,
        });
        for chunk in body.chunks(size) {
            p.feed(chunk);
        }
        let _ = p.finish();
    }

    #[test]
    fn no_parser_panics_on_mangled_fixtures(
        (provider, endpoint, streamed) in any_parser(),
        pick in any::<prop::sample::Index>(),
        cut in any::<prop::sample::Index>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        size in 1usize..64,
    ) {
        let all = fixtures();
        let (name, _) = &all[pick.index(all.len())];
        let mut body = fixture_bytes(name);
        for (at, byte) in flips {
            let i = at.index(body.len());
            body[i] = byte;
        }
        body.truncate(cut.index(body.len() + 1));
        let mut p = parser_for_with(provider, endpoint, streamed, ParserLimits {
            max_json_body_bytes: 512,
            max_sse_event_bytes: 256,
        });
        for chunk in body.chunks(size) {
            p.feed(chunk);
        }
        let _ = p.finish();
    }
}
