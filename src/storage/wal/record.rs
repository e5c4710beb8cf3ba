//! Record framing and the fixed byte layout of each record type (see the format in
//! the parent module's doc). Pure: bytes in, bytes out; no I/O. Decoding never
//! trusts a length it has not checked against the bytes it was given.

use crate::raft::{ConfState, Entry, EntryKind, HardState, SnapshotMeta};

/// `[len: u32][crc32c: u32]`; `len` counts the body (type byte + payload) and the
/// CRC covers exactly the body.
pub(super) const FRAME_HEADER_BYTES: usize = 8;

/// Bumped when a layout below changes; a segment declaring another version is
/// refused rather than misread.
pub(super) const FORMAT_VERSION: u32 = 1;

pub(super) const TYPE_METADATA: u8 = 1;
pub(super) const TYPE_ENTRY: u8 = 2;
pub(super) const TYPE_HARD_STATE: u8 = 3;
pub(super) const TYPE_SNAPSHOT: u8 = 4;

/// version u32, cluster_id, member_id, seq, first_index, segment_bytes (u64 each).
pub(super) const METADATA_PAYLOAD_BYTES: usize = 4 + 5 * 8;
/// term u64, index u64, kind u8; the entry's data follows.
pub(super) const ENTRY_FIXED_PAYLOAD_BYTES: usize = 8 + 8 + 1;
/// term, vote, commit (u64 each).
pub(super) const HARD_STATE_PAYLOAD_BYTES: usize = 3 * 8;
/// index u64, term u64, voter_count u32, learner_count u32; the ids (u64 each)
/// follow each count.
pub(super) const SNAPSHOT_FIXED_PAYLOAD_BYTES: usize = 8 + 8 + 4 + 4;
/// The most voters, and separately the most learners, a snapshot marker may
/// hold: a corrupt count can never ask for a larger allocation, and the writer
/// refuses a membership beyond it rather than write an unreadable record.
pub(super) const CONF_IDS_MAX: usize = 65_536;

const KIND_NORMAL: u8 = 0;
const KIND_CONF_CHANGE: u8 = 1;

/// Bytes a record with `payload_bytes` of payload takes on disk.
pub(super) const fn record_bytes(payload_bytes: usize) -> usize {
    FRAME_HEADER_BYTES + 1 + payload_bytes
}

pub(super) const HARD_STATE_RECORD_BYTES: usize = record_bytes(HARD_STATE_PAYLOAD_BYTES);

/// A segment's head without a snapshot marker: metadata and hard state.
pub(super) const SEGMENT_HEAD_BASE_BYTES: usize =
    record_bytes(METADATA_PAYLOAD_BYTES) + HARD_STATE_RECORD_BYTES;

/// The bytes of a snapshot marker record; it grows with the membership.
pub(super) fn snapshot_record_bytes(meta: &SnapshotMeta) -> usize {
    record_bytes(
        SNAPSHOT_FIXED_PAYLOAD_BYTES + 8 * (meta.conf.voters.len() + meta.conf.learners.len()),
    )
}

pub(super) fn entry_record_bytes(entry: &Entry) -> usize {
    record_bytes(ENTRY_FIXED_PAYLOAD_BYTES + entry.data.len())
}

/// The first record of every segment: whose log this is and how the file was laid
/// out when it was created, so a segment can be checked on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Metadata {
    pub cluster_id: u64,
    pub member_id: u64,
    /// The segment's sequence number (also in its file name).
    pub seq: u64,
    /// The log's last index + 1 when the segment was created (also in its file name).
    pub first_index: u64,
    /// The size the segment was preallocated to; no record may extend past it.
    pub segment_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Record {
    Metadata(Metadata),
    Entry(Entry),
    HardState(HardState),
    Snapshot(SnapshotMeta),
}

/// Appends one framed record. The caller has already checked the body fits a
/// segment (so far below `u32::MAX`); a body that does not is a bug, not input.
fn frame(buf: &mut Vec<u8>, record_type: u8, payload: impl FnOnce(&mut Vec<u8>)) {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; FRAME_HEADER_BYTES]);
    buf.push(record_type);
    payload(buf);
    let body = &buf[start + FRAME_HEADER_BYTES..];
    let len = u32::try_from(body.len()).expect("WAL record body checked against the segment size");
    let crc = crc32c::crc32c(body);
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

pub(super) fn encode_metadata(buf: &mut Vec<u8>, m: &Metadata) {
    frame(buf, TYPE_METADATA, |b| {
        b.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        for v in [
            m.cluster_id,
            m.member_id,
            m.seq,
            m.first_index,
            m.segment_bytes,
        ] {
            b.extend_from_slice(&v.to_le_bytes());
        }
    });
}

pub(super) fn encode_entry(buf: &mut Vec<u8>, e: &Entry) {
    frame(buf, TYPE_ENTRY, |b| {
        b.extend_from_slice(&e.term.to_le_bytes());
        b.extend_from_slice(&e.index.to_le_bytes());
        b.push(match e.kind {
            EntryKind::Normal => KIND_NORMAL,
            EntryKind::ConfChange => KIND_CONF_CHANGE,
        });
        b.extend_from_slice(&e.data);
    });
}

pub(super) fn encode_hard_state(buf: &mut Vec<u8>, hs: &HardState) {
    frame(buf, TYPE_HARD_STATE, |b| {
        for v in [hs.term, hs.vote, hs.commit] {
            b.extend_from_slice(&v.to_le_bytes());
        }
    });
}

/// The caller has checked both id lists against [`CONF_IDS_MAX`].
pub(super) fn encode_snapshot(buf: &mut Vec<u8>, meta: &SnapshotMeta) {
    frame(buf, TYPE_SNAPSHOT, |b| {
        b.extend_from_slice(&meta.index.to_le_bytes());
        b.extend_from_slice(&meta.term.to_le_bytes());
        for ids in [&meta.conf.voters, &meta.conf.learners] {
            let count = u32::try_from(ids.len()).expect("membership size checked by the caller");
            b.extend_from_slice(&count.to_le_bytes());
            for id in ids {
                b.extend_from_slice(&id.to_le_bytes());
            }
        }
    });
}

/// Reads little-endian integers from a payload whose length was checked first;
/// a short read still yields an error, never a panic.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let (head, rest) = self
            .bytes
            .split_first_chunk::<N>()
            .ok_or_else(|| format!("payload ends early (needs {N} more bytes)"))?;
        self.bytes = rest;
        Ok(*head)
    }
    fn u64(&mut self) -> Result<u64, String> {
        self.take::<8>().map(u64::from_le_bytes)
    }
    fn u32(&mut self) -> Result<u32, String> {
        self.take::<4>().map(u32::from_le_bytes)
    }
    fn u8(&mut self) -> Result<u8, String> {
        self.take::<1>().map(|b| b[0])
    }
    /// A count-prefixed list of ids. The count is checked against the bound and
    /// against the bytes left before anything is allocated.
    fn ids(&mut self, what: &str) -> Result<Vec<u64>, String> {
        let count = self.u32()? as usize;
        if count > CONF_IDS_MAX {
            return Err(format!(
                "snapshot marker has {count} {what}, more than the {CONF_IDS_MAX} allowed"
            ));
        }
        if self.bytes.len() < count * 8 {
            return Err(format!(
                "snapshot marker declares {count} {what} but only {} bytes follow",
                self.bytes.len()
            ));
        }
        (0..count).map(|_| self.u64()).collect()
    }
}

fn expect_len(what: &str, payload: &[u8], want: usize) -> Result<(), String> {
    if payload.len() == want {
        Ok(())
    } else {
        Err(format!(
            "{what} payload is {} bytes, expected {want}",
            payload.len()
        ))
    }
}

/// Decodes a record body (type byte + payload) whose CRC already matched. An
/// error here is corruption (or a newer format), never a torn write.
pub(super) fn decode_body(body: &[u8]) -> Result<Record, String> {
    let (&record_type, payload) = body.split_first().ok_or("empty record body")?;
    let mut r = Reader { bytes: payload };
    match record_type {
        TYPE_METADATA => {
            expect_len("metadata", payload, METADATA_PAYLOAD_BYTES)?;
            let version = r.u32()?;
            if version != FORMAT_VERSION {
                return Err(format!(
                    "segment format version {version}, this build reads {FORMAT_VERSION}"
                ));
            }
            Ok(Record::Metadata(Metadata {
                cluster_id: r.u64()?,
                member_id: r.u64()?,
                seq: r.u64()?,
                first_index: r.u64()?,
                segment_bytes: r.u64()?,
            }))
        }
        TYPE_ENTRY => {
            if payload.len() < ENTRY_FIXED_PAYLOAD_BYTES {
                return Err(format!(
                    "entry payload is {} bytes, needs at least {ENTRY_FIXED_PAYLOAD_BYTES}",
                    payload.len()
                ));
            }
            let term = r.u64()?;
            let index = r.u64()?;
            let kind = match r.u8()? {
                KIND_NORMAL => EntryKind::Normal,
                KIND_CONF_CHANGE => EntryKind::ConfChange,
                other => return Err(format!("unknown entry kind {other}")),
            };
            Ok(Record::Entry(Entry {
                term,
                index,
                kind,
                data: r.bytes.to_vec(),
            }))
        }
        TYPE_HARD_STATE => {
            expect_len("hard state", payload, HARD_STATE_PAYLOAD_BYTES)?;
            Ok(Record::HardState(HardState {
                term: r.u64()?,
                vote: r.u64()?,
                commit: r.u64()?,
            }))
        }
        TYPE_SNAPSHOT => {
            if payload.len() < SNAPSHOT_FIXED_PAYLOAD_BYTES {
                return Err(format!(
                    "snapshot marker payload is {} bytes, needs at least {SNAPSHOT_FIXED_PAYLOAD_BYTES}",
                    payload.len()
                ));
            }
            let index = r.u64()?;
            let term = r.u64()?;
            let voters = r.ids("voters")?;
            let learners = r.ids("learners")?;
            if !r.bytes.is_empty() {
                return Err(format!(
                    "snapshot marker payload has {} bytes after its learners",
                    r.bytes.len()
                ));
            }
            Ok(Record::Snapshot(SnapshotMeta {
                index,
                term,
                conf: ConfState { voters, learners },
            }))
        }
        other => Err(format!("unknown record type {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(buf: &[u8]) -> &[u8] {
        &buf[FRAME_HEADER_BYTES..]
    }

    #[test]
    fn every_record_type_round_trips_and_has_its_documented_size() {
        let meta = Metadata {
            cluster_id: 7,
            member_id: 9,
            seq: 3,
            first_index: 42,
            segment_bytes: 1 << 20,
        };
        let entry = Entry {
            term: 5,
            index: 6,
            kind: EntryKind::ConfChange,
            data: b"abc".to_vec(),
        };
        let hs = HardState {
            term: 5,
            vote: 9,
            commit: 4,
        };
        let snap = SnapshotMeta {
            index: 10,
            term: 2,
            conf: ConfState {
                voters: vec![3, u64::MAX],
                learners: vec![8],
            },
        };
        assert_eq!(snapshot_record_bytes(&snap), 9 + 24 + 3 * 8);
        let cases: Vec<(Vec<u8>, Record, usize)> = vec![
            (
                {
                    let mut b = Vec::new();
                    encode_metadata(&mut b, &meta);
                    b
                },
                Record::Metadata(meta),
                53,
            ),
            (
                {
                    let mut b = Vec::new();
                    encode_entry(&mut b, &entry);
                    b
                },
                Record::Entry(entry.clone()),
                29,
            ),
            (
                {
                    let mut b = Vec::new();
                    encode_hard_state(&mut b, &hs);
                    b
                },
                Record::HardState(hs),
                33,
            ),
            (
                {
                    let mut b = Vec::new();
                    encode_snapshot(&mut b, &snap);
                    b
                },
                Record::Snapshot(snap.clone()),
                9 + 24 + 3 * 8,
            ),
            (
                {
                    let mut b = Vec::new();
                    encode_snapshot(&mut b, &SnapshotMeta::default());
                    b
                },
                Record::Snapshot(SnapshotMeta::default()),
                9 + 24,
            ),
        ];
        for (buf, want, size) in cases {
            assert_eq!(buf.len(), size, "{want:?}");
            let len = u32::from_le_bytes(buf[0..4].try_into().unwrap()) as usize;
            let crc = u32::from_le_bytes(buf[4..8].try_into().unwrap());
            assert_eq!(len, buf.len() - FRAME_HEADER_BYTES);
            assert_eq!(crc, crc32c::crc32c(body(&buf)));
            assert_eq!(decode_body(body(&buf)).unwrap(), want);
        }
        assert_eq!(entry_record_bytes(&entry), 29);
    }

    fn snapshot_body(meta: &SnapshotMeta) -> Vec<u8> {
        let mut b = Vec::new();
        encode_snapshot(&mut b, meta);
        b.split_off(FRAME_HEADER_BYTES)
    }

    #[test]
    fn snapshot_marker_round_trips_its_membership_including_empty_lists() {
        for (voters, learners) in [
            (vec![1], vec![]),
            (vec![1, 2, 3], vec![4, 5]),
            (vec![], vec![7]),
            (vec![], vec![]),
        ] {
            let meta = SnapshotMeta {
                index: 99,
                term: 4,
                conf: ConfState { voters, learners },
            };
            let body = snapshot_body(&meta);
            assert_eq!(
                body.len() + FRAME_HEADER_BYTES,
                snapshot_record_bytes(&meta)
            );
            assert_eq!(decode_body(&body).unwrap(), Record::Snapshot(meta));
        }
    }

    #[test]
    fn snapshot_marker_with_bad_counts_is_an_error_not_a_panic() {
        let meta = SnapshotMeta {
            index: 9,
            term: 2,
            conf: ConfState {
                voters: vec![1, 2],
                learners: vec![3],
            },
        };
        let body = snapshot_body(&meta);
        let voter_count_at = 1 + 16;
        let learner_count_at = voter_count_at + 4 + 2 * 8;
        let with_count = |at: usize, count: u32| {
            let mut b = body.clone();
            b[at..at + 4].copy_from_slice(&count.to_le_bytes());
            b
        };
        for (bad, want) in [
            (with_count(voter_count_at, u32::MAX), "more than"),
            (
                with_count(voter_count_at, CONF_IDS_MAX as u32 + 1),
                "more than",
            ),
            (with_count(learner_count_at, u32::MAX), "more than"),
            // Claims more ids than the payload holds.
            (with_count(learner_count_at, 2), "only 8 bytes follow"),
            (with_count(voter_count_at, 4), "only 28 bytes follow"),
            // Claims fewer: bytes are left over.
            (with_count(learner_count_at, 0), "after its learners"),
            (body[..body.len() - 1].to_vec(), "bytes follow"),
            (
                {
                    let mut b = body.clone();
                    b.push(0);
                    b
                },
                "after its learners",
            ),
            (body[..1 + 16 + 2].to_vec(), "needs at least"),
        ] {
            let err = decode_body(&bad).unwrap_err();
            assert!(err.contains(want), "{err}");
        }
    }

    #[test]
    fn malformed_bodies_are_errors_not_panics() {
        assert!(decode_body(&[]).is_err());
        assert!(decode_body(&[99, 1, 2]).is_err());
        assert!(decode_body(&[TYPE_ENTRY, 1, 2, 3]).is_err());
        assert!(decode_body(&[TYPE_HARD_STATE; 10]).is_err());
        assert!(decode_body(&[TYPE_SNAPSHOT]).is_err());
        let mut bad_kind = vec![TYPE_ENTRY];
        bad_kind.extend_from_slice(&[0u8; 16]);
        bad_kind.push(7);
        assert!(decode_body(&bad_kind).unwrap_err().contains("entry kind"));
        let mut future = Vec::new();
        encode_metadata(
            &mut future,
            &Metadata {
                cluster_id: 1,
                member_id: 1,
                seq: 1,
                first_index: 1,
                segment_bytes: 4096,
            },
        );
        future[FRAME_HEADER_BYTES + 1] = 2; // version 2
        assert!(decode_body(body(&future)).unwrap_err().contains("version"));
    }
}
