//! `PeerListener`: the inbound side of the peer port.
//!
//! Owns the listening socket and the connections accepted on it. Each connection
//! must open with a handshake naming this cluster, a known member as sender and
//! this member as receiver; then every frame it sends is decoded and its messages
//! delivered, in order, as one [`InboundMessages`] per message frame and one
//! [`InboundSnapshot`] per completed snapshot (and one [`InboundLeaseRelay`]
//! per lease relay frame). Each delivery is awaited until
//! handled before the next frame is read, so every kind reaches the Raft actor in
//! the order it was completed even though each goes to its own recipient.
//!
//! # Snapshot reassembly
//!
//! A snapshot arrives as chunk frames (codec tag 3), possibly with message frames
//! between them, which are delivered as they come. Each connection reassembles at
//! most one snapshot at a time: a first chunk (offset 0, carrying the message
//! from the handshaken sender to this member, `total` at most
//! `snapshot_bytes_max`) starts it, and each next chunk must continue it exactly
//! (same `total`, `offset` = bytes received so far, not past `total`, no
//! message). The buffer grows as chunks arrive, never past `total` and never
//! ahead of what has arrived by more than it already holds, so a forged `total`
//! costs nothing. Once `total` bytes are in, the snapshot is delivered, once.
//! Anything else (a gap, an overlap, a changed `total`, a continuation with no
//! snapshot started, a new start while one is incomplete) drops the partial
//! snapshot with a warning, and the chunks that continue a dropped one are
//! ignored until the next start; the connection itself stays up (the frames were
//! well-formed). The sender is not told (the listener never writes): it reported
//! `ok` once it had written every chunk, and the leader's Raft core sends another
//! snapshot when the follower still needs one. A connection that ends discards
//! its partial snapshot. A whole-snapshot frame (tag 2, from a member predating
//! chunking) is still accepted, and counts as a new start.
//!
//! It must never write to a connection (the sender reads only to notice closure),
//! never step a message itself (that is the Raft actor's job), never deliver a
//! message addressed to another member or claiming another sender, and never
//! buffer more than one frame plus one partial snapshot per connection: delivery
//! waits for room in the recipient's mailbox, and while it waits the connection
//! is not read (TCP pushes back on the sender).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

use super::codec::{self, Frame, Handshake, LeaseRelay, PROTOCOL_VERSION};
use super::{HandshakeRefusal, PeerError, PeerLimits};
use crate::raft::{Message, NodeId};

/// Messages received from one remote member in one frame, addressed to this
/// member, in the order they were sent. The Raft actor steps them.
#[derive(Debug)]
pub struct InboundMessages(pub Vec<Message>);

impl actix::Message for InboundMessages {
    type Result = ();
}

/// A snapshot received from one remote member, addressed to this member: the Raft
/// message and the state machine dump it carries. The Raft actor installs the
/// dump, then steps the message.
#[derive(Debug)]
pub struct InboundSnapshot {
    pub message: Message,
    pub data: Vec<u8>,
}

impl actix::Message for InboundSnapshot {
    type Result = ();
}

/// A lease relay frame (a keep-alive or its answer) from member `from`, the
/// handshaken sender of the connection it came on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboundLeaseRelay {
    pub from: NodeId,
    pub relay: LeaseRelay,
}

impl actix::Message for InboundLeaseRelay {
    type Result = ();
}

/// Where a listener hands what it receives: in the Raft actor, all three.
pub struct Deliveries {
    pub messages: Recipient<InboundMessages>,
    pub snapshots: Recipient<InboundSnapshot>,
    pub lease_relays: Recipient<InboundLeaseRelay>,
}

/// A handshake frame is ~35 bytes; before a connection has identified itself it
/// may not make us buffer more than this.
const HANDSHAKE_FRAME_BYTES_MAX: u32 = 256;

/// After a failed accept (out of file descriptors, say), wait this long before
/// the next, rather than spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// A running peer listener. Dropping it (or [`PeerListener::stop`]) closes the
/// listening socket and every connection accepted on it.
pub struct PeerListener {
    local_addr: SocketAddr,
    members: watch::Sender<Arc<HashSet<NodeId>>>,
    /// Never sent on: dropping it is the stop signal every task watches.
    _shutdown: watch::Sender<()>,
}

/// What every connection task shares (read-only).
struct ListenerShared {
    cluster_id: u64,
    local_member_id: NodeId,
    limits: PeerLimits,
    deliver: Deliveries,
    /// Bytes read from each remote member, by its hex id (etcd's
    /// `peer_received_bytes_total{From}`).
    received_bytes: Option<prometheus::IntCounterVec>,
}

impl PeerListener {
    /// Starts accepting on `listener` with the default [`PeerLimits`]. `members` is
    /// the set of member ids allowed to connect; it need not contain the local id.
    /// What arrives goes to `deliver`. Must be called inside an actix system (the
    /// tasks run on the current arbiter).
    pub fn start(
        listener: std::net::TcpListener,
        cluster_id: u64,
        local_member_id: NodeId,
        members: impl IntoIterator<Item = NodeId>,
        deliver: Deliveries,
    ) -> Result<PeerListener, PeerError> {
        Self::start_with_limits(listener, cluster_id, local_member_id, members, deliver, PeerLimits::default())
    }

    /// [`PeerListener::start`] with explicit limits.
    pub fn start_with_limits(
        listener: std::net::TcpListener,
        cluster_id: u64,
        local_member_id: NodeId,
        members: impl IntoIterator<Item = NodeId>,
        deliver: Deliveries,
        limits: PeerLimits,
    ) -> Result<PeerListener, PeerError> {
        Self::start_counted(listener, cluster_id, local_member_id, members, deliver, limits, None)
    }

    /// [`PeerListener::start_with_limits`], counting the bytes read from each
    /// remote member (label: its hex id) in `received_bytes`.
    pub fn start_counted(
        listener: std::net::TcpListener,
        cluster_id: u64,
        local_member_id: NodeId,
        members: impl IntoIterator<Item = NodeId>,
        deliver: Deliveries,
        limits: PeerLimits,
        received_bytes: Option<prometheus::IntCounterVec>,
    ) -> Result<PeerListener, PeerError> {
        limits.validate()?;
        listener.set_nonblocking(true)?;
        let local_addr = listener.local_addr()?;
        let listener = TcpListener::from_std(listener)?;
        let (members_tx, members_rx) = watch::channel(Arc::new(members.into_iter().collect()));
        let (shutdown_tx, shutdown_rx) = watch::channel(());
        let shared = Arc::new(ListenerShared {
            cluster_id,
            local_member_id,
            limits,
            deliver,
            received_bytes,
        });
        tracing::info!(
            addr = %local_addr,
            local = format!("{local_member_id:x}"),
            "peer listener started"
        );
        actix_rt::spawn(accept_loop(listener, shared, members_rx, shutdown_rx));
        Ok(PeerListener {
            local_addr,
            members: members_tx,
            _shutdown: shutdown_tx,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Replaces the set of members allowed to connect (after a membership change).
    /// New handshakes are checked against it at once; an established connection
    /// from a member no longer in the set is closed at its next frame.
    pub fn set_members(&self, members: impl IntoIterator<Item = NodeId>) {
        self.members
            .send_replace(Arc::new(members.into_iter().collect()));
    }

    /// Closes the listening socket and every accepted connection.
    pub fn stop(self) {
        tracing::info!(addr = %self.local_addr, "peer listener stopping");
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<ListenerShared>,
    members: watch::Receiver<Arc<HashSet<NodeId>>>,
    mut shutdown: watch::Receiver<()>,
) {
    let connections = Arc::new(Semaphore::new(shared.limits.inbound_connections_max));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.changed() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, remote_addr)) => {
                let Ok(permit) = connections.clone().try_acquire_owned() else {
                    tracing::warn!(
                        %remote_addr,
                        inbound_connections_max = shared.limits.inbound_connections_max,
                        "too many peer connections: closing the new one"
                    );
                    continue;
                };
                let shared = shared.clone();
                let members = members.clone();
                let mut shutdown = shutdown.clone();
                actix_rt::spawn(async move {
                    let result = tokio::select! {
                        _ = shutdown.changed() => Ok(()),
                        result = serve_connection(stream, &shared, members) => result,
                    };
                    if let Err(error) = result {
                        tracing::warn!(%remote_addr, %error, "peer connection dropped");
                    } else {
                        tracing::debug!(%remote_addr, "peer connection closed");
                    }
                    drop(permit);
                });
            }
            Err(error) => {
                tracing::warn!(%error, "peer accept failed");
                tokio::select! {
                    _ = shutdown.changed() => return,
                    () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => {}
                }
            }
        }
    }
}

/// Checks a handshake against this member's identity and current member set.
fn check_handshake(
    handshake: &Handshake,
    cluster_id: u64,
    local_member_id: NodeId,
    members: &HashSet<NodeId>,
) -> Result<(), HandshakeRefusal> {
    if handshake.protocol_version != PROTOCOL_VERSION {
        return Err(HandshakeRefusal::ProtocolVersion {
            got: handshake.protocol_version,
            want: PROTOCOL_VERSION,
        });
    }
    if handshake.cluster_id != cluster_id {
        return Err(HandshakeRefusal::ClusterMismatch {
            got: handshake.cluster_id,
            want: cluster_id,
        });
    }
    if handshake.to != local_member_id {
        return Err(HandshakeRefusal::WrongReceiver {
            got: handshake.to,
            want: local_member_id,
        });
    }
    if handshake.from == local_member_id || !members.contains(&handshake.from) {
        return Err(HandshakeRefusal::UnknownMember(handshake.from));
    }
    Ok(())
}

/// How much of a connection is read at once. Read bare, a frame cost three
/// reads (header, payload, and the one that finds nothing more); read ahead,
/// one read takes the frames that have arrived. A busy leader's append batch is
/// a few KiB; a larger frame (a snapshot chunk) is read past this buffer.
const READ_AHEAD_BYTES: usize = 32 * 1024;

/// Reads the handshake, then frames until the sender closes. `Ok` on a clean close.
async fn serve_connection(
    stream: TcpStream,
    shared: &ListenerShared,
    members: watch::Receiver<Arc<HashSet<NodeId>>>,
) -> Result<(), PeerError> {
    let mut stream = tokio::io::BufReader::with_capacity(READ_AHEAD_BYTES, stream);
    let limits = &shared.limits;
    let local = shared.local_member_id;
    let mut buf = Vec::new();
    let first = tokio::time::timeout(
        limits.handshake_timeout,
        codec::read_frame(&mut stream, HANDSHAKE_FRAME_BYTES_MAX, &mut buf),
    )
    .await
    .map_err(|_| HandshakeRefusal::Timeout(limits.handshake_timeout))??;
    let handshake = match first {
        Some(Frame::Handshake(handshake)) => handshake,
        Some(_) => return Err(HandshakeRefusal::NotAHandshake.into()),
        None => return Ok(()),
    };
    check_handshake(&handshake, shared.cluster_id, local, &members.borrow())?;
    let remote = handshake.from;
    let remote_hex = format!("{remote:x}");
    tracing::info!(remote = remote_hex, "peer connection accepted");
    let received = shared.received_bytes.as_ref().map(|v| v.with_label_values(&[remote_hex.as_str()]));
    if let Some(received) = &received {
        received.inc_by((codec::FRAME_HEADER_BYTES + buf.len()) as u64);
    }
    let mut reassembly = Reassembly::Idle;

    loop {
        let Some(frame) = codec::read_frame(&mut stream, limits.frame_bytes_max, &mut buf).await?
        else {
            return Ok(());
        };
        if let Some(received) = &received {
            // `buf` holds the frame's payload once read.
            received.inc_by((codec::FRAME_HEADER_BYTES + buf.len()) as u64);
        }
        // A member removed since the handshake loses its connection here.
        let still_a_member = || {
            if members.borrow().contains(&remote) {
                Ok(())
            } else {
                Err(PeerError::from(HandshakeRefusal::UnknownMember(remote)))
            }
        };
        let messages = match frame {
            Frame::Messages(messages) => {
                still_a_member()?;
                messages
            }
            Frame::SnapshotChunk {
                message,
                offset,
                total,
                data,
            } => {
                still_a_member()?;
                let chunk = Chunk {
                    message,
                    offset,
                    total,
                    data,
                };
                let complete = reassembly.accept(chunk, local, remote, limits);
                let Some((message, data)) = complete.unwrap_or_else(|why| {
                    tracing::warn!(remote = remote_hex, "dropping a peer snapshot: {why}");
                    None
                }) else {
                    continue;
                };
                tracing::info!(
                    remote = remote_hex,
                    snapshot_bytes = data.len(),
                    "snapshot received"
                );
                // As for messages: waits until handled, so order is kept.
                shared
                    .deliver
                    .snapshots
                    .send(InboundSnapshot { message, data })
                    .await
                    .map_err(|_| PeerError::RecipientGone)?;
                continue;
            }
            Frame::Snapshot { message, data } => {
                still_a_member()?;
                if let Err(why) = reassembly.start_whole() {
                    tracing::warn!(remote = remote_hex, "dropping a peer snapshot: {why}");
                }
                if message.to != local || message.from != remote {
                    tracing::warn!(
                        remote = format!("{remote:x}"),
                        from = format!("{:x}", message.from),
                        to = format!("{:x}", message.to),
                        "dropping a peer snapshot not from the handshaken sender to this member"
                    );
                    continue;
                }
                tracing::info!(
                    remote = format!("{remote:x}"),
                    snapshot_bytes = data.len(),
                    "snapshot received"
                );
                // As for messages: waits until handled, so order is kept and at
                // most this one dump is held per connection.
                shared
                    .deliver
                    .snapshots
                    .send(InboundSnapshot { message, data })
                    .await
                    .map_err(|_| PeerError::RecipientGone)?;
                continue;
            }
            Frame::Lease(relay) => {
                still_a_member()?;
                // Waits for mailbox room like messages (not for the answer,
                // which goes out on this member's own link to the sender).
                shared
                    .deliver
                    .lease_relays
                    .send(InboundLeaseRelay { from: remote, relay })
                    .await
                    .map_err(|_| PeerError::RecipientGone)?;
                continue;
            }
            Frame::Handshake(_) => return Err(PeerError::UnexpectedHandshake),
        };
        let received = messages.len();
        let messages: Vec<Message> = messages
            .into_iter()
            .filter(|m| m.to == local && m.from == remote)
            .collect();
        if messages.len() < received {
            tracing::warn!(
                remote = format!("{remote:x}"),
                dropped = received - messages.len(),
                "dropping peer messages not from the handshaken sender to this member"
            );
        }
        if messages.is_empty() {
            continue;
        }
        // `send` (not `do_send`) waits for mailbox room: this connection holds at
        // most this one frame while the Raft actor catches up.
        shared
            .deliver
            .messages
            .send(InboundMessages(messages))
            .await
            .map_err(|_| PeerError::RecipientGone)?;
    }
}

/// One snapshot chunk frame, as decoded.
#[derive(Debug)]
struct Chunk {
    message: Option<Message>,
    offset: u64,
    total: u64,
    data: Vec<u8>,
}

/// A connection's snapshot reassembly (see the module docs).
#[derive(Debug)]
enum Reassembly {
    /// No snapshot started, or the last one was delivered.
    Idle,
    Receiving {
        message: Message,
        total: u64,
        /// The bytes received so far, `offset` 0 onwards.
        data: Vec<u8>,
    },
    /// The snapshot in progress was dropped: its remaining chunks are ignored
    /// (quietly: one warning per dropped snapshot) until the next start.
    Discarding,
}

impl Reassembly {
    /// Takes one chunk. `Ok(Some(..))` when it completed a snapshot (the state is
    /// then `Idle`), `Ok(None)` when more is to come or the chunk continues a
    /// dropped snapshot, `Err(why)` when it made this call drop a snapshot.
    fn accept(
        &mut self,
        chunk: Chunk,
        local: NodeId,
        remote: NodeId,
        limits: &PeerLimits,
    ) -> Result<Option<(Message, Vec<u8>)>, String> {
        let state = std::mem::replace(self, Reassembly::Discarding);
        let Chunk {
            message,
            offset,
            total,
            data: bytes,
        } = chunk;
        let chunk_bytes = bytes.len() as u64;
        let (message, total, mut data) = match (message, state) {
            (Some(message), previous) => {
                if let Reassembly::Receiving { total, data, .. } = previous {
                    tracing::warn!(
                        remote = format!("{remote:x}"),
                        received_bytes = data.len(),
                        total_bytes = total,
                        "a new peer snapshot started before the last one was complete: \
                         dropping the incomplete one"
                    );
                }
                if offset != 0 {
                    return Err(format!("first chunk at offset {offset}, not 0"));
                }
                if message.to != local || message.from != remote {
                    return Err(format!(
                        "from {:x} to {:x}, not from the handshaken sender to this member",
                        message.from, message.to
                    ));
                }
                if total > limits.snapshot_bytes_max || usize::try_from(total).is_err() {
                    return Err(format!(
                        "{total} bytes announced, over snapshot_bytes_max of {}",
                        limits.snapshot_bytes_max
                    ));
                }
                if chunk_bytes > total {
                    return Err(format!(
                        "first chunk of {chunk_bytes} bytes in a snapshot of {total}"
                    ));
                }
                // The first chunk's own buffer becomes the snapshot's: no copy.
                (message, total, Vec::new())
            }
            (
                None,
                Reassembly::Receiving {
                    message,
                    total: expected_total,
                    data,
                },
            ) => {
                let received = data.len() as u64;
                if total != expected_total {
                    return Err(format!(
                        "chunk says {total} bytes in all, the first said {expected_total}"
                    ));
                }
                if offset != received {
                    return Err(format!(
                        "chunk at offset {offset} after {received} bytes received ({})",
                        if offset > received {
                            "a gap"
                        } else {
                            "an overlap"
                        }
                    ));
                }
                if chunk_bytes > total - received {
                    return Err(format!(
                        "chunk of {chunk_bytes} bytes at {offset} runs past the total of {total}"
                    ));
                }
                (message, total, data)
            }
            (None, Reassembly::Idle) => {
                return Err(format!(
                    "a chunk at offset {offset} with no snapshot started"
                ))
            }
            // The rest of a dropped snapshot: already warned about.
            (None, Reassembly::Discarding) => return Ok(None),
        };
        if data.is_empty() {
            data = bytes;
        } else {
            grow_for(&mut data, bytes.len(), total);
            data.extend_from_slice(&bytes);
        }
        if data.len() as u64 == total {
            *self = Reassembly::Idle;
            return Ok(Some((message, data)));
        }
        *self = Reassembly::Receiving {
            message,
            total,
            data,
        };
        Ok(None)
    }

    /// A whole-snapshot frame arrived: it ends any partial snapshot (`Err` with
    /// why if there was one).
    fn start_whole(&mut self) -> Result<(), String> {
        match std::mem::replace(self, Reassembly::Idle) {
            Reassembly::Receiving { total, data, .. } => Err(format!(
                "a whole snapshot arrived after {} of {total} bytes of a chunked one",
                data.len()
            )),
            Reassembly::Idle | Reassembly::Discarding => Ok(()),
        }
    }
}

/// Makes room in `data` for `more` bytes, growing by doubling (amortized) but
/// never past `total`: a snapshot's buffer is at most twice what has arrived and
/// never more than it announced.
fn grow_for(data: &mut Vec<u8>, more: usize, total: u64) {
    let needed = data.len() + more;
    if needed <= data.capacity() {
        return;
    }
    let total = usize::try_from(total).unwrap_or(usize::MAX);
    let target = needed
        .max(data.capacity().saturating_mul(2))
        .min(total.max(needed));
    data.reserve_exact(target - data.len());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handshake() -> Handshake {
        Handshake {
            protocol_version: PROTOCOL_VERSION,
            cluster_id: 0xc1,
            from: 2,
            to: 1,
        }
    }

    fn members() -> HashSet<NodeId> {
        [1, 2, 3].into_iter().collect()
    }

    fn snapshot_to_me(from: NodeId) -> Message {
        Message {
            from,
            to: 1,
            term: 1,
            body: crate::raft::MessageBody::Heartbeat { commit: 0, ctx: 0 },
        }
    }

    #[test]
    fn reassembly_grows_with_the_chunks_never_past_the_total() {
        let limits = PeerLimits::default();
        let total = 1_000_000u64;
        let mut r = Reassembly::Idle;
        let mut expected = Vec::new();
        let mut offset = 0u64;
        let mut first = true;
        while offset < total {
            let len = (total - offset).min(64 * 1024) as usize;
            let data: Vec<u8> = (0..len).map(|i| (offset as usize + i) as u8).collect();
            expected.extend_from_slice(&data);
            let chunk = Chunk {
                message: first.then(|| snapshot_to_me(2)),
                offset,
                total,
                data,
            };
            first = false;
            offset += len as u64;
            let done = r.accept(chunk, 1, 2, &limits).expect("in sequence");
            match &r {
                Reassembly::Receiving { data, .. } => {
                    assert!(done.is_none());
                    assert!(data.capacity() as u64 <= total, "never past the total");
                    assert!(
                        data.capacity() <= 2 * data.len(),
                        "never far ahead of arrivals"
                    );
                }
                Reassembly::Idle => {
                    let (message, data) = done.expect("complete");
                    assert_eq!(message, snapshot_to_me(2));
                    assert!(data == expected);
                    assert_eq!(offset, total);
                }
                Reassembly::Discarding => panic!("dropped"),
            }
        }
        // An empty snapshot completes with its only chunk.
        let empty = Chunk {
            message: Some(snapshot_to_me(2)),
            offset: 0,
            total: 0,
            data: Vec::new(),
        };
        assert_eq!(
            r.accept(empty, 1, 2, &limits).expect("fine"),
            Some((snapshot_to_me(2), Vec::new()))
        );
        // A start over snapshot_bytes_max allocates nothing and is refused.
        let huge = Chunk {
            message: Some(snapshot_to_me(2)),
            offset: 0,
            total: limits.snapshot_bytes_max + 1,
            data: vec![0; 10],
        };
        assert!(r.accept(huge, 1, 2, &limits).is_err());
        assert!(matches!(r, Reassembly::Discarding));
    }

    #[test]
    fn handshake_checks() {
        assert_eq!(check_handshake(&handshake(), 0xc1, 1, &members()), Ok(()));
        let check = |h: Handshake| check_handshake(&h, 0xc1, 1, &members());
        assert_eq!(
            check(Handshake {
                protocol_version: PROTOCOL_VERSION + 1,
                ..handshake()
            }),
            Err(HandshakeRefusal::ProtocolVersion {
                got: PROTOCOL_VERSION + 1,
                want: PROTOCOL_VERSION
            })
        );
        assert_eq!(
            check(Handshake {
                cluster_id: 0xc2,
                ..handshake()
            }),
            Err(HandshakeRefusal::ClusterMismatch {
                got: 0xc2,
                want: 0xc1
            })
        );
        assert_eq!(
            check(Handshake {
                to: 3,
                ..handshake()
            }),
            Err(HandshakeRefusal::WrongReceiver { got: 3, want: 1 })
        );
        assert_eq!(
            check(Handshake {
                from: 9,
                ..handshake()
            }),
            Err(HandshakeRefusal::UnknownMember(9))
        );
        // A member pretending to be the receiver itself is not a peer.
        assert_eq!(
            check(Handshake {
                from: 1,
                ..handshake()
            }),
            Err(HandshakeRefusal::UnknownMember(1))
        );
    }
}
