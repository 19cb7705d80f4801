//! A 3-node cluster of real `perdure` processes on 127.0.0.1-3: concurrent idempotent signals
//! (retried until acknowledged, through any node) while the node leading the most partitions is
//! killed with -9; the cluster serves again within a few election timeouts; the node is restarted,
//! catches up, and leaders rebalance; every counter ends exactly at the sum of its acknowledged
//! adds, read through every node.

mod common;

use common::cluster::{
    assert_counters_exact, http_client, leaders, ready, start, status, three_members,
    wait_balanced, write_config_with, Adders, NodeSpec, Nodes, BASE,
};
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PARTITIONS: usize = 8;
const COUNTERS: usize = 16;

fn write_config(m: &NodeSpec, all: &[NodeSpec]) {
    write_config_with(m, all, "test", "a-test-secret-of-enough-length", PARTITIONS)
}

/// Three members on 127.0.0.1-3, their configs written in `dir`.
fn three_configured(dir: &Path) -> Vec<NodeSpec> {
    let members = three_members(dir);
    for m in &members {
        write_config(m, &members);
    }
    members
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_kill_loses_nothing_and_the_cluster_recovers() {
    let seed = common::test_seed("cluster test");
    let dir = tempfile::tempdir().unwrap();
    let members = three_configured(dir.path());
    let nodes = Arc::new(Mutex::new(Nodes::start(&members)));
    let http = http_client();
    let formed = Instant::now();
    for m in &members {
        assert!(
            ready(&m.url(), Duration::from_secs(30)).await,
            "node {} never ready",
            m.id
        );
    }
    eprintln!("cluster formed and ready in {:?}", formed.elapsed());

    // load: idempotent adds through any node, retried (on a node picked again) until acknowledged
    let urls: Vec<String> = members.iter().map(NodeSpec::url).collect();
    let adders = Adders::start(&http, urls.clone(), 6, COUNTERS, seed);
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    // single activation across leader changes: probe visits (idempotent, retried until
    // acknowledged) through any node; each visit runs once, never overlapping another
    let probe_acked: Arc<Mutex<HashMap<usize, u64>>> = Arc::default();
    let overlaps = Arc::new(AtomicU64::new(0));
    for c in 0..2u64 {
        let (http, urls, stop, probe_acked, overlaps) = (
            http.clone(),
            urls.clone(),
            stop.clone(),
            probe_acked.clone(),
            overlaps.clone(),
        );
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ (100 + c));
        clients.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let probe = rng.gen_range(0..4usize);
                let key = format!("p{c}-{n}");
                n += 1;
                let mut node = rng.gen_range(0..urls.len());
                let since = Instant::now();
                loop {
                    assert!(
                        since.elapsed() < Duration::from_secs(60),
                        "probe visit {key} not acknowledged"
                    );
                    let r = http
                        .post(format!(
                            "{}{BASE}/entities/probe/q{probe}?op=visit",
                            urls[node]
                        ))
                        .header("Idempotency-Key", &key)
                        .send()
                        .await;
                    if matches!(&r, Ok(resp) if resp.status() == 202) {
                        *probe_acked.lock().unwrap().entry(probe).or_default() += 1;
                        break;
                    }
                    node = (node + 1) % urls.len();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                if n % 20 == 0 {
                    // a call reports the overlaps the answering node has seen; it goes to an
                    // uncounted probe: a call has no idempotency key, so when its node dies
                    // mid-call its outcome is unknown and it cannot be counted either way
                    if let Ok(r) = http
                        .post(format!(
                            "{}{BASE}/entities/probe/check{probe}/call?op=visit",
                            urls[node]
                        ))
                        .send()
                        .await
                    {
                        if let Ok(v) = r.json::<serde_json::Value>().await {
                            overlaps
                                .fetch_max(v["overlaps"].as_u64().unwrap_or(0), Ordering::Relaxed);
                        }
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    // kill -9 the node leading the most partitions
    let view = leaders(&http, &urls[0]).await.expect("cluster status");
    let (&victim, &led) = view.iter().max_by_key(|(_, n)| **n).expect("some leader");
    let vi = (victim - 1) as usize;
    nodes.lock().unwrap().kill(vi);
    let killed = Instant::now();
    eprintln!("killed node {victim}, leader of {led} of {PARTITIONS} partitions");
    // serving again: every counter answers a call through a survivor
    let survivor = urls[(vi + 1) % 3].clone();
    let mut pending: Vec<usize> = (0..COUNTERS).collect();
    while !pending.is_empty() {
        assert!(
            killed.elapsed() < Duration::from_secs(20),
            "not serving 20 s after the kill: {pending:?}"
        );
        let mut still = Vec::new();
        for c in pending {
            let ok = matches!(http.post(format!("{survivor}{BASE}/entities/counter/k{c}/call?op=get")).send().await, Ok(r) if r.status() == 200);
            if !ok {
                still.push(c);
            }
        }
        pending = still;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let recovery = killed.elapsed();
    eprintln!("every partition served again {recovery:?} after the kill");

    tokio::time::sleep(Duration::from_secs(2)).await;
    // restart it: it catches up, and leaders spread again
    nodes.lock().unwrap().restart(vi);
    assert!(
        ready(&urls[vi], Duration::from_secs(30)).await,
        "restarted node never ready"
    );
    // leadership as a survivor sees it (the restarted node's own view is briefly stale)
    let t = Instant::now();
    loop {
        let view = leaders(&http, &survivor).await.unwrap_or_default();
        if view.get(&victim).copied().unwrap_or(0) >= 1 {
            eprintln!("leaders after restart: {view:?} ({:?})", t.elapsed());
            break;
        }
        // under load, a takeover by election alone lost to the leader whose log was ahead and
        // backed off 10 s, then 20 s; the leader now pauses writes while it hands over
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the restarted node never led again: {view:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // every takeover under this load was won at the first attempt
    let log = nodes.lock().unwrap().0[vi].log();
    let failed = log.matches("taking back leadership failed").count();
    assert_eq!(failed, 0, "takeovers lost under load: {failed}");
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let added = adders.stop().await;
    let (acked, retries) = (&added.sums, added.retries);

    // exact, through every node (the restarted one included)
    assert!(acked.len() >= COUNTERS / 2);
    for url in &urls {
        assert_counters_exact(&http, url, acked).await;
    }
    let probe_acked = probe_acked.lock().unwrap().clone();
    for (probe, visits) in &probe_acked {
        let v: serde_json::Value = http
            .get(format!("{}{BASE}/entities/probe/q{probe}", urls[0]))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            v.as_u64(),
            Some(*visits),
            "probe q{probe}: every acknowledged visit exactly once"
        );
    }
    assert_eq!(
        overlaps.load(Ordering::Relaxed),
        0,
        "two operations overlapped on one entity"
    );
    eprintln!(
        "{} probes exact ({} visits)",
        probe_acked.len(),
        probe_acked.values().sum::<u64>()
    );
    eprintln!(
        "{} counters exact on all nodes; {} retries; recovery after leader kill {recovery:?}",
        acked.len(),
        retries
    );
    drop(nodes);
}

/// A node with the wrong secret, another cluster id or another partition count is refused by its
/// peers with an error that says which; the cluster does not form around it (and nothing is
/// written); once its config is fixed, it forms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misconfigured_nodes_are_refused_with_errors_that_say_why() {
    let http = http_client();
    for (what, cluster_id, secret, partitions, expect) in [
        (
            "wrong secret",
            "test",
            "another-secret-of-enough-length",
            PARTITIONS,
            "secret",
        ),
        (
            "other cluster id",
            "other",
            "a-test-secret-of-enough-length",
            PARTITIONS,
            "cluster id",
        ),
        (
            "other partition count",
            "test",
            "a-test-secret-of-enough-length",
            4,
            "partition count",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let members = three_members(dir.path());
        for m in &members[..2] {
            write_config(m, &members);
        }
        write_config_with(&members[2], &members, cluster_id, secret, partitions);
        let mut nodes = Nodes::start(&members);
        // node 1 sees node 3 down, and says why
        let t = Instant::now();
        let reason = loop {
            let v: serde_json::Value = match http
                .get(format!("{}/cluster", members[0].url()))
                .send()
                .await
            {
                Ok(r) => r.json().await.unwrap_or_default(),
                Err(_) => serde_json::Value::Null,
            };
            let m3 = v["members"]
                .as_array()
                .and_then(|ms| ms.iter().find(|m| m["node_id"] == 3).cloned());
            if let Some(m3) = m3 {
                if m3["up"] == false && m3["error"].as_str().is_some_and(|e| e.contains(expect)) {
                    break m3["error"].as_str().unwrap().to_string();
                }
            }
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "{what}: node 1 never reported node 3's problem: {v}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        eprintln!("{what}: node 1 says about node 3: {reason}");
        // the cluster does not form around it: bootstrap waits for every member
        let r = http
            .get(format!("{}/readyz", members[0].url()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503, "{what}: formed without node 3");
        // fixed config: it forms, and serves
        nodes.kill(2);
        if partitions != PARTITIONS {
            // its data directory was created with the wrong count: it refuses another, so start fresh
            std::fs::remove_dir_all(&members[2].data_dir).unwrap();
        }
        write_config(&members[2], &members);
        nodes.restart(2);
        for m in &members {
            assert!(
                ready(&m.url(), Duration::from_secs(30)).await,
                "{what}: node {} not ready after the fix",
                m.id
            );
        }
        let r = http
            .post(format!(
                "{}{BASE}/entities/counter/x/call?op=add",
                members[2].url()
            ))
            .json(&1)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{what}: the fixed cluster does not serve");
        drop(nodes);
    }
}

/// Sum of `forwarded_requests` over the nodes.
async fn forwarded(http: &reqwest::Client, members: &[NodeSpec]) -> u64 {
    let mut n = 0;
    for m in members {
        // a status asks every member (500 ms each, at once); generous, so that a hang (as the
        // watch-borrow deadlock once was) shows as itself rather than as a slow machine
        let v: serde_json::Value = http
            .get(format!("{}/cluster", m.url()))
            .timeout(Duration::from_secs(20))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        n += v["forwarded_requests"].as_u64().unwrap();
    }
    n
}

/// The Rust client learns the routing table and sends entity requests straight to the leaders:
/// the nodes forward (almost) nothing for it, while a client without routing, talking to one
/// node, has most of its requests forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_sends_straight_to_leaders() {
    let dir = tempfile::tempdir().unwrap();
    let members = three_configured(dir.path());
    let mut nodes = Nodes::start(&members);
    let http = http_client();
    for m in &members {
        assert!(ready(&m.url(), Duration::from_secs(30)).await);
    }
    // right after bootstrap node 1 leads everything; wait until the balancer is done: every
    // partition led by its preferred leader (after that, leaders stay put)
    wait_balanced(&http, &members[1].url(), PARTITIONS, &[1, 2, 3]).await;
    let plain = perdure_client::Client::builder(&members[0].url())
        .routing(false)
        .build()
        .unwrap();
    let routed = perdure_client::Client::builder(&members[0].url())
        .attempts(12)
        .build()
        .unwrap();
    assert!(routed.routing());
    let before = forwarded(&http, &members).await;
    for i in 0..150 {
        plain
            .signal("counter", &format!("plain{i}"), "add", None)
            .await
            .unwrap();
    }
    let by_plain = forwarded(&http, &members).await - before;
    let before = forwarded(&http, &members).await;
    for i in 0..150 {
        routed
            .signal("counter", &format!("routed{i}"), "add", None)
            .await
            .unwrap();
        assert_eq!(
            routed.get("counter", &format!("routed{i}")).await.unwrap(),
            Some(serde_json::json!(1))
        );
    }
    let by_routed = forwarded(&http, &members).await - before;
    eprintln!("forwarded: {by_plain} of 150 signals without routing, {by_routed} of 300 requests with routing");
    assert!(
        by_plain >= 50,
        "a node leads every partition? ({by_plain} forwarded)"
    );
    assert!(
        by_routed * 10 <= by_plain,
        "the routing client was forwarded {by_routed} times"
    );

    // its base node dies: it learns the table from the other members and keeps working
    nodes.kill(0);
    for i in 0..60 {
        let key = format!("after{i}");
        routed
            .signal("counter", &key, "add", None)
            .await
            .unwrap_or_else(|e| panic!("{key}: {e}"));
        assert_eq!(
            routed.get("counter", &key).await.unwrap(),
            Some(serde_json::json!(1))
        );
    }
}

/// Entity-to-entity signals cross nodes: a relay on one partition signals counters on every
/// partition, whose leaders are spread over the three nodes; each counter ends exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entity_signals_reach_partitions_led_by_other_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let members = three_configured(dir.path());
    let _nodes = Nodes::start(&members);
    let http = http_client();
    for m in &members {
        assert!(ready(&m.url(), Duration::from_secs(30)).await);
    }
    // wait until leaders are spread, so destinations are led by other nodes than the relay's
    let t = Instant::now();
    loop {
        let view = leaders(&http, &members[1].url()).await.unwrap_or_default();
        let total: usize = view.values().sum();
        if total == PARTITIONS && view.len() == 3 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(40),
            "leaders never spread: {view:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let client = perdure_client::Client::new(&members[0].url()).unwrap();
    for round in 1..=5 {
        for t in 0..16 {
            let input = serde_json::json!({"to": format!("x{t}"), "amount": round});
            client
                .signal("relay", "r", "send", Some(input))
                .await
                .unwrap();
        }
    }
    for t in 0..16 {
        let key = format!("x{t}");
        let t0 = Instant::now();
        loop {
            let v = client.get("counter", &key).await.unwrap();
            if v == Some(serde_json::json!(15)) {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "counter {key} is {v:?}, want 15"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // an operation that fails on the leader fails the same way through every node: the error's
    // kind (422), code and message cross the node channel intact
    let call = |url: String| {
        let http = http.clone();
        async move {
            http.post(format!("{url}{BASE}/entities/counter/boom/call?op=add"))
                .body(i64::MAX.to_string())
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(call(members[0].url()).await.status(), 200);
    let mut forwarded = 0;
    for m in &members {
        // a read says whether this node leads the key's partition or forwards to its leader
        let read = http
            .get(format!("{}{BASE}/entities/counter/boom", m.url()))
            .send()
            .await
            .unwrap();
        forwarded += usize::from(read.headers().get("x-perdure-forwarded").is_some());
        let r = call(m.url()).await;
        assert_eq!(r.status(), 422, "through node {}", m.id);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "operation_failed", "{body}");
        assert_eq!(
            body["error"]["message"], "operation failed: counter overflow",
            "{body}"
        );
    }
    assert!(
        forwarded >= 1,
        "no node had to forward: the test proved nothing"
    );
}

/// A node whose seeds do not answer founds nothing and says, on `/readyz`, which seeds it waits
/// for; once they start, the cluster forms. Then a cluster node stops cleanly on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_seeds_are_named_and_nothing_is_founded_without_them() {
    let http = http_client();
    let dir = tempfile::tempdir().unwrap();
    let members = three_configured(dir.path());
    let mut nodes = Nodes(vec![start(&members[0])]);
    let url = members[0].url();
    let t = Instant::now();
    let said = loop {
        if let Ok(r) = http.get(format!("{url}/readyz")).send().await {
            assert_eq!(r.status(), 503, "ready without its seeds");
            let body = r.text().await.unwrap();
            if body.contains("waits for seeds")
                && body.contains("node 2")
                && body.contains("node 3")
            {
                break body;
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "never said which seeds it waits for"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("alone, node 1 says: {said}");
    let v: serde_json::Value = http
        .get(format!("{url}/cluster"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["membership_version"], 0, "founded alone: {v}");
    for m in &members[1..] {
        nodes.0.push(start(m));
    }
    for m in &members {
        assert!(
            ready(&m.url(), Duration::from_secs(30)).await,
            "node {} not ready once its seeds run",
            m.id
        );
    }

    // SIGTERM stops a cluster node cleanly: nothing still holds its storage when it closes
    nodes.kill(0);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_perdure"))
        .args(["serve", "--config"])
        .arg(&members[0].config)
        .env("PERDURE_LOG", "warn,openraft=off")
        .env("PERDURE_LOG_FORMAT", "plain")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        ready(&url, Duration::from_secs(30)).await,
        "node 1 not ready again"
    );
    let term = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = child.wait().unwrap();
    let mut log = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut log).unwrap();
    assert!(status.success(), "exit after SIGTERM: {status}\n{log}");
    assert!(
        !log.contains("still referenced"),
        "storage was still in use when the node closed it:\n{log}"
    );
}

/// A leader killed with -9 and started again at once is back before its followers elect anyone,
/// and openraft 0.9 resumes its leadership in the same term, with the commit index it saved
/// before the crash: that record rides along with later syncs, so it may lag what was
/// acknowledged. Reads, and the entity runtime's start-up barrier, must then wait until the log
/// the node restarted with is applied, or they serve (and actors build on) state without
/// acknowledged writes. Under load, several rounds of restarting the node that leads the most
/// partitions: no read through any node ever sees less than was acknowledged before it began,
/// and every counter ends exact. On the build before the wait this failed 2 runs of 2 (an
/// acknowledged add lost for good: every later read of its counter short by it; 6 rounds were
/// not always enough, hence 15); the chaos `restart` nemesis found it first.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leaders_restarted_at_once_serve_every_acknowledged_write() {
    const ROUNDS: usize = 15;
    let seed = common::test_seed("restart test");
    let dir = tempfile::tempdir().unwrap();
    let members = three_configured(dir.path());
    let mut nodes = Nodes::start(&members);
    let http = http_client();
    for m in &members {
        assert!(
            ready(&m.url(), Duration::from_secs(30)).await,
            "node {} never ready",
            m.id
        );
    }
    let urls: Vec<String> = members.iter().map(NodeSpec::url).collect();
    let ids: Vec<u64> = members.iter().map(|m| m.id).collect();
    wait_balanced(&http, &urls[0], PARTITIONS, &ids).await;
    let adders = Arc::new(Adders::start(&http, urls.clone(), 6, COUNTERS, seed));

    // readers: every read must see at least the sums acknowledged before it was sent
    let stop = Arc::new(AtomicBool::new(false));
    let stale: Arc<Mutex<Vec<String>>> = Arc::default();
    let reads = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..2u64)
        .map(|r| {
            let (http, urls, stop, stale, reads, adders) = (
                http.clone(),
                urls.clone(),
                stop.clone(),
                stale.clone(),
                reads.clone(),
                adders.clone(),
            );
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ (200 + r));
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let c = rng.gen_range(0..COUNTERS);
                    let url = &urls[rng.gen_range(0..urls.len())];
                    let floor = adders.sums().get(&c).copied().unwrap_or(0);
                    let r = http
                        .get(format!("{url}{BASE}/entities/counter/k{c}"))
                        .timeout(Duration::from_secs(2))
                        .send()
                        .await;
                    if let Ok(r) = r {
                        if r.status() == 200 {
                            let v = r.json::<serde_json::Value>().await.unwrap_or_default();
                            let v = v.as_i64().unwrap_or(0);
                            reads.fetch_add(1, Ordering::Relaxed);
                            if v < floor {
                                stale.lock().unwrap().push(format!(
                                    "k{c} via {url}: read {v}, {floor} acknowledged before"
                                ));
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        })
        .collect();

    for round in 0..ROUNDS {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let view = leaders(&http, &urls[round % 3]).await.unwrap_or_default();
        let Some((&victim, &led)) = view.iter().max_by_key(|(id, n)| (**n, **id)) else {
            continue;
        };
        let vi = (victim - 1) as usize;
        nodes.kill(vi);
        nodes.restart(vi);
        let t = Instant::now();
        assert!(
            ready(&urls[vi], Duration::from_secs(30)).await,
            "node {victim} not ready after its restart"
        );
        eprintln!(
            "round {round}: node {victim} (leader of {led}) killed and restarted, ready in {:?}",
            t.elapsed()
        );
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.await.unwrap();
    }
    let added = Arc::into_inner(adders).expect("readers done").stop().await;
    let stale = stale.lock().unwrap().clone();
    eprintln!(
        "{} adds acknowledged ({} retries), {} reads",
        added.adds,
        added.retries,
        reads.load(Ordering::Relaxed)
    );
    assert!(
        stale.is_empty(),
        "{} reads saw less than was acknowledged, e.g. {:?}",
        stale.len(),
        &stale[..stale.len().min(5)]
    );
    assert!(
        reads.load(Ordering::Relaxed) > 100,
        "too few reads to show anything"
    );
    for url in &urls {
        assert_counters_exact(&http, url, &added.sums).await;
    }
}

/// A replica restarted after a crash rejoins as a follower: the partitions it does not lead
/// keep their leader and term. (openraft 0.9 has no pre-vote: unless the leaders' heartbeats
/// reach it before its first election timeout, the restarted replica campaigns with a higher
/// term and deposes healthy leaders; the hello at start and the connection-backoff reset are
/// what make them reach it in time.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_replica_does_not_depose_healthy_leaders() {
    let http = http_client();
    let dir = tempfile::tempdir().unwrap();
    let members = three_configured(dir.path());
    let mut nodes = Nodes::start(&members);
    for m in &members {
        assert!(ready(&m.url(), Duration::from_secs(30)).await);
    }
    let url = members[0].url();
    let before = wait_balanced(&http, &url, PARTITIONS, &[1, 2, 3]).await;
    // node 3 crashes and stays down long enough for the leaders' connections to it to back off
    nodes.kill(2);
    tokio::time::sleep(Duration::from_secs(3)).await;
    nodes.restart(2);
    assert!(ready(&members[2].url(), Duration::from_secs(30)).await);
    // several election timeouts (400-800 ms) after it is back
    tokio::time::sleep(Duration::from_secs(4)).await;
    let after = status(&http, &url).await.expect("cluster status");
    let mut kept = 0;
    for (b, a) in before["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .zip(after["partitions"].as_array().unwrap())
    {
        if b["leader"] == 3 {
            continue; // its own partitions changed leader when it died (and may come back)
        }
        assert_eq!(
            (&a["leader"], &a["term"]),
            (&b["leader"], &b["term"]),
            "partition {}: the restarted replica deposed its leader",
            b["partition"]
        );
        kept += 1;
    }
    assert!(kept > 0, "node 3 led every partition: nothing checked");
    eprintln!("{kept} partitions kept their leader and term across node 3's restart");
}
