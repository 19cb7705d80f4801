//! A crash can leave the last segment cut anywhere, or with garbage at its end: recovery must
//! keep exactly the records written whole before the damage, and the log must go on. Damage
//! followed by an intact record is not a torn final write: it is refused, naming the file and
//! the damaged record's offset, and the file is left as it was.

use std::path::{Path, PathBuf};

use perdure_storage::wal::{Record, RecordKind, Wal, WalOptions};
use perdure_storage::Error;
use rand::{Rng, SeedableRng};

fn opts(segment_bytes: u64) -> WalOptions {
    WalOptions {
        segment_bytes,
        max_batch_bytes: 1 << 20,
    }
}

/// Records of several partitions and kinds, with payload lengths from 0 to a few hundred bytes.
fn sample_records(n: usize, seed: u64) -> Vec<Record> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let kinds = [
        RecordKind::Entries,
        RecordKind::Entries,
        RecordKind::Entries,
        RecordKind::Truncate,
        RecordKind::Purge,
        RecordKind::Vote,
        RecordKind::Committed,
    ];
    (0..n)
        .map(|i| {
            let len = if i % 7 == 0 { 0 } else { rng.gen_range(1..300) };
            Record {
                partition: rng.gen_range(0..4),
                kind: kinds[rng.gen_range(0..kinds.len())],
                index: rng.gen(),
                payload: (0..len).map(|_| rng.gen()).collect(),
            }
        })
        .collect()
}

fn write_log(dir: &Path, records: &[Record], o: WalOptions) {
    let (wal, recovered) = Wal::open(dir, o).unwrap();
    assert!(recovered.is_empty());
    for chunk in records.chunks(3) {
        wal.write_blocking(chunk.to_vec()).unwrap();
    }
    wal.close();
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for f in segments(from) {
        std::fs::copy(&f, to.join(f.file_name().unwrap())).unwrap();
    }
}

/// What recovery must do with a damaged segment.
#[derive(Debug, PartialEq)]
enum Expect {
    /// Open, keeping this many of the last three records.
    Keep(usize),
    /// Refuse, naming the damaged record that starts at this offset.
    Refuse(u64),
}

/// Runs `damage` on a copy of `dir`'s last segment for every byte offset of its last three
/// records, then checks that recovery returns exactly what `expected(offset, bounds)` says
/// (`bounds`: where the last three records start, and where the last one ends) and, when it opens, that the log accepts and keeps a new record
/// afterwards.
fn for_each_offset_of_last_three(
    dir: &Path,
    o: &WalOptions,
    damage: impl Fn(&Path, u64),
    expected: impl Fn(u64, &[u64]) -> Expect,
) {
    let work = tempfile::tempdir().unwrap();
    // the records a clean open returns (sticky heads included), and where the last three start
    let (baseline, ends) = {
        let copy = work.path().join("baseline");
        copy_dir(dir, &copy);
        let (wal, records) = Wal::open(&copy, o.clone()).unwrap();
        drop(wal);
        let last = segments(&copy).pop().unwrap();
        let file_len = std::fs::metadata(&last).unwrap().len();
        // ends of the last three records, computed back from the end of the file
        let mut ends = vec![file_len];
        for r in records.iter().rev().take(2) {
            let prev = ends.last().unwrap() - r.encoded_len();
            ends.push(prev);
        }
        ends.reverse();
        (records, ends)
    };
    assert!(baseline.len() >= 3);
    let n = baseline.len();
    let start = ends[0] - baseline[n - 3].encoded_len();
    assert!(
        start >= perdure_storage::wal::SEGMENT_HEADER_LEN as u64,
        "the last segment holds fewer than three records"
    );
    let last_name = segments(dir).pop().unwrap();
    let last_name = last_name.file_name().unwrap();
    let bounds = [start, ends[0], ends[1], ends[2]];
    let mut case = 0;
    for offset in start..ends[2] {
        case += 1;
        let copy = work.path().join(format!("case{case}"));
        copy_dir(dir, &copy);
        let seg = copy.join(last_name);
        damage(&seg, offset);
        let keep = match expected(offset, &bounds) {
            Expect::Keep(keep) => keep,
            Expect::Refuse(at) => {
                let damaged = std::fs::read(&seg).unwrap();
                match Wal::open(&copy, o.clone()) {
                    Err(Error::WalDamaged {
                        path, offset: o, ..
                    }) if path == seg && o == at => {}
                    other => panic!("offset {offset}: expected a refusal at {at}: {other:?}"),
                }
                assert_eq!(std::fs::read(&seg).unwrap(), damaged, "offset {offset}");
                std::fs::remove_dir_all(&copy).unwrap();
                continue;
            }
        };
        let want = &baseline[..n - 3 + keep];
        let (wal, got) = Wal::open(&copy, o.clone())
            .unwrap_or_else(|e| panic!("offset {offset}: reopen failed: {e}"));
        assert_eq!(got.len(), want.len(), "offset {offset}");
        assert!(got == want, "offset {offset}: recovered records differ");
        let extra = Record {
            partition: 99,
            kind: RecordKind::Entries,
            index: offset,
            payload: b"after the crash".to_vec(),
        };
        wal.write_blocking(vec![extra.clone()]).unwrap();
        drop(wal);
        let (wal, again) = Wal::open(&copy, o.clone()).unwrap();
        drop(wal);
        assert!(again.len() > want.len(), "offset {offset}");
        assert!(again[..want.len()] == *want, "offset {offset}");
        assert_eq!(again[want.len()], extra, "offset {offset}");
        std::fs::remove_dir_all(&copy).unwrap();
    }
    assert!(case > 3 * 8, "only {case} offsets tried");
}

fn truncate_at(path: &Path, offset: u64) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_len(offset).unwrap();
}

fn flip_at(path: &Path, offset: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset as usize] ^= 0xff;
    std::fs::write(path, bytes).unwrap();
}

/// A cut keeps the records whole before it.
fn whole_before(cut: u64, bounds: &[u64]) -> Expect {
    Expect::Keep(bounds[1..].iter().filter(|&&e| e <= cut).count())
}

/// A flipped byte in the last record is a torn final write: the records before it are kept. In
/// an earlier record, intact records follow: refused, naming the record holding the byte.
fn torn_if_last_else_refused(offset: u64, bounds: &[u64]) -> Expect {
    let holding = bounds[1..].iter().filter(|&&e| e <= offset).count();
    if holding == 2 {
        Expect::Keep(2)
    } else {
        Expect::Refuse(bounds[holding])
    }
}

#[test]
fn every_cut_in_the_last_three_records_recovers_the_prefix() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let records = sample_records(40, 1);
    write_log(&dir, &records, WalOptions::default());
    assert_eq!(segments(&dir).len(), 1);
    // a single segment: the baseline is exactly what was written
    let (wal, got) = Wal::open(&dir, WalOptions::default()).unwrap();
    drop(wal);
    assert!(got == records);
    for_each_offset_of_last_three(&dir, &WalOptions::default(), truncate_at, whole_before);
}

#[test]
fn every_flipped_byte_in_the_last_record_recovers_a_strict_prefix_and_earlier_ones_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    write_log(&dir, &sample_records(40, 2), WalOptions::default());
    for_each_offset_of_last_three(
        &dir,
        &WalOptions::default(),
        flip_at,
        torn_if_last_else_refused,
    );
}

#[test]
fn cuts_and_flips_in_the_last_of_many_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let o = opts(4096);
    // enough records for several segments, the last holding sticky heads and at least 3 records
    let mut records = sample_records(200, 3);
    records.extend(sample_records(3, 4).into_iter().map(|mut r| {
        r.kind = RecordKind::Entries;
        r
    }));
    write_log(&dir, &records, o.clone());
    assert!(segments(&dir).len() > 3);
    for_each_offset_of_last_three(&dir, &o, truncate_at, whole_before);
    for_each_offset_of_last_three(&dir, &o, flip_at, torn_if_last_else_refused);
}

#[test]
fn garbage_after_the_last_record_is_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let records = sample_records(30, 5);
    write_log(&dir, &records, WalOptions::default());
    let seg = segments(&dir).pop().unwrap();
    let clean_len = std::fs::metadata(&seg).unwrap().len();
    let mut rng = rand::rngs::StdRng::seed_from_u64(6);
    let tails: Vec<Vec<u8>> = vec![
        vec![0; 1],
        vec![0; 8], // a zero-filled frame header: a valid, empty frame
        vec![0; 4096],
        vec![0xff; 100],
        (0..1000).map(|_| rng.gen()).collect(),
        // a frame header announcing far more than follows
        [&1000u32.to_le_bytes()[..], &[1, 2, 3, 4, 5, 6]].concat(),
    ];
    for tail in tails {
        let mut bytes = std::fs::read(&seg).unwrap();
        bytes.truncate(clean_len as usize);
        bytes.extend_from_slice(&tail);
        std::fs::write(&seg, &bytes).unwrap();
        let (wal, got) = Wal::open(&dir, WalOptions::default()).unwrap();
        drop(wal);
        assert!(got == records, "tail of {} bytes", tail.len());
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), clean_len);
    }
}
