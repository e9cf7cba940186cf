//! [`Reply`]: what the mock answers, and how it turns into a response head plus the exact
//! body frames to send (compressed, split, cut short).

use std::fmt;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode};

use super::RecordedRequest;

type ReplyFn = dyn Fn(&RecordedRequest) -> Reply + Send + Sync;

/// What the mock answers on a route. Build one with a constructor, then chain modifiers.
///
/// Byte counts in [`chunked_every`](Reply::chunked_every), [`stall_after`](Reply::stall_after)
/// and [`cut_after`](Reply::cut_after) are body bytes as sent, i.e. after
/// [`gzip`](Reply::gzip) / [`deflate`](Reply::deflate).
#[derive(Clone)]
pub struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    encoding: Option<Compress>,
    chunking: Chunking,
    delay_headers: Duration,
    delay_per_chunk: Duration,
    end: End,
    func: Option<Arc<ReplyFn>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compress {
    Gzip,
    Deflate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunking {
    /// One frame, with `Content-Length`.
    Whole,
    /// Frames of at most this many bytes (HTTP/1.1: chunked encoding).
    Every(usize),
    /// One frame per SSE event (ends at a blank line).
    Events,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    Complete,
    Stall(usize),
    Cut(usize),
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.func.is_some() {
            return f.write_str("Reply::func(..)");
        }
        f.debug_struct("Reply")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body_len", &self.body.len())
            .field("encoding", &self.encoding)
            .field("chunking", &self.chunking)
            .field("delay_headers", &self.delay_headers)
            .field("delay_per_chunk", &self.delay_per_chunk)
            .field("end", &self.end)
            .finish()
    }
}

impl Reply {
    /// A body with a status and content type, sent in one frame with `Content-Length`.
    pub fn bytes(status: u16, content_type: &str, body: impl Into<Bytes>) -> Reply {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_str(content_type).expect("content type"),
        );
        Reply {
            status: StatusCode::from_u16(status).expect("valid status code"),
            headers,
            body: body.into(),
            encoding: None,
            chunking: Chunking::Whole,
            delay_headers: Duration::ZERO,
            delay_per_chunk: Duration::ZERO,
            end: End::Complete,
            func: None,
        }
    }

    /// A JSON body (`application/json`) with this status, e.g. a completion or a provider error.
    pub fn json(status: u16, body: impl Into<Bytes>) -> Reply {
        Reply::bytes(status, "application/json", body)
    }

    /// A `200 text/event-stream` body, sent one event per frame unless
    /// [`chunked_every`](Reply::chunked_every) says otherwise.
    pub fn sse(body: impl Into<Bytes>) -> Reply {
        Reply::bytes(200, "text/event-stream", body)
            .header("cache-control", "no-cache")
            .chunked_by_event()
    }

    /// An empty body with this status (e.g. 204).
    pub fn empty(status: u16) -> Reply {
        let mut reply = Reply::bytes(status, "application/json", Bytes::new());
        reply.headers.remove(CONTENT_TYPE);
        reply
    }

    /// Picks the reply per request, e.g. a fixture with or without usage depending on the
    /// request body. Modifiers belong on the reply the closure returns; on this one they are
    /// ignored.
    pub fn func(f: impl Fn(&RecordedRequest) -> Reply + Send + Sync + 'static) -> Reply {
        Reply {
            func: Some(Arc::new(f)),
            ..Reply::empty(500)
        }
    }

    /// Sets a response header, replacing any earlier value (content type included).
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        let name = HeaderName::from_bytes(name.as_bytes()).expect("valid header name");
        self.headers.insert(
            name,
            HeaderValue::from_str(value).expect("valid header value"),
        );
        self
    }

    /// Replaces the status code.
    pub fn status(mut self, status: u16) -> Reply {
        self.status = StatusCode::from_u16(status).expect("valid status code");
        self
    }

    /// Compresses the body with gzip and sends `Content-Encoding: gzip`. With per-event
    /// chunking each event is followed by a sync flush, as a compressing server streams SSE.
    pub fn gzip(mut self) -> Reply {
        self.encoding = Some(Compress::Gzip);
        self
    }

    /// Compresses the body as zlib (RFC 9110 `deflate`) and sends `Content-Encoding: deflate`.
    pub fn deflate(mut self) -> Reply {
        self.encoding = Some(Compress::Deflate);
        self
    }

    /// Sends the body in frames of at most `n_bytes` (HTTP/1.1: chunked transfer encoding,
    /// no `Content-Length`). Panics if `n_bytes` is 0.
    pub fn chunked_every(mut self, n_bytes: usize) -> Reply {
        assert!(n_bytes > 0, "chunk size must be positive");
        self.chunking = Chunking::Every(n_bytes);
        self
    }

    /// Sends one frame per SSE event (an event ends at a blank line, `\n\n` or `\r\n\r\n`).
    pub fn chunked_by_event(mut self) -> Reply {
        self.chunking = Chunking::Events;
        self
    }

    /// Sends the body as one frame with `Content-Length` (the default except for SSE).
    pub fn single_chunk(mut self) -> Reply {
        self.chunking = Chunking::Whole;
        self
    }

    /// Waits this long before every body frame, the first included.
    pub fn delay_per_chunk(mut self, delay: Duration) -> Reply {
        self.delay_per_chunk = delay;
        self
    }

    /// Waits this long before sending the status and headers (time to first byte).
    pub fn delay_headers(mut self, delay: Duration) -> Reply {
        self.delay_headers = delay;
        self
    }

    /// Sends the first `n_bytes` of the body, then hangs until the client goes away. A
    /// single-chunk reply still announces the full `Content-Length`.
    pub fn stall_after(mut self, n_bytes: usize) -> Reply {
        self.end = End::Stall(n_bytes);
        self
    }

    /// Sends the first `n_bytes` of the body, makes sure they left the socket, then closes
    /// the TCP connection without a TLS close_notify, HTTP/1.1 last chunk or h2 END_STREAM:
    /// the abrupt end of a crashed upstream. On h2 this kills every stream of the connection.
    /// `n_bytes` should be less than the body and fit the client's h2 flow-control window
    /// (64 KiB at least).
    pub fn cut_after(mut self, n_bytes: usize) -> Reply {
        self.end = End::Cut(n_bytes);
        self
    }

    /// Follows `func` replies (a closure may return another closure) to a fixed reply.
    pub(super) fn resolve(&self, request: &RecordedRequest) -> Reply {
        let mut reply = self.clone();
        for _ in 0..16 {
            match reply.func.clone() {
                Some(f) => reply = f(request),
                None => return reply,
            }
        }
        panic!("Reply::func nested more than 16 deep");
    }

    /// The response head and the exact body frames of this (resolved) reply.
    pub(super) fn plan(&self) -> Planned {
        let no_body = self.status.is_informational()
            || self.status == StatusCode::NO_CONTENT
            || self.status == StatusCode::NOT_MODIFIED;
        let (frames, full_len) = if no_body {
            (Vec::new(), 0)
        } else {
            self.frames()
        };
        let mut headers = self.headers.clone();
        if let Some(encoding) = self.encoding {
            let token = match encoding {
                Compress::Gzip => "gzip",
                Compress::Deflate => "deflate",
            };
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static(token));
        }
        if self.chunking == Chunking::Whole && !no_body && !headers.contains_key(CONTENT_LENGTH) {
            // The full length even when stalling or cutting: the client sees a short body.
            headers.insert(CONTENT_LENGTH, HeaderValue::from(full_len));
        }
        Planned {
            status: self.status,
            headers,
            frames,
            delay_headers: self.delay_headers,
            delay_per_chunk: self.delay_per_chunk,
            end: self.end,
        }
    }

    /// The body frames exactly as they will be sent (compressed, split, cut short), and the
    /// length of the whole encoded body (for `Content-Length`).
    fn frames(&self) -> (Vec<Bytes>, usize) {
        let mut frames = match (self.encoding, self.chunking) {
            (None, Chunking::Events) => split_events(&self.body),
            (None, _) => vec![self.body.clone()],
            (Some(encoding), Chunking::Events) => {
                compress(encoding, &split_events(&self.body), true)
            }
            (Some(encoding), _) => compress(encoding, std::slice::from_ref(&self.body), false),
        };
        let full_len = frames.iter().map(Bytes::len).sum();
        if let Chunking::Every(n) = self.chunking {
            let all = concat(&frames);
            frames = (0..all.len())
                .step_by(n)
                .map(|i| all.slice(i..(i + n).min(all.len())))
                .collect();
        }
        if let End::Stall(limit) | End::Cut(limit) = self.end {
            let mut left = limit;
            frames = frames
                .into_iter()
                .map_while(|f| {
                    (left > 0).then(|| {
                        let take = f.len().min(left);
                        left -= take;
                        f.slice(..take)
                    })
                })
                .collect();
        }
        frames.retain(|f| !f.is_empty());
        (frames, full_len)
    }
}

/// A reply ready to send.
pub(super) struct Planned {
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    pub(super) frames: Vec<Bytes>,
    pub(super) delay_headers: Duration,
    pub(super) delay_per_chunk: Duration,
    pub(super) end: End,
}

impl Planned {
    /// Every body byte this reply sends, in one piece.
    pub(super) fn served(&self) -> Bytes {
        concat(&self.frames)
    }
}

/// Splits an SSE body after each blank line; a trailing partial event is kept.
fn split_events(body: &Bytes) -> Vec<Bytes> {
    let mut events = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < body.len() {
        let end = if body[i..].starts_with(b"\r\n\r\n") {
            Some(i + 4)
        } else if body[i..].starts_with(b"\n\n") {
            Some(i + 2)
        } else {
            None
        };
        match end {
            Some(end) => {
                events.push(body.slice(start..end));
                start = end;
                i = end;
            }
            None => i += 1,
        }
    }
    if start < body.len() {
        events.push(body.slice(start..));
    }
    events
}

/// Compresses `parts` as one stream; with `flush_each`, one output frame per part.
fn compress(encoding: Compress, parts: &[Bytes], flush_each: bool) -> Vec<Bytes> {
    fn run<W: Write>(
        mut encoder: W,
        parts: &[Bytes],
        flush_each: bool,
        take: impl Fn(&mut W) -> Bytes,
        finish: impl FnOnce(W) -> Vec<u8>,
    ) -> Vec<Bytes> {
        let mut frames = Vec::new();
        for part in parts {
            encoder.write_all(part).expect("compressing in memory");
            if flush_each {
                encoder.flush().expect("flushing in memory");
                frames.push(take(&mut encoder));
            }
        }
        frames.push(Bytes::from(finish(encoder)));
        frames
    }
    let level = flate2::Compression::default();
    match encoding {
        Compress::Gzip => run(
            flate2::write::GzEncoder::new(Vec::new(), level),
            parts,
            flush_each,
            |e| Bytes::from(std::mem::take(e.get_mut())),
            |e| e.finish().expect("finishing gzip in memory"),
        ),
        Compress::Deflate => run(
            flate2::write::ZlibEncoder::new(Vec::new(), level),
            parts,
            flush_each,
            |e| Bytes::from(std::mem::take(e.get_mut())),
            |e| e.finish().expect("finishing zlib in memory"),
        ),
    }
}

fn concat(frames: &[Bytes]) -> Bytes {
    let mut all = BytesMut::with_capacity(frames.iter().map(Bytes::len).sum());
    for f in frames {
        all.extend_from_slice(f);
    }
    all.freeze()
}
