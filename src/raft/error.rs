//! The Raft core's one error type. Peers can never cause these: a bad or stale peer
//! message is ignored or answered, not reported. These are answers to the local
//! caller (proposals, reads, membership changes, compaction, configuration).

use super::types::NodeId;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RaftError {
    /// Only the leader can do this; `leader` is the leader this member knows of.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    /// No leader is known, so a proposal or read cannot even be forwarded.
    #[error("no leader")]
    NoLeader,
    /// The proposal was not appended: a leader transfer is in progress or too many
    /// entries are uncommitted. Retrying later may succeed.
    #[error("proposal dropped")]
    ProposalDropped,
    /// A membership change is proposed, committed or unapplied: one at a time.
    #[error("a membership change is already in progress")]
    ConfChangeInProgress,
    /// The membership change does not make sense for the current membership.
    #[error("invalid membership change: {0}")]
    InvalidConfChange(&'static str),
    /// Too many reads wait for confirmation; retry later.
    #[error("too many pending read index requests")]
    ReadIndexQueueFull,
    /// Leader transfer target is not a voter (or is unknown).
    #[error("cannot transfer leadership to {0}: not a voter")]
    InvalidTransferTarget(NodeId),
    /// This member is not a voter, so it cannot campaign.
    #[error("not a voter")]
    NotVoter,
    /// Compaction index already compacted.
    #[error("log already compacted to {snapshot_index}")]
    Compacted { snapshot_index: u64 },
    /// Compaction index not yet applied by the state machine.
    #[error("cannot compact to {index}: only {applied} applied")]
    NotApplied { index: u64, applied: u64 },
    /// The configuration is unusable.
    #[error("invalid config: {0}")]
    InvalidConfig(&'static str),
    /// The persisted state handed to `RaftNode::new` is inconsistent (a WAL bug or
    /// corruption): refuse to start rather than run with a forgotten log.
    #[error("invalid persisted state: {0}")]
    InvalidRestore(String),
}
