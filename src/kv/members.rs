//! The cluster's member records (etcd's "members" bucket): id, name, peer and
//! client URLs, learner flag. Raft decides who votes; this table remembers who the
//! members are, so `MemberList` can answer and peer links can be dialled.
//!
//! Changed only by applied log entries (the initial membership, membership
//! changes with their context, members publishing their attributes), so every
//! member holds the same table at the same index. Writes are staged into the apply
//! batch; this module never writes the backend on its own.

use std::collections::BTreeMap;

use prost::Message as _;

use crate::proto::etcdserverpb::Member;
use crate::proto::steadpb::{MemberAttributes, MemberPeerUrls};
use crate::raft::ConfChange;
use crate::storage::backend::{Backend, BackendError, Bucket};
use crate::storage::mvcc::ApplyBatch;

/// A member of the initial cluster, as the configuration names it.
#[derive(Debug, Clone)]
pub struct InitialMember {
    pub id: u64,
    pub name: String,
    pub peer_urls: Vec<String>,
}

#[derive(Debug, Default, Clone)]
pub struct Members {
    by_id: BTreeMap<u64, Member>,
}

impl Members {
    /// Loads the table from the backend (empty for a new member).
    pub fn load(backend: &dyn Backend) -> Result<Members, BackendError> {
        let records: Vec<Member> = super::load_records(backend, Bucket::Members, "member")?;
        Ok(Members { by_id: records.into_iter().map(|m| (m.id, m)).collect() })
    }

    /// Every member, ordered by id.
    pub fn list(&self) -> Vec<Member> {
        self.by_id.values().cloned().collect()
    }

    pub fn get(&self, id: u64) -> Option<&Member> {
        self.by_id.get(&id)
    }

    /// A member (other than `except`) already using one of these peer URLs.
    pub fn peer_url_in_use(&self, urls: &[String], except: u64) -> bool {
        self.by_id.values().any(|m| m.id != except && m.peer_ur_ls.iter().any(|u| urls.contains(u)))
    }

    fn store(&mut self, batch: &mut ApplyBatch<'_>, member: Member) {
        batch.stage_put(Bucket::Members, member.id.to_be_bytes().to_vec(), member.encode_to_vec());
        self.by_id.insert(member.id, member);
    }

    fn remove(&mut self, batch: &mut ApplyBatch<'_>, id: u64) {
        batch.stage_delete(Bucket::Members, id.to_be_bytes().to_vec());
        self.by_id.remove(&id);
    }

    /// Applies a committed membership change. `member` is the record that came with
    /// it (peer URLs, learner flag); the initial membership comes from the
    /// configuration every initial member shares.
    pub fn apply_conf_change(
        &mut self,
        batch: &mut ApplyBatch<'_>,
        change: &ConfChange,
        member: Option<Member>,
        initial: &[InitialMember],
    ) {
        match change {
            ConfChange::Bootstrap(conf) => {
                for m in initial {
                    let is_learner = conf.learners.contains(&m.id);
                    if conf.voters.contains(&m.id) || is_learner {
                        let record = Member {
                            id: m.id,
                            name: String::new(),
                            peer_ur_ls: m.peer_urls.clone(),
                            client_ur_ls: Vec::new(),
                            is_learner,
                        };
                        self.store(batch, record);
                    }
                }
            }
            ConfChange::AddVoter(id) | ConfChange::AddLearner(id) => {
                let mut record = member.unwrap_or_default();
                record.id = *id;
                record.is_learner = matches!(change, ConfChange::AddLearner(_));
                if let Some(old) = self.by_id.get(id) {
                    // Promotion by re-adding keeps what the member published.
                    record.name = old.name.clone();
                    record.client_ur_ls = old.client_ur_ls.clone();
                }
                self.store(batch, record);
            }
            ConfChange::PromoteLearner(id) => {
                if let Some(mut record) = self.by_id.get(id).cloned() {
                    record.is_learner = false;
                    self.store(batch, record);
                }
            }
            ConfChange::Remove(id) => self.remove(batch, *id),
        }
    }

    /// A member's published name and client URLs.
    pub fn apply_attributes(&mut self, batch: &mut ApplyBatch<'_>, attrs: &MemberAttributes) {
        if let Some(mut record) = self.by_id.get(&attrs.id).cloned() {
            record.name = attrs.name.clone();
            record.client_ur_ls = attrs.client_urls.clone();
            self.store(batch, record);
        }
    }

    /// New peer URLs for a member (etcd's MemberUpdate).
    pub fn apply_peer_urls(&mut self, batch: &mut ApplyBatch<'_>, update: &MemberPeerUrls) -> bool {
        match self.by_id.get(&update.id).cloned() {
            Some(mut record) => {
                record.peer_ur_ls = update.peer_urls.clone();
                self.store(batch, record);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::ConfState;
    use crate::storage::backend::MemBackend;
    use crate::storage::mvcc::MvccStore;
    use std::sync::Arc;

    fn initial() -> Vec<InitialMember> {
        (1..=3)
            .map(|i| InitialMember { id: i, name: format!("m{i}"), peer_urls: vec![format!("http://127.0.0.1:{i}")] })
            .collect()
    }

    /// The table survives a reopen and follows bootstrap, publish, add, promote,
    /// update and remove, as etcd's membership store does.
    #[test]
    fn membership_follows_the_log_and_survives_reopen() {
        let backend = MemBackend::new();
        let mut store = MvccStore::open(backend.clone()).unwrap();
        let mut members = Members::default();
        let mut batch = store.apply_batch();
        let conf = ConfState { voters: vec![1, 2, 3], learners: vec![] };
        members.apply_conf_change(&mut batch, &ConfChange::Bootstrap(conf), None, &initial());
        members.apply_attributes(
            &mut batch,
            &MemberAttributes { id: 2, name: "m2".into(), client_urls: vec!["http://127.0.0.1:22".into()] },
        );
        let new = Member { peer_ur_ls: vec!["http://127.0.0.1:4".into()], ..Default::default() };
        members.apply_conf_change(&mut batch, &ConfChange::AddLearner(4), Some(new), &initial());
        members.apply_conf_change(&mut batch, &ConfChange::PromoteLearner(4), None, &initial());
        members.apply_conf_change(&mut batch, &ConfChange::Remove(3), None, &initial());
        assert!(members.apply_peer_urls(&mut batch, &MemberPeerUrls { id: 1, peer_urls: vec!["http://127.0.0.1:11".into()] }));
        batch.set_consistent_index(1).unwrap();
        batch.finish().unwrap();

        let reloaded = Members::load(&*(backend as Arc<dyn Backend>)).unwrap();
        let ids: Vec<u64> = reloaded.list().iter().map(|m| m.id).collect();
        assert_eq!(ids, vec![1, 2, 4]);
        assert_eq!(reloaded.get(2).unwrap().name, "m2");
        assert_eq!(reloaded.get(2).unwrap().client_ur_ls, vec!["http://127.0.0.1:22".to_string()]);
        assert!(!reloaded.get(4).unwrap().is_learner);
        assert_eq!(reloaded.get(1).unwrap().peer_ur_ls, vec!["http://127.0.0.1:11".to_string()]);
        assert!(reloaded.peer_url_in_use(&["http://127.0.0.1:4".into()], 0));
        assert!(!reloaded.peer_url_in_use(&["http://127.0.0.1:4".into()], 4));
    }
}
