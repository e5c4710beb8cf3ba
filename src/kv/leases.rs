//! The lease table of the replicated state machine (etcd's lessor state without
//! its clock): lease ID → granted TTL, the last checkpointed remaining TTL, and
//! the keys attached to it.
//!
//! Changed only by applied log entries (grant, revoke, checkpoint, renew through
//! the log, and the key changes of every write), so every member holds the same
//! table at the same index. Records are staged into the apply batch (bucket
//! `Lease`, key = ID as 8 big-endian bytes); attached keys are not stored here but
//! rebuilt on load from the live keys' lease field, as etcd re-attaches them when
//! it restores its KV. Expiry deadlines are not state-machine state: the leader's
//! `LeaseActor` keeps them (`ExpiryHeap`).
//!
//! Every change is also recorded in `changes`, which the store drains after each
//! apply batch and sends to the `LeaseActor` (its mirror of the table).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};

use prost::Message as _;

use crate::proto::steadpb::LeaseRecord;
use crate::storage::backend::{BackendError, Bucket};
use crate::storage::mvcc::{ApplyBatch, Event, EventKind, MvccStore};

/// etcd's `MaxLeaseTTL` (seconds).
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

/// etcd's minimum TTL: 1.5 election timeouts (`3 * electionTicks / 2` heartbeats),
/// rounded up to whole seconds.
pub fn min_lease_ttl(heartbeat_ms: u64, election_ms: u64) -> i64 {
    let ticks = election_ms / heartbeat_ms.max(1);
    let min_ms = (3 * ticks / 2) * heartbeat_ms;
    min_ms.div_ceil(1000) as i64
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub id: i64,
    /// Granted TTL, seconds.
    pub ttl: i64,
    /// Last checkpointed remaining TTL, seconds; 0: none (the full TTL).
    pub remaining_ttl: i64,
    pub keys: BTreeSet<Vec<u8>>,
}

impl Lease {
    /// What a new leader counts down from: the checkpoint if any, else the TTL.
    pub fn restart_ttl(&self) -> i64 {
        if self.remaining_ttl > 0 { self.remaining_ttl } else { self.ttl }
    }
}

/// A lease as the `LeaseActor` mirrors it (no keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseInfo {
    pub id: i64,
    pub ttl: i64,
    pub remaining_ttl: i64,
}

/// What changed in the table, in apply order, for the `LeaseActor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseChange {
    Granted(LeaseInfo),
    Revoked(i64),
    Checkpointed { id: i64, remaining_ttl: i64 },
    /// Renewed through the log (a keep-alive a follower received, from a log
    /// written before followers relayed keep-alives to the leader).
    Renewed(LeaseInfo),
    /// The whole table was replaced (snapshot install, start).
    Reset(Vec<LeaseInfo>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantError {
    Exists,
    TtlTooLarge,
    /// ID 0 is no lease.
    NoId,
}

#[derive(Debug, Default)]
pub struct Leases {
    by_id: BTreeMap<i64, Lease>,
    changes: Vec<LeaseChange>,
}

fn key_of(id: i64) -> Vec<u8> {
    (id as u64).to_be_bytes().to_vec()
}

impl Leases {
    /// Loads the table from the backend and attaches every live key that names
    /// a lease of it (a key naming a lease that is gone stays as it is, as etcd).
    pub fn load(store: &MvccStore) -> Result<Leases, BackendError> {
        let records: Vec<LeaseRecord> = super::load_records(&**store.backend(), Bucket::Lease, "lease")?;
        let by_id = records
            .into_iter()
            .map(|r| (r.id, Lease { id: r.id, ttl: r.ttl, remaining_ttl: r.remaining_ttl, keys: BTreeSet::new() }))
            .collect();
        let mut leases = Leases { by_id, changes: Vec::new() };
        if !leases.by_id.is_empty() {
            // Every live key ("\0" to "\0": all keys).
            let all = store
                .range(b"\0", b"\0", 0, 0)
                .map_err(|e| BackendError::Engine(format!("reading keys to attach to leases: {e}")))?;
            for kv in all.kvs {
                if let Some(l) = leases.by_id.get_mut(&kv.lease) {
                    l.keys.insert(kv.key);
                }
            }
        }
        Ok(leases)
    }

    pub fn get(&self, id: i64) -> Option<&Lease> {
        self.by_id.get(&id)
    }

    pub fn contains(&self, id: i64) -> bool {
        self.by_id.contains_key(&id)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn infos(&self) -> Vec<LeaseInfo> {
        self.by_id.values().map(|l| LeaseInfo { id: l.id, ttl: l.ttl, remaining_ttl: l.remaining_ttl }).collect()
    }

    /// The changes since the last call, in apply order.
    pub fn take_changes(&mut self) -> Vec<LeaseChange> {
        std::mem::take(&mut self.changes)
    }

    /// Records that the table was replaced as a whole (start, snapshot install).
    pub fn announce_reset(&mut self) {
        self.changes.push(LeaseChange::Reset(self.infos()));
    }

    fn persist(&self, batch: &mut ApplyBatch<'_>, id: i64) {
        if let Some(l) = self.by_id.get(&id) {
            let record = LeaseRecord { id: l.id, ttl: l.ttl, remaining_ttl: l.remaining_ttl };
            batch.stage_put(Bucket::Lease, key_of(id), record.encode_to_vec());
        }
    }

    /// etcd's lessor `Grant` checks, in its order; the TTL arrives already raised
    /// to the minimum (the proposer does it, so every member grants the same).
    pub fn check_grant(&self, id: i64, ttl: i64) -> Result<(), GrantError> {
        if id == 0 {
            return Err(GrantError::NoId);
        }
        if ttl > MAX_LEASE_TTL {
            return Err(GrantError::TtlTooLarge);
        }
        if self.by_id.contains_key(&id) {
            return Err(GrantError::Exists);
        }
        Ok(())
    }

    pub fn grant(&mut self, batch: &mut ApplyBatch<'_>, id: i64, ttl: i64) -> Result<(), GrantError> {
        self.check_grant(id, ttl)?;
        self.by_id.insert(id, Lease { id, ttl, remaining_ttl: 0, keys: BTreeSet::new() });
        self.persist(batch, id);
        self.changes.push(LeaseChange::Granted(LeaseInfo { id, ttl, remaining_ttl: 0 }));
        Ok(())
    }

    /// Removes a lease (its keys are deleted by the caller, in the same entry).
    pub fn remove(&mut self, batch: &mut ApplyBatch<'_>, id: i64) -> Option<Lease> {
        let lease = self.by_id.remove(&id)?;
        batch.stage_delete(Bucket::Lease, key_of(id));
        self.changes.push(LeaseChange::Revoked(id));
        Some(lease)
    }

    /// Records a remaining TTL (0: back to the full TTL); unknown IDs are skipped.
    pub fn checkpoint(&mut self, batch: &mut ApplyBatch<'_>, id: i64, remaining_ttl: i64) {
        let Some(l) = self.by_id.get_mut(&id) else { return };
        let remaining_ttl = remaining_ttl.clamp(0, l.ttl);
        if l.remaining_ttl == remaining_ttl {
            return;
        }
        l.remaining_ttl = remaining_ttl;
        self.persist(batch, id);
        self.changes.push(LeaseChange::Checkpointed { id, remaining_ttl });
    }

    /// A renewal through the log: the checkpoint goes (the full TTL again).
    /// Answers the granted TTL, or None for an unknown lease.
    pub fn renew(&mut self, batch: &mut ApplyBatch<'_>, id: i64) -> Option<i64> {
        let l = self.by_id.get_mut(&id)?;
        let info = LeaseInfo { id, ttl: l.ttl, remaining_ttl: 0 };
        if l.remaining_ttl != 0 {
            l.remaining_ttl = 0;
            self.persist(batch, id);
        }
        self.changes.push(LeaseChange::Renewed(info));
        Some(info.ttl)
    }

    /// Follows the key changes of one committed write: a put attaches its key to
    /// its lease (and detaches it from the previous one), a delete detaches it.
    pub fn track(&mut self, events: &[Event]) {
        for ev in events {
            let prev_lease = ev.prev_lease;
            let new_lease = if ev.kind == EventKind::Put { ev.kv.lease } else { 0 };
            if prev_lease != 0 && prev_lease != new_lease {
                if let Some(l) = self.by_id.get_mut(&prev_lease) {
                    l.keys.remove(&ev.kv.key);
                }
            }
            if new_lease != 0 {
                if let Some(l) = self.by_id.get_mut(&new_lease) {
                    l.keys.insert(ev.kv.key.clone());
                }
            }
        }
    }
}

/// The leader's expiry schedule: a min-heap of (deadline, ID) with lazy deletion
/// (an entry whose deadline is no longer the ID's current one is skipped), so
/// each check costs the expired leases only, never a scan of all of them.
#[derive(Debug)]
pub struct ExpiryHeap<T: Ord + Copy> {
    heap: BinaryHeap<Reverse<(T, i64)>>,
    current: HashMap<i64, T>,
}

impl<T: Ord + Copy> Default for ExpiryHeap<T> {
    fn default() -> Self {
        ExpiryHeap { heap: BinaryHeap::new(), current: HashMap::new() }
    }
}

impl<T: Ord + Copy> ExpiryHeap<T> {
    /// Sets (or moves) `id`'s deadline.
    pub fn set(&mut self, id: i64, deadline: T) {
        if self.current.insert(id, deadline) == Some(deadline) {
            return;
        }
        self.heap.push(Reverse((deadline, id)));
        // Stale entries pile up under renewals: rebuild when they dominate.
        if self.heap.len() > 2 * self.current.len() + 1024 {
            self.heap = self.current.iter().map(|(&id, &d)| Reverse((d, id))).collect();
        }
    }

    pub fn remove(&mut self, id: i64) {
        self.current.remove(&id);
    }

    pub fn deadline(&self, id: i64) -> Option<T> {
        self.current.get(&id).copied()
    }

    pub fn len(&self) -> usize {
        self.current.len()
    }

    pub fn is_empty(&self) -> bool {
        self.current.is_empty()
    }

    pub fn clear(&mut self) {
        self.heap.clear();
        self.current.clear();
    }

    /// The IDs whose deadline is at or before `now` (at most `limit`), removed
    /// from the schedule, earliest first.
    pub fn pop_expired(&mut self, now: T, limit: usize) -> Vec<i64> {
        let mut out = Vec::new();
        while out.len() < limit {
            let Some(&Reverse((deadline, id))) = self.heap.peek() else { break };
            if self.current.get(&id) != Some(&deadline) {
                self.heap.pop(); // stale
                continue;
            }
            if deadline > now {
                break;
            }
            self.heap.pop();
            self.current.remove(&id);
            out.push(id);
        }
        out
    }

    /// Every scheduled ID, earliest deadline first.
    pub fn by_deadline(&self) -> Vec<i64> {
        let mut v: Vec<(T, i64)> = self.current.iter().map(|(&id, &d)| (d, id)).collect();
        v.sort();
        v.into_iter().map(|(_, id)| id).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::backend::MemBackend;

    fn store() -> MvccStore {
        MvccStore::open(MemBackend::new()).expect("open")
    }

    #[test]
    fn min_ttl_is_one_and_a_half_election_timeouts_rounded_up() {
        assert_eq!(min_lease_ttl(100, 1000), 2);
        assert_eq!(min_lease_ttl(50, 500), 1);
        assert_eq!(min_lease_ttl(100, 3000), 5);
    }

    #[test]
    fn grant_checks_follow_etcd() {
        let mut s = store();
        let mut leases = Leases::default();
        let mut batch = s.apply_batch();
        leases.grant(&mut batch, 7, 10).unwrap();
        assert_eq!(leases.grant(&mut batch, 7, 10), Err(GrantError::Exists));
        assert_eq!(leases.grant(&mut batch, 8, MAX_LEASE_TTL + 1), Err(GrantError::TtlTooLarge));
        assert_eq!(leases.grant(&mut batch, 0, 10), Err(GrantError::NoId));
        batch.finish().unwrap();
        assert_eq!(leases.take_changes(), vec![LeaseChange::Granted(LeaseInfo { id: 7, ttl: 10, remaining_ttl: 0 })]);
    }

    #[test]
    fn records_and_attached_keys_survive_a_reload() {
        let mut s = store();
        let mut leases = Leases::default();
        {
            let mut batch = s.apply_batch();
            leases.grant(&mut batch, 1, 30).unwrap();
            leases.grant(&mut batch, 2, 40).unwrap();
            leases.checkpoint(&mut batch, 2, 25);
            let mut txn = batch.write();
            txn.put(b"a", b"x", 1).unwrap();
            txn.put(b"b", b"y", 2).unwrap();
            txn.put(b"c", b"z", 0).unwrap();
            let done = txn.commit(1).unwrap();
            leases.track(&done.changes);
            batch.finish().unwrap();
        }
        assert_eq!(leases.get(1).unwrap().keys, BTreeSet::from([b"a".to_vec()]));
        let reloaded = Leases::load(&s).unwrap();
        assert_eq!(reloaded.get(1).unwrap().keys, BTreeSet::from([b"a".to_vec()]));
        assert_eq!(reloaded.get(2).unwrap().keys, BTreeSet::from([b"b".to_vec()]));
        assert_eq!(reloaded.get(2).unwrap().remaining_ttl, 25);
        assert_eq!(reloaded.get(2).unwrap().restart_ttl(), 25);
        assert_eq!(reloaded.get(1).unwrap().restart_ttl(), 30);
        // Revoked: gone from the backend too.
        {
            let mut batch = s.apply_batch();
            leases.remove(&mut batch, 1).unwrap();
            batch.set_consistent_index(2).unwrap();
            batch.finish().unwrap();
        }
        let reloaded = Leases::load(&s).unwrap();
        assert!(!reloaded.contains(1));
        assert!(reloaded.contains(2));
    }

    #[test]
    fn a_put_moves_its_key_between_leases_and_a_delete_detaches_it() {
        let mut s = store();
        let mut leases = Leases::default();
        let mut batch = s.apply_batch();
        leases.grant(&mut batch, 1, 30).unwrap();
        leases.grant(&mut batch, 2, 30).unwrap();
        let mut txn = batch.write();
        txn.put(b"k", b"v", 1).unwrap();
        let done = txn.commit(1).unwrap();
        leases.track(&done.changes);
        let mut txn = batch.write();
        txn.put(b"k", b"v", 2).unwrap();
        let done = txn.commit(2).unwrap();
        leases.track(&done.changes);
        assert!(leases.get(1).unwrap().keys.is_empty());
        assert!(leases.get(2).unwrap().keys.contains(&b"k".to_vec()));
        let mut txn = batch.write();
        txn.delete_range(b"k", b"").unwrap();
        let done = txn.commit(3).unwrap();
        leases.track(&done.changes);
        assert!(leases.get(2).unwrap().keys.is_empty());
        batch.finish().unwrap();
    }

    #[test]
    fn expiry_heap_pops_only_what_is_due_and_skips_moved_deadlines() {
        let mut h: ExpiryHeap<u64> = ExpiryHeap::default();
        h.set(1, 10);
        h.set(2, 5);
        h.set(3, 20);
        h.set(2, 30); // renewed: its old entry is stale
        assert_eq!(h.pop_expired(4, 10), Vec::<i64>::new());
        assert_eq!(h.pop_expired(15, 10), vec![1]);
        h.remove(3);
        assert_eq!(h.pop_expired(25, 10), Vec::<i64>::new());
        assert_eq!(h.by_deadline(), vec![2]);
        assert_eq!(h.pop_expired(30, 10), vec![2]);
        assert!(h.is_empty());
    }

    #[test]
    fn expiry_heap_respects_the_limit_and_stays_bounded_under_renewals() {
        let mut h: ExpiryHeap<u64> = ExpiryHeap::default();
        for id in 0..100_000i64 {
            h.set(id, (id % 1000) as u64);
        }
        for round in 0..20u64 {
            for id in 0..100i64 {
                h.set(id, 5000 + round);
            }
        }
        assert!(h.heap.len() <= 2 * h.len() + 1025);
        let first = h.pop_expired(0, 1000);
        assert_eq!(first.len(), 99, "ids ≡ 0 mod 1000, except the renewed id 0");
        let due = h.pop_expired(999, 50);
        assert_eq!(due.len(), 50);
        assert_eq!(h.len(), 100_000 - 99 - 50);
    }
}
