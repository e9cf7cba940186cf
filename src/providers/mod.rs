//! Providers: who we talk to, and how to read token usage out of what they answer.
//!
//! Everything here is pure and synchronous (bytes in, usage out): the proxy's
//! `meter` module feeds response chunks to a [`UsageParser`] chosen by
//! [`parser_for`], and the pricing module turns the resulting [`Usage`] into money.

use serde::{Deserialize, Serialize};

pub mod sse;

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
