//! The backend space quota (`--quota-backend-bytes`), as etcd's `backendQuota`:
//! what a write costs, and whether the backend has room for it. A write that does
//! not fit makes its member raise a NOSPACE alarm (through Raft) and fails; while
//! the alarm is active, the apply path refuses the same writes on every member
//! (`kv::alarms`).
//!
//! Pure: it reads the backend size it is given and never proposes anything itself
//! (the client service does).

use crate::proto::etcdserverpb as pb;

/// etcd's default quota when the flag is 0: 2 GiB.
pub const DEFAULT_QUOTA_BYTES: i64 = 2 * 1024 * 1024 * 1024;
/// etcd's estimate of a key's metadata cost (`kvOverhead`).
const KV_OVERHEAD_BYTES: usize = 256;
/// etcd's estimate of a lease's cost (`leaseOverhead`).
pub const LEASE_OVERHEAD_BYTES: usize = 64;

/// The quota as configured: etcd's flag value 0 means the default, a negative
/// value turns the quota off (etcd's `passthroughQuota`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    max_bytes: Option<u64>,
}

impl Quota {
    /// From `--quota-backend-bytes`.
    pub fn from_flag(bytes: i64) -> Quota {
        match bytes {
            b if b < 0 => Quota { max_bytes: None },
            0 => Quota { max_bytes: Some(DEFAULT_QUOTA_BYTES as u64) },
            b => Quota { max_bytes: Some(b as u64) },
        }
    }

    /// No quota at all.
    pub fn unlimited() -> Quota {
        Quota { max_bytes: None }
    }

    pub fn max_bytes(&self) -> Option<u64> {
        self.max_bytes
    }

    /// Whether a write of `cost` fits a backend of `db_size_bytes`, as etcd's
    /// `Available`: a write that adds nothing always does.
    pub fn available(&self, db_size_bytes: u64, cost: usize) -> bool {
        match self.max_bytes {
            None => true,
            _ if cost == 0 => true,
            Some(max) => db_size_bytes.saturating_add(cost as u64) < max,
        }
    }
}

/// etcd's cost of a put: its key and value plus the metadata estimate.
pub fn put_cost(r: &pb::PutRequest) -> usize {
    KV_OVERHEAD_BYTES + r.key.len() + r.value.len()
}

/// etcd's cost of a txn: the puts of its costlier branch (0 without puts). Puts
/// nested in a txn op are not counted, as etcd does not count them.
pub fn txn_cost(r: &pb::TxnRequest) -> usize {
    let branch = |ops: &[pb::RequestOp]| -> usize {
        ops.iter()
            .map(|op| match &op.request {
                Some(pb::request_op::Request::RequestPut(p)) => put_cost(p),
                _ => 0,
            })
            .sum()
    };
    branch(&r.success).max(branch(&r.failure))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_values_as_etcd() {
        assert_eq!(Quota::from_flag(0).max_bytes(), Some(2 * 1024 * 1024 * 1024));
        assert_eq!(Quota::from_flag(-1).max_bytes(), None);
        assert_eq!(Quota::from_flag(1000).max_bytes(), Some(1000));
    }

    #[test]
    fn available_is_strictly_below_the_quota() {
        let q = Quota::from_flag(1000);
        assert!(q.available(700, 299));
        assert!(!q.available(700, 300));
        // Nothing added: always fits, even past the quota.
        assert!(q.available(5000, 0));
        assert!(Quota::unlimited().available(u64::MAX, 10));
    }

    #[test]
    fn txn_cost_is_the_costlier_branch_of_puts() {
        let put = |k: &str, v: &str| pb::RequestOp {
            request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
                key: k.into(),
                value: v.into(),
                ..Default::default()
            })),
        };
        let get = pb::RequestOp {
            request: Some(pb::request_op::Request::RequestRange(pb::RangeRequest { key: b"a".to_vec(), ..Default::default() })),
        };
        let t = pb::TxnRequest { success: vec![put("a", "bb"), get.clone()], failure: vec![put("abc", "d")], ..Default::default() };
        assert_eq!(txn_cost(&t), 256 + 4);
        let reads = pb::TxnRequest { success: vec![get], ..Default::default() };
        assert_eq!(txn_cost(&reads), 0);
    }
}
