//! The entity runtime on one node, in process: operations, idempotency, entity-to-entity signals
//! across partitions, scheduled signals across a restart, passivation, single activation.

use perdure_cluster::Partitions;
use perdure_runtime::testing::{Probe, Relay};
use perdure_runtime::{Error, Registry, Runtime, SignalOutcome, SignalRequest};
use perdure_types::config::NodeConfig;
use perdure_types::EntityId;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn registry() -> Registry {
    Registry::builtin().with(Relay).with(Probe)
}

fn overlaps() -> u64 {
    perdure_runtime::testing::probe_overlaps()
}

fn config(dir: &std::path::Path) -> NodeConfig {
    let mut c = NodeConfig {
        data_dir: dir.join("data"),
        partitions: 4,
        ..Default::default()
    };
    c.raft.snapshot_every_entries = 500;
    c
}

struct Node {
    runtime: Runtime,
}

impl Node {
    async fn start(cfg: &NodeConfig) -> Self {
        let partitions = Arc::new(Partitions::start(cfg).await.unwrap());
        partitions
            .wait_ready(Duration::from_secs(10))
            .await
            .unwrap();
        let runtime = Runtime::start(partitions, registry(), cfg.entities.clone())
            .await
            .unwrap();
        // the leader loops start the processors asynchronously
        let t = Instant::now();
        while runtime
            .entities()
            .call(id("counter", "__warmup"), "get", None)
            .await
            .is_err()
        {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "runtime never became ready"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Self { runtime }
    }

    async fn stop(self) {
        self.runtime.shutdown().await;
        let partitions = self.runtime.partitions().clone();
        drop(self.runtime);
        let t = Instant::now();
        let mut partitions = partitions;
        loop {
            match Arc::try_unwrap(partitions) {
                Ok(p) => return p.shutdown().await,
                Err(p) => {
                    assert!(
                        t.elapsed() < Duration::from_secs(10),
                        "partitions still shared"
                    );
                    partitions = p;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
    }
}

fn id(name: &str, key: &str) -> EntityId {
    EntityId::new(name, key).unwrap()
}

fn signal(e: &EntityId, op: &str, input: Option<Value>, key: Option<&str>) -> SignalRequest {
    SignalRequest {
        entity: e.clone(),
        operation: op.into(),
        input,
        idempotency_key: key.map(str::to_string),
    }
}

async fn eventually(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let t = Instant::now();
    while !f().await {
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_calls_and_reads() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&config(dir.path())).await;
    let rt = node.runtime.entities();
    let c = id("counter", "a");
    let results = rt
        .signal_batch(
            (0..100)
                .map(|_| signal(&c, "add", Some(json!(2)), None))
                .collect(),
        )
        .await;
    assert!(results
        .iter()
        .all(|r| matches!(r, Ok(SignalOutcome::Accepted))));
    assert_eq!(rt.call(c.clone(), "get", None).await.unwrap(), json!(200));
    assert_eq!(rt.get(&c).await.unwrap(), Some(json!(200)));
    assert_eq!(rt.get(&id("counter", "never")).await.unwrap(), None);

    // register cas, list append, aggregator
    let r = id("register", "r");
    rt.call(r.clone(), "set", Some(json!("x"))).await.unwrap();
    assert_eq!(
        rt.call(r.clone(), "cas", Some(json!({"expected": "y", "new": "z"})))
            .await
            .unwrap(),
        json!(false)
    );
    assert_eq!(
        rt.call(r.clone(), "cas", Some(json!({"expected": "x", "new": "z"})))
            .await
            .unwrap(),
        json!(true)
    );
    assert_eq!(rt.get(&r).await.unwrap(), Some(json!("z")));
    rt.call(r.clone(), "delete", None).await.unwrap();
    assert_eq!(rt.get(&r).await.unwrap(), None);

    // a failing call answers an error and leaves the state
    let big = id("counter", "big");
    rt.call(big.clone(), "add", Some(json!(i64::MAX)))
        .await
        .unwrap();
    let e = rt
        .call(big.clone(), "add", Some(json!(1)))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Operation(_)), "{e}");
    assert_eq!(rt.get(&big).await.unwrap(), Some(json!(i64::MAX)));

    // bad input is refused before anything is written
    let e = rt
        .signal(signal(&c, "add", Some(json!("five")), None))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::BadInput { .. }), "{e}");
    let e = rt
        .signal(signal(&c, "multiply", None, None))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::UnknownOperation { .. }), "{e}");
    let e = rt
        .signal(signal(&id("nosuch", "k"), "add", None, None))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::UnknownEntityType { .. }), "{e}");
    assert_eq!(rt.get(&c).await.unwrap(), Some(json!(200)));

    // listing with paging across partitions
    for i in 0..25 {
        rt.signal(signal(
            &id("counter", &format!("l{i:02}")),
            "add",
            None,
            None,
        ))
        .await
        .unwrap();
    }
    let mut keys = Vec::new();
    let mut cont: Option<String> = None;
    loop {
        let page = rt.list("counter", cont.as_deref(), 7).await.unwrap();
        assert!(page.entities.len() <= 7);
        keys.extend(page.entities.into_iter().map(|e| e.key));
        match page.continuation {
            Some(c) => cont = Some(c),
            None => break,
        }
    }
    keys.sort();
    let mut want: Vec<String> = (0..25)
        .map(|i| format!("l{i:02}"))
        .chain(["__warmup", "a", "big"].map(String::from))
        .collect();
    want.sort();
    keys.retain(|k| k != "__warmup");
    want.retain(|k| k != "__warmup");
    assert_eq!(keys, want);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_signals_apply_once_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let c = id("counter", "idem");
    let node = Node::start(&cfg).await;
    let rt = node.runtime.entities();
    assert_eq!(
        rt.signal(signal(&c, "add", Some(json!(5)), Some("k1")))
            .await
            .unwrap(),
        SignalOutcome::Accepted
    );
    assert_eq!(
        rt.signal(signal(&c, "add", Some(json!(5)), Some("k1")))
            .await
            .unwrap(),
        SignalOutcome::Duplicate
    );
    // the same key twice in one batch
    let r = rt
        .signal_batch(vec![
            signal(&c, "add", Some(json!(1)), Some("k2")),
            signal(&c, "add", Some(json!(1)), Some("k2")),
        ])
        .await;
    let dups = r
        .iter()
        .filter(|x| matches!(x, Ok(SignalOutcome::Duplicate)))
        .count();
    assert_eq!(dups, 1, "{r:?}");
    // the same key on another entity is another signal
    let other = id("counter", "idem2");
    assert_eq!(
        rt.signal(signal(&other, "add", Some(json!(1)), Some("k1")))
            .await
            .unwrap(),
        SignalOutcome::Accepted
    );
    assert_eq!(rt.get(&c).await.unwrap(), Some(json!(6)));
    node.stop().await;

    let node = Node::start(&cfg).await;
    let rt = node.runtime.entities();
    assert_eq!(
        rt.signal(signal(&c, "add", Some(json!(5)), Some("k1")))
            .await
            .unwrap(),
        SignalOutcome::Duplicate
    );
    assert_eq!(rt.get(&c).await.unwrap(), Some(json!(6)));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entities_signal_entities_across_partitions_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let node = Node::start(&cfg).await;
    let rt = node.runtime.entities();
    let parts = node.runtime.partitions().clone();
    // relays and targets on different partitions
    let relay = id("relay", "r1");
    let targets: Vec<String> = (0..40)
        .map(|i| format!("t{i}"))
        .filter(|k| parts.partition_of(&id("counter", k)) != parts.partition_of(&relay))
        .take(8)
        .collect();
    assert_eq!(targets.len(), 8);
    drop(parts);
    for round in 0..25 {
        for t in &targets {
            let input = json!({"to": t, "amount": round});
            rt.signal(signal(&relay, "send", Some(input), None))
                .await
                .unwrap();
        }
    }
    let want = (0..25).sum::<i64>();
    for t in &targets {
        let c = id("counter", t);
        eventually(&format!("{c} = {want}"), async || {
            rt.get(&c).await.unwrap() == Some(json!(want))
        })
        .await;
    }
    assert_eq!(
        rt.get(&relay).await.unwrap(),
        Some(json!(25 * targets.len()))
    );
    // nothing is delivered twice: the values stay put
    tokio::time::sleep(Duration::from_millis(700)).await;
    for t in &targets {
        assert_eq!(rt.get(&id("counter", t)).await.unwrap(), Some(json!(want)));
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_signals_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let node = Node::start(&cfg).await;
    let relay = id("relay", "timer");
    let scheduled = Instant::now();
    for i in 0..5 {
        let input = json!({"to": format!("late{i}"), "ms": 1500});
        node.runtime
            .entities()
            .signal(signal(&relay, "later", Some(input), None))
            .await
            .unwrap();
    }
    node.stop().await;
    assert!(
        scheduled.elapsed() < Duration::from_millis(1500),
        "the restart must happen before the timers are due"
    );

    let node = Node::start(&cfg).await;
    let rt = node.runtime.entities();
    for i in 0..5 {
        let c = id("counter", &format!("late{i}"));
        eventually(&format!("{c} fired"), async || {
            rt.get(&c).await.unwrap() == Some(json!(1))
        })
        .await;
    }
    assert!(
        scheduled.elapsed() >= Duration::from_millis(1500),
        "fired early"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    for i in 0..5 {
        assert_eq!(
            rt.get(&id("counter", &format!("late{i}"))).await.unwrap(),
            Some(json!(1)),
            "fired twice"
        );
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_operation_at_a_time_per_entity_when_passivated_under_pressure() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    // one actor per partition (4 partitions): every new entity waits for, or evicts, another
    cfg.entities.max_active = 4;
    cfg.entities.passivate_after_ms = 600_000; // only the bound stops actors
    let node = Node::start(&cfg).await;
    let rt = node.runtime.entities().clone();
    let entities: Vec<EntityId> = (0..12).map(|i| id("probe", &format!("q{i}"))).collect();
    let highest = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sampler = {
        let (rt, highest) = (rt.clone(), highest.clone());
        tokio::spawn(async move {
            loop {
                for p in 0..4 {
                    let a = rt.workload().metrics(p).unwrap().active();
                    highest.fetch_max(a, std::sync::atomic::Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    let mut tasks = Vec::new();
    for w in 0..24 {
        let rt = rt.clone();
        let entities = entities.clone();
        tasks.push(tokio::spawn(async move {
            let mut ok = 0u64;
            for i in 0..30 {
                let e = entities[(w + i) % entities.len()].clone();
                let r = if i % 2 == 0 {
                    rt.call(e.clone(), "visit", None).await.map(|_| ())
                } else {
                    rt.signal(signal(&e, "visit", None, None)).await.map(|_| ())
                };
                r.expect("operation");
                ok += 1;
            }
            ok
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    sampler.abort();
    assert_eq!(overlaps(), 0, "two operations overlapped on one entity");
    let mut sum = 0;
    for e in &entities {
        sum += rt.get(e).await.unwrap().unwrap().as_u64().unwrap();
    }
    assert_eq!(sum, total, "every operation applied exactly once");
    let pressure: u64 = (0..cfg.partitions)
        .map(|p| {
            let m = rt.workload().metrics(p).unwrap();
            m.passivations_for(perdure_runtime::Passivation::Pressure)
        })
        .sum();
    assert!(pressure > 0, "the bound never passivated an actor");
    let highest = highest.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        highest <= 1,
        "{highest} actors active in one partition, over its share of 1"
    );
    drop(rt);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_operation_at_a_time_per_entity_under_passivation_churn() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.entities.passivate_after_ms = 5; // actors stop and restart all the time
    let node = Node::start(&cfg).await;
    let rt = node.runtime.entities().clone();
    let entities: Vec<EntityId> = (0..6).map(|i| id("probe", &format!("p{i}"))).collect();
    let mut tasks = Vec::new();
    for w in 0..24 {
        let rt = rt.clone();
        let e = entities[w % entities.len()].clone();
        tasks.push(tokio::spawn(async move {
            let mut ok = 0u64;
            for i in 0..40 {
                let r = if i % 2 == 0 {
                    rt.call(e.clone(), "visit", None).await.map(|_| ())
                } else {
                    rt.signal(signal(&e, "visit", None, None)).await.map(|_| ())
                };
                r.expect("operation");
                ok += 1;
                if i % 10 == 0 {
                    tokio::time::sleep(Duration::from_millis(12)).await; // let actors passivate
                }
            }
            ok
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    assert_eq!(overlaps(), 0, "two operations overlapped on one entity");
    let mut sum = 0;
    for e in &entities {
        sum += rt.get(e).await.unwrap().unwrap().as_u64().unwrap();
    }
    assert_eq!(sum, total, "every operation applied exactly once");
    let passivations: u64 = (0..cfg.partitions)
        .map(|p| rt.workload().metrics(p).unwrap().passivations())
        .sum();
    assert!(passivations > 0, "the test never passivated an actor");
    drop(rt);
    node.stop().await;
}
