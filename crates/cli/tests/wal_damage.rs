//! Damage to synced data in the write-ahead log is not a torn write (hardening case 6): with the
//! real binary, acknowledged adds are written, the node is stopped, one byte in the middle of
//! the last WAL segment is flipped (intact records after it), and the restart must refuse: exit
//! non-zero, naming the file and the damaged record's offset, leaving the file as it was. It
//! used to start, cut the log at the damage and lose the acknowledged adds after it. With the
//! byte restored, the node starts and every acknowledged add is there.

use perdure_harness::{Error, Node, NodeSpec, StartOptions};
use std::path::{Path, PathBuf};
use std::time::Duration;

const ADDS: u32 = 300;
const COUNTER: &str = "/runtime/webhooks/durabletask/entities/counter/walstrict";

/// The last segment of the node's log.
fn last_segment(data: &Path) -> PathBuf {
    std::fs::read_dir(data.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max()
        .unwrap()
}

/// Where each record of a segment starts (32-byte header, then `[len u32][crc u32][body]`
/// frames).
fn record_starts(segment: &[u8]) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut at = 32;
    while at + 8 <= segment.len() {
        starts.push(at);
        at += 8 + u32::from_le_bytes(segment[at..at + 4].try_into().unwrap()) as usize;
    }
    assert_eq!(
        at,
        segment.len(),
        "the clean segment ends with a whole record"
    );
    starts
}

fn flip(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0x20;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_flipped_byte_mid_log_refuses_to_start_naming_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let spec = NodeSpec::new(1, 0, dir.path()).unwrap();
    let mut config = spec.config(&[]);
    config.partitions = 2;
    spec.write_config(&config).unwrap();
    let url = spec.url();
    let data = spec.data_dir.clone();
    let mut node = Node::new(spec, env!("CARGO_BIN_EXE_perdure"));
    node.start(&StartOptions::default()).unwrap();
    node.wait_ready(Duration::from_secs(60)).unwrap();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let http = reqwest::Client::new();
    let get = |http: &reqwest::Client| {
        rt.block_on(async {
            let r = http.get(format!("{url}{COUNTER}")).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.text().await.unwrap()
        })
    };
    rt.block_on(async {
        for _ in 0..ADDS {
            let r = http
                .post(format!("{url}{COUNTER}?op=add"))
                .body("1")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
        }
    });
    assert_eq!(get(&http), ADDS.to_string());
    node.stop(Duration::from_secs(30)).unwrap();

    // one byte in the middle of the last segment: intact records after it
    let seg = last_segment(&data);
    let clean = std::fs::read(&seg).unwrap();
    let starts = record_starts(&clean);
    assert!(starts.len() > ADDS as usize, "{} records", starts.len());
    let middle = clean.len() / 2;
    let damaged = *starts.iter().rev().find(|&&s| s <= middle).unwrap();
    assert!(damaged < *starts.last().unwrap());
    flip(&seg, middle);

    node.restart().unwrap();
    match node.wait_ready(Duration::from_secs(60)) {
        Err(Error::Exited { status, .. }) => assert!(!status.success(), "{status}"),
        other => panic!("the node did not refuse to start: {other:?}"),
    }
    let log = node.log();
    let refusal = log
        .lines()
        .rev()
        .find(|l| l.contains("damaged write-ahead log record"))
        .unwrap_or_else(|| panic!("no refusal in the log:\n{}", node.log_tail(20)));
    assert!(refusal.contains(seg.to_str().unwrap()), "{refusal}");
    assert!(
        refusal.contains(&format!("at byte {damaged} ")),
        "{refusal}"
    );
    assert!(refusal.contains("Rebuilding a damaged node"), "{refusal}");
    let mut expected = clean.clone();
    expected[middle] ^= 0x20;
    assert!(
        std::fs::read(&seg).unwrap() == expected,
        "the refused start changed the segment"
    );

    // nothing was cut: with the byte restored, every acknowledged add is there
    flip(&seg, middle);
    node.restart().unwrap();
    node.wait_ready(Duration::from_secs(60)).unwrap();
    // a new client: the old one's pooled connection went with the old process
    assert_eq!(get(&reqwest::Client::new()), ADDS.to_string());
    node.stop(Duration::from_secs(30)).unwrap();
}
