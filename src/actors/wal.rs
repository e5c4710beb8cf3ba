//! `WalActor`: the front door of the write-ahead log. It hands each append to the
//! WAL writer thread (`storage::wal::WalWriter`: group commit, one fdatasync per
//! batch) and answers the Raft actor with `Persisted` once the append is durable.
//!
//! It never writes, syncs or waits on its event loop, so it can share the Raft
//! actor's arbiter (one thread hand-off fewer on every write): when the writer's
//! bounded queue is full, later writes wait in this actor's backlog, in order,
//! and go to the writer as it makes room.

use std::collections::VecDeque;
use std::time::Duration;

use actix::prelude::*;

use crate::metrics::ActorMetrics;
use crate::raft::{Entry, HardState, Message, PersistAck, SnapshotMeta};
use crate::storage::wal::{SubmitError, WalPersisted, WalWrite, WalWriter};

/// A Ready's durable part, plus what may be sent only once it is durable.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Append {
    pub snapshot: Option<SnapshotMeta>,
    pub entries: Vec<Entry>,
    pub hard_state: Option<HardState>,
    pub ack: PersistAck,
    /// Votes and append acks: released by `Persisted`, never before.
    pub after_persist: Vec<Message>,
}

/// The state machine is durable up to `meta.index` (term `meta.term`): record a
/// snapshot marker there, with the membership in force at that index, and drop
/// the segments before it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SaveSnapshot {
    pub meta: SnapshotMeta,
}

/// An `Append` is durable.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Persisted {
    pub ack: PersistAck,
    pub after_persist: Vec<Message>,
}

/// How often a backlog retries the writer's queue: well under one fdatasync, so
/// a full queue costs the writer no idle time.
const BACKLOG_RETRY: Duration = Duration::from_micros(200);

pub struct WalActor {
    writer: WalWriter,
    raft: Recipient<Persisted>,
    instruments: ActorMetrics,
    /// Writes the writer's queue had no room for, oldest first.
    backlog: VecDeque<WalWrite>,
}

impl WalActor {
    pub fn new(writer: WalWriter, raft: Recipient<Persisted>) -> Self {
        WalActor { writer, raft, instruments: ActorMetrics::detached("wal"), backlog: VecDeque::new() }
    }

    /// Counts and times this actor's messages in the member's metrics.
    pub fn with_metrics(mut self, metrics: &crate::metrics::Metrics) -> Self {
        self.instruments = metrics.actor("wal");
        self
    }

    /// Queues `write` behind any backlog: the log is written in submission order.
    fn submit(&mut self, write: WalWrite, ctx: &mut Context<Self>) {
        let was_empty = self.backlog.is_empty();
        self.backlog.push_back(write);
        if was_empty {
            self.drain_backlog(ctx);
        }
    }

    /// Hands the backlog to the writer until its queue is full, then tries again
    /// shortly.
    fn drain_backlog(&mut self, ctx: &mut Context<Self>) {
        while let Some(write) = self.backlog.pop_front() {
            match self.writer.try_submit(write) {
                Ok(()) => {}
                Err(SubmitError::Full(write)) => {
                    self.backlog.push_front(*write);
                    ctx.run_later(BACKLOG_RETRY, |actor, ctx| actor.drain_backlog(ctx));
                    return;
                }
                Err(SubmitError::Disconnected(_)) => panic!("the WAL writer is gone; stopping"),
            }
        }
    }
}

impl Actor for WalActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        crate::metrics::start_mailbox_probe(ctx, |a: &Self| &a.instruments);
    }
}

crate::mailbox_probe_handler!(WalActor, instruments);

/// A WAL write that failed leaves the log in doubt: stop the member (fail-stop).
fn must_succeed(result: Result<WalPersisted, crate::storage::wal::WalError>) -> WalPersisted {
    match result {
        Ok(p) => p,
        Err(e) => panic!("WAL write failed: {e}"),
    }
}

impl Handler<Append> for WalActor {
    type Result = ();
    fn handle(&mut self, msg: Append, ctx: &mut Context<Self>) {
        let _t = self.instruments.handling("Append");
        let raft = self.raft.clone();
        let (ack, after_persist) = (msg.ack, msg.after_persist);
        let done = Box::new(move |result| {
            must_succeed(result);
            raft.do_send(Persisted { ack, after_persist });
        });
        let mut write = WalWrite::append(msg.entries, msg.hard_state, done);
        write.snapshot = msg.snapshot;
        self.submit(write, ctx);
    }
}

impl Handler<SaveSnapshot> for WalActor {
    type Result = ();
    fn handle(&mut self, msg: SaveSnapshot, ctx: &mut Context<Self>) {
        let _t = self.instruments.handling("SaveSnapshot");
        let index = msg.meta.index;
        let write = WalWrite {
            snapshot: Some(msg.meta),
            entries: Vec::new(),
            hard_state: None,
            release_to: Some(index),
            done: Box::new(move |result| {
                must_succeed(result);
                tracing::info!("saved snapshot marker at index {index}; released older WAL segments");
            }),
        };
        self.submit(write, ctx);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::raft::EntryKind;
    use crate::storage::wal::{Wal, WalWriterOptions};

    /// Stands in for the Raft actor: records the index of every `Persisted`.
    struct Acks(Arc<Mutex<Vec<u64>>>);

    impl Actor for Acks {
        type Context = Context<Self>;
    }

    impl Handler<Persisted> for Acks {
        type Result = ();
        fn handle(&mut self, msg: Persisted, _: &mut Context<Self>) {
            self.0.lock().expect("acks").push(msg.ack.last_index());
        }
    }

    /// A writer queue of one fills at once: the rest wait in the actor's
    /// backlog, and still every append is written and acknowledged, in order.
    #[test]
    fn a_full_writer_queue_loses_and_reorders_nothing() {
        const APPENDS: u64 = 200;
        let dir = tempfile::tempdir().expect("temp dir");
        let wal = Wal::create(dir.path(), 1, 1).expect("create WAL");
        let options = WalWriterOptions { queue_capacity: 1, ..WalWriterOptions::default() };
        let writer = WalWriter::spawn(wal, options).expect("writer");
        let acks = Arc::new(Mutex::new(Vec::new()));
        actix_rt::System::new().block_on({
            let acks = acks.clone();
            async move {
                let raft = Acks(acks.clone()).start().recipient();
                let wal = WalActor::new(writer, raft).start();
                for index in 1..=APPENDS {
                    let entry = Entry { term: 1, index, kind: EntryKind::Normal, data: index.to_be_bytes().to_vec() };
                    wal.do_send(Append {
                        snapshot: None,
                        entries: vec![entry],
                        hard_state: None,
                        ack: PersistAck::for_test(index),
                        after_persist: Vec::new(),
                    });
                }
                let deadline = std::time::Instant::now() + Duration::from_secs(20);
                while acks.lock().expect("acks").len() < APPENDS as usize {
                    assert!(std::time::Instant::now() < deadline, "appends not acknowledged in time");
                    actix_rt::time::sleep(Duration::from_millis(10)).await;
                }
            }
        });
        assert_eq!(*acks.lock().expect("acks"), (1..=APPENDS).collect::<Vec<_>>());
        let (_, replayed) = Wal::open(dir.path()).expect("reopen WAL");
        let indexes: Vec<u64> = replayed.entries.iter().map(|e| e.index).collect();
        assert_eq!(indexes, (1..=APPENDS).collect::<Vec<_>>());
    }
}
