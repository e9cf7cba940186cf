//! [`OpenAiBodyWire::read_fast`], [`ChunkWire::read_fast`] and [`EventWire::read_fast`]
//! against serde's derive:
//! wherever the hand reader answers, it gives serde's answer, and it does answer for the
//! shapes providers really send.

use proptest::prelude::*;

use super::responses::EventWire;
use super::{ChunkWire, OpenAiBodyWire};
use crate::providers::json_tail::ResponseBody;

/// What serde's derive reads from `doc`: the reference the hand readers must equal.
fn serde<T: serde::de::DeserializeOwned>(doc: &[u8]) -> Option<T> {
    serde_json::from_slice(doc).ok()
}

/// The fixture files of the OpenAI-family providers whose name passes `keep`.
fn fixture_files(keep: impl Fn(&str) -> bool) -> Vec<std::path::PathBuf> {
    let root = format!("{}/tests/fixtures", env!("CARGO_MANIFEST_DIR"));
    let dirs = [
        "openai",
        "azure",
        "deepseek",
        "groq",
        "mistral",
        "openrouter",
        "xai",
    ];
    let mut files = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(format!("{root}/{dir}")) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if keep(name) {
                files.push(path);
            }
        }
    }
    files
}

/// Every chunk of the OpenAI-family chat streams is read by hand, exactly as serde reads it.
#[test]
fn stream_fixture_chunks_are_read_by_hand_as_serde_reads_them() {
    let mut read = 0;
    for path in fixture_files(|n| n.ends_with(".sse") && !n.starts_with("responses")) {
        let text = std::fs::read_to_string(&path).unwrap();
        for data in text.lines().filter_map(|l| l.strip_prefix("data:")) {
            let data = data.trim();
            if data == "[DONE]" {
                continue;
            }
            let fast = ChunkWire::read_fast(data.as_bytes());
            let slow = serde(data.as_bytes());
            // Groq's `x_groq` goes to serde on its own bytes; the chunk is still read.
            assert!(fast.is_some(), "{}: left to serde: {data}", path.display());
            assert_eq!(fast, slow, "{}: {data}", path.display());
            read += 1;
        }
    }
    assert!(read >= 30, "only {read} chunks found");
}

/// Every event of the Responses API streams is read by hand, exactly as serde reads it.
#[test]
fn responses_stream_events_are_read_by_hand_as_serde_reads_them() {
    let mut read = 0;
    let mut terminal = 0;
    for path in fixture_files(|n| n.ends_with(".sse") && n.starts_with("responses")) {
        let text = std::fs::read_to_string(&path).unwrap();
        for data in text.lines().filter_map(|l| l.strip_prefix("data:")) {
            let data = data.trim().as_bytes();
            let fast = EventWire::read_fast(data);
            assert!(fast.is_some(), "{}: left to serde", path.display());
            assert_eq!(fast, serde(data), "{}", path.display());
            if fast.and_then(|e| e.response?.usage).is_some() {
                terminal += 1;
            }
            read += 1;
        }
    }
    assert!(
        read >= 10 && terminal >= 1,
        "only {read} events, {terminal} with usage"
    );
}

/// Every non-streamed OpenAI-shaped fixture is read by hand, exactly as serde reads it.
#[test]
fn fixtures_are_read_by_hand_as_serde_reads_them() {
    let mut read = 0;
    for path in fixture_files(|n| n.ends_with(".json")) {
        let doc = std::fs::read(&path).unwrap();
        let fast = OpenAiBodyWire::read_fast(&doc);
        assert!(fast.is_some(), "{} was left to serde", path.display());
        assert_eq!(fast, serde(&doc), "{}", path.display());
        read += 1;
    }
    assert!(read >= 10, "only {read} fixtures found");
}

#[test]
fn odd_shapes_give_serdes_answer_or_decline() {
    let cases: &[&str] = &[
        // Repeated members: serde fails, so must the reader.
        r#"{"usage":{"prompt_tokens":1},"usage":null}"#,
        r#"{"usage":{"prompt_tokens":1,"input_tokens":2}}"#,
        r#"{"model":"a","model":"b"}"#,
        // Values serde reads its own way.
        r#"{"usage":{"prompt_tokens":45.0,"completion_tokens":"7","total_tokens":-1}}"#,
        r#"{"usage":{"prompt_tokens":1e400}}"#,
        r#"{"usage":{"cost":0.000123,"cost_in_usd_ticks":99}}"#,
        r#"{"model":"gpt\u002d4o","service_tier":7,"usage":[1,2]}"#,
        r#"{"model":{"a":[1]},"usage":{"prompt_tokens_details":{"cached_tokens":null}}}"#,
        // Not JSON, or not one object.
        r#"{"usage":{"prompt_tokens":1}"#,
        r#"{"usage":{"prompt_tokens":1}} x"#,
        r#"[{"usage":{}}]"#,
        "{\"model\":\"a\x01\"}",
        "",
    ];
    for doc in cases {
        let fast = OpenAiBodyWire::read_fast(doc.as_bytes());
        if fast.is_some() {
            assert_eq!(fast, serde(doc.as_bytes()), "{doc}");
        }
    }
    // Odd values inside a plain document are still read, by serde on their own bytes.
    let doc = br#"{"usage":{"prompt_tokens":45.0,"completion_tokens":"7","cost":0.5}}"#;
    let fast = OpenAiBodyWire::read_fast(doc);
    assert!(fast.is_some());
    assert_eq!(fast, serde(doc));
}

/// A JSON text for one value of a usage count, name or anything else.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (0u64..100_000).prop_map(|n| n.to_string()),
        1 => Just("18446744073709551616".to_owned()),
        1 => Just("-3".to_owned()),
        1 => Just("12.5".to_owned()),
        1 => Just("1e3".to_owned()),
        1 => Just("007".to_owned()),
        1 => Just("\"42\"".to_owned()),
        1 => Just("\"gpt-4o\"".to_owned()),
        1 => Just("\"\"".to_owned()),
        1 => Just("\"a\\\"b\"".to_owned()),
        1 => Just("null".to_owned()),
        1 => Just("true".to_owned()),
        1 => Just("[1,{\"a\":2}]".to_owned()),
        1 => Just("{\"cached_tokens\":3,\"cache_write_tokens\":1,\"x\":[]}".to_owned()),
        1 => Just("{\"reasoning_tokens\":9}".to_owned()),
        1 => Just("{\"cached_tokens\":3,\"cached_tokens\":4}".to_owned()),
    ]
}

const USAGE_KEYS: &[&str] = &[
    "prompt_tokens",
    "input_tokens",
    "completion_tokens",
    "output_tokens",
    "total_tokens",
    "prompt_tokens_details",
    "input_tokens_details",
    "input_token_details",
    "prompt_token_details",
    "completion_tokens_details",
    "output_tokens_details",
    "prompt_cache_hit_tokens",
    "prompt_cache_miss_tokens",
    "num_cached_tokens",
    "cost",
    "cost_in_usd_ticks",
    "service_tier",
    "audio_tokens",
];

fn object(members: Vec<(String, String)>, ws: &str) -> String {
    let body: Vec<String> = members
        .into_iter()
        .map(|(k, v)| format!("{ws}\"{k}\"{ws}:{ws}{v}"))
        .collect();
    format!("{{{}{ws}}}", body.join(","))
}

fn usage() -> impl Strategy<Value = String> {
    let member = (prop::sample::select(USAGE_KEYS), value()).prop_map(|(k, v)| (k.to_owned(), v));
    (
        prop::collection::vec(member, 0..8),
        prop::sample::select(&["", " ", "\n\t"][..]),
    )
        .prop_map(|(m, ws)| object(m, ws))
}

/// A member a response body and a stream chunk can both have.
fn body_member() -> impl Strategy<Value = (String, String)> {
    prop_oneof![
        3 => usage().prop_map(|u| ("usage".to_owned(), u)),
        1 => value().prop_map(|v| ("usage".to_owned(), v)),
        2 => value().prop_map(|v| ("model".to_owned(), v)),
        1 => value().prop_map(|v| ("service_tier".to_owned(), v)),
        2 => value().prop_map(|v| ("choices".to_owned(), v)),
    ]
}

fn body() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(body_member(), 0..5),
        prop::sample::select(&["", " "][..]),
    )
        .prop_map(|(m, ws)| object(m, ws))
}

/// A chunk: a body's members, plus `error` and Groq's `x_groq`.
fn chunk() -> impl Strategy<Value = String> {
    let member = prop_oneof![
        9 => body_member(),
        1 => value().prop_map(|v| ("error".to_owned(), v)),
        1 => usage().prop_map(|u| ("x_groq".to_owned(), format!("{{\"id\":\"r\",\"usage\":{u}}}"))),
        1 => value().prop_map(|v| ("x_groq".to_owned(), v)),
    ];
    prop::collection::vec(member, 0..5).prop_map(|m| object(m, ""))
}

/// A Responses stream event: `type`, a `response` body (or an odd value), and the
/// members delta events carry.
fn event() -> impl Strategy<Value = String> {
    let member = prop_oneof![
        2 => prop::sample::select(&["\"response.completed\"", "\"response.created\""][..])
            .prop_map(|t| ("type".to_owned(), t.to_owned())),
        1 => value().prop_map(|v| ("type".to_owned(), v)),
        3 => body().prop_map(|b| ("response".to_owned(), b)),
        1 => value().prop_map(|v| ("response".to_owned(), v)),
        1 => value().prop_map(|v| ("delta".to_owned(), v)),
        1 => value().prop_map(|v| ("sequence_number".to_owned(), v)),
    ];
    (
        prop::collection::vec(member, 0..5),
        prop::sample::select(&["", " "][..]),
    )
        .prop_map(|(m, ws)| object(m, ws))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn event_reader_agrees_with_serde(doc in event(), cut in 0usize..400) {
        let fast = EventWire::read_fast(doc.as_bytes());
        if fast.is_some() {
            prop_assert_eq!(&fast, &serde(doc.as_bytes()), "{}", doc);
        }
        prop_assert_eq!(EventWire::parse(doc.as_bytes()), serde(doc.as_bytes()));
        let short = doc.get(..cut.min(doc.len().saturating_sub(1))).unwrap_or_default();
        prop_assert_eq!(EventWire::read_fast(short.as_bytes()), None, "{}", short);
    }

    #[test]
    fn chunk_reader_agrees_with_serde(doc in chunk()) {
        let fast = ChunkWire::read_fast(doc.as_bytes());
        if fast.is_some() {
            prop_assert_eq!(&fast, &serde(doc.as_bytes()), "{}", doc);
        }
        prop_assert_eq!(ChunkWire::parse(doc.as_bytes()), serde(doc.as_bytes()));
    }

    #[test]
    fn hand_reader_agrees_with_serde(doc in body(), cut in 0usize..400) {
        let fast = OpenAiBodyWire::read_fast(doc.as_bytes());
        if fast.is_some() {
            prop_assert_eq!(&fast, &serde(doc.as_bytes()), "{}", doc);
        }
        // A body cut short is never read as whole.
        let short = doc.get(..cut.min(doc.len().saturating_sub(1))).unwrap_or_default();
        prop_assert_eq!(OpenAiBodyWire::read_fast(short.as_bytes()), None, "{}", short);
    }

    /// Plain bodies (integer counts, plain names, no repeats) are always read by hand.
    #[test]
    fn plain_bodies_are_read_by_hand(
        counts in prop::collection::vec(0u64..u64::MAX, 5),
        model in "[a-z0-9.-]{0,20}",
        ws in prop::sample::select(&["", " ", "\r\n  "][..]),
    ) {
        let usage = object(vec![
            ("prompt_tokens".into(), counts[0].to_string()),
            ("completion_tokens".into(), counts[1].to_string()),
            ("total_tokens".into(), counts[2].to_string()),
            ("prompt_tokens_details".into(), format!("{{\"cached_tokens\":{},\"audio_tokens\":0}}", counts[3])),
            ("completion_tokens_details".into(), format!("{{\"reasoning_tokens\":{}}}", counts[4])),
        ], ws);
        let doc = object(vec![
            ("id".into(), "\"chatcmpl-1\"".into()),
            ("model".into(), format!("\"{model}\"")),
            ("choices".into(), "[{\"message\":{\"content\":\"caf\u{e9} \\\"q\\\"\"}}]".into()),
            ("usage".into(), usage),
            ("service_tier".into(), "\"default\"".into()),
        ], ws);
        let fast = OpenAiBodyWire::read_fast(doc.as_bytes());
        prop_assert!(fast.is_some(), "{}", doc);
        prop_assert_eq!(fast, serde(doc.as_bytes()));
    }
}
