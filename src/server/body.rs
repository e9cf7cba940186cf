//! [`RequestBody`]: the request body both listeners' handlers read. It is hyper's body
//! with two limits a slow or greedy client could otherwise stretch without end:
//! a longest pause between chunks, and a listener-wide budget of buffered body bytes.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The client sent nothing for this long in the middle of the body.
    #[error("the request body stalled: no bytes for {} ms", .0.as_millis())]
    Idle(Duration),
    /// The listener's budget of buffered request bytes is spent.
    #[error("the server is holding too many request bytes right now; retry shortly")]
    Busy,
    /// The connection failed or the body was malformed.
    #[error(transparent)]
    Read(#[from] hyper::Error),
}

/// Budget permits of one request, released when its handler has answered (the body's
/// bytes are parsed and forwarded by then) or, if later, when the body is dropped.
pub struct Held {
    _slot: Arc<Mutex<Option<OwnedSemaphorePermit>>>,
}

/// A request body with an idle timeout and a share of the listener's byte budget.
pub struct RequestBody {
    inner: Incoming,
    idle_timeout: Duration,
    /// Created at the first wait, then pushed back by every chunk.
    idle: Option<Pin<Box<Sleep>>>,
    budget: Arc<Semaphore>,
    permit: Option<OwnedSemaphorePermit>,
    /// Budget taken in advance (from `Content-Length`) and not yet used by chunks.
    reserved: usize,
    started: bool,
    held: Arc<Mutex<Option<OwnedSemaphorePermit>>>,
}

impl RequestBody {
    /// Wraps a request's body; the [`Held`] handle keeps the budget taken by it until
    /// dropped.
    pub(super) fn wrap(
        req: Request<Incoming>,
        idle_timeout: Duration,
        budget: &Arc<Semaphore>,
    ) -> (Request<RequestBody>, Held) {
        let held = Arc::new(Mutex::new(None));
        let req = req.map(|inner| RequestBody {
            inner,
            idle_timeout,
            idle: None,
            budget: budget.clone(),
            permit: None,
            reserved: 0,
            started: false,
            held: held.clone(),
        });
        (req, Held { _slot: held })
    }

    /// Takes `n` more bytes of budget, or fails without waiting.
    fn take_budget(&mut self, n: usize) -> Result<(), BodyError> {
        if n == 0 {
            return Ok(());
        }
        let n = u32::try_from(n).map_err(|_| BodyError::Busy)?;
        let p = self
            .budget
            .clone()
            .try_acquire_many_owned(n)
            .map_err(|_| BodyError::Busy)?;
        match &mut self.permit {
            Some(held) => held.merge(p),
            None => self.permit = Some(p),
        }
        Ok(())
    }

    /// Counts a chunk of `len` bytes against the budget.
    fn account(&mut self, len: usize) -> Result<(), BodyError> {
        if len <= self.reserved {
            self.reserved -= len;
            return Ok(());
        }
        let extra = len - self.reserved;
        self.reserved = 0;
        self.take_budget(extra)
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        if !this.started {
            this.started = true;
            // A declared length is taken at once: a body that cannot fit is refused
            // before any of it is read.
            if let Some(n) = this.inner.size_hint().exact() {
                let n = usize::try_from(n).unwrap_or(usize::MAX);
                if let Err(e) = this.take_budget(n) {
                    return Poll::Ready(Some(Err(e)));
                }
                this.reserved = n;
            }
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    if let Err(e) = this.account(data.len()) {
                        return Poll::Ready(Some(Err(e)));
                    }
                    if let Some(idle) = this.idle.as_mut() {
                        idle.as_mut()
                            .reset(tokio::time::Instant::now() + this.idle_timeout);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(BodyError::Read(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let timeout = this.idle_timeout;
                let idle = this
                    .idle
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if idle.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Some(Err(BodyError::Idle(timeout))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        // The bytes read may live on in the handler: hand the budget to `Held`.
        if let Some(p) = self.permit.take() {
            let mut slot = self.held.lock().unwrap_or_else(|e| e.into_inner());
            match slot.as_mut() {
                Some(held) => held.merge(p),
                None => *slot = Some(p),
            }
        }
    }
}
