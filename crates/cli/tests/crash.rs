//! Crash test with the real binary: concurrent clients write while the node is `kill -9`ed at
//! random moments and restarted, 20 times. Afterwards every acknowledged write is present, in
//! order, exactly once, with the sequence number it was acknowledged with; nothing that was never
//! sent appears. Small snapshot intervals and WAL segments make the runs cross snapshots, log
//! purges and segment rollovers. Seeded: `PERDURE_TEST_SEED=N` replays a run's kill schedule.

mod common;

use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const CLIENTS: u32 = 16;
const ROUNDS: u64 = 20;

fn node_args(data: &std::path::Path) -> Vec<String> {
    [
        "--data-dir",
        data.to_str().unwrap(),
        "--partitions",
        "4",
        "--snapshot-every",
        "300",
        "--wal-segment-bytes",
        "1048576",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// (client, run, i) -> acknowledged inbox sequence number
type Acks = HashMap<(u32, u64, u64), u64>;

fn parse_ack(line: &str) -> Option<((u32, u64, u64), u64)> {
    let mut f = line.strip_prefix("ack ")?.split(' ');
    let c = f.next()?.parse().ok()?;
    let r = f.next()?.parse().ok()?;
    let i = f.next()?.parse().ok()?;
    let seq = f.next()?.parse().ok()?;
    Some(((c, r, i), seq))
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let seed = common::test_seed("crash test");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let bin = env!("CARGO_BIN_EXE_perdure");
    let mut acks: Acks = HashMap::new();
    let mut rounds_with_acks = 0;

    for run in 0..ROUNDS {
        let mut child = Command::new(bin)
            .args(["debug", "load"])
            .args(node_args(&data))
            .args(["--clients", &CLIENTS.to_string(), "--run", &run.to_string()])
            .env("PERDURE_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start perdure");
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let reader = {
            let lines = lines.clone();
            std::thread::spawn(move || {
                // read_line keeps a torn last line without its newline: such a line is ignored
                let mut r = BufReader::new(stdout);
                let mut buf = String::new();
                while r.read_line(&mut buf).unwrap_or(0) > 0 {
                    if buf.ends_with('\n') {
                        lines.lock().unwrap().push(buf.trim_end().to_string());
                    }
                    buf.clear();
                }
            })
        };
        // kill at a random moment: sometimes during recovery, mostly under load
        let delay = rng.gen_range(150..1500);
        std::thread::sleep(Duration::from_millis(delay));
        child.kill().expect("kill -9");
        let status = child.wait().unwrap();
        reader.join().unwrap();
        assert!(
            status.code().is_none(),
            "round {run}: the node exited by itself ({status}) before it was killed"
        );
        let got: Vec<_> = lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| parse_ack(l))
            .collect();
        if !got.is_empty() {
            rounds_with_acks += 1;
        }
        eprintln!(
            "round {run}: killed after {delay} ms, {} acknowledged writes",
            got.len()
        );
        acks.extend(got);
    }
    assert!(
        rounds_with_acks >= ROUNDS / 2,
        "only {rounds_with_acks} of {ROUNDS} rounds acknowledged anything: the test proves little"
    );

    let out = Command::new(bin)
        .args(["debug", "dump"])
        .args(node_args(&data))
        .args(["--clients", &CLIENTS.to_string()])
        .env("PERDURE_LOG", "warn")
        .output()
        .expect("dump");
    assert!(
        out.status.success(),
        "dump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut checked = 0;
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let c = v["client"].as_u64().unwrap() as u32;
        let items: Vec<(u64, (u64, u64))> = v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|it| {
                let seq = it[0].as_u64().unwrap();
                let (r, i) = it[1].as_str().unwrap().split_once(':').unwrap();
                (seq, (r.parse().unwrap(), i.parse().unwrap()))
            })
            .collect();
        // in send order (runs in order, writes within a run in order), each once
        for w in items.windows(2) {
            assert!(
                w[0].0 < w[1].0,
                "client {c}: inbox sequence not increasing: {w:?}"
            );
            assert!(
                w[0].1 < w[1].1,
                "client {c}: out of send order or duplicated: {w:?}"
            );
        }
        // per run: a gap-free prefix 0..n, at most one write beyond the last acknowledged one
        let mut per_run: BTreeMap<u64, Vec<(u64, u64)>> = BTreeMap::new();
        for &(seq, (r, i)) in &items {
            per_run.entry(r).or_default().push((i, seq));
        }
        for (r, writes) in &per_run {
            for (k, &(i, seq)) in writes.iter().enumerate() {
                assert_eq!(
                    i, k as u64,
                    "client {c} run {r}: write {k} missing before {i}"
                );
                if let Some(&acked_seq) = acks.get(&(c, *r, i)) {
                    assert_eq!(acked_seq, seq, "client {c} run {r} write {i}: acknowledged as {acked_seq}, stored as {seq}");
                }
            }
            let last_acked = acks
                .keys()
                .filter(|(cc, rr, _)| *cc == c && rr == r)
                .map(|k| k.2)
                .max();
            let present = writes.len() as u64;
            let limit = last_acked.map(|a| a + 2).unwrap_or(1);
            assert!(present <= limit, "client {c} run {r}: {present} writes stored, only {last_acked:?} acknowledged: invented data");
        }
        // every acknowledged write is present
        for (&(cc, r, i), _) in acks.iter().filter(|((cc, _, _), _)| *cc == c) {
            let present = per_run.get(&r).is_some_and(|w| (i as usize) < w.len());
            assert!(
                present,
                "client {cc} run {r} write {i} was acknowledged and is lost"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, acks.len(), "every acknowledged write was checked");
    eprintln!("{checked} acknowledged writes verified after {ROUNDS} kill -9 rounds");
}
