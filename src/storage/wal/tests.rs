//! Unit tests for the WAL as a whole: round trips through real files, the
//! recovery rules of the module doc (torn tail vs. corruption), release, and the
//! group-commit writer. No test depends on timing.

use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::record::{self, FRAME_HEADER_BYTES};
use super::*;
use crate::raft::{ConfState, EntryKind};

const SMALL: WalOptions = WalOptions {
    segment_bytes: SEGMENT_BYTES_MIN,
    write_buffer_bytes: 512,
};

fn ent(index: u64, term: u64) -> Entry {
    Entry {
        term,
        index,
        kind: EntryKind::Normal,
        data: format!("entry {index} of term {term}").into_bytes(),
    }
}

fn ents(range: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
    range.map(|i| ent(i, term)).collect()
}

fn hs(term: u64, vote: u64, commit: u64) -> HardState {
    HardState { term, vote, commit }
}

/// A snapshot marker whose membership is `voters`/`learners`.
fn snap_conf(index: u64, term: u64, voters: &[u64], learners: &[u64]) -> SnapshotMeta {
    SnapshotMeta {
        index,
        term,
        conf: ConfState {
            voters: voters.to_vec(),
            learners: learners.to_vec(),
        },
    }
}

/// A snapshot marker of a three-member cluster with one learner.
fn snap(index: u64, term: u64) -> SnapshotMeta {
    snap_conf(index, term, &[2, 5, 9], &[7])
}

fn indexes(entries: &[Entry]) -> Vec<(u64, u64)> {
    entries.iter().map(|e| (e.index, e.term)).collect()
}

/// The segment files in `dir`, oldest first (without `segment::list`'s checks).
fn segment_paths(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|d| d.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    paths.sort();
    paths
}

/// Where the next record would go in the current segment (end of written data).
fn write_end(wal: &Wal) -> u64 {
    wal.file_offset + wal.buf.len() as u64
}

/// Counts `warn!` events, to check that a torn tail is reported, not silent.
struct CountWarnings(Arc<AtomicUsize>);

impl tracing::Subscriber for CountWarnings {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if *event.metadata().level() == tracing::Level::WARN {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Opens the WAL and returns it with the number of warnings logged while opening.
fn open_counting_warnings(
    dir: &Path,
    options: WalOptions,
) -> (Result<(Wal, Replayed), WalError>, usize) {
    let count = Arc::new(AtomicUsize::new(0));
    let result = tracing::subscriber::with_default(CountWarnings(count.clone()), || {
        Wal::open_with(dir, options)
    });
    (result, count.load(Ordering::SeqCst))
}

fn patch(path: &Path, offset: u64, bytes: &[u8]) {
    let mut f = OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(bytes).unwrap();
}

fn read_at(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    let mut f = fs::File::open(path).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    let mut buf = vec![0; len];
    f.read_exact(&mut buf).unwrap();
    buf
}

fn expect_corrupt(result: Result<(Wal, Replayed), WalError>) -> (PathBuf, u64, String) {
    match result {
        Err(e @ WalError::Corrupt { .. }) => {
            let text = e.to_string();
            let WalError::Corrupt {
                path,
                offset,
                reason,
            } = e
            else {
                unreachable!()
            };
            assert!(text.contains(&path.display().to_string()), "{text}");
            assert!(text.contains(&format!("byte offset {offset}")), "{text}");
            (path, offset, reason)
        }
        Err(other) => panic!("expected Corrupt, got {other}"),
        Ok((_, replayed)) => panic!(
            "expected Corrupt, replay succeeded: {:?}",
            indexes(&replayed.entries)
        ),
    }
}

#[test]
fn create_append_sync_reopen_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("member/wal");
    let mut wal = Wal::create(&dir, 0xc1, 0x5e).unwrap();
    let mut conf = ent(1, 1);
    conf.kind = EntryKind::ConfChange;
    let mut written = vec![conf];
    written.extend(ents(2..=5, 1));
    written.push(Entry {
        term: 2,
        index: 6,
        kind: EntryKind::Normal,
        data: Vec::new(),
    }); // a leader's no-op
    wal.append(&written, Some(hs(2, 0x5e, 4))).unwrap();
    wal.sync().unwrap();
    assert_eq!((wal.last_index(), wal.last_term()), (6, 2));
    drop(wal);

    let (mut wal, replayed) = Wal::open(&dir).unwrap();
    assert_eq!(
        replayed,
        Replayed {
            cluster_id: 0xc1,
            member_id: 0x5e,
            hard_state: hs(2, 0x5e, 4),
            snapshot: None,
            entries: written.clone(),
            torn_tail: None,
        }
    );
    assert_eq!(
        (wal.last_index(), wal.last_term(), wal.hard_state()),
        (6, 2, hs(2, 0x5e, 4))
    );

    // Appends continue after the replayed records.
    wal.append(&[ent(7, 2)], Some(hs(2, 0x5e, 6))).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let (_, replayed) = Wal::open(&dir).unwrap();
    written.push(ent(7, 2));
    assert_eq!(replayed.entries, written);
    assert_eq!(replayed.hard_state, hs(2, 0x5e, 6));
}

#[test]
fn segment_file_is_named_and_preallocated() {
    let tmp = tempfile::tempdir().unwrap();
    let wal = Wal::create_with(tmp.path(), 1, 2, SMALL).unwrap();
    let paths = segment_paths(tmp.path());
    assert_eq!(paths.len(), 1);
    assert_eq!(
        paths[0].file_name().unwrap(),
        "0000000000000001-0000000000000001.wal"
    );
    assert_eq!(fs::metadata(&paths[0]).unwrap().len(), SEGMENT_BYTES_MIN);
    drop(wal);
}

#[test]
fn a_sync_leaves_the_region_past_the_records_written_with_zeros_and_the_rest_sparse() {
    use std::os::unix::fs::MetadataExt;
    let tmp = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(tmp.path(), 1, 2).unwrap();
    let allocated = |wal: &Wal| fs::metadata(&segment_paths(wal.dir())[0]).unwrap().blocks() * 512;
    // Sparse past the head until the first sync.
    assert!(allocated(&wal) < ZERO_AHEAD_BYTES / 2, "{} bytes allocated", allocated(&wal));
    wal.append(&ents(1..=3, 1), Some(hs(1, 2, 3))).unwrap();
    wal.sync().unwrap();
    let end = write_end(&wal);
    assert!(allocated(&wal) >= end + ZERO_AHEAD_BYTES / 2, "{} bytes allocated, records end at {end}", allocated(&wal));
    assert!(allocated(&wal) < SEGMENT_BYTES_DEFAULT / 2, "the whole segment was filled");
    assert!(read_at(&segment_paths(wal.dir())[0], end, 4096).iter().all(|&b| b == 0));
    // Records keep landing in the zeroed region, which moves with them.
    let mut index = 4;
    while write_end(&wal) < end + ZERO_AHEAD_BYTES {
        wal.append(&[ent(index, 1)], None).unwrap();
        wal.sync().unwrap();
        index += 1;
    }
    assert!(allocated(&wal) >= write_end(&wal) + ZERO_AHEAD_BYTES / 2);
    drop(wal);
    // The zeros read as the end of the log.
    let (_, replayed) = Wal::open(tmp.path()).unwrap();
    assert_eq!(replayed.entries.len() as u64, index - 1);
    assert_eq!(replayed.torn_tail, None);
}

#[test]
fn unsynced_buffered_records_are_not_on_disk_but_synced_ones_are() {
    let tmp = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(tmp.path(), 1, 2).unwrap();
    wal.append(&ents(1..=2, 1), None).unwrap();
    wal.sync().unwrap();
    wal.append(&ents(3..=4, 1), None).unwrap(); // below the write buffer size: still in memory
    drop(wal);
    let (_, replayed) = Wal::open(tmp.path()).unwrap();
    assert_eq!(indexes(&replayed.entries), vec![(1, 1), (2, 1)]);
}

#[test]
fn overwriting_a_suffix_replaces_it_and_replay_agrees() {
    let tmp = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(tmp.path(), 1, 2).unwrap();
    wal.append(&ents(1..=5, 1), None).unwrap();
    // Raft paper §5.3: a conflicting entry at 3 deletes 3.. and what follows it.
    wal.append(&ents(3..=4, 2), None).unwrap();
    assert_eq!((wal.last_index(), wal.last_term()), (4, 2));
    wal.sync().unwrap();
    drop(wal);

    let (mut wal, replayed) = Wal::open(tmp.path()).unwrap();
    assert_eq!(
        indexes(&replayed.entries),
        vec![(1, 1), (2, 1), (3, 2), (4, 2)]
    );
    assert_eq!(replayed.entries[2], ent(3, 2));

    // Overwrite again after a reopen, reaching back to index 2.
    wal.append(&[ent(2, 3)], None).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let (_, replayed) = Wal::open(tmp.path()).unwrap();
    assert_eq!(indexes(&replayed.entries), vec![(1, 1), (2, 3)]);
}

#[test]
fn appends_raft_never_makes_are_refused_and_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(tmp.path(), 1, 2).unwrap();
    wal.append(&ents(1..=3, 2), Some(hs(2, 2, 3))).unwrap();
    let refused = [
        (vec![ent(5, 2)], None),              // gap
        (vec![ent(4, 1)], None),              // term goes backwards
        (vec![ent(3, 3)], None),              // rewrites a committed entry
        (vec![ent(4, 2), ent(6, 2)], None),   // gap inside the batch: whole call refused
        (vec![], Some(hs(1, 0, 3))),          // term goes backwards
        (vec![], Some(hs(2, 3, 3))),          // vote changes within a term
        (vec![ent(4, 2)], Some(hs(2, 2, 5))), // commit past the log
    ];
    for (entries, hard_state) in refused {
        let err = wal.append(&entries, hard_state).unwrap_err();
        assert!(matches!(err, WalError::InvalidAppend { .. }), "{err}");
        assert_eq!(
            (wal.last_index(), wal.hard_state()),
            (3, hs(2, 2, 3)),
            "{err}"
        );
    }
    let big = Entry {
        term: 2,
        index: 4,
        kind: EntryKind::Normal,
        data: vec![7; SEGMENT_BYTES_DEFAULT as usize],
    };
    assert!(matches!(
        wal.append(&[big], None),
        Err(WalError::EntryTooLarge { index: 4, .. })
    ));
    // Still healthy.
    wal.append(&[ent(4, 2)], None).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let (_, replayed) = Wal::open(tmp.path()).unwrap();
    assert_eq!(replayed.entries.len(), 4);
}

#[test]
fn segments_roll_over_when_full_and_replay_across_them() {
    let tmp = tempfile::tempdir().unwrap();
    let mut wal = Wal::create_with(tmp.path(), 1, 2, SMALL).unwrap();
    for i in 1..=300 {
        wal.append(&[ent(i, 1 + i / 100)], None).unwrap();
    }
    wal.append(&[], Some(hs(4, 1, 250))).unwrap();
    wal.sync().unwrap();
    let segments = wal.segment_count();
    assert!(
        segments >= 4,
        "300 entries of ~55 bytes in 4 KiB segments: got {segments}"
    );
    // Names: consecutive sequence numbers; first index = the first entry written there.
    let paths = segment_paths(tmp.path());
    assert_eq!(paths.len(), segments);
    for path in &paths {
        assert_eq!(
            fs::metadata(path).unwrap().len(),
            SEGMENT_BYTES_MIN,
            "{}",
            path.display()
        );
    }
    // An overwrite that reaches back into an earlier segment.
    wal.append(&[ent(260, 3), ent(261, 4)], Some(hs(4, 1, 260)))
        .unwrap();
    wal.sync().unwrap();
    drop(wal);

    let (mut wal, replayed) = Wal::open_with(tmp.path(), SMALL).unwrap();
    let mut want: Vec<Entry> = (1..=259).map(|i| ent(i, 1 + i / 100)).collect();
    want.extend([ent(260, 3), ent(261, 4)]);
    assert_eq!(replayed.entries, want);
    assert_eq!(replayed.hard_state, hs(4, 1, 260));
    // Appending continues, and rolls over again when needed.
    for i in 262..=400 {
        wal.append(&[ent(i, 4)], None).unwrap();
    }
    wal.sync().unwrap();
    assert!(wal.segment_count() > segments);
    drop(wal);
    let (_, replayed) = Wal::open_with(tmp.path(), SMALL).unwrap();
    assert_eq!(replayed.entries.len(), 400);
    assert_eq!(replayed.entries.last(), Some(&ent(400, 4)));
}

#[test]
fn torn_tail_cut_mid_record_is_truncated_with_a_warning_and_appends_continue() {
    let tmp = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(tmp.path(), 1, 2).unwrap();
    wal.append(&ents(1..=3, 1), None).unwrap();
    wal.sync().unwrap();
    let good_end = write_end(&wal);
    wal.append(&[ent(4, 1)], None).unwrap();
    wal.sync().unwrap();
    let end = write_end(&wal);
    drop(wal);
    // A crash mid-write on a file that was never preallocated further.
    let path = segment_paths(tmp.path()).remove(0);
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(end - 5)
        .unwrap();

    let (result, warnings) = open_counting_warnings(tmp.path(), WalOptions::default());
    let (mut wal, replayed) = result.unwrap();
    assert_eq!(warnings, 1);
    assert_eq!(indexes(&replayed.entries), vec![(1, 1), (2, 1), (3, 1)]);
    let torn = replayed.torn_tail.unwrap();
    assert_eq!((torn.path, torn.offset), (path.clone(), good_end));
    // Repaired: preallocated again, zeros from the cut on.
    assert_eq!(fs::metadata(&path).unwrap().len(), SEGMENT_BYTES_DEFAULT);
    assert!(read_at(&path, good_end, 64).iter().all(|&b| b == 0));

    wal.append(&[ent(4, 2)], None).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let (result, warnings) = open_counting_warnings(tmp.path(), WalOptions::default());
    let (_, replayed) = result.unwrap();
    assert_eq!(warnings, 0);
    assert_eq!(replayed.torn_tail, None);
    assert_eq!(
        indexes(&replayed.entries),
        vec![(1, 1), (2, 1), (3, 1), (4, 2)]
    );
}

#[test]
fn torn_tail_with_a_bad_crc_on_the_final_record_is_truncated() {
    let tmp = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(tmp.path(), 1, 2).unwrap();
    wal.append(&ents(1..=3, 1), Some(hs(1, 0, 2))).unwrap();
    wal.sync().unwrap();
    let last_start = write_end(&wal);
    wal.append(&[ent(4, 1)], None).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let path = segment_paths(tmp.path()).remove(0);
    // Flip a payload byte of the last record (only zeros follow it).
    let at = last_start + FRAME_HEADER_BYTES as u64 + 20;
    let byte = read_at(&path, at, 1)[0];
    patch(&path, at, &[byte ^ 0x40]);

    let (result, warnings) = open_counting_warnings(tmp.path(), WalOptions::default());
    let (mut wal, replayed) = result.unwrap();
    assert_eq!(warnings, 1);
    assert_eq!(indexes(&replayed.entries), vec![(1, 1), (2, 1), (3, 1)]);
    assert_eq!(replayed.hard_state, hs(1, 0, 2));
    assert_eq!(replayed.torn_tail.map(|t| t.offset), Some(last_start));
    wal.append(&[ent(4, 1)], None).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let (_, replayed) = Wal::open(tmp.path()).unwrap();
    assert_eq!(replayed.entries.len(), 4);
}

#[test]
fn bad_crc_in_the_middle_is_corruption_naming_file_and_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(tmp.path(), 1, 2).unwrap();
    wal.append(&ents(1..=2, 1), None).unwrap();
    let second_start = write_end(&wal) - record::entry_record_bytes(&ent(2, 1)) as u64;
    wal.append(&ents(3..=5, 1), None).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let path = segment_paths(tmp.path()).remove(0);
    let at = second_start + FRAME_HEADER_BYTES as u64 + 18;
    let byte = read_at(&path, at, 1)[0];
    patch(&path, at, &[byte ^ 0x01]);

    let (result, warnings) = open_counting_warnings(tmp.path(), WalOptions::default());
    let (err_path, offset, reason) = expect_corrupt(result);
    assert_eq!((err_path, offset), (path.clone(), second_start));
    assert!(reason.contains("CRC"), "{reason}");
    assert_eq!(warnings, 0);
    // Nothing was repaired or truncated behind the operator's back.
    assert_eq!(read_at(&path, at, 1)[0], byte ^ 0x01);
    assert!(matches!(
        Wal::open(tmp.path()),
        Err(WalError::Corrupt { .. })
    ));
}

#[test]
fn a_bad_record_in_a_segment_that_is_not_the_last_is_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    let mut wal = Wal::create_with(tmp.path(), 1, 2, SMALL).unwrap();
    let mut first_segment_last = (0, 0);
    for i in 1..=150 {
        wal.append(&[ent(i, 1)], None).unwrap();
        if wal.segment_count() == 1 {
            first_segment_last = (write_end(&wal), i);
        }
    }
    wal.sync().unwrap();
    assert!(wal.segment_count() >= 2);
    drop(wal);
    // The final record of segment 1, followed only by zeros: it would pass as torn
    // in the last segment, but segment 1 was complete and fsynced before 2 existed.
    let path = segment_paths(tmp.path()).remove(0);
    let (end, last) = first_segment_last;
    let last_start = end - record::entry_record_bytes(&ent(last, 1)) as u64;
    patch(&path, last_start + FRAME_HEADER_BYTES as u64 + 1, &[0xff]);
    let (err_path, offset, reason) = expect_corrupt(Wal::open_with(tmp.path(), SMALL));
    assert_eq!((err_path, offset), (path, last_start));
    assert!(reason.contains("not the last"), "{reason}");
}

#[test]
fn corrupted_length_fields_are_errors_not_panics_or_huge_allocations() {
    for (name, record_no, len) in [
        ("huge, mid-log", 1usize, 0xffff_fff0u32),
        ("huge, final record", 4, u32::MAX),
        ("past the segment end", 2, (SEGMENT_BYTES_MIN as u32) - 100),
        ("slightly too long, mid-log", 1, 30),
        ("too short, mid-log", 2, 3),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let mut wal = Wal::create_with(tmp.path(), 1, 2, SMALL).unwrap();
        let mut starts = Vec::new();
        for i in 1..=5 {
            starts.push(write_end(&wal));
            wal.append(&[ent(i, 1)], None).unwrap();
        }
        wal.sync().unwrap();
        drop(wal);
        let path = segment_paths(tmp.path()).remove(0);
        patch(&path, starts[record_no], &len.to_le_bytes());
        let (err_path, offset, reason) = expect_corrupt(Wal::open_with(tmp.path(), SMALL));
        assert_eq!(
            (err_path, offset),
            (path, starts[record_no]),
            "{name}: {reason}"
        );
    }
}

#[test]
fn an_index_gap_on_disk_is_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(tmp.path(), 1, 2).unwrap();
    wal.append(&ents(1..=2, 1), None).unwrap();
    wal.sync().unwrap();
    let at = write_end(&wal);
    drop(wal);
    // Valid framing and CRC, but index 4 follows 2: something was lost.
    let mut raw = Vec::new();
    record::encode_entry(&mut raw, &ent(4, 1));
    let path = segment_paths(tmp.path()).remove(0);
    patch(&path, at, &raw);
    let (err_path, offset, reason) = expect_corrupt(Wal::open(tmp.path()));
    assert_eq!((err_path, offset), (path, at));
    assert!(reason.contains("gap"), "{reason}");
}

#[test]
fn non_zero_bytes_after_the_end_marker_are_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(tmp.path(), 1, 2).unwrap();
    wal.append(&ents(1..=2, 1), None).unwrap();
    wal.sync().unwrap();
    let end = write_end(&wal);
    drop(wal);
    let path = segment_paths(tmp.path()).remove(0);
    patch(&path, end + 1000, b"junk");
    let (_, offset, _) = expect_corrupt(Wal::open(tmp.path()));
    assert_eq!(offset, end);
}

#[test]
fn a_missing_segment_is_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    let mut wal = Wal::create_with(tmp.path(), 1, 2, SMALL).unwrap();
    for i in 1..=300 {
        wal.append(&[ent(i, 1)], None).unwrap();
    }
    wal.sync().unwrap();
    drop(wal);
    fs::remove_file(&segment_paths(tmp.path())[2]).unwrap();
    let (_, _, reason) = expect_corrupt(Wal::open_with(tmp.path(), SMALL));
    assert!(reason.contains("missing"), "{reason}");
    // Losing the oldest segment without a snapshot covering it is caught too.
    fs::remove_file(&segment_paths(tmp.path())[0]).unwrap();
    fs::remove_file(&segment_paths(tmp.path())[0]).unwrap();
    let (_, _, reason) = expect_corrupt(Wal::open_with(tmp.path(), SMALL));
    assert!(reason.contains("missing"), "{reason}");
}

#[test]
fn snapshot_marker_and_release_then_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let mut wal = Wal::create_with(tmp.path(), 1, 2, SMALL).unwrap();
    // The hard state is written once, early: later segments must carry it.
    wal.append(&ents(1..=10, 1), Some(hs(1, 2, 10))).unwrap();
    for i in 11..=300 {
        wal.append(&[ent(i, 1)], None).unwrap();
    }
    wal.sync().unwrap();
    let before = wal.segment_count();
    assert_eq!(
        wal.release_to(300).unwrap(),
        0,
        "no snapshot yet: nothing may go"
    );

    wal.save_snapshot_marker(&snap(250, 1)).unwrap();
    // Release asks for more than the snapshot covers: only segments holding
    // entries <= 250, and before the marker's segment, go.
    let removed = wal.release_to(1_000).unwrap();
    assert!(
        removed > 0 && removed < before,
        "removed {removed} of {before}"
    );
    assert_eq!(segment_paths(tmp.path()).len(), before - removed);
    for i in 301..=320 {
        wal.append(&[ent(i, 1)], None).unwrap();
    }
    wal.sync().unwrap();
    drop(wal);

    let (wal, replayed) = Wal::open_with(tmp.path(), SMALL).unwrap();
    assert_eq!(replayed.snapshot, Some(snap(250, 1)));
    assert_eq!(replayed.hard_state, hs(1, 2, 10));
    assert_eq!(
        indexes(&replayed.entries),
        (251..=320).map(|i| (i, 1)).collect::<Vec<_>>()
    );
    assert_eq!(wal.last_index(), 320);
}

#[test]
fn release_keeps_what_replay_needs_after_a_snapshot_in_an_older_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let mut wal = Wal::create_with(tmp.path(), 1, 2, SMALL).unwrap();
    wal.append(&ents(1..=100, 1), None).unwrap();
    wal.save_snapshot_marker(&snap(40, 1)).unwrap();
    wal.append(&ents(101..=400, 2), Some(hs(2, 0, 390)))
        .unwrap();
    wal.sync().unwrap();
    let removed = wal.release_to(41).unwrap();
    let kept = wal.segment_count();
    drop(wal);
    let (_, replayed) = Wal::open_with(tmp.path(), SMALL).unwrap();
    assert_eq!(replayed.snapshot, Some(snap(40, 1)));
    assert_eq!(replayed.entries.first().map(|e| e.index), Some(41));
    assert_eq!(replayed.entries.len(), 360);
    assert_eq!(replayed.hard_state, hs(2, 0, 390));
    assert!(kept >= 2, "removed {removed}, kept {kept}");
}

#[test]
fn a_snapshot_past_the_log_resets_it_and_survives_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(tmp.path(), 1, 2).unwrap();
    wal.append(&ents(1..=5, 1), Some(hs(1, 0, 3))).unwrap();
    // A follower installs the leader's snapshot at 100 (Raft paper §7).
    wal.save_snapshot_marker(&snap_conf(100, 3, &[2], &[]))
        .unwrap();
    assert_eq!((wal.last_index(), wal.last_term()), (100, 3));
    wal.append(&[ent(101, 3)], Some(hs(3, 0, 100))).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let (wal, replayed) = Wal::open(tmp.path()).unwrap();
    assert_eq!(replayed.snapshot, Some(snap_conf(100, 3, &[2], &[])));
    assert_eq!(indexes(&replayed.entries), vec![(101, 3)]);
    assert_eq!(wal.last_index(), 101);
}

#[test]
fn reopen_returns_the_membership_of_the_newest_marker() {
    let tmp = tempfile::tempdir().unwrap();
    let mut wal = Wal::create_with(tmp.path(), 1, 2, SMALL).unwrap();
    wal.append(&ents(1..=50, 1), Some(hs(1, 2, 50))).unwrap();
    wal.save_snapshot_marker(&snap_conf(10, 1, &[2], &[]))
        .unwrap();
    wal.append(&ents(51..=200, 2), Some(hs(2, 2, 200))).unwrap();
    // The membership grew: a later marker carries the new one.
    wal.save_snapshot_marker(&snap(150, 2)).unwrap();
    assert_eq!(wal.snapshot(), Some(&snap(150, 2)));
    wal.sync().unwrap();
    drop(wal);
    let (wal, replayed) = Wal::open_with(tmp.path(), SMALL).unwrap();
    assert_eq!(replayed.snapshot, Some(snap(150, 2)));
    assert_eq!(wal.snapshot(), Some(&snap(150, 2)));
    assert_eq!(
        indexes(&replayed.entries),
        (151..=200).map(|i| (i, 2)).collect::<Vec<_>>()
    );
}

#[test]
fn a_marker_at_an_index_must_keep_its_term_and_membership() {
    let tmp = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(tmp.path(), 1, 2).unwrap();
    wal.append(&ents(1..=5, 1), None).unwrap();
    wal.save_snapshot_marker(&snap(3, 1)).unwrap();
    for bad in [snap_conf(3, 1, &[2, 5], &[7]), snap(2, 1), snap(3, 2)] {
        let err = wal.save_snapshot_marker(&bad).unwrap_err();
        assert!(matches!(err, WalError::InvalidAppend { .. }), "{err}");
    }
    // The same marker again is harmless (a segment head repeats it anyway).
    wal.save_snapshot_marker(&snap(3, 1)).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let (_, replayed) = Wal::open(tmp.path()).unwrap();
    assert_eq!(replayed.snapshot, Some(snap(3, 1)));
    assert_eq!(indexes(&replayed.entries), vec![(4, 1), (5, 1)]);
}

#[test]
fn a_membership_too_large_for_a_segment_head_is_refused_up_front() {
    let tmp = tempfile::tempdir().unwrap();
    let mut wal = Wal::create_with(tmp.path(), 1, 2, SMALL).unwrap();
    wal.append(&ents(1..=5, 1), None).unwrap();
    let voters: Vec<u64> = (1..=400).collect();
    let err = wal
        .save_snapshot_marker(&snap_conf(5, 1, &voters, &[]))
        .unwrap_err();
    assert!(matches!(err, WalError::InvalidAppend { .. }), "{err}");
    // Nothing changed and the WAL still works.
    assert_eq!(wal.snapshot(), None);
    wal.save_snapshot_marker(&snap(5, 1)).unwrap();
    wal.sync().unwrap();
}

/// Records of a segment's head after its metadata (hard state, then the marker).
fn head_records(path: &Path) -> Vec<record::Record> {
    let bytes = fs::read(path).unwrap();
    let scanned = segment::scan(path, &bytes, false).unwrap();
    scanned
        .records
        .into_iter()
        .take(2)
        .map(|(_, r)| r)
        .collect()
}

#[test]
fn a_marker_carried_into_a_new_segment_head_keeps_its_membership() {
    let tmp = tempfile::tempdir().unwrap();
    let mut wal = Wal::create_with(tmp.path(), 1, 2, SMALL).unwrap();
    let meta_bytes = |i| record::snapshot_record_bytes(&snap(i, 1)) as u64;
    // Fill segment 1 until the marker still fits but the entry after it does not,
    // so segment 2 starts right after the marker (its head is all that says so).
    let mut last = 0;
    loop {
        last += 1;
        wal.append(&[ent(last, 1)], Some(hs(1, 2, last))).unwrap();
        let room = SMALL.segment_bytes - write_end(&wal);
        let next = record::entry_record_bytes(&ent(last + 1, 1)) as u64;
        if room >= meta_bytes(last) && room < meta_bytes(last) + next {
            break;
        }
    }
    assert_eq!(wal.segment_count(), 1);
    wal.save_snapshot_marker(&snap(last, 1)).unwrap();
    wal.append(&[ent(last + 1, 1)], None).unwrap();
    assert_eq!(
        wal.segment_count(),
        2,
        "the entry after the marker starts segment 2"
    );
    // More segments: each head repeats the marker with its membership.
    wal.append(&ents(last + 2..=last + 300, 1), None).unwrap();
    wal.sync().unwrap();
    let paths = segment_paths(tmp.path());
    assert!(paths.len() > 3, "{paths:?}");
    for path in &paths[1..] {
        let head = head_records(path);
        assert_eq!(
            head.get(1),
            Some(&record::Record::Snapshot(snap(last, 1))),
            "{}",
            path.display()
        );
    }
    drop(wal);

    // Segment 1, which held the marker record itself, is gone: only segment 2's
    // head tells replay the snapshot point and the membership.
    fs::remove_file(&paths[0]).unwrap();
    let (mut wal, replayed) = Wal::open_with(tmp.path(), SMALL).unwrap();
    assert_eq!(replayed.snapshot, Some(snap(last, 1)));
    assert_eq!(replayed.hard_state, hs(1, 2, last));
    assert_eq!(
        indexes(&replayed.entries),
        (last + 1..=last + 300).map(|i| (i, 1)).collect::<Vec<_>>()
    );
    // And a newer marker, once older segments are released, is carried likewise.
    wal.append(&[], Some(hs(1, 2, last + 300))).unwrap();
    let newer = snap_conf(last + 250, 1, &[2, 5, 9, 11], &[]);
    wal.save_snapshot_marker(&newer).unwrap();
    wal.append(&ents(last + 301..=last + 600, 1), None).unwrap();
    let before = wal.segment_count();
    assert!(wal.release_to(last + 251).unwrap() > 0);
    assert!(wal.segment_count() < before);
    drop(wal);
    let (_, replayed) = Wal::open_with(tmp.path(), SMALL).unwrap();
    assert_eq!(replayed.snapshot, Some(newer));
    assert_eq!(replayed.entries.first().map(|e| e.index), Some(last + 251));
}

/// Re-frames `body` with a correct length and CRC, as a bug-free writer would.
fn framed(body: &[u8]) -> Vec<u8> {
    let mut raw = Vec::with_capacity(FRAME_HEADER_BYTES + body.len());
    raw.extend_from_slice(&(body.len() as u32).to_le_bytes());
    raw.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
    raw.extend_from_slice(body);
    raw
}

#[test]
fn a_marker_with_bad_counts_is_corruption_with_path_and_offset() {
    let meta = snap(3, 1);
    let mut good = Vec::new();
    record::encode_snapshot(&mut good, &meta);
    let body = good[FRAME_HEADER_BYTES..].to_vec();
    let voter_count_at = 1 + 16;
    let learner_count_at = voter_count_at + 4 + 3 * 8;
    let with_count = |at: usize, count: u32| {
        let mut b = body.clone();
        b[at..at + 4].copy_from_slice(&count.to_le_bytes());
        b
    };
    for (bad, want) in [
        (with_count(voter_count_at, u32::MAX), "more than"),
        (with_count(learner_count_at, 65_537), "more than"),
        (with_count(learner_count_at, 2), "bytes follow"),
        (with_count(learner_count_at, 0), "after its learners"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let mut wal = Wal::create(tmp.path(), 1, 2).unwrap();
        wal.append(&ents(1..=5, 1), None).unwrap();
        wal.sync().unwrap();
        let at = write_end(&wal);
        wal.save_snapshot_marker(&meta).unwrap();
        wal.append(&[ent(6, 1)], None).unwrap();
        wal.sync().unwrap();
        drop(wal);
        // Same length, valid CRC: only the decoder can tell.
        let path = segment_paths(tmp.path()).remove(0);
        assert_eq!(read_at(&path, at, good.len()), good);
        patch(&path, at, &framed(&bad));
        let (err_path, offset, reason) = expect_corrupt(Wal::open(tmp.path()));
        assert_eq!((err_path, offset), (path, at));
        assert!(reason.contains(want), "{reason}");
    }
}

#[test]
fn create_open_and_lock_errors() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(matches!(
        Wal::open(tmp.path()),
        Err(WalError::NotFound { .. })
    ));
    let wal = Wal::create(tmp.path(), 1, 2).unwrap();
    assert!(matches!(
        Wal::open(tmp.path()),
        Err(WalError::Locked { .. })
    ));
    drop(wal);
    assert!(matches!(
        Wal::create(tmp.path(), 1, 2),
        Err(WalError::AlreadyExists { .. })
    ));
    let bad = WalOptions {
        segment_bytes: 100,
        ..WalOptions::default()
    };
    assert!(matches!(
        Wal::open_with(tmp.path(), bad),
        Err(WalError::InvalidOptions { .. })
    ));
    // A leftover from an interrupted segment creation is removed, not read.
    fs::write(
        tmp.path().join("0000000000000002-0000000000000001.wal.tmp"),
        b"partial",
    )
    .unwrap();
    let (_, replayed) = Wal::open(tmp.path()).unwrap();
    assert!(replayed.entries.is_empty());
    assert!(!tmp
        .path()
        .join("0000000000000002-0000000000000001.wal.tmp")
        .exists());
}

// ---- the group-commit writer ----

type Log = Arc<Mutex<Vec<(u64, Result<WalPersisted, WalError>)>>>;

fn recording(log: &Log, own_last: u64) -> Completion {
    let log = log.clone();
    Box::new(move |r| log.lock().unwrap().push((own_last, r)))
}

#[test]
fn group_commit_batches_concurrent_submitters_into_fewer_fsyncs() {
    const THREADS: u64 = 8;
    const PER_THREAD: u64 = 50;
    let tmp = tempfile::tempdir().unwrap();
    let wal = Wal::create(tmp.path(), 1, 2).unwrap();
    let options = WalWriterOptions {
        queue_capacity: 1024,
        max_batch_requests: 64,
    };
    let writer = Arc::new(WalWriter::spawn(wal, options).unwrap());
    let completions: Log = Arc::new(Mutex::new(Vec::new()));

    // Hold the writer thread inside the first completion until every submitter
    // has queued its requests: the batching does not depend on timing.
    let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(0);
    let (held_tx, held_rx) = crossbeam_channel::bounded::<()>(1);
    writer
        .submit(WalWrite::append(
            vec![ent(1, 1)],
            None,
            Box::new(move |r| {
                assert!(r.is_ok());
                held_tx.send(()).unwrap();
                release_rx.recv().unwrap();
            }),
        ))
        .unwrap();
    held_rx.recv().unwrap();

    // Raft assigns indexes in one place; the lock stands for that, and makes the
    // queue order the index order.
    let next_index = Arc::new(Mutex::new(2u64));
    let submitters: Vec<_> = (0..THREADS)
        .map(|_| {
            let (writer, completions, next_index) =
                (writer.clone(), completions.clone(), next_index.clone());
            std::thread::spawn(move || {
                for _ in 0..PER_THREAD {
                    let mut next = next_index.lock().unwrap();
                    let entries = vec![ent(*next, 1), ent(*next + 1, 1)];
                    let own_last = *next + 1;
                    *next += 2;
                    writer
                        .submit(WalWrite::append(
                            entries,
                            None,
                            recording(&completions, own_last),
                        ))
                        .unwrap();
                }
            })
        })
        .collect();
    for s in submitters {
        s.join().unwrap();
    }
    release_tx.send(()).unwrap();
    let stats = writer.stats();
    let writer = Arc::into_inner(writer).expect("submitters are done");
    writer.join().unwrap();

    let requests = THREADS * PER_THREAD;
    let completions = completions.lock().unwrap();
    assert_eq!(completions.len() as u64, requests);
    let mut prev_own = 0;
    for (own_last, result) in completions.iter() {
        let persisted = result.as_ref().unwrap();
        assert!(
            persisted.last_index >= *own_last,
            "{own_last} reported as {}",
            persisted.last_index
        );
        assert!(*own_last > prev_own, "completions out of order");
        prev_own = *own_last;
    }
    let stats = stats.snapshot();
    assert_eq!(stats.requests_completed, requests + 1);
    // 1 sync for the gate + ceil(400 / 64) batches for the rest.
    assert!(stats.syncs <= 1 + requests.div_ceil(64), "{stats:?}");
    assert!(stats.syncs < requests, "{stats:?}");
    assert_eq!(stats.records_written, 1 + 2 * requests);
    assert!(!stats.failed);

    let (_, replayed) = Wal::open(tmp.path()).unwrap();
    assert_eq!(replayed.entries.len() as u64, 1 + 2 * requests);
}

#[test]
fn dropping_the_writer_finishes_queued_work() {
    let tmp = tempfile::tempdir().unwrap();
    let writer = WalWriter::spawn(
        Wal::create(tmp.path(), 1, 2).unwrap(),
        WalWriterOptions::default(),
    )
    .unwrap();
    let completions: Log = Arc::new(Mutex::new(Vec::new()));
    for i in 1..=20 {
        writer
            .submit(WalWrite::append(
                vec![ent(i, 1)],
                Some(hs(1, 2, i - 1)),
                recording(&completions, i),
            ))
            .unwrap();
    }
    drop(writer);
    assert_eq!(completions.lock().unwrap().len(), 20);
    assert!(completions.lock().unwrap().iter().all(|(_, r)| r.is_ok()));
    let (_, replayed) = Wal::open(tmp.path()).unwrap();
    assert_eq!(
        (replayed.entries.len(), replayed.hard_state),
        (20, hs(1, 2, 19))
    );
}

#[test]
fn writer_snapshot_and_release_requests() {
    let tmp = tempfile::tempdir().unwrap();
    let writer = WalWriter::spawn(
        Wal::create_with(tmp.path(), 1, 2, SMALL).unwrap(),
        WalWriterOptions::default(),
    )
    .unwrap();
    let completions: Log = Arc::new(Mutex::new(Vec::new()));
    writer
        .submit(WalWrite::append(
            ents(1..=300, 1),
            Some(hs(1, 2, 300)),
            recording(&completions, 300),
        ))
        .unwrap();
    writer
        .submit(WalWrite {
            snapshot: Some(snap(280, 1)),
            entries: vec![ent(301, 1)],
            hard_state: None,
            release_to: Some(280),
            done: recording(&completions, 301),
        })
        .unwrap();
    writer.join().unwrap();
    let completions = completions.lock().unwrap();
    let persisted = completions[1].1.as_ref().unwrap();
    assert_eq!(
        (persisted.last_index, persisted.snapshot.clone()),
        (301, Some(snap(280, 1)))
    );
    // Segment 1 holds only entries far below 280, and precedes the marker's segment.
    let first = segment_paths(tmp.path()).remove(0);
    assert!(
        !first.ends_with(segment::file_name(1, 1)),
        "segment 1 was not released"
    );
    let (_, replayed) = Wal::open_with(tmp.path(), SMALL).unwrap();
    assert_eq!(replayed.snapshot, Some(snap(280, 1)));
    assert_eq!(
        indexes(&replayed.entries),
        (281..=301).map(|i| (i, 1)).collect::<Vec<_>>()
    );
}

#[test]
fn after_a_failure_the_writer_reports_errors_and_accepts_no_more_work() {
    let tmp = tempfile::tempdir().unwrap();
    let wal = Wal::create(tmp.path(), 1, 2).unwrap();
    let writer = WalWriter::spawn(wal, WalWriterOptions::default()).unwrap();
    let completions: Log = Arc::new(Mutex::new(Vec::new()));
    // Gate the thread so the three requests land in one batch.
    let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(0);
    writer
        .submit(WalWrite::append(
            vec![],
            None,
            Box::new(move |_| release_rx.recv().unwrap()),
        ))
        .unwrap();
    writer
        .submit(WalWrite::append(
            vec![ent(1, 1)],
            None,
            recording(&completions, 1),
        ))
        .unwrap();
    writer
        .submit(WalWrite::append(
            vec![ent(5, 1)],
            None,
            recording(&completions, 5),
        ))
        .unwrap(); // a gap
    writer
        .submit(WalWrite::append(
            vec![ent(2, 1)],
            None,
            recording(&completions, 2),
        ))
        .unwrap();
    release_tx.send(()).unwrap();
    let stats = writer.stats();
    // Submitting after the failure still completes, with an error.
    writer
        .submit(WalWrite::append(
            vec![ent(2, 1)],
            None,
            recording(&completions, 2),
        ))
        .unwrap();
    let err = writer.join().unwrap_err();
    assert!(matches!(err, WalError::InvalidAppend { .. }), "{err}");

    let completions = completions.lock().unwrap();
    assert_eq!(completions.len(), 4);
    assert_eq!(
        completions[0].1.as_ref().unwrap().last_index,
        1,
        "the request before the failure is durable"
    );
    assert!(matches!(
        completions[1].1,
        Err(WalError::InvalidAppend { .. })
    ));
    assert!(matches!(completions[2].1, Err(WalError::Stopped { .. })));
    assert!(matches!(completions[3].1, Err(WalError::Stopped { .. })));
    assert!(stats.snapshot().failed);
    let (_, replayed) = Wal::open(tmp.path()).unwrap();
    assert_eq!(indexes(&replayed.entries), vec![(1, 1)]);
}

/// etcd's `MustSync`: entries, a new term or a new vote need an fdatasync before
/// they are acknowledged; a hard state that only moves the commit index does not
/// (a restarted member relearns its commit from the leader).
#[test]
fn a_commit_only_hard_state_needs_no_fdatasync() {
    let tmp = tempfile::tempdir().unwrap();
    let wal = Wal::create(tmp.path(), 1, 2).unwrap();
    let writer = WalWriter::spawn(wal, WalWriterOptions::default()).unwrap();
    let stats = writer.stats();
    let submit = |entries: Vec<Entry>, hard_state: Option<HardState>| {
        let (tx, rx) = crossbeam_channel::bounded(1);
        writer
            .submit(WalWrite::append(entries, hard_state, Box::new(move |r| tx.send(r.is_ok()).unwrap())))
            .unwrap();
        assert!(rx.recv().unwrap());
        stats.snapshot().syncs
    };
    assert_eq!(submit(vec![ent(1, 1)], Some(hs(1, 7, 0))), 1, "entries and a vote are synced");
    assert_eq!(submit(vec![], Some(hs(1, 7, 1))), 1, "a commit-only change is not");
    assert_eq!(submit(vec![], Some(hs(2, 0, 1))), 2, "a new term is");
    assert_eq!(submit(vec![ent(2, 2)], None), 3, "entries are");
    drop(writer);
    let (_, replayed) = Wal::open(tmp.path()).unwrap();
    assert_eq!(replayed.hard_state, hs(2, 0, 1), "the unsynced commit still reached the file on a clean stop");
    assert_eq!(replayed.entries.len(), 2);
}
