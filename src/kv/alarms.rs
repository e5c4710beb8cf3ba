//! The cluster's alarms (etcd's "alarm" bucket): which member raised which alarm
//! (NOSPACE: its backend passed the space quota; CORRUPT: its data disagrees with
//! the cluster's). Changed only by applied `AlarmRequest` entries, so every member
//! holds the same table at the same index; persisted in `Bucket::Alarm` in the
//! apply batch of the entry that changed it, so alarms survive restarts.
//!
//! It also decides what an active alarm refuses, as etcd's capped and corrupt
//! appliers do: with NOSPACE, puts, txns with puts and lease grants; with CORRUPT,
//! every write. It never writes the backend on its own.

use std::collections::BTreeSet;

use prost::Message as _;

use crate::error::RequestError;
use crate::proto::etcdserverpb::{alarm_request::AlarmAction, AlarmMember, AlarmRequest, AlarmResponse, AlarmType};
use crate::proto::steadpb::{internal_request, InternalRequest};
use crate::storage::backend::{Backend, BackendError, Bucket};
use crate::storage::mvcc::ApplyBatch;

/// The active alarms, ordered by (alarm type, member id).
#[derive(Debug, Default, Clone)]
pub struct Alarms {
    active: BTreeSet<(i32, u64)>,
}

/// An alarm's key in `Bucket::Alarm`: member id then alarm type, both big endian.
fn record_key(member_id: u64, alarm: i32) -> Vec<u8> {
    let mut key = member_id.to_be_bytes().to_vec();
    key.extend_from_slice(&alarm.to_be_bytes());
    key
}

impl Alarms {
    /// Loads the table from the backend (empty for a new member).
    pub fn load(backend: &dyn Backend) -> Result<Alarms, BackendError> {
        let records: Vec<AlarmMember> = super::load_records(backend, Bucket::Alarm, "alarm")?;
        Ok(Alarms { active: records.into_iter().map(|a| (a.alarm, a.member_id)).collect() })
    }

    /// Every active alarm, NOSPACE before CORRUPT, by member id within a type.
    pub fn list(&self) -> Vec<AlarmMember> {
        self.active.iter().map(|&(alarm, member_id)| AlarmMember { member_id, alarm }).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.active.is_empty()
    }

    fn any(&self, alarm: AlarmType) -> bool {
        self.active.iter().any(|&(a, _)| a == alarm as i32)
    }

    /// Applies a committed `AlarmRequest`, as etcd's applier: GET lists the alarms
    /// of a type (NONE: all); ACTIVATE answers the alarm (new or already there);
    /// DEACTIVATE answers the alarm it removed, nothing if there was none.
    pub fn apply(&mut self, batch: &mut ApplyBatch<'_>, request: &AlarmRequest) -> AlarmResponse {
        let member = AlarmMember { member_id: request.member_id, alarm: request.alarm };
        let alarms = match AlarmAction::try_from(request.action) {
            Ok(AlarmAction::Get) => self
                .list()
                .into_iter()
                .filter(|a| request.alarm == AlarmType::None as i32 || a.alarm == request.alarm)
                .collect(),
            Ok(AlarmAction::Activate) => {
                // etcd stores any type it is given, NONE included; only the two it
                // knows change what is refused.
                if self.active.insert((member.alarm, member.member_id)) {
                    batch.stage_put(Bucket::Alarm, record_key(member.member_id, member.alarm), member.encode_to_vec());
                    tracing::warn!("alarm raised: {} from member {:x}", alarm_name(member.alarm), member.member_id);
                }
                vec![member]
            }
            Ok(AlarmAction::Deactivate) => {
                if self.active.remove(&(member.alarm, member.member_id)) {
                    batch.stage_delete(Bucket::Alarm, record_key(member.member_id, member.alarm));
                    tracing::warn!("alarm disarmed: {} from member {:x}", alarm_name(member.alarm), member.member_id);
                    vec![member]
                } else {
                    Vec::new()
                }
            }
            // An action this build does not know changes nothing.
            Err(_) => Vec::new(),
        };
        AlarmResponse { header: None, alarms }
    }

    /// Why an active alarm refuses this request at apply time, if it does: with
    /// CORRUPT every write (etcd's corrupt applier); with NOSPACE puts, txns with
    /// a put in either branch, and lease grants (etcd's capped applier). Deletes,
    /// compaction, lease revoke, renewals and membership entries still apply.
    pub fn refusal(&self, request: &InternalRequest) -> Option<RequestError> {
        use internal_request::Request as R;
        let request = request.request.as_ref()?;
        if self.any(AlarmType::Corrupt)
            && matches!(request, R::Put(_) | R::Txn(_) | R::DeleteRange(_) | R::Compaction(_) | R::LeaseGrant(_) | R::LeaseRevoke(_))
        {
            return Some(RequestError::Corrupt);
        }
        if self.any(AlarmType::Nospace) {
            let refused = match request {
                R::Put(_) | R::LeaseGrant(_) => true,
                R::Txn(t) => crate::quota::txn_cost(t) > 0,
                _ => false,
            };
            if refused {
                return Some(RequestError::NoSpace);
            }
        }
        None
    }
}

/// An alarm type's name as etcd prints it (`NOSPACE`), or its number if unknown.
pub fn alarm_name(alarm: i32) -> String {
    AlarmType::try_from(alarm).map(|a| a.as_str_name().to_string()).unwrap_or_else(|_| alarm.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::etcdserverpb as pb;
    use crate::storage::backend::MemBackend;
    use crate::storage::mvcc::MvccStore;

    fn request(action: AlarmAction, member_id: u64, alarm: AlarmType) -> AlarmRequest {
        AlarmRequest { action: action as i32, member_id, alarm: alarm as i32 }
    }

    fn put() -> InternalRequest {
        InternalRequest {
            header: None,
            request: Some(internal_request::Request::Put(pb::PutRequest { key: b"k".to_vec(), ..Default::default() })),
        }
    }

    #[test]
    fn activate_persist_reload_deactivate() {
        let backend = MemBackend::new();
        let mut store = MvccStore::open(backend.clone()).unwrap();
        let mut alarms = Alarms::default();
        let mut batch = store.apply_batch();
        let r = alarms.apply(&mut batch, &request(AlarmAction::Activate, 7, AlarmType::Nospace));
        assert_eq!(r.alarms, vec![AlarmMember { member_id: 7, alarm: AlarmType::Nospace as i32 }]);
        // Activating again answers the alarm, still one of it.
        let again = alarms.apply(&mut batch, &request(AlarmAction::Activate, 7, AlarmType::Nospace));
        assert_eq!(again.alarms.len(), 1);
        alarms.apply(&mut batch, &request(AlarmAction::Activate, 3, AlarmType::Corrupt));
        batch.finish().unwrap();

        let reloaded = Alarms::load(&*backend).unwrap();
        let listed: Vec<(u64, i32)> = reloaded.list().iter().map(|a| (a.member_id, a.alarm)).collect();
        assert_eq!(listed, vec![(7, 1), (3, 2)]);

        let mut batch = store.apply_batch();
        let only_corrupt = alarms.apply(&mut batch, &request(AlarmAction::Get, 0, AlarmType::Corrupt));
        assert_eq!(only_corrupt.alarms, vec![AlarmMember { member_id: 3, alarm: 2 }]);
        let gone = alarms.apply(&mut batch, &request(AlarmAction::Deactivate, 7, AlarmType::Nospace));
        assert_eq!(gone.alarms.len(), 1);
        let nothing = alarms.apply(&mut batch, &request(AlarmAction::Deactivate, 7, AlarmType::Nospace));
        assert!(nothing.alarms.is_empty());
        batch.finish().unwrap();
        assert_eq!(Alarms::load(&*backend).unwrap().list().len(), 1);
    }

    #[test]
    fn nospace_refuses_growth_but_not_deletes_or_reads() {
        let mut alarms = Alarms::default();
        alarms.active.insert((AlarmType::Nospace as i32, 1));
        assert_eq!(alarms.refusal(&put()), Some(RequestError::NoSpace));
        let delete = InternalRequest {
            header: None,
            request: Some(internal_request::Request::DeleteRange(pb::DeleteRangeRequest {
                key: b"k".to_vec(),
                ..Default::default()
            })),
        };
        assert_eq!(alarms.refusal(&delete), None);
        let read_txn = InternalRequest {
            header: None,
            request: Some(internal_request::Request::Txn(pb::TxnRequest {
                success: vec![pb::RequestOp {
                    request: Some(pb::request_op::Request::RequestDeleteRange(pb::DeleteRangeRequest {
                        key: b"k".to_vec(),
                        ..Default::default()
                    })),
                }],
                ..Default::default()
            })),
        };
        assert_eq!(alarms.refusal(&read_txn), None);
        alarms.active.insert((AlarmType::Corrupt as i32, 1));
        assert_eq!(alarms.refusal(&delete), Some(RequestError::Corrupt));
    }
}
