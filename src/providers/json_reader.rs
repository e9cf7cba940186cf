//! A strict, allocation-free JSON pull reader for the few members metering reads.
//!
//! serde's derive spends most of a small parse on per-key work (each key decoded, checked
//! and matched by string compare) and on dispatching each value through a visitor. This
//! reader hands out raw key bytes and reads plain values in place.
//!
//! It answers only for the plain shape. Anything it is unsure of (an escaped key, a member
//! repeated, deep nesting) makes it decline: the method returns `None`, and the caller
//! parses the whole document with serde instead. An odd value inside a plain document (a
//! float where a count belongs, an escaped string) goes to serde on its own bytes
//! ([`Reader::serde`]), which gives the same answer as serde reading it in place. Where it
//! does answer, it is at least as strict as serde_json: RFC 8259 grammar, valid escapes, no
//! control characters in strings, UTF-8 wherever serde checks it (keys of the objects read
//! here and strings handed out). So a document it accepts, serde accepts too, with the same
//! values; property tests in the callers check exactly that.

/// Deepest nesting followed inside a skipped value before declining: it bounds the
/// recursion, and declining is always safe.
const MAX_DEPTH: u32 = 64;

/// The members of one object read so far. serde's derive fails on a repeated field
/// (aliases included), so a reader declines on one: `seen.first(field)?`.
#[derive(Default)]
pub struct Seen(u32);

impl Seen {
    /// `Some` the first time `field` (0..32) is met, `None` after.
    pub fn first(&mut self, field: u32) -> Option<()> {
        let mask = 1u32.checked_shl(field)?;
        (self.0 & mask == 0).then(|| self.0 |= mask)
    }
}

/// A cursor over one JSON document.
pub struct Reader<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Reader<'a> {
    pub fn new(s: &'a [u8]) -> Reader<'a> {
        Reader { s, i: 0 }
    }

    /// The next non-whitespace byte, not consumed.
    fn peek(&mut self) -> Option<u8> {
        loop {
            let b = *self.s.get(self.i)?;
            if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                return Some(b);
            }
            self.i += 1;
            // Pretty-printed bodies (OpenAI's, Gemini's) indent each line.
            if b == b'\n' {
                self.i = skip_spaces(self.s, self.i);
            }
        }
    }

    fn eat(&mut self, b: u8) -> Option<()> {
        (self.peek()? == b).then(|| self.i += 1)
    }

    /// Only whitespace is left.
    pub fn end(&mut self) -> Option<()> {
        self.peek().is_none().then_some(())
    }

    /// Reads the object at the cursor, calling `member(key, self)` with the cursor on each
    /// value; `member` must consume the value (read it or [`Reader::skip`] it). Keys with
    /// escapes decline, since serde would match them unescaped.
    pub fn object(
        &mut self,
        mut member: impl FnMut(&'a [u8], &mut Reader<'a>) -> Option<()>,
    ) -> Option<()> {
        self.eat(b'{')?;
        self.items(b'}', |r| {
            if r.peek()? != b'"' {
                return None;
            }
            let (key, escaped) = r.string()?;
            // serde decodes the keys of the objects it reads, checking their UTF-8.
            if escaped || (!key.is_ascii() && std::str::from_utf8(key).is_err()) {
                return None;
            }
            r.eat(b':')?;
            member(key, r)
        })
    }

    /// Reads the array at the cursor, calling `item(self)` with the cursor on each element;
    /// `item` must consume it.
    pub fn array(&mut self, item: impl FnMut(&mut Reader<'a>) -> Option<()>) -> Option<()> {
        self.eat(b'[')?;
        self.items(b']', item)
    }

    /// The comma-separated items of an array or object up to its `close` byte (the opening
    /// one is already consumed), each read by `item`.
    fn items(
        &mut self,
        close: u8,
        mut item: impl FnMut(&mut Reader<'a>) -> Option<()>,
    ) -> Option<()> {
        if self.peek()? == close {
            self.i += 1;
            return Some(());
        }
        loop {
            item(self)?;
            match self.peek()? {
                b',' => self.i += 1,
                b if b == close => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// `true` when the value at the cursor is `null` (and consumes it).
    pub fn null(&mut self) -> Option<bool> {
        if self.peek()? != b'n' {
            return Some(false);
        }
        self.literal(b"null")?;
        Some(true)
    }

    /// An `Option<IgnoredAny>` member as serde reads it: `None` for `null`, else the value
    /// skipped and `Some`.
    pub fn ignored(&mut self) -> Option<Option<serde::de::IgnoredAny>> {
        if self.null()? {
            return Some(None);
        }
        self.skip()?;
        Some(Some(serde::de::IgnoredAny))
    }

    /// A `true` or `false` at the cursor; anything else declines.
    pub fn bool(&mut self) -> Option<bool> {
        match self.peek()? {
            b't' => self.literal(b"true").map(|()| true),
            b'f' => self.literal(b"false").map(|()| false),
            _ => None,
        }
    }

    /// A string without escapes at the cursor, checked as UTF-8. On `None` the cursor has
    /// not moved, so the value can be read another way.
    pub fn str(&mut self) -> Option<&'a str> {
        if self.peek()? != b'"' {
            return None;
        }
        let start = self.i;
        let plain = match self.string() {
            Some((raw, false)) => std::str::from_utf8(raw).ok(),
            _ => None,
        };
        if plain.is_none() {
            self.i = start;
        }
        plain
    }

    /// A plain non-negative integer that fits in a `u64`. Negative, fractional, exponent
    /// and oversized numbers are not read (serde turns those into other values): `None`,
    /// with the cursor where it was.
    pub fn u64(&mut self) -> Option<u64> {
        self.peek()?;
        let start = self.i;
        let mut n: u64 = 0;
        let mut end = start;
        while let Some(&b) = self.s.get(end).filter(|b| b.is_ascii_digit()) {
            n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
            end += 1;
        }
        let digits = end - start;
        // A leading zero is only allowed alone; a fraction or exponent is not ours to read.
        let plain = digits == 1 || (digits > 1 && self.s.get(start) != Some(&b'0'));
        let next = self.s.get(end).copied();
        let read = plain && !matches!(next, Some(b'.' | b'e' | b'E'));
        if read {
            self.i = end;
        }
        read.then_some(n)
    }

    /// The value at the cursor parsed by serde on its own bytes: the same answer as serde
    /// gives for it inside the document, for the odd shapes not worth reading by hand.
    pub fn serde<T: serde::Deserialize<'a>>(&mut self) -> Option<T> {
        self.peek()?;
        let start = self.i;
        self.skip()?;
        serde_json::from_slice(self.s.get(start..self.i)?).ok()
    }

    /// Skips any one value, checking its grammar.
    pub fn skip(&mut self) -> Option<()> {
        self.skip_at(0)
    }

    fn skip_at(&mut self, depth: u32) -> Option<()> {
        match self.peek()? {
            b'"' => self.skip_string().map(drop),
            b'{' | b'[' if depth >= MAX_DEPTH => None,
            b'{' => {
                self.i += 1;
                self.items(b'}', |r| {
                    if r.peek()? != b'"' {
                        return None;
                    }
                    r.skip_string()?;
                    r.eat(b':')?;
                    r.skip_at(depth + 1)
                })
            }
            b'[' => {
                self.i += 1;
                self.items(b']', |r| r.skip_at(depth + 1))
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.i + word.len();
        (self.s.get(self.i..end)? == word).then(|| self.i = end)
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    fn number(&mut self) -> Option<()> {
        if self.s.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        match self.s.get(self.i)? {
            b'0' => self.i += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.s.get(self.i) == Some(&b'.') {
            self.i += 1;
            self.some_digits()?;
        }
        if matches!(self.s.get(self.i), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.s.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            self.some_digits()?;
        }
        Some(())
    }

    fn digits(&mut self) {
        while self.s.get(self.i).is_some_and(u8::is_ascii_digit) {
            self.i += 1;
        }
    }

    fn some_digits(&mut self) -> Option<()> {
        let start = self.i;
        self.digits();
        (self.i > start).then_some(())
    }

    /// The string at the cursor (on its opening quote): its raw bytes between the quotes,
    /// and whether it holds escapes. Escapes are checked as serde does (`\u` takes four hex
    /// digits; surrogates are not paired up, as serde does not for strings it skips).
    fn string(&mut self) -> Option<(&'a [u8], bool)> {
        let start = self.i + 1;
        let (end, escaped) = self.skip_string()?;
        Some((self.s.get(start..end)?, escaped))
    }

    /// Moves past the string at the cursor; returns where its closing quote is and whether
    /// it holds escapes.
    fn skip_string(&mut self) -> Option<(usize, bool)> {
        let start = self.i + 1;
        let mut i = start;
        let mut escaped = false;
        loop {
            i = next_special(self.s, i)?;
            match self.s.get(i)? {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    i += match self.s.get(i + 1)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => 2,
                        b'u' if self.s.get(i + 2..i + 6)?.iter().all(u8::is_ascii_hexdigit) => 6,
                        _ => return None,
                    };
                }
                // A control character: not allowed raw in a JSON string.
                _ => return None,
            }
        }
        self.i = i + 1;
        Some((i, escaped))
    }
}

/// Index of the first byte at or after `i` that is not a space, eight bytes at a time.
pub fn skip_spaces(s: &[u8], mut i: usize) -> usize {
    const SPACES: u64 = u64::from_ne_bytes([b' '; 8]);
    while let Some(word) = s.get(i..i + 8) {
        let Ok(word) = <[u8; 8]>::try_from(word) else {
            break;
        };
        let other = u64::from_le_bytes(word) ^ SPACES;
        if other != 0 {
            return i + (other.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while s.get(i) == Some(&b' ') {
        i += 1;
    }
    i
}

/// Index of the first `"`, `\` or control character at or after `i`, eight bytes at a time.
///
/// For each test, `(v - 0x01..) & !v & 0x80..` flags the bytes where `v` is zero (or, for
/// the control test, below 0x20). A borrow can flag a byte above a true hit, never below
/// one, so the lowest flag of the three is always a true hit.
fn next_special(s: &[u8], mut i: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    const QUOTE: u64 = ONES * b'"' as u64;
    const BACKSLASH: u64 = ONES * b'\\' as u64;
    const SPACE: u64 = ONES * 0x20;
    while let Some(word) = s.get(i..i + 8) {
        let v = u64::from_le_bytes(word.try_into().ok()?);
        let q = v ^ QUOTE;
        let b = v ^ BACKSLASH;
        let hits = ((q.wrapping_sub(ONES) & !q)
            | (b.wrapping_sub(ONES) & !b)
            | (v.wrapping_sub(SPACE) & !v))
            & HIGH;
        if hits != 0 {
            return Some(i + (hits.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    while let Some(&b) = s.get(i) {
        if b == b'"' || b == b'\\' || b < 0x20 {
            return Some(i);
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Whether the reader accepts `doc` as one value and nothing else.
    fn accepts(doc: &[u8]) -> bool {
        let mut r = Reader::new(doc);
        r.skip().and_then(|()| r.end()).is_some()
    }

    #[test]
    fn grammar() {
        for ok in [
            &br#"{"a":[1,-2.5e+3,0,true,false,null,"x\"\\\u00e9"],"b":{}}"#[..],
            b" [ ] ",
            b"-0.0E-0",
            "\"caf\u{e9}\"".as_bytes(),
        ] {
            assert!(accepts(ok), "{}", String::from_utf8_lossy(ok));
        }
        for bad in [
            &b"{"[..],
            b"[1,]",
            b"{\"a\" 1}",
            b"{\"a\":1,}",
            b"01",
            b"1.",
            b"-",
            b"1e",
            b"tru",
            b"nul",
            b"\"a\x01\"",
            b"\"\\x\"",
            b"\"\\u12g4\"",
            b"\"abc",
            b"{} {}",
            b"[1 2]",
        ] {
            assert!(!accepts(bad), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn seen_answers_once_per_field() {
        let mut seen = Seen::default();
        assert_eq!(seen.first(0), Some(()));
        assert_eq!(seen.first(31), Some(()));
        assert_eq!(seen.first(0), None);
        assert_eq!(seen.first(31), None);
        assert_eq!(seen.first(32), None);
    }

    #[test]
    fn array_hands_out_each_element() {
        let mut n = Vec::new();
        let mut r = Reader::new(b" [1, 2 ,3] ");
        let read = r.array(|r| r.u64().map(|v| n.push(v)));
        assert_eq!((read, r.end()), (Some(()), Some(())));
        assert_eq!(n, [1, 2, 3]);
        assert_eq!(Reader::new(b"[]").array(|r| r.skip()), Some(()));
        assert_eq!(Reader::new(b"[1,]").array(|r| r.skip()), None);
        assert_eq!(Reader::new(b"{}").array(|r| r.skip()), None);
    }

    #[test]
    fn deep_nesting_declines() {
        let deep = format!("{}{}", "[".repeat(65), "]".repeat(65));
        assert!(!accepts(deep.as_bytes()));
        let ok = format!("{}{}", "[".repeat(64), "]".repeat(64));
        assert!(accepts(ok.as_bytes()));
    }

    #[test]
    fn u64_reads_only_plain_integers() {
        let read = |s: &str| Reader::new(s.as_bytes()).u64();
        assert_eq!(read("0"), Some(0));
        assert_eq!(read(" 18446744073709551615"), Some(u64::MAX));
        for declined in [
            "18446744073709551616",
            "01",
            "1.0",
            "1e3",
            "-1",
            "\"1\"",
            "",
        ] {
            assert_eq!(read(declined), None, "{declined}");
        }
    }

    #[test]
    fn object_hands_out_keys_and_declines_escaped_ones() {
        let mut keys = Vec::new();
        let mut r = Reader::new(br#"{ "a" : 1 , "b":[2]}"#);
        let read = r.object(|k, r| {
            keys.push(k);
            r.skip()
        });
        assert_eq!(read, Some(()));
        assert_eq!(keys, [&b"a"[..], b"b"]);
        assert_eq!(
            Reader::new(br#"{"\u0061":1}"#).object(|_, r| r.skip()),
            None
        );
        assert_eq!(Reader::new(b"{\"\xff\":1}").object(|_, r| r.skip()), None);
    }

    /// Every special byte is found at every offset, whatever precedes it.
    #[test]
    fn next_special_finds_the_first_hit() {
        for len in 0..20 {
            for pos in 0..len {
                for special in [b'"', b'\\', 0x00, 0x1f] {
                    let mut s = vec![b'a'; len];
                    s[pos] = special;
                    if pos + 1 < len {
                        s[pos + 1] = b'"';
                    }
                    assert_eq!(next_special(&s, 0), Some(pos));
                }
            }
            assert_eq!(next_special(&vec![0xc3; len], 0), None);
        }
    }

    #[test]
    fn skip_spaces_stops_at_the_first_other_byte() {
        for len in 0..20 {
            for pos in 0..=len {
                let mut s = vec![b' '; len];
                if pos < len {
                    s[pos] = b'\n';
                }
                assert_eq!(skip_spaces(&s, 0), pos, "{len} {pos}");
                assert_eq!(skip_spaces(&s, pos), pos);
            }
        }
    }

    proptest! {
        /// Whatever the reader accepts, serde_json accepts too.
        #[test]
        fn accepts_only_what_serde_accepts(doc in r#"[\[\]{}",:\\ \n\t\r\x0bae0-9.\-+tfrulsn\x01]{0,40}"#) {
            if accepts(doc.as_bytes()) {
                prop_assert!(serde_json::from_slice::<serde::de::IgnoredAny>(doc.as_bytes()).is_ok(), "{doc}");
            }
        }

        /// And it accepts what serde_json writes, compact or pretty-printed.
        #[test]
        fn accepts_what_serde_writes(v in json_value()) {
            let doc = serde_json::to_vec(&v).unwrap_or_default();
            prop_assert!(accepts(&doc), "{}", String::from_utf8_lossy(&doc));
            let pretty = serde_json::to_vec_pretty(&v).unwrap_or_default();
            prop_assert!(accepts(&pretty), "{}", String::from_utf8_lossy(&pretty));
        }
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            any::<String>().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(any::<String>(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }
}
