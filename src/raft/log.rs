//! The in-memory Raft log: every entry since the last snapshot, plus the cursors
//! that say how far it is committed, durable, handed out for persisting and handed
//! out for applying. Owns no storage: the caller's WAL holds the durable copy and
//! tells the core (through `RaftNode::on_persisted`) how far it got.
//!
//! Invariants (asserted): `snapshot_index ≤ applied ≤ applying ≤ committed ≤
//! last_index`, `applying ≤ persisted` unless a snapshot is being installed, and
//! entry terms never decrease along the log.

use super::types::{Entry, SnapshotMeta};

#[derive(Debug)]
pub(super) struct RaftLog {
    snapshot_index: u64,
    snapshot_term: u64,
    /// Entry `i` lives at `entries[i - snapshot_index - 1]`.
    entries: Vec<Entry>,
    /// Highest index known committed (Figure 2 commitIndex).
    pub(super) committed: u64,
    /// Highest index `i` such that the durable log is known to hold this log's
    /// prefix up to `i`. May lag `snapshot_index` while a snapshot is installed.
    pub(super) persisted: u64,
    /// First index not yet handed out (in a `Ready`) for persisting.
    pub(super) unstable_from: u64,
    /// Last index handed out for applying (or the installed snapshot's index).
    pub(super) applying: u64,
    /// Last index the caller reported applied.
    pub(super) applied: u64,
    /// A snapshot installed from the leader, not yet handed out in a `Ready`.
    pub(super) pending_snapshot: Option<SnapshotMeta>,
}

/// Outcome of matching a leader's Append against this log.
pub(super) enum AppendOutcome {
    /// The log now matches the leader up to this index.
    Matched(u64),
    /// `prev_index`/`prev_term` not found: reject with a hint.
    Mismatch,
    /// The append would overwrite a committed entry: only a broken leader sends
    /// that. Ignored rather than obeyed.
    Invalid,
}

impl RaftLog {
    pub(super) fn new(snapshot_index: u64, snapshot_term: u64) -> Self {
        RaftLog {
            snapshot_index,
            snapshot_term,
            entries: Vec::new(),
            committed: snapshot_index,
            persisted: snapshot_index,
            unstable_from: snapshot_index + 1,
            applying: snapshot_index,
            applied: snapshot_index,
            pending_snapshot: None,
        }
    }

    pub(super) fn snapshot_index(&self) -> u64 {
        self.snapshot_index
    }

    pub(super) fn snapshot_term(&self) -> u64 {
        self.snapshot_term
    }

    pub(super) fn first_index(&self) -> u64 {
        self.snapshot_index + 1
    }

    pub(super) fn last_index(&self) -> u64 {
        self.snapshot_index + self.entries.len() as u64
    }

    pub(super) fn last_term(&self) -> u64 {
        self.entries.last().map_or(self.snapshot_term, |e| e.term)
    }

    /// The term of entry `i`; `None` if compacted away or beyond the end.
    pub(super) fn term(&self, i: u64) -> Option<u64> {
        if i == self.snapshot_index {
            return Some(self.snapshot_term);
        }
        self.entry(i).map(|e| e.term)
    }

    pub(super) fn entry(&self, i: u64) -> Option<&Entry> {
        if i <= self.snapshot_index {
            return None;
        }
        self.entries.get((i - self.snapshot_index - 1) as usize)
    }

    /// Entries in `[lo, hi]` (clamped to what is retained), in order.
    pub(super) fn range(&self, lo: u64, hi: u64) -> &[Entry] {
        let lo = lo.max(self.first_index());
        let hi = hi.min(self.last_index());
        if lo > hi {
            return &[];
        }
        let base = self.snapshot_index + 1;
        &self.entries[(lo - base) as usize..=(hi - base) as usize]
    }

    /// Entries from `lo` on, at most `max_entries` of them and at most `max_bytes`
    /// of data (but always at least one entry if any exists, so a single oversized
    /// entry still moves).
    pub(super) fn slice(&self, lo: u64, max_entries: usize, max_bytes: usize) -> Vec<Entry> {
        let all = self.range(lo, self.last_index());
        let mut bytes = 0usize;
        let mut n = 0usize;
        for e in all.iter().take(max_entries.max(1)) {
            bytes = bytes.saturating_add(e.data.len());
            if n > 0 && bytes > max_bytes {
                break;
            }
            n += 1;
        }
        all[..n].to_vec()
    }

    /// §5.4.1: is a candidate's log (`last_index`, `last_term`) at least as
    /// up-to-date as ours?
    pub(super) fn is_up_to_date(&self, last_index: u64, last_term: u64) -> bool {
        last_term > self.last_term()
            || (last_term == self.last_term() && last_index >= self.last_index())
    }

    /// The leader's own append: `e.index` must be `last_index + 1`.
    pub(super) fn append_local(&mut self, e: Entry) {
        assert_eq!(
            e.index,
            self.last_index() + 1,
            "raft log: non-contiguous local append"
        );
        assert!(
            e.term >= self.last_term(),
            "raft log: term went backwards in local append"
        );
        self.entries.push(e);
    }

    /// Figure 2 AppendEntries receiver rules 2–4.
    pub(super) fn maybe_append(
        &mut self,
        prev_index: u64,
        prev_term: u64,
        ents: &[Entry],
    ) -> AppendOutcome {
        if self.term(prev_index) != Some(prev_term) {
            return AppendOutcome::Mismatch;
        }
        // The entries must be contiguous after prev_index with non-decreasing terms;
        // anything else is a malformed message.
        let mut last_term = prev_term;
        for (expect, e) in (prev_index + 1..).zip(ents) {
            if e.index != expect || e.term < last_term {
                return AppendOutcome::Invalid;
            }
            last_term = e.term;
        }
        let last_new = prev_index + ents.len() as u64;
        // Rule 3: find the first entry that conflicts with (or extends) ours.
        let first_new = ents.iter().position(|e| self.term(e.index) != Some(e.term));
        if let Some(pos) = first_new {
            let from = ents[pos].index;
            if from <= self.committed {
                return AppendOutcome::Invalid;
            }
            if from <= self.last_index() {
                self.truncate_from(from);
            }
            for e in &ents[pos..] {
                self.entries.push(e.clone());
            }
            self.assert_terms_tail(from);
        }
        AppendOutcome::Matched(last_new)
    }

    fn assert_terms_tail(&self, from: u64) {
        let prev = self.term(from - 1).unwrap_or(0);
        if let Some(e) = self.entry(from) {
            assert!(e.term >= prev, "raft log: terms decrease at index {from}");
        }
    }

    /// Drop entries `from..`; they were never committed.
    fn truncate_from(&mut self, from: u64) {
        assert!(
            from > self.committed,
            "raft log: truncating committed entry {from}"
        );
        assert!(
            from > self.snapshot_index,
            "raft log: truncating below snapshot"
        );
        self.entries
            .truncate((from - self.snapshot_index - 1) as usize);
        self.unstable_from = self.unstable_from.min(from);
        self.persisted = self.persisted.min(from - 1);
    }

    pub(super) fn commit_to(&mut self, i: u64) -> bool {
        if i <= self.committed {
            return false;
        }
        assert!(
            i <= self.last_index(),
            "raft log: commit {i} beyond last index {}",
            self.last_index()
        );
        self.committed = i;
        true
    }

    /// The caller made everything up to (`i`, `t`) durable. Ignored if the log
    /// changed since (the entry at `i` is gone or has another term), or if `i` was
    /// never handed out.
    pub(super) fn stable_to(&mut self, i: u64, t: u64) {
        if i < self.unstable_from
            && i >= self.snapshot_index
            && self.term(i) == Some(t)
            && i > self.persisted
        {
            self.persisted = i;
        }
    }

    /// Entries not yet handed out for persisting; marks them handed out.
    pub(super) fn take_unstable(&mut self) -> Vec<Entry> {
        let out = self.range(self.unstable_from, self.last_index()).to_vec();
        self.unstable_from = self.last_index() + 1;
        out
    }

    pub(super) fn has_unstable(&self) -> bool {
        self.unstable_from <= self.last_index()
    }

    /// Last index that may be handed out for applying: committed and durable here
    /// (applying an entry this member could still lose would let the state machine
    /// run ahead of the WAL across a crash).
    fn apply_limit(&self) -> u64 {
        self.committed.min(self.persisted)
    }

    pub(super) fn has_committed_to_hand_out(&self) -> bool {
        self.apply_limit() > self.applying
    }

    /// Committed, durable entries not yet handed out for applying (at most `max`).
    pub(super) fn take_committed(&mut self, max: usize) -> Vec<Entry> {
        let hi = self.apply_limit();
        if hi <= self.applying {
            return Vec::new();
        }
        let out: Vec<Entry> = self
            .range(self.applying + 1, hi)
            .iter()
            .take(max.max(1))
            .cloned()
            .collect();
        if let Some(last) = out.last() {
            assert_eq!(out[0].index, self.applying + 1, "raft log: apply gap");
            self.applying = last.index;
        }
        out
    }

    /// The largest index ≤ `index` whose term is ≤ `term` (or the first index we
    /// cannot look below), with its term. Used for the fast back-off on rejected
    /// appends: everything above it certainly conflicts.
    pub(super) fn find_conflict_by_term(&self, index: u64, term: u64) -> (u64, u64) {
        let mut i = index.min(self.last_index());
        loop {
            match self.term(i) {
                Some(t) if t > term => i -= 1,
                Some(t) => return (i, t),
                None => return (i, 0),
            }
        }
    }

    /// Drop entries up to `i` (the caller has a snapshot at `i`).
    pub(super) fn compact_to(&mut self, i: u64, term: u64) {
        assert!(
            i > self.snapshot_index && i <= self.applied,
            "raft log: bad compaction to {i}"
        );
        let n = (i - self.snapshot_index) as usize;
        self.entries.drain(..n);
        self.snapshot_index = i;
        self.snapshot_term = term;
    }

    /// Replace the whole log by a snapshot from the leader.
    pub(super) fn restore(&mut self, meta: &SnapshotMeta) {
        assert!(
            meta.index > self.committed,
            "raft log: restoring an old snapshot"
        );
        self.entries.clear();
        self.snapshot_index = meta.index;
        self.snapshot_term = meta.term;
        self.committed = meta.index;
        // Nothing past the old durable state is known durable until the caller
        // acknowledges the Ready carrying this snapshot.
        self.persisted = self.persisted.min(meta.index - 1);
        self.unstable_from = meta.index + 1;
        self.applying = meta.index;
        self.pending_snapshot = Some(meta.clone());
    }

    /// Restart: adopt what the WAL replayed (entries after the snapshot).
    pub(super) fn restore_entries(&mut self, entries: Vec<Entry>) {
        self.entries = entries;
        self.persisted = self.last_index();
        self.unstable_from = self.last_index() + 1;
    }

    #[cfg(test)]
    pub(super) fn all_entries(&self) -> &[Entry] {
        &self.entries
    }
}
