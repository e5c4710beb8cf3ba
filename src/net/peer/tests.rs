//! Two members on loopback: a `PeerActor` on one side, a `PeerListener` on the
//! other, a collector actor standing in for the Raft actor. Every wait polls with
//! a generous deadline, so the tests depend on no fine timing.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::actor::PeerLinkConfig;
use super::codec::{self, Frame, Handshake, PROTOCOL_VERSION};
use super::*;
use crate::raft::{ConfState, Entry, EntryKind, Message, MessageBody, NodeId, SnapshotMeta};

const CLUSTER: u64 = 0x5eed_c105;
const SENDER: NodeId = 0xa1;
const RECEIVER: NodeId = 0xb2;
const DEADLINE: Duration = Duration::from_secs(20);

/// One delivery from the listener, in arrival order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Delivered {
    Messages(Vec<Message>),
    Snapshot { message: Message, data: Vec<u8> },
    Lease(InboundLeaseRelay),
}

/// Stands in for the Raft actor: records what the transport hands it.
#[derive(Default, Clone)]
struct Recorded {
    inbound: Arc<Mutex<Vec<Delivered>>>,
    unreachable: Arc<Mutex<Vec<NodeId>>>,
    snapshot_sent: Arc<Mutex<Vec<SnapshotSent>>>,
}

impl Recorded {
    fn deliveries(&self) -> Vec<Delivered> {
        self.inbound.lock().expect("lock").clone()
    }
    fn inbound_frames(&self) -> Vec<Vec<Message>> {
        self.deliveries()
            .into_iter()
            .filter_map(|d| match d {
                Delivered::Messages(m) => Some(m),
                _ => None,
            })
            .collect()
    }
    fn snapshots(&self) -> Vec<(Message, Vec<u8>)> {
        self.deliveries()
            .into_iter()
            .filter_map(|d| match d {
                Delivered::Snapshot { message, data } => Some((message, data)),
                _ => None,
            })
            .collect()
    }
    fn snapshot_reports(&self) -> Vec<SnapshotSent> {
        self.snapshot_sent.lock().expect("lock").clone()
    }
    fn inbound_messages(&self) -> Vec<Message> {
        self.inbound_frames().into_iter().flatten().collect()
    }
    fn unreachable_reports(&self) -> usize {
        self.unreachable.lock().expect("lock").len()
    }
}

struct Collector(Recorded);

impl Actor for Collector {
    type Context = Context<Self>;
}

impl Handler<InboundMessages> for Collector {
    type Result = ();
    fn handle(&mut self, msg: InboundMessages, _: &mut Self::Context) {
        self.0
            .inbound
            .lock()
            .expect("lock")
            .push(Delivered::Messages(msg.0));
    }
}

impl Handler<InboundSnapshot> for Collector {
    type Result = ();
    fn handle(&mut self, msg: InboundSnapshot, _: &mut Self::Context) {
        self.0
            .inbound
            .lock()
            .expect("lock")
            .push(Delivered::Snapshot {
                message: msg.message,
                data: msg.data,
            });
    }
}

impl Handler<InboundLeaseRelay> for Collector {
    type Result = ();
    fn handle(&mut self, msg: InboundLeaseRelay, _: &mut Self::Context) {
        self.0.inbound.lock().expect("lock").push(Delivered::Lease(msg));
    }
}

impl Handler<SnapshotSent> for Collector {
    type Result = ();
    fn handle(&mut self, msg: SnapshotSent, _: &mut Self::Context) {
        self.0.snapshot_sent.lock().expect("lock").push(msg);
    }
}

impl Handler<Unreachable> for Collector {
    type Result = ();
    fn handle(&mut self, msg: Unreachable, _: &mut Self::Context) {
        self.0.unreachable.lock().expect("lock").push(msg.to);
    }
}

fn test_limits() -> PeerLimits {
    PeerLimits {
        reconnect_backoff_min: Duration::from_millis(20),
        reconnect_backoff_max: Duration::from_millis(200),
        ..PeerLimits::default()
    }
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn start_listener(
    addr: &str,
    local: NodeId,
    members: &[NodeId],
    recorded: &Recorded,
) -> PeerListener {
    let socket = std::net::TcpListener::bind(addr).expect("bind");
    let collector = Collector(recorded.clone()).start();
    PeerListener::start_with_limits(
        socket,
        CLUSTER,
        local,
        members.iter().copied(),
        Deliveries {
            messages: collector.clone().recipient(),
            snapshots: collector.clone().recipient(),
            lease_relays: collector.recipient(),
        },
        test_limits(),
    )
    .expect("listener")
}

fn start_peer(
    cluster_id: u64,
    local: NodeId,
    remote: NodeId,
    addr: SocketAddr,
    recorded: &Recorded,
) -> Addr<PeerActor> {
    start_peer_with_limits(cluster_id, local, remote, addr, recorded, test_limits())
}

fn start_peer_with_limits(
    cluster_id: u64,
    local: NodeId,
    remote: NodeId,
    addr: SocketAddr,
    recorded: &Recorded,
    limits: PeerLimits,
) -> Addr<PeerActor> {
    let collector = Collector(recorded.clone()).start();
    PeerActor::new(
        PeerLinkConfig {
            cluster_id,
            local_member_id: local,
            remote_member_id: remote,
            peer_url: format!("http://{addr}"),
            limits,
        },
        collector.clone().recipient(),
        collector.recipient(),
    )
    .expect("peer actor")
    .start()
}

fn heartbeat(from: NodeId, to: NodeId, ctx: u64) -> Message {
    Message {
        from,
        to,
        term: 3,
        body: MessageBody::Heartbeat { commit: 0, ctx },
    }
}

#[actix_rt::test]
async fn messages_arrive_in_order_and_batched() {
    let receiver = Recorded::default();
    let listener = start_listener("127.0.0.1:0", RECEIVER, &[SENDER, RECEIVER], &receiver);
    let sender = Recorded::default();
    let peer = start_peer(CLUSTER, SENDER, RECEIVER, listener.local_addr(), &sender);

    // An append with entries first, then many heartbeats in several sends.
    let append = Message {
        from: SENDER,
        to: RECEIVER,
        term: 3,
        body: MessageBody::Append {
            prev_index: 9,
            prev_term: 2,
            entries: (10..20)
                .map(|index| Entry {
                    term: 3,
                    index,
                    kind: EntryKind::Normal,
                    data: vec![index as u8; 100],
                })
                .collect(),
            commit: 9,
        },
    };
    let mut expected = vec![append.clone()];
    peer.do_send(SendMessages(vec![append]));
    for chunk in 0..10u64 {
        let batch: Vec<Message> = (0..100)
            .map(|i| heartbeat(SENDER, RECEIVER, chunk * 100 + i))
            .collect();
        expected.extend(batch.iter().cloned());
        peer.do_send(SendMessages(batch));
    }

    wait_until("all messages delivered", || {
        receiver.inbound_messages().len() >= expected.len()
    })
    .await;
    assert_eq!(
        receiver.inbound_messages(),
        expected,
        "same messages, same order"
    );
    let frames = receiver.inbound_frames().len();
    assert!(
        frames < expected.len() / 10,
        "{} messages arrived in {frames} deliveries: not batched",
        expected.len()
    );
    assert_eq!(sender.unreachable_reports(), 0);
}

#[actix_rt::test]
async fn lease_relays_arrive_from_their_handshaken_sender_among_messages() {
    let receiver = Recorded::default();
    let listener = start_listener("127.0.0.1:0", RECEIVER, &[SENDER, RECEIVER], &receiver);
    let sender = Recorded::default();
    let peer = start_peer(CLUSTER, SENDER, RECEIVER, listener.local_addr(), &sender);

    let relays = [
        LeaseRelay::KeepAlive { request: 7, lease: 0x1234 },
        LeaseRelay::Answer { request: 8, outcome: KeepAliveOutcome::Renewed { ttl: 5 } },
    ];
    peer.do_send(SendMessages(vec![heartbeat(SENDER, RECEIVER, 1)]));
    peer.do_send(SendLeaseRelay(relays[0]));
    peer.do_send(SendMessages(vec![heartbeat(SENDER, RECEIVER, 2)]));
    peer.do_send(SendLeaseRelay(relays[1]));

    let relayed = || -> Vec<(NodeId, LeaseRelay)> {
        receiver
            .deliveries()
            .into_iter()
            .filter_map(|d| match d {
                Delivered::Lease(InboundLeaseRelay { from, relay }) => Some((from, relay)),
                _ => None,
            })
            .collect()
    };
    wait_until("both relays and both heartbeats", || {
        relayed().len() >= 2 && receiver.inbound_messages().len() >= 2
    })
    .await;
    assert_eq!(relayed(), vec![(SENDER, relays[0]), (SENDER, relays[1])]);
    assert_eq!(receiver.inbound_messages().len(), 2);
}

/// Connects with a raw socket, sends `handshake` then one message frame, and
/// returns once the listener closed the connection (it never writes).
async fn send_raw_and_expect_close(addr: SocketAddr, handshake: Handshake) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let max = codec::FRAME_BYTES_CEILING;
    let mut bytes = codec::encode_frame(&Frame::Handshake(handshake), max).expect("encode");
    bytes.extend(
        codec::encode_frame(
            &Frame::Messages(vec![heartbeat(handshake.from, handshake.to, 1)]),
            max,
        )
        .expect("encode"),
    );
    // The listener may close before reading everything; a failed write is fine.
    let _ = stream.write_all(&bytes).await;
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(DEADLINE, stream.read(&mut buf))
        .await
        .expect("listener did not close the refused connection");
    // Ok(0) is a clean close; a reset (unread data at close) is a close too.
    assert!(matches!(read, Ok(0) | Err(_)), "listener wrote {read:?}");
}

#[actix_rt::test]
async fn handshakes_from_wrong_cluster_unknown_member_or_for_another_receiver_are_refused() {
    let receiver = Recorded::default();
    let listener = start_listener("127.0.0.1:0", RECEIVER, &[SENDER, RECEIVER], &receiver);
    let good = Handshake {
        protocol_version: PROTOCOL_VERSION,
        cluster_id: CLUSTER,
        from: SENDER,
        to: RECEIVER,
    };
    for bad in [
        Handshake {
            cluster_id: CLUSTER + 1,
            ..good
        },
        Handshake { from: 0x99, ..good },
        Handshake { to: 0x99, ..good },
        Handshake {
            protocol_version: PROTOCOL_VERSION + 1,
            ..good
        },
    ] {
        send_raw_and_expect_close(listener.local_addr(), bad).await;
    }

    // The same through a PeerActor: the refusal shows up as Unreachable.
    let sender = Recorded::default();
    let wrong_cluster = start_peer(
        CLUSTER + 1,
        SENDER,
        RECEIVER,
        listener.local_addr(),
        &sender,
    );
    wrong_cluster.do_send(SendMessages(vec![heartbeat(SENDER, RECEIVER, 1)]));
    wait_until("unreachable after refusal", || {
        sender.unreachable_reports() > 0
    })
    .await;

    // A good connection afterwards still works, and proves the listener had time
    // to deliver anything the refused ones might have smuggled in.
    let mut stream = TcpStream::connect(listener.local_addr())
        .await
        .expect("connect");
    let max = codec::FRAME_BYTES_CEILING;
    let mut bytes = codec::encode_frame(&Frame::Handshake(good), max).expect("encode");
    bytes.extend(
        codec::encode_frame(&Frame::Messages(vec![heartbeat(SENDER, RECEIVER, 42)]), max)
            .expect("encode"),
    );
    stream.write_all(&bytes).await.expect("write");
    wait_until("the good message", || {
        !receiver.inbound_messages().is_empty()
    })
    .await;
    assert_eq!(
        receiver.inbound_messages(),
        vec![heartbeat(SENDER, RECEIVER, 42)],
        "nothing from a refused connection was delivered"
    );
}

#[actix_rt::test]
async fn removed_member_is_refused_and_added_member_accepted() {
    let receiver = Recorded::default();
    let listener = start_listener("127.0.0.1:0", RECEIVER, &[RECEIVER], &receiver);
    let handshake = Handshake {
        protocol_version: PROTOCOL_VERSION,
        cluster_id: CLUSTER,
        from: SENDER,
        to: RECEIVER,
    };
    send_raw_and_expect_close(listener.local_addr(), handshake).await;

    listener.set_members([SENDER, RECEIVER]);
    let sender = Recorded::default();
    let peer = start_peer(CLUSTER, SENDER, RECEIVER, listener.local_addr(), &sender);
    peer.do_send(SendMessages(vec![heartbeat(SENDER, RECEIVER, 7)]));
    wait_until("delivery after the member was added", || {
        !receiver.inbound_messages().is_empty()
    })
    .await;
    assert_eq!(
        receiver.inbound_messages(),
        vec![heartbeat(SENDER, RECEIVER, 7)]
    );
}

#[actix_rt::test]
async fn messages_for_another_member_or_from_another_sender_are_dropped() {
    let receiver = Recorded::default();
    let listener = start_listener(
        "127.0.0.1:0",
        RECEIVER,
        &[SENDER, RECEIVER, 0xc3],
        &receiver,
    );
    let sender = Recorded::default();
    let peer = start_peer(CLUSTER, SENDER, RECEIVER, listener.local_addr(), &sender);
    peer.do_send(SendMessages(vec![
        heartbeat(SENDER, 0xc3, 1),
        heartbeat(0xc3, RECEIVER, 2),
        heartbeat(SENDER, RECEIVER, 3),
    ]));
    wait_until("delivery", || !receiver.inbound_messages().is_empty()).await;
    assert_eq!(
        receiver.inbound_messages(),
        vec![heartbeat(SENDER, RECEIVER, 3)]
    );
}

#[actix_rt::test]
async fn garbage_after_the_handshake_drops_the_connection_and_delivers_nothing() {
    let receiver = Recorded::default();
    let listener = start_listener("127.0.0.1:0", RECEIVER, &[SENDER, RECEIVER], &receiver);
    let handshake = Handshake {
        protocol_version: PROTOCOL_VERSION,
        cluster_id: CLUSTER,
        from: SENDER,
        to: RECEIVER,
    };
    let max = codec::FRAME_BYTES_CEILING;
    for corrupt in [
        // Bad checksum.
        {
            let mut frame =
                codec::encode_frame(&Frame::Messages(vec![heartbeat(SENDER, RECEIVER, 1)]), max)
                    .expect("encode");
            let last = frame.len() - 1;
            frame[last] ^= 0xff;
            frame
        },
        // Oversize length.
        {
            let mut frame = (max + 1).to_le_bytes().to_vec();
            frame.extend([0u8; 4]);
            frame
        },
        // A second handshake.
        codec::encode_frame(&Frame::Handshake(handshake), max).expect("encode"),
    ] {
        let mut stream = TcpStream::connect(listener.local_addr())
            .await
            .expect("connect");
        let mut bytes = codec::encode_frame(&Frame::Handshake(handshake), max).expect("encode");
        bytes.extend(corrupt);
        let _ = stream.write_all(&bytes).await;
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(DEADLINE, stream.read(&mut buf))
            .await
            .expect("listener did not drop the connection");
        assert!(matches!(read, Ok(0) | Err(_)), "listener wrote {read:?}");
    }
    assert!(receiver.inbound_messages().is_empty());
}

#[actix_rt::test]
async fn listener_down_reports_unreachable_and_the_link_reconnects_when_it_is_back() {
    let receiver = Recorded::default();
    let listener = start_listener("127.0.0.1:0", RECEIVER, &[SENDER, RECEIVER], &receiver);
    let addr = listener.local_addr();
    let sender = Recorded::default();
    let peer = start_peer(CLUSTER, SENDER, RECEIVER, addr, &sender);

    peer.do_send(SendMessages(vec![heartbeat(SENDER, RECEIVER, 1)]));
    wait_until("first delivery", || receiver.inbound_messages().len() == 1).await;
    assert_eq!(sender.unreachable_reports(), 0);

    listener.stop();
    wait_until("unreachable report", || sender.unreachable_reports() > 0).await;
    // Messages sent while it is down are dropped (Raft retransmits), not queued
    // for later: once the message is in the queue, two more failed attempts mean
    // a backoff window (which drops what is queued) has passed over it.
    let reports_before = sender.unreachable_reports();
    peer.send(SendMessages(vec![heartbeat(SENDER, RECEIVER, 2)]))
        .await
        .expect("send");
    wait_until("two more failed attempts", || {
        sender.unreachable_reports() >= reports_before + 2
    })
    .await;

    let restarted = Recorded::default();
    let _listener = start_listener(&addr.to_string(), RECEIVER, &[SENDER, RECEIVER], &restarted);
    // Keep sending, as Raft's heartbeats would, until one gets through.
    let mut ctx = 100;
    wait_until("delivery after the listener restarted", || {
        ctx += 1;
        peer.do_send(SendMessages(vec![heartbeat(SENDER, RECEIVER, ctx)]));
        !restarted.inbound_messages().is_empty()
    })
    .await;
    let delivered = restarted.inbound_messages();
    let ctxs: Vec<u64> = delivered
        .iter()
        .map(|m| match m.body {
            MessageBody::Heartbeat { ctx, .. } => ctx,
            _ => panic!("unexpected {m:?}"),
        })
        .collect();
    assert!(
        ctxs.iter().all(|&c| c > 100),
        "dropped while down: {ctxs:?}"
    );
    assert!(ctxs.windows(2).all(|w| w[0] < w[1]), "in order: {ctxs:?}");
}

#[actix_rt::test]
async fn a_full_queue_drops_and_reports_unreachable() {
    // No listener at all: the link never connects, the queue fills.
    let unused = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = unused.local_addr().expect("addr");
    drop(unused);
    let sender = Recorded::default();
    let collector = Collector(sender.clone()).start();
    let peer = PeerActor::new(
        PeerLinkConfig {
            cluster_id: CLUSTER,
            local_member_id: SENDER,
            remote_member_id: RECEIVER,
            peer_url: format!("http://{addr}"),
            limits: PeerLimits {
                queue_messages_max: 4,
                // Long backoff: the queue is not drained while we fill it.
                reconnect_backoff_min: Duration::from_secs(60),
                reconnect_backoff_max: Duration::from_secs(60),
                ..PeerLimits::default()
            },
        },
        collector.clone().recipient(),
        collector.recipient(),
    )
    .expect("peer actor")
    .start();
    peer.do_send(SendMessages(
        (0..100).map(|i| heartbeat(SENDER, RECEIVER, i)).collect(),
    ));
    // One report for the failed connect (backoff then holds for a minute), one
    // for the full queue: the handler's 100 sends run before the link task can
    // drain anything.
    wait_until("two unreachable reports", || {
        sender.unreachable_reports() >= 2
    })
    .await;
    assert!(sender
        .unreachable
        .lock()
        .expect("lock")
        .iter()
        .all(|&to| to == RECEIVER));
}

#[test]
fn limits_are_validated() {
    assert!(PeerLimits::default().validate().is_ok());
    let over = PeerLimits {
        frame_bytes_max: codec::FRAME_BYTES_CEILING + 1,
        ..PeerLimits::default()
    };
    assert!(matches!(
        over.validate(),
        Err(PeerError::FrameLimitAboveCeiling { .. })
    ));
    let zero = PeerLimits {
        queue_messages_max: 0,
        ..PeerLimits::default()
    };
    assert!(matches!(zero.validate(), Err(PeerError::LimitZero(_))));
    let zero_chunk = PeerLimits {
        snapshot_chunk_bytes: 0,
        ..PeerLimits::default()
    };
    assert!(matches!(
        zero_chunk.validate(),
        Err(PeerError::LimitZero("snapshot_chunk_bytes"))
    ));
}

#[actix_rt::test]
async fn a_batch_over_the_frame_limit_is_split_and_an_oversize_message_dropped() {
    let receiver = Recorded::default();
    let listener = start_listener("127.0.0.1:0", RECEIVER, &[SENDER, RECEIVER], &receiver);
    let sender = Recorded::default();
    let collector = Collector(sender.clone()).start();
    let peer = PeerActor::new(
        PeerLinkConfig {
            cluster_id: CLUSTER,
            local_member_id: SENDER,
            remote_member_id: RECEIVER,
            peer_url: format!("http://{}", listener.local_addr()),
            limits: PeerLimits {
                frame_bytes_max: 4096,
                ..test_limits()
            },
        },
        collector.clone().recipient(),
        collector.recipient(),
    )
    .expect("peer actor")
    .start();
    let propose = |ctx: u8, bytes: usize| Message {
        from: SENDER,
        to: RECEIVER,
        term: 3,
        body: MessageBody::Propose {
            data: vec![vec![ctx; bytes]],
        },
    };
    // 20 × 1 KiB cannot share one 4 KiB frame; the 8 KiB one fits no frame.
    let mut batch: Vec<Message> = (0..10).map(|i| propose(i, 1024)).collect();
    batch.push(propose(99, 8192));
    batch.extend((10..20).map(|i| propose(i, 1024)));
    let expected: Vec<Message> = (0..20).map(|i| propose(i, 1024)).collect();
    peer.do_send(SendMessages(batch));
    wait_until("the fitting messages", || {
        receiver.inbound_messages().len() >= expected.len()
    })
    .await;
    assert_eq!(receiver.inbound_messages(), expected);
    assert!(
        receiver.inbound_frames().len() >= 5,
        "split into frames ≤ 4 KiB"
    );
}

// ---------------------------------------------------------------------------
// Snapshots
// ---------------------------------------------------------------------------

fn snapshot_message(from: NodeId, to: NodeId, index: u64) -> Message {
    Message {
        from,
        to,
        term: 3,
        body: MessageBody::Snapshot {
            meta: SnapshotMeta {
                index,
                term: 2,
                conf: ConfState {
                    voters: vec![from, to],
                    learners: vec![],
                },
            },
        },
    }
}

fn dump_bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn heartbeats(range: std::ops::Range<u64>) -> Vec<Message> {
    range.map(|ctx| heartbeat(SENDER, RECEIVER, ctx)).collect()
}

/// Everything delivered, flattened: messages one by one, snapshots in place.
fn flatten(deliveries: Vec<Delivered>) -> Vec<Delivered> {
    deliveries
        .into_iter()
        .flat_map(|d| match d {
            Delivered::Messages(ms) => ms
                .into_iter()
                .map(|m| Delivered::Messages(vec![m]))
                .collect::<Vec<_>>(),
            snapshot => vec![snapshot],
        })
        .collect()
}

/// Where `snapshot` sits among the deliveries (flattened), asserting it is there
/// exactly once.
fn position_once(deliveries: &[Delivered], snapshot: &Delivered) -> usize {
    let at: Vec<usize> = deliveries
        .iter()
        .enumerate()
        .filter(|(_, d)| *d == snapshot)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(at.len(), 1, "the snapshot delivered exactly once");
    at[0]
}

fn as_deliveries(messages: &[Message]) -> Vec<Delivered> {
    messages
        .iter()
        .map(|m| Delivered::Messages(vec![m.clone()]))
        .collect()
}

#[actix_rt::test]
async fn a_snapshot_arrives_once_after_the_messages_sent_before_it() {
    let receiver = Recorded::default();
    let listener = start_listener("127.0.0.1:0", RECEIVER, &[SENDER, RECEIVER], &receiver);
    let sender = Recorded::default();
    let peer = start_peer(CLUSTER, SENDER, RECEIVER, listener.local_addr(), &sender);

    // Round 1, queued before the link is up: the snapshot sits in the middle of
    // what one batch would take, so it must cut the batch. 3 MiB: three chunks,
    // so the messages after it may overtake its later chunks.
    let snap1 = snapshot_message(SENDER, RECEIVER, 500);
    let data1 = dump_bytes(3 * 1024 * 1024 + 17, 1);
    peer.do_send(SendMessages(heartbeats(0..30)));
    peer.do_send(SendMessages(heartbeats(30..50)));
    peer.do_send(SendSnapshot {
        message: snap1.clone(),
        data: data1.clone(),
    });
    peer.do_send(SendMessages(heartbeats(50..100)));
    let snapshot1 = Delivered::Snapshot {
        message: snap1,
        data: data1,
    };
    wait_until("round 1", || flatten(receiver.deliveries()).len() >= 101).await;
    let round1 = flatten(receiver.deliveries());
    let at = position_once(&round1, &snapshot1);
    let messages: Vec<Delivered> = round1
        .iter()
        .filter(|d| **d != snapshot1)
        .cloned()
        .collect();
    assert_eq!(
        messages,
        as_deliveries(&heartbeats(0..100)),
        "messages in order, once"
    );
    assert!(
        at >= 50,
        "the 50 messages sent before the snapshot precede it"
    );
    assert_eq!(
        sender.snapshot_reports(),
        vec![SnapshotSent {
            to: RECEIVER,
            ok: true
        }]
    );

    // Round 2, on the established link, an empty dump (one chunk) between single
    // messages: one chunk cannot be overtaken, so the order is exact.
    let snap2 = snapshot_message(SENDER, RECEIVER, 900);
    peer.do_send(SendMessages(heartbeats(100..101)));
    peer.do_send(SendSnapshot {
        message: snap2.clone(),
        data: Vec::new(),
    });
    peer.do_send(SendMessages(heartbeats(101..102)));
    let mut expected = round1;
    expected.push(Delivered::Messages(heartbeats(100..101)));
    expected.push(Delivered::Snapshot {
        message: snap2,
        data: Vec::new(),
    });
    expected.push(Delivered::Messages(heartbeats(101..102)));
    wait_until("round 2", || {
        flatten(receiver.deliveries()).len() >= expected.len()
    })
    .await;
    // One more message after everything: proves nothing else (a duplicate) was
    // still on its way.
    peer.do_send(SendMessages(heartbeats(102..103)));
    expected.push(Delivered::Messages(heartbeats(102..103)));
    wait_until("the last message", || {
        flatten(receiver.deliveries()).len() >= expected.len()
    })
    .await;
    assert_eq!(flatten(receiver.deliveries()), expected, "round 2 order");
    assert_eq!(receiver.snapshots().len(), 2, "each snapshot exactly once");
    assert_eq!(
        sender.snapshot_reports(),
        vec![
            SnapshotSent {
                to: RECEIVER,
                ok: true
            };
            2
        ]
    );
    assert_eq!(sender.unreachable_reports(), 0);
}

#[actix_rt::test]
async fn a_5_mib_snapshot_in_64_kib_chunks_arrives_whole_and_exactly_once() {
    let receiver = Recorded::default();
    let listener = start_listener("127.0.0.1:0", RECEIVER, &[SENDER, RECEIVER], &receiver);
    let sender = Recorded::default();
    let peer = start_peer_with_limits(
        CLUSTER,
        SENDER,
        RECEIVER,
        listener.local_addr(),
        &sender,
        PeerLimits {
            snapshot_chunk_bytes: 64 * 1024,
            ..test_limits()
        },
    );
    let message = snapshot_message(SENDER, RECEIVER, 7);
    // Not a multiple of the chunk size: the last chunk is short.
    let data = dump_bytes(5 * 1024 * 1024 + 1234, 5);
    peer.do_send(SendSnapshot {
        message: message.clone(),
        data: data.clone(),
    });
    wait_until("the outcome", || !sender.snapshot_reports().is_empty()).await;
    // A message after it on the same link, delivered: anything still on its way
    // from the snapshot would have been delivered before it.
    peer.do_send(SendMessages(heartbeats(1..2)));
    wait_until("the message after it", || {
        !receiver.inbound_messages().is_empty()
    })
    .await;
    let snapshots = receiver.snapshots();
    assert_eq!(snapshots.len(), 1, "exactly once");
    assert_eq!(snapshots[0].0, message);
    assert!(snapshots[0].1 == data, "whole and unchanged");
    assert_eq!(
        sender.snapshot_reports(),
        vec![SnapshotSent {
            to: RECEIVER,
            ok: true
        }]
    );
    assert_eq!(sender.unreachable_reports(), 0);
}

/// Accepts the link's next connection on `raw` and relays it to the real
/// listener at `to`: all of it, or only its first `limit` bytes and then closes
/// both sides (a connection lost mid-stream). The relay starts once `go` fires,
/// so until then the link's writes pile up in the socket buffers.
async fn relay_next_connection(
    raw: &tokio::net::TcpListener,
    to: SocketAddr,
    limit: Option<u64>,
    go: tokio::sync::oneshot::Receiver<()>,
) -> actix_rt::task::JoinHandle<u64> {
    let (mut from, _) = raw.accept().await.expect("accept");
    actix_rt::spawn(async move {
        let _ = go.await;
        let mut onward = TcpStream::connect(to).await.expect("connect onward");
        let copied = match limit {
            Some(limit) => tokio::io::copy(&mut (&mut from).take(limit), &mut onward)
                .await
                .expect("relay"),
            None => tokio::io::copy(&mut from, &mut onward).await.unwrap_or(0),
        };
        let _ = onward.shutdown().await;
        copied
    })
}

#[actix_rt::test]
async fn heartbeats_sent_after_a_snapshot_overtake_its_later_chunks() {
    let receiver = Recorded::default();
    let listener = start_listener("127.0.0.1:0", RECEIVER, &[SENDER, RECEIVER], &receiver);
    let raw = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let sender = Recorded::default();
    let peer = start_peer_with_limits(
        CLUSTER,
        SENDER,
        RECEIVER,
        raw.local_addr().expect("addr"),
        &sender,
        PeerLimits {
            snapshot_chunk_bytes: 64 * 1024,
            ..test_limits()
        },
    );
    // More than the socket buffers on both ends hold: while the relay waits, the
    // link is stuck mid-snapshot.
    let message = snapshot_message(SENDER, RECEIVER, 11);
    let data = dump_bytes(32 * 1024 * 1024, 11);
    peer.do_send(SendMessages(heartbeats(0..1)));
    peer.do_send(SendSnapshot {
        message: message.clone(),
        data: data.clone(),
    });
    let (go, wait) = tokio::sync::oneshot::channel();
    let relay = relay_next_connection(&raw, listener.local_addr(), None, wait).await;
    // Queued (handled by the actor) after the snapshot; the link is blocked in
    // the snapshot's stream, or has not taken it yet.
    peer.send(SendMessages(heartbeats(1..4)))
        .await
        .expect("send");
    go.send(()).expect("relay waiting");
    wait_until("the snapshot", || !receiver.snapshots().is_empty()).await;
    wait_until("every heartbeat", || receiver.inbound_messages().len() >= 4).await;
    let delivered = flatten(receiver.deliveries());
    let snapshot = Delivered::Snapshot { message, data };
    let at = position_once(&delivered, &snapshot);
    assert_eq!(
        delivered
            .iter()
            .position(|d| *d == as_deliveries(&heartbeats(0..1))[0]),
        Some(0),
        "the heartbeat sent before the snapshot came first"
    );
    for later in as_deliveries(&heartbeats(1..4)) {
        let pos = delivered
            .iter()
            .position(|d| *d == later)
            .expect("delivered");
        assert!(
            pos < at,
            "a heartbeat sent after the snapshot arrived before it was complete: \
             {pos} < {at}"
        );
    }
    assert_eq!(
        sender.snapshot_reports(),
        vec![SnapshotSent {
            to: RECEIVER,
            ok: true
        }]
    );
    drop(peer);
    let _ = relay.await;
}

#[actix_rt::test]
async fn a_connection_lost_mid_snapshot_delivers_nothing_and_a_retry_succeeds() {
    let receiver = Recorded::default();
    let listener = start_listener("127.0.0.1:0", RECEIVER, &[SENDER, RECEIVER], &receiver);
    let raw = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let sender = Recorded::default();
    let peer = start_peer_with_limits(
        CLUSTER,
        SENDER,
        RECEIVER,
        raw.local_addr().expect("addr"),
        &sender,
        PeerLimits {
            snapshot_chunk_bytes: 64 * 1024,
            ..test_limits()
        },
    );
    let message = snapshot_message(SENDER, RECEIVER, 21);
    let data = dump_bytes(32 * 1024 * 1024, 21);
    peer.do_send(SendSnapshot {
        message: message.clone(),
        data: data.clone(),
    });
    // The first connection carries 3 MiB (the handshake and a few dozen chunks,
    // the last of them cut) and is then lost.
    let (go, wait) = tokio::sync::oneshot::channel();
    let cut = relay_next_connection(&raw, listener.local_addr(), Some(3 << 20), wait).await;
    go.send(()).expect("relay waiting");
    assert_eq!(cut.await.expect("relay"), 3 << 20);
    wait_until("the failure", || !sender.snapshot_reports().is_empty()).await;
    assert_eq!(
        sender.snapshot_reports(),
        vec![SnapshotSent {
            to: RECEIVER,
            ok: false
        }]
    );

    // Raft asks again once the link is back (one sent while it backs off would
    // be dropped, and reported failed, like any message); this time the relay
    // is whole.
    let (go, wait) = tokio::sync::oneshot::channel();
    let whole = relay_next_connection(&raw, listener.local_addr(), None, wait).await;
    peer.do_send(SendSnapshot {
        message: message.clone(),
        data: data.clone(),
    });
    go.send(()).expect("relay waiting");
    wait_until("the retry's outcome", || {
        sender.snapshot_reports().len() >= 2
    })
    .await;
    assert!(sender.snapshot_reports()[1].ok);
    // A message after it on the same link: once it is delivered, so is
    // everything before it.
    peer.do_send(SendMessages(heartbeats(5..6)));
    wait_until("the message after it", || {
        !receiver.inbound_messages().is_empty()
    })
    .await;
    let snapshots = receiver.snapshots();
    assert_eq!(snapshots.len(), 1, "the lost one delivered nothing");
    assert_eq!(snapshots[0].0, message);
    assert!(snapshots[0].1 == data, "the retry arrived whole");
    drop(peer);
    let _ = whole.await;
}

#[actix_rt::test]
async fn an_oversize_snapshot_is_refused_and_the_link_carries_on() {
    let receiver = Recorded::default();
    let listener = start_listener("127.0.0.1:0", RECEIVER, &[SENDER, RECEIVER], &receiver);
    let sender = Recorded::default();
    let peer = start_peer_with_limits(
        CLUSTER,
        SENDER,
        RECEIVER,
        listener.local_addr(),
        &sender,
        PeerLimits {
            frame_bytes_max: 4096,
            snapshot_bytes_max: 6000,
            ..test_limits()
        },
    );
    // Over snapshot_bytes_max: refused at once. Within it but over a frame: sent
    // in chunks clamped to the frame limit.
    let fits = snapshot_message(SENDER, RECEIVER, 2);
    peer.do_send(SendSnapshot {
        message: snapshot_message(SENDER, RECEIVER, 1),
        data: dump_bytes(6001, 0),
    });
    peer.do_send(SendMessages(heartbeats(0..1)));
    peer.do_send(SendSnapshot {
        message: fits.clone(),
        data: dump_bytes(6000, 2),
    });
    wait_until("two outcomes", || sender.snapshot_reports().len() >= 2).await;
    // One snapshot in flight per link: the next waits for that outcome.
    let small = snapshot_message(SENDER, RECEIVER, 3);
    peer.do_send(SendSnapshot {
        message: small.clone(),
        data: dump_bytes(1000, 3),
    });
    wait_until("three outcomes", || sender.snapshot_reports().len() >= 3).await;
    assert_eq!(
        sender.snapshot_reports(),
        vec![
            SnapshotSent {
                to: RECEIVER,
                ok: false
            },
            SnapshotSent {
                to: RECEIVER,
                ok: true
            },
            SnapshotSent {
                to: RECEIVER,
                ok: true
            },
        ]
    );
    wait_until("deliveries", || flatten(receiver.deliveries()).len() >= 3).await;
    assert_eq!(
        flatten(receiver.deliveries()),
        vec![
            Delivered::Messages(heartbeats(0..1)),
            Delivered::Snapshot {
                message: fits,
                data: dump_bytes(6000, 2),
            },
            Delivered::Snapshot {
                message: small,
                data: dump_bytes(1000, 3),
            },
        ]
    );
    assert_eq!(sender.unreachable_reports(), 0, "the link never broke");
}

#[actix_rt::test]
async fn a_snapshot_to_an_unreachable_member_reports_failure() {
    let unused = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = unused.local_addr().expect("addr");
    drop(unused);
    let sender = Recorded::default();
    let peer = start_peer(CLUSTER, SENDER, RECEIVER, addr, &sender);
    peer.do_send(SendSnapshot {
        message: snapshot_message(SENDER, RECEIVER, 1),
        data: dump_bytes(100, 0),
    });
    wait_until("the failure", || !sender.snapshot_reports().is_empty()).await;
    assert_eq!(
        sender.snapshot_reports(),
        vec![SnapshotSent {
            to: RECEIVER,
            ok: false
        }]
    );
    // Once reported, another may be queued (and fails the same way).
    peer.do_send(SendSnapshot {
        message: snapshot_message(SENDER, RECEIVER, 2),
        data: dump_bytes(100, 0),
    });
    wait_until("the second failure", || {
        sender.snapshot_reports().len() == 2
    })
    .await;
    assert!(sender.snapshot_reports().iter().all(|r| !r.ok));
}

#[actix_rt::test]
async fn a_second_snapshot_while_one_is_in_flight_is_refused() {
    // A "listener" that accepts but does not read until told: the first snapshot
    // fills the socket buffers and stays in flight.
    let raw = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let sender = Recorded::default();
    let peer = start_peer(
        CLUSTER,
        SENDER,
        RECEIVER,
        raw.local_addr().expect("addr"),
        &sender,
    );
    let first = snapshot_message(SENDER, RECEIVER, 1);
    let first_data = dump_bytes(32 * 1024 * 1024, 9);
    peer.do_send(SendSnapshot {
        message: first.clone(),
        data: first_data.clone(),
    });
    let (mut stream, _) = raw.accept().await.expect("accept");
    peer.do_send(SendSnapshot {
        message: snapshot_message(SENDER, RECEIVER, 2),
        data: dump_bytes(10, 0),
    });
    wait_until("the refusal", || !sender.snapshot_reports().is_empty()).await;
    assert_eq!(
        sender.snapshot_reports(),
        vec![SnapshotSent {
            to: RECEIVER,
            ok: false
        }]
    );
    // Now read: the handshake, then the first snapshot's chunks, in order and
    // each at most the default chunk size.
    let max = codec::FRAME_BYTES_CEILING;
    let mut buf = Vec::new();
    let handshake = codec::read_frame(&mut stream, max, &mut buf)
        .await
        .expect("read");
    assert!(matches!(handshake, Some(Frame::Handshake(_))));
    let mut received = Vec::new();
    let mut chunks = 0;
    while received.len() < first_data.len() {
        let frame = codec::read_frame(&mut stream, max, &mut buf)
            .await
            .expect("read");
        let Some(Frame::SnapshotChunk {
            message,
            offset,
            total,
            data,
        }) = frame
        else {
            panic!("expected a chunk, got {frame:?}");
        };
        assert_eq!(
            message,
            (chunks == 0).then(|| first.clone()),
            "chunk {chunks}"
        );
        assert_eq!(offset, received.len() as u64);
        assert_eq!(total, first_data.len() as u64);
        assert!(!data.is_empty() && data.len() <= SNAPSHOT_CHUNK_BYTES_DEFAULT as usize);
        received.extend(data);
        chunks += 1;
    }
    assert!(received == first_data, "the dump, whole");
    assert_eq!(chunks, 32);
    wait_until("the first one's outcome", || {
        sender.snapshot_reports().len() == 2
    })
    .await;
    assert_eq!(
        sender.snapshot_reports()[1],
        SnapshotSent {
            to: RECEIVER,
            ok: true
        }
    );
}

fn chunk(message: Option<Message>, offset: u64, total: u64, data: Vec<u8>) -> Frame {
    Frame::SnapshotChunk {
        message,
        offset,
        total,
        data,
    }
}

#[actix_rt::test]
async fn chunks_with_a_gap_overlap_bad_total_or_no_start_are_dropped() {
    let receiver = Recorded::default();
    let listener = start_listener(
        "127.0.0.1:0",
        RECEIVER,
        &[SENDER, RECEIVER, 0xc3],
        &receiver,
    );
    let handshake = Handshake {
        protocol_version: PROTOCOL_VERSION,
        cluster_id: CLUSTER,
        from: SENDER,
        to: RECEIVER,
    };
    let max = codec::FRAME_BYTES_CEILING;
    let start = |index, total, len| {
        chunk(
            Some(snapshot_message(SENDER, RECEIVER, index)),
            0,
            total,
            dump_bytes(len, index as u8),
        )
    };
    let more = |offset, total, len| chunk(None, offset, total, dump_bytes(len, 0));
    let frames = vec![
        // A continuation with nothing started.
        more(0, 300, 100),
        more(100, 300, 100),
        // A gap; the rest of that snapshot (which would complete it) is ignored.
        start(1, 300, 100),
        more(150, 300, 100),
        more(250, 300, 50),
        // An overlap.
        start(2, 300, 100),
        more(50, 300, 250),
        // The total changes.
        start(3, 300, 100),
        more(100, 400, 200),
        // A chunk running past the total.
        start(4, 300, 100),
        more(100, 300, 201),
        // A first chunk larger than its total.
        start(5, 10, 11),
        // Over snapshot_bytes_max (1 GiB by default): refused from the first
        // chunk, nothing allocated for it; then what would be its continuation.
        start(6, 2 << 30, 10),
        more(10, 2 << 30, 10),
        // A first chunk not at offset 0.
        chunk(
            Some(snapshot_message(SENDER, RECEIVER, 7)),
            5,
            10,
            dump_bytes(5, 7),
        ),
        // Not from the handshaken sender, or not for this member.
        chunk(
            Some(snapshot_message(0xc3, RECEIVER, 8)),
            0,
            3,
            vec![1, 2, 3],
        ),
        chunk(Some(snapshot_message(SENDER, 0xc3, 9)), 0, 3, vec![1, 2, 3]),
        more(3, 6, 3),
        // Incomplete when the stream ends below; the message frame in its middle
        // is delivered all the same.
        start(10, 300, 100),
        Frame::Messages(heartbeats(1..2)),
        more(100, 300, 100),
    ];
    let mut bytes = codec::encode_frame(&Frame::Handshake(handshake), max).expect("encode");
    for frame in &frames {
        bytes.extend(codec::encode_frame(frame, max).expect("encode"));
    }
    let mut stream = TcpStream::connect(listener.local_addr())
        .await
        .expect("connect");
    stream.write_all(&bytes).await.expect("write");
    wait_until("the message", || !receiver.deliveries().is_empty()).await;

    // A new start while one is incomplete drops the incomplete one; the new one
    // is delivered once complete. Then a message, to know all was read.
    let mut bytes = Vec::new();
    for frame in [
        start(11, 300, 100),
        more(100, 300, 200),
        Frame::Messages(heartbeats(2..3)),
    ] {
        bytes.extend(codec::encode_frame(&frame, max).expect("encode"));
    }
    stream.write_all(&bytes).await.expect("write");
    wait_until("the last message", || receiver.deliveries().len() >= 3).await;
    // The connection survived all of it: the frames were well-formed.
    assert_eq!(
        receiver.deliveries(),
        vec![
            Delivered::Messages(heartbeats(1..2)),
            Delivered::Snapshot {
                message: snapshot_message(SENDER, RECEIVER, 11),
                data: [dump_bytes(100, 11), dump_bytes(200, 0)].concat(),
            },
            Delivered::Messages(heartbeats(2..3)),
        ]
    );
}

#[actix_rt::test]
async fn a_snapshot_for_another_member_or_from_another_sender_is_dropped() {
    let receiver = Recorded::default();
    let listener = start_listener(
        "127.0.0.1:0",
        RECEIVER,
        &[SENDER, RECEIVER, 0xc3],
        &receiver,
    );
    let handshake = Handshake {
        protocol_version: PROTOCOL_VERSION,
        cluster_id: CLUSTER,
        from: SENDER,
        to: RECEIVER,
    };
    let max = codec::FRAME_BYTES_CEILING;
    let mut bytes = codec::encode_frame(&Frame::Handshake(handshake), max).expect("encode");
    for message in [
        snapshot_message(SENDER, 0xc3, 1),
        snapshot_message(0xc3, RECEIVER, 2),
    ] {
        bytes.extend(
            codec::encode_frame(
                &Frame::Snapshot {
                    message,
                    data: vec![1, 2, 3],
                },
                max,
            )
            .expect("encode"),
        );
    }
    bytes.extend(codec::encode_frame(&Frame::Messages(heartbeats(7..8)), max).expect("encode"));
    let mut stream = TcpStream::connect(listener.local_addr())
        .await
        .expect("connect");
    stream.write_all(&bytes).await.expect("write");
    wait_until("the message after them", || {
        !receiver.deliveries().is_empty()
    })
    .await;
    assert_eq!(
        receiver.deliveries(),
        vec![Delivered::Messages(heartbeats(7..8))]
    );
}

#[actix_rt::test]
async fn a_snapshot_as_the_first_frame_is_not_a_handshake() {
    let receiver = Recorded::default();
    let listener = start_listener("127.0.0.1:0", RECEIVER, &[SENDER, RECEIVER], &receiver);
    let mut stream = TcpStream::connect(listener.local_addr())
        .await
        .expect("connect");
    let bytes = codec::encode_frame(
        &Frame::Snapshot {
            message: snapshot_message(SENDER, RECEIVER, 1),
            data: vec![0; 8],
        },
        codec::FRAME_BYTES_CEILING,
    )
    .expect("encode");
    let _ = stream.write_all(&bytes).await;
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(DEADLINE, stream.read(&mut buf))
        .await
        .expect("listener did not close the connection");
    assert!(matches!(read, Ok(0) | Err(_)), "listener wrote {read:?}");
    assert!(receiver.deliveries().is_empty());
}
