//! [`Supervised`]: drives one connection while watching it from the side, for the idle
//! deadline ([`Activity`]) and the server's shutdown signal.
//!
//! `tokio::select!` over the connection and the watchers would poll every watcher on
//! every wake of the connection, and a stream wakes it once per chunk: the timer, the
//! shutdown receiver and their wakers were ~9k instructions of a 22-chunk stream. Here
//! the watchers run under a waker of their own and are polled only after it fired.
//!
//! The connection itself is polled with the task's own waker. (Until the proxy became
//! thread-per-core it ran under a waker that answered hyper's wakes from inside its own
//! poll by polling again in place, so a call did not hop between the workers of a shared
//! runtime; on current-thread workers that made no measurable difference and it went.)

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use hyper_util::server::graceful::GracefulConnection;
use tokio::sync::watch;

use super::Activity;

type SideFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A connection future that ends when the connection does, or early (`Ok`) when it has
/// had no request in flight for the idle limit. When shutdown is signalled it starts
/// the connection's graceful shutdown (in-flight requests finish, keep-alive ends).
pub(super) struct Supervised<C> {
    conn: Pin<Box<C>>,
    /// Resolves once the connection is idle too long. Polled only when `side` fired.
    watch: SideFuture,
    side: Arc<SideWaker>,
    side_waker: Waker,
    /// The connection task's waker as last handed to `side`.
    task: Option<Waker>,
}

/// Wakes the connection's task on behalf of the watchers, and records that it did.
struct SideWaker {
    fired: AtomicBool,
    /// Set by the watcher future when the shutdown signal came; taken (once) by the
    /// connection's poll.
    shutdown: AtomicBool,
    task: TaskSlot,
}

/// The connection task's waker, as last seen by its poll, for the wakers that forward
/// to it.
#[derive(Default)]
struct TaskSlot(Mutex<Option<Waker>>);

impl TaskSlot {
    fn set(&self, w: &Waker) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(w.clone());
    }

    fn wake(&self) {
        let task = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(w) = task.as_ref() {
            w.wake_by_ref();
        }
    }
}

impl Wake for SideWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.fired.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl<C: GracefulConnection> Supervised<C> {
    pub(super) fn new(
        conn: C,
        activity: Arc<Activity>,
        idle_limit: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) -> Supervised<C> {
        let side = Arc::new(SideWaker {
            // Polled once at the start, to arm the timer and the receiver.
            fired: AtomicBool::new(true),
            shutdown: AtomicBool::new(false),
            task: TaskSlot::default(),
        });
        let flag = side.clone();
        let watch: SideFuture = Box::pin(async move {
            let idle = activity.idle_too_long(idle_limit);
            tokio::pin!(idle);
            tokio::select! {
                () = &mut idle => return,
                () = shutdown_signalled(&mut shutdown) => {}
            }
            flag.shutdown.store(true, Ordering::Release);
            // Still closed when idle while it winds down.
            idle.await;
        });
        Supervised {
            conn: Box::pin(conn),
            watch,
            side_waker: Waker::from(side.clone()),
            side,
            task: None,
        }
    }
}

/// Returns once shutdown is signalled (or its sender is gone, which only happens when
/// the server is going away), including when it already was.
pub(super) async fn shutdown_signalled(rx: &mut watch::Receiver<bool>) {
    if *rx.borrow_and_update() {
        return;
    }
    while rx.changed().await.is_ok() {
        if *rx.borrow_and_update() {
            return;
        }
    }
}

impl<C: GracefulConnection> Future for Supervised<C> {
    type Output = Result<(), C::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if !this.task.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            let w = cx.waker().clone();
            this.side.task.set(&w);
            this.task = Some(w);
        }
        if this.side.fired.swap(false, Ordering::AcqRel) {
            let mut side_cx = Context::from_waker(&this.side_waker);
            if this.watch.as_mut().poll(&mut side_cx).is_ready() {
                // Idle too long: dropping the connection closes it.
                return Poll::Ready(Ok(()));
            }
            if this.side.shutdown.swap(false, Ordering::AcqRel) {
                this.conn.as_mut().graceful_shutdown();
            }
        }
        this.conn.as_mut().poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use bytes::Bytes;
    use http::{Request, Response};
    use http_body_util::{BodyExt, Full};
    use hyper::body::Incoming;
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto;
    use tokio::io::DuplexStream;
    use tokio::sync::oneshot;
    use tokio::time::Instant;

    use super::*;

    type Gate = Arc<Mutex<Option<oneshot::Receiver<()>>>>;

    /// Serves one end of an in-memory pipe with `Supervised`; each request is answered
    /// "ok" once `gate` (if any) opens. Resolves to when the connection ended and how.
    fn serve(
        io: DuplexStream,
        idle: Duration,
        shutdown: watch::Receiver<bool>,
        gate: Gate,
    ) -> tokio::task::JoinHandle<(Instant, Result<(), String>)> {
        let activity = Arc::new(Activity::new());
        let svc_activity = activity.clone();
        let svc = hyper::service::service_fn(move |_req: Request<Incoming>| {
            let in_flight = svc_activity.begin();
            let gate = gate.lock().unwrap().take();
            async move {
                if let Some(g) = gate {
                    let _ = g.await;
                }
                drop(in_flight);
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
            }
        });
        tokio::spawn(async move {
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder.http1().timer(TokioTimer::new()).keep_alive(true);
            let conn = builder.serve_connection(TokioIo::new(io), svc).into_owned();
            let r = Supervised::new(conn, activity, idle, shutdown).await;
            (Instant::now(), r.map_err(|e| e.to_string()))
        })
    }

    /// The connection's end; fails the test if it never comes (the clock is paused, so
    /// the bound costs no real time).
    async fn finish(
        ended: tokio::task::JoinHandle<(Instant, Result<(), String>)>,
    ) -> (Instant, Result<(), String>) {
        tokio::time::timeout(Duration::from_secs(3600), ended)
            .await
            .expect("the connection never ended")
            .unwrap()
    }

    async fn client(io: DuplexStream) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .unwrap();
        tokio::spawn(conn);
        send
    }

    fn request() -> Request<Full<Bytes>> {
        Request::get("/").body(Full::default()).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_is_closed_once_idle_for_the_limit_and_not_before() {
        let (a, b) = tokio::io::duplex(4096);
        let (_tx, rx) = watch::channel(false);
        let start = Instant::now();
        let ended = serve(b, Duration::from_secs(5), rx, Gate::default());
        let mut send = client(a).await;
        // A call at 3 s pushes the deadline to 8 s.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let resp = send.send_request(request()).await.unwrap();
        assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "ok");
        let (ended, result) = finish(ended).await;
        assert_eq!(result, Ok(()));
        let ended = ended - start;
        assert!(
            ended >= Duration::from_secs(8) && ended < Duration::from_millis(8100),
            "{ended:?}"
        );
    }

    /// A served connection whose one call waits for a gate, and its shutdown signal.
    struct Gated {
        shutdown: watch::Sender<bool>,
        ended: tokio::task::JoinHandle<(Instant, Result<(), String>)>,
    }

    /// The client end of the pipe, the gate's opener, and the connection.
    fn gated() -> (DuplexStream, oneshot::Sender<()>, Gated) {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let (shutdown, rx) = watch::channel(false);
        let (open, gate) = oneshot::channel();
        let ended = serve(
            server,
            Duration::from_secs(60),
            rx,
            Arc::new(Mutex::new(Some(gate))),
        );
        (client, open, Gated { shutdown, ended })
    }

    impl Gated {
        /// Signals shutdown while the call waits at the gate, checks the connection
        /// outlives it, then opens the gate; returns when it did.
        async fn shut_down_mid_call(&self, open: oneshot::Sender<()>) -> Instant {
            tokio::time::sleep(Duration::from_millis(100)).await;
            self.shutdown.send(true).unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(!self.ended.is_finished(), "ended with a call in flight");
            let released = Instant::now();
            open.send(()).unwrap();
            released
        }

        /// The connection ends cleanly within a second of `released`.
        async fn ends_soon_after(self, released: Instant) {
            let (ended, result) = finish(self.ended).await;
            assert_eq!(result, Ok(()));
            assert!(ended - released < Duration::from_secs(1));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_lets_the_call_in_flight_finish_then_ends_the_connection() {
        let (io, open, conn) = gated();
        let mut send = client(io).await;
        let call = tokio::spawn(async move {
            let resp = send.send_request(request()).await.unwrap();
            let close = resp.headers().get(http::header::CONNECTION).cloned();
            (resp.into_body().collect().await.unwrap().to_bytes(), close)
        });
        let released = conn.shut_down_mid_call(open).await;
        let (body, close) = call.await.unwrap();
        assert_eq!(body, "ok");
        assert_eq!(close.as_ref().map(|v| v.as_bytes()), Some(&b"close"[..]));
        conn.ends_soon_after(released).await;
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_lets_an_h2_stream_in_flight_finish_then_ends_the_connection() {
        let (io, open, conn) = gated();
        let (mut send, h2) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
                .await
                .unwrap();
        tokio::spawn(h2);
        // A client that keeps its side open: only the server's GOAWAY ends it.
        let mut keep = send.clone();
        let call = tokio::spawn(async move {
            let resp = send.send_request(request()).await.unwrap();
            resp.into_body().collect().await.unwrap().to_bytes()
        });
        let released = conn.shut_down_mid_call(open).await;
        assert_eq!(call.await.unwrap(), "ok");
        conn.ends_soon_after(released).await;
        // Gone for good: a new stream is refused.
        assert!(keep.send_request(request()).await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_accepted_after_shutdown_was_signalled_ends_at_once() {
        let (_a, b) = tokio::io::duplex(4096);
        let (tx, rx) = watch::channel(false);
        tx.send(true).unwrap();
        let start = Instant::now();
        let ended = serve(b, Duration::from_secs(60), rx, Gate::default());
        // hyper reports a connection cancelled before its first byte as an error.
        let (ended, _) = finish(ended).await;
        assert!(
            ended - start < Duration::from_secs(1),
            "{:?}",
            ended - start
        );
    }
}
