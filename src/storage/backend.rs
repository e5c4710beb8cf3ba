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
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

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

    /// Rewrites the database compactly (etcd's defragmentation): the same
    /// contents, the space freed by deletes given back. Slow and blocking: call
    /// it off the event loop, with no writes meanwhile (the caller owns writes).
    fn defragment(&self) -> Result<(), BackendError>;
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

/// The default page cache budget (`--backend-cache-bytes`). sled's own default
/// is 1 GiB; a member needs far less: the key index lives in memory, and the OS
/// page cache holds the file, so a miss costs decoding a page, not a disk read.
pub const DEFAULT_CACHE_BYTES: u64 = 16 * 1024 * 1024;

impl Default for SledOptions {
    fn default() -> Self {
        Self {
            cache_capacity_bytes: DEFAULT_CACHE_BYTES,
        }
    }
}

/// The sled engine: one tree, buckets by prefix byte.
///
/// sled cannot shrink its files, so [`Backend::defragment`] copies the tree into
/// a fresh database beside it (`<db>.defrag`), flushes it, and swaps the
/// directories: `<db>` → `<db>.old`, `<db>.defrag` → `<db>`, then reopens. The
/// engine sits behind a lock so the swap is atomic for every caller. A crash
/// anywhere in between is repaired on the next open (see [`SledBackend::open_with`]).
pub struct SledBackend {
    /// None only while a defragmentation swaps the directories (or after a swap
    /// that failed to reopen: every call then fails, and the store stops).
    db: RwLock<Option<sled::Db>>,
    path: PathBuf,
    opts: SledOptions,
}

/// `<db>` with a suffix, beside it.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(suffix);
    path.with_file_name(name)
}

/// How long an open waits for a just-dropped database's file lock.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// sled's "could not acquire lock" (another handle, maybe one being dropped).
fn is_lock_error(e: &std::io::Error) -> bool {
    e.to_string().contains("could not acquire lock")
}

/// Most key and value bytes copied per batch while defragmenting.
const DEFRAG_BATCH_BYTES: usize = 4 * 1024 * 1024;

impl SledBackend {
    pub fn open(path: impl AsRef<Path>) -> Result<Self, BackendError> {
        Self::open_with(path, SledOptions::default())
    }

    /// Opens the database, first finishing or undoing an interrupted
    /// defragmentation: a complete copy (`<db>.defrag`) with `<db>` already moved
    /// away becomes `<db>`; a copy beside an intact `<db>` was not finished and
    /// is dropped; `<db>.old` is what a finished swap left behind.
    pub fn open_with(path: impl AsRef<Path>, opts: SledOptions) -> Result<Self, BackendError> {
        let path = path.as_ref().to_path_buf();
        let (fresh, old) = (sibling(&path, ".defrag"), sibling(&path, ".old"));
        if fresh.exists() {
            if path.exists() {
                std::fs::remove_dir_all(&fresh)?;
            } else {
                std::fs::rename(&fresh, &path)?;
            }
        }
        if old.exists() && path.exists() {
            std::fs::remove_dir_all(&old)?;
        }
        let db = Self::open_db(&path, &opts)?;
        Ok(Self { db: RwLock::new(Some(db)), path, opts })
    }

    fn open_db(path: &Path, opts: &SledOptions) -> Result<sled::Db, BackendError> {
        let config = sled::Config::new()
            .path(path)
            .cache_capacity(opts.cache_capacity_bytes)
            // No background flusher: the caller decides when to pay for durability
            // (timer, before WAL release). Unflushed writes are recovered from the WAL.
            .flush_every_ms(None);
        // sled releases a dropped database's file lock only once its background
        // threads let go of it, a moment later: a reopen in the same process
        // (after a defragmentation's copy or swap) waits for that, briefly.
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        loop {
            match config.open() {
                Err(sled::Error::Io(e)) if is_lock_error(&e) && std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                other => return Ok(other?),
            }
        }
    }

    /// Runs `f` on the open database.
    fn with_db<R>(&self, f: impl FnOnce(&sled::Db) -> Result<R, BackendError>) -> Result<R, BackendError> {
        // A poisoned lock means a panic mid-call elsewhere; the handle is intact.
        let guard = self.db.read().unwrap_or_else(|e| e.into_inner());
        match guard.as_ref() {
            Some(db) => f(db),
            None => Err(BackendError::Engine("the backend is closed (a defragmentation failed to reopen it)".into())),
        }
    }

    /// Copies every entry into a fresh database at `to` and flushes it.
    fn copy_to(&self, to: &Path) -> Result<(), BackendError> {
        if to.exists() {
            std::fs::remove_dir_all(to)?;
        }
        let fresh = Self::open_db(to, &self.opts)?;
        self.with_db(|db| {
            let mut batch = sled::Batch::default();
            let mut bytes = 0;
            for item in db.iter() {
                let (k, v) = item?;
                bytes += k.len() + v.len();
                batch.insert(k, v);
                if bytes >= DEFRAG_BATCH_BYTES {
                    fresh.apply_batch(std::mem::take(&mut batch))?;
                    bytes = 0;
                }
            }
            fresh.apply_batch(batch)?;
            Ok(())
        })?;
        fresh.flush()?;
        Ok(())
    }
}

impl Backend for SledBackend {
    fn get(&self, bucket: Bucket, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        self.with_db(|db| Ok(db.get(engine_key(bucket, key))?.map(|v| v.to_vec())))
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
        self.with_db(|db| {
            for item in db.range::<Vec<u8>, _>((lo, hi)) {
                let (k, v) = item?;
                if visit(&k[1..], &v) == Scan::Stop {
                    break;
                }
            }
            Ok(())
        })
    }

    fn write(&self, batch: WriteBatch) -> Result<(), BackendError> {
        let mut b = sled::Batch::default();
        for op in batch.ops {
            match op {
                BatchOp::Put { bucket, key, value } => b.insert(engine_key(bucket, &key), value),
                BatchOp::Delete { bucket, key } => b.remove(engine_key(bucket, &key)),
            }
        }
        self.with_db(|db| Ok(db.apply_batch(b)?))
    }

    fn flush(&self) -> Result<(), BackendError> {
        self.with_db(|db| {
            db.flush()?;
            Ok(())
        })
    }

    fn size_on_disk(&self) -> Result<u64, BackendError> {
        self.with_db(|db| Ok(db.size_on_disk()?))
    }

    fn defragment(&self) -> Result<(), BackendError> {
        let (fresh, old) = (sibling(&self.path, ".defrag"), sibling(&self.path, ".old"));
        // Everything written so far must be in the copy and durable in the old
        // files (a crash before the swap keeps using them).
        self.flush()?;
        self.copy_to(&fresh)?;
        let mut guard = self.db.write().unwrap_or_else(|e| e.into_inner());
        // Writes are the caller's and it makes none meanwhile; flush what a
        // concurrent flush may not have, then close the old files.
        if let Some(db) = guard.take() {
            db.flush()?;
        }
        if old.exists() {
            std::fs::remove_dir_all(&old)?;
        }
        // From here a crash leaves `<db>.defrag` complete and `<db>` gone or
        // whole: open_with repairs both.
        let swapped = std::fs::rename(&self.path, &old).and_then(|()| std::fs::rename(&fresh, &self.path));
        if let Err(e) = swapped {
            // Put the old files back under their name if they moved.
            if !self.path.exists() && old.exists() {
                let _ = std::fs::rename(&old, &self.path);
            }
            *guard = Self::open_db(&self.path, &self.opts).ok();
            return Err(e.into());
        }
        *guard = Some(Self::open_db(&self.path, &self.opts)?);
        drop(guard);
        std::fs::remove_dir_all(&old)?;
        Ok(())
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

    fn defragment(&self) -> Result<(), BackendError> {
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
    fn sled_defragment_keeps_the_contents_and_shrinks_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let b = SledBackend::open(&path).unwrap();
        let value = vec![7u8; 4096];
        for round in 0..4u32 {
            let mut batch = WriteBatch::new();
            for i in 0..500u32 {
                batch.put(Bucket::Key, [round.to_be_bytes(), i.to_be_bytes()].concat(), value.clone());
            }
            b.write(batch).unwrap();
            b.flush().unwrap();
        }
        let mut batch = WriteBatch::new();
        for round in 0..4u32 {
            for i in 0..500u32 {
                if !(round == 0 && i < 10) {
                    batch.delete(Bucket::Key, [round.to_be_bytes(), i.to_be_bytes()].concat());
                }
            }
        }
        batch.put(Bucket::Meta, b"m".to_vec(), b"v".to_vec());
        b.write(batch).unwrap();
        b.flush().unwrap();
        let before = b.size_on_disk().unwrap();
        b.defragment().unwrap();
        let after = b.size_on_disk().unwrap();
        assert!(after < before, "defragmenting did not shrink the files: {before} -> {after}");
        assert_eq!(collect(&b, Bucket::Key, Bound::Unbounded, Bound::Unbounded).len(), 10);
        assert_eq!(b.get(Bucket::Meta, b"m").unwrap(), Some(b"v".to_vec()));
        // Still writable, and what it holds survives a reopen.
        let mut batch = WriteBatch::new();
        batch.put(Bucket::Key, b"after".to_vec(), b"1".to_vec());
        b.write(batch).unwrap();
        b.flush().unwrap();
        drop(b);
        assert!(!dir.path().join("db.old").exists() && !dir.path().join("db.defrag").exists());
        let b = SledBackend::open(&path).unwrap();
        assert_eq!(collect(&b, Bucket::Key, Bound::Unbounded, Bound::Unbounded).len(), 11);
    }

    #[test]
    fn sled_open_repairs_an_interrupted_defragmentation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let write_one = |p: &Path, key: &[u8]| {
            let b = SledBackend::open(p).unwrap();
            let mut batch = WriteBatch::new();
            batch.put(Bucket::Key, key.to_vec(), b"v".to_vec());
            b.write(batch).unwrap();
            b.flush().unwrap();
        };
        // A copy beside an intact db was not finished: dropped.
        write_one(&path, b"live");
        write_one(&dir.path().join("db.defrag"), b"partial");
        let b = SledBackend::open(&path).unwrap();
        assert_eq!(b.get(Bucket::Key, b"partial").unwrap(), None);
        assert!(!dir.path().join("db.defrag").exists());
        drop(b);
        // The db moved away, the copy complete: the copy becomes the db.
        std::fs::rename(&path, dir.path().join("db.old")).unwrap();
        write_one(&dir.path().join("db.defrag"), b"copied");
        let b = SledBackend::open(&path).unwrap();
        assert_eq!(b.get(Bucket::Key, b"copied").unwrap(), Some(b"v".to_vec()));
        assert!(!dir.path().join("db.old").exists());
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
