//! The model end to end against an in-memory backend ([`driver`]): orchestrator patterns,
//! replay (full and from a prefix), determinism checks, retries, entities, continue-as-new.

mod driver;

use super::*;
use driver::{Driver, T0};
use perdure_types::orchestration::{
    Action, EventKind, FailureDetails, HistoryEvent, RuntimeStatus,
};
use perdure_types::EntityId;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ---- registries ----

fn base() -> OrchestrationRegistry {
    OrchestrationRegistry::new()
        .activity(
            "SayHello",
            |_ctx: ActivityContext, input: Value| async move {
                Ok(json!(format!(
                    "Hello {}!",
                    input.as_str().unwrap_or_default()
                )))
            },
        )
        .activity("Echo", |_ctx: ActivityContext, input: Value| async move {
            Ok(input)
        })
}

fn hello(reg: OrchestrationRegistry) -> OrchestrationRegistry {
    reg.orchestrator("HelloSequence", |ctx: OrchestrationContext| async move {
        let mut out = vec![];
        for city in ["Tokyo", "Seattle", "London"] {
            out.push(ctx.call_activity("SayHello", city).await?);
        }
        Ok(json!(out))
    })
}

fn fan_out(reg: OrchestrationRegistry) -> OrchestrationRegistry {
    reg.orchestrator("FanOut", |ctx: OrchestrationContext| async move {
        let n: u64 = ctx.input()?;
        let tasks = (0..n).map(|i| ctx.call_activity("Echo", i)).collect();
        let mut sum = 0u64;
        for r in when_all(tasks).await {
            sum += r?.as_u64().unwrap_or_default();
        }
        Ok(json!(sum))
    })
}

/// An approval raced against a 60 s timer; the losing timer is cancelled.
fn approval(reg: OrchestrationRegistry) -> OrchestrationRegistry {
    reg.orchestrator("Approval", |ctx: OrchestrationContext| async move {
        let timer = ctx.create_timer(ctx.current_time() + 60_000);
        let event = ctx.wait_for_external_event("Approval");
        match when_any(vec![event, timer.clone()]).await {
            (0, r) => {
                assert!(ctx.cancel_timer(&timer));
                assert!(!ctx.cancel_timer(&timer), "cancelled once");
                Ok(json!({ "approved": r? }))
            }
            _ => Ok(json!("timed out")),
        }
    })
}

// ---- checks ----

/// A fresh executor fed the whole history hands out nothing and ends the same way.
fn assert_replays(d: &Driver) {
    let mut fresh = d.fresh(&d.reg);
    let out = fresh.apply_past(&d.history);
    assert_eq!(out.actions, vec![], "a full replay hands out nothing");
    assert!(fresh.is_finished());
    assert_eq!(fresh.outcome(), d.exec.outcome());
    assert_eq!(
        out.custom_status,
        d.turns.last().and_then(|t| t.output.custom_status.clone())
    );
}

/// For every turn boundary: replay the history up to it, then feed the later turns' new events
/// live; each turn hands out what it did the first time.
fn assert_resumes_from_every_prefix(d: &Driver) {
    for (k, turn) in d.turns.iter().enumerate() {
        let mut fresh = d.fresh(&d.reg);
        let out = fresh.apply_past(&d.history[..turn.history_len]);
        if k + 1 < d.turns.len() {
            assert_eq!(out.actions, vec![], "prefix of {} turns", k + 1);
        }
        for later in &d.turns[k + 1..] {
            assert_eq!(fresh.apply(&later.new_events), later.output);
        }
        assert_eq!(fresh.outcome(), d.exec.outcome());
    }
}

fn scheduled(d: &Driver) -> Vec<(i32, &'static str)> {
    d.history
        .iter()
        .filter(|e| e.event_id >= 0)
        .map(|e| (e.event_id, e.kind_name()))
        .collect()
}

// ---- patterns ----

#[test]
fn hello_sequence_greets_three_cities_in_order() {
    let mut d = Driver::new(hello(base()), "HelloSequence", "hello-1", Value::Null);
    d.run();
    assert_eq!(
        d.result(),
        json!(["Hello Tokyo!", "Hello Seattle!", "Hello London!"])
    );
    assert_eq!(d.turns.len(), 4, "start, then one turn per greeting");
    assert_eq!(
        scheduled(&d),
        [
            (0, "TaskScheduled"),
            (1, "TaskScheduled"),
            (2, "TaskScheduled")
        ]
    );
    let Action::CompleteOrchestration { id, .. } = d.outcome() else {
        unreachable!()
    };
    assert_eq!(id, 3, "the completion takes a task id too");
    assert_replays(&d);
    assert_resumes_from_every_prefix(&d);
}

#[test]
fn a_fan_out_of_a_thousand_sums_every_result() {
    let n = 1_000u64;
    let mut d = Driver::new(fan_out(base()), "FanOut", "fan-1", json!(n));
    d.run();
    assert_eq!(d.result(), json!(n * (n - 1) / 2));
    assert_eq!(d.turns.len(), 2);
    assert_eq!(d.turns[0].output.actions.len(), n as usize);
    assert_replays(&d);
    assert_resumes_from_every_prefix(&d);
}

#[test]
fn a_fan_out_of_a_hundred_thousand_stays_linear() {
    let n = 100_000u64;
    let started = Instant::now();
    let mut d = Driver::new(fan_out(base()), "FanOut", "fan-2", json!(n));
    d.run();
    assert_eq!(d.result(), json!(n * (n - 1) / 2));
    let live = started.elapsed();
    let started = Instant::now();
    assert_replays(&d);
    let replay = started.elapsed();
    eprintln!("100,000-wide fan-out: live {live:?} (with the activities), replay {replay:?}");
    assert!(
        live + replay < Duration::from_secs(8),
        "live {live:?}, replay {replay:?}: quadratic?"
    );
}

#[test]
fn when_all_and_when_any_accept_tasks_that_finished_already() {
    let reg = base().orchestrator("Late", |ctx: OrchestrationContext| async move {
        let a = ctx.call_activity("Echo", "a");
        let b = ctx.call_activity("Echo", "b");
        ctx.sleep(1_000).await?;
        let all = when_all(vec![a.clone(), b.clone()]).await;
        let (first, r) = when_any(vec![a.clone(), b.clone()]).await;
        let again = a.await?; // a task can be awaited again
        Ok(json!([all[0].clone()?, all[1].clone()?, first, r?, again]))
    });
    let mut d = Driver::new(reg, "Late", "late-1", Value::Null);
    d.run_activities = false;
    d.turn();
    // b completes before a, both before the timer fires
    d.complete_activity(1, json!("b"));
    d.turn();
    d.complete_activity(0, json!("a"));
    d.turn();
    d.run();
    assert_eq!(d.result(), json!(["a", "b", 1, "b", "a"]));
    assert_replays(&d);
}

#[test]
fn when_any_ties_go_to_the_completion_first_in_the_history() {
    let reg = base().orchestrator("Tie", |ctx: OrchestrationContext| async move {
        let tasks = vec![ctx.call_activity("Echo", 0), ctx.call_activity("Echo", 1)];
        let (i, r) = when_any(tasks).await;
        Ok(json!([i, r?]))
    });
    for (order, winner) in [([1, 0], 1), ([0, 1], 0)] {
        let mut d = Driver::new(reg.clone(), "Tie", "tie-1", Value::Null);
        d.run_activities = false;
        d.turn();
        for id in order {
            d.complete_activity(id, json!(id));
        }
        d.turn();
        assert_eq!(d.result(), json!([winner, winner]));
        assert_replays(&d);
    }
}

// ---- external events and timers ----

#[test]
fn an_approval_before_the_deadline_wins_and_cancels_the_timer() {
    let mut d = Driver::new(approval(base()), "Approval", "appr-1", Value::Null);
    d.turn();
    assert_eq!(d.timers.len(), 1);
    d.raise("APPROVAL", json!("yes")); // names are case-insensitive
    let out = d.turn();
    assert!(matches!(
        out.actions.as_slice(),
        [
            Action::CancelTimer { timer_id: 0 },
            Action::CompleteOrchestration { .. }
        ]
    ));
    assert!(d.timers.is_empty(), "the backend dropped the timer");
    assert_eq!(d.result(), json!({ "approved": "yes" }));
    assert_replays(&d);
    assert_resumes_from_every_prefix(&d);
}

#[test]
fn the_deadline_wins_when_no_approval_comes() {
    let mut d = Driver::new(approval(base()), "Approval", "appr-2", Value::Null);
    d.run();
    assert_eq!(d.result(), json!("timed out"));
    let fired = d
        .history
        .iter()
        .find(|e| matches!(e.kind, EventKind::TimerFired { .. }));
    assert_eq!(fired.map(|e| e.timestamp), Some(T0 + 1 + 60_000));
    assert_replays(&d);
}

#[test]
fn in_one_turn_the_event_first_in_the_history_wins_the_race() {
    for event_first in [true, false] {
        let mut d = Driver::new(approval(base()), "Approval", "appr-3", Value::Null);
        d.turn();
        if event_first {
            d.raise("Approval", json!("yes"));
            d.fire_timer(0);
        } else {
            d.fire_timer(0);
            d.raise("Approval", json!("yes"));
        }
        d.turn();
        let expected = if event_first {
            json!({ "approved": "yes" })
        } else {
            json!("timed out")
        };
        assert_eq!(d.result(), expected, "event first: {event_first}");
        assert_replays(&d);
    }
}

#[test]
fn events_that_arrive_before_the_wait_are_kept_in_arrival_order() {
    let reg = base().orchestrator("Late", |ctx: OrchestrationContext| async move {
        let a = ctx.call_activity("Echo", 1).await?;
        let e1 = ctx.wait_for_external_event("Go").await?;
        let e2 = ctx.wait_for_external_event("go").await?;
        Ok(json!([a, e1, e2]))
    });
    let mut d = Driver::new(reg, "Late", "late-2", Value::Null);
    d.raise("GO", json!("first"));
    d.raise("go", json!("second"));
    d.run();
    assert_eq!(d.result(), json!([1, "first", "second"]));
    assert_replays(&d);
}

// ---- retries ----

/// An activity that fails its first `fails` runs, then returns its run number.
fn flaky(reg: OrchestrationRegistry, fails: u32, non_retriable: bool) -> OrchestrationRegistry {
    let runs = Arc::new(AtomicU32::new(0));
    reg.activity("Flaky", move |_ctx: ActivityContext, _input: Value| {
        let n = runs.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            if n > fails {
                Ok(json!(n))
            } else if non_retriable {
                Err(ActivityError::non_retriable("Flaky", format!("run {n}")))
            } else {
                Err(ActivityError::new("Flaky", format!("run {n}")))
            }
        }
    })
    .orchestrator("Retry", |ctx: OrchestrationContext| async move {
        let policy = RetryPolicy::new(3, 1_000).with_backoff(2.0);
        Ok(ctx.call_activity_with_retry("Flaky", (), policy).await?)
    })
}

/// `(timer delay after its turn's start, ...)` of every timer created.
fn timer_delays(d: &Driver) -> Vec<u64> {
    d.turns
        .iter()
        .flat_map(|t| {
            let start = t.new_events[0].timestamp;
            t.output.actions.iter().filter_map(move |a| match a {
                Action::CreateTimer { fire_at, .. } => Some(fire_at - start),
                _ => None,
            })
        })
        .collect()
}

#[test]
fn a_retry_policy_waits_on_durable_timers_between_attempts() {
    let mut d = Driver::new(flaky(base(), 2, false), "Retry", "retry-1", Value::Null);
    d.run();
    assert_eq!(d.result(), json!(3));
    assert_eq!(
        scheduled(&d),
        [
            (0, "TaskScheduled"),
            (1, "TimerCreated"),
            (2, "TaskScheduled"),
            (3, "TimerCreated"),
            (4, "TaskScheduled")
        ]
    );
    assert_eq!(timer_delays(&d), [1_000, 2_000]);
    assert_replays(&d);
    assert_resumes_from_every_prefix(&d);
}

#[test]
fn a_retry_policy_gives_up_after_max_attempts_with_the_last_failure() {
    let mut d = Driver::new(flaky(base(), 99, false), "Retry", "retry-2", Value::Null);
    d.run();
    let f = d.failure();
    assert_eq!(
        (f.error_type.as_str(), f.message.as_str()),
        ("Flaky", "run 3")
    );
    assert_eq!(timer_delays(&d), [1_000, 2_000]);
    assert_replays(&d);
}

#[test]
fn a_non_retriable_failure_is_not_retried() {
    let mut d = Driver::new(flaky(base(), 99, true), "Retry", "retry-3", Value::Null);
    d.run();
    assert_eq!(d.failure().message, "run 1");
    assert_eq!(scheduled(&d), [(0, "TaskScheduled")]);
}

#[test]
fn a_sub_orchestration_is_retried_as_a_new_child_each_attempt() {
    let reg = flaky(base(), 1, false)
        .orchestrator("FlakyChild", |ctx: OrchestrationContext| async move {
            Ok(ctx.call_activity("Flaky", ()).await?)
        })
        .orchestrator("Parent", |ctx: OrchestrationContext| async move {
            let policy = RetryPolicy::new(3, 100);
            Ok(ctx
                .call_sub_orchestration_with_retry("FlakyChild", None, (), policy)
                .await?)
        });
    let mut d = Driver::new(reg, "Parent", "p", Value::Null);
    d.run();
    assert_eq!(d.result(), json!(2));
    let children: Vec<String> = d
        .actions()
        .iter()
        .filter_map(|a| match a {
            Action::CreateSubOrchestration { instance_id, .. } => Some(instance_id.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(
        children,
        ["p:0000", "p:0002"],
        "task 1 is the timer between"
    );
    assert_replays(&d);
}

// ---- sub-orchestrations and entities ----

#[test]
fn sub_orchestrations_resolve_with_their_output_or_failure() {
    let reg = hello(base())
        .orchestrator("Failing", |_ctx: OrchestrationContext| async move {
            Err::<Value, _>(OrchestrationError::new("Boom", "the child failed"))
        })
        .orchestrator("Parent", |ctx: OrchestrationContext| async move {
            let a = ctx
                .call_sub_orchestration("HelloSequence", None, ())
                .await?;
            let b = ctx
                .call_sub_orchestration("Failing", Some("kid-2".into()), ())
                .await;
            let bad = ctx.call_sub_orchestration("Failing", Some("@bad".into()), ());
            Ok(json!([
                a,
                b.unwrap_err().0.message,
                bad.await.unwrap_err().0.error_type
            ]))
        });
    let mut d = Driver::new(reg, "Parent", "parent-1", Value::Null);
    d.run();
    assert_eq!(
        d.result(),
        json!([
            ["Hello Tokyo!", "Hello Seattle!", "Hello London!"],
            "the child failed",
            "InvalidInstanceId"
        ])
    );
    let children: Vec<String> = d
        .actions()
        .iter()
        .filter_map(|a| match a {
            Action::CreateSubOrchestration { instance_id, .. } => Some(instance_id.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(children, ["parent-1:0000", "kid-2"]);
    assert_replays(&d);
}

#[test]
fn entity_calls_signals_and_locks_resolve_by_request_id() {
    let reg = base().orchestrator("Entities", |ctx: OrchestrationContext| async move {
        let a = EntityId::new("counter", "a").unwrap();
        let b = EntityId::new("Counter", "b").unwrap();
        ctx.signal_entity(&a, "add", 1)?;
        ctx.signal_entity_at(&a, "add", 2, ctx.current_time() + 500)?;
        let got = ctx.call_entity(&a, "get", ()).await?;
        let failed = ctx.call_entity(&b, "explode", ()).await.unwrap_err();
        ctx.lock_entities(&[b.clone(), a.clone(), a.clone()])
            .await?;
        let nested = ctx
            .lock_entities(std::slice::from_ref(&a))
            .await
            .unwrap_err();
        ctx.unlock_entities();
        Ok(json!([got, failed.0.message, nested.0.error_type]))
    });
    let mut d = Driver::new(reg, "Entities", "ent-1", Value::Null);
    d.entity = Box::new(|target, op, _input| match op {
        "get" => Ok(json!({ "target": target, "value": 41 })),
        _ => Err(FailureDetails::new("EntityError", "boom")),
    });
    d.run();
    assert_eq!(
        d.result(),
        json!([{ "target": "@counter@a", "value": 41 }, "boom", "LockNotAllowed"])
    );
    let actions = d.actions();
    let kinds: Vec<&str> = actions
        .iter()
        .map(|a| match a {
            Action::SignalEntity { .. } => "signal",
            Action::CallEntity { .. } => "call",
            Action::LockEntities { .. } => "lock",
            Action::UnlockEntity { .. } => "unlock",
            Action::CompleteOrchestration { .. } => "end",
            _ => "other",
        })
        .collect();
    assert_eq!(
        kinds,
        ["signal", "signal", "call", "call", "lock", "unlock", "unlock", "end"]
    );
    let Some(Action::LockEntities { lock_set, .. }) = actions.get(4) else {
        unreachable!()
    };
    assert_eq!(lock_set, &["@counter@a", "@counter@b"]);
    let Some(Action::SignalEntity { scheduled_time, .. }) = actions.get(1) else {
        unreachable!()
    };
    assert_eq!(*scheduled_time, Some(T0 + 1 + 500));
    assert_replays(&d);
    assert_resumes_from_every_prefix(&d);
}

// ---- continue-as-new, custom status, clock, GUIDs ----

#[test]
fn continue_as_new_carries_over_events_not_consumed() {
    let reg = base().orchestrator("Eternal", |ctx: OrchestrationContext| async move {
        let n: u64 = ctx.input()?;
        if n == 0 {
            ctx.call_activity("Echo", 0).await?;
            return ctx.continue_as_new(n + 1);
        }
        let extra = ctx.wait_for_external_event("Extra").await?;
        Ok(json!({ "n": n, "extra": extra, "execution": ctx.execution_id() }))
    });
    let mut d = Driver::new(reg, "Eternal", "eternal-1", json!(0));
    d.turn();
    d.raise("Extra", json!("kept")); // same turn as the activity's result, after it
    d.turn();
    let Action::CompleteOrchestration {
        status,
        result,
        carryover_events,
        ..
    } = d.outcome()
    else {
        unreachable!()
    };
    assert_eq!(status, RuntimeStatus::ContinuedAsNew);
    assert_eq!(result.as_deref(), Some("1"));
    assert!(matches!(
        carryover_events.as_slice(),
        [HistoryEvent { kind: EventKind::EventRaised { name, .. }, .. }] if name == "Extra"
    ));
    assert_replays(&d);
    d.continue_as_new();
    d.run();
    assert_eq!(
        d.result(),
        json!({ "n": 1, "extra": "kept", "execution": "exec-2" })
    );
}

#[test]
fn the_custom_status_is_reported_after_each_turn() {
    let reg = base().orchestrator("Status", |ctx: OrchestrationContext| async move {
        ctx.set_custom_status(json!({ "step": 1 }))?;
        ctx.call_activity("Echo", 1).await?;
        ctx.call_activity("Echo", 2).await?;
        ctx.set_custom_status("done")?;
        Ok(Value::Null)
    });
    let mut d = Driver::new(reg, "Status", "status-1", Value::Null);
    d.run();
    let statuses: Vec<Option<String>> = d
        .turns
        .iter()
        .map(|t| t.output.custom_status.clone())
        .collect();
    let step1 = Some(r#"{"step":1}"#.to_string());
    assert_eq!(
        statuses,
        [step1.clone(), step1, Some(r#""done""#.to_string())]
    );
    assert_eq!(d.result(), Value::Null);
    assert_replays(&d);
}

#[test]
fn time_and_guids_are_the_same_on_replay() {
    let reg = base().orchestrator("Clock", |ctx: OrchestrationContext| async move {
        let (g1, t1) = (ctx.new_guid(), ctx.current_time());
        ctx.call_activity("Echo", 1).await?;
        let (g2, t2) = (ctx.new_guid(), ctx.current_time());
        ctx.sleep(5_000).await?;
        let t3 = ctx.current_time();
        Ok(json!([
            g1,
            g2,
            t1,
            t2,
            t3,
            ctx.history_events(),
            ctx.history_bytes()
        ]))
    });
    let mut d = Driver::new(reg, "Clock", "clock-1", Value::Null);
    d.run();
    let r = d.result();
    let starts: Vec<u64> = d.turns.iter().map(|t| t.new_events[0].timestamp).collect();
    assert_eq!(r[2], json!(starts[0]));
    assert_eq!(r[3], json!(starts[1]));
    assert_eq!(r[4], json!(starts[2]));
    assert!(starts[2] >= starts[1] + 5_000);
    assert_ne!(r[0], r[1]);
    assert_eq!(r[0].as_str().map(str::len), Some(36));
    // the history when the code returned, without the two OrchestratorCompleted markers:
    // OrchestratorStarted, ExecutionStarted, TaskScheduled; OrchestratorStarted, TaskCompleted,
    // TimerCreated; OrchestratorStarted, TimerFired
    assert_eq!(r[5], json!(8));
    assert!(r[6].as_u64().unwrap() > 0);
    assert_replays(&d); // the same outcome: same GUIDs, times and history counts
    let mut other = Driver::new(d.reg.clone(), "Clock", "clock-2", Value::Null);
    other.run();
    assert_ne!(other.result()[0], r[0], "GUIDs differ between instances");
}

#[test]
fn is_replaying_is_true_only_for_past_events() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let reg = base().orchestrator("Replaying", move |ctx: OrchestrationContext| {
        let log = log.clone();
        async move {
            for i in 0..3 {
                log.lock().unwrap().push(ctx.is_replaying());
                ctx.call_activity("Echo", i).await?;
            }
            log.lock().unwrap().push(ctx.is_replaying());
            Ok(Value::Null)
        }
    });
    let mut d = Driver::new(reg, "Replaying", "replay-1", Value::Null);
    d.run();
    assert_eq!(*seen.lock().unwrap(), [false; 4]);
    seen.lock().unwrap().clear();
    let mut fresh = d.fresh(&d.reg);
    fresh.apply_past(&d.history[..d.turns[1].history_len]);
    for t in &d.turns[2..] {
        fresh.apply(&t.new_events);
    }
    assert_eq!(*seen.lock().unwrap(), [true, true, false, false]);
}

// ---- failures ----

#[test]
fn nondeterminism_names_the_step() {
    let mut d = Driver::new(hello(base()), "HelloSequence", "nd-1", Value::Null);
    d.run();
    let variants: Vec<(OrchestrationRegistry, &str)> = vec![
        (
            base().orchestrator("HelloSequence", |ctx: OrchestrationContext| async move {
                ctx.call_activity("SayHello", "Tokyo").await?;
                ctx.call_activity("SayBye", "Seattle").await?;
                Ok(Value::Null)
            }),
            r#"step 1: the history has activity "SayHello" scheduled, but the code now calls activity "SayBye""#,
        ),
        (
            base().orchestrator("HelloSequence", |ctx: OrchestrationContext| async move {
                ctx.sleep(10).await?;
                Ok(Value::Null)
            }),
            r#"step 0: the history has activity "SayHello" scheduled, but the code now creates a timer"#,
        ),
        (
            base().orchestrator("HelloSequence", |ctx: OrchestrationContext| async move {
                ctx.wait_for_external_event("Never").await?;
                Ok(Value::Null)
            }),
            r#"step 0: the history has activity "SayHello" scheduled, but the code now makes no decision at that step"#,
        ),
        (
            base().orchestrator("HelloSequence", |_ctx: OrchestrationContext| async move {
                Ok(Value::Null)
            }),
            r#"step 0: the history has activity "SayHello" scheduled, but the code now completes the orchestration"#,
        ),
    ];
    for (reg, message) in variants {
        let mut fresh = d.fresh(&reg);
        let out = fresh.apply_past(&d.history);
        let [Action::CompleteOrchestration {
            status: RuntimeStatus::Failed,
            failure: Some(f),
            ..
        }] = out.actions.as_slice()
        else {
            panic!("expected one failure, got {:?}", out.actions);
        };
        assert_eq!(f.error_type, "NonDeterminism");
        assert_eq!(f.message, message);
        assert!(fresh.is_finished());
        assert_eq!(fresh.apply(&d.turns[1].new_events).actions, vec![]);
    }
    // a case change in a name is the same step (lookups are case-insensitive)
    let same = base().orchestrator("HelloSequence", |ctx: OrchestrationContext| async move {
        let mut out = vec![];
        for city in ["Tokyo", "Seattle", "London"] {
            out.push(ctx.call_activity("sayhello", city).await?);
        }
        Ok(json!(out))
    });
    let mut fresh = d.fresh(&same);
    assert_eq!(fresh.apply_past(&d.history).actions, vec![]);
    assert_eq!(fresh.outcome(), d.exec.outcome());
}

#[test]
fn a_panicking_orchestrator_fails_with_its_message() {
    let reg = base().orchestrator("Panics", |ctx: OrchestrationContext| async move {
        let v = ctx.call_activity("Echo", 7).await?;
        if v == json!(7) {
            panic!("boom at {v}");
        }
        Ok(v)
    });
    let mut d = Driver::new(reg, "Panics", "panic-1", Value::Null);
    d.run();
    let f = d.failure();
    assert_eq!(
        (f.error_type.as_str(), f.message.as_str()),
        ("OrchestratorPanicked", "boom at 7")
    );
    assert_replays(&d);
}

#[test]
fn a_failed_activity_fails_the_orchestration_through_the_question_mark() {
    let reg = base()
        .activity(
            "Refuse",
            |_ctx: ActivityContext, _input: Value| async move {
                Err::<Value, _>(ActivityError::new("Refused", "not today"))
            },
        )
        .orchestrator("Refusing", |ctx: OrchestrationContext| async move {
            let input: String = ctx.input()?;
            ctx.call_activity("Refuse", input).await?;
            Ok(Value::Null)
        });
    let mut d = Driver::new(reg.clone(), "Refusing", "refuse-1", json!("x"));
    d.run();
    assert_eq!(d.failure(), FailureDetails::new("Refused", "not today"));
    assert_replays(&d);
    // an input of the wrong shape fails it too
    let mut d = Driver::new(reg, "Refusing", "refuse-2", json!(5));
    d.run();
    assert_eq!(d.failure().error_type, "SerializationError");
}

#[test]
fn completions_for_unknown_or_finished_tasks_are_ignored() {
    let mut d = Driver::new(hello(base()), "HelloSequence", "ignore-1", Value::Null);
    d.run_activities = false;
    d.turn();
    d.complete_activity(5, json!("nobody")); // no such task
    d.inbox.push(HistoryEvent::new(
        T0,
        EventKind::TimerFired {
            timer_id: 0,
            fire_at: T0,
        },
    )); // task 0 is an activity, not a timer
    assert_eq!(d.turn().actions, vec![]);
    d.complete_activity(0, json!("Hello Tokyo!"));
    d.complete_activity(0, json!("twice"));
    let out = d.turn();
    assert!(matches!(
        out.actions.as_slice(),
        [Action::ScheduleTask { id: 1, .. }]
    ));
}

#[test]
fn the_registry_is_case_insensitive_and_names_what_it_knows() {
    let reg = hello(base());
    assert!(reg.get_activity("SAYHELLO").is_ok());
    assert!(reg.get_orchestrator("hellosequence").is_ok());
    let Err(e) = reg.get_activity("SayBye") else {
        panic!("SayBye is not registered")
    };
    assert_eq!(
        e.to_string(),
        r#"unknown activity "SayBye"; known activities: Echo, SayHello"#
    );
    let id = perdure_types::InstanceId::new("x").unwrap();
    let e = reg.executor("Nope", id, "e".into()).unwrap_err(); // Executor is Debug
    assert!(e.to_string().contains("known orchestrators: HelloSequence"));
}

#[test]
fn the_model_types_can_cross_threads() {
    fn send<T: Send>() {}
    fn sync<T: Sync>() {}
    send::<OrchestrationContext>();
    sync::<OrchestrationContext>();
    send::<Task>();
    send::<WhenAll>();
    send::<WhenAny>();
    send::<Executor>();
    send::<OrchestrationRegistry>();
    sync::<OrchestrationRegistry>();
}
