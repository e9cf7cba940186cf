//! What the proxy reads from a request body: model, stream flags and the customer.
//! Only these fields are parsed (borrowed, unknown fields skipped); the body itself is
//! forwarded as sent, except for the `include_usage` injection below.

use std::borrow::Cow;

use serde::Deserialize;

use crate::providers::json_reader::{Reader, Seen};

#[derive(Debug, Default, PartialEq, Eq)]
pub struct RequestInfo {
    pub model: Option<String>,
    pub stream: bool,
    /// `stream_options.include_usage` as the client sent it.
    pub include_usage: Option<bool>,
    /// Whether the body has a `stream_options` key at all.
    pub has_stream_options: bool,
    /// OpenAI `user`, or Anthropic `metadata.user_id`.
    pub body_customer: Option<String>,
}

#[derive(Default, Deserialize)]
struct Wire<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    stream: Option<serde_json::Value>,
    /// `Some(None)` for `"stream_options": null`: the key is there all the same.
    #[serde(default, deserialize_with = "present")]
    stream_options: Option<Option<StreamOptions>>,
    #[serde(borrow, default)]
    user: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    metadata: Option<Metadata<'a>>,
}

impl<'a> Wire<'a> {
    /// The members read by hand (see `providers::json_reader`): the same `Wire` serde's
    /// derive gives, or `None` to leave the body to serde. Plain strings and booleans are
    /// read in place; other shapes by serde on the value's own bytes.
    fn read_fast(body: &'a [u8]) -> Option<Wire<'a>> {
        let mut r = Reader::new(body);
        let mut w = Wire::default();
        let mut seen = Seen::default();
        r.object(|key, r| {
            let field = match key {
                b"model" => 0,
                b"stream" => 1,
                b"stream_options" => 2,
                b"user" => 3,
                b"metadata" => 4,
                _ => return r.skip(),
            };
            seen.first(field)?;
            match field {
                0 => w.model = optional_str(r)?,
                1 => {
                    w.stream = match r.bool() {
                        Some(b) => Some(serde_json::Value::Bool(b)),
                        None => r.serde()?,
                    }
                }
                2 => w.stream_options = Some(r.serde()?),
                3 => w.user = optional_str(r)?,
                _ => w.metadata = r.serde()?,
            }
            Some(())
        })?;
        r.end()?;
        Some(w)
    }
}

/// A string member as `Option<Cow<str>>`: borrowed when plain, else as serde reads it.
fn optional_str<'a>(r: &mut Reader<'a>) -> Option<Option<Cow<'a, str>>> {
    match r.str() {
        Some(s) => Some(Some(Cow::Borrowed(s))),
        None => r.serde(),
    }
}

/// `Some` whenever the key is present, `null` included (plain `Option` reads null as absent).
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

#[derive(Deserialize)]
struct Metadata<'a> {
    #[serde(borrow, default)]
    user_id: Option<Cow<'a, str>>,
}

impl RequestInfo {
    /// Reads what it can; a body that is not a JSON object yields the default.
    pub fn parse(body: &[u8]) -> RequestInfo {
        // The hand reader reads objects only, like the guard below.
        if let Some(w) = Wire::read_fast(body) {
            return RequestInfo::from_wire(w);
        }
        RequestInfo::parse_with_serde(body)
    }

    /// [`RequestInfo::parse`] by serde alone: what it falls back to for bodies the hand
    /// reader leaves to serde, and the reference the fuzzer checks the reader against.
    pub fn parse_with_serde(body: &[u8]) -> RequestInfo {
        // serde would read a struct out of an array too (`["m"]` as `model`).
        let first = body.iter().find(|b| !b.is_ascii_whitespace());
        if first != Some(&b'{') {
            return RequestInfo::default();
        }
        match serde_json::from_slice::<Wire<'_>>(body) {
            Ok(w) => RequestInfo::from_wire(w),
            // A repeated key or a field of an unexpected type fails the typed parse, yet
            // upstreams read such a body (a repeated key's last value wins). Read it field by
            // field the same way, or a repeated `stream` or `stream_options` would hide the
            // stream from the include_usage injection.
            Err(_) => match serde_json::from_slice::<serde_json::Value>(body) {
                Ok(serde_json::Value::Object(fields)) => RequestInfo::from_fields(&fields),
                _ => RequestInfo::default(),
            },
        }
    }

    fn from_fields(fields: &serde_json::Map<String, serde_json::Value>) -> RequestInfo {
        let text = |v: Option<&serde_json::Value>| v.and_then(|v| v.as_str()).map(str::to_owned);
        let stream_options = fields.get("stream_options");
        RequestInfo {
            model: text(fields.get("model")),
            stream: fields.get("stream") == Some(&serde_json::Value::Bool(true)),
            include_usage: stream_options
                .and_then(|o| o.get("include_usage"))
                .and_then(serde_json::Value::as_bool),
            has_stream_options: stream_options.is_some(),
            body_customer: text(fields.get("user"))
                .or_else(|| text(fields.get("metadata").and_then(|m| m.get("user_id")))),
        }
    }

    fn from_wire(w: Wire<'_>) -> RequestInfo {
        let stream_options = w.stream_options.as_ref();
        RequestInfo {
            model: w.model.map(Cow::into_owned),
            stream: matches!(w.stream, Some(serde_json::Value::Bool(true))),
            include_usage: stream_options
                .and_then(Option::as_ref)
                .and_then(|s| s.include_usage),
            has_stream_options: stream_options.is_some(),
            body_customer: w
                .user
                .or_else(|| w.metadata.and_then(|m| m.user_id))
                .map(Cow::into_owned),
        }
    }
}

/// Returns the body with `stream_options.include_usage` set to true.
/// Without a `stream_options` key the field is spliced in after the opening brace so
/// every other byte stays as the client sent it; otherwise the object is rewritten.
pub fn inject_include_usage(body: &[u8], info: &RequestInfo) -> Option<Vec<u8>> {
    const FIELD: &[u8] = br#""stream_options":{"include_usage":true},"#;
    if !info.has_stream_options {
        let open = body.iter().position(|b| *b == b'{')?;
        let mut out = Vec::with_capacity(body.len() + FIELD.len());
        out.extend_from_slice(&body[..=open]);
        // An empty object `{}` must not get a trailing comma.
        let rest = &body[open + 1..];
        if rest.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'}') {
            out.extend_from_slice(&FIELD[..FIELD.len() - 1]);
        } else {
            out.extend_from_slice(FIELD);
        }
        out.extend_from_slice(rest);
        return Some(out);
    }
    let mut v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let opts = v.as_object_mut()?.get_mut("stream_options")?;
    match opts {
        serde_json::Value::Object(m) => {
            m.insert("include_usage".into(), serde_json::Value::Bool(true));
        }
        other => *other = serde_json::json!({"include_usage": true}),
    }
    serde_json::to_vec(&v).ok()
}

/// Why a customer id was refused (DESIGN: 1–128 printable ASCII, no edge spaces).
pub fn check_customer_id(id: &str) -> Result<(), &'static str> {
    if id.is_empty() {
        return Err("empty");
    }
    if id.len() > 128 {
        return Err("longer than 128 characters");
    }
    if !id.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err("only printable ASCII characters are allowed");
    }
    if id.starts_with(' ') || id.ends_with(' ') {
        return Err("leading or trailing space");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_fields() {
        let i = RequestInfo::parse(
            br#"{"model":"gpt-4o","stream":true,"user":"alice","messages":[{"role":"user","content":"hi"}]}"#,
        );
        assert_eq!(i.model.as_deref(), Some("gpt-4o"));
        assert!(i.stream);
        assert_eq!(i.include_usage, None);
        assert_eq!(i.body_customer.as_deref(), Some("alice"));
        let a = RequestInfo::parse(br#"{"model":"claude","metadata":{"user_id":"bob"}}"#);
        assert_eq!(a.body_customer.as_deref(), Some("bob"));
        assert_eq!(RequestInfo::parse(b"not json"), RequestInfo::default());
        assert_eq!(RequestInfo::parse(b"[1]"), RequestInfo::default());
        // Not a struct read out of an array, on either path.
        assert_eq!(RequestInfo::parse(br#" ["m"]"#), RequestInfo::default());
        assert_eq!(
            RequestInfo::parse_with_serde(br#"["m"]"#),
            RequestInfo::default()
        );
    }

    #[test]
    fn injection_keeps_other_bytes() {
        let body = br#"{"model":"m","stream":true}"#;
        let info = RequestInfo::parse(body);
        let out = inject_include_usage(body, &info).unwrap();
        assert_eq!(
            out,
            br#"{"stream_options":{"include_usage":true},"model":"m","stream":true}"#
        );
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], true);

        let body = br#"{"model":"m","stream":true,"stream_options":{"include_usage":false}}"#;
        let info = RequestInfo::parse(body);
        assert!(info.has_stream_options);
        let v: serde_json::Value =
            serde_json::from_slice(&inject_include_usage(body, &info).unwrap()).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], true);

        let out = inject_include_usage(b" { } ", &RequestInfo::default()).unwrap();
        assert!(serde_json::from_slice::<serde_json::Value>(&out).is_ok());
    }

    /// Found by fuzz/: a `null` or repeated `stream_options` (or a repeated or mistyped
    /// field) made the spliced-in field lose to the client's (the last key wins upstream).
    #[test]
    fn injection_wins_over_null_and_repeated_keys() {
        for body in [
            &br#"{"stream":true,"stream_options":null}"#[..],
            br#"{"stream":true,"stream_options":{},"stream_options":{"include_usage":false}}"#,
            br#"{"stream":"x","stream":true,"stream_options":{"x":0}}"#,
            br#"{"model":true,"stream":true,"stream_options":{"include_usage":"no"}}"#,
        ] {
            let info = RequestInfo::parse(body);
            assert!(info.stream && info.has_stream_options, "{info:?}");
            let out = inject_include_usage(body, &info).unwrap();
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(v["stream_options"]["include_usage"], true, "{v}");
        }
    }

    /// A JSON text for a request member's value, plain or odd.
    fn value() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "\"gpt-4o\"",
            "\"\"",
            r#""caf\u00e9 \"x\"""#,
            "true",
            "false",
            "null",
            "1",
            "1e999",
            "[true]",
            "{}",
            "{\"include_usage\":true}",
            "{\"include_usage\":false,\"x\":[1]}",
            "{\"include_usage\":\"yes\"}",
            "{\"user_id\":\"bob\"}",
            "{\"user_id\":null,\"user_id\":\"b\"}",
            "[{\"role\":\"user\",\"content\":\"hi \\n there\"}]",
        ])
        .prop_map(str::to_owned)
    }

    fn body() -> impl Strategy<Value = String> {
        let key = prop::sample::select(vec![
            "model",
            "stream",
            "stream_options",
            "user",
            "metadata",
            "messages",
            "temperature",
        ]);
        prop::collection::vec((key, value()), 0..6).prop_map(|members| {
            let members: Vec<String> = members
                .into_iter()
                .map(|(k, v)| format!("\"{k}\": {v}"))
                .collect();
            format!("{{{}}}", members.join(", "))
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        /// The hand reader gives serde's answer wherever it answers.
        #[test]
        fn hand_reader_agrees_with_serde(body in body()) {
            let with_serde = RequestInfo::parse_with_serde(body.as_bytes());
            if let Some(w) = Wire::read_fast(body.as_bytes()) {
                prop_assert_eq!(&RequestInfo::from_wire(w), &with_serde, "{}", body);
            }
            prop_assert_eq!(RequestInfo::parse(body.as_bytes()), with_serde);
        }
    }

    /// Plain requests, the shape every SDK sends, are read by hand.
    #[test]
    fn plain_requests_are_read_by_hand() {
        for body in [
            &br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi \"q\""}],"temperature":0.2}"#[..],
            br#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"user":"alice","messages":[]}"#,
            br#"{"model":"claude","max_tokens":5,"metadata":{"user_id":"bob"},"messages":[]}"#,
        ] {
            let w = Wire::read_fast(body);
            assert!(w.is_some(), "{}", String::from_utf8_lossy(body));
            let fast = RequestInfo::from_wire(w.unwrap());
            assert_eq!(fast, RequestInfo::parse_with_serde(body));
        }
    }

    #[test]
    fn customer_ids() {
        assert!(check_customer_id("alice").is_ok());
        assert!(check_customer_id("a b").is_ok());
        assert!(check_customer_id("").is_err());
        assert!(check_customer_id(" a").is_err());
        assert!(check_customer_id(&"x".repeat(129)).is_err());
        assert!(check_customer_id(&"x".repeat(128)).is_ok());
        assert!(check_customer_id("a\tb").is_err());
        assert!(check_customer_id("é").is_err());
    }
}
