//! Small building blocks shared by the provider wire structs.
//!
//! * [`Count`]: a token count that never fails a parse. Compatible servers send counts as
//!   floats (`45.0`), strings or `null`; one odd field must not cost us a whole usage object.
//! * [`Text`]: a model or tier name; empty strings and odd types read as absent.
//! * [`Decimal`]: a provider-reported USD amount as an exact decimal string (OpenRouter
//!   `usage.cost`), plus [`usd_from_ticks`] for xAI's `cost_in_usd_ticks`.
//! * Byte helpers ([`Needle`], [`has_object_member`]) used to decide cheaply, before any JSON
//!   parse, whether a stream chunk can carry usage at all.

use std::fmt;
use std::sync::OnceLock;

use memchr::memmem;

use super::json_reader::{Reader, Seen};

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A lenient, optional token count. `Count(None)` when absent, `null`, negative or not a number.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Count(pub Option<u64>);

impl Count {
    pub fn get(self) -> Option<u64> {
        self.0
    }

    /// The count, or 0 when the field was absent (providers omit zero counts).
    pub fn or_zero(self) -> u64 {
        self.0.unwrap_or(0)
    }

    /// `other` replaces `self` when it is present (cumulative stream snapshots).
    pub fn overridden_by(self, other: Count) -> Count {
        if other.0.is_some() { other } else { self }
    }
}

struct CountVisitor;

impl<'de> Visitor<'de> for CountVisitor {
    type Value = Count;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a token count")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Count, E> {
        Ok(Count(Some(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Count, E> {
        Ok(Count(u64::try_from(v).ok()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Count, E> {
        // `as` saturates for floats; fractional token counts do not exist, truncate.
        Ok(Count((v.is_finite() && v >= 0.0).then_some(v as u64)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Count, E> {
        Ok(Count(v.trim().parse().ok()))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Count, E> {
        Ok(Count(None))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Count, E> {
        Ok(Count(None))
    }

    fn visit_none<E: de::Error>(self) -> Result<Count, E> {
        Ok(Count(None))
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Count, D::Error> {
        d.deserialize_any(CountVisitor)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Count, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Count(None))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Count, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Count(None))
    }
}

impl Count {
    /// The count at `r` (see [`super::json_reader`]): plain integers and `null` by hand,
    /// other shapes by serde.
    pub fn read(r: &mut Reader<'_>) -> Option<Count> {
        if r.null()? {
            return Some(Count(None));
        }
        match r.u64() {
            Some(n) => Some(Count(Some(n))),
            None => r.serde(),
        }
    }

    /// An object of counts (or `null`) at `r`, `names[i]` read into the `i`-th, as serde's
    /// derive reads a `#[serde(default)]` struct of `Count`s: other members skipped, a
    /// repeated one (or any other shape, such as the array form) declines.
    pub fn read_all<const N: usize>(
        r: &mut Reader<'_>,
        names: [&[u8]; N],
    ) -> Option<Option<[Count; N]>> {
        if r.null()? {
            return Some(None);
        }
        let mut counts = [Count(None); N];
        let mut seen = Seen::default();
        r.object(|key, r| match names.iter().position(|n| *n == key) {
            Some(i) => {
                seen.first(u32::try_from(i).ok()?)?;
                *counts.get_mut(i)? = Count::read(r)?;
                Some(())
            }
            None => r.skip(),
        })?;
        Some(Some(counts))
    }
}

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Count, D::Error> {
        d.deserialize_any(CountVisitor)
    }
}

/// A lenient optional string (model names, tiers): `Text(None)` unless the value is a
/// non-empty JSON string. Azure's stream preamble sends `"model": ""`, which must not count.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Text(pub Option<String>);

impl Text {
    pub fn into_inner(self) -> Option<String> {
        self.0
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Text;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
        Ok(Text((!v.is_empty()).then(|| v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Text, E> {
        Ok(Text((!v.is_empty()).then_some(v)))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Text, E> {
        Ok(Text(None))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Text, E> {
        Ok(Text(None))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Text, E> {
        Ok(Text(None))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Text, E> {
        Ok(Text(None))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Text, E> {
        Ok(Text(None))
    }

    fn visit_none<E: de::Error>(self) -> Result<Text, E> {
        Ok(Text(None))
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Text, D::Error> {
        d.deserialize_any(TextVisitor)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Text, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Text(None))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Text, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Text(None))
    }
}

impl Text {
    /// The name at `r` (see [`super::json_reader`]): strings without escapes by hand, other
    /// shapes by serde.
    pub fn read(r: &mut Reader<'_>) -> Option<Text> {
        match r.str() {
            Some(s) => Some(Text((!s.is_empty()).then(|| s.to_owned()))),
            None => r.serde(),
        }
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Text, D::Error> {
        d.deserialize_any(TextVisitor)
    }
}

/// A non-negative USD amount as a plain decimal string (no exponent), or `None` when the
/// field is absent or unusable. Accepts a JSON number or a decimal string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decimal(pub Option<String>);

struct DecimalVisitor;

impl<'de> Visitor<'de> for DecimalVisitor {
    type Value = Decimal;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a decimal amount")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Decimal, E> {
        Ok(Decimal(Some(v.to_string())))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Decimal, E> {
        Ok(Decimal(u64::try_from(v).ok().map(|v| v.to_string())))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Decimal, E> {
        Ok(Decimal(decimal_from_f64(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Decimal, E> {
        let v = v.trim();
        let plain = !v.is_empty()
            && v.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            && v.bytes().filter(|&b| b == b'.').count() <= 1
            && v.bytes().any(|b| b.is_ascii_digit());
        Ok(Decimal(plain.then(|| v.to_owned())))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Decimal, E> {
        Ok(Decimal(None))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Decimal, E> {
        Ok(Decimal(None))
    }

    fn visit_none<E: de::Error>(self) -> Result<Decimal, E> {
        Ok(Decimal(None))
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Decimal, D::Error> {
        d.deserialize_any(DecimalVisitor)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Decimal, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Decimal(None))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Decimal, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Decimal(None))
    }
}

impl<'de> Deserialize<'de> for Decimal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
        d.deserialize_any(DecimalVisitor)
    }
}

/// Most fractional digits we emit: femto-dollars, the resolution of `pricing::Money`.
const MAX_FRACTION_DIGITS: usize = 15;

/// Formats a JSON-parsed amount as a plain decimal string.
///
/// serde_json (without `float_roundtrip`) may land one ULP off the literal, so the value is
/// rounded to 15 significant digits first: that recovers the literal exactly whenever it had
/// at most 15 significant digits (every realistic cost). At most 15 fractional digits are
/// emitted. Negative and non-finite values yield `None`.
pub fn decimal_from_f64(v: f64) -> Option<String> {
    if !v.is_finite() || v < 0.0 {
        return None;
    }
    if v == 0.0 {
        return Some("0".to_owned());
    }
    // "d.dddddddddddddde-x": 15 significant digits and a decimal exponent.
    let sci = format!("{v:.14e}");
    let (mantissa, exp) = sci.split_once('e')?;
    let exp: i32 = exp.parse().ok()?;
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let digits = digits.trim_end_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    // Value = 0.DIGITS * 10^(exp + 1).
    let point = exp + 1;
    let out = if point <= 0 {
        let zeros = usize::try_from(-point).ok()?;
        format!("0.{}{}", "0".repeat(zeros), digits)
    } else {
        let point = usize::try_from(point).ok()?;
        if digits.len() <= point {
            format!("{}{}", digits, "0".repeat(point - digits.len()))
        } else {
            format!("{}.{}", &digits[..point], &digits[point..])
        }
    };
    let fraction_len = out.split_once('.').map_or(0, |(_, f)| f.len());
    if fraction_len <= MAX_FRACTION_DIGITS {
        return Some(out);
    }
    let fixed = format!("{v:.15}");
    let fixed = fixed.trim_end_matches('0').trim_end_matches('.');
    Some(if fixed.is_empty() {
        "0".to_owned()
    } else {
        fixed.to_owned()
    })
}

/// xAI bills in ticks of 1e-10 USD (`usage.cost_in_usd_ticks`): exact decimal USD string.
/// `248250000` → `"0.024825"`.
pub fn usd_from_ticks(ticks: u64) -> String {
    const TICKS_PER_USD: u64 = 10_000_000_000;
    let whole = ticks / TICKS_PER_USD;
    let frac = ticks % TICKS_PER_USD;
    if frac == 0 {
        return whole.to_string();
    }
    let frac = format!("{frac:010}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

/// A fixed byte string searched for in every stream chunk, with memchr's searcher
/// (a SIMD prefilter on the needle's rarer bytes) built once: building one costs more
/// than a search of a typical chunk. A naive scan, which stopped at every `"` (the first
/// byte of every key we look for, and JSON's most common byte), cost ~8k instructions
/// per chunk.
pub struct Needle {
    bytes: &'static [u8],
    finder: OnceLock<memmem::Finder<'static>>,
}

impl Needle {
    pub const fn new(bytes: &'static [u8]) -> Needle {
        Needle {
            bytes,
            finder: OnceLock::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Position of the first occurrence in `hay` (none for an empty needle).
    pub fn find_in(&self, hay: &[u8]) -> Option<usize> {
        if self.bytes.is_empty() {
            return None;
        }
        self.finder
            .get_or_init(|| memmem::Finder::new(self.bytes))
            .find(hay)
    }
}

/// `"usage"`, `"error"`: the member keys of stream chunks that can carry what we meter.
pub static USAGE_KEY: Needle = Needle::new(b"\"usage\"");
pub static ERROR_KEY: Needle = Needle::new(b"\"error\"");

/// True when `json` contains the member key `key` (given with its quotes, e.g. `"\"usage\""`)
/// followed by `:` and an object value. Cheap pre-filter before a JSON parse: in valid JSON
/// an unescaped `"usage"` followed by `:` can only be a member key (quotes inside strings
/// are escaped), so a `false` answer is exact for the keys we look for.
pub fn has_object_member(json: &[u8], key: &Needle) -> bool {
    let mut from = 0;
    while let Some(at) = json.get(from..).and_then(|rest| key.find_in(rest)) {
        let at = from + at;
        if object_follows(json, at + key.len()) {
            return true;
        }
        from = at + 1;
    }
    false
}

/// Whether `json[at..]` is `:` then an object, whitespace allowed around the colon.
fn object_follows(json: &[u8], at: usize) -> bool {
    let mut rest = json.get(at..).unwrap_or_default().iter();
    let next = rest.by_ref().find(|b| !b.is_ascii_whitespace());
    next == Some(&b':') && rest.find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

/// Several member keys with an object value, looked for in one pass over a chunk: from
/// each `{` back to a key, since a content chunk has few braces and neither key. Two
/// [`Needle`] searches scanned every such chunk twice (~650 instructions a chunk).
pub struct MemberKeys {
    keys: &'static [&'static Needle],
}

impl MemberKeys {
    pub const fn new(keys: &'static [&'static Needle]) -> MemberKeys {
        MemberKeys { keys }
    }

    /// [`has_object_member`] for any of the keys: the same byte pattern (key, `:`, `{`,
    /// whitespace between), found from its other end.
    pub fn any_object_member(&self, json: &[u8]) -> bool {
        memchr::memchr_iter(b'{', json).any(|open| {
            let before = json.get(..open).unwrap_or_default().trim_ascii_end();
            before.strip_suffix(b":").is_some_and(|before| {
                let before = before.trim_ascii_end();
                self.keys
                    .iter()
                    .any(|k| !k.is_empty() && before.ends_with(k.bytes))
            })
        })
    }
}

/// The keys of an OpenAI-shaped stream chunk worth a parse.
pub static USAGE_OR_ERROR: MemberKeys = MemberKeys::new(&[&USAGE_KEY, &ERROR_KEY]);

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn member_keys_find_either_key_with_an_object_value() {
        let long = format!("{{\"content\":\"{}\",\"usage\":null", "x".repeat(200));
        for (json, want) in [
            (r#"{"usage":{"a":1}}"#.to_owned(), true),
            (r#"{"error" : {"message":"x"}}"#.to_owned(), true),
            (r#"{"usage":null,"error":null}"#.to_owned(), false),
            // Overlapping keys: the second starts at the first one's closing quote.
            (r#"["usage"error":{}]"#.to_owned(), true),
            (format!("{long}}}"), false),
            (format!(r#"{long},"error":{{}}}}"#), true),
            (String::new(), false),
        ] {
            assert_eq!(
                USAGE_OR_ERROR.any_object_member(json.as_bytes()),
                want,
                "{json}"
            );
        }
    }

    proptest! {
        /// One pass for both keys answers exactly as one search per key.
        #[test]
        fn member_keys_agree_with_one_search_per_key(
            parts in prop::collection::vec(
                prop_oneof![
                    Just("\"usage\""), Just("\"error\""), Just(":"), Just(" "), Just("{"),
                    Just("null"), Just("\""), Just("xxxxxxxxxxxxxxxx"), Just("\n\t"), Just("\x0c"),
                    Just("}"),
                ],
                0..60,
            )
        ) {
            let json = parts.concat();
            let want = has_object_member(json.as_bytes(), &USAGE_KEY)
                || has_object_member(json.as_bytes(), &ERROR_KEY);
            prop_assert_eq!(USAGE_OR_ERROR.any_object_member(json.as_bytes()), want);
        }
    }

    #[test]
    fn counts_are_lenient() {
        #[derive(serde::Deserialize)]
        struct W {
            #[serde(default)]
            a: Count,
        }
        let cases = [
            (r#"{"a":5}"#, Some(5)),
            (r#"{"a":5.0}"#, Some(5)),
            (r#"{"a":"7"}"#, Some(7)),
            (r#"{"a":-1}"#, None),
            (r#"{"a":null}"#, None),
            (r#"{"a":[1,2]}"#, None),
            (r#"{"a":{"b":1}}"#, None),
            (r#"{}"#, None),
        ];
        for (json, want) in cases {
            let w: W = serde_json::from_str(json).unwrap();
            assert_eq!(w.a.get(), want, "{json}");
        }
    }

    #[test]
    fn decimals_are_exact() {
        let cases = [
            (0.0058704, "0.0058704"),
            (0.024825, "0.024825"),
            (1.0, "1"),
            (0.0, "0"),
            (123.456, "123.456"),
            (1e-10, "0.0000000001"),
            (12345678.9, "12345678.9"),
            (1.5e20, "150000000000000000000"),
            (1.234_567_890_123e-5, "0.000012345678901"),
        ];
        for (v, want) in cases {
            assert_eq!(decimal_from_f64(v).as_deref(), Some(want), "{v}");
        }
        assert_eq!(decimal_from_f64(-1.0), None);
        assert_eq!(decimal_from_f64(f64::NAN), None);
        let parsed: Decimal = serde_json::from_str("0.0058704").unwrap();
        assert_eq!(parsed.0.as_deref(), Some("0.0058704"));
        let parsed: Decimal = serde_json::from_str("\"0.5\"").unwrap();
        assert_eq!(parsed.0.as_deref(), Some("0.5"));
        let parsed: Decimal = serde_json::from_str("\"1e5\"").unwrap();
        assert_eq!(parsed.0, None);
    }

    #[test]
    fn ticks_to_usd() {
        assert_eq!(usd_from_ticks(248_250_000), "0.024825");
        assert_eq!(usd_from_ticks(0), "0");
        assert_eq!(usd_from_ticks(10_000_000_000), "1");
        assert_eq!(usd_from_ticks(12_500_000_001), "1.2500000001");
    }

    #[test]
    fn object_member_probe() {
        assert!(has_object_member(br#"{"usage" : {"a":1}}"#, &USAGE_KEY));
        assert!(!has_object_member(br#"{"usage":null}"#, &USAGE_KEY));
        assert!(!has_object_member(
            br#"{"t":"say \"usage\": {"}"#,
            &USAGE_KEY
        ));
        assert!(has_object_member(
            br#"{"usage":null,"x":{"usage":{}}}"#,
            &USAGE_KEY
        ));
        assert!(!has_object_member(b"\"usage\"", &USAGE_KEY));
        assert!(has_object_member(br#"{"error":{}}"#, &ERROR_KEY));
        assert_eq!(Needle::new(b"").find_in(b"abc"), None);
        assert_eq!(Needle::new(b"abd").find_in(b"abcabd"), Some(3));
        assert_eq!(Needle::new(b"abc").find_in(b"ab"), None);
    }
}
