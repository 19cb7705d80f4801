//! Exactly-once orchestrations, instance by instance, for the `orchestration` workload: `start`
//! (a new instance, unique id, of [`HELLO`] or [`FAN_OUT`] with input [`FAN_OUT_N`]) and, after
//! the final heal, `final-read` (the instance's status, output and a [`summarize`]d history;
//! `{"found": false}` for an instance that does not exist).
//!
//! - An acknowledged start completes, exactly once: its final status is `Completed` (never
//!   `Running`, `Pending`, `Failed`, `Terminated`), its output is the orchestrator's for its
//!   input, and its history holds one `ExecutionStarted` and one `ExecutionCompleted`.
//! - An unknown start either does not exist or completed as an acknowledged one must; a refused
//!   one (a 4xx) does not exist.
//! - Each step is recorded once and in order: `TaskScheduled` ids strictly increase through the
//!   history, there are as many as the orchestrator has steps, each scheduled task has exactly
//!   one result (`TaskCompleted` or `TaskFailed`) in a later turn, and no result names a task
//!   that was not scheduled.
//! - Single activation of turns: each turn's `OrchestratorStarted` is not before the previous
//!   turn's `OrchestratorCompleted` (node wall clocks, ms). Both carry the turn's time, taken
//!   before it is computed, so this proves turn times never go backwards across leader changes,
//!   not that two turns' real executions never overlapped. A turn's record does not name the
//!   node that ran it, so in runs where a node ran with a skewed clock, instances started before
//!   the last skewed node stopped (`skew_until_us`) are left out of this one check (the probe
//!   checker leaves out visits of skewed pids the same way).

use super::CheckResult;
use crate::history::{by_key, ops, Event, Op, Outcome};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The workload's name.
pub const WORKLOAD: &str = "orchestration";
/// Five `SayHello` activities in sequence.
pub const HELLO: &str = "HelloSequence5";
/// N `GetNumber` activities in parallel; output N(N-1)/2.
pub const FAN_OUT: &str = "FanOutFanIn";
/// The workload's fan-out width.
pub const FAN_OUT_N: u64 = 20;

const CITIES: [&str; 5] = ["Tokyo", "Seattle", "London", "Paris", "Cairo"];

/// The output `orchestrator` must complete with for `input`, and its number of steps
/// (activities); `None` for an orchestrator this checker does not know.
pub fn expected(orchestrator: &str, input: &Value) -> Option<(Value, usize)> {
    match orchestrator {
        HELLO => Some((json!(CITIES.map(|c| format!("Hello {c}!"))), CITIES.len())),
        FAN_OUT => {
            let n = input.as_u64()?;
            Some((json!(n * n.saturating_sub(1) / 2), n as usize))
        }
        _ => None,
    }
}

/// One turn of a summarized history: from an `OrchestratorStarted` to its
/// `OrchestratorCompleted` (ms since the epoch on the node's wall clock; `None` when missing or
/// unreadable), the task ids it scheduled and the task ids of the results it recorded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Turn {
    /// `OrchestratorStarted`'s timestamp.
    pub started: Option<u64>,
    /// `OrchestratorCompleted`'s timestamp.
    pub completed: Option<u64>,
    /// `EventId`s of its `TaskScheduled` events, in history order.
    pub scheduled: Vec<i64>,
    /// `TaskScheduledId`s of its `TaskCompleted` events.
    pub results: Vec<i64>,
    /// `TaskScheduledId`s of its `TaskFailed` events.
    pub failures: Vec<i64>,
}

/// A compact summary of a history (`historyEvents` of a status answer).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    /// The turns, in history order.
    pub turns: Vec<Turn>,
    /// `ExecutionStarted` events.
    pub executions_started: usize,
    /// `ExecutionCompleted` events.
    pub executions_completed: usize,
    /// Events in all.
    pub events: usize,
    /// Event types other than the turn markers, execution start/end and activity events.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other: Vec<String>,
}

fn millis(e: &Value) -> Option<u64> {
    perdure_types::time::parse_rfc3339(e["Timestamp"].as_str()?).ok()
}

/// Summarizes `historyEvents` (Durable Functions' shape: `EventType`, `EventId`, `Timestamp`,
/// `TaskScheduledId`) turn by turn.
pub fn summarize(events: &[Value]) -> Summary {
    let mut s = Summary {
        events: events.len(),
        ..Default::default()
    };
    let empty = || Turn {
        started: None,
        completed: None,
        scheduled: Vec::new(),
        results: Vec::new(),
        failures: Vec::new(),
    };
    // the turn being read: opened by an OrchestratorStarted, closed by its OrchestratorCompleted
    let mut open: Option<Turn> = None;
    for e in events {
        let kind = e["EventType"].as_str().unwrap_or("");
        match kind {
            "OrchestratorStarted" => {
                s.turns.extend(open.take());
                open = Some(Turn {
                    started: millis(e),
                    ..empty()
                });
            }
            "OrchestratorCompleted" => {
                let mut t = open.take().unwrap_or_else(empty);
                t.completed = millis(e);
                s.turns.push(t);
            }
            _ => {
                let t = open.get_or_insert_with(empty);
                let id = |k: &str| e[k].as_i64().unwrap_or(i64::MIN);
                match kind {
                    "ExecutionStarted" => s.executions_started += 1,
                    "ExecutionCompleted" => s.executions_completed += 1,
                    "TaskScheduled" => t.scheduled.push(id("EventId")),
                    "TaskCompleted" => t.results.push(id("TaskScheduledId")),
                    "TaskFailed" => t.failures.push(id("TaskScheduledId")),
                    other => s.other.push(other.to_string()),
                }
            }
        }
    }
    s.turns.extend(open);
    s
}

/// What went wrong with the steps and turns of one history (empty when nothing did).
/// `turn_order`: whether the turns' timestamps are to be judged.
fn history_anomalies(h: &Summary, steps: usize, turn_order: bool) -> Vec<String> {
    let mut out = Vec::new();
    if h.executions_started != 1 || h.executions_completed != 1 {
        out.push(format!(
            "{} ExecutionStarted and {} ExecutionCompleted events (one each expected)",
            h.executions_started, h.executions_completed
        ));
    }
    // scheduling: strictly increasing, as many as steps
    let mut scheduled_in: BTreeMap<i64, usize> = BTreeMap::new();
    let mut last: Option<i64> = None;
    for (i, t) in h.turns.iter().enumerate() {
        for &id in &t.scheduled {
            if let Some(prev) = last.filter(|p| id <= *p) {
                out.push(format!(
                    "TaskScheduled {id} (turn {i}) after TaskScheduled {prev}: ids not strictly increasing (a step scheduled twice or out of order)"
                ));
            }
            last = Some(id);
            scheduled_in.entry(id).or_insert(i);
        }
    }
    let scheduled: usize = h.turns.iter().map(|t| t.scheduled.len()).sum();
    if scheduled != steps {
        out.push(format!(
            "{scheduled} TaskScheduled events for an orchestrator of {steps} steps"
        ));
    }
    // results: one per scheduled task, in a later turn, none for an unscheduled one
    let mut results: BTreeMap<i64, usize> = BTreeMap::new();
    for (i, t) in h.turns.iter().enumerate() {
        for &id in t.results.iter().chain(&t.failures) {
            *results.entry(id).or_default() += 1;
            match scheduled_in.get(&id) {
                None => out.push(format!(
                    "a result for task {id} (turn {i}), which was never scheduled"
                )),
                Some(&at) if at >= i => out.push(format!(
                    "the result for task {id} is recorded in turn {i}, not after its scheduling in turn {at}"
                )),
                _ => {}
            }
        }
    }
    for id in scheduled_in.keys() {
        match results.get(id).copied().unwrap_or(0) {
            1 => {}
            0 => out.push(format!("task {id} was scheduled and has no result")),
            n => out.push(format!(
                "task {id} has {n} results: an activity result recorded more than once"
            )),
        }
    }
    if turn_order {
        let mut prev: Option<(usize, u64)> = None;
        for (i, t) in h.turns.iter().enumerate() {
            if let (Some((j, end)), Some(start)) = (prev, t.started) {
                if start < end {
                    out.push(format!(
                        "turn {i} started at {start} ms, {} ms before turn {j} completed at {end} ms: overlapping turns (two activations)",
                        end - start
                    ));
                }
            }
            if let (Some(s), Some(c)) = (t.started, t.completed) {
                if c < s {
                    out.push(format!(
                        "turn {i} completed at {c} ms, before it started at {s} ms"
                    ));
                }
            }
            // the latest known end of a turn so far
            if let Some(end) = t.completed.or(t.started) {
                if prev.is_none_or(|(_, p)| end >= p) {
                    prev = Some((i, end));
                }
            }
        }
    }
    out
}

/// How the starts of one instance ended, taken together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Started {
    Acknowledged,
    Unknown,
    Refused,
}

/// Checks every instance of the `orchestration` workload. `skew_until_us`: `None` when no node
/// ran with a skewed clock, else the harness time (µs) by which the last one had stopped;
/// instances started before it are left out of the turn-order check.
pub fn check(events: &[Event], skew_until_us: Option<u64>) -> CheckResult {
    let mut r = CheckResult::new("orchestration");
    let (mut acked, mut unknown, mut refused) = (0usize, 0usize, 0usize);
    let (mut completed, mut unknown_existing, mut order_checked, mut order_skipped) =
        (0usize, 0usize, 0usize, 0usize);
    let mut open_turns = 0usize;
    for (id, ops) in by_key(ops(events, WORKLOAD)) {
        r.keys += 1;
        r.ops += ops.len();
        let starts: Vec<&Op> = ops.iter().filter(|o| o.f == "start").collect();
        let Some(first) = starts.first() else {
            r.anomaly(format!("instance {id}: read but never started"));
            continue;
        };
        let started = if starts.iter().any(|o| o.outcome == Outcome::Ok) {
            acked += 1;
            Started::Acknowledged
        } else if starts.iter().any(|o| o.outcome == Outcome::Info) {
            unknown += 1;
            Started::Unknown
        } else {
            refused += 1;
            Started::Refused
        };
        let orchestrator = first.input["orchestrator"].as_str().unwrap_or("");
        let input = &first.input["input"];
        let Some((output, steps)) = expected(orchestrator, input) else {
            r.anomaly(format!(
                "instance {id}: started as {orchestrator:?} with {input}, which this checker does not know"
            ));
            continue;
        };
        let Some(fin) = ops
            .iter()
            .filter(|o| o.f == "final-read" && o.outcome == Outcome::Ok)
            .max_by_key(|o| o.invoke_us)
        else {
            if started != Started::Refused {
                r.anomaly(format!(
                    "instance {id} ({orchestrator}, start {started:?}): no successful final read (the cluster did not recover)"
                ));
            }
            continue;
        };
        let v = &fin.output;
        if v["found"] == json!(false) {
            if started == Started::Acknowledged {
                r.anomaly(format!(
                    "instance {id} ({orchestrator}): the start was acknowledged and the instance does not exist: lost"
                ));
            }
            continue;
        }
        match started {
            Started::Refused => {
                r.anomaly(format!(
                    "instance {id} ({orchestrator}): the start was refused (4xx) and the instance exists ({})",
                    v["status"]
                ));
                continue;
            }
            Started::Unknown => unknown_existing += 1,
            Started::Acknowledged => {}
        }
        let status = v["status"].as_str().unwrap_or("?");
        if status != "Completed" {
            r.anomaly(format!(
                "instance {id} ({orchestrator}, start {started:?}): final status {status}, not Completed (output {}, failure {})",
                v["output"], v["failure"]
            ));
            continue;
        }
        completed += 1;
        if v["name"].as_str().is_some_and(|n| n != orchestrator) {
            r.anomaly(format!(
                "instance {id}: started as {orchestrator}, completed as {}",
                v["name"]
            ));
        }
        if v["output"] != output {
            r.anomaly(format!(
                "instance {id} ({orchestrator}): output {}, expected {output}",
                v["output"]
            ));
        }
        let summary: Summary = match serde_json::from_value(v["history"].clone()) {
            Ok(s) => s,
            Err(e) => {
                r.anomaly(format!("instance {id}: no readable history summary: {e}"));
                continue;
            }
        };
        let trusted = skew_until_us.is_none_or(|t| first.invoke_us >= t);
        if trusted {
            order_checked += 1;
        } else {
            order_skipped += 1;
        }
        open_turns += summary
            .turns
            .iter()
            .filter(|t| t.completed.is_none())
            .count();
        for a in history_anomalies(&summary, steps, trusted) {
            r.anomaly(format!("instance {id} ({orchestrator}): {a}"));
        }
    }
    r.notes.push(format!(
        "instances: {} started ({acked} acknowledged, {unknown} unknown of which {unknown_existing} exist, {refused} refused); {completed} completed",
        acked + unknown + refused
    ));
    r.notes.push(match skew_until_us {
        None => format!("turn order checked on all {order_checked} completed instances"),
        Some(t) => format!(
            "turn order checked on {order_checked} completed instances, {order_skipped} left out (started before the last clock-skewed node stopped at {:.1} s: a turn's record does not name its node)",
            t as f64 / 1e6
        ),
    });
    if open_turns > 0 {
        r.notes.push(format!(
            "{open_turns} turns without an OrchestratorCompleted (not judged)"
        ));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::Validity;
    use crate::history::Builder;
    use perdure_types::time::format_millis;
    use Outcome::{Fail, Info, Ok};

    const T0: u64 = 1_764_900_000_000;

    fn ev(kind: &str, at: u64) -> Value {
        json!({"EventType": kind, "EventId": -1, "Timestamp": format_millis(T0 + at)})
    }

    fn scheduled(id: i64, at: u64) -> Value {
        json!({"EventType": "TaskScheduled", "EventId": id, "Timestamp": format_millis(T0 + at), "Name": "SayHello"})
    }

    fn done(id: i64, at: u64) -> Value {
        json!({"EventType": "TaskCompleted", "EventId": -1, "TaskScheduledId": id, "Timestamp": format_millis(T0 + at)})
    }

    /// HelloSequence5's history: a turn per step, 10 ms apart.
    fn hello_history() -> Vec<Value> {
        let mut h = vec![
            ev("OrchestratorStarted", 0),
            ev("ExecutionStarted", 0),
            scheduled(0, 0),
            ev("OrchestratorCompleted", 0),
        ];
        for i in 0..5 {
            let at = 10 * (i as u64 + 1);
            h.push(ev("OrchestratorStarted", at));
            h.push(done(i, at));
            if i < 4 {
                h.push(scheduled(i + 1, at));
            } else {
                h.push(ev("ExecutionCompleted", at));
            }
            h.push(ev("OrchestratorCompleted", at));
        }
        h
    }

    /// FanOutFanIn(n)'s history: all scheduled in the first turn, results in two turns.
    fn fan_history(n: i64) -> Vec<Value> {
        let mut h = vec![ev("OrchestratorStarted", 0), ev("ExecutionStarted", 0)];
        h.extend((0..n).map(|i| scheduled(i, 0)));
        h.push(ev("OrchestratorCompleted", 0));
        h.push(ev("OrchestratorStarted", 5));
        h.extend((0..n / 2).map(|i| done(i, 5)));
        h.push(ev("OrchestratorCompleted", 5));
        h.push(ev("OrchestratorStarted", 9));
        h.extend((n / 2..n).map(|i| done(i, 9)));
        h.push(ev("ExecutionCompleted", 9));
        h.push(ev("OrchestratorCompleted", 9));
        h
    }

    fn read(name: &str, status: &str, output: Value, history: &[Value]) -> Value {
        json!({"found": true, "name": name, "status": status, "output": output,
               "history": summarize(history)})
    }

    fn hello_output() -> Value {
        expected(HELLO, &Value::Null).unwrap().0
    }

    /// One instance: its start (`outcome`) and its final read (`fin`, `None`: no final read).
    fn instance(
        b: &mut Builder,
        id: &str,
        name: &str,
        input: Value,
        outcome: Outcome,
        fin: Option<Value>,
    ) {
        b.op(
            1,
            "start",
            id,
            json!({"orchestrator": name, "input": input}),
            10,
            20,
            outcome,
            Value::Null,
        );
        if let Some(f) = fin {
            b.op(9, "final-read", id, Value::Null, 1000, 1001, Ok, f);
        }
    }

    fn good() -> Builder {
        let mut b = Builder::new(WORKLOAD);
        instance(
            &mut b,
            "0-1",
            HELLO,
            Value::Null,
            Ok,
            Some(read(HELLO, "Completed", hello_output(), &hello_history())),
        );
        instance(
            &mut b,
            "0-2",
            FAN_OUT,
            json!(20),
            Ok,
            Some(read(FAN_OUT, "Completed", json!(190), &fan_history(20))),
        );
        // unknown: never happened, or happened
        instance(
            &mut b,
            "1-1",
            HELLO,
            Value::Null,
            Info,
            Some(json!({"found": false})),
        );
        instance(
            &mut b,
            "1-2",
            FAN_OUT,
            json!(20),
            Info,
            Some(read(FAN_OUT, "Completed", json!(190), &fan_history(20))),
        );
        // refused, not there
        instance(
            &mut b,
            "2-1",
            HELLO,
            Value::Null,
            Fail,
            Some(json!({"found": false})),
        );
        b
    }

    fn verdict(b: &Builder) -> CheckResult {
        check(&b.events(), None)
    }

    #[test]
    fn summaries_follow_turns() {
        let s = summarize(&fan_history(4));
        assert_eq!(s.turns.len(), 3);
        assert_eq!(s.turns[0].scheduled, vec![0, 1, 2, 3]);
        assert_eq!(s.turns[1].results, vec![0, 1]);
        assert_eq!(s.turns[2].results, vec![2, 3]);
        assert_eq!(s.turns[2].started, Some(T0 + 9));
        assert_eq!(s.turns[2].completed, Some(T0 + 9));
        assert_eq!((s.executions_started, s.executions_completed), (1, 1));
        assert_eq!(s.events, 16);
        assert!(s.other.is_empty());
        // round trip through the recorded JSON
        let back: Summary = serde_json::from_value(json!(s)).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn expected_outputs() {
        assert_eq!(
            hello_output(),
            json!([
                "Hello Tokyo!",
                "Hello Seattle!",
                "Hello London!",
                "Hello Paris!",
                "Hello Cairo!"
            ])
        );
        assert_eq!(expected(FAN_OUT, &json!(20)), Some((json!(190), 20)));
        assert_eq!(expected("Nope", &json!(1)), None);
    }

    #[test]
    fn a_good_history_passes() {
        let r = verdict(&good());
        assert_eq!(r.valid, Validity::Valid, "{:?}", r.anomalies);
        assert_eq!(r.keys, 5);
        assert!(
            r.notes[0].contains(
                "5 started (2 acknowledged, 2 unknown of which 1 exist, 1 refused); 3 completed"
            ),
            "{:?}",
            r.notes
        );
    }

    fn flagged(id: &str, name: &str, input: Value, outcome: Outcome, fin: Option<Value>) {
        let mut b = good();
        instance(&mut b, id, name, input, outcome, fin);
        let r = verdict(&b);
        assert_eq!(r.valid, Validity::Invalid, "{id}: {:?}", r.anomalies);
        assert!(
            r.anomalies.iter().all(|a| a.contains(id)),
            "{:?}",
            r.anomalies
        );
    }

    #[test]
    fn acknowledged_starts_must_complete_with_the_right_output() {
        // lost
        flagged("9-1", HELLO, Value::Null, Ok, Some(json!({"found": false})));
        // never finished, failed, terminated
        for status in ["Running", "Pending", "Failed", "Terminated"] {
            flagged(
                "9-2",
                HELLO,
                Value::Null,
                Ok,
                Some(read(HELLO, status, Value::Null, &hello_history())),
            );
        }
        // a wrong output
        flagged(
            "9-3",
            FAN_OUT,
            json!(20),
            Ok,
            Some(read(FAN_OUT, "Completed", json!(189), &fan_history(20))),
        );
        // no final read
        flagged("9-4", HELLO, Value::Null, Ok, None);
        // an unknown start that exists must have completed too
        flagged(
            "9-5",
            HELLO,
            Value::Null,
            Info,
            Some(read(HELLO, "Running", Value::Null, &hello_history())),
        );
        // a refused start that exists
        flagged(
            "9-6",
            HELLO,
            Value::Null,
            Fail,
            Some(read(HELLO, "Completed", hello_output(), &hello_history())),
        );
    }

    #[test]
    fn completing_twice_is_flagged() {
        let mut h = hello_history();
        let n = h.len();
        h.insert(n - 1, ev("ExecutionCompleted", 50));
        flagged(
            "9-1",
            HELLO,
            Value::Null,
            Ok,
            Some(read(HELLO, "Completed", hello_output(), &h)),
        );
    }

    #[test]
    fn a_result_recorded_twice_is_flagged() {
        // the injected bug's shape: a turn's result pushed twice
        let mut h = fan_history(20);
        let at = h
            .iter()
            .position(|e| e["EventType"] == "TaskCompleted")
            .unwrap();
        h.insert(at + 1, h[at].clone());
        flagged(
            "9-1",
            FAN_OUT,
            json!(20),
            Ok,
            Some(read(FAN_OUT, "Completed", json!(190), &h)),
        );
    }

    #[test]
    fn steps_out_of_order_or_missing_are_flagged() {
        // a step scheduled twice
        let mut h = hello_history();
        h.insert(3, scheduled(0, 0));
        flagged(
            "9-1",
            HELLO,
            Value::Null,
            Ok,
            Some(read(HELLO, "Completed", hello_output(), &h)),
        );
        // a result for a task never scheduled
        let mut h = hello_history();
        h.insert(6, done(7, 10));
        flagged(
            "9-2",
            HELLO,
            Value::Null,
            Ok,
            Some(read(HELLO, "Completed", hello_output(), &h)),
        );
        // a scheduled task without a result
        let h: Vec<Value> = fan_history(20)
            .into_iter()
            .filter(|e| e["TaskScheduledId"] != json!(3))
            .collect();
        flagged(
            "9-3",
            FAN_OUT,
            json!(20),
            Ok,
            Some(read(FAN_OUT, "Completed", json!(190), &h)),
        );
        // a result recorded in the turn that scheduled it
        let mut h = hello_history();
        h.insert(3, done(0, 0));
        let h: Vec<Value> = {
            // drop the later result of task 0 so that it has exactly one
            let later = h
                .iter()
                .rposition(|e| e["TaskScheduledId"] == json!(0))
                .unwrap();
            h.into_iter()
                .enumerate()
                .filter(|(i, _)| *i != later)
                .map(|(_, e)| e)
                .collect()
        };
        flagged(
            "9-4",
            HELLO,
            Value::Null,
            Ok,
            Some(read(HELLO, "Completed", hello_output(), &h)),
        );
        // fewer steps than the orchestrator has
        let h = fan_history(19);
        flagged(
            "9-5",
            FAN_OUT,
            json!(20),
            Ok,
            Some(read(FAN_OUT, "Completed", json!(190), &h)),
        );
    }

    fn overlapping() -> Vec<Value> {
        // the third turn started (5 ms) before the second completed (8 ms)
        let turn = |at: u64, result: i64, next: Option<i64>| {
            let mut t = vec![ev("OrchestratorStarted", at), done(result, at)];
            t.push(match next {
                Some(i) => scheduled(i, at),
                None => ev("ExecutionCompleted", at),
            });
            t.push(ev("OrchestratorCompleted", at));
            t
        };
        let mut h = vec![
            ev("OrchestratorStarted", 0),
            ev("ExecutionStarted", 0),
            scheduled(0, 0),
            ev("OrchestratorCompleted", 0),
        ];
        h.extend(turn(8, 0, Some(1)));
        h.extend(turn(5, 1, Some(2)));
        h.extend(turn(20, 2, Some(3)));
        h.extend(turn(30, 3, Some(4)));
        h.extend(turn(40, 4, None));
        h
    }

    #[test]
    fn overlapping_turns_are_flagged_on_trusted_clocks_only() {
        let h = overlapping();
        assert!(history_anomalies(&summarize(&h), 5, false).is_empty());
        let mut b = good();
        instance(
            &mut b,
            "9-1",
            HELLO,
            Value::Null,
            Ok,
            Some(read(HELLO, "Completed", hello_output(), &h)),
        );
        let r = verdict(&b);
        assert_eq!(r.valid, Validity::Invalid);
        assert!(
            r.anomalies[0].contains("overlapping turns"),
            "{:?}",
            r.anomalies
        );
        // started (10 us) before the last skewed node stopped: left out of this check
        let r = check(&b.events(), Some(11));
        assert_eq!(r.valid, Validity::Valid, "{:?}", r.anomalies);
        assert!(
            r.notes[1].contains("0 completed instances, 4 left out"),
            "{:?}",
            r.notes
        );
        // started after it: judged
        assert_eq!(check(&b.events(), Some(10)).valid, Validity::Invalid);
    }

    #[test]
    fn equal_timestamps_and_open_turns_pass() {
        // a turn cut short (no OrchestratorCompleted) is not an anomaly in itself
        let mut h = hello_history();
        h.remove(3);
        let s = summarize(&h);
        assert_eq!(s.turns[0].completed, None);
        assert!(
            history_anomalies(&s, 5, true).is_empty(),
            "{:?}",
            history_anomalies(&s, 5, true)
        );
    }
}
