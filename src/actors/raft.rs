//! `RaftActor`: wraps the pure Raft core (`crate::raft`). It feeds the core ticks,
//! proposals, read requests and persistence reports, and carries out what the
//! core's `Ready` asks: entries and hard state to the `WalActor`, committed entries
//! to the `StoreActor`, read states to the waiting readers.
//!
//! The persist-before-send rule is kept by construction: messages the core marks
//! "after persist" travel with the WAL append and are released only by its
//! `Persisted` answer. This actor must never do I/O itself, nor decide anything
//! from a clock other than its tick.

use std::collections::HashMap;
use std::time::Duration;

use actix::prelude::*;
use prost::Message as _;
use tokio::sync::oneshot;

use crate::actors::store::{AppliedTo, Apply, AwaitApply, DurableTo, MembersChanged, Responder, StoreActor};
use crate::actors::wal::{Append, Persisted, SaveSnapshot, WalActor};
use crate::error::RequestError;
use crate::proto::steadpb::{internal_request, InternalRequest, RequestHeader};
use crate::raft::{Message, RaftError, RaftNode, Role};

/// A client write to replicate. Answered once the entry is in the local log (or
/// refused); the applied result goes to `responder` later.
#[derive(Message)]
#[rtype(result = "Result<(), RequestError>")]
pub struct Propose {
    pub request: internal_request::Request,
    pub responder: Responder,
}

/// A linearizable read: answered with the index the read must wait for.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ReadIndex {
    pub responder: oneshot::Sender<Result<u64, RequestError>>,
}

#[derive(Message)]
#[rtype(result = "RaftStatus")]
pub struct GetRaftStatus;

#[derive(Debug, Clone, Copy, MessageResponse)]
pub struct RaftStatus {
    pub cluster_id: u64,
    pub member_id: u64,
    pub term: u64,
    pub leader: u64,
    pub commit_index: u64,
    pub applied_index: u64,
}

/// Tells whoever started the node that it has a leader and has applied its log:
/// the moment etcd logs "ready to serve client requests".
pub type ReadyNotice = oneshot::Sender<()>;

pub struct RaftActor {
    node: RaftNode,
    cluster_id: u64,
    member_id: u64,
    wal: Addr<WalActor>,
    store: Addr<StoreActor>,
    tick_interval: Duration,
    max_request_bytes: usize,
    /// Request ids: this member's low 16 bits, then a counter seeded from the boot
    /// time, so ids stay unique across restarts (as etcd's idutil).
    next_request_id: u64,
    /// Read contexts waiting for their ReadState.
    read_waiters: HashMap<u64, oneshot::Sender<Result<u64, RequestError>>>,
    next_read_ctx: u64,
    applied_index: u64,
    ready_notice: Option<ReadyNotice>,
    last_leader: Option<u64>,
}

impl RaftActor {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        node: RaftNode,
        cluster_id: u64,
        member_id: u64,
        wal: Addr<WalActor>,
        store: Addr<StoreActor>,
        tick_interval: Duration,
        max_request_bytes: usize,
        boot_millis: u64,
        applied_index: u64,
        ready_notice: ReadyNotice,
    ) -> Self {
        RaftActor {
            node,
            cluster_id,
            member_id,
            wal,
            store,
            tick_interval,
            max_request_bytes,
            next_request_id: ((member_id & 0xffff) << 48) | ((boot_millis & 0xff_ffff_ffff) << 8),
            read_waiters: HashMap::new(),
            next_read_ctx: 1,
            applied_index,
            ready_notice: Some(ready_notice),
            last_leader: None,
        }
    }

    fn request_id(&mut self) -> u64 {
        self.next_request_id = self.next_request_id.wrapping_add(1);
        self.next_request_id
    }

    /// Carries out everything the core has asked for since the last call, in the
    /// order its contract sets (see `raft::node`).
    fn drive(&mut self) {
        while self.node.has_ready() {
            let ready = self.node.ready();
            if let Some(soft) = ready.soft_state {
                self.on_soft_state(soft.leader, soft.role);
            }
            self.send(ready.messages);
            if let Some(meta) = &ready.snapshot {
                // Only a leader's InstallSnapshot produces this, and peers arrive
                // with replication: a single member can never get here.
                panic!("snapshot install at index {} without a peer transport", meta.index);
            }
            match ready.persist_ack {
                Some(ack) => self.wal.do_send(Append {
                    snapshot: None,
                    entries: ready.entries,
                    hard_state: ready.hard_state,
                    ack,
                    after_persist: ready.messages_after_persist,
                }),
                None => self.send(ready.messages_after_persist),
            }
            if !ready.committed.is_empty() {
                self.store.do_send(Apply { entries: ready.committed, term: self.node.term() });
            }
            for rs in ready.read_states {
                if let Some(w) = self.read_waiters.remove(&rs.ctx) {
                    let _ = w.send(Ok(rs.index));
                }
            }
        }
    }

    /// Peer messages. A single member has no peers; the transport arrives with
    /// replication (the peer actors).
    fn send(&mut self, messages: Vec<Message>) {
        for m in messages {
            tracing::debug!(to = m.to, "no transport to peer yet; dropping raft message");
        }
    }

    fn on_soft_state(&mut self, leader: Option<u64>, role: Role) {
        if leader != self.last_leader {
            match leader {
                Some(l) => tracing::info!(
                    "raft.node: {:x} elected leader {:x} at term {}",
                    self.member_id,
                    l,
                    self.node.term()
                ),
                None => tracing::info!("raft.node: {:x} lost leader at term {}", self.member_id, self.node.term()),
            }
            self.last_leader = leader;
        }
        if role == Role::Leader {
            tracing::info!("{:x} became leader at term {}", self.member_id, self.node.term());
        }
        if leader.is_none() {
            // Reads waiting on a leader that is gone will not be answered by it.
            for (_, w) in self.read_waiters.drain() {
                let _ = w.send(Err(RequestError::NoLeader));
            }
        }
    }

    fn proposal_error(e: RaftError) -> RequestError {
        match e {
            RaftError::NoLeader | RaftError::NotLeader { .. } => RequestError::NoLeader,
            RaftError::ProposalDropped | RaftError::ReadIndexQueueFull => RequestError::TooManyRequests,
            other => RequestError::Internal(other.to_string()),
        }
    }
}

impl Actor for RaftActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // The only voter need not wait out an election timeout to lead itself.
        if self.node.voters() == [self.member_id] && self.node.leader().is_none() {
            if let Err(e) = self.node.campaign() {
                tracing::warn!("could not campaign at start: {e}");
            }
        }
        ctx.run_interval(self.tick_interval, |act, _| {
            act.node.tick();
            act.drive();
        });
        self.drive();
    }
}

impl Handler<Propose> for RaftActor {
    type Result = Result<(), RequestError>;
    fn handle(&mut self, msg: Propose, _: &mut Context<Self>) -> Self::Result {
        let id = self.request_id();
        let request = InternalRequest {
            header: Some(RequestHeader { id, proposer: self.member_id }),
            request: Some(msg.request),
        };
        let data = request.encode_to_vec();
        if data.len() > self.max_request_bytes {
            return Err(RequestError::RequestTooLarge);
        }
        self.node.propose(data).map_err(Self::proposal_error)?;
        // Registered before the entry can commit: this actor's messages to the
        // store arrive in the order they were sent.
        self.store.do_send(AwaitApply { id, responder: msg.responder });
        self.drive();
        Ok(())
    }
}

impl Handler<ReadIndex> for RaftActor {
    type Result = ();
    fn handle(&mut self, msg: ReadIndex, _: &mut Context<Self>) {
        let ctx = self.next_read_ctx;
        self.next_read_ctx += 1;
        match self.node.read_index(ctx) {
            Ok(()) => {
                self.read_waiters.insert(ctx, msg.responder);
                self.drive();
            }
            Err(e) => {
                let _ = msg.responder.send(Err(Self::proposal_error(e)));
            }
        }
    }
}

impl Handler<Persisted> for RaftActor {
    type Result = ();
    fn handle(&mut self, msg: Persisted, _: &mut Context<Self>) {
        self.node.on_persisted(msg.ack);
        self.send(msg.after_persist);
        self.drive();
    }
}

impl Handler<AppliedTo> for RaftActor {
    type Result = ();
    fn handle(&mut self, msg: AppliedTo, _: &mut Context<Self>) {
        self.applied_index = self.applied_index.max(msg.index);
        self.node.on_applied(self.applied_index);
        if self.node.leader().is_some() && self.applied_index >= self.node.commit_index() {
            if let Some(notice) = self.ready_notice.take() {
                let _ = notice.send(());
            }
        }
        self.drive();
    }
}

impl Handler<DurableTo> for RaftActor {
    type Result = ();
    fn handle(&mut self, msg: DurableTo, _: &mut Context<Self>) {
        // The backend holds everything up to `index`: the log before it is only
        // needed by followers that lag (the core keeps what it retains) and the
        // WAL may drop whole segments before a snapshot marker there.
        match self.node.compact(msg.index) {
            Ok(meta) => self.wal.do_send(SaveSnapshot { meta }),
            // Already compacted there, or not applied yet: nothing to release now.
            Err(e) => tracing::debug!("no WAL release at {}: {e}", msg.index),
        }
    }
}

impl Handler<MembersChanged> for RaftActor {
    type Result = ();
    fn handle(&mut self, msg: MembersChanged, _: &mut Context<Self>) {
        tracing::debug!("membership: {} members", msg.0.len());
    }
}

impl Handler<GetRaftStatus> for RaftActor {
    type Result = RaftStatus;
    fn handle(&mut self, _: GetRaftStatus, _: &mut Context<Self>) -> RaftStatus {
        RaftStatus {
            cluster_id: self.cluster_id,
            member_id: self.member_id,
            term: self.node.term(),
            leader: self.node.leader().unwrap_or(0),
            commit_index: self.node.commit_index(),
            applied_index: self.applied_index,
        }
    }
}
