//! The write-ahead log: the durable record of Raft's log entries, hard state and
//! snapshot points, in `<data-dir>/member/wal/`. It is the source of truth on boot.
//!
//! Owns: the segment files in one directory (and a `LOCK` file there), their byte
//! format, replay with torn-tail repair, and the group-commit writer thread
//! ([`WalWriter`]). It must never: skip or reorder a record on replay, treat
//! corruption before the tail as a torn write, acknowledge a write before its
//! fdatasync returned, run on an actor's event loop (it blocks on disk), or keep
//! going after an I/O error (an error poisons the [`Wal`]; the node fail-stops).
//! It does not know what entry data means, and does not decide Raft's log: it
//! refuses appends that break Raft's rules (gaps, terms going backwards, …)
//! instead of storing them.
//!
//! # Files
//!
//! Segments are named `<seq>-<first_index>.wal`, both 16 lower-case hex digits (as
//! etcd does), e.g. `0000000000000001-0000000000000001.wal`. `seq` counts up from 1
//! without gaps; `first_index` is the index the segment starts the log at (the
//! log's last index + 1 when it was created, or the index of the overwriting entry
//! that did not fit the previous segment; later overwrites may write lower ones).
//! Each segment is preallocated with `set_len` (default 64 MiB,
//! [`WalOptions::segment_bytes`]) and
//! created atomically (temp file, head written and fsynced, rename, directory
//! fsync). A record never crosses a segment end: one that does not fit starts a new
//! segment, after the old one has been fdatasynced. Only the last segment can
//! have a torn tail.
//!
//! # Records
//!
//! All integers little endian:
//!
//! ```text
//! [len: u32][crc: u32][type: u8][payload: len-1 bytes]
//! len = byte count of type + payload (>= 1; 0 marks the end of written data)
//! crc = CRC32C (Castagnoli) of type + payload
//!
//! type 1 Metadata   version u32 (=1), cluster_id u64, member_id u64, seq u64,
//!                   first_index u64, segment_bytes u64              (44 bytes)
//! type 2 Entry      term u64, index u64, kind u8 (0 Normal, 1 ConfChange),
//!                   data (the rest)                                  (17 + data)
//! type 3 HardState  term u64, vote u64, commit u64                   (24 bytes)
//! type 4 Snapshot   index u64, term u64, voter_count u32, voters u64 × voter_count,
//!                   learner_count u32, learners u64 × learner_count
//!                                                  (24 + 8 × (voters + learners))
//! ```
//!
//! A snapshot marker carries the membership in force at its index (as etcd's
//! `walpb.Snapshot` carries its `conf_state`): once the log before it is released,
//! nothing else on disk says who the voters are. Each count is at most 65,536 and
//! must match the payload length exactly.
//!
//! Every segment starts with a head: Metadata, the current HardState, and the
//! newest snapshot marker (membership included) if any. So any suffix of segments
//! replays on its own, which is what lets [`Wal::release_to`] delete old segments.
//!
//! # Replay rules
//!
//! Records are applied in file order with the same rules `append` enforces: an
//! entry whose index is ≤ the last index replaces every entry from that index on
//! (Raft's suffix overwrite); an index gap, a term going backwards or an entry at
//! or below the snapshot is corruption. A snapshot marker `(index, term, conf)` keeps the
//! entries after `index` if the log has `term` at `index`, and otherwise discards
//! the whole log (Raft paper §7). [`Replayed::entries`] are the entries after the
//! newest marker; [`Replayed::snapshot`] is that marker, membership included. Two
//! markers at the same index must agree on term and membership. A bad record is truncated as torn (with a `warn!`) only at the
//! very end of the last segment — its frame runs past the end of a short file, or
//! its CRC fails and only zeros follow; any other bad record stops the open with
//! [`WalError::Corrupt`] naming the file and byte offset.
//!
//! # Limits (chosen, not accidental)
//!
//! - `set_len` preallocation is sparse (std has no `fallocate`, and ext4's
//!   fallocated blocks still change metadata on first write). So the writer
//!   keeps the next 256–512 KiB past its position written with zeros
//!   (`Wal::zero_ahead`), flushed with the next fdatasync: a record's
//!   fdatasync then rewrites allocated blocks and commits no journal (measured
//!   with 2 KB records: 82 µs per fdatasync against 104 µs sparse; 3 members
//!   under 64-client puts: about 10% less).
//! - Torn-tail detection assumes the unsynced tail reached the disk in order. If a
//!   crash persisted a later page but not an earlier one, non-zero bytes follow the
//!   bad record and the open stops with `Corrupt` (fail-stop; never guessing).
//! - A bit flip in the final record of the last segment is indistinguishable from
//!   a torn write and is truncated (with the warning), as etcd does.
//! - Replay reads one segment into memory at a time (≤ `SEGMENT_BYTES_MAX`) and
//!   returns every entry after the newest snapshot: release old segments.
//! - A segment head grows with the membership in its marker: every write is
//!   checked to fit a fresh segment after the head it would get, so with a tiny
//!   `segment_bytes` a very large membership is refused rather than written.
//! - Entries must be above the persisted commit index (Raft never rewrites a
//!   committed entry); hard state term/commit never decrease, a vote never changes
//!   within a term, commit never exceeds the last index.

mod log_state;
mod record;
mod segment;
mod writer;

use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::raft::{Entry, HardState, SnapshotMeta};

use log_state::{LogState, SnapshotEffect};
use record::{Metadata, Record};
use segment::io_err;

pub use writer::{
    Completion, FsyncObserver, SubmitError, WalPersisted, WalStats, WalStatsSnapshot, WalWrite, WalWriter,
    WalWriterOptions,
};

/// How far past the write position a segment is kept written with zeros (see
/// `Wal::zero_ahead`): refilled in steps of at least half of it.
const ZERO_AHEAD_BYTES: u64 = 512 * 1024;

/// Default size new segments are preallocated to (etcd's is the same).
pub const SEGMENT_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;
/// Smallest segment accepted: room for a head and some records (tests use it).
pub const SEGMENT_BYTES_MIN: u64 = 4096;
/// Largest segment accepted: replay reads a segment into memory at once.
pub const SEGMENT_BYTES_MAX: u64 = 1024 * 1024 * 1024;
/// Default bytes of encoded records held in memory before they are written.
pub const WRITE_BUFFER_BYTES_DEFAULT: usize = 1024 * 1024;

const LOCK_FILE: &str = "LOCK";

#[derive(Debug, Clone, thiserror::Error)]
pub enum WalError {
    #[error("WAL I/O error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: Arc<std::io::Error>,
    },
    #[error("WAL corrupt in {} at byte offset {offset}: {reason}", path.display())]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("no WAL segments in {}", dir.display())]
    NotFound { dir: PathBuf },
    #[error("{} already holds WAL segments", dir.display())]
    AlreadyExists { dir: PathBuf },
    #[error("WAL directory {} is locked by another open WAL", dir.display())]
    Locked { dir: PathBuf },
    /// The caller asked for something Raft never does (a gap, a term going back,
    /// a commit past the log…). Nothing was written.
    #[error("invalid WAL append: {reason}")]
    InvalidAppend { reason: String },
    #[error(
        "entry {index} needs a {record_bytes}-byte record; a segment holds at most {max_bytes}"
    )]
    EntryTooLarge {
        index: u64,
        record_bytes: usize,
        max_bytes: usize,
    },
    #[error("invalid WAL options: {reason}")]
    InvalidOptions { reason: String },
    /// An earlier I/O error left the WAL in an unknown state; it accepts nothing more.
    #[error("WAL stopped after an earlier failure: {cause}")]
    Stopped { cause: Arc<WalError> },
    #[error("the WAL writer thread panicked")]
    WriterPanicked,
}

fn invalid(reason: String) -> WalError {
    WalError::InvalidAppend { reason }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalOptions {
    /// Size each new segment is preallocated to. Existing segments keep the size
    /// recorded in their metadata.
    pub segment_bytes: u64,
    /// Encoded records are held in memory up to this many bytes before being
    /// written to the file; `sync` always writes what is held.
    pub write_buffer_bytes: usize,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            write_buffer_bytes: WRITE_BUFFER_BYTES_DEFAULT,
        }
    }
}

impl WalOptions {
    fn validate(&self) -> Result<(), WalError> {
        if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&self.segment_bytes) {
            return Err(WalError::InvalidOptions {
                reason: format!(
                    "segment_bytes {} is outside {SEGMENT_BYTES_MIN}..={SEGMENT_BYTES_MAX}",
                    self.segment_bytes
                ),
            });
        }
        Ok(())
    }

    /// The largest record that fits a fresh segment after the head `log` gives it.
    fn record_bytes_max(&self, log: &LogState) -> usize {
        (self.segment_bytes as usize).saturating_sub(head_bytes(log))
    }
}

/// What `Wal::open` read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replayed {
    pub cluster_id: u64,
    pub member_id: u64,
    pub hard_state: HardState,
    /// The newest snapshot marker, with the membership in force at its index.
    pub snapshot: Option<SnapshotMeta>,
    /// The log after the newest snapshot marker (all of it if none): contiguous,
    /// starting at snapshot index + 1 (or 1).
    pub entries: Vec<Entry>,
    /// The torn record truncated from the tail of the last segment, if any.
    pub torn_tail: Option<TornTail>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    pub path: PathBuf,
    pub offset: u64,
    pub reason: String,
}

#[derive(Debug)]
struct SegmentInfo {
    seq: u64,
    path: PathBuf,
    /// Highest entry index written into this segment (0: none). Overwrites in
    /// later segments do not lower it, which only makes release more cautious.
    max_entry_index: u64,
}

/// An open write-ahead log. Single owner, synchronous, blocking: use it from a
/// dedicated thread ([`WalWriter`] does).
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    options: WalOptions,
    cluster_id: u64,
    member_id: u64,
    /// Oldest first; the last one is being written. Never empty.
    segments: Vec<SegmentInfo>,
    file: File,
    /// Bytes of the current segment handed to the OS (not necessarily synced).
    file_offset: u64,
    /// The current segment's preallocated size, from its metadata.
    segment_bytes: u64,
    /// Bytes of the current segment written with data or zeros (see
    /// `zero_ahead`); beyond it the file may be sparse.
    zeroed_to: u64,
    /// Encoded records not yet written to the file.
    buf: Vec<u8>,
    /// Written to the file since the last fdatasync.
    unsynced: bool,
    log: LogState,
    /// The segment the newest snapshot marker was first written to: release keeps
    /// it and everything after it.
    snapshot_seq: Option<u64>,
    records_written: u64,
    bytes_written: u64,
    /// Set by the first I/O error; every later call fails with it.
    poisoned: Option<Arc<WalError>>,
    /// Holds the directory's advisory lock for as long as the WAL is open.
    _lock: File,
}

fn lock_dir(dir: &Path) -> Result<File, WalError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_err(&path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(WalError::Locked {
            dir: dir.to_path_buf(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(io_err(&path)(e)),
    }
}

impl Wal {
    /// Creates a new, empty WAL in `dir` (created if missing), with default options.
    pub fn create(dir: impl AsRef<Path>, cluster_id: u64, member_id: u64) -> Result<Wal, WalError> {
        Self::create_with(dir, cluster_id, member_id, WalOptions::default())
    }

    pub fn create_with(
        dir: impl AsRef<Path>,
        cluster_id: u64,
        member_id: u64,
        options: WalOptions,
    ) -> Result<Wal, WalError> {
        options.validate()?;
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            segment::sync_dir(parent)?;
        }
        let lock = lock_dir(&dir)?;
        segment::remove_tmp_files(&dir)?;
        if !segment::list(&dir)?.is_empty() {
            return Err(WalError::AlreadyExists { dir });
        }
        let log = LogState::new();
        let mut head = Vec::new();
        let meta = Metadata {
            cluster_id,
            member_id,
            seq: 1,
            first_index: 1,
            segment_bytes: options.segment_bytes,
        };
        let head_records = encode_head(&mut head, &meta, &log);
        let (file, path) = segment::create(&dir, 1, 1, options.segment_bytes, &head)?;
        Ok(Wal {
            dir,
            options,
            cluster_id,
            member_id,
            segments: vec![SegmentInfo {
                seq: 1,
                path,
                max_entry_index: 0,
            }],
            file,
            file_offset: head.len() as u64,
            zeroed_to: head.len() as u64,
            segment_bytes: options.segment_bytes,
            buf: Vec::new(),
            unsynced: false,
            log,
            snapshot_seq: None,
            records_written: head_records,
            bytes_written: head.len() as u64,
            poisoned: None,
            _lock: lock,
        })
    }

    /// Opens an existing WAL with default options and replays it.
    pub fn open(dir: impl AsRef<Path>) -> Result<(Wal, Replayed), WalError> {
        Self::open_with(dir, WalOptions::default())
    }

    /// Opens and replays every segment in order. A torn tail is truncated (and
    /// fsynced) before this returns; appends continue after the last good record.
    pub fn open_with(
        dir: impl AsRef<Path>,
        options: WalOptions,
    ) -> Result<(Wal, Replayed), WalError> {
        options.validate()?;
        let dir = dir.as_ref().to_path_buf();
        let lock = lock_dir(&dir)?;
        segment::remove_tmp_files(&dir)?;
        let names = segment::list(&dir)?;
        let (Some(first), Some(last)) = (names.first(), names.last()) else {
            return Err(WalError::NotFound { dir });
        };

        let mut log = LogState::starting_after(first.first_index.saturating_sub(1));
        let mut entries: Vec<Entry> = Vec::new();
        let mut ids: Option<(u64, u64)> = None;
        let mut snapshot_seq = None;
        let mut segments = Vec::with_capacity(names.len());
        let mut torn_tail = None;
        let mut last_scan = None;
        for (k, name) in names.iter().enumerate() {
            let is_last = k + 1 == names.len();
            let path = &name.path;
            let bytes = fs::read(path).map_err(io_err(path))?;
            let scanned = segment::scan(path, &bytes, is_last)?;
            let meta = scanned.meta;
            let corrupt = |offset: u64, reason: String| WalError::Corrupt {
                path: path.clone(),
                offset,
                reason,
            };
            if (meta.seq, meta.first_index) != (name.seq, name.first_index) {
                return Err(corrupt(
                    0,
                    format!(
                        "metadata says seq {} first index {}, the file name disagrees",
                        meta.seq, meta.first_index
                    ),
                ));
            }
            match ids {
                None => ids = Some((meta.cluster_id, meta.member_id)),
                Some(first_ids) if first_ids != (meta.cluster_id, meta.member_id) => {
                    return Err(corrupt(
                        0,
                        format!(
                            "cluster/member id {:x}/{:x} differ from {:x}/{:x} in the first segment",
                            meta.cluster_id, meta.member_id, first_ids.0, first_ids.1
                        ),
                    ));
                }
                Some(_) => {}
            }
            let mut max_entry_index = 0;
            for (offset, rec) in scanned.records.iter().cloned() {
                match rec {
                    Record::Metadata(_) => {
                        return Err(corrupt(offset, "a second metadata record".into()))
                    }
                    Record::Entry(e) => {
                        log.append(e.index, e.term)
                            .map_err(|r| corrupt(offset, r))?;
                        if let Some(first) = entries.first() {
                            if e.index <= first.index {
                                entries.clear();
                            } else {
                                entries.truncate((e.index - first.index) as usize);
                            }
                        }
                        max_entry_index = max_entry_index.max(e.index);
                        entries.push(e);
                    }
                    Record::HardState(hs) => {
                        log.set_hard_state(hs).map_err(|r| corrupt(offset, r))?
                    }
                    Record::Snapshot(meta) => {
                        let index = meta.index;
                        if log.snapshot.as_ref() != Some(&meta) {
                            snapshot_seq = Some(name.seq);
                        }
                        match log.snapshot(&meta).map_err(|r| corrupt(offset, r))? {
                            SnapshotEffect::Clear => entries.clear(),
                            SnapshotEffect::KeepAfter => {
                                let drop = entries.iter().take_while(|e| e.index <= index).count();
                                entries.drain(..drop);
                            }
                        }
                    }
                }
            }
            segments.push(SegmentInfo {
                seq: name.seq,
                path: path.clone(),
                max_entry_index,
            });
            if is_last {
                last_scan = Some((scanned.end, meta.segment_bytes, scanned.torn));
            }
        }

        // Entries before the newest snapshot are only ever released, never lost:
        // the known log must start exactly at the snapshot (or at index 1).
        let expected_base = log.snapshot.as_ref().map_or(0, |s| s.index);
        if log.base_index() != expected_base {
            return Err(WalError::Corrupt {
                path: first.path.clone(),
                offset: 0,
                reason: format!(
                    "the log in the remaining segments starts after index {}, but the newest snapshot marker is at {expected_base}: entries in between are missing",
                    log.base_index()
                ),
            });
        }
        debug_assert!(entries.first().is_none_or(|e| e.index == expected_base + 1));

        let Some((end, segment_bytes, torn)) = last_scan else {
            return Err(WalError::NotFound { dir });
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&last.path)
            .map_err(io_err(&last.path))?;
        if let Some(torn) = torn {
            tracing::warn!(
                path = %last.path.display(),
                offset = torn.offset,
                reason = %torn.reason,
                "WAL: truncating a torn record at the tail of the last segment"
            );
            // Cut everything from the torn record on, then extend back to the
            // preallocated size with zeros so the end marker is where appends resume.
            file.set_len(end).map_err(io_err(&last.path))?;
            file.set_len(segment_bytes).map_err(io_err(&last.path))?;
            file.sync_all().map_err(io_err(&last.path))?;
            torn_tail = Some(TornTail {
                path: last.path.clone(),
                offset: torn.offset,
                reason: torn.reason,
            });
        }
        file.seek(SeekFrom::Start(end))
            .map_err(io_err(&last.path))?;

        let (cluster_id, member_id) = ids.unwrap_or_default();
        let replayed = Replayed {
            cluster_id,
            member_id,
            hard_state: log.hard_state,
            snapshot: log.snapshot.clone(),
            entries,
            torn_tail,
        };
        let wal = Wal {
            dir,
            options,
            cluster_id,
            member_id,
            segments,
            file,
            file_offset: end,
            zeroed_to: end,
            segment_bytes,
            buf: Vec::new(),
            unsynced: false,
            log,
            snapshot_seq,
            records_written: 0,
            bytes_written: 0,
            poisoned: None,
            _lock: lock,
        };
        Ok((wal, replayed))
    }

    /// Buffers `entries` (each one replacing any entries at or after its index)
    /// and then `hard_state`. Nothing is durable until [`Wal::sync`]. All or
    /// nothing: a rejected call writes and changes nothing.
    pub fn append(
        &mut self,
        entries: &[Entry],
        hard_state: Option<HardState>,
    ) -> Result<(), WalError> {
        self.write(None, entries, hard_state)
    }

    /// Buffers a snapshot marker: the state machine holds everything up to
    /// `meta.index`, whose entry has `meta.term`, and `meta.conf` is the membership
    /// in force there. Write the snapshot itself durably first.
    pub fn save_snapshot_marker(&mut self, meta: &SnapshotMeta) -> Result<(), WalError> {
        self.write(Some(meta), &[], None)
    }

    /// Writes what is buffered and fdatasyncs the current segment (a no-op when
    /// nothing was written since the last sync).
    pub fn sync(&mut self) -> Result<(), WalError> {
        self.sync_counted().map(|_| ())
    }

    /// Deletes the oldest segments whose entries are all below `index` and also at
    /// or below the newest snapshot, stopping at the segment that holds that
    /// snapshot marker and never touching the current segment. Syncs first, so the
    /// marker is durable before anything it stands for disappears. Returns how
    /// many segments were deleted.
    pub fn release_to(&mut self, index: u64) -> Result<usize, WalError> {
        self.check_poisoned()?;
        self.sync()?;
        let (Some(snap_index), Some(snap_seq)) = (
            self.log.snapshot.as_ref().map(|s| s.index),
            self.snapshot_seq,
        ) else {
            return Ok(0);
        };
        let below = index.min(snap_index.saturating_add(1));
        let removable = self
            .segments
            .iter()
            .take(self.segments.len() - 1)
            .take_while(|s| s.seq < snap_seq && s.max_entry_index < below)
            .count();
        if removable == 0 {
            return Ok(0);
        }
        // Oldest first: a crash part-way leaves a contiguous run of segments.
        for s in &self.segments[..removable] {
            if let Err(e) = fs::remove_file(&s.path) {
                return Err(self.poison(io_err(&s.path)(e)));
            }
        }
        if let Err(e) = segment::sync_dir(&self.dir) {
            return Err(self.poison(e));
        }
        self.segments.drain(..removable);
        Ok(removable)
    }

    /// The last index in the log (a snapshot index if the log is empty after it).
    pub fn last_index(&self) -> u64 {
        self.log.last_index()
    }

    pub fn last_term(&self) -> u64 {
        self.log.last_term()
    }

    pub fn hard_state(&self) -> HardState {
        self.log.hard_state
    }

    /// The newest snapshot marker, with its membership.
    pub fn snapshot(&self) -> Option<&SnapshotMeta> {
        self.log.snapshot.as_ref()
    }

    pub fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    pub fn member_id(&self) -> u64 {
        self.member_id
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Records encoded since this `Wal` was created or opened (segment heads included).
    pub fn records_written(&self) -> u64 {
        self.records_written
    }

    /// Bytes encoded since this `Wal` was created or opened.
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    fn check_poisoned(&self) -> Result<(), WalError> {
        match &self.poisoned {
            Some(cause) => Err(WalError::Stopped {
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    fn poison(&mut self, e: WalError) -> WalError {
        if self.poisoned.is_none() {
            self.poisoned = Some(Arc::new(e.clone()));
        }
        e
    }

    fn write(
        &mut self,
        snapshot: Option<&SnapshotMeta>,
        entries: &[Entry],
        hard_state: Option<HardState>,
    ) -> Result<(), WalError> {
        self.check_poisoned()?;
        // Validate the whole call on a copy first, so a refused call changes nothing.
        let mut next = self.log.clone();
        if let Some(meta) = snapshot {
            next.snapshot(meta).map_err(invalid)?;
        }
        // Every record of this call must fit a fresh segment after the head it
        // would get there (which carries the marker, if this call writes one).
        let max = self.options.record_bytes_max(&next);
        if let Some(meta) = snapshot {
            let record_bytes = record::snapshot_record_bytes(meta);
            if record_bytes > max {
                return Err(invalid(format!(
                    "a snapshot marker with {} voters and {} learners needs {record_bytes} bytes after a {}-byte segment head; a {}-byte segment has room for {max}",
                    meta.conf.voters.len(),
                    meta.conf.learners.len(),
                    head_bytes(&next),
                    self.options.segment_bytes
                )));
            }
        }
        if hard_state.is_some() && record::HARD_STATE_RECORD_BYTES > max {
            return Err(invalid(format!(
                "a hard state record does not fit a {}-byte segment after its {}-byte head",
                self.options.segment_bytes,
                head_bytes(&next)
            )));
        }
        for e in entries {
            let record_bytes = record::entry_record_bytes(e);
            if record_bytes > max {
                return Err(WalError::EntryTooLarge {
                    index: e.index,
                    record_bytes,
                    max_bytes: max,
                });
            }
            next.append(e.index, e.term).map_err(invalid)?;
        }
        if let Some(hs) = hard_state {
            next.set_hard_state(hs).map_err(invalid)?;
        }
        // Then apply record by record, so a segment started part-way carries the
        // state as of its position in the log. The marker goes first (entries
        // after an installed snapshot follow it), the hard state last (its commit
        // may point at the entries).
        let result = self.write_validated(snapshot, entries, hard_state);
        match result {
            Ok(()) => {
                debug_assert_eq!(self.log, next);
                Ok(())
            }
            Err(e) => Err(self.poison(e)),
        }
    }

    fn write_validated(
        &mut self,
        snapshot: Option<&SnapshotMeta>,
        entries: &[Entry],
        hard_state: Option<HardState>,
    ) -> Result<(), WalError> {
        if let Some(meta) = snapshot {
            let changed = self.log.snapshot.as_ref() != Some(meta);
            self.log.snapshot(meta).map_err(invalid)?;
            self.put_record(|buf| record::encode_snapshot(buf, meta), None)?;
            if changed {
                self.snapshot_seq = Some(self.current_seq());
            }
        }
        for e in entries {
            self.log.append(e.index, e.term).map_err(invalid)?;
            self.put_record(|buf| record::encode_entry(buf, e), Some(e.index))?;
        }
        if let Some(hs) = hard_state {
            self.log.set_hard_state(hs).map_err(invalid)?;
            self.put_record(|buf| record::encode_hard_state(buf, &hs), None)?;
        }
        Ok(())
    }

    fn current_seq(&self) -> u64 {
        self.segments.last().map_or(0, |s| s.seq)
    }

    /// Encodes one record into the buffer, starting a new segment first if it
    /// would not fit in the current one. `self.log` already includes the record.
    fn put_record(
        &mut self,
        encode: impl Fn(&mut Vec<u8>),
        entry_index: Option<u64>,
    ) -> Result<(), WalError> {
        let before = self.buf.len();
        encode(&mut self.buf);
        let record_bytes = (self.buf.len() - before) as u64;
        if self.file_offset + self.buf.len() as u64 > self.segment_bytes {
            self.buf.truncate(before);
            self.roll_over(entry_index)?;
            encode(&mut self.buf);
        }
        self.records_written += 1;
        self.bytes_written += record_bytes;
        if let (Some(index), Some(seg)) = (entry_index, self.segments.last_mut()) {
            seg.max_entry_index = seg.max_entry_index.max(index);
        }
        if self.buf.len() >= self.options.write_buffer_bytes {
            self.flush_buf()?;
        }
        Ok(())
    }

    /// Closes the current segment (everything written and fdatasynced, so only the
    /// newest segment can ever hold a torn tail) and starts the next one.
    fn roll_over(&mut self, pending_entry: Option<u64>) -> Result<(), WalError> {
        self.flush_buf()?;
        let path = self
            .segments
            .last()
            .map(|s| s.path.clone())
            .unwrap_or_default();
        self.file.sync_data().map_err(io_err(&path))?;
        self.unsynced = false;

        // The name's first index is the log's last index + 1 as of the record that
        // starts the segment. `self.log` already includes that record: for an
        // entry, that is its own index (an overwrite may be below the old end).
        // The head's hard state and marker are current either way (an entry
        // changes neither; a pending marker or hard state is repeated, harmlessly).
        let first_index = pending_entry.unwrap_or(self.log.last_index() + 1);
        let seq = self.current_seq() + 1;
        let segment_bytes = self.options.segment_bytes;
        let meta = Metadata {
            cluster_id: self.cluster_id,
            member_id: self.member_id,
            seq,
            first_index,
            segment_bytes,
        };
        let mut head = Vec::new();
        let head_records = encode_head(&mut head, &meta, &self.log);
        let (file, path) = segment::create(&self.dir, seq, first_index, segment_bytes, &head)?;
        self.file = file;
        self.file_offset = head.len() as u64;
        self.zeroed_to = self.file_offset;
        self.segment_bytes = segment_bytes;
        self.segments.push(SegmentInfo {
            seq,
            path,
            max_entry_index: 0,
        });
        self.records_written += head_records;
        self.bytes_written += head.len() as u64;
        Ok(())
    }

    fn flush_buf(&mut self) -> Result<(), WalError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let path = self
            .segments
            .last()
            .map(|s| s.path.clone())
            .unwrap_or_default();
        self.file.write_all(&self.buf).map_err(io_err(&path))?;
        self.file_offset += self.buf.len() as u64;
        self.zeroed_to = self.zeroed_to.max(self.file_offset);
        self.buf.clear();
        self.unsynced = true;
        Ok(())
    }

    /// Keeps `ZERO_AHEAD_BYTES` past the write position written with zeros, so
    /// the fdatasyncs of the records that land there change no file metadata.
    /// Into a sparse region every new 4 KiB block is an allocation, and ext4
    /// commits its journal on that block's fdatasync (one more disk flush, and
    /// its journal is shared by every file on the disk); an overwrite needs
    /// none. The zeros reach the disk with the next fdatasync; they read as the
    /// end of written data, as the sparse region did.
    fn zero_ahead(&mut self) -> Result<(), WalError> {
        use std::os::unix::fs::FileExt;
        let want = (self.file_offset + ZERO_AHEAD_BYTES).min(self.segment_bytes);
        if self.zeroed_to >= self.file_offset + ZERO_AHEAD_BYTES / 2 || self.zeroed_to >= want {
            return Ok(());
        }
        let path = self.segments.last().map(|s| s.path.clone()).unwrap_or_default();
        let zeros = vec![0u8; (want - self.zeroed_to) as usize];
        self.file.write_all_at(&zeros, self.zeroed_to).map_err(io_err(&path))?;
        self.zeroed_to = want;
        self.unsynced = true;
        Ok(())
    }

    /// Like `sync`, and says whether an fdatasync actually ran.
    fn sync_counted(&mut self) -> Result<bool, WalError> {
        self.check_poisoned()?;
        let result = self.flush_buf().and_then(|()| {
            if self.unsynced {
                self.zero_ahead()?;
            }
            if !self.unsynced {
                return Ok(false);
            }
            let path = self
                .segments
                .last()
                .map(|s| s.path.clone())
                .unwrap_or_default();
            self.file.sync_data().map_err(io_err(&path))?;
            self.unsynced = false;
            Ok(true)
        });
        result.map_err(|e| self.poison(e))
    }
}

/// Metadata, hard state and the newest snapshot marker (membership included):
/// enough for the segment to replay without its predecessors. Returns the number
/// of records written.
fn encode_head(buf: &mut Vec<u8>, meta: &Metadata, log: &LogState) -> u64 {
    record::encode_metadata(buf, meta);
    record::encode_hard_state(buf, &log.hard_state);
    match &log.snapshot {
        Some(snapshot) => {
            record::encode_snapshot(buf, snapshot);
            3
        }
        None => 2,
    }
}

/// The bytes [`encode_head`] writes for `log`.
fn head_bytes(log: &LogState) -> usize {
    record::SEGMENT_HEAD_BASE_BYTES
        + log
            .snapshot
            .as_ref()
            .map_or(0, record::snapshot_record_bytes)
}

#[cfg(test)]
mod tests;
