//! The partition groups of one node: proposals commit, reads see them, and everything survives a
//! restart, including across snapshots and log purges.

use perdure_cluster::Partitions;
use perdure_types::command::{Command, Op, OpResult};
use perdure_types::config::NodeConfig;
use perdure_types::EntityId;
use std::time::Duration;

fn config(dir: &std::path::Path) -> NodeConfig {
    let mut c = NodeConfig {
        data_dir: dir.join("data"),
        partitions: 4,
        ..Default::default()
    };
    c.raft.snapshot_every_entries = 50;
    c.raft.keep_entries_after_snapshot = 10;
    c.wal.segment_bytes = 1 << 20;
    c.wal.max_batch_bytes = 1 << 20;
    c
}

fn enqueue(entity: &EntityId, i: u32) -> Command {
    Command::single(Op::Enqueue {
        target: perdure_types::Target::Entity(entity.clone()),
        message: i.to_be_bytes().to_vec(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_survive_restarts_across_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    // two entities on every partition
    let mut entities: Vec<EntityId> = Vec::new();
    for p in 0..cfg.partitions {
        let on_p = (0..)
            .map(|i| EntityId::new("probe", &format!("k{i}")).unwrap())
            .filter(|e| perdure_types::partition::partition_of(e, cfg.partitions) == p)
            .take(2);
        entities.extend(on_p);
    }
    let mut sent = 0u32;
    for round in 0..3 {
        let parts = Partitions::start(&cfg).await.unwrap();
        parts.wait_ready(Duration::from_secs(10)).await.unwrap();
        // everything written in earlier rounds is there, in order
        for e in &entities {
            let st = parts.read(parts.partition_of(e)).await.unwrap();
            let got: Vec<u32> = st
                .inbox()
                .messages(&perdure_types::Target::Entity(e.clone()))
                .unwrap()
                .into_iter()
                .map(|(_, m)| u32::from_be_bytes(m.try_into().unwrap()))
                .collect();
            let want: Vec<u32> = (0..sent)
                .filter(|i| {
                    (*i as usize) % entities.len() == entities.iter().position(|x| x == e).unwrap()
                })
                .collect();
            assert_eq!(got, want, "round {round}, {e}");
        }
        // 200 more writes per round: several snapshots and purges per partition
        for _ in 0..200 {
            let e = &entities[sent as usize % entities.len()];
            let r = parts
                .propose(parts.partition_of(e), enqueue(e, sent))
                .await
                .unwrap();
            assert!(matches!(r[..], [OpResult::Enqueued(_)]), "{r:?}");
            sent += 1;
        }
        parts.shutdown().await;
    }
    // the rounds above really went through snapshots: every partition has one
    for p in 0..cfg.partitions {
        let snaps = std::fs::read_dir(cfg.data_dir.join(format!("snapshots/p{p:05}")))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "snap")
            })
            .count();
        assert_eq!(snaps, 1, "partition {p} keeps exactly its latest snapshot");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_refuses_another_partition_count() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    Partitions::start(&cfg).await.unwrap().shutdown().await;
    let other = NodeConfig {
        partitions: 8,
        ..cfg
    };
    let e = Partitions::start(&other).await.unwrap_err().to_string();
    assert!(e.contains("4 partitions") && e.contains("8"), "{e}");
}

/// the state store is not a durability barrier, so the design must survive losing it entirely: the node
/// rebuilds every partition's state from its snapshot file and the write-ahead log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_state_store_is_rebuilt_from_snapshots_and_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let keys: Vec<EntityId> = (0..20)
        .map(|i| EntityId::new("counter", &format!("c{i}")).unwrap())
        .collect();
    let parts = Partitions::start(&cfg).await.unwrap();
    parts.wait_ready(Duration::from_secs(10)).await.unwrap();
    // 170 writes per key spread over 4 partitions: snapshots every 50 entries, plus a log tail
    for round in 0..170u32 {
        for k in &keys {
            let cmd = Command::single(Op::SetState {
                entity: k.clone(),
                state: round.to_be_bytes().to_vec(),
            });
            parts.propose(parts.partition_of(k), cmd).await.unwrap();
        }
    }
    parts.shutdown().await;

    std::fs::remove_dir_all(cfg.data_dir.join("state")).unwrap();

    let parts = Partitions::start(&cfg).await.unwrap();
    parts.wait_ready(Duration::from_secs(10)).await.unwrap();
    for k in &keys {
        let st = parts.read(parts.partition_of(k)).await.unwrap();
        assert_eq!(
            st.entities().get(k).unwrap(),
            Some(169u32.to_be_bytes().to_vec()),
            "{k}"
        );
    }
    parts.shutdown().await;
}

/// A damaged snapshot file, or one from a newer perdure, stops the start with an error that names
/// the file; the file is left exactly as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_snapshot_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let k = EntityId::new("counter", "x").unwrap();
    let p = perdure_types::partition::partition_of(&k, cfg.partitions);
    let parts = Partitions::start(&cfg).await.unwrap();
    parts.wait_ready(Duration::from_secs(10)).await.unwrap();
    for i in 0..120u32 {
        let cmd = Command::single(Op::SetState {
            entity: k.clone(),
            state: i.to_be_bytes().to_vec(),
        });
        parts.propose(p, cmd).await.unwrap();
    }
    parts.shutdown().await;
    let snap_dir = cfg.data_dir.join(format!("snapshots/p{p:05}"));
    let snap = std::fs::read_dir(&snap_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let good = std::fs::read(&snap).unwrap();

    // 1. a flipped byte in the middle
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    std::fs::write(&snap, &bad).unwrap();
    let e = Partitions::start(&cfg).await.unwrap_err().to_string();
    assert!(e.contains(snap.to_str().unwrap()), "{e}");
    assert_eq!(
        std::fs::read(&snap).unwrap(),
        bad,
        "the damaged file was rewritten"
    );

    // 2. a newer format version in the header frame (frame bodies start with the version byte)
    let magic = b"perdure snapshot\n".len();
    let mut newer = good[..magic].to_vec();
    let header = perdure_types::codec::frame::decode(&good[magic..]);
    let perdure_types::codec::frame::Decoded::Frame { body, len } = header else {
        panic!("{header:?}")
    };
    let mut body = body.to_vec();
    body[0] = perdure_types::codec::FORMAT_VERSION + 1;
    perdure_types::codec::frame::encode(&body, &mut newer);
    newer.extend_from_slice(&good[magic + len..]);
    std::fs::write(&snap, &newer).unwrap();
    let e = Partitions::start(&cfg).await.unwrap_err().to_string();
    assert!(
        e.contains(snap.to_str().unwrap()) && e.contains("newer"),
        "{e}"
    );

    // 3. restored: the node starts and has the data
    std::fs::write(&snap, &good).unwrap();
    let parts = Partitions::start(&cfg).await.unwrap();
    parts.wait_ready(Duration::from_secs(10)).await.unwrap();
    assert_eq!(
        parts.read(p).await.unwrap().entities().get(&k).unwrap(),
        Some(119u32.to_be_bytes().to_vec())
    );
    parts.shutdown().await;
}

/// Damage to the end of the log that the state store had already applied (possible only with
/// corrupted synced data) makes openraft purge the log up to the applied position. That purge
/// must be backed by a durable snapshot, or a later loss of the (non-durable) state store would
/// lose those writes for good. Scenario: old snapshot, newer writes, damaged log tail, restart,
/// one more write, state store lost, restart: every write is still there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_log_tail_behind_applied_state_is_covered_by_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = NodeConfig {
        partitions: 1,
        ..config(dir.path())
    };
    let key = |s: &str| EntityId::new("reg", s).unwrap();
    let set = |k: EntityId| {
        Command::single(Op::SetState {
            entity: k,
            state: b"v".to_vec(),
        })
    };
    let parts = Partitions::start(&cfg).await.unwrap();
    parts.wait_ready(Duration::from_secs(10)).await.unwrap();
    for i in 0..60 {
        parts.propose(0, set(key(&format!("a{i}")))).await.unwrap(); // a snapshot near entry 50
    }
    for i in 0..20 {
        parts.propose(0, set(key(&format!("b{i}")))).await.unwrap();
    }
    parts.shutdown().await; // the state store is flushed at a clean close

    // damage the log's last records
    let wal = cfg.data_dir.join("wal");
    let last = std::fs::read_dir(&wal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max()
        .unwrap();
    let len = std::fs::metadata(&last).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&last).unwrap();
    f.set_len(len - 150).unwrap();
    drop(f);

    let parts = Partitions::start(&cfg).await.unwrap();
    parts.wait_ready(Duration::from_secs(10)).await.unwrap();
    parts.propose(0, set(key("c"))).await.unwrap();
    parts.shutdown().await;

    std::fs::remove_dir_all(cfg.data_dir.join("state")).unwrap();

    let parts = Partitions::start(&cfg).await.unwrap();
    parts.wait_ready(Duration::from_secs(10)).await.unwrap();
    let st = parts.read(0).await.unwrap();
    let missing: Vec<String> = (0..60)
        .map(|i| format!("a{i}"))
        .chain((0..20).map(|i| format!("b{i}")))
        .chain(["c".to_string()])
        .filter(|k| st.entities().get(&key(k)).unwrap().is_none())
        .collect();
    assert!(missing.is_empty(), "lost: {missing:?}");
    drop(st); // a live reader would hold the state store open past shutdown
    parts.shutdown().await;
}

/// Copies a directory tree.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// The whole node, not just the WAL, over a torn or damaged log tail: for every byte offset in the
/// last ~300 bytes of the last segment, cut the file there (or flip that byte), with the state
/// store kept or lost, and start the node. A cut, or a flip in the last record (a torn final
/// write), must open (no panic) and hold exactly a prefix of the writes, in order: never a value
/// that was not written, never a hole. A flip in an earlier record (intact records after it:
/// damage to synced data) must refuse to start, naming the segment and the damaged record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_opens_on_every_torn_or_damaged_tail() {
    let dir = tempfile::tempdir().unwrap();
    let base = NodeConfig {
        partitions: 1,
        ..config(dir.path())
    };
    let key = |i: u32| EntityId::new("reg", &format!("k{i:03}")).unwrap();
    const N: u32 = 70; // crosses a snapshot (every 50 entries)
    let parts = Partitions::start(&base).await.unwrap();
    parts.wait_ready(Duration::from_secs(10)).await.unwrap();
    for i in 0..N {
        let cmd = Command::single(Op::SetState {
            entity: key(i),
            state: i.to_be_bytes().to_vec(),
        });
        parts.propose(0, cmd).await.unwrap();
    }
    parts.shutdown().await;
    let pristine = dir.path().join("pristine");
    std::fs::rename(&base.data_dir, &pristine).unwrap();
    let last_segment = |root: &std::path::Path| {
        std::fs::read_dir(root.join("wal"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .max()
            .unwrap()
    };
    let seg_len = std::fs::metadata(last_segment(&pristine)).unwrap().len();
    let starts = record_starts(&std::fs::read(last_segment(&pristine)).unwrap());
    let mut cases = 0;
    let mut refused = 0;
    for offset in seg_len.saturating_sub(300)..seg_len {
        for (flip, lose_state) in [(false, false), (false, true), (true, false), (true, true)] {
            // every byte is cut and flipped; the state store is kept or lost on alternate bytes
            if lose_state != (offset % 2 == 1) {
                continue;
            }
            let _ = std::fs::remove_dir_all(&base.data_dir);
            copy_dir(&pristine, &base.data_dir);
            let seg = last_segment(&base.data_dir);
            if flip {
                let mut bytes = std::fs::read(&seg).unwrap();
                bytes[offset as usize] ^= 0xff;
                std::fs::write(&seg, bytes).unwrap();
            } else {
                let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
                f.set_len(offset).unwrap();
            }
            if lose_state {
                std::fs::remove_dir_all(base.data_dir.join("state")).unwrap();
            }
            let what = format!("offset {offset}, flip {flip}, state lost {lose_state}");
            let holding = starts.iter().rev().find(|&&s| s <= offset).copied();
            if flip && holding != starts.last().copied() {
                let e = Partitions::start(&base)
                    .await
                    .err()
                    .unwrap_or_else(|| panic!("{what}: damage before intact records opened"))
                    .to_string();
                let named = format!(
                    "damaged write-ahead log record at byte {}",
                    holding.unwrap()
                );
                assert!(
                    e.contains(seg.to_str().unwrap()) && e.contains(&named),
                    "{what}: {e}"
                );
                cases += 1;
                refused += 1;
                continue;
            }
            let parts = Partitions::start(&base)
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            parts
                .wait_ready(Duration::from_secs(10))
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            let st = parts.read(0).await.unwrap();
            let present: Vec<bool> = (0..N + 5)
                .map(|i| st.entities().get(&key(i)).unwrap().is_some())
                .collect();
            let n = present.iter().take_while(|p| **p).count();
            assert!(
                present[n..].iter().all(|p| !p),
                "{what}: a hole after {n} writes"
            );
            assert!(n <= N as usize, "{what}: invented writes");
            assert!(n >= 50, "{what}: lost writes covered by the snapshot ({n})");
            for i in 0..n as u32 {
                assert_eq!(
                    st.entities().get(&key(i)).unwrap().unwrap(),
                    i.to_be_bytes(),
                    "{what}"
                );
            }
            drop(st);
            parts.shutdown().await;
            cases += 1;
        }
    }
    assert_eq!(cases, 600);
    assert!(refused > 0 && refused < 300, "{refused} refused");
}

/// Where each record of a WAL segment starts (32-byte header, then `[len u32][crc u32][body]`
/// frames).
fn record_starts(segment: &[u8]) -> Vec<u64> {
    let mut starts = Vec::new();
    let mut at = 32;
    while at + 8 <= segment.len() {
        starts.push(at as u64);
        at += 8 + u32::from_le_bytes(segment[at..at + 4].try_into().unwrap()) as usize;
    }
    assert_eq!(at, segment.len());
    starts
}
