//! The peer transport: how Raft messages travel between members over TCP.
//!
//! Owns the peer wire format ([`codec`]), one outbound link per remote member
//! ([`PeerActor`]) and the inbound side of the peer port ([`PeerListener`]). It
//! moves `crate::raft::Message`s, and the lease keep-alives followers relay to
//! the leader ([`LeaseRelay`]; see "Lease relay" below), and nothing else: it
//! never looks inside them
//! beyond `from` / `to`, never retries on Raft's behalf (Raft retransmits; a
//! message lost while a link is down is dropped and reported as [`Unreachable`]),
//! and never blocks an actor's event loop (all socket I/O is async, on tasks).
//!
//! Only [`codec`] knows the byte layout (and that bincode produces it): the Raft
//! types derive no serialization traits, so a change to the wire is a change to
//! that one file.
//!
//! Every queue and buffer here is bounded by [`PeerLimits`]: a slow or dead peer
//! costs at most `queue_messages_max` queued messages (and one queued snapshot),
//! a corrupt or hostile frame costs at most `frame_bytes_max` bytes of buffer
//! before it is refused, and a snapshot being received costs at most the bytes
//! of it that have arrived (never more than `snapshot_bytes_max`).
//!
//! # Snapshots
//!
//! A follower behind the leader's compacted log needs the leader's whole state
//! machine: the Raft `Snapshot` message plus the dump ([`SendSnapshot`] on the
//! sending side, [`InboundSnapshot`] on the receiving side). The dump streams
//! in chunks of `snapshot_chunk_bytes` (1 MiB by default), each a frame of its own
//! (codec tag 3; the message rides in the first chunk), on the link's one
//! connection. Between two chunks the link writes whatever Raft messages are
//! queued, so heartbeats and appends wait for at most one chunk, not for the
//! whole dump (a big dump must not cost the leader its followers' acks, and with
//! them check-quorum). A dump is at most `snapshot_bytes_max` (1 GiB by
//! default); a larger one is refused on the sending side with an error log.
//!
//! Order: messages queued *before* a `SendSnapshot` are written before its first
//! chunk; messages queued *after* it may overtake its later chunks, and so reach
//! the Raft actor before the snapshot. That is safe: the listener delivers the
//! snapshot only once it is complete (the Raft actor installs it, then steps the
//! message), and until then the follower's core judges the overtaking messages
//! against its old log like any others: a heartbeat or an append that does not
//! match is rejected (the leader learns nothing wrong: its progress for the
//! follower is in snapshot state until the snapshot's outcome, and a rejection
//! only moves it back to probing), one that matches is simply accepted. Raft
//! never depends on the transport's order for safety, only for efficiency.
//!
//! # Lease relay
//!
//! Lease deadlines live in the leader's memory, so a keep-alive that reaches a
//! follower is relayed to the leader on the follower's link ([`SendLeaseRelay`],
//! a frame of its own, in queue order with the messages) and answered on the
//! leader's link back ([`InboundLeaseRelay`] on each side). Like a message, a
//! relay frame is dropped while a link is down: the follower's client service
//! asks again after a second (see `ClientService::lease_keep_alive`).
//!
//! Each `SendSnapshot` is answered by one [`SnapshotSent`], which the Raft actor
//! reports to its core: `ok` once every chunk is written to the socket, not `ok`
//! when refused or lost (link down mid-stream, queue full, actor stopped). `ok`
//! does not mean installed: the receiver never writes, so a snapshot it drops
//! (see [`PeerListener`] for why it would) is retried when the leader's core
//! next decides the follower needs one. One snapshot is in flight per link.

pub mod actor;
pub mod codec;
pub mod listener;

#[cfg(test)]
mod tests;

use std::time::Duration;

use crate::raft::NodeId;

pub use actor::{PeerActor, PeerLinkConfig, SendLeaseRelay, SendMessages, SendSnapshot, SnapshotSent, Unreachable};
pub use codec::{KeepAliveOutcome, LeaseRelay};
pub use listener::{Deliveries, InboundLeaseRelay, InboundMessages, InboundSnapshot, PeerListener};

/// Why a peer connection, frame or handshake failed. Every one of these ends the
/// connection it happened on (after a log line); none of them stops the member.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("peer socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame of {len_bytes} bytes exceeds the limit of {max_bytes} bytes")]
    FrameTooLarge { len_bytes: u64, max_bytes: u32 },
    #[error(
        "frame checksum mismatch: header says {expected:#010x}, payload hashes to {actual:#010x}"
    )]
    ChecksumMismatch { expected: u32, actual: u32 },
    #[error("frame truncated: expected {expected_bytes} bytes, got {got_bytes}")]
    Truncated { expected_bytes: u64, got_bytes: u64 },
    /// The payload passed its checksum but is not a frame this version understands
    /// (unknown variant, bad bool, length past the end, over the decode budget…).
    #[error("undecodable frame payload: {0}")]
    Undecodable(String),
    #[error("frame payload has {trailing_bytes} bytes after the frame")]
    TrailingBytes { trailing_bytes: usize },
    #[error("cannot encode frame: {0}")]
    Encode(String),
    #[error("handshake refused: {0}")]
    HandshakeRefused(#[from] HandshakeRefusal),
    #[error("peer url {url:?}: {reason}")]
    BadPeerUrl { url: String, reason: &'static str },
    #[error(
        "frame limit of {requested_bytes} bytes is above the ceiling of {ceiling_bytes} bytes"
    )]
    FrameLimitAboveCeiling {
        requested_bytes: u32,
        ceiling_bytes: u32,
    },
    #[error("peer limit {0} must be at least 1")]
    LimitZero(&'static str),
    #[error("a second handshake on an established connection")]
    UnexpectedHandshake,
    /// The listener side never writes: anything it sends is a protocol error.
    #[error("the listener sent {0} bytes; it must never write")]
    UnexpectedData(usize),
    #[error("connection closed by the remote member")]
    ConnectionClosed,
    #[error("no connection within {0:?}")]
    ConnectTimeout(Duration),
    #[error("write not finished within {0:?}")]
    WriteTimeout(Duration),
    /// The actor inbound messages go to has stopped.
    #[error("the inbound message recipient has stopped")]
    RecipientGone,
}

/// Why the listener refused a connection's handshake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeRefusal {
    #[error("protocol version {got}, this member speaks {want}")]
    ProtocolVersion { got: u32, want: u32 },
    #[error("cluster id {got:x}, this member belongs to {want:x}")]
    ClusterMismatch { got: u64, want: u64 },
    #[error("member {0:x} is not in this member's member set")]
    UnknownMember(NodeId),
    #[error("sender expects member {got:x}, this is member {want:x}")]
    WrongReceiver { got: NodeId, want: NodeId },
    #[error("the first frame was not a handshake")]
    NotAHandshake,
    #[error("no handshake within {0:?}")]
    Timeout(Duration),
}

/// The bounds of the peer transport. One value for the whole member; the defaults
/// suit a LAN cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerLimits {
    /// Largest frame payload sent or accepted. A header announcing more is refused
    /// before any buffer is allocated. At most [`codec::FRAME_BYTES_CEILING`].
    pub frame_bytes_max: u32,
    /// Most messages one outbound frame carries (the batching unit).
    pub frame_messages_max: usize,
    /// Most messages queued for one remote member; past it, messages are dropped
    /// and the member reported [`Unreachable`].
    pub queue_messages_max: usize,
    /// First reconnect delay after a failure; doubled per failure up to the max.
    pub reconnect_backoff_min: Duration,
    pub reconnect_backoff_max: Duration,
    /// How long a TCP connect may take before it counts as a failure.
    pub connect_timeout: Duration,
    /// How long one frame write may take; past it the link is considered dead
    /// (a peer that stopped reading must not hold the link forever).
    pub write_timeout: Duration,
    /// How long an inbound connection may take to send its handshake.
    pub handshake_timeout: Duration,
    /// Most inbound connections served at once; more are closed on accept.
    pub inbound_connections_max: usize,
    /// Most dump bytes per snapshot chunk frame: the most a heartbeat waits behind
    /// a snapshot on the link. Clamped to what fits `frame_bytes_max` with the
    /// chunk's own header.
    pub snapshot_chunk_bytes: u32,
    /// Largest snapshot dump sent or accepted. The receiver refuses a snapshot
    /// announcing more from its first chunk, and otherwise holds only what has
    /// arrived.
    pub snapshot_bytes_max: u64,
}

/// The default [`PeerLimits::snapshot_bytes_max`]: 1 GiB.
pub const SNAPSHOT_BYTES_MAX_DEFAULT: u64 = 1024 * 1024 * 1024;

/// The default [`PeerLimits::snapshot_chunk_bytes`]: 1 MiB.
pub const SNAPSHOT_CHUNK_BYTES_DEFAULT: u32 = 1024 * 1024;

impl Default for PeerLimits {
    fn default() -> Self {
        PeerLimits {
            frame_bytes_max: codec::FRAME_BYTES_CEILING,
            frame_messages_max: 4096,
            queue_messages_max: 4096,
            reconnect_backoff_min: Duration::from_millis(50),
            reconnect_backoff_max: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
            write_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(5),
            inbound_connections_max: 128,
            snapshot_chunk_bytes: SNAPSHOT_CHUNK_BYTES_DEFAULT,
            snapshot_bytes_max: SNAPSHOT_BYTES_MAX_DEFAULT,
        }
    }
}

impl PeerLimits {
    /// Refuses limits the transport cannot honour: a frame budget above the codec's
    /// ceiling, or a zero size (a zero-capacity queue cannot exist).
    pub fn validate(&self) -> Result<(), PeerError> {
        if self.frame_bytes_max == 0 {
            return Err(PeerError::LimitZero("frame_bytes_max"));
        }
        if self.frame_messages_max == 0 {
            return Err(PeerError::LimitZero("frame_messages_max"));
        }
        if self.queue_messages_max == 0 {
            return Err(PeerError::LimitZero("queue_messages_max"));
        }
        if self.inbound_connections_max == 0 {
            return Err(PeerError::LimitZero("inbound_connections_max"));
        }
        if self.snapshot_chunk_bytes == 0 {
            return Err(PeerError::LimitZero("snapshot_chunk_bytes"));
        }
        if self.frame_bytes_max > codec::FRAME_BYTES_CEILING {
            return Err(PeerError::FrameLimitAboveCeiling {
                requested_bytes: self.frame_bytes_max,
                ceiling_bytes: codec::FRAME_BYTES_CEILING,
            });
        }
        Ok(())
    }
}
