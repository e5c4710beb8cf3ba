//! The embedded key-value engine under the MVCC store, behind one small trait.
//!
//! Owns: the on-disk database (`<data-dir>/member/db/`), its logical buckets and the
//! mapping of a [`WriteBatch`] onto one atomic engine write. Only this module names
//! `sled`; replacing the engine is a change to this file alone.
//!
//! Must never:
//! - flush to disk on its own initiative. Durability comes from the WAL; the caller
//!   calls [`Backend::flush`] on a timer and before it releases WAL segments, on a
//!   thread that may block (never an actor's event loop).
//! - split a [`WriteBatch`]: an applied batch and the consistent index it advances
//!   land together or not at all (crash consistency; see STYLE.md practice 2).
//! - know what the bytes mean: encodings belong to the callers (`mvcc.rs` for keys
//!   and meta, later leases and auth).
//!
//! Layout: ONE sled tree; every engine key is `[bucket prefix byte] ++ key`. A single
//! tree makes `apply_batch` atomic across buckets without sled's multi-tree
//! transactions, and keeps each bucket's keys contiguous and ordered.

use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, Mutex};

use std::collections::BTreeMap;

/// A logical namespace inside the backend. Closed on purpose: a new bucket is a
/// deliberate change here, and its prefix byte must never be reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Bucket {
    /// MVCC revisions: revision bytes -> encoded record (owned by `mvcc.rs`).
    Key,
    /// Store metadata: consistent index, current and compacted revisions.
    Meta,
    /// Leases (owned by the lease actor's persistence).
    Lease,
    /// Auth state: enabled flag, auth revision.
    Auth,
    /// Auth users.
    AuthUsers,
    /// Auth roles.
    AuthRoles,
    /// Cluster members: id -> member record (names, URLs, learner flag).
    Members,
    /// Active alarms: member id ++ alarm type -> alarm record (`kv::alarms`).
    Alarm,
}

impl Bucket {
    /// Every bucket, for tools that walk the whole database.
    pub const ALL: [Bucket; 8] = [
        Bucket::Key,
        Bucket::Meta,
        Bucket::Lease,
        Bucket::Auth,
        Bucket::AuthUsers,
        Bucket::AuthRoles,
        Bucket::Members,
        Bucket::Alarm,
    ];

    /// The byte that prefixes every engine key of this bucket. Part of the on-disk
    /// format: never change or reuse one.
    pub const fn prefix(self) -> u8 {
        match self {
            Bucket::Key => b'k',
            Bucket::Meta => b'm',
            Bucket::Lease => b'l',
            Bucket::Auth => b'a',
            Bucket::AuthUsers => b'u',
            Bucket::AuthRoles => b'r',
            Bucket::Members => b'c',
            Bucket::Alarm => b'x',
        }
    }
}

/// Errors from the engine. The store treats any of them on a write as fatal
/// (fail-stop): its in-memory state may be ahead of the disk.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("backend engine error: {0}")]
    Engine(String),
    #[error("backend i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// A fault injected by a test backend.
    #[error("injected backend fault: {0}")]
    Injected(&'static str),
}

impl From<sled::Error> for BackendError {
    fn from(e: sled::Error) -> Self {
        match e {
            sled::Error::Io(io) => BackendError::Io(io),
            other => BackendError::Engine(other.to_string()),
        }
    }
}

/// One operation of a [`WriteBatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOp {
    Put {
        bucket: Bucket,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        bucket: Bucket,
        key: Vec<u8>,
    },
}

/// Puts and deletes, possibly across buckets, applied atomically and in order
/// (a later op on the same key wins).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteBatch {
    ops: Vec<BatchOp>,
    /// Sum of key and value lengths, so callers can bound a batch's memory.
    payload_bytes: usize,
}

impl WriteBatch {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn put(&mut self, bucket: Bucket, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        let (key, value) = (key.into(), value.into());
        self.payload_bytes += key.len() + value.len();
        self.ops.push(BatchOp::Put { bucket, key, value });
    }

    pub fn delete(&mut self, bucket: Bucket, key: impl Into<Vec<u8>>) {
        let key = key.into();
        self.payload_bytes += key.len();
        self.ops.push(BatchOp::Delete { bucket, key });
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn payload_bytes(&self) -> usize {
        self.payload_bytes
    }

    pub fn ops(&self) -> &[BatchOp] {
        &self.ops
    }
}

/// What a scan visitor tells the scan to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    Continue,
    Stop,
}

/// The engine under the MVCC store. Synchronous: `write` is cheap (no fsync);
/// `flush` blocks until everything written so far is durable.
pub trait Backend: Send + Sync + 'static {
    fn get(&self, bucket: Bucket, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError>;

    /// Visits `bucket`'s entries with `start <= key < end` (as bounds say) in
    /// ascending byte order, one at a time, until the visitor says `Stop`. Streams:
    /// nothing is collected, so memory stays bounded whatever the range.
    fn scan(
        &self,
        bucket: Bucket,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> Scan,
    ) -> Result<(), BackendError>;

    /// Applies every op of `batch` atomically: after a crash either all of it or
    /// none of it is there (and batches are recovered in write order).
    fn write(&self, batch: WriteBatch) -> Result<(), BackendError>;

    /// Blocks until every write so far is on disk. Slow: call it off the event loop.
    fn flush(&self) -> Result<(), BackendError>;

    /// Bytes the database occupies on disk (etcd's `dbSize`).
    fn size_on_disk(&self) -> Result<u64, BackendError>;
}

fn engine_key(bucket: Bucket, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + key.len());
    k.push(bucket.prefix());
    k.extend_from_slice(key);
    k
}

/// Maps bucket-relative bounds to engine-key bounds that never leave the bucket.
fn engine_bounds(
    bucket: Bucket,
    start: Bound<&[u8]>,
    end: Bound<&[u8]>,
) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let p = bucket.prefix();
    let lo = match start {
        Bound::Included(k) => Bound::Included(engine_key(bucket, k)),
        Bound::Excluded(k) => Bound::Excluded(engine_key(bucket, k)),
        Bound::Unbounded => Bound::Included(vec![p]),
    };
    let hi = match end {
        Bound::Included(k) => Bound::Included(engine_key(bucket, k)),
        Bound::Excluded(k) => Bound::Excluded(engine_key(bucket, k)),
        // Prefix bytes are ASCII letters, so `p + 1` never overflows.
        Bound::Unbounded => Bound::Excluded(vec![p + 1]),
    };
    (lo, hi)
}

/// Whether a range is empty (sled panics on an inverted range, BTreeMap too).
fn bounds_empty(lo: &Bound<Vec<u8>>, hi: &Bound<Vec<u8>>) -> bool {
    match (lo, hi) {
        (Bound::Included(a), Bound::Included(b)) => a > b,
        (Bound::Included(a), Bound::Excluded(b))
        | (Bound::Excluded(a), Bound::Included(b))
        | (Bound::Excluded(a), Bound::Excluded(b)) => a >= b,
        _ => false,
    }
}

/// Tuning for [`SledBackend`].
#[derive(Debug, Clone)]
pub struct SledOptions {
    /// sled's page cache budget. Bounds the backend's memory.
    pub cache_capacity_bytes: u64,
}

impl Default for SledOptions {
    fn default() -> Self {
        // sled's own default is 1 GiB; a member should not need that much to serve
        // its hot set, and the key index already lives in memory.
        Self {
            cache_capacity_bytes: 256 * 1024 * 1024,
        }
    }
}

/// The sled engine: one tree, buckets by prefix byte.
pub struct SledBackend {
    db: sled::Db,
}

impl SledBackend {
    pub fn open(path: impl AsRef<Path>) -> Result<Self, BackendError> {
        Self::open_with(path, SledOptions::default())
    }

    pub fn open_with(path: impl AsRef<Path>, opts: SledOptions) -> Result<Self, BackendError> {
        let db = sled::Config::new()
            .path(path.as_ref())
            .cache_capacity(opts.cache_capacity_bytes)
            // No background flusher: the caller decides when to pay for durability
            // (timer, before WAL release). Unflushed writes are recovered from the WAL.
            .flush_every_ms(None)
            .open()?;
        Ok(Self { db })
    }
}

impl Backend for SledBackend {
    fn get(&self, bucket: Bucket, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        Ok(self.db.get(engine_key(bucket, key))?.map(|v| v.to_vec()))
    }

    fn scan(
        &self,
        bucket: Bucket,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> Scan,
    ) -> Result<(), BackendError> {
        let (lo, hi) = engine_bounds(bucket, start, end);
        if bounds_empty(&lo, &hi) {
            return Ok(());
        }
        for item in self.db.range::<Vec<u8>, _>((lo, hi)) {
            let (k, v) = item?;
            if visit(&k[1..], &v) == Scan::Stop {
                break;
            }
        }
        Ok(())
    }

    fn write(&self, batch: WriteBatch) -> Result<(), BackendError> {
        let mut b = sled::Batch::default();
        for op in batch.ops {
            match op {
                BatchOp::Put { bucket, key, value } => b.insert(engine_key(bucket, &key), value),
                BatchOp::Delete { bucket, key } => b.remove(engine_key(bucket, &key)),
            }
        }
        self.db.apply_batch(b)?;
        Ok(())
    }

    fn flush(&self) -> Result<(), BackendError> {
        self.db.flush()?;
        Ok(())
    }

    fn size_on_disk(&self) -> Result<u64, BackendError> {
        Ok(self.db.size_on_disk()?)
    }
}

/// An in-memory backend for tests in any module: real ordering and atomicity, no
/// durability (`flush` has nothing to do). It can be told to fail the next writes
/// and it records every batch it applied, so tests can check what went in together.
#[derive(Default)]
pub struct MemBackend {
    inner: Mutex<MemInner>,
}

#[derive(Default)]
struct MemInner {
    map: BTreeMap<Vec<u8>, Vec<u8>>,
    batches: Vec<WriteBatch>,
    /// Writes to let through before failing `fail_writes` of them.
    succeed_first: usize,
    fail_writes: usize,
}

impl MemBackend {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Makes the next `n` calls to `write` fail without applying anything.
    pub fn fail_next_writes(&self, n: usize) {
        self.fail_next_writes_after(0, n);
    }

    /// Lets `ok` more writes through, then fails the `n` after them.
    pub fn fail_next_writes_after(&self, ok: usize, n: usize) {
        let mut inner = self.lock();
        inner.succeed_first = ok;
        inner.fail_writes = n;
    }

    /// Every batch applied so far, in order.
    pub fn batches(&self) -> Vec<WriteBatch> {
        self.lock().batches.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemInner> {
        // A poisoned lock only means a test panicked elsewhere; the map is intact.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Backend for MemBackend {
    fn get(&self, bucket: Bucket, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        Ok(self.lock().map.get(&engine_key(bucket, key)).cloned())
    }

    fn scan(
        &self,
        bucket: Bucket,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> Scan,
    ) -> Result<(), BackendError> {
        let (lo, hi) = engine_bounds(bucket, start, end);
        if bounds_empty(&lo, &hi) {
            return Ok(());
        }
        let inner = self.lock();
        for (k, v) in inner.map.range((lo, hi)) {
            if visit(&k[1..], v) == Scan::Stop {
                break;
            }
        }
        Ok(())
    }

    fn write(&self, batch: WriteBatch) -> Result<(), BackendError> {
        let mut inner = self.lock();
        if inner.succeed_first > 0 {
            inner.succeed_first -= 1;
        } else if inner.fail_writes > 0 {
            inner.fail_writes -= 1;
            return Err(BackendError::Injected("write"));
        }
        for op in batch.ops.iter() {
            match op {
                BatchOp::Put { bucket, key, value } => {
                    inner.map.insert(engine_key(*bucket, key), value.clone());
                }
                BatchOp::Delete { bucket, key } => {
                    inner.map.remove(&engine_key(*bucket, key));
                }
            }
        }
        inner.batches.push(batch);
        Ok(())
    }

    fn flush(&self) -> Result<(), BackendError> {
        Ok(())
    }

    fn size_on_disk(&self) -> Result<u64, BackendError> {
        Ok(self
            .lock()
            .map
            .iter()
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(
        b: &dyn Backend,
        bucket: Bucket,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
    ) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        b.scan(bucket, start, end, &mut |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            Scan::Continue
        })
        .unwrap();
        out
    }

    fn exercise(b: &dyn Backend) {
        let mut batch = WriteBatch::new();
        batch.put(Bucket::Key, b"b".to_vec(), b"2".to_vec());
        batch.put(Bucket::Key, b"a".to_vec(), b"1".to_vec());
        batch.put(Bucket::Key, b"c".to_vec(), b"3".to_vec());
        batch.put(Bucket::Meta, b"a".to_vec(), b"meta".to_vec());
        batch.put(Bucket::Lease, b"x".to_vec(), b"l".to_vec());
        b.write(batch).unwrap();

        assert_eq!(b.get(Bucket::Key, b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(b.get(Bucket::Meta, b"a").unwrap(), Some(b"meta".to_vec()));
        assert_eq!(b.get(Bucket::Auth, b"a").unwrap(), None);

        // Buckets do not bleed into each other, and scans are ordered.
        let all = collect(b, Bucket::Key, Bound::Unbounded, Bound::Unbounded);
        let keys: Vec<_> = all.iter().map(|(k, _)| k.as_slice()).collect();
        assert_eq!(keys, vec![&b"a"[..], b"b", b"c"]);
        let some = collect(b, Bucket::Key, Bound::Included(b"b"), Bound::Excluded(b"c"));
        assert_eq!(some, vec![(b"b".to_vec(), b"2".to_vec())]);
        let after = collect(b, Bucket::Key, Bound::Excluded(b"a"), Bound::Unbounded);
        assert_eq!(after.len(), 2);
        // Inverted bounds are empty, not a panic.
        assert!(collect(b, Bucket::Key, Bound::Included(b"c"), Bound::Excluded(b"a")).is_empty());

        // Stop ends the scan early.
        let mut seen = 0;
        b.scan(
            Bucket::Key,
            Bound::Unbounded,
            Bound::Unbounded,
            &mut |_, _| {
                seen += 1;
                Scan::Stop
            },
        )
        .unwrap();
        assert_eq!(seen, 1);

        // Ops apply in order: a delete after a put of the same key wins.
        let mut batch = WriteBatch::new();
        batch.put(Bucket::Key, b"d".to_vec(), b"4".to_vec());
        batch.delete(Bucket::Key, b"d".to_vec());
        batch.delete(Bucket::Key, b"a".to_vec());
        b.write(batch).unwrap();
        assert_eq!(b.get(Bucket::Key, b"d").unwrap(), None);
        assert_eq!(b.get(Bucket::Key, b"a").unwrap(), None);
        b.flush().unwrap();
        assert!(b.size_on_disk().unwrap() > 0);
    }

    #[test]
    fn mem_backend_contract() {
        exercise(&*MemBackend::new());
    }

    #[test]
    fn sled_backend_contract_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let b = SledBackend::open(dir.path()).unwrap();
            exercise(&b);
        }
        let b = SledBackend::open(dir.path()).unwrap();
        assert_eq!(b.get(Bucket::Key, b"b").unwrap(), Some(b"2".to_vec()));
        assert_eq!(b.get(Bucket::Meta, b"a").unwrap(), Some(b"meta".to_vec()));
    }

    #[test]
    fn mem_backend_injected_failure_applies_nothing() {
        let b = MemBackend::new();
        b.fail_next_writes(1);
        let mut batch = WriteBatch::new();
        batch.put(Bucket::Key, b"a".to_vec(), b"1".to_vec());
        assert!(b.write(batch.clone()).is_err());
        assert_eq!(b.get(Bucket::Key, b"a").unwrap(), None);
        b.write(batch).unwrap();
        assert_eq!(b.get(Bucket::Key, b"a").unwrap(), Some(b"1".to_vec()));
    }
}
