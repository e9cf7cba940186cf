//! The response body of the mock ([`MockBody`]) and the per-connection machinery that lets
//! a body cut its connection only after its bytes have left ([`ConnCtl`], [`CutWhenFlushed`],
//! [`TrackedIo`]).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::task::AtomicWaker;
use http_body::{Body, Frame};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::Shared;
use super::reply::End;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyState {
    Sending,
    /// Sent to the end.
    Complete,
    /// Asked the connection to cut; waits to be dropped.
    Cut,
}

/// Sends pre-split frames, pacing them, then ends, stalls or cuts. Counts itself as cancelled
/// when dropped before the end.
pub(super) struct MockBody {
    frames: VecDeque<Bytes>,
    delay: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    end: End,
    state: BodyState,
    shared: Arc<Shared>,
    ctl: Arc<ConnCtl>,
}

impl MockBody {
    pub(super) fn new(
        frames: Vec<Bytes>,
        delay: Duration,
        end: End,
        shared: Arc<Shared>,
        ctl: Arc<ConnCtl>,
    ) -> MockBody {
        MockBody {
            frames: frames.into(),
            delay,
            sleep: None,
            end,
            state: BodyState::Sending,
            shared,
            ctl,
        }
    }

    /// An empty body that counts as neither completed nor cancelled.
    pub(super) fn empty(shared: Arc<Shared>, ctl: Arc<ConnCtl>) -> MockBody {
        MockBody {
            frames: VecDeque::new(),
            delay: Duration::ZERO,
            sleep: None,
            end: End::Complete,
            state: BodyState::Complete,
            shared,
            ctl,
        }
    }

    /// Everything was handed over; only the final `None` is left (hyper may skip asking).
    fn all_sent(&self) -> bool {
        self.frames.is_empty() && self.end == End::Complete
    }
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        if this.state == BodyState::Complete {
            return Poll::Ready(None);
        }
        if !this.frames.is_empty() {
            if !this.delay.is_zero() {
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(this.delay)));
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.sleep = None;
            }
            if let Some(frame) = this.frames.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(frame))));
            }
        }
        match this.end {
            End::Complete => {
                this.state = BodyState::Complete;
                this.shared.completed.fetch_add(1, Ordering::SeqCst);
                this.shared.changed.notify_waiters();
                Poll::Ready(None)
            }
            // Never woken: hyper drops the body when the client leaves.
            End::Stall(_) => Poll::Pending,
            End::Cut(_) => {
                // This poll comes after hyper took the last frame, so it is queued for the
                // connection by now; the connection flushes it, then closes.
                if this.state == BodyState::Sending {
                    this.state = BodyState::Cut;
                    this.ctl.request_cut();
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.state == BodyState::Complete || self.all_sent()
    }
}

impl Drop for MockBody {
    fn drop(&mut self) {
        if self.state != BodyState::Sending {
            return;
        }
        let counter = if self.all_sent() {
            &self.shared.completed
        } else {
            &self.shared.cancelled
        };
        counter.fetch_add(1, Ordering::SeqCst);
        self.shared.changed.notify_waiters();
    }
}

// ---------------------------------------------------------------------------------------
// Connection control: cutting a connection only after its bytes left
// ---------------------------------------------------------------------------------------

/// Per-connection flags shared by the response bodies, the IO wrapper and the connection.
#[derive(Default)]
pub(super) struct ConnCtl {
    /// A body asked for the connection to be cut.
    cut: AtomicBool,
    /// Bytes were written since the last completed flush.
    dirty: AtomicBool,
    /// The task driving the connection.
    waker: AtomicWaker,
}

impl ConnCtl {
    fn request_cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.waker.wake();
    }
}

/// Drives a hyper connection; once a cut was requested and everything written was flushed,
/// it returns, dropping the connection and so closing the socket without any goodbye.
pub(super) struct CutWhenFlushed<'a, C> {
    pub(super) connection: Pin<&'a mut C>,
    pub(super) ctl: Arc<ConnCtl>,
}

impl<C: Future> Future for CutWhenFlushed<'_, C> {
    type Output = Option<C::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.ctl.waker.register(cx.waker());
        // Read the flag before polling: a body that set it had already handed its last frame
        // to hyper, so this poll writes that frame out (h2 writes its whole send queue
        // whenever it has nothing left to read).
        let cut = self.ctl.cut.load(Ordering::SeqCst);
        match self.connection.as_mut().poll(cx) {
            Poll::Ready(out) => Poll::Ready(Some(out)),
            Poll::Pending if cut && !self.ctl.dirty.load(Ordering::SeqCst) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Notes whether written bytes still wait for a flush (TLS: above rustls, so "flushed"
/// means handed to the kernel).
pub(super) struct TrackedIo<T> {
    pub(super) inner: T,
    pub(super) ctl: Arc<ConnCtl>,
}

impl<T: AsyncRead + Unpin> AsyncRead for TrackedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TrackedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.ctl.dirty.store(true, Ordering::SeqCst);
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.ctl.dirty.store(true, Ordering::SeqCst);
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_flush(cx);
        if let Poll::Ready(Ok(())) = result {
            self.ctl.dirty.store(false, Ordering::SeqCst);
        }
        result
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
