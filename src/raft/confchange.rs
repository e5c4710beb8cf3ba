//! Membership changes and their byte layout inside `EntryKind::ConfChange` entries.
//!
//! Layout (all integers little-endian), version byte first so it can evolve:
//! `[1u8, op u8, ...]` where op 1..=4 is followed by one `u64` node id
//! (1 AddVoter, 2 AddLearner, 3 PromoteLearner, 4 Remove) and op 5 (Bootstrap) by
//! `u32` voter count, the voter ids, `u32` learner count, the learner ids.
//! Version 2 is the same followed by `u32` context length and the context: bytes
//! the core carries but never reads (the state machine's record of the member,
//! such as its peer URLs), so the change and its context commit as one entry.
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
const VERSION_WITH_CONTEXT: u8 = 2;
/// Bound on a decoded context, so a corrupt length cannot allocate wildly.
const CONTEXT_MAX: usize = 64 * 1024;
/// Bound on ids in a decoded Bootstrap: a corrupt count must not allocate wildly.
const MEMBERS_MAX: usize = 1024;

impl ConfChange {
    pub fn encode(&self) -> Vec<u8> {
        self.encode_as(VERSION)
    }

    /// The change plus an opaque context (at most 64 KiB; longer is cut, which the
    /// caller's own validation prevents).
    pub fn encode_with_context(&self, context: &[u8]) -> Vec<u8> {
        let mut out = self.encode_as(VERSION_WITH_CONTEXT);
        let context = &context[..context.len().min(CONTEXT_MAX)];
        out.extend_from_slice(&(context.len() as u32).to_le_bytes());
        out.extend_from_slice(context);
        out
    }

    fn encode_as(&self, version: u8) -> Vec<u8> {
        let mut out = vec![version];
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
        Self::decode_with_context(data).map(|(cc, _)| cc)
    }

    /// The change and its context (empty for a version-1 encoding).
    pub fn decode_with_context(data: &[u8]) -> Option<(ConfChange, Vec<u8>)> {
        let mut r = Reader { data, pos: 0 };
        let version = r.u8()?;
        if version != VERSION && version != VERSION_WITH_CONTEXT {
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
        let mut context = Vec::new();
        if version == VERSION_WITH_CONTEXT {
            let n = r.u32()? as usize;
            if n > CONTEXT_MAX {
                return None;
            }
            context = r.take(n)?.to_vec();
        }
        if r.pos != data.len() {
            return None;
        }
        Some((cc, context))
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
            let with_context = cc.encode_with_context(b"member record");
            assert_eq!(ConfChange::decode_with_context(&with_context), Some((cc.clone(), b"member record".to_vec())));
            for n in 0..with_context.len() {
                assert_eq!(ConfChange::decode(&with_context[..n]), None);
            }
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
