use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::*;

pub(super) fn rec(partition: u32, kind: RecordKind, index: u64, payload: &[u8]) -> Record {
    Record {
        partition,
        kind,
        index,
        payload: payload.to_vec(),
    }
}

fn small(segment_bytes: u64) -> WalOptions {
    WalOptions {
        segment_bytes,
        max_batch_bytes: 1 << 20,
    }
}

pub(super) fn segment_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn kinds_and_stickiness() {
    for k in [
        RecordKind::Entries,
        RecordKind::Truncate,
        RecordKind::Purge,
        RecordKind::Vote,
        RecordKind::Committed,
    ] {
        assert_eq!(RecordKind::from_byte(k as u8), Some(k));
    }
    assert_eq!(RecordKind::Entries as u8, 1);
    assert_eq!(RecordKind::Committed as u8, 5);
    assert!(!RecordKind::Entries.is_sticky());
    assert!(!RecordKind::Truncate.is_sticky());
    assert!(RecordKind::Purge.is_sticky());
    assert!(RecordKind::Vote.is_sticky());
    assert!(RecordKind::Committed.is_sticky());
    let o = WalOptions::from(&perdure_types::config::WalConfig::default());
    assert_eq!(o.segment_bytes, 64 << 20);
    assert_eq!(o.max_batch_bytes, 8 << 20);
}

#[test]
fn round_trip_across_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal"); // created by open
    let (wal, recovered) = Wal::open(&dir, WalOptions::default()).unwrap();
    assert!(recovered.is_empty());
    assert_eq!(segment_files(&dir), ["00000000000000000001.wal"]);
    let mut all = Vec::new();
    for i in 0..50u64 {
        let batch = vec![
            rec(i as u32 % 3, RecordKind::Entries, i + 1, &i.to_le_bytes()),
            rec(7, RecordKind::Vote, 0, format!("vote {i}").as_bytes()),
            rec(
                u32::MAX,
                RecordKind::Committed,
                0,
                &vec![i as u8; i as usize * 13],
            ),
            rec(1, RecordKind::Truncate, u64::MAX - i, b""),
            rec(2, RecordKind::Purge, i, &[0xff, 0, 0xfe]),
        ];
        all.extend(batch.clone());
        wal.write_blocking(batch).unwrap();
    }
    let stats = wal.stats();
    assert_eq!(stats.records, all.len() as u64);
    assert!(stats.syncs >= 1 && stats.syncs <= 50, "{stats:?}");
    wal.close();
    assert!(matches!(
        wal.write_blocking(vec![rec(0, RecordKind::Vote, 0, b"late")]),
        Err(Error::WalClosed)
    ));
    drop(wal);

    let (wal, recovered) = Wal::open(&dir, WalOptions::default()).unwrap();
    assert_eq!(recovered, all);
    // appending after recovery continues the same segment
    wal.write_blocking(vec![rec(9, RecordKind::Entries, 1, b"after")])
        .unwrap();
    drop(wal);
    let (_wal, recovered) = Wal::open(&dir, WalOptions::default()).unwrap();
    assert_eq!(recovered.len(), all.len() + 1);
    assert_eq!(recovered[..all.len()], all[..]);
    assert_eq!(recovered[all.len()].payload, b"after");
    assert_eq!(segment_files(&dir), ["00000000000000000001.wal"]);
}

#[test]
fn async_write_and_callbacks_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(tmp.path(), WalOptions::default()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        wal.write(vec![rec(1, RecordKind::Entries, 1, b"a")])
            .await
            .unwrap();
    });
    let order = Arc::new(Mutex::new(Vec::new()));
    for i in 0..200 {
        let order = order.clone();
        let records = if i % 5 == 0 {
            Vec::new() // an empty submission is answered too
        } else {
            vec![rec(i, RecordKind::Entries, 1, b"x")]
        };
        wal.submit(
            records,
            Some(Box::new(move |r| {
                r.unwrap();
                order.lock().unwrap().push(i);
            })),
        );
    }
    wal.submit(vec![rec(0, RecordKind::Vote, 0, b"no callback")], None);
    wal.close(); // drains the queue first
    assert_eq!(*order.lock().unwrap(), (0..200).collect::<Vec<_>>());
    drop(wal);
    let (_wal, recovered) = Wal::open(tmp.path(), WalOptions::default()).unwrap();
    assert_eq!(recovered.len(), 1 + 160 + 1);
    assert_eq!(recovered.last().unwrap().payload, b"no callback");
}

#[test]
fn group_commit_shares_syncs() {
    let tmp = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(tmp.path(), WalOptions::default()).unwrap();
    const THREADS: u32 = 8;
    const WRITES: u32 = 500;
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let wal = wal.clone();
            s.spawn(move || {
                for i in 0..WRITES {
                    wal.write_blocking(vec![rec(
                        t,
                        RecordKind::Entries,
                        u64::from(i) + 1,
                        &[t as u8; 100],
                    )])
                    .unwrap();
                }
            });
        }
    });
    let stats = wal.stats();
    let writes = u64::from(THREADS * WRITES);
    println!(
        "group commit: {writes} writes, {} syncs, {:.2} writes per sync",
        stats.syncs,
        writes as f64 / stats.syncs as f64
    );
    assert_eq!(stats.records, writes);
    assert!(stats.syncs < writes, "{stats:?}");
    drop(wal);
    let (_wal, recovered) = Wal::open(tmp.path(), WalOptions::default()).unwrap();
    assert_eq!(recovered.len() as u64, writes);
    // each thread's records are in its own submission order
    let mut next: HashMap<u32, u64> = HashMap::new();
    for r in &recovered {
        let n = next.entry(r.partition).or_insert(1);
        assert_eq!(r.index, *n);
        *n += 1;
        assert_eq!(r.payload, [r.partition as u8; 100]);
    }
}

#[test]
fn rollover_carries_sticky_state_and_purge_deletes_old_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let opts = small(64 << 10);
    let (wal, _) = Wal::open(dir, opts.clone()).unwrap();
    let payload = vec![0xabu8; 1000];
    let mut written = Vec::new();
    for i in 1..=400u64 {
        let mut batch = vec![
            rec(1, RecordKind::Entries, i, &payload),
            rec(2, RecordKind::Entries, i, &payload[..500]),
        ];
        if i % 50 == 0 {
            batch.push(rec(
                1,
                RecordKind::Vote,
                0,
                format!("p1 term {i}").as_bytes(),
            ));
            batch.push(rec(
                2,
                RecordKind::Vote,
                0,
                format!("p2 term {i}").as_bytes(),
            ));
        }
        written.extend(batch.clone());
        wal.write_blocking(batch).unwrap();
    }
    // a partition that only ever votes, once, early: its vote must survive all deletions
    wal.write_blocking(vec![rec(3, RecordKind::Vote, 0, b"p3 vote")])
        .unwrap();
    let before = wal.stats();
    assert!(before.segments_created >= 8, "{before:?}");
    assert_eq!(before.segments_deleted, 0, "nothing purged yet: {before:?}");
    let live_before = segment_files(dir).len() as u64;
    assert_eq!(before.live_segments, live_before);

    // partition 1 purges up to 300: not enough, partition 2 still holds the old segments
    wal.write_blocking(vec![rec(1, RecordKind::Purge, 300, b"")])
        .unwrap();
    assert_eq!(wal.stats().segments_deleted, 0);
    // partition 2 purges up to 300 too
    wal.write_blocking(vec![rec(2, RecordKind::Purge, 300, b"")])
        .unwrap();
    let after = wal.stats();
    assert!(after.segments_deleted > 0, "{after:?}");
    let names = segment_files(dir);
    assert_eq!(after.live_segments, names.len() as u64);
    assert_eq!(
        names.len() as u64,
        live_before + after.segments_created - before.segments_created - after.segments_deleted
    );
    assert!(!names.contains(&"00000000000000000001.wal".to_string()));
    // more votes after the purge
    wal.write_blocking(vec![rec(1, RecordKind::Vote, 0, b"p1 final")])
        .unwrap();
    drop(wal);

    let (wal, recovered) = Wal::open(dir, opts.clone()).unwrap();
    let latest = |p: u32, k: RecordKind| {
        recovered
            .iter()
            .rev()
            .find(|r| r.partition == p && r.kind == k)
            .map(|r| (r.index, r.payload.clone()))
    };
    assert_eq!(latest(1, RecordKind::Vote), Some((0, b"p1 final".to_vec())));
    assert_eq!(
        latest(2, RecordKind::Vote),
        Some((0, b"p2 term 400".to_vec()))
    );
    assert_eq!(latest(3, RecordKind::Vote), Some((0, b"p3 vote".to_vec())));
    assert_eq!(latest(1, RecordKind::Purge), Some((300, vec![])));
    assert_eq!(latest(2, RecordKind::Purge), Some((300, vec![])));
    // every entry above the watermark survives, in order
    for p in [1u32, 2] {
        let above: Vec<u64> = recovered
            .iter()
            .filter(|r| r.partition == p && r.kind == RecordKind::Entries && r.index > 300)
            .map(|r| r.index)
            .collect();
        assert_eq!(above, (301..=400).collect::<Vec<_>>(), "partition {p}");
    }
    // the recovered records are in write order: the Entries subsequence is a suffix of what
    // was written
    let entries: Vec<&Record> = recovered
        .iter()
        .filter(|r| r.kind == RecordKind::Entries)
        .collect();
    let written_entries: Vec<&Record> = written
        .iter()
        .filter(|r| r.kind == RecordKind::Entries)
        .collect();
    assert!(written_entries.ends_with(&entries));

    // purging everything leaves the active segment (and its sticky head) only
    wal.write_blocking(vec![
        rec(1, RecordKind::Purge, 400, b""),
        rec(2, RecordKind::Purge, 400, b""),
    ])
    .unwrap();
    // roll once more so that every segment holding entries is non-active
    let mut filler = 0;
    let start = wal.stats().segments_created;
    while wal.stats().segments_created == start {
        filler += 1;
        wal.write_blocking(vec![rec(4, RecordKind::Committed, 0, &payload)])
            .unwrap();
    }
    assert!(filler > 0);
    let names = segment_files(dir);
    assert_eq!(names.len(), 1, "{names:?}");
    drop(wal);
    let (_wal, recovered) = Wal::open(dir, opts).unwrap();
    assert!(recovered.iter().all(|r| r.kind != RecordKind::Entries));
    let mut sticky: Vec<(u32, RecordKind)> =
        recovered.iter().map(|r| (r.partition, r.kind)).collect();
    sticky.sort();
    sticky.dedup();
    assert_eq!(
        sticky,
        [
            (1, RecordKind::Purge),
            (1, RecordKind::Vote),
            (2, RecordKind::Purge),
            (2, RecordKind::Vote),
            (3, RecordKind::Vote),
            (4, RecordKind::Committed)
        ]
    );
}

#[test]
fn purge_watermark_is_per_partition_and_segments_go_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let opts = small(4096);
    let (wal, _) = Wal::open(dir, opts.clone()).unwrap();
    // segment 1..: partition 1 only; later segments: partition 2 only
    for i in 1..=20u64 {
        wal.write_blocking(vec![rec(1, RecordKind::Entries, i, &[1; 500])])
            .unwrap();
    }
    let p1_segments = wal.stats().segments_created;
    for i in 1..=20u64 {
        wal.write_blocking(vec![rec(2, RecordKind::Entries, i, &[2; 500])])
            .unwrap();
    }
    // purging partition 2 entirely deletes nothing: the oldest segments hold partition 1
    wal.write_blocking(vec![rec(2, RecordKind::Purge, 20, b"")])
        .unwrap();
    assert_eq!(wal.stats().segments_deleted, 0);
    // purging partition 1 up to 10 deletes only segments whose partition-1 entries are <= 10
    wal.write_blocking(vec![rec(1, RecordKind::Purge, 10, b"")])
        .unwrap();
    let deleted = wal.stats().segments_deleted;
    assert!(deleted > 0 && deleted < p1_segments, "{:?}", wal.stats());
    drop(wal);
    let (_wal, recovered) = Wal::open(dir, opts).unwrap();
    let p1: Vec<u64> = recovered
        .iter()
        .filter(|r| r.partition == 1 && r.kind == RecordKind::Entries)
        .map(|r| r.index)
        .collect();
    assert!(p1.contains(&11) && p1.ends_with(&[20]), "{p1:?}");
}

#[test]
fn a_failed_write_poisons_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(tmp.path(), WalOptions::default()).unwrap();
    wal.write_blocking(vec![rec(1, RecordKind::Entries, 1, b"ok")])
        .unwrap();
    wal.inject_write_failure();
    let e = wal
        .write_blocking(vec![rec(1, RecordKind::Entries, 2, b"lost")])
        .unwrap_err();
    assert!(
        matches!(&e, Error::WalFailed(m) if m.contains("injected failure")),
        "{e}"
    );
    let syncs = wal.stats().syncs;
    for _ in 0..3 {
        let e = wal
            .write_blocking(vec![rec(1, RecordKind::Entries, 3, b"later")])
            .unwrap_err();
        assert!(matches!(e, Error::WalFailed(_)), "{e}");
    }
    let failures = Arc::new(Mutex::new(0));
    let f = failures.clone();
    wal.submit(
        vec![rec(1, RecordKind::Vote, 0, b"x")],
        Some(Box::new(move |r| {
            assert!(matches!(r, Err(Error::WalFailed(_))));
            *f.lock().unwrap() += 1;
        })),
    );
    wal.close();
    assert_eq!(*failures.lock().unwrap(), 1);
    assert_eq!(
        wal.stats().syncs,
        syncs,
        "nothing is written after a failure"
    );
    drop(wal);
    let (_wal, recovered) = Wal::open(tmp.path(), WalOptions::default()).unwrap();
    assert_eq!(recovered, vec![rec(1, RecordKind::Entries, 1, b"ok")]);
}

#[test]
fn an_oversized_record_is_refused_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(tmp.path(), WalOptions::default()).unwrap();
    // zeroed allocations are lazily mapped: this costs no real memory
    let huge = Record {
        partition: 1,
        kind: RecordKind::Entries,
        index: 1,
        payload: vec![0; MAX_PAYLOAD + 1],
    };
    let e = wal.write_blocking(vec![huge]).unwrap_err();
    assert!(matches!(e, Error::Format { .. }), "{e}");
    wal.write_blocking(vec![rec(1, RecordKind::Entries, 1, b"fine")])
        .unwrap();
    drop(wal);
    let (_wal, recovered) = Wal::open(tmp.path(), WalOptions::default()).unwrap();
    assert_eq!(recovered, vec![rec(1, RecordKind::Entries, 1, b"fine")]);
}

#[test]
fn closing_from_a_callback_and_dropping_the_last_handle() {
    let tmp = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(tmp.path(), WalOptions::default()).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let inner = wal.clone();
    wal.submit(
        vec![rec(1, RecordKind::Vote, 0, b"v")],
        Some(Box::new(move |r| {
            r.unwrap();
            // closing (and dropping a handle) on the writer thread must not deadlock
            inner.close();
            drop(inner);
            tx.send(()).unwrap();
        })),
    );
    rx.recv().unwrap();
    assert!(matches!(
        wal.write_blocking(vec![rec(1, RecordKind::Vote, 0, b"w")]),
        Err(Error::WalClosed)
    ));
    drop(wal);

    // dropping the last handle closes the log after draining it
    let (wal, recovered) = Wal::open(tmp.path(), WalOptions::default()).unwrap();
    assert_eq!(recovered.len(), 1);
    let seen = Arc::new(Mutex::new(0));
    for i in 0..10 {
        let seen = seen.clone();
        wal.submit(
            vec![rec(1, RecordKind::Entries, i, b"e")],
            Some(Box::new(move |r| {
                r.unwrap();
                *seen.lock().unwrap() += 1;
            })),
        );
    }
    drop(wal);
    assert_eq!(*seen.lock().unwrap(), 10);
    let (_wal, recovered) = Wal::open(tmp.path(), WalOptions::default()).unwrap();
    assert_eq!(recovered.len(), 11);
}

#[test]
fn a_panicking_callback_does_not_stop_the_writer() {
    let tmp = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(tmp.path(), WalOptions::default()).unwrap();
    wal.submit(
        vec![rec(1, RecordKind::Vote, 0, b"v")],
        Some(Box::new(|_| panic!("callback bug"))),
    );
    wal.write_blocking(vec![rec(1, RecordKind::Vote, 0, b"w")])
        .unwrap();
}

#[test]
fn batches_respect_max_batch_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = WalOptions {
        segment_bytes: 64 << 20,
        max_batch_bytes: 1, // every submission is its own batch
    };
    let (wal, _) = Wal::open(tmp.path(), opts).unwrap();
    let done = Arc::new(Mutex::new(0));
    for i in 0..20 {
        let done = done.clone();
        wal.submit(
            vec![rec(1, RecordKind::Entries, i, b"0123456789")],
            Some(Box::new(move |r| {
                r.unwrap();
                *done.lock().unwrap() += 1;
            })),
        );
    }
    wal.close();
    assert_eq!(*done.lock().unwrap(), 20);
    assert_eq!(wal.stats().syncs, 20);
}

#[test]
fn leftover_tmp_files_are_removed_and_a_short_segment_is_refused_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (wal, _) = Wal::open(dir, small(1024)).unwrap();
    for i in 0..10 {
        wal.write_blocking(vec![rec(1, RecordKind::Entries, i, &[7; 300])])
            .unwrap();
    }
    wal.write_blocking(vec![rec(1, RecordKind::Vote, 0, b"v")])
        .unwrap();
    drop(wal);
    let (_, all) = Wal::open(dir, small(1024)).unwrap();
    let names = segment_files(dir);
    let last_seq: u64 = names.last().unwrap()[..20].parse().unwrap();
    // a crash while creating the next segment leaves only its tmp file: removed, nothing lost
    std::fs::write(dir.join(format::tmp_name(last_seq + 1)), b"half a segment").unwrap();
    let (wal, recovered) = Wal::open(dir, small(1024)).unwrap();
    assert_eq!(recovered, all);
    assert_eq!(segment_files(dir), names);
    drop(wal);
    // a segment shorter than its header cannot come from a crash (segments are renamed into
    // place after their header is synced): refused, naming the file, and left as it is
    let short = dir.join(format::segment_name(last_seq + 1));
    let header = format::encode_header(last_seq + 1, 0);
    std::fs::write(&short, &header[..10]).unwrap();
    let e = Wal::open(dir, small(1024)).unwrap_err().to_string();
    assert!(
        e.contains(short.to_str().unwrap()) && e.contains("shorter than its header"),
        "{e}"
    );
    assert_eq!(std::fs::read(&short).unwrap(), &header[..10]);
    // removed by hand, the log goes on
    std::fs::remove_file(&short).unwrap();
    let (wal, recovered) = Wal::open(dir, small(1024)).unwrap();
    assert_eq!(recovered, all);
    wal.write_blocking(vec![rec(1, RecordKind::Entries, 10, &[8; 300])])
        .unwrap();
    drop(wal);
    let (_wal, recovered) = Wal::open(dir, small(1024)).unwrap();
    assert_eq!(recovered[..all.len()], all[..]);
    assert_eq!(recovered.last().unwrap().index, 10);
}

#[test]
fn handles_are_send_and_sync_and_write_is_send() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: &T) {}
    let tmp = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(tmp.path(), WalOptions::default()).unwrap();
    send_sync(&wal);
    let fut = wal.write(Vec::new());
    send(&fut);
    drop(fut);
}

#[test]
fn a_file_where_the_directory_should_be_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("wal");
    std::fs::write(&path, b"not a directory").unwrap();
    let e = Wal::open(&path, WalOptions::default()).unwrap_err();
    assert!(e.to_string().contains(&path.display().to_string()), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), b"not a directory");
}

#[test]
fn records_nobody_waits_for_ride_along_and_are_synced_within_the_bound() {
    let tmp = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(tmp.path(), WalOptions::default()).unwrap();
    let syncs = || wal.stats().syncs;
    // nobody waits: no sync of its own at once
    wal.submit(vec![rec(1, RecordKind::Committed, 0, b"c1")], None);
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(syncs(), 0, "a record nobody waits for was synced at once");
    // a waited write syncs both with one fdatasync
    wal.write_blocking(vec![rec(1, RecordKind::Entries, 1, b"e1")])
        .unwrap();
    assert_eq!(syncs(), 1);
    // alone, it is synced by the bound (100 ms), without anybody writing again
    wal.submit(vec![rec(1, RecordKind::Committed, 0, b"c2")], None);
    let t = std::time::Instant::now();
    while syncs() < 2 {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(2),
            "a deferred record was never synced"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(
        t.elapsed() >= std::time::Duration::from_millis(50),
        "{:?}",
        t.elapsed()
    );
    drop(wal);
    let (_wal, recovered) = Wal::open(tmp.path(), WalOptions::default()).unwrap();
    let payloads: Vec<&[u8]> = recovered.iter().map(|r| r.payload.as_slice()).collect();
    assert_eq!(payloads, [&b"c1"[..], b"e1", b"c2"]);
}
