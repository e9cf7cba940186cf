//! The byte encoding of a [`CostEvent`] in the `EVENTS` table.
//!
//! The writer thread encodes every metered call, so the format is a compact,
//! hand-written one rather than JSON: no field names, integers as varints, the id as
//! its 16 bytes (a typical event takes about 170 bytes, against 650 as JSON, and
//! encodes about ten times faster). The first byte is the format version. A value starting with `{` is a
//! JSON event written by builds before this format existed; it still decodes, so old
//! database files keep working (they are never rewritten).
//!
//! Version 1, field by field. "varint" is unsigned LEB128, "zigzag" a signed integer
//! zigzag-mapped then varint, "string" a varint byte length then UTF-8:
//!
//! | field                 | encoding                                               |
//! |-----------------------|--------------------------------------------------------|
//! | version               | `1`                                                    |
//! | flags                 | varint bitmask of the `F_*` bits; unknown bits refused |
//! | id                    | 16 bytes, big-endian ULID; a string if `F_RAW_ID`      |
//! | user_id               | string                                                 |
//! | ts_ms                 | zigzag                                                 |
//! | provider              | one byte, `provider_code`                              |
//! | endpoint              | one byte, `endpoint_code`                              |
//! | api_key_id            | string                                                 |
//! | status                | varint, at most `u16::MAX`                             |
//! | outcome               | one byte, `outcome_code`                               |
//! | latency_ms            | varint                                                 |
//! | usage_status          | one byte, `usage_status_code`                          |
//! | model                 | string, if `F_MODEL`                                   |
//! | customer_id           | string, if `F_CUSTOMER`                                |
//! | ttft_ms               | varint, if `F_TTFT`                                    |
//! | usage                 | 8 varints in `Usage` field order, if `F_USAGE`         |
//! | cost                  | zigzag of the i128 femto-dollars, if `F_COST`          |
//! | upstream_request_id   | string, if `F_UPSTREAM_ID`                             |
//! | service_tier          | string, if `F_SERVICE_TIER`                            |
//!
//! Nothing may follow the last field. `streamed` is the `F_STREAMED` bit.
//!
//! Ids are ULIDs in canonical form (`AppState::next_event_id`), stored as their 16
//! bytes. Any other id (lowercase, or not a ULID at all) is kept verbatim as a string
//! under `F_RAW_ID`, so decoding always gives back the exact id that was written.
//!
//! Changing the layout means a new version byte, with the old versions still decoded.
//! Enum codes are part of the format: never renumber one, only add.

use super::model::{CostEvent, Outcome, UsageStatus};
use crate::pricing::Money;
use crate::providers::{Endpoint, Provider, Usage};

/// The version byte of the layout described above.
const VERSION: u8 = 1;
/// First byte of a legacy JSON event.
const LEGACY_JSON: u8 = b'{';

const F_RAW_ID: u32 = 1 << 0;
const F_STREAMED: u32 = 1 << 1;
const F_MODEL: u32 = 1 << 2;
const F_CUSTOMER: u32 = 1 << 3;
const F_TTFT: u32 = 1 << 4;
const F_USAGE: u32 = 1 << 5;
const F_COST: u32 = 1 << 6;
const F_UPSTREAM_ID: u32 = 1 << 7;
const F_SERVICE_TIER: u32 = 1 << 8;
const F_ALL: u32 = (1 << 9) - 1;

/// Why a stored value could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// A JSON record (accounts, keys, legacy events) that does not parse.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error("unknown event format version {0}")]
    UnknownVersion(u8),
    #[error("event ends early")]
    Truncated,
    #[error("{0} bytes after the end of the event")]
    TrailingBytes(usize),
    #[error("unknown flag bits {0:#x}")]
    UnknownFlags(u128),
    #[error("unknown {field} code {code}")]
    UnknownCode { field: &'static str, code: u8 },
    #[error("{0} out of range")]
    OutOfRange(&'static str),
    #[error("a string is not UTF-8")]
    Utf8,
}

type Result<T> = std::result::Result<T, CodecError>;

/// Appends the encoding of `e` to `out`.
#[cfg(test)]
pub fn encode_event(e: &CostEvent, out: &mut Vec<u8>) {
    encode_event_with_id(e, canonical_ulid(&e.id), out)
}

/// [`encode_event`] for a caller that has already looked at the id: `ulid` is
/// [`canonical_ulid`] of `e.id` (the writer needs it for the key too, and parsing a
/// ULID twice per event was ~200 instructions of the writer's).
pub fn encode_event_with_id(e: &CostEvent, ulid: Option<u128>, out: &mut Vec<u8>) {
    // Destructured in full, so a new field does not compile until it is encoded.
    let CostEvent {
        id,
        user_id,
        ts_ms,
        provider,
        endpoint,
        model,
        customer_id,
        api_key_id,
        status,
        outcome,
        streamed,
        latency_ms,
        ttft_ms,
        usage,
        usage_status,
        cost,
        upstream_request_id,
        service_tier,
    } = e;
    let flags = [
        (ulid.is_none(), F_RAW_ID),
        (*streamed, F_STREAMED),
        (model.is_some(), F_MODEL),
        (customer_id.is_some(), F_CUSTOMER),
        (ttft_ms.is_some(), F_TTFT),
        (usage.is_some(), F_USAGE),
        (cost.is_some(), F_COST),
        (upstream_request_id.is_some(), F_UPSTREAM_ID),
        (service_tier.is_some(), F_SERVICE_TIER),
    ]
    .into_iter()
    .filter(|(on, _)| *on)
    .fold(0, |acc, (_, bit)| acc | bit);

    let mut w = Writer(out);
    w.u8(VERSION);
    w.varint(flags.into());
    match ulid {
        Some(n) => w.bytes(&n.to_be_bytes()),
        None => w.str(id),
    }
    w.str(user_id);
    w.varint(zigzag64(*ts_ms).into());
    w.u8(provider_code(*provider));
    w.u8(endpoint_code(*endpoint));
    w.str(api_key_id);
    w.varint((*status).into());
    w.u8(outcome_code(*outcome));
    w.varint((*latency_ms).into());
    w.u8(usage_status_code(*usage_status));
    if let Some(m) = model {
        w.str(m);
    }
    if let Some(c) = customer_id {
        w.str(c);
    }
    if let Some(t) = ttft_ms {
        w.varint((*t).into());
    }
    if let Some(u) = usage {
        for n in usage_fields(u) {
            w.varint(n.into());
        }
    }
    if let Some(c) = cost {
        w.varint(zigzag128(c.femto()));
    }
    if let Some(r) = upstream_request_id {
        w.str(r);
    }
    if let Some(t) = service_tier {
        w.str(t);
    }
}

/// Decodes a stored event: the current binary format or a legacy JSON one.
pub fn decode_event(bytes: &[u8]) -> Result<CostEvent> {
    match bytes.split_first() {
        Some((&VERSION, rest)) => decode_v1(rest),
        Some((&LEGACY_JSON, _)) => Ok(serde_json::from_slice(bytes)?),
        Some((&v, _)) => Err(CodecError::UnknownVersion(v)),
        None => Err(CodecError::Truncated),
    }
}

fn decode_v1(bytes: &[u8]) -> Result<CostEvent> {
    let mut r = Reader(bytes);
    let flags = r.varint()?;
    if flags & !u128::from(F_ALL) != 0 {
        return Err(CodecError::UnknownFlags(flags));
    }
    let has = |bit: u32| flags & u128::from(bit) != 0;
    let id = if has(F_RAW_ID) {
        r.str()?
    } else {
        let mut b = [0u8; 16];
        b.copy_from_slice(r.bytes(16)?);
        ulid::Ulid(u128::from_be_bytes(b)).to_string()
    };
    let user_id = r.str()?;
    let ts_ms = unzigzag64(r.u64("ts_ms")?);
    let provider = provider_from(r.u8()?)?;
    let endpoint = endpoint_from(r.u8()?)?;
    let api_key_id = r.str()?;
    let status = u16::try_from(r.varint()?).map_err(|_| CodecError::OutOfRange("status"))?;
    let outcome = outcome_from(r.u8()?)?;
    let latency_ms = r.u64("latency_ms")?;
    let usage_status = usage_status_from(r.u8()?)?;
    let model = has(F_MODEL).then(|| r.str()).transpose()?;
    let customer_id = has(F_CUSTOMER).then(|| r.str()).transpose()?;
    let ttft_ms = has(F_TTFT).then(|| r.u64("ttft_ms")).transpose()?;
    let usage = has(F_USAGE).then(|| r.usage()).transpose()?;
    let cost = has(F_COST).then(|| r.money()).transpose()?;
    let upstream_request_id = has(F_UPSTREAM_ID).then(|| r.str()).transpose()?;
    let service_tier = has(F_SERVICE_TIER).then(|| r.str()).transpose()?;
    if !r.0.is_empty() {
        return Err(CodecError::TrailingBytes(r.0.len()));
    }
    Ok(CostEvent {
        id,
        user_id,
        ts_ms,
        provider,
        endpoint,
        model,
        customer_id,
        api_key_id,
        status,
        outcome,
        streamed: has(F_STREAMED),
        latency_ms,
        ttft_ms,
        usage,
        usage_status,
        cost,
        upstream_request_id,
        service_tier,
    })
}

/// The id as a number if it is a ULID in canonical form (so it encodes back to itself).
pub fn canonical_ulid(id: &str) -> Option<u128> {
    let u = ulid::Ulid::from_string(id).ok()?;
    let mut buf = [0u8; ulid::ULID_LEN];
    (u.array_to_str(&mut buf) == id).then_some(u.0)
}

/// The eight counts of a [`Usage`], in the order they are stored. Destructured in
/// full, so a new count does not compile until it is placed here (and in
/// `Reader::usage`, under a new format version).
fn usage_fields(u: &Usage) -> [u64; 8] {
    let Usage {
        input_tokens,
        cached_input_tokens,
        cache_write_5m_tokens,
        cache_write_1h_tokens,
        output_tokens,
        reasoning_tokens,
        web_search_requests,
        grounded_prompts,
    } = *u;
    [
        input_tokens,
        cached_input_tokens,
        cache_write_5m_tokens,
        cache_write_1h_tokens,
        output_tokens,
        reasoning_tokens,
        web_search_requests,
        grounded_prompts,
    ]
}

fn zigzag64(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag64(u: u64) -> i64 {
    (u >> 1) as i64 ^ -((u & 1) as i64)
}

fn zigzag128(v: i128) -> u128 {
    ((v << 1) ^ (v >> 127)) as u128
}

fn unzigzag128(u: u128) -> i128 {
    (u >> 1) as i128 ^ -((u & 1) as i128)
}

// ---- enum codes: part of the stored format, never renumber ----

fn provider_code(p: Provider) -> u8 {
    match p {
        Provider::OpenAi => 0,
        Provider::Anthropic => 1,
        Provider::Gemini => 2,
        Provider::Groq => 3,
        Provider::Mistral => 4,
        Provider::DeepSeek => 5,
        Provider::Together => 6,
        Provider::OpenRouter => 7,
        Provider::Xai => 8,
        Provider::Fireworks => 9,
        Provider::Azure => 10,
    }
}

fn provider_from(code: u8) -> Result<Provider> {
    Ok(match code {
        0 => Provider::OpenAi,
        1 => Provider::Anthropic,
        2 => Provider::Gemini,
        3 => Provider::Groq,
        4 => Provider::Mistral,
        5 => Provider::DeepSeek,
        6 => Provider::Together,
        7 => Provider::OpenRouter,
        8 => Provider::Xai,
        9 => Provider::Fireworks,
        10 => Provider::Azure,
        _ => return Err(unknown("provider", code)),
    })
}

fn endpoint_code(e: Endpoint) -> u8 {
    match e {
        Endpoint::ChatCompletions => 0,
        Endpoint::Responses => 1,
        Endpoint::Embeddings => 2,
        Endpoint::Completions => 3,
        Endpoint::Messages => 4,
        Endpoint::GenerateContent => 5,
        Endpoint::StreamGenerateContent => 6,
        Endpoint::Other => 7,
    }
}

fn endpoint_from(code: u8) -> Result<Endpoint> {
    Ok(match code {
        0 => Endpoint::ChatCompletions,
        1 => Endpoint::Responses,
        2 => Endpoint::Embeddings,
        3 => Endpoint::Completions,
        4 => Endpoint::Messages,
        5 => Endpoint::GenerateContent,
        6 => Endpoint::StreamGenerateContent,
        7 => Endpoint::Other,
        _ => return Err(unknown("endpoint", code)),
    })
}

fn outcome_code(o: Outcome) -> u8 {
    match o {
        Outcome::Ok => 0,
        Outcome::UpstreamError => 1,
        Outcome::Cancelled => 2,
        Outcome::ProxyError => 3,
    }
}

fn outcome_from(code: u8) -> Result<Outcome> {
    Ok(match code {
        0 => Outcome::Ok,
        1 => Outcome::UpstreamError,
        2 => Outcome::Cancelled,
        3 => Outcome::ProxyError,
        _ => return Err(unknown("outcome", code)),
    })
}

fn usage_status_code(s: UsageStatus) -> u8 {
    match s {
        UsageStatus::Reported => 0,
        UsageStatus::Partial => 1,
        UsageStatus::Missing => 2,
    }
}

fn usage_status_from(code: u8) -> Result<UsageStatus> {
    Ok(match code {
        0 => UsageStatus::Reported,
        1 => UsageStatus::Partial,
        2 => UsageStatus::Missing,
        _ => return Err(unknown("usage status", code)),
    })
}

fn unknown(field: &'static str, code: u8) -> CodecError {
    CodecError::UnknownCode { field, code }
}

// ---- primitives ----

/// Appends primitives to a buffer.
struct Writer<'a>(&'a mut Vec<u8>);

impl Writer<'_> {
    fn u8(&mut self, b: u8) {
        self.0.push(b);
    }

    fn bytes(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }

    /// Unsigned LEB128: seven bits per byte, low bits first, high bit set on all but
    /// the last byte (at most 19 bytes for a u128).
    fn varint(&mut self, mut v: u128) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn str(&mut self, s: &str) {
        self.varint(s.len() as u128);
        self.bytes(s.as_bytes());
    }
}

/// Reads primitives from the front of a slice; every read checks what remains.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn u8(&mut self) -> Result<u8> {
        let (&b, rest) = self.0.split_first().ok_or(CodecError::Truncated)?;
        self.0 = rest;
        Ok(b)
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        let (b, rest) = self.0.split_at_checked(n).ok_or(CodecError::Truncated)?;
        self.0 = rest;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u128> {
        let mut v = 0u128;
        for shift in (0..128).step_by(7) {
            let b = self.u8()?;
            let part = u128::from(b & 0x7f);
            // The 19th byte holds bits 126 and 127 only.
            if shift == 126 && part > 0b11 {
                return Err(CodecError::OutOfRange("varint"));
            }
            v |= part << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(CodecError::OutOfRange("varint"))
    }

    fn u64(&mut self, field: &'static str) -> Result<u64> {
        u64::try_from(self.varint()?).map_err(|_| CodecError::OutOfRange(field))
    }

    /// A length-prefixed UTF-8 string. The length is checked against the bytes left
    /// before anything is allocated.
    fn str(&mut self) -> Result<String> {
        let len = usize::try_from(self.varint()?).map_err(|_| CodecError::Truncated)?;
        let b = self.bytes(len)?;
        let s = std::str::from_utf8(b).map_err(|_| CodecError::Utf8)?;
        Ok(s.to_owned())
    }

    fn money(&mut self) -> Result<Money> {
        Ok(Money::from_femto(unzigzag128(self.varint()?)))
    }

    fn usage(&mut self) -> Result<Usage> {
        let mut n = [0u64; 8];
        for slot in &mut n {
            *slot = self.u64("token count")?;
        }
        let [
            input_tokens,
            cached_input_tokens,
            cache_write_5m_tokens,
            cache_write_1h_tokens,
            output_tokens,
            reasoning_tokens,
            web_search_requests,
            grounded_prompts,
        ] = n;
        Ok(Usage {
            input_tokens,
            cached_input_tokens,
            cache_write_5m_tokens,
            cache_write_1h_tokens,
            output_tokens,
            reasoning_tokens,
            web_search_requests,
            grounded_prompts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full_event() -> CostEvent {
        CostEvent {
            id: ulid::Ulid::from_parts(1_795_588_279_123, 0xABCDEF).to_string(),
            user_id: "01JZUSER0000000000000000AA".into(),
            ts_ms: 1_795_588_279_123,
            provider: Provider::Anthropic,
            endpoint: Endpoint::Messages,
            model: Some("claude-sonnet-4-5".into()),
            customer_id: Some("acme".into()),
            api_key_id: "01JZKEY00000000000000000BB".into(),
            status: 200,
            outcome: Outcome::Ok,
            streamed: true,
            latency_ms: 1234,
            ttft_ms: Some(321),
            usage: Some(Usage {
                input_tokens: 1536,
                cached_input_tokens: 1280,
                cache_write_5m_tokens: 7,
                cache_write_1h_tokens: 8,
                output_tokens: 212,
                reasoning_tokens: 64,
                web_search_requests: 2,
                grounded_prompts: 1,
            }),
            usage_status: UsageStatus::Reported,
            cost: Some(Money::from_femto(123_450_000_000)),
            upstream_request_id: Some("msg_01ABC".into()),
            service_tier: Some("standard".into()),
        }
    }

    fn bare_event() -> CostEvent {
        CostEvent {
            model: None,
            customer_id: None,
            streamed: false,
            ttft_ms: None,
            usage: None,
            usage_status: UsageStatus::Missing,
            cost: None,
            upstream_request_id: None,
            service_tier: None,
            ..full_event()
        }
    }

    fn encode(e: &CostEvent) -> Vec<u8> {
        let mut out = Vec::new();
        encode_event(e, &mut out);
        out
    }

    fn round_trip(e: &CostEvent) {
        let bytes = encode(e);
        assert_eq!(bytes[0], VERSION);
        assert_eq!(&decode_event(&bytes).unwrap(), e);
    }

    /// Every variant of each enum, with a match that stops compiling when a variant is
    /// added: list the new one here and give it a code. (Providers and endpoints have
    /// `ALL`, checked the same way where they are defined.)
    fn all_outcomes() -> [Outcome; 4] {
        let all = [
            Outcome::Ok,
            Outcome::UpstreamError,
            Outcome::Cancelled,
            Outcome::ProxyError,
        ];
        for o in all {
            match o {
                Outcome::Ok | Outcome::UpstreamError | Outcome::Cancelled | Outcome::ProxyError => {
                }
            }
        }
        all
    }

    fn all_usage_statuses() -> [UsageStatus; 3] {
        let all = [
            UsageStatus::Reported,
            UsageStatus::Partial,
            UsageStatus::Missing,
        ];
        for s in all {
            match s {
                UsageStatus::Reported | UsageStatus::Partial | UsageStatus::Missing => {}
            }
        }
        all
    }

    /// Codes of one enum: every variant round-trips, no two share a code, and every
    /// byte that decodes encodes back to itself (so decoding knows no extra codes).
    fn check_codes<T: Copy + PartialEq + std::fmt::Debug>(
        all: &[T],
        code: fn(T) -> u8,
        from: fn(u8) -> Result<T>,
    ) {
        for &v in all {
            assert_eq!(from(code(v)).unwrap(), v);
        }
        let mut codes: Vec<u8> = all.iter().map(|&v| code(v)).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), all.len(), "two variants share a code");
        let decodable: Vec<u8> = (0..=u8::MAX).filter(|&b| from(b).is_ok()).collect();
        assert_eq!(decodable, codes);
    }

    #[test]
    fn enum_codes_are_complete_and_distinct() {
        check_codes(&Provider::ALL, provider_code, provider_from);
        check_codes(&Endpoint::ALL, endpoint_code, endpoint_from);
        check_codes(&all_outcomes(), outcome_code, outcome_from);
        check_codes(&all_usage_statuses(), usage_status_code, usage_status_from);
        // The codes are the stored format: pin a few.
        assert_eq!(provider_code(Provider::OpenAi), 0);
        assert_eq!(provider_code(Provider::Azure), 10);
        assert_eq!(endpoint_code(Endpoint::Other), 7);
        assert_eq!(outcome_code(Outcome::ProxyError), 3);
        assert_eq!(usage_status_code(UsageStatus::Missing), 2);
    }

    #[test]
    fn layout_is_pinned() {
        let e = CostEvent {
            id: ulid::Ulid::from_parts(1, 2).to_string(),
            user_id: "u1".into(),
            ts_ms: -3,
            provider: Provider::Anthropic,
            endpoint: Endpoint::Messages,
            model: Some("é".into()),
            customer_id: None,
            api_key_id: "k".into(),
            status: 529,
            outcome: Outcome::UpstreamError,
            streamed: true,
            latency_ms: 300,
            ttft_ms: None,
            usage: Some(Usage {
                input_tokens: 1,
                output_tokens: 128,
                ..Usage::default()
            }),
            usage_status: UsageStatus::Partial,
            cost: Some(Money::from_femto(-1)),
            upstream_request_id: None,
            service_tier: Some(String::new()),
        };
        #[rustfmt::skip]
        let want: Vec<u8> = vec![
            1,                                    // version
            0xE6, 0x02,                           // flags: streamed|model|usage|cost|tier
            0, 0, 0, 0, 0, 1,                     // id: 48-bit ms
            0, 0, 0, 0, 0, 0, 0, 0, 0, 2,         // id: 80 random bits
            2, b'u', b'1',                        // user_id
            5,                                    // ts_ms -3, zigzag
            1,                                    // Anthropic
            4,                                    // Messages
            1, b'k',                              // api_key_id
            0x91, 0x04,                           // status 529
            1,                                    // UpstreamError
            0xAC, 0x02,                           // latency 300
            1,                                    // Partial
            2, 0xC3, 0xA9,                        // model "é"
            1, 0, 0, 0, 0x80, 0x01, 0, 0, 0,      // usage
            1,                                    // cost -1 femto, zigzag
            0,                                    // service_tier ""
        ];
        assert_eq!(encode(&e), want);
        assert_eq!(decode_event(&want).unwrap(), e);
    }

    #[test]
    fn round_trips_with_every_option_present_and_absent() {
        round_trip(&full_event());
        round_trip(&bare_event());
        assert!(encode(&bare_event()).len() < encode(&full_event()).len());
        // Each option alone.
        let full = full_event();
        let singles = [
            CostEvent {
                model: full.model.clone(),
                ..bare_event()
            },
            CostEvent {
                customer_id: full.customer_id.clone(),
                ..bare_event()
            },
            CostEvent {
                ttft_ms: Some(0),
                ..bare_event()
            },
            CostEvent {
                usage: Some(Usage::default()),
                ..bare_event()
            },
            CostEvent {
                cost: Some(Money::ZERO),
                ..bare_event()
            },
            CostEvent {
                upstream_request_id: full.upstream_request_id.clone(),
                ..bare_event()
            },
            CostEvent {
                service_tier: full.service_tier.clone(),
                ..bare_event()
            },
            CostEvent {
                streamed: true,
                ..bare_event()
            },
        ];
        for e in &singles {
            round_trip(e);
        }
    }

    #[test]
    fn round_trips_every_enum_variant() {
        for provider in Provider::ALL {
            for endpoint in Endpoint::ALL {
                round_trip(&CostEvent {
                    provider,
                    endpoint,
                    ..full_event()
                });
            }
        }
        for outcome in all_outcomes() {
            for usage_status in all_usage_statuses() {
                round_trip(&CostEvent {
                    outcome,
                    usage_status,
                    ..bare_event()
                });
            }
        }
    }

    #[test]
    fn round_trips_extreme_values() {
        let max_usage = Usage {
            input_tokens: u64::MAX,
            cached_input_tokens: u64::MAX,
            cache_write_5m_tokens: u64::MAX,
            cache_write_1h_tokens: u64::MAX,
            output_tokens: u64::MAX,
            reasoning_tokens: u64::MAX,
            web_search_requests: u64::MAX,
            grounded_prompts: u64::MAX,
        };
        for femto in [
            i128::MIN,
            i128::MIN + 1,
            -1,
            0,
            1,
            i128::MAX,
            -(10i128.pow(30)),
        ] {
            for ts_ms in [i64::MIN, -1, 0, i64::MAX] {
                round_trip(&CostEvent {
                    ts_ms,
                    status: u16::MAX,
                    latency_ms: u64::MAX,
                    ttft_ms: Some(u64::MAX),
                    usage: Some(max_usage),
                    cost: Some(Money::from_femto(femto)),
                    ..full_event()
                });
            }
        }
        let long = "x".repeat(300);
        for s in ["", "ü", "日本語のモデル", "🦀 crab", "a\0b", long.as_str()] {
            round_trip(&CostEvent {
                user_id: s.into(),
                api_key_id: s.into(),
                model: Some(s.into()),
                customer_id: Some(s.into()),
                upstream_request_id: Some(s.into()),
                service_tier: Some(s.into()),
                ..full_event()
            });
        }
    }

    #[test]
    fn ids_that_are_not_canonical_ulids_are_kept_verbatim() {
        let canonical = full_event().id;
        let canonical_len = encode(&full_event()).len();
        for id in [
            canonical.to_lowercase(),
            "not-a-ulid".to_owned(),
            String::new(),
            "ZZZZZZZZZZZZZZZZZZZZZZZZZZ".to_owned(),
        ] {
            let e = CostEvent {
                id: id.clone(),
                ..full_event()
            };
            let bytes = encode(&e);
            assert_eq!(decode_event(&bytes).unwrap().id, id);
            assert_eq!(bytes[1] & F_RAW_ID as u8, 1);
        }
        // The canonical id takes the 16-byte path.
        let bytes = encode(&full_event());
        assert_eq!(bytes.len(), canonical_len);
        assert_eq!(bytes[1] & F_RAW_ID as u8, 0);
        assert_eq!(decode_event(&bytes).unwrap().id, canonical);
    }

    #[test]
    fn legacy_json_events_still_decode() {
        for e in [full_event(), bare_event()] {
            let json = serde_json::to_vec(&e).unwrap();
            assert_eq!(json[0], b'{');
            assert_eq!(decode_event(&json).unwrap(), e);
        }
        // Written before `service_tier` existed.
        let mut v = serde_json::to_value(bare_event()).unwrap();
        v.as_object_mut().unwrap().remove("service_tier");
        let json = serde_json::to_vec(&v).unwrap();
        assert_eq!(decode_event(&json).unwrap(), bare_event());
        // Broken JSON is an error, not a panic.
        assert!(matches!(
            decode_event(b"{\"id\":"),
            Err(CodecError::Json(_))
        ));
    }

    #[test]
    fn every_truncation_is_an_error() {
        for e in [full_event(), bare_event()] {
            let bytes = encode(&e);
            for n in 0..bytes.len() {
                assert!(
                    decode_event(&bytes[..n]).is_err(),
                    "prefix of {n} of {} bytes decoded",
                    bytes.len()
                );
            }
            let json = serde_json::to_vec(&e).unwrap();
            for n in 0..json.len() {
                assert!(decode_event(&json[..n]).is_err());
            }
        }
        assert!(matches!(decode_event(&[]), Err(CodecError::Truncated)));
    }

    #[test]
    fn malformed_values_are_errors() {
        let good = encode(&bare_event());
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(matches!(
            decode_event(&trailing),
            Err(CodecError::TrailingBytes(1))
        ));
        for v in [0u8, 2, 0x7A, 0xFF] {
            let mut b = good.clone();
            b[0] = v;
            assert!(matches!(decode_event(&b), Err(CodecError::UnknownVersion(x)) if x == v));
        }
        // Flag bit 9 is not defined: [version, 0x80|0, 0x04].
        assert!(matches!(
            decode_event(&[1, 0x80, 0x04]),
            Err(CodecError::UnknownFlags(0x200))
        ));
        // A varint longer than 128 bits.
        let mut long = vec![1];
        long.extend([0xFF; 18]);
        long.push(0x04);
        assert!(matches!(
            decode_event(&long),
            Err(CodecError::OutOfRange("varint"))
        ));
        // A raw id whose length prefix claims far more than is there: refused before
        // any allocation of that size.
        let mut huge = vec![1, F_RAW_ID as u8];
        huge.extend([0xFF; 9]);
        huge.push(0x01);
        huge.extend(b"abc");
        assert!(matches!(decode_event(&huge), Err(CodecError::Truncated)));
        // Invalid UTF-8 in a string.
        let mut bad_utf8 = vec![1, F_RAW_ID as u8, 2, 0xC3, 0x28];
        bad_utf8.extend(&encode(&bare_event())[18..]);
        assert!(matches!(decode_event(&bad_utf8), Err(CodecError::Utf8)));
    }

    #[test]
    fn bad_enum_codes_and_ranges_are_errors() {
        let e = CostEvent {
            id: "x".into(),
            user_id: String::new(),
            api_key_id: String::new(),
            ts_ms: 0,
            status: 0,
            latency_ms: 0,
            ..bare_event()
        };
        let good = encode(&e);
        // version, flags, id "x", user "", ts, provider, endpoint, key "", status,
        // outcome, latency, usage status.
        assert_eq!(good, [1, 1, 1, b'x', 0, 0, 1, 4, 0, 0, 0, 0, 2]);
        let with = |at: usize, v: &[u8]| {
            let mut b = good.clone();
            b.splice(at..at + 1, v.iter().copied());
            decode_event(&b)
        };
        assert!(matches!(
            with(6, &[11]),
            Err(CodecError::UnknownCode {
                field: "provider",
                code: 11
            })
        ));
        assert!(matches!(
            with(7, &[8]),
            Err(CodecError::UnknownCode {
                field: "endpoint",
                code: 8
            })
        ));
        assert!(matches!(
            with(10, &[4]),
            Err(CodecError::UnknownCode {
                field: "outcome",
                code: 4
            })
        ));
        assert!(matches!(
            with(12, &[3]),
            Err(CodecError::UnknownCode {
                field: "usage status",
                code: 3
            })
        ));
        // status 65536 = 0x80 0x80 0x04
        assert!(matches!(
            with(9, &[0x80, 0x80, 0x04]),
            Err(CodecError::OutOfRange("status"))
        ));
        // latency 2^64
        let mut over = vec![0x80; 9];
        over.push(0x02);
        assert!(matches!(
            with(11, &over),
            Err(CodecError::OutOfRange("latency_ms"))
        ));
    }

    /// xorshift64*: a fixed-seed source of test bytes, no crate needed.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Whatever decodes must encode to something that decodes to the same event.
    fn decode_never_panics(bytes: &[u8]) -> bool {
        match decode_event(bytes) {
            Ok(e) => {
                assert_eq!(decode_event(&encode(&e)).unwrap(), e);
                true
            }
            Err(_) => false,
        }
    }

    #[test]
    fn random_and_mutated_bytes_never_panic() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let seeds = [encode(&full_event()), encode(&bare_event())];
        let mut decoded = 0;
        for i in 0..6000 {
            let bytes: Vec<u8> = if i % 2 == 0 {
                // Random bytes, mostly behind the version byte so they reach the fields.
                let len = rng.below(96);
                let mut b: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                if let Some(first) = b.first_mut()
                    && i % 6 != 0
                {
                    *first = VERSION;
                }
                b
            } else {
                // A valid event with a few bytes changed, cut, or inserted.
                let mut b = seeds[rng.below(2)].clone();
                for _ in 0..1 + rng.below(3) {
                    let at = rng.below(b.len());
                    match rng.below(3) {
                        0 => b[at] = rng.next() as u8,
                        1 => b.truncate(at.max(1)),
                        _ => b.insert(at, rng.next() as u8),
                    }
                }
                b
            };
            if decode_never_panics(&bytes) {
                decoded += 1;
            }
        }
        // Some mutations (a changed count or string byte) still decode; most do not.
        assert!(decoded > 0 && decoded < 6000, "decoded {decoded}");
    }

    /// A file written by an older build holds JSON events; after an upgrade new events
    /// are binary. Both kinds read through every path.
    #[test]
    fn store_reads_legacy_and_binary_events_side_by_side() {
        use crate::store::Store;
        use crate::store::query::QueryFilter;
        use crate::store::tables::EVENTS;
        use crate::time::HOUR_MS;

        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.redb")).unwrap();
        let t0 = 20_000 * 24 * HOUR_MS + 10 * HOUR_MS + 5;
        let events: Vec<CostEvent> = (0..6u64)
            .map(|i| CostEvent {
                id: ulid::Ulid::from_parts(t0 as u64 + i, u128::from(i)).to_string(),
                user_id: "u1".into(),
                ts_ms: t0 + i as i64,
                customer_id: (i % 2 == 0).then(|| "c".into()),
                cost: Some(Money::from_femto(1000 + i128::from(i))),
                ..full_event()
            })
            .collect();
        store.write_events(&events).unwrap();
        // Rewrite the even ones as an older build stored them.
        {
            let w = store.db.begin_write().unwrap();
            {
                let mut t = w.open_table(EVENTS).unwrap();
                for e in events.iter().step_by(2) {
                    let key = u128::from(ulid::Ulid::from_string(&e.id).unwrap());
                    let json = serde_json::to_vec(e).unwrap();
                    t.insert(("u1", key), json.as_slice()).unwrap();
                }
            }
            w.commit().unwrap();
        }
        for e in &events {
            assert_eq!(store.event("u1", &e.id).unwrap().as_ref(), Some(e));
        }
        let newest_first: Vec<CostEvent> = events.iter().rev().cloned().collect();
        assert_eq!(
            store.events_desc("u1", None, 100, |_| true).unwrap(),
            newest_first
        );
        // Within one hour: the stats come from the raw events of the edge.
        let f = QueryFilter {
            from_ms: t0,
            to_ms: t0 + 100,
            ..QueryFilter::all(0)
        };
        let stats = store.stats("u1", &f).unwrap();
        assert_eq!(stats.total.calls, 6);
        assert_eq!(stats.total.cost, Money::from_femto(6015));
        assert_eq!(stats.unattributed.calls, 3);
        let page = store.events_page("u1", &f, None, 100, 1000).unwrap();
        assert_eq!(page.events, newest_first);
        assert_eq!(page.next_cursor, None);
    }
}
