//! `RaftNode`: one member's Raft state machine (Raft paper Figure 2, plus pre-vote,
//! check-quorum, ReadIndex, leader transfer, single-server membership changes and
//! snapshots, after etcd-raft). Inputs: `tick`, `step` and the local requests;
//! outputs: one `Ready` at a time. It never does I/O, never reads a clock and never
//! blocks: the caller persists, sends, applies and reports back.
//!
//! # The caller's contract (persist before acknowledging, by type)
//!
//! Loop: feed inputs, then while `has_ready()`: take `ready()` and
//! 1. send `messages` now (a leader's appends go out while it persists its own copy);
//! 2. persist, in order and in one durable write: `snapshot` (if any: the received
//!    snapshot data becomes the log's base), `entries` (an entry whose index is at or
//!    below one already written replaces that entry and everything after it), and
//!    `hard_state`; Readies must be persisted in the order they were taken;
//! 3. once that write is durable: send `messages_after_persist` (votes, append
//!    acknowledgements) and call `on_persisted(persist_ack)`;
//! 4. load `snapshot` into the state machine (after step 3), then apply `committed`
//!    in order and report `on_applied(last index)`; committed entries are already
//!    durable locally, so applying may overlap with step 2 of a later Ready;
//! 5. serve each `read_states` entry once applied ≥ its index.
//!
//! In code (the actor's loop, with the WAL synchronous for brevity):
//!
//! ```text
//! let mut node = RaftNode::new(config, restored_from_wal)?;
//! // inputs: node.tick() per tick, node.step(msg), node.propose(data), node.read_index(ctx)
//! while node.has_ready() {
//!     let rd = node.ready();
//!     peers.send(rd.messages);
//!     wal.append(rd.snapshot.as_ref(), &rd.entries, rd.hard_state)?; wal.fsync()?;
//!     peers.send(rd.messages_after_persist);
//!     if let Some(ack) = rd.persist_ack { node.on_persisted(ack); }
//!     if let Some(meta) = &rd.snapshot { store.load_snapshot(meta)?; node.on_applied(meta.index); }
//!     if let Some(last) = rd.committed.last() { store.apply(&rd.committed)?; node.on_applied(last.index); }
//!     reads.confirmed(rd.read_states);
//! }
//! ```
//!
//! With an asynchronous WAL, hand each Ready's durable part to the WAL in order and
//! run the steps after the fsync when it completes; several Readies may share one
//! fsync (group commit).
//!
//! A candidate counts its own vote, and a leader counts its own log toward quorum,
//! only after `on_persisted`: a crash must never make a member forget a vote it
//! acted on or an entry a quorum was counted with. So even a single member becomes
//! leader (and commits) only after one round trip through the WAL.
//!
//! # Membership
//!
//! One change at a time, as a `ConfChange` entry. A change takes effect on each
//! member when that member learns the entry is committed (including on restart,
//! for committed entries replayed from the WAL), and the leader accepts the next
//! change only after the previous one is applied (`on_applied`). A new cluster's
//! initial membership is itself entry 1 (`ConfChange::Bootstrap`, term 1, written
//! identically by every initial member), so a member that joins later learns the
//! whole membership history from the log or from a snapshot's `ConfState`.
//!
//! # Snapshots
//!
//! `compact(index)` drops the log up to an applied index the caller has a state
//! machine snapshot of, and returns the metadata to store beside it. A follower that
//! needs compacted entries gets a `MessageBody::Snapshot { meta }`: the sending actor
//! attaches its snapshot data, and the receiving actor steps the message once the
//! data is stored. The core then either fast-forwards (it already has the entry) or
//! resets its log and returns the snapshot in `Ready::snapshot` to persist and load.
//! The sender reports the transfer outcome with `report_snapshot`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::confchange::ConfChange;
use super::error::RaftError;
use super::log::{AppendOutcome, RaftLog};
use super::progress::{Progress, ProgressState};
use super::rng::Rng;
use super::types::{
    ConfState, Entry, EntryKind, HardState, Message, MessageBody, NodeId, ReadState, Role,
    SnapshotMeta, SoftState,
};

/// Static settings of one member. Limits bound every queue the core keeps.
#[derive(Debug, Clone)]
pub struct Config {
    pub id: NodeId,
    /// Initial voters of a new cluster (ignored on restart: membership then comes
    /// from the snapshot and the log). Empty for a member joining an existing
    /// cluster: it waits to hear from the leader.
    pub voters: Vec<NodeId>,
    /// Initial learners of a new cluster (same rules as `voters`).
    pub learners: Vec<NodeId>,
    /// Followers wait a random [election_ticks, 2·election_ticks) ticks without a
    /// leader before campaigning; a leader steps down after election_ticks without
    /// a quorum (check_quorum).
    pub election_ticks: u32,
    pub heartbeat_ticks: u32,
    /// Appends sent but not yet acknowledged, per follower.
    pub max_inflight_appends: usize,
    pub max_entries_per_append: usize,
    pub max_bytes_per_append: usize,
    /// Proposals are refused once this many entries are uncommitted.
    pub max_uncommitted_entries: usize,
    /// Reads awaiting leadership confirmation (or the first commit of the term).
    pub max_pending_reads: usize,
    /// Committed entries handed out per `Ready`.
    pub max_committed_per_ready: usize,
    pub pre_vote: bool,
    pub check_quorum: bool,
    /// Seeds the election timeout randomness (mixed with `id`).
    pub seed: u64,
}

impl Config {
    /// Defaults as etcd's: 10-tick elections, 1-tick heartbeats (at etcd's 100 ms
    /// tick: 1 s and 100 ms), pre-vote and check-quorum on.
    pub fn new(id: NodeId, voters: Vec<NodeId>) -> Config {
        Config {
            id,
            voters,
            learners: Vec::new(),
            election_ticks: 10,
            heartbeat_ticks: 1,
            max_inflight_appends: 256,
            max_entries_per_append: 1024,
            max_bytes_per_append: 1 << 20,
            max_uncommitted_entries: 1 << 16,
            max_pending_reads: 4096,
            max_committed_per_ready: 4096,
            pre_vote: true,
            check_quorum: true,
            seed: 0,
        }
    }

    fn validate(&self) -> Result<(), RaftError> {
        if self.id == 0 {
            return Err(RaftError::InvalidConfig("id must not be 0"));
        }
        if self.heartbeat_ticks == 0 || self.election_ticks <= self.heartbeat_ticks {
            return Err(RaftError::InvalidConfig(
                "need 0 < heartbeat_ticks < election_ticks",
            ));
        }
        if self.max_inflight_appends == 0
            || self.max_entries_per_append == 0
            || self.max_bytes_per_append == 0
            || self.max_uncommitted_entries == 0
            || self.max_pending_reads == 0
            || self.max_committed_per_ready == 0
        {
            return Err(RaftError::InvalidConfig("limits must be positive"));
        }
        let voters: BTreeSet<_> = self.voters.iter().collect();
        let learners: BTreeSet<_> = self.learners.iter().collect();
        if voters.len() != self.voters.len() || learners.len() != self.learners.len() {
            return Err(RaftError::InvalidConfig("duplicate member ids"));
        }
        if voters.contains(&0)
            || learners.contains(&0)
            || voters.intersection(&learners).next().is_some()
        {
            return Err(RaftError::InvalidConfig(
                "member ids must be non-zero and voters disjoint from learners",
            ));
        }
        if self.voters.is_empty() && !self.learners.is_empty() {
            return Err(RaftError::InvalidConfig("learners without voters"));
        }
        Ok(())
    }
}

/// What the WAL replayed at start-up. `Restored::default()` is a brand new member.
#[derive(Debug, Clone, Default)]
pub struct Restored {
    pub hard_state: HardState,
    /// The latest durable snapshot, if any.
    pub snapshot: Option<SnapshotMeta>,
    /// Entries after the snapshot, in order (entries at or below the snapshot index
    /// are skipped).
    pub entries: Vec<Entry>,
    /// The state machine's durable applied index (its consistent index); committed
    /// entries after it are handed out again. Clamped to [snapshot index, commit].
    pub applied: u64,
}

/// Proof that a `Ready`'s durable part was taken; hand it back to `on_persisted`
/// once that part is durable. Opaque on purpose: the caller cannot invent one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PersistAck {
    last_index: u64,
    last_term: u64,
    hard_state: HardState,
}

impl PersistAck {
    /// Last log index durable once this acknowledgement is due.
    pub fn last_index(&self) -> u64 {
        self.last_index
    }

    /// An acknowledgement for a log through `last_index`, for tests of what
    /// carries acknowledgements (the WAL actor) without a core.
    #[cfg(test)]
    pub(crate) fn for_test(last_index: u64) -> PersistAck {
        PersistAck { last_index, last_term: 1, hard_state: HardState::default() }
    }
}

/// Everything the core wants done, drained by `RaftNode::ready`. See the module
/// docs for the order in which the caller must carry it out.
#[derive(Debug, Default)]
pub struct Ready {
    /// Changed leader or role (informational: wake waiters, fail pending reads).
    pub soft_state: Option<SoftState>,
    /// Persist before sending `messages_after_persist`.
    pub hard_state: Option<HardState>,
    /// A snapshot received from the leader: persist (the log restarts after it),
    /// then load it into the state machine before applying later entries.
    pub snapshot: Option<SnapshotMeta>,
    /// Entries to persist.
    pub entries: Vec<Entry>,
    /// Messages that may be sent immediately.
    pub messages: Vec<Message>,
    /// Messages to send only once this Ready (and every earlier one) is durable.
    pub messages_after_persist: Vec<Message>,
    /// Committed, locally durable entries to apply in order.
    pub committed: Vec<Entry>,
    /// Confirmed reads.
    pub read_states: Vec<ReadState>,
    /// `Some` when anything above must be made durable (or waited for) before
    /// `messages_after_persist` go out; pass it to `on_persisted` afterwards.
    pub persist_ack: Option<PersistAck>,
}

impl Ready {
    pub fn is_empty(&self) -> bool {
        self.soft_state.is_none()
            && self.hard_state.is_none()
            && self.snapshot.is_none()
            && self.entries.is_empty()
            && self.messages.is_empty()
            && self.messages_after_persist.is_empty()
            && self.committed.is_empty()
            && self.read_states.is_empty()
    }
}

/// The leader's view of one member, for `Status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgressStatus {
    pub matched: u64,
    pub next: u64,
    pub state: ProgressState,
    pub inflight: usize,
}

/// A snapshot of a member's state for observability.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub id: NodeId,
    pub term: u64,
    pub vote: NodeId,
    pub role: Role,
    pub leader: Option<NodeId>,
    pub commit: u64,
    pub applied: u64,
    pub persisted: u64,
    pub last_index: u64,
    pub snapshot_index: u64,
    pub conf: ConfState,
    /// Leader only.
    pub progress: BTreeMap<NodeId, ProgressStatus>,
    pub lead_transferee: Option<NodeId>,
}

#[derive(Debug, Clone, Copy)]
struct PendingRead {
    ctx: u64,
    from: NodeId,
    index: u64,
    round: u64,
}

#[derive(Debug)]
pub struct RaftNode {
    id: NodeId,
    cfg: Config,
    term: u64,
    vote: NodeId,
    log: RaftLog,
    role: Role,
    leader: Option<NodeId>,
    voters: BTreeSet<NodeId>,
    learners: BTreeSet<NodeId>,
    /// (index, membership in force from that index on); the first element is the
    /// base at the snapshot index. Lets `compact` name the membership at any
    /// retained committed index.
    conf_history: Vec<(u64, ConfState)>,
    /// Leader: every member's progress, including its own (matched = persisted).
    progress: BTreeMap<NodeId, Progress>,
    /// (Pre-)candidate: answers received this election.
    votes: BTreeMap<NodeId, bool>,
    election_elapsed: u32,
    heartbeat_elapsed: u32,
    randomized_election_timeout: u32,
    rng: Rng,
    /// Leader: index of the latest membership change it may have in flight.
    pending_conf_index: u64,
    lead_transferee: Option<NodeId>,
    /// Leader: appends to broadcast at the next `ready()` (batches proposals).
    pending_bcast: bool,
    /// Leader: the latest read round (heartbeat ctx) and whether its heartbeats
    /// are still unsent (then a new read can join that round).
    read_round: u64,
    read_round_unsent: bool,
    pending_reads: VecDeque<PendingRead>,
    /// Leader: reads received before the first commit of its term, (ctx, from).
    waiting_reads: VecDeque<(u64, NodeId)>,
    msgs: Vec<Message>,
    msgs_after_persist: Vec<Message>,
    read_states: Vec<ReadState>,
    prev_soft: SoftState,
    prev_hs: HardState,
}

impl RaftNode {
    pub fn new(cfg: Config, restored: Restored) -> Result<RaftNode, RaftError> {
        cfg.validate()?;
        let Restored {
            hard_state: hs,
            snapshot,
            entries,
            applied,
        } = restored;
        let fresh = hs == HardState::default() && snapshot.is_none() && entries.is_empty();
        let snap = snapshot.unwrap_or_default();
        let entries: Vec<Entry> = entries
            .into_iter()
            .filter(|e| e.index > snap.index)
            .collect();
        let mut prev_term = snap.term;
        for (expect, e) in (snap.index + 1..).zip(&entries) {
            if e.index != expect {
                return Err(RaftError::InvalidRestore(format!(
                    "entry index {} where {} was expected",
                    e.index, expect
                )));
            }
            if e.term < prev_term {
                return Err(RaftError::InvalidRestore(format!(
                    "term decreases at index {}",
                    e.index
                )));
            }
            prev_term = e.term;
        }
        let mut log = RaftLog::new(snap.index, snap.term);
        log.restore_entries(entries);
        if hs.commit > log.last_index() {
            return Err(RaftError::InvalidRestore(format!(
                "commit {} beyond the last persisted entry {}",
                hs.commit,
                log.last_index()
            )));
        }
        // A torn last write may keep entries of a term whose hard state record was
        // lost; nothing of that write was acknowledged, so adopt the term, no vote.
        let term = hs.term.max(log.last_term());
        let vote = if term == hs.term { hs.vote } else { 0 };
        let seed = cfg.seed ^ cfg.id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut node = RaftNode {
            id: cfg.id,
            term,
            vote,
            log,
            role: Role::Follower,
            leader: None,
            voters: snap.conf.voters.iter().copied().collect(),
            learners: snap.conf.learners.iter().copied().collect(),
            conf_history: vec![(snap.index, snap.conf.clone())],
            progress: BTreeMap::new(),
            votes: BTreeMap::new(),
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            randomized_election_timeout: cfg.election_ticks,
            rng: Rng::new(seed),
            pending_conf_index: 0,
            lead_transferee: None,
            pending_bcast: false,
            read_round: 0,
            read_round_unsent: false,
            pending_reads: VecDeque::new(),
            waiting_reads: VecDeque::new(),
            msgs: Vec::new(),
            msgs_after_persist: Vec::new(),
            read_states: Vec::new(),
            prev_soft: SoftState::default(),
            prev_hs: hs,
            cfg,
        };
        let mut commit = hs.commit.max(snap.index);
        if fresh && !node.cfg.voters.is_empty() {
            let mut voters = node.cfg.voters.clone();
            let mut learners = node.cfg.learners.clone();
            voters.sort_unstable();
            learners.sort_unstable();
            node.term = 1;
            node.log.append_local(Entry {
                term: 1,
                index: 1,
                kind: EntryKind::ConfChange,
                data: ConfChange::Bootstrap(ConfState { voters, learners }).encode(),
            });
            commit = 1;
        }
        node.commit_to(commit);
        let applied = applied.clamp(node.log.snapshot_index(), node.log.committed);
        node.log.applied = applied;
        node.log.applying = applied;
        node.become_follower(node.term, None);
        Ok(node)
    }

    // ---------------------------------------------------------------- accessors

    pub fn id(&self) -> NodeId {
        self.id
    }
    pub fn term(&self) -> u64 {
        self.term
    }
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }
    pub fn role(&self) -> Role {
        self.role
    }
    pub fn commit_index(&self) -> u64 {
        self.log.committed
    }
    pub fn applied_index(&self) -> u64 {
        self.log.applied
    }
    pub fn last_index(&self) -> u64 {
        self.log.last_index()
    }
    pub fn snapshot_index(&self) -> u64 {
        self.log.snapshot_index()
    }
    pub fn voters(&self) -> Vec<NodeId> {
        self.voters.iter().copied().collect()
    }
    pub fn learners(&self) -> Vec<NodeId> {
        self.learners.iter().copied().collect()
    }
    pub fn conf_state(&self) -> ConfState {
        ConfState {
            voters: self.voters(),
            learners: self.learners(),
        }
    }
    pub fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.log.committed,
        }
    }
    pub fn soft_state(&self) -> SoftState {
        SoftState {
            leader: self.leader,
            role: self.role,
        }
    }

    pub fn status(&self) -> Status {
        let progress = self
            .progress
            .iter()
            .map(|(&id, pr)| {
                let st = ProgressStatus {
                    matched: pr.matched,
                    next: pr.next,
                    state: pr.state,
                    inflight: pr.inflight_count(),
                };
                (id, st)
            })
            .collect();
        Status {
            id: self.id,
            term: self.term,
            vote: self.vote,
            role: self.role,
            leader: self.leader,
            commit: self.log.committed,
            applied: self.log.applied,
            persisted: self.log.persisted,
            last_index: self.log.last_index(),
            snapshot_index: self.log.snapshot_index(),
            conf: self.conf_state(),
            progress,
            lead_transferee: self.lead_transferee,
        }
    }

    // ---------------------------------------------------------------- inputs

    /// One unit of logical time.
    pub fn tick(&mut self) {
        if self.role == Role::Leader {
            self.tick_leader();
        } else {
            self.election_elapsed = self.election_elapsed.saturating_add(1);
            if self.promotable() && self.election_elapsed >= self.randomized_election_timeout {
                self.election_elapsed = 0;
                self.hup(false);
            }
        }
    }

    /// Start an election now (as if the election timeout had fired).
    pub fn campaign(&mut self) -> Result<(), RaftError> {
        if !self.promotable() {
            return Err(RaftError::NotVoter);
        }
        self.hup(false);
        Ok(())
    }

    /// Append a client proposal (on the leader) or forward it to the leader.
    /// Identification of the proposal is the caller's business (inside `data`).
    pub fn propose(&mut self, data: Vec<u8>) -> Result<(), RaftError> {
        if self.role == Role::Leader {
            self.check_can_append()?;
            self.append_entry(EntryKind::Normal, data);
            return Ok(());
        }
        let Some(leader) = self.leader else {
            return Err(RaftError::NoLeader);
        };
        // Batch into the previous forward if it has not been drained yet.
        if let Some(Message {
            to,
            body: MessageBody::Propose { data: batch },
            ..
        }) = self.msgs.last_mut()
        {
            if *to == leader && batch.len() < self.cfg.max_entries_per_append {
                batch.push(data);
                return Ok(());
            }
        }
        self.send(leader, MessageBody::Propose { data: vec![data] });
        Ok(())
    }

    /// Propose a membership change (leader only; one at a time).
    pub fn propose_conf_change(&mut self, cc: ConfChange) -> Result<(), RaftError> {
        self.propose_conf_change_with_context(cc, &[])
    }

    /// As `propose_conf_change`, with an opaque context committed in the same entry
    /// (see `ConfChange::encode_with_context`).
    pub fn propose_conf_change_with_context(&mut self, cc: ConfChange, context: &[u8]) -> Result<(), RaftError> {
        if self.role != Role::Leader {
            return Err(RaftError::NotLeader {
                leader: self.leader,
            });
        }
        if self.pending_conf_index > self.log.applied {
            return Err(RaftError::ConfChangeInProgress);
        }
        self.check_can_append()?;
        let member = |id: &NodeId| self.voters.contains(id) || self.learners.contains(id);
        match &cc {
            ConfChange::AddVoter(0) | ConfChange::AddLearner(0) => {
                return Err(RaftError::InvalidConfChange("node id 0"));
            }
            ConfChange::AddVoter(id) if self.voters.contains(id) => {
                return Err(RaftError::InvalidConfChange("already a voter"));
            }
            ConfChange::AddLearner(id) if member(id) => {
                return Err(RaftError::InvalidConfChange("already a member"));
            }
            ConfChange::PromoteLearner(id) if !self.learners.contains(id) => {
                return Err(RaftError::InvalidConfChange("not a learner"));
            }
            ConfChange::Remove(id) if !member(id) => {
                return Err(RaftError::InvalidConfChange("not a member"));
            }
            ConfChange::Remove(id) if self.voters.len() == 1 && self.voters.contains(id) => {
                return Err(RaftError::InvalidConfChange("cannot remove the last voter"));
            }
            ConfChange::Bootstrap(_) => {
                return Err(RaftError::InvalidConfChange(
                    "bootstrap is written by the core only",
                ));
            }
            _ => {}
        }
        self.append_entry(EntryKind::ConfChange, cc.encode_with_context(context));
        self.pending_conf_index = self.log.last_index();
        Ok(())
    }

    /// Request a linearizable read point (Raft thesis §6.4). The answer arrives as
    /// a `ReadState { ctx, index }` in a later `Ready`, or never (leader change,
    /// lost message): the caller times out and retries.
    pub fn read_index(&mut self, ctx: u64) -> Result<(), RaftError> {
        if self.role == Role::Leader {
            return self.leader_read(ctx, self.id);
        }
        match self.leader {
            Some(leader) => {
                self.send(leader, MessageBody::ReadIndex { ctx });
                Ok(())
            }
            None => Err(RaftError::NoLeader),
        }
    }

    /// Hand leadership to `target` (Raft thesis §3.10): stop accepting proposals,
    /// bring the target up to date, then tell it to campaign at once. Abandoned
    /// after an election timeout.
    pub fn transfer_leader(&mut self, target: NodeId) -> Result<(), RaftError> {
        if self.role != Role::Leader {
            return Err(RaftError::NotLeader {
                leader: self.leader,
            });
        }
        if target == self.id || self.lead_transferee == Some(target) {
            return Ok(());
        }
        if !self.voters.contains(&target) {
            return Err(RaftError::InvalidTransferTarget(target));
        }
        self.lead_transferee = Some(target);
        self.election_elapsed = 0;
        let last = self.log.last_index();
        if self
            .progress
            .get(&target)
            .is_some_and(|pr| pr.matched == last)
        {
            self.send(target, MessageBody::TimeoutNow);
        } else {
            self.send_append(target, true);
        }
        Ok(())
    }

    /// The sending actor's report on a snapshot it was asked to stream.
    pub fn report_snapshot(&mut self, to: NodeId, ok: bool) {
        if self.role != Role::Leader {
            return;
        }
        if let Some(pr) = self.progress.get_mut(&to) {
            if pr.state == ProgressState::Snapshot {
                if !ok {
                    pr.pending_snapshot = 0;
                }
                pr.become_probe();
                // Wait for the follower's answer (or a heartbeat) before probing.
                pr.probe_sent = true;
            }
        }
    }

    /// The transport could not reach `to`: stop pipelining to it.
    pub fn report_unreachable(&mut self, to: NodeId) {
        if let Some(pr) = self.progress.get_mut(&to) {
            if pr.state == ProgressState::Replicate {
                pr.become_probe();
            }
        }
    }

    /// The durable part of the Ready that produced `ack` (and of every earlier one)
    /// is on disk.
    pub fn on_persisted(&mut self, ack: PersistAck) {
        let hs = ack.hard_state;
        if self.role == Role::Candidate && hs.term == self.term && hs.vote == self.id {
            if let std::collections::btree_map::Entry::Vacant(v) = self.votes.entry(self.id) {
                v.insert(true);
                self.check_election();
            }
        }
        self.log.stable_to(ack.last_index, ack.last_term);
        if self.role == Role::Leader {
            let persisted = self.log.persisted;
            if let Some(pr) = self.progress.get_mut(&self.id) {
                pr.maybe_update(persisted);
            }
            self.maybe_commit();
        }
    }

    /// The state machine has applied everything up to `index` (which it was handed
    /// in `Ready::committed` or `Ready::snapshot`).
    pub fn on_applied(&mut self, index: u64) {
        assert!(
            index <= self.log.applying,
            "raft: on_applied({index}) beyond what was handed out for applying ({})",
            self.log.applying
        );
        if index > self.log.applied {
            self.log.applied = index;
        }
    }

    /// Drop the log up to `index`, which the caller's state machine snapshot
    /// covers. Returns the metadata to store with that snapshot.
    pub fn compact(&mut self, index: u64) -> Result<SnapshotMeta, RaftError> {
        let meta = self.snapshot_meta_at(index)?;
        let SnapshotMeta { index, term, .. } = meta;
        self.log.compact_to(index, term);
        let keep_from = self
            .conf_history
            .iter()
            .rposition(|(i, _)| *i <= index)
            .unwrap_or(0);
        self.conf_history.drain(..keep_from);
        Ok(meta)
    }

    /// The metadata a snapshot of the state machine at the applied `index` would
    /// carry (term and membership there), without compacting: `index` must still
    /// be in the log.
    pub fn snapshot_meta_at(&self, index: u64) -> Result<SnapshotMeta, RaftError> {
        let snapshot_index = self.log.snapshot_index();
        if index <= snapshot_index {
            return Err(RaftError::Compacted { snapshot_index });
        }
        if index > self.log.applied {
            return Err(RaftError::NotApplied {
                index,
                applied: self.log.applied,
            });
        }
        let term = self
            .log
            .term(index)
            .expect("raft: applied entry missing from the log");
        Ok(SnapshotMeta { index, term, conf: self.conf_at(index) })
    }

    /// The metadata of the current log base (the last compaction or installed
    /// snapshot).
    pub fn snapshot_meta(&self) -> SnapshotMeta {
        let index = self.log.snapshot_index();
        SnapshotMeta {
            index,
            term: self.log.snapshot_term(),
            conf: self.conf_at(index),
        }
    }

    pub fn has_ready(&self) -> bool {
        self.soft_state() != self.prev_soft
            || self.hard_state() != self.prev_hs
            || self.log.pending_snapshot.is_some()
            || self.log.has_unstable()
            || !self.msgs.is_empty()
            || !self.msgs_after_persist.is_empty()
            || !self.read_states.is_empty()
            || self.log.has_committed_to_hand_out()
            || (self.pending_bcast && self.role == Role::Leader)
    }

    /// Drain everything the caller must do next (see the module docs).
    pub fn ready(&mut self) -> Ready {
        if self.pending_bcast && self.role == Role::Leader {
            self.bcast_append();
        }
        self.pending_bcast = false;
        let mut rd = Ready::default();
        let soft = self.soft_state();
        if soft != self.prev_soft {
            rd.soft_state = Some(soft);
            self.prev_soft = soft;
        }
        let hs = self.hard_state();
        if hs != self.prev_hs {
            assert!(hs.term >= self.prev_hs.term, "raft: term went backwards");
            rd.hard_state = Some(hs);
            self.prev_hs = hs;
        }
        rd.snapshot = self.log.pending_snapshot.take();
        rd.entries = self.log.take_unstable();
        rd.messages = std::mem::take(&mut self.msgs);
        rd.messages_after_persist = std::mem::take(&mut self.msgs_after_persist);
        rd.committed = self.log.take_committed(self.cfg.max_committed_per_ready);
        rd.read_states = std::mem::take(&mut self.read_states);
        self.read_round_unsent = false;
        if rd.hard_state.is_some()
            || rd.snapshot.is_some()
            || !rd.entries.is_empty()
            || !rd.messages_after_persist.is_empty()
        {
            let last_index = self.log.unstable_from - 1;
            let last_term = self.log.term(last_index).unwrap_or(0);
            rd.persist_ack = Some(PersistAck {
                last_index,
                last_term,
                hard_state: self.prev_hs,
            });
        }
        self.assert_invariants();
        rd
    }

    /// Process one message from a peer. Stale, misrouted or malformed messages are
    /// ignored or answered; they never cause an error.
    pub fn step(&mut self, m: Message) -> Result<(), RaftError> {
        if m.to != self.id || m.from == 0 || m.from == self.id {
            return Ok(());
        }
        if m.term > self.term {
            if let MessageBody::Vote { force, .. } = m.body {
                // Leader stickiness (Raft thesis §4.2.3): while we hear from a
                // leader, a disruptive candidate gets no vote and no term bump.
                let in_lease = self.cfg.check_quorum
                    && self.leader.is_some()
                    && self.election_elapsed < self.cfg.election_ticks;
                if in_lease && !force {
                    return Ok(());
                }
            }
            match m.body {
                // A pre-vote (or a grant of one) changes nobody's term (§9.6).
                MessageBody::Vote { pre: true, .. } => {}
                MessageBody::VoteResponse {
                    pre: true,
                    reject: false,
                } => {}
                MessageBody::Append { .. }
                | MessageBody::Heartbeat { .. }
                | MessageBody::Snapshot { .. } => {
                    self.become_follower(m.term, Some(m.from));
                }
                _ => self.become_follower(m.term, None),
            }
        } else if m.term < self.term {
            match m.body {
                // A stale leader (e.g. back from a partition) must learn the new
                // term, or it would keep trying and never step down.
                MessageBody::Append { .. } | MessageBody::Heartbeat { .. }
                    if self.cfg.check_quorum || self.cfg.pre_vote =>
                {
                    self.send(
                        m.from,
                        MessageBody::AppendResponse {
                            index: 0,
                            reject: false,
                            hint_index: 0,
                            hint_term: 0,
                        },
                    );
                }
                // Tell a pre-candidate it is behind, so it can catch up.
                MessageBody::Vote { pre: true, .. } => {
                    self.send(
                        m.from,
                        MessageBody::VoteResponse {
                            pre: true,
                            reject: true,
                        },
                    );
                }
                _ => {}
            }
            return Ok(());
        }

        let from = m.from;
        let msg_term = m.term;
        match m.body {
            MessageBody::Vote {
                pre,
                last_index,
                last_term,
                ..
            } => {
                self.handle_vote(from, msg_term, pre, last_index, last_term);
            }
            MessageBody::VoteResponse { pre, reject } => {
                let counts = match self.role {
                    Role::PreCandidate => pre && (reject || msg_term == self.term + 1),
                    Role::Candidate => !pre,
                    _ => false,
                };
                if counts {
                    self.votes.entry(from).or_insert(!reject);
                    self.check_election();
                }
            }
            MessageBody::Append {
                prev_index,
                prev_term,
                entries,
                commit,
            } => {
                if self.role == Role::Leader {
                    return Ok(()); // Cannot happen: one leader per term.
                }
                self.become_follower_of(from);
                self.handle_append(from, prev_index, prev_term, &entries, commit);
            }
            MessageBody::Heartbeat { commit, ctx } => {
                if self.role == Role::Leader {
                    return Ok(());
                }
                self.become_follower_of(from);
                let commit = commit.min(self.log.last_index());
                self.commit_to(commit);
                self.send(from, MessageBody::HeartbeatResponse { ctx });
            }
            MessageBody::Snapshot { meta } => {
                if self.role == Role::Leader {
                    return Ok(());
                }
                self.become_follower_of(from);
                self.handle_snapshot(from, meta);
            }
            MessageBody::AppendResponse {
                index,
                reject,
                hint_index,
                hint_term,
            } => {
                if self.role == Role::Leader {
                    self.handle_append_response(from, index, reject, hint_index, hint_term);
                }
            }
            MessageBody::HeartbeatResponse { ctx } => {
                if self.role == Role::Leader {
                    self.handle_heartbeat_response(from, ctx);
                }
            }
            MessageBody::TimeoutNow => {
                if self.role != Role::Leader && self.promotable() {
                    self.hup(true);
                }
            }
            MessageBody::Propose { data } => {
                // Only a leader appends; followers do not re-forward (no loops).
                if self.role == Role::Leader {
                    for d in data {
                        if self.check_can_append().is_err() {
                            break;
                        }
                        self.append_entry(EntryKind::Normal, d);
                    }
                }
            }
            MessageBody::ReadIndex { ctx } => {
                if self.role == Role::Leader {
                    // A full queue drops the request; the follower's caller retries.
                    let _ = self.leader_read(ctx, from);
                }
            }
            MessageBody::ReadIndexResponse { ctx, index } => {
                if self.role != Role::Leader {
                    self.read_states.push(ReadState { ctx, index });
                }
            }
        }
        Ok(())
    }

    // ---------------------------------------------------------------- roles

    fn promotable(&self) -> bool {
        self.voters.contains(&self.id)
    }

    fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    fn reset(&mut self) {
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        let e = u64::from(self.cfg.election_ticks);
        self.randomized_election_timeout = self.rng.range(e, 2 * e) as u32;
        self.votes.clear();
        self.progress.clear();
        self.lead_transferee = None;
        self.pending_bcast = false;
        self.read_round = 0;
        self.read_round_unsent = false;
        self.pending_reads.clear();
        self.waiting_reads.clear();
    }

    fn become_follower(&mut self, term: u64, leader: Option<NodeId>) {
        assert!(
            term >= self.term,
            "raft: term going backwards ({} -> {term})",
            self.term
        );
        if term > self.term {
            self.term = term;
            self.vote = 0;
        }
        self.role = Role::Follower;
        self.leader = leader;
        self.reset();
    }

    /// A message from the leader of our term arrived.
    fn become_follower_of(&mut self, leader: NodeId) {
        if self.role != Role::Follower {
            self.become_follower(self.term, Some(leader));
        }
        self.leader = Some(leader);
        self.election_elapsed = 0;
    }

    /// The election timeout fired (or `campaign`/`TimeoutNow`). `transfer`: skip
    /// pre-vote and ask voters to ignore their leader lease.
    fn hup(&mut self, transfer: bool) {
        if self.role == Role::Leader || !self.promotable() {
            return;
        }
        if self.cfg.pre_vote && !transfer {
            self.campaign_pre();
        } else {
            self.campaign_real(transfer);
        }
    }

    /// Thesis §9.6: ask whether we could win before disrupting anyone's term.
    fn campaign_pre(&mut self) {
        self.role = Role::PreCandidate;
        self.leader = None;
        self.reset();
        self.request_votes(true, false);
    }

    fn campaign_real(&mut self, force: bool) {
        self.term += 1;
        self.vote = self.id;
        self.role = Role::Candidate;
        self.leader = None;
        self.reset();
        // Our own vote counts once the hard state carrying it is durable
        // (`on_persisted`): a vote forgotten in a crash could be cast twice.
        self.request_votes(false, force);
    }

    fn request_votes(&mut self, pre: bool, force: bool) {
        let term = if pre { self.term + 1 } else { self.term };
        let (last_index, last_term) = (self.log.last_index(), self.log.last_term());
        let voters: Vec<NodeId> = self
            .voters
            .iter()
            .copied()
            .filter(|&v| v != self.id)
            .collect();
        for v in voters {
            self.msgs.push(Message {
                from: self.id,
                to: v,
                term,
                body: MessageBody::Vote {
                    pre,
                    last_index,
                    last_term,
                    force,
                },
            });
        }
        if pre {
            self.votes.insert(self.id, true);
            self.check_election();
        }
    }

    fn check_election(&mut self) {
        let (mut granted, mut rejected) = (0, 0);
        for v in &self.voters {
            match self.votes.get(v) {
                Some(true) => granted += 1,
                Some(false) => rejected += 1,
                None => {}
            }
        }
        let q = self.quorum();
        let lost = rejected > self.voters.len() - q;
        match self.role {
            Role::PreCandidate if granted >= q => self.campaign_real(false),
            // Even with a quorum of other votes, wait until our own vote (and so
            // our term) is durable: a leader that forgot its term in a crash could
            // lead the same term again and write different entries at the same
            // (index, term) — found by the simulation.
            Role::Candidate if granted >= q && self.votes.get(&self.id) == Some(&true) => {
                self.become_leader()
            }
            Role::PreCandidate | Role::Candidate if lost => self.become_follower(self.term, None),
            _ => {}
        }
    }

    fn become_leader(&mut self) {
        assert_eq!(
            self.role,
            Role::Candidate,
            "raft: only a candidate becomes leader"
        );
        self.role = Role::Leader;
        self.leader = Some(self.id);
        self.reset();
        let next = self.log.last_index() + 1;
        let members: Vec<NodeId> = self
            .voters
            .iter()
            .chain(self.learners.iter())
            .copied()
            .collect();
        for id in members {
            let mut pr = Progress::new(next, self.cfg.max_inflight_appends);
            pr.recent_active = true;
            if id == self.id {
                pr.maybe_update(self.log.persisted);
                pr.become_replicate();
            }
            self.progress.insert(id, pr);
        }
        // §5.4.2 / §6.4: a no-op in our own term lets us commit (and serve reads).
        // Until it is applied no membership change is accepted: that closes the
        // single-server-change bug Ongaro described (raft-dev, 2015).
        self.append_entry(EntryKind::Normal, Vec::new());
        self.pending_conf_index = self.log.last_index();
    }

    fn tick_leader(&mut self) {
        self.heartbeat_elapsed = self.heartbeat_elapsed.saturating_add(1);
        self.election_elapsed = self.election_elapsed.saturating_add(1);
        if self.election_elapsed >= self.cfg.election_ticks {
            self.election_elapsed = 0;
            if self.cfg.check_quorum {
                let mut active = 0;
                for v in &self.voters {
                    if *v == self.id || self.progress.get(v).is_some_and(|pr| pr.recent_active) {
                        active += 1;
                    }
                }
                for (id, pr) in self.progress.iter_mut() {
                    pr.recent_active = *id == self.id;
                }
                if active < self.quorum() {
                    // §6.2 / thesis §6.2: a leader cut off from a quorum steps down
                    // so clients look elsewhere.
                    self.become_follower(self.term, None);
                    return;
                }
            }
            // A transfer that did not finish within an election timeout is abandoned.
            self.lead_transferee = None;
        }
        if self.heartbeat_elapsed >= self.cfg.heartbeat_ticks {
            self.heartbeat_elapsed = 0;
            self.bcast_heartbeat(self.read_round);
        }
    }

    // ---------------------------------------------------------------- log & commit

    fn check_can_append(&self) -> Result<(), RaftError> {
        if self.lead_transferee.is_some() {
            return Err(RaftError::ProposalDropped);
        }
        let uncommitted = self.log.last_index() - self.log.committed;
        if uncommitted >= self.cfg.max_uncommitted_entries as u64 {
            return Err(RaftError::ProposalDropped);
        }
        Ok(())
    }

    fn append_entry(&mut self, kind: EntryKind, data: Vec<u8>) {
        let index = self.log.last_index() + 1;
        self.log.append_local(Entry {
            term: self.term,
            index,
            kind,
            data,
        });
        self.pending_bcast = true;
    }

    /// Advance the commit index, applying membership changes as they commit.
    fn commit_to(&mut self, index: u64) {
        let old = self.log.committed;
        if !self.log.commit_to(index) {
            return;
        }
        let changes: Vec<(u64, ConfChange)> = self
            .log
            .range(old + 1, index)
            .iter()
            .filter(|e| e.kind == EntryKind::ConfChange)
            .filter_map(|e| ConfChange::decode(&e.data).map(|cc| (e.index, cc)))
            .collect();
        for (i, cc) in changes {
            self.apply_conf_change(i, cc);
        }
    }

    /// §5.3/§5.4.2: the leader commits the highest index a quorum has persisted, but
    /// only by counting replicas of an entry from its own term.
    fn maybe_commit(&mut self) -> bool {
        let mut advanced = false;
        while self.role == Role::Leader {
            let mut matched: Vec<u64> = self
                .voters
                .iter()
                .map(|v| self.progress.get(v).map_or(0, |pr| pr.matched))
                .collect();
            matched.sort_unstable_by(|a, b| b.cmp(a));
            let q = matched.get(self.quorum() - 1).copied().unwrap_or(0);
            if q > self.log.committed && self.log.term(q) == Some(self.term) {
                self.commit_to(q);
                advanced = true;
            } else {
                break;
            }
        }
        if advanced && self.role == Role::Leader {
            self.pending_bcast = true;
            if self.committed_in_term() && !self.waiting_reads.is_empty() {
                let waiting = std::mem::take(&mut self.waiting_reads);
                for (ctx, from) in waiting {
                    let _ = self.leader_read(ctx, from);
                }
            }
            self.release_reads();
        }
        advanced
    }

    fn committed_in_term(&self) -> bool {
        self.log.term(self.log.committed) == Some(self.term)
    }

    fn conf_at(&self, index: u64) -> ConfState {
        self.conf_history
            .iter()
            .rev()
            .find(|(i, _)| *i <= index)
            .map(|(_, cs)| cs.clone())
            .unwrap_or_default()
    }

    fn apply_conf_change(&mut self, index: u64, cc: ConfChange) {
        match cc {
            ConfChange::AddVoter(id) | ConfChange::PromoteLearner(id) if id != 0 => {
                self.learners.remove(&id);
                self.voters.insert(id);
            }
            ConfChange::AddLearner(id) if id != 0 && !self.voters.contains(&id) => {
                self.learners.insert(id);
            }
            // Never remove the last voter: a cluster without voters is dead.
            ConfChange::Remove(id) if !(self.voters.len() == 1 && self.voters.contains(&id)) => {
                self.voters.remove(&id);
                self.learners.remove(&id);
            }
            ConfChange::Bootstrap(cs) => {
                self.voters = cs.voters.iter().copied().filter(|&v| v != 0).collect();
                self.learners = cs
                    .learners
                    .iter()
                    .copied()
                    .filter(|&v| v != 0 && !self.voters.contains(&v))
                    .collect();
            }
            _ => {}
        }
        let cs = self.conf_state();
        self.conf_history.push((index, cs));
        if self.role != Role::Leader {
            return;
        }
        if !self.voters.contains(&self.id) {
            // Removed (or never a voter): a leader outside the configuration steps
            // down; the remaining voters elect a successor.
            self.become_follower(self.term, None);
            return;
        }
        let next = self.log.last_index() + 1;
        let members: BTreeSet<NodeId> = self.voters.union(&self.learners).copied().collect();
        self.progress.retain(|id, _| members.contains(id));
        for id in members {
            self.progress.entry(id).or_insert_with(|| {
                let mut pr = Progress::new(next, self.cfg.max_inflight_appends);
                pr.recent_active = true;
                pr
            });
        }
        if self
            .lead_transferee
            .is_some_and(|t| !self.voters.contains(&t))
        {
            self.lead_transferee = None;
        }
        self.pending_bcast = true;
    }

    // ---------------------------------------------------------------- replication

    fn send(&mut self, to: NodeId, body: MessageBody) {
        self.msgs.push(Message {
            from: self.id,
            to,
            term: self.term,
            body,
        });
    }

    fn send_after_persist(&mut self, to: NodeId, body: MessageBody) {
        self.msgs_after_persist.push(Message {
            from: self.id,
            to,
            term: self.term,
            body,
        });
    }

    fn bcast_append(&mut self) {
        let peers: Vec<NodeId> = self
            .progress
            .keys()
            .copied()
            .filter(|&p| p != self.id)
            .collect();
        for p in peers {
            self.send_append(p, true);
            // Fill the pipeline (bounded by the in-flight limit).
            while self.send_append(p, false) {}
        }
    }

    fn bcast_heartbeat(&mut self, ctx: u64) {
        let commit = self.log.committed;
        let peers: Vec<(NodeId, u64)> = self
            .progress
            .iter()
            .filter(|(&p, _)| p != self.id)
            .map(|(&p, pr)| (p, pr.matched))
            .collect();
        for (p, matched) in peers {
            self.send(
                p,
                MessageBody::Heartbeat {
                    commit: commit.min(matched),
                    ctx,
                },
            );
        }
    }

    /// Send `to` the entries it lacks, if flow control allows. Returns whether a
    /// message went out.
    fn send_append(&mut self, to: NodeId, send_if_empty: bool) -> bool {
        let Some(pr) = self.progress.get_mut(&to) else {
            return false;
        };
        if pr.is_paused() {
            return false;
        }
        let prev_index = pr.next - 1;
        let Some(prev_term) = self.log.term(prev_index) else {
            self.send_snapshot(to);
            return false;
        };
        let entries = self.log.slice(
            pr.next,
            self.cfg.max_entries_per_append,
            self.cfg.max_bytes_per_append,
        );
        if entries.is_empty() && !send_if_empty {
            return false;
        }
        pr.sent(
            entries.is_empty(),
            entries.last().map_or(prev_index, |e| e.index),
        );
        let commit = self.log.committed;
        self.send(
            to,
            MessageBody::Append {
                prev_index,
                prev_term,
                entries,
                commit,
            },
        );
        true
    }

    fn send_snapshot(&mut self, to: NodeId) {
        let meta = self.snapshot_meta();
        let Some(pr) = self.progress.get_mut(&to) else {
            return;
        };
        if !pr.recent_active {
            // Do not stream a snapshot to a member that may be down.
            return;
        }
        pr.become_snapshot(meta.index);
        self.send(to, MessageBody::Snapshot { meta });
    }

    fn handle_append(
        &mut self,
        from: NodeId,
        prev_index: u64,
        prev_term: u64,
        entries: &[Entry],
        commit: u64,
    ) {
        if prev_index < self.log.committed {
            let committed = self.log.committed;
            self.send_after_persist(
                from,
                MessageBody::AppendResponse {
                    index: committed,
                    reject: false,
                    hint_index: 0,
                    hint_term: 0,
                },
            );
            return;
        }
        match self.log.maybe_append(prev_index, prev_term, entries) {
            AppendOutcome::Matched(last_new) => {
                self.commit_to(commit.min(last_new));
                // Acknowledge only once the entries are durable (Figure 2: the
                // leader counts this follower toward commitment).
                self.send_after_persist(
                    from,
                    MessageBody::AppendResponse {
                        index: last_new,
                        reject: false,
                        hint_index: 0,
                        hint_term: 0,
                    },
                );
            }
            AppendOutcome::Mismatch => {
                let probe = prev_index.min(self.log.last_index());
                let (hint_index, hint_term) = self.log.find_conflict_by_term(probe, prev_term);
                self.send(
                    from,
                    MessageBody::AppendResponse {
                        index: prev_index,
                        reject: true,
                        hint_index,
                        hint_term,
                    },
                );
            }
            AppendOutcome::Invalid => {}
        }
    }

    fn handle_snapshot(&mut self, from: NodeId, meta: SnapshotMeta) {
        if meta.index <= self.log.committed {
            // Nothing new: we already have (and committed) all of it.
        } else if self.log.term(meta.index) == Some(meta.term) {
            // We hold the snapshot's last entry, so our log matches up to there.
            self.commit_to(meta.index);
        } else {
            self.log.restore(&meta);
            self.voters = meta.conf.voters.iter().copied().collect();
            self.learners = meta.conf.learners.iter().copied().collect();
            self.conf_history = vec![(meta.index, meta.conf)];
        }
        let committed = self.log.committed;
        self.send_after_persist(
            from,
            MessageBody::AppendResponse {
                index: committed,
                reject: false,
                hint_index: 0,
                hint_term: 0,
            },
        );
    }

    fn handle_append_response(
        &mut self,
        from: NodeId,
        index: u64,
        reject: bool,
        hint_index: u64,
        hint_term: u64,
    ) {
        let last = self.log.last_index();
        if index > last {
            return; // Cannot be an answer to anything we sent.
        }
        let next_probe = if reject && hint_term > 0 {
            self.log.find_conflict_by_term(hint_index, hint_term).0
        } else {
            hint_index
        };
        let Some(pr) = self.progress.get_mut(&from) else {
            return;
        };
        pr.recent_active = true;
        if reject {
            if pr.maybe_decr_to(index, next_probe) {
                if pr.state == ProgressState::Replicate {
                    pr.become_probe();
                }
                self.send_append(from, true);
            }
            return;
        }
        if !pr.maybe_update(index) {
            return;
        }
        match pr.state {
            ProgressState::Probe => pr.become_replicate(),
            ProgressState::Snapshot if pr.matched >= pr.pending_snapshot => {
                pr.become_probe();
                pr.become_replicate();
            }
            ProgressState::Snapshot => {}
            ProgressState::Replicate => pr.free_to(index),
        }
        let matched = pr.matched;
        // A commit advance is broadcast at the next ready(); meanwhile keep this
        // follower's pipeline full (bounded by the in-flight limit).
        self.maybe_commit();
        while self.send_append(from, false) {}
        if self.lead_transferee == Some(from) && matched == self.log.last_index() {
            self.send(from, MessageBody::TimeoutNow);
        }
    }

    fn handle_heartbeat_response(&mut self, from: NodeId, ctx: u64) {
        let last = self.log.last_index();
        let Some(pr) = self.progress.get_mut(&from) else {
            return;
        };
        pr.recent_active = true;
        pr.probe_sent = false;
        pr.free_first_if_full();
        if ctx > pr.read_round {
            pr.read_round = ctx.min(self.read_round);
        }
        let lagging = pr.matched < last;
        if lagging {
            self.send_append(from, true);
        }
        self.release_reads();
    }

    // ---------------------------------------------------------------- reads

    fn leader_read(&mut self, ctx: u64, from: NodeId) -> Result<(), RaftError> {
        if !self.committed_in_term() {
            // §6.4 step 1: until an entry of this term commits, our commit index
            // may be behind what earlier leaders committed.
            if self.waiting_reads.len() >= self.cfg.max_pending_reads {
                return Err(RaftError::ReadIndexQueueFull);
            }
            self.waiting_reads.push_back((ctx, from));
            return Ok(());
        }
        if self.pending_reads.len() >= self.cfg.max_pending_reads {
            return Err(RaftError::ReadIndexQueueFull);
        }
        if self.voters.len() > 1 && !self.read_round_unsent {
            // Heartbeats of an unsent round go out after this read was registered,
            // so the read can join that round (batching).
            self.read_round += 1;
            self.read_round_unsent = true;
            self.bcast_heartbeat(self.read_round);
        }
        let index = self.log.committed;
        self.pending_reads.push_back(PendingRead {
            ctx,
            from,
            index,
            round: self.read_round,
        });
        self.release_reads();
        Ok(())
    }

    /// §6.4 step 3: a read whose round a quorum has echoed was served by a leader
    /// that was still the leader after the read arrived.
    fn release_reads(&mut self) {
        if self.pending_reads.is_empty() {
            return;
        }
        let mut rounds: Vec<u64> = self
            .voters
            .iter()
            .map(|v| {
                if *v == self.id {
                    u64::MAX
                } else {
                    self.progress.get(v).map_or(0, |pr| pr.read_round)
                }
            })
            .collect();
        rounds.sort_unstable_by(|a, b| b.cmp(a));
        let confirmed = rounds.get(self.quorum() - 1).copied().unwrap_or(0);
        while self
            .pending_reads
            .front()
            .is_some_and(|r| r.round <= confirmed)
        {
            let Some(r) = self.pending_reads.pop_front() else {
                break;
            };
            if r.from == self.id {
                self.read_states.push(ReadState {
                    ctx: r.ctx,
                    index: r.index,
                });
            } else {
                self.send(
                    r.from,
                    MessageBody::ReadIndexResponse {
                        ctx: r.ctx,
                        index: r.index,
                    },
                );
            }
        }
    }

    fn handle_vote(
        &mut self,
        from: NodeId,
        msg_term: u64,
        pre: bool,
        last_index: u64,
        last_term: u64,
    ) {
        // §5.2: one vote per term (first come first served); a pre-vote for a
        // future term binds nothing.
        let can_vote = self.vote == from
            || (self.vote == 0 && self.leader.is_none())
            || (pre && msg_term > self.term);
        // §5.4.1: only for a candidate whose log is at least as up-to-date.
        if can_vote && self.log.is_up_to_date(last_index, last_term) {
            let body = MessageBody::VoteResponse { pre, reject: false };
            let reply = Message {
                from: self.id,
                to: from,
                term: msg_term,
                body,
            };
            if pre {
                self.msgs.push(reply);
            } else {
                self.vote = from;
                self.election_elapsed = 0;
                // The vote must be durable before the candidate hears of it.
                self.msgs_after_persist.push(reply);
            }
        } else {
            self.send(from, MessageBody::VoteResponse { pre, reject: true });
        }
    }

    fn assert_invariants(&self) {
        let l = &self.log;
        // (`applied` may lag the snapshot index while an installed snapshot loads.)
        assert!(
            l.applied <= l.applying && l.snapshot_index() <= l.applying && l.applying <= l.committed,
            "raft: broken invariant applied {} ≤ applying {} ≤ committed {}, snapshot {} ≤ applying",
            l.applied,
            l.applying,
            l.committed,
            l.snapshot_index(),
        );
        assert!(
            l.committed <= l.last_index(),
            "raft: committed {} > last {}",
            l.committed,
            l.last_index()
        );
        assert!(
            self.role != Role::Leader || self.leader == Some(self.id),
            "raft: leader without lead"
        );
    }

    // ---------------------------------------------------------------- test access

    #[cfg(test)]
    pub(super) fn log_entries(&self) -> &[Entry] {
        self.log.all_entries()
    }

    #[cfg(test)]
    pub(super) fn entry_at(&self, i: u64) -> Option<&Entry> {
        self.log.entry(i)
    }
}
