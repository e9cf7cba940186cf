//! Usage parsers for OpenAI-shaped APIs: Chat Completions, legacy Completions, Embeddings
//! and the Responses API, for OpenAI, Azure and every OpenAI-compatible provider.
//!
//! * [`OpenAiJsonParser`]: any non-streamed body with top-level `model`, `service_tier` and an
//!   OpenAI-shaped `usage` (chat, completions, embeddings, responses, images, transcription).
//! * [`OpenAiChatStream`]: data-only SSE of `chat.completion.chunk`s (also legacy completion
//!   chunks). Usage may come on a `choices: []` chunk (OpenAI, Azure, `include_usage`), on the
//!   finish chunk (Mistral, DeepSeek) or in `x_groq.usage` (Groq); the last non-null one wins.
//! * [`responses::ResponsesStream`]: typed SSE of the Responses API.
//! * [`chunk_filter::UsageChunkFilter`]: removes the usage chunk the proxy asked for on the
//!   client's behalf.
//!
//! The conventions inside `usage` live in [`super::openai_compat`].

pub mod chunk_filter;
#[cfg(test)]
mod read_fast_tests;
pub mod responses;

use serde::Deserialize;
use serde::de::IgnoredAny;

pub use chunk_filter::UsageChunkFilter;
pub use responses::ResponsesStream;

use super::json_reader::{Reader, Seen};
use super::json_tail::{JsonBodyParser, ResponseBody};
use super::openai_compat::OpenAiUsageWire;
use super::sse::{SseDecoder, SseEvent};
use super::wire::{Text, USAGE_OR_ERROR};
use super::{ParsedUsage, Usage, UsageParser};

/// A non-streamed OpenAI-shaped response body (also the `response` object of Responses
/// stream events).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct OpenAiBodyWire {
    pub model: Text,
    pub service_tier: Text,
    pub usage: Option<OpenAiUsageWire>,
}

impl OpenAiBodyWire {
    /// The object at the cursor, as serde's derive reads it (see [`super::json_reader`]).
    fn read(r: &mut Reader<'_>) -> Option<OpenAiBodyWire> {
        let mut body = OpenAiBodyWire::default();
        let mut seen = Seen::default();
        r.object(|key, r| {
            let field = match key {
                b"model" => 0,
                b"service_tier" => 1,
                b"usage" => 2,
                _ => return r.skip(),
            };
            seen.first(field)?;
            match field {
                0 => body.model = Text::read(r)?,
                1 => body.service_tier = Text::read(r)?,
                _ => body.usage = OpenAiUsageWire::read(r)?,
            }
            Some(())
        })?;
        Some(body)
    }
}

impl ResponseBody for OpenAiBodyWire {
    fn read_fast(doc: &[u8]) -> Option<OpenAiBodyWire> {
        let mut r = Reader::new(doc);
        let body = OpenAiBodyWire::read(&mut r)?;
        r.end()?;
        Some(body)
    }

    fn into_parsed(self) -> ParsedUsage {
        let usage = self.usage.as_ref().and_then(OpenAiUsageWire::to_usage);
        let provider_cost_usd = usage
            .and(self.usage.as_ref())
            .and_then(OpenAiUsageWire::provider_cost_usd);
        let service_tier = self
            .service_tier
            .into_inner()
            .or_else(|| self.usage.and_then(|u| u.service_tier.into_inner()));
        ParsedUsage {
            usage,
            complete: true,
            model: self.model.into_inner(),
            service_tier,
            provider_cost_usd,
        }
    }
}

/// Non-streamed OpenAI-shaped bodies (see the module docs).
pub type OpenAiJsonParser = JsonBodyParser<OpenAiBodyWire>;

/// One `chat.completion.chunk` (or `text_completion` chunk); only what metering needs.
#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
struct ChunkWire {
    model: Text,
    service_tier: Text,
    usage: Option<OpenAiUsageWire>,
    x_groq: Option<XGroqWire>,
    error: Option<IgnoredAny>,
}

#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
struct XGroqWire {
    usage: Option<OpenAiUsageWire>,
}

impl ChunkWire {
    /// The chunk as serde's derive reads it: by hand where the reader answers (see
    /// [`super::json_reader`]), else by serde; `None` when it is not a chunk at all.
    fn parse(data: &[u8]) -> Option<ChunkWire> {
        ChunkWire::read_fast(data).or_else(|| serde_json::from_slice(data).ok())
    }

    fn read_fast(data: &[u8]) -> Option<ChunkWire> {
        let mut r = Reader::new(data);
        let mut chunk = ChunkWire::default();
        let mut seen = Seen::default();
        r.object(|key, r| {
            let field = match key {
                b"model" => 0,
                b"service_tier" => 1,
                b"usage" => 2,
                b"x_groq" => 3,
                b"error" => 4,
                _ => return r.skip(),
            };
            seen.first(field)?;
            match field {
                0 => chunk.model = Text::read(r)?,
                1 => chunk.service_tier = Text::read(r)?,
                2 => chunk.usage = OpenAiUsageWire::read(r)?,
                // Groq only, on two chunks of a stream: not worth reading by hand.
                3 => chunk.x_groq = r.serde()?,
                _ => chunk.error = r.ignored()?,
            }
            Some(())
        })?;
        r.end()?;
        Some(chunk)
    }
}

/// What a stream has told us so far; shared by the chat and Responses stream parsers.
#[derive(Debug, Default)]
pub(crate) struct StreamState {
    pub usage: Option<Usage>,
    pub cost: Option<String>,
    pub model: Option<String>,
    pub tier: Option<String>,
}

impl StreamState {
    /// Records a usage object; the last one with token counts wins.
    pub fn take_usage(&mut self, wire: &OpenAiUsageWire) {
        if let Some(usage) = wire.to_usage() {
            self.usage = Some(usage);
            self.cost = wire.provider_cost_usd().or(self.cost.take());
            if self.tier.is_none() {
                self.tier = wire.service_tier.0.clone();
            }
        }
    }

    pub fn take_names(&mut self, model: Text, tier: Text) {
        if let Some(m) = model.into_inner() {
            self.model = Some(m);
        }
        if let Some(t) = tier.into_inner() {
            self.tier = Some(t);
        }
    }

    pub fn into_parsed(self, complete: bool) -> ParsedUsage {
        ParsedUsage {
            usage: self.usage,
            complete,
            model: self.model,
            service_tier: self.tier,
            provider_cost_usd: self.cost,
        }
    }
}

/// Streamed Chat Completions (and legacy Completions) of OpenAI and compatible providers.
///
/// `complete` is true when `data: [DONE]` or a usage chunk was seen and no error chunk
/// arrived; a stream without usage anywhere yields `usage: None`.
pub struct OpenAiChatStream {
    sse: SseDecoder,
    state: StreamState,
    flags: ChatFlags,
}

/// Progress of a chat stream besides what it reported.
#[derive(Debug, Default)]
struct ChatFlags {
    done: bool,
    errored: bool,
    /// Chunks parsed only to look for a model name; capped so that a server that never
    /// names the model does not get every chunk parsed.
    model_probes: u8,
}

/// How many chunks without usage are parsed looking for a model name.
const MAX_MODEL_PROBES: u8 = 8;

impl OpenAiChatStream {
    pub fn new(max_event_bytes: usize) -> OpenAiChatStream {
        OpenAiChatStream {
            sse: SseDecoder::new(max_event_bytes),
            state: StreamState::default(),
            flags: ChatFlags::default(),
        }
    }

    fn on_event(state: &mut StreamState, flags: &mut ChatFlags, ev: SseEvent<'_>) {
        let data = ev.data.trim_ascii();
        if data == b"[DONE]" {
            flags.done = true;
            return;
        }
        if ev.event == b"error" {
            flags.errored = true;
        }
        // Most chunks are content deltas: parse only those that can tell us something.
        let useful = USAGE_OR_ERROR.any_object_member(data);
        if !useful {
            if state.model.is_some() || flags.model_probes >= MAX_MODEL_PROBES {
                return;
            }
            flags.model_probes += 1;
        }
        let Some(chunk) = ChunkWire::parse(data) else {
            return;
        };
        state.take_names(chunk.model, chunk.service_tier);
        if let Some(usage) = chunk.usage.or(chunk.x_groq.and_then(|x| x.usage)) {
            state.take_usage(&usage);
        }
        if chunk.error.is_some() {
            flags.errored = true;
        }
    }
}

impl UsageParser for OpenAiChatStream {
    fn feed(&mut self, chunk: &[u8]) {
        let (state, flags) = (&mut self.state, &mut self.flags);
        self.sse
            .feed(chunk, &mut |ev| Self::on_event(state, flags, ev));
    }

    fn finish(&mut self) -> ParsedUsage {
        let (state, flags) = (&mut self.state, &mut self.flags);
        self.sse.finish(&mut |ev| Self::on_event(state, flags, ev));
        let flags = std::mem::take(&mut self.flags);
        let complete = !flags.errored && (flags.done || self.state.usage.is_some());
        std::mem::take(&mut self.state).into_parsed(complete)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(body: &str) -> ParsedUsage {
        let mut p = OpenAiChatStream::new(1 << 20);
        p.feed(body.as_bytes());
        p.finish()
    }

    #[test]
    fn stream_without_done_or_usage_is_incomplete() {
        let got = stream("data: {\"model\":\"m\",\"choices\":[{\"delta\":{}}]}\n\n");
        assert_eq!(got.usage, None);
        assert!(!got.complete);
        assert_eq!(got.model.as_deref(), Some("m"));
    }

    #[test]
    fn error_chunk_marks_incomplete_and_last_usage_wins() {
        let got = stream(concat!(
            "data: {\"model\":\"m\",\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2}}\n\n",
            "data: {\"error\":{\"message\":\"boom\"}}\n\n",
        ));
        assert_eq!(
            got.usage.map(|u| (u.input_tokens, u.output_tokens)),
            Some((5, 2))
        );
        assert!(!got.complete);
    }

    #[test]
    fn whisper_duration_body_has_no_token_usage() {
        let mut p = OpenAiJsonParser::new(1024);
        p.feed(br#"{"text":"hi","usage":{"type":"duration","seconds":9}}"#);
        let got = p.finish();
        assert_eq!(got.usage, None);
        assert!(got.complete);
    }
}
