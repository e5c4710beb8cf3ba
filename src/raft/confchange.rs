//! Membership changes and their byte layout inside `EntryKind::ConfChange` entries.
//!
//! Layout (all integers little-endian), version byte first so it can evolve:
//! `[1u8, op u8, ...]` where op 1..=4 is followed by one `u64` node id
//! (1 AddVoter, 2 AddLearner, 3 PromoteLearner, 4 Remove) and op 5 (Bootstrap) by
//! `u32` voter count, the voter ids, `u32` learner count, the learner ids.
//!
//! One change at a time (Raft thesis §4.1 single-server changes): any majority of
//! the old voters and any majority of the new voters overlap, so no joint consensus
//! is needed.

use super::types::{ConfState, NodeId};

/// One membership change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfChange {
    /// Add a voter (or promote a learner).
    AddVoter(NodeId),
    /// Add a learner: it receives the log but neither votes nor counts for quorum.
    AddLearner(NodeId),
    /// Turn a learner into a voter.
    PromoteLearner(NodeId),
    /// Remove a voter or learner.
    Remove(NodeId),
    /// The initial membership; written by the core itself as entry 1 of a new
    /// cluster, never proposed.
    Bootstrap(ConfState),
}

const VERSION: u8 = 1;
/// Bound on ids in a decoded Bootstrap: a corrupt count must not allocate wildly.
const MEMBERS_MAX: usize = 1024;

impl ConfChange {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![VERSION];
        let single = |out: &mut Vec<u8>, op: u8, id: NodeId| {
            out.push(op);
            out.extend_from_slice(&id.to_le_bytes());
        };
        match self {
            ConfChange::AddVoter(id) => single(&mut out, 1, *id),
            ConfChange::AddLearner(id) => single(&mut out, 2, *id),
            ConfChange::PromoteLearner(id) => single(&mut out, 3, *id),
            ConfChange::Remove(id) => single(&mut out, 4, *id),
            ConfChange::Bootstrap(cs) => {
                out.push(5);
                for list in [&cs.voters, &cs.learners] {
                    out.extend_from_slice(&(list.len() as u32).to_le_bytes());
                    for id in list.iter() {
                        out.extend_from_slice(&id.to_le_bytes());
                    }
                }
            }
        }
        out
    }

    /// `None` for anything malformed. Every member decodes the same bytes the same
    /// way, so treating a malformed change as a no-op keeps members in agreement.
    pub fn decode(data: &[u8]) -> Option<ConfChange> {
        let mut r = Reader { data, pos: 0 };
        if r.u8()? != VERSION {
            return None;
        }
        let cc = match r.u8()? {
            1 => ConfChange::AddVoter(r.u64()?),
            2 => ConfChange::AddLearner(r.u64()?),
            3 => ConfChange::PromoteLearner(r.u64()?),
            4 => ConfChange::Remove(r.u64()?),
            5 => {
                let mut lists = [Vec::new(), Vec::new()];
                for list in lists.iter_mut() {
                    let n = r.u32()? as usize;
                    if n > MEMBERS_MAX {
                        return None;
                    }
                    for _ in 0..n {
                        list.push(r.u64()?);
                    }
                }
                let [voters, learners] = lists;
                ConfChange::Bootstrap(ConfState { voters, learners })
            }
            _ => return None,
        };
        if r.pos != data.len() {
            return None;
        }
        Some(cc)
    }
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.data.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_reject_garbage() {
        let all = [
            ConfChange::AddVoter(7),
            ConfChange::AddLearner(u64::MAX),
            ConfChange::PromoteLearner(1),
            ConfChange::Remove(2),
            ConfChange::Bootstrap(ConfState {
                voters: vec![1, 2, 3],
                learners: vec![9],
            }),
            ConfChange::Bootstrap(ConfState::default()),
        ];
        for cc in all {
            let bytes = cc.encode();
            assert_eq!(ConfChange::decode(&bytes), Some(cc.clone()));
            // Every strict prefix and any trailing byte is rejected.
            for n in 0..bytes.len() {
                assert_eq!(ConfChange::decode(&bytes[..n]), None);
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert_eq!(ConfChange::decode(&longer), None);
        }
        assert_eq!(ConfChange::decode(&[2, 1, 0, 0, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(ConfChange::decode(&[1, 5, 255, 255, 255, 255]), None);
    }
}
