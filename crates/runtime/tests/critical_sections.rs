//! Entity critical sections on one node, in process: orchestrations lock sets of entities (taken
//! in sorted order, passed from entity to entity across partitions), only the holder's
//! operations run on a locked entity, everything else waits (durably) and runs after the release,
//! a finished, failed or terminated holder leaves nothing locked, and a lock survives a restart.

mod common;

use common::{config, Node};
use perdure_runtime::orchestrations::model::{OrchestrationContext, OrchestrationError};
use perdure_runtime::{
    Error, OrchestrationRegistry, Registries, Registry, SignalOutcome, SignalRequest,
};
use perdure_types::command::LockHolder;
use perdure_types::config::{NodeConfig, OrchestrationsConfig};
use perdure_types::orchestration::RuntimeStatus;
use perdure_types::EntityId;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

fn account(key: &str) -> EntityId {
    EntityId::new("counter", key).unwrap()
}

fn entity_of(v: &Value, field: &str) -> Result<EntityId, OrchestrationError> {
    let key = v[field]
        .as_str()
        .ok_or_else(|| OrchestrationError::new("BadInput", format!("no {field}")))?;
    Ok(account(key))
}

fn registry() -> OrchestrationRegistry {
    OrchestrationRegistry::default()
        // moves `amount` from account `from` to account `to` inside a critical section; answers
        // whether both balances moved by exactly the amount, read inside the section
        .orchestrator("Transfer", |ctx: OrchestrationContext| async move {
            let input: Value = ctx.input()?;
            let (from, to) = (entity_of(&input, "from")?, entity_of(&input, "to")?);
            let amount = input["amount"].as_i64().unwrap_or(1);
            ctx.lock_entities(&[from.clone(), to.clone()]).await?;
            let a = ctx.call_entity(&from, "get", Value::Null).await?;
            let b = ctx.call_entity(&to, "get", Value::Null).await?;
            ctx.signal_entity(&from, "add", -amount)?;
            ctx.call_entity(&to, "add", amount).await?;
            let a2 = ctx.call_entity(&from, "get", Value::Null).await?;
            let b2 = ctx.call_entity(&to, "get", Value::Null).await?;
            ctx.unlock_entities();
            let (a, b, a2, b2) = (
                a.as_i64().unwrap_or(0),
                b.as_i64().unwrap_or(0),
                a2.as_i64().unwrap_or(0),
                b2.as_i64().unwrap_or(0),
            );
            Ok(json!(a2 == a - amount && b2 == b + amount))
        })
        // locks `keys`, says so in its custom status, then on each of `gos` (default 1) "Go"
        // events adds 1 to the first entity and shows its value (a call: the entity is locked
        // by this execution), and on "Release" unlocks (when `unlock`) and returns that value
        .orchestrator("Hold", |ctx: OrchestrationContext| async move {
            let input: Value = ctx.input()?;
            let keys: Vec<EntityId> = input["keys"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).map(account).collect())
                .unwrap_or_default();
            ctx.lock_entities(&keys).await?;
            ctx.set_custom_status("locked")?;
            let mut v = Value::Null;
            for _ in 0..input["gos"].as_u64().unwrap_or(1) {
                ctx.wait_for_external_event("Go").await?;
                v = ctx.call_entity(&keys[0], "add", 1).await?;
                ctx.set_custom_status(json!({"seen": v}))?;
            }
            ctx.wait_for_external_event("Release").await?;
            if input["unlock"].as_bool().unwrap_or(true) {
                ctx.unlock_entities();
            }
            Ok(v)
        })
        // locks `keys` and ends at once (completed, or failed when `fail`), never unlocking
        .orchestrator("LockAndLeave", |ctx: OrchestrationContext| async move {
            let input: Value = ctx.input()?;
            let keys: Vec<EntityId> = input["keys"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).map(account).collect())
                .unwrap_or_default();
            ctx.lock_entities(&keys).await?;
            ctx.signal_entity(&keys[0], "add", 100)?;
            if input["fail"].as_bool().unwrap_or(false) {
                return Err(OrchestrationError::new("Oops", "failed inside a lock"));
            }
            Ok(Value::Null)
        })
}

async fn start_node(cfg: &NodeConfig) -> Node {
    let registries = Registries {
        entities: Registry::builtin(),
        orchestrations: registry(),
    };
    Node::start(cfg, registries, OrchestrationsConfig::default()).await
}

/// Helpers of these tests beside the common node's.
impl Node {
    /// Waits until instance `id` shows `status` as its custom status.
    async fn custom_status(&self, id: &str, status: Value) {
        let t = Instant::now();
        loop {
            let s = self
                .runtime
                .orchestrations()
                .status(id, false)
                .await
                .unwrap();
            let now = s
                .record
                .custom_status
                .as_deref()
                .and_then(|c| serde_json::from_str::<Value>(c).ok());
            if now.as_ref() == Some(&status) {
                return;
            }
            assert!(!s.record.status.is_terminal(), "{id} ended: {:?}", s.record);
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "{id} never showed {status}: {now:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn value(&self, key: &str) -> i64 {
        self.runtime
            .entities()
            .get(&account(key))
            .await
            .unwrap()
            .and_then(|v| v.as_i64())
            .unwrap_or(0)
    }

    async fn signal(&self, key: &str, amount: i64) -> SignalOutcome {
        self.runtime
            .entities()
            .signal(SignalRequest {
                entity: account(key),
                operation: "add".into(),
                input: Some(json!(amount)),
                idempotency_key: None,
            })
            .await
            .unwrap()
    }

    /// Who holds `key`'s lock, as the partition's `locks` table says (linearizable read).
    async fn holder(&self, key: &str) -> Option<LockHolder> {
        let e = account(key);
        let partitions = self.runtime.partitions();
        let state = partitions.read(partitions.partition_of(&e)).await.unwrap();
        state.locks().get(&e).unwrap()
    }

    /// Waits until nobody holds `key`'s lock: the releases a finished execution sends travel
    /// through the outbox after it finished.
    async fn released(&self, key: &str) {
        let t = Instant::now();
        while let Some(h) = self.holder(key).await {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "{key} still locked by {h:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until `key` is worth `want`.
    async fn value_becomes(&self, key: &str, want: i64) {
        let t = Instant::now();
        loop {
            let v = self.value(key).await;
            if v == want {
                return;
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "{key} is {v}, never {want}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A client's call of `get` on `key`, running in the background.
    fn call_get(&self, key: &str) -> tokio::task::JoinHandle<Result<Value, Error>> {
        let entities = self.runtime.entities().clone();
        let e = account(key);
        tokio::spawn(async move { entities.call(e, "get", None).await })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_transfers_over_overlapping_pairs_conserve_the_total() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(&config(dir.path())).await;
    let keys: Vec<String> = (0..4).map(|i| format!("acct-{i}")).collect();
    // the accounts live on more than one partition: the lock requests cross partitions
    let parts: BTreeSet<u32> = keys
        .iter()
        .map(|k| node.runtime.partitions().partition_of(&account(k)))
        .collect();
    assert!(parts.len() > 1, "every account on one partition: {parts:?}");
    for k in &keys {
        node.signal(k, 1_000).await;
    }
    // 20 transfers over overlapping pairs, each pair also the other way round: the 12 ordered
    // pairs of 4 accounts, then the first 8 again
    let ordered: Vec<(usize, usize)> = (0..4)
        .flat_map(|a| (0..4).filter(move |b| *b != a).map(move |b| (a, b)))
        .collect();
    let pairs: Vec<(usize, usize)> = (0..20).map(|i| ordered[i % ordered.len()]).collect();
    assert!(
        pairs.contains(&(0, 1)) && pairs.contains(&(1, 0)),
        "{pairs:?}"
    );
    let started = Instant::now();
    // meanwhile, clients add and take back 7 on every account, over and over: a section that
    // saw one of these between its reads would answer false
    let noise = {
        let entities = node.runtime.entities().clone();
        let keys = keys.clone();
        tokio::spawn(async move {
            for round in 0..10 {
                for k in &keys {
                    for amount in [7, -7] {
                        let outcome = entities
                            .signal(SignalRequest {
                                entity: account(k),
                                operation: "add".into(),
                                input: Some(json!(amount)),
                                idempotency_key: Some(format!("noise-{round}-{k}-{amount}")),
                            })
                            .await
                            .unwrap();
                        assert_eq!(outcome, SignalOutcome::Accepted);
                    }
                }
            }
        })
    };
    for (i, (a, b)) in pairs.iter().enumerate() {
        node.start_orch(
            "Transfer",
            &format!("t-{i}"),
            json!({"from": keys[*a], "to": keys[*b], "amount": i + 1}),
        )
        .await;
    }
    for i in 0..pairs.len() {
        assert_eq!(
            node.finish(&format!("t-{i}")).await,
            (RuntimeStatus::Completed, Some(json!(true))),
            "transfer {i} (each one sees only its own changes inside its section)"
        );
    }
    noise.await.unwrap();
    eprintln!("{} transfers done in {:?}", pairs.len(), started.elapsed());
    let mut total = 0;
    let mut expected = vec![1_000i64; 4];
    for (i, (a, b)) in pairs.iter().enumerate() {
        expected[*a] -= i as i64 + 1;
        expected[*b] += i as i64 + 1;
    }
    for (k, want) in keys.iter().zip(&expected) {
        node.released(k).await;
        let v = node.value(k).await;
        assert_eq!(v, *want, "{k}");
        total += v;
    }
    assert_eq!(total, 4_000);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_signal_to_a_locked_entity_is_acknowledged_and_runs_after_the_unlock() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(&config(dir.path())).await;
    node.start_orch("Hold", "h1", json!({"keys": ["held", "other"]}))
        .await;
    node.custom_status("h1", json!("locked")).await;
    let holder = node.holder("held").await.expect("locked");
    assert_eq!(holder.instance.as_str(), "h1");
    assert_eq!(node.holder("other").await, Some(holder.clone()));

    // a client's signal is acknowledged at once, and waits
    let t = Instant::now();
    assert_eq!(node.signal("held", 10).await, SignalOutcome::Accepted);
    assert!(t.elapsed() < Duration::from_secs(5));
    // a client's call waits
    let call = node.call_get("held");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!call.is_finished(), "a call ran on a locked entity");
    assert_eq!(
        node.value("held").await,
        0,
        "the signal ran on a locked entity"
    );

    // the holder's own call passes what waits
    node.runtime
        .orchestrations()
        .raise_event("h1", "Go", None)
        .await
        .unwrap();
    node.custom_status("h1", json!({"seen": 1})).await;
    assert_eq!(node.value("held").await, 1);
    assert!(!call.is_finished());

    // released: what waited runs, in order (the signal, then the call)
    node.runtime
        .orchestrations()
        .raise_event("h1", "Release", None)
        .await
        .unwrap();
    assert_eq!(
        node.finish("h1").await,
        (RuntimeStatus::Completed, Some(json!(1)))
    );
    assert_eq!(call.await.unwrap().unwrap(), json!(11));
    assert_eq!(node.value("held").await, 11);
    node.released("held").await;
    node.released("other").await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_that_ends_leaves_nothing_locked() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(&config(dir.path())).await;
    let o = node.runtime.orchestrations();

    // completed and failed while holding: released by the turn that ends them
    node.start_orch("LockAndLeave", "done", json!({"keys": ["x", "y"]}))
        .await;
    assert_eq!(node.finish("done").await.0, RuntimeStatus::Completed);
    node.start_orch(
        "LockAndLeave",
        "fails",
        json!({"keys": ["x", "y"], "fail": true}),
    )
    .await;
    assert_eq!(node.finish("fails").await.0, RuntimeStatus::Failed);
    for k in ["x", "y"] {
        node.released(k).await;
    }
    // both signals ran (each sent inside its section)
    node.value_becomes("x", 200).await;

    // terminated while holding, and terminated while waiting for a lock another one holds
    node.start_orch("Hold", "holder", json!({"keys": ["x"], "unlock": false}))
        .await;
    node.custom_status("holder", json!("locked")).await;
    node.start_orch("Hold", "waiter", json!({"keys": ["x", "y"]}))
        .await;
    // the waiter holds nothing of x; y is free until x is granted to it
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        node.holder("x").await.map(|h| h.instance.to_string()),
        Some("holder".into())
    );
    assert_eq!(node.holder("y").await, None);
    o.terminate("waiter", None, false).await.unwrap();
    assert_eq!(node.finish("waiter").await.0, RuntimeStatus::Terminated);
    o.terminate("holder", None, false).await.unwrap();
    assert_eq!(node.finish("holder").await.0, RuntimeStatus::Terminated);
    // the waiter's request was dropped with its release: nobody holds x or y
    for k in ["x", "y"] {
        node.released(k).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for k in ["x", "y"] {
        assert_eq!(
            node.holder(k).await,
            None,
            "{k} taken by a section that ended"
        );
    }
    let t = Instant::now();
    assert_eq!(node.call_get("x").await.unwrap().unwrap(), json!(200));
    assert!(t.elapsed() < Duration::from_secs(5));

    // a holder that never unlocks, completed: a later section gets the entity
    node.start_orch("Hold", "forgets", json!({"keys": ["x"], "unlock": false}))
        .await;
    node.custom_status("forgets", json!("locked")).await;
    for ev in ["Go", "Release"] {
        o.raise_event("forgets", ev, None).await.unwrap();
    }
    assert_eq!(
        node.finish("forgets").await,
        (RuntimeStatus::Completed, Some(json!(201)))
    );
    node.start_orch("LockAndLeave", "after", json!({"keys": ["x"]}))
        .await;
    assert_eq!(node.finish("after").await.0, RuntimeStatus::Completed);
    node.value_becomes("x", 301).await;
    node.released("x").await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_survives_a_restart_mid_critical_section() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let node = start_node(&cfg).await;
    node.start_orch("Hold", "r1", json!({"keys": ["kept", "kept2"], "gos": 2}))
        .await;
    node.custom_status("r1", json!("locked")).await;
    assert_eq!(node.signal("kept", 10).await, SignalOutcome::Accepted);
    // the holder's call passes the waiting signal (removed from the inbox by number, the
    // signal before it kept)
    let o = node.runtime.orchestrations();
    o.raise_event("r1", "Go", None).await.unwrap();
    node.custom_status("r1", json!({"seen": 1})).await;
    let before = node.holder("kept").await.expect("locked");
    node.stop().await;

    let node = start_node(&cfg).await;
    let o = node.runtime.orchestrations();
    // still held by the same section, the client's signal still waiting
    assert_eq!(node.holder("kept").await, Some(before.clone()));
    assert_eq!(node.holder("kept2").await, Some(before));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(node.value("kept").await, 1);
    let call = node.call_get("kept2");
    // the holder's operations still pass it: 2, not 12
    o.raise_event("r1", "Go", None).await.unwrap();
    node.custom_status("r1", json!({"seen": 2})).await;
    assert!(!call.is_finished(), "a call ran on a locked entity");
    o.raise_event("r1", "Release", None).await.unwrap();
    assert_eq!(
        node.finish("r1").await,
        (RuntimeStatus::Completed, Some(json!(2)))
    );
    assert_eq!(call.await.unwrap().unwrap(), json!(0));
    node.value_becomes("kept", 12).await;
    node.released("kept").await;
    node.stop().await;
}
