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

use super::json_seq::JsonSeq;
use super::sse::SseDecoder;
use super::wire::{Count, Text};
use super::{ParsedUsage, Usage, UsageParser};

/// One `GenerateContentResponse` (a whole body or one stream chunk).
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct GeminiResponseWire {
    pub candidates: Option<Vec<CandidateWire>>,
    pub usage_metadata: Option<UsageMetadataWire>,
    pub model_version: Text,
    pub prompt_feedback: Option<PromptFeedbackWire>,
    pub error: Option<IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct CandidateWire {
    pub finish_reason: Text,
    pub grounding_metadata: Option<GroundingMetadataWire>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct GroundingMetadataWire {
    pub web_search_queries: Option<Vec<IgnoredAny>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PromptFeedbackWire {
    pub block_reason: Text,
}

#[derive(Debug, Clone, Default, Deserialize)]
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

impl UsageMetadataWire {
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
            if let Ok(chunk) = serde_json::from_slice(ev.data) {
                state.on_chunk(chunk);
            }
        });
    }

    fn finish(&mut self) -> ParsedUsage {
        let state = &mut self.state;
        self.sse.finish(&mut |ev| {
            if let Ok(chunk) = serde_json::from_slice(ev.data) {
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
            if let Some(parsed) = element.parse::<GeminiResponseWire>() {
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
