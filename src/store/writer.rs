//! The event writer: one thread that commits cost events in groups.
//!
//! Requests hand events to [`EventSink::record`], which never waits on the disk: the
//! event goes into a bounded queue, and one blocking thread takes everything queued
//! at once and writes it in a single transaction (group commit). A full queue makes
//! the handing-off task wait (backpressure, counted) rather than drop the event; an
//! event is only ever dropped once the writer has shut down, and that is counted and
//! logged. A failed commit is retried with the same batch until it succeeds or the
//! writer is told to stop.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::Store;
use super::model::CostEvent;

/// Most events written in one transaction. A commit costs about the same whatever its
/// size (two fsyncs and a rewrite of each touched tree's path), so under load bigger
/// groups are cheaper per event.
const MAX_BATCH: usize = 16_384;
/// Under load, commits start at least this far apart so events gather into fewer,
/// larger transactions: at 20k calls/s this cut the writer's CPU several-fold. It also
/// keeps the fsyncs (two per commit) rare enough not to show in the proxy's latency; on
/// a VM an fsync stalls the other threads too (the host serves the disk), whatever the
/// writer's priority. At one connection (~10k calls/s) 5 ms gave +230..+275 µs added
/// p99, 20 ms +77..+86; against 20 ms, 50 ms cut the streaming time-to-first-byte p99
/// from the pass-through's +97 to +28 µs and JSON's from +49 to +30 (medians of 5
/// interleaved rounds; 100 ms did no better). A `kill -9` loses at most this long of
/// calls plus one commit, within the 150 ms `tests/durability.rs` allows. Events are
/// queued in memory meanwhile either way; an idle writer commits at once and a flush
/// request (shutdown, tests) never waits.
const MIN_COMMIT_INTERVAL: Duration = Duration::from_millis(50);
/// Most senders waiting for room in a full queue.
const MAX_WAITING: u64 = 65_536;
/// The writer thread's nice value. A commit is a millisecond or more of CPU; at normal
/// priority the scheduler lets it finish while a proxy worker that just woke waits,
/// and that wait was most of the streaming time-to-first-byte tail at one connection
/// (p99 598 -> 417 µs, median of 5 interleaved runs). Under saturation the writer
/// still keeps up: it gets less CPU, so batches grow and cost less per event (queue
/// depth at most ~1,000 at 256 connections). Not 19: that cut the tail ~100 µs more but
/// let the queue reach 3.5k; at 10, sharing a core with a busy worker still leaves the
/// writer ~10% of it, about what 40k events/s need. Raising it back needs privileges.
const WRITER_NICE: i32 = 10;

/// Events waiting behind the batch being written, below which the writer yields
/// between slices of it (see `commit`).
const YIELD_BELOW_BACKLOG: u64 = 1024;

/// Whether the writer may give up its core now, with `backlog` events queued behind
/// the batch it is writing.
fn quiet(backlog: u64) -> bool {
    backlog < YIELD_BELOW_BACKLOG
}

// Events travel unboxed: a box per call was one more allocation, freed on the writer's
// thread (cross-thread frees are mimalloc's slow path).
#[allow(clippy::large_enum_variant)]
enum Msg {
    Event(CostEvent),
    /// Answered once every event queued before it is committed.
    Flush(oneshot::Sender<()>),
}

/// Counters the writer exposes to `/metrics` and `/healthz`.
#[derive(Debug, Default)]
pub struct WriterStats {
    pub queued: AtomicU64,
    pub written: AtomicU64,
    pub dropped: AtomicU64,
    pub backpressure_waits: AtomicU64,
    pub write_errors: AtomicU64,
    pub batches: AtomicU64,
    /// Senders currently waiting for room in a full queue.
    pub waiting: AtomicU64,
    /// Times the database was reopened after a failed commit.
    pub reopens: AtomicU64,
    /// Set while commits are failing.
    pub degraded: AtomicBool,
}

impl WriterStats {
    pub fn queue_depth(&self) -> u64 {
        let q = self.queued.load(Ordering::Relaxed);
        let w = self.written.load(Ordering::Relaxed);
        let d = self.dropped.load(Ordering::Relaxed);
        q.saturating_sub(w + d)
    }
}

/// Sending side of the writer queue; cheap to clone.
#[derive(Clone)]
pub struct EventSink {
    tx: mpsc::Sender<Msg>,
    stats: Arc<WriterStats>,
}

/// Owns the writer thread; [`EventWriter::shutdown`] commits what is queued and joins it.
pub struct EventWriter {
    thread: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    sink: EventSink,
}

impl EventWriter {
    /// Starts the writer thread with a queue of `capacity` events.
    pub fn start(store: Store, capacity: usize) -> std::io::Result<EventWriter> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let stats = Arc::new(WriterStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stats = stats.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("event-writer".into())
                .spawn(move || run(store, rx, stats, stop))?
        };
        Ok(EventWriter {
            thread: Some(thread),
            stop,
            sink: EventSink { tx, stats },
        })
    }

    pub fn sink(&self) -> EventSink {
        self.sink.clone()
    }

    /// Commits every queued event, then stops the thread. Events recorded afterwards
    /// are counted as dropped.
    pub async fn shutdown(mut self) {
        self.sink.flush().await;
        self.stop.store(true, Ordering::SeqCst);
        // Wake the thread so it sees `stop`.
        let (ack, _rx) = oneshot::channel();
        let _ = self.sink.tx.send(Msg::Flush(ack)).await;
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

impl EventSink {
    /// Queues an event for writing. Never blocks the caller on disk: when the queue is
    /// full the event is handed to a task that waits for room.
    pub fn record(&self, event: CostEvent) {
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(Msg::Event(event)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(msg)) => {
                self.stats
                    .backpressure_waits
                    .fetch_add(1, Ordering::Relaxed);
                // Waiting senders are bounded too: past the cap the disk has been failing
                // for a long time and memory matters more than one more event.
                if self.stats.waiting.fetch_add(1, Ordering::Relaxed) >= MAX_WAITING {
                    self.stats.waiting.fetch_sub(1, Ordering::Relaxed);
                    dropped(&self.stats, "writer queue and wait list full");
                    return;
                }
                let tx = self.tx.clone();
                let stats = self.stats.clone();
                let spawned = tokio::runtime::Handle::try_current().map(|h| {
                    h.spawn(async move {
                        let sent = tx.send(msg).await;
                        stats.waiting.fetch_sub(1, Ordering::Relaxed);
                        if sent.is_err() {
                            dropped(&stats, "writer is stopped");
                        }
                    })
                });
                if spawned.is_err() {
                    self.stats.waiting.fetch_sub(1, Ordering::Relaxed);
                    dropped(&self.stats, "no runtime to wait on");
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => dropped(&self.stats, "writer is stopped"),
        }
    }

    /// Waits until every event recorded before this call is committed.
    pub async fn flush(&self) {
        let (ack, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(ack)).await.is_ok() {
            let _ = rx.await;
        }
    }

    pub fn stats(&self) -> &Arc<WriterStats> {
        &self.stats
    }
}

fn dropped(stats: &WriterStats, why: &'static str) {
    stats.dropped.fetch_add(1, Ordering::Relaxed);
    tracing::error!(
        dropped_total = stats.dropped.load(Ordering::Relaxed),
        reason = why,
        "cost event dropped"
    );
}

/// Lowers the calling thread's priority to [`WRITER_NICE`], never raising it (Linux:
/// `setpriority` on a thread id applies to that thread only). Failing is harmless: the
/// writer just keeps its priority.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{getpriority_process, setpriority_process};
        let tid = Some(rustix::thread::gettid());
        let nice = getpriority_process(tid).unwrap_or(0).max(WRITER_NICE);
        if let Err(e) = setpriority_process(tid, nice) {
            tracing::debug!(error = %e, "could not lower the event writer's priority");
        }
    }
}

fn run(store: Store, mut rx: mpsc::Receiver<Msg>, stats: Arc<WriterStats>, stop: Arc<AtomicBool>) {
    lower_priority();
    let mut batch: Vec<CostEvent> = Vec::with_capacity(MAX_BATCH);
    let mut acks: Vec<oneshot::Sender<()>> = Vec::new();
    let mut last_commit = Instant::now() - MIN_COMMIT_INTERVAL;
    loop {
        // Block for the first message, then take whatever else is already queued.
        let Some(first) = rx.blocking_recv() else {
            break;
        };
        take(first, &mut batch, &mut acks);
        let flushing = !acks.is_empty();
        if let Some(rest) = wait_before_commit(last_commit.elapsed(), flushing, stats.queue_depth())
        {
            std::thread::sleep(rest);
        }
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(m) => take(m, &mut batch, &mut acks),
                Err(_) => break,
            }
        }
        // Commits are spaced start to start: one that takes longer than the interval is
        // followed at once, so a full queue drains at the disk's pace.
        last_commit = Instant::now();
        commit(&store, &mut batch, &stats, &stop);
        for a in acks.drain(..) {
            let _ = a.send(());
        }
        if stop.load(Ordering::SeqCst) {
            break;
        }
    }
    // Stopped: whatever is still queued is committed too, so nothing is lost.
    while let Ok(m) = rx.try_recv() {
        take(m, &mut batch, &mut acks);
        if batch.len() >= MAX_BATCH {
            commit(&store, &mut batch, &stats, &stop);
        }
    }
    commit(&store, &mut batch, &stats, &stop);
    for a in acks.drain(..) {
        let _ = a.send(());
    }
    rx.close();
}

/// How long to let events gather before the next commit, `since` the last one
/// started: nothing for a flush, or when a full batch is already queued (waiting would
/// only cap the writer at `MAX_BATCH` a `MIN_COMMIT_INTERVAL`).
fn wait_before_commit(since: Duration, flushing: bool, queued: u64) -> Option<Duration> {
    if flushing || queued >= MAX_BATCH as u64 {
        return None;
    }
    MIN_COMMIT_INTERVAL
        .checked_sub(since)
        .filter(|d| !d.is_zero())
}

fn take(m: Msg, batch: &mut Vec<CostEvent>, acks: &mut Vec<oneshot::Sender<()>>) {
    match m {
        Msg::Event(e) => batch.push(e),
        Msg::Flush(a) => acks.push(a),
    }
}

fn commit(store: &Store, batch: &mut Vec<CostEvent>, stats: &WriterStats, stop: &AtomicBool) {
    if batch.is_empty() {
        return;
    }
    let mut backoff = Duration::from_millis(50);
    let mut attempts_after_stop = 0;
    loop {
        let batch_len = batch.len() as u64;
        // At light load the writer gives its core away between slices of the batch, so
        // a proxy worker woken on that core runs within one slice rather than after the
        // whole commit. Once events queue up behind the batch it stops yielding: under
        // saturation the yields would slow it and grow the queue.
        let pause = || {
            if quiet(stats.queue_depth().saturating_sub(batch_len)) {
                std::thread::yield_now();
            }
        };
        match store.write_events_pacing(batch, pause) {
            Ok(()) => {
                stats
                    .written
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                stats.batches.fetch_add(1, Ordering::Relaxed);
                stats.degraded.store(false, Ordering::Relaxed);
                batch.clear();
                return;
            }
            Err(e) => {
                stats.write_errors.fetch_add(1, Ordering::Relaxed);
                stats.degraded.store(true, Ordering::Relaxed);
                tracing::error!(error = %e, events = batch.len(), "event commit failed, retrying");
                if stop.load(Ordering::SeqCst) {
                    attempts_after_stop += 1;
                    if attempts_after_stop > 5 {
                        for _ in batch.iter() {
                            dropped(stats, "store kept failing at shutdown");
                        }
                        batch.clear();
                        return;
                    }
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(2));
                // After an I/O error redb refuses every operation until the file is
                // reopened (running its repair); the batch is then retried as it was.
                match store.reopen() {
                    Ok(()) => {
                        stats.reopens.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!("database reopened after a failed commit");
                    }
                    Err(e) => tracing::error!(error = %e, "database reopen failed, retrying"),
                }
            }
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// Nice value of this process's thread called `name`, from `/proc`.
    fn nice_of_thread(name: &str) -> Option<i32> {
        for t in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
            let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            if comm.trim_end() != name {
                continue;
            }
            let stat = std::fs::read_to_string(t.path().join("stat")).ok()?;
            // Fields after the parenthesised name start at field 3; nice is field 19.
            let rest = stat.rsplit_once(')')?.1;
            return rest.split_whitespace().nth(19 - 3)?.parse().ok();
        }
        None
    }

    #[test]
    fn commits_wait_for_the_interval_unless_flushed_or_a_full_batch_is_queued() {
        let half = MIN_COMMIT_INTERVAL / 2;
        assert_eq!(
            wait_before_commit(half, false, 1),
            Some(MIN_COMMIT_INTERVAL - half)
        );
        assert_eq!(wait_before_commit(MIN_COMMIT_INTERVAL, false, 1), None);
        assert_eq!(
            wait_before_commit(Duration::ZERO, false, MAX_BATCH as u64),
            None
        );
        assert_eq!(wait_before_commit(Duration::ZERO, true, 1), None);
    }

    #[test]
    fn the_writer_yields_only_while_little_is_queued_behind_it() {
        assert!(quiet(0));
        assert!(quiet(YIELD_BELOW_BACKLOG - 1));
        assert!(!quiet(YIELD_BELOW_BACKLOG));
        assert!(!quiet(u64::MAX));
    }

    #[tokio::test]
    async fn writer_thread_runs_below_normal_priority() {
        let own = || rustix::process::getpriority_process(None).unwrap();
        let before = own();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.redb")).unwrap();
        let writer = EventWriter::start(store, 16).unwrap();
        // The thread sets its own priority first thing; wait for it to be seen.
        let mut nice = None;
        for _ in 0..200 {
            nice = nice_of_thread("event-writer");
            if nice == Some(WRITER_NICE.max(before)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(nice, Some(WRITER_NICE.max(before)));
        // Only the writer's thread: the one that started it is untouched.
        assert_eq!(own(), before);
        writer.shutdown().await;
    }
}
