//! The metering tee: forwards upstream frames to the client untouched and feeds a copy
//! to a bounded usage parser; records exactly one cost event when the body ends, fails,
//! or is dropped (a client that went away: `cancelled`).
//!
//! The copy is a `Bytes` clone (a refcount), decompressed only for the parser. A
//! parser or decoder failure stops metering, never forwarding.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

use super::client::UpstreamBody;
use crate::auth::keys::KeyOwner;
use crate::pricing::PriceContext;
use crate::providers::decode::{ContentDecoder, DecodeError};
use crate::providers::openai::UsageChunkFilter;
use crate::providers::{Endpoint, ParsedUsage, Provider, UsageParser};
use crate::state::AppState;
use crate::store::model::{CostEvent, Outcome, UsageStatus};

/// What the proxy knows about a call before the upstream answers.
pub struct CallCtx {
    pub state: AppState,
    pub started: Instant,
    pub ts_ms: i64,
    /// The event's id, taken at arrival so ids follow arrival order.
    pub id: ulid::Ulid,
    pub provider: Provider,
    pub endpoint: Endpoint,
    pub request_model: Option<String>,
    pub customer_id: Option<String>,
    pub owner: KeyOwner,
    /// False for calls that are not billed (a `GET` that reads back a stored response
    /// carries its usage again: metering it would count that usage twice).
    pub billable: bool,
}

/// How a metered body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The upstream finished the body.
    Complete,
    /// The client went away (the body was dropped before its end).
    Cancelled,
    /// The upstream connection failed or stalled mid-body.
    UpstreamFailed,
}

/// Reads usage from the copy of a response body and turns it into one event.
pub struct Meter {
    ctx: CallCtx,
    status: u16,
    streamed: bool,
    decoder: Option<ContentDecoder>,
    parser: Box<dyn UsageParser>,
    upstream_request_id: Option<String>,
    ttft_ms: Option<u64>,
    copy: CopyState,
}

/// Whether the metering copy can still be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CopyState {
    Readable,
    /// A `Content-Encoding` the decoder does not know (zstd, stacked codings) or a body
    /// past the decoder's cap: usage is unknown, the body itself may be fine.
    Unreadable,
    /// The compressed body was corrupt or cut short: the upstream sent a broken body.
    Broken,
}

impl Meter {
    pub fn new(
        ctx: CallCtx,
        status: u16,
        streamed: bool,
        content_encoding: Option<&str>,
        upstream_request_id: Option<String>,
    ) -> Meter {
        let decoder = ContentDecoder::for_encoding(content_encoding);
        let copy = if decoder.is_some() {
            CopyState::Readable
        } else {
            CopyState::Unreadable
        };
        let parser: Box<dyn UsageParser> = if ctx.billable {
            crate::providers::parser_for(ctx.provider, ctx.endpoint, streamed)
        } else {
            Box::new(NotBilled)
        };
        Meter {
            ctx,
            status,
            streamed,
            decoder,
            parser,
            upstream_request_id,
            ttft_ms: None,
            copy,
        }
    }

    /// Reads a chunk that arrived at `now`.
    fn feed(&mut self, chunk: &[u8], now: Instant) {
        if self.ttft_ms.is_none() {
            self.ttft_ms = Some(ms_between(self.ctx.started, now));
        }
        if self.copy != CopyState::Readable {
            return;
        }
        let Some(decoder) = self.decoder.as_mut() else {
            return;
        };
        let parser = &mut self.parser;
        if let Err(e) = decoder.decode(chunk, &mut |plain| parser.feed(plain)) {
            self.copy = copy_state_after(&e);
        }
    }

    /// Builds and queues the call's event, the call having ended at `now`. Consumes the
    /// meter: one event per call.
    pub fn finish(mut self, end: End, now: Instant) {
        if let Some(d) = self.decoder.as_mut()
            && end == End::Complete
            && self.copy == CopyState::Readable
            && let Err(e) = d.finish()
        {
            // A truncated compressed body: what was parsed is a lower bound.
            self.copy = copy_state_after(&e);
        }
        let parsed = self.parser.finish();
        let readable = self.copy == CopyState::Readable;
        let complete = parsed.complete && end == End::Complete && readable;
        // A stream of a known API that ended without its final event (an `event: error`,
        // or a clean close before `[DONE]` / `message_stop`) broke on the upstream's side.
        let stream_broke =
            self.streamed && readable && !parsed.complete && self.ctx.endpoint != Endpoint::Other;
        let outcome = match end {
            End::Cancelled => Outcome::Cancelled,
            _ if self.status >= 400 => Outcome::UpstreamError,
            End::UpstreamFailed => Outcome::UpstreamError,
            End::Complete if stream_broke || self.copy == CopyState::Broken => {
                Outcome::UpstreamError
            }
            End::Complete => Outcome::Ok,
        };
        let latency_ms = ms_between(self.ctx.started, now);
        let ttft_ms = self.ttft_ms;
        // Gemini streams without `alt=sse` as a JSON array, read by the JSON parser: a
        // streamed call all the same.
        let streamed = self.streamed || self.ctx.endpoint == Endpoint::StreamGenerateContent;
        let event = build_event(
            &mut self.ctx,
            self.status,
            outcome,
            streamed,
            latency_ms,
            ttft_ms,
            parsed,
            complete,
            self.upstream_request_id.take(),
        );
        commit_event(&self.ctx.state, event);
    }
}

/// The parser for calls that are not billed: reports no usage.
/// What a decode error says about the body: a cap we set, or a broken upstream body.
fn copy_state_after(e: &DecodeError) -> CopyState {
    match e {
        DecodeError::TooLarge { .. } => CopyState::Unreadable,
        DecodeError::Corrupt { .. } | DecodeError::Truncated { .. } => CopyState::Broken,
    }
}

struct NotBilled;

impl UsageParser for NotBilled {
    fn feed(&mut self, _chunk: &[u8]) {}
    fn finish(&mut self) -> ParsedUsage {
        ParsedUsage {
            complete: true,
            ..ParsedUsage::default()
        }
    }
}

/// Records an event for a call that never produced an upstream body
/// (refused by the proxy after authentication, or upstream unreachable).
pub fn record_without_body(ctx: CallCtx, status: u16) {
    record_unanswered(ctx, status, Outcome::ProxyError);
}

/// Status recorded for a call whose client went away before the upstream answered
/// (nginx's "client closed request"): no upstream status exists.
const CLIENT_CLOSED_REQUEST: u16 = 499;

/// Records a call whose client went away before the upstream's answer reached it. The
/// upstream request, if sent, is dropped with the handler: cancelled upstream too.
pub fn record_cancelled_before_answer(ctx: CallCtx) {
    record_unanswered(ctx, CLIENT_CLOSED_REQUEST, Outcome::Cancelled);
}

fn record_unanswered(mut ctx: CallCtx, status: u16, outcome: Outcome) {
    let latency_ms = elapsed_ms(ctx.started);
    let event = build_event(
        &mut ctx,
        status,
        outcome,
        false,
        latency_ms,
        None,
        ParsedUsage::default(),
        false,
        None,
    );
    commit_event(&ctx.state, event);
}

#[allow(clippy::too_many_arguments)]
/// Takes what it needs out of `ctx` (the call is over: one event per call).
fn build_event(
    ctx: &mut CallCtx,
    status: u16,
    outcome: Outcome,
    streamed: bool,
    latency_ms: u64,
    ttft_ms: Option<u64>,
    mut parsed: ParsedUsage,
    complete: bool,
    upstream_request_id: Option<String>,
) -> CostEvent {
    let usage_status = match (&parsed.usage, complete) {
        (None, _) => UsageStatus::Missing,
        (Some(_), true) => UsageStatus::Reported,
        (Some(_), false) => UsageStatus::Partial,
    };
    let model = parsed
        .model
        .take()
        .filter(|m| !m.is_empty())
        .or_else(|| ctx.request_model.take());
    let cost = match (&parsed.usage, model.as_deref()) {
        (Some(_), Some(m)) => ctx
            .state
            .prices
            .cost(
                ctx.provider,
                m,
                &parsed,
                &PriceContext {
                    at_unix_ms: ctx.ts_ms,
                    service_tier: parsed.service_tier.as_deref(),
                    batch: false,
                },
            )
            .map(|c| c.usd),
        _ => None,
    };
    CostEvent {
        id: ctx.id.to_string(),
        user_id: String::from(&*ctx.owner.user_id),
        ts_ms: ctx.ts_ms,
        provider: ctx.provider,
        endpoint: ctx.endpoint,
        model,
        customer_id: ctx.customer_id.take(),
        api_key_id: String::from(&*ctx.owner.key_id),
        status,
        outcome,
        streamed,
        latency_ms,
        ttft_ms,
        usage: parsed.usage,
        usage_status,
        cost,
        upstream_request_id,
        service_tier: parsed.service_tier,
    }
}

fn commit_event(state: &AppState, event: CostEvent) {
    state.metrics.record_call(
        event.provider,
        event.model.as_deref(),
        event.outcome,
        event.cost,
    );
    tracing::debug!(
        provider = %event.provider,
        model = event.model.as_deref().unwrap_or(""),
        status = event.status,
        outcome = event.outcome.as_str(),
        usage = ?event.usage_status,
        "call metered"
    );
    state.events.record(event);
}

fn elapsed_ms(since: Instant) -> u64 {
    ms_between(since, Instant::now())
}

fn ms_between(since: Instant, now: Instant) -> u64 {
    u64::try_from(now.saturating_duration_since(since).as_millis()).unwrap_or(u64::MAX)
}

/// The response body handed to the client: upstream frames, untouched unless the
/// injected usage chunk must be hidden, with a meter on the side.
pub struct MeteredBody {
    inner: UpstreamBody,
    meter: Option<Meter>,
    /// Boxed: it is rare (streams whose usage the proxy asked for) and large, and the
    /// body is moved several times on its way into hyper.
    filter: Option<Box<UsageChunkFilter>>,
    ready: VecDeque<Bytes>,
    idle_timeout: Duration,
    /// Armed at the first wait for the upstream and re-armed only when it fires early:
    /// a frame just stamps `last_frame`, so frames cost no timer work.
    idle: Option<Pin<Box<Sleep>>>,
    /// The waker `idle` was last polled with: while it has not fired and the task is
    /// the same, it needs no polling (a stream is pending once per chunk).
    idle_waker: Option<Waker>,
    last_frame: tokio::time::Instant,
    ended: bool,
    /// Whether a data frame has gone out yet (the first one never waits: see `held`).
    seen_data: bool,
    /// Small frames that came in a burst, gathered to go out as one (see `BURST_GAP`).
    held: BytesMut,
    /// A trailers frame that came while `held` had bytes: it goes out after them.
    trailers: Option<Frame<Bytes>>,
    /// Why the body stopped early, handed to hyper only after it could flush what came
    /// before: hyper discards unwritten bytes when a body fails.
    failed: Option<StreamError>,
    /// Whether hyper was given that chance (one `Pending`).
    flush_offered: bool,
}

/// A data frame that comes less than this after the one before it is part of a burst
/// (the upstream sent several at once, as the bench's mock and fast providers do, or an
/// SSE stream's last events). hyper hands the client a frame per upstream chunk and
/// flushes each with its own `writev`, one wake-up of the client each. In a burst the
/// body holds the frame and reads on, and sends everything gathered as one frame once
/// the upstream has nothing more already read (an h2 body: nothing more already
/// decoded by its connection's task): it never waits for the upstream's next read, nor
/// yields to let that task decode more (under load the turn came back after other
/// calls' and the next frame no longer counted as part of the burst: 8 `writev`s a
/// stream at 256 connections instead of the pass-through's 2). Streams that trickle
/// (tokens milliseconds apart) pass frame by frame as before, and the first data frame
/// always goes out at once. 20-chunk streams at 64
/// connections: 24 `writev`s a stream became 2, and CPU a stream fell by more than half.
const BURST_GAP: Duration = Duration::from_millis(1);
/// Frames at least this large go out as they are: the syscall is already worth it, and
/// copying big frames would cost more than it saves.
const GATHER_BELOW: usize = 4096;
/// Most bytes held before they go out anyway.
const HELD_MAX: usize = 32 * 1024;

impl MeteredBody {
    /// `now`: a clock reading taken as the response head is handed on (the idle timeout
    /// counts from it). Clock reads are ~40 ns each in a VM; a call shares them.
    pub fn new(
        inner: UpstreamBody,
        meter: Meter,
        filter: Option<UsageChunkFilter>,
        idle_timeout: Duration,
        now: tokio::time::Instant,
    ) -> MeteredBody {
        MeteredBody {
            inner,
            meter: Some(meter),
            filter: filter.map(Box::new),
            ready: VecDeque::new(),
            idle_timeout,
            idle: None,
            idle_waker: None,
            last_frame: now,
            ended: false,
            seen_data: false,
            held: BytesMut::new(),
            trailers: None,
            failed: None,
            flush_offered: false,
        }
    }

    /// Ends the call as failed: what the filter still holds goes out first, then the
    /// error (see `failed`).
    fn fail(&mut self, e: StreamError) {
        if let Some(rest) = self.filter.as_mut().and_then(|f| f.finish()) {
            self.ready.push_back(rest);
        }
        self.end(End::UpstreamFailed, Instant::now());
        self.failed = Some(e);
    }

    /// Whether the upstream has been silent for `idle_timeout`; otherwise makes sure a
    /// timer will wake the task when it would be.
    fn idle_expired(&mut self, cx: &mut Context<'_>) -> bool {
        let same_task = |w: &Option<Waker>, cx: &Context<'_>| {
            w.as_ref().is_some_and(|w| w.will_wake(cx.waker()))
        };
        // Armed, not fired, and holding this task's waker: nothing to do. Frames since it
        // was armed only moved `last_frame`, which is looked at when it fires.
        if self.idle.as_ref().is_some_and(|t| !t.is_elapsed()) && same_task(&self.idle_waker, cx) {
            return false;
        }
        let deadline = self.last_frame + self.idle_timeout;
        let timer = match self.idle.as_mut() {
            Some(t) => t,
            None => self
                .idle
                .insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        loop {
            if timer.as_mut().poll(cx).is_pending() {
                if !same_task(&self.idle_waker, cx) {
                    self.idle_waker = Some(cx.waker().clone());
                }
                return false;
            }
            if tokio::time::Instant::now() >= deadline {
                return true;
            }
            // Fired for an older deadline: frames came since it was armed.
            timer.as_mut().reset(deadline);
        }
    }

    /// Whether a burst is being gathered (bytes are held and the body goes on).
    fn gathering(&self) -> bool {
        !self.held.is_empty() && !self.ended && self.failed.is_none()
    }

    /// Adds a small frame to the held bytes if there is room; false if it must go out
    /// (with what is held before it: see `with_held`).
    fn hold(&mut self, b: &Bytes) -> bool {
        if b.len() >= GATHER_BELOW || self.held.len() + b.len() > HELD_MAX {
            return false;
        }
        self.held.extend_from_slice(b);
        true
    }

    /// Holds everything in `ready` if all of it fits (the filter's output of a frame);
    /// false, holding nothing, otherwise.
    fn hold_ready(&mut self) -> bool {
        let small = self.ready.iter().all(|b| b.len() < GATHER_BELOW);
        let len: usize = self.ready.iter().map(Bytes::len).sum();
        if self.ready.is_empty() || !small || self.held.len() + len > HELD_MAX {
            return false;
        }
        for b in self.ready.drain(..) {
            self.held.extend_from_slice(&b);
        }
        true
    }

    /// What goes out next when `b` is due: `b` itself, or whatever is held first (with
    /// `b` in the same frame when it is small, else `b` waits its turn in `ready`).
    fn with_held(&mut self, b: Bytes) -> Bytes {
        if self.held.is_empty() {
            return b;
        }
        if b.len() < GATHER_BELOW {
            self.held.extend_from_slice(&b);
        } else {
            self.ready.push_front(b);
        }
        self.take_held()
    }

    /// Everything held, as one frame's bytes.
    fn take_held(&mut self) -> Bytes {
        self.held.split().freeze()
    }

    fn end(&mut self, how: End, now: Instant) {
        self.ended = true;
        if let Some(m) = self.meter.take() {
            m.finish(how, now);
        }
    }
}

/// Why a response body stopped before its end. Returned to hyper, which then aborts the
/// response (HTTP/1.1: closes the connection without the last chunk; h2: resets the
/// stream), so the client sees a failed body rather than a clean, short one.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("the upstream sent nothing for {} ms", .0.as_millis())]
    Idle(Duration),
    #[error("the upstream connection failed: {0}")]
    Upstream(#[from] super::client::BodyError),
}

impl Body for MeteredBody {
    type Data = Bytes;
    type Error = StreamError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, StreamError>>> {
        let this = &mut *self;
        loop {
            if let Some(b) = this.ready.pop_front() {
                // Mid-burst, filtered output is gathered like the rest.
                if this.gathering() && this.hold(&b) {
                    continue;
                }
                return Poll::Ready(Some(Ok(Frame::data(this.with_held(b)))));
            }
            if !this.held.is_empty()
                && (this.ended || this.failed.is_some() || this.trailers.is_some())
            {
                return Poll::Ready(Some(Ok(Frame::data(this.take_held()))));
            }
            if let Some(t) = this.trailers.take() {
                return Poll::Ready(Some(Ok(t)));
            }
            if this.failed.is_some() {
                if !this.flush_offered {
                    // hyper flushes its write buffer when the body is pending.
                    this.flush_offered = true;
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                return Poll::Ready(this.failed.take().map(Err));
            }
            if this.ended {
                return Poll::Ready(None);
            }
            let polled = Pin::new(&mut this.inner).poll_frame(cx);
            let frame = match polled {
                Poll::Pending => {
                    // What a burst gathered goes once the upstream connection has
                    // nothing more already read (or, for h2, decoded).
                    if !this.held.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(this.take_held()))));
                    }
                    if this.idle_expired(cx) {
                        tracing::warn!(
                            idle_ms = this.idle_timeout.as_millis() as u64,
                            "upstream stream idle, closing"
                        );
                        this.fail(StreamError::Idle(this.idle_timeout));
                        continue;
                    }
                    return Poll::Pending;
                }
                Poll::Ready(f) => f,
            };
            match frame {
                None => {
                    if let Some(rest) = this.filter.as_mut().and_then(|f| f.finish()) {
                        this.ready.push_back(rest);
                    }
                    this.end(End::Complete, Instant::now());
                    continue;
                }
                Some(Err(e)) => {
                    this.fail(StreamError::Upstream(e));
                    continue;
                }
                Some(Ok(frame)) => {
                    let frame = match frame.into_data() {
                        Ok(data) => data,
                        // Trailers pass through as they are, after anything held.
                        Err(other) if this.held.is_empty() => {
                            return Poll::Ready(Some(Ok(other)));
                        }
                        Err(other) => {
                            this.trailers = Some(other);
                            continue;
                        }
                    };
                    // One clock read serves the idle timer, the first-byte time and,
                    // for a body that ends here, the latency.
                    let arrived = tokio::time::Instant::now();
                    let burst = this.seen_data && arrived - this.last_frame < BURST_GAP;
                    this.seen_data = true;
                    this.last_frame = arrived;
                    let now = arrived.into_std();
                    if let Some(m) = this.meter.as_mut() {
                        m.feed(&frame, now);
                    }
                    // hyper stops polling once a sized body has all its bytes, so the
                    // end is detected here rather than from a final `None`.
                    let last = this.inner.is_end_stream();
                    match this.filter.as_mut() {
                        None => {
                            if last {
                                this.end(End::Complete, now);
                            } else if burst && this.hold(&frame) {
                                continue;
                            }
                            return Poll::Ready(Some(Ok(Frame::data(this.with_held(frame)))));
                        }
                        Some(f) => {
                            this.ready.extend(f.push(frame));
                            if last {
                                if let Some(rest) = f.finish() {
                                    this.ready.push_back(rest);
                                }
                                this.end(End::Complete, now);
                            } else if burst && this.hold_ready() {
                                continue;
                            }
                            continue;
                        }
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ready.is_empty()
            && self.held.is_empty()
            && self.trailers.is_none()
            // A failed body still owes hyper its error, after the bytes before it.
            && self.failed.is_none()
            && (self.ended || (self.filter.is_none() && self.inner.is_end_stream()))
    }

    fn size_hint(&self) -> SizeHint {
        if self.filter.is_some() {
            SizeHint::default()
        } else {
            self.inner.size_hint()
        }
    }
}

impl Drop for MeteredBody {
    fn drop(&mut self) {
        if let Some(m) = self.meter.take() {
            // Dropping `inner` right after this closes the upstream stream: the call is
            // cancelled upstream too.
            m.finish(End::Cancelled, Instant::now());
        }
    }
}
