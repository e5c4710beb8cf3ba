//! Segment files: their names, creating one atomically, listing them, and scanning
//! one into records while telling a torn tail from corruption. Scanning never
//! skips a record: it either returns every record up to the end of written data,
//! or reports the first bad one with its file and byte offset.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::record::{self, Metadata, Record, FRAME_HEADER_BYTES, METADATA_PAYLOAD_BYTES};
use super::WalError;

pub(super) const SEGMENT_SUFFIX: &str = ".wal";
/// A segment being created; never read, removed on open (its creation never completed).
pub(super) const TMP_SUFFIX: &str = ".wal.tmp";

/// `<seq:016x>-<first_index:016x>.wal`, as etcd names its segments: sorting names
/// sorts by sequence.
pub(super) fn file_name(seq: u64, first_index: u64) -> String {
    format!("{seq:016x}-{first_index:016x}{SEGMENT_SUFFIX}")
}

fn parse_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(SEGMENT_SUFFIX)?;
    let (seq, first) = stem.split_once('-')?;
    if seq.len() != 16 || first.len() != 16 {
        return None;
    }
    Some((
        u64::from_str_radix(seq, 16).ok()?,
        u64::from_str_radix(first, 16).ok()?,
    ))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SegmentName {
    pub seq: u64,
    pub first_index: u64,
    pub path: PathBuf,
}

pub(super) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> WalError + '_ {
    move |e| WalError::Io {
        path: path.to_path_buf(),
        source: e.into(),
    }
}

fn corrupt(path: &Path, offset: u64, reason: impl Into<String>) -> WalError {
    WalError::Corrupt {
        path: path.to_path_buf(),
        offset,
        reason: reason.into(),
    }
}

/// Makes a directory's entries (created, renamed, removed files) durable.
pub(super) fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// The segments in `dir`, oldest first. Their sequence numbers must be
/// consecutive: a missing one means lost records, which replay must not paper over.
pub(super) fn list(dir: &Path) -> Result<Vec<SegmentName>, WalError> {
    let mut segments = Vec::new();
    for dirent in fs::read_dir(dir).map_err(io_err(dir))? {
        let dirent = dirent.map_err(io_err(dir))?;
        let name = dirent.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.ends_with(SEGMENT_SUFFIX) {
            continue;
        }
        let path = dirent.path();
        let (seq, first_index) = parse_name(name).ok_or_else(|| {
            corrupt(
                &path,
                0,
                "segment file name is not <seq>-<first index>.wal (16 hex digits each)",
            )
        })?;
        segments.push(SegmentName {
            seq,
            first_index,
            path,
        });
    }
    segments.sort_by_key(|s| s.seq);
    for pair in segments.windows(2) {
        if pair[1].seq != pair[0].seq + 1 {
            return Err(corrupt(
                &pair[1].path,
                0,
                format!(
                    "segment sequence jumps from {} to {}: a segment is missing",
                    pair[0].seq, pair[1].seq
                ),
            ));
        }
    }
    Ok(segments)
}

/// Removes leftovers of segment creations that never completed (they were never
/// renamed into place, so no record in them was ever acknowledged).
pub(super) fn remove_tmp_files(dir: &Path) -> Result<(), WalError> {
    let mut removed = false;
    for dirent in fs::read_dir(dir).map_err(io_err(dir))? {
        let dirent = dirent.map_err(io_err(dir))?;
        if dirent
            .file_name()
            .to_str()
            .is_some_and(|n| n.ends_with(TMP_SUFFIX))
        {
            let path = dirent.path();
            tracing::info!(path = %path.display(), "WAL: removing an unfinished segment");
            fs::remove_file(&path).map_err(io_err(&path))?;
            removed = true;
        }
    }
    if removed {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Creates a segment atomically: write its head into a temporary file preallocated
/// to `segment_bytes`, fsync it, rename it into place, fsync the directory. A crash
/// at any point leaves either no segment or a complete, durable head. Returns the
/// file positioned just after the head.
pub(super) fn create(
    dir: &Path,
    seq: u64,
    first_index: u64,
    segment_bytes: u64,
    head: &[u8],
) -> Result<(File, PathBuf), WalError> {
    let name = file_name(seq, first_index);
    let path = dir.join(&name);
    let tmp = dir.join(format!(
        "{}{TMP_SUFFIX}",
        name.trim_end_matches(SEGMENT_SUFFIX)
    ));
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    // set_len gives a (possibly sparse) file of zeros: a zero length field marks
    // the end of written data.
    file.set_len(segment_bytes).map_err(io_err(&tmp))?;
    file.write_all(head).map_err(io_err(&tmp))?;
    file.sync_all().map_err(io_err(&tmp))?;
    fs::rename(&tmp, &path).map_err(io_err(&path))?;
    sync_dir(dir)?;
    Ok((file, path))
}

/// A record's framing was cut short or failed its CRC at the very end of the last
/// segment: the signature of a write interrupted by a crash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Torn {
    pub offset: u64,
    pub reason: String,
}

#[derive(Debug)]
pub(super) struct Scanned {
    pub meta: Metadata,
    /// Every record after the metadata, with its byte offset.
    pub records: Vec<(u64, Record)>,
    /// Where the next record goes: the end of the last good record.
    pub end: u64,
    pub torn: Option<Torn>,
}

fn all_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == 0)
}

fn le_u32(bytes: &[u8], at: usize) -> Option<u32> {
    bytes
        .get(at..at + 4)?
        .try_into()
        .ok()
        .map(u32::from_le_bytes)
}

/// Scans a whole segment file. A bad record is "torn" (returned in `torn`, the
/// caller truncates it) only in the last segment, and only if it is the last
/// thing written: its frame runs past the end of a file shorter than the size it
/// was preallocated to, or its CRC fails and every byte after it is zero.
/// Anything else — a bad CRC with data after it, a bad record in an older segment,
/// a length that could not have been written, an undecodable body with a good CRC,
/// non-zero bytes after the end marker — is `Corrupt` with the offset.
pub(super) fn scan(path: &Path, bytes: &[u8], is_last: bool) -> Result<Scanned, WalError> {
    let file_len = bytes.len();
    let meta_record_bytes = record::record_bytes(METADATA_PAYLOAD_BYTES);
    // The metadata record is written and fsynced before the segment is renamed into
    // place, so it is never legitimately torn.
    let meta = match bytes.get(..meta_record_bytes) {
        None => {
            return Err(corrupt(
                path,
                0,
                format!("file is {file_len} bytes, too short for the metadata record"),
            ))
        }
        Some(head) => {
            let len = le_u32(head, 0).unwrap_or(0) as usize;
            if len != meta_record_bytes - FRAME_HEADER_BYTES {
                return Err(corrupt(
                    path,
                    0,
                    format!("first record has length {len}, not that of a metadata record"),
                ));
            }
            let crc = le_u32(head, 4).unwrap_or(0);
            let body = &head[FRAME_HEADER_BYTES..];
            if crc32c::crc32c(body) != crc {
                return Err(corrupt(path, 0, "metadata record CRC mismatch"));
            }
            match record::decode_body(body) {
                Ok(Record::Metadata(m)) => m,
                Ok(_) => return Err(corrupt(path, 0, "first record is not a metadata record")),
                Err(reason) => return Err(corrupt(path, 0, reason)),
            }
        }
    };
    let declared = usize::try_from(meta.segment_bytes).unwrap_or(usize::MAX);
    if file_len > declared {
        return Err(corrupt(
            path,
            0,
            format!(
                "file is {file_len} bytes, larger than the {declared} bytes its metadata declares"
            ),
        ));
    }

    let mut records = Vec::new();
    let mut pos = meta_record_bytes;
    let torn_or_corrupt = |pos: usize, reason: String| -> Result<Option<Torn>, WalError> {
        if is_last {
            Ok(Some(Torn {
                offset: pos as u64,
                reason,
            }))
        } else {
            Err(corrupt(
                path,
                pos as u64,
                format!("{reason}, in a segment that is not the last one"),
            ))
        }
    };
    let torn = loop {
        if pos + FRAME_HEADER_BYTES > declared {
            // No room for another record: the segment is full.
            break None;
        }
        if pos + FRAME_HEADER_BYTES > file_len {
            if all_zero(&bytes[pos.min(file_len)..]) {
                // Cut inside the zeros after the last record: nothing was lost.
                break None;
            }
            break torn_or_corrupt(
                pos,
                format!("record header cut short by the end of the file ({file_len} bytes)"),
            )?;
        }
        let len = le_u32(bytes, pos).unwrap_or(0) as usize;
        let crc = le_u32(bytes, pos + 4).unwrap_or(0);
        if len == 0 {
            // End of written data (the preallocated zeros begin).
            break None;
        }
        // The writer never lets a record cross the declared segment size, and a
        // torn write only ever leaves a prefix of the true length's bytes (so a
        // smaller value): a length past the segment end is corruption.
        let room = declared - pos - FRAME_HEADER_BYTES;
        if len > room {
            return Err(corrupt(
                path,
                pos as u64,
                format!("record length {len} exceeds the {room} bytes left in the segment"),
            ));
        }
        let end = pos + FRAME_HEADER_BYTES + len;
        if end > file_len {
            break torn_or_corrupt(
                pos,
                format!(
                    "record of {len} bytes cut short by the end of the file ({file_len} bytes)"
                ),
            )?;
        }
        let body = &bytes[pos + FRAME_HEADER_BYTES..end];
        if crc32c::crc32c(body) != crc {
            if all_zero(&bytes[end..]) {
                break torn_or_corrupt(pos, "CRC mismatch in the final record".to_string())?;
            }
            return Err(corrupt(
                path,
                pos as u64,
                "CRC mismatch (records follow it, so it is not a torn write)",
            ));
        }
        let record =
            record::decode_body(body).map_err(|reason| corrupt(path, pos as u64, reason))?;
        if matches!(record, Record::Metadata(_)) {
            return Err(corrupt(
                path,
                pos as u64,
                "a second metadata record inside the segment",
            ));
        }
        records.push((pos as u64, record));
        pos = end;
    };
    if torn.is_none() && !all_zero(&bytes[pos.min(file_len)..]) {
        return Err(corrupt(
            path,
            pos as u64,
            "non-zero bytes after the end of written data",
        ));
    }
    Ok(Scanned {
        meta,
        records,
        end: pos as u64,
        torn,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_by_sequence_and_parse_back() {
        assert_eq!(file_name(1, 1), "0000000000000001-0000000000000001.wal");
        assert_eq!(parse_name(&file_name(0xabc, 77)), Some((0xabc, 77)));
        for bad in [
            "1-1.wal",
            "0000000000000001-0000000000000001.tmp",
            "000000000000000g-0000000000000001.wal",
        ] {
            assert_eq!(parse_name(bad), None, "{bad}");
        }
    }
}
