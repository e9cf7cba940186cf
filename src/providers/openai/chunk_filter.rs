//! Removes the usage chunk the proxy requested on the client's behalf.
//!
//! To meter a Chat Completions stream the proxy sets `stream_options.include_usage=true`
//! when the client did not. OpenAI then sends one extra event, `choices: []` with a non-null
//! `usage`, just before `[DONE]`; clients that did not ask for it may choke on it, so
//! [`UsageChunkFilter`] takes it out. Everything else reaches the client byte for byte,
//! including Azure's `choices: []` content-filter preamble, which has no usage.
//!
//! Latency: a complete event is forwarded (or dropped) as soon as its terminating empty line
//! arrives. Bytes of an unfinished event are held only while it could still be the usage
//! chunk; once it shows `"choices":[{` it cannot be, and its bytes flow through as they come.
//! Memory: at most `max_held_bytes` of one unfinished event are held; past that the event is
//! forwarded as is. Splitting into events follows the SSE rules (LF, CRLF or CR line ends,
//! a CRLF split across chunks counts once) so this agrees with what the client will parse.

use bytes::Bytes;
use serde::Deserialize;
use serde::de::IgnoredAny;

use super::super::sse::{SseDecoder, find_eol};
use super::super::wire::Needle;

/// Default cap on the held bytes of one unfinished event (the usage chunk is ~500 bytes).
pub const DEFAULT_MAX_HELD_BYTES: usize = 64 * 1024;

/// A chunk that cannot be the usage chunk contains this (OpenAI's compact JSON).
const NON_EMPTY_CHOICES_BYTES: &[u8] = b"\"choices\":[{";
static NON_EMPTY_CHOICES: Needle = Needle::new(NON_EMPTY_CHOICES_BYTES);
const CARRY: usize = NON_EMPTY_CHOICES_BYTES.len() - 1;

/// Who owns an LF that may follow a CR seen at the end of the previous chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PendingLf {
    None,
    /// The CR ended a line inside the current event: the LF is part of that event.
    InEvent,
    /// The CR ended an event that was forwarded: forward the LF too.
    AfterKept,
    /// The CR ended the removed usage event: remove the LF too.
    AfterDropped,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct UsageProbe {
    choices: Option<Vec<IgnoredAny>>,
    usage: Option<IgnoredAny>,
}

/// Filters raw upstream SSE bytes, removing the `choices: []` + `usage` event.
#[derive(Debug)]
pub struct UsageChunkFilter {
    max_held_bytes: usize,
    /// Bytes of the unfinished current event, not yet forwarded.
    held: Vec<Bytes>,
    held_len: usize,
    /// The current event is known not to be (or too big to be) the usage chunk.
    pass_through: bool,
    /// The current line already has bytes from an earlier chunk.
    line_has_bytes: bool,
    /// The current event has a non-empty line.
    event_has_lines: bool,
    pending_lf: PendingLf,
    /// Last bytes of the held event, to find the marker across chunk boundaries.
    carry: Vec<u8>,
    decoder: SseDecoder,
    removed: u64,
}

impl Default for UsageChunkFilter {
    fn default() -> Self {
        UsageChunkFilter::new()
    }
}

/// Builds the forwarded pieces of one input chunk, merging adjacent ranges.
struct Out<'a> {
    chunk: &'a Bytes,
    parts: &'a mut Vec<Bytes>,
    run: Option<(usize, usize)>,
}

impl Out<'_> {
    fn range(&mut self, start: usize, end: usize) {
        if start >= end {
            return;
        }
        match &mut self.run {
            Some((_, e)) if *e == start => *e = end,
            _ => {
                self.flush();
                self.run = Some((start, end));
            }
        }
    }

    fn bytes(&mut self, b: Bytes) {
        self.flush();
        if !b.is_empty() {
            self.parts.push(b);
        }
    }

    fn flush(&mut self) {
        if let Some((s, e)) = self.run.take()
            && s < e
            && e <= self.chunk.len()
        {
            self.parts.push(self.chunk.slice(s..e));
        }
    }
}

impl UsageChunkFilter {
    pub fn new() -> UsageChunkFilter {
        UsageChunkFilter::with_max_held_bytes(DEFAULT_MAX_HELD_BYTES)
    }

    /// A filter holding at most `max_held_bytes` of an unfinished event.
    pub fn with_max_held_bytes(max_held_bytes: usize) -> UsageChunkFilter {
        UsageChunkFilter {
            max_held_bytes,
            held: Vec::new(),
            held_len: 0,
            pass_through: false,
            line_has_bytes: false,
            event_has_lines: false,
            pending_lf: PendingLf::None,
            carry: Vec::with_capacity(CARRY),
            decoder: SseDecoder::new(max_held_bytes),
            removed: 0,
        }
    }

    /// Usage events removed so far.
    pub fn removed_events(&self) -> u64 {
        self.removed
    }

    /// Bytes currently held back from the client.
    pub fn held_bytes(&self) -> usize {
        self.held_len
    }

    /// Takes the next upstream chunk; returns the bytes to forward now, in order.
    pub fn push(&mut self, chunk: Bytes) -> Vec<Bytes> {
        let mut out = Vec::with_capacity(1);
        self.push_into(chunk, &mut out);
        out
    }

    /// Like [`push`](Self::push), appending to a caller-owned vector.
    pub fn push_into(&mut self, chunk: Bytes, parts: &mut Vec<Bytes>) {
        let len = chunk.len();
        if len == 0 {
            return;
        }
        let mut out = Out {
            chunk: &chunk,
            parts,
            run: None,
        };
        let mut pos = 0;
        let pending = std::mem::replace(&mut self.pending_lf, PendingLf::None);
        if chunk.first() == Some(&b'\n') {
            match pending {
                PendingLf::AfterKept => {
                    out.range(0, 1);
                    pos = 1;
                }
                PendingLf::AfterDropped => pos = 1,
                // Part of the current event's bytes: taken with them below.
                PendingLf::InEvent => pos = 1,
                PendingLf::None => {}
            }
        }
        let mut event_start = if pending == PendingLf::InEvent {
            0
        } else {
            pos
        };
        let mut line_start = pos;
        while line_start < len {
            let Some(off) = chunk.get(line_start..).and_then(find_eol) else {
                break;
            };
            let eol = line_start + off;
            let empty = !self.line_has_bytes && eol == line_start;
            self.line_has_bytes = false;
            let mut end = eol + 1;
            let mut lf_may_follow = false;
            if chunk.get(eol) == Some(&b'\r') {
                match chunk.get(end) {
                    Some(b'\n') => end += 1,
                    Some(_) => {}
                    None => lf_may_follow = true,
                }
            }
            if empty {
                let kept = self.end_event(&mut out, event_start, end);
                if lf_may_follow {
                    self.pending_lf = if kept {
                        PendingLf::AfterKept
                    } else {
                        PendingLf::AfterDropped
                    };
                }
                event_start = end;
            } else {
                self.event_has_lines = true;
                if lf_may_follow {
                    self.pending_lf = PendingLf::InEvent;
                }
            }
            line_start = end;
        }
        if line_start < len {
            self.line_has_bytes = true;
        }
        if event_start < len {
            self.continue_event(&mut out, event_start, len);
        }
        out.flush();
    }

    /// The stream ended: returns the bytes of an unfinished last event, unless they are the
    /// usage chunk without its final empty line.
    pub fn finish(&mut self) -> Option<Bytes> {
        let held = std::mem::take(&mut self.held);
        let drop = !self.pass_through && self.is_usage_event(&held);
        let fresh = UsageChunkFilter::with_max_held_bytes(self.max_held_bytes);
        let removed = self.removed + u64::from(drop);
        *self = fresh;
        self.removed = removed;
        if drop || held.is_empty() {
            return None;
        }
        let mut all = Vec::with_capacity(held.iter().map(Bytes::len).sum());
        for part in &held {
            all.extend_from_slice(part);
        }
        Some(Bytes::from(all))
    }

    /// The event ending at `chunk[end]` is complete: forward or drop it. Returns "kept".
    fn end_event(&mut self, out: &mut Out<'_>, start: usize, end: usize) -> bool {
        let last = out.chunk.slice(start..end);
        // The same tests as `continue_event`, on the event's last piece too: whether an
        // event is removed must not depend on where the chunks happened to end.
        let pass = self.pass_through
            || !self.event_has_lines
            || self.held_len + last.len() > self.max_held_bytes
            || self.shows_choices(&last);
        let mut held = std::mem::take(&mut self.held);
        self.held_len = 0;
        self.pass_through = false;
        self.event_has_lines = false;
        self.carry.clear();
        if !pass {
            held.push(last);
            if self.is_usage_event(&held) {
                self.removed += 1;
                return false;
            }
            held.pop();
        }
        for part in held {
            out.bytes(part);
        }
        out.range(start, end);
        true
    }

    /// `chunk[start..end]` continues the unfinished current event.
    fn continue_event(&mut self, out: &mut Out<'_>, start: usize, end: usize) {
        if self.pass_through {
            out.range(start, end);
            return;
        }
        let piece = out.chunk.slice(start..end);
        let excluded = self.shows_choices(&piece);
        if excluded || self.held_len + piece.len() > self.max_held_bytes {
            self.pass_through = true;
            self.held_len = 0;
            for part in std::mem::take(&mut self.held) {
                out.bytes(part);
            }
            out.range(start, end);
            return;
        }
        self.held_len += piece.len();
        self.held.push(piece);
    }

    /// Whether the event, continued by `piece`, shows non-empty `choices`.
    fn shows_choices(&mut self, piece: &[u8]) -> bool {
        let head = piece.get(..piece.len().min(CARRY)).unwrap_or_default();
        let mut joint = [0u8; 2 * CARRY];
        let joint_len = self.carry.len() + head.len();
        if let Some(dst) = joint.get_mut(..joint_len) {
            let (a, b) = dst.split_at_mut(self.carry.len());
            a.copy_from_slice(&self.carry);
            b.copy_from_slice(head);
        }
        let hit = NON_EMPTY_CHOICES
            .find_in(joint.get(..joint_len).unwrap_or_default())
            .is_some()
            || NON_EMPTY_CHOICES.find_in(piece).is_some();
        // Keep the last CARRY bytes of everything seen.
        if piece.len() >= CARRY {
            self.carry.clear();
            self.carry
                .extend_from_slice(piece.get(piece.len() - CARRY..).unwrap_or_default());
        } else {
            self.carry.extend_from_slice(piece);
            let extra = self.carry.len().saturating_sub(CARRY);
            self.carry.drain(..extra);
        }
        hit
    }

    /// Decodes the event in `parts` and tells whether it is `choices: []` with a usage.
    fn is_usage_event(&mut self, parts: &[Bytes]) -> bool {
        let mut found = false;
        let mut check = |ev: super::super::sse::SseEvent<'_>| {
            // A derived struct also deserializes from a JSON array; the chunk is an object.
            if !ev.data.trim_ascii_start().starts_with(b"{") {
                return;
            }
            if let Ok(probe) = serde_json::from_slice::<UsageProbe>(ev.data) {
                found |= probe.choices.is_some_and(|c| c.is_empty()) && probe.usage.is_some();
            }
        };
        for part in parts {
            self.decoder.feed(part, &mut check);
        }
        self.decoder.finish(&mut check);
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use memchr::memmem::find;
    use proptest::prelude::*;

    fn fixture(rel: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/{rel}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(path).unwrap()
    }

    /// The fixture without the event that contains `"choices":[],` and `"usage":{`.
    fn without_usage_event(body: &[u8], sep: &[u8]) -> Vec<u8> {
        let text = body;
        let mut out = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let end = find(rest, sep).map_or(rest.len(), |i| i + sep.len());
            let event = &rest[..end];
            let is_usage =
                find(event, b"\"choices\":[]").is_some() && find(event, b"\"usage\":{").is_some();
            if !is_usage {
                out.extend_from_slice(event);
            }
            rest = &rest[end..];
        }
        out
    }

    fn filter(body: &[u8], cuts: &[usize], max: usize) -> (Vec<u8>, u64) {
        let bytes = Bytes::copy_from_slice(body);
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (body.len() + 1)).collect();
        cuts.sort_unstable();
        let mut f = UsageChunkFilter::with_max_held_bytes(max);
        let mut out = Vec::new();
        let mut prev = 0;
        for c in cuts.into_iter().chain([body.len()]) {
            for part in f.push(bytes.slice(prev..c)) {
                out.extend_from_slice(&part);
            }
            prev = c;
        }
        if let Some(rest) = f.finish() {
            out.extend_from_slice(&rest);
        }
        (out, f.removed_events())
    }

    fn to_crlf(body: &[u8]) -> Vec<u8> {
        String::from_utf8_lossy(body)
            .replace('\n', "\r\n")
            .into_bytes()
    }

    fn to_cr(body: &[u8]) -> Vec<u8> {
        String::from_utf8_lossy(body)
            .replace('\n', "\r")
            .into_bytes()
    }

    #[test]
    fn removes_exactly_the_usage_event_at_every_split() {
        for (name, max) in [
            (
                "openai/chat_stream_include_usage.sse",
                DEFAULT_MAX_HELD_BYTES,
            ),
            (
                "azure/chat_stream_include_usage.sse",
                DEFAULT_MAX_HELD_BYTES,
            ),
            ("openai/chat_stream_include_usage.sse", 700),
        ] {
            let body = fixture(name);
            for (body, sep) in [
                (body.clone(), &b"\n\n"[..]),
                (to_crlf(&body), &b"\r\n\r\n"[..]),
                (to_cr(&body), &b"\r\r"[..]),
            ] {
                let want = without_usage_event(&body, sep);
                assert!(want.len() < body.len());
                for cut in 0..=body.len() {
                    let (got, removed) = filter(&body, &[cut], max);
                    assert_eq!(got, want, "{name} cut at {cut}");
                    assert_eq!(removed, 1);
                }
            }
        }
    }

    #[test]
    fn azure_preamble_and_other_streams_pass_untouched() {
        let azure = fixture("azure/chat_stream_include_usage.sse");
        let (got, _) = filter(&azure, &[], DEFAULT_MAX_HELD_BYTES);
        assert!(got.starts_with(b"data: {\"choices\":[],\"created\":0"));
        for name in [
            "openai/chat_stream_no_usage.sse",
            "groq/chat_stream_x_groq.sse",
            "mistral/chat_stream.sse",
            "anthropic/messages_stream.sse",
        ] {
            let body = fixture(name);
            assert_eq!(filter(&body, &[100, 101, 900], 64).0, body, "{name}");
        }
    }

    #[test]
    fn complete_events_are_not_delayed() {
        let body = fixture("openai/chat_stream_include_usage.sse");
        let bytes = Bytes::from(body.clone());
        let mut f = UsageChunkFilter::new();
        // A chunk ending exactly at an event end comes out whole.
        let first_end = find(&body, b"\n\n").unwrap() + 2;
        let out: Vec<u8> = f.push(bytes.slice(..first_end)).concat();
        assert_eq!(out, &body[..first_end]);
        // An unfinished content event is released once `"choices":[{` shows.
        let choices = find(&body[first_end..], b"\"choices\":[{").unwrap() + first_end;
        let out: Vec<u8> = f.push(bytes.slice(first_end..choices + 20)).concat();
        assert_eq!(out, &body[first_end..choices + 20]);
        assert_eq!(f.held_bytes(), 0);
    }

    #[test]
    fn unterminated_usage_chunk_is_dropped_at_finish() {
        let body = b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1}}\n";
        let (got, removed) = filter(body, &[10], 1024);
        assert!(got.is_empty());
        assert_eq!(removed, 1);
        let body = b"data: {\"choices\":[],\"usage\":null}\n";
        assert_eq!(filter(body, &[10], 1024).0, body);
    }

    proptest! {
        #[test]
        fn random_splits_match_expectation(cuts in proptest::collection::vec(any::<usize>(), 0..20)) {
            for name in ["openai/chat_stream_include_usage.sse", "azure/chat_stream_include_usage.sse"] {
                let body = fixture(name);
                let want = without_usage_event(&body, b"\n\n");
                prop_assert_eq!(filter(&body, &cuts, DEFAULT_MAX_HELD_BYTES).0, want);
            }
        }

        #[test]
        fn output_is_a_subsequence_for_any_bytes(
            body in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'\r'), any::<u8>()], 0..200),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
            max in 0usize..64,
        ) {
            // Random bytes are never a usage chunk: everything must pass unchanged.
            prop_assert_eq!(filter(&body, &cuts, max).0, body);
        }
    }
}
