//! The OpenAI-shaped `usage` object and the conventions of every provider that sends one.
//!
//! One wire struct covers OpenAI Chat Completions, legacy Completions, Embeddings, the
//! Responses API (`input_tokens`/`output_tokens` are serde aliases), gpt-image and
//! token-billed transcription, Azure, and the OpenAI-compatible providers. Their differences
//! are all in [`OpenAiUsageWire::to_usage`] (see PROVIDERS.md §1-§7):
//!
//! * `prompt_tokens` includes cached tokens (`prompt_tokens_details.cached_tokens`; DeepSeek
//!   `prompt_cache_hit_tokens`; Mistral `num_cached_tokens` or the misspelled
//!   `prompt_token_details`) and cache writes (`cache_write_tokens`, OpenRouter/OpenAI,
//!   TTL unknown so counted as 5-minute writes).
//! * Hidden reasoning: when `total_tokens > prompt_tokens + completion_tokens`, the difference
//!   is output the provider left out of `completion_tokens` (xAI's `reasoning_tokens`, Gemini's
//!   OpenAI-compatible thinking) and is added to output and counted as reasoning.
//! * Provider-reported cost: OpenRouter `usage.cost` (USD) and xAI `cost_in_usd_ticks`
//!   (1e-10 USD), as exact decimal strings.

use serde::Deserialize;

use super::Usage;
use super::json_reader::{Reader, Seen};
use super::wire::{Count, Decimal, Text, usd_from_ticks};

/// `usage` as OpenAI and OpenAI-compatible providers send it. Unknown fields are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct OpenAiUsageWire {
    #[serde(alias = "input_tokens")]
    pub prompt_tokens: Count,
    #[serde(alias = "output_tokens")]
    pub completion_tokens: Count,
    pub total_tokens: Count,
    #[serde(alias = "input_tokens_details", alias = "input_token_details")]
    pub prompt_tokens_details: Option<PromptDetailsWire>,
    /// Mistral sends this misspelled duplicate of `prompt_tokens_details`.
    pub prompt_token_details: Option<PromptDetailsWire>,
    #[serde(alias = "output_tokens_details")]
    pub completion_tokens_details: Option<CompletionDetailsWire>,
    /// DeepSeek: cache hits, a subset of `prompt_tokens` (hit + miss = prompt).
    pub prompt_cache_hit_tokens: Count,
    pub prompt_cache_miss_tokens: Count,
    /// Mistral's cached-token count.
    pub num_cached_tokens: Count,
    /// OpenRouter: the USD amount charged.
    pub cost: Decimal,
    /// xAI: the amount charged in 1e-10 USD.
    pub cost_in_usd_ticks: Count,
    /// Mistral reports the tier inside usage.
    pub service_tier: Text,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct PromptDetailsWire {
    pub cached_tokens: Count,
    pub cache_write_tokens: Count,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct CompletionDetailsWire {
    pub reasoning_tokens: Count,
}

impl PromptDetailsWire {
    fn read(r: &mut Reader<'_>) -> Option<Option<PromptDetailsWire>> {
        let names = [&b"cached_tokens"[..], b"cache_write_tokens"];
        let read = Count::read_all(r, names)?;
        Some(
            read.map(|[cached_tokens, cache_write_tokens]| PromptDetailsWire {
                cached_tokens,
                cache_write_tokens,
            }),
        )
    }
}

impl CompletionDetailsWire {
    fn read(r: &mut Reader<'_>) -> Option<Option<CompletionDetailsWire>> {
        let read = Count::read_all(r, [b"reasoning_tokens"])?;
        Some(read.map(|[reasoning_tokens]| CompletionDetailsWire { reasoning_tokens }))
    }
}

impl OpenAiUsageWire {
    /// Reads `usage` (an object or `null`) without serde; `None` declines, and the caller
    /// parses with serde instead (see [`super::json_reader`]). Same answer as serde's
    /// derive wherever it answers: the property tests below compare the two.
    pub fn read(r: &mut Reader<'_>) -> Option<Option<OpenAiUsageWire>> {
        if r.null()? {
            return Some(None);
        }
        let mut u = OpenAiUsageWire::default();
        let mut seen = Seen::default();
        r.object(|key, r| {
            let bit = match key {
                b"prompt_tokens" | b"input_tokens" => 0,
                b"completion_tokens" | b"output_tokens" => 1,
                b"total_tokens" => 2,
                b"prompt_tokens_details" | b"input_tokens_details" | b"input_token_details" => 3,
                b"prompt_token_details" => 4,
                b"completion_tokens_details" | b"output_tokens_details" => 5,
                b"prompt_cache_hit_tokens" => 6,
                b"prompt_cache_miss_tokens" => 7,
                b"num_cached_tokens" => 8,
                b"cost_in_usd_ticks" => 9,
                b"service_tier" => 10,
                b"cost" => 11,
                _ => return r.skip(),
            };
            seen.first(bit)?;
            match bit {
                0 => u.prompt_tokens = Count::read(r)?,
                1 => u.completion_tokens = Count::read(r)?,
                2 => u.total_tokens = Count::read(r)?,
                3 => u.prompt_tokens_details = PromptDetailsWire::read(r)?,
                4 => u.prompt_token_details = PromptDetailsWire::read(r)?,
                5 => u.completion_tokens_details = CompletionDetailsWire::read(r)?,
                6 => u.prompt_cache_hit_tokens = Count::read(r)?,
                7 => u.prompt_cache_miss_tokens = Count::read(r)?,
                8 => u.num_cached_tokens = Count::read(r)?,
                9 => u.cost_in_usd_ticks = Count::read(r)?,
                10 => u.service_tier = Text::read(r)?,
                _ => u.cost = r.serde()?,
            }
            Some(())
        })?;
        Some(Some(u))
    }

    /// Normalized usage, or `None` when the object has no token counts at all (whisper's
    /// `{"type":"duration","seconds":9}`: missing, never zero).
    pub fn to_usage(&self) -> Option<Usage> {
        let prompt = self.prompt_tokens.get().or_else(|| {
            let hit = self.prompt_cache_hit_tokens.get()?;
            let miss = self.prompt_cache_miss_tokens.get()?;
            Some(hit.saturating_add(miss))
        });
        let completion = self.completion_tokens.get();
        let total = self.total_tokens.get();
        if prompt.is_none() && completion.is_none() && total.is_none() {
            return None;
        }
        // Only a total (some embedding APIs): it is all input.
        let input = match (prompt, completion) {
            (Some(p), _) => p,
            (None, None) => total.unwrap_or(0),
            (None, Some(_)) => 0,
        };
        let details = self
            .prompt_tokens_details
            .as_ref()
            .or(self.prompt_token_details.as_ref());
        let cached = details
            .and_then(|d| d.cached_tokens.get())
            .or(self.prompt_cache_hit_tokens.get())
            .or(self.num_cached_tokens.get())
            .unwrap_or(0)
            .min(input);
        let cache_write = details
            .and_then(|d| d.cache_write_tokens.get())
            .unwrap_or(0)
            .min(input - cached);
        let mut output = completion.unwrap_or(0);
        let mut reasoning = self
            .completion_tokens_details
            .as_ref()
            .map_or(0, |d| d.reasoning_tokens.or_zero());
        if let (Some(p), Some(c), Some(t)) = (prompt, completion, total) {
            let hidden = t.saturating_sub(p.saturating_add(c));
            if hidden > 0 {
                output = output.saturating_add(hidden);
                reasoning = reasoning.max(hidden);
            }
        }
        Some(Usage {
            input_tokens: input,
            cached_input_tokens: cached,
            cache_write_5m_tokens: cache_write,
            output_tokens: output,
            reasoning_tokens: reasoning.min(output),
            ..Usage::default()
        })
    }

    /// The cost the provider reported, as an exact decimal USD string.
    pub fn provider_cost_usd(&self) -> Option<String> {
        match self.cost_in_usd_ticks.get() {
            Some(ticks) => Some(usd_from_ticks(ticks)),
            None => self.cost.0.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(json: &str) -> Option<Usage> {
        serde_json::from_str::<OpenAiUsageWire>(json)
            .unwrap()
            .to_usage()
    }

    #[test]
    fn conventions() {
        // Only a duration: missing, not zero.
        assert_eq!(usage(r#"{"type":"duration","seconds":9}"#), None);
        // Only a total: input.
        assert_eq!(usage(r#"{"total_tokens":17}"#).unwrap().input_tokens, 17);
        // DeepSeek without prompt_tokens.
        let u = usage(r#"{"prompt_cache_hit_tokens":3,"prompt_cache_miss_tokens":4}"#).unwrap();
        assert_eq!((u.input_tokens, u.cached_input_tokens), (7, 3));
        // Mistral's spellings.
        let u = usage(r#"{"prompt_tokens":10,"prompt_token_details":{"cached_tokens":4}}"#);
        assert_eq!(u.unwrap().cached_input_tokens, 4);
        let u = usage(r#"{"prompt_tokens":10,"num_cached_tokens":2}"#);
        assert_eq!(u.unwrap().cached_input_tokens, 2);
        // Cache writes are part of the prompt.
        let u = usage(
            r#"{"prompt_tokens":10,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":4,"cache_write_tokens":5}}"#,
        )
        .unwrap();
        assert_eq!((u.cache_write_5m_tokens, u.input_fresh_tokens()), (5, 1));
        // Inconsistent numbers are clamped, never underflow.
        let u = usage(
            r#"{"prompt_tokens":1,"completion_tokens":1,"total_tokens":0,"prompt_tokens_details":{"cached_tokens":9,"cache_write_tokens":9},"completion_tokens_details":{"reasoning_tokens":5}}"#,
        )
        .unwrap();
        assert_eq!(
            (
                u.cached_input_tokens,
                u.cache_write_5m_tokens,
                u.reasoning_tokens
            ),
            (1, 0, 1)
        );
    }
}
