//! The leader's view of one follower's log (Raft Figure 2 nextIndex/matchIndex),
//! with etcd-raft's flow control: probe one append at a time until the follower's
//! position is known, then pipeline up to a bounded number of appends.

use std::collections::VecDeque;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressState {
    /// Position unknown: one append per heartbeat interval until one is accepted.
    Probe,
    /// Position known: stream appends optimistically, at most `inflight_max` unacked.
    Replicate,
    /// Needs entries the leader compacted; waiting for a snapshot to land.
    Snapshot,
}

#[derive(Debug, Clone)]
pub(super) struct Progress {
    pub(super) matched: u64,
    pub(super) next: u64,
    pub(super) state: ProgressState,
    /// Snapshot index being sent while in `Snapshot`.
    pub(super) pending_snapshot: u64,
    /// In `Probe`: an append is out; wait for an answer or a heartbeat response.
    pub(super) probe_sent: bool,
    /// Last indices of appends in flight (Replicate), oldest first.
    inflights: VecDeque<u64>,
    inflight_max: usize,
    /// Heard from since the last check-quorum round.
    pub(super) recent_active: bool,
    /// Highest read round (heartbeat ctx) this member echoed this term.
    pub(super) read_round: u64,
}

impl Progress {
    pub(super) fn new(next: u64, inflight_max: usize) -> Self {
        Progress {
            matched: 0,
            next,
            state: ProgressState::Probe,
            pending_snapshot: 0,
            probe_sent: false,
            inflights: VecDeque::with_capacity(inflight_max.min(64)),
            inflight_max: inflight_max.max(1),
            recent_active: false,
            read_round: 0,
        }
    }

    pub(super) fn become_probe(&mut self) {
        self.next = if self.state == ProgressState::Snapshot {
            (self.matched + 1).max(self.pending_snapshot + 1)
        } else {
            self.matched + 1
        };
        self.state = ProgressState::Probe;
        self.pending_snapshot = 0;
        self.probe_sent = false;
        self.inflights.clear();
    }

    pub(super) fn become_replicate(&mut self) {
        self.state = ProgressState::Replicate;
        self.next = self.matched + 1;
        self.probe_sent = false;
        self.inflights.clear();
    }

    pub(super) fn become_snapshot(&mut self, index: u64) {
        self.state = ProgressState::Snapshot;
        self.pending_snapshot = index;
        self.probe_sent = false;
        self.inflights.clear();
    }

    /// A successful append response for `index`. Returns true if match moved.
    pub(super) fn maybe_update(&mut self, index: u64) -> bool {
        let updated = index > self.matched;
        if updated {
            self.matched = index;
            self.probe_sent = false;
        }
        self.next = self.next.max(index + 1);
        updated
    }

    /// A rejection of the append after `rejected`; `hint` is the leader's guess of
    /// the last matching index. Returns false if the rejection is stale.
    pub(super) fn maybe_decr_to(&mut self, rejected: u64, hint: u64) -> bool {
        if self.state == ProgressState::Replicate {
            if rejected <= self.matched {
                return false;
            }
            self.next = self.matched + 1;
            return true;
        }
        // Probe/Snapshot: only the answer to the probe we sent counts, and a
        // rejection at or below a known match is inconsistent (ignore it rather
        // than re-send the same probe forever).
        if self.next.saturating_sub(1) != rejected || rejected <= self.matched {
            return false;
        }
        self.next = rejected.min(hint + 1).max(self.matched + 1);
        self.probe_sent = false;
        true
    }

    pub(super) fn is_paused(&self) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.inflights.len() >= self.inflight_max,
            ProgressState::Snapshot => true,
        }
    }

    /// An append carrying entries up to `last` (or none if `empty`) was sent.
    pub(super) fn sent(&mut self, empty: bool, last: u64) {
        match self.state {
            ProgressState::Replicate => {
                if !empty {
                    self.next = last + 1;
                    self.inflights.push_back(last);
                }
            }
            ProgressState::Probe => self.probe_sent = true,
            ProgressState::Snapshot => {}
        }
    }

    /// Acknowledged up to `index`: those appends are no longer in flight.
    pub(super) fn free_to(&mut self, index: u64) {
        while self.inflights.front().is_some_and(|&i| i <= index) {
            self.inflights.pop_front();
        }
    }

    /// A heartbeat answer proves the follower is alive; if the pipeline is full
    /// (appends may have been lost) free one slot so replication keeps moving.
    pub(super) fn free_first_if_full(&mut self) {
        if self.inflights.len() >= self.inflight_max {
            self.inflights.pop_front();
        }
    }

    pub(super) fn inflight_count(&self) -> usize {
        self.inflights.len()
    }
}
