//! The properties the fuzz targets check, one `check_*` function per target.
//!
//! Shared by the fuzz crate (`fuzz/src/lib.rs`) and the main crate's
//! `tests/fuzz_regressions.rs`, which both pull this file in with `#[path]`, so a crash
//! input saved under `fuzz/regressions/<target>/` is replayed by `cargo test` through
//! exactly the checks that found it. It only uses what both crates have: `llmobserve`,
//! `flate2`, `http` and `serde_json`. Every check takes the raw fuzzer bytes and panics when
//! a property fails; inputs it cannot use are simply accepted.
//!
//! Input layout, decoded by [`Input::parse`]: `[a] [b] [n] [n x u16 cut (LE)] payload`.
//! `a` and `b` are per-target knobs, the cuts (n taken mod 16, each mod payload length + 1)
//! are where the payload is split into chunks. A seed is a fixture with a header in front.

use std::borrow::Cow;

use flate2::Compression;
use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};
use llmobserve::auth::api_key::{self, KeyFormatError};
use llmobserve::auth::keys::KeyCache;
use llmobserve::providers::anthropic::AnthropicBodyWire;
use llmobserve::providers::decode::{ContentDecoder, DecodeError, Encoding};
use llmobserve::providers::gemini::GeminiResponseWire;
use llmobserve::providers::json_reader::Reader;
use llmobserve::providers::json_tail::ResponseBody;
use llmobserve::providers::openai::OpenAiBodyWire;
use llmobserve::providers::openai::UsageChunkFilter;
use llmobserve::providers::openai::responses::EventWire;
use llmobserve::providers::sse::{SseDecoder, SseEvent};
use llmobserve::providers::{
    Endpoint, ParsedUsage, ParserLimits, Provider, parser_for, parser_for_with,
};
use llmobserve::proxy::auth::{Mode, Slot, authenticate};
use llmobserve::proxy::request::{RequestInfo, check_customer_id, inject_include_usage};
use llmobserve::proxy::route;
use llmobserve::store::model::ApiKeyRecord;
use serde_json::Value;

/// A check: panics when the input breaks a property.
pub type Check = fn(&[u8]);

/// Every target, as named in `fuzz/Cargo.toml`, with its check.
pub const TARGETS: [(&str, Check); 8] = [
    ("sse_decoder", check_sse_decoder),
    ("usage_parsers", check_usage_parsers),
    ("chunk_filter", check_chunk_filter),
    ("content_decoder", check_content_decoder),
    ("api_key", check_api_key),
    ("request", check_request),
    ("route", check_route),
    ("json_reader", check_json_reader),
];

/// Fuzzer bytes split into two knobs, chunk boundaries and the payload.
pub struct Input<'a> {
    pub a: u8,
    pub b: u8,
    raw_cuts: Vec<usize>,
    pub payload: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn parse(data: &'a [u8]) -> Input<'a> {
        let mut rest = data;
        let mut byte = || match rest.split_first() {
            Some((&b, tail)) => {
                rest = tail;
                b
            }
            None => 0,
        };
        let (a, b, n) = (byte(), byte(), byte() % 16);
        let mut raw_cuts = Vec::with_capacity(usize::from(n));
        for _ in 0..n {
            let [lo, hi, tail @ ..] = rest else { break };
            raw_cuts.push(usize::from(u16::from_le_bytes([*lo, *hi])));
            rest = tail;
        }
        Input {
            a,
            b,
            raw_cuts,
            payload: rest,
        }
    }

    /// The payload in chunks.
    pub fn chunks(&self) -> Vec<&'a [u8]> {
        split_at_cuts(self.payload, &self.raw_cuts)
    }

    /// Any other byte string, split by the same fuzzer-chosen cuts (mod its length + 1).
    pub fn chunks_of<'b>(&self, bytes: &'b [u8]) -> Vec<&'b [u8]> {
        split_at_cuts(bytes, &self.raw_cuts)
    }
}

fn split_at_cuts<'b>(bytes: &'b [u8], raw_cuts: &[usize]) -> Vec<&'b [u8]> {
    let mut cuts: Vec<usize> = raw_cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    let mut chunks = Vec::with_capacity(cuts.len() + 1);
    let mut prev = 0;
    for cut in cuts.into_iter().chain([bytes.len()]) {
        chunks.push(bytes.get(prev..cut).unwrap_or_default());
        prev = cut;
    }
    chunks
}

// ---------------------------------------------------------------------------------------
// sse_decoder

/// `(event, data)` pairs and the skipped-event count.
type Decoded = (Vec<(Vec<u8>, Vec<u8>)>, u64);

fn sse_decode(max: usize, chunks: &[&[u8]]) -> Decoded {
    let mut dec = SseDecoder::new(max);
    let mut events = Vec::new();
    let mut push = |e: SseEvent<'_>| events.push((e.event.to_vec(), e.data.to_vec()));
    for chunk in chunks {
        dec.feed(chunk, &mut push);
    }
    dec.finish(&mut push);
    (events, dec.skipped_events())
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The body's lines without their ends (LF, CRLF or CR), and whether the last one had an end.
fn lines(body: &[u8]) -> (Vec<&[u8]>, bool) {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while let Some(&b) = body.get(i) {
        if b == b'\n' || b == b'\r' {
            out.push(body.get(start..i).unwrap_or_default());
            i += if b == b'\r' && body.get(i + 1) == Some(&b'\n') {
                2
            } else {
                1
            };
            start = i;
        } else {
            i += 1;
        }
    }
    let terminated = start == body.len();
    if !terminated {
        out.push(body.get(start..).unwrap_or_default());
    }
    (out, terminated)
}

/// The WHATWG event-stream algorithm written the obvious way, with the decoder's documented
/// deviation (an unterminated last event is dispatched at the end), for unlimited size.
fn sse_reference(input: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let body = input.strip_prefix(BOM).unwrap_or(input);
    let mut events = Vec::new();
    let mut event: Vec<u8> = Vec::new();
    let mut data: Option<Vec<u8>> = None;
    let mut dispatch = |event: &mut Vec<u8>, data: &mut Option<Vec<u8>>| {
        if let Some(d) = data.take() {
            events.push((event.clone(), d));
        }
        event.clear();
    };
    for line in lines(body).0 {
        if line.is_empty() {
            dispatch(&mut event, &mut data);
            continue;
        }
        if line.first() == Some(&b':') {
            continue;
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = line.get(colon + 1..).unwrap_or_default();
                let value = value.strip_prefix(b" ").unwrap_or(value);
                (line.get(..colon).unwrap_or_default(), value)
            }
            None => (line, &[][..]),
        };
        match name {
            b"data" => match &mut data {
                Some(d) => {
                    d.push(b'\n');
                    d.extend_from_slice(value);
                }
                None => data = Some(value.to_vec()),
            },
            b"event" => event = value.to_vec(),
            _ => {}
        }
    }
    dispatch(&mut event, &mut data);
    events
}

/// The same stream with every line end rewritten; `pick(i)` chooses line `i`'s end
/// (0 LF, 1 CRLF, 2 CR). Where a CR would be followed by an empty LF-ended line the two
/// would read as one CRLF, so that line gets a CRLF instead: the rewrite keeps the meaning.
fn with_line_ends(input: &[u8], pick: impl Fn(usize) -> u8) -> Vec<u8> {
    let (prefix, body) = match input.strip_prefix(BOM) {
        Some(rest) => (BOM, rest),
        None => (&[][..], input),
    };
    let (lines, terminated) = lines(body);
    let mut out = prefix.to_vec();
    let mut prev_cr = false;
    let count = lines.len();
    for (i, line) in lines.into_iter().enumerate() {
        out.extend_from_slice(line);
        if i + 1 == count && !terminated {
            break;
        }
        let mut end = pick(i) % 3;
        if prev_cr && line.is_empty() && end == 0 {
            end = 1;
        }
        prev_cr = end == 2;
        out.extend_from_slice(match end {
            0 => b"\n",
            1 => b"\r\n",
            _ => b"\r",
        });
    }
    out
}

/// Same events (and skips) for the whole stream, any chunking and any line ends; with no
/// size limit in reach, the same events as the reference algorithm.
pub fn check_sse_decoder(data: &[u8]) {
    let input = Input::parse(data);
    let payload = input.payload;
    let max = match input.a % 4 {
        0 | 1 => 1 << 20,
        2 => usize::from(input.b % 64),
        _ => usize::from(input.b) * 8,
    };
    let whole = sse_decode(max, &[payload]);
    assert_eq!(
        whole,
        sse_decode(max, &input.chunks()),
        "chunking changed the events"
    );
    if max > payload.len() {
        assert_eq!(whole.1, 0, "nothing can be skipped under the limit");
        assert_eq!(
            whole.0,
            sse_reference(payload),
            "differs from the reference"
        );
    }
    let seed = usize::from(input.b);
    let rewrites: [&dyn Fn(usize) -> u8; 4] = [&|_| 0, &|_| 1, &|_| 2, &|i| {
        u8::try_from((i.wrapping_mul(7) + seed) % 3).unwrap_or(0)
    }];
    for pick in rewrites {
        let rewritten = with_line_ends(payload, pick);
        assert_eq!(
            whole,
            sse_decode(max, &input.chunks_of(&rewritten)),
            "line ends changed the events: {:?}",
            String::from_utf8_lossy(&rewritten)
        );
    }
}

// ---------------------------------------------------------------------------------------
// usage_parsers

/// Number of provider x endpoint x streamed combinations.
pub const PARSER_COMBOS: usize = Provider::ALL.len() * Endpoint::ALL.len() * 2;

fn combo(i: usize) -> (Provider, Endpoint, bool) {
    let p = Provider::ALL
        .get(i % Provider::ALL.len())
        .copied()
        .unwrap_or(Provider::OpenAi);
    let e = Endpoint::ALL
        .get(i / Provider::ALL.len() % Endpoint::ALL.len())
        .copied()
        .unwrap_or(Endpoint::Other);
    (
        p,
        e,
        i / (Provider::ALL.len() * Endpoint::ALL.len()) % 2 == 1,
    )
}

fn parse_usage(
    (provider, endpoint, streamed): (Provider, Endpoint, bool),
    limits: Option<ParserLimits>,
    chunks: &[&[u8]],
) -> ParsedUsage {
    let mut parser = match limits {
        Some(l) => parser_for_with(provider, endpoint, streamed, l),
        None => parser_for(provider, endpoint, streamed),
    };
    for chunk in chunks {
        parser.feed(chunk);
    }
    parser.finish()
}

/// Chunked and whole bodies give the same usage, for one combination (`a`, `b` pick it)
/// and the default limits or small ones (`b`'s top bit).
pub fn check_usage_parsers(data: &[u8]) {
    let input = Input::parse(data);
    let c = combo(usize::from(input.a) | usize::from(input.b & 0x7f) << 8);
    check_usage_combo(&input, c);
}

/// [`check_usage_parsers`] for every combination (the regression replay uses this).
pub fn check_usage_parsers_all_combos(data: &[u8]) {
    let input = Input::parse(data);
    for i in 0..PARSER_COMBOS {
        check_usage_combo(&input, combo(i));
    }
}

fn check_usage_combo(input: &Input<'_>, c: (Provider, Endpoint, bool)) {
    let limits = (input.b & 0x80 != 0).then(|| ParserLimits {
        max_json_body_bytes: usize::from(input.a) * 4,
        max_sse_event_bytes: usize::from(input.b & 0x7f) * 4,
    });
    let whole = parse_usage(c, limits, &[input.payload]);
    let chunked = parse_usage(c, limits, &input.chunks());
    assert_eq!(
        whole, chunked,
        "{c:?} {limits:?}: chunking changed the usage"
    );
}

// ---------------------------------------------------------------------------------------
// chunk_filter

fn run_filter(max: usize, chunks: &[&[u8]]) -> (Vec<u8>, u64) {
    let mut filter = UsageChunkFilter::with_max_held_bytes(max);
    let mut out = Vec::new();
    for chunk in chunks {
        for part in filter.push(bytes::Bytes::copy_from_slice(chunk)) {
            out.extend_from_slice(&part);
        }
    }
    if let Some(rest) = filter.finish() {
        out.extend_from_slice(&rest);
    }
    (out, filter.removed_events())
}

/// The input split after every empty line (the end of each event), SSE line rules.
fn event_segments(body: &[u8]) -> Vec<&[u8]> {
    let mut segments = Vec::new();
    let mut start = 0;
    let mut line_start = 0;
    let mut i = 0;
    while let Some(&b) = body.get(i) {
        if b != b'\n' && b != b'\r' {
            i += 1;
            continue;
        }
        let empty = i == line_start;
        i += if b == b'\r' && body.get(i + 1) == Some(&b'\n') {
            2
        } else {
            1
        };
        line_start = i;
        if empty {
            segments.push(body.get(start..i).unwrap_or_default());
            start = i;
        }
    }
    if start < body.len() {
        segments.push(body.get(start..).unwrap_or_default());
    }
    segments
}

/// Whether an event (decoded on its own) is the `choices: []` + `usage` chunk.
///
/// The members are read raw, not as `Value`: `Value` refuses a number beyond f64's range
/// (`"created":176E0533390`), which is still JSON, and which clients read (as infinity).
/// A later duplicate key wins, as in `Value` and in JavaScript.
fn is_usage_event(segment: &[u8]) -> bool {
    type Members = std::collections::HashMap<String, Box<serde_json::value::RawValue>>;
    let (events, _) = sse_decode(1 << 20, &[segment]);
    events.iter().any(|(_, data)| {
        // Lossy, as a client's text decoding would be: invalid UTF-8 inside a string
        // does not make the usage chunk something else.
        serde_json::from_str::<Members>(&String::from_utf8_lossy(data)).is_ok_and(|m| {
            m.get("choices")
                .and_then(|c| serde_json::from_str::<Vec<serde::de::IgnoredAny>>(c.get()).ok())
                .is_some_and(|c| c.is_empty())
                && m.get("usage").is_some_and(|u| u.get() != "null")
        })
    })
}

/// Output is the input minus whole usage events, the same for any chunking.
pub fn check_chunk_filter(data: &[u8]) {
    let input = Input::parse(data);
    let max = if input.a & 1 == 0 {
        llmobserve::providers::openai::chunk_filter::DEFAULT_MAX_HELD_BYTES
    } else {
        usize::from(input.b) * 4
    };
    let (whole, removed) = run_filter(max, &[input.payload]);
    let chunked = run_filter(max, &input.chunks());
    assert_same_bytes(
        &chunked.0,
        &whole,
        "chunk_filter: chunking changed the output",
    );
    assert_eq!(chunked.1, removed, "chunking changed the removed count");
    // Walk the input's events: each is either forwarded whole or removed whole.
    let mut rest = &whole[..];
    let mut dropped = 0u64;
    for segment in event_segments(input.payload) {
        if let Some(after) = rest.strip_prefix(segment) {
            rest = after;
        } else {
            assert!(
                is_usage_event(segment),
                "removed an event that is not the usage chunk: {:?}",
                String::from_utf8_lossy(segment)
            );
            dropped += 1;
        }
    }
    assert!(
        rest.is_empty(),
        "output has bytes that are not input events"
    );
    assert_eq!(
        dropped, removed,
        "removed count differs from events removed"
    );
}

// ---------------------------------------------------------------------------------------
// content_decoder

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Ok,
    TooLarge,
    Corrupt,
    Truncated,
}

fn outcome(r: &Result<(), DecodeError>) -> Outcome {
    match r {
        Ok(()) => Outcome::Ok,
        Err(DecodeError::TooLarge { .. }) => Outcome::TooLarge,
        Err(DecodeError::Corrupt { .. }) => Outcome::Corrupt,
        Err(DecodeError::Truncated { .. }) => Outcome::Truncated,
    }
}

fn run_decoder(encoding: Encoding, cap: u64, chunks: &[&[u8]]) -> (Vec<u8>, Outcome) {
    let mut dec = ContentDecoder::new(encoding).with_max_output_bytes(cap);
    let mut out = Vec::new();
    let mut result = Ok(());
    for chunk in chunks {
        let before = out.len();
        let r = dec.decode(chunk, &mut |b: &[u8]| out.extend_from_slice(b));
        if result.is_err() {
            assert_eq!(out.len(), before, "a spent decoder delivered bytes");
            assert!(r.is_err(), "a spent decoder recovered");
        }
        if result.is_ok() {
            result = r;
        }
    }
    if result.is_ok() {
        result = dec.finish();
    }
    assert!(out.len() as u64 <= cap, "output passed the cap");
    assert_eq!(dec.total_out(), out.len() as u64, "total_out is wrong");
    if let Err(DecodeError::TooLarge { limit }) = &result {
        assert_eq!(
            out.len() as u64,
            *limit,
            "TooLarge must deliver exactly the cap"
        );
    }
    (out, outcome(&result))
}

fn assert_same_bytes(a: &[u8], b: &[u8], what: &str) {
    if a != b {
        let at = a.iter().zip(b).position(|(x, y)| x != y);
        panic!(
            "{what}: {} vs {} bytes, first difference at {at:?}",
            a.len(),
            b.len()
        );
    }
}

fn compress(kind: u8, level: u32, data: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    let level = Compression::new(level % 10);
    match kind % 4 {
        0 => {
            let mut e = GzEncoder::new(Vec::new(), level);
            e.write_all(data)?;
            e.finish()
        }
        1 => {
            let mut e = ZlibEncoder::new(Vec::new(), level);
            e.write_all(data)?;
            e.finish()
        }
        2 => {
            let mut e = DeflateEncoder::new(Vec::new(), level);
            e.write_all(data)?;
            e.finish()
        }
        _ => {
            // Two gzip members, the first with every optional header field.
            let (head, tail) = data.split_at(data.len() / 2);
            let mut e = flate2::GzBuilder::new()
                .filename("f.txt")
                .comment("c")
                .extra(vec![1, 2, 3])
                .write(Vec::new(), level);
            e.write_all(head)?;
            let mut out = e.finish()?;
            let mut e = GzEncoder::new(Vec::new(), level);
            e.write_all(tail)?;
            out.extend_from_slice(&e.finish()?);
            Ok(out)
        }
    }
}

/// Arbitrary bytes never panic, never pass the cap, and decode the same in any chunking;
/// data compressed by flate2 comes back exactly, in any chunking.
pub fn check_content_decoder(data: &[u8]) {
    let input = Input::parse(data);
    let cap = if input.b & 0x80 == 0 {
        llmobserve::providers::decode::DEFAULT_MAX_OUTPUT_BYTES
    } else {
        u64::from(input.b & 0x7f) * 16
    };
    if input.a & 0x80 == 0 {
        let encoding = [
            Encoding::Identity,
            Encoding::Gzip,
            Encoding::Deflate,
            Encoding::Brotli,
        ][usize::from(input.a % 4)];
        let (whole, whole_end) = run_decoder(encoding, cap, &[input.payload]);
        let (chunked, chunked_end) = run_decoder(encoding, cap, &input.chunks());
        let what = format!("{encoding}: whole ended {whole_end:?}, chunked {chunked_end:?}");
        let cut_short = |o: &Outcome| matches!(o, Outcome::Corrupt | Outcome::Truncated);
        if !cut_short(&whole_end) && !cut_short(&chunked_end) {
            assert_eq!(whole_end, chunked_end, "{what}");
            assert_same_bytes(&whole, &chunked, &what);
            return;
        }
        // Corrupt or truncated data: miniz_oxide drops what one inflate call decoded past
        // the end of the output buffer when that call hits the error, and holds back
        // output while it waits for input that never comes, so how far the output gets
        // depends on the chunking. Both are still the same stream, cut short (the meter
        // marks such a body unreadable either way). But a body that decodes completely in
        // one chunking must do so in every chunking.
        assert!(
            whole_end != Outcome::Ok && chunked_end != Outcome::Ok,
            "complete in one chunking only: {what}"
        );
        let (short, long) = if whole.len() <= chunked.len() {
            (&whole, &chunked)
        } else {
            (&chunked, &whole)
        };
        assert_same_bytes(short, long.get(..short.len()).unwrap_or_default(), &what);
        return;
    }
    // Uncapped, the data is the payload repeated up to 63 times: bodies past inflate's
    // 32 KiB window, with matches across it, from small inputs.
    let repeat = if input.b & 0x80 == 0 {
        1 + usize::from(input.b & 0x1f) * 2
    } else {
        1
    };
    let want = input.payload.repeat(repeat);
    let Ok(compressed) = compress(input.a, u32::from(input.a >> 2), &want) else {
        return;
    };
    let encoding = if input.a % 4 == 1 || input.a % 4 == 2 {
        Encoding::Deflate
    } else {
        Encoding::Gzip
    };
    let (out, result) = run_decoder(encoding, cap, &input.chunks_of(&compressed));
    let want = &want[..];
    if want.len() as u64 <= cap {
        assert_eq!(result, Outcome::Ok, "{encoding}: a valid stream failed");
        assert_same_bytes(&out, want, &format!("{encoding}: round trip"));
    } else {
        assert_eq!(result, Outcome::TooLarge);
        assert!(
            want.starts_with(&out),
            "{encoding}: output is not the data's prefix"
        );
    }
}

// ---------------------------------------------------------------------------------------
// api_key

/// The documented shape: `llmo_sk_` + 32..=120 ASCII letters and digits.
fn has_key_shape(s: &str) -> bool {
    s.strip_prefix("llmo_sk_").is_some_and(|rest| {
        (32..=120).contains(&rest.len()) && rest.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

/// A live key for the authenticate checks.
const KNOWN_KEY: &str = "llmo_sk_FuzzFuzzFuzzFuzzFuzzFuzzFuzzFuzz1234";

fn known_cache() -> KeyCache {
    KeyCache::from_records(&[ApiKeyRecord {
        id: "k1".into(),
        user_id: "u1".into(),
        name: "fuzz".into(),
        prefix: "llmo_sk_Fuzz".into(),
        hash_hex: api_key::hex(&api_key::hash_key(KNOWN_KEY)),
        created_at_ms: 0,
        last_used_at_ms: None,
        revoked: false,
    }])
}

/// `check_format` accepts exactly the documented shape; `authenticate` never panics and
/// only accepts the live key, found where it says it found it.
pub fn check_api_key(data: &[u8]) {
    let input = Input::parse(data);
    let text = String::from_utf8_lossy(input.payload);
    let verdict = api_key::check_format(&text);
    assert_eq!(
        verdict.is_ok(),
        has_key_shape(&text),
        "{text:?}: {verdict:?}"
    );
    assert_eq!(
        verdict == Err(KeyFormatError::Prefix),
        !text.starts_with("llmo_sk_"),
        "{text:?}"
    );
    if verdict.is_ok() {
        assert!(api_key::looks_like_key(&text));
    }
    assert_eq!(api_key::hash_key(&text), api_key::hash_key(&text.clone()));

    // Credentials: payload lines fill the slots `a` selects; `$K` stands for the live key.
    let cache = known_cache();
    let mut values = text.split('\n').map(|v| v.replace("$K", KNOWN_KEY));
    let mut headers = http::HeaderMap::new();
    let names = [
        "x-llmobserve-key",
        "authorization",
        "x-api-key",
        "api-key",
        "x-goog-api-key",
    ];
    for (bit, name) in names.iter().enumerate() {
        if input.a & (1 << bit) == 0 {
            continue;
        }
        let Some(v) = values.next() else { break };
        if let Ok(v) = http::HeaderValue::from_str(&v) {
            headers.append(*name, v);
        }
    }
    let query = (input.a & 0x20 != 0).then(|| values.next()).flatten();
    let result = authenticate(&headers, query.as_deref(), &cache);
    let Ok(authed) = result else { return };
    assert_eq!(&*authed.owner.key_id, "k1");
    let slot_value = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    };
    match authed.mode {
        Mode::PassThrough => assert_eq!(slot_value("x-llmobserve-key").trim(), KNOWN_KEY),
        Mode::Managed(slot) => {
            assert!(!headers.contains_key("x-llmobserve-key"));
            let held = match slot {
                Slot::Authorization => slot_value("authorization"),
                Slot::XApiKey => slot_value("x-api-key"),
                Slot::ApiKey => slot_value("api-key"),
                Slot::XGoogApiKey => slot_value("x-goog-api-key"),
                Slot::QueryKey => query.as_deref().unwrap_or_default(),
            };
            assert!(held.contains(KNOWN_KEY), "{slot:?} does not hold the key");
        }
    }
}

// ---------------------------------------------------------------------------------------
// request

/// DESIGN: 1-128 printable ASCII characters, no leading or trailing space.
fn is_valid_customer_id(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes().all(|b| (0x20..0x7f).contains(&b))
        && !s.starts_with(' ')
        && !s.ends_with(' ')
}

/// Customer ids are checked exactly as documented; body parsing never panics; an injected
/// body is the client's JSON object with `stream_options.include_usage` set to true.
pub fn check_request(data: &[u8]) {
    let input = Input::parse(data);
    let body = input.payload;
    let text = String::from_utf8_lossy(body);
    assert_eq!(
        check_customer_id(&text).is_ok(),
        is_valid_customer_id(&text),
        "{text:?}"
    );

    let info = RequestInfo::parse(body);
    if let Some(c) = &info.body_customer {
        let _ = check_customer_id(c);
    }
    let injected = inject_include_usage(body, &info);
    let Ok(Value::Object(mut sent)) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let Some(out) = injected else {
        panic!("a JSON object was not injected");
    };
    let got: Value = match serde_json::from_slice(&out) {
        Ok(v) => v,
        Err(e) => panic!(
            "injected body is not JSON ({e}): {}",
            String::from_utf8_lossy(&out)
        ),
    };
    let Value::Object(mut got) = got else {
        panic!("injected body is not an object");
    };
    let opts = got.remove("stream_options");
    assert_eq!(
        opts.as_ref().and_then(|o| o.get("include_usage")),
        Some(&Value::Bool(true)),
        "include_usage is not true in {}",
        String::from_utf8_lossy(&out)
    );
    // Everything else is as sent, including the other stream options.
    let sent_opts = sent.remove("stream_options");
    assert_eq!(got, sent, "injection changed other fields");
    if let (Some(Value::Object(mut before)), Some(Value::Object(mut after))) = (sent_opts, opts) {
        before.remove("include_usage");
        after.remove("include_usage");
        assert_eq!(before, after, "injection changed other stream options");
    }
}

// ---------------------------------------------------------------------------------------
// route

/// Percent-decodes once, as an upstream server would.
fn percent_decode(s: &str) -> Cow<'_, [u8]> {
    if !s.contains('%') {
        return Cow::Borrowed(s.as_bytes());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    Cow::Owned(out)
}

/// `split` and `has_dot_segment` never panic; the provider always comes from the table;
/// a path that passes the dot check has no segment an upstream would read as `.` or `..`
/// and no encoded `/`.
pub fn check_route(data: &[u8]) {
    let input = Input::parse(data);
    let path = String::from_utf8_lossy(input.payload);
    let dotted = route::has_dot_segment(&path);
    let Some((provider, rest)) = route::split(&path) else {
        let first = path
            .strip_prefix('/')
            .map(|p| p.split('/').next().unwrap_or_default());
        if let Some(first) = first {
            assert!(
                first != "v1" && Provider::from_name(first).is_none(),
                "{path:?}: a table prefix was not routed"
            );
        }
        return;
    };
    let after_prefix = path.strip_prefix('/').unwrap_or_default();
    let (first, tail) = match after_prefix.find('/') {
        Some(i) => after_prefix.split_at(i),
        None => (after_prefix, ""),
    };
    // The upstream path is what follows the prefix (`/` when nothing does).
    let want_rest = match (first, tail) {
        ("v1", _) => &*path,
        (_, "" | "/") => "/",
        (_, tail) => tail,
    };
    assert_eq!(rest, want_rest, "{path:?}: wrong upstream path");
    match first {
        "v1" => assert_eq!((provider, rest), (Provider::OpenAi, &*path)),
        "openai" => assert_eq!(provider, Provider::OpenAi),
        name => assert_eq!(Some(provider), Provider::from_name(name), "{path:?}"),
    }
    let _ = Endpoint::from_path(rest);
    if route::has_dot_segment(rest) {
        assert!(
            dotted,
            "{path:?}: the tail has a dot segment the path does not"
        );
        return;
    }
    for segment in rest.split('/') {
        let decoded = percent_decode(segment);
        assert!(
            &*decoded != b"." && &*decoded != b"..",
            "{path:?}: dot segment {segment:?} passed the check"
        );
        assert!(
            !decoded.contains(&b'/'),
            "{path:?}: encoded slash passed the check"
        );
    }
}

// ---------------------------------------------------------------------------------------
// json_reader

/// A hand read of `doc`, where there is one, is what serde's derive reads.
fn agrees_with_serde<T>(fast: Option<T>, doc: &[u8])
where
    T: serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    if let Some(fast) = fast {
        let slow = serde_json::from_slice::<T>(doc).ok();
        assert_eq!(Some(fast), slow, "{}", String::from_utf8_lossy(doc));
    }
}

/// The hand JSON reader never accepts what serde_json rejects, and where it reads a
/// response body (OpenAI, Anthropic, Gemini), a Responses stream event or a request it
/// gives exactly serde's answer.
pub fn check_json_reader(data: &[u8]) {
    let input = Input::parse(data);
    let doc = input.payload;
    let mut r = Reader::new(doc);
    if r.skip().and_then(|()| r.end()).is_some() {
        assert!(
            serde_json::from_slice::<serde::de::IgnoredAny>(doc).is_ok(),
            "accepted what serde rejects: {}",
            String::from_utf8_lossy(doc)
        );
    }
    agrees_with_serde(OpenAiBodyWire::read_fast(doc), doc);
    agrees_with_serde(EventWire::read_fast(doc), doc);
    agrees_with_serde(AnthropicBodyWire::read_fast(doc), doc);
    agrees_with_serde(GeminiResponseWire::read_fast(doc), doc);
    assert_eq!(
        RequestInfo::parse(doc),
        RequestInfo::parse_with_serde(doc),
        "{}",
        String::from_utf8_lossy(doc)
    );
}
