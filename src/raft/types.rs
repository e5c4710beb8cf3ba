//! Plain data shared by the Raft core, the WAL and the actors: log entries and the
//! hard state. No I/O and no encoding here: the WAL and the peer codec each own their
//! own byte layout of these types.

/// A member's id, as etcd derives it (64 bits, never 0).
pub type NodeId = u64;

/// What an entry's `data` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// An encoded client request (the state machine's business), or empty: the
    /// no-op a new leader appends in its own term.
    Normal,
    /// An encoded membership change, applied by the Raft core itself.
    ConfChange,
}

/// One Raft log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub term: u64,
    pub index: u64,
    pub kind: EntryKind,
    pub data: Vec<u8>,
}

/// The state Raft must persist before it answers a message (Raft paper, Figure 2:
/// currentTerm and votedFor), plus the commit index so a restart need not relearn it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HardState {
    pub term: u64,
    /// The candidate voted for in `term`; 0 for none.
    pub vote: NodeId,
    pub commit: u64,
}

/// The membership as of some log position: who votes and who only receives the log.
/// Both lists are sorted and disjoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfState {
    pub voters: Vec<NodeId>,
    pub learners: Vec<NodeId>,
}

/// What a snapshot covers: the log up to `index` (whose entry had `term`) and the
/// membership in force at `index`. The state machine data itself never passes
/// through the core: the actor stores and ships it beside this metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotMeta {
    pub index: u64,
    pub term: u64,
    pub conf: ConfState,
}

/// A member's role in the current term.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    #[default]
    Follower,
    /// Asking for pre-votes (Raft thesis §9.6) without having raised its term.
    PreCandidate,
    Candidate,
    Leader,
}

/// Volatile state worth telling the caller about when it changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SoftState {
    pub leader: Option<NodeId>,
    pub role: Role,
}

/// A confirmed linearizable read (Raft thesis §6.4): once the local state machine
/// has applied `index`, the read identified by `ctx` may be served locally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadState {
    pub ctx: u64,
    pub index: u64,
}

/// One message between members. `term` is the sender's term, except in grants of
/// pre-votes (the term being asked for) as the Raft thesis §9.6 prescribes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub from: NodeId,
    pub to: NodeId,
    pub term: u64,
    pub body: MessageBody,
}

/// Every message the core sends or accepts. Closed on purpose: the peer codec in
/// `src/net/` maps each variant to a wire frame; nothing else crosses members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageBody {
    /// Leader → follower (Figure 2 AppendEntries): `entries` follow
    /// (`prev_index`, `prev_term`); `commit` is the leader's commit index.
    Append {
        prev_index: u64,
        prev_term: u64,
        entries: Vec<Entry>,
        commit: u64,
    },
    /// Follower → leader. On success `index` is the last index now known to match
    /// the leader's log. On reject `index` is the rejected `prev_index` and
    /// (`hint_index`, `hint_term`) is the follower's last entry at or below it whose
    /// term is ≤ `prev_term`, so the leader can skip a whole term per round trip.
    AppendResponse {
        index: u64,
        reject: bool,
        hint_index: u64,
        hint_term: u64,
    },
    /// Candidate → voter (Figure 2 RequestVote). `pre`: a pre-vote, which changes
    /// nobody's term or vote. `force`: sent after `TimeoutNow` (leader transfer), so
    /// a voter that still hears from the current leader grants it anyway.
    Vote {
        pre: bool,
        last_index: u64,
        last_term: u64,
        force: bool,
    },
    VoteResponse {
        pre: bool,
        reject: bool,
    },
    /// Leader → follower. `commit` is min(follower's match, leader's commit);
    /// `ctx` is the leader's latest read round, echoed back to confirm leadership.
    Heartbeat {
        commit: u64,
        ctx: u64,
    },
    HeartbeatResponse {
        ctx: u64,
    },
    /// Leader → follower: "install the snapshot described by `meta`". The sending
    /// actor attaches the snapshot data; the receiving actor steps this message only
    /// once all of the data is stored locally.
    Snapshot {
        meta: SnapshotMeta,
    },
    /// Leader → transfer target: campaign now, skipping pre-vote and leases.
    TimeoutNow,
    /// Follower → leader: client proposals (normal entries) to append.
    Propose {
        data: Vec<Vec<u8>>,
    },
    /// Follower → leader: confirm leadership and tell me the read index for `ctx`.
    ReadIndex {
        ctx: u64,
    },
    /// Leader → follower: the answer to `ReadIndex`.
    ReadIndexResponse {
        ctx: u64,
        index: u64,
    },
}
