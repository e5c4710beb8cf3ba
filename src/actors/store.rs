//! `StoreActor`: owns the MVCC store (on the sled backend) and the applied index.
//! It applies committed entries in log order, answers the client waiting on each,
//! and serves reads once the applied index has reached the read's index.
//!
//! Runs on an arbiter of its own, so a long apply never delays Raft ticks or the
//! HTTP workers. It must never block on a durable flush: sled's flush (before a WAL
//! segment is released) runs on a blocking-pool thread and reports back.

use std::collections::{BTreeMap, HashMap};

use actix::prelude::*;

use crate::error::RequestError;
use crate::metrics::{ActorMetrics, Metrics, MvccOps};
use crate::kv::apply::{self, Response};
use crate::proto::etcdserverpb as pb;
use crate::actors::auth::AuthChanged;
use crate::kv::auth::{self, AuthState, TokenChange};
use crate::kv::alarms::Alarms;
use crate::kv::leases::{LeaseChange, Leases};
use crate::kv::members::{InitialMember, Members};
use crate::proto::steadpb::{internal_request, ConfChangeContext, InternalRequest};
use crate::raft::{self, Entry, EntryKind};
use prost::Message as _;
use crate::storage::mvcc::{self, MvccStore};
use crate::reply::Replies;

/// A storage fault while applying: stop (the WAL still holds the entry).
fn fault(index: u64, e: crate::storage::mvcc::MvccError) -> ! {
    panic!("storage fault while applying index {index}: {e}")
}

/// How often the backend is made durable when nothing else asks for it.
const BACKEND_FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
/// The longest applied changes stay staged while applies keep coming (see
/// `StoreActor::write_staged_when_due`).
const BACKEND_BATCH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(10);
/// A pause in applies this long writes what is staged.
const BACKEND_WRITE_IDLE: std::time::Duration = std::time::Duration::from_millis(2);
/// While applies come with pauses between them and few revisions are staged
/// (a slow writer), what is staged is written in the pause after the first
/// apply that finds it this old (etcd's batch interval), or once applies have
/// stopped this long (at twice this, at once, if they stop pausing). Writing
/// in every pause made each put at 100 a second a sled batch of its own, and
/// each sled batch wakes sled's whole I/O pool twice.
const BACKEND_SLOW_BATCH_AGE: std::time::Duration = std::time::Duration::from_millis(100);
/// A slow writer's batch waits for its age only while it holds fewer staged
/// revisions than this; a larger one is written as a busy writer's is.
const BACKEND_SLOW_BATCH_REVISIONS: usize = 64;

/// Where an applied result goes: the client waiting on the proposal.
pub type Responder = crate::reply::Reply<Result<Response, RequestError>>;

/// Committed entries, in log order, to apply.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Apply {
    pub entries: Vec<Entry>,
    /// The Raft term at the time of sending, for response headers.
    pub term: u64,
    /// The clients of the requests proposed since the last `Apply`, by request
    /// id: registered before `entries` apply, so a request's client is always
    /// known by the time its entry applies (an entry commits only after it is
    /// proposed). Carried here rather than sent one message per proposal: a
    /// thread hand-off fewer on every write.
    pub responders: Vec<(u64, Responder)>,
}

/// A read to serve once the store has applied `read_index` (0: serve now).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Read {
    pub read_index: u64,
    pub request: ReadRequest,
    pub responder: Responder,
}

pub enum ReadRequest {
    Range(pb::RangeRequest),
    Txn(pb::TxnRequest),
}

/// The store's figures for `Status` and `/health`.
#[derive(Message)]
#[rtype(result = "StoreStatus")]
pub struct GetStatus;

#[derive(Debug, Clone, MessageResponse)]
pub struct StoreStatus {
    pub revision: i64,
    pub compact_revision: i64,
    pub applied_index: u64,
    pub db_size_bytes: u64,
    /// The active alarms, in etcd's listing order.
    pub alarms: Vec<pb::AlarmMember>,
}

/// Sent to the Raft actor: entries up to `index` are applied.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AppliedTo {
    pub index: u64,
}

/// Sent to the Raft actor after every flush: the backend is durable up to
/// `index`, so the in-memory log before it is only needed by lagging followers.
#[derive(Message)]
#[rtype(result = "()")]
pub struct DurableTo {
    pub index: u64,
    /// `snapshot-count` entries have applied since the last release: the WAL
    /// may record a snapshot marker at `index` and drop the segments before it.
    pub release_wal: bool,
}

/// Sent to the Raft actor: the member table after a change (peer links follow it).
#[derive(Message)]
#[rtype(result = "()")]
pub struct MembersChanged(pub Vec<pb::Member>);

/// Sent to the lease actor after each apply batch that changed the lease table
/// (and once at start, with the whole table).
#[derive(Message)]
#[rtype(result = "()")]
pub struct LeasesChanged(pub Vec<LeaseChange>);

/// One lease as the applied table has it: (granted TTL, attached keys in key
/// order), or None when there is no such lease.
#[derive(Message)]
#[rtype(result = "Option<(i64, Vec<Vec<u8>>)>")]
pub struct GetLease(pub i64);

/// The cluster's members, as the applied log has them.
#[derive(Message)]
#[rtype(result = "Vec<pb::Member>")]
pub struct GetMembers;

/// Sent to the watch hub after each apply batch that changed keys: the changes in
/// (main, sub) revision order, and the store's revision after them.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Committed {
    pub revision: i64,
    pub events: Vec<mvcc::Event>,
    /// Whether the puts' events carry the values they replaced (`prev_kv`): the
    /// store reads them only while some watcher wants them.
    pub prevs_read: bool,
}

/// Whole revisions of history from `from_revision` on, at most about
/// `max_events` events (a revision is never split), for watchers catching up.
#[derive(Message)]
#[rtype(result = "Result<mvcc::History, RequestError>")]
pub struct ReadHistory {
    pub from_revision: i64,
    pub max_events: usize,
}

/// The whole backend, for a follower that fell behind the leader's compacted log:
/// answered with the dump and the applied index it holds (≥ the snapshot index
/// Raft asked for; the follower skips entries up to it).
#[derive(Message)]
#[rtype(result = "Result<(Vec<u8>, u64), RequestError>")]
pub struct DumpSnapshot;

/// etcd's HashKV: the hash of the key space up to `revision` (0: the current
/// revision), with the compacted and current revisions.
#[derive(Message)]
#[rtype(result = "Result<mvcc::HashKv, RequestError>")]
pub struct HashKv {
    pub revision: i64,
}

/// etcd's Hash: `storage::hash` of the whole backend, with the current revision.
#[derive(Message)]
#[rtype(result = "Result<(u32, i64), RequestError>")]
pub struct HashBackend;

/// etcd's Defragment: rewrite the backend compactly (`Backend::defragment`).
/// Answered with the backend's size afterwards.
#[derive(Message)]
#[rtype(result = "Result<u64, RequestError>")]
pub struct Defragment;

/// Replaces the whole state with a leader's dump. Answered with the applied index
/// the dump holds, once it is durable: only then may Raft record the snapshot.
#[derive(Message)]
#[rtype(result = "Result<u64, RequestError>")]
pub struct InstallSnapshot {
    pub data: Vec<u8>,
    /// The Raft snapshot index: a dump older than this cannot stand in for it.
    pub index: u64,
}

/// Who the store reports progress to.
pub struct StorePeers {
    pub applied: Recipient<AppliedTo>,
    pub durable: Recipient<DurableTo>,
    pub members: Recipient<MembersChanged>,
    /// The watch hub, once there is one.
    pub watch: Option<Recipient<Committed>>,
    /// The lease actor, once there is one.
    pub leases: Option<Recipient<LeasesChanged>>,
    /// The auth actor, once there is one.
    pub auth: Option<Recipient<AuthChanged>>,
}

/// Identity for response headers.
#[derive(Debug, Clone, Copy)]
pub struct HeaderIds {
    pub cluster_id: u64,
    pub member_id: u64,
}

pub struct StoreActor {
    store: MvccStore,
    members: Members,
    /// The lease table (granted TTLs, checkpoints, attached keys).
    leases: Leases,
    /// Users, roles, permissions; whether auth is on.
    auth: AuthState,
    /// The active alarms (what they refuse is decided at apply time).
    alarms: Alarms,
    /// The initial membership from the configuration, recorded when the log's
    /// bootstrap entry applies.
    initial_members: Vec<InitialMember>,
    ids: HeaderIds,
    raft_term: u64,
    applied_index: u64,
    waiters: HashMap<u64, Responder>,
    /// Reads waiting for the applied index to reach their read index.
    pending_reads: BTreeMap<u64, Vec<(ReadRequest, Responder)>>,
    peers: StorePeers,
    /// Applied entries between snapshots (snapshot-count, as etcd): after that
    /// many, a flushed backend lets Raft compact its log and the WAL drop segments.
    snapshot_count: u64,
    /// The consistent index the backend last made durable.
    flushed_index: u64,
    /// Where the last snapshot (WAL release point) was reported.
    snapshot_index: u64,
    flushing: bool,
    /// When the oldest change not yet written to the backend was staged.
    staged_since: Option<std::time::Instant>,
    last_apply: std::time::Instant,
    idle_write_scheduled: bool,
    quiet_write_scheduled: bool,
    /// Applies paused since something was staged: writes wait for a pause
    /// (see `write_staged_when_due`).
    paused_while_staged: bool,
    /// The watch hub's "some watcher wants `prev_kv`" (see `with_prev_kv_flag`).
    prev_kv_wanted: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    metrics: Metrics,
    instruments: ActorMetrics,
}

impl StoreActor {
    pub fn new(
        store: MvccStore,
        members: Members,
        initial_members: Vec<InitialMember>,
        ids: HeaderIds,
        snapshot_count: u64,
        peers: StorePeers,
    ) -> Self {
        let applied_index = store.consistent_index();
        let mut leases = Leases::load(&store).unwrap_or_else(|e| panic!("loading the lease table: {e}"));
        leases.announce_reset();
        let auth = AuthState::load(&store).unwrap_or_else(|e| panic!("loading the auth state: {e}"));
        let alarms = Alarms::load(&**store.backend()).unwrap_or_else(|e| panic!("loading the alarm table: {e}"));
        StoreActor {
            store,
            members,
            leases,
            auth,
            alarms,
            initial_members,
            ids,
            raft_term: 0,
            applied_index,
            waiters: HashMap::new(),
            pending_reads: BTreeMap::new(),
            peers,
            snapshot_count,
            flushed_index: applied_index,
            snapshot_index: applied_index,
            flushing: false,
            staged_since: None,
            last_apply: std::time::Instant::now(),
            idle_write_scheduled: false,
            quiet_write_scheduled: false,
            paused_while_staged: false,
            prev_kv_wanted: None,
            instruments: ActorMetrics::detached("store"),
            metrics: Metrics::new(),
        }
    }

    /// Feeds the member's metrics (without it they go to a registry nobody reads).
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.instruments = metrics.actor("store");
        self.metrics = metrics;
        self.refresh_gauges(true);
        self
    }

    /// Puts read the values they replace only while `flag` (the watch hub's:
    /// some watcher wants `prev_kv`) is set; without it they always do.
    pub fn with_prev_kv_flag(mut self, flag: std::sync::Arc<std::sync::atomic::AtomicBool>) -> Self {
        self.prev_kv_wanted = Some(flag);
        self
    }

    /// The store's gauges; `recount` counts the live keys afresh (at start and
    /// after a snapshot install; applies adjust the count from their events).
    fn refresh_gauges(&mut self, recount: bool) {
        let m = &self.metrics;
        if recount {
            // etcd's "all keys" range: from "\0" to "\0".
            match self.store.count(b"\0", b"\0", 0) {
                Ok(all) => m.keys_total.set(i64::try_from(all.count).unwrap_or(i64::MAX)),
                Err(e) => tracing::warn!("counting keys for metrics: {e}"),
            }
        }
        if recount {
            if let Ok(size) = self.store.backend().size_on_disk() {
                m.set_db_total_size(size);
            }
        }
        m.current_revision.set(self.store.current_revision());
        m.compact_revision.set(self.store.compact_revision());
        m.proposals_applied.set(i64::try_from(self.applied_index).unwrap_or(i64::MAX));
    }

    fn store(&self) -> &MvccStore {
        &self.store
    }

    fn finish(&self, response: Response) -> Response {
        finish_response(self.ids, self.raft_term, self.store.current_revision(), response)
    }

    fn serve_read(&self, request: ReadRequest, responder: Responder, replies: &mut Replies) {
        let result = match request {
            ReadRequest::Range(r) => apply::range(self.store(), &r).map(Response::Range),
            ReadRequest::Txn(t) => apply::read_txn(self.store(), &t).map(|resp| {
                self.metrics.count_mvcc(MvccOps::txn(&t, &resp));
                Response::Txn(resp)
            }),
        };
        if let Ok(Response::Range(_)) = &result {
            self.metrics.count_mvcc(MvccOps::range());
        }
        replies.add(responder, result.map(|r| self.finish(r)));
    }

    /// Writes what apply batches staged as one backend batch. Every backend
    /// batch costs sled two log buffer writes, each synced to disk, so applies
    /// share one (as etcd commits bbolt every 100 ms); reads see staged changes
    /// meanwhile. Nothing staged is lost to a crash: the consistent index goes
    /// in the same batch, so a restart replays the entries from the WAL.
    fn write_staged(&mut self) {
        // Timed only when applies staged something (the callers that read the
        // backend directly call this whether or not they did).
        let commit = self.staged_since.take().map(|_| self.metrics.backend_commit_seconds.start_timer());
        self.paused_while_staged = false;
        if let Err(e) = self.store.write_staged_now() {
            panic!("storage fault writing the apply batches up to index {}: {e}", self.applied_index);
        }
        if let Some(commit) = commit {
            commit.observe_duration();
        }
    }

    /// After an apply: staged changes are written in a pause of applies
    /// (`BACKEND_WRITE_IDLE`), so the write's disk and CPU work stays clear of
    /// the answers and watch events just sent, or at once when applies never
    /// pause and they have waited `BACKEND_BATCH_INTERVAL`. Once applies have
    /// paused with little staged, the write waits for a pause after
    /// `BACKEND_SLOW_BATCH_AGE` (so a slow writer's puts share a batch), and
    /// comes at once at twice that age if applies stopped pausing.
    fn write_staged_when_due(&mut self, ctx: &mut Context<Self>) {
        let now = std::time::Instant::now();
        self.last_apply = now;
        let since = *self.staged_since.get_or_insert(now);
        let age = now.duration_since(since);
        // A slow writer's batch is written in a pause (the idle check), never
        // right after an apply, unless pauses stopped coming.
        let due = if self.slow_writer() { 2 * BACKEND_SLOW_BATCH_AGE } else { BACKEND_BATCH_INTERVAL };
        if age >= due {
            self.write_staged();
        } else if !self.idle_write_scheduled {
            self.idle_write_scheduled = true;
            ctx.run_later(BACKEND_WRITE_IDLE, |act, ctx| act.write_staged_if_idle(ctx));
        }
    }

    /// Applies paused since something was staged, and little is staged.
    fn slow_writer(&self) -> bool {
        self.paused_while_staged && self.store.staged_revisions() < BACKEND_SLOW_BATCH_REVISIONS
    }

    fn write_staged_if_idle(&mut self, ctx: &mut Context<Self>) {
        self.idle_write_scheduled = false;
        let Some(since) = self.staged_since else {
            return;
        };
        let idle = self.last_apply.elapsed();
        if idle < BACKEND_WRITE_IDLE {
            self.idle_write_scheduled = true;
            ctx.run_later(BACKEND_WRITE_IDLE - idle, |act, ctx| act.write_staged_if_idle(ctx));
        } else if since.elapsed() >= BACKEND_SLOW_BATCH_AGE
            || self.store.staged_revisions() >= BACKEND_SLOW_BATCH_REVISIONS
        {
            self.write_staged();
        } else {
            // A pause, but what is staged is young: a slow writer. Its next
            // puts join this batch, written in the pause after the first of
            // them that comes once the batch is old enough: the check runs
            // after an apply, never on a clock of its own, which a periodic
            // writer's puts would fall in step with. If no put comes, the
            // batch is written once the writer has been quiet that long.
            self.paused_while_staged = true;
            if !self.quiet_write_scheduled {
                self.quiet_write_scheduled = true;
                ctx.run_later(BACKEND_SLOW_BATCH_AGE, |act, ctx| act.write_staged_if_quiet(ctx));
            }
        }
    }

    /// A slow writer that stopped: what it staged is written once no apply has
    /// come for `BACKEND_SLOW_BATCH_AGE`.
    fn write_staged_if_quiet(&mut self, ctx: &mut Context<Self>) {
        self.quiet_write_scheduled = false;
        if self.staged_since.is_none() {
            return;
        }
        let quiet = self.last_apply.elapsed();
        if quiet >= BACKEND_SLOW_BATCH_AGE {
            self.write_staged();
        } else {
            self.quiet_write_scheduled = true;
            ctx.run_later(BACKEND_SLOW_BATCH_AGE - quiet, |act, ctx| act.write_staged_if_quiet(ctx));
        }
    }

    /// Applies a run of committed entries, staging their changes (see
    /// `write_staged`), then answers the clients waiting on them and tells the
    /// watch hub.
    fn apply_entries(&mut self, entries: &[Entry], replies: &mut Replies) {
        if let Some(flag) = &self.prev_kv_wanted {
            // Read once per batch: its `Committed` says which it was.
            self.store.set_read_prevs(flag.load(std::sync::atomic::Ordering::Acquire));
        }
        let mut answers = Vec::new();
        let mut members_changed = false;
        let mut auth_changed = false;
        let mut token_changes = Vec::new();
        // Most entries are one put: one event each.
        let mut events = Vec::with_capacity(entries.len());
        let mut batch = self.store.apply_batch();
        for entry in entries {
            if entry.index <= self.applied_index {
                continue; // replayed from the WAL, already in the backend
            }
            assert_eq!(entry.index, self.applied_index + 1, "entries are applied in log order without gaps");
            match entry.kind {
                EntryKind::ConfChange => {
                    let (change, context) = raft::ConfChange::decode_with_context(&entry.data)
                        .unwrap_or_else(|| panic!("undecodable membership change at index {}", entry.index));
                    let context = ConfChangeContext::decode(context.as_slice()).unwrap_or_default();
                    self.members.apply_conf_change(&mut batch, &change, context.member, &self.initial_members);
                    tracing::info!(change = ?change, index = entry.index, "membership changed");
                    members_changed = true;
                    if context.request_id != 0 {
                        answers.push((context.request_id, Ok(Response::Members(self.members.list()))));
                    }
                    batch.set_consistent_index(entry.index).unwrap_or_else(|e| fault(entry.index, e));
                }
                // A new leader's no-op: only the index moves.
                EntryKind::Normal if entry.data.is_empty() => {
                    batch.set_consistent_index(entry.index).unwrap_or_else(|e| fault(entry.index, e));
                }
                EntryKind::Normal => {
                    let started = std::time::Instant::now();
                    let request = InternalRequest::decode(entry.data.as_slice())
                        .unwrap_or_else(|e| panic!("undecodable committed entry at index {}: {e}", entry.index));
                    let id = request.header.as_ref().map(|h| h.id).unwrap_or_default();
                    let response = match &request.request {
                        Some(internal_request::Request::MemberAttributes(attrs)) => {
                            self.members.apply_attributes(&mut batch, attrs);
                            members_changed = true;
                            batch.set_consistent_index(entry.index).unwrap_or_else(|e| fault(entry.index, e));
                            Ok(Response::Members(self.members.list()))
                        }
                        Some(internal_request::Request::MemberPeerUrls(update)) => {
                            let found = self.members.apply_peer_urls(&mut batch, update);
                            members_changed |= found;
                            batch.set_consistent_index(entry.index).unwrap_or_else(|e| fault(entry.index, e));
                            if found { Ok(Response::Members(self.members.list())) } else { Err(RequestError::MemberNotFound) }
                        }
                        Some(r) if auth::is_auth_request(r) => {
                            let leases = &self.leases;
                            let lease_keys = |id: i64| lease_keys(leases, id);
                            let before = self.auth.revision();
                            let response = self
                                .auth
                                .check_entry(&request, &lease_keys)
                                .and_then(|()| self.auth.apply(&mut batch, entry.index, &request, &mut token_changes))
                                .map(Response::Auth);
                            auth_changed |= self.auth.revision() != before;
                            batch.set_consistent_index(entry.index).unwrap_or_else(|e| fault(entry.index, e));
                            response
                        }
                        Some(internal_request::Request::Alarm(alarm)) => {
                            // etcd answers Alarm without a header.
                            let response = self.alarms.apply(&mut batch, alarm);
                            batch.set_consistent_index(entry.index).unwrap_or_else(|e| fault(entry.index, e));
                            Ok(Response::Alarm(response))
                        }
                        _ => {
                            // As etcd's appliers: auth first (writes are checked
                            // against the auth state at this index, the member that
                            // took them knew an older one), then an active alarm
                            // refuses what it caps. A refused entry is used up.
                            let leases = &self.leases;
                            let refused = match self.auth.check_entry(&request, &|id| lease_keys(leases, id)) {
                                Err(e) => Some(e),
                                Ok(()) => self.alarms.refusal(&request),
                            };
                            match refused {
                                Some(e) => {
                                    batch.set_consistent_index(entry.index).unwrap_or_else(|e| fault(entry.index, e));
                                    Err(e)
                                }
                                None => apply_kv(&mut batch, entry.index, &request, &mut self.leases, &self.metrics, &mut events),
                            }
                        }
                    };
                    let took = started.elapsed();
                    if took > crate::metrics::SLOW_APPLY {
                        self.metrics.slow_apply.inc();
                        tracing::warn!(took_ms = took.as_millis() as u64, index = entry.index, "apply request took too long");
                    }
                    if let (Ok(Response::Compaction(c)), Some(internal_request::Request::Compaction(r))) = (&response, &request.request) {
                        tracing::info!(revision = r.revision, current = c.header.as_ref().map(|h| h.revision).unwrap_or_default(), "finished compaction");
                    }
                    answers.push((id, response));
                }
            }
            self.applied_index = entry.index;
        }

        // Answer before the backend write: the entries are durable in the WAL (on
        // a quorum) already, and this actor serves no read before the write
        // below is done, so no answer can be observed ahead of the backend. A
        // failed write stops the member, and the restart replays the entries.
        // The auth actor hears first: a client that got its token may use it.
        if auth_changed || !token_changes.is_empty() {
            if let Some(auth) = &self.peers.auth {
                let state = auth_changed.then(|| std::sync::Arc::new(self.auth.clone()));
                auth.do_send(AuthChanged { state, tokens: token_changes });
            }
        }
        let revision = batch.store().current_revision();
        for (id, response) in answers {
            if let Some(responder) = self.waiters.remove(&id) {
                replies.add(responder, response.map(|r| finish_response(self.ids, self.raft_term, revision, r)));
            }
        }
        batch.stage();
        // etcd's keys_total: up on a key's creation, down on its deletion.
        let created = events.iter().filter(|e| e.kind == mvcc::EventKind::Put && e.kv.version == 1).count();
        let deleted = events.iter().filter(|e| e.kind == mvcc::EventKind::Delete).count();
        self.metrics.keys_total.add(created as i64 - deleted as i64);
        self.refresh_gauges(false);
        if members_changed {
            self.peers.members.do_send(MembersChanged(self.members.list()));
        }
        self.send_lease_changes();
        if !events.is_empty() {
            if let Some(watch) = &self.peers.watch {
                let prevs_read = self.store.reads_prevs();
                watch.do_send(Committed { revision: self.store.current_revision(), events, prevs_read });
            }
        }
    }

    /// Tells the auth actor the new state (when it changed) and what happened
    /// to tokens.
    fn send_auth_changes(&self, state_changed: bool, tokens: Vec<TokenChange>) {
        if let Some(auth) = &self.peers.auth {
            let state = state_changed.then(|| std::sync::Arc::new(self.auth.clone()));
            auth.do_send(AuthChanged { state, tokens });
        }
    }

    /// Tells the lease actor what the applied entries changed in the table.
    fn send_lease_changes(&mut self) {
        let changes = self.leases.take_changes();
        if changes.is_empty() {
            return;
        }
        if let Some(leases) = &self.peers.leases {
            leases.do_send(LeasesChanged(changes));
        }
    }

    fn release_reads(&mut self, replies: &mut Replies) {
        let still_waiting = self.pending_reads.split_off(&(self.applied_index + 1));
        let ready = std::mem::replace(&mut self.pending_reads, still_waiting);
        for (_, reads) in ready {
            for (request, responder) in reads {
                self.serve_read(request, responder, replies);
            }
        }
    }

    /// Flushes the backend on a blocking-pool thread (never on this event loop)
    /// and tells Raft how far it is durable (`DurableTo`): Raft trims its
    /// in-memory log, and every `snapshot_count` entries lets the WAL release
    /// segments.
    fn flush_backend(&mut self, ctx: &mut Context<Self>) {
        // What the backend holds once this flush returns; later applies may still
        // be staged in memory.
        let index = self.store.written_consistent_index();
        if self.flushing || index <= self.flushed_index {
            return;
        }
        self.flushing = true;
        let backend = self.store.backend().clone();
        // The size is read after the flush (sled's files grow when it writes): the
        // space quota checks writes against it.
        let flush = actix_rt::task::spawn_blocking(move || backend.flush().and_then(|()| backend.size_on_disk()));
        ctx.spawn(async move { flush.await }.into_actor(self).map(move |result, act, _ctx| {
            act.flushing = false;
            match result {
                Ok(Ok(db_size)) => {
                    act.metrics.set_db_total_size(db_size);
                    act.flushed_index = index;
                    let release_wal = index >= act.snapshot_index + act.snapshot_count;
                    if release_wal {
                        act.snapshot_index = index;
                    }
                    act.peers.durable.do_send(DurableTo { index, release_wal });
                }
                Ok(Err(e)) => panic!("backend flush failed: {e}"),
                Err(e) => panic!("backend flush task failed: {e}"),
            }
        }));
    }
}

impl Actor for StoreActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        crate::metrics::start_mailbox_probe(ctx, |a: &Self| &a.instruments);
        // The WAL is the source of truth; flushing the backend on a timer bounds
        // what a restart must replay.
        ctx.run_interval(BACKEND_FLUSH_INTERVAL, |act, ctx| act.flush_backend(ctx));
        // The lease and auth actors' mirrors start from the state as loaded.
        self.send_lease_changes();
        self.send_auth_changes(true, Vec::new());
        // Drop waiters whose client has gone (timed out), so a proposal lost in a
        // leader change cannot leak its waiter forever.
        ctx.run_interval(std::time::Duration::from_secs(5), |act, _| {
            act.waiters.retain(|_, w| !w.is_closed());
        });
    }
}

crate::mailbox_probe_handler!(StoreActor, instruments);

impl Handler<Apply> for StoreActor {
    type Result = ();
    fn handle(&mut self, msg: Apply, ctx: &mut Context<Self>) {
        let _t = self.instruments.handling("Apply");
        self.raft_term = self.raft_term.max(msg.term);
        self.waiters.extend(msg.responders);
        // The writes' answers and the reads they release wake each client
        // thread once.
        let mut replies = Replies::new();
        self.apply_entries(&msg.entries, &mut replies);
        self.release_reads(&mut replies);
        replies.deliver();
        self.peers.applied.do_send(AppliedTo { index: self.applied_index });
        self.write_staged_when_due(ctx);
        if self.applied_index >= self.snapshot_index + self.snapshot_count {
            self.flush_backend(ctx);
        }
    }
}

impl Handler<Read> for StoreActor {
    type Result = ();
    fn handle(&mut self, msg: Read, _: &mut Context<Self>) {
        let _t = self.instruments.handling("Read");
        if msg.read_index <= self.applied_index {
            self.serve_read(msg.request, msg.responder, &mut Replies::new());
        } else {
            self.pending_reads.entry(msg.read_index).or_default().push((msg.request, msg.responder));
        }
    }
}

impl Handler<DumpSnapshot> for StoreActor {
    type Result = AtomicResponse<Self, Result<(Vec<u8>, u64), RequestError>>;
    fn handle(&mut self, _: DumpSnapshot, _: &mut Context<Self>) -> Self::Result {
        let _t = self.instruments.handling("DumpSnapshot");
        self.write_staged();
        // Everything staged is written first, and the read runs on the blocking
        // pool as an atomic response: the actor applies nothing meanwhile, so
        // the dump is exactly the state at `applied_index`. Bounded by the
        // largest snapshot a peer link carries (in chunks).
        let backend = self.store.backend().clone();
        let applied = self.applied_index;
        let work = actix_rt::task::spawn_blocking(move || {
            crate::storage::snapshot::dump_bounded(&*backend, crate::net::peer::SNAPSHOT_BYTES_MAX_DEFAULT as usize)
        });
        AtomicResponse::new(Box::pin(async move { work.await }.into_actor(self).map(move |result, _, _| match result {
            Ok(Ok(data)) => Ok((data, applied)),
            Ok(Err(e)) => Err(RequestError::Internal(format!("snapshot dump: {e}"))),
            Err(e) => Err(RequestError::Internal(format!("snapshot dump task: {e}"))),
        })))
    }
}

impl Handler<HashKv> for StoreActor {
    type Result = Result<mvcc::HashKv, RequestError>;
    fn handle(&mut self, msg: HashKv, _: &mut Context<Self>) -> Self::Result {
        let _t = self.instruments.handling("HashKv");
        self.store().hash_kv(msg.revision).map_err(|e| match e {
            mvcc::MvccError::Compacted { .. } => RequestError::Compacted,
            mvcc::MvccError::FutureRev { .. } => RequestError::FutureRevision,
            other => RequestError::Internal(other.to_string()),
        })
    }
}

impl Handler<InstallSnapshot> for StoreActor {
    type Result = AtomicResponse<Self, Result<u64, RequestError>>;
    fn handle(&mut self, msg: InstallSnapshot, _: &mut Context<Self>) -> Self::Result {
        let _t = self.instruments.handling("InstallSnapshot");
        let info = match crate::storage::snapshot::inspect(&msg.data) {
            Ok(info) => info,
            Err(e) => return AtomicResponse::new(Box::pin(fut::ready(Err(RequestError::Internal(format!("snapshot refused: {e}")))))),
        };
        if info.consistent_index_hint.unwrap_or(0) < msg.index {
            return AtomicResponse::new(Box::pin(fut::ready(Err(RequestError::Internal(format!(
                "snapshot refused: it holds index {:?}, Raft needs {}",
                info.consistent_index_hint, msg.index
            ))))));
        }
        // What is staged goes first: the snapshot replaces it, and nothing may
        // be written over the new state later.
        self.write_staged();
        // Load and flush off the event loop. An atomic response: the actor takes
        // no other message until it is done, so no apply or read sees a
        // half-replaced store.
        let backend = self.store.backend().clone();
        let work = actix_rt::task::spawn_blocking(move || {
            crate::storage::snapshot::load(&*backend, &msg.data).map_err(|e| e.to_string())?;
            backend.flush().map_err(|e| e.to_string())
        });
        AtomicResponse::new(Box::pin(async move { work.await }.into_actor(self).map(|result, act, _ctx| {
            match result {
                Ok(Ok(())) => {}
                // The backend may be half replaced: stop rather than serve it (a
                // restart refuses the marked store, and the leader sends again).
                Ok(Err(e)) => panic!("snapshot install failed: {e}"),
                Err(e) => panic!("snapshot install task failed: {e}"),
            }
            let backend = act.store.backend().clone();
            act.store = MvccStore::open(backend).unwrap_or_else(|e| panic!("reopening the store after a snapshot: {e}"));
            act.members = Members::load(&**act.store.backend())
                .unwrap_or_else(|e| panic!("reloading members after a snapshot: {e}"));
            act.leases = Leases::load(&act.store).unwrap_or_else(|e| panic!("reloading leases after a snapshot: {e}"));
            act.leases.announce_reset();
            act.send_lease_changes();
            act.auth = AuthState::load(&act.store).unwrap_or_else(|e| panic!("reloading the auth state after a snapshot: {e}"));
            act.send_auth_changes(true, vec![TokenChange::DropAll]);
            act.alarms = Alarms::load(&**act.store.backend()).unwrap_or_else(|e| panic!("reloading alarms after a snapshot: {e}"));
            act.applied_index = act.store.consistent_index();
            act.flushed_index = act.applied_index;
            act.snapshot_index = act.applied_index;
            act.refresh_gauges(true);
            tracing::info!("installed a snapshot from the leader: applied index {}", act.applied_index);
            act.release_reads(&mut Replies::new());
            act.peers.members.do_send(MembersChanged(act.members.list()));
            Ok(act.applied_index)
        })))
    }
}

impl Handler<HashBackend> for StoreActor {
    type Result = AtomicResponse<Self, Result<(u32, i64), RequestError>>;
    fn handle(&mut self, _: HashBackend, _: &mut Context<Self>) -> Self::Result {
        let _t = self.instruments.handling("HashBackend");
        self.write_staged();
        // Read on the blocking pool; an atomic response, so nothing is applied
        // meanwhile and the hash is of the state at the applied index.
        let backend = self.store.backend().clone();
        let revision = self.store.current_revision();
        let work = actix_rt::task::spawn_blocking(move || crate::storage::hash::hash_backend(&*backend));
        AtomicResponse::new(Box::pin(async move { work.await }.into_actor(self).map(move |result, _act, _ctx| {
            match result {
                Ok(Ok(hash)) => Ok((hash, revision)),
                Ok(Err(e)) => Err(RequestError::Internal(format!("hash: {e}"))),
                Err(e) => Err(RequestError::Internal(format!("hash task: {e}"))),
            }
        })))
    }
}

impl Handler<Defragment> for StoreActor {
    type Result = AtomicResponse<Self, Result<u64, RequestError>>;
    fn handle(&mut self, _: Defragment, _: &mut Context<Self>) -> Self::Result {
        let _t = self.instruments.handling("Defragment");
        self.write_staged();
        // The rewrite runs on the blocking pool. An atomic response: the actor
        // applies nothing meanwhile (committed entries wait in its mailbox), so
        // the copy is the state at the applied index; reads wait too, as etcd's
        // defragmentation blocks its backend.
        let backend = self.store.backend().clone();
        let work = actix_rt::task::spawn_blocking(move || {
            backend.defragment()?;
            backend.size_on_disk()
        });
        AtomicResponse::new(Box::pin(async move { work.await }.into_actor(self).map(|result, act, _ctx| {
            match result {
                Ok(Ok(size)) => {
                    act.metrics.set_db_total_size(size);
                    tracing::info!("defragmented the backend: {size} bytes on disk");
                    Ok(size)
                }
                Ok(Err(e)) => {
                    // A failed swap leaves the backend closed: every later
                    // apply fails and stops the member (fail-stop).
                    tracing::error!("defragmentation failed: {e}");
                    Err(RequestError::Internal(format!("defragment: {e}")))
                }
                Err(e) => Err(RequestError::Internal(format!("defragment task: {e}"))),
            }
        })))
    }
}

impl Handler<ReadHistory> for StoreActor {
    type Result = Result<mvcc::History, RequestError>;
    fn handle(&mut self, msg: ReadHistory, _: &mut Context<Self>) -> Self::Result {
        let _t = self.instruments.handling("ReadHistory");
        self.store.history(msg.from_revision, msg.max_events).map_err(|e| match e {
            mvcc::MvccError::Compacted { .. } => RequestError::Compacted,
            mvcc::MvccError::FutureRev { .. } => RequestError::FutureRevision,
            other => RequestError::Internal(other.to_string()),
        })
    }
}

impl Handler<GetLease> for StoreActor {
    type Result = MessageResult<GetLease>;
    fn handle(&mut self, msg: GetLease, _: &mut Context<Self>) -> Self::Result {
        let _t = self.instruments.handling("GetLease");
        MessageResult(self.leases.get(msg.0).map(|l| (l.ttl, l.keys.iter().cloned().collect())))
    }
}

impl Handler<GetMembers> for StoreActor {
    type Result = MessageResult<GetMembers>;
    fn handle(&mut self, _: GetMembers, _: &mut Context<Self>) -> Self::Result {
        let _t = self.instruments.handling("GetMembers");
        MessageResult(self.members.list())
    }
}

impl Handler<GetStatus> for StoreActor {
    type Result = StoreStatus;
    fn handle(&mut self, _: GetStatus, _: &mut Context<Self>) -> StoreStatus {
        let _t = self.instruments.handling("GetStatus");
        let store = self.store();
        StoreStatus {
            revision: store.current_revision(),
            compact_revision: store.compact_revision(),
            applied_index: self.applied_index,
            db_size_bytes: store.backend().size_on_disk().unwrap_or(0),
            alarms: self.alarms.list(),
        }
    }
}

/// The mvcc operations a KV entry did, as etcd counts them.
/// A response as the client gets it: cluster id, member id and term in its
/// header (`revision` is the store's, for answers that carry none of their own).
fn finish_response(ids: HeaderIds, raft_term: u64, revision: i64, mut response: Response) -> Response {
    let fill = |header: &mut Option<pb::ResponseHeader>| {
        let h = header.get_or_insert_with(Default::default);
        h.cluster_id = ids.cluster_id;
        h.member_id = ids.member_id;
        h.raft_term = raft_term;
    };
    match &mut response {
        Response::Put(r) => fill(&mut r.header),
        Response::DeleteRange(r) => fill(&mut r.header),
        Response::Txn(r) => fill(&mut r.header),
        Response::Compaction(r) => fill(&mut r.header),
        Response::Range(r) => fill(&mut r.header),
        Response::Members(_) | Response::Alarm(_) => {}
        Response::LeaseGrant(r) => fill(&mut r.header),
        Response::LeaseRevoke(r) => fill(&mut r.header),
        Response::LeaseCheckpoint(r) => fill(&mut r.header),
        Response::LeaseRenew(r) => fill(&mut r.header),
        Response::Auth(a) => {
            a.header.get_or_insert_with(Default::default).revision = revision;
            fill(&mut a.header);
        }
    }
    response
}

/// A KV or lease entry (etcd's apply rules in `kv::apply`). Fail-stop on a
/// storage fault: the WAL still has the entry, and a restart replays it.
fn apply_kv(
    batch: &mut mvcc::ApplyBatch<'_>,
    index: u64,
    request: &InternalRequest,
    leases: &mut Leases,
    metrics: &Metrics,
    events: &mut Vec<mvcc::Event>,
) -> Result<Response, RequestError> {
    let applied = apply::apply_entry(batch, index, request, leases).unwrap_or_else(|f| panic!("{f}"));
    if let Ok(response) = &applied.response {
        metrics.count_mvcc(kv_ops(request, response));
    }
    events.extend(applied.events);
    applied.response
}

/// The keys attached to lease `id` (none if there is no such lease).
fn lease_keys(leases: &Leases, id: i64) -> Vec<Vec<u8>> {
    leases.get(id).map(|l| l.keys.iter().cloned().collect()).unwrap_or_default()
}

fn kv_ops(request: &InternalRequest, response: &Response) -> MvccOps {
    match (&request.request, response) {
        (Some(internal_request::Request::Put(p)), _) => MvccOps::put(p),
        (Some(internal_request::Request::DeleteRange(d)), _) => MvccOps::delete(d),
        (Some(internal_request::Request::Txn(t)), Response::Txn(r)) => MvccOps::txn(t, r),
        _ => MvccOps::default(),
    }
}
