//! Streamed Responses API (`POST /v1/responses` with `stream: true`), OpenAI, Azure and xAI.
//!
//! Typed SSE: `event: response.created` … `event: response.completed`, no `[DONE]`. Usage is
//! read only from the terminal event's `response.usage` (`response.completed`,
//! `response.incomplete` or `response.failed`); the model and tier are taken from every
//! `response` object parsed, the last winning (`response.created` says `service_tier: "auto"`,
//! the terminal event the tier actually used). Delta events are never parsed.
//!
//! `complete` is true once a terminal event arrived. A stream cut before it yields
//! `usage: None` and `complete: false`; a standalone `event: error` changes nothing else
//! (the server follows it with `response.failed`).

use serde::Deserialize;

use super::super::json_reader::{Reader, Seen};
use super::super::sse::{SseDecoder, SseEvent};
use super::super::wire::{Needle, Text, USAGE_KEY, has_object_member};
use super::super::{ParsedUsage, UsageParser};
use super::{OpenAiBodyWire, StreamState};

const TERMINAL: [&[u8]; 3] = [
    b"response.completed",
    b"response.incomplete",
    b"response.failed",
];
const STARTED: [&[u8]; 3] = [
    b"response.created",
    b"response.in_progress",
    b"response.queued",
];

/// One Responses stream event: its `type` and the `response` object, if any.
#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct EventWire {
    #[serde(rename = "type")]
    pub kind: Text,
    pub response: Option<OpenAiBodyWire>,
}

impl EventWire {
    /// The event as serde's derive reads it: by hand where the reader answers (see
    /// [`crate::providers::json_reader`]), else by serde; `None` when it is not an event.
    pub fn parse(data: &[u8]) -> Option<EventWire> {
        EventWire::read_fast(data).or_else(|| serde_json::from_slice(data).ok())
    }

    /// The hand reader alone. A terminal event repeats the whole answer in
    /// `response.output`, which is only skipped here.
    pub fn read_fast(data: &[u8]) -> Option<EventWire> {
        let mut r = Reader::new(data);
        let mut event = EventWire::default();
        let mut seen = Seen::default();
        r.object(|key, r| {
            let field = match key {
                b"type" => 0,
                b"response" => 1,
                _ => return r.skip(),
            };
            seen.first(field)?;
            if field == 0 {
                event.kind = Text::read(r)?;
            } else if !r.null()? {
                event.response = Some(OpenAiBodyWire::read(r)?);
            }
            Some(())
        })?;
        r.end()?;
        Some(event)
    }
}

/// Usage parser for a streamed Responses API call.
pub struct ResponsesStream {
    sse: SseDecoder,
    state: StreamState,
    terminal: bool,
}

impl ResponsesStream {
    pub fn new(max_event_bytes: usize) -> ResponsesStream {
        ResponsesStream {
            sse: SseDecoder::new(max_event_bytes),
            state: StreamState::default(),
            terminal: false,
        }
    }

    fn on_event(state: &mut StreamState, terminal: &mut bool, ev: SseEvent<'_>) {
        static RESPONSE_KEY: Needle = Needle::new(b"\"response\"");
        let data = ev.data;
        let useful = if ev.event.is_empty() {
            // No `event:` lines (some gateways): decide from the payload.
            has_object_member(data, &USAGE_KEY)
                || (state.model.is_none() && RESPONSE_KEY.find_in(data).is_some())
        } else {
            TERMINAL.contains(&ev.event) || (state.model.is_none() && STARTED.contains(&ev.event))
        };
        if !useful {
            return;
        }
        let Some(wire) = EventWire::parse(data) else {
            return;
        };
        let kind = if ev.event.is_empty() {
            wire.kind.0.as_deref().unwrap_or_default().as_bytes()
        } else {
            ev.event
        };
        let is_terminal = TERMINAL.contains(&kind);
        let Some(response) = wire.response else {
            return;
        };
        state.take_names(response.model, response.service_tier);
        if is_terminal {
            *terminal = true;
            if let Some(usage) = &response.usage {
                state.take_usage(usage);
            }
        }
    }
}

impl UsageParser for ResponsesStream {
    fn feed(&mut self, chunk: &[u8]) {
        let (state, terminal) = (&mut self.state, &mut self.terminal);
        self.sse
            .feed(chunk, &mut |ev| Self::on_event(state, terminal, ev));
    }

    fn finish(&mut self) -> ParsedUsage {
        let (state, terminal) = (&mut self.state, &mut self.terminal);
        self.sse
            .finish(&mut |ev| Self::on_event(state, terminal, ev));
        std::mem::take(&mut self.state).into_parsed(self.terminal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(body: &str) -> ParsedUsage {
        let mut p = ResponsesStream::new(1 << 20);
        p.feed(body.as_bytes());
        p.finish()
    }

    #[test]
    fn cut_stream_keeps_model_but_no_usage() {
        let got = run(concat!(
            "event: response.created\n",
            "data: {\"type\":\"response.created\",\"response\":{\"model\":\"gpt-4.1\",\"service_tier\":\"auto\",\"usage\":null}}\n\n",
            "event: response.output_text.delta\n",
            "data: {\"type\":\"response.output_text.delta\",\"delta\":\"hi\"}\n\n",
        ));
        assert_eq!(got.model.as_deref(), Some("gpt-4.1"));
        assert_eq!(got.usage, None);
        assert!(!got.complete);
    }

    #[test]
    fn incomplete_and_nameless_events_count() {
        let got = run(concat!(
            "data: {\"type\":\"response.incomplete\",\"response\":{\"model\":\"m\",\"service_tier\":\"flex\",",
            "\"usage\":{\"input_tokens\":5,\"output_tokens\":7,\"output_tokens_details\":{\"reasoning_tokens\":3}}}}\n\n",
        ));
        let usage = got.usage.unwrap();
        assert_eq!(
            (
                usage.input_tokens,
                usage.output_tokens,
                usage.reasoning_tokens
            ),
            (5, 7, 3)
        );
        assert_eq!(got.service_tier.as_deref(), Some("flex"));
        assert!(got.complete);
    }

    #[test]
    fn failed_without_usage_is_terminal_but_missing() {
        let got = run(concat!(
            "event: error\n",
            "data: {\"type\":\"error\",\"error\":{\"type\":\"server_error\"}}\n\n",
            "event: response.failed\n",
            "data: {\"type\":\"response.failed\",\"response\":{\"model\":\"m\",\"usage\":null}}\n\n",
        ));
        assert_eq!(got.usage, None);
        assert!(got.complete);
    }
}
