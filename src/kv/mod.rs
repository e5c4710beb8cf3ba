//! etcd's KV semantics on top of the MVCC store: what a request must satisfy
//! before it is proposed (`validate`) and what it does when applied (`apply`).
pub mod alarms;
pub mod apply;
pub mod auth;
pub mod leases;
pub mod members;
pub mod validate;

use std::ops::Bound;

use crate::storage::backend::{Backend, BackendError, Bucket, Scan};

/// clientv3's `GetPrefixRangeEnd`: the smallest key above every key with
/// `prefix` (shared by the CLI and the server's own recipes).
pub fn prefix_range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.last_mut() {
        if *last < 0xff {
            *last += 1;
            return end;
        }
        end.pop();
    }
    // All 0xff: no upper bound, i.e. "from key".
    vec![0]
}

/// Every record of a bucket holding one protobuf message per key (members,
/// leases), in key order. A record that does not decode is a corrupt store.
pub(crate) fn load_records<T: prost::Message + Default>(
    backend: &dyn Backend,
    bucket: Bucket,
    what: &str,
) -> Result<Vec<T>, BackendError> {
    let mut records = Vec::new();
    let mut bad = None;
    backend.scan(bucket, Bound::Unbounded, Bound::Unbounded, &mut |_, value| match T::decode(value) {
        Ok(r) => {
            records.push(r);
            Scan::Continue
        }
        Err(e) => {
            bad = Some(e.to_string());
            Scan::Stop
        }
    })?;
    match bad {
        Some(e) => Err(BackendError::Engine(format!("undecodable {what} record: {e}"))),
        None => Ok(records),
    }
}
