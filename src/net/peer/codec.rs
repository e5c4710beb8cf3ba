//! The peer wire format: frames, the handshake, and the wire mirror of the Raft
//! messages.
//!
//! Owns every byte that crosses the peer port and is the only file that knows
//! bincode is involved (bincode 2.x is pinned and unmaintained; swapping it must
//! stay a one-file change). It must never leak a bincode type through its API,
//! never trust a length it read from the network before bounding it, and never
//! panic on input: every malformed frame is a [`PeerError`].
//!
//! # Frame
//!
//! ```text
//! [payload length: u32 LE][crc32c(payload): u32 LE][payload: length bytes]
//! ```
//!
//! The payload is one bincode-encoded (standard config: little-endian varints)
//! `WireFrame`, one of:
//!
//! - tag 0, the handshake (the first frame of every connection);
//! - tag 1, a batch of Raft messages;
//! - tag 2, a whole snapshot in one frame: one Raft message (the `Snapshot` one)
//!   and the state machine dump it stands for, as one byte string, bounded by
//!   `frame_bytes_max` like every frame. This version no longer sends it (it
//!   sends tag 3) but still accepts it, from members that predate chunking;
//! - tag 3, one chunk of a snapshot: `message` (an `Option`: present in the
//!   first chunk only, which is the one at `offset` 0), `offset` and `total`
//!   (u64 varints: where this chunk's bytes go in the dump, and the dump's whole
//!   length, repeated in every chunk), and `data` (a byte string). A snapshot is
//!   the chunks `offset` 0, `0 + len₀`, … up to `total`, in that order on one
//!   connection, possibly with message frames between them; an empty dump is
//!   one chunk with `total` 0. The codec checks only the layout; the listener
//!   checks the sequence (see its docs);
//! - tag 4, a lease keep-alive a follower relays to the leader: `request` (u64,
//!   the follower's number for it) and `lease` (i64, the lease ID);
//! - tag 5, the leader's answer to one: `request` and an outcome (0: renewed,
//!   with the TTL as an i64; 1: no such lease; 2: not the leader).
//!
//! A length above the receiver's `frame_bytes_max` is refused from the 8-byte
//! header alone, before any buffer is allocated.
//!
//! # Versioning
//!
//! The handshake carries [`PROTOCOL_VERSION`]; the listener refuses any other.
//! Variant order in the `Wire*` enums *is* the wire tag: a new variant appended at
//! the end keeps the version (an older member that receives it refuses the frame
//! as undecodable and drops the connection, which the sender sees as a lost link;
//! it never misreads it), and any other change bumps the version. The snapshot
//! frame (tag 2) and the snapshot chunk frame (tag 3) were added that way, without
//! a bump, so members with and without them still exchange messages during a
//! rolling upgrade (though a member without tag 3 cannot receive a snapshot from
//! one that sends it: it drops the connection, and the leader retries later). The lease relay frames (tags 4 and 5) were appended the same way.
//! `WireFrame::Handshake` stays variant 0 with its field layout fixed forever, so every version can read
//! (and refuse) every other version's handshake.
//!
//! # Decoding without trusting lengths
//!
//! bincode's own `Vec` decoding allocates `len` elements up front. The wire types
//! use `WireBytes` / `WireVec` instead, which first check that the payload still
//! holds at least `len` bytes (every element takes at least one), so a forged
//! length inside a small frame cannot make a large allocation; and bincode's
//! decode limit caps the decoded size of one frame at [`DECODE_MEMORY_BYTES_MAX`].

use bincode::de::read::Reader;
use bincode::de::{BorrowDecoder, Decoder};
use bincode::enc::Encoder;
use bincode::error::{DecodeError, EncodeError};
use bincode::{BorrowDecode, Decode, Encode};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::PeerError;
use crate::raft::{ConfState, Entry, EntryKind, Message, MessageBody, NodeId, SnapshotMeta};

/// The peer protocol this build speaks. Bump on any change to the wire types other
/// than a variant appended at the end of an enum (see the module docs).
pub const PROTOCOL_VERSION: u32 = 1;

/// Length + checksum, both u32 little-endian.
pub const FRAME_HEADER_BYTES: usize = 8;

/// The largest `frame_bytes_max` a member may configure (64 MiB). Fixed at compile
/// time because the decode budget below is a compile-time constant.
pub const FRAME_BYTES_CEILING: u32 = 64 * 1024 * 1024;

/// The most memory the decoded form of one frame may claim (bincode's accounting:
/// in-memory size of the decoded values). Four times the frame ceiling: decoded
/// entries carry a few dozen bytes of bookkeeping each on top of their data.
pub const DECODE_MEMORY_BYTES_MAX: usize = 4 * FRAME_BYTES_CEILING as usize;

/// How many elements a `WireVec` reserves before it has decoded any: past this it
/// grows only as elements actually arrive.
const PREALLOCATE_ELEMENTS_MAX: usize = 1024;

/// A read buffer that grew past this (for one big frame) is given back afterwards,
/// so an idle connection does not pin a frame's worth of memory.
const READ_BUFFER_KEEP_BYTES: usize = 1024 * 1024;

fn wire_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<DECODE_MEMORY_BYTES_MAX>()
}

/// The first frame of every connection: who is calling whom, in which cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handshake {
    pub protocol_version: u32,
    pub cluster_id: u64,
    /// The sending member.
    pub from: NodeId,
    /// The member the sender believes it is talking to.
    pub to: NodeId,
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Handshake(Handshake),
    Messages(Vec<Message>),
    /// A Raft message (the `Snapshot` one, in practice; the codec does not check)
    /// with the state machine dump it carries.
    Snapshot {
        message: Message,
        data: Vec<u8>,
    },
    /// One chunk of a snapshot: `data` goes at `offset` in a dump of `total`
    /// bytes. `message` is present in the first chunk (offset 0) only.
    SnapshotChunk {
        message: Option<Message>,
        offset: u64,
        total: u64,
        data: Vec<u8>,
    },
    Lease(LeaseRelay),
}

/// A lease keep-alive crossing the peer port: lease deadlines live in the
/// leader's memory, so a follower relays its clients' keep-alives to the leader
/// (as etcd's followers forward them to the leader's `/leases` peer handler).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseRelay {
    /// "Renew lease `lease`", from a follower; `request` pairs the answer with it.
    KeepAlive { request: u64, lease: i64 },
    /// The leader's answer to the follower's `request`.
    Answer { request: u64, outcome: KeepAliveOutcome },
}

/// What a relayed keep-alive came to on the member that received it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepAliveOutcome {
    /// Renewed: the lease's TTL in seconds.
    Renewed { ttl: i64 },
    /// No such lease (expired or revoked).
    NotFound,
    /// The receiver is not the leader (any more).
    NotLeader,
}

/// A parsed frame header: the payload length is already checked against the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub payload_bytes: u32,
    pub crc32c: u32,
}

/// Encodes `frame` as header + payload. Fails with `FrameTooLarge` if the payload
/// would exceed `frame_bytes_max` (the caller splits the batch).
pub fn encode_frame(frame: &Frame, frame_bytes_max: u32) -> Result<Vec<u8>, PeerError> {
    match frame {
        Frame::Handshake(h) => encode_wire(
            &WireFrame::Handshake(WireHandshake::from(*h)),
            frame_bytes_max,
        ),
        Frame::Messages(messages) => encode_messages(messages, frame_bytes_max),
        Frame::Snapshot { message, data } => {
            encode_snapshot(message, data.clone(), frame_bytes_max)
        }
        Frame::SnapshotChunk {
            message,
            offset,
            total,
            data,
        } => encode_snapshot_chunk(message.as_ref(), *offset, *total, data, frame_bytes_max),
        Frame::Lease(relay) => encode_wire(&WireFrame::from(*relay), frame_bytes_max),
    }
}

/// The most bytes of a snapshot chunk frame's payload that are not dump data,
/// for a chunk carrying `message` (or none): the tag, the message, worst-case
/// `offset` / `total` varints and the data's length prefix. A chunk of
/// `frame_bytes_max - snapshot_chunk_overhead(..)` data bytes always fits a frame.
pub fn snapshot_chunk_overhead(message: Option<&Message>) -> Result<u32, PeerError> {
    let wire = WireFrame::SnapshotChunk {
        message: message.map(WireMessage::from),
        offset: u64::MAX,
        total: u64::MAX,
        data: WireBytes(Vec::new()),
    };
    let bytes = bincode::encode_to_vec(&wire, wire_config())
        .map_err(|e| PeerError::Encode(e.to_string()))?;
    // The empty data's length prefix took 1 byte; a u64 varint takes at most 9.
    u32::try_from(bytes.len() + 8).map_err(|_| PeerError::Encode("message too large".into()))
}

/// Encodes one snapshot chunk frame (tag 3, see the module docs). `data` is
/// copied once; a chunk is small next to the dump it comes from.
pub fn encode_snapshot_chunk(
    message: Option<&Message>,
    offset: u64,
    total: u64,
    data: &[u8],
    frame_bytes_max: u32,
) -> Result<Vec<u8>, PeerError> {
    if data.len() > frame_bytes_max as usize {
        return Err(PeerError::FrameTooLarge {
            len_bytes: u64::try_from(data.len()).unwrap_or(u64::MAX),
            max_bytes: frame_bytes_max,
        });
    }
    let capacity = FRAME_HEADER_BYTES + data.len() + 256;
    let wire = WireFrame::SnapshotChunk {
        message: message.map(WireMessage::from),
        offset,
        total,
        data: WireBytes(data.to_vec()),
    };
    encode_wire_with_capacity(&wire, frame_bytes_max, capacity)
}

/// Encodes a whole-snapshot frame (tag 2), taking the dump by value so it is not
/// copied twice. A dump longer than `frame_bytes_max` is refused with
/// `FrameTooLarge` before anything is encoded. This version sends snapshots in
/// chunks ([`encode_snapshot_chunk`]); this stays for tests of the receiving side,
/// which still accepts tag 2 from older members.
pub fn encode_snapshot(
    message: &Message,
    data: Vec<u8>,
    frame_bytes_max: u32,
) -> Result<Vec<u8>, PeerError> {
    if data.len() > frame_bytes_max as usize {
        return Err(PeerError::FrameTooLarge {
            len_bytes: u64::try_from(data.len()).unwrap_or(u64::MAX),
            max_bytes: frame_bytes_max,
        });
    }
    // The dump plus a message and a few length prefixes: reserve once.
    let capacity = FRAME_HEADER_BYTES + data.len() + 256;
    let wire = WireFrame::Snapshot {
        message: WireMessage::from(message),
        data: WireBytes(data),
    };
    encode_wire_with_capacity(&wire, frame_bytes_max, capacity)
}

/// Encodes one batch of messages as a frame (see [`encode_frame`]).
pub fn encode_messages(messages: &[Message], frame_bytes_max: u32) -> Result<Vec<u8>, PeerError> {
    let wire = WireFrame::Messages(WireVec(messages.iter().map(WireMessage::from).collect()));
    encode_wire(&wire, frame_bytes_max)
}

fn encode_wire(wire: &WireFrame, frame_bytes_max: u32) -> Result<Vec<u8>, PeerError> {
    encode_wire_with_capacity(wire, frame_bytes_max, 0)
}

fn encode_wire_with_capacity(
    wire: &WireFrame,
    frame_bytes_max: u32,
    capacity: usize,
) -> Result<Vec<u8>, PeerError> {
    let mut out = Vec::with_capacity(capacity.max(FRAME_HEADER_BYTES));
    out.resize(FRAME_HEADER_BYTES, 0);
    bincode::encode_into_std_write(wire, &mut out, wire_config())
        .map_err(|e| PeerError::Encode(e.to_string()))?;
    let payload_len = out.len() - FRAME_HEADER_BYTES;
    let len_bytes = u64::try_from(payload_len).unwrap_or(u64::MAX);
    let Ok(payload_bytes) = u32::try_from(payload_len) else {
        return Err(PeerError::FrameTooLarge {
            len_bytes,
            max_bytes: frame_bytes_max,
        });
    };
    if payload_bytes > frame_bytes_max {
        return Err(PeerError::FrameTooLarge {
            len_bytes,
            max_bytes: frame_bytes_max,
        });
    }
    let crc = crc32c::crc32c(&out[FRAME_HEADER_BYTES..]);
    out[0..4].copy_from_slice(&payload_bytes.to_le_bytes());
    out[4..8].copy_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Parses a header, refusing a length above `frame_bytes_max`.
pub fn parse_frame_header(
    header: [u8; FRAME_HEADER_BYTES],
    frame_bytes_max: u32,
) -> Result<FrameHeader, PeerError> {
    let payload_bytes = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let crc32c = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if payload_bytes > frame_bytes_max {
        return Err(PeerError::FrameTooLarge {
            len_bytes: u64::from(payload_bytes),
            max_bytes: frame_bytes_max,
        });
    }
    Ok(FrameHeader {
        payload_bytes,
        crc32c,
    })
}

/// Checks the payload against its header's checksum and decodes it.
pub fn decode_payload(header: FrameHeader, payload: &[u8]) -> Result<Frame, PeerError> {
    let actual = crc32c::crc32c(payload);
    if actual != header.crc32c {
        return Err(PeerError::ChecksumMismatch {
            expected: header.crc32c,
            actual,
        });
    }
    let (wire, used): (WireFrame, usize) = bincode::decode_from_slice(payload, wire_config())
        .map_err(|e| PeerError::Undecodable(e.to_string()))?;
    if used != payload.len() {
        return Err(PeerError::TrailingBytes {
            trailing_bytes: payload.len() - used,
        });
    }
    Ok(Frame::from(wire))
}

/// Decodes the first frame of `bytes` (a whole frame must be present); returns it
/// and the number of bytes it took.
pub fn decode_frame(bytes: &[u8], frame_bytes_max: u32) -> Result<(Frame, usize), PeerError> {
    let Some(header_bytes) = bytes.first_chunk::<FRAME_HEADER_BYTES>() else {
        return Err(PeerError::Truncated {
            expected_bytes: FRAME_HEADER_BYTES as u64,
            got_bytes: bytes.len() as u64,
        });
    };
    let header = parse_frame_header(*header_bytes, frame_bytes_max)?;
    let end = FRAME_HEADER_BYTES + header.payload_bytes as usize;
    let Some(payload) = bytes.get(FRAME_HEADER_BYTES..end) else {
        return Err(PeerError::Truncated {
            expected_bytes: end as u64,
            got_bytes: bytes.len() as u64,
        });
    };
    Ok((decode_payload(header, payload)?, end))
}

/// Reads one frame. `Ok(None)` is a clean end of stream (between frames); an end
/// inside a frame is `Truncated`. `buf` is the connection's reusable payload buffer:
/// it never grows past `frame_bytes_max`.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    frame_bytes_max: u32,
    buf: &mut Vec<u8>,
) -> Result<Option<Frame>, PeerError> {
    let mut header = [0u8; FRAME_HEADER_BYTES];
    let mut filled = 0;
    while filled < FRAME_HEADER_BYTES {
        let n = reader.read(&mut header[filled..]).await?;
        if n == 0 {
            if filled == 0 {
                return Ok(None);
            }
            return Err(PeerError::Truncated {
                expected_bytes: FRAME_HEADER_BYTES as u64,
                got_bytes: filled as u64,
            });
        }
        filled += n;
    }
    let header = parse_frame_header(header, frame_bytes_max)?;
    let payload_len = header.payload_bytes as usize;
    buf.clear();
    if buf.capacity() > READ_BUFFER_KEEP_BYTES && payload_len <= READ_BUFFER_KEEP_BYTES {
        buf.shrink_to(READ_BUFFER_KEEP_BYTES);
    }
    buf.resize(payload_len, 0);
    let mut got = 0;
    while got < payload_len {
        let n = reader.read(&mut buf[got..]).await?;
        if n == 0 {
            return Err(PeerError::Truncated {
                expected_bytes: (FRAME_HEADER_BYTES + payload_len) as u64,
                got_bytes: (FRAME_HEADER_BYTES + got) as u64,
            });
        }
        got += n;
    }
    decode_payload(header, buf).map(Some)
}

// ---------------------------------------------------------------------------
// Wire types. Private: the rest of the crate sees only `Frame` and `Message`.
// Variant order is the wire tag (see the module docs): append only.
// ---------------------------------------------------------------------------

#[derive(Debug, Encode, Decode)]
enum WireFrame {
    /// Variant 0 forever, layout fixed forever.
    Handshake(WireHandshake),
    Messages(WireVec<WireMessage>),
    /// Appended without a version bump (see the module docs).
    Snapshot {
        message: WireMessage,
        data: WireBytes,
    },
    /// Appended without a version bump (see the module docs).
    SnapshotChunk {
        message: Option<WireMessage>,
        offset: u64,
        total: u64,
        data: WireBytes,
    },
    /// Appended without a version bump (see the module docs).
    LeaseKeepAlive {
        request: u64,
        lease: i64,
    },
    /// Appended without a version bump (see the module docs).
    LeaseKeepAliveAnswer {
        request: u64,
        outcome: WireKeepAliveOutcome,
    },
}

#[derive(Debug, Encode, Decode)]
enum WireKeepAliveOutcome {
    Renewed { ttl: i64 },
    NotFound,
    NotLeader,
}

#[derive(Debug, Encode, Decode)]
struct WireHandshake {
    protocol_version: u32,
    cluster_id: u64,
    from: u64,
    to: u64,
}

#[derive(Debug, Encode, Decode)]
struct WireMessage {
    from: u64,
    to: u64,
    term: u64,
    body: WireBody,
}

#[derive(Debug, Encode, Decode)]
enum WireBody {
    Append {
        prev_index: u64,
        prev_term: u64,
        entries: WireVec<WireEntry>,
        commit: u64,
    },
    AppendResponse {
        index: u64,
        reject: bool,
        hint_index: u64,
        hint_term: u64,
    },
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
    Heartbeat {
        commit: u64,
        ctx: u64,
    },
    HeartbeatResponse {
        ctx: u64,
    },
    Snapshot {
        meta: WireSnapshotMeta,
    },
    TimeoutNow,
    Propose {
        data: WireVec<WireBytes>,
    },
    ReadIndex {
        ctx: u64,
    },
    ReadIndexResponse {
        ctx: u64,
        index: u64,
    },
}

#[derive(Debug, Encode, Decode)]
struct WireEntry {
    term: u64,
    index: u64,
    kind: WireEntryKind,
    data: WireBytes,
}

#[derive(Debug, Encode, Decode)]
enum WireEntryKind {
    Normal,
    ConfChange,
}

#[derive(Debug, Encode, Decode)]
struct WireSnapshotMeta {
    index: u64,
    term: u64,
    conf: WireConfState,
}

#[derive(Debug, Encode, Decode)]
struct WireConfState {
    voters: WireVec<u64>,
    learners: WireVec<u64>,
}

/// A byte string: encoded as bincode encodes `Vec<u8>`, decoded without trusting
/// the length prefix.
#[derive(Debug)]
struct WireBytes(Vec<u8>);

/// A sequence: encoded as bincode encodes `Vec<T>`, decoded without trusting the
/// length prefix. Every `T` used here encodes to at least one byte.
#[derive(Debug)]
struct WireVec<T>(Vec<T>);

/// Reads a length prefix and checks that the rest of the payload can hold `len`
/// elements of at least one byte each. Only meaningful on a slice reader, which
/// is the only kind this codec decodes from (`decode_payload`).
fn decode_bounded_len<D: Decoder>(decoder: &mut D) -> Result<usize, DecodeError> {
    let len = u64::decode(decoder)?;
    let len = usize::try_from(len).map_err(|_| DecodeError::OutsideUsizeRange(len))?;
    if decoder.reader().peek_read(len).is_none() {
        return Err(DecodeError::Other(
            "length prefix runs past the end of the frame",
        ));
    }
    Ok(len)
}

impl Encode for WireBytes {
    fn encode<E: Encoder>(&self, encoder: &mut E) -> Result<(), EncodeError> {
        self.0.encode(encoder)
    }
}

impl<Context> Decode<Context> for WireBytes {
    fn decode<D: Decoder<Context = Context>>(decoder: &mut D) -> Result<Self, DecodeError> {
        let len = decode_bounded_len(decoder)?;
        decoder.claim_container_read::<u8>(len)?;
        let mut bytes = vec![0u8; len];
        decoder.reader().read(&mut bytes)?;
        Ok(WireBytes(bytes))
    }
}

impl<'de, Context> BorrowDecode<'de, Context> for WireBytes {
    fn borrow_decode<D: BorrowDecoder<'de, Context = Context>>(
        decoder: &mut D,
    ) -> Result<Self, DecodeError> {
        Decode::decode(decoder)
    }
}

impl<T: Encode> Encode for WireVec<T> {
    fn encode<E: Encoder>(&self, encoder: &mut E) -> Result<(), EncodeError> {
        self.0.encode(encoder)
    }
}

impl<Context, T: Decode<Context>> Decode<Context> for WireVec<T> {
    fn decode<D: Decoder<Context = Context>>(decoder: &mut D) -> Result<Self, DecodeError> {
        let len = decode_bounded_len(decoder)?;
        // Same memory accounting as bincode's own Vec: claim the slots, then
        // hand each back as its element claims its own decoded size.
        decoder.claim_container_read::<T>(len)?;
        let mut items = Vec::with_capacity(len.min(PREALLOCATE_ELEMENTS_MAX));
        for _ in 0..len {
            decoder.unclaim_bytes_read(std::mem::size_of::<T>());
            items.push(T::decode(decoder)?);
        }
        Ok(WireVec(items))
    }
}

impl<'de, Context, T: Decode<Context>> BorrowDecode<'de, Context> for WireVec<T> {
    fn borrow_decode<D: BorrowDecoder<'de, Context = Context>>(
        decoder: &mut D,
    ) -> Result<Self, DecodeError> {
        Decode::decode(decoder)
    }
}

// ---------------------------------------------------------------------------
// Conversions. Exhaustive matches on purpose: a new Raft message kind does not
// compile until it has a wire form.
// ---------------------------------------------------------------------------

impl From<Handshake> for WireHandshake {
    fn from(h: Handshake) -> Self {
        WireHandshake {
            protocol_version: h.protocol_version,
            cluster_id: h.cluster_id,
            from: h.from,
            to: h.to,
        }
    }
}

impl From<WireFrame> for Frame {
    fn from(wire: WireFrame) -> Self {
        match wire {
            WireFrame::Handshake(h) => Frame::Handshake(Handshake {
                protocol_version: h.protocol_version,
                cluster_id: h.cluster_id,
                from: h.from,
                to: h.to,
            }),
            WireFrame::Messages(WireVec(messages)) => {
                Frame::Messages(messages.into_iter().map(Message::from).collect())
            }
            WireFrame::Snapshot { message, data } => Frame::Snapshot {
                message: Message::from(message),
                data: data.0,
            },
            WireFrame::SnapshotChunk {
                message,
                offset,
                total,
                data,
            } => Frame::SnapshotChunk {
                message: message.map(Message::from),
                offset,
                total,
                data: data.0,
            },
            WireFrame::LeaseKeepAlive { request, lease } => Frame::Lease(LeaseRelay::KeepAlive { request, lease }),
            WireFrame::LeaseKeepAliveAnswer { request, outcome } => {
                let outcome = match outcome {
                    WireKeepAliveOutcome::Renewed { ttl } => KeepAliveOutcome::Renewed { ttl },
                    WireKeepAliveOutcome::NotFound => KeepAliveOutcome::NotFound,
                    WireKeepAliveOutcome::NotLeader => KeepAliveOutcome::NotLeader,
                };
                Frame::Lease(LeaseRelay::Answer { request, outcome })
            }
        }
    }
}

impl From<LeaseRelay> for WireFrame {
    fn from(relay: LeaseRelay) -> Self {
        match relay {
            LeaseRelay::KeepAlive { request, lease } => WireFrame::LeaseKeepAlive { request, lease },
            LeaseRelay::Answer { request, outcome } => WireFrame::LeaseKeepAliveAnswer {
                request,
                outcome: match outcome {
                    KeepAliveOutcome::Renewed { ttl } => WireKeepAliveOutcome::Renewed { ttl },
                    KeepAliveOutcome::NotFound => WireKeepAliveOutcome::NotFound,
                    KeepAliveOutcome::NotLeader => WireKeepAliveOutcome::NotLeader,
                },
            },
        }
    }
}

impl From<&Message> for WireMessage {
    fn from(m: &Message) -> Self {
        let body = match &m.body {
            MessageBody::Append {
                prev_index,
                prev_term,
                entries,
                commit,
            } => WireBody::Append {
                prev_index: *prev_index,
                prev_term: *prev_term,
                entries: WireVec(entries.iter().map(WireEntry::from).collect()),
                commit: *commit,
            },
            MessageBody::AppendResponse {
                index,
                reject,
                hint_index,
                hint_term,
            } => WireBody::AppendResponse {
                index: *index,
                reject: *reject,
                hint_index: *hint_index,
                hint_term: *hint_term,
            },
            MessageBody::Vote {
                pre,
                last_index,
                last_term,
                force,
            } => WireBody::Vote {
                pre: *pre,
                last_index: *last_index,
                last_term: *last_term,
                force: *force,
            },
            MessageBody::VoteResponse { pre, reject } => WireBody::VoteResponse {
                pre: *pre,
                reject: *reject,
            },
            MessageBody::Heartbeat { commit, ctx } => WireBody::Heartbeat {
                commit: *commit,
                ctx: *ctx,
            },
            MessageBody::HeartbeatResponse { ctx } => WireBody::HeartbeatResponse { ctx: *ctx },
            MessageBody::Snapshot { meta } => WireBody::Snapshot {
                meta: WireSnapshotMeta {
                    index: meta.index,
                    term: meta.term,
                    conf: WireConfState {
                        voters: WireVec(meta.conf.voters.clone()),
                        learners: WireVec(meta.conf.learners.clone()),
                    },
                },
            },
            MessageBody::TimeoutNow => WireBody::TimeoutNow,
            MessageBody::Propose { data } => WireBody::Propose {
                data: WireVec(data.iter().map(|d| WireBytes(d.clone())).collect()),
            },
            MessageBody::ReadIndex { ctx } => WireBody::ReadIndex { ctx: *ctx },
            MessageBody::ReadIndexResponse { ctx, index } => WireBody::ReadIndexResponse {
                ctx: *ctx,
                index: *index,
            },
        };
        WireMessage {
            from: m.from,
            to: m.to,
            term: m.term,
            body,
        }
    }
}

impl From<WireMessage> for Message {
    fn from(w: WireMessage) -> Self {
        let body = match w.body {
            WireBody::Append {
                prev_index,
                prev_term,
                entries,
                commit,
            } => MessageBody::Append {
                prev_index,
                prev_term,
                entries: entries.0.into_iter().map(Entry::from).collect(),
                commit,
            },
            WireBody::AppendResponse {
                index,
                reject,
                hint_index,
                hint_term,
            } => MessageBody::AppendResponse {
                index,
                reject,
                hint_index,
                hint_term,
            },
            WireBody::Vote {
                pre,
                last_index,
                last_term,
                force,
            } => MessageBody::Vote {
                pre,
                last_index,
                last_term,
                force,
            },
            WireBody::VoteResponse { pre, reject } => MessageBody::VoteResponse { pre, reject },
            WireBody::Heartbeat { commit, ctx } => MessageBody::Heartbeat { commit, ctx },
            WireBody::HeartbeatResponse { ctx } => MessageBody::HeartbeatResponse { ctx },
            WireBody::Snapshot { meta } => MessageBody::Snapshot {
                meta: SnapshotMeta {
                    index: meta.index,
                    term: meta.term,
                    conf: ConfState {
                        voters: meta.conf.voters.0,
                        learners: meta.conf.learners.0,
                    },
                },
            },
            WireBody::TimeoutNow => MessageBody::TimeoutNow,
            WireBody::Propose { data } => MessageBody::Propose {
                data: data.0.into_iter().map(|d| d.0).collect(),
            },
            WireBody::ReadIndex { ctx } => MessageBody::ReadIndex { ctx },
            WireBody::ReadIndexResponse { ctx, index } => {
                MessageBody::ReadIndexResponse { ctx, index }
            }
        };
        Message {
            from: w.from,
            to: w.to,
            term: w.term,
            body,
        }
    }
}

impl From<&Entry> for WireEntry {
    fn from(e: &Entry) -> Self {
        WireEntry {
            term: e.term,
            index: e.index,
            kind: match e.kind {
                EntryKind::Normal => WireEntryKind::Normal,
                EntryKind::ConfChange => WireEntryKind::ConfChange,
            },
            data: WireBytes(e.data.clone()),
        }
    }
}

impl From<WireEntry> for Entry {
    fn from(w: WireEntry) -> Self {
        Entry {
            term: w.term,
            index: w.index,
            kind: match w.kind {
                WireEntryKind::Normal => EntryKind::Normal,
                WireEntryKind::ConfChange => EntryKind::ConfChange,
            },
            data: w.data.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: u32 = FRAME_BYTES_CEILING;

    fn msg(body: MessageBody) -> Message {
        Message {
            from: 0x1111,
            to: 0x2222,
            term: 7,
            body,
        }
    }

    /// One message of every kind the Raft core exchanges (`MessageBody` is closed:
    /// a new kind must be added here, or the exhaustive conversions stop compiling).
    fn every_message_kind() -> Vec<Message> {
        vec![
            msg(MessageBody::Append {
                prev_index: 41,
                prev_term: 6,
                entries: vec![
                    Entry {
                        term: 7,
                        index: 42,
                        kind: EntryKind::Normal,
                        data: vec![],
                    },
                    Entry {
                        term: 7,
                        index: 43,
                        kind: EntryKind::Normal,
                        data: b"put foo bar".to_vec(),
                    },
                    Entry {
                        term: 7,
                        index: 44,
                        kind: EntryKind::ConfChange,
                        data: vec![0, 255, 1, 254],
                    },
                ],
                commit: 40,
            }),
            msg(MessageBody::Append {
                prev_index: 0,
                prev_term: 0,
                entries: vec![],
                commit: 0,
            }),
            msg(MessageBody::AppendResponse {
                index: 44,
                reject: true,
                hint_index: 39,
                hint_term: 5,
            }),
            msg(MessageBody::Vote {
                pre: true,
                last_index: u64::MAX,
                last_term: 9,
                force: true,
            }),
            msg(MessageBody::VoteResponse {
                pre: false,
                reject: true,
            }),
            msg(MessageBody::Heartbeat { commit: 40, ctx: 3 }),
            msg(MessageBody::HeartbeatResponse { ctx: 3 }),
            msg(MessageBody::Snapshot {
                meta: SnapshotMeta {
                    index: 1000,
                    term: 6,
                    conf: ConfState {
                        voters: vec![1, 2, 3],
                        learners: vec![u64::MAX],
                    },
                },
            }),
            msg(MessageBody::TimeoutNow),
            msg(MessageBody::Propose {
                data: vec![b"a".to_vec(), vec![], vec![7; 300]],
            }),
            msg(MessageBody::ReadIndex { ctx: 99 }),
            msg(MessageBody::ReadIndexResponse { ctx: 99, index: 77 }),
        ]
    }

    fn encoded_batch() -> Vec<u8> {
        encode_frame(&Frame::Messages(every_message_kind()), MAX).expect("encode")
    }

    #[test]
    fn every_message_kind_round_trips_in_one_batched_frame() {
        let messages = every_message_kind();
        let bytes = encoded_batch();
        let (frame, used) = decode_frame(&bytes, MAX).expect("decode");
        assert_eq!(used, bytes.len());
        assert_eq!(frame, Frame::Messages(messages));
    }

    #[test]
    fn every_message_kind_round_trips_alone() {
        for m in every_message_kind() {
            let bytes = encode_frame(&Frame::Messages(vec![m.clone()]), MAX).expect("encode");
            let (frame, _) = decode_frame(&bytes, MAX).expect("decode");
            assert_eq!(frame, Frame::Messages(vec![m]));
        }
    }

    #[test]
    fn handshake_round_trips() {
        let h = Handshake {
            protocol_version: PROTOCOL_VERSION,
            cluster_id: 0xdead_beef_cafe,
            from: 1,
            to: u64::MAX,
        };
        let bytes = encode_frame(&Frame::Handshake(h), MAX).expect("encode");
        assert_eq!(
            decode_frame(&bytes, MAX).expect("decode").0,
            Frame::Handshake(h)
        );
    }

    #[test]
    fn lease_relay_frames_round_trip_with_their_tags() {
        let relays = [
            LeaseRelay::KeepAlive { request: 1, lease: i64::MAX },
            LeaseRelay::Answer { request: u64::MAX, outcome: KeepAliveOutcome::Renewed { ttl: 60 } },
            LeaseRelay::Answer { request: 2, outcome: KeepAliveOutcome::NotFound },
            LeaseRelay::Answer { request: 3, outcome: KeepAliveOutcome::NotLeader },
        ];
        for (relay, tag) in relays.into_iter().zip([4u8, 5, 5, 5]) {
            let bytes = encode_frame(&Frame::Lease(relay), MAX).expect("encode");
            // The payload opens with the frame's tag (a one-byte varint).
            assert_eq!(bytes[FRAME_HEADER_BYTES], tag, "{relay:?}");
            assert_eq!(decode_frame(&bytes, MAX).expect("decode").0, Frame::Lease(relay));
        }
    }

    #[test]
    fn header_is_length_then_crc32c_little_endian() {
        let bytes = encoded_batch();
        let payload = &bytes[FRAME_HEADER_BYTES..];
        assert_eq!(bytes[0..4], (payload.len() as u32).to_le_bytes());
        assert_eq!(bytes[4..8], crc32c::crc32c(payload).to_le_bytes());
    }

    #[test]
    fn two_frames_back_to_back_decode_one_at_a_time() {
        let mut bytes = encoded_batch();
        let first_len = bytes.len();
        bytes.extend(encoded_batch());
        let (_, used) = decode_frame(&bytes, MAX).expect("first");
        assert_eq!(used, first_len);
        decode_frame(&bytes[used..], MAX).expect("second");
    }

    #[test]
    fn flipped_payload_bit_is_a_checksum_mismatch() {
        let mut bytes = encoded_batch();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        assert!(matches!(
            decode_frame(&bytes, MAX),
            Err(PeerError::ChecksumMismatch { .. })
        ));
    }

    #[test]
    fn truncated_frame_is_an_error_at_every_cut() {
        let bytes = encoded_batch();
        for cut in 0..bytes.len() {
            assert!(
                matches!(
                    decode_frame(&bytes[..cut], MAX),
                    Err(PeerError::Truncated { .. })
                ),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn oversize_length_is_refused_from_the_header_alone() {
        // A header announcing 4 GiB - 1 followed by nothing: refused before any
        // allocation, not reported as truncated.
        let mut bytes = u32::MAX.to_le_bytes().to_vec();
        bytes.extend([0u8; 4]);
        assert!(matches!(
            decode_frame(&bytes, MAX),
            Err(PeerError::FrameTooLarge {
                len_bytes: 0xffff_ffff,
                ..
            })
        ));
        // And a real frame one byte over a configured limit.
        let frame = encoded_batch();
        let payload_len = (frame.len() - FRAME_HEADER_BYTES) as u32;
        assert!(matches!(
            decode_frame(&frame, payload_len - 1),
            Err(PeerError::FrameTooLarge { .. })
        ));
        assert!(decode_frame(&frame, payload_len).is_ok());
    }

    #[test]
    fn encoding_past_the_limit_is_refused() {
        let frame = Frame::Messages(every_message_kind());
        assert!(matches!(
            encode_frame(&frame, 16),
            Err(PeerError::FrameTooLarge { .. })
        ));
    }

    /// Wraps an arbitrary payload in a frame with a correct checksum, as a hostile
    /// (not merely corrupt) peer would.
    fn frame_with_valid_crc(payload: &[u8]) -> Vec<u8> {
        let mut bytes = (payload.len() as u32).to_le_bytes().to_vec();
        bytes.extend(crc32c::crc32c(payload).to_le_bytes());
        bytes.extend(payload);
        bytes
    }

    #[test]
    fn garbage_payload_with_valid_crc_is_undecodable() {
        for payload in [
            &b""[..],
            &[0xff; 32][..],
            &[7, 0, 0, 0][..],    // unknown frame variant
            &[1, 1, 1, 1, 1][..], // messages frame with a truncated message
        ] {
            assert!(
                matches!(
                    decode_frame(&frame_with_valid_crc(payload), MAX),
                    Err(PeerError::Undecodable(_))
                ),
                "payload {payload:?}"
            );
        }
    }

    #[test]
    fn trailing_bytes_after_the_frame_value_are_refused() {
        let bytes = encoded_batch();
        let mut payload = bytes[FRAME_HEADER_BYTES..].to_vec();
        payload.push(0);
        assert!(matches!(
            decode_frame(&frame_with_valid_crc(&payload), MAX),
            Err(PeerError::TrailingBytes { trailing_bytes: 1 })
        ));
    }

    #[test]
    fn forged_inner_lengths_do_not_allocate() {
        // Messages frame (tag 1) claiming u64::MAX / 2^40 messages, and a Propose
        // whose single datum claims 2^40 bytes: all refused by the remaining-bytes
        // check, in a frame of a few bytes.
        let huge_vec = {
            let mut p = vec![1u8, 0xfd]; // varint: 0xfd = u64 follows
            p.extend(u64::MAX.to_le_bytes());
            p
        };
        let tera_vec = {
            let mut p = vec![1u8, 0xfd];
            p.extend((1u64 << 40).to_le_bytes());
            p
        };
        let tera_bytes = {
            // 1 message: from 1, to 2, term 3, body Propose (tag 8), 1 datum of 2^40.
            let mut p = vec![1u8, 1, 1, 2, 3, 8, 1, 0xfd];
            p.extend((1u64 << 40).to_le_bytes());
            p
        };
        for payload in [huge_vec, tera_vec, tera_bytes] {
            assert!(
                matches!(
                    decode_frame(&frame_with_valid_crc(&payload), MAX),
                    Err(PeerError::Undecodable(_))
                ),
                "payload {payload:?}"
            );
        }
    }

    fn snapshot_message() -> Message {
        msg(MessageBody::Snapshot {
            meta: SnapshotMeta {
                index: 1000,
                term: 6,
                conf: ConfState {
                    voters: vec![0x1111, 0x2222, 0x3333],
                    learners: vec![],
                },
            },
        })
    }

    fn snapshot_frame(data_bytes: usize) -> Frame {
        Frame::Snapshot {
            message: snapshot_message(),
            data: (0..data_bytes).map(|i| (i * 7 % 251) as u8).collect(),
        }
    }

    #[test]
    fn snapshot_frame_round_trips() {
        for data_bytes in [0, 1, 300, 100_000] {
            let frame = snapshot_frame(data_bytes);
            let bytes = encode_frame(&frame, MAX).expect("encode");
            let (decoded, used) = decode_frame(&bytes, MAX).expect("decode");
            assert_eq!(used, bytes.len());
            assert_eq!(decoded, frame, "{data_bytes} bytes of data");
        }
        // Any message kind may ride in it; the codec does not judge.
        for m in every_message_kind() {
            let frame = Frame::Snapshot {
                message: m,
                data: b"dump".to_vec(),
            };
            let bytes = encode_frame(&frame, MAX).expect("encode");
            assert_eq!(decode_frame(&bytes, MAX).expect("decode").0, frame);
        }
    }

    #[test]
    fn snapshot_frame_is_tag_2_and_existing_tags_are_unchanged() {
        let tag = |frame: &Frame| encode_frame(frame, MAX).expect("encode")[FRAME_HEADER_BYTES];
        let h = Handshake {
            protocol_version: PROTOCOL_VERSION,
            cluster_id: 1,
            from: 2,
            to: 3,
        };
        assert_eq!(tag(&Frame::Handshake(h)), 0);
        assert_eq!(tag(&Frame::Messages(vec![])), 1);
        assert_eq!(tag(&snapshot_frame(3)), 2);
    }

    #[test]
    fn snapshot_frame_with_a_flipped_bit_or_cut_short_is_refused() {
        let bytes = encode_frame(&snapshot_frame(1000), MAX).expect("encode");
        for at in [
            FRAME_HEADER_BYTES,
            FRAME_HEADER_BYTES + 20,
            bytes.len() / 2,
            bytes.len() - 1,
        ] {
            let mut corrupt = bytes.clone();
            corrupt[at] ^= 0x10;
            assert!(
                matches!(
                    decode_frame(&corrupt, MAX),
                    Err(PeerError::ChecksumMismatch { .. })
                ),
                "flip at {at}"
            );
        }
        for cut in 0..bytes.len() {
            assert!(
                matches!(
                    decode_frame(&bytes[..cut], MAX),
                    Err(PeerError::Truncated { .. })
                ),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn snapshot_frame_past_the_limit_is_refused_on_both_sides() {
        // Dump alone longer than the limit: refused before encoding. The zeroed
        // allocation is lazy, so this costs no 64 MiB of real memory.
        let over = vec![0u8; MAX as usize + 1];
        assert!(matches!(
            encode_snapshot(&snapshot_message(), over, MAX),
            Err(PeerError::FrameTooLarge { max_bytes: MAX, .. })
        ));
        // Dump that fits but not with its message around it.
        assert!(matches!(
            encode_snapshot(&snapshot_message(), vec![1; 4096], 4096),
            Err(PeerError::FrameTooLarge { .. })
        ));
        // The receiver refuses it from the header with a smaller limit.
        let bytes = encode_frame(&snapshot_frame(4096), MAX).expect("encode");
        assert!(matches!(
            decode_frame(&bytes, 4096),
            Err(PeerError::FrameTooLarge { .. })
        ));
    }

    #[test]
    fn snapshot_frame_with_a_forged_data_length_does_not_allocate() {
        // Tag 2, the snapshot message as encoded, then a data length of 2^40.
        let good = encode_frame(&snapshot_frame(0), MAX).expect("encode");
        let mut payload = good[FRAME_HEADER_BYTES..good.len() - 1].to_vec(); // drop len 0
        payload.push(0xfd);
        payload.extend((1u64 << 40).to_le_bytes());
        assert!(matches!(
            decode_frame(&frame_with_valid_crc(&payload), MAX),
            Err(PeerError::Undecodable(_))
        ));
    }

    fn chunk_frame(first: bool, offset: u64, total: u64, data_bytes: usize) -> Frame {
        Frame::SnapshotChunk {
            message: first.then(snapshot_message),
            offset,
            total,
            data: (0..data_bytes).map(|i| (i * 13 % 251) as u8).collect(),
        }
    }

    #[test]
    fn snapshot_chunk_frames_round_trip() {
        for frame in [
            chunk_frame(true, 0, 0, 0),
            chunk_frame(true, 0, 5 * 1024 * 1024, 64 * 1024),
            chunk_frame(false, 64 * 1024, 5 * 1024 * 1024, 64 * 1024),
            chunk_frame(false, 1, 2, 1),
            chunk_frame(false, u64::MAX - 1, u64::MAX, 1),
            // The codec checks the layout only; the sequence is the listener's.
            chunk_frame(true, 7, 3, 10),
        ] {
            let bytes = encode_frame(&frame, MAX).expect("encode");
            let (decoded, used) = decode_frame(&bytes, MAX).expect("decode");
            assert_eq!(used, bytes.len());
            assert_eq!(decoded, frame);
        }
    }

    #[test]
    fn snapshot_chunk_frame_is_tag_3() {
        let bytes = encode_frame(&chunk_frame(false, 1, 2, 1), MAX).expect("encode");
        assert_eq!(bytes[FRAME_HEADER_BYTES], 3);
    }

    #[test]
    fn snapshot_chunk_frame_corrupt_cut_or_forged_is_refused() {
        let bytes = encode_frame(&chunk_frame(true, 0, 4000, 1000), MAX).expect("encode");
        for at in [FRAME_HEADER_BYTES, FRAME_HEADER_BYTES + 2, bytes.len() - 1] {
            let mut corrupt = bytes.clone();
            corrupt[at] ^= 0x04;
            assert!(
                matches!(
                    decode_frame(&corrupt, MAX),
                    Err(PeerError::ChecksumMismatch { .. })
                ),
                "flip at {at}"
            );
        }
        for cut in 0..bytes.len() {
            assert!(
                matches!(
                    decode_frame(&bytes[..cut], MAX),
                    Err(PeerError::Truncated { .. })
                ),
                "cut at {cut}"
            );
        }
        // Tag 3, no message, offset 0, total 1, then a data length of 2^40.
        let mut forged = vec![3u8, 0, 0, 1, 0xfd];
        forged.extend((1u64 << 40).to_le_bytes());
        // An option tag that is neither 0 nor 1.
        let bad_option = vec![3u8, 2, 0, 1, 1, 9];
        // Truncated inside the fields.
        let short = vec![3u8, 0, 0xfd, 1];
        for payload in [forged, bad_option, short] {
            assert!(
                matches!(
                    decode_frame(&frame_with_valid_crc(&payload), MAX),
                    Err(PeerError::Undecodable(_))
                ),
                "payload {payload:?}"
            );
        }
        // A well-formed chunk with a byte after it.
        let mut payload = bytes[FRAME_HEADER_BYTES..].to_vec();
        payload.push(0);
        assert!(matches!(
            decode_frame(&frame_with_valid_crc(&payload), MAX),
            Err(PeerError::TrailingBytes { trailing_bytes: 1 })
        ));
    }

    #[test]
    fn a_chunk_sized_by_the_overhead_fits_its_frame_at_worst() {
        let limit = 4096;
        for message in [None, Some(snapshot_message())] {
            let overhead = snapshot_chunk_overhead(message.as_ref()).expect("overhead");
            let data = vec![0xab; (limit - overhead) as usize];
            // Worst-case offset and total varints: still fits, and the overhead
            // is tight (it allows 9 bytes for the data's length prefix, which
            // takes 3 here).
            let bytes = encode_snapshot_chunk(message.as_ref(), u64::MAX, u64::MAX, &data, limit)
                .expect("fits");
            let payload = bytes.len() - FRAME_HEADER_BYTES;
            assert!(payload <= limit as usize);
            assert_eq!(payload, limit as usize - 6);
            let (decoded, _) = decode_frame(&bytes, limit).expect("decode");
            assert_eq!(
                decoded,
                Frame::SnapshotChunk {
                    message: message.clone(),
                    offset: u64::MAX,
                    total: u64::MAX,
                    data,
                }
            );
            // Past the limit: refused, before or after encoding.
            let over = vec![0xab; limit as usize];
            assert!(matches!(
                encode_snapshot_chunk(message.as_ref(), 0, 1, &over, limit),
                Err(PeerError::FrameTooLarge { .. })
            ));
            let over = vec![0xab; limit as usize + 1];
            assert!(matches!(
                encode_snapshot_chunk(message.as_ref(), 0, 1, &over, limit),
                Err(PeerError::FrameTooLarge { .. })
            ));
        }
    }

    #[actix_rt::test]
    async fn read_frame_reads_chunks_between_message_frames() {
        let mut bytes = Vec::new();
        let chunks = [
            chunk_frame(true, 0, 150_000, 70_000),
            chunk_frame(false, 70_000, 150_000, 70_000),
            chunk_frame(false, 140_000, 150_000, 10_000),
        ];
        for chunk in &chunks {
            bytes.extend(encode_frame(chunk, MAX).expect("encode"));
            bytes.extend(encoded_batch());
        }
        let mut reader = &bytes[..];
        let mut buf = Vec::new();
        for chunk in chunks {
            let got = read_frame(&mut reader, MAX, &mut buf).await.expect("chunk");
            assert_eq!(got, Some(chunk));
            let got = read_frame(&mut reader, MAX, &mut buf).await.expect("batch");
            assert_eq!(got, Some(Frame::Messages(every_message_kind())));
        }
        assert_eq!(
            read_frame(&mut reader, MAX, &mut buf).await.expect("eof"),
            None
        );
    }

    #[actix_rt::test]
    async fn read_frame_reads_a_snapshot_between_message_frames() {
        let mut bytes = encoded_batch();
        bytes.extend(encode_frame(&snapshot_frame(70_000), MAX).expect("encode"));
        bytes.extend(encoded_batch());
        let mut reader = &bytes[..];
        let mut buf = Vec::new();
        let read = |r: Option<Frame>| r.expect("a frame");
        let first = read(read_frame(&mut reader, MAX, &mut buf).await.expect("1"));
        assert_eq!(first, Frame::Messages(every_message_kind()));
        let second = read(read_frame(&mut reader, MAX, &mut buf).await.expect("2"));
        assert_eq!(second, snapshot_frame(70_000));
        let third = read(read_frame(&mut reader, MAX, &mut buf).await.expect("3"));
        assert_eq!(third, Frame::Messages(every_message_kind()));
    }

    #[actix_rt::test]
    async fn read_frame_reads_frames_then_clean_end() {
        let mut bytes = encoded_batch();
        bytes.extend(encoded_batch());
        let mut reader = &bytes[..];
        let mut buf = Vec::new();
        for _ in 0..2 {
            let frame = read_frame(&mut reader, MAX, &mut buf).await.expect("read");
            assert_eq!(frame, Some(Frame::Messages(every_message_kind())));
        }
        assert_eq!(
            read_frame(&mut reader, MAX, &mut buf).await.expect("eof"),
            None
        );
    }

    #[actix_rt::test]
    async fn read_frame_end_inside_a_frame_is_truncated() {
        let bytes = encoded_batch();
        for cut in [1, FRAME_HEADER_BYTES, bytes.len() - 1] {
            let mut reader = &bytes[..cut];
            let mut buf = Vec::new();
            assert!(
                matches!(
                    read_frame(&mut reader, MAX, &mut buf).await,
                    Err(PeerError::Truncated { .. })
                ),
                "cut at {cut}"
            );
        }
    }

    #[actix_rt::test]
    async fn read_frame_refuses_oversize_without_reading_the_payload() {
        let mut bytes = (MAX + 1).to_le_bytes().to_vec();
        bytes.extend([0u8; 4]);
        let mut reader = &bytes[..];
        let mut buf = Vec::new();
        assert!(matches!(
            read_frame(&mut reader, MAX, &mut buf).await,
            Err(PeerError::FrameTooLarge { .. })
        ));
        assert_eq!(buf.capacity(), 0);
    }
}
