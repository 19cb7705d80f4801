//! Foreign, newer or damaged files in a log directory: `open` refuses with an error naming the
//! file, and leaves every file exactly as it found it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use perdure_storage::wal::{Record, RecordKind, Wal, WalOptions, SEGMENT_HEADER_LEN};
use perdure_storage::Error;
use rand::{Rng, SeedableRng};

fn opts(segment_bytes: u64) -> WalOptions {
    WalOptions {
        segment_bytes,
        max_batch_bytes: 1 << 20,
    }
}

fn entry(partition: u32, index: u64, len: usize) -> Record {
    Record {
        partition,
        kind: RecordKind::Entries,
        index,
        payload: vec![index as u8; len],
    }
}

/// A log of `n` records; with a small `segment_bytes` it spans several segments.
fn make_log(dir: &Path, n: u64, segment_bytes: u64) -> Vec<Record> {
    let (wal, _) = Wal::open(dir, opts(segment_bytes)).unwrap();
    for i in 1..=n {
        wal.write_blocking(vec![
            entry(1, i, 200),
            Record {
                partition: 2,
                kind: RecordKind::Vote,
                index: 0,
                payload: i.to_le_bytes().to_vec(),
            },
        ])
        .unwrap();
    }
    drop(wal);
    let (wal, records) = Wal::open(dir, opts(segment_bytes)).unwrap();
    drop(wal);
    records
}

fn seg(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.wal"))
}

/// Every path under `dir` with its bytes (`None` for directories).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.insert(p.clone(), None);
                stack.push(p);
            } else {
                out.insert(p.clone(), Some(std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

/// Opens `dir`, expecting a refusal naming `file` and saying `says`; checks nothing changed.
fn refused(dir: &Path, file: &Path, says: &str) -> Error {
    let before = snapshot(dir);
    let e = match Wal::open(dir, opts(4096)) {
        Ok(_) => panic!(
            "{} opened; expected a refusal naming {}",
            dir.display(),
            file.display()
        ),
        Err(e) => e,
    };
    let msg = e.to_string();
    assert!(
        msg.contains(&file.display().to_string()),
        "error does not name {}: {msg}",
        file.display()
    );
    assert!(msg.contains(says), "error does not say {says:?}: {msg}");
    assert!(
        before == snapshot(dir),
        "the failed open changed files in {}",
        dir.display()
    );
    e
}

fn patch(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = std::fs::read(path).unwrap();
    f(&mut bytes);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_newer_version_is_refused() {
    for (n, damaged) in [(5, 1), (200, 1), (200, 2)] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        make_log(dir, n, 4096);
        std::fs::write(dir.join(format!("{:020}.wal.tmp", 999)), b"partial").unwrap();
        patch(&seg(dir, damaged), |b| b[8] = 2);
        let e = refused(dir, &seg(dir, damaged), "written by a newer perdure");
        assert!(matches!(e, Error::Format { .. }), "{e:?}");
    }
}

#[test]
fn a_foreign_file_named_like_a_segment_is_refused() {
    let contents: [&[u8]; 4] = [
        b"# my notes\nthis is not a write-ahead log, but it is long enough to have a header\n",
        b"hi",
        b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89",
        &[0xff; 100],
    ];
    for content in contents {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        std::fs::write(seg(dir, 1), content).unwrap();
        let e = refused(dir, &seg(dir, 1), "not a perdure write-ahead log segment");
        assert!(matches!(e, Error::Format { .. }), "{e:?}");
    }
    // the same as the newest of several segments
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    make_log(dir, 100, 4096);
    let last = std::fs::read_dir(dir).unwrap().count() as u64;
    std::fs::write(seg(dir, last + 1), contents[0]).unwrap();
    refused(
        dir,
        &seg(dir, last + 1),
        "not a perdure write-ahead log segment",
    );
}

#[test]
fn a_directory_named_like_a_segment_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    make_log(dir, 3, 1 << 20);
    std::fs::create_dir(seg(dir, 2)).unwrap();
    std::fs::write(seg(dir, 2).join("inside"), b"keep me").unwrap();
    let e = refused(dir, &seg(dir, 2), "not a regular file");
    assert!(matches!(e, Error::Format { .. }), "{e:?}");
    // a directory named like a leftover temporary segment is not deleted either
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    make_log(dir, 3, 1 << 20);
    let t = dir.join(format!("{:020}.wal.tmp", 2));
    std::fs::create_dir(&t).unwrap();
    refused(dir, &t, "not a regular file");
}

#[test]
fn an_unexpected_file_is_refused_and_leftovers_are_kept() {
    for name in [
        "notes.txt",
        "1.wal",
        "00000000000000000001.wal.bak",
        "99999999999999999999.wal",
        ".hidden",
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        make_log(dir, 3, 1 << 20);
        // a leftover temporary segment would be removed by a successful open; not by this one
        std::fs::write(dir.join(format!("{:020}.wal.tmp", 2)), b"partial").unwrap();
        std::fs::write(dir.join(name), b"stranger").unwrap();
        let e = refused(dir, &dir.join(name), "unexpected file");
        assert!(matches!(e, Error::Format { .. }), "{e:?}");
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    make_log(dir, 3, 1 << 20);
    std::fs::create_dir(dir.join("backup")).unwrap();
    refused(dir, &dir.join("backup"), "unexpected file");
}

#[test]
fn damage_in_a_segment_that_is_not_the_last_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    make_log(dir, 100, 4096);
    let count = std::fs::read_dir(dir).unwrap().count() as u64;
    assert!(count >= 3, "{count} segments");
    // a leftover temporary segment: a refused open must not remove it either
    std::fs::write(dir.join(format!("{:020}.wal.tmp", count + 1)), b"partial").unwrap();
    let clean = snapshot(dir);
    let restore = || {
        for (p, b) in &clean {
            std::fs::write(p, b.as_ref().unwrap()).unwrap();
        }
    };
    let len = std::fs::metadata(seg(dir, 1)).unwrap().len() as usize;
    // a flipped byte anywhere in the records of segment 1 or of a middle segment
    for (seq, offset) in [
        (1, SEGMENT_HEADER_LEN),
        (1, SEGMENT_HEADER_LEN + 5),
        (1, len / 2),
        (1, len - 1),
        (2, SEGMENT_HEADER_LEN + 10),
    ] {
        patch(&seg(dir, seq), |b| b[offset] ^= 0xff);
        let e = refused(dir, &seg(dir, seq), "corrupt at byte");
        assert!(matches!(e, Error::Corrupt { .. }), "{e:?}");
        restore();
    }
    // a non-last segment cut short (even at a record boundary it is refused only if torn;
    // here it is torn)
    patch(&seg(dir, 1), |b| b.truncate(len - 3));
    let e = refused(dir, &seg(dir, 1), "later segment exists");
    assert!(matches!(e, Error::Corrupt { .. }), "{e:?}");
    restore();
    // a non-last segment cut exactly at a record boundary: its records scan cleanly, but its
    // successor recorded a longer segment
    let boundary = SEGMENT_HEADER_LEN + 2 * (entry(1, 1, 200).encoded_len() as usize + 29);
    patch(&seg(dir, 1), |b| b.truncate(boundary));
    let e = refused(dir, &seg(dir, 1), "cut short or extended");
    assert!(matches!(e, Error::Corrupt { .. }), "{e:?}");
    restore();
    // ... or extended by a whole, valid record
    let mut framed = Vec::new();
    let mut body = 2u32.to_le_bytes().to_vec();
    body.push(RecordKind::Vote as u8);
    body.extend_from_slice(&0u64.to_le_bytes());
    body.extend_from_slice(b"an extra vote");
    perdure_types::codec::frame::encode(&body, &mut framed);
    patch(&seg(dir, 2), |b| b.extend_from_slice(&framed));
    refused(dir, &seg(dir, 2), "cut short or extended");
    restore();
    // a non-last segment shorter than its header
    patch(&seg(dir, 1), |b| b.truncate(10));
    refused(dir, &seg(dir, 1), "shorter than its header");
    restore();
    // a damaged header, even in the last segment, is not a torn tail
    patch(&seg(dir, count), |b| b[14] ^= 1);
    let e = refused(dir, &seg(dir, count), "checksum");
    assert!(matches!(e, Error::Corrupt { .. }), "{e:?}");
    restore();
    // and the restored log opens
    Wal::open(dir, opts(4096)).unwrap();
}

#[test]
fn a_missing_segment_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    make_log(dir, 100, 4096);
    std::fs::remove_file(seg(dir, 2)).unwrap();
    let e = refused(dir, &seg(dir, 2), "missing");
    assert!(matches!(e, Error::Format { .. }), "{e:?}");
}

#[test]
fn a_renamed_segment_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    make_log(dir, 3, 1 << 20);
    std::fs::rename(seg(dir, 1), seg(dir, 7)).unwrap();
    refused(dir, &seg(dir, 7), "the header says segment 1");
}

#[test]
fn an_intact_record_of_unknown_kind_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    make_log(dir, 3, 1 << 20);
    let len = std::fs::metadata(seg(dir, 1)).unwrap().len();
    let mut body = Vec::new();
    body.extend_from_slice(&1u32.to_le_bytes());
    body.push(9); // no such kind
    body.extend_from_slice(&5u64.to_le_bytes());
    body.extend_from_slice(b"payload");
    let mut framed = Vec::new();
    perdure_types::codec::frame::encode(&body, &mut framed);
    patch(&seg(dir, 1), |b| b.extend_from_slice(&framed));
    let e = refused(dir, &seg(dir, 1), "unknown record kind 9");
    assert!(
        matches!(e, Error::Corrupt { offset, .. } if offset == len),
        "{e:?}"
    );
}

#[test]
fn random_damage_never_panics_nor_invents_records() {
    let tmp = tempfile::tempdir().unwrap();
    let original = tmp.path().join("original");
    let baseline = make_log(&original, 60, 4096);
    let files: Vec<PathBuf> = {
        let mut v: Vec<PathBuf> = std::fs::read_dir(&original)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v
    };
    assert!(files.len() >= 3);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let (mut opened, mut refusals) = (0, 0);
    for case in 0..500 {
        let dir = tmp.path().join(format!("case{case}"));
        std::fs::create_dir(&dir).unwrap();
        for f in &files {
            std::fs::copy(f, dir.join(f.file_name().unwrap())).unwrap();
        }
        let victim = dir.join(files[rng.gen_range(0..files.len())].file_name().unwrap());
        let mut bytes = std::fs::read(&victim).unwrap();
        match rng.gen_range(0..4) {
            0 => {
                for _ in 0..rng.gen_range(1..4) {
                    let i = rng.gen_range(0..bytes.len());
                    bytes[i] = rng.gen();
                }
            }
            1 => bytes.truncate(rng.gen_range(0..bytes.len())),
            2 => {
                let i = rng.gen_range(0..bytes.len());
                let n = rng.gen_range(1..64).min(bytes.len() - i);
                for b in &mut bytes[i..i + n] {
                    *b = 0;
                }
            }
            _ => bytes.extend((0..rng.gen_range(1..64)).map(|_| rng.gen::<u8>())),
        }
        std::fs::write(&victim, &bytes).unwrap();
        match Wal::open(&dir, opts(4096)) {
            Ok((wal, got)) => {
                drop(wal);
                opened += 1;
                assert!(got.len() <= baseline.len(), "case {case}: invented records");
                assert!(
                    got[..] == baseline[..got.len()],
                    "case {case}: not a prefix: victim {} bytes {} got {} of {}",
                    victim.display(),
                    bytes.len(),
                    got.len(),
                    baseline.len()
                );
            }
            Err(e) => {
                refusals += 1;
                let msg = e.to_string();
                assert!(
                    msg.contains(&dir.display().to_string()),
                    "case {case}: {msg}"
                );
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
    println!("random damage: {opened} opened with a prefix, {refusals} refused");
    assert!(opened > 0 && refusals > 0);
}
