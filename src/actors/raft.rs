//! `RaftActor`: wraps the pure Raft core (`crate::raft`). It feeds the core ticks,
//! proposals, read requests and persistence reports, and carries out what the
//! core's `Ready` asks: entries and hard state to the `WalActor`, committed entries
//! to the `StoreActor`, read states to the waiting readers. It owns the peer
//! links and the peer listener (on its own thread), so it also carries the lease
//! keep-alives a follower relays to the leader, and their answers.
//!
//! The persist-before-send rule is kept by construction: messages the core marks
//! "after persist" travel with the WAL append and are released only by its
//! `Persisted` answer. This actor must never do I/O itself, nor decide anything
//! from a clock other than its tick.

use std::collections::HashMap;
use std::time::Duration;

use actix::prelude::*;
use prost::Message as _;
use tokio::sync::oneshot;

use crate::actors::store::{
    AppliedTo, Apply, DumpSnapshot, DurableTo, InstallSnapshot, MembersChanged, Responder, StoreActor,
};
use crate::actors::wal::{Append, Persisted, SaveSnapshot, WalActor};
use crate::error::RequestError;
use crate::metrics::{ActorMetrics, MailboxProbe, Metrics};
use crate::proto::steadpb::{internal_request, ConfChangeContext, InternalRequest, RequestHeader};
use crate::net::peer::{
    Deliveries, InboundLeaseRelay, InboundMessages, InboundSnapshot, KeepAliveOutcome, LeaseRelay, PeerActor,
    PeerLimits, PeerLinkConfig, PeerListener, SendLeaseRelay, SendMessages, SendSnapshot, SnapshotSent, Unreachable,
};
use crate::proto::etcdserverpb as pb;
use crate::reply::Replies;
use crate::raft::{ConfChange, Message, MessageBody, NodeId, RaftError, RaftNode, Role};

/// Most entries the in-memory log keeps behind the durable index for followers
/// that lag a little (etcd's `SnapshotCatchUpEntries`); fewer when
/// `--snapshot-count` is smaller (see `RaftWiring::log_catch_up_entries`).
pub const LOG_CATCH_UP_ENTRIES: u64 = 5000;

/// A client write to replicate. `responder` gets the applied result, or the
/// refusal (`NoLeader`: not proposed, safe to ask again). Sent without waiting
/// for an acknowledgement: one thread hand-off back to the client per write,
/// not two.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Propose {
    pub request: internal_request::Request,
    /// Who asked (empty for the member's own requests): the apply path checks
    /// writes and admin requests against it.
    pub auth: crate::kv::auth::AuthInfo,
    pub responder: Responder,
}

/// A linearizable read: answered with the index the read must wait for.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ReadIndex {
    pub responder: crate::reply::Reply<Result<u64, RequestError>>,
}

#[derive(Message)]
#[rtype(result = "RaftStatus")]
pub struct GetRaftStatus;

/// A keep-alive for `lease` that reached this member while another leads:
/// relayed to the leader over the peer port, and answered with the leader's
/// outcome when its answer comes back (never, if it is lost: the caller gives
/// up after a while and asks again). `NoLeader` at once when no other member
/// leads.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RelayKeepAlive {
    pub lease: i64,
    pub responder: oneshot::Sender<Result<KeepAliveOutcome, RequestError>>,
}

/// A membership change a client asked for.
#[derive(Debug, Clone)]
pub enum MembershipChange {
    Add { peer_urls: Vec<String>, learner: bool },
    Remove(NodeId),
    Promote(NodeId),
}

/// Proposes a membership change (leader only). Answered with the id of the member
/// concerned once it is in the log; the member table after the change goes to
/// `responder` when it is applied.
#[derive(Message)]
#[rtype(result = "Result<NodeId, RequestError>")]
pub struct ChangeMembership {
    pub change: MembershipChange,
    pub responder: Responder,
}

/// Moves leadership to `target` (etcd's MoveLeader); answered once `target` leads.
#[derive(Message)]
#[rtype(result = "()")]
pub struct TransferLeader {
    pub target: NodeId,
    pub responder: oneshot::Sender<Result<(), RequestError>>,
}

#[derive(Debug, Clone, Copy, MessageResponse)]
pub struct RaftStatus {
    pub cluster_id: u64,
    pub member_id: u64,
    pub term: u64,
    pub leader: u64,
    pub commit_index: u64,
    pub applied_index: u64,
}

/// Tells whoever started the node that it has a leader and has applied its log:
/// the moment etcd logs "ready to serve client requests".
pub type ReadyNotice = oneshot::Sender<()>;

/// Everything a Raft actor is connected to, fixed at start.
pub struct RaftWiring {
    pub cluster_id: u64,
    pub member_id: u64,
    pub wal: Addr<WalActor>,
    pub store: Addr<StoreActor>,
    /// The cluster token, for ids of members added later (as etcd derives them).
    pub cluster_token: String,
    /// The bound peer port; the actor serves it once started.
    pub peer_listener: std::net::TcpListener,
    /// The members known at boot (the applied member table, or the initial
    /// cluster for a new member): a link is dialled to each other one.
    pub members: Vec<pb::Member>,
    pub tick_interval: Duration,
    pub max_request_bytes: usize,
    /// Entries the in-memory log keeps behind the backend's durable index: a
    /// follower further behind is sent a snapshot.
    pub log_catch_up_entries: u64,
    /// Wall-clock milliseconds at boot: seeds request ids (never a decision).
    pub boot_millis: u64,
    /// The backend's consistent index at boot.
    pub applied_index: u64,
    pub ready_notice: ReadyNotice,
    /// The member's metrics (leadership, commit index, this actor's handlers).
    pub metrics: Metrics,
    /// Told whenever this member becomes or stops being leader (the lease actor).
    pub leadership: Option<Recipient<crate::actors::lease::LeadershipChanged>>,
    /// Renews the keep-alives other members relay here (the lease actor).
    pub keep_alive: Option<Recipient<crate::actors::lease::KeepAlive>>,
}

pub struct RaftActor {
    node: RaftNode,
    cluster_id: u64,
    member_id: u64,
    wal: Addr<WalActor>,
    store: Addr<StoreActor>,
    cluster_token: String,
    /// One outbound link per other member, with the peer URLs it dials.
    peers: HashMap<NodeId, (Vec<String>, Addr<PeerActor>, ActorMetrics)>,
    /// The oldest unanswered heartbeat to each peer, for the round-trip metric.
    heartbeat_sent: HashMap<NodeId, std::time::Instant>,
    /// When this leader last sent each peer a heartbeat: one that goes out more
    /// than two heartbeat intervals after the last was late (etcd's
    /// `heartbeat_send_failures_total`: the leader too busy to send it).
    heartbeat_last: HashMap<NodeId, std::time::Instant>,
    /// Taken when the actor starts: the inbound side of the transport.
    peer_socket: Option<std::net::TcpListener>,
    peer_listener: Option<PeerListener>,
    boot_members: Vec<pb::Member>,
    /// Clients waiting for leadership to move to a member.
    transfer_waiters: Vec<(NodeId, oneshot::Sender<Result<(), RequestError>>)>,
    tick_interval: Duration,
    max_request_bytes: usize,
    log_catch_up_entries: u64,
    /// Clients of requests proposed since the last `Apply` (see `Apply::responders`).
    awaiting: Vec<(u64, Responder)>,
    /// Request ids: this member's low 16 bits, then a counter seeded from the boot
    /// time, so ids stay unique across restarts (as etcd's idutil).
    next_request_id: u64,
    /// Read contexts waiting for their ReadState.
    read_waiters: HashMap<u64, crate::reply::Reply<Result<u64, RequestError>>>,
    next_read_ctx: u64,
    applied_index: u64,
    ready_notice: Option<ReadyNotice>,
    last_leader: Option<u64>,
    /// A `Drive` is queued behind the messages waiting in the mailbox.
    drive_scheduled: bool,
    /// The highest index handed to the store (committed entries or a snapshot):
    /// what the store reports applied is never reported to the core beyond it.
    handed_out: u64,
    /// This actor's own address, for work that continues asynchronously.
    me: Option<Addr<RaftActor>>,
    metrics: Metrics,
    instruments: ActorMetrics,
    leadership: Option<Recipient<crate::actors::lease::LeadershipChanged>>,
    was_leader: bool,
    keep_alive: Option<Recipient<crate::actors::lease::KeepAlive>>,
    /// Keep-alives relayed to the leader, by request number, until answered
    /// (or their caller gives up: pruned on the tick).
    relayed_keep_alives: HashMap<u64, oneshot::Sender<Result<KeepAliveOutcome, RequestError>>>,
    next_relay_request: u64,
}

/// A follower needs a snapshot: fetch the store's dump and send it along with the message.
#[derive(Message)]
#[rtype(result = "()")]
struct SendSnapshotTo(Message);

impl Handler<SendSnapshotTo> for RaftActor {
    type Result = ();
    fn handle(&mut self, msg: SendSnapshotTo, ctx: &mut Context<Self>) {
        let _t = self.instruments.handling("SendSnapshotTo");
        let message = msg.0;
        let to = message.to;
        let dump = self.store.send(DumpSnapshot);
        ctx.spawn(async move { dump.await }.into_actor(self).map(move |result, act, ctx| {
            match (result, act.peers.get(&to)) {
                (Ok(Ok((data, applied))), Some((_, link, _))) => {
                    tracing::info!("sending a snapshot to {to:x}: {} bytes, applied index {applied}", data.len());
                    link.do_send(SendSnapshot { message, data });
                }
                (result, _) => {
                    tracing::error!("no snapshot for {to:x}: {:?}", result.map(|r| r.map(|(d, i)| (d.len(), i))));
                    act.node.report_snapshot(to, false);
                    act.drive_soon(ctx);
                }
            }
        }));
    }
}

/// Carry out the core's `Ready` (see `drive_soon`).
#[derive(Message)]
#[rtype(result = "()")]
struct Drive;

impl Handler<Drive> for RaftActor {
    type Result = ();
    fn handle(&mut self, _: Drive, _: &mut Context<Self>) {
        let _t = self.instruments.handling("Drive");
        self.drive_scheduled = false;
        self.drive();
    }
}

impl RaftActor {
    pub fn new(node: RaftNode, w: RaftWiring) -> Self {
        RaftActor {
            node,
            cluster_id: w.cluster_id,
            member_id: w.member_id,
            wal: w.wal,
            store: w.store,
            cluster_token: w.cluster_token,
            peers: HashMap::new(),
            heartbeat_sent: HashMap::new(),
            heartbeat_last: HashMap::new(),
            peer_socket: Some(w.peer_listener),
            peer_listener: None,
            boot_members: w.members,
            transfer_waiters: Vec::new(),
            tick_interval: w.tick_interval,
            max_request_bytes: w.max_request_bytes,
            log_catch_up_entries: w.log_catch_up_entries,
            awaiting: Vec::new(),
            next_request_id: ((w.member_id & 0xffff) << 48) | ((w.boot_millis & 0xff_ffff_ffff) << 8),
            read_waiters: HashMap::new(),
            next_read_ctx: 1,
            applied_index: w.applied_index,
            ready_notice: Some(w.ready_notice),
            last_leader: None,
            drive_scheduled: false,
            handed_out: 0,
            me: None,
            instruments: w.metrics.actor("raft"),
            metrics: w.metrics,
            leadership: w.leadership,
            keep_alive: w.keep_alive,
            relayed_keep_alives: HashMap::new(),
            next_relay_request: 0,
            was_leader: false,
        }
    }

    fn request_id(&mut self) -> u64 {
        self.next_request_id = self.next_request_id.wrapping_add(1);
        self.next_request_id
    }

    /// Appends a client request to the log; returns the request id it carries.
    fn propose(&mut self, mut request: internal_request::Request, auth: crate::kv::auth::AuthInfo) -> Result<u64, RequestError> {
        if let internal_request::Request::LeaseGrant(grant) = &mut request {
            // etcd: a grant without an ID gets one from the request id generator
            // of the member proposing it, inside the proposal, so every member
            // applies the same ID.
            while grant.id == 0 {
                grant.id = (self.request_id() & ((1 << 63) - 1)) as i64;
            }
        }
        let id = self.request_id();
        let request = InternalRequest {
            header: Some(RequestHeader {
                id,
                proposer: self.member_id,
                username: auth.username,
                auth_revision: auth.revision,
            }),
            request: Some(request),
        };
        let data = request.encode_to_vec();
        if data.len() > self.max_request_bytes {
            return Err(RequestError::RequestTooLarge);
        }
        self.node.propose(data).map_err(Self::proposal_error)?;
        Ok(id)
    }

    /// Drives the core once the messages already in the mailbox are handled, so a
    /// burst of proposals, reads or peer messages becomes one `Ready`: one WAL
    /// append, one batch per peer, one apply batch.
    fn drive_soon(&mut self, ctx: &mut Context<Self>) {
        if !self.drive_scheduled {
            self.drive_scheduled = true;
            ctx.notify(Drive);
        }
    }

    /// Carries out everything the core has asked for since the last call, in the
    /// order its contract sets (see `raft::node`).
    fn drive(&mut self) {
        while self.node.has_ready() {
            let ready = self.node.ready();
            if let Some(soft) = ready.soft_state {
                self.on_soft_state(soft.leader, soft.role);
            }
            self.send(ready.messages);
            // A snapshot here was stepped only after the store installed its data
            // (see `InboundSnapshot`): record it in the WAL; the state machine
            // already holds it.
            let snapshot_index = ready.snapshot.as_ref().map(|meta| meta.index);
            match ready.persist_ack {
                Some(ack) => self.wal.do_send(Append {
                    snapshot: ready.snapshot,
                    entries: ready.entries,
                    hard_state: ready.hard_state,
                    ack,
                    after_persist: ready.messages_after_persist,
                }),
                None => self.send(ready.messages_after_persist),
            }
            if let Some(index) = snapshot_index {
                self.handed_out = self.handed_out.max(index);
                self.node.on_applied(index);
            }
            if let Some(last) = ready.committed.last() {
                self.handed_out = self.handed_out.max(last.index);
                let responders = std::mem::take(&mut self.awaiting);
                self.store.do_send(Apply { entries: ready.committed, term: self.node.term(), responders });
            }
            let mut replies = Replies::new();
            for rs in ready.read_states {
                if let Some(w) = self.read_waiters.remove(&rs.ctx) {
                    replies.add(w, Ok(rs.index));
                }
            }
            replies.deliver();
        }
        self.metrics.proposals_committed.set(i64::try_from(self.node.commit_index()).unwrap_or(i64::MAX));
        self.metrics.set_raft_log_entries(self.node.last_index() - self.node.snapshot_index());
    }

    /// Hands each message to the link of the member it is for, one batch per peer.
    fn send(&mut self, messages: Vec<Message>) {
        let mut by_peer: HashMap<NodeId, Vec<Message>> = HashMap::new();
        for m in messages {
            if matches!(m.body, MessageBody::Snapshot { .. }) {
                // The data comes from the store, asynchronously.
                match &self.me {
                    Some(me) => me.do_send(SendSnapshotTo(m)),
                    None => self.node.report_snapshot(m.to, false),
                }
                continue;
            }
            if matches!(m.body, MessageBody::Heartbeat { .. }) {
                // A heartbeat left unanswered (a lost one, a peer that was down)
                // is forgotten after a second rather than measured.
                let now = std::time::Instant::now();
                let sent = self.heartbeat_sent.entry(m.to).or_insert(now);
                if now.duration_since(*sent) > std::time::Duration::from_secs(1) {
                    *sent = now;
                }
                self.check_heartbeat_on_time(m.to, now);
            }
            by_peer.entry(m.to).or_default().push(m);
        }
        for (to, batch) in by_peer {
            match self.peers.get(&to) {
                Some((_, link, _)) => link.do_send(SendMessages(batch)),
                None => tracing::warn!("no link to member {to:x}; dropping {} raft messages", batch.len()),
            }
        }
    }

    /// Counts (and logs, as etcd does) a heartbeat to `to` sent more than two
    /// heartbeat intervals after the previous one.
    fn check_heartbeat_on_time(&mut self, to: NodeId, now: std::time::Instant) {
        let Some(previous) = self.heartbeat_last.insert(to, now) else { return };
        let gap = now.duration_since(previous);
        if gap > 2 * self.tick_interval {
            self.metrics.heartbeat_send_failures.inc();
            tracing::warn!(
                to = format!("{to:x}"),
                took = ?gap,
                expected = ?self.tick_interval,
                "leader failed to send out heartbeat on time; took too long, leader is overloaded likely from slow disk"
            );
        }
    }

    /// Makes the links and the listener's allowed set match `members`: a link to
    /// each other member (re-dialled when its peer URLs change), none to others.
    fn connect_peers(&mut self, members: &[pb::Member], ctx: &mut Context<Self>) {
        let wanted: HashMap<NodeId, &pb::Member> =
            members.iter().filter(|m| m.id != self.member_id).map(|m| (m.id, m)).collect();
        // Dropping a link's last address stops it (and closes its connection).
        self.peers.retain(|id, (urls, _, _)| wanted.get(id).is_some_and(|m| &m.peer_ur_ls == urls));
        for (id, m) in wanted {
            if self.peers.contains_key(&id) {
                continue;
            }
            let Some(url) = m.peer_ur_ls.first().cloned() else { continue };
            let config = PeerLinkConfig {
                cluster_id: self.cluster_id,
                local_member_id: self.member_id,
                remote_member_id: id,
                peer_url: url,
                limits: PeerLimits::default(),
            };
            let unreachable = ctx.address().recipient();
            match PeerActor::new(config, unreachable, ctx.address().recipient()) {
                Ok(actor) => {
                    let instruments = self.metrics.actor(format!("peer-{id:x}"));
                    let to = format!("{id:x}");
                    let pair = [format!("{:x}", self.member_id), to.clone()];
                    let actor = actor
                        .with_sent_bytes(self.metrics.peer_sent_bytes.with_label_values(&[to.as_str()]))
                        .with_send_failures(self.metrics.peer_sent_failures.with_label_values(&[to.as_str()]))
                        .with_connection_metrics(
                            self.metrics.active_peers.with_label_values(&pair),
                            self.metrics.disconnected_peers.with_label_values(&pair),
                        )
                        .with_instruments(instruments.clone());
                    // Links run on this actor's own thread: a message to a peer
                    // and an answer from one cost no thread switch (the inbound
                    // side, the listener, runs here too).
                    let link = actor.start();
                    self.peers.insert(id, (m.peer_ur_ls.clone(), link, instruments));
                }
                Err(e) => tracing::error!("cannot link to member {id:x} at {:?}: {e}", m.peer_ur_ls),
            }
        }
        if let Some(listener) = &self.peer_listener {
            listener.set_members(members.iter().map(|m| m.id));
        }
    }

    /// Tells the node it may serve clients, once: a leader is known and
    /// everything committed is applied. Checked on both events, whichever comes
    /// last (a restarted member may replay its WAL before it hears the leader,
    /// and then nothing may commit for a while: it waited for the next write).
    fn notice_ready_if_caught_up(&mut self) {
        if self.node.leader().is_some() && self.applied_index >= self.node.commit_index() {
            if let Some(notice) = self.ready_notice.take() {
                let _ = notice.send(());
            }
        }
    }

    fn on_soft_state(&mut self, leader: Option<u64>, role: Role) {
        // As etcd's raftNode: a change to a known leader counts; the gauges
        // follow every soft state.
        if leader.is_some() && leader != self.last_leader {
            self.metrics.leader_changes_seen.inc();
        }
        self.metrics.has_leader.set(i64::from(leader.is_some()));
        self.metrics.is_leader.set(i64::from(role == Role::Leader));
        if role != Role::Leader {
            // The next term this member leads starts a fresh heartbeat rhythm.
            self.heartbeat_last.clear();
        }
        if leader != self.last_leader {
            match leader {
                Some(l) => tracing::info!(
                    "raft.node: {:x} elected leader {:x} at term {}",
                    self.member_id,
                    l,
                    self.node.term()
                ),
                None => tracing::info!("raft.node: {:x} lost leader at term {}", self.member_id, self.node.term()),
            }
            self.last_leader = leader;
        }
        if role == Role::Leader {
            tracing::info!("{:x} became leader at term {}", self.member_id, self.node.term());
        }
        let is_leader = role == Role::Leader;
        if is_leader != self.was_leader {
            self.was_leader = is_leader;
            if let Some(to) = &self.leadership {
                to.do_send(crate::actors::lease::LeadershipChanged { leader: is_leader });
            }
        }
        if let Some(l) = leader {
            let (done, waiting): (Vec<_>, Vec<_>) = self.transfer_waiters.drain(..).partition(|(t, _)| *t == l);
            self.transfer_waiters = waiting;
            for (_, w) in done {
                let _ = w.send(Ok(()));
            }
        }
        if leader.is_none() {
            // Reads waiting on a leader that is gone will not be answered by it.
            let mut replies = Replies::new();
            for (_, w) in self.read_waiters.drain() {
                replies.add(w, Err(RequestError::NoLeader));
            }
            replies.deliver();
        }
        // A leader waits for its no-op entry to apply (`AppliedTo`); a follower
        // may have applied everything before it heard the leader.
        if leader.is_some() && role == Role::Follower {
            self.notice_ready_if_caught_up();
        }
    }

    fn proposal_error(e: RaftError) -> RequestError {
        match e {
            RaftError::NoLeader | RaftError::NotLeader { .. } => RequestError::NoLeader,
            RaftError::ProposalDropped | RaftError::ReadIndexQueueFull => RequestError::TooManyRequests,
            other => RequestError::Internal(other.to_string()),
        }
    }
}

impl Actor for RaftActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.me = Some(ctx.address());
        crate::metrics::start_mailbox_probe(ctx, |a: &Self| &a.instruments);
        self.handed_out = self.node.applied_index();
        // The only voter need not wait out an election timeout to lead itself.
        if self.node.voters() == [self.member_id] && self.node.leader().is_none() {
            if let Err(e) = self.node.campaign() {
                tracing::warn!("could not campaign at start: {e}");
            }
        }
        if let Some(socket) = self.peer_socket.take() {
            let members: Vec<NodeId> = self.boot_members.iter().map(|m| m.id).collect();
            let deliveries = Deliveries {
                messages: ctx.address().recipient(),
                snapshots: ctx.address().recipient(),
                lease_relays: ctx.address().recipient(),
            };
            match PeerListener::start_counted(
                socket,
                self.cluster_id,
                self.member_id,
                members,
                deliveries,
                PeerLimits::default(),
                Some(self.metrics.peer_received_bytes.clone()),
            ) {
                Ok(listener) => self.peer_listener = Some(listener),
                Err(e) => panic!("cannot serve the peer port: {e}"),
            }
        }
        let members = std::mem::take(&mut self.boot_members);
        self.connect_peers(&members, ctx);
        ctx.run_interval(self.tick_interval, |act, _| {
            let _t = act.instruments.handling("Tick");
            act.node.tick();
            // Clients that gave up while nothing applied (no leader) go now.
            act.awaiting.retain(|(_, responder)| !responder.is_closed());
            act.relayed_keep_alives.retain(|_, responder| !responder.is_closed());
            act.drive();
        });
        self.drive_soon(ctx);
    }
}

/// The Raft actor's own probe, and its peer links' (a link must stop when its
/// last address goes, so it runs no timer of its own to probe itself).
impl Handler<MailboxProbe> for RaftActor {
    type Result = ();
    fn handle(&mut self, probe: MailboxProbe, _: &mut Context<Self>) {
        self.instruments.probed(probe);
        for (_, link, instruments) in self.peers.values() {
            link.do_send(instruments.probe());
        }
    }
}

impl Handler<Propose> for RaftActor {
    type Result = ();
    fn handle(&mut self, msg: Propose, ctx: &mut Context<Self>) {
        let _t = self.instruments.handling("Propose");
        match self.propose(msg.request, msg.auth) {
            Ok(id) => {
                // Goes to the store with the next `Apply`, before the entry can commit.
                self.awaiting.push((id, msg.responder));
                self.drive_soon(ctx);
            }
            Err(e) => {
                let _ = msg.responder.send(Err(e));
            }
        }
    }
}

impl Handler<ChangeMembership> for RaftActor {
    type Result = Result<NodeId, RequestError>;
    fn handle(&mut self, msg: ChangeMembership, ctx: &mut Context<Self>) -> Self::Result {
        let _t = self.instruments.handling("ChangeMembership");
        if self.node.role() != Role::Leader {
            return Err(RequestError::NotLeader);
        }
        let request_id = self.request_id();
        let (change, member) = match msg.change {
            MembershipChange::Add { peer_urls, learner } => {
                // As etcd for members added at run time: the peer URLs, the
                // cluster token and the time.
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let id = crate::config::member_id(&peer_urls, &format!("{}{now}", self.cluster_token));
                let member = pb::Member { id, peer_ur_ls: peer_urls, is_learner: learner, ..Default::default() };
                let change = if learner { ConfChange::AddLearner(id) } else { ConfChange::AddVoter(id) };
                (change, Some(member))
            }
            MembershipChange::Remove(id) => (ConfChange::Remove(id), None),
            MembershipChange::Promote(id) => {
                // etcd: only a learner that has caught up (90% of the leader's
                // log) may become a voter, so a promotion never stalls the quorum.
                let status = self.node.status();
                let matched = status.progress.get(&id).map(|p| p.matched).unwrap_or(0);
                if (matched as f64) < 0.9 * status.last_index as f64 {
                    return Err(RequestError::LearnerNotReady);
                }
                (ConfChange::PromoteLearner(id), None)
            }
        };
        let id = match change {
            ConfChange::AddVoter(id) | ConfChange::AddLearner(id) | ConfChange::Remove(id) | ConfChange::PromoteLearner(id) => id,
            ConfChange::Bootstrap(_) => 0,
        };
        let context = ConfChangeContext { request_id, member }.encode_to_vec();
        self.node.propose_conf_change_with_context(change, &context).map_err(|e| match e {
            RaftError::NotLeader { .. } => RequestError::NotLeader,
            RaftError::NoLeader => RequestError::NoLeader,
            other => RequestError::Internal(format!("etcdserver: {other}")),
        })?;
        self.awaiting.push((request_id, msg.responder));
        self.drive_soon(ctx);
        Ok(id)
    }
}

impl Handler<TransferLeader> for RaftActor {
    type Result = ();
    fn handle(&mut self, msg: TransferLeader, ctx: &mut Context<Self>) {
        let _t = self.instruments.handling("TransferLeader");
        if self.node.leader() == Some(msg.target) {
            let _ = msg.responder.send(Ok(()));
            return;
        }
        if self.node.role() != Role::Leader {
            let _ = msg.responder.send(Err(RequestError::NotLeader));
            return;
        }
        match self.node.transfer_leader(msg.target) {
            Ok(()) => {
                self.transfer_waiters.push((msg.target, msg.responder));
                self.drive_soon(ctx);
            }
            Err(RaftError::InvalidTransferTarget(_)) => {
                let _ = msg.responder.send(Err(RequestError::BadLeaderTransferee));
            }
            Err(e) => {
                let _ = msg.responder.send(Err(RequestError::Internal(format!("etcdserver: {e}"))));
            }
        }
    }
}

impl Handler<ReadIndex> for RaftActor {
    type Result = ();
    fn handle(&mut self, msg: ReadIndex, ctx: &mut Context<Self>) {
        let _t = self.instruments.handling("ReadIndex");
        let read_ctx = self.next_read_ctx;
        self.next_read_ctx += 1;
        match self.node.read_index(read_ctx) {
            Ok(()) => {
                self.read_waiters.insert(read_ctx, msg.responder);
                self.drive_soon(ctx);
            }
            Err(e) => {
                let _ = msg.responder.send(Err(Self::proposal_error(e)));
            }
        }
    }
}

impl Handler<Persisted> for RaftActor {
    type Result = ();
    fn handle(&mut self, msg: Persisted, ctx: &mut Context<Self>) {
        let _t = self.instruments.handling("Persisted");
        self.node.on_persisted(msg.ack);
        self.send(msg.after_persist);
        self.drive_soon(ctx);
    }
}

impl Handler<AppliedTo> for RaftActor {
    type Result = ();
    fn handle(&mut self, msg: AppliedTo, ctx: &mut Context<Self>) {
        let _t = self.instruments.handling("AppliedTo");
        self.applied_index = self.applied_index.max(msg.index);
        // After a snapshot install the store may hold more than the core handed
        // out (the dump was taken later); the core hears only what it handed out.
        self.node.on_applied(self.applied_index.min(self.handed_out));
        self.notice_ready_if_caught_up();
        self.drive_soon(ctx);
    }
}

impl Handler<DurableTo> for RaftActor {
    type Result = ();
    fn handle(&mut self, msg: DurableTo, _: &mut Context<Self>) {
        let _t = self.instruments.handling("DurableTo");
        // The backend holds everything up to `index`. The WAL may drop whole
        // segments before a snapshot marker there (every `snapshot-count`
        // entries); the in-memory log keeps only a tail for lagging followers
        // (one further behind gets a snapshot), so its memory does not grow
        // with `snapshot-count`.
        if msg.release_wal {
            match self.node.snapshot_meta_at(msg.index) {
                Ok(meta) => self.wal.do_send(SaveSnapshot { meta }),
                // Already compacted there, or not applied yet: nothing to release now.
                Err(e) => tracing::debug!("no WAL release at {}: {e}", msg.index),
            }
        }
        let keep_from = msg.index.saturating_sub(self.log_catch_up_entries);
        if keep_from > self.node.snapshot_meta().index {
            if let Err(e) = self.node.compact(keep_from) {
                tracing::debug!("in-memory log not trimmed at {keep_from}: {e}");
            }
        }
    }
}

impl Handler<InboundMessages> for RaftActor {
    type Result = ();
    fn handle(&mut self, msg: InboundMessages, ctx: &mut Context<Self>) {
        let _t = self.instruments.handling("InboundMessages");
        for m in msg.0 {
            if matches!(m.body, MessageBody::HeartbeatResponse { .. }) {
                if let Some(sent) = self.heartbeat_sent.remove(&m.from) {
                    let to = format!("{:x}", m.from);
                    crate::metrics::observe(&self.metrics.peer_round_trip_seconds.with_label_values(&[to.as_str()]), sent.elapsed());
                }
            }
            if let MessageBody::Snapshot { meta } = &m.body {
                // The snapshot's data would have to arrive first (not implemented
                // yet); stepping the bare metadata would reset the log to nothing.
                tracing::error!("dropping a snapshot at index {} from {:x}: snapshot install is not implemented yet", meta.index, m.from);
                continue;
            }
            if let Err(e) = self.node.step(m) {
                tracing::debug!("raft: message not stepped: {e}");
            }
        }
        self.drive_soon(ctx);
    }
}

impl Handler<RelayKeepAlive> for RaftActor {
    type Result = ();
    fn handle(&mut self, msg: RelayKeepAlive, _: &mut Context<Self>) {
        let _t = self.instruments.handling("RelayKeepAlive");
        let leader = self.node.leader().filter(|l| *l != self.member_id);
        let Some((_, link, _)) = leader.and_then(|l| self.peers.get(&l)) else {
            let _ = msg.responder.send(Err(RequestError::NoLeader));
            return;
        };
        self.next_relay_request += 1;
        let request = self.next_relay_request;
        link.do_send(SendLeaseRelay(LeaseRelay::KeepAlive { request, lease: msg.lease }));
        self.relayed_keep_alives.insert(request, msg.responder);
    }
}

/// A keep-alive another member relayed here is renewed by the lease actor
/// (which refuses it unless this member leads) and answered on the link back;
/// an answer goes to the caller waiting for it.
impl Handler<InboundLeaseRelay> for RaftActor {
    type Result = ();
    fn handle(&mut self, msg: InboundLeaseRelay, ctx: &mut Context<Self>) {
        let _t = self.instruments.handling("InboundLeaseRelay");
        let (request, lease) = match msg.relay {
            LeaseRelay::Answer { request, outcome } => {
                if let Some(responder) = self.relayed_keep_alives.remove(&request) {
                    let _ = responder.send(Ok(outcome));
                }
                return;
            }
            LeaseRelay::KeepAlive { request, lease } => (request, lease),
        };
        let from = msg.from;
        let Some(leases) = self.keep_alive.clone() else {
            self.answer_relay(from, request, KeepAliveOutcome::NotLeader);
            return;
        };
        let renew = async move { leases.send(crate::actors::lease::KeepAlive(lease)).await };
        ctx.spawn(renew.into_actor(self).map(move |renewed, act, _| {
            let outcome = match renewed {
                Ok(Ok(ttl)) => KeepAliveOutcome::Renewed { ttl },
                Ok(Err(RequestError::LeaseNotFound)) => KeepAliveOutcome::NotFound,
                // Not the leader (any more), or the lease actor is gone: the
                // relaying member asks again, wherever leadership went.
                Ok(Err(_)) | Err(_) => KeepAliveOutcome::NotLeader,
            };
            act.answer_relay(from, request, outcome);
        }));
    }
}

impl RaftActor {
    fn answer_relay(&self, to: NodeId, request: u64, outcome: KeepAliveOutcome) {
        match self.peers.get(&to) {
            Some((_, link, _)) => link.do_send(SendLeaseRelay(LeaseRelay::Answer { request, outcome })),
            None => tracing::debug!("no link to member {to:x}; dropping a lease relay answer"),
        }
    }
}

impl Handler<Unreachable> for RaftActor {
    type Result = ();
    fn handle(&mut self, msg: Unreachable, ctx: &mut Context<Self>) {
        let _t = self.instruments.handling("Unreachable");
        self.node.report_unreachable(msg.to);
        self.drive_soon(ctx);
    }
}

impl Handler<SnapshotSent> for RaftActor {
    type Result = ();
    fn handle(&mut self, msg: SnapshotSent, _: &mut Context<Self>) {
        let _t = self.instruments.handling("SnapshotSent");
        self.node.report_snapshot(msg.to, msg.ok);
        self.drive();
    }
}

impl Handler<InboundSnapshot> for RaftActor {
    type Result = ();
    fn handle(&mut self, msg: InboundSnapshot, ctx: &mut Context<Self>) {
        let _t = self.instruments.handling("InboundSnapshot");
        let MessageBody::Snapshot { meta } = &msg.message.body else {
            tracing::warn!("a snapshot frame from {:x} without snapshot metadata; dropped", msg.message.from);
            return;
        };
        if meta.index <= self.node.commit_index() {
            return; // already have it (a retransmission)
        }
        tracing::info!("installing a snapshot from {:x} at index {} ({} bytes)", msg.message.from, meta.index, msg.data.len());
        let install = self.store.send(InstallSnapshot { data: msg.data, index: meta.index });
        let message = msg.message;
        // Nothing else is stepped until the store holds the snapshot: entries
        // after it must not reach the core first.
        ctx.wait(async move { install.await }.into_actor(self).map(move |result, act, ctx| match result {
            Ok(Ok(applied)) => {
                act.applied_index = act.applied_index.max(applied);
                if let Err(e) = act.node.step(message) {
                    tracing::debug!("raft: snapshot message not stepped: {e}");
                }
                act.drive_soon(ctx);
            }
            Ok(Err(e)) => tracing::error!("snapshot not installed: {e}"),
            Err(e) => tracing::error!("snapshot not installed: the store is gone ({e})"),
        }));
    }
}

impl Handler<MembersChanged> for RaftActor {
    type Result = ();
    fn handle(&mut self, msg: MembersChanged, ctx: &mut Context<Self>) {
        let _t = self.instruments.handling("MembersChanged");
        if let Some(me) = msg.0.iter().find(|m| m.id == self.member_id) {
            self.metrics.is_learner.set(i64::from(me.is_learner));
        }
        self.connect_peers(&msg.0, ctx);
    }
}

impl Handler<GetRaftStatus> for RaftActor {
    type Result = RaftStatus;
    fn handle(&mut self, _: GetRaftStatus, _: &mut Context<Self>) -> RaftStatus {
        let _t = self.instruments.handling("GetRaftStatus");
        RaftStatus {
            cluster_id: self.cluster_id,
            member_id: self.member_id,
            term: self.node.term(),
            leader: self.node.leader().unwrap_or(0),
            commit_index: self.node.commit_index(),
            applied_index: self.applied_index,
        }
    }
}
