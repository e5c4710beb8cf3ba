//! `LeaseActor`: decides lease expiry, on the leader only, and applies it through
//! Raft. Runs on an arbiter of its own.
//!
//! It mirrors the applied lease table (IDs, granted TTLs, checkpoints) from the
//! store's `LeasesChanged` messages on every member, so that when this member
//! becomes leader it can schedule every lease at once: each counts down from its
//! checkpointed remaining TTL if it has one, else from its granted TTL. Deadlines
//! live in an `ExpiryHeap` (leader memory, as etcd's lessor): a keep-alive moves a
//! deadline; a due lease is revoked by proposing a `LeaseRevoke` through Raft, so
//! every member deletes its keys at the same revision. A revoke not applied in
//! time is proposed again.
//!
//! Checkpoints (etcd 3.6's persisted lease checkpoints): the leader proposes the
//! remaining TTL of every lease whose countdown has moved, shortly after it
//! becomes leader and then every `CHECKPOINT_INTERVAL`; a keep-alive on a lease
//! with a checkpoint proposes clearing it (remaining = the full TTL). A failover
//! therefore restarts each lease from at most `CHECKPOINT_INTERVAL` (+ the
//! election) above its true remaining TTL, never from less than it has left.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::actors::raft::{Propose, RaftActor};
use crate::actors::store::LeasesChanged;
use crate::error::RequestError;
use crate::metrics::ActorMetrics;
use crate::kv::leases::{ExpiryHeap, LeaseChange, LeaseInfo};
use crate::proto::etcdserverpb as pb;
use crate::proto::steadpb::internal_request::Request as Internal;

/// How often due leases are looked for.
const EXPIRY_CHECK_INTERVAL: Duration = Duration::from_millis(100);
/// A revoke that has not been applied after this long is proposed again.
const REVOKE_RETRY: Duration = Duration::from_secs(3);
/// Between two checkpoint rounds of the leader.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(5);
/// The first checkpoint round after becoming leader.
const FIRST_CHECKPOINT_AFTER: Duration = Duration::from_secs(1);
/// At most this many leases per checkpoint proposal, and revokes per check.
const BATCH_MAX: usize = 1000;

/// From the Raft actor: whether this member leads now.
#[derive(Message)]
#[rtype(result = "()")]
pub struct LeadershipChanged {
    pub leader: bool,
}

/// A keep-alive on the leader: answered with the granted TTL (the deadline moved),
/// `LeaseNotFound`, or `NotLeader` (the caller then relays it to the leader).
#[derive(Message)]
#[rtype(result = "Result<i64, RequestError>")]
pub struct KeepAlive(pub i64);

/// The leader's view of a lease: (granted TTL, remaining seconds), or
/// `LeaseNotFound`, or `NotLeader`.
#[derive(Message)]
#[rtype(result = "Result<(i64, i64), RequestError>")]
pub struct TimeToLive(pub i64);

/// Whether this member's mirror of the applied table holds the lease: on a
/// follower that has caught up with the commit index, whether a "no such lease"
/// from the leader can only be the leader's lease actor not having heard of the
/// grant yet.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct HoldsLease(pub i64);

/// Every lease ID, soonest expiry first on the leader (by ID elsewhere).
#[derive(Message)]
#[rtype(result = "Vec<i64>")]
pub struct ListLeases;

pub struct LeaseActor {
    raft: Addr<RaftActor>,
    /// The applied table, mirrored.
    table: HashMap<i64, LeaseInfo>,
    leader: bool,
    heap: ExpiryHeap<Instant>,
    /// Due leases whose revoke is proposed but not applied yet.
    expired: HashSet<i64>,
    next_checkpoint: Option<Instant>,
    instruments: ActorMetrics,
    metrics: crate::metrics::Metrics,
}

impl LeaseActor {
    /// Feeds the member's metrics (without it they go to a registry nobody reads).
    pub fn with_metrics(mut self, metrics: &crate::metrics::Metrics) -> Self {
        self.instruments = metrics.actor("lease");
        self.metrics = metrics.clone();
        self
    }

    pub fn new(raft: Addr<RaftActor>) -> Self {
        LeaseActor {
            raft,
            table: HashMap::new(),
            leader: false,
            heap: ExpiryHeap::default(),
            expired: HashSet::new(),
            next_checkpoint: None,
            instruments: ActorMetrics::detached("lease"),
            metrics: crate::metrics::Metrics::new(),
        }
    }

    fn propose(&self, request: Internal) {
        // Fire and forget: the outcome shows in the applied table (a lost revoke
        // is retried, a lost checkpoint is redone by the next round).
        let (responder, _) = crate::reply::channel();
        self.raft.do_send(Propose { request, auth: crate::kv::auth::AuthInfo::member(), responder });
    }

    fn schedule_all(&mut self, now: Instant) {
        self.heap.clear();
        self.expired.clear();
        for info in self.table.values() {
            let ttl = if info.remaining_ttl > 0 { info.remaining_ttl } else { info.ttl };
            self.heap.set(info.id, now + secs(ttl));
        }
    }

    fn apply_change(&mut self, change: LeaseChange, now: Instant) {
        match change {
            LeaseChange::Granted(info) => {
                self.metrics.lease_granted.inc();
                self.table.insert(info.id, info);
                if self.leader {
                    self.heap.set(info.id, now + secs(info.ttl));
                }
            }
            LeaseChange::Revoked(id) => {
                self.metrics.lease_revoked.inc();
                self.table.remove(&id);
                self.heap.remove(id);
                // A revoke this member proposed for an expired lease, now applied.
                if self.expired.remove(&id) {
                    self.metrics.lease_expired.inc();
                }
            }
            LeaseChange::Checkpointed { id, remaining_ttl } => {
                if let Some(info) = self.table.get_mut(&id) {
                    info.remaining_ttl = remaining_ttl;
                }
            }
            LeaseChange::Renewed(info) => {
                self.table.insert(info.id, info);
                if self.leader && !self.expired.contains(&info.id) {
                    self.metrics.lease_renewed.inc();
                    self.heap.set(info.id, now + secs(info.ttl));
                }
            }
            LeaseChange::Reset(all) => {
                self.table = all.into_iter().map(|i| (i.id, i)).collect();
                if self.leader {
                    self.schedule_all(now);
                }
            }
        }
    }

    fn expire_due(&mut self, now: Instant) {
        for id in self.heap.pop_expired(now, BATCH_MAX) {
            if !self.table.contains_key(&id) {
                continue;
            }
            self.expired.insert(id);
            // Stays scheduled, for a retry if the revoke is lost.
            self.heap.set(id, now + REVOKE_RETRY);
            tracing::debug!("lease {id:x} expired; proposing its revoke");
            self.propose(Internal::LeaseRevoke(pb::LeaseRevokeRequest { id }));
        }
    }

    fn checkpoint_round(&mut self, now: Instant) {
        let mut batch = Vec::new();
        for (id, info) in &self.table {
            if self.expired.contains(id) {
                continue;
            }
            let Some(deadline) = self.heap.deadline(*id) else { continue };
            let remaining = ceil_secs(deadline.saturating_duration_since(now)).max(1);
            let persisted = if info.remaining_ttl > 0 { info.remaining_ttl } else { info.ttl };
            if remaining < persisted {
                batch.push(pb::LeaseCheckpoint { id: *id, remaining_ttl: remaining });
            }
        }
        for chunk in batch.chunks(BATCH_MAX) {
            self.propose(Internal::LeaseCheckpoint(pb::LeaseCheckpointRequest { checkpoints: chunk.to_vec() }));
        }
    }
}

fn secs(s: i64) -> Duration {
    Duration::from_secs(u64::try_from(s).unwrap_or(0))
}

fn ceil_secs(d: Duration) -> i64 {
    let whole = d.as_secs() as i64;
    if d.subsec_nanos() > 0 { whole + 1 } else { whole }
}

impl Actor for LeaseActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        crate::metrics::start_mailbox_probe(ctx, |a: &Self| &a.instruments);
        ctx.run_interval(EXPIRY_CHECK_INTERVAL, |act, _| {
            if !act.leader {
                return;
            }
            let now = Instant::now();
            act.expire_due(now);
            if act.next_checkpoint.is_some_and(|at| at <= now) {
                act.checkpoint_round(now);
                act.next_checkpoint = Some(now + CHECKPOINT_INTERVAL);
            }
        });
    }
}

crate::mailbox_probe_handler!(LeaseActor, instruments);

impl Handler<LeadershipChanged> for LeaseActor {
    type Result = ();
    fn handle(&mut self, msg: LeadershipChanged, _: &mut Context<Self>) {
        let _t = self.instruments.handling("LeadershipChanged");
        if msg.leader == self.leader {
            return;
        }
        self.leader = msg.leader;
        if msg.leader {
            let now = Instant::now();
            self.schedule_all(now);
            self.next_checkpoint = Some(now + FIRST_CHECKPOINT_AFTER);
            tracing::info!("lease: leader now; scheduled {} leases from their checkpoints", self.heap.len());
        } else {
            self.heap.clear();
            self.expired.clear();
            self.next_checkpoint = None;
        }
    }
}

impl Handler<LeasesChanged> for LeaseActor {
    type Result = ();
    fn handle(&mut self, msg: LeasesChanged, _: &mut Context<Self>) {
        let _t = self.instruments.handling("LeasesChanged");
        let now = Instant::now();
        for change in msg.0 {
            self.apply_change(change, now);
        }
    }
}

impl Handler<KeepAlive> for LeaseActor {
    type Result = Result<i64, RequestError>;
    fn handle(&mut self, msg: KeepAlive, _: &mut Context<Self>) -> Self::Result {
        let _t = self.instruments.handling("KeepAlive");
        if !self.leader {
            return Err(RequestError::NotLeader);
        }
        let id = msg.0;
        // etcd's Renew: an expired lease waits for its revoke, not renewed.
        let Some(info) = self.table.get_mut(&id) else { return Err(RequestError::LeaseNotFound) };
        if self.expired.contains(&id) {
            return Err(RequestError::LeaseNotFound);
        }
        let ttl = info.ttl;
        let had_checkpoint = info.remaining_ttl > 0;
        info.remaining_ttl = 0;
        self.heap.set(id, Instant::now() + secs(ttl));
        self.metrics.lease_renewed.inc();
        if had_checkpoint {
            // The persisted countdown would make a new leader expire it early.
            self.propose(Internal::LeaseCheckpoint(pb::LeaseCheckpointRequest {
                checkpoints: vec![pb::LeaseCheckpoint { id, remaining_ttl: 0 }],
            }));
        }
        Ok(ttl)
    }
}

impl Handler<TimeToLive> for LeaseActor {
    type Result = Result<(i64, i64), RequestError>;
    fn handle(&mut self, msg: TimeToLive, _: &mut Context<Self>) -> Self::Result {
        let _t = self.instruments.handling("TimeToLive");
        if !self.leader {
            return Err(RequestError::NotLeader);
        }
        let info = self.table.get(&msg.0).ok_or(RequestError::LeaseNotFound)?;
        if self.expired.contains(&msg.0) {
            return Ok((info.ttl, 0));
        }
        let remaining = match self.heap.deadline(msg.0) {
            // etcd: int64(Remaining().Seconds()), truncated.
            Some(d) => d.saturating_duration_since(Instant::now()).as_secs() as i64,
            None => info.ttl,
        };
        Ok((info.ttl, remaining))
    }
}

impl Handler<HoldsLease> for LeaseActor {
    type Result = bool;
    fn handle(&mut self, msg: HoldsLease, _: &mut Context<Self>) -> bool {
        let _t = self.instruments.handling("HoldsLease");
        self.table.contains_key(&msg.0)
    }
}

impl Handler<ListLeases> for LeaseActor {
    type Result = MessageResult<ListLeases>;
    fn handle(&mut self, _: ListLeases, _: &mut Context<Self>) -> Self::Result {
        let _t = self.instruments.handling("ListLeases");
        if self.leader {
            let mut ids: Vec<i64> = self.expired.iter().copied().collect();
            ids.sort();
            ids.extend(self.heap.by_deadline().into_iter().filter(|id| !self.expired.contains(id)));
            ids.retain(|id| self.table.contains_key(id));
            MessageResult(ids)
        } else {
            let mut ids: Vec<i64> = self.table.keys().copied().collect();
            ids.sort();
            MessageResult(ids)
        }
    }
}
