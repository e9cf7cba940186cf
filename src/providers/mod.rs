//! Providers: who we talk to, and how to read token usage out of what they answer.
//!
//! Everything here is pure and synchronous (bytes in, usage out): the proxy's
//! `meter` module feeds response chunks to a [`UsageParser`] chosen by
//! [`parser_for`], and the pricing module turns the resulting [`Usage`] into money.
//!
//! Map: [`sse`] decodes event streams; [`json_tail`] and [`json_seq`] capture JSON bodies
//! with bounded memory; [`json_reader`] reads the plain shape of a small one without serde;
//! [`openai`] (with the shared usage conventions in [`openai_compat`]), [`anthropic`] and
//! [`gemini`] hold one parser per wire format; [`wire`] has the lenient
//! field types they share. [`openai::UsageChunkFilter`] strips the usage chunk the proxy
//! requested on a client's behalf.

use serde::{Deserialize, Serialize};

pub mod anthropic;
pub mod decode;
pub mod gemini;
pub mod json_reader;
pub mod json_seq;
pub mod json_tail;
pub mod openai;
pub mod openai_compat;
pub mod sse;
pub mod wire;

#[cfg(test)]
mod fixture_tests;

/// An upstream LLM provider, as named by the first segment of a proxy path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    #[serde(rename = "openai")]
    OpenAi,
    Anthropic,
    Gemini,
    Groq,
    Mistral,
    #[serde(rename = "deepseek")]
    DeepSeek,
    Together,
    #[serde(rename = "openrouter")]
    OpenRouter,
    Xai,
    Fireworks,
    Azure,
}

impl Provider {
    pub const ALL: [Provider; 11] = [
        Provider::OpenAi,
        Provider::Anthropic,
        Provider::Gemini,
        Provider::Groq,
        Provider::Mistral,
        Provider::DeepSeek,
        Provider::Together,
        Provider::OpenRouter,
        Provider::Xai,
        Provider::Fireworks,
        Provider::Azure,
    ];

    /// The stable lowercase name used in URLs, JSON, pricing files and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::OpenAi => "openai",
            Provider::Anthropic => "anthropic",
            Provider::Gemini => "gemini",
            Provider::Groq => "groq",
            Provider::Mistral => "mistral",
            Provider::DeepSeek => "deepseek",
            Provider::Together => "together",
            Provider::OpenRouter => "openrouter",
            Provider::Xai => "xai",
            Provider::Fireworks => "fireworks",
            Provider::Azure => "azure",
        }
    }

    pub fn from_name(name: &str) -> Option<Provider> {
        Provider::ALL.into_iter().find(|p| p.as_str() == name)
    }

    /// Which error JSON shape this provider's clients expect.
    pub fn dialect(self) -> Dialect {
        match self {
            Provider::Anthropic => Dialect::Anthropic,
            Provider::Gemini => Dialect::Gemini,
            _ => Dialect::OpenAi,
        }
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The wire dialect of a provider's API (error shapes, usage conventions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    OpenAi,
    Anthropic,
    Gemini,
}

/// Which API of a provider was called, derived from the upstream path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Endpoint {
    #[serde(rename = "chat.completions")]
    ChatCompletions,
    #[serde(rename = "responses")]
    Responses,
    #[serde(rename = "embeddings")]
    Embeddings,
    #[serde(rename = "completions")]
    Completions,
    #[serde(rename = "messages")]
    Messages,
    #[serde(rename = "generateContent")]
    GenerateContent,
    #[serde(rename = "streamGenerateContent")]
    StreamGenerateContent,
    #[serde(rename = "other")]
    Other,
}

impl Endpoint {
    /// Every endpoint, for tests and fuzzing that must cover them all (a test below
    /// fails to compile when a variant is added and not listed).
    pub const ALL: [Endpoint; 8] = [
        Endpoint::ChatCompletions,
        Endpoint::Responses,
        Endpoint::Embeddings,
        Endpoint::Completions,
        Endpoint::Messages,
        Endpoint::GenerateContent,
        Endpoint::StreamGenerateContent,
        Endpoint::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "chat.completions",
            Endpoint::Responses => "responses",
            Endpoint::Embeddings => "embeddings",
            Endpoint::Completions => "completions",
            Endpoint::Messages => "messages",
            Endpoint::GenerateContent => "generateContent",
            Endpoint::StreamGenerateContent => "streamGenerateContent",
            Endpoint::Other => "other",
        }
    }

    /// The wire dialect of this endpoint: an OpenAI-compatible endpoint of Anthropic or
    /// Gemini speaks OpenAI (usage and error shapes alike), DeepSeek's Anthropic-compatible
    /// `/messages` speaks Anthropic; only paths no endpoint names follow the provider.
    pub fn dialect(self, provider: Provider) -> Dialect {
        match self {
            Endpoint::ChatCompletions
            | Endpoint::Completions
            | Endpoint::Embeddings
            | Endpoint::Responses => Dialect::OpenAi,
            Endpoint::Messages => Dialect::Anthropic,
            Endpoint::GenerateContent | Endpoint::StreamGenerateContent => Dialect::Gemini,
            Endpoint::Other => provider.dialect(),
        }
    }

    /// Classifies an upstream path (after the proxy prefix was stripped, query excluded).
    /// `/v1/chat/completions`, `/openai/deployments/d/chat/completions`,
    /// `/v1beta/models/gemini-2.5-pro:streamGenerateContent`, `/v1/messages`, ...
    pub fn from_path(path: &str) -> Endpoint {
        if let Some((_, method)) = path.rsplit_once(':') {
            // Gemini puts the method after a colon in the last segment.
            return match method {
                "generateContent" => Endpoint::GenerateContent,
                "streamGenerateContent" => Endpoint::StreamGenerateContent,
                _ => Endpoint::Other,
            };
        }
        let path = path.trim_end_matches('/');
        if path.ends_with("/chat/completions") {
            Endpoint::ChatCompletions
        } else if path.ends_with("/responses") {
            Endpoint::Responses
        } else if path.ends_with("/embeddings") {
            Endpoint::Embeddings
        } else if path.ends_with("/completions") {
            Endpoint::Completions
        } else if path.ends_with("/messages") {
            Endpoint::Messages
        } else {
            Endpoint::Other
        }
    }
}

/// Normalized token usage of one call. Meanings follow DESIGN.md:
/// `input_tokens` counts every prompt-side token (fresh + cache read + cache write);
/// `output_tokens` counts every output token, reasoning included.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    /// Part of `input_tokens` read from a cache.
    pub cached_input_tokens: u64,
    /// Part of `input_tokens` written to a cache with a 5-minute TTL (or unknown TTL).
    pub cache_write_5m_tokens: u64,
    /// Part of `input_tokens` written to a cache with a 1-hour TTL (Anthropic).
    pub cache_write_1h_tokens: u64,
    pub output_tokens: u64,
    /// Part of `output_tokens` that was reasoning / thinking.
    pub reasoning_tokens: u64,
    /// Server-side web searches billed per request (Anthropic `server_tool_use`).
    pub web_search_requests: u64,
    /// Gemini prompts grounded with Google Search (billed per grounded prompt).
    pub grounded_prompts: u64,
}

impl Usage {
    pub fn cache_write_tokens(&self) -> u64 {
        self.cache_write_5m_tokens + self.cache_write_1h_tokens
    }

    /// Prompt tokens billed at the plain input rate.
    pub fn input_fresh_tokens(&self) -> u64 {
        self.input_tokens
            .saturating_sub(self.cached_input_tokens)
            .saturating_sub(self.cache_write_tokens())
    }
}

/// What a parser learned from one response body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedUsage {
    /// `None` when the response carried no usage at all (unknown, never zero).
    pub usage: Option<Usage>,
    /// False when a stream stopped before its final usage (counts are lower bounds).
    pub complete: bool,
    /// The model as the response names it (the resolved snapshot), if it does.
    pub model: Option<String>,
    /// The service tier the response says was used (`default`, `flex`, `priority`, ...).
    pub service_tier: Option<String>,
    /// A cost the provider itself reported, as an exact decimal string of USD
    /// (OpenRouter `usage.cost`; xAI `cost_in_usd_ticks` / 1e10).
    pub provider_cost_usd: Option<String>,
}

/// Reads token usage from one provider's response. Pure: no I/O, no clock.
pub trait UsageParser: Send {
    /// Next body chunk, already decompressed. Keeps only what it needs, never the whole body.
    fn feed(&mut self, chunk: &[u8]);
    /// What was seen so far; `complete` is false when the stream stopped early.
    fn finish(&mut self) -> ParsedUsage;
}

/// Memory bounds of the parsers [`parser_for_with`] builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParserLimits {
    /// A JSON body (or one element of a JSON-array stream) up to this size is parsed whole;
    /// a larger one keeps only 64 KiB head and tail windows (usage is at the end).
    pub max_json_body_bytes: usize,
    /// SSE events larger than this are skipped (and counted) without being parsed.
    pub max_sse_event_bytes: usize,
}

impl Default for ParserLimits {
    fn default() -> Self {
        ParserLimits {
            max_json_body_bytes: json_tail::DEFAULT_MAX_JSON_BYTES,
            max_sse_event_bytes: 1024 * 1024,
        }
    }
}

/// The usage parser for a response, with [`ParserLimits::default`].
///
/// `streamed` means the response's content type is `text/event-stream`. The endpoint picks
/// the wire format (so Gemini's OpenAI-compatible `/chat/completions` gets the OpenAI
/// parser, DeepSeek's `/anthropic/v1/messages` the Anthropic one); for [`Endpoint::Other`]
/// the provider's dialect decides, which yields `usage: None` for bodies without a
/// recognizable usage object. Callers should only meter `Other` for calls that are billed:
/// a `GET /v1/responses/{id}` body also carries a usage object.
///
/// [`ParsedUsage::complete`] means the counts are final, not lower bounds:
/// * JSON bodies: the body parsed (or, past the size cap, its end was intact).
/// * OpenAI-shaped chat streams: `data: [DONE]` or a usage chunk was seen, and no error chunk.
/// * Responses streams: `response.completed`, `response.incomplete` or `response.failed` arrived.
/// * Anthropic streams: `message_delta` or `message_stop` arrived and no `event: error`.
/// * Gemini streams (SSE or JSON array): a candidate had a `finishReason` (or the prompt
///   was blocked) and no error chunk came.
pub fn parser_for(provider: Provider, endpoint: Endpoint, streamed: bool) -> Box<dyn UsageParser> {
    parser_for_with(provider, endpoint, streamed, ParserLimits::default())
}

/// [`parser_for`] with explicit memory bounds.
pub fn parser_for_with(
    provider: Provider,
    endpoint: Endpoint,
    streamed: bool,
    limits: ParserLimits,
) -> Box<dyn UsageParser> {
    let json = limits.max_json_body_bytes;
    let event = limits.max_sse_event_bytes;
    match (endpoint.dialect(provider), streamed) {
        (Dialect::OpenAi, false) => Box::new(openai::OpenAiJsonParser::new(json)),
        (Dialect::OpenAi, true) if endpoint == Endpoint::Responses => {
            Box::new(openai::ResponsesStream::new(event))
        }
        (Dialect::OpenAi, true) => Box::new(openai::OpenAiChatStream::new(event)),
        (Dialect::Anthropic, false) => Box::new(anthropic::AnthropicJsonParser::new(json)),
        (Dialect::Anthropic, true) => Box::new(anthropic::AnthropicStream::new(event)),
        (Dialect::Gemini, false) => Box::new(gemini::GeminiJsonParser::new(json)),
        (Dialect::Gemini, true) => Box::new(gemini::GeminiStream::new(event)),
    }
}

#[cfg(test)]
mod endpoint_tests {
    use super::Endpoint;

    /// Its position in `Endpoint::ALL`; exhaustive, so a new variant must be placed.
    fn position(e: Endpoint) -> usize {
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

    #[test]
    fn all_lists_every_endpoint_once() {
        for (i, e) in Endpoint::ALL.into_iter().enumerate() {
            assert_eq!(position(e), i, "{e:?}");
        }
    }
}
