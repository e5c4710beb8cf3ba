//! etcd's Maintenance.Hash for stead's backend: a CRC-32C (Castagnoli, as etcd's
//! backend hash) over the whole database, for comparing members.
//!
//! What is hashed: every bucket in [`Bucket::ALL`] order — its prefix byte, then
//! each of its records in key order as key length (u32 BE), key, value length
//! (u32 BE), value. Left out, as etcd leaves it out: `Meta` / `consistent_index`,
//! the only member-local record (members apply the same entries but may stand
//! at different log indexes, e.g. after leader no-ops). So two members that
//! applied the same entries hash equal; the number is stead's, not etcd's (the
//! layouts differ).
//!
//! Reads only; the caller makes sure nothing writes meanwhile (a point-in-time
//! hash) and runs it off any event loop (it reads everything).

use std::ops::Bound;

use crate::storage::backend::{Backend, BackendError, Bucket, Scan};
use crate::storage::mvcc::META_CONSISTENT_INDEX;

/// The hash of every record of `backend` but the member-local ones.
pub fn hash_backend(backend: &dyn Backend) -> Result<u32, BackendError> {
    let mut crc = 0u32;
    for bucket in Bucket::ALL {
        crc = crc32c::crc32c_append(crc, &[bucket.prefix()]);
        backend.scan(bucket, Bound::Unbounded, Bound::Unbounded, &mut |key, value| {
            if bucket == Bucket::Meta && key == META_CONSISTENT_INDEX {
                return Scan::Continue;
            }
            for part in [key, value] {
                // Lengths keep (k, v) boundaries unambiguous; a part past 4 GiB
                // cannot be in the backend (the snapshot format refuses it too).
                crc = crc32c::crc32c_append(crc, &(part.len() as u32).to_be_bytes());
                crc = crc32c::crc32c_append(crc, part);
            }
            Scan::Continue
        })?;
    }
    Ok(crc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::backend::{MemBackend, WriteBatch};

    fn backend_with(records: &[(Bucket, &[u8], &[u8])]) -> std::sync::Arc<MemBackend> {
        let b = MemBackend::new();
        let mut batch = WriteBatch::new();
        for (bucket, k, v) in records {
            batch.put(*bucket, k.to_vec(), v.to_vec());
        }
        b.write(batch).unwrap();
        b
    }

    #[test]
    fn equal_contents_hash_equal_whatever_the_consistent_index() {
        let a = backend_with(&[(Bucket::Key, b"k", b"v"), (Bucket::Meta, META_CONSISTENT_INDEX, &5u64.to_be_bytes())]);
        let b = backend_with(&[(Bucket::Key, b"k", b"v"), (Bucket::Meta, META_CONSISTENT_INDEX, &9u64.to_be_bytes())]);
        assert_eq!(hash_backend(&*a).unwrap(), hash_backend(&*b).unwrap());
        // Deterministic.
        assert_eq!(hash_backend(&*a).unwrap(), hash_backend(&*a).unwrap());
    }

    #[test]
    fn any_other_difference_changes_the_hash() {
        let base = hash_backend(&*backend_with(&[(Bucket::Key, b"k", b"v")])).unwrap();
        for other in [
            backend_with(&[(Bucket::Key, b"k", b"w")]),
            backend_with(&[(Bucket::Key, b"kv", b"")]),
            backend_with(&[(Bucket::Lease, b"k", b"v")]),
            backend_with(&[(Bucket::Key, b"k", b"v"), (Bucket::Alarm, b"a", b"")]),
        ] {
            assert_ne!(hash_backend(&*other).unwrap(), base);
        }
    }
}
