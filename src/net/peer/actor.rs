//! `PeerActor`: the outbound link to one remote member.
//!
//! Owns one TCP connection to that member's peer URL and the bounded queue in front
//! of it. `SendMessages` only enqueues (never waits on the network); a link task on
//! the actor's arbiter connects, sends the handshake, drains the queue into batched
//! frames and writes them with async I/O. On any failure it drops the connection,
//! reports [`Unreachable`] and reconnects with exponential backoff.
//!
//! [`SendSnapshot`] goes through the same queue, so a snapshot starts after the
//! messages sent before it. The link then streams it as chunk frames (at most
//! `snapshot_chunk_bytes` of dump each) and, before each chunk after the first,
//! writes every message queued meanwhile: a heartbeat waits for one chunk, not
//! for the whole dump. So messages sent after a snapshot may reach the member
//! before the snapshot is complete (why that is safe: the module docs of
//! `net::peer`). Every `SendSnapshot` gets exactly one [`SnapshotSent`] answer:
//! `ok: true` once the last chunk is written to the socket (not once the follower
//! installed it: Raft learns that from the follower's next append response),
//! `ok: false` if it was refused (larger than `snapshot_bytes_max`, or another
//! snapshot to the same member still in flight) or dropped (link down before or
//! during the stream, queue full, actor stopped). At most one snapshot is in
//! flight per link, so a slow member costs at most one dump of memory on top of
//! its queued messages; a snapshot cut off by a broken link is not resumed (the
//! next connection starts over, when Raft asks again).
//!
//! It must never block the event loop, never queue without bound, and never retry
//! a message: while the link is down, messages are dropped and Raft retransmits
//! (the `Unreachable` report moves the follower's progress back to probing). It
//! reads nothing from the connection except to notice that it closed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use prometheus::{IntCounter, IntGauge};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::codec::{self, Frame, Handshake, LeaseRelay, PROTOCOL_VERSION};
use super::{PeerError, PeerLimits};
use crate::raft::{Message, NodeId};

/// Raft messages for this actor's remote member, in the order to send them.
/// Enqueued without waiting; those that do not fit the queue are dropped and the
/// member is reported [`Unreachable`].
#[derive(Debug)]
pub struct SendMessages(pub Vec<Message>);

impl actix::Message for SendMessages {
    type Result = ();
}

/// A lease keep-alive relayed to this actor's remote member, or an answer to
/// one (see "Lease relay" in `net::peer`). Queued like a message, and like one
/// dropped when the queue is full or the link is down (the relaying member asks
/// again).
#[derive(Debug)]
pub struct SendLeaseRelay(pub LeaseRelay);

impl actix::Message for SendLeaseRelay {
    type Result = ();
}

/// "Messages to member `to` were (or may have been) lost": its link is down or its
/// queue is full. The Raft actor answers with `report_unreachable(to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unreachable {
    pub to: NodeId,
}

impl actix::Message for Unreachable {
    type Result = ();
}

/// A snapshot for this actor's remote member: the Raft `Snapshot` message and the
/// state machine dump it carries, streamed in chunks after the messages sent
/// before it (later messages may overtake its chunks). Answered (later) by
/// exactly one [`SnapshotSent`].
#[derive(Debug)]
pub struct SendSnapshot {
    pub message: Message,
    pub data: Vec<u8>,
}

impl actix::Message for SendSnapshot {
    type Result = ();
}

/// The outcome of one [`SendSnapshot`] to member `to`: `ok` when every chunk was
/// written to the connection, otherwise it was refused or lost. The Raft actor
/// answers with `report_snapshot(to, ok)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotSent {
    pub to: NodeId,
    pub ok: bool,
}

impl actix::Message for SnapshotSent {
    type Result = ();
}

/// Who this link connects, and how.
#[derive(Debug, Clone)]
pub struct PeerLinkConfig {
    pub cluster_id: u64,
    pub local_member_id: NodeId,
    pub remote_member_id: NodeId,
    /// The remote member's peer URL, `http://host:port` (etcd's form). TLS is not
    /// supported yet: `https://` is refused at construction.
    pub peer_url: String,
    pub limits: PeerLimits,
}

/// The outbound link to one remote member. One actor per member; stopping it
/// closes the connection.
pub struct PeerActor {
    link: LinkParams,
    unreachable: Recipient<Unreachable>,
    snapshot_sent: Recipient<SnapshotSent>,
    /// Set while a snapshot is queued or being written; cleared when its outcome
    /// is reported (by whichever side holds it then).
    snapshot_in_flight: Arc<AtomicBool>,
    queue: Option<mpsc::Sender<Outbound>>,
    link_task: Option<actix_rt::task::JoinHandle<()>>,
    /// Set when a full queue was reported; cleared when a message fits again, so a
    /// stream of sends into a full queue costs one report, not one per send.
    queue_full_reported: bool,
    instruments: crate::metrics::ActorMetrics,
}

/// One item of the link's queue.
#[derive(Debug)]
enum Outbound {
    Message(Message),
    Snapshot(PendingSnapshot),
    Lease(LeaseRelay),
}

/// A snapshot on its way to the socket.
#[derive(Debug)]
struct PendingSnapshot {
    message: Message,
    data: Vec<u8>,
    outcome: SnapshotOutcome,
}

/// Reports a snapshot's outcome exactly once: explicitly through [`report`], or as
/// a failure when dropped unreported (dropped from the queue while the link was
/// down, left in the queue when the actor stopped, lost with a failed write).
///
/// [`report`]: SnapshotOutcome::report
#[derive(Debug)]
struct SnapshotOutcome {
    to: NodeId,
    recipient: Recipient<SnapshotSent>,
    in_flight: Arc<AtomicBool>,
    reported: bool,
}

impl SnapshotOutcome {
    fn report(mut self, ok: bool) {
        self.send(ok);
    }

    fn send(&mut self, ok: bool) {
        if self.reported {
            return;
        }
        self.reported = true;
        // Cleared first: the answer may prompt the next snapshot at once.
        self.in_flight.store(false, Ordering::SeqCst);
        self.recipient.do_send(SnapshotSent { to: self.to, ok });
    }
}

impl Drop for SnapshotOutcome {
    fn drop(&mut self) {
        self.send(false);
    }
}

/// How long writing a snapshot chunk frame of `bytes` may take: the write timeout
/// once per started 8 MiB (a large chunk on a modest link must not count as a
/// dead peer, a stalled one still must).
fn snapshot_write_timeout(limits: &PeerLimits, bytes: usize) -> Duration {
    const PER_BYTES: usize = 8 * 1024 * 1024;
    let factor = u32::try_from(1 + bytes / PER_BYTES).unwrap_or(u32::MAX);
    limits.write_timeout.saturating_mul(factor)
}

/// What the link task needs; owned by it once spawned.
#[derive(Debug, Clone)]
struct LinkParams {
    socket_addr: String,
    handshake: Handshake,
    limits: PeerLimits,
    /// Bytes written to the remote member (etcd's `peer_sent_bytes_total{To}`).
    sent_bytes: Option<IntCounter>,
    /// Messages dropped unsent: the link down or its queue full (etcd's
    /// `peer_sent_failures_total{To}`, which its `etcdMembersDown` alert reads).
    send_failures: Option<IntCounter>,
    /// 1 while the link is connected (etcd's `active_peers{Local,Remote}`),
    /// and the links lost (etcd's `disconnected_peers_total{Local,Remote}`).
    connection: Option<(IntGauge, IntCounter)>,
}

impl PeerActor {
    /// Checks the URL and limits; the connection is made once the actor starts.
    /// `unreachable` hears of lost messages, `snapshot_sent` of every snapshot's
    /// outcome.
    pub fn new(
        config: PeerLinkConfig,
        unreachable: Recipient<Unreachable>,
        snapshot_sent: Recipient<SnapshotSent>,
    ) -> Result<PeerActor, PeerError> {
        config.limits.validate()?;
        let socket_addr = peer_socket_addr(&config.peer_url)?;
        Ok(PeerActor {
            link: LinkParams {
                socket_addr,
                handshake: Handshake {
                    protocol_version: PROTOCOL_VERSION,
                    cluster_id: config.cluster_id,
                    from: config.local_member_id,
                    to: config.remote_member_id,
                },
                limits: config.limits,
                sent_bytes: None,
                send_failures: None,
                connection: None,
            },
            unreachable,
            snapshot_sent,
            snapshot_in_flight: Arc::new(AtomicBool::new(false)),
            queue: None,
            link_task: None,
            queue_full_reported: false,
            instruments: crate::metrics::ActorMetrics::detached("peer"),
        })
    }

    /// This link's actor instruments (label `peer-<remote id in hex>`).
    pub fn with_instruments(mut self, instruments: crate::metrics::ActorMetrics) -> Self {
        self.instruments = instruments;
        self
    }

    /// Counts every byte this link writes in `counter`.
    pub fn with_sent_bytes(mut self, counter: IntCounter) -> Self {
        self.link.sent_bytes = Some(counter);
        self
    }

    /// Counts every item this link drops unsent in `counter`.
    pub fn with_send_failures(mut self, counter: IntCounter) -> Self {
        self.link.send_failures = Some(counter);
        self
    }

    /// Shows in `active` whether the link is connected, and counts in
    /// `disconnected` every connection lost.
    pub fn with_connection_metrics(mut self, active: IntGauge, disconnected: IntCounter) -> Self {
        self.link.connection = Some((active, disconnected));
        self
    }

    fn count_send_failures(&self, items: usize) {
        if items == 0 {
            return; // the common case: no atomic add on every batch
        }
        if let Some(failures) = &self.link.send_failures {
            failures.inc_by(items as u64);
        }
    }

    fn remote(&self) -> NodeId {
        self.link.handshake.to
    }
}

impl Actor for PeerActor {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Self::Context) {
        let (tx, rx) = mpsc::channel(self.link.limits.queue_messages_max);
        self.queue = Some(tx);
        self.link_task = Some(actix_rt::spawn(run_link(
            self.link.clone(),
            rx,
            self.unreachable.clone(),
        )));
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        // Dropping the queue alone would end the task only once it next looks at
        // the queue; abort so a connect or backoff in progress ends now too.
        self.queue = None;
        if let Some(task) = self.link_task.take() {
            task.abort();
        }
    }
}

crate::mailbox_probe_handler!(PeerActor, instruments);

impl Handler<SendMessages> for PeerActor {
    type Result = ();

    fn handle(&mut self, msg: SendMessages, _ctx: &mut Self::Context) {
        let _t = self.instruments.handling("SendMessages");
        let Some(queue) = &self.queue else {
            return;
        };
        let mut dropped = 0usize;
        for m in msg.0 {
            match queue.try_send(Outbound::Message(m)) {
                Ok(()) => self.queue_full_reported = false,
                // Full: the link is slower than Raft. Closed: the link task ended
                // (it only does when the actor stops). Either way, drop.
                Err(_) => dropped += 1,
            }
        }
        self.count_send_failures(dropped);
        if dropped > 0 && !self.queue_full_reported {
            self.queue_full_reported = true;
            tracing::warn!(
                remote = format!("{:x}", self.remote()),
                dropped,
                queue_messages_max = self.link.limits.queue_messages_max,
                "peer queue full: dropping messages, reporting unreachable"
            );
            self.unreachable.do_send(Unreachable { to: self.remote() });
        }
    }
}

impl Handler<SendLeaseRelay> for PeerActor {
    type Result = ();

    fn handle(&mut self, msg: SendLeaseRelay, _ctx: &mut Self::Context) {
        let _t = self.instruments.handling("SendLeaseRelay");
        if let Some(queue) = &self.queue {
            if queue.try_send(Outbound::Lease(msg.0)).is_err() {
                self.count_send_failures(1);
                tracing::debug!(remote = format!("{:x}", self.remote()), "peer queue full: dropping a lease relay");
            }
        }
    }
}

impl Handler<SendSnapshot> for PeerActor {
    type Result = ();

    fn handle(&mut self, msg: SendSnapshot, _ctx: &mut Self::Context) {
        let _t = self.instruments.handling("SendSnapshot");
        let remote = self.remote();
        let refuse = |recipient: &Recipient<SnapshotSent>| {
            recipient.do_send(SnapshotSent {
                to: remote,
                ok: false,
            })
        };
        let max_bytes = self.link.limits.snapshot_bytes_max;
        if u64::try_from(msg.data.len()).map_or(true, |len| len > max_bytes) {
            tracing::error!(
                remote = format!("{remote:x}"),
                snapshot_bytes = msg.data.len(),
                snapshot_bytes_max = max_bytes,
                "snapshot larger than snapshot_bytes_max: not sent; the member cannot \
                 catch up this way"
            );
            refuse(&self.snapshot_sent);
            return;
        }
        if self.snapshot_in_flight.swap(true, Ordering::SeqCst) {
            tracing::warn!(
                remote = format!("{remote:x}"),
                "a snapshot to this member is still in flight: refusing another"
            );
            refuse(&self.snapshot_sent);
            return;
        }
        // From here the outcome guard owns the report (and clears the flag).
        let pending = PendingSnapshot {
            message: msg.message,
            data: msg.data,
            outcome: SnapshotOutcome {
                to: remote,
                recipient: self.snapshot_sent.clone(),
                in_flight: self.snapshot_in_flight.clone(),
                reported: false,
            },
        };
        let Some(queue) = &self.queue else {
            return; // Not started or stopping: dropping `pending` reports it.
        };
        if queue.try_send(Outbound::Snapshot(pending)).is_err() {
            // The rejected item is dropped here, which reports the failure.
            tracing::warn!(
                remote = format!("{remote:x}"),
                "peer queue full: dropping a snapshot"
            );
        }
    }
}

/// `http://host:port` → `host:port`. A bare `host:port` is accepted too.
fn peer_socket_addr(url: &str) -> Result<String, PeerError> {
    let bad = |reason| PeerError::BadPeerUrl {
        url: url.to_string(),
        reason,
    };
    let rest = if let Some(rest) = url.strip_prefix("http://") {
        rest
    } else if url.starts_with("https://") {
        return Err(bad("TLS peer URLs are not supported yet"));
    } else if url.contains("://") {
        return Err(bad("scheme must be http"));
    } else {
        url
    };
    let host_port = rest.strip_suffix('/').unwrap_or(rest);
    if host_port.contains('/') {
        return Err(bad("a peer URL has no path"));
    }
    let Some((host, port)) = host_port.rsplit_once(':') else {
        return Err(bad("missing port"));
    };
    if host.is_empty() {
        return Err(bad("missing host"));
    }
    if port.parse::<u16>().is_err() {
        return Err(bad("port is not a number in 0..=65535"));
    }
    Ok(host_port.to_string())
}

/// Why a connected link ended.
enum LinkEnd {
    /// The actor stopped: the task ends.
    QueueClosed,
    Failed(PeerError),
}

/// The link task: connect, serve, and on failure report, back off, and retry,
/// until the actor drops the queue.
async fn run_link(
    link: LinkParams,
    mut queue: mpsc::Receiver<Outbound>,
    unreachable: Recipient<Unreachable>,
) {
    let remote = format!("{:x}", link.handshake.to);
    let limits = &link.limits;
    let mut backoff = limits.reconnect_backoff_min;
    // Logged at warn only on the first failure of a streak: a member that is down
    // for an hour must not write a warning every two seconds.
    let mut failures_in_a_row = 0u64;
    loop {
        let attempt_started = Instant::now();
        match connect(&link).await {
            Ok(stream) => {
                tracing::info!(remote, addr = link.socket_addr, "peer link connected");
                failures_in_a_row = 0;
                if let Some((active, _)) = &link.connection {
                    active.set(1);
                }
                let end = serve_link(stream, &mut queue, limits, link.sent_bytes.as_ref()).await;
                if let Some((active, disconnected)) = &link.connection {
                    active.set(0);
                    disconnected.inc();
                }
                match end {
                    LinkEnd::QueueClosed => return,
                    LinkEnd::Failed(error) => {
                        tracing::warn!(remote, addr = link.socket_addr, %error, "peer link lost");
                    }
                }
                // A link that stayed up a while was healthy: start the backoff
                // over. One that a listener refuses at once keeps backing off.
                if attempt_started.elapsed() >= limits.reconnect_backoff_max {
                    backoff = limits.reconnect_backoff_min;
                }
            }
            Err(error) => {
                failures_in_a_row += 1;
                if failures_in_a_row == 1 {
                    tracing::warn!(remote, addr = link.socket_addr, %error, "peer connect failed; retrying with backoff");
                } else {
                    tracing::debug!(remote, addr = link.socket_addr, %error, failures_in_a_row, "peer connect failed");
                }
            }
        }
        // One report per failed attempt: bounded by the backoff, and it covers
        // everything dropped until the next attempt.
        unreachable.do_send(Unreachable {
            to: link.handshake.to,
        });
        if drop_until(&mut queue, Instant::now() + backoff, link.send_failures.as_ref())
            .await
            .is_err()
        {
            return;
        }
        backoff = (backoff * 2).min(limits.reconnect_backoff_max);
    }
}

/// Waits until `deadline`, dropping whatever is queued meanwhile (Raft will
/// retransmit once the link is back; a dropped snapshot reports its failure),
/// each item counted in `failures`. `Err` when the queue closed.
async fn drop_until(
    queue: &mut mpsc::Receiver<Outbound>,
    deadline: Instant,
    failures: Option<&IntCounter>,
) -> Result<(), ()> {
    let sleep = tokio::time::sleep_until(deadline);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            () = &mut sleep => return Ok(()),
            m = queue.recv() => {
                if m.is_none() {
                    return Err(());
                }
                if let Some(failures) = failures {
                    failures.inc();
                }
            }
        }
    }
}

async fn connect(link: &LinkParams) -> Result<TcpStream, PeerError> {
    let limits = &link.limits;
    let stream = tokio::time::timeout(
        limits.connect_timeout,
        TcpStream::connect(link.socket_addr.as_str()),
    )
    .await
    .map_err(|_| PeerError::ConnectTimeout(limits.connect_timeout))??;
    // We batch ourselves; Nagle would only add latency to heartbeats.
    stream.set_nodelay(true)?;
    let mut stream = stream;
    let handshake = codec::encode_frame(&Frame::Handshake(link.handshake), limits.frame_bytes_max)?;
    write_with_timeout(&mut stream, &handshake, limits.write_timeout, link.sent_bytes.as_ref()).await?;
    Ok(stream)
}

async fn write_with_timeout<W: AsyncWriteExt + Unpin>(
    writer: &mut W,
    bytes: &[u8],
    timeout: Duration,
    sent: Option<&IntCounter>,
) -> Result<(), PeerError> {
    tokio::time::timeout(timeout, writer.write_all(bytes))
        .await
        .map_err(|_| PeerError::WriteTimeout(timeout))??;
    if let Some(sent) = sent {
        sent.inc_by(bytes.len() as u64);
    }
    Ok(())
}

/// Sends queued items on a connected link until it fails or the queue closes.
/// Each message frame takes every message queued at that moment (up to the frame
/// limits) up to the next snapshot, which then starts streaming: its first chunk
/// at once, and each next chunk after whatever messages were queued meanwhile.
async fn serve_link(
    stream: TcpStream,
    queue: &mut mpsc::Receiver<Outbound>,
    limits: &PeerLimits,
    sent: Option<&IntCounter>,
) -> LinkEnd {
    let (mut reader, mut writer) = stream.into_split();
    let mut probe = [0u8; 64];
    // A snapshot met while batching messages: it goes next, after the batch.
    // Dropped (and so reported as failed) if the link fails first.
    let mut held: Option<Outbound> = None;
    // The snapshot being streamed, if any. Dropped (reported as failed) with the
    // link if it fails mid-stream.
    let mut streaming: Option<StreamingSnapshot> = None;
    loop {
        if let Some(snapshot) = streaming.as_mut() {
            // Messages first: what was queued while the last chunk was written.
            // (No other snapshot can be queued while this one is in flight; were
            // one there, it would wait in `held`, and the messages behind it
            // with it.)
            let (mut batch, mut relays) = (Vec::new(), Vec::new());
            while held.is_none() && batch.len() < limits.frame_messages_max {
                match queue.try_recv() {
                    Ok(Outbound::Message(m)) => batch.push(m),
                    Ok(Outbound::Lease(relay)) => relays.push(relay),
                    Ok(other @ Outbound::Snapshot(_)) => held = Some(other),
                    Err(_) => break,
                }
            }
            if !batch.is_empty() {
                if let Err(error) = write_batch(&mut writer, batch, limits, sent).await {
                    return LinkEnd::Failed(error);
                }
            }
            if let Err(error) = write_relays(&mut writer, relays, limits, sent).await {
                return LinkEnd::Failed(error);
            }
            match snapshot.write_next_chunk(&mut writer, limits, sent).await {
                Ok(false) => {}
                Ok(true) => {
                    if let Some(done) = streaming.take() {
                        done.finish();
                    }
                }
                Err(error) => return LinkEnd::Failed(error),
            }
            continue;
        }
        let first = match held.take() {
            Some(item) => item,
            None => tokio::select! {
                m = queue.recv() => match m {
                    Some(m) => m,
                    None => return LinkEnd::QueueClosed,
                },
                // The listener never writes, so the read side completes only when
                // the connection closed (listener stopped, or refused our
                // handshake). Watching it notices a dead link even when there is
                // nothing to send.
                r = reader.read(&mut probe) => return LinkEnd::Failed(closed_reason(r)),
            },
        };
        let result = match first {
            // The first chunk goes at once, before any message queued after the
            // snapshot; from the second on, such messages may go first.
            Outbound::Snapshot(snapshot) => match StreamingSnapshot::start(snapshot, limits) {
                None => Ok(()),
                Some(mut snapshot) => match snapshot.write_next_chunk(&mut writer, limits, sent).await {
                    Ok(true) => {
                        snapshot.finish();
                        Ok(())
                    }
                    Ok(false) => {
                        streaming = Some(snapshot);
                        Ok(())
                    }
                    Err(error) => Err(error),
                },
            },
            Outbound::Message(first) => {
                let (mut batch, mut relays) = (vec![first], Vec::new());
                while batch.len() < limits.frame_messages_max {
                    match queue.try_recv() {
                        Ok(Outbound::Message(m)) => batch.push(m),
                        Ok(Outbound::Lease(relay)) => relays.push(relay),
                        Ok(snapshot @ Outbound::Snapshot(_)) => {
                            held = Some(snapshot);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                match write_batch(&mut writer, batch, limits, sent).await {
                    Ok(()) => write_relays(&mut writer, relays, limits, sent).await,
                    Err(error) => Err(error),
                }
            }
            Outbound::Lease(relay) => write_relays(&mut writer, vec![relay], limits, sent).await,
        };
        if let Err(error) = result {
            return LinkEnd::Failed(error);
        }
    }
}

/// A snapshot being streamed on a link: the dump, how much of it is written, and
/// the outcome to report once all of it is (dropping it reports a failure).
struct StreamingSnapshot {
    message: Message,
    data: Vec<u8>,
    /// Dump bytes already written.
    written: usize,
    /// Dump bytes per chunk: `snapshot_chunk_bytes`, less if the frame limit
    /// demands it. At least 1.
    chunk_bytes: usize,
    chunks_written: u64,
    outcome: SnapshotOutcome,
}

impl StreamingSnapshot {
    /// Sizes the chunks. `None` (after reporting the failure) when not even one
    /// dump byte fits a frame next to the chunk's header: a misconfigured
    /// `frame_bytes_max`, since a handshake fits.
    fn start(snapshot: PendingSnapshot, limits: &PeerLimits) -> Option<StreamingSnapshot> {
        let PendingSnapshot {
            message,
            data,
            outcome,
        } = snapshot;
        // The first chunk's header (with the message) is the larger.
        let room = codec::snapshot_chunk_overhead(Some(&message))
            .ok()
            .and_then(|overhead| limits.frame_bytes_max.checked_sub(overhead))
            .filter(|&room| room > 0);
        let Some(room) = room else {
            tracing::error!(
                to = format!("{:x}", message.to),
                frame_bytes_max = limits.frame_bytes_max,
                "no snapshot chunk fits a peer frame: snapshot not sent"
            );
            outcome.report(false);
            return None;
        };
        let chunk_bytes = limits.snapshot_chunk_bytes.min(room) as usize;
        Some(StreamingSnapshot {
            message,
            data,
            written: 0,
            chunk_bytes,
            chunks_written: 0,
            outcome,
        })
    }

    /// Writes the next chunk; `Ok(true)` once the last one is written. An empty
    /// dump is one empty chunk.
    async fn write_next_chunk(
        &mut self,
        writer: &mut OwnedWriteHalf,
        limits: &PeerLimits,
        sent: Option<&IntCounter>,
    ) -> Result<bool, PeerError> {
        let end = self.data.len().min(self.written + self.chunk_bytes);
        let data = &self.data[self.written..end];
        let first = self.written == 0;
        let bytes = codec::encode_snapshot_chunk(
            first.then_some(&self.message),
            self.written as u64,
            self.data.len() as u64,
            data,
            limits.frame_bytes_max,
        )?;
        let timeout = snapshot_write_timeout(limits, bytes.len());
        write_with_timeout(writer, &bytes, timeout, sent).await?;
        self.written = end;
        self.chunks_written += 1;
        Ok(self.written == self.data.len())
    }

    fn finish(self) {
        tracing::info!(
            to = format!("{:x}", self.message.to),
            snapshot_bytes = self.data.len(),
            chunks = self.chunks_written,
            "snapshot sent"
        );
        self.outcome.report(true);
    }
}

fn closed_reason(read: std::io::Result<usize>) -> PeerError {
    match read {
        Ok(0) => PeerError::ConnectionClosed,
        Ok(n) => PeerError::UnexpectedData(n),
        Err(e) => PeerError::Io(e),
    }
}

/// Writes `batch` as one frame, or as several if it encodes past the frame limit
/// (halving until each part fits). A single message too large for any frame is
/// dropped with an error log: sending it would only get the connection refused.
/// Writes each lease relay as a frame of its own (they are few and small).
async fn write_relays(
    writer: &mut OwnedWriteHalf,
    relays: Vec<LeaseRelay>,
    limits: &PeerLimits,
    sent: Option<&IntCounter>,
) -> Result<(), PeerError> {
    for relay in relays {
        let bytes = codec::encode_frame(&Frame::Lease(relay), limits.frame_bytes_max)?;
        write_with_timeout(writer, &bytes, limits.write_timeout, sent).await?;
    }
    Ok(())
}

async fn write_batch(
    writer: &mut OwnedWriteHalf,
    batch: Vec<Message>,
    limits: &PeerLimits,
    sent: Option<&IntCounter>,
) -> Result<(), PeerError> {
    // A stack of parts, next to send on top, so the order is kept.
    let mut parts = vec![batch];
    while let Some(mut part) = parts.pop() {
        match codec::encode_messages(&part, limits.frame_bytes_max) {
            Ok(bytes) => write_with_timeout(writer, &bytes, limits.write_timeout, sent).await?,
            Err(PeerError::FrameTooLarge {
                len_bytes,
                max_bytes,
            }) if part.len() == 1 => {
                tracing::error!(
                    to = format!("{:x}", part[0].to),
                    len_bytes,
                    max_bytes,
                    "dropping a message larger than a peer frame may be"
                );
            }
            Err(PeerError::FrameTooLarge { .. }) => {
                let second = part.split_off(part.len() / 2);
                parts.push(second);
                parts.push(part);
            }
            Err(other) => return Err(other),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_write_timeout_grows_with_the_frame() {
        let limits = PeerLimits {
            write_timeout: Duration::from_secs(10),
            ..PeerLimits::default()
        };
        assert_eq!(snapshot_write_timeout(&limits, 0), Duration::from_secs(10));
        assert_eq!(
            snapshot_write_timeout(&limits, 64 * 1024 * 1024),
            Duration::from_secs(90)
        );
    }

    #[test]
    fn peer_urls_map_to_socket_addresses() {
        assert_eq!(
            peer_socket_addr("http://127.0.0.1:2380").unwrap(),
            "127.0.0.1:2380"
        );
        assert_eq!(
            peer_socket_addr("http://10.0.0.1:2380/").unwrap(),
            "10.0.0.1:2380"
        );
        assert_eq!(peer_socket_addr("http://[::1]:2380").unwrap(), "[::1]:2380");
        assert_eq!(
            peer_socket_addr("node-2.local:12380").unwrap(),
            "node-2.local:12380"
        );
        for bad in [
            "https://127.0.0.1:2380",
            "unix://sock",
            "http://127.0.0.1",
            "http://127.0.0.1:99999",
            "http://:2380",
            "http://h:2380/raft",
        ] {
            assert!(
                matches!(peer_socket_addr(bad), Err(PeerError::BadPeerUrl { .. })),
                "{bad}"
            );
        }
    }
}
