//! Unit tests of the core, one claim each, citing the Raft paper (Ongaro &
//! Ousterhout 2014, "§") or the thesis (Ongaro 2014, "thesis §") where they come
//! from. The harness persists instantly and delivers synchronously; the
//! randomized, faulty version of this lives in `sim.rs`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::*;

fn cfg(id: NodeId, voters: &[NodeId]) -> Config {
    let mut c = Config::new(id, voters.to_vec());
    c.seed = 42;
    c
}

fn node(id: NodeId, voters: &[NodeId]) -> RaftNode {
    RaftNode::new(cfg(id, voters), Restored::default()).expect("valid config")
}

/// Persist a Ready instantly: everything durable, then acknowledge.
fn persist(n: &mut RaftNode, rd: &Ready) {
    if let Some(ack) = rd.persist_ack {
        n.on_persisted(ack);
    }
}

/// A synchronous cluster: instant disks, a network that only knows "cut".
struct Cluster {
    nodes: BTreeMap<NodeId, RaftNode>,
    applied: BTreeMap<NodeId, Vec<Entry>>,
    reads: BTreeMap<NodeId, Vec<ReadState>>,
    /// Directed links that drop everything.
    cut: BTreeSet<(NodeId, NodeId)>,
    queue: VecDeque<Message>,
    /// Messages seen on the wire (after filtering), for assertions.
    sent: Vec<Message>,
    /// Drop messages for which this returns true.
    drop_if: Option<fn(&Message) -> bool>,
}

impl Cluster {
    fn new(ids: &[NodeId]) -> Cluster {
        Cluster::with(ids, |_| {})
    }

    fn with(ids: &[NodeId], tweak: impl Fn(&mut Config)) -> Cluster {
        let mut nodes = BTreeMap::new();
        for &id in ids {
            let mut c = cfg(id, ids);
            c.seed = id * 7919;
            tweak(&mut c);
            nodes.insert(
                id,
                RaftNode::new(c, Restored::default()).expect("valid config"),
            );
        }
        let mut c = Cluster {
            nodes,
            applied: BTreeMap::new(),
            reads: BTreeMap::new(),
            cut: BTreeSet::new(),
            queue: VecDeque::new(),
            sent: Vec::new(),
            drop_if: None,
        };
        c.settle();
        c
    }

    fn n(&mut self, id: NodeId) -> &mut RaftNode {
        self.nodes.get_mut(&id).expect("known node")
    }

    fn isolate(&mut self, id: NodeId) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for other in ids {
            if other != id {
                self.cut.insert((id, other));
                self.cut.insert((other, id));
            }
        }
    }

    fn heal(&mut self) {
        self.cut.clear();
    }

    /// Drain every Ready and deliver every message until nothing moves.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
            for id in ids {
                let n = self.nodes.get_mut(&id).expect("known node");
                while n.has_ready() {
                    moved = true;
                    let rd = n.ready();
                    persist(n, &rd);
                    if let Some(meta) = &rd.snapshot {
                        n.on_applied(meta.index);
                    }
                    if let Some(last) = rd.committed.last() {
                        n.on_applied(last.index);
                    }
                    self.applied.entry(id).or_default().extend(rd.committed);
                    self.reads.entry(id).or_default().extend(rd.read_states);
                    self.queue.extend(rd.messages);
                    self.queue.extend(rd.messages_after_persist);
                }
            }
            while let Some(m) = self.queue.pop_front() {
                moved = true;
                if self.cut.contains(&(m.from, m.to)) || self.drop_if.is_some_and(|f| f(&m)) {
                    continue;
                }
                self.sent.push(m.clone());
                if let Some(n) = self.nodes.get_mut(&m.to) {
                    n.step(m).expect("step never fails on peer messages");
                }
            }
            if !moved {
                return;
            }
        }
        let tail: Vec<&Message> = self.sent.iter().rev().take(6).collect();
        panic!("cluster did not settle; last messages: {tail:#?}");
    }

    fn tick_all(&mut self, ticks: u32) {
        for _ in 0..ticks {
            for n in self.nodes.values_mut() {
                n.tick();
            }
            self.settle();
        }
    }

    fn leader(&self) -> Option<NodeId> {
        self.nodes
            .values()
            .find(|n| n.role() == Role::Leader)
            .map(|n| n.id())
    }

    fn elect(&mut self, id: NodeId) {
        self.n(id).campaign().expect("voter");
        self.settle();
        assert_eq!(
            self.nodes[&id].role(),
            Role::Leader,
            "node {id} should have won"
        );
    }

    fn propose(&mut self, id: NodeId, data: &[u8]) {
        self.n(id)
            .propose(data.to_vec())
            .expect("proposal accepted");
        self.settle();
    }

    fn data_applied(&self, id: NodeId) -> Vec<Vec<u8>> {
        self.applied
            .get(&id)
            .map(|v| {
                v.iter()
                    .filter(|e| e.kind == EntryKind::Normal && !e.data.is_empty())
                    .map(|e| e.data.clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}

// ------------------------------------------------------------ single member

/// A new single-member cluster: entry 1 is the bootstrap membership, committed
/// but applied only once durable; campaigning makes it leader only after its
/// vote is durable; its no-op commits only after it is durable (§5.2, §5.4.2).
#[test]
fn single_member_bootstrap_election_and_noop() {
    let mut n = node(1, &[1]);
    assert_eq!(n.role(), Role::Follower);
    let rd = n.ready();
    assert_eq!(
        rd.hard_state,
        Some(HardState {
            term: 1,
            vote: 0,
            commit: 1
        })
    );
    assert_eq!(rd.entries.len(), 1);
    assert_eq!(rd.entries[0].kind, EntryKind::ConfChange);
    assert_eq!(
        ConfChange::decode(&rd.entries[0].data),
        Some(ConfChange::Bootstrap(ConfState {
            voters: vec![1],
            learners: vec![]
        }))
    );
    assert!(
        rd.committed.is_empty(),
        "nothing is applied before it is durable"
    );
    persist(&mut n, &rd);
    let rd = n.ready();
    assert_eq!(rd.committed.len(), 1);
    n.on_applied(1);
    assert!(!n.has_ready());

    n.campaign().unwrap();
    assert_eq!(n.role(), Role::Candidate, "own vote not durable yet");
    let rd = n.ready();
    assert_eq!(
        rd.hard_state,
        Some(HardState {
            term: 2,
            vote: 1,
            commit: 1
        })
    );
    assert!(rd.messages.is_empty());
    persist(&mut n, &rd);
    assert_eq!(n.role(), Role::Leader);
    assert_eq!(n.term(), 2);
    let rd = n.ready();
    assert_eq!(
        rd.soft_state,
        Some(SoftState {
            leader: Some(1),
            role: Role::Leader
        })
    );
    assert_eq!(
        rd.entries,
        vec![Entry {
            term: 2,
            index: 2,
            kind: EntryKind::Normal,
            data: vec![]
        }]
    );
    assert_eq!(
        n.commit_index(),
        1,
        "the no-op is not committed before it is durable"
    );
    persist(&mut n, &rd);
    assert_eq!(n.commit_index(), 2);
    let rd = n.ready();
    assert_eq!(rd.hard_state.map(|h| h.commit), Some(2));
    assert_eq!(
        rd.committed.iter().map(|e| e.index).collect::<Vec<_>>(),
        vec![2]
    );
    n.on_applied(2);
    assert_eq!(n.applied_index(), 2);
}

/// Proposals are appended, handed out for persisting, and committed (then handed
/// out for applying) only once the caller reports them durable.
#[test]
fn single_member_propose_commit_after_persist() {
    let mut c = Cluster::new(&[1]);
    c.elect(1);
    let n = c.n(1);
    n.propose(b"a".to_vec()).unwrap();
    n.propose(b"b".to_vec()).unwrap();
    let rd = n.ready();
    assert_eq!(
        rd.entries
            .iter()
            .map(|e| e.data.clone())
            .collect::<Vec<_>>(),
        vec![b"a".to_vec(), b"b".to_vec()]
    );
    assert!(rd.committed.is_empty());
    assert_eq!(n.commit_index(), 2);
    // Persisted only up to the first of the two.
    let first = rd.entries[0].clone();
    let ack = rd.persist_ack.unwrap();
    assert_eq!(ack.last_index(), 4);
    n.on_persisted(ack);
    assert_eq!(n.commit_index(), 4);
    let rd = n.ready();
    assert_eq!(rd.committed.first(), Some(&first));
    assert_eq!(rd.committed.len(), 2);
    n.on_applied(4);
    assert!(!n.has_ready());
}

/// An election timeout alone elects the single member (randomized in
/// [election_ticks, 2·election_ticks), §5.2).
#[test]
fn single_member_elected_by_timeout() {
    let mut c = Cluster::new(&[1]);
    for t in 0..20 {
        if c.leader().is_some() {
            assert!(t >= 10, "elected before the minimum election timeout");
            return;
        }
        c.tick_all(1);
    }
    assert_eq!(c.leader(), Some(1));
}

/// Thesis §6.4: a single member confirms reads at once, but only after its term's
/// no-op committed; earlier reads wait.
#[test]
fn single_member_read_index() {
    let mut n = node(1, &[1]);
    let rd = n.ready();
    persist(&mut n, &rd);
    n.campaign().unwrap();
    let rd = n.ready();
    persist(&mut n, &rd);
    assert_eq!(n.role(), Role::Leader);
    n.read_index(7).unwrap();
    let rd = n.ready();
    assert!(
        rd.read_states.is_empty(),
        "no read before the no-op commits"
    );
    persist(&mut n, &rd);
    let rd = n.ready();
    assert_eq!(rd.read_states, vec![ReadState { ctx: 7, index: 2 }]);
    n.read_index(8).unwrap();
    let rd = n.ready();
    assert_eq!(rd.read_states, vec![ReadState { ctx: 8, index: 2 }]);
}

#[test]
fn follower_without_leader_refuses() {
    let mut n = node(1, &[1, 2, 3]);
    assert_eq!(n.propose(b"x".to_vec()), Err(RaftError::NoLeader));
    assert_eq!(n.read_index(1), Err(RaftError::NoLeader));
    assert_eq!(
        n.propose_conf_change(ConfChange::AddVoter(4)),
        Err(RaftError::NotLeader { leader: None })
    );
    assert_eq!(
        n.transfer_leader(2),
        Err(RaftError::NotLeader { leader: None })
    );
    let joining = RaftNode::new(cfg(4, &[]), Restored::default()).unwrap();
    assert!(joining.voters().is_empty());
    let mut joining = joining;
    assert_eq!(joining.campaign(), Err(RaftError::NotVoter));
}

/// Restart from what was persisted: term, vote, log, commit and membership come
/// back; committed entries after `applied` are handed out again.
#[test]
fn restart_from_persisted_state() {
    let mut c = Cluster::new(&[1]);
    c.elect(1);
    c.propose(1, b"a");
    c.propose(1, b"b");
    let n = &c.nodes[&1];
    let restored = Restored {
        hard_state: n.hard_state(),
        snapshot: None,
        entries: n.log_entries().to_vec(),
        applied: 3,
    };
    let mut r = RaftNode::new(cfg(1, &[1]), restored).unwrap();
    assert_eq!(r.term(), 2);
    assert_eq!(r.commit_index(), 4);
    assert_eq!(r.voters(), vec![1]);
    assert_eq!(r.role(), Role::Follower);
    let rd = r.ready();
    assert!(rd.hard_state.is_none() && rd.entries.is_empty());
    assert_eq!(
        rd.committed
            .iter()
            .map(|e| e.data.clone())
            .collect::<Vec<_>>(),
        vec![b"b".to_vec()]
    );
    // A gap in the replayed log is refused.
    let mut entries = c.nodes[&1].log_entries().to_vec();
    entries.remove(1);
    let bad = Restored {
        hard_state: c.nodes[&1].hard_state(),
        snapshot: None,
        entries,
        applied: 0,
    };
    assert!(matches!(
        RaftNode::new(cfg(1, &[1]), bad),
        Err(RaftError::InvalidRestore(_))
    ));
}

// ------------------------------------------------------------ elections

/// §5.2: a candidate that wins a majority becomes leader of a new term; the others
/// follow it.
#[test]
fn election_majority_wins() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    assert_eq!(c.nodes[&1].term(), 2);
    for id in [2, 3] {
        assert_eq!(c.nodes[&id].role(), Role::Follower);
        assert_eq!(c.nodes[&id].leader(), Some(1));
        assert_eq!(c.nodes[&id].term(), 2);
    }
    // And the leader's no-op is committed everywhere.
    assert!(c.nodes.values().all(|n| n.commit_index() == 2));
}

/// §5.2: a candidate that cannot reach a majority does not become leader; with
/// pre-vote (thesis §9.6) it does not even raise its term.
#[test]
fn election_minority_fails_and_prevote_keeps_term() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.isolate(1);
    c.n(1).campaign().unwrap();
    c.settle();
    assert_eq!(c.nodes[&1].role(), Role::PreCandidate);
    assert_eq!(c.nodes[&1].term(), 1);
    let mut c = Cluster::with(&[1, 2, 3], |cfg| cfg.pre_vote = false);
    c.isolate(1);
    c.n(1).campaign().unwrap();
    c.settle();
    assert_eq!(c.nodes[&1].role(), Role::Candidate);
    assert_eq!(c.nodes[&1].term(), 2);
}

fn vote(from: NodeId, to: NodeId, term: u64, last_index: u64, last_term: u64) -> Message {
    Message {
        from,
        to,
        term,
        body: MessageBody::Vote {
            pre: false,
            last_index,
            last_term,
            force: false,
        },
    }
}

fn vote_reply(rd: &Ready) -> Option<(NodeId, bool, bool)> {
    let after = rd.messages_after_persist.iter().map(|m| (m, true));
    rd.messages
        .iter()
        .map(|m| (m, false))
        .chain(after)
        .find_map(|(m, after)| match m.body {
            MessageBody::VoteResponse { reject, .. } => Some((m.to, reject, after)),
            _ => None,
        })
}

/// §5.2: at most one vote per term, first come first served; a grant is sent only
/// after the vote is durable (Figure 2: persist before responding).
#[test]
fn one_vote_per_term_and_grant_after_persist() {
    let mut n = node(1, &[1, 2, 3]);
    let rd = n.ready();
    persist(&mut n, &rd);
    n.step(vote(2, 1, 2, 1, 1)).unwrap();
    let rd = n.ready();
    assert_eq!(rd.hard_state.map(|h| (h.term, h.vote)), Some((2, 2)));
    assert_eq!(
        vote_reply(&rd),
        Some((2, false, true)),
        "grant goes in messages_after_persist"
    );
    persist(&mut n, &rd);
    n.step(vote(3, 1, 2, 1, 1)).unwrap();
    let rd = n.ready();
    assert_eq!(
        vote_reply(&rd),
        Some((3, true, false)),
        "second candidate of the term rejected"
    );
    // The same candidate asking again gets the same answer.
    n.step(vote(2, 1, 2, 1, 1)).unwrap();
    assert_eq!(vote_reply(&n.ready()), Some((2, false, true)));
}

/// Figure 2 (persist before acting): a candidate with a quorum of other votes still
/// waits for its own vote to be durable before leading, else a crash could let it
/// lead the same term twice (a bug the simulation found).
#[test]
fn candidate_leads_only_after_own_vote_durable() {
    let mut n = node(1, &[1, 2, 3]);
    let rd = n.ready();
    persist(&mut n, &rd);
    n.campaign().unwrap(); // pre-vote first
    for from in [2, 3] {
        n.step(Message {
            from,
            to: 1,
            term: 2,
            body: MessageBody::VoteResponse {
                pre: true,
                reject: false,
            },
        })
        .unwrap();
    }
    assert_eq!(n.role(), Role::Candidate);
    let rd = n.ready();
    assert_eq!(rd.hard_state.map(|h| (h.term, h.vote)), Some((2, 1)));
    for from in [2, 3] {
        n.step(Message {
            from,
            to: 1,
            term: 2,
            body: MessageBody::VoteResponse {
                pre: false,
                reject: false,
            },
        })
        .unwrap();
    }
    assert_eq!(n.role(), Role::Candidate, "own vote not durable yet");
    persist(&mut n, &rd);
    assert_eq!(n.role(), Role::Leader);
}

/// §5.4.1: a vote is denied to a candidate whose log is less up-to-date (lower last
/// term, or same last term and shorter).
#[test]
fn vote_denied_to_stale_log() {
    // Without check-quorum, so the follower's leader lease does not hide the answer.
    let mut c = Cluster::with(&[1, 2, 3], |cfg| cfg.check_quorum = false);
    c.elect(1);
    c.propose(1, b"x"); // everyone: last (3, term 2)
    let n = c.n(2);
    n.step(vote(3, 2, 9, 2, 2)).unwrap(); // shorter log, same term
    assert_eq!(vote_reply(&n.ready()).map(|r| r.1), Some(true));
    n.step(vote(3, 2, 10, 100, 1)).unwrap(); // longer log, older term
    assert_eq!(vote_reply(&n.ready()).map(|r| r.1), Some(true));
    n.step(vote(3, 2, 11, 3, 2)).unwrap(); // as up-to-date
    assert_eq!(vote_reply(&n.ready()).map(|r| r.1), Some(false));
}

/// Thesis §4.2.3 / §9.6 with check-quorum: a follower that hears from a live leader
/// ignores (pre-)vote requests — no term bump, no vote — so a rejoining member
/// cannot disrupt the cluster.
#[test]
fn leader_lease_ignores_disruptive_candidate() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    let n = c.n(2);
    n.step(vote(3, 2, 5, 100, 100)).unwrap();
    assert_eq!(n.term(), 2);
    assert!(n.ready().messages.is_empty());
    // Without pre-vote the lease still protects votes, but a rejoining member's
    // higher term reaches the leader through answers and unseats it (why pre-vote
    // is on by default): covered by `prevote_isolated_member_does_not_disrupt`.
}

/// With pre-vote, an isolated member never raises its term, so after healing the
/// leader is undisturbed (thesis §9.6).
#[test]
fn prevote_isolated_member_does_not_disrupt() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.isolate(3);
    c.tick_all(100);
    assert_eq!(c.nodes[&3].term(), 2);
    assert_eq!(c.nodes[&3].role(), Role::PreCandidate);
    c.heal();
    c.tick_all(2);
    assert_eq!(c.leader(), Some(1));
    assert_eq!(c.nodes[&3].leader(), Some(1));
    assert!(c.nodes.values().all(|n| n.term() == 2));
}

/// Thesis §6.2 (check-quorum): a leader that hears from no quorum for an election
/// timeout steps down; the majority side elects a new leader.
#[test]
fn check_quorum_leader_steps_down() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.isolate(1);
    c.tick_all(25);
    assert_ne!(c.nodes[&1].role(), Role::Leader);
    let new = c.leader().expect("majority elects a leader");
    assert_ne!(new, 1);
    c.heal();
    c.tick_all(3);
    assert_eq!(c.leader(), Some(new));
    assert_eq!(c.nodes[&1].leader(), Some(new));
}

/// §5.2: randomized timeouts, in [election_ticks, 2·election_ticks), eventually
/// elect exactly one leader without any campaign() call.
#[test]
fn election_by_timeout_elects_one_leader() {
    for seed in 0..20 {
        let mut c = Cluster::with(&[1, 2, 3, 4, 5], |cfg| {
            cfg.seed = cfg.seed.wrapping_add(seed)
        });
        c.tick_all(9);
        assert_eq!(c.leader(), None, "no election before election_ticks");
        c.tick_all(60);
        let leaders = c
            .nodes
            .values()
            .filter(|n| n.role() == Role::Leader)
            .count();
        assert_eq!(leaders, 1, "seed {seed}");
    }
}

// ------------------------------------------------------------ replication

/// §5.3: the leader replicates proposals; once a majority persisted them they are
/// committed and every member applies them in the same order.
#[test]
fn replication_and_apply_order() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    for i in 0..50u8 {
        c.propose(1, &[i]);
    }
    let want: Vec<Vec<u8>> = (0..50u8).map(|i| vec![i]).collect();
    for id in [1, 2, 3] {
        assert_eq!(c.data_applied(id), want);
    }
}

/// Figure 2 / §5.3: a leader's appends go out at once (parallel with its own
/// persist); a follower acknowledges only after persisting; the leader commits
/// only when a quorum, counting itself only once durable, has the entry.
#[test]
fn commit_needs_quorum_of_durable_copies() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    let l = c.n(1);
    l.propose(b"x".to_vec()).unwrap();
    let rd = l.ready();
    let apps: Vec<Message> = rd
        .messages
        .iter()
        .filter(|m| matches!(m.body, MessageBody::Append { .. }))
        .cloned()
        .collect();
    assert_eq!(apps.len(), 2);
    // Follower 2 receives it: its ack waits for its persist.
    c.n(2).step(apps[0].clone()).unwrap();
    let frd = c.n(2).ready();
    assert!(frd
        .messages
        .iter()
        .all(|m| !matches!(m.body, MessageBody::AppendResponse { .. })));
    let ack = frd
        .messages_after_persist
        .iter()
        .find(|m| matches!(m.body, MessageBody::AppendResponse { .. }))
        .cloned()
        .unwrap();
    persist(c.n(2), &frd);
    // The leader has not persisted its copy yet: one follower is no quorum of 3.
    c.n(1).step(ack).unwrap();
    assert_eq!(
        c.nodes[&1].commit_index(),
        2,
        "the leader counts itself only once durable"
    );
    persist(c.n(1), &rd);
    assert_eq!(c.nodes[&1].commit_index(), 3);
    let rd2 = c.n(1).ready();
    assert_eq!(rd2.committed.last().map(|e| e.index), Some(3));
}

/// Figure 2 AppendEntries rules 2-3 / §5.3 log matching: a follower with
/// conflicting uncommitted entries has them overwritten by the leader's.
#[test]
fn follower_conflicting_suffix_is_replaced() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.propose(1, b"committed");
    // Leader 1 appends entries only it has, then is cut off.
    c.isolate(1);
    for i in 0..5u8 {
        c.n(1).propose(vec![100 + i]).unwrap();
    }
    c.settle();
    c.tick_all(25); // 2 or 3 takes over; 1 steps down (check quorum).
    let new = c.leader().unwrap();
    assert_ne!(new, 1);
    for i in 0..3u8 {
        c.propose(new, &[i]);
    }
    c.heal();
    c.tick_all(3);
    let logs: Vec<Vec<(u64, u64)>> = c
        .nodes
        .values()
        .map(|n| n.log_entries().iter().map(|e| (e.index, e.term)).collect())
        .collect();
    assert_eq!(logs[0], logs[1]);
    assert_eq!(logs[1], logs[2]);
    assert!(c
        .data_applied(1)
        .iter()
        .all(|d| d.first().is_none_or(|&b| b < 100)));
    assert_eq!(c.data_applied(1), c.data_applied(new));
}

/// §5.4.2 (Figure 8): a leader never commits an entry from an earlier term by
/// counting replicas; it is committed indirectly by an entry of its own term.
#[test]
fn no_commit_of_old_term_by_counting() {
    // Leader 2 of term 3 learns that a quorum holds entry 3 (term 2)
    // but must not commit it until its own no-op (index 4, term 3) is on a quorum.
    let mut c = Cluster::with(&[1, 2, 3], |cfg| cfg.check_quorum = false);
    c.elect(1);
    c.cut.insert((1, 3));
    c.cut.insert((2, 1)); // 2 receives entry 3, its ack is lost
    c.n(1).propose(b"t2".to_vec()).unwrap();
    c.settle();
    assert_eq!(c.nodes[&2].last_index(), 3);
    assert_eq!(c.nodes[&1].commit_index(), 2);
    c.heal();
    c.isolate(3);
    c.drop_if = Some(|m| m.from == 2 && matches!(m.body, MessageBody::Append { .. }));
    c.n(2).campaign().unwrap();
    c.settle();
    assert_eq!(c.nodes[&2].role(), Role::Leader);
    assert_eq!(c.nodes[&2].term(), 3);
    let ack = |index| Message {
        from: 1,
        to: 2,
        term: 3,
        body: MessageBody::AppendResponse {
            index,
            reject: false,
            hint_index: 0,
            hint_term: 0,
        },
    };
    c.n(2).step(ack(3)).unwrap();
    c.settle();
    assert_eq!(
        c.nodes[&2].commit_index(),
        2,
        "old-term entry not committed by counting"
    );
    c.n(2).step(ack(4)).unwrap();
    assert_eq!(
        c.nodes[&2].commit_index(),
        4,
        "committed with the current-term entry"
    );
}

/// Flow control: at most `max_inflight_appends` unacknowledged appends per
/// follower in replicate state; a probing follower gets one at a time.
#[test]
fn inflight_appends_are_bounded() {
    let mut c = Cluster::with(&[1, 2], |cfg| {
        cfg.max_inflight_appends = 3;
        cfg.max_entries_per_append = 1;
    });
    c.elect(1);
    c.cut.insert((1, 2));
    for i in 0..10u8 {
        c.n(1).propose(vec![i]).unwrap();
        c.settle();
    }
    let apps = c
        .sent
        .iter()
        .filter(|m| m.from == 1 && matches!(m.body, MessageBody::Append { .. }))
        .count();
    let _ = apps;
    let st = c.nodes[&1].status();
    assert_eq!(st.progress[&2].inflight, 3);
    assert_eq!(st.progress[&2].state, ProgressState::Replicate);
    c.heal();
    c.tick_all(3);
    assert_eq!(c.nodes[&2].commit_index(), c.nodes[&1].last_index());
}

/// Fast back-off (etcd-raft conflict hint): a follower with a long divergent
/// suffix is repaired in a few round trips, not one per entry.
#[test]
fn rejection_hint_skips_terms() {
    let mut c = Cluster::with(&[1, 2, 3], |cfg| cfg.max_entries_per_append = 1000);
    c.elect(1);
    c.isolate(1);
    for i in 0..200u32 {
        c.n(1).propose(i.to_le_bytes().to_vec()).unwrap();
    }
    c.settle();
    c.tick_all(25);
    let new = c.leader().unwrap();
    c.propose(new, b"new");
    c.heal();
    c.sent.clear();
    c.tick_all(2);
    let rejects = c
        .sent
        .iter()
        .filter(|m| {
            m.from == 1 && matches!(m.body, MessageBody::AppendResponse { reject: true, .. })
        })
        .count();
    assert!(rejects <= 2, "{rejects} rejections");
    assert_eq!(c.nodes[&1].last_index(), c.nodes[&new].last_index());
}

// ------------------------------------------------------------ read index

/// Thesis §6.4: the leader records its commit index, confirms leadership with a
/// heartbeat round carrying the read's round, and answers once a quorum echoed it.
#[test]
fn read_index_on_leader_needs_heartbeat_quorum() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.propose(1, b"w");
    c.isolate(1);
    c.n(1).read_index(5).unwrap();
    c.settle();
    assert!(
        c.reads.get(&1).is_none_or(|r| r.is_empty()),
        "no quorum: no read"
    );
    c.heal();
    c.tick_all(1); // heartbeat round
    assert_eq!(c.reads[&1], vec![ReadState { ctx: 5, index: 3 }]);
    // Many reads before one ready() share one heartbeat round.
    c.sent.clear();
    for ctx in 10..20 {
        c.n(1).read_index(ctx).unwrap();
    }
    c.settle();
    let hbs = c
        .sent
        .iter()
        .filter(|m| matches!(m.body, MessageBody::Heartbeat { .. }))
        .count();
    assert_eq!(hbs, 2, "one heartbeat per follower for the whole batch");
    assert_eq!(c.reads[&1].len(), 11);
}

/// Thesis §6.4: a read on a follower is forwarded to the leader and answered with
/// the leader's read index.
#[test]
fn read_index_forwarded_from_follower() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.propose(1, b"w");
    c.n(3).read_index(9).unwrap();
    c.settle();
    assert_eq!(c.reads[&3], vec![ReadState { ctx: 9, index: 3 }]);
}

/// Thesis §6.4 step 1: a new leader answers no read before an entry of its own
/// term committed (its commit index may lag its predecessor's).
#[test]
fn read_index_waits_for_commit_in_term() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.drop_if = Some(|m| m.from == 1 && matches!(m.body, MessageBody::Append { .. }));
    c.elect(1);
    c.n(1).read_index(1).unwrap();
    c.tick_all(2);
    assert!(c.reads.get(&1).is_none_or(|r| r.is_empty()));
    c.drop_if = None;
    c.tick_all(2);
    assert_eq!(c.reads[&1], vec![ReadState { ctx: 1, index: 2 }]);
}

/// A deposed leader that does not know it yet cannot confirm a read: the members
/// of the newer term do not answer its heartbeats.
#[test]
fn read_index_stale_leader_gets_no_answer() {
    let mut c = Cluster::with(&[1, 2, 3], |cfg| cfg.check_quorum = false);
    c.elect(1);
    c.isolate(1);
    c.n(2).campaign().unwrap();
    c.settle();
    assert_eq!(c.nodes[&2].role(), Role::Leader);
    c.propose(2, b"new");
    c.cut.clear();
    c.cut.insert((2, 1));
    c.cut.insert((1, 2));
    // 1 still believes it leads term 2; 3 is at term 3.
    assert_eq!(c.nodes[&1].role(), Role::Leader);
    c.n(1).read_index(77).unwrap();
    c.settle();
    assert!(c.reads.get(&1).is_none_or(|r| r.is_empty()));
    assert_ne!(
        c.nodes[&1].role(),
        Role::Leader,
        "3's answer carried the newer term"
    );
}

// ------------------------------------------------------------ membership

/// Thesis §4.1 / §4.2.1: add a learner (receives the log, does not vote), promote
/// it, remove a voter; each takes effect when committed, one at a time.
#[test]
fn conf_change_learner_promote_remove() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.propose(1, b"before");
    // Member 4 joins empty (no initial voters) and learns everything from the log.
    let joining = RaftNode::new(cfg(4, &[]), Restored::default()).unwrap();
    c.nodes.insert(4, joining);
    c.n(1)
        .propose_conf_change(ConfChange::AddLearner(4))
        .unwrap();
    assert_eq!(
        c.n(1).propose_conf_change(ConfChange::PromoteLearner(4)),
        Err(RaftError::ConfChangeInProgress),
        "one change at a time"
    );
    c.settle();
    c.tick_all(2);
    assert_eq!(c.nodes[&1].learners(), vec![4]);
    assert_eq!(c.nodes[&4].learners(), vec![4]);
    assert_eq!(c.nodes[&4].voters(), vec![1, 2, 3]);
    assert_eq!(c.data_applied(4), vec![b"before".to_vec()]);
    // A learner never campaigns.
    assert_eq!(c.n(4).campaign(), Err(RaftError::NotVoter));
    c.n(1)
        .propose_conf_change(ConfChange::PromoteLearner(4))
        .unwrap();
    c.settle();
    assert_eq!(c.nodes[&4].voters(), vec![1, 2, 3, 4]);
    c.n(1).propose_conf_change(ConfChange::Remove(2)).unwrap();
    c.settle();
    c.tick_all(2);
    assert_eq!(c.nodes[&1].voters(), vec![1, 3, 4]);
    // Quorum of {1,3,4} works without 2.
    c.isolate(2);
    c.propose(1, b"after");
    assert_eq!(c.data_applied(4).last(), Some(&b"after".to_vec()));
    assert!(matches!(
        c.n(1).propose_conf_change(ConfChange::Remove(9)),
        Err(RaftError::InvalidConfChange(_))
    ));
    assert!(matches!(
        c.n(1).propose_conf_change(ConfChange::AddVoter(3)),
        Err(RaftError::InvalidConfChange(_))
    ));
}

/// A leader that removes itself steps down once the removal commits; the others
/// elect a new leader.
#[test]
fn conf_change_remove_leader() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.n(1).propose_conf_change(ConfChange::Remove(1)).unwrap();
    c.settle();
    assert_ne!(c.nodes[&1].role(), Role::Leader);
    c.isolate(1);
    c.tick_all(40);
    let l = c.leader().unwrap();
    assert_ne!(l, 1);
    assert_eq!(c.nodes[&l].voters(), vec![2, 3]);
}

// ------------------------------------------------------------ leader transfer

/// Thesis §3.10: the leader catches the target up and sends TimeoutNow; the target
/// campaigns at once, bypassing pre-vote and its peers' leader leases.
#[test]
fn leader_transfer() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.cut.insert((1, 3));
    c.propose(1, b"x");
    c.cut.clear();
    c.n(1).transfer_leader(3).unwrap();
    assert_eq!(
        c.n(1).propose(b"y".to_vec()),
        Err(RaftError::ProposalDropped)
    );
    c.settle();
    assert_eq!(c.leader(), Some(3));
    assert_eq!(c.nodes[&3].term(), 3);
    assert!(c.sent.iter().any(|m| m.body == MessageBody::TimeoutNow));
    assert_eq!(
        c.n(3).transfer_leader(9),
        Err(RaftError::InvalidTransferTarget(9))
    );
}

/// A transfer to an unreachable target is abandoned after an election timeout and
/// proposals are accepted again.
#[test]
fn leader_transfer_times_out() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.isolate(3);
    c.n(1).transfer_leader(3).unwrap();
    c.tick_all(11);
    assert_eq!(c.leader(), Some(1));
    assert!(c.n(1).propose(b"z".to_vec()).is_ok());
}

// ------------------------------------------------------------ snapshots

/// §7: after compaction, a follower that needs compacted entries gets the
/// snapshot's metadata (the actor ships the data), installs it, reports it in
/// Ready::snapshot, and then catches up from the log.
#[test]
fn snapshot_sent_to_lagging_follower() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.isolate(3);
    for i in 0..10u8 {
        c.propose(1, &[i]);
    }
    assert_eq!(
        c.n(1).compact(100),
        Err(RaftError::NotApplied {
            index: 100,
            applied: 12
        })
    );
    let meta = c.n(1).compact(10).unwrap();
    assert_eq!(
        meta,
        SnapshotMeta {
            index: 10,
            term: 2,
            conf: ConfState {
                voters: vec![1, 2, 3],
                learners: vec![]
            }
        }
    );
    assert_eq!(
        c.n(1).compact(10),
        Err(RaftError::Compacted { snapshot_index: 10 })
    );
    c.heal();
    // Drive node 3 by hand to see its Ready.
    c.tick_all(1);
    let snap_msgs = c
        .sent
        .iter()
        .filter(|m| matches!(m.body, MessageBody::Snapshot { .. }))
        .count();
    assert_eq!(snap_msgs, 1);
    assert_eq!(c.nodes[&3].snapshot_index(), 10);
    c.n(1).report_snapshot(3, true);
    c.tick_all(2);
    assert_eq!(c.nodes[&3].last_index(), 12);
    assert_eq!(c.nodes[&3].commit_index(), 12);
    // Node 3 applied the snapshot instead of entries 1..=10.
    let applied3: Vec<u64> = c.applied[&3].iter().map(|e| e.index).collect();
    assert_eq!(
        applied3
            .iter()
            .filter(|&&i| i > 10)
            .copied()
            .collect::<Vec<_>>(),
        vec![11, 12]
    );
}

/// The receiving side: Ready carries the snapshot to persist and load, nothing is
/// applied past it until it is durable, and the acknowledgement waits for it.
#[test]
fn snapshot_install_ready_contract() {
    let mut n = node(2, &[1, 2, 3]);
    let rd = n.ready();
    persist(&mut n, &rd);
    let meta = SnapshotMeta {
        index: 50,
        term: 4,
        conf: ConfState {
            voters: vec![1, 2, 3],
            learners: vec![5],
        },
    };
    n.step(Message {
        from: 1,
        to: 2,
        term: 4,
        body: MessageBody::Snapshot { meta: meta.clone() },
    })
    .unwrap();
    assert_eq!(n.commit_index(), 50);
    assert_eq!(n.learners(), vec![5]);
    let rd = n.ready();
    assert_eq!(rd.snapshot, Some(meta.clone()));
    assert!(rd.committed.is_empty());
    let acks: Vec<&Message> = rd.messages_after_persist.iter().collect();
    assert_eq!(acks.len(), 1);
    assert!(matches!(
        acks[0].body,
        MessageBody::AppendResponse {
            index: 50,
            reject: false,
            ..
        }
    ));
    persist(&mut n, &rd);
    n.on_applied(50);
    // Entries after the snapshot append normally.
    let e = Entry {
        term: 4,
        index: 51,
        kind: EntryKind::Normal,
        data: b"a".to_vec(),
    };
    n.step(Message {
        from: 1,
        to: 2,
        term: 4,
        body: MessageBody::Append {
            prev_index: 50,
            prev_term: 4,
            entries: vec![e.clone()],
            commit: 51,
        },
    })
    .unwrap();
    let rd = n.ready();
    assert_eq!(rd.entries, vec![e.clone()]);
    persist(&mut n, &rd);
    assert_eq!(n.ready().committed, vec![e]);
    // Restart from the snapshot plus entries.
    let r = RaftNode::new(
        cfg(2, &[1, 2, 3]),
        Restored {
            hard_state: n.hard_state(),
            snapshot: Some(meta),
            entries: n.log_entries().to_vec(),
            applied: 50,
        },
    )
    .unwrap();
    assert_eq!(
        (r.commit_index(), r.last_index(), r.learners()),
        (51, 51, vec![5])
    );
}

// ------------------------------------------------------------ robustness

/// Peer messages can never make the core panic or error: garbage indices, terms,
/// unknown senders, misrouted messages are ignored or answered.
#[test]
fn garbage_messages_are_harmless() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.propose(1, b"a");
    let bodies = vec![
        MessageBody::Append {
            prev_index: u64::MAX,
            prev_term: 0,
            entries: vec![],
            commit: u64::MAX,
        },
        MessageBody::Append {
            prev_index: 1,
            prev_term: 1,
            entries: vec![Entry {
                term: 1,
                index: 7,
                kind: EntryKind::Normal,
                data: vec![],
            }],
            commit: 9,
        },
        MessageBody::Append {
            prev_index: 0,
            prev_term: 0,
            entries: vec![Entry {
                term: 0,
                index: 1,
                kind: EntryKind::Normal,
                data: vec![],
            }],
            commit: 1,
        },
        MessageBody::AppendResponse {
            index: u64::MAX,
            reject: false,
            hint_index: 0,
            hint_term: 0,
        },
        MessageBody::AppendResponse {
            index: 2,
            reject: true,
            hint_index: u64::MAX,
            hint_term: u64::MAX,
        },
        MessageBody::Heartbeat {
            commit: u64::MAX,
            ctx: u64::MAX,
        },
        MessageBody::HeartbeatResponse { ctx: u64::MAX },
        MessageBody::Snapshot {
            meta: SnapshotMeta {
                index: 1,
                term: 0,
                conf: ConfState::default(),
            },
        },
        MessageBody::ReadIndexResponse {
            ctx: 1,
            index: u64::MAX,
        },
        MessageBody::VoteResponse {
            pre: false,
            reject: false,
        },
        MessageBody::TimeoutNow,
        MessageBody::Propose {
            data: vec![vec![0; 3]],
        },
        MessageBody::ReadIndex { ctx: 3 },
    ];
    for to in [1, 2, 3] {
        for from in [0, 1, 2, 3, 99] {
            for term in [0, 1, 2, 3] {
                for body in &bodies {
                    let _ = c.n(to).step(Message {
                        from,
                        to,
                        term,
                        body: body.clone(),
                    });
                    c.n(to)
                        .step(Message {
                            from,
                            to: 42,
                            term,
                            body: body.clone(),
                        })
                        .unwrap();
                }
            }
        }
    }
    // Raft is not Byzantine fault tolerant: forged messages may well corrupt the
    // logs. The claim here is only that the core neither panics, nor errors, nor
    // livelocks (settle() would give up on an endless message exchange).
    c.settle();
    c.tick_all(30);
}
