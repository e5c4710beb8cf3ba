//! etcd's multi-version key-value model over a [`Backend`].
//!
//! Owns: revisions, the per-key generations (the key index), the revision → record
//! store in [`Bucket::Key`], and the store metadata in [`Bucket::Meta`]: current
//! revision, compacted revision (scheduled and finished) and the **consistent index**
//! (the Raft index of the last applied entry).
//!
//! Must never:
//! - do I/O other than through its [`Backend`], block on a flush, read a clock or
//!   spawn a thread. Everything is synchronous and runs on the store actor's thread.
//! - write applied data without the consistent index it advances: a commit is ONE
//!   backend batch holding the new revisions, the current revision and the index.
//! - let revisions or the consistent index go backwards.
//! - know the wire: no protobuf, no etcd error text (the API layer maps
//!   [`MvccError`] to etcd's codes and texts).
//!
//! # The model (etcd `mvcc` package, 3.4)
//! Every change gets a [`Revision`] `(main, sub)`: all changes of one write txn share
//! `main` (the store revision after the txn) and get `sub` 0, 1, 2… in op order; a txn
//! that changes nothing leaves the revision alone. A fresh store is at revision 1, so
//! the first change gets main revision 2 (as etcd). A key lives in *generations*: a
//! put on a missing key starts one (version 1, `create_revision` = its main revision),
//! each put bumps the version, a delete writes a tombstone that ends the generation.
//!
//! # What is kept in memory
//! The key index (etcd's `treeIndex`): every key that has a revision in the backend,
//! with its generations of revisions (16 bytes each) — never values. It is rebuilt
//! from [`Bucket::Key`] on open. Compaction is what bounds it, as in etcd. Besides
//! that: the changes of the open write txn (values included), records staged by an
//! [`ApplyBatch`] (bounded by [`MvccOptions::staged_bytes_max`]), the list of
//! revisions one compaction removes (which the index held a moment earlier), and
//! whatever one `range` returns: `limit` bounds it, 0 means all (the API layer's
//! memory budget must cap unlimited ranges).
//!
//! # Durability
//! A commit hands one batch to the backend and never flushes; an [`ApplyBatch`]
//! may instead leave its changes staged ([`ApplyBatch::stage`]) for a later
//! write to carry, with the consistent index they advance. The store actor runs
//! `backend().flush()` on another thread; the WAL up to the
//! [`MvccStore::written_consistent_index`] read *before* that flush started may be
//! released once it returns. A failed backend write poisons the store (every call
//! then answers `Poisoned`): stop, reopen, replay the WAL after `consistent_index()`.
//!
//! # On-disk layout
//! - `Key` bucket: `main (i64 BE) ++ sub (i64 BE)` (16 bytes; revisions are never
//!   negative, so byte order is revision order) → record `[format=1][flags: bit 0 =
//!   tombstone][create_revision i64 BE][version i64 BE][lease i64 BE][key_len u32 BE]
//!   [key][value]`. The mod revision is the entry's own key; a tombstone stores the
//!   key only (zeros elsewhere), as etcd does.
//! - `Meta` bucket: `format` → `[1]`; `consistent_index` → u64 BE; `current_rev`,
//!   `scheduled_compact_rev`, `finished_compact_rev` → i64 BE.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use crate::storage::backend::{Backend, BackendError, BatchOp, Bucket, Scan, WriteBatch};

/// The revision of a fresh store: etcd starts at 1, so the first write is revision 2.
pub const INITIAL_REVISION: i64 = 1;
/// `compact_revision()` of a store that was never compacted (etcd's HashKV says -1).
pub const NEVER_COMPACTED: i64 = -1;

const FORMAT_VERSION: u8 = 1;
const META_FORMAT: &[u8] = b"format";
/// The consistent index key in `Bucket::Meta` (member-local: `storage::hash` skips it).
pub(crate) const META_CONSISTENT_INDEX: &[u8] = b"consistent_index";
const META_CURRENT_REV: &[u8] = b"current_rev";
const META_SCHEDULED_COMPACT: &[u8] = b"scheduled_compact_rev";
const META_FINISHED_COMPACT: &[u8] = b"finished_compact_rev";

/// Limits of one store. Defaults follow etcd where it has one.
#[derive(Debug, Clone)]
pub struct MvccOptions {
    /// Revisions deleted per backend batch during compaction (etcd's
    /// `--experimental-compaction-batch-limit`, default 1000).
    pub compact_batch_revs: usize,
    /// Encoded bytes an [`ApplyBatch`] may stage before it writes them out early.
    pub staged_bytes_max: usize,
}

impl Default for MvccOptions {
    fn default() -> Self {
        Self {
            compact_batch_revs: 1000,
            staged_bytes_max: 16 * 1024 * 1024,
        }
    }
}

// ---------------------------------------------------------------------------------
// Domain types

/// The position of one change in the store's history.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision {
    /// The store revision of the write txn that made the change.
    pub main: i64,
    /// The change's position inside that txn.
    pub sub: i64,
}

impl Revision {
    pub const ENCODED_LEN: usize = 16;

    pub const fn new(main: i64, sub: i64) -> Self {
        Self { main, sub }
    }

    /// Big-endian `main ++ sub`: byte order is revision order for non-negative values.
    pub fn to_bytes(self) -> [u8; Self::ENCODED_LEN] {
        assert!(
            self.main >= 0 && self.sub >= 0,
            "negative revision {self:?}"
        );
        let mut b = [0u8; Self::ENCODED_LEN];
        b[..8].copy_from_slice(&self.main.to_be_bytes());
        b[8..].copy_from_slice(&self.sub.to_be_bytes());
        b
    }

    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() != Self::ENCODED_LEN {
            return None;
        }
        let main = i64::from_be_bytes(b[..8].try_into().ok()?);
        let sub = i64::from_be_bytes(b[8..].try_into().ok()?);
        (main >= 0 && sub >= 0).then_some(Self { main, sub })
    }
}

/// A key's value at one revision (etcd's `mvccpb.KeyValue`, as a domain type).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Vec<u8>,
    /// Main revision of the put that started this generation.
    pub create_revision: i64,
    /// Main revision of this change.
    pub mod_revision: i64,
    /// Puts in this generation so far, this one included (1 for a new key).
    pub version: i64,
    pub value: Vec<u8>,
    /// Lease id, 0 for none.
    pub lease: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change of a committed write txn, for the watch hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// For a put, the new key-value. For a delete, as etcd: only `key` and
    /// `mod_revision` (the delete's revision) are set.
    pub kv: KeyValue,
    /// The live key-value this change replaced, if there was one and it was
    /// read: a put reads it only while [`MvccStore::set_read_prevs`] is on.
    pub prev_kv: Option<KeyValue>,
    /// The lease the key was attached to before this change (0: none); known
    /// whether or not `prev_kv` was read.
    pub prev_lease: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeResult {
    /// Matching key-values in key order, at most `limit` of them.
    pub kvs: Vec<KeyValue>,
    /// How many keys match in total, whatever the limit.
    pub count: usize,
    /// The store's current revision (not the revision read at), as etcd's header.
    pub rev: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitResult {
    /// The store revision after the commit (unchanged when nothing changed).
    pub revision: i64,
    /// The changes in `(main, sub)` order.
    pub changes: Vec<Event>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactResult {
    /// The store's current revision.
    pub revision: i64,
    /// Revisions removed from the index and the backend.
    pub removed_revisions: usize,
}

/// A slice of history for a watcher (see [`MvccStore::history`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    /// Whole revisions, in `(main, sub)` order.
    pub events: Vec<Event>,
    /// Where to continue: the first revision not returned.
    pub next_rev: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashKv {
    /// CRC-32C over the key bucket up to the requested revision.
    pub hash: u32,
    /// The revision hashed up to.
    pub hash_revision: i64,
    pub compact_revision: i64,
    pub current_revision: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum MvccError {
    #[error(
        "mvcc: required revision has been compacted (requested {requested}, compacted {compacted})"
    )]
    Compacted { requested: i64, compacted: i64 },
    #[error(
        "mvcc: required revision is a future revision (requested {requested}, current {current})"
    )]
    FutureRev { requested: i64, current: i64 },
    /// The caller tried to move the consistent index backwards: it is replaying an
    /// entry it already applied. Applying it again would corrupt the store.
    #[error("mvcc: consistent index {given} is below the applied index {applied}")]
    ConsistentIndexRegression { given: u64, applied: u64 },
    /// The bytes on disk do not mean what this code expects. Stop; do not repair.
    #[error("mvcc: corrupt store: {0}")]
    Corrupt(String),
    /// An earlier backend write failed, so memory is ahead of disk. The only way on
    /// is to stop and reopen (the WAL replays what was lost).
    #[error("mvcc: store unusable after a failed backend write; restart the member")]
    Poisoned,
    #[error(transparent)]
    Backend(#[from] BackendError),
}

// ---------------------------------------------------------------------------------
// Record encoding (the value of a `Key` bucket entry)

const FLAG_TOMBSTONE: u8 = 1;
const RECORD_HEADER_LEN: usize = 2 + 8 + 8 + 8 + 4;

/// `[format][flags][create_revision i64 BE][version i64 BE][lease i64 BE]
/// [key_len u32 BE][key][value...]`. The mod revision is the entry's own key. A
/// tombstone stores only the key (zeros elsewhere), as etcd does.
fn encode_record(kv: &KeyValue, tombstone: bool) -> Vec<u8> {
    let mut b = Vec::with_capacity(RECORD_HEADER_LEN + kv.key.len() + kv.value.len());
    b.push(FORMAT_VERSION);
    b.push(if tombstone { FLAG_TOMBSTONE } else { 0 });
    b.extend_from_slice(&kv.create_revision.to_be_bytes());
    b.extend_from_slice(&kv.version.to_be_bytes());
    b.extend_from_slice(&kv.lease.to_be_bytes());
    let key_len = u32::try_from(kv.key.len()).expect("key longer than 4 GiB");
    b.extend_from_slice(&key_len.to_be_bytes());
    b.extend_from_slice(&kv.key);
    b.extend_from_slice(&kv.value);
    b
}

/// A record decoded in place (no copies), for scans that need only part of it.
struct RecordRef<'a> {
    key: &'a [u8],
    value: &'a [u8],
    create_revision: i64,
    version: i64,
    lease: i64,
    tombstone: bool,
}

impl RecordRef<'_> {
    fn to_kv(&self, rev: Revision) -> KeyValue {
        KeyValue {
            key: self.key.to_vec(),
            create_revision: self.create_revision,
            mod_revision: rev.main,
            version: self.version,
            value: self.value.to_vec(),
            lease: self.lease,
        }
    }
}

fn decode_record_ref(rev: Revision, b: &[u8]) -> Result<RecordRef<'_>, MvccError> {
    let corrupt = |why: &str| MvccError::Corrupt(format!("record at {rev:?}: {why}"));
    if b.len() < RECORD_HEADER_LEN {
        return Err(corrupt("too short"));
    }
    if b[0] != FORMAT_VERSION {
        return Err(corrupt("unknown record format"));
    }
    let i64_at = |at: usize| i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"));
    let key_len = u32::from_be_bytes(b[26..30].try_into().expect("4 bytes")) as usize;
    let rest = &b[RECORD_HEADER_LEN..];
    if rest.len() < key_len {
        return Err(corrupt("key overruns record"));
    }
    Ok(RecordRef {
        key: &rest[..key_len],
        value: &rest[key_len..],
        create_revision: i64_at(2),
        version: i64_at(10),
        lease: i64_at(18),
        tombstone: b[1] & FLAG_TOMBSTONE != 0,
    })
}

/// Decodes a record stored at `rev`; returns the key-value and its tombstone flag.
fn decode_record(rev: Revision, b: &[u8]) -> Result<(KeyValue, bool), MvccError> {
    let r = decode_record_ref(rev, b)?;
    Ok((r.to_kv(rev), r.tombstone))
}

// ---------------------------------------------------------------------------------
// The key index (etcd's keyIndex / generation / treeIndex)

/// One life of a key: from the put that created it to the tombstone that ended it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Generation {
    /// Version of the newest revision in `revs` (etcd counts the tombstone too).
    ver: i64,
    /// Main revision of the put that created this generation.
    created: i64,
    /// Ascending. Compaction trims a prefix; a tombstone, if any, is last.
    revs: Vec<Revision>,
}

/// All generations of one key. Invariants: never empty; only the last generation
/// may have no revisions, and it never holds a tombstone; every other generation
/// ends with a tombstone. `[empty]` alone means the key is gone: it is removed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct KeyIndex {
    generations: Vec<Generation>,
    /// The lease of the live revision (0: none, or the key is deleted), so a put
    /// knows which lease it detaches the key from without reading the record.
    lease: i64,
}

impl KeyIndex {
    fn new() -> Self {
        Self {
            generations: vec![Generation::default()],
            lease: 0,
        }
    }

    fn last_mut(&mut self) -> &mut Generation {
        self.generations
            .last_mut()
            .expect("key index never has zero generations")
    }

    /// Records a put at `rev` whose key-value has `created`, `version` and `lease`.
    fn put(&mut self, rev: Revision, created: i64, version: i64, lease: i64) {
        self.lease = lease;
        let g = self.last_mut();
        debug_assert!(
            g.revs.last().is_none_or(|r| *r < rev),
            "revisions go forward"
        );
        if g.revs.is_empty() {
            g.created = created;
        }
        g.revs.push(rev);
        g.ver = version;
    }

    /// Records a tombstone at `rev`, ending the current generation. On rebuild a
    /// tombstone can arrive for a generation whose puts a crashed compaction already
    /// removed; it then forms a generation of its own, which no read ever returns.
    fn tombstone(&mut self, rev: Revision) {
        self.lease = 0;
        let g = self.last_mut();
        if g.revs.is_empty() {
            g.created = rev.main;
        }
        g.revs.push(rev);
        g.ver += 1;
        self.generations.push(Generation::default());
    }

    fn is_empty(&self) -> bool {
        self.generations.len() == 1 && self.generations[0].revs.is_empty()
    }

    /// The revision, create revision and version of the key as of main revision
    /// `at`, or None if it did not exist then (etcd `keyIndex.get` +
    /// `findGeneration`).
    fn get(&self, at: i64) -> Option<(Revision, i64, i64)> {
        let last = self.generations.len() - 1;
        for (i, g) in self.generations.iter().enumerate().rev() {
            let Some(newest) = g.revs.last() else {
                continue;
            };
            if i != last && newest.main <= at {
                // This generation's tombstone is at or before `at`, and every later
                // generation started after it: the key was deleted as of `at`.
                return None;
            }
            if g.revs[0].main <= at {
                let n = g
                    .revs
                    .iter()
                    .rposition(|r| r.main <= at)
                    .expect("revs[0] <= at");
                let ver = g.ver - (g.revs.len() - 1 - n) as i64;
                return Some((g.revs[n], g.created, ver));
            }
        }
        None
    }

    /// Drops every revision below `at` except the newest one at or before `at` if
    /// it is a put (so reads at `at` still work), appending the dropped ones to
    /// `removed` (etcd `keyIndex.compact`).
    fn compact(&mut self, at: i64, removed: &mut Vec<Revision>) {
        let last = self.generations.len() - 1;
        let mut gi = 0;
        // Whole generations whose tombstone is at or before `at` are history.
        while gi < last {
            let tomb = self.generations[gi]
                .revs
                .last()
                .expect("ended generation has a tombstone");
            if tomb.main > at {
                break;
            }
            removed.extend_from_slice(&self.generations[gi].revs);
            gi += 1;
        }
        let g = &mut self.generations[gi];
        if let Some(n) = g.revs.iter().rposition(|r| r.main <= at) {
            // A non-last generation here ends after `at`, so revs[n] is a put.
            removed.extend(g.revs.drain(..n));
        }
        self.generations.drain(..gi);
    }

    /// Undoes every change made at main revision `main` (all of them are at the end).
    fn rollback(&mut self, main: i64) {
        loop {
            let n = self.generations.len();
            let g = &mut self.generations[n - 1];
            if g.revs.last().is_some_and(|r| r.main == main) {
                g.revs.pop();
                g.ver -= 1;
            } else if g.revs.is_empty()
                && n >= 2
                && self.generations[n - 2]
                    .revs
                    .last()
                    .is_some_and(|r| r.main == main)
            {
                // The empty generation a tombstone at `main` opened.
                self.generations.pop();
            } else {
                break;
            }
        }
    }

    /// Whether `rev` is one of this key's revisions.
    #[cfg(test)]
    fn contains(&self, rev: Revision) -> bool {
        self.generations
            .iter()
            .any(|g| g.revs.binary_search(&rev).is_ok())
    }
}

/// Key bounds of etcd's `(key, range_end)`: empty end = just `key`; `"\0"` = every
/// key ≥ `key`; an end at or below `key` selects nothing.
type KeyBounds<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);

fn key_bounds<'a>(key: &'a [u8], end: &'a [u8]) -> Option<KeyBounds<'a>> {
    if end.is_empty() {
        Some((Bound::Included(key), Bound::Included(key)))
    } else if end == [0] {
        Some((Bound::Included(key), Bound::Unbounded))
    } else if end <= key {
        None
    } else {
        Some((Bound::Included(key), Bound::Excluded(end)))
    }
}

// ---------------------------------------------------------------------------------
// The store

/// A visitor of stored revisions that may fail (decoding) or stop early.
type RevisionVisitor<'a> = dyn FnMut(Revision, &[u8]) -> Result<Scan, MvccError> + 'a;

/// Changes of the write txn in progress: `(main, changes)`; change `i` has sub `i`.
type Pending<'a> = Option<(i64, &'a [Event])>;

/// The MVCC store. Not `Clone`, not shared: the store actor owns it.
pub struct MvccStore {
    backend: Arc<dyn Backend>,
    opts: MvccOptions,
    index: BTreeMap<Vec<u8>, KeyIndex>,
    current_rev: i64,
    compacted_rev: i64,
    consistent_index: u64,
    /// The consistent index of the last batch handed to the backend.
    written_consistent_index: u64,
    /// Committed but not yet written records (encoded), by revision.
    staged: BTreeMap<Revision, Vec<u8>>,
    staged_bytes: usize,
    /// Whether meta (current revision, consistent index) changed since the last write.
    staged_meta: bool,
    /// Writes to other buckets (members, leases, auth) applied with the staged
    /// revisions, in the same backend batch as the consistent index.
    staged_extra: WriteBatch,
    poisoned: bool,
    /// Whether a put reads the value it replaces (for its event's `prev_kv`).
    read_prevs: bool,
}

impl MvccStore {
    pub fn open(backend: Arc<dyn Backend>) -> Result<Self, MvccError> {
        Self::open_with(backend, MvccOptions::default())
    }

    /// Opens the store: reads meta, rebuilds the key index from the `Key` bucket, and
    /// finishes a compaction a crash interrupted.
    pub fn open_with(backend: Arc<dyn Backend>, opts: MvccOptions) -> Result<Self, MvccError> {
        assert!(
            opts.compact_batch_revs > 0,
            "compact_batch_revs must be positive"
        );
        match backend.get(Bucket::Meta, META_FORMAT)? {
            Some(v) if v == [FORMAT_VERSION] => {}
            Some(v) => return Err(MvccError::Corrupt(format!("unknown store format {v:?}"))),
            None => {
                let mut has_keys = false;
                backend.scan(
                    Bucket::Key,
                    Bound::Unbounded,
                    Bound::Unbounded,
                    &mut |_, _| {
                        has_keys = true;
                        Scan::Stop
                    },
                )?;
                if has_keys {
                    return Err(MvccError::Corrupt(
                        "revisions present but no format marker".into(),
                    ));
                }
                let mut b = WriteBatch::new();
                b.put(Bucket::Meta, META_FORMAT, vec![FORMAT_VERSION]);
                backend.write(b)?;
            }
        }
        let current_meta = read_i64(&*backend, META_CURRENT_REV)?;
        let consistent_index = read_u64(&*backend, META_CONSISTENT_INDEX)?.unwrap_or(0);
        let scheduled = read_i64(&*backend, META_SCHEDULED_COMPACT)?;
        let finished = read_i64(&*backend, META_FINISHED_COMPACT)?;

        let mut index: BTreeMap<Vec<u8>, KeyIndex> = BTreeMap::new();
        let mut max_main = INITIAL_REVISION;
        let mut revisions = 0usize;
        let mut failed = None;
        backend.scan(
            Bucket::Key,
            Bound::Unbounded,
            Bound::Unbounded,
            &mut |k, v| {
                let decoded = Revision::from_bytes(k)
                    .ok_or_else(|| MvccError::Corrupt(format!("bad revision key {k:?}")))
                    .and_then(|rev| decode_record_ref(rev, v).map(|r| (rev, r)));
                match decoded {
                    Ok((rev, r)) => {
                        max_main = max_main.max(rev.main);
                        revisions += 1;
                        // Values are not copied: the index holds revisions only.
                        if !index.contains_key(r.key) {
                            index.insert(r.key.to_vec(), KeyIndex::new());
                        }
                        let ki = index.get_mut(r.key).expect("just inserted");
                        if r.tombstone {
                            ki.tombstone(rev);
                        } else {
                            ki.put(rev, r.create_revision, r.version, r.lease);
                        }
                        Scan::Continue
                    }
                    Err(e) => {
                        failed = Some(e);
                        Scan::Stop
                    }
                }
            },
        )?;
        if let Some(e) = failed {
            return Err(e);
        }
        let current_rev = current_meta.unwrap_or(INITIAL_REVISION);
        if max_main > current_rev {
            return Err(MvccError::Corrupt(format!(
                "revision {max_main} stored but current revision is {current_rev}"
            )));
        }
        let compacted_rev = scheduled
            .into_iter()
            .chain(finished)
            .max()
            .unwrap_or(NEVER_COMPACTED);
        tracing::info!(
            keys = index.len(),
            revisions,
            current_rev,
            compacted_rev,
            consistent_index,
            "mvcc store opened"
        );
        let mut store = Self {
            backend,
            opts,
            index,
            current_rev,
            compacted_rev,
            consistent_index,
            written_consistent_index: consistent_index,
            staged: BTreeMap::new(),
            staged_bytes: 0,
            staged_meta: false,
            staged_extra: WriteBatch::new(),
            poisoned: false,
            read_prevs: true,
        };
        if let Some(s) = scheduled {
            if finished.is_none_or(|f| f < s) {
                // A crash interrupted this compaction. Reads below `s` already fail;
                // finishing it is idempotent.
                tracing::warn!(compact_rev = s, "resuming interrupted compaction");
                store.finish_compaction(s)?;
            }
        }
        Ok(store)
    }

    pub fn current_revision(&self) -> i64 {
        self.current_rev
    }

    pub fn compact_revision(&self) -> i64 {
        self.compacted_rev
    }

    /// The Raft index of the last entry applied (staged or written).
    pub fn consistent_index(&self) -> u64 {
        self.consistent_index
    }

    /// The consistent index of the last batch handed to the backend: once a
    /// `Backend::flush` that started after this call returns, the WAL up to here may
    /// be released.
    pub fn written_consistent_index(&self) -> u64 {
        self.written_consistent_index
    }

    /// How many revisions are staged, not yet written to the backend.
    pub fn staged_revisions(&self) -> usize {
        self.staged.len()
    }

    /// The backend, so the caller can flush it from another thread.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// Keys in the key index, deleted-but-not-yet-compacted ones included.
    pub fn index_key_count(&self) -> usize {
        self.index.len()
    }

    /// Reads `[key, range_end)` (etcd's forms) as of `rev` (0 or less: current), at
    /// most `limit` key-values (0: no limit).
    pub fn range(
        &self,
        key: &[u8],
        range_end: &[u8],
        rev: i64,
        limit: usize,
    ) -> Result<RangeResult, MvccError> {
        self.range_inner(None, self.current_rev, key, range_end, rev, limit, false)
    }

    /// Like [`range`](Self::range) with etcd's `count_only`: `kvs` stays empty.
    pub fn count(&self, key: &[u8], range_end: &[u8], rev: i64) -> Result<RangeResult, MvccError> {
        self.range_inner(None, self.current_rev, key, range_end, rev, 0, true)
    }

    /// Opens a write txn whose commit writes one backend batch.
    pub fn write(&mut self) -> WriteTxn<'_> {
        WriteTxn::new(self, true)
    }

    /// Opens an apply batch: several write txns (one per Raft entry) whose commits
    /// reach the backend as one batch when the apply batch finishes.
    pub fn apply_batch(&mut self) -> ApplyBatch<'_> {
        ApplyBatch { store: self }
    }

    /// Whether puts read the value they replace, for their events' `prev_kv`
    /// (on by default). Off, a put costs no backend read: a store whose events
    /// nobody needs previous values of (no watcher asked for them) turns it off.
    pub fn set_read_prevs(&mut self, on: bool) {
        self.read_prevs = on;
    }

    /// Whether puts read the value they replace (see [`MvccStore::set_read_prevs`]).
    pub fn reads_prevs(&self) -> bool {
        self.read_prevs
    }

    /// Writes everything apply batches left staged (see [`ApplyBatch::stage`])
    /// as one backend batch; returns the consistent index written.
    pub fn write_staged_now(&mut self) -> Result<u64, MvccError> {
        self.write_staged()
    }

    /// Records that entry `index` was applied without changing any key, in one
    /// backend batch (with anything staged before it).
    pub fn set_consistent_index(&mut self, index: u64) -> Result<(), MvccError> {
        self.stage_consistent_index(index)?;
        self.write_staged().map(|_| ())
    }

    /// `rev` must lie above the compacted revision and not past the current one
    /// (etcd's `ErrCompacted` / `ErrFutureRev` for compaction and HashKV).
    fn check_above_compaction(&self, rev: i64) -> Result<(), MvccError> {
        if rev <= self.compacted_rev {
            return Err(MvccError::Compacted { requested: rev, compacted: self.compacted_rev });
        }
        if rev > self.current_rev {
            return Err(MvccError::FutureRev { requested: rev, current: self.current_rev });
        }
        Ok(())
    }

    /// Compacts history below `rev` (etcd `Compact`): afterwards reads below `rev`
    /// fail with `Compacted`; reads at `rev` and above are unchanged.
    pub fn compact(&mut self, rev: i64) -> Result<CompactResult, MvccError> {
        self.check_usable()?;
        self.check_above_compaction(rev)?;
        // Schedule durably first, with everything staged, so a crash mid-way cannot
        // serve a half-compacted past: on reopen reads below `rev` fail and the
        // compaction resumes.
        self.compacted_rev = rev;
        let mut extra = WriteBatch::new();
        extra.put(
            Bucket::Meta,
            META_SCHEDULED_COMPACT,
            rev.to_be_bytes().to_vec(),
        );
        self.write_staged_with(extra)?;
        self.finish_compaction(rev)
    }

    /// etcd `HashKV`: CRC-32C over every stored revision up to `rev` (0: current).
    /// Members with the same history and compaction agree. Reads the whole key
    /// bucket: slow on a big store.
    pub fn hash_kv(&self, rev: i64) -> Result<HashKv, MvccError> {
        self.check_usable()?;
        if rev > 0 {
            self.check_above_compaction(rev)?;
        }
        let upto = if rev <= 0 { self.current_rev } else { rev };
        let mut crc = Crc32c::new();
        crc.update(b"key");
        self.scan_revisions(Revision::new(0, 0), upto + 1, &mut |r, v| {
            crc.update(&r.to_bytes());
            crc.update(v);
            Ok(Scan::Continue)
        })?;
        Ok(HashKv {
            hash: crc.finish(),
            hash_revision: upto,
            compact_revision: self.compacted_rev,
            current_revision: self.current_rev,
        })
    }

    /// The changes with main revision ≥ `from_rev`, in `(main, sub)` order: the
    /// replay a watcher starting in the past needs (etcd reads the key bucket by
    /// revision the same way). Stops once it has `max_events` events, but never
    /// inside a revision (a watch response carries whole revisions), so one big txn
    /// can exceed the limit. `prev_kv` is left empty: etcd's watch server reads it at
    /// `mod_revision - 1` when asked. Errors with `Compacted` below the compacted
    /// revision (etcd cancels such a watch); a future `from_rev` gives nothing.
    pub fn history(&self, from_rev: i64, max_events: usize) -> Result<History, MvccError> {
        self.check_usable()?;
        if from_rev < self.compacted_rev {
            return Err(MvccError::Compacted {
                requested: from_rev,
                compacted: self.compacted_rev,
            });
        }
        let from = from_rev.max(0);
        let mut events: Vec<Event> = Vec::new();
        let mut next_rev = from.max(self.current_rev + 1);
        self.scan_revisions(
            Revision::new(from, 0),
            self.current_rev + 1,
            &mut |rev, v| {
                if events.len() >= max_events
                    && events.last().is_some_and(|e| e.kv.mod_revision != rev.main)
                {
                    next_rev = rev.main;
                    return Ok(Scan::Stop);
                }
                let r = decode_record_ref(rev, v)?;
                let (kind, kv) = if r.tombstone {
                    let kv = KeyValue {
                        key: r.key.to_vec(),
                        mod_revision: rev.main,
                        ..KeyValue::default()
                    };
                    (EventKind::Delete, kv)
                } else {
                    (EventKind::Put, r.to_kv(rev))
                };
                events.push(Event {
                    kind,
                    kv,
                    prev_kv: None,
                    prev_lease: 0,
                });
                Ok(Scan::Continue)
            },
        )?;
        Ok(History { events, next_rev })
    }

    // -- internals ------------------------------------------------------------------

    fn check_usable(&self) -> Result<(), MvccError> {
        if self.poisoned {
            Err(MvccError::Poisoned)
        } else {
            Ok(())
        }
    }

    /// Visits stored revisions in `[from, Revision(end_main, 0))` in order, staged
    /// ones merged in (they are not in the backend yet, and never overlap it).
    fn scan_revisions(
        &self,
        from: Revision,
        end_main: i64,
        visit: &mut RevisionVisitor<'_>,
    ) -> Result<(), MvccError> {
        let end = Revision::new(end_main, 0);
        if from >= end {
            return Ok(());
        }
        let mut staged = self.staged.range(from..end).peekable();
        let mut outcome: Result<Scan, MvccError> = Ok(Scan::Continue);
        let (lo, hi) = (from.to_bytes(), end.to_bytes());
        self.backend.scan(
            Bucket::Key,
            Bound::Included(&lo),
            Bound::Excluded(&hi),
            &mut |k, v| {
                let Some(here) = Revision::from_bytes(k) else {
                    outcome = Err(MvccError::Corrupt(format!("bad revision key {k:?}")));
                    return Scan::Stop;
                };
                while let Some((r, sv)) = staged.next_if(|(r, _)| **r < here) {
                    outcome = visit(*r, sv);
                    if !matches!(outcome, Ok(Scan::Continue)) {
                        return Scan::Stop;
                    }
                }
                outcome = visit(here, v);
                if matches!(outcome, Ok(Scan::Continue)) {
                    Scan::Continue
                } else {
                    Scan::Stop
                }
            },
        )?;
        if !matches!(outcome?, Scan::Continue) {
            return Ok(());
        }
        for (r, sv) in staged {
            if visit(*r, sv)? == Scan::Stop {
                break;
            }
        }
        Ok(())
    }

    /// etcd `rangeKeys`: `cur_rev` is the revision the reader sees (inside a write
    /// txn with changes, the txn's own revision).
    #[allow(clippy::too_many_arguments)]
    fn range_inner(
        &self,
        pending: Pending<'_>,
        cur_rev: i64,
        key: &[u8],
        range_end: &[u8],
        rev: i64,
        limit: usize,
        count_only: bool,
    ) -> Result<RangeResult, MvccError> {
        self.check_usable()?;
        if rev > cur_rev {
            return Err(MvccError::FutureRev {
                requested: rev,
                current: cur_rev,
            });
        }
        let at = if rev <= 0 { cur_rev } else { rev };
        // Reading at exactly the compacted revision is fine: its values were kept.
        if at < self.compacted_rev {
            return Err(MvccError::Compacted {
                requested: at,
                compacted: self.compacted_rev,
            });
        }
        let Some(bounds) = key_bounds(key, range_end) else {
            return Ok(RangeResult {
                kvs: Vec::new(),
                count: 0,
                rev: cur_rev,
            });
        };
        let mut count = 0usize;
        let mut revs = Vec::new();
        for ki in self.index.range::<[u8], _>(bounds).map(|(_, ki)| ki) {
            if let Some((r, _, _)) = ki.get(at) {
                count += 1;
                if !count_only && (limit == 0 || revs.len() < limit) {
                    revs.push(r);
                }
            }
        }
        let kvs = revs
            .into_iter()
            .map(|r| self.read_kv(pending, r))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RangeResult {
            kvs,
            count,
            rev: cur_rev,
        })
    }

    /// The key-value stored at `rev`, which the index says exists.
    fn read_kv(&self, pending: Pending<'_>, rev: Revision) -> Result<KeyValue, MvccError> {
        if let Some((main, changes)) = pending {
            if rev.main == main {
                let change = usize::try_from(rev.sub).ok().and_then(|s| changes.get(s));
                return change
                    .map(|e| e.kv.clone())
                    .ok_or_else(|| MvccError::Corrupt(format!("no pending change at {rev:?}")));
            }
        }
        let bytes = match self.staged.get(&rev) {
            Some(b) => b.clone(),
            None => self
                .backend
                .get(Bucket::Key, &rev.to_bytes())?
                .ok_or_else(|| {
                    MvccError::Corrupt(format!("index points at missing revision {rev:?}"))
                })?,
        };
        let (kv, tombstone) = decode_record(rev, &bytes)?;
        if tombstone {
            return Err(MvccError::Corrupt(format!(
                "index returned tombstone {rev:?} as a value"
            )));
        }
        Ok(kv)
    }

    fn stage_consistent_index(&mut self, index: u64) -> Result<(), MvccError> {
        self.check_usable()?;
        if index < self.consistent_index {
            return Err(MvccError::ConsistentIndexRegression {
                given: index,
                applied: self.consistent_index,
            });
        }
        self.consistent_index = index;
        self.staged_meta = true;
        Ok(())
    }

    /// Writes everything staged plus meta as one batch; returns the consistent index
    /// it carried.
    fn write_staged(&mut self) -> Result<u64, MvccError> {
        self.write_staged_with(WriteBatch::new())
    }

    /// Like `write_staged`, with `extra` ops in the same batch (after the staged ones).
    fn write_staged_with(&mut self, extra: WriteBatch) -> Result<u64, MvccError> {
        self.check_usable()?;
        if self.staged.is_empty() && !self.staged_meta && extra.is_empty() && self.staged_extra.is_empty() {
            return Ok(self.written_consistent_index);
        }
        let mut batch = WriteBatch::new();
        for op in std::mem::take(&mut self.staged_extra).ops() {
            match op {
                BatchOp::Put { bucket, key, value } => batch.put(*bucket, key.clone(), value.clone()),
                BatchOp::Delete { bucket, key } => batch.delete(*bucket, key.clone()),
            }
        }
        for (rev, bytes) in std::mem::take(&mut self.staged) {
            batch.put(Bucket::Key, rev.to_bytes().to_vec(), bytes);
        }
        // Data and the meta that describes it always travel together.
        batch.put(
            Bucket::Meta,
            META_CURRENT_REV,
            self.current_rev.to_be_bytes().to_vec(),
        );
        batch.put(
            Bucket::Meta,
            META_CONSISTENT_INDEX,
            self.consistent_index.to_be_bytes().to_vec(),
        );
        for op in extra.ops() {
            match op {
                BatchOp::Put { bucket, key, value } => {
                    batch.put(*bucket, key.clone(), value.clone())
                }
                BatchOp::Delete { bucket, key } => batch.delete(*bucket, key.clone()),
            }
        }
        self.staged_bytes = 0;
        self.staged_meta = false;
        self.write_or_poison(batch)?;
        self.written_consistent_index = self.consistent_index;
        Ok(self.written_consistent_index)
    }

    fn write_or_poison(&mut self, batch: WriteBatch) -> Result<(), MvccError> {
        if let Err(e) = self.backend.write(batch) {
            // Memory is now ahead of the backend; continuing would serve (and later
            // persist) a state the disk never had.
            tracing::error!(error = %e, "mvcc backend write failed; store poisoned");
            self.poisoned = true;
            return Err(e.into());
        }
        Ok(())
    }

    /// Compacts the index at `rev`, deletes what it dropped from the backend in
    /// bounded batches (in revision order), then records the compaction finished.
    fn finish_compaction(&mut self, rev: i64) -> Result<CompactResult, MvccError> {
        let mut removed = Vec::new();
        self.index.retain(|_, ki| {
            ki.compact(rev, &mut removed);
            !ki.is_empty()
        });
        removed.sort_unstable();
        let total = removed.len();
        let mut chunks = removed.chunks(self.opts.compact_batch_revs).peekable();
        loop {
            let mut batch = WriteBatch::new();
            let chunk = chunks.next();
            for r in chunk.into_iter().flatten() {
                batch.delete(Bucket::Key, r.to_bytes().to_vec());
            }
            let last = chunks.peek().is_none();
            if last {
                batch.put(
                    Bucket::Meta,
                    META_FINISHED_COMPACT,
                    rev.to_be_bytes().to_vec(),
                );
            }
            self.write_or_poison(batch)?;
            if last {
                break;
            }
        }
        tracing::info!(
            compact_rev = rev,
            removed_revisions = total,
            "mvcc compaction finished"
        );
        Ok(CompactResult {
            revision: self.current_rev,
            removed_revisions: total,
        })
    }

    #[cfg(test)]
    fn index_contains(&self, key: &[u8], rev: Revision) -> bool {
        self.index.get(key).is_some_and(|ki| ki.contains(rev))
    }
}

fn read_i64(b: &dyn Backend, key: &[u8]) -> Result<Option<i64>, MvccError> {
    match b.get(Bucket::Meta, key)? {
        None => Ok(None),
        Some(v) => v
            .as_slice()
            .try_into()
            .map(|a| Some(i64::from_be_bytes(a)))
            .map_err(|_| {
                MvccError::Corrupt(format!(
                    "meta {:?} is not 8 bytes",
                    String::from_utf8_lossy(key)
                ))
            }),
    }
}

fn read_u64(b: &dyn Backend, key: &[u8]) -> Result<Option<u64>, MvccError> {
    Ok(read_i64(b, key)?.map(|v| v as u64))
}

// ---------------------------------------------------------------------------------
// Write txn and apply batch

/// A write txn: its changes share one main revision. Reads through it see its own
/// earlier writes (etcd's txn ops). Dropping it without `commit` undoes everything.
pub struct WriteTxn<'a> {
    store: &'a mut MvccStore,
    /// The main revision this txn's changes get.
    main: i64,
    changes: Vec<Event>,
    /// Keys whose index entry this txn changed, to undo them if it never commits.
    touched: Vec<Vec<u8>>,
    write_on_commit: bool,
    committed: bool,
}

impl<'a> WriteTxn<'a> {
    fn new(store: &'a mut MvccStore, write_on_commit: bool) -> Self {
        let main = store.current_rev + 1;
        Self {
            store,
            main,
            changes: Vec::new(),
            touched: Vec::new(),
            write_on_commit,
            committed: false,
        }
    }

    fn next_rev(&self) -> Revision {
        Revision::new(self.main, self.changes.len() as i64)
    }

    fn pending(&self) -> Pending<'_> {
        Some((self.main, &self.changes))
    }

    /// The revision readers of this txn see: its own once it changed something.
    fn read_rev(&self) -> i64 {
        if self.changes.is_empty() {
            self.store.current_rev
        } else {
            self.main
        }
    }

    /// The revision this txn's readers see: the store's current one until the txn
    /// changes something, then the txn's own (etcd's `txn.Rev()`).
    pub fn rev(&self) -> i64 {
        self.read_rev()
    }

    /// The store's compacted revision (-1: never compacted).
    pub fn compact_revision(&self) -> i64 {
        self.store.compacted_rev
    }

    /// Puts `value` at `key`; returns the live key-value it replaced, when puts
    /// read it (see [`MvccStore::set_read_prevs`]).
    pub fn put(
        &mut self,
        key: &[u8],
        value: &[u8],
        lease: i64,
    ) -> Result<Option<KeyValue>, MvccError> {
        self.store.check_usable()?;
        // Read before touching the index, so an error leaves the txn as it was.
        // Only when asked (a watcher wants `prev_kv`); otherwise the index is
        // searched once, below.
        let prev = if self.store.read_prevs {
            match self.store.index.get(key).and_then(|ki| ki.get(i64::MAX)) {
                Some((r, _, _)) => Some(self.store.read_kv(self.pending(), r)?),
                None => None,
            }
        } else {
            None
        };
        let (rev, main) = (self.next_rev(), self.main);
        // One search of the index for a key it holds (the usual put), one
        // more to insert a new key.
        let (create_revision, version, prev_lease) = match self.store.index.get_mut(key) {
            Some(ki) => {
                let (create_revision, version) = match ki.get(i64::MAX) {
                    Some((_, created, ver)) => (created, ver + 1),
                    None => (main, 1),
                };
                let prev_lease = ki.lease;
                ki.put(rev, create_revision, version, lease);
                (create_revision, version, prev_lease)
            }
            None => {
                let mut ki = KeyIndex::new();
                ki.put(rev, main, 1, lease);
                self.store.index.insert(key.to_vec(), ki);
                (main, 1, 0)
            }
        };
        self.touched.push(key.to_vec());
        let kv = KeyValue {
            key: key.to_vec(),
            create_revision,
            mod_revision: self.main,
            version,
            value: value.to_vec(),
            lease,
        };
        self.changes.push(Event {
            kind: EventKind::Put,
            kv,
            prev_kv: prev.clone(),
            prev_lease,
        });
        Ok(prev)
    }

    /// Deletes the live keys in `[key, range_end)` (etcd's forms); returns what they
    /// held, in key order.
    pub fn delete_range(
        &mut self,
        key: &[u8],
        range_end: &[u8],
    ) -> Result<Vec<KeyValue>, MvccError> {
        self.store.check_usable()?;
        let at = self.read_rev();
        let found = self
            .store
            .range_inner(self.pending(), at, key, range_end, 0, 0, false)?;
        for prev in found.kvs.iter() {
            let rev = self.next_rev();
            let ki = self
                .store
                .index
                .get_mut(&prev.key)
                .expect("a key just read is indexed");
            ki.tombstone(rev);
            self.touched.push(prev.key.clone());
            let kv = KeyValue {
                key: prev.key.clone(),
                mod_revision: self.main,
                ..KeyValue::default()
            };
            self.changes.push(Event {
                kind: EventKind::Delete,
                kv,
                prev_kv: Some(prev.clone()),
                prev_lease: prev.lease,
            });
        }
        Ok(found.kvs)
    }

    /// Reads as [`MvccStore::range`] does, seeing this txn's own writes.
    pub fn range(
        &self,
        key: &[u8],
        range_end: &[u8],
        rev: i64,
        limit: usize,
    ) -> Result<RangeResult, MvccError> {
        self.store.range_inner(
            self.pending(),
            self.read_rev(),
            key,
            range_end,
            rev,
            limit,
            false,
        )
    }

    pub fn count(&self, key: &[u8], range_end: &[u8], rev: i64) -> Result<RangeResult, MvccError> {
        self.store.range_inner(
            self.pending(),
            self.read_rev(),
            key,
            range_end,
            rev,
            0,
            true,
        )
    }

    /// Whether the txn changed anything yet.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Commits the changes at main revision `current + 1` (or none, if there are
    /// none) and records `consistent_index` with them. Through [`MvccStore::write`]
    /// this writes one backend batch; through an [`ApplyBatch`] it stages.
    pub fn commit(mut self, consistent_index: u64) -> Result<CommitResult, MvccError> {
        self.store.stage_consistent_index(consistent_index)?;
        let changes = std::mem::take(&mut self.changes);
        for (sub, ev) in changes.iter().enumerate() {
            let rev = Revision::new(self.main, sub as i64);
            let bytes = encode_record(&ev.kv, ev.kind == EventKind::Delete);
            self.store.staged_bytes += bytes.len() + Revision::ENCODED_LEN;
            self.store.staged.insert(rev, bytes);
        }
        if !changes.is_empty() {
            assert_eq!(
                self.main,
                self.store.current_rev + 1,
                "revisions never skip or go back"
            );
            self.store.current_rev = self.main;
        }
        self.committed = true;
        if self.write_on_commit || self.store.staged_bytes > self.store.opts.staged_bytes_max {
            self.store.write_staged()?;
        }
        Ok(CommitResult {
            revision: self.store.current_rev,
            changes,
        })
    }
}

impl Drop for WriteTxn<'_> {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        for key in &self.touched {
            if let Some(ki) = self.store.index.get_mut(key) {
                ki.rollback(self.main);
                if ki.is_empty() {
                    self.store.index.remove(key);
                }
            }
        }
    }
}

/// Applies several Raft entries as one unit for the backend. Each entry gets its
/// own write txn and revision. `finish` writes the batch as ONE backend batch;
/// `stage` (or dropping it) leaves its changes staged, to go out with the store's
/// next write, still in order: the store actor lets several apply batches share
/// one backend batch (ARCHITECTURE.md, the write path).
pub struct ApplyBatch<'a> {
    store: &'a mut MvccStore,
}

impl ApplyBatch<'_> {
    /// A write txn whose commit stages instead of writing.
    pub fn write(&mut self) -> WriteTxn<'_> {
        WriteTxn::new(self.store, false)
    }

    /// Records entry `index` applied without changes.
    pub fn set_consistent_index(&mut self, index: u64) -> Result<(), MvccError> {
        self.store.stage_consistent_index(index)
    }

    pub fn range(
        &self,
        key: &[u8],
        range_end: &[u8],
        rev: i64,
        limit: usize,
    ) -> Result<RangeResult, MvccError> {
        self.store.range(key, range_end, rev, limit)
    }

    pub fn store(&self) -> &MvccStore {
        self.store
    }

    /// Stages a write to a non-MVCC bucket (members, leases, auth): it reaches the
    /// backend in the same batch as this apply batch's revisions and consistent
    /// index. The MVCC buckets (`Key`, `Meta`) are the store's own.
    pub fn stage_put(&mut self, bucket: Bucket, key: Vec<u8>, value: Vec<u8>) {
        assert!(!matches!(bucket, Bucket::Key | Bucket::Meta), "the MVCC buckets are written by the store only");
        self.store.staged_extra.put(bucket, key, value);
    }

    /// Stages a delete in a non-MVCC bucket (see [`ApplyBatch::stage_put`]).
    pub fn stage_delete(&mut self, bucket: Bucket, key: Vec<u8>) {
        assert!(!matches!(bucket, Bucket::Key | Bucket::Meta), "the MVCC buckets are written by the store only");
        self.store.staged_extra.delete(bucket, key);
    }

    /// Compacts (see [`MvccStore::compact`]); what this batch staged is written
    /// first, in the same backend batch as the compaction schedule.
    pub fn compact(&mut self, rev: i64) -> Result<CompactResult, MvccError> {
        self.store.compact(rev)
    }

    /// Writes everything staged as one batch; returns the consistent index written.
    pub fn finish(self) -> Result<u64, MvccError> {
        self.store.write_staged()
    }

    /// Ends the batch without writing: its changes stay staged (reads see them)
    /// and reach the backend, in order and with their consistent index, in the
    /// store's next write (for example [`MvccStore::write_staged_now`]), so
    /// several apply batches can share one backend batch.
    pub fn stage(self) {}
}

// ---------------------------------------------------------------------------------
// CRC-32C (Castagnoli), as etcd's HashKV uses, fed in pieces.

struct Crc32c {
    crc: u32,
}

impl Crc32c {
    fn new() -> Self {
        Self { crc: 0 }
    }

    fn update(&mut self, data: &[u8]) {
        self.crc = crc32c::crc32c_append(self.crc, data);
    }

    fn finish(&self) -> u32 {
        self.crc
    }
}

// ---------------------------------------------------------------------------------
// Tests. Each cites the etcd behaviour it checks (etcd 3.4 `mvcc` package and the
// v3 API reference); several were confirmed against etcd 3.4.23 with etcdctl.

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::backend::{MemBackend, SledBackend};

    fn mem_store() -> (Arc<MemBackend>, MvccStore) {
        let b = MemBackend::new();
        let s = MvccStore::open(b.clone()).unwrap();
        (b, s)
    }

    /// One Raft entry = one write txn; the consistent index counts entries.
    fn put(s: &mut MvccStore, k: &str, v: &str) -> i64 {
        let ci = s.consistent_index() + 1;
        let mut t = s.write();
        t.put(k.as_bytes(), v.as_bytes(), 0).unwrap();
        t.commit(ci).unwrap().revision
    }

    fn del(s: &mut MvccStore, k: &str, end: &str) -> (i64, usize) {
        let ci = s.consistent_index() + 1;
        let mut t = s.write();
        let n = t.delete_range(k.as_bytes(), end.as_bytes()).unwrap().len();
        (t.commit(ci).unwrap().revision, n)
    }

    fn get(s: &MvccStore, k: &str, rev: i64) -> Option<KeyValue> {
        let r = s.range(k.as_bytes(), b"", rev, 0).unwrap();
        assert!(r.kvs.len() <= 1);
        r.kvs.into_iter().next()
    }

    fn kv(k: &str, v: &str, create: i64, modr: i64, version: i64) -> KeyValue {
        KeyValue {
            key: k.as_bytes().to_vec(),
            create_revision: create,
            mod_revision: modr,
            version,
            value: v.as_bytes().to_vec(),
            lease: 0,
        }
    }

    fn keys(r: &RangeResult) -> Vec<String> {
        r.kvs
            .iter()
            .map(|kv| String::from_utf8(kv.key.clone()).unwrap())
            .collect()
    }

    fn key_bucket(b: &dyn Backend) -> Vec<Revision> {
        let mut out = Vec::new();
        b.scan(
            Bucket::Key,
            Bound::Unbounded,
            Bound::Unbounded,
            &mut |k, _| {
                out.push(Revision::from_bytes(k).unwrap());
                Scan::Continue
            },
        )
        .unwrap();
        out
    }

    #[test]
    fn revision_bytes_sort_like_revisions() {
        let revs = [
            Revision::new(0, 0),
            Revision::new(1, 0),
            Revision::new(1, 1),
            Revision::new(1, 255),
            Revision::new(1, 256),
            Revision::new(2, 0),
            Revision::new(255, 7),
            Revision::new(256, 0),
            Revision::new(i64::MAX, i64::MAX),
        ];
        for w in revs.windows(2) {
            assert!(w[0] < w[1]);
            assert!(
                w[0].to_bytes() < w[1].to_bytes(),
                "{:?} vs {:?}",
                w[0],
                w[1]
            );
        }
        for r in revs {
            assert_eq!(Revision::from_bytes(&r.to_bytes()), Some(r));
        }
        assert_eq!(
            Revision::from_bytes(&[0xff; 16]),
            None,
            "negative main is corrupt"
        );
        assert_eq!(Revision::from_bytes(&[0; 15]), None);
    }

    #[test]
    fn record_roundtrip() {
        let k = KeyValue {
            lease: 7,
            ..kv("key", "value\0with nul", 3, 9, 4)
        };
        let (back, tomb) = decode_record(Revision::new(9, 2), &encode_record(&k, false)).unwrap();
        assert_eq!((back, tomb), (k.clone(), false));
        let (_, tomb) = decode_record(Revision::new(9, 2), &encode_record(&k, true)).unwrap();
        assert!(tomb);
        assert!(decode_record(Revision::new(1, 0), b"short").is_err());
    }

    /// etcd: a fresh store is at revision 1; each put bumps the revision; version
    /// counts puts in a generation; create_revision stays; delete ends the generation
    /// and a re-put starts a new one at version 1 (`mvccpb.KeyValue` field docs).
    #[test]
    fn put_update_delete_recreate() {
        let (_, mut s) = mem_store();
        assert_eq!(s.current_revision(), 1);
        assert_eq!(get(&s, "a", 0), None);

        assert_eq!(put(&mut s, "a", "1"), 2);
        assert_eq!(get(&s, "a", 0), Some(kv("a", "1", 2, 2, 1)));
        assert_eq!(put(&mut s, "a", "2"), 3);
        assert_eq!(get(&s, "a", 0), Some(kv("a", "2", 2, 3, 2)));

        assert_eq!(del(&mut s, "a", ""), (4, 1));
        assert_eq!(get(&s, "a", 0), None);

        assert_eq!(put(&mut s, "a", "3"), 5);
        assert_eq!(get(&s, "a", 0), Some(kv("a", "3", 5, 5, 1)));
        assert_eq!(s.current_revision(), 5);
        assert_eq!(s.consistent_index(), 4);
    }

    /// etcd: a write txn that changes nothing does not bump the revision (deleting a
    /// missing key answers with the current revision), but the entry is applied.
    #[test]
    fn empty_txn_keeps_revision_and_records_index() {
        let (b, mut s) = mem_store();
        put(&mut s, "a", "1");
        assert_eq!(del(&mut s, "zzz", ""), (2, 0));
        assert_eq!(s.consistent_index(), 2);
        let t = s.write();
        let r = t.commit(3).unwrap();
        assert_eq!((r.revision, r.changes.len()), (2, 0));
        s.set_consistent_index(4).unwrap();
        let reopened = MvccStore::open(b).unwrap();
        assert_eq!(
            (reopened.current_revision(), reopened.consistent_index()),
            (2, 4)
        );
    }

    /// With prev reads off, a put reads nothing from the backend: its event has
    /// no `prev_kv`, but still the lease it detaches the key from, from the key
    /// index (rebuilt with leases on open).
    #[test]
    fn puts_without_prev_reads_still_know_the_previous_lease() {
        let (b, mut s) = mem_store();
        let mut t = s.write();
        t.put(b"k", b"v1", 7).unwrap();
        t.commit(1).unwrap();
        let mut s = MvccStore::open(b).unwrap();
        s.set_read_prevs(false);
        let mut t = s.write();
        assert_eq!(t.put(b"k", b"v2", 0).unwrap(), None, "nothing read");
        t.put(b"new", b"v", 0).unwrap();
        let r = t.commit(2).unwrap();
        assert_eq!((r.changes[0].prev_kv.as_ref(), r.changes[0].prev_lease), (None, 7));
        assert_eq!(r.changes[1].prev_lease, 0);
        s.set_read_prevs(true);
        let mut t = s.write();
        let prev = t.put(b"k", b"v3", 0).unwrap().expect("read again");
        assert_eq!((prev.value.as_slice(), prev.lease), (&b"v2"[..], 0));
        let r = t.commit(3).unwrap();
        assert_eq!(r.changes[0].prev_lease, 0);
    }

    /// etcd: all ops of one txn share the main revision, sub grows in op order, and
    /// events come out in (main, sub) order with prev_kv; a delete event carries only
    /// key and mod_revision.
    #[test]
    fn txn_ops_share_main_revision() {
        let (b, mut s) = mem_store();
        put(&mut s, "a", "0");
        let mut t = s.write();
        assert_eq!(t.put(b"b", b"1", 0).unwrap(), None);
        assert_eq!(t.put(b"c", b"1", 9).unwrap(), None);
        let deleted = t.delete_range(b"a", b"").unwrap();
        assert_eq!(deleted, vec![kv("a", "0", 2, 2, 1)]);
        let r = t.commit(2).unwrap();
        assert_eq!(r.revision, 3);
        let kinds: Vec<_> = r.changes.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            vec![EventKind::Put, EventKind::Put, EventKind::Delete]
        );
        assert_eq!(
            r.changes[1].kv,
            KeyValue {
                lease: 9,
                ..kv("c", "1", 3, 3, 1)
            }
        );
        assert_eq!(
            r.changes[2].kv,
            KeyValue {
                key: b"a".to_vec(),
                mod_revision: 3,
                ..KeyValue::default()
            }
        );
        assert_eq!(r.changes[2].prev_kv, Some(kv("a", "0", 2, 2, 1)));
        // The backend holds (3,0), (3,1), (3,2).
        let revs = key_bucket(&*b);
        assert_eq!(
            revs,
            vec![
                Revision::new(2, 0),
                Revision::new(3, 0),
                Revision::new(3, 1),
                Revision::new(3, 2)
            ]
        );
    }

    /// etcd `storeTxnWrite.Range`: ops in a txn see the txn's earlier writes, at the
    /// txn's revision once it changed something; the same key can change twice.
    #[test]
    fn txn_reads_its_own_writes() {
        let (_, mut s) = mem_store();
        put(&mut s, "a", "0"); // rev 2
        let mut t = s.write();
        let r = t.range(b"a", b"", 0, 0).unwrap();
        assert_eq!((r.rev, r.kvs[0].value.as_slice()), (2, &b"0"[..]));
        assert!(matches!(
            t.range(b"a", b"", 3, 0),
            Err(MvccError::FutureRev { .. })
        ));

        let prev = t.put(b"a", b"1", 0).unwrap();
        assert_eq!(prev, Some(kv("a", "0", 2, 2, 1)));
        let r = t.range(b"a", b"", 0, 0).unwrap();
        assert_eq!((r.rev, r.kvs.clone()), (3, vec![kv("a", "1", 2, 3, 2)]));
        // The past is still readable inside the txn.
        assert_eq!(
            t.range(b"a", b"", 2, 0).unwrap().kvs,
            vec![kv("a", "0", 2, 2, 1)]
        );

        let prev = t.put(b"a", b"2", 0).unwrap();
        assert_eq!(prev, Some(kv("a", "1", 2, 3, 2)));
        assert_eq!(
            t.delete_range(b"a", b"").unwrap(),
            vec![kv("a", "2", 2, 3, 3)]
        );
        assert_eq!(t.count(b"a", b"", 0).unwrap().count, 0);
        assert_eq!(t.put(b"a", b"3", 0).unwrap(), None);
        let r = t.commit(2).unwrap();
        assert_eq!(r.changes.len(), 4);
        assert_eq!(get(&s, "a", 0), Some(kv("a", "3", 3, 3, 1)));
        assert_eq!(get(&s, "a", 2), Some(kv("a", "0", 2, 2, 1)));
    }

    /// A txn dropped without commit leaves no trace (index, revision, backend).
    #[test]
    fn dropped_txn_rolls_back() {
        let (b, mut s) = mem_store();
        put(&mut s, "a", "0");
        del(&mut s, "a", ""); // rev 3: a deleted
        put(&mut s, "b", "0"); // rev 4
        let before_batches = b.batches().len();
        {
            let mut t = s.write();
            t.put(b"a", b"1", 0).unwrap();
            t.delete_range(b"a", b"").unwrap();
            t.put(b"a", b"2", 0).unwrap();
            t.put(b"b", b"1", 0).unwrap();
            t.delete_range(b"b", b"").unwrap();
            t.put(b"new", b"1", 0).unwrap();
        }
        assert_eq!(b.batches().len(), before_batches);
        assert_eq!(s.current_revision(), 4);
        assert_eq!(get(&s, "a", 0), None);
        assert_eq!(get(&s, "a", 2), Some(kv("a", "0", 2, 2, 1)));
        assert_eq!(get(&s, "b", 0), Some(kv("b", "0", 4, 4, 1)));
        assert_eq!(get(&s, "new", 0), None);
        assert_eq!(s.index_key_count(), 2);
        // And the next txn gets the revision the dropped one would have.
        assert_eq!(put(&mut s, "a", "x"), 5);
        assert_eq!(get(&s, "a", 0), Some(kv("a", "x", 5, 5, 1)));
        // The index after rollback equals one rebuilt from the backend.
        let rebuilt = MvccStore::open(b).unwrap();
        assert_eq!(rebuilt.index, s.index);
    }

    /// etcd: reading at a past revision sees the key as it was; a key deleted at R is
    /// absent at R and later, present before.
    #[test]
    fn range_at_past_revisions() {
        let (_, mut s) = mem_store();
        put(&mut s, "a", "1"); // 2
        put(&mut s, "b", "1"); // 3
        put(&mut s, "a", "2"); // 4
        del(&mut s, "a", ""); // 5
        put(&mut s, "a", "3"); // 6
        assert_eq!(get(&s, "a", 1), None);
        assert_eq!(get(&s, "a", 2), Some(kv("a", "1", 2, 2, 1)));
        assert_eq!(get(&s, "a", 3), Some(kv("a", "1", 2, 2, 1)));
        assert_eq!(get(&s, "a", 4), Some(kv("a", "2", 2, 4, 2)));
        assert_eq!(get(&s, "a", 5), None);
        assert_eq!(get(&s, "a", 6), Some(kv("a", "3", 6, 6, 1)));
        assert_eq!(get(&s, "b", 2), None);
        // The header revision is the store's current one, whatever the read revision.
        assert_eq!(s.range(b"a", b"", 3, 0).unwrap().rev, 6);
        let all_at_3 = s.range(b"\0", b"\0", 3, 0).unwrap();
        assert_eq!(keys(&all_at_3), vec!["a", "b"]);
        let all_at_5 = s.range(b"\0", b"\0", 5, 0).unwrap();
        assert_eq!(keys(&all_at_5), vec!["b"]);
        assert!(matches!(
            s.range(b"a", b"", 7, 0),
            Err(MvccError::FutureRev {
                requested: 7,
                current: 6
            })
        ));
    }

    /// etcd RangeRequest.range_end: empty = the key alone; "\0" = every key ≥ key;
    /// key+1 = prefix; range_end ≤ key = nothing.
    #[test]
    fn range_end_forms() {
        let (_, mut s) = mem_store();
        for k in ["a", "ab", "abc", "b", "c"] {
            put(&mut s, k, "v");
        }
        let r = |k: &[u8], e: &[u8]| keys(&s.range(k, e, 0, 0).unwrap());
        assert_eq!(r(b"ab", b""), vec!["ab"]);
        assert_eq!(r(b"zz", b""), Vec::<String>::new());
        assert_eq!(r(b"ab", b"ac"), vec!["ab", "abc"]); // prefix "ab"
        assert_eq!(r(b"a", b"c"), vec!["a", "ab", "abc", "b"]);
        assert_eq!(r(b"b", b"\0"), vec!["b", "c"]); // from-key
        assert_eq!(r(b"\0", b"\0"), vec!["a", "ab", "abc", "b", "c"]); // all keys
        assert_eq!(r(b"c", b"a"), Vec::<String>::new()); // end < key
        assert_eq!(r(b"b", b"b"), Vec::<String>::new()); // end == key
                                                         // delete_range uses the same forms.
        assert_eq!(del(&mut s, "ab", "ac").1, 2);
        assert_eq!(
            keys(&s.range(b"\0", b"\0", 0, 0).unwrap()),
            vec!["a", "b", "c"]
        );
        assert_eq!(del(&mut s, "c", "a").1, 0);
    }

    /// etcd: `count` is the number of matching keys whatever the limit; the limit
    /// cuts `kvs` (the API layer sets `more` from count > kvs.len()).
    #[test]
    fn limit_and_count() {
        let (_, mut s) = mem_store();
        for k in ["k1", "k2", "k3", "k4", "k5"] {
            put(&mut s, k, "v");
        }
        del(&mut s, "k3", "");
        let r = s.range(b"k", b"l", 0, 2).unwrap();
        assert_eq!(
            (keys(&r), r.count),
            (vec!["k1".to_string(), "k2".to_string()], 4)
        );
        let r = s.range(b"k", b"l", 0, 0).unwrap();
        assert_eq!((r.kvs.len(), r.count), (4, 4));
        let r = s.range(b"k", b"l", 0, 10).unwrap();
        assert_eq!((r.kvs.len(), r.count), (4, 4));
        let r = s.count(b"k", b"l", 0).unwrap();
        assert_eq!((r.kvs.len(), r.count, r.rev), (0, 4, 7));
        // Counting at a past revision (before the delete).
        assert_eq!(s.count(b"k", b"l", 6).unwrap().count, 5);
    }

    /// etcd `Compact` + `rangeKeys`: rev ≤ compacted → ErrCompacted; rev > current →
    /// ErrFutureRev; reads at the compact revision work, below it fail. A key
    /// deleted at or before the compact revision is gone from index and backend; a
    /// live key keeps its latest value; a key deleted after it stays readable at it.
    #[test]
    fn compaction_boundaries() {
        let (b, mut s) = mem_store();
        put(&mut s, "gone", "1"); // 2
        put(&mut s, "live", "1"); // 3
        put(&mut s, "live", "2"); // 4
        del(&mut s, "gone", ""); // 5
        put(&mut s, "later", "1"); // 6
        put(&mut s, "live", "3"); // 7
        del(&mut s, "later", ""); // 8
        assert_eq!(s.compact_revision(), NEVER_COMPACTED);

        assert!(matches!(
            s.compact(9),
            Err(MvccError::FutureRev {
                requested: 9,
                current: 8
            })
        ));
        let r = s.compact(6).unwrap();
        assert_eq!(r.revision, 8);
        // Removed: gone@2, gone@5 (tombstone), live@3; kept live@4 (latest ≤ 6).
        assert_eq!(r.removed_revisions, 3);
        assert_eq!(s.compact_revision(), 6);

        assert!(matches!(
            s.compact(6),
            Err(MvccError::Compacted {
                requested: 6,
                compacted: 6
            })
        ));
        assert!(matches!(s.compact(5), Err(MvccError::Compacted { .. })));
        assert!(matches!(
            s.range(b"live", b"", 5, 0),
            Err(MvccError::Compacted {
                requested: 5,
                compacted: 6
            })
        ));
        assert!(matches!(
            s.range(b"live", b"", 9, 0),
            Err(MvccError::FutureRev { .. })
        ));

        assert_eq!(get(&s, "live", 6), Some(kv("live", "2", 3, 4, 2)));
        assert_eq!(get(&s, "live", 0), Some(kv("live", "3", 3, 7, 3)));
        assert_eq!(get(&s, "gone", 6), None);
        assert_eq!(get(&s, "later", 6), Some(kv("later", "1", 6, 6, 1)));
        assert_eq!(get(&s, "later", 0), None);
        assert!(!s.index.contains_key(b"gone".as_slice()));
        assert!(s.index_contains(b"live", Revision::new(4, 0)));
        assert!(!s.index_contains(b"live", Revision::new(3, 0)));

        let revs: Vec<i64> = key_bucket(&*b).iter().map(|r| r.main).collect();
        assert_eq!(revs, vec![4, 6, 7, 8]);
        // Compaction is durable and the index rebuilt from what is left agrees.
        let reopened = MvccStore::open(b.clone()).unwrap();
        assert_eq!(reopened.compact_revision(), 6);
        assert_eq!(reopened.index, s.index);

        // Compacting at the current revision removes the tombstone of "later" and the
        // older "live" value.
        s.compact(8).unwrap();
        let revs: Vec<i64> = key_bucket(&*b).iter().map(|r| r.main).collect();
        assert_eq!(revs, vec![7]);
        assert_eq!(get(&s, "live", 8), Some(kv("live", "3", 3, 7, 3)));
        // Writing after compaction continues the revision sequence.
        assert_eq!(put(&mut s, "live", "4"), 9);
        assert_eq!(get(&s, "live", 0), Some(kv("live", "4", 3, 9, 4)));
    }

    /// A compaction at a revision where a key was re-created keeps only the new
    /// generation; the old one's tombstone and values go.
    #[test]
    fn compaction_drops_ended_generations() {
        let (b, mut s) = mem_store();
        put(&mut s, "a", "1"); // 2
        del(&mut s, "a", ""); // 3
        put(&mut s, "a", "2"); // 4
        put(&mut s, "a", "3"); // 5
        s.compact(4).unwrap();
        assert_eq!(
            key_bucket(&*b).iter().map(|r| r.main).collect::<Vec<_>>(),
            vec![4, 5]
        );
        assert_eq!(get(&s, "a", 4), Some(kv("a", "2", 4, 4, 1)));
        assert_eq!(s.index["a".as_bytes()].generations.len(), 1);
    }

    /// etcd: compaction may be interrupted; it records the scheduled revision first,
    /// so after a crash reads below it fail, and reopening finishes the job.
    #[test]
    fn interrupted_compaction_resumes_on_open() {
        let b = MemBackend::new();
        let opts = MvccOptions {
            compact_batch_revs: 2,
            ..MvccOptions::default()
        };
        let mut s = MvccStore::open_with(b.clone(), opts.clone()).unwrap();
        for i in 0..6 {
            put(&mut s, "k", &i.to_string()); // 2..=7
        }
        put(&mut s, "x", "1"); // 8
        del(&mut s, "x", ""); // 9
                              // Batches of compact(9): scheduled meta, [2,3], [4,5], [6,8], [9] + finished.
                              // Let the schedule and the first delete batch land, then "crash".
        b.fail_next_writes_after(2, 1);
        assert!(matches!(s.compact(9), Err(MvccError::Backend(_))));
        assert!(matches!(s.range(b"k", b"", 0, 0), Err(MvccError::Poisoned)));
        assert!(matches!(
            s.write().put(b"k", b"v", 0),
            Err(MvccError::Poisoned)
        ));
        drop(s);
        assert_eq!(
            key_bucket(&*b).iter().map(|r| r.main).collect::<Vec<_>>(),
            vec![4, 5, 6, 7, 8, 9]
        );

        let s = MvccStore::open_with(b.clone(), opts).unwrap();
        assert_eq!(s.compact_revision(), 9);
        assert_eq!(
            key_bucket(&*b).iter().map(|r| r.main).collect::<Vec<_>>(),
            vec![7]
        );
        assert!(matches!(
            s.range(b"k", b"", 8, 0),
            Err(MvccError::Compacted { .. })
        ));
        assert_eq!(get(&s, "k", 9), Some(kv("k", "5", 2, 7, 6)));
        assert_eq!(get(&s, "x", 9), None);
        assert_eq!(read_i64(&*b, META_FINISHED_COMPACT).unwrap(), Some(9));
    }

    /// Reopening rebuilds the key index from the backend and keeps the current
    /// revision, consistent index and compacted revision (etcd `restore`), on sled.
    #[test]
    fn reopen_from_sled_rebuilds_everything() {
        let dir = tempfile::tempdir().unwrap();
        let (index, hash) = {
            let backend = Arc::new(SledBackend::open(dir.path()).unwrap());
            let mut s = MvccStore::open(backend).unwrap();
            put(&mut s, "a", "1"); // 2
            put(&mut s, "b", "1"); // 3
            del(&mut s, "a", ""); // 4
            put(&mut s, "a", "2"); // 5
            put(&mut s, "c", "1"); // 6
            s.compact(3).unwrap();
            del(&mut s, "zz", ""); // no change, ci 6
            s.set_consistent_index(42).unwrap();
            (s.index.clone(), s.hash_kv(0).unwrap())
        };
        let backend = Arc::new(SledBackend::open(dir.path()).unwrap());
        let mut s = MvccStore::open(backend).unwrap();
        assert_eq!(s.current_revision(), 6);
        assert_eq!(s.consistent_index(), 42);
        assert_eq!(s.compact_revision(), 3);
        assert_eq!(s.index, index);
        assert_eq!(s.hash_kv(0).unwrap(), hash);
        assert_eq!(get(&s, "a", 3), Some(kv("a", "1", 2, 2, 1)));
        assert_eq!(get(&s, "a", 4), None);
        assert_eq!(get(&s, "a", 0), Some(kv("a", "2", 5, 5, 1)));
        assert!(matches!(
            s.range(b"a", b"", 2, 0),
            Err(MvccError::Compacted { .. })
        ));
        assert_eq!(put(&mut s, "a", "3"), 7);
        assert_eq!(get(&s, "a", 0), Some(kv("a", "3", 5, 7, 2)));
    }

    /// STYLE.md practice 2: applied data and the consistent index it advances are ONE
    /// backend batch; a failed write leaves neither behind.
    #[test]
    fn commit_is_one_batch_with_the_consistent_index() {
        let (b, mut s) = mem_store();
        let n0 = b.batches().len();
        let mut t = s.write();
        t.put(b"a", b"1", 0).unwrap();
        t.put(b"b", b"1", 0).unwrap();
        t.commit(17).unwrap();
        let batches = b.batches();
        assert_eq!(batches.len(), n0 + 1);
        let ops = batches.last().unwrap().ops();
        let has = |bucket: Bucket, key: &[u8]| {
            ops.iter().any(|op| matches!(op, BatchOp::Put { bucket: bb, key: k, .. } if *bb == bucket && k == key))
        };
        assert!(has(Bucket::Key, &Revision::new(2, 0).to_bytes()));
        assert!(has(Bucket::Key, &Revision::new(2, 1).to_bytes()));
        assert!(has(Bucket::Meta, META_CURRENT_REV));
        assert!(ops.contains(&BatchOp::Put {
            bucket: Bucket::Meta,
            key: META_CONSISTENT_INDEX.to_vec(),
            value: 17u64.to_be_bytes().to_vec(),
        }));

        b.fail_next_writes(1);
        let mut t = s.write();
        t.put(b"c", b"1", 0).unwrap();
        assert!(matches!(t.commit(18), Err(MvccError::Backend(_))));
        assert!(matches!(
            s.set_consistent_index(19),
            Err(MvccError::Poisoned)
        ));
        let reopened = MvccStore::open(b.clone()).unwrap();
        assert_eq!(
            (reopened.current_revision(), reopened.consistent_index()),
            (2, 17)
        );
        assert_eq!(get(&reopened, "c", 0), None);
    }

    /// The consistent index never goes backwards (a replayed entry would apply twice).
    #[test]
    fn consistent_index_never_regresses() {
        let (_, mut s) = mem_store();
        s.set_consistent_index(10).unwrap();
        let mut t = s.write();
        t.put(b"a", b"1", 0).unwrap();
        assert!(matches!(
            t.commit(9),
            Err(MvccError::ConsistentIndexRegression {
                given: 9,
                applied: 10
            })
        ));
        // The refused txn was rolled back.
        assert_eq!(get(&s, "a", 0), None);
        assert_eq!(s.current_revision(), 1);
        assert!(matches!(
            s.set_consistent_index(3),
            Err(MvccError::ConsistentIndexRegression { .. })
        ));
        s.set_consistent_index(10).unwrap();
    }

    /// DESIGN.md write path: many entries, one backend batch; each entry keeps its
    /// own revision, and later entries read earlier ones before the batch is written.
    #[test]
    fn apply_batch_writes_once() {
        let (b, mut s) = mem_store();
        let n0 = b.batches().len();
        let mut ab = s.apply_batch();
        for (i, v) in ["1", "2", "3"].iter().enumerate() {
            let mut t = ab.write();
            let prev = t.put(b"a", v.as_bytes(), 0).unwrap();
            assert_eq!(prev.is_some(), i > 0);
            let r = t.commit(10 + i as u64).unwrap();
            assert_eq!(r.revision, 2 + i as i64);
        }
        ab.set_consistent_index(13).unwrap();
        assert_eq!(
            ab.range(b"a", b"", 2, 0).unwrap().kvs,
            vec![kv("a", "1", 2, 2, 1)]
        );
        assert_eq!(ab.store().written_consistent_index(), 0);
        assert_eq!(b.batches().len(), n0, "nothing written before finish");
        assert_eq!(ab.finish().unwrap(), 13);
        assert_eq!(b.batches().len(), n0 + 1);
        assert_eq!(s.written_consistent_index(), 13);
        let reopened = MvccStore::open(b.clone()).unwrap();
        assert_eq!(get(&reopened, "a", 0), Some(kv("a", "3", 2, 4, 3)));
        assert_eq!(reopened.consistent_index(), 13);
    }

    /// An apply batch dropped without finish still reaches the backend, in order,
    /// with the next write; an oversized one writes early (bounded staging).
    #[test]
    fn staged_data_is_never_lost_or_reordered() {
        let b = MemBackend::new();
        let opts = MvccOptions {
            staged_bytes_max: 100,
            ..MvccOptions::default()
        };
        let mut s = MvccStore::open_with(b.clone(), opts).unwrap();
        {
            let mut ab = s.apply_batch();
            let mut t = ab.write();
            t.put(b"a", b"small", 0).unwrap();
            t.commit(1).unwrap();
        }
        let n = b.batches().len();
        assert_eq!(get(&s, "a", 0).unwrap().value, b"small");
        put(&mut s, "b", "1");
        assert_eq!(b.batches().len(), n + 1);
        let reopened = MvccStore::open(b.clone()).unwrap();
        assert_eq!(get(&reopened, "a", 0).unwrap().value, b"small");

        let mut ab = s.apply_batch();
        let mut t = ab.write();
        t.put(b"big", &[7u8; 200], 0).unwrap();
        t.commit(3).unwrap();
        assert_eq!(
            b.batches().len(),
            n + 2,
            "over staged_bytes_max: written at once"
        );
        ab.finish().unwrap();
    }

    /// etcd HashKV: equal histories hash equal; a different value changes the hash;
    /// hashing a past revision ignores later writes; compact and future checks apply.
    #[test]
    fn hash_kv_tracks_history() {
        let (_, mut s1) = mem_store();
        let (_, mut s2) = mem_store();
        for s in [&mut s1, &mut s2] {
            put(s, "a", "1");
            put(s, "b", "1");
        }
        let h1 = s1.hash_kv(0).unwrap();
        assert_eq!(h1, s2.hash_kv(0).unwrap());
        assert_eq!(
            (h1.hash_revision, h1.compact_revision, h1.current_revision),
            (3, -1, 3)
        );
        put(&mut s2, "a", "2");
        assert_eq!(s2.hash_kv(3).unwrap().hash, h1.hash);
        assert_ne!(s2.hash_kv(0).unwrap().hash, h1.hash);
        put(&mut s1, "a", "other");
        assert_ne!(s1.hash_kv(0).unwrap().hash, s2.hash_kv(0).unwrap().hash);
        assert!(matches!(s1.hash_kv(5), Err(MvccError::FutureRev { .. })));
        s1.compact(3).unwrap();
        assert!(matches!(s1.hash_kv(3), Err(MvccError::Compacted { .. })));
        assert!(s1.hash_kv(4).is_ok());
        // Staged (not yet written) records hash as if written.
        let mut ab = s2.apply_batch();
        let mut t = ab.write();
        t.put(b"c", b"1", 0).unwrap();
        t.commit(9).unwrap();
        let staged = ab.store().hash_kv(0).unwrap();
        ab.finish().unwrap();
        assert_eq!(s2.hash_kv(0).unwrap(), staged);
    }

    /// etcd watch from a past revision: the replay is every change from the start
    /// revision in (main, sub) order, delete events carry key + mod_revision, a batch
    /// never splits a revision, and a start below the compacted revision fails.
    #[test]
    fn history_replays_whole_revisions() {
        let (_, mut s) = mem_store();
        put(&mut s, "a", "1"); // 2
        let mut t = s.write();
        t.put(b"b", b"1", 0).unwrap();
        t.put(b"c", b"1", 0).unwrap();
        t.delete_range(b"a", b"").unwrap();
        t.commit(2).unwrap(); // 3: (3,0) (3,1) (3,2)
        put(&mut s, "d", "1"); // 4

        let h = s.history(2, 100).unwrap();
        let revs: Vec<(i64, EventKind)> = h
            .events
            .iter()
            .map(|e| (e.kv.mod_revision, e.kind))
            .collect();
        use EventKind::*;
        assert_eq!(
            revs,
            vec![(2, Put), (3, Put), (3, Put), (3, Delete), (4, Put)]
        );
        assert_eq!(h.next_rev, 5);
        assert_eq!(
            h.events[3].kv,
            KeyValue {
                key: b"a".to_vec(),
                mod_revision: 3,
                ..KeyValue::default()
            }
        );
        assert_eq!(h.events[4].kv, kv("d", "1", 4, 4, 1));

        // A limit of 2 would cut revision 3: it comes whole, then stops.
        let h = s.history(2, 2).unwrap();
        assert_eq!(h.events.len(), 4);
        assert_eq!(h.next_rev, 4);
        let h = s.history(h.next_rev, 2).unwrap();
        assert_eq!((h.events.len(), h.next_rev), (1, 5));
        // Caught up / future: nothing, continue from there.
        let h = s.history(7, 10).unwrap();
        assert_eq!((h.events.len(), h.next_rev), (0, 7));

        // Staged revisions are part of history before they are written.
        let mut ab = s.apply_batch();
        let mut t = ab.write();
        t.put(b"e", b"1", 0).unwrap();
        t.commit(4).unwrap();
        let h = ab.store().history(4, 10).unwrap();
        assert_eq!(
            h.events
                .iter()
                .map(|e| e.kv.mod_revision)
                .collect::<Vec<_>>(),
            vec![4, 5]
        );
        ab.finish().unwrap();

        s.compact(4).unwrap();
        assert!(matches!(s.history(3, 10), Err(MvccError::Compacted { .. })));
        assert_eq!(s.history(4, 10).unwrap().events.len(), 2);
    }

    /// CRC-32C check value (RFC 3720 / the standard "123456789" test vector).
    #[test]
    fn crc32c_check_value() {
        let mut c = Crc32c::new();
        c.update(b"123456789");
        assert_eq!(c.finish(), 0xE306_9283);
    }

    /// Leases are stored with the key-value and survive reopen; re-putting without a
    /// lease clears it (etcd stores the lease id per revision).
    #[test]
    fn lease_is_per_revision() {
        let (b, mut s) = mem_store();
        let mut t = s.write();
        t.put(b"a", b"1", 0x1234).unwrap();
        t.commit(1).unwrap();
        assert_eq!(get(&s, "a", 0).unwrap().lease, 0x1234);
        put(&mut s, "a", "2");
        assert_eq!(get(&s, "a", 0).unwrap().lease, 0);
        let reopened = MvccStore::open(b).unwrap();
        assert_eq!(get(&reopened, "a", 2).unwrap().lease, 0x1234);
    }

    /// The key index against a naive model: random ops (fixed seed), then every
    /// key at every revision must read as the model says, before and after reopen.
    #[test]
    fn index_matches_naive_model() {
        let (b, mut s) = mem_store();
        // model[rev] = map of live keys -> (value, create, mod, version) after rev.
        let mut model: Vec<BTreeMap<String, KeyValue>> = vec![BTreeMap::new(), BTreeMap::new()];
        let mut seed: u64 = 0x5eed;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let names = ["a", "b", "c", "d"];
        for step in 0..200u64 {
            let k = names[(next() % 4) as usize];
            let mut live = model.last().unwrap().clone();
            let rev = s.current_revision() + 1;
            if next() % 3 == 0 {
                let (r, n) = del(&mut s, k, "");
                assert_eq!(n, live.remove(k).is_some() as usize);
                if n == 0 {
                    assert_eq!(r, rev - 1);
                    continue;
                }
            } else {
                let v = step.to_string();
                put(&mut s, k, &v);
                let (create, version) = match live.get(k) {
                    Some(p) => (p.create_revision, p.version + 1),
                    None => (rev, 1),
                };
                live.insert(k.to_string(), kv(k, &v, create, rev, version));
            }
            model.push(live);
            assert_eq!(s.current_revision() as usize, model.len() - 1);
        }
        let check = |s: &MvccStore, from: usize| {
            for (rev, live) in model.iter().enumerate().skip(from.max(1)) {
                for k in names {
                    assert_eq!(
                        get(s, k, rev as i64),
                        live.get(k).cloned(),
                        "key {k} at rev {rev}"
                    );
                }
                let all = s.range(b"\0", b"\0", rev as i64, 0).unwrap();
                assert_eq!(all.count, live.len());
            }
        };
        check(&s, 0);
        let half = model.len() / 2;
        s.compact(half as i64).unwrap();
        check(&s, half);
        check(&MvccStore::open(b).unwrap(), half);
    }
}
