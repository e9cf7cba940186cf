//! Usage parsers for Gemini's native API: `generateContent` (JSON) and
//! `streamGenerateContent`, either SSE (`alt=sse`, possibly CRLF-framed) or, without
//! `alt=sse`, one JSON array delivered incrementally (`[{…},\r\n{…}]`).
//!
//! Conventions (PROVIDERS.md §6): `cachedContentTokenCount` is inside `promptTokenCount`;
//! `toolUsePromptTokenCount` is not and is added to input; `thoughtsTokenCount` is outside
//! `candidatesTokenCount` and is added to output (and counted as reasoning). The model is
//! `modelVersion`. A candidate with `groundingMetadata.webSearchQueries` makes the prompt a
//! grounded one (`grounded_prompts = 1`, billed per prompt).
//!
//! Streams: every chunk carries a cumulative `usageMetadata` snapshot; the last one that has
//! counts wins, chunks are never summed. There is no `[DONE]`: `complete` is true once a
//! candidate had a `finishReason` (or the prompt was blocked, `promptFeedback.blockReason`)
//! and no error chunk came. A single-object body is complete when it parsed.

use serde::Deserialize;
use serde::de::IgnoredAny;

use super::json_reader::{Reader, Seen};
use super::json_seq::JsonSeq;
use super::sse::SseDecoder;
use super::wire::{Count, Text};
use super::{ParsedUsage, Usage, UsageParser};

/// One `GenerateContentResponse` (a whole body or one stream chunk).
#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct GeminiResponseWire {
    pub candidates: Option<Vec<CandidateWire>>,
    pub usage_metadata: Option<UsageMetadataWire>,
    pub model_version: Text,
    pub prompt_feedback: Option<PromptFeedbackWire>,
    pub error: Option<IgnoredAny>,
}

#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct CandidateWire {
    pub finish_reason: Text,
    pub grounding_metadata: Option<GroundingMetadataWire>,
}

#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct GroundingMetadataWire {
    pub web_search_queries: Option<Vec<IgnoredAny>>,
}

#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PromptFeedbackWire {
    pub block_reason: Text,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct UsageMetadataWire {
    pub prompt_token_count: Count,
    pub cached_content_token_count: Count,
    pub candidates_token_count: Count,
    pub thoughts_token_count: Count,
    pub tool_use_prompt_token_count: Count,
    pub total_token_count: Count,
    pub service_tier: Text,
}

impl GeminiResponseWire {
    /// One chunk or body: by hand where the reader answers, else by serde.
    fn parse(data: &[u8]) -> Option<GeminiResponseWire> {
        GeminiResponseWire::read_fast(data).or_else(|| serde_json::from_slice(data).ok())
    }

    /// The top level, each candidate and `usageMetadata` by hand (see
    /// [`super::json_reader`]): the candidates' `content`, the bulk of every chunk, is only
    /// skipped. The rare objects (`groundingMetadata`, `promptFeedback`) go to serde on
    /// their own bytes. `None` leaves the document to serde.
    pub fn read_fast(data: &[u8]) -> Option<GeminiResponseWire> {
        let mut r = Reader::new(data);
        let mut chunk = GeminiResponseWire::default();
        let mut seen = Seen::default();
        r.object(|key, r| {
            let field = match key {
                b"candidates" => 0,
                b"usageMetadata" => 1,
                b"modelVersion" => 2,
                b"promptFeedback" => 3,
                b"error" => 4,
                _ => return r.skip(),
            };
            seen.first(field)?;
            match field {
                0 => chunk.candidates = CandidateWire::read_all(r)?,
                1 => chunk.usage_metadata = UsageMetadataWire::read(r)?,
                2 => chunk.model_version = Text::read(r)?,
                3 => chunk.prompt_feedback = r.serde()?,
                _ => chunk.error = r.ignored()?,
            }
            Some(())
        })?;
        r.end()?;
        Some(chunk)
    }
}

impl CandidateWire {
    /// `candidates`: `null` or an array of candidate objects; other shapes decline.
    fn read_all(r: &mut Reader<'_>) -> Option<Option<Vec<CandidateWire>>> {
        if r.null()? {
            return Some(None);
        }
        let mut all = Vec::new();
        r.array(|r| {
            let mut c = CandidateWire::default();
            let mut seen = Seen::default();
            r.object(|key, r| {
                let field = match key {
                    b"finishReason" => 0,
                    b"groundingMetadata" => 1,
                    _ => return r.skip(),
                };
                seen.first(field)?;
                match field {
                    0 => c.finish_reason = Text::read(r)?,
                    _ => c.grounding_metadata = r.serde()?,
                }
                Some(())
            })?;
            all.push(c);
            Some(())
        })?;
        Some(Some(all))
    }
}

impl UsageMetadataWire {
    /// `usageMetadata` (an object or `null`) by hand, the same as serde's derive; other
    /// shapes decline.
    fn read(r: &mut Reader<'_>) -> Option<Option<UsageMetadataWire>> {
        if r.null()? {
            return Some(None);
        }
        let mut u = UsageMetadataWire::default();
        let mut seen = Seen::default();
        r.object(|key, r| {
            let field = match key {
                b"promptTokenCount" => 0,
                b"cachedContentTokenCount" => 1,
                b"candidatesTokenCount" => 2,
                b"thoughtsTokenCount" => 3,
                b"toolUsePromptTokenCount" => 4,
                b"totalTokenCount" => 5,
                b"serviceTier" => 6,
                _ => return r.skip(),
            };
            seen.first(field)?;
            match field {
                0 => u.prompt_token_count = Count::read(r)?,
                1 => u.cached_content_token_count = Count::read(r)?,
                2 => u.candidates_token_count = Count::read(r)?,
                3 => u.thoughts_token_count = Count::read(r)?,
                4 => u.tool_use_prompt_token_count = Count::read(r)?,
                5 => u.total_token_count = Count::read(r)?,
                _ => u.service_tier = Text::read(r)?,
            }
            Some(())
        })?;
        Some(Some(u))
    }

    /// Normalized usage; `None` for a snapshot without any count.
    pub fn to_usage(&self) -> Option<Usage> {
        let counts = [
            self.prompt_token_count,
            self.candidates_token_count,
            self.thoughts_token_count,
            self.tool_use_prompt_token_count,
            self.total_token_count,
        ];
        if counts.iter().all(|c| c.get().is_none()) {
            return None;
        }
        let prompt = self.prompt_token_count.or_zero();
        let thoughts = self.thoughts_token_count.or_zero();
        Some(Usage {
            input_tokens: prompt.saturating_add(self.tool_use_prompt_token_count.or_zero()),
            cached_input_tokens: self.cached_content_token_count.or_zero().min(prompt),
            output_tokens: self
                .candidates_token_count
                .or_zero()
                .saturating_add(thoughts),
            reasoning_tokens: thoughts,
            ..Usage::default()
        })
    }
}

/// What the chunks of one response told us so far.
#[derive(Debug, Default)]
struct State {
    usage: Option<Usage>,
    tier: Option<String>,
    model: Option<String>,
    grounded: bool,
    finished: bool,
    errored: bool,
}

impl State {
    fn on_chunk(&mut self, chunk: GeminiResponseWire) {
        if let Some(meta) = &chunk.usage_metadata
            && let Some(usage) = meta.to_usage()
        {
            self.usage = Some(usage);
            if let Some(tier) = meta.service_tier.0.clone() {
                self.tier = Some(tier);
            }
        }
        if let Some(model) = chunk.model_version.into_inner() {
            self.model = Some(model);
        }
        for candidate in chunk.candidates.iter().flatten() {
            self.finished |= candidate.finish_reason.0.is_some();
            self.grounded |= candidate
                .grounding_metadata
                .as_ref()
                .and_then(|g| g.web_search_queries.as_ref())
                .is_some_and(|q| !q.is_empty());
        }
        self.finished |= chunk
            .prompt_feedback
            .is_some_and(|f| f.block_reason.0.is_some());
        self.errored |= chunk.error.is_some();
    }

    fn into_parsed(self, complete: bool) -> ParsedUsage {
        let grounded = u64::from(self.grounded);
        ParsedUsage {
            usage: self.usage.map(|u| Usage {
                grounded_prompts: grounded,
                ..u
            }),
            complete,
            model: self.model,
            service_tier: self.tier,
            provider_cost_usd: None,
        }
    }

    fn stream_complete(&self) -> bool {
        self.finished && !self.errored
    }
}

/// `streamGenerateContent?alt=sse`.
pub struct GeminiStream {
    sse: SseDecoder,
    state: State,
}

impl GeminiStream {
    pub fn new(max_event_bytes: usize) -> GeminiStream {
        GeminiStream {
            sse: SseDecoder::new(max_event_bytes),
            state: State::default(),
        }
    }
}

impl UsageParser for GeminiStream {
    fn feed(&mut self, chunk: &[u8]) {
        let state = &mut self.state;
        self.sse.feed(chunk, &mut |ev| {
            if let Some(chunk) = GeminiResponseWire::parse(ev.data) {
                state.on_chunk(chunk);
            }
        });
    }

    fn finish(&mut self) -> ParsedUsage {
        let state = &mut self.state;
        self.sse.finish(&mut |ev| {
            if let Some(chunk) = GeminiResponseWire::parse(ev.data) {
                state.on_chunk(chunk);
            }
        });
        let state = std::mem::take(&mut self.state);
        let complete = state.stream_complete();
        state.into_parsed(complete)
    }
}

/// `generateContent` bodies and non-SSE `streamGenerateContent` (a JSON array of chunks).
pub struct GeminiJsonParser {
    max_element_bytes: usize,
    seq: JsonSeq,
    state: State,
    /// The last single-object body parsed whole.
    parsed_whole: bool,
}

impl GeminiJsonParser {
    /// Elements (or the whole body) above `max_element_bytes` keep only head and tail.
    pub fn new(max_element_bytes: usize) -> GeminiJsonParser {
        GeminiJsonParser {
            max_element_bytes,
            seq: JsonSeq::new(max_element_bytes),
            state: State::default(),
            parsed_whole: false,
        }
    }

    /// Bytes of memory held, for tests and accounting.
    pub fn retained_bytes(&self) -> usize {
        self.seq.retained_bytes()
    }
}

impl UsageParser for GeminiJsonParser {
    fn feed(&mut self, chunk: &[u8]) {
        let (state, parsed_whole) = (&mut self.state, &mut self.parsed_whole);
        self.seq.feed(chunk, &mut |element| {
            if let Some(value) = element.whole().and_then(GeminiResponseWire::read_fast) {
                *parsed_whole = true;
                state.on_chunk(value);
            } else if let Some(parsed) = element.parse::<GeminiResponseWire>() {
                *parsed_whole = parsed.complete;
                state.on_chunk(parsed.value);
            }
        });
    }

    fn finish(&mut self) -> ParsedUsage {
        let (state, parsed_whole) = (&mut self.state, &mut self.parsed_whole);
        // A cut-off last element still gives what it can (its intact members).
        self.seq.finish(&mut |element| {
            if let Some(parsed) = element.parse::<GeminiResponseWire>() {
                *parsed_whole = false;
                state.on_chunk(parsed.value);
            }
        });
        let state = std::mem::take(&mut self.state);
        let complete = if self.seq.is_array() {
            state.stream_complete()
        } else {
            self.parsed_whole
        };
        self.seq = JsonSeq::new(self.max_element_bytes);
        self.parsed_whole = false;
        state.into_parsed(complete)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn serde_chunk(doc: &[u8]) -> Option<GeminiResponseWire> {
        serde_json::from_slice(doc).ok()
    }

    /// Every Gemini body and stream chunk in the fixtures is read by hand, as serde reads it.
    #[test]
    fn fixtures_are_read_by_hand_as_serde_reads_them() {
        let dir = format!("{}/tests/fixtures/gemini", env!("CARGO_MANIFEST_DIR"));
        let mut docs = Vec::new();
        for name in [
            "generate_content.json",
            "generate_content_long_context.json",
            "generate_content_search_grounding.json",
            "error_400_api_key.json",
        ] {
            docs.push(std::fs::read_to_string(format!("{dir}/{name}")).unwrap());
        }
        for name in [
            "stream_generate_content.sse",
            "stream_generate_content_crlf.sse",
        ] {
            let text = std::fs::read_to_string(format!("{dir}/{name}")).unwrap();
            docs.extend(
                text.lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::to_owned),
            );
        }
        assert!(docs.len() >= 8, "only {} documents", docs.len());
        for doc in &docs {
            let fast = GeminiResponseWire::read_fast(doc.trim().as_bytes());
            assert!(fast.is_some(), "left to serde: {doc}");
            assert_eq!(fast, serde_chunk(doc.trim().as_bytes()), "{doc}");
        }
    }

    fn value() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "null",
            "7",
            r#""gemini-2.5-flash""#,
            r#""""#,
            r#"{"promptTokenCount":5,"candidatesTokenCount":"2","thoughtsTokenCount":1.0}"#,
            r#"{"promptTokenCount":1,"promptTokenCount":2}"#,
            r#"{"totalTokenCount":9,"serviceTier":"flex","cachedContentTokenCount":null}"#,
            r#"{"blockReason":"SAFETY"}"#,
            r#"[{"content":{"parts":[{"text":"hi \"x\""}]},"finishReason":"STOP"}]"#,
            r#"[{"finishReason":null,"groundingMetadata":{"webSearchQueries":["a","b"]}},{}]"#,
            r#"[{"finishReason":"STOP","finishReason":"X"}]"#,
            r#"[1]"#,
            r#"{"code":503}"#,
        ])
    }

    proptest! {
        #[test]
        fn chunk_reader_agrees_with_serde(
            members in prop::collection::vec(
                (
                    prop::sample::select(vec![
                        "candidates",
                        "usageMetadata",
                        "modelVersion",
                        "promptFeedback",
                        "error",
                        "responseId",
                    ]),
                    value(),
                ),
                0..5,
            ),
        ) {
            let doc: Vec<String> = members.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            let doc = format!("{{{}}}", doc.join(","));
            let fast = GeminiResponseWire::read_fast(doc.as_bytes());
            if fast.is_some() {
                prop_assert_eq!(&fast, &serde_chunk(doc.as_bytes()), "{}", doc);
            }
            prop_assert_eq!(GeminiResponseWire::parse(doc.as_bytes()), serde_chunk(doc.as_bytes()));
        }
    }

    #[test]
    fn empty_snapshots_do_not_erase_counts() {
        let mut p = GeminiStream::new(1 << 16);
        p.feed(
            b"data: {\"usageMetadata\":{\"promptTokenCount\":5,\"candidatesTokenCount\":2}}\n\n",
        );
        p.feed(b"data: {\"usageMetadata\":{},\"candidates\":[{\"finishReason\":\"STOP\"}]}\n\n");
        let got = p.finish();
        assert_eq!(got.usage.map(|u| u.output_tokens), Some(2));
        assert!(got.complete);
    }

    #[test]
    fn blocked_prompt_and_error_chunks() {
        let mut p = GeminiJsonParser::new(1 << 16);
        p.feed(br#"[{"promptFeedback":{"blockReason":"SAFETY"},"usageMetadata":{"promptTokenCount":9}}]"#);
        let got = p.finish();
        assert_eq!(got.usage.map(|u| u.input_tokens), Some(9));
        assert!(got.complete);

        let mut p = GeminiJsonParser::new(1 << 16);
        p.feed(br#"[{"usageMetadata":{"promptTokenCount":9}},{"error":{"code":503}}]"#);
        let got = p.finish();
        assert!(!got.complete);

        let mut p = GeminiJsonParser::new(1 << 16);
        p.feed(br#"{"error":{"code":400,"message":"bad key"}}"#);
        let got = p.finish();
        assert_eq!(got.usage, None);
        assert!(got.complete);
    }
}
