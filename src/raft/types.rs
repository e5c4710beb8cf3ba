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
