//! Usage parsers for the Anthropic Messages API (`POST /v1/messages`), also used for the
//! Anthropic-compatible endpoints of other providers (DeepSeek, xAI, gateways).
//!
//! Conventions (PROVIDERS.md §5): `input_tokens` excludes cache reads and cache writes, so
//! the normalized input is `input + cache_creation + cache_read`; cache writes are split by
//! TTL in `cache_creation` (absent split: all 5-minute); thinking is inside `output_tokens`;
//! `server_tool_use.web_search_requests` is billed per search; the tier is `usage.service_tier`.
//!
//! Streams: `message_start` carries the input and cache counts (its `output_tokens` is a
//! placeholder); `message_delta.usage` is cumulative and overrides every field it has;
//! `message_stop` ends the stream. `complete` is true once a `message_delta` or
//! `message_stop` arrived and no `event: error` did. A stream that ends in an error keeps
//! the counts seen so far as lower bounds.

use serde::Deserialize;

use super::json_reader::{Reader, Seen};
use super::json_tail::{JsonBodyParser, ResponseBody};
use super::sse::{SseDecoder, SseEvent};
use super::wire::{Count, Text};
use super::{ParsedUsage, Usage, UsageParser};

/// Anthropic's `usage` object. Every field optional so stream snapshots can be merged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct AnthropicUsageWire {
    pub input_tokens: Count,
    pub cache_creation_input_tokens: Count,
    pub cache_read_input_tokens: Count,
    pub cache_creation: Option<CacheCreationWire>,
    pub output_tokens: Count,
    pub output_tokens_details: Option<OutputDetailsWire>,
    pub server_tool_use: Option<ServerToolUseWire>,
    pub service_tier: Text,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct CacheCreationWire {
    pub ephemeral_5m_input_tokens: Count,
    pub ephemeral_1h_input_tokens: Count,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct OutputDetailsWire {
    pub thinking_tokens: Count,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ServerToolUseWire {
    pub web_search_requests: Count,
}

impl AnthropicUsageWire {
    /// Reads `usage` (an object or `null`) by hand; `None` declines, and the caller parses
    /// with serde instead (see [`super::json_reader`]). The property test below checks it
    /// against serde.
    fn read(r: &mut Reader<'_>) -> Option<Option<AnthropicUsageWire>> {
        if r.null()? {
            return Some(None);
        }
        let mut u = AnthropicUsageWire::default();
        let mut seen = Seen::default();
        r.object(|key, r| {
            let bit = match key {
                b"input_tokens" => 0,
                b"cache_creation_input_tokens" => 1,
                b"cache_read_input_tokens" => 2,
                b"cache_creation" => 3,
                b"output_tokens" => 4,
                b"output_tokens_details" => 5,
                b"server_tool_use" => 6,
                b"service_tier" => 7,
                _ => return r.skip(),
            };
            seen.first(bit)?;
            match bit {
                0 => u.input_tokens = Count::read(r)?,
                1 => u.cache_creation_input_tokens = Count::read(r)?,
                2 => u.cache_read_input_tokens = Count::read(r)?,
                3 => {
                    let names = [
                        &b"ephemeral_5m_input_tokens"[..],
                        b"ephemeral_1h_input_tokens",
                    ];
                    u.cache_creation =
                        Count::read_all(r, names)?.map(|[m5, h1]| CacheCreationWire {
                            ephemeral_5m_input_tokens: m5,
                            ephemeral_1h_input_tokens: h1,
                        });
                }
                4 => u.output_tokens = Count::read(r)?,
                5 => {
                    u.output_tokens_details = Count::read_all(r, [b"thinking_tokens"])?
                        .map(|[thinking_tokens]| OutputDetailsWire { thinking_tokens });
                }
                6 => {
                    u.server_tool_use = Count::read_all(r, [b"web_search_requests"])?.map(
                        |[web_search_requests]| ServerToolUseWire {
                            web_search_requests,
                        },
                    );
                }
                _ => u.service_tier = Text::read(r)?,
            }
            Some(())
        })?;
        Some(Some(u))
    }

    /// Fields present in `newer` replace ours (`message_delta` counts are cumulative).
    pub fn merge(&mut self, newer: AnthropicUsageWire) {
        self.input_tokens = self.input_tokens.overridden_by(newer.input_tokens);
        self.cache_creation_input_tokens = self
            .cache_creation_input_tokens
            .overridden_by(newer.cache_creation_input_tokens);
        self.cache_read_input_tokens = self
            .cache_read_input_tokens
            .overridden_by(newer.cache_read_input_tokens);
        self.output_tokens = self.output_tokens.overridden_by(newer.output_tokens);
        if newer.cache_creation.is_some() {
            self.cache_creation = newer.cache_creation;
        }
        if newer.output_tokens_details.is_some() {
            self.output_tokens_details = newer.output_tokens_details;
        }
        if newer.server_tool_use.is_some() {
            self.server_tool_use = newer.server_tool_use;
        }
        if newer.service_tier.0.is_some() {
            self.service_tier = newer.service_tier;
        }
    }

    /// Normalized usage; `None` when no token count is present at all.
    pub fn to_usage(&self) -> Option<Usage> {
        let counts = [
            self.input_tokens,
            self.cache_creation_input_tokens,
            self.cache_read_input_tokens,
            self.output_tokens,
        ];
        if counts.iter().all(|c| c.get().is_none()) {
            return None;
        }
        let split = self.cache_creation.as_ref();
        let split_5m = split.map_or(0, |s| s.ephemeral_5m_input_tokens.or_zero());
        let split_1h = split.map_or(0, |s| s.ephemeral_1h_input_tokens.or_zero());
        let cache_write = self
            .cache_creation_input_tokens
            .get()
            .unwrap_or(split_5m.saturating_add(split_1h));
        let write_1h = split_1h.min(cache_write);
        let cached = self.cache_read_input_tokens.or_zero();
        let output = self.output_tokens.or_zero();
        let thinking = self
            .output_tokens_details
            .as_ref()
            .map_or(0, |d| d.thinking_tokens.or_zero());
        Some(Usage {
            input_tokens: self
                .input_tokens
                .or_zero()
                .saturating_add(cache_write)
                .saturating_add(cached),
            cached_input_tokens: cached,
            cache_write_5m_tokens: cache_write - write_1h,
            cache_write_1h_tokens: write_1h,
            output_tokens: output,
            reasoning_tokens: thinking.min(output),
            web_search_requests: self
                .server_tool_use
                .as_ref()
                .map_or(0, |s| s.web_search_requests.or_zero()),
            grounded_prompts: 0,
        })
    }
}

/// A non-streamed Messages response.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct AnthropicBodyWire {
    pub model: Text,
    pub usage: Option<AnthropicUsageWire>,
}

impl ResponseBody for AnthropicBodyWire {
    /// By hand (the body's bulk, `content`, is only skipped); serde only where the reader
    /// declines.
    fn read_fast(doc: &[u8]) -> Option<AnthropicBodyWire> {
        let mut r = Reader::new(doc);
        let mut body = AnthropicBodyWire::default();
        let mut seen = Seen::default();
        r.object(|key, r| {
            let field = match key {
                b"model" => 0,
                b"usage" => 1,
                _ => return r.skip(),
            };
            seen.first(field)?;
            match field {
                0 => body.model = Text::read(r)?,
                _ => body.usage = AnthropicUsageWire::read(r)?,
            }
            Some(())
        })?;
        r.end()?;
        Some(body)
    }

    fn into_parsed(self) -> ParsedUsage {
        let usage = self.usage.as_ref().and_then(AnthropicUsageWire::to_usage);
        ParsedUsage {
            usage,
            complete: true,
            model: self.model.into_inner(),
            service_tier: self.usage.and_then(|u| u.service_tier.into_inner()),
            provider_cost_usd: None,
        }
    }
}

/// Non-streamed Messages bodies.
pub type AnthropicJsonParser = JsonBodyParser<AnthropicBodyWire>;

/// The stream events that carry usage; everything else is skipped unparsed.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct EventWire {
    #[serde(rename = "type")]
    kind: Text,
    message: Option<AnthropicBodyWire>,
    usage: Option<AnthropicUsageWire>,
}

#[derive(Debug, Default)]
struct StreamState {
    usage: Option<AnthropicUsageWire>,
    model: Option<String>,
    ended: bool,
    errored: bool,
}

impl StreamState {
    fn on_event(&mut self, ev: SseEvent<'_>) {
        let name = if ev.event.is_empty() {
            // Nameless events (some gateways): the type is in the payload.
            None
        } else {
            Some(ev.event)
        };
        match name {
            Some(b"message_start" | b"message_delta") | None => {}
            Some(b"message_stop") => {
                self.ended = true;
                return;
            }
            Some(b"error") => {
                self.errored = true;
                return;
            }
            Some(_) => return,
        }
        let Ok(wire) = serde_json::from_slice::<EventWire>(ev.data) else {
            return;
        };
        let kind = name.unwrap_or(wire.kind.0.as_deref().unwrap_or_default().as_bytes());
        match kind {
            b"message_start" => {
                if let Some(message) = wire.message {
                    if let Some(model) = message.model.into_inner() {
                        self.model = Some(model);
                    }
                    if let Some(usage) = message.usage {
                        self.merge(usage);
                    }
                }
            }
            b"message_delta" => {
                self.ended = true;
                if let Some(usage) = wire.usage {
                    self.merge(usage);
                }
            }
            b"message_stop" => self.ended = true,
            b"error" => self.errored = true,
            _ => {}
        }
    }

    fn merge(&mut self, usage: AnthropicUsageWire) {
        match &mut self.usage {
            Some(current) => current.merge(usage),
            None => self.usage = Some(usage),
        }
    }
}

/// Streamed Messages (`stream: true`).
pub struct AnthropicStream {
    sse: SseDecoder,
    state: StreamState,
}

impl AnthropicStream {
    pub fn new(max_event_bytes: usize) -> AnthropicStream {
        AnthropicStream {
            sse: SseDecoder::new(max_event_bytes),
            state: StreamState::default(),
        }
    }
}

impl UsageParser for AnthropicStream {
    fn feed(&mut self, chunk: &[u8]) {
        let state = &mut self.state;
        self.sse.feed(chunk, &mut |ev| state.on_event(ev));
    }

    fn finish(&mut self) -> ParsedUsage {
        let state = &mut self.state;
        self.sse.finish(&mut |ev| state.on_event(ev));
        let state = std::mem::take(&mut self.state);
        let usage = state.usage.as_ref().and_then(AnthropicUsageWire::to_usage);
        ParsedUsage {
            usage,
            complete: state.ended && !state.errored,
            model: state.model,
            service_tier: state.usage.and_then(|u| u.service_tier.into_inner()),
            provider_cost_usd: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn serde_body(doc: &[u8]) -> Option<AnthropicBodyWire> {
        serde_json::from_slice(doc).ok()
    }

    /// The Messages fixtures are read by hand, as serde reads them.
    #[test]
    fn fixtures_are_read_by_hand_as_serde_reads_them() {
        for name in [
            "messages.json",
            "messages_web_search.json",
            "error_401.json",
        ] {
            let path = format!(
                "{}/tests/fixtures/anthropic/{name}",
                env!("CARGO_MANIFEST_DIR")
            );
            let doc = std::fs::read(&path).unwrap();
            let fast = AnthropicBodyWire::read_fast(&doc);
            assert!(fast.is_some(), "{name} was left to serde");
            assert_eq!(fast, serde_body(&doc), "{name}");
        }
    }

    fn value() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            r#""claude-sonnet-4-5""#,
            r#""""#,
            r#""a\"b""#,
            "null",
            "7",
            "[1]",
            r#"{"input_tokens":3,"output_tokens":"4","cache_creation":{"ephemeral_1h_input_tokens":2}}"#,
            r#"{"input_tokens":3,"input_tokens":4}"#,
            r#"{"input_tokens":1,"cache_creation_input_tokens":10,"cache_read_input_tokens":null,"output_tokens":2.0,"service_tier":"standard"}"#,
            r#"{"cache_creation":{"ephemeral_5m_input_tokens":3,"ephemeral_1h_input_tokens":4,"x":[]},"output_tokens_details":{"thinking_tokens":9}}"#,
            r#"{"cache_creation":{"ephemeral_5m_input_tokens":3,"ephemeral_5m_input_tokens":4}}"#,
            r#"{"cache_creation":[3,4],"server_tool_use":{"web_search_requests":2}}"#,
            r#"{"cache_creation":null,"server_tool_use":null,"output_tokens_details":7}"#,
            r#"{"service_tier":null,"server_tool_use":{"web_search_requests":"2"},"output_tokens":1}"#,
            r#"[{"type":"text","text":"hi"}]"#,
        ])
    }

    proptest! {
        #[test]
        fn body_reader_agrees_with_serde(
            members in prop::collection::vec(
                (prop::sample::select(vec!["model", "usage", "content", "id"]), value()),
                0..5,
            ),
        ) {
            let doc: Vec<String> = members.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            let doc = format!("{{{}}}", doc.join(","));
            let fast = AnthropicBodyWire::read_fast(doc.as_bytes());
            if fast.is_some() {
                prop_assert_eq!(fast, serde_body(doc.as_bytes()), "{}", doc);
            }
        }
    }

    fn usage(json: &str) -> Usage {
        serde_json::from_str::<AnthropicUsageWire>(json)
            .unwrap()
            .to_usage()
            .unwrap()
    }

    #[test]
    fn cache_write_split() {
        // No split: all 5-minute.
        let u = usage(r#"{"input_tokens":1,"cache_creation_input_tokens":10,"output_tokens":2}"#);
        assert_eq!(
            (
                u.cache_write_5m_tokens,
                u.cache_write_1h_tokens,
                u.input_tokens
            ),
            (10, 0, 11)
        );
        // Split without the total.
        let u = usage(
            r#"{"input_tokens":1,"cache_creation":{"ephemeral_5m_input_tokens":3,"ephemeral_1h_input_tokens":4}}"#,
        );
        assert_eq!((u.cache_write_5m_tokens, u.cache_write_1h_tokens), (3, 4));
        // A split larger than the total is capped by it.
        let u = usage(
            r#"{"cache_creation_input_tokens":5,"cache_creation":{"ephemeral_1h_input_tokens":9}}"#,
        );
        assert_eq!((u.cache_write_5m_tokens, u.cache_write_1h_tokens), (0, 5));
    }

    #[test]
    fn nameless_events_and_delta_overrides() {
        let mut p = AnthropicStream::new(1 << 16);
        p.feed(concat!(
            "data: {\"type\":\"message_start\",\"message\":{\"model\":\"c\",\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}}\n\n",
            "data: {\"type\":\"message_delta\",\"usage\":{\"input_tokens\":12,\"output_tokens\":30,\"server_tool_use\":{\"web_search_requests\":1}}}\n\n",
        ).as_bytes());
        let got = p.finish();
        let u = got.usage.unwrap();
        assert_eq!(
            (u.input_tokens, u.output_tokens, u.web_search_requests),
            (12, 30, 1)
        );
        assert!(got.complete);
        assert_eq!(got.model.as_deref(), Some("c"));
    }

    #[test]
    fn count_tokens_body_is_not_usage() {
        let mut p = AnthropicJsonParser::new(1024);
        p.feed(br#"{"input_tokens":42}"#);
        assert_eq!(p.finish().usage, None);
    }
}
