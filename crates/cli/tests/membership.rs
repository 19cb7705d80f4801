//! Membership changes under load, with real `perdure` processes on 127.0.0.1-4: a 4th node joins
//! a running 3-node cluster (it starts with its own config naming the members as seeds) while
//! node 3 is down; node 3 returns and serves; then node 2 is removed. After each change, the
//! partitions whose voters changed are exactly those whose replica set by placement changed (counted against the ideal), every group ends with
//! its placement's voters, and every counter ends exactly at the sum of its acknowledged adds.

mod common;

use common::cluster::{
    assert_counters_exact, member, ready, start, status, write_config_with, Adders, NodeSpec, Nodes,
};
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PARTITIONS: usize = 16;
const COUNTERS: usize = 24;
const SECRET: &str = "a-test-secret-of-enough-length";

fn ids(v: &Value) -> BTreeSet<u64> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default()
}

/// Per partition: its voters, once every group (and the metadata group) has exactly its
/// placement's voters, no learners and a leader, over `members`.
fn settled(v: &Value, members: &BTreeSet<u64>) -> Option<Vec<BTreeSet<u64>>> {
    let listed: BTreeSet<u64> = v["members"]
        .as_array()?
        .iter()
        .filter_map(|m| m["node_id"].as_u64())
        .collect();
    if &listed != members {
        return None;
    }
    let mut groups: Vec<&Value> = v["partitions"].as_array()?.iter().collect();
    groups.push(&v["metadata"]);
    let last = groups.len() - 1;
    let mut voters = Vec::new();
    for (i, g) in groups.into_iter().enumerate() {
        let (reps, vs) = (ids(&g["replicas"]), ids(&g["voters"]));
        // partitions have no learners once settled; the metadata group has every other member
        let learners = if i == last {
            members.difference(&reps).copied().collect()
        } else {
            BTreeSet::new()
        };
        if reps.is_empty() || reps != vs || ids(&g["learners"]) != learners {
            return None;
        }
        if !reps.is_subset(members) || g["leader"].as_u64().is_none() {
            return None;
        }
        voters.push(vs);
    }
    voters.pop(); // the metadata group
    Some(voters)
}

async fn wait_settled(
    http: &reqwest::Client,
    url: &str,
    members: &BTreeSet<u64>,
    what: &str,
) -> (Vec<BTreeSet<u64>>, Value) {
    let t = Instant::now();
    let mut last = Value::Null;
    loop {
        if let Some(v) = status(http, url).await {
            if let Some(voters) = settled(&v, members) {
                eprintln!("{what}: settled in {:?}", t.elapsed());
                return (voters, v);
            }
            last = v;
        }
        assert!(
            t.elapsed() < Duration::from_secs(90),
            "{what}: replicas never settled on {members:?}: {last}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The partitions (of `PARTITIONS`) whose replica set by placement differs between the members
/// `a` and `b`, computed here independently of the nodes (the pinned placement function:
/// rendezvous hashing with FNV-1a and SplitMix64, see `perdure_types::placement`).
fn ideal_moves(a: &[u64], b: &[u64]) -> usize {
    (0..PARTITIONS as u32)
        .filter(|&p| {
            let x: BTreeSet<u64> = perdure_types::placement::replicas(p, a, 3)
                .into_iter()
                .collect();
            let y: BTreeSet<u64> = perdure_types::placement::replicas(p, b, 3)
                .into_iter()
                .collect();
            x != y
        })
        .count()
}

fn moved(before: &[BTreeSet<u64>], after: &[BTreeSet<u64>]) -> usize {
    before.iter().zip(after).filter(|(a, b)| a != b).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_joins_and_another_leaves_under_load_and_nothing_is_lost() {
    let seed = common::test_seed("membership test");
    let dir = tempfile::tempdir().unwrap();
    let all: Vec<NodeSpec> = (1..=4).map(|id| member(id, dir.path())).collect();
    let config =
        |m: &NodeSpec, seeds: &[NodeSpec]| write_config_with(m, seeds, "test", SECRET, PARTITIONS);
    // nodes 1-3 know each other; node 4 knows them all and itself
    for m in &all {
        if m.id <= 3 {
            config(m, &all[..3])
        } else {
            config(m, &all)
        }
    }
    let nodes = Arc::new(Mutex::new(Nodes::start(&all[..3])));
    let http = common::cluster::http_client();
    for m in &all[..3] {
        assert!(
            ready(&m.url(), Duration::from_secs(30)).await,
            "node {} never ready",
            m.id
        );
    }
    let url1 = all[0].url();
    let three: BTreeSet<u64> = [1, 2, 3].into();
    let (before, _) = wait_settled(&http, &url1, &three, "formed").await;

    // load: idempotent adds through the nodes clients may use now, retried until acknowledged
    let adders = Adders::start(
        &http,
        all[..3].iter().map(NodeSpec::url).collect(),
        6,
        COUNTERS,
        seed,
    );
    let targets = adders.targets.clone();
    tokio::time::sleep(Duration::from_secs(2)).await;

    // node 3 goes down (kill -9): it will miss the whole join
    targets.lock().unwrap().retain(|u| *u != all[2].url());
    nodes.lock().unwrap().kill(2);
    tokio::time::sleep(Duration::from_secs(1)).await;

    // a 4th node joins under load, with node 3 down
    nodes.lock().unwrap().0.push(start(&all[3]));
    let joined = Instant::now();
    let four: BTreeSet<u64> = [1, 2, 3, 4].into();
    let (after_join, _) = wait_settled(&http, &url1, &four, "join").await;
    let (m_join, ideal_join) = (
        moved(&before, &after_join),
        ideal_moves(&[1, 2, 3], &[1, 2, 3, 4]),
    );
    eprintln!(
        "join: {m_join} of {PARTITIONS} partitions moved (ideal {ideal_join}; rf/n = 3/4 -> {}) in {:?}",
        PARTITIONS * 3 / 4,
        joined.elapsed()
    );
    assert_eq!(
        m_join, ideal_join,
        "the partitions that moved are those whose replica set changed"
    );
    for (p, (b, a)) in before.iter().zip(&after_join).enumerate() {
        assert!(
            b.difference(a).count() <= 1 && a.difference(b).all(|&n| n == 4),
            "partition {p}: {b:?} -> {a:?}: a join only hands slots to the new node"
        );
    }
    assert!(
        ready(&all[3].url(), Duration::from_secs(30)).await,
        "node 4 never ready"
    );
    targets.lock().unwrap().push(all[3].url());
    // node 3 returns: its copy of the partitions it lost meanwhile is stale (it still finds
    // itself a voter there); it learns the membership, asks the hosts for those leaders, serves
    nodes.lock().unwrap().restart(2);
    assert!(
        ready(&all[2].url(), Duration::from_secs(30)).await,
        "node 3 never ready after missing the join"
    );
    targets.lock().unwrap().push(all[2].url());
    tokio::time::sleep(Duration::from_secs(2)).await;

    // node 2 is removed under load; clients stop using it first
    targets.lock().unwrap().retain(|u| *u != all[1].url());
    let removed = Instant::now();
    // (503 while the metadata group elects a leader: retried, as a client does)
    loop {
        let r = http
            .delete(format!("{url1}/cluster/members/2"))
            .send()
            .await
            .unwrap();
        if r.status() == 503 && removed.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
        break;
    }
    let left: BTreeSet<u64> = [1, 3, 4].into();
    let (after_remove, _) = wait_settled(&http, &url1, &left, "removal").await;
    let (m_remove, ideal_remove) = (
        moved(&after_join, &after_remove),
        ideal_moves(&[1, 2, 3, 4], &[1, 3, 4]),
    );
    eprintln!(
        "removal: {m_remove} of {PARTITIONS} partitions moved (ideal {ideal_remove}) in {:?}",
        removed.elapsed()
    );
    assert_eq!(m_remove, ideal_remove);
    for (p, (b, a)) in after_join.iter().zip(&after_remove).enumerate() {
        assert!(!a.contains(&2), "partition {p} still on node 2: {a:?}");
        assert!(
            b == a || b.contains(&2),
            "partition {p} moved without losing node 2: {b:?} -> {a:?}"
        );
    }
    // removing it again, or going below the replication factor, is refused and changes nothing
    for id in [2, 3] {
        let r = http
            .delete(format!("{url1}/cluster/members/{id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 409, "removing {id}");
        let body = r.text().await.unwrap();
        eprintln!("removing node {id} again/below rf: {body}");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let added = adders.stop().await;
    let (acked, retries) = (&added.sums, added.retries);
    // the removed node can be stopped: nothing depends on it
    nodes.lock().unwrap().kill(1);

    // restarted, the removed node does not rejoin, and says why
    nodes.lock().unwrap().restart(1);
    let t = Instant::now();
    loop {
        if let Ok(r) = http.get(format!("{}/readyz", all[1].url())).send().await {
            let (code, body) = (r.status(), r.text().await.unwrap_or_default());
            if body.contains("was removed") {
                assert_eq!(code, 503);
                eprintln!("the removed node, restarted, says: {body}");
                break;
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the removed node never said it was removed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let v = status(&http, &url1).await.unwrap();
    assert_eq!(
        v["members"].as_array().map(Vec::len),
        Some(3),
        "the removed node rejoined: {v}"
    );

    // exact, through every remaining node
    assert!(acked.len() >= COUNTERS / 2);
    for m in all.iter().filter(|m| m.id != 2) {
        assert_counters_exact(&http, &m.url(), acked).await;
    }
    // and the 4-node placement spreads leaders: each remaining node leads some partition
    let t = Instant::now();
    loop {
        let v = status(&http, &url1).await.unwrap_or_default();
        let leading: BTreeSet<u64> = v["partitions"]
            .as_array()
            .map(|a| a.iter().filter_map(|p| p["leader"].as_u64()).collect())
            .unwrap_or_default();
        if leading == left {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "leaders never spread over {left:?}: {leading:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!(
        "{} adds acknowledged, {} retries; {} counters exact on nodes 1, 3, 4",
        added.adds,
        retries,
        acked.len()
    );
    drop(nodes);
}
