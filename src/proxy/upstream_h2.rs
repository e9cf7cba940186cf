//! Calls over an h2 upstream connection, made on the `h2` crate from the calling task.
//!
//! hyper's h2 client hands each request to the connection's task over a channel; that
//! task opens the stream and spawns a task per call to wait for the response head and
//! pass it back over a oneshot (and one more to send the body when the new stream has
//! no send capacity yet). Two hand-offs between tasks and a spawn a call, each a
//! wake-up and a turn of the scheduler. Here the call opens its stream, queues its
//! body and waits for the response head itself; the connection's task only reads and
//! writes frames. The settings are hyper's defaults, so upstreams see the same client.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use bytes::Bytes;
use h2::RecvStream;
use h2::client::{Connection, ResponseFuture, SendRequest};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use tokio::io::{AsyncRead, AsyncWrite};

/// hyper's h2 client defaults: windows larger than the spec's 64 KiB, which would cap
/// a long answer's throughput on a distant upstream.
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 5 * 1024 * 1024;
const MAX_FRAME: u32 = 16 * 1024;
const MAX_SEND_BUFFER: usize = 1024 * 1024;
const MAX_HEADER_LIST: u32 = 16 * 1024;
const MAX_LOCAL_ERROR_RESETS: usize = 1024;

/// What the upstream's stream cap reads until its first SETTINGS frame is applied: no
/// frame can set it (a stated cap is a `u32`; none stated makes it `usize::MAX`).
const CAP_NOT_YET_KNOWN: usize = usize::MAX - 1;
/// Longest wait for the upstream's SETTINGS before calls go out anyway. A server sends
/// them first thing, so they arrive with the end of the TLS handshake or a round trip
/// after our preface.
const SETTINGS_WAIT: Duration = Duration::from_secs(1);

/// Opens h2 on `io` and waits for the upstream's SETTINGS, so the calls the connection
/// takes are counted against the upstream's stream cap: a cold burst sent before it is
/// known would see the calls past a lower cap refused, and h2 hold those it had not
/// sent yet until a stream ends, minutes for an LLM stream. The connection must then
/// be polled (spawned) for anything to move.
pub async fn handshake<T>(io: T) -> Result<(SendRequest<Bytes>, Connection<T, Bytes>), h2::Error>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let (send, mut conn) = h2::client::Builder::new()
        .initial_max_send_streams(CAP_NOT_YET_KNOWN)
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME)
        .max_header_list_size(MAX_HEADER_LIST)
        .max_send_buffer_size(MAX_SEND_BUFFER)
        .max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESETS))
        .enable_push(false)
        .handshake(io)
        .await?;
    let known = |send: &SendRequest<Bytes>| send.current_max_send_streams() != CAP_NOT_YET_KNOWN;
    let settled = poll_fn(|cx| {
        if known(&send) {
            return Poll::Ready(Ok(()));
        }
        match Pin::new(&mut conn).poll(cx) {
            // Ended before saying anything: the first call finds out.
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending if known(&send) => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
        }
    });
    // Past the wait the calls go out as before, up to our own cap.
    if let Ok(Err(e)) = tokio::time::timeout(SETTINGS_WAIT, settled).await {
        return Err(e);
    }
    Ok((send, conn))
}

/// Why a call did not start on an h2 connection.
pub struct NotStarted {
    /// The request, when the connection refused it before taking it (it had ended or
    /// was told to go away): it can go on another connection.
    /// Boxed: rare, and the request is large.
    pub unsent: Option<Box<Request<Full<Bytes>>>>,
    pub error: h2::Error,
}

/// Opens a stream for `req` (its URI in absolute form) and queues its body, whatever
/// the stream's send window: the connection's task sends it as the upstream grants
/// capacity. The response head comes from the returned future.
pub fn start(
    send: &mut SendRequest<Bytes>,
    req: Request<Full<Bytes>>,
) -> Result<ResponseFuture, NotStarted> {
    // A handle that has not started a call is never pending; this only reports a
    // connection that ended or received GOAWAY.
    if let Poll::Ready(Err(error)) = send.poll_ready(&mut Context::from_waker(Waker::noop())) {
        return Err(NotStarted {
            unsent: Some(Box::new(req)),
            error,
        });
    }
    let (mut parts, body) = req.into_parts();
    let body = into_bytes(body);
    // As hyper does: the length is known, and a POST states it even when it is zero.
    if !body.is_empty() || has_payload_semantics(&parts.method) {
        parts
            .headers
            .entry(header::CONTENT_LENGTH)
            .or_insert_with(|| HeaderValue::from(body.len()));
    }
    let end = body.is_empty();
    let failed = |error| NotStarted {
        unsent: None,
        error,
    };
    let (response, mut stream) = send
        .send_request(Request::from_parts(parts, ()), end)
        .map_err(failed)?;
    if !end {
        stream.send_data(body, true).map_err(failed)?;
    }
    Ok(response)
}

/// A copy of `req` to send again if the upstream refuses it unprocessed: the head
/// cloned, the body shared.
pub fn copy(req: &Request<Full<Bytes>>) -> Request<Full<Bytes>> {
    let mut again = Request::new(req.body().clone());
    *again.method_mut() = req.method().clone();
    *again.uri_mut() = req.uri().clone();
    *again.version_mut() = req.version();
    *again.headers_mut() = req.headers().clone();
    again
}

/// Whether the upstream turned the call's stream away before processing any of it, so
/// it may be sent again (RFC 9113 §8.7): a `REFUSED_STREAM` reset, or a GOAWAY whose
/// last stream is below this one (h2 fails only those streams with the peer's GOAWAY;
/// a stream the peer took that dies with the connection fails with an I/O error).
pub fn unprocessed(e: &h2::Error) -> bool {
    e.is_remote()
        && (e.is_go_away() || (e.is_reset() && e.reason() == Some(h2::Reason::REFUSED_STREAM)))
}

/// The bytes of a request body that is all in memory.
fn into_bytes(mut body: Full<Bytes>) -> Bytes {
    // A `Full` yields its one frame at once.
    match Pin::new(&mut body).poll_frame(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(Some(Ok(frame))) => frame.into_data().unwrap_or_default(),
        _ => Bytes::new(),
    }
}

fn has_payload_semantics(m: &Method) -> bool {
    !matches!(
        *m,
        Method::GET | Method::HEAD | Method::DELETE | Method::CONNECT
    )
}

/// A response body read from its h2 stream. Received bytes are given back to the
/// stream's flow-control window as they are handed on, as hyper does.
pub struct RecvBody {
    recv: RecvStream,
    data_done: bool,
    /// What `Content-Length` says is still to come, when it says.
    remaining: Option<u64>,
}

impl RecvBody {
    pub fn new(resp: Response<RecvStream>) -> Response<RecvBody> {
        let stated = content_length(resp.headers());
        resp.map(|recv| {
            let remaining = stated.or_else(|| recv.is_end_stream().then_some(0));
            RecvBody {
                recv,
                data_done: false,
                remaining,
            }
        })
    }

    pub fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        if !self.data_done {
            match ready!(self.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    if let Some(r) = &mut self.remaining {
                        *r = r.saturating_sub(data.len() as u64);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                // As hyper reads them: the upstream stopped the stream, not the answer.
                Some(Err(e))
                    if matches!(e.reason(), Some(h2::Reason::NO_ERROR | h2::Reason::CANCEL)) =>
                {
                    return Poll::Ready(None);
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => self.data_done = true,
            }
        }
        match ready!(self.recv.poll_trailers(cx)) {
            Ok(trailers) => Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t)))),
            Err(e) => Poll::Ready(Some(Err(e))),
        }
    }

    pub fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }

    pub fn size_hint(&self) -> SizeHint {
        self.remaining
            .map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}

/// The length every `Content-Length` value states, if they agree.
fn content_length(h: &HeaderMap) -> Option<u64> {
    let mut length = None;
    for v in h.get_all(header::CONTENT_LENGTH) {
        for part in v.to_str().ok()?.split(',') {
            let n: u64 = part.trim().parse().ok()?;
            if length.is_some_and(|l| l != n) {
                return None;
            }
            length = Some(n);
        }
    }
    length
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_is_read_only_when_every_value_agrees() {
        let h = |vals: &[&str]| {
            let mut m = HeaderMap::new();
            for v in vals {
                m.append(header::CONTENT_LENGTH, v.parse().unwrap());
            }
            content_length(&m)
        };
        assert_eq!(h(&[]), None);
        assert_eq!(h(&["42"]), Some(42));
        assert_eq!(h(&["42", "42"]), Some(42));
        assert_eq!(h(&["42, 42"]), Some(42));
        assert_eq!(h(&["42", "43"]), None);
        assert_eq!(h(&["x"]), None);
    }

    #[test]
    fn a_full_body_gives_up_its_bytes() {
        assert_eq!(into_bytes(Full::new(Bytes::from("abc"))), "abc");
        assert_eq!(into_bytes(Full::new(Bytes::new())), "");
    }
}
