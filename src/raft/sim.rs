//! Deterministic simulation of a whole cluster in one thread (test only).
//!
//! A seeded PRNG drives everything: a clock of ticks, a network that drops,
//! delays, reorders, duplicates and partitions, disks that complete writes late and
//! lose unfinished ones on a crash, crashes and restarts from exactly what was
//! persisted, compactions with snapshot transfer, leader transfers, membership
//! changes, and random client proposals and reads. The named invariants are checked
//! after every event; then the faults heal and the cluster must make progress
//! within a bound.
//!
//! A failure prints its seed; replay one seed with
//! `STEAD_SIM_SEED=<seed> cargo test <test name>`; `STEAD_SIM_SEEDS=<n>` runs more
//! or fewer seeds, starting at `STEAD_SIM_FIRST_SEED` (default 0).

use std::collections::{BTreeMap, VecDeque};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use super::rng::Rng;
use super::*;

/// Simulated time units per tick (network and disk delays are finer than ticks).
const TICK: u64 = 10;
const ELECTION_TICKS: u32 = 10;

#[derive(Clone, Copy)]
struct Scenario {
    /// Members at bootstrap (ids 1..=initial).
    initial: u64,
    /// Extra members (ids initial+1..=total) that start empty and may be added.
    total: u64,
    chaos_ticks: u64,
    pre_vote: bool,
    check_quorum: bool,
    conf_changes: bool,
}

/// The simulated state machine: the applied index and a hash chain over every
/// applied entry, so equal (index, hash) means equal applied history.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Sm {
    index: u64,
    hash: u64,
}

fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

fn entry_hash(e: &Entry) -> u64 {
    let mut h = fnv(0xcbf2_9ce4_8422_2325, &e.index.to_le_bytes());
    h = fnv(h, &e.term.to_le_bytes());
    h = fnv(h, &[e.kind as u8]);
    fnv(h, &e.data)
}

#[derive(Default, Clone)]
struct Disk {
    hs: HardState,
    snapshot: Option<(SnapshotMeta, Sm)>,
    entries: Vec<Entry>,
}

/// One Ready's durable part, queued on the simulated disk.
struct Write {
    hs: Option<HardState>,
    snapshot: Option<(SnapshotMeta, Sm)>,
    entries: Vec<Entry>,
    after: Vec<Message>,
    ack: Option<PersistAck>,
}

struct SimNode {
    id: NodeId,
    raft: Option<RaftNode>,
    incarnation: u64,
    disk: Disk,
    writes: VecDeque<Write>,
    write_scheduled: bool,
    sm: Sm,
    /// Snapshot data received with the last Snapshot message (the actor's file).
    received: Option<(SnapshotMeta, Sm)>,
    /// Commit index seen last in this incarnation (monotonic check).
    last_commit: u64,
    last_role: (Role, u64),
}

enum Event {
    Tick,
    Deliver(Message, Option<Sm>),
    WriteDone {
        node: NodeId,
        incarnation: u64,
    },
    Restart(NodeId),
    /// Crash a member if it is still in the given incarnation.
    Crash(NodeId, u64),
    HealPartition,
}

/// What a run exercised, summed over seeds (printed with `--nocapture`) so a
/// simulation that silently stops exercising something shows.
#[derive(Default, Debug, Clone, Copy)]
struct Stats {
    leaders: u64,
    applied: u64,
    reads_checked: u64,
    snapshots_installed: u64,
    crashes: u64,
    conf_changes: u64,
    transfers: u64,
    events: u64,
}

struct ReadCheck {
    min_index: u64,
}

struct Sim {
    sc: Scenario,
    seed: u64,
    rng: Rng,
    now: u64,
    seq: u64,
    events: BTreeMap<(u64, u64), Event>,
    nodes: BTreeMap<NodeId, SimNode>,
    /// Partition group per node; messages cross groups only when equal.
    group: BTreeMap<NodeId, u8>,
    drop_pct: u64,
    dup_pct: u64,
    delay_max: u64,
    disk_max: u64,
    faults: bool,
    // invariant state
    leaders: BTreeMap<u64, NodeId>,
    /// index → (term, entry hash, lowest term in which any member saw it committed)
    committed: Vec<Option<(u64, u64, u64)>>,
    /// index → hash chain after applying index (state-machine safety)
    applied_chain: Vec<Option<u64>>,
    max_applied: u64,
    reads: BTreeMap<u64, ReadCheck>,
    next_ctx: u64,
    next_data: u64,
    events_run: u64,
    trace: VecDeque<String>,
    stats: Stats,
}

impl Sim {
    fn new(sc: Scenario, seed: u64) -> Sim {
        let mut rng = Rng::new(seed);
        let drop_pct = rng.range(0, 20);
        let dup_pct = rng.range(0, 6);
        let delay_max = rng.range(2, 40);
        let disk_max = rng.range(2, 60);
        let mut sim = Sim {
            sc,
            seed,
            rng,
            now: 0,
            seq: 0,
            events: BTreeMap::new(),
            nodes: BTreeMap::new(),
            group: BTreeMap::new(),
            drop_pct,
            dup_pct,
            delay_max,
            disk_max,
            faults: true,
            leaders: BTreeMap::new(),
            committed: Vec::new(),
            applied_chain: Vec::new(),
            max_applied: 0,
            reads: BTreeMap::new(),
            next_ctx: 1,
            next_data: 1,
            events_run: 0,
            trace: VecDeque::new(),
            stats: Stats::default(),
        };
        for id in 1..=sc.total {
            let node = SimNode {
                id,
                raft: None,
                incarnation: 0,
                disk: Disk::default(),
                writes: VecDeque::new(),
                write_scheduled: false,
                sm: Sm::default(),
                received: None,
                last_commit: 0,
                last_role: (Role::Follower, 0),
            };
            sim.nodes.insert(id, node);
            sim.group.insert(id, 0);
            sim.start(id);
        }
        sim.schedule(TICK, Event::Tick);
        sim
    }

    fn config(&self, id: NodeId, incarnation: u64) -> Config {
        let voters = if id <= self.sc.initial {
            (1..=self.sc.initial).collect()
        } else {
            Vec::new()
        };
        let mut c = Config::new(id, voters);
        c.election_ticks = ELECTION_TICKS;
        c.heartbeat_ticks = 1;
        c.max_inflight_appends = 4;
        c.max_entries_per_append = 8;
        c.max_bytes_per_append = 256;
        c.max_uncommitted_entries = 200;
        c.max_pending_reads = 64;
        c.max_committed_per_ready = 16;
        c.pre_vote = self.sc.pre_vote;
        c.check_quorum = self.sc.check_quorum;
        c.seed = self.seed ^ incarnation.wrapping_mul(0x1234_5678_9abc_def1);
        c
    }

    /// (Re)start a member from exactly what its disk holds.
    fn start(&mut self, id: NodeId) {
        let n = &self.nodes[&id];
        let cfg = self.config(id, n.incarnation);
        let disk = n.disk.clone();
        let sm = disk
            .snapshot
            .as_ref()
            .map(|(_, sm)| *sm)
            .unwrap_or_default();
        let restored = Restored {
            hard_state: disk.hs,
            snapshot: disk.snapshot.as_ref().map(|(m, _)| m.clone()),
            entries: disk.entries.clone(),
            applied: sm.index,
        };
        let raft =
            RaftNode::new(cfg, restored).unwrap_or_else(|e| panic!("restart of {id} failed: {e}"));
        let n = self.nodes.get_mut(&id).expect("node");
        n.last_commit = raft.commit_index();
        n.last_role = (raft.role(), raft.term());
        n.raft = Some(raft);
        n.sm = sm;
        n.received = None;
        n.writes.clear();
        n.write_scheduled = false;
        self.check_sm(id);
    }

    /// Disk latency: this seed's typical range, with an occasional stall.
    fn disk_delay(&mut self) -> u64 {
        if self.rng.chance(1, 10) {
            self.rng.range(self.disk_max, 3 * self.disk_max)
        } else {
            self.rng.range(1, self.disk_max)
        }
    }

    fn schedule(&mut self, delay: u64, ev: Event) {
        self.seq += 1;
        self.events.insert((self.now + delay, self.seq), ev);
    }

    fn note(&mut self, s: String) {
        if self.trace.len() >= 40 {
            self.trace.pop_front();
        }
        self.trace.push_back(format!("t={} {s}", self.now));
    }

    fn alive(&self) -> Vec<NodeId> {
        self.nodes
            .values()
            .filter(|n| n.raft.is_some())
            .map(|n| n.id)
            .collect()
    }

    fn leader(&self) -> Option<NodeId> {
        // The leader of the highest term among live members.
        self.nodes
            .values()
            .filter_map(|n| n.raft.as_ref())
            .filter(|r| r.role() == Role::Leader)
            .max_by_key(|r| r.term())
            .map(|r| r.id())
    }

    // ------------------------------------------------------------ network

    fn send(&mut self, m: Message, data: Option<Sm>) {
        if self.faults && self.rng.chance(self.drop_pct, 100) {
            return;
        }
        let copies = if self.faults && self.rng.chance(self.dup_pct, 100) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let d = self.rng.range(1, self.delay_max + 1);
            self.schedule(d, Event::Deliver(m.clone(), data));
        }
    }

    fn deliver(&mut self, m: Message, data: Option<Sm>) {
        if self.group.get(&m.from) != self.group.get(&m.to) {
            return;
        }
        let to = m.to;
        let Some(n) = self.nodes.get_mut(&to) else {
            return;
        };
        let Some(raft) = n.raft.as_mut() else { return };
        if let (MessageBody::Snapshot { meta }, Some(sm)) = (&m.body, data) {
            n.received = Some((meta.clone(), sm));
        }
        raft.step(m).expect("step never fails");
        self.process(to);
    }

    // ------------------------------------------------------------ ready loop

    fn process(&mut self, id: NodeId) {
        loop {
            let n = self.nodes.get_mut(&id).expect("node");
            let Some(raft) = n.raft.as_mut() else { return };
            if !raft.has_ready() {
                break;
            }
            let rd = raft.ready();
            // 1. Messages that may go now.
            for m in rd.messages {
                let mut data = None;
                if let MessageBody::Snapshot { meta } = &m.body {
                    let n = &self.nodes[&id];
                    let (dm, dsm) = n
                        .disk
                        .snapshot
                        .clone()
                        .expect("snapshot message without a snapshot on disk");
                    assert_eq!(
                        &dm, meta,
                        "snapshot message must describe the snapshot on disk"
                    );
                    data = Some(dsm);
                    let ok = !self.faults || self.rng.chance(9, 10);
                    let to = m.to;
                    if let Some(r) = self.nodes.get_mut(&id).and_then(|n| n.raft.as_mut()) {
                        r.report_snapshot(to, ok);
                    }
                    if !ok {
                        continue;
                    }
                }
                self.send(m, data);
            }
            // 2. The durable part goes to the disk queue.
            let n = self.nodes.get_mut(&id).expect("node");
            if rd.persist_ack.is_some() {
                let snapshot = rd.snapshot.map(|meta| {
                    let (rm, sm) = n
                        .received
                        .clone()
                        .expect("snapshot installed without its data");
                    assert_eq!(rm, meta, "installed snapshot differs from the received one");
                    (meta, sm)
                });
                n.writes.push_back(Write {
                    hs: rd.hard_state,
                    snapshot,
                    entries: rd.entries,
                    after: rd.messages_after_persist,
                    ack: rd.persist_ack,
                });
                if !n.write_scheduled {
                    n.write_scheduled = true;
                    let inc = n.incarnation;
                    let d = self.disk_delay();
                    self.schedule(
                        d,
                        Event::WriteDone {
                            node: id,
                            incarnation: inc,
                        },
                    );
                }
            } else {
                assert!(rd.entries.is_empty() && rd.hard_state.is_none() && rd.snapshot.is_none());
                assert!(rd.messages_after_persist.is_empty());
            }
            // 3. Apply committed entries.
            let mut last = None;
            for e in &rd.committed {
                let n = self.nodes.get_mut(&id).expect("node");
                assert_eq!(e.index, n.sm.index + 1, "node {id}: apply gap");
                n.sm.index = e.index;
                self.stats.applied += 1;
                if e.kind == EntryKind::ConfChange && e.index > 1 {
                    self.stats.conf_changes += 1;
                }
                n.sm.hash = fnv(n.sm.hash, &entry_hash(e).to_le_bytes());
                last = Some(e.index);
                self.check_sm(id);
            }
            if let Some(l) = last {
                let n = self.nodes.get_mut(&id).expect("node");
                n.raft.as_mut().expect("alive").on_applied(l);
                self.max_applied = self.max_applied.max(l);
            }
            // 4. Reads: linearizable means no older than any write acknowledged
            //    (applied anywhere) before the read was issued.
            for rs in rd.read_states {
                if let Some(rc) = self.reads.remove(&rs.ctx) {
                    self.stats.reads_checked += 1;
                    assert!(
                        rs.index >= rc.min_index,
                        "stale read: ctx {} index {} < {} acknowledged before it was issued",
                        rs.ctx,
                        rs.index,
                        rc.min_index
                    );
                }
            }
        }
    }

    /// The disk finished a write: like a WAL with group commit, it made every
    /// queued Ready durable in one go, in order.
    fn write_done(&mut self, id: NodeId, incarnation: u64) {
        let n = self.nodes.get_mut(&id).expect("node");
        if n.incarnation != incarnation || n.raft.is_none() {
            return;
        }
        n.write_scheduled = false;
        let writes: Vec<Write> = n.writes.drain(..).collect();
        for w in writes {
            let n = self.nodes.get_mut(&id).expect("node");
            Self::apply_write(&mut n.disk, &w);
            if let Some(ack) = w.ack {
                n.raft.as_mut().expect("alive").on_persisted(ack);
            }
            if let Some((meta, sm)) = w.snapshot {
                // Load the snapshot into the state machine once it is durable.
                self.stats.snapshots_installed += 1;
                n.sm = sm;
                n.raft.as_mut().expect("alive").on_applied(meta.index);
                self.check_sm(id);
            }
            for m in w.after {
                self.send(m, None);
            }
        }
        self.process(id);
    }

    fn apply_write(disk: &mut Disk, w: &Write) {
        if let Some(s) = &w.snapshot {
            disk.snapshot = Some(s.clone());
            disk.entries.clear();
        }
        if let Some(first) = w.entries.first() {
            let keep = disk
                .entries
                .iter()
                .position(|e| e.index >= first.index)
                .unwrap_or(disk.entries.len());
            disk.entries.truncate(keep);
            if let Some(last) = disk.entries.last() {
                assert_eq!(last.index + 1, first.index, "WAL gap");
            }
            disk.entries.extend(w.entries.iter().cloned());
        }
        if let Some(hs) = w.hs {
            disk.hs = hs;
        }
    }

    fn crash(&mut self, id: NodeId) {
        let n = self.nodes.get_mut(&id).expect("node");
        if n.raft.is_none() {
            return;
        }
        // A crash keeps a prefix of the queued writes (each one atomic) and loses
        // the rest; none of their after-persist messages were sent.
        let keep = if self.rng.chance(1, 2) {
            0
        } else {
            self.rng.range(0, n.writes.len() as u64 + 1) as usize
        };
        let writes: Vec<Write> = n.writes.drain(..).collect();
        for w in writes.iter().take(keep) {
            Self::apply_write(&mut n.disk, w);
        }
        n.raft = None;
        self.stats.crashes += 1;
        n.incarnation += 1;
        n.write_scheduled = false;
        self.note(format!("crash {id} (kept {keep}/{} writes)", writes.len()));
        let d = self.rng.range(5, 60) * TICK;
        self.schedule(d, Event::Restart(id));
    }

    // ------------------------------------------------------------ clients & faults

    fn tick(&mut self) {
        let mut ids = self.alive();
        // Random tick order among members.
        for i in (1..ids.len()).rev() {
            let j = self.rng.range(0, i as u64 + 1) as usize;
            ids.swap(i, j);
        }
        for id in ids {
            if let Some(r) = self.nodes.get_mut(&id).and_then(|n| n.raft.as_mut()) {
                r.tick();
            }
            self.process(id);
        }
        self.client_ops();
        if self.faults {
            self.inject_faults();
        }
        self.schedule(TICK, Event::Tick);
    }

    fn random_alive(&mut self) -> Option<NodeId> {
        let alive = self.alive();
        if alive.is_empty() {
            return None;
        }
        Some(alive[self.rng.range(0, alive.len() as u64) as usize])
    }

    fn client_ops(&mut self) {
        for _ in 0..self.rng.range(0, 3) {
            let Some(id) = self.random_alive() else {
                return;
            };
            let data = self.next_data.to_le_bytes().to_vec();
            self.next_data += 1;
            if let Some(r) = self.nodes.get_mut(&id).and_then(|n| n.raft.as_mut()) {
                let _ = r.propose(data);
            }
            self.process(id);
        }
        if self.rng.chance(1, 2) {
            let Some(id) = self.random_alive() else {
                return;
            };
            let ctx = self.next_ctx;
            self.next_ctx += 1;
            let min_index = self.max_applied;
            let r = self
                .nodes
                .get_mut(&id)
                .and_then(|n| n.raft.as_mut())
                .expect("alive");
            if r.read_index(ctx).is_ok() {
                self.reads.insert(ctx, ReadCheck { min_index });
            }
            self.process(id);
        }
    }

    fn inject_faults(&mut self) {
        let total = self.sc.total;
        if self.rng.chance(1, 120) {
            if let Some(id) = self.random_alive() {
                self.crash(id);
            }
        }
        if self.rng.chance(1, 150) && self.group.values().all(|&g| g == 0) {
            for id in 1..=total {
                let g = self.rng.range(0, 2) as u8;
                self.group.insert(id, g);
            }
            self.note(format!("partition {:?}", self.group));
            let d = self.rng.range(5, 80) * TICK;
            self.schedule(d, Event::HealPartition);
        }
        if self.rng.chance(1, 25) {
            if let Some(id) = self.random_alive() {
                self.compact(id);
            }
        }
        if self.rng.chance(1, 150) {
            if let Some(l) = self.leader() {
                let target = self.rng.range(1, total + 1);
                let r = self
                    .nodes
                    .get_mut(&l)
                    .and_then(|n| n.raft.as_mut())
                    .expect("alive");
                if r.transfer_leader(target).is_ok() && target != l {
                    self.stats.transfers += 1;
                }
                self.note(format!("transfer {l} -> {target}"));
                self.process(l);
            }
        }
        if self.sc.conf_changes && self.rng.chance(1, 40) {
            self.conf_change();
        }
    }

    fn compact(&mut self, id: NodeId) {
        let n = self.nodes.get_mut(&id).expect("node");
        let raft = n.raft.as_mut().expect("alive");
        // The state machine has applied sm.index == raft's applied index (the
        // simulation applies synchronously), unless a snapshot is still loading.
        if raft.applied_index() != n.sm.index || n.sm.index <= raft.snapshot_index() {
            return;
        }
        let index = n.sm.index;
        let meta = raft.compact(index).expect("compaction of an applied index");
        n.disk.snapshot = Some((meta, n.sm));
        n.disk.entries.retain(|e| e.index > index);
    }

    fn conf_change(&mut self) {
        let Some(l) = self.leader() else { return };
        let r = self.nodes[&l].raft.as_ref().expect("alive");
        let voters = r.voters();
        let learners = r.learners();
        let id = self.rng.range(1, self.sc.total + 1);
        let cc = if learners.contains(&id) {
            ConfChange::PromoteLearner(id)
        } else if voters.contains(&id) {
            if voters.len() <= 3 {
                return;
            }
            ConfChange::Remove(id)
        } else {
            // A removed member cannot come back with its old log (ids are not
            // reused in etcd); only never-added members are added.
            if self.removed_once(id) {
                return;
            }
            if self.rng.chance(1, 2) {
                ConfChange::AddLearner(id)
            } else {
                ConfChange::AddVoter(id)
            }
        };
        let r = self
            .nodes
            .get_mut(&l)
            .and_then(|n| n.raft.as_mut())
            .expect("alive");
        if r.propose_conf_change(cc.clone()).is_ok() {
            self.note(format!("conf change at {l}: {cc:?}"));
        }
        self.process(l);
    }

    fn removed_once(&self, id: NodeId) -> bool {
        // A member whose own log mentions it (it was added before) but that is no
        // longer in the leader's configuration.
        id <= self.sc.initial || self.nodes[&id].disk.hs.term > 0
    }

    // ------------------------------------------------------------ invariants

    fn check_sm(&mut self, id: NodeId) {
        let sm = self.nodes[&id].sm;
        if sm.index == 0 {
            return;
        }
        let i = sm.index as usize;
        if self.applied_chain.len() <= i {
            self.applied_chain.resize(i + 1, None);
        }
        match self.applied_chain[i] {
            None => self.applied_chain[i] = Some(sm.hash),
            Some(h) => assert_eq!(
                h, sm.hash,
                "state machine safety: node {id} applied a different history at {i}"
            ),
        }
    }

    fn check(&mut self) {
        let ids: Vec<NodeId> = self.alive();
        for id in ids {
            let n = &self.nodes[&id];
            let r = n.raft.as_ref().expect("alive");
            let (term, role, commit) = (r.term(), r.role(), r.commit_index());
            // Election safety (§5.2): at most one leader per term, ever.
            if role == Role::Leader {
                match self.leaders.get(&term) {
                    Some(&other) => {
                        assert_eq!(other, id, "election safety: two leaders in term {term}")
                    }
                    None => {
                        self.stats.leaders += 1;
                        self.leaders.insert(term, id);
                    }
                }
            }
            assert!(
                r.applied_index() <= commit && commit <= r.last_index(),
                "applied ≤ commit ≤ last"
            );
            assert!(
                commit >= n.last_commit,
                "node {id}: commit went backwards {} -> {commit}",
                n.last_commit
            );
            // Record newly committed entries; two members may never commit
            // different entries at one index.
            let from = n.last_commit + 1;
            let mut newly = Vec::new();
            for i in from.max(r.snapshot_index() + 1)..=commit {
                let e = r
                    .entry_at(i)
                    .expect("committed entry above the snapshot is in the log");
                newly.push((i, e.term, entry_hash(e)));
            }
            let became_leader = role == Role::Leader && n.last_role != (Role::Leader, term);
            let became_candidate =
                role == Role::Candidate && n.last_role != (Role::Candidate, term);
            let inc = n.incarnation;
            // Crash members right where durability matters most: just after they
            // campaigned or won, before or after their writes complete.
            if self.faults
                && ((became_leader && self.rng.chance(1, 4))
                    || (became_candidate && self.rng.chance(1, 8)))
            {
                let d = self.rng.range(0, 3 * TICK);
                self.schedule(d, Event::Crash(id, inc));
            }
            let n = self.nodes.get_mut(&id).expect("node");
            n.last_commit = commit;
            n.last_role = (role, term);
            for (i, t, h) in newly {
                let iu = i as usize;
                if self.committed.len() <= iu {
                    self.committed.resize(iu + 1, None);
                }
                match &mut self.committed[iu] {
                    None => self.committed[iu] = Some((t, h, term)),
                    Some((t0, h0, seen)) => {
                        assert!(
                            *t0 == t && *h0 == h,
                            "node {id} committed a different entry at {i}"
                        );
                        *seen = (*seen).min(term);
                    }
                }
            }
            if became_leader {
                let r = self.nodes[&id].raft.as_ref().expect("alive");
                let (last, inc) = (r.last_index(), self.nodes[&id].incarnation);
                self.note(format!(
                    "{id} (incarnation {inc}) leads term {term}, last index {last}"
                ));
                self.check_leader_completeness(id);
            }
        }
        if self.events_run.is_multiple_of(64) {
            self.check_log_matching();
        }
    }

    /// §5.4 leader completeness: a leader of term t holds every entry committed in
    /// an earlier term.
    fn check_leader_completeness(&self, id: NodeId) {
        let r = self.nodes[&id].raft.as_ref().expect("alive");
        let t = r.term();
        for (i, c) in self.committed.iter().enumerate() {
            let Some((term, hash, seen)) = c else {
                continue;
            };
            if *seen >= t || (i as u64) <= r.snapshot_index() {
                continue;
            }
            let i = i as u64;
            match r.entry_at(i) {
                Some(e) => assert!(
                    e.term == *term && entry_hash(e) == *hash,
                    "leader completeness: leader {id} of term {t} has a different entry at committed index {i}"
                ),
                None => panic!("leader completeness: leader {id} of term {t} lacks committed index {i}"),
            }
        }
    }

    /// §5.3 log matching: if two logs hold an entry with the same index and term,
    /// they are identical up to it.
    fn check_log_matching(&self) {
        let logs: Vec<(NodeId, &[Entry])> = self
            .nodes
            .values()
            .filter_map(|n| n.raft.as_ref().map(|r| (n.id, r.log_entries())))
            .collect();
        for a in 0..logs.len() {
            for b in a + 1..logs.len() {
                let (ia, la) = logs[a];
                let (ib, lb) = logs[b];
                let (Some(fa), Some(fb)) = (la.first(), lb.first()) else {
                    continue;
                };
                let lo = fa.index.max(fb.index);
                let hi = (fa.index + la.len() as u64).min(fb.index + lb.len() as u64);
                let mut matched = false;
                for i in (lo..hi).rev() {
                    let ea = &la[(i - fa.index) as usize];
                    let eb = &lb[(i - fb.index) as usize];
                    if matched || ea.term == eb.term {
                        matched = true;
                        assert_eq!(ea, eb, "log matching: nodes {ia} and {ib} differ at {i}");
                    }
                }
            }
        }
    }

    // ------------------------------------------------------------ driver

    fn run_until(&mut self, end: u64, mut stop: impl FnMut(&mut Sim) -> bool) -> bool {
        while let Some(((t, _), _)) = self.events.first_key_value() {
            if *t > end {
                return false;
            }
            let ((t, _), ev) = self.events.pop_first().expect("non-empty");
            self.now = t;
            self.events_run += 1;
            match ev {
                Event::Tick => self.tick(),
                Event::Deliver(m, data) => self.deliver(m, data),
                Event::WriteDone { node, incarnation } => self.write_done(node, incarnation),
                Event::Restart(id) => {
                    if self.nodes[&id].raft.is_none() {
                        self.note(format!("restart {id}"));
                        self.start(id);
                        self.process(id);
                    }
                }
                Event::Crash(id, inc) => {
                    if self.faults && self.nodes[&id].incarnation == inc {
                        self.crash(id);
                    }
                }
                Event::HealPartition => {
                    for g in self.group.values_mut() {
                        *g = 0;
                    }
                }
            }
            self.check();
            if stop(self) {
                return true;
            }
        }
        false
    }

    fn run(&mut self) {
        let chaos_end = self.sc.chaos_ticks * TICK;
        self.run_until(chaos_end, |_| false);
        // Heal: no more faults, everyone up, one group, a quiet network.
        self.faults = false;
        self.delay_max = self.delay_max.min(TICK);
        for g in self.group.values_mut() {
            *g = 0;
        }
        let down: Vec<NodeId> = self
            .nodes
            .values()
            .filter(|n| n.raft.is_none())
            .map(|n| n.id)
            .collect();
        for id in down {
            self.start(id);
            self.process(id);
        }
        // Liveness: within a bound, some leader commits a fresh proposal and every
        // member of its configuration applies it.
        let bound = self.now + 40 * u64::from(ELECTION_TICKS) * TICK;
        let marker = u64::MAX.to_le_bytes().to_vec();
        let mut proposed_at = 0u64;
        let ok = self.run_until(bound, |sim| {
            let Some(l) = sim.leader() else { return false };
            if sim.now >= proposed_at + 3 * u64::from(ELECTION_TICKS) * TICK {
                let r = sim
                    .nodes
                    .get_mut(&l)
                    .and_then(|n| n.raft.as_mut())
                    .expect("alive");
                if r.propose(marker.clone()).is_ok() {
                    proposed_at = sim.now;
                }
                sim.process(l);
                return false;
            }
            let r = sim.nodes[&l].raft.as_ref().expect("alive");
            let members: Vec<NodeId> = r.voters().into_iter().chain(r.learners()).collect();
            // The marker's index, as the leader's log has it.
            let Some(idx) = r
                .log_entries()
                .iter()
                .rev()
                .find(|e| e.data == marker)
                .map(|e| e.index)
            else {
                return false;
            };
            members
                .iter()
                .all(|m| sim.nodes[m].sm.index >= idx && sim.nodes[m].raft.is_some())
        });
        if !ok {
            for n in self.nodes.values() {
                match &n.raft {
                    Some(r) => eprintln!(
                        "node {}: sm {:?} writes {} status {:?}",
                        n.id,
                        n.sm,
                        n.writes.len(),
                        r.status()
                    ),
                    None => eprintln!("node {}: down", n.id),
                }
            }
            panic!("liveness: no progress within the bound after healing");
        }
        self.check_log_matching();
    }
}

fn seeds(default_release: u64, default_debug: u64) -> Vec<u64> {
    if let Ok(s) = std::env::var("STEAD_SIM_SEED") {
        let seed = s.trim().parse().expect("STEAD_SIM_SEED must be a u64");
        return vec![seed];
    }
    let n = std::env::var("STEAD_SIM_SEEDS")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(if cfg!(debug_assertions) {
            default_debug
        } else {
            default_release
        });
    let first: u64 = std::env::var("STEAD_SIM_FIRST_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    (first..first + n).collect()
}

fn run_seeds(name: &str, sc: Scenario, release: u64, debug: u64) {
    let mut total = Stats::default();
    let seeds = seeds(release, debug);
    let n = seeds.len();
    for seed in seeds {
        // Mix the scenario name in so variants explore different runs.
        let mixed = seed ^ fnv(0xcbf2_9ce4_8422_2325, name.as_bytes());
        let mut sim = Sim::new(sc, mixed);
        let res = catch_unwind(AssertUnwindSafe(|| sim.run()));
        if let Err(e) = res {
            eprintln!("---- last events of {name} seed {seed}:");
            for t in &sim.trace {
                eprintln!("  {t}");
            }
            eprintln!(
                "simulation {name} FAILED at seed {seed} (t={}, events={}); replay: STEAD_SIM_SEED={seed} cargo test {name}",
                sim.now, sim.events_run
            );
            resume_unwind(e);
        }
        let st = sim.stats;
        total.leaders += st.leaders;
        total.applied += st.applied;
        total.reads_checked += st.reads_checked;
        total.snapshots_installed += st.snapshots_installed;
        total.crashes += st.crashes;
        total.conf_changes += st.conf_changes;
        total.transfers += st.transfers;
        total.events += sim.events_run;
    }
    eprintln!("{name}: {n} seeds, {total:?}");
    assert!(
        total.leaders > 0 && total.applied > 0,
        "the simulation exercised nothing"
    );
}

#[test]
fn sim_three_members() {
    let sc = Scenario {
        initial: 3,
        total: 3,
        chaos_ticks: 300,
        pre_vote: true,
        check_quorum: true,
        conf_changes: false,
    };
    run_seeds("sim_three_members", sc, 2000, 800);
}

#[test]
fn sim_five_members() {
    let sc = Scenario {
        initial: 5,
        total: 5,
        chaos_ticks: 300,
        pre_vote: true,
        check_quorum: true,
        conf_changes: false,
    };
    run_seeds("sim_five_members", sc, 1000, 400);
}

#[test]
fn sim_without_prevote_or_check_quorum() {
    let sc = Scenario {
        initial: 3,
        total: 3,
        chaos_ticks: 300,
        pre_vote: false,
        check_quorum: false,
        conf_changes: false,
    };
    run_seeds("sim_without_prevote_or_check_quorum", sc, 1000, 400);
}

#[test]
fn sim_membership_changes() {
    let sc = Scenario {
        initial: 3,
        total: 6,
        chaos_ticks: 400,
        pre_vote: true,
        check_quorum: true,
        conf_changes: true,
    };
    run_seeds("sim_membership_changes", sc, 1000, 400);
}
