//! Whole-backend snapshots: a dump of every bucket as one self-checking byte
//! string, and the load that replaces a backend's contents with such a dump.
//!
//! Used when a follower fell behind the leader's compacted Raft log: the leader
//! dumps its backend (at its applied index, which is at or past the snapshot
//! message's index), the transport carries the bytes, and the follower loads them
//! before it steps the snapshot message.
//!
//! Owns the dump format and nothing else: it does not know what the buckets hold
//! beyond the two Meta keys named below (the MVCC store's documented layout), it
//! never flushes (the caller does, off the event loop), and it never touches the
//! target backend before the whole dump has been verified.
//!
//! # Format (version 1, little endian)
//!
//! ```text
//! [magic b"STEADSNP"][version u8][record count u64]
//! [records: bucket prefix u8, key len u32, key, value len u32, value]...
//! [crc32c u32 of every byte before it]
//! ```
//!
//! Records are grouped by bucket in [`Bucket::ALL`] order and ascending key order
//! within a bucket (the order `scan` yields); `load` accepts any order but refuses
//! a prefix byte that names no bucket. A change to the layout bumps
//! [`FORMAT_VERSION`]; `load` refuses every version it does not know.
//!
//! # Consistency of a dump
//!
//! `dump` reads bucket after bucket with `Backend::scan`, which is not a
//! point-in-time view: the caller must not write to the backend while it runs
//! (the store actor owns the backend and calls it between two applies, after its
//! staged batch has been written).
//!
//! # A crash in the middle of `load`
//!
//! `load` writes several batches (bounded by [`LOAD_BATCH_BYTES`]). The backend
//! recovers batches in write order, so a crash leaves some prefix of them:
//!
//! 1. The **first** batch only overwrites the MVCC format marker (`Meta` /
//!    `format`) with [`LOAD_IN_PROGRESS`].
//! 2. The middle batches delete the old keys and write the dump's, bucket by
//!    bucket, `Meta` excluded.
//! 3. The **last** batch replaces the whole `Meta` bucket at once: old keys out,
//!    the dump's in — its format marker and consistent index included.
//!
//! So after a crash the backend is either untouched (crash before batch 1 landed:
//! the old, coherent state with its old consistent index), fully loaded (batch 3
//! landed), or in between with the in-progress marker in place of the format
//! marker. The in-between state is a mix of old and new data that must never be
//! served or have entries replayed onto it; it is refused by construction:
//! `MvccStore::open` rejects an unknown format marker (`MvccError::Corrupt`), so
//! the member fails to open rather than carry on with it (fail-stop), and
//! [`load_interrupted`] lets boot recognise the case and say so. The only ways
//! forward from it are loading a snapshot again (`load` replaces every bucket
//! whatever they hold, so it is safe over a half-loaded backend) or wiping the
//! member's data. That is safe because nothing has been acknowledged on the
//! strength of the new state yet: the caller steps the snapshot message (and the
//! WAL records it) only after `load` returned and the backend was flushed.

use std::ops::Bound;

use crate::storage::backend::{Backend, BackendError, Bucket, Scan, WriteBatch};

/// Starts every dump.
pub const MAGIC: &[u8; 8] = b"STEADSNP";

/// The dump format this build writes and the only one it loads.
pub const FORMAT_VERSION: u8 = 1;

/// magic + version + record count.
const HEADER_BYTES: usize = 8 + 1 + 8;
/// The trailing checksum.
const TRAILER_BYTES: usize = 4;
/// bucket prefix + key length + value length.
const RECORD_OVERHEAD_BYTES: usize = 1 + 4 + 4;

/// Most key and value bytes one `load` batch carries (a bucket's deletes and puts
/// go in batches of about this size; a single record larger than it gets a batch
/// of its own). The last batch, the whole `Meta` bucket, is not split.
pub const LOAD_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// The MVCC store's format marker key in [`Bucket::Meta`] (`mvcc.rs`, "On-disk
/// layout"). `load` overwrites its value while it runs; see the module docs.
const META_FORMAT: &[u8] = b"format";
/// The MVCC store's consistent index key in [`Bucket::Meta`]: u64 big endian.
const META_CONSISTENT_INDEX: &[u8] = b"consistent_index";

/// The value of `Meta` / `format` while a load is in progress. Not a format the
/// MVCC store knows, so it refuses to open a half-loaded backend.
pub const LOAD_IN_PROGRESS: &[u8] = b"snapshot load in progress";

/// Why a dump could not be made or loaded. A load error from the verification
/// stage (everything but `Backend`) left the target backend unchanged.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot backend: {0}")]
    Backend(#[from] BackendError),
    #[error("not a stead snapshot (bad magic)")]
    BadMagic,
    #[error("snapshot format version {got}, this member reads {want}")]
    UnsupportedVersion { got: u8, want: u8 },
    #[error(
        "snapshot truncated: {needed_bytes} bytes needed at offset {offset}, {total_bytes} in all"
    )]
    Truncated {
        offset: usize,
        needed_bytes: usize,
        total_bytes: usize,
    },
    #[error(
        "snapshot checksum mismatch: trailer says {expected:#010x}, contents hash to {actual:#010x}"
    )]
    ChecksumMismatch { expected: u32, actual: u32 },
    #[error("snapshot record {record} names unknown bucket prefix {prefix:#04x}")]
    UnknownBucket { record: u64, prefix: u8 },
    #[error("snapshot has {trailing_bytes} bytes after its {declared} declared records")]
    TrailingBytes {
        declared: u64,
        trailing_bytes: usize,
    },
    #[error("snapshot declares {declared} records, more than its {body_bytes} bytes can hold")]
    RecordCountTooLarge { declared: u64, body_bytes: usize },
    #[error("a {what} of {len_bytes} bytes does not fit the snapshot format (u32 length)")]
    FieldTooLong {
        what: &'static str,
        len_bytes: usize,
    },
    #[error("snapshot of more than {max_bytes} bytes")]
    TooLarge { max_bytes: usize },
}

/// What a verified dump holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Records in the dump, all buckets.
    pub records: u64,
    /// Records per bucket, in [`Bucket::ALL`] order (buckets without records too).
    pub records_per_bucket: Vec<(Bucket, u64)>,
    /// Size of the dump.
    pub bytes: usize,
    /// The MVCC consistent index the dump carries (`Meta` / `consistent_index`),
    /// if it has one of the expected 8 bytes: the Raft index the dumped state is
    /// at. A follower should refuse a dump whose index is below the snapshot
    /// message's.
    pub consistent_index_hint: Option<u64>,
}

/// What a load did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedSnapshot {
    /// The dump's contents (as [`inspect`] reports them).
    pub info: SnapshotInfo,
    /// Records written (equal to `info.records` unless the dump repeats a key, in
    /// which case the later one won).
    pub records: u64,
    /// Keys the backend held before and that were deleted, all buckets.
    pub deleted_keys: u64,
    /// Backend batches written (the caller flushes after them).
    pub batches: u64,
}

/// Dumps every bucket of `backend`. See the module docs for the format and why the
/// backend must not be written meanwhile.
pub fn dump(backend: &dyn Backend) -> Result<Vec<u8>, SnapshotError> {
    dump_bounded(backend, usize::MAX)
}

/// [`dump`], giving up with `TooLarge` as soon as the dump would pass `max_bytes`
/// (so a backend too big to send never costs more than `max_bytes` of memory).
pub fn dump_bounded(backend: &dyn Backend, max_bytes: usize) -> Result<Vec<u8>, SnapshotError> {
    let mut out = Vec::with_capacity(HEADER_BYTES.min(max_bytes));
    out.extend_from_slice(MAGIC);
    out.push(FORMAT_VERSION);
    out.extend_from_slice(&0u64.to_le_bytes()); // record count, patched below
    let mut records = 0u64;
    let mut failed: Option<SnapshotError> = None;
    for bucket in Bucket::ALL {
        backend.scan(
            bucket,
            Bound::Unbounded,
            Bound::Unbounded,
            &mut |key, value| {
                let record_bytes = RECORD_OVERHEAD_BYTES + key.len() + value.len();
                if out.len() + record_bytes + TRAILER_BYTES > max_bytes {
                    failed = Some(SnapshotError::TooLarge { max_bytes });
                    return Scan::Stop;
                }
                let (Ok(key_len), Ok(value_len)) =
                    (u32::try_from(key.len()), u32::try_from(value.len()))
                else {
                    failed = Some(SnapshotError::FieldTooLong {
                        what: if u32::try_from(key.len()).is_err() {
                            "key"
                        } else {
                            "value"
                        },
                        len_bytes: key.len().max(value.len()),
                    });
                    return Scan::Stop;
                };
                out.push(bucket.prefix());
                out.extend_from_slice(&key_len.to_le_bytes());
                out.extend_from_slice(key);
                out.extend_from_slice(&value_len.to_le_bytes());
                out.extend_from_slice(value);
                records += 1;
                Scan::Continue
            },
        )?;
        if let Some(e) = failed {
            return Err(e);
        }
    }
    if out.len() + TRAILER_BYTES > max_bytes {
        return Err(SnapshotError::TooLarge { max_bytes });
    }
    out[9..HEADER_BYTES].copy_from_slice(&records.to_le_bytes());
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// One record of a dump, borrowed from it.
struct Record<'a> {
    bucket: Bucket,
    key: &'a [u8],
    value: &'a [u8],
}

/// A verified dump: checksum, header and every record's lengths checked. The
/// records are parsed again when they are needed (no copy of them is kept).
struct Verified<'a> {
    info: SnapshotInfo,
    /// The records region: everything between the header and the checksum.
    records: &'a [u8],
}

impl<'a> Verified<'a> {
    /// The records, in dump order. Verification already parsed them all, so the
    /// iterator never meets an error.
    fn records(&self) -> impl Iterator<Item = Record<'a>> + 'a {
        let region = self.records;
        let mut at = 0;
        std::iter::from_fn(move || {
            (at < region.len()).then(|| parse_record(region, &mut at, 0).expect("verified dump"))
        })
    }
}

fn bucket_of(prefix: u8) -> Option<Bucket> {
    Bucket::ALL.into_iter().find(|b| b.prefix() == prefix)
}

/// Reads `n` bytes at `*at`, or says how far short the dump is.
fn take<'a>(bytes: &'a [u8], at: &mut usize, n: usize) -> Result<&'a [u8], SnapshotError> {
    let end = at.checked_add(n).filter(|&end| end <= bytes.len());
    let Some(end) = end else {
        return Err(SnapshotError::Truncated {
            offset: *at,
            needed_bytes: n,
            total_bytes: bytes.len(),
        });
    };
    let out = &bytes[*at..end];
    *at = end;
    Ok(out)
}

fn take_u32(bytes: &[u8], at: &mut usize) -> Result<u32, SnapshotError> {
    let b = take(bytes, at, 4)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Parses the record at `*at` (record number `record`, for errors).
fn parse_record<'a>(
    region: &'a [u8],
    at: &mut usize,
    record: u64,
) -> Result<Record<'a>, SnapshotError> {
    let prefix = take(region, at, 1)?[0];
    let Some(bucket) = bucket_of(prefix) else {
        return Err(SnapshotError::UnknownBucket { record, prefix });
    };
    let key_len = take_u32(region, at)? as usize;
    let key = take(region, at, key_len)?;
    let value_len = take_u32(region, at)? as usize;
    let value = take(region, at, value_len)?;
    Ok(Record { bucket, key, value })
}

fn verify(bytes: &[u8]) -> Result<Verified<'_>, SnapshotError> {
    let total_bytes = bytes.len();
    if total_bytes < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        // A cut inside a real dump's magic is truncation, not a foreign format.
        if total_bytes < MAGIC.len() && MAGIC.starts_with(bytes) {
            return Err(SnapshotError::Truncated {
                offset: 0,
                needed_bytes: HEADER_BYTES + TRAILER_BYTES,
                total_bytes,
            });
        }
        return Err(SnapshotError::BadMagic);
    }
    if total_bytes > MAGIC.len() && bytes[MAGIC.len()] != FORMAT_VERSION {
        return Err(SnapshotError::UnsupportedVersion {
            got: bytes[MAGIC.len()],
            want: FORMAT_VERSION,
        });
    }
    if total_bytes < HEADER_BYTES + TRAILER_BYTES {
        return Err(SnapshotError::Truncated {
            offset: 0,
            needed_bytes: HEADER_BYTES + TRAILER_BYTES,
            total_bytes,
        });
    }
    let (body, trailer) = bytes.split_at(total_bytes - TRAILER_BYTES);
    let expected = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    let actual = crc32c::crc32c(body);
    if actual != expected {
        return Err(SnapshotError::ChecksumMismatch { expected, actual });
    }

    let count_bytes: [u8; 8] = body[MAGIC.len() + 1..HEADER_BYTES]
        .try_into()
        .expect("8 bytes");
    let declared = u64::from_le_bytes(count_bytes);
    let region = &body[HEADER_BYTES..];
    // Every record takes at least its overhead: refuse a count no body could hold
    // (it would otherwise only show up as truncation, after a long parse).
    if declared > (region.len() / RECORD_OVERHEAD_BYTES) as u64 {
        return Err(SnapshotError::RecordCountTooLarge {
            declared,
            body_bytes: region.len(),
        });
    }
    let mut per_bucket = [0u64; Bucket::ALL.len()];
    let mut consistent_index_hint = None;
    let mut at = 0;
    for record in 0..declared {
        let r = parse_record(region, &mut at, record).map_err(|e| match e {
            // Offsets in errors count from the start of the dump.
            SnapshotError::Truncated {
                offset,
                needed_bytes,
                ..
            } => SnapshotError::Truncated {
                offset: offset + HEADER_BYTES,
                needed_bytes,
                total_bytes,
            },
            other => other,
        })?;
        if r.bucket == Bucket::Meta && r.key == META_CONSISTENT_INDEX {
            consistent_index_hint = <[u8; 8]>::try_from(r.value).ok().map(u64::from_be_bytes);
        }
        let slot = Bucket::ALL
            .iter()
            .position(|b| *b == r.bucket)
            .expect("a bucket");
        per_bucket[slot] += 1;
    }
    if at != region.len() {
        return Err(SnapshotError::TrailingBytes {
            declared,
            trailing_bytes: region.len() - at,
        });
    }
    Ok(Verified {
        info: SnapshotInfo {
            records: declared,
            records_per_bucket: Bucket::ALL.into_iter().zip(per_bucket).collect(),
            bytes: total_bytes,
            consistent_index_hint,
        },
        records: region,
    })
}

/// Verifies a dump (magic, version, checksum, every length) without loading it.
pub fn inspect(bytes: &[u8]) -> Result<SnapshotInfo, SnapshotError> {
    verify(bytes).map(|v| v.info)
}

/// Whether a `load` into `backend` was interrupted (see the module docs): the
/// backend then holds a mix of old and new data and must not be used as is.
pub fn load_interrupted(backend: &dyn Backend) -> Result<bool, SnapshotError> {
    Ok(backend.get(Bucket::Meta, META_FORMAT)?.as_deref() == Some(LOAD_IN_PROGRESS))
}

/// Replaces everything `backend` holds, in every bucket, with the dump's contents.
///
/// The whole dump is verified first: a corrupt, truncated or foreign dump is an
/// error and the backend is not touched. After that, a backend error leaves the
/// load interrupted (see the module docs); the caller treats it as fatal, as any
/// backend write error. Nothing is flushed: the caller flushes before it steps the
/// snapshot message. Nothing else may use the backend meanwhile (an open
/// `MvccStore` on it must be reopened afterwards: its key index is stale).
pub fn load(backend: &dyn Backend, bytes: &[u8]) -> Result<LoadedSnapshot, SnapshotError> {
    let verified = verify(bytes)?;
    let mut loaded = LoadedSnapshot {
        info: verified.info.clone(),
        records: 0,
        deleted_keys: 0,
        batches: 0,
    };

    // 1. Mark the backend as being loaded (the MVCC store refuses to open it).
    let mut marker = WriteBatch::new();
    marker.put(Bucket::Meta, META_FORMAT, LOAD_IN_PROGRESS);
    backend.write(marker)?;
    loaded.batches += 1;

    // 2. Every bucket but Meta: old keys out, the dump's in, in bounded batches.
    let mut batch = WriteBatch::new();
    for bucket in Bucket::ALL.into_iter().filter(|b| *b != Bucket::Meta) {
        loaded.deleted_keys += delete_all(backend, bucket, &mut batch, &mut loaded.batches)?;
        for r in verified.records().filter(|r| r.bucket == bucket) {
            batch.put(bucket, r.key, r.value);
            loaded.records += 1;
            if batch.payload_bytes() >= LOAD_BATCH_BYTES {
                backend.write(std::mem::take(&mut batch))?;
                loaded.batches += 1;
            }
        }
    }
    if !batch.is_empty() {
        backend.write(batch)?;
        loaded.batches += 1;
    }

    // 3. Meta in one batch: this is what ends the load (format marker and
    // consistent index land together with the removal of the old ones).
    let mut last = WriteBatch::new();
    let mut old_meta = Vec::new();
    backend.scan(
        Bucket::Meta,
        Bound::Unbounded,
        Bound::Unbounded,
        &mut |k, _| {
            old_meta.push(k.to_vec());
            Scan::Continue
        },
    )?;
    for key in old_meta {
        // The marker is ours, not a key the backend held before the load.
        if key != META_FORMAT {
            loaded.deleted_keys += 1;
        }
        last.delete(Bucket::Meta, key);
    }
    for r in verified.records().filter(|r| r.bucket == Bucket::Meta) {
        last.put(Bucket::Meta, r.key, r.value);
        loaded.records += 1;
    }
    backend.write(last)?;
    loaded.batches += 1;
    tracing::info!(
        records = loaded.records,
        deleted_keys = loaded.deleted_keys,
        bytes = loaded.info.bytes,
        consistent_index = ?loaded.info.consistent_index_hint,
        "backend replaced by a snapshot"
    );
    Ok(loaded)
}

/// Deletes every key of `bucket`, adding to `batch` and writing it whenever it
/// reaches [`LOAD_BATCH_BYTES`]. Keys are collected a batch at a time (never the
/// whole bucket) and the scan resumes after the last one collected.
fn delete_all(
    backend: &dyn Backend,
    bucket: Bucket,
    batch: &mut WriteBatch,
    batches: &mut u64,
) -> Result<u64, SnapshotError> {
    let mut deleted = 0u64;
    let mut after: Option<Vec<u8>> = None;
    loop {
        let mut keys: Vec<Vec<u8>> = Vec::new();
        let mut keys_bytes = 0usize;
        let start = match &after {
            Some(k) => Bound::Excluded(k.as_slice()),
            None => Bound::Unbounded,
        };
        backend.scan(bucket, start, Bound::Unbounded, &mut |k, _| {
            keys_bytes += k.len();
            keys.push(k.to_vec());
            if keys_bytes >= LOAD_BATCH_BYTES {
                Scan::Stop
            } else {
                Scan::Continue
            }
        })?;
        let Some(last) = keys.last().cloned() else {
            return Ok(deleted);
        };
        for key in keys {
            batch.delete(bucket, key);
            deleted += 1;
            if batch.payload_bytes() >= LOAD_BATCH_BYTES {
                backend.write(std::mem::take(batch))?;
                *batches += 1;
            }
        }
        after = Some(last);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::storage::backend::{MemBackend, SledBackend};
    use crate::storage::mvcc::{MvccError, MvccStore};

    /// Everything in every bucket, engine order.
    fn contents(b: &dyn Backend) -> Vec<(Bucket, Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        for bucket in Bucket::ALL {
            b.scan(bucket, Bound::Unbounded, Bound::Unbounded, &mut |k, v| {
                out.push((bucket, k.to_vec(), v.to_vec()));
                Scan::Continue
            })
            .unwrap();
        }
        out
    }

    /// A source with real MVCC history (puts, overwrites, a delete, a compaction)
    /// and something in every other bucket.
    fn populate(backend: Arc<dyn Backend>) -> MvccStore {
        let mut s = MvccStore::open(backend.clone()).unwrap();
        let mut ci = 10;
        let mut commit =
            |s: &mut MvccStore, f: &dyn Fn(&mut crate::storage::mvcc::WriteTxn<'_>)| {
                ci += 1;
                let mut t = s.write();
                f(&mut t);
                t.commit(ci).unwrap();
            };
        for i in 0..50u32 {
            commit(&mut s, &|t| {
                t.put(format!("key/{i:03}").as_bytes(), &i.to_le_bytes(), 0)
                    .unwrap();
            });
        }
        commit(&mut s, &|t| {
            t.put(b"key/007", b"seven again", 0).unwrap();
        });
        commit(&mut s, &|t| {
            t.delete_range(b"key/010", b"key/020").unwrap();
        });
        s.compact(5).unwrap();
        commit(&mut s, &|t| {
            t.put(b"empty-value", b"", 0).unwrap();
        });
        let mut b = WriteBatch::new();
        for bucket in Bucket::ALL {
            if bucket != Bucket::Key && bucket != Bucket::Meta {
                b.put(bucket, format!("{bucket:?}-1"), vec![bucket.prefix(); 3]);
                b.put(bucket, Vec::new(), Vec::new());
            }
        }
        backend.write(b).unwrap();
        s
    }

    /// Something different in the target, so the load must remove it.
    fn populate_other(backend: Arc<dyn Backend>) {
        let mut s = MvccStore::open(backend.clone()).unwrap();
        for i in 0..5u64 {
            let mut t = s.write();
            t.put(format!("stale/{i}").as_bytes(), b"old", 0).unwrap();
            t.commit(100 + i).unwrap();
        }
        let mut b = WriteBatch::new();
        b.put(Bucket::Lease, b"stale-lease", b"x");
        b.put(Bucket::Members, b"stale-member", b"y");
        b.put(Bucket::Meta, b"stale-meta", b"z");
        backend.write(b).unwrap();
    }

    fn assert_same_store(a: &MvccStore, b: &MvccStore) {
        assert_eq!(a.current_revision(), b.current_revision());
        assert_eq!(a.compact_revision(), b.compact_revision());
        assert_eq!(a.consistent_index(), b.consistent_index());
        assert_eq!(a.index_key_count(), b.index_key_count());
        for rev in [0, 6, 30, a.current_revision()] {
            assert_eq!(
                a.range(b"\0", b"\0", rev, 0).unwrap(),
                b.range(b"\0", b"\0", rev, 0).unwrap(),
                "range at {rev}"
            );
        }
        // Below the compaction both refuse alike.
        assert!(matches!(
            a.range(b"a", b"", 2, 0),
            Err(MvccError::Compacted { .. })
        ));
        assert!(matches!(
            b.range(b"a", b"", 2, 0),
            Err(MvccError::Compacted { .. })
        ));
        assert_eq!(
            a.hash_kv(0).unwrap(),
            b.hash_kv(0).unwrap(),
            "same history, same hash"
        );
    }

    fn round_trip(source: Arc<dyn Backend>, target: Arc<dyn Backend>) {
        let source_store = populate(source.clone());
        populate_other(target.clone());
        let target_before = contents(&*target).len() as u64;
        let bytes = dump(&*source).unwrap();
        let info = inspect(&bytes).unwrap();
        assert_eq!(
            info.consistent_index_hint,
            Some(source_store.consistent_index())
        );
        assert_eq!(info.bytes, bytes.len());
        assert_eq!(info.records, contents(&*source).len() as u64);

        let loaded = load(&*target, &bytes).unwrap();
        assert_eq!(loaded.records, info.records);
        // Everything the target held, but the format marker (overwritten, not
        // deleted).
        assert_eq!(loaded.deleted_keys, target_before - 1);
        assert!(!load_interrupted(&*target).unwrap());
        assert_eq!(
            contents(&*target),
            contents(&*source),
            "byte-identical buckets"
        );
        let target_store = MvccStore::open(target).unwrap();
        assert_same_store(&source_store, &target_store);
        // And a dump of the copy is the same dump.
        assert_eq!(dump(&**target_store.backend()).unwrap(), bytes);
    }

    #[test]
    fn round_trip_between_mem_backends() {
        round_trip(MemBackend::new(), MemBackend::new());
    }

    #[test]
    fn round_trip_between_sled_backends() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        round_trip(
            Arc::new(SledBackend::open(a.path()).unwrap()),
            Arc::new(SledBackend::open(b.path()).unwrap()),
        );
    }

    #[test]
    fn sled_load_survives_flush_and_reopen() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let expected;
        {
            let source: Arc<dyn Backend> = Arc::new(SledBackend::open(a.path()).unwrap());
            let target: Arc<dyn Backend> = Arc::new(SledBackend::open(b.path()).unwrap());
            populate(source.clone());
            load(&*target, &dump(&*source).unwrap()).unwrap();
            target.flush().unwrap();
            expected = contents(&*source);
        }
        let reopened = SledBackend::open(b.path()).unwrap();
        assert_eq!(contents(&reopened), expected);
        MvccStore::open(Arc::new(reopened)).unwrap();
    }

    #[test]
    fn empty_backend_dumps_and_loads() {
        let source = MemBackend::new();
        let bytes = dump(&*source).unwrap();
        assert_eq!(bytes.len(), HEADER_BYTES + TRAILER_BYTES);
        let target = MemBackend::new();
        populate_other(target.clone());
        let loaded = load(&*target, &bytes).unwrap();
        assert_eq!(loaded.records, 0);
        assert!(contents(&*target).is_empty());
        assert_eq!(loaded.info.consistent_index_hint, None);
    }

    #[test]
    fn layout_is_as_documented() {
        let source = MemBackend::new();
        let mut b = WriteBatch::new();
        b.put(Bucket::Lease, b"k", b"vv");
        source.write(b).unwrap();
        let bytes = dump(&*source).unwrap();
        let mut expected = b"STEADSNP".to_vec();
        expected.push(1);
        expected.extend(1u64.to_le_bytes());
        expected.push(b'l');
        expected.extend(1u32.to_le_bytes());
        expected.extend(b"k");
        expected.extend(2u32.to_le_bytes());
        expected.extend(b"vv");
        let crc = crc32c::crc32c(&expected);
        expected.extend(crc.to_le_bytes());
        assert_eq!(bytes, expected);
    }

    #[test]
    fn dump_bounded_gives_up_past_the_limit() {
        let source = MemBackend::new();
        populate(source.clone());
        let full = dump(&*source).unwrap();
        assert_eq!(dump_bounded(&*source, full.len()).unwrap(), full);
        assert!(matches!(
            dump_bounded(&*source, full.len() - 1),
            Err(SnapshotError::TooLarge { .. })
        ));
        assert!(matches!(
            dump_bounded(&*source, 3),
            Err(SnapshotError::TooLarge { .. })
        ));
    }

    /// A dump that fails verification leaves the target exactly as it was.
    fn assert_refused_unchanged(bytes: &[u8], what: &str) -> SnapshotError {
        let target = MemBackend::new();
        populate_other(target.clone());
        let before = contents(&*target);
        let batches_before = target.batches().len();
        let err = load(&*target, bytes).expect_err(what);
        assert_eq!(contents(&*target), before, "{what}: target changed");
        assert_eq!(
            target.batches().len(),
            batches_before,
            "{what}: target written"
        );
        assert!(inspect(bytes).is_err(), "{what}");
        err
    }

    fn good_dump() -> Vec<u8> {
        let source = MemBackend::new();
        populate(source.clone());
        dump(&*source).unwrap()
    }

    #[test]
    fn every_flipped_byte_is_refused_and_changes_nothing() {
        let bytes = good_dump();
        // Every byte of header and trailer, and a spread of the body.
        let positions = (0..HEADER_BYTES + 8)
            .chain((HEADER_BYTES..bytes.len()).step_by(97))
            .chain(bytes.len() - TRAILER_BYTES..bytes.len());
        for at in positions {
            let mut corrupt = bytes.clone();
            corrupt[at] ^= 0x40;
            let err = assert_refused_unchanged(&corrupt, &format!("flip at {at}"));
            match at {
                0..=7 => assert!(matches!(err, SnapshotError::BadMagic), "{at}: {err}"),
                8 => assert!(
                    matches!(
                        err,
                        SnapshotError::UnsupportedVersion { got: 0x41, want: 1 }
                    ),
                    "{at}: {err}"
                ),
                _ => assert!(
                    matches!(err, SnapshotError::ChecksumMismatch { .. }),
                    "{at}: {err}"
                ),
            }
        }
    }

    #[test]
    fn every_truncation_is_refused_and_changes_nothing() {
        let bytes = good_dump();
        let cuts = (0..HEADER_BYTES + TRAILER_BYTES + 2)
            .chain((0..bytes.len()).step_by(53))
            .chain(bytes.len() - 5..bytes.len());
        for cut in cuts {
            let err = assert_refused_unchanged(&bytes[..cut], &format!("cut at {cut}"));
            assert!(
                matches!(
                    err,
                    SnapshotError::Truncated { .. } | SnapshotError::ChecksumMismatch { .. }
                ),
                "cut at {cut}: {err}"
            );
        }
    }

    #[test]
    fn wrong_magic_or_version_is_refused() {
        let mut bytes = good_dump();
        bytes[..8].copy_from_slice(b"ETCDSNAP");
        assert!(matches!(
            assert_refused_unchanged(&bytes, "magic"),
            SnapshotError::BadMagic
        ));
        assert!(matches!(
            assert_refused_unchanged(b"", "empty"),
            SnapshotError::Truncated { .. }
        ));
        assert!(matches!(
            assert_refused_unchanged(b"not a snapshot at all", "text"),
            SnapshotError::BadMagic
        ));
        let mut v2 = good_dump();
        v2[8] = 2;
        assert!(matches!(
            assert_refused_unchanged(&v2, "version"),
            SnapshotError::UnsupportedVersion { got: 2, want: 1 }
        ));
    }

    /// Re-seals a hand-made body with a correct checksum, as a buggy (not merely
    /// corrupted) sender would.
    fn sealed(body: &[u8]) -> Vec<u8> {
        let mut out = body.to_vec();
        out.extend(crc32c::crc32c(body).to_le_bytes());
        out
    }

    fn header(count: u64) -> Vec<u8> {
        let mut h = MAGIC.to_vec();
        h.push(FORMAT_VERSION);
        h.extend(count.to_le_bytes());
        h
    }

    #[test]
    fn well_sealed_but_malformed_dumps_are_refused() {
        // A count no body could hold.
        let err = assert_refused_unchanged(&sealed(&header(u64::MAX)), "huge count");
        assert!(
            matches!(err, SnapshotError::RecordCountTooLarge { .. }),
            "{err}"
        );
        // A key length past the end.
        let mut body = header(1);
        body.push(b'k');
        body.extend(u32::MAX.to_le_bytes());
        body.extend([0u8; 16]);
        let err = assert_refused_unchanged(&sealed(&body), "key length");
        assert!(matches!(err, SnapshotError::Truncated { .. }), "{err}");
        // An unknown bucket.
        let mut body = header(1);
        body.push(b'z');
        body.extend(0u32.to_le_bytes());
        body.extend(0u32.to_le_bytes());
        let err = assert_refused_unchanged(&sealed(&body), "bucket");
        assert!(
            matches!(
                err,
                SnapshotError::UnknownBucket {
                    record: 0,
                    prefix: b'z'
                }
            ),
            "{err}"
        );
        // Bytes after the declared records.
        let mut body = header(0);
        body.extend([0u8; 9]);
        let err = assert_refused_unchanged(&sealed(&body), "trailing");
        assert!(matches!(err, SnapshotError::TrailingBytes { .. }), "{err}");
        // Fewer records than declared (but enough bytes that the count is
        // plausible): the second record runs off the end.
        let mut body = header(2);
        body.push(b'k');
        body.extend(10u32.to_le_bytes());
        body.extend([b'x'; 10]);
        body.extend(0u32.to_le_bytes());
        let err = assert_refused_unchanged(&sealed(&body), "short count");
        assert!(matches!(err, SnapshotError::Truncated { .. }), "{err}");
        // And the count check itself.
        let mut body = header(2);
        body.push(b'k');
        body.extend(0u32.to_le_bytes());
        body.extend(0u32.to_le_bytes());
        let err = assert_refused_unchanged(&sealed(&body), "implausible count");
        assert!(
            matches!(
                err,
                SnapshotError::RecordCountTooLarge {
                    declared: 2,
                    body_bytes: 9
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn an_interrupted_load_is_refused_by_the_store_and_a_new_load_recovers() {
        let source = MemBackend::new();
        let source_store = populate(source.clone());
        let bytes = dump(&*source).unwrap();
        // Fail every batch position in turn: the marker, a middle one, the last.
        let total_batches = {
            let t = MemBackend::new();
            populate_other(t.clone());
            load(&*t, &bytes).unwrap().batches as usize
        };
        assert!(total_batches >= 3);
        for ok in 0..total_batches {
            let target = MemBackend::new();
            populate_other(target.clone());
            let before = contents(&*target);
            target.fail_next_writes_after(ok, 1);
            assert!(matches!(
                load(&*target, &bytes),
                Err(SnapshotError::Backend(_))
            ));
            if ok == 0 {
                // Nothing landed: the old state, intact and usable.
                assert_eq!(contents(&*target), before);
                assert!(!load_interrupted(&*target).unwrap());
                MvccStore::open(target.clone()).unwrap();
            } else {
                assert!(load_interrupted(&*target).unwrap(), "after {ok} batches");
                assert!(
                    matches!(MvccStore::open(target.clone()), Err(MvccError::Corrupt(_))),
                    "a half-loaded backend must not open (after {ok} batches)"
                );
            }
            // Loading again over whatever is there gives the full state.
            load(&*target, &bytes).unwrap();
            assert_eq!(contents(&*target), contents(&*source));
            assert_same_store(&source_store, &MvccStore::open(target).unwrap());
        }
    }

    #[test]
    fn large_buckets_are_replaced_in_bounded_batches() {
        let source = MemBackend::new();
        let target = MemBackend::new();
        let value = vec![7u8; 64 * 1024];
        for backend in [&source, &target] {
            let mut b = WriteBatch::new();
            for i in 0..200u32 {
                // Different keys on each side, so both deletes and puts are many.
                let side = if Arc::ptr_eq(backend, &source) {
                    "s"
                } else {
                    "t"
                };
                b.put(Bucket::Lease, format!("{side}{i:05}"), value.clone());
            }
            backend.write(b).unwrap();
        }
        let bytes = dump(&*source).unwrap();
        let written_before = target.batches().len();
        let loaded = load(&*target, &bytes).unwrap();
        assert_eq!(loaded.deleted_keys, 200);
        assert_eq!(contents(&*target), contents(&*source));
        let batches = &target.batches()[written_before..];
        assert_eq!(batches.len() as u64, loaded.batches);
        assert!(batches.len() > 3, "split: {} batches", batches.len());
        for b in batches {
            assert!(
                b.payload_bytes() < LOAD_BATCH_BYTES + value.len() + 16,
                "batch of {} bytes",
                b.payload_bytes()
            );
        }
    }
}
