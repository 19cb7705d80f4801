//! Recovery of a damaged last segment (Hardening case 6): only a torn final write is cut off;
//! damage with intact records after it refuses to start, naming the file and the offset.

use std::path::Path;

use super::tests::{rec, segment_files};
use super::*;

/// Writes `n` records (one per sync) into a fresh log in `dir`, and answers them with the start
/// offset of each one in the (single) segment.
fn one_segment_log(dir: &Path, n: u64) -> (Vec<Record>, std::path::PathBuf, Vec<u64>) {
    let (wal, _) = Wal::open(dir, WalOptions::default()).unwrap();
    let records: Vec<Record> = (1..=n)
        .map(|i| rec(1, RecordKind::Entries, i, &vec![i as u8; 40 + i as usize]))
        .collect();
    for r in &records {
        wal.write_blocking(vec![r.clone()]).unwrap();
    }
    drop(wal);
    assert_eq!(segment_files(dir).len(), 1);
    let seg = dir.join(format::segment_name(1));
    let mut starts = Vec::new();
    let mut at = SEGMENT_HEADER_LEN as u64;
    for r in &records {
        starts.push(at);
        at += r.encoded_len();
    }
    assert_eq!(at, std::fs::metadata(&seg).unwrap().len());
    (records, seg, starts)
}

fn flip(path: &Path, offset: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset as usize] ^= 0x5a;
    std::fs::write(path, bytes).unwrap();
}

/// Case 6 of the hardening issue: one byte flipped in the middle of the last segment, intact
/// records after it. It used to be taken for a torn tail and everything after it cut off
/// (acknowledged writes lost); it is damage to synced data, refused naming the file and the
/// offset, and the file is left as it was.
#[test]
fn a_flipped_byte_mid_last_segment_with_intact_records_after_it_is_refused_naming_file_and_offset()
{
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (_, seg, starts) = one_segment_log(dir, 200);
    let k = 100;
    // in the payload, in the checksum, in the length field (which hides where the next record
    // starts): each is the damaged record k, with record k + 1 intact after it
    for at in [
        starts[k] + 30,
        starts[k] + 5,
        starts[k] + 1,
        starts[k] + 3,
        starts[k + 1] - 1,
    ] {
        flip(&seg, at);
        let damaged = std::fs::read(&seg).unwrap();
        let e = Wal::open(dir, WalOptions::default()).unwrap_err();
        match &e {
            Error::WalDamaged {
                path,
                offset,
                intact_at,
                ..
            } => {
                assert_eq!(path, &seg, "flip at {at}");
                assert_eq!(*offset, starts[k], "flip at {at}");
                assert_eq!(*intact_at, starts[k + 1], "flip at {at}");
            }
            other => panic!("flip at {at}: {other:?}"),
        }
        let msg = e.to_string();
        assert!(msg.contains(seg.to_str().unwrap()), "{msg}");
        assert!(msg.contains(&format!("byte {}", starts[k])), "{msg}");
        assert!(msg.contains("Rebuilding a damaged node"), "{msg}");
        assert_eq!(
            std::fs::read(&seg).unwrap(),
            damaged,
            "the file was changed"
        );
        flip(&seg, at); // undo
    }
    // undamaged again, it opens with every record
    let (_, recovered) = Wal::open(dir, WalOptions::default()).unwrap();
    assert_eq!(recovered.len(), 200);
}

/// What a crash can do to the final write is still cut off, and the log goes on: the last
/// record cut short or damaged, or garbage after it.
#[test]
fn a_torn_final_write_is_still_cut_off_and_the_log_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let clean = tmp.path().join("clean");
    let (records, seg, starts) = one_segment_log(&clean, 50);
    let end = std::fs::metadata(&seg).unwrap().len();
    let last = *starts.last().unwrap();
    type Damage = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: Vec<(&str, Damage, usize)> = vec![
        (
            "cut in the last record",
            Box::new(move |b| b.truncate(last as usize + 20)),
            49,
        ),
        (
            "cut in its header",
            Box::new(move |b| b.truncate(last as usize + 3)),
            49,
        ),
        (
            "last record flipped",
            Box::new(move |b| b[last as usize + 30] ^= 1),
            49,
        ),
        (
            "its length flipped",
            Box::new(move |b| b[last as usize] ^= 0x40),
            49,
        ),
        (
            "garbage after it",
            Box::new(|b| b.extend_from_slice(&[0xab; 100])),
            50,
        ),
        (
            "a partial header after it",
            Box::new(|b| b.extend_from_slice(&[9, 0, 0])),
            50,
        ),
    ];
    for (i, (what, damage, keep)) in cases.into_iter().enumerate() {
        let dir = tmp.path().join(format!("case{i}"));
        std::fs::create_dir(&dir).unwrap();
        let path = dir.join(format::segment_name(1));
        let mut bytes = std::fs::read(&seg).unwrap();
        damage(&mut bytes);
        std::fs::write(&path, &bytes).unwrap();
        let (wal, got) = Wal::open(&dir, WalOptions::default())
            .unwrap_or_else(|e| panic!("{what}: refused: {e}"));
        assert_eq!(got, records[..keep], "{what}");
        let cut = if keep == 50 { end } else { last };
        assert_eq!(std::fs::metadata(&path).unwrap().len(), cut, "{what}");
        wal.write_blocking(vec![rec(2, RecordKind::Vote, 0, b"after")])
            .unwrap();
        drop(wal);
        let (_, again) = Wal::open(&dir, WalOptions::default()).unwrap();
        assert_eq!(again.len(), keep + 1, "{what}");
        assert_eq!(again[keep].payload, b"after", "{what}");
    }
}

/// Zeros after the last record (what some file systems leave past a crash's end, or a
/// preallocated rest) never look like a record: still a torn final write, whatever their
/// length, also when they overwrote the last record. Zeros with an intact record after them
/// are a hole in synced data (a crash that wrote later pages of the final write but not earlier
/// ones looks the same; it is refused too, on the safe side).
#[test]
fn a_zeroed_tail_is_still_a_torn_final_write_but_a_hole_before_intact_records_is_not() {
    let tmp = tempfile::tempdir().unwrap();
    let clean = tmp.path().join("clean");
    let (records, seg, starts) = one_segment_log(&clean, 50);
    let last = *starts.last().unwrap() as usize;
    for (i, (zeros_at, zeros, keep)) in [
        (None, 1, 50),
        (None, 8, 50),
        (None, 4096, 50),
        (None, 70_000, 50),
        (Some(last), 4096, 49),
        (Some(last + 9), 4096, 49),
    ]
    .into_iter()
    .enumerate()
    {
        let dir = tmp.path().join(format!("case{i}"));
        std::fs::create_dir(&dir).unwrap();
        let mut bytes = std::fs::read(&seg).unwrap();
        let at = zeros_at.unwrap_or(bytes.len());
        bytes.truncate(at);
        bytes.resize(at + zeros, 0);
        std::fs::write(dir.join(format::segment_name(1)), &bytes).unwrap();
        let (_, got) = Wal::open(&dir, WalOptions::default())
            .unwrap_or_else(|e| panic!("case {i}: refused: {e}"));
        assert_eq!(got, records[..keep], "case {i}");
    }
    // a zeroed page in the middle, intact records after it
    let dir = tmp.path().join("hole");
    std::fs::create_dir(&dir).unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    for b in &mut bytes[starts[20] as usize..starts[20] as usize + 200] {
        *b = 0;
    }
    let path = dir.join(format::segment_name(1));
    std::fs::write(&path, &bytes).unwrap();
    let e = Wal::open(&dir, WalOptions::default()).unwrap_err();
    assert!(
        matches!(&e, Error::WalDamaged { offset, .. } if *offset == starts[20]),
        "{e:?}"
    );
}
