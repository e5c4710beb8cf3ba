//! The group-commit writer: one OS thread owns the [`Wal`] and turns a queue of
//! write requests into as few fdatasyncs as possible. It must never acknowledge a
//! request before the fdatasync covering it returned, reorder completions, or
//! accept work after an I/O error (the node fail-stops; nothing is retried).
//!
//! Contract:
//! - Requests are applied in queue order. The thread blocks for one request, then
//!   takes every request already queued (up to `max_batch_requests`), applies them
//!   all, runs ONE fdatasync, then completes them in order. Requests that arrive
//!   during an fdatasync wait for the next one: that is the group commit.
//! - Within a request: snapshot marker, then entries, then hard state; its
//!   `release_to` runs after the batch's fdatasync (so the marker is durable first).
//! - If `submit`/`try_submit` returns `Ok`, the completion is called exactly once,
//!   on the writer thread — keep it cheap (send a message). `Ok(WalPersisted)`
//!   means everything in that request and all before it is durable.
//! - The first failure (I/O error, or a request Raft should never have made) is
//!   reported to that request; every later request gets [`WalError::Stopped`].
//!   Requests before the failing one in the same batch still get their fdatasync.
//! - Dropping (or `join`ing) the `WalWriter` closes the queue; the thread finishes
//!   what is queued, syncs it, and exits.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use super::{Wal, WalError};
use crate::raft::{Entry, HardState, SnapshotMeta};

/// Called once with the outcome of a [`WalWrite`], on the writer thread.
pub type Completion = Box<dyn FnOnce(Result<WalPersisted, WalError>) + Send + 'static>;

/// One unit of work for the writer.
pub struct WalWrite {
    /// Written before the entries: the state machine holds everything up to here,
    /// and the membership in force at that index.
    pub snapshot: Option<SnapshotMeta>,
    pub entries: Vec<Entry>,
    pub hard_state: Option<HardState>,
    /// Run after the batch is durable; see [`Wal::release_to`].
    pub release_to: Option<u64>,
    pub done: Completion,
}

impl WalWrite {
    /// Entries and/or a hard state, the common case.
    pub fn append(entries: Vec<Entry>, hard_state: Option<HardState>, done: Completion) -> Self {
        WalWrite {
            snapshot: None,
            entries,
            hard_state,
            release_to: None,
            done,
        }
    }
}

impl std::fmt::Debug for WalWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalWrite")
            .field("snapshot", &self.snapshot)
            .field("entries", &self.entries.len())
            .field(
                "last_entry",
                &self.entries.last().map(|e| (e.index, e.term)),
            )
            .field("hard_state", &self.hard_state)
            .field("release_to", &self.release_to)
            .finish_non_exhaustive()
    }
}

/// What is durable when a completion runs: the WAL's state after the whole batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalPersisted {
    pub last_index: u64,
    pub last_term: u64,
    pub hard_state: HardState,
    /// The newest snapshot marker, with its membership.
    pub snapshot: Option<SnapshotMeta>,
}

#[derive(Debug)]
pub enum SubmitError {
    /// The queue is full (only from `try_submit`): shed load or retry later.
    /// (Boxed, as is the other variant's, to keep the `Result` small.)
    Full(Box<WalWrite>),
    /// The writer thread is gone (it panicked). The completion was not called.
    Disconnected(Box<WalWrite>),
}

impl std::fmt::Display for SubmitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SubmitError::Full(_) => f.write_str("WAL writer queue is full"),
            SubmitError::Disconnected(_) => f.write_str("WAL writer thread is gone"),
        }
    }
}

impl std::error::Error for SubmitError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalWriterOptions {
    /// Requests that may wait in the queue; `submit` blocks beyond it.
    pub queue_capacity: usize,
    /// Requests applied per fdatasync at most.
    pub max_batch_requests: usize,
}

impl Default for WalWriterOptions {
    fn default() -> Self {
        WalWriterOptions {
            queue_capacity: 4096,
            max_batch_requests: 1024,
        }
    }
}

/// Counters for metrics, updated by the writer thread after each batch.
#[derive(Debug, Default)]
pub struct WalStats {
    syncs: AtomicU64,
    batches: AtomicU64,
    requests_completed: AtomicU64,
    records_written: AtomicU64,
    bytes_written: AtomicU64,
    last_fsync_nanos: AtomicU64,
    last_batch_requests: AtomicU64,
    failed: AtomicBool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalStatsSnapshot {
    /// fdatasyncs run by the writer.
    pub syncs: u64,
    pub batches: u64,
    pub requests_completed: u64,
    /// Records and bytes encoded (segment heads included).
    pub records_written: u64,
    pub bytes_written: u64,
    pub last_fsync_nanos: u64,
    pub last_batch_requests: u64,
    /// The writer has hit an error and refuses all further work.
    pub failed: bool,
}

impl WalStats {
    pub fn snapshot(&self) -> WalStatsSnapshot {
        WalStatsSnapshot {
            syncs: self.syncs.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            requests_completed: self.requests_completed.load(Ordering::Relaxed),
            records_written: self.records_written.load(Ordering::Relaxed),
            bytes_written: self.bytes_written.load(Ordering::Relaxed),
            last_fsync_nanos: self.last_fsync_nanos.load(Ordering::Relaxed),
            last_batch_requests: self.last_batch_requests.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }
}

/// Told the duration of each fdatasync the writer runs, on the writer thread
/// (metrics: keep it cheap).
pub type FsyncObserver = Box<dyn Fn(Duration) + Send + 'static>;

/// Handle to the writer thread.
#[derive(Debug)]
pub struct WalWriter {
    tx: Option<Sender<WalWrite>>,
    thread: Option<JoinHandle<Result<(), WalError>>>,
    stats: Arc<WalStats>,
}

impl WalWriter {
    /// Moves `wal` onto a new thread named `stead-wal`.
    pub fn spawn(wal: Wal, options: WalWriterOptions) -> Result<WalWriter, WalError> {
        Self::spawn_observed(wal, options, None)
    }

    /// [`WalWriter::spawn`], telling `on_fsync` how long each fdatasync took.
    pub fn spawn_observed(
        wal: Wal,
        options: WalWriterOptions,
        on_fsync: Option<FsyncObserver>,
    ) -> Result<WalWriter, WalError> {
        let (tx, rx) = crossbeam_channel::bounded(options.queue_capacity.max(1));
        let stats = Arc::new(WalStats::default());
        let thread_stats = stats.clone();
        let max_batch = options.max_batch_requests.max(1);
        let dir = wal.dir().to_path_buf();
        let thread = std::thread::Builder::new()
            .name("stead-wal".into())
            .spawn(move || run(wal, rx, max_batch, &thread_stats, on_fsync.as_deref()))
            .map_err(|e| WalError::Io {
                path: dir,
                source: e.into(),
            })?;
        Ok(WalWriter {
            tx: Some(tx),
            thread: Some(thread),
            stats,
        })
    }

    /// Queues a request, blocking while the queue is full.
    pub fn submit(&self, write: WalWrite) -> Result<(), SubmitError> {
        match &self.tx {
            Some(tx) => tx
                .send(write)
                .map_err(|e| SubmitError::Disconnected(Box::new(e.into_inner()))),
            None => Err(SubmitError::Disconnected(Box::new(write))),
        }
    }

    /// Queues a request unless the queue is full (for callers that must not block,
    /// such as an actor's event loop).
    pub fn try_submit(&self, write: WalWrite) -> Result<(), SubmitError> {
        match &self.tx {
            Some(tx) => tx.try_send(write).map_err(|e| match e {
                TrySendError::Full(w) => SubmitError::Full(Box::new(w)),
                TrySendError::Disconnected(w) => SubmitError::Disconnected(Box::new(w)),
            }),
            None => Err(SubmitError::Disconnected(Box::new(write))),
        }
    }

    pub fn stats(&self) -> Arc<WalStats> {
        self.stats.clone()
    }

    /// Closes the queue, waits for queued work to finish, and returns the error
    /// that stopped the writer, if one did.
    pub fn join(mut self) -> Result<(), WalError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), WalError> {
        drop(self.tx.take());
        match self.thread.take().map(JoinHandle::join) {
            None => Ok(()),
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(WalError::WriterPanicked),
        }
    }
}

impl Drop for WalWriter {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::error!(error = %e, "WAL writer stopped with an error");
        }
    }
}

/// The writer thread: batch, apply, one fdatasync, complete in order.
fn run(
    mut wal: Wal,
    rx: Receiver<WalWrite>,
    max_batch: usize,
    stats: &WalStats,
    on_fsync: Option<&(dyn Fn(Duration) + Send)>,
) -> Result<(), WalError> {
    let mut failure: Option<Arc<WalError>> = None;
    let mut batch: Vec<WalWrite> = Vec::with_capacity(max_batch);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(w) => batch.push(w),
                Err(_) => break,
            }
        }
        stats
            .last_batch_requests
            .store(batch.len() as u64, Ordering::Relaxed);
        if let Some(cause) = &failure {
            // Stopped: refuse, but still answer every request so no waiter hangs.
            for w in batch.drain(..) {
                (w.done)(Err(WalError::Stopped {
                    cause: cause.clone(),
                }));
                stats.requests_completed.fetch_add(1, Ordering::Relaxed);
            }
            continue;
        }
        if let Err(e) = write_batch(&mut wal, &mut batch, stats, on_fsync) {
            tracing::error!(error = %e, "WAL write failed; refusing all further writes");
            stats.failed.store(true, Ordering::Relaxed);
            failure = Some(Arc::new(e));
        }
    }
    // The queue is closed and drained; whatever was applied has been synced.
    match failure {
        Some(cause) => Err((*cause).clone()),
        None => Ok(()),
    }
}

/// Applies, syncs and completes one batch; returns the error that stopped it.
fn write_batch(
    wal: &mut Wal,
    batch: &mut Vec<WalWrite>,
    stats: &WalStats,
    on_fsync: Option<&(dyn Fn(Duration) + Send)>,
) -> Result<(), WalError> {
    let records_before = wal.records_written();
    let bytes_before = wal.bytes_written();

    // 1. Apply in order until the first refusal. Only entries, snapshot markers and
    //    a changed term or vote need the fdatasync (etcd's `MustSync`): a hard
    //    state whose only news is the commit index can be relearned after a crash.
    let mut applied = 0;
    let mut error: Option<WalError> = None;
    let mut must_sync = false;
    let mut hard_state = wal.hard_state();
    for w in batch.iter() {
        must_sync |= w.snapshot.is_some() || !w.entries.is_empty();
        if let Some(hs) = w.hard_state {
            must_sync |= hs.term != hard_state.term || hs.vote != hard_state.vote;
            hard_state = hs;
        }
        // One all-or-nothing call per request.
        let result = wal.write(w.snapshot.as_ref(), &w.entries, w.hard_state);
        match result {
            Ok(()) => applied += 1,
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }

    // 2. One fdatasync for everything applied (also when a later request was
    //    refused: the earlier ones are fine and their waiters deserve an answer).
    if applied > 0 && must_sync {
        let started = Instant::now();
        match wal.sync_counted() {
            Ok(synced) => {
                if synced {
                    stats.syncs.fetch_add(1, Ordering::Relaxed);
                    let took = started.elapsed();
                    if let Some(observe) = on_fsync {
                        observe(took);
                    }
                    let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
                    stats.last_fsync_nanos.store(nanos, Ordering::Relaxed);
                }
            }
            Err(e) => {
                applied = 0;
                error = Some(e);
            }
        }
    }

    // 3. Releases, now that the markers they depend on are durable.
    for (k, w) in batch.iter().enumerate().take(applied) {
        if let Some(index) = w.release_to {
            if let Err(e) = wal.release_to(index) {
                applied = k;
                error = Some(e);
                break;
            }
        }
    }

    stats.batches.fetch_add(1, Ordering::Relaxed);
    stats
        .records_written
        .fetch_add(wal.records_written() - records_before, Ordering::Relaxed);
    stats
        .bytes_written
        .fetch_add(wal.bytes_written() - bytes_before, Ordering::Relaxed);

    // 4. Complete in order.
    let persisted = WalPersisted {
        last_index: wal.last_index(),
        last_term: wal.last_term(),
        hard_state: wal.hard_state(),
        snapshot: wal.snapshot().cloned(),
    };
    let cause = error.clone().map(Arc::new);
    for (k, w) in batch.drain(..).enumerate() {
        let outcome = match (&error, &cause) {
            (Some(e), _) if k == applied => Err(e.clone()),
            (Some(_), Some(cause)) if k > applied => Err(WalError::Stopped {
                cause: cause.clone(),
            }),
            _ => Ok(persisted.clone()),
        };
        (w.done)(outcome);
        stats.requests_completed.fetch_add(1, Ordering::Relaxed);
    }
    match error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
