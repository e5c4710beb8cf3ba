//! A saved snapshot: what `Maintenance.Snapshot` streams and `snapshot save`
//! writes to a file, and what `snapshot status` and `snapshot restore` read.
//!
//! Shaped for etcd's tools: etcdctl's `snapshot save` accepts a stream only if
//! its size is a multiple of 512 plus 32 (its `hasChecksum`: a page-aligned
//! database followed by a SHA-256), so the file is
//!
//! ```text
//! [dump (storage::snapshot format)][zero padding][dump length u64 LE][sha256 of all before]
//! ```
//!
//! with the padding chosen so that everything before the SHA-256 is a multiple
//! of 512 bytes. The dump carries its own CRC; the SHA-256 is checked on restore
//! unless `--skip-hash-check` (as etcd).
//!
//! Restoring builds a member's backend from a snapshot for a NEW cluster, as
//! etcd's `snapshot restore`: the keys, leases and alarms are kept, the old
//! membership is dropped and the consistent index reset, so the new member boots
//! like a fresh member of its `--initial-cluster` (a new WAL whose bootstrap
//! entry records the new membership) on top of the restored key space.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::storage::backend::{Backend, BackendError, Bucket, MemBackend, Scan, SledBackend, WriteBatch};
use crate::storage::mvcc::{MvccStore, META_CONSISTENT_INDEX};
use crate::storage::snapshot::{self, SnapshotError};

/// etcd's page alignment of a snapshot before its hash.
const ALIGN_BYTES: usize = 512;
const SHA256_BYTES: usize = 32;
const LENGTH_BYTES: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotFileError {
    /// Not a snapshot this build can read (too short, bad padding, bad dump).
    #[error("invalid database")]
    Invalid,
    #[error("expected sha256 {expected}, got {actual}")]
    HashMismatch { expected: String, actual: String },
    #[error("{0}")]
    Dump(#[from] SnapshotError),
    #[error("{0}")]
    Backend(#[from] BackendError),
    #[error("{0}")]
    Store(String),
}

/// The file form of a backend dump.
pub fn encode(dump: &[u8]) -> Vec<u8> {
    let unpadded = dump.len() + LENGTH_BYTES;
    let padded = unpadded.div_ceil(ALIGN_BYTES) * ALIGN_BYTES;
    let mut out = Vec::with_capacity(padded + SHA256_BYTES);
    out.extend_from_slice(dump);
    out.resize(padded - LENGTH_BYTES, 0);
    out.extend_from_slice(&(dump.len() as u64).to_le_bytes());
    let sha = Sha256::digest(&out);
    out.extend_from_slice(&sha);
    out
}

/// The dump inside a snapshot file, its SHA-256 checked unless `skip_hash_check`.
pub fn decode(file: &[u8], skip_hash_check: bool) -> Result<&[u8], SnapshotFileError> {
    if file.len() < ALIGN_BYTES + SHA256_BYTES || !(file.len() - SHA256_BYTES).is_multiple_of(ALIGN_BYTES) {
        return Err(SnapshotFileError::Invalid);
    }
    let (body, sha) = file.split_at(file.len() - SHA256_BYTES);
    if !skip_hash_check {
        let actual = Sha256::digest(body);
        if actual.as_slice() != sha {
            return Err(SnapshotFileError::HashMismatch { expected: hex(sha), actual: hex(&actual) });
        }
    }
    let (padded, length) = body.split_at(body.len() - LENGTH_BYTES);
    let mut len_bytes = [0u8; LENGTH_BYTES];
    len_bytes.copy_from_slice(length);
    let len = usize::try_from(u64::from_le_bytes(len_bytes)).map_err(|_| SnapshotFileError::Invalid)?;
    if len > padded.len() || padded[len..].iter().any(|&b| b != 0) || padded.len() - len >= ALIGN_BYTES {
        return Err(SnapshotFileError::Invalid);
    }
    Ok(&padded[..len])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What `snapshot status` reports, as etcd's: a hash of the contents, the
/// store's revision, how many records (all buckets), the file's size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub hash: u32,
    pub revision: i64,
    pub total_keys: u64,
    pub total_size: u64,
}

/// Reads a snapshot file's status (its hash is not checked, as etcd's status).
pub fn status(file: &[u8]) -> Result<Status, SnapshotFileError> {
    let dump = decode(file, true)?;
    let info = snapshot::inspect(dump)?;
    let backend = MemBackend::new();
    snapshot::load(&*backend, dump)?;
    // The hash covers every record (consistent index included): it names the
    // file's contents, like etcd's status hash of its whole database.
    let mut hash = 0u32;
    for bucket in Bucket::ALL {
        backend.scan(bucket, std::ops::Bound::Unbounded, std::ops::Bound::Unbounded, &mut |k, v| {
            hash = crc32c::crc32c_append(hash, k);
            hash = crc32c::crc32c_append(hash, v);
            Scan::Continue
        })?;
    }
    let store = MvccStore::open(backend).map_err(|e| SnapshotFileError::Store(e.to_string()))?;
    Ok(Status { hash, revision: store.current_revision(), total_keys: info.records, total_size: file.len() as u64 })
}

/// Writes a new member's backend at `db_dir` (which must not exist) from a
/// snapshot file: the dump loaded, the old membership dropped, the consistent
/// index reset (see the module docs). Flushed before it returns.
pub fn restore(file: &[u8], skip_hash_check: bool, db_dir: &Path) -> Result<(), SnapshotFileError> {
    let dump = decode(file, skip_hash_check)?;
    snapshot::inspect(dump)?;
    let backend = SledBackend::open(db_dir)?;
    snapshot::load(&backend, dump)?;
    let mut batch = WriteBatch::new();
    backend.scan(Bucket::Members, std::ops::Bound::Unbounded, std::ops::Bound::Unbounded, &mut |k, _| {
        batch.delete(Bucket::Members, k.to_vec());
        Scan::Continue
    })?;
    batch.delete(Bucket::Meta, META_CONSISTENT_INDEX.to_vec());
    backend.write(batch)?;
    backend.flush()?;
    // It must open as a store, as the member will open it.
    MvccStore::open(std::sync::Arc::new(backend)).map_err(|e| SnapshotFileError::Store(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dump_of(puts: &[(&[u8], &[u8])]) -> Vec<u8> {
        let backend = MemBackend::new();
        let mut store = MvccStore::open(backend.clone()).unwrap();
        let mut txn = store.write();
        for (k, v) in puts {
            txn.put(k, v, 0).unwrap();
        }
        txn.commit(7).unwrap();
        snapshot::dump(&*backend).unwrap()
    }

    #[test]
    fn file_round_trip_and_etcdctl_checksum_shape() {
        for dump in [Vec::new(), vec![1u8; 3], vec![2u8; 504], vec![3u8; 505], vec![4u8; 5000]] {
            let file = encode(&dump);
            assert_eq!(file.len() % 512, 32, "etcdctl's hasChecksum");
            assert_eq!(decode(&file, false).unwrap(), dump.as_slice());
        }
        let mut file = encode(&[9u8; 100]);
        file[3] ^= 1;
        assert!(matches!(decode(&file, false), Err(SnapshotFileError::HashMismatch { .. })));
        assert_eq!(decode(&file, true).unwrap()[3], 9 ^ 1);
        assert!(matches!(decode(b"hello\n", false), Err(SnapshotFileError::Invalid)));
    }

    #[test]
    fn status_and_restore() {
        let file = encode(&dump_of(&[(b"a", b"1"), (b"b", b"2")]));
        let st = status(&file).unwrap();
        assert_eq!(st.revision, 2);
        assert_eq!(st.total_size, file.len() as u64);
        assert!(st.total_keys >= 2);
        assert_eq!(status(&file).unwrap().hash, st.hash);

        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("member").join("db");
        restore(&file, false, &db).unwrap();
        let backend = SledBackend::open(&db).unwrap();
        let store = MvccStore::open(std::sync::Arc::new(backend)).unwrap();
        assert_eq!(store.consistent_index(), 0, "boots as a new member");
        assert_eq!(store.current_revision(), 2);
        assert_eq!(store.range(b"a", b"c", 0, 0).unwrap().kvs.len(), 2);
    }
}
