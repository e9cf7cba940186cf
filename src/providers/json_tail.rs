//! Bounded capture of a non-streamed JSON response body, and the parser built on it.
//!
//! Bodies are buffered whole up to a cap (default [`DEFAULT_MAX_JSON_BYTES`]) and parsed with
//! a typed wire struct. A bigger body (a 20 MiB embeddings list, a base64 image) keeps only a
//! head window and a tail window. At the end, the top-level members that lie entirely in
//! either window are cut out and re-assembled into a small object that the same wire struct
//! is parsed from: usage sits at the end of every provider's body, and `model` is near the
//! start or the end, so both survive while memory stays at about three windows.
//!
//! Finding members in the tail walks backwards from the closing `}`: going backwards, a `"`
//! is a string delimiter exactly when an even number of backslashes precede it, so the walk
//! knows string boundaries without seeing the start of the document. Anything it cannot
//! resolve inside the window (a value that began before it) ends the walk.

use std::marker::PhantomData;

use serde::de::DeserializeOwned;

use super::{ParsedUsage, UsageParser};

/// Default cap on a buffered JSON body: 4 MiB.
pub const DEFAULT_MAX_JSON_BYTES: usize = 4 * 1024 * 1024;

/// Size of the head and tail windows kept once a body passes the cap.
const WINDOW_BYTES: usize = 64 * 1024;

/// One JSON document, captured with bounded memory.
#[derive(Debug)]
pub struct BoundedJson {
    max_body_bytes: usize,
    window: usize,
    /// The whole body so far or, once `overflowed`, its first `window` bytes.
    buf: Vec<u8>,
    /// Once `overflowed`: the last bytes of the body (between `window` and `2 * window`).
    tail: Vec<u8>,
    overflowed: bool,
}

/// A value read from a captured document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extracted<T> {
    pub value: T,
    /// The whole document was read, or its end was seen intact (tail mode). False when the
    /// value was pieced together from the members of a truncated document.
    pub complete: bool,
}

impl BoundedJson {
    /// Captures bodies up to `max_body_bytes` whole, larger ones as head and tail windows.
    pub fn new(max_body_bytes: usize) -> BoundedJson {
        BoundedJson {
            max_body_bytes,
            window: WINDOW_BYTES.min(max_body_bytes / 2),
            buf: Vec::new(),
            tail: Vec::new(),
            overflowed: false,
        }
    }

    /// Bytes of memory held (allocated capacity), for tests and accounting.
    pub fn retained_bytes(&self) -> usize {
        self.buf.capacity() + self.tail.capacity()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty() && self.tail.is_empty()
    }

    /// Forgets the document, keeping at most one window of capacity for reuse.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.buf.shrink_to(self.window);
        self.tail = Vec::new();
        self.overflowed = false;
    }

    pub fn push(&mut self, bytes: &[u8]) {
        if self.overflowed {
            self.push_tail(bytes);
        } else if self.buf.len() + bytes.len() <= self.max_body_bytes {
            let needed = self.buf.len() + bytes.len();
            if needed > self.buf.capacity() {
                // Grow geometrically, but never past the cap.
                let target = needed.max(2 * self.buf.capacity()).min(self.max_body_bytes);
                self.buf.reserve_exact(target - self.buf.len());
            }
            self.buf.extend_from_slice(bytes);
        } else {
            self.overflow(bytes);
        }
    }

    fn overflow(&mut self, bytes: &[u8]) {
        let w = self.window;
        let mut tail = Vec::with_capacity(2 * w);
        if bytes.len() >= w {
            tail.extend_from_slice(bytes.get(bytes.len() - w..).unwrap_or_default());
        } else {
            let from_buf = w - bytes.len();
            tail.extend_from_slice(
                self.buf
                    .get(self.buf.len().saturating_sub(from_buf)..)
                    .unwrap_or_default(),
            );
            tail.extend_from_slice(bytes);
        }
        if self.buf.len() < w {
            let take = (w - self.buf.len()).min(bytes.len());
            self.buf
                .extend_from_slice(bytes.get(..take).unwrap_or_default());
        }
        self.buf.truncate(w);
        self.buf.shrink_to(w);
        self.tail = tail;
        self.overflowed = true;
    }

    fn push_tail(&mut self, bytes: &[u8]) {
        let w = self.window;
        if bytes.len() >= w {
            self.tail.clear();
            self.tail
                .extend_from_slice(bytes.get(bytes.len() - w..).unwrap_or_default());
            return;
        }
        if self.tail.len() + bytes.len() > 2 * w {
            let drop = self.tail.len() + bytes.len() - w;
            self.tail.drain(..drop.min(self.tail.len()));
        }
        self.tail.extend_from_slice(bytes);
    }

    /// The whole document, unless it passed the cap.
    pub fn whole(&self) -> Option<&[u8]> {
        (!self.overflowed).then_some(self.buf.as_slice())
    }

    /// Parses the captured document as `T` (see the module docs for oversized bodies).
    pub fn parse<T: DeserializeOwned>(&self) -> Option<Extracted<T>> {
        if !self.overflowed {
            if let Ok(value) = serde_json::from_slice(&self.buf) {
                return Some(Extracted {
                    value,
                    complete: true,
                });
            }
            // Truncated or broken: salvage the members that are intact (e.g. `model`).
            let members = head_members(&self.buf);
            return parse_members(&self.buf, &members, &[], &[]).map(|value| Extracted {
                value,
                complete: false,
            });
        }
        // `tail` holds between one and two windows, depending on how the body was chunked;
        // only its last window is read, so the result depends on the bytes alone.
        let window = self
            .tail
            .get(self.tail.len().saturating_sub(self.window)..)
            .unwrap_or_default();
        let head = head_members(&self.buf);
        let (tail, closed) = tail_members(window);
        parse_members(&self.buf, &head, window, &tail).map(|value| Extracted {
            value,
            complete: closed,
        })
    }
}

/// A top-level member: byte ranges of its key (quotes included) and of its value.
type Member = (std::ops::Range<usize>, std::ops::Range<usize>);

/// Re-assembles the members (head first; a key seen twice keeps its first value) into one
/// object and parses it.
fn parse_members<T: DeserializeOwned>(
    head: &[u8],
    head_members: &[Member],
    tail: &[u8],
    tail_members: &[Member],
) -> Option<T> {
    let mut seen: Vec<&[u8]> = Vec::new();
    let mut doc = Vec::with_capacity(256);
    doc.push(b'{');
    let all = head_members
        .iter()
        .map(|m| (head, m))
        .chain(tail_members.iter().rev().map(|m| (tail, m)));
    for (src, (key, value)) in all {
        let (Some(k), Some(v)) = (src.get(key.clone()), src.get(value.clone())) else {
            continue;
        };
        if seen.contains(&k) {
            continue;
        }
        seen.push(k);
        if doc.len() > 1 {
            doc.push(b',');
        }
        doc.extend_from_slice(k);
        doc.push(b':');
        doc.extend_from_slice(v);
    }
    doc.push(b'}');
    serde_json::from_slice(&doc).ok()
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn skip_ws(s: &[u8], mut i: usize) -> usize {
    while s.get(i).is_some_and(|&b| is_ws(b)) {
        i += 1;
    }
    i
}

/// `s[i]` is an opening quote: index just past the closing one.
fn string_end(s: &[u8], mut i: usize) -> Option<usize> {
    i += 1;
    loop {
        match s.get(i)? {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
}

/// Index just past the JSON value starting at `s[i]`, if it ends inside `s`.
fn value_end(s: &[u8], i: usize) -> Option<usize> {
    match s.get(i)? {
        b'"' => string_end(s, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match s.get(j)? {
                    b'"' => {
                        j = string_end(s, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.checked_sub(1)?;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            let mut j = i;
            while s
                .get(j)
                .is_some_and(|&b| !is_ws(b) && !matches!(b, b',' | b'}' | b']'))
            {
                j += 1;
            }
            // A scalar running into the end of the window may be cut short.
            (j > i && j < s.len()).then_some(j)
        }
    }
}

/// The top-level members that lie entirely inside `s`, which starts at the document start.
fn head_members(s: &[u8]) -> Vec<Member> {
    let mut out = Vec::new();
    let mut i = skip_ws(s, 0);
    if s.get(i) != Some(&b'{') {
        return out;
    }
    i += 1;
    loop {
        i = skip_ws(s, i);
        if s.get(i) != Some(&b'"') {
            return out;
        }
        let Some(key_end) = string_end(s, i) else {
            return out;
        };
        let key = i..key_end;
        i = skip_ws(s, key_end);
        if s.get(i) != Some(&b':') {
            return out;
        }
        i = skip_ws(s, i + 1);
        let Some(end) = value_end(s, i) else {
            return out;
        };
        out.push((key, i..end));
        i = skip_ws(s, end);
        if s.get(i) != Some(&b',') {
            return out;
        }
        i += 1;
    }
}

fn skip_ws_back(s: &[u8], mut end: usize) -> usize {
    while end > 0 && s.get(end - 1).is_some_and(|&b| is_ws(b)) {
        end -= 1;
    }
    end
}

/// True when the `"` at `s[q]` is a delimiter (preceded by an even run of backslashes).
/// `None` when the run reaches the window start, where the parity is unknown.
fn quote_is_delimiter(s: &[u8], q: usize) -> Option<bool> {
    let mut n = 0;
    let mut i = q;
    while i > 0 && s.get(i - 1) == Some(&b'\\') {
        n += 1;
        i -= 1;
    }
    if i == 0 && n > 0 {
        return None;
    }
    Some(n % 2 == 0)
}

/// `s[close]` is a string's closing quote: index of its opening quote.
fn string_start_back(s: &[u8], close: usize) -> Option<usize> {
    let mut i = close;
    loop {
        i = i.checked_sub(1)?;
        if s.get(i) == Some(&b'"') && quote_is_delimiter(s, i)? {
            // The nearest delimiter before a closing quote is its opening quote.
            return Some(i);
        }
    }
}

/// Start of the JSON value that ends just before `end`.
fn value_start_back(s: &[u8], end: usize) -> Option<usize> {
    let last = end.checked_sub(1)?;
    match s.get(last)? {
        b'"' => string_start_back(s, last),
        b'}' | b']' => {
            let mut depth = 0usize;
            let mut i = end;
            loop {
                i = i.checked_sub(1)?;
                match s.get(i)? {
                    b'"' => i = string_start_back(s, i)?,
                    b'}' | b']' => depth += 1,
                    b'{' | b'[' => {
                        depth = depth.checked_sub(1)?;
                        if depth == 0 {
                            return Some(i);
                        }
                    }
                    _ => {}
                }
            }
        }
        _ => {
            let mut i = end;
            while i > 0
                && s.get(i - 1)
                    .is_some_and(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'+' | b'-'))
            {
                i -= 1;
            }
            // Reaching the window start means the scalar may have begun before it.
            (i > 0 && i < end).then_some(i)
        }
    }
}

/// The top-level members that lie entirely inside `s`, which ends at the document end,
/// last member first; and whether the document's closing brace was found.
fn tail_members(s: &[u8]) -> (Vec<Member>, bool) {
    let mut out = Vec::new();
    let end = skip_ws_back(s, s.len());
    let Some(close) = end.checked_sub(1).filter(|&c| s.get(c) == Some(&b'}')) else {
        return (out, false);
    };
    let mut j = close;
    loop {
        j = skip_ws_back(s, j);
        let Some(v_start) = value_start_back(s, j) else {
            break;
        };
        let value = v_start..j;
        let k = skip_ws_back(s, v_start);
        if k == 0 || s.get(k - 1) != Some(&b':') {
            break;
        }
        let k = skip_ws_back(s, k - 1);
        if k == 0 || s.get(k - 1) != Some(&b'"') {
            break;
        }
        let Some(key_start) = string_start_back(s, k - 1) else {
            break;
        };
        out.push((key_start..k, value));
        let before = skip_ws_back(s, key_start);
        if before == 0 || s.get(before - 1) != Some(&b',') {
            break;
        }
        j = before - 1;
    }
    (out, true)
}

/// A response body type a [`JsonBodyParser`] can read usage from.
pub trait ResponseBody: DeserializeOwned {
    /// Usage, model, tier and cost found in the body; `complete` is set by the caller.
    fn into_parsed(self) -> ParsedUsage;

    /// The body read from a whole document without serde, or `None` to leave it to serde
    /// (see [`super::json_reader`]). Must give serde's answer wherever it gives one.
    fn read_fast(_doc: &[u8]) -> Option<Self> {
        None
    }
}

/// Reads usage from a non-streamed JSON body of type `B`, with bounded memory.
/// `complete` is true when the body parsed (see [`Extracted::complete`]).
pub struct JsonBodyParser<B> {
    body: BoundedJson,
    _body: PhantomData<fn() -> B>,
}

impl<B: ResponseBody> JsonBodyParser<B> {
    pub fn new(max_body_bytes: usize) -> Self {
        JsonBodyParser {
            body: BoundedJson::new(max_body_bytes),
            _body: PhantomData,
        }
    }

    /// Bytes of memory held, for tests and accounting.
    pub fn retained_bytes(&self) -> usize {
        self.body.retained_bytes()
    }
}

impl<B: ResponseBody> UsageParser for JsonBodyParser<B> {
    fn feed(&mut self, chunk: &[u8]) {
        self.body.push(chunk);
    }

    fn finish(&mut self) -> ParsedUsage {
        if let Some(value) = self.body.whole().and_then(B::read_fast) {
            self.body.clear();
            return ParsedUsage {
                complete: true,
                ..value.into_parsed()
            };
        }
        let parsed = match self.body.parse::<B>() {
            Some(Extracted { value, complete }) => ParsedUsage {
                complete,
                ..value.into_parsed()
            },
            None => ParsedUsage::default(),
        };
        self.body.clear();
        parsed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::Deserialize;

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(default)]
    struct Probe {
        model: Option<String>,
        usage: Option<serde_json::Map<String, serde_json::Value>>,
        n: Option<f64>,
    }

    fn capture(max: usize, doc: &[u8], chunk: usize) -> BoundedJson {
        let mut b = BoundedJson::new(max);
        for c in doc.chunks(chunk.max(1)) {
            b.push(c);
        }
        b
    }

    #[test]
    fn small_bodies_parse_whole() {
        let doc = br#"{"model":"m","usage":{"a":1}}"#;
        let got = capture(1024, doc, 3).parse::<Probe>().unwrap();
        assert!(got.complete);
        assert_eq!(got.value.model.as_deref(), Some("m"));
    }

    #[test]
    fn big_bodies_keep_head_and_tail_members() {
        let filler = "x\\\"}{][".repeat(4000);
        let doc = format!(
            r#"{{"model" : "m1", "data":["{filler}", {{"k":"{filler}"}}], "n": 12.5 ,"usage":{{"a":"}}\\\\","b":[1,{{"c":2}}]}} }}  "#
        );
        for chunk in [1, 7, 1000, doc.len()] {
            let b = capture(2000, doc.as_bytes(), chunk);
            assert!(b.retained_bytes() <= 4000, "{}", b.retained_bytes());
            let got = b.parse::<Probe>().unwrap();
            assert!(got.complete);
            assert_eq!(got.value.model.as_deref(), Some("m1"));
            assert_eq!(got.value.n, Some(12.5));
            let usage = got.value.usage.unwrap();
            assert_eq!(usage["a"], "}\\\\");
        }
    }

    #[test]
    fn truncated_bodies_salvage_head_members() {
        let got = capture(1024, br#"{"model":"m","usage":{"a":1"#, 5)
            .parse::<Probe>()
            .unwrap();
        assert!(!got.complete);
        assert_eq!(got.value.model.as_deref(), Some("m"));
        assert_eq!(got.value.usage, None);
    }

    #[test]
    fn tail_members_stop_at_window_start() {
        // The window starts inside a string: the walk must not misread it.
        let (members, closed) = tail_members(br#"c", "usage":{"a":"q"}}"#);
        assert!(closed);
        assert_eq!(members.len(), 1);
        let (members, _) = tail_members(br#"\"x", "b":1}"#);
        assert_eq!(members.len(), 1);
        let (members, _) = tail_members(br#"\\"x", "b":1}"#);
        assert_eq!(members.len(), 1);
    }

    proptest! {
        #[test]
        fn any_bytes_any_cap_never_panic(
            doc in proptest::collection::vec(any::<u8>(), 0..400),
            max in 0usize..200,
            chunk in 1usize..50,
        ) {
            let b = capture(max, &doc, chunk);
            let _ = b.parse::<Probe>();
            let _ = tail_members(&doc);
            let _ = head_members(&doc);
        }

        #[test]
        fn json_like_bytes_never_panic(
            doc in "[{}\\[\\]\",:\\\\ a1]{0,200}",
            max in 0usize..200,
        ) {
            let b = capture(max, doc.as_bytes(), 13);
            let _ = b.parse::<Probe>();
            let _ = tail_members(doc.as_bytes());
        }
    }
}
