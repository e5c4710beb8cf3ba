//! The shape of the log as the WAL records it — where it starts, its last index,
//! the term of each index (as runs), the newest snapshot marker and hard state —
//! and the rules a record must obey to be appended. Both `append` and replay use
//! these same rules, so what the writer accepted is exactly what replay accepts.
//! Pure: no I/O, no entry payloads (memory stays small: one run per term change).

use super::record::CONF_IDS_MAX;
use crate::raft::{HardState, SnapshotMeta};

/// What a snapshot marker did to the entries before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SnapshotEffect {
    /// The log agrees with the snapshot at its index: entries after it stay.
    KeepAfter,
    /// The log is behind the snapshot or disagrees with it (Raft paper §7: discard
    /// the entire log): no entries remain; the next one is `index + 1`.
    Clear,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LogState {
    /// Entries at or below `base_index` are not part of the known log (compacted
    /// into a snapshot, or in segments released before this replay began).
    base_index: u64,
    /// The term at `base_index`; `None` when replay starts in a segment whose
    /// predecessors were released and no snapshot marker has told us yet.
    base_term: Option<u64>,
    /// `(first index, term)` runs covering `(base_index, last_index]`, ascending.
    runs: Vec<(u64, u64)>,
    last_index: u64,
    /// The newest snapshot marker, with the membership it carries.
    pub(super) snapshot: Option<SnapshotMeta>,
    pub(super) hard_state: HardState,
}

impl LogState {
    /// An empty log: the first entry will be index 1 (index 0 has term 0).
    pub(super) fn new() -> Self {
        Self::starting_after(0)
    }

    /// The state at the start of a segment whose name says the log's last index
    /// was `first_index - 1` when it was created; terms before it are unknown until
    /// its head records (or later records) say otherwise.
    pub(super) fn starting_after(last_index: u64) -> Self {
        LogState {
            base_index: last_index,
            base_term: if last_index == 0 { Some(0) } else { None },
            runs: Vec::new(),
            last_index,
            snapshot: None,
            hard_state: HardState::default(),
        }
    }

    pub(super) fn base_index(&self) -> u64 {
        self.base_index
    }

    pub(super) fn last_index(&self) -> u64 {
        self.last_index
    }

    pub(super) fn last_term(&self) -> u64 {
        self.term_at(self.last_index).unwrap_or(0)
    }

    pub(super) fn term_at(&self, index: u64) -> Option<u64> {
        if index == self.base_index {
            return self.base_term;
        }
        if index < self.base_index || index > self.last_index {
            return None;
        }
        let after = self.runs.partition_point(|&(start, _)| start <= index);
        after
            .checked_sub(1)
            .and_then(|k| self.runs.get(k))
            .map(|&(_, term)| term)
    }

    /// Appends one entry, first truncating every entry at or after its index
    /// (Raft's overwrite of a conflicting suffix). Refuses what Raft never does:
    /// index 0, a gap, an entry at or below the snapshot, a term going backwards.
    pub(super) fn append(&mut self, index: u64, term: u64) -> Result<(), String> {
        if index == 0 {
            return Err("entry index 0 (the log starts at 1)".into());
        }
        if let Some(snap_index) = self.snapshot.as_ref().map(|s| s.index) {
            if index <= snap_index {
                return Err(format!(
                    "entry {index} is at or below the snapshot index {snap_index}"
                ));
            }
        }
        if index <= self.hard_state.commit {
            // Raft never rewrites a committed entry (etcd-io/raft panics on such a
            // conflict), and replay relies on the log never ending below the commit.
            return Err(format!(
                "entry {index} is at or below the persisted commit index {}",
                self.hard_state.commit
            ));
        }
        if index > self.last_index + 1 {
            return Err(format!(
                "entry {index} leaves a gap after the last index {}",
                self.last_index
            ));
        }
        if let Some(prev_term) = self.term_at(index - 1) {
            if term < prev_term {
                return Err(format!(
                    "entry {index} has term {term}, below the term {prev_term} of entry {}",
                    index - 1
                ));
            }
        }
        if index <= self.base_index {
            // Only while replaying after released segments: the overwrite reaches
            // below what this replay has seen, so the known log restarts here.
            self.base_index = index - 1;
            self.base_term = None;
            self.runs.clear();
        } else {
            while self.runs.last().is_some_and(|&(start, _)| start >= index) {
                self.runs.pop();
            }
        }
        if self.runs.last().map(|&(_, t)| t) != Some(term) {
            self.runs.push((index, term));
        }
        self.last_index = index;
        Ok(())
    }

    /// Records that the state machine holds everything up to `meta.index` (at
    /// `meta.term`), with the membership `meta.conf` in force there.
    pub(super) fn snapshot(&mut self, meta: &SnapshotMeta) -> Result<SnapshotEffect, String> {
        let (index, term) = (meta.index, meta.term);
        if index == 0 {
            return Err("snapshot marker at index 0".into());
        }
        for (what, count) in [
            ("voters", meta.conf.voters.len()),
            ("learners", meta.conf.learners.len()),
        ] {
            if count > CONF_IDS_MAX {
                return Err(format!(
                    "snapshot marker {index} has {count} {what}, more than the {CONF_IDS_MAX} allowed"
                ));
            }
        }
        if let Some(old) = &self.snapshot {
            if index < old.index {
                return Err(format!(
                    "snapshot marker {index} is older than the previous marker {}",
                    old.index
                ));
            }
            if index == old.index && term != old.term {
                return Err(format!(
                    "snapshot marker {index} has term {term}, but the previous marker at that index has term {}",
                    old.term
                ));
            }
            // The membership at an index is fixed by the log up to it.
            if index == old.index && meta.conf != old.conf {
                return Err(format!(
                    "snapshot marker {index} has membership {:?}, but the previous marker at that index has {:?}",
                    meta.conf, old.conf
                ));
            }
        }
        let effect = match self.term_at(index) {
            Some(t) if t == term => SnapshotEffect::KeepAfter,
            Some(_) => SnapshotEffect::Clear,
            None if index > self.last_index => SnapshotEffect::Clear,
            // At or below a base whose term this replay never learned: the entries
            // after it were valid when written; keep them.
            None => SnapshotEffect::KeepAfter,
        };
        if effect == SnapshotEffect::Clear && index < self.hard_state.commit {
            // Raft ignores a snapshot behind its commit index; a conflict there
            // would mean committed entries disagree with the snapshot.
            return Err(format!(
                "snapshot marker ({index}, {term}) would discard entries up to the persisted commit index {}",
                self.hard_state.commit
            ));
        }
        match effect {
            SnapshotEffect::KeepAfter if index >= self.base_index => {
                let mut kept = Vec::with_capacity(self.runs.len());
                for (k, &(start, t)) in self.runs.iter().enumerate() {
                    let end = self
                        .runs
                        .get(k + 1)
                        .map_or(self.last_index, |&(next, _)| next - 1);
                    if end > index {
                        kept.push((start.max(index + 1), t));
                    }
                }
                self.runs = kept;
                self.base_index = index;
                self.base_term = Some(term);
            }
            SnapshotEffect::KeepAfter => {}
            SnapshotEffect::Clear => {
                self.base_index = index;
                self.base_term = Some(term);
                self.runs.clear();
                self.last_index = index;
            }
        }
        self.snapshot = Some(meta.clone());
        Ok(effect)
    }

    /// Raft never lowers its term or commit index, never changes a vote it cast
    /// in the same term, and never commits past its own log.
    pub(super) fn set_hard_state(&mut self, hs: HardState) -> Result<(), String> {
        let cur = self.hard_state;
        if hs.term < cur.term {
            return Err(format!(
                "hard state term {} is below the persisted term {}",
                hs.term, cur.term
            ));
        }
        if hs.term == cur.term && cur.vote != 0 && hs.vote != cur.vote {
            return Err(format!(
                "hard state changes the vote in term {} from {} to {}",
                hs.term, cur.vote, hs.vote
            ));
        }
        if hs.commit < cur.commit {
            return Err(format!(
                "hard state commit {} is below the persisted commit {}",
                hs.commit, cur.commit
            ));
        }
        if hs.commit > self.last_index {
            return Err(format!(
                "hard state commit {} is past the last index {}",
                hs.commit, self.last_index
            ));
        }
        self.hard_state = hs;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::ConfState;

    fn snap(index: u64, term: u64) -> SnapshotMeta {
        SnapshotMeta {
            index,
            term,
            conf: ConfState {
                voters: vec![1],
                learners: vec![],
            },
        }
    }

    fn log_of(terms: &[u64]) -> LogState {
        let mut log = LogState::new();
        for (i, &t) in terms.iter().enumerate() {
            log.append(i as u64 + 1, t).unwrap();
        }
        log
    }

    #[test]
    fn terms_are_tracked_as_runs_and_overwrite_truncates_the_suffix() {
        let mut log = log_of(&[1, 1, 2, 2, 3]);
        assert_eq!(
            (
                log.term_at(0),
                log.term_at(2),
                log.term_at(4),
                log.term_at(5)
            ),
            (Some(0), Some(1), Some(2), Some(3))
        );
        assert_eq!(log.term_at(6), None);
        log.append(3, 4).unwrap(); // Raft: a conflicting entry replaces 3.. (paper §5.3)
        assert_eq!(
            (log.last_index(), log.last_term(), log.term_at(2)),
            (3, 4, Some(1))
        );
        assert_eq!(log.term_at(4), None);
    }

    #[test]
    fn appends_that_raft_never_makes_are_refused() {
        let mut log = log_of(&[1, 2]);
        assert!(log.append(0, 2).unwrap_err().contains("index 0"));
        assert!(log.append(4, 2).unwrap_err().contains("gap"));
        assert!(log.append(3, 1).unwrap_err().contains("below the term"));
        log.snapshot(&snap(2, 2)).unwrap();
        assert!(log.append(2, 2).unwrap_err().contains("snapshot"));
        assert_eq!(log.last_index(), 2, "a refused append changes nothing");
    }

    #[test]
    fn snapshot_keeps_a_matching_log_and_clears_a_conflicting_or_shorter_one() {
        let mut log = log_of(&[1, 1, 2, 2]);
        assert_eq!(
            log.snapshot(&snap(2, 1)).unwrap(),
            SnapshotEffect::KeepAfter
        );
        assert_eq!(
            (log.base_index(), log.last_index(), log.term_at(3)),
            (2, 4, Some(2))
        );
        assert_eq!(log.snapshot(&snap(3, 9)).unwrap(), SnapshotEffect::Clear);
        assert_eq!((log.last_index(), log.last_term()), (3, 9));
        assert_eq!(log.snapshot(&snap(10, 9)).unwrap(), SnapshotEffect::Clear);
        assert_eq!(log.last_index(), 10);
        assert!(log.snapshot(&snap(5, 9)).unwrap_err().contains("older"));
        log.append(11, 9).unwrap();
        assert!(log.snapshot(&snap(10, 8)).unwrap_err().contains("term"));
        let mut other_conf = snap(10, 9);
        other_conf.conf.voters.push(2);
        assert!(log
            .snapshot(&other_conf)
            .unwrap_err()
            .contains("membership"));
        let mut too_many = snap(11, 9);
        too_many.conf.learners = vec![0; CONF_IDS_MAX + 1];
        assert!(log.snapshot(&too_many).unwrap_err().contains("learners"));
        assert_eq!(
            log.snapshot,
            Some(snap(10, 9)),
            "a refused marker changes nothing"
        );
        // Repeating the newest marker (as a segment head does) is fine.
        assert_eq!(
            log.snapshot(&snap(10, 9)).unwrap(),
            SnapshotEffect::KeepAfter
        );
        assert_eq!(log.last_index(), 11);
    }

    #[test]
    fn hard_state_never_goes_backwards() {
        let mut log = log_of(&[1, 1, 1]);
        log.set_hard_state(HardState {
            term: 2,
            vote: 3,
            commit: 2,
        })
        .unwrap();
        assert!(log
            .set_hard_state(HardState {
                term: 1,
                vote: 3,
                commit: 2
            })
            .is_err());
        assert!(log
            .set_hard_state(HardState {
                term: 2,
                vote: 4,
                commit: 2
            })
            .is_err());
        assert!(log
            .set_hard_state(HardState {
                term: 2,
                vote: 3,
                commit: 1
            })
            .is_err());
        assert!(log
            .set_hard_state(HardState {
                term: 2,
                vote: 3,
                commit: 4
            })
            .is_err());
        log.set_hard_state(HardState {
            term: 3,
            vote: 0,
            commit: 3,
        })
        .unwrap();
    }
}
