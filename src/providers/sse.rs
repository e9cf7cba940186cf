//! Incremental Server-Sent Events decoder (WHATWG HTML "event stream interpretation").
//!
//! Used by the streaming usage parsers on every byte of a `text/event-stream` response, so it
//! is built for the hot path: line ends are found eight bytes at a time, and an event whose
//! `data` is one line inside one chunk is handed out as a slice of that chunk (no copy).
//! Buffers are reused between events; nothing is allocated per line.
//!
//! Spec behaviour kept: lines end with LF, CRLF or CR (a CR at the end of one chunk and an LF
//! at the start of the next are one line end); a leading UTF-8 BOM is dropped; lines starting
//! with `:` are comments; `field:value` strips one space after the colon; several `data`
//! lines are joined with `\n`; an empty line dispatches the event, but only if it had a
//! `data` field. `id` and `retry` are ignored (the meter never reconnects).
//!
//! Deviations, on purpose:
//! * Memory is bounded. An event is skipped (never dispatched, counted in
//!   [`SseDecoder::skipped_events`]) when any of its lines is longer than `max_event_bytes`
//!   or its field lines add up to more than `max_event_bytes`. Decoding resumes after the
//!   next empty line. The rule depends only on the bytes, never on how they were chunked.
//! * [`SseDecoder::finish`] dispatches a trailing event that lacks its final empty line (the
//!   spec drops it). For metering that is the better trade: a server that forgets the last
//!   blank line still gets its usage read, and a stream cut mid-event leaves truncated JSON,
//!   which the usage parsers reject anyway.
//! * Field values are handed out as bytes, not decoded text: the consumers parse JSON from
//!   bytes, which validates UTF-8 itself. [`SseEvent::data_str`] decodes lossily if needed.

use std::borrow::Cow;

/// One dispatched event. Borrows from the decoder or from the chunk being fed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SseEvent<'a> {
    /// The `event` field; empty when the event had none (the spec's default type `message`).
    pub event: &'a [u8],
    /// The `data` lines joined with `\n`, without a trailing newline.
    pub data: &'a [u8],
}

impl<'a> SseEvent<'a> {
    /// The event type as text (`""` when absent or not UTF-8).
    pub fn event_name(&self) -> &'a str {
        std::str::from_utf8(self.event).unwrap_or_default()
    }

    /// The data decoded as UTF-8, replacing invalid sequences.
    pub fn data_str(&self) -> Cow<'a, str> {
        String::from_utf8_lossy(self.data)
    }
}

const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

/// Where the current event's data lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Data {
    /// No `data` field yet.
    None,
    /// Exactly one `data` line, at this range of the chunk being fed.
    InChunk(usize, usize),
    /// In `SseDecoder::data` (copied).
    Buffered,
}

/// Incremental SSE decoder. Feed it chunks split anywhere; it calls back once per event.
#[derive(Debug)]
pub struct SseDecoder {
    max_event_bytes: usize,
    /// Bytes of a line that started in an earlier chunk.
    line: Vec<u8>,
    /// Data of the current event when it is not a single in-chunk slice.
    data: Vec<u8>,
    data_state: Data,
    /// Event type of the current event.
    event: Vec<u8>,
    /// Raw bytes of the current event's field lines so far (the size limit).
    event_bytes: usize,
    /// The current event broke the size limit: drop lines until an empty one.
    skipping: bool,
    /// While skipping: the current line already has bytes (so its end is not an empty line).
    skip_line_started: bool,
    /// The last byte fed was a CR: an LF at the start of the next chunk belongs to it.
    after_cr: bool,
    /// Bytes of a leading BOM matched so far; `None` once past the start of the stream.
    bom_matched: Option<usize>,
    skipped: u64,
}

impl SseDecoder {
    /// A decoder that skips events larger than `max_event_bytes` (see the module docs).
    pub fn new(max_event_bytes: usize) -> SseDecoder {
        SseDecoder {
            max_event_bytes,
            line: Vec::new(),
            data: Vec::new(),
            data_state: Data::None,
            event: Vec::new(),
            event_bytes: 0,
            skipping: false,
            skip_line_started: false,
            after_cr: false,
            bom_matched: Some(0),
            skipped: 0,
        }
    }

    /// Events dropped so far for breaking the size limit.
    pub fn skipped_events(&self) -> u64 {
        self.skipped
    }

    /// Bytes currently held (partial line and pending event), for memory accounting.
    pub fn buffered_bytes(&self) -> usize {
        self.line.len() + self.data.len() + self.event.len()
    }

    /// Feeds the next chunk, calling `out` for every event completed by it.
    pub fn feed(&mut self, chunk: &[u8], out: &mut impl FnMut(SseEvent<'_>)) {
        let mut pos = self.skip_bom(chunk);
        if pos >= chunk.len() {
            return;
        }
        if self.after_cr {
            self.after_cr = false;
            if chunk.get(pos) == Some(&b'\n') {
                pos += 1;
            }
        }
        while pos < chunk.len() {
            let rest = chunk.get(pos..).unwrap_or_default();
            let Some(off) = find_eol(rest) else {
                self.carry(rest);
                break;
            };
            let end = pos + off;
            let cr = chunk.get(end) == Some(&b'\r');
            self.end_line(chunk, pos, end, out);
            pos = end + 1;
            if cr {
                match chunk.get(pos) {
                    Some(b'\n') => pos += 1,
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
        }
        // The chunk goes away: an in-chunk data slice must be copied to survive it.
        if let Data::InChunk(start, end) = self.data_state {
            self.data.clear();
            self.data
                .extend_from_slice(chunk.get(start..end).unwrap_or_default());
            self.data_state = Data::Buffered;
        }
    }

    /// Ends the stream: a pending unterminated line and event are processed as if an empty
    /// line followed (see the module docs). Resets the decoder for a new stream.
    pub fn finish(&mut self, out: &mut impl FnMut(SseEvent<'_>)) {
        if let Some(n) = self.bom_matched.take().filter(|&n| n > 0) {
            // An incomplete BOM at the very end was really the start of a line.
            self.carry(BOM.get(..n).unwrap_or_default());
        }
        if !self.skipping && !self.line.is_empty() {
            let mut line = std::mem::take(&mut self.line);
            self.field_line(&[], &line, None);
            line.clear();
            self.line = line;
        }
        if self.skipping {
            self.skipped += 1;
        } else {
            self.dispatch(&[], out);
        }
        let skipped = self.skipped;
        *self = SseDecoder::new(self.max_event_bytes);
        self.skipped = skipped;
    }

    /// Consumes the start-of-stream BOM (possibly split over chunks); returns where the
    /// chunk's content starts.
    fn skip_bom(&mut self, chunk: &[u8]) -> usize {
        let Some(mut matched) = self.bom_matched else {
            return 0;
        };
        let mut pos = 0;
        while matched < BOM.len() {
            let Some(&b) = chunk.get(pos) else {
                self.bom_matched = Some(matched);
                return pos;
            };
            if BOM.get(matched) != Some(&b) {
                // Not a BOM: the bytes matched so far start the first line.
                self.bom_matched = None;
                let prefix = BOM.get(..matched).unwrap_or_default();
                if !prefix.is_empty() {
                    self.carry(prefix);
                }
                return pos;
            }
            matched += 1;
            pos += 1;
        }
        self.bom_matched = None;
        pos
    }

    /// Keeps the start of a line that continues in the next chunk.
    fn carry(&mut self, bytes: &[u8]) {
        if self.skipping {
            self.skip_line_started |= !bytes.is_empty();
            return;
        }
        if self.line.len() + bytes.len() > self.max_event_bytes {
            self.start_skipping();
            self.skip_line_started = true;
            return;
        }
        self.line.extend_from_slice(bytes);
    }

    fn start_skipping(&mut self) {
        self.skipping = true;
        self.skip_line_started = false;
        self.line.clear();
        self.reset_event();
    }

    fn reset_event(&mut self) {
        self.data.clear();
        self.data_state = Data::None;
        self.event.clear();
        self.event_bytes = 0;
    }

    /// A line end at `chunk[end]`; the line is `self.line` + `chunk[start..end]`.
    fn end_line(
        &mut self,
        chunk: &[u8],
        start: usize,
        end: usize,
        out: &mut impl FnMut(SseEvent<'_>),
    ) {
        let tail = chunk.get(start..end).unwrap_or_default();
        if self.skipping {
            let empty = !self.skip_line_started && tail.is_empty();
            self.skip_line_started = false;
            if empty {
                self.skipping = false;
                self.skipped += 1;
                self.reset_event();
            }
            return;
        }
        if self.line.is_empty() {
            if tail.is_empty() {
                self.dispatch(chunk, out);
            } else {
                self.field_line(chunk, tail, Some(start));
            }
        } else {
            if self.line.len() + tail.len() > self.max_event_bytes {
                // The whole line is too long: the event is skipped, and this line was not
                // empty, so the skip ends at the next empty line.
                self.start_skipping();
                return;
            }
            let mut line = std::mem::take(&mut self.line);
            line.extend_from_slice(tail);
            self.field_line(chunk, &line, None);
            line.clear();
            self.line = line;
        }
    }

    /// Interprets one non-empty line. `at` is the line's offset in `chunk` when the line lies
    /// entirely inside it (so its data can be referenced instead of copied).
    fn field_line(&mut self, chunk: &[u8], line: &[u8], at: Option<usize>) {
        // Checked before the comment test so that a long comment is treated the same whether
        // it arrived whole or was buffered across chunks.
        if line.len() > self.max_event_bytes {
            self.start_skipping();
            return;
        }
        if line.is_empty() || line.first() == Some(&b':') {
            return;
        }
        self.event_bytes += line.len();
        if self.event_bytes > self.max_event_bytes {
            self.start_skipping();
            return;
        }
        let (name, value, value_off) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let mut v = colon + 1;
                if line.get(v) == Some(&b' ') {
                    v += 1;
                }
                (
                    line.get(..colon).unwrap_or_default(),
                    line.get(v..).unwrap_or_default(),
                    v,
                )
            }
            None => (line, &[][..], line.len()),
        };
        match name {
            b"data" => self.push_data(chunk, value, at.map(|a| a + value_off)),
            b"event" => {
                self.event.clear();
                self.event.extend_from_slice(value);
            }
            _ => {}
        }
    }

    fn push_data(&mut self, chunk: &[u8], value: &[u8], at: Option<usize>) {
        match (self.data_state, at) {
            (Data::None, Some(start)) => {
                self.data_state = Data::InChunk(start, start + value.len());
            }
            (Data::None, None) => {
                self.data.clear();
                self.data.extend_from_slice(value);
                self.data_state = Data::Buffered;
            }
            (Data::InChunk(s, e), _) => {
                self.data.clear();
                self.data
                    .extend_from_slice(chunk.get(s..e).unwrap_or_default());
                self.data.push(b'\n');
                self.data.extend_from_slice(value);
                self.data_state = Data::Buffered;
            }
            (Data::Buffered, _) => {
                self.data.push(b'\n');
                self.data.extend_from_slice(value);
            }
        }
    }

    /// An empty line: hands out the event if it had data, then starts a new one.
    fn dispatch(&mut self, chunk: &[u8], out: &mut impl FnMut(SseEvent<'_>)) {
        let data = match self.data_state {
            Data::None => None,
            Data::InChunk(s, e) => Some(chunk.get(s..e).unwrap_or_default()),
            Data::Buffered => Some(&self.data[..]),
        };
        if let Some(data) = data {
            out(SseEvent {
                event: &self.event,
                data,
            });
        }
        self.reset_event();
    }
}

/// Index of the first CR or LF (memchr: SIMD, ~0.1 instruction a byte on long lines).
pub(crate) fn find_eol(hay: &[u8]) -> Option<usize> {
    memchr::memchr2(b'\n', b'\r', hay)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Owned {
        event: String,
        data: String,
    }

    fn decode_chunks(max: usize, chunks: &[&[u8]]) -> (Vec<Owned>, u64) {
        let mut dec = SseDecoder::new(max);
        let mut events = Vec::new();
        let mut push = |e: SseEvent<'_>| {
            events.push(Owned {
                event: e.event_name().to_owned(),
                data: e.data_str().into_owned(),
            })
        };
        for c in chunks {
            dec.feed(c, &mut push);
        }
        dec.finish(&mut push);
        (events, dec.skipped_events())
    }

    fn decode(max: usize, bytes: &[u8], splits: &[usize]) -> (Vec<Owned>, u64) {
        let mut cuts: Vec<usize> = splits.iter().map(|s| s % (bytes.len() + 1)).collect();
        cuts.sort_unstable();
        let mut chunks = Vec::new();
        let mut prev = 0;
        for c in cuts {
            chunks.push(&bytes[prev..c]);
            prev = c;
        }
        chunks.push(&bytes[prev..]);
        decode_chunks(max, &chunks)
    }

    fn ev(event: &str, data: &str) -> Owned {
        Owned {
            event: event.to_owned(),
            data: data.to_owned(),
        }
    }

    #[test]
    fn basic_fields() {
        let input = b"\xEF\xBB\xBFdata: a\ndata:b\n\n: comment\nevent: x\ndata\ndata:  two\n\nid: 1\nretry: 5\n\nevent: nodata\n\n";
        let (events, skipped) = decode(1024, input, &[]);
        assert_eq!(events, vec![ev("", "a\nb"), ev("x", "\n two")]);
        assert_eq!(skipped, 0);
    }

    #[test]
    fn every_split_of_mixed_line_endings() {
        let input = b"data: one\r\n\r\nevent: e\rdata: two\r\rdata: \xC3\xA9\n\ndata: [DONE]\n\n";
        let want = vec![ev("", "one"), ev("e", "two"), ev("", "é"), ev("", "[DONE]")];
        for a in 0..=input.len() {
            for b in a..=input.len() {
                assert_eq!(decode(1024, input, &[a, b]).0, want, "split {a} {b}");
            }
        }
    }

    #[test]
    fn trailing_event_is_dispatched_at_finish() {
        assert_eq!(decode(64, b"data: x", &[]).0, vec![ev("", "x")]);
        assert_eq!(decode(64, b"data: x\r", &[]).0, vec![ev("", "x")]);
        assert_eq!(decode(64, b"\xEF\xBB", &[]).0, vec![]);
        assert_eq!(decode(64, b"\xEFdata: y\n\n", &[1]).0, vec![]);
    }

    #[test]
    fn oversized_events_are_skipped_and_counted() {
        let big = format!("data: {}\n\n", "x".repeat(100));
        let input = format!("data: a\n\n{big}data: b\ndata: c\n\n{big}");
        for split in 0..input.len() {
            let (events, skipped) = decode(32, input.as_bytes(), &[split, split + 7]);
            assert_eq!(events, vec![ev("", "a"), ev("", "b\nc")], "split {split}");
            assert_eq!(skipped, 2);
        }
        // Many small lines adding up past the limit.
        let input = format!("{}\ndata: ok\n\n", "data: 0123456789\n".repeat(10));
        let (events, skipped) = decode(64, input.as_bytes(), &[]);
        assert_eq!(events, vec![ev("", "ok")]);
        assert_eq!(skipped, 1);
    }

    #[test]
    fn find_eol_matches_naive() {
        let mut v = vec![b'a'; 40];
        assert_eq!(find_eol(&v), None);
        for i in 0..40 {
            for t in [b'\n', b'\r'] {
                v[i] = t;
                assert_eq!(find_eol(&v), Some(i));
                v[i] = 0x8a; // high bytes must not confuse the zero-byte test
                assert_eq!(find_eol(&v), None);
                v[i] = b'a';
            }
        }
    }

    /// A generated event: optional name, data lines, comments.
    #[derive(Debug, Clone)]
    struct GenEvent {
        name: Option<String>,
        data: Vec<String>,
        comment: bool,
        no_space: bool,
    }

    fn gen_event() -> impl Strategy<Value = GenEvent> {
        (
            proptest::option::of("[a-z._]{1,12}"),
            proptest::collection::vec("[ -~é€😀]{0,20}", 0..4),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(name, data, comment, no_space)| GenEvent {
                name,
                data,
                comment,
                no_space,
            })
    }

    /// Serializes with per-line endings picked from `endings` (0 LF, 1 CRLF, 2 CR).
    fn serialize(events: &[GenEvent], endings: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut n = 0usize;
        let mut prev_cr = false;
        let mut line = |out: &mut Vec<u8>, text: &[u8]| {
            out.extend_from_slice(text);
            let mut e = endings.get(n % endings.len().max(1)).copied().unwrap_or(0);
            n += 1;
            // "\r" then an empty "\n"-terminated line would read as one CRLF.
            if prev_cr && text.is_empty() && e == 0 {
                e = 1;
            }
            prev_cr = e == 2;
            out.extend_from_slice(match e {
                0 => b"\n",
                1 => b"\r\n",
                _ => b"\r",
            });
        };
        for e in events {
            if e.comment {
                line(&mut out, b": keep-alive");
            }
            if let Some(name) = &e.name {
                line(&mut out, format!("event: {name}").as_bytes());
            }
            for d in &e.data {
                let l = if e.no_space && !d.starts_with(' ') {
                    format!("data:{d}")
                } else {
                    format!("data: {d}")
                };
                line(&mut out, l.as_bytes());
            }
            line(&mut out, b"");
        }
        out
    }

    fn expected(events: &[GenEvent]) -> Vec<Owned> {
        events
            .iter()
            .filter(|e| !e.data.is_empty())
            .map(|e| Owned {
                event: e.name.clone().unwrap_or_default(),
                data: e.data.join("\n"),
            })
            .collect()
    }

    proptest! {
        #[test]
        fn same_events_for_any_chunking_and_line_ending(
            events in proptest::collection::vec(gen_event(), 0..8),
            endings in proptest::collection::vec(0u8..3, 1..6),
            splits in proptest::collection::vec(any::<usize>(), 0..12),
        ) {
            let bytes = serialize(&events, &endings);
            let want = expected(&events);
            let (whole, _) = decode(1 << 20, &bytes, &[]);
            prop_assert_eq!(&whole, &want);
            let (chunked, _) = decode(1 << 20, &bytes, &splits);
            prop_assert_eq!(&chunked, &want);
            for ending in 0u8..3 {
                let bytes = serialize(&events, &[ending]);
                prop_assert_eq!(&decode(1 << 20, &bytes, &splits).0, &want);
            }
        }

        #[test]
        fn size_limit_does_not_depend_on_chunking(
            events in proptest::collection::vec(gen_event(), 0..8),
            endings in proptest::collection::vec(0u8..3, 1..6),
            splits in proptest::collection::vec(any::<usize>(), 0..12),
            max in 1usize..64,
        ) {
            let bytes = serialize(&events, &endings);
            prop_assert_eq!(decode(max, &bytes, &[]), decode(max, &bytes, &splits));
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..300),
            splits in proptest::collection::vec(any::<usize>(), 0..8),
            max in 0usize..40,
        ) {
            prop_assert_eq!(decode(max, &bytes, &[]), decode(max, &bytes, &splits));
        }
    }
}
