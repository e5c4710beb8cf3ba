//! Checks a client request must pass before it is proposed: etcd's
//! `checkPutRequest` / `checkTxnRequest` / duplicate-key rules. Pure functions over
//! the request; they never look at the store, so a bad request costs no log entry.

use std::collections::HashSet;

use crate::error::RequestError;
use crate::proto::etcdserverpb::{
    request_op, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};

pub fn check_range(r: &RangeRequest) -> Result<(), RequestError> {
    if r.key.is_empty() {
        return Err(RequestError::EmptyKey);
    }
    Ok(())
}

pub fn check_put(r: &PutRequest) -> Result<(), RequestError> {
    if r.key.is_empty() {
        return Err(RequestError::EmptyKey);
    }
    if r.ignore_value && !r.value.is_empty() {
        return Err(RequestError::ValueProvided);
    }
    if r.ignore_lease && r.lease != 0 {
        return Err(RequestError::LeaseProvided);
    }
    Ok(())
}

pub fn check_delete(r: &DeleteRangeRequest) -> Result<(), RequestError> {
    if r.key.is_empty() {
        return Err(RequestError::EmptyKey);
    }
    Ok(())
}

/// etcd's txn checks: the op limit per list (compares, success, failure, each on
/// its own, recursively), every key present, and no key written twice on a path
/// that can run.
pub fn check_txn(r: &TxnRequest, max_txn_ops: usize) -> Result<(), RequestError> {
    check_txn_ops(r, max_txn_ops)?;
    check_intervals(&r.success)?;
    check_intervals(&r.failure)?;
    Ok(())
}

fn check_txn_ops(r: &TxnRequest, max_txn_ops: usize) -> Result<(), RequestError> {
    if r.compare.len() > max_txn_ops || r.success.len() > max_txn_ops || r.failure.len() > max_txn_ops {
        return Err(RequestError::TooManyOps);
    }
    r.compare.iter().try_for_each(check_compare)?;
    for op in r.success.iter().chain(r.failure.iter()) {
        check_op(op, max_txn_ops)?;
    }
    Ok(())
}

fn check_compare(c: &Compare) -> Result<(), RequestError> {
    if c.key.is_empty() {
        return Err(RequestError::EmptyKey);
    }
    Ok(())
}

fn check_op(op: &RequestOp, max_txn_ops: usize) -> Result<(), RequestError> {
    match &op.request {
        Some(request_op::Request::RequestRange(r)) => check_range(r),
        Some(request_op::Request::RequestPut(r)) => check_put(r),
        Some(request_op::Request::RequestDeleteRange(r)) => check_delete(r),
        Some(request_op::Request::RequestTxn(t)) => check_txn_ops(t, max_txn_ops),
        // An op with no request: etcd 3.4 refuses the txn with this text.
        None => Err(RequestError::KeyNotFound),
    }
}

/// A deleted interval: `[key, end)`, or the single key when `end` is empty.
struct Interval {
    key: Vec<u8>,
    end: Vec<u8>,
}

impl Interval {
    fn contains(&self, k: &[u8]) -> bool {
        if self.end.is_empty() {
            self.key == k
        } else {
            self.key.as_slice() <= k && k < self.end.as_slice()
        }
    }
}

/// etcd's `checkIntervals`: the puts of one op list (and of nested txns under it)
/// must not repeat a key or fall in a range the same list deletes. The two branches
/// of a nested txn may put the same key, since only one of them runs.
fn check_intervals(reqs: &[RequestOp]) -> Result<(HashSet<Vec<u8>>, Vec<Interval>), RequestError> {
    let mut dels: Vec<Interval> = reqs
        .iter()
        .filter_map(|op| match &op.request {
            Some(request_op::Request::RequestDeleteRange(d)) => {
                Some(Interval { key: d.key.clone(), end: d.range_end.clone() })
            }
            _ => None,
        })
        .collect();
    let deleted = |dels: &[Interval], k: &[u8]| dels.iter().any(|iv| iv.contains(k));

    let mut puts: HashSet<Vec<u8>> = HashSet::new();
    for op in reqs {
        let Some(request_op::Request::RequestTxn(t)) = &op.request else { continue };
        let (puts_then, dels_then) = check_intervals(&t.success)?;
        let (puts_else, dels_else) = check_intervals(&t.failure)?;
        for k in &puts_then {
            if puts.contains(k) || deleted(&dels, k) {
                return Err(RequestError::DuplicateKey);
            }
            puts.insert(k.clone());
        }
        for k in puts_else {
            if (puts.contains(&k) && !puts_then.contains(&k)) || deleted(&dels, &k) {
                return Err(RequestError::DuplicateKey);
            }
            puts.insert(k);
        }
        dels.extend(dels_then);
        dels.extend(dels_else);
    }
    for op in reqs {
        let Some(request_op::Request::RequestPut(p)) = &op.request else { continue };
        if puts.contains(&p.key) || deleted(&dels, &p.key) {
            return Err(RequestError::DuplicateKey);
        }
        puts.insert(p.key.clone());
    }
    Ok((puts, dels))
}

/// True when the txn can only read: it is then served like a range (ReadIndex,
/// no log entry), as etcd does.
pub fn txn_is_read_only(t: &TxnRequest) -> bool {
    t.success.iter().chain(t.failure.iter()).all(|op| match &op.request {
        Some(request_op::Request::RequestRange(_)) => true,
        Some(request_op::Request::RequestTxn(t)) => txn_is_read_only(t),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(k: &str) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: k.into(),
                value: b"v".to_vec(),
                ..Default::default()
            })),
        }
    }
    fn del(k: &str, end: &str) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestDeleteRange(DeleteRangeRequest {
                key: k.into(),
                range_end: end.into(),
                ..Default::default()
            })),
        }
    }
    fn txn(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> TxnRequest {
        TxnRequest { compare: vec![], success, failure }
    }
    fn nested(t: TxnRequest) -> RequestOp {
        RequestOp { request: Some(request_op::Request::RequestTxn(t)) }
    }

    /// etcd: "duplicate key given in txn request" for two puts, or a put inside a
    /// deleted range, in one branch — but not across the two top-level branches.
    #[test]
    fn duplicate_keys_follow_etcd_check_intervals() {
        let dup = Err(RequestError::DuplicateKey);
        assert_eq!(check_txn(&txn(vec![put("a"), put("a")], vec![]), 128), dup);
        assert_eq!(check_txn(&txn(vec![put("a"), del("a", "")], vec![]), 128), dup);
        assert_eq!(check_txn(&txn(vec![put("b"), del("a", "c")], vec![]), 128), dup);
        assert_eq!(check_txn(&txn(vec![put("a")], vec![put("a")]), 128), Ok(()));
        assert_eq!(check_txn(&txn(vec![put("c"), del("a", "c")], vec![]), 128), Ok(()));
        // A nested txn's put collides with the parent's put or delete...
        assert_eq!(check_txn(&txn(vec![put("a"), nested(txn(vec![put("a")], vec![]))], vec![]), 128), dup);
        assert_eq!(check_txn(&txn(vec![del("a", "z"), nested(txn(vec![put("b")], vec![]))], vec![]), 128), dup);
        // ...but its two branches may put the same key.
        assert_eq!(check_txn(&txn(vec![nested(txn(vec![put("a")], vec![put("a")]))], vec![]), 128), Ok(()));
    }

    #[test]
    fn op_limit_applies_to_each_list_separately() {
        let ops: Vec<RequestOp> = (0..3).map(|i| put(&format!("k{i}"))).collect();
        assert_eq!(check_txn(&txn(ops.clone(), ops.clone()), 3), Ok(()));
        let four: Vec<RequestOp> = (0..4).map(|i| put(&format!("k{i}"))).collect();
        assert_eq!(check_txn(&txn(four, vec![]), 3), Err(RequestError::TooManyOps));
        assert_eq!(check_txn(&txn(vec![nested(txn(vec![put("a"), put("b"), put("c"), put("d")], vec![]))], vec![]), 3), Err(RequestError::TooManyOps));
    }

    #[test]
    fn empty_keys_and_ignore_flags_are_refused() {
        assert_eq!(check_put(&PutRequest::default()), Err(RequestError::EmptyKey));
        let p = PutRequest { key: b"k".to_vec(), value: b"v".to_vec(), ignore_value: true, ..Default::default() };
        assert_eq!(check_put(&p), Err(RequestError::ValueProvided));
        let p = PutRequest { key: b"k".to_vec(), lease: 5, ignore_lease: true, ..Default::default() };
        assert_eq!(check_put(&p), Err(RequestError::LeaseProvided));
        assert_eq!(check_txn(&txn(vec![put("")], vec![]), 128), Err(RequestError::EmptyKey));
    }
}
