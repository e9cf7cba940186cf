//! Microbenchmarks of the per-byte and per-call work on the proxy's hot path: the SSE
//! decoder, every usage parser, the request-body peek and the pricing lookup.
//!
//! `cargo bench --bench parsers` (add `-- --quick` for a fast pass). Throughput is in
//! bytes/s for the parsers and events/s (shown as ns per event) for the SSE decoder.
//! Inputs are the wire fixtures under `tests/fixtures`, fed in 1,400-byte chunks (a
//! typical TLS record's worth of a TCP read).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use llmobserve::pricing::{PriceContext, PriceTable};
use llmobserve::providers::sse::SseDecoder;
use llmobserve::providers::{Endpoint, ParsedUsage, Provider, Usage, parser_for};
use llmobserve::proxy::request::RequestInfo;

const CHUNK: usize = 1400;

macro_rules! fixture {
    ($p:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/", $p)).as_slice()
    };
}

/// A long stream: the fixture's content events repeated to about `target` bytes, then
/// its tail (usage and `[DONE]`) once.
fn long_openai_stream(target: usize) -> Vec<u8> {
    let f = fixture!("openai/chat_stream_include_usage.sse");
    let text = std::str::from_utf8(f).expect("utf-8 fixture");
    let events: Vec<&str> = text.split_inclusive("\n\n").collect();
    let (body, tail) = events.split_at(events.len().saturating_sub(2));
    let mut out = Vec::with_capacity(target + 1024);
    out.extend_from_slice(events[0].as_bytes());
    while out.len() < target {
        for e in &body[1..] {
            out.extend_from_slice(e.as_bytes());
        }
    }
    for e in tail {
        out.extend_from_slice(e.as_bytes());
    }
    out
}

fn sse_decoder(c: &mut Criterion) {
    let input = long_openai_stream(64 * 1024);
    let mut events = 0u64;
    SseDecoder::new(1 << 20).feed(&input, &mut |_| events += 1);

    let mut g = c.benchmark_group("sse_decoder");
    g.throughput(Throughput::Bytes(input.len() as u64));
    g.bench_function("openai_64KiB_bytes", |b| {
        b.iter(|| {
            let mut d = SseDecoder::new(1 << 20);
            let mut n = 0u32;
            for chunk in input.chunks(CHUNK) {
                d.feed(black_box(chunk), &mut |e| n += e.data.len() as u32);
            }
            n
        })
    });
    g.throughput(Throughput::Elements(events));
    g.bench_function("openai_64KiB_events", |b| {
        b.iter(|| {
            let mut d = SseDecoder::new(1 << 20);
            let mut n = 0u32;
            for chunk in input.chunks(CHUNK) {
                d.feed(black_box(chunk), &mut |e| n += e.data.len() as u32);
            }
            n
        })
    });
    g.finish();
}

fn usage_parsers(c: &mut Criterion) {
    let long = long_openai_stream(64 * 1024);
    let cases: [(&str, Provider, Endpoint, bool, &[u8]); 10] = [
        (
            "openai_json",
            Provider::OpenAi,
            Endpoint::ChatCompletions,
            false,
            fixture!("openai/chat_completion.json"),
        ),
        (
            "openai_stream",
            Provider::OpenAi,
            Endpoint::ChatCompletions,
            true,
            fixture!("openai/chat_stream_include_usage.sse"),
        ),
        (
            "openai_stream_64KiB",
            Provider::OpenAi,
            Endpoint::ChatCompletions,
            true,
            &long,
        ),
        (
            "openai_responses_json",
            Provider::OpenAi,
            Endpoint::Responses,
            false,
            fixture!("openai/responses.json"),
        ),
        (
            "openai_responses_stream",
            Provider::OpenAi,
            Endpoint::Responses,
            true,
            fixture!("openai/responses_stream.sse"),
        ),
        (
            "anthropic_json",
            Provider::Anthropic,
            Endpoint::Messages,
            false,
            fixture!("anthropic/messages.json"),
        ),
        (
            "anthropic_stream",
            Provider::Anthropic,
            Endpoint::Messages,
            true,
            fixture!("anthropic/messages_stream.sse"),
        ),
        (
            "gemini_json",
            Provider::Gemini,
            Endpoint::GenerateContent,
            false,
            fixture!("gemini/generate_content.json"),
        ),
        (
            "gemini_stream",
            Provider::Gemini,
            Endpoint::StreamGenerateContent,
            true,
            fixture!("gemini/stream_generate_content.sse"),
        ),
        (
            "openai_compat_mistral_stream",
            Provider::Mistral,
            Endpoint::ChatCompletions,
            true,
            fixture!("mistral/chat_stream.sse"),
        ),
    ];
    let mut g = c.benchmark_group("usage_parser");
    for (name, provider, endpoint, streamed, input) in cases {
        // Each case must really find usage, or the benchmark measures a no-op.
        let mut p = parser_for(provider, endpoint, streamed);
        for chunk in input.chunks(CHUNK) {
            p.feed(chunk);
        }
        assert!(p.finish().usage.is_some(), "{name}: no usage parsed");

        g.throughput(Throughput::Bytes(input.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut p = parser_for(provider, endpoint, streamed);
                for chunk in input.chunks(CHUNK) {
                    p.feed(black_box(chunk));
                }
                p.finish()
            })
        });
    }
    g.finish();
}

fn request_info(c: &mut Criterion) {
    let small = br#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Summarize the incident report in three sentences."}],"user":"acme"}"#;
    let mut big =
        Vec::from(&br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":""#[..]);
    big.extend(std::iter::repeat_n(b'x', 256 * 1024));
    big.extend_from_slice(br#""}],"stream":true}"#);
    let mut g = c.benchmark_group("request_info");
    for (name, body) in [("small", &small[..]), ("256KiB", &big[..])] {
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(name, |b| b.iter(|| RequestInfo::parse(black_box(body))));
    }
    g.finish();
}

fn pricing(c: &mut Criterion) {
    let table = PriceTable::embedded().expect("embedded prices");
    let parsed = ParsedUsage {
        usage: Some(Usage {
            input_tokens: 1536,
            cached_input_tokens: 1280,
            output_tokens: 212,
            ..Usage::default()
        }),
        complete: true,
        ..ParsedUsage::default()
    };
    let ctx = PriceContext {
        at_unix_ms: 1_790_000_000_000,
        service_tier: Some("default"),
        batch: false,
    };
    let mut g = c.benchmark_group("pricing");
    g.throughput(Throughput::Elements(1));
    for (name, provider, model) in [
        ("resolve_exact", Provider::OpenAi, "gpt-4o-mini"),
        ("resolve_dated", Provider::OpenAi, "gpt-4o-2024-08-06"),
        (
            "resolve_anthropic_dated",
            Provider::Anthropic,
            "claude-sonnet-4-5-20250929",
        ),
        (
            "resolve_unknown",
            Provider::OpenAi,
            "no-such-model-2025-01-01",
        ),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                table
                    .resolve(black_box(provider), black_box(model))
                    .is_some()
            })
        });
    }
    assert!(
        table
            .cost(Provider::OpenAi, "gpt-4o-2024-08-06", &parsed, &ctx)
            .is_some()
    );
    g.bench_function("cost_dated_model", |b| {
        b.iter(|| {
            table.cost(
                Provider::OpenAi,
                black_box("gpt-4o-2024-08-06"),
                &parsed,
                &ctx,
            )
        })
    });
    g.finish();
}

/// Header hygiene and routing as a request from the OpenAI Python SDK meets them.
fn hot_path(c: &mut Criterion) {
    use http::HeaderMap;
    use llmobserve::proxy::{headers, route};
    let mut sdk = HeaderMap::new();
    for (k, v) in [
        ("host", "127.0.0.1:8080"),
        ("accept-encoding", "gzip, deflate"),
        ("connection", "keep-alive"),
        ("accept", "application/json"),
        ("content-type", "application/json"),
        ("user-agent", "OpenAI/Python 2.8.1"),
        ("x-stainless-lang", "python"),
        ("x-stainless-package-version", "2.8.1"),
        ("x-stainless-os", "Linux"),
        ("x-stainless-arch", "x64"),
        ("x-stainless-runtime", "CPython"),
        ("x-stainless-runtime-version", "3.13.5"),
        ("authorization", "Bearer sk-proj-abcdefghijklmnopqrstuvwxyz"),
        (
            "x-llmobserve-key",
            "llmo_sk_0123456789abcdefghijABCDEFGHIJ0123456789",
        ),
        ("x-stainless-async", "false"),
        ("x-stainless-retry-count", "0"),
        ("x-stainless-read-timeout", "600"),
        ("content-length", "182"),
    ] {
        sdk.insert(
            http::HeaderName::from_static(k),
            http::HeaderValue::from_static(v),
        );
    }
    let mut g = c.benchmark_group("hot_path");
    g.throughput(Throughput::Elements(1));
    g.bench_function("route_and_dot_check", |b| {
        b.iter(|| {
            let (p, rest) = route::split(black_box("/v1/chat/completions")).expect("route");
            (p, route::has_dot_segment(rest))
        })
    });
    g.bench_function("clean_request_headers", |b| {
        b.iter_batched(
            || sdk.clone(),
            |mut h| {
                headers::clean_request_headers(&mut h, 48);
                h
            },
            criterion::BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(
    benches,
    sse_decoder,
    usage_parsers,
    request_info,
    pricing,
    hot_path
);
criterion_main!(benches);
