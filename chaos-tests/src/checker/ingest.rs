//! Stream ingestion, exactly once, for the `ingest` workload: a producer writes records
//! `{"user", "amount"}` to a NATS JetStream stream while two subscriptions apply them, `add` of
//! `/amount` to counter `/user` and `append` of the record's position to list `/user`.
//!
//! After the drain the harness reads the stream back from the broker (the truth: every record
//! and its position) and every counter and list. Then:
//!
//! - every record the broker acknowledged to the producer is in the stream read back;
//! - both subscriptions caught up (their drain op succeeded);
//! - every counter equals the sum of the amounts written for its key (none applied twice, none
//!   lost), and no other counter holds anything;
//! - every list holds positions of records of its own key only, each once, increasing (records
//!   to one entity are applied in position order);
//! - the lists together hold exactly the stream's positions: none missing, none twice, none
//!   invented.
//!
//! The history holds, for workload `ingest`: `produce` ops of the producer (key `stream`; ok value
//! `{"first", "last"}`: the positions the broker acknowledged), `drain` ops (key: the
//! subscription; value `{"caught_up", "why", "status"}`: whether it caught up, else why not, and
//! its last status summary), one `final-read` of key
//! `stream` (value `{"records": [[position, user, amount], ...]}`), and a `final-read` of every
//! counter (`counter/USER`) and list (`list/USER`).

use super::CheckResult;
use crate::history::{ops, Event, Outcome};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// The workload's name in the history.
pub const WORKLOAD: &str = "ingest";
/// The key of the stream's final read and of the producer's ops.
pub const STREAM_KEY: &str = "stream";
/// Key prefix of the counters' final reads.
pub const COUNTER_PREFIX: &str = "counter/";
/// Key prefix of the lists' final reads.
pub const LIST_PREFIX: &str = "list/";

/// What a run of the `ingest` workload observed, as the checker judges it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// Whether the history holds any operation of the workload (a history without it is valid).
    pub any: bool,
    /// The stream as read back from the broker: position, user, amount.
    pub stream: Option<Vec<(u64, String, i64)>>,
    /// Position ranges the broker acknowledged to the producer (inclusive).
    pub acknowledged: Vec<(u64, u64)>,
    /// Subscriptions that did not catch up, with why.
    pub not_drained: Vec<String>,
    /// Each counter's final value (`None`: the read did not succeed; absent entities read 0).
    pub counters: BTreeMap<String, Option<i64>>,
    /// Each list's final value (`None`: the read did not succeed or gave no list of positions).
    pub lists: BTreeMap<String, Option<Vec<u64>>>,
}

/// `positions` (sorted) as `a..=b` ranges, for short anomaly lines.
fn ranges(positions: &[u64]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &p in positions {
        match out.last_mut() {
            Some((_, b)) if *b + 1 == p => *b = p,
            _ => out.push((p, p)),
        }
    }
    out
}

fn show(r: &[(u64, u64)], most: usize) -> String {
    let mut s: Vec<String> = r
        .iter()
        .take(most)
        .map(|(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}..={b}")
            }
        })
        .collect();
    if r.len() > most {
        s.push(format!("... ({} ranges in all)", r.len()));
    }
    s.join(", ")
}

/// Judges what a run observed.
pub fn judge(o: &Observed) -> CheckResult {
    let mut r = CheckResult::new("ingest");
    r.keys = o.counters.len() + o.lists.len();
    if !o.any {
        r.notes.push("no ingest operations in the history".into());
        return r;
    }
    for why in &o.not_drained {
        r.anomaly(format!("subscription did not catch up: {why}"));
    }
    let Some(stream) = &o.stream else {
        r.anomaly("the stream was not read back from the broker: nothing to judge".into());
        return r;
    };
    r.ops = stream.len();
    let by_position: BTreeMap<u64, (&str, i64)> = stream
        .iter()
        .map(|(p, u, a)| (*p, (u.as_str(), *a)))
        .collect();
    r.notes.push(format!(
        "{} records in the stream (positions {}), {} counters, {} lists",
        stream.len(),
        show(&ranges(&by_position.keys().copied().collect::<Vec<_>>()), 3),
        o.counters.len(),
        o.lists.len()
    ));
    // the broker's acknowledgements: those records are in the stream
    let mut lost_by_broker = Vec::new();
    for &(a, b) in &o.acknowledged {
        lost_by_broker.extend((a..=b).filter(|p| !by_position.contains_key(p)));
    }
    lost_by_broker.sort_unstable();
    lost_by_broker.dedup();
    if !lost_by_broker.is_empty() {
        r.anomaly(format!(
            "positions acknowledged by the broker are not in the stream read back (a harness or broker problem): {}",
            show(&ranges(&lost_by_broker), 5)
        ));
    }
    // counters: the sum of the amounts per key
    let mut sums: BTreeMap<&str, i64> = BTreeMap::new();
    for (u, a) in by_position.values() {
        *sums.entry(u).or_default() += a;
    }
    for (user, want) in &sums {
        match o.counters.get(*user) {
            None => r.anomaly(format!("counter {user}: never read (expected {want})")),
            Some(None) => r.anomaly(format!("counter {user}: the final read did not succeed")),
            Some(Some(got)) if got != want => r.anomaly(format!(
                "counter {user} is {got}, the stream's records for it add up to {want} ({})",
                if got > want {
                    "a record applied twice, or one invented"
                } else {
                    "a record lost"
                }
            )),
            Some(Some(_)) => {}
        }
    }
    for (user, got) in &o.counters {
        if !sums.contains_key(user.as_str()) && got.is_some_and(|v| v != 0) {
            r.anomaly(format!(
                "counter {user} is {got:?} though the stream has no record for it"
            ));
        }
    }
    // lists: own key only, each position once, increasing; together exactly the stream
    let mut seen: BTreeMap<u64, &str> = BTreeMap::new();
    let mut twice = Vec::new();
    let users: BTreeSet<&str> = sums.keys().copied().collect();
    for user in &users {
        if !o.lists.contains_key(*user) {
            r.anomaly(format!("list {user}: never read"));
        }
    }
    for (user, list) in &o.lists {
        let Some(list) = list else {
            r.anomaly(format!(
                "list {user}: the final read did not succeed or is not a list of positions"
            ));
            continue;
        };
        if let Some(w) = list.windows(2).find(|w| w[0] >= w[1]) {
            r.anomaly(format!(
                "list {user}: position {} {} position {} (each once, in increasing order)",
                w[1],
                if w[0] == w[1] {
                    "repeats"
                } else {
                    "comes after"
                },
                w[0]
            ));
        }
        let mut foreign = Vec::new();
        let mut invented = Vec::new();
        for &p in list {
            match by_position.get(&p) {
                None => invented.push(p),
                Some((u, _)) if *u != user.as_str() => foreign.push(p),
                Some(_) => {}
            }
            if let Some(other) = seen.insert(p, user) {
                twice.push((p, other, user.as_str()));
            }
        }
        if !invented.is_empty() {
            invented.sort_unstable();
            r.anomaly(format!(
                "list {user}: positions not in the stream: {}",
                show(&ranges(&invented), 5)
            ));
        }
        if !foreign.is_empty() {
            foreign.sort_unstable();
            r.anomaly(format!(
                "list {user}: positions of other keys' records: {}",
                show(&ranges(&foreign), 5)
            ));
        }
    }
    for (p, a, b) in twice.iter().take(20) {
        r.anomaly(format!(
            "position {p} applied twice: in list {a} and list {b}"
        ));
    }
    if twice.len() > 20 {
        r.anomaly(format!(
            "{} more positions in two lists (not listed)",
            twice.len() - 20
        ));
    }
    let missing: Vec<u64> = by_position
        .keys()
        .copied()
        .filter(|p| !seen.contains_key(p))
        .collect();
    for (a, b) in ranges(&missing).into_iter().take(20) {
        let n = b - a + 1;
        r.anomaly(format!(
            "positions {a}..={b} ({n} records, key {} first) are in no list: lost",
            by_position.get(&a).map_or("?", |(u, _)| u)
        ));
    }
    if ranges(&missing).len() > 20 {
        r.anomaly(format!(
            "{} positions in no list in all ({} ranges; the first 20 listed)",
            missing.len(),
            ranges(&missing).len()
        ));
    }
    r
}

/// What the history of the `ingest` workload says was observed.
pub fn observe(events: &[Event]) -> Observed {
    let mut o = Observed::default();
    for op in ops(events, WORKLOAD) {
        o.any = true;
        match op.f.as_str() {
            "produce" if op.outcome == Outcome::Ok => {
                if let (Some(a), Some(b)) =
                    (op.output["first"].as_u64(), op.output["last"].as_u64())
                {
                    if a <= b {
                        o.acknowledged.push((a, b));
                    }
                }
            }
            "drain" if op.outcome != Outcome::Ok || op.output["caught_up"] != true => {
                o.not_drained
                    .push(format!("{}: {}", op.key, op.output["why"]));
            }
            "final-read" if op.key == STREAM_KEY => {
                if op.outcome != Outcome::Ok {
                    continue;
                }
                let records = op.output["records"].as_array().map(|rs| {
                    rs.iter()
                        .filter_map(|r| {
                            Some((
                                r.get(0)?.as_u64()?,
                                r.get(1)?.as_str()?.to_string(),
                                r.get(2)?.as_i64()?,
                            ))
                        })
                        .collect()
                });
                o.stream = records;
            }
            "final-read" => {
                let ok = op.outcome == Outcome::Ok;
                if let Some(user) = op.key.strip_prefix(COUNTER_PREFIX) {
                    let v = match &op.output {
                        Value::Null if ok => Some(0),
                        v if ok => v.as_i64(),
                        _ => None,
                    };
                    // a later successful read wins over an earlier failed one
                    let slot = o.counters.entry(user.to_string()).or_insert(None);
                    if v.is_some() {
                        *slot = v;
                    }
                } else if let Some(user) = op.key.strip_prefix(LIST_PREFIX) {
                    let v = match &op.output {
                        Value::Null if ok => Some(Vec::new()),
                        Value::Array(items) if ok => {
                            items.iter().map(Value::as_u64).collect::<Option<Vec<_>>>()
                        }
                        _ => None,
                    };
                    let slot = o.lists.entry(user.to_string()).or_insert(None);
                    if v.is_some() {
                        *slot = v;
                    }
                }
            }
            _ => {}
        }
    }
    o
}

/// Checks the `ingest` workload of a history.
pub fn check(events: &[Event]) -> CheckResult {
    judge(&observe(events))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::EventType;
    use serde_json::json;

    /// 12 records over 3 users, amounts 1..=3, and the lists and counters a correct run ends
    /// with.
    fn correct() -> Observed {
        let stream: Vec<(u64, String, i64)> = (1..=12u64)
            .map(|p| (p, format!("u{}", p % 3), (p % 3 + 1) as i64))
            .collect();
        let mut o = Observed {
            any: true,
            acknowledged: vec![(1, 5), (6, 12)],
            ..Default::default()
        };
        for (p, u, a) in &stream {
            *o.counters
                .entry(u.clone())
                .or_insert(Some(0))
                .as_mut()
                .unwrap() += a;
            o.lists
                .entry(u.clone())
                .or_insert(Some(Vec::new()))
                .as_mut()
                .unwrap()
                .push(*p);
        }
        o.stream = Some(stream);
        o
    }

    fn list_mut<'a>(o: &'a mut Observed, u: &str) -> &'a mut Vec<u64> {
        o.lists.get_mut(u).unwrap().as_mut().unwrap()
    }

    #[test]
    fn a_correct_run_is_valid() {
        let r = judge(&correct());
        assert!(r.passed(), "{:?}", r.anomalies);
        assert_eq!(r.keys, 6);
        assert_eq!(r.ops, 12);
    }

    #[test]
    fn a_duplicated_and_a_missing_position_are_caught() {
        let mut o = correct();
        // position 3 (u0) applied twice, position 4 (u1) lost
        list_mut(&mut o, "u0").push(3);
        list_mut(&mut o, "u1").retain(|p| *p != 4);
        *o.counters.get_mut("u0").unwrap() = Some(o.counters["u0"].unwrap() + 1);
        *o.counters.get_mut("u1").unwrap() = Some(o.counters["u1"].unwrap() - 2);
        let r = judge(&o);
        assert!(!r.passed());
        let text = r.anomalies.join("\n");
        assert!(text.contains("list u0: position 3 comes after"), "{text}");
        assert!(text.contains("positions 4..=4"), "{text}");
        assert!(text.contains("counter u0 is"), "{text}");
        assert!(text.contains("counter u1 is"), "{text}");
        assert!(text.contains("applied twice"), "{text}");
        assert!(text.contains("a record lost"), "{text}");
    }

    #[test]
    fn a_duplicate_across_lists_an_invented_and_a_reordered_position_are_caught() {
        let mut o = correct();
        list_mut(&mut o, "u2").push(3); // u0's record, also in u0's list
        list_mut(&mut o, "u2").push(99); // not in the stream
        list_mut(&mut o, "u1").swap(0, 1); // out of order
        let text = judge(&o).anomalies.join("\n");
        assert!(text.contains("position 3 applied twice"), "{text}");
        assert!(
            text.contains("positions of other keys' records: 3"),
            "{text}"
        );
        assert!(text.contains("positions not in the stream: 99"), "{text}");
        assert!(text.contains("list u1: position"), "{text}");
    }

    #[test]
    fn no_drain_no_read_back_or_a_lost_acknowledged_record_fail() {
        let mut o = correct();
        o.not_drained.push("chaos-counts: lag 7".into());
        o.acknowledged.push((13, 14));
        let text = judge(&o).anomalies.join("\n");
        assert!(text.contains("did not catch up"), "{text}");
        assert!(text.contains("acknowledged by the broker"), "{text}");
        o.stream = None;
        assert!(!judge(&o).passed());
        let mut o = correct();
        o.counters.insert("u0".into(), None);
        o.lists.remove("u1");
        let text = judge(&o).anomalies.join("\n");
        assert!(
            text.contains("counter u0: the final read did not succeed"),
            "{text}"
        );
        assert!(text.contains("list u1: never read"), "{text}");
    }

    fn ev(op: u64, kind: EventType, key: &str, f: &str, value: Value) -> Event {
        Event {
            op,
            process: 1_000_000,
            kind,
            time_us: op * 10,
            workload: WORKLOAD.into(),
            key: key.into(),
            f: f.into(),
            value,
            error: None,
        }
    }

    #[test]
    fn the_history_is_read_back() {
        let mut events = Vec::new();
        let mut op = 0;
        let mut add = |key: &str, f: &str, kind: EventType, value: Value| {
            op += 1;
            events.push(ev(op, EventType::Invoke, key, f, Value::Null));
            events.push(ev(op, kind, key, f, value));
        };
        add(
            STREAM_KEY,
            "produce",
            EventType::Ok,
            json!({"first": 1, "last": 3}),
        );
        add(
            "chaos-counts",
            "drain",
            EventType::Ok,
            json!({"caught_up": true}),
        );
        add(
            STREAM_KEY,
            "final-read",
            EventType::Ok,
            json!({"records": [[1, "a", 2], [2, "b", 5], [3, "a", 1]]}),
        );
        add("counter/a", "final-read", EventType::Ok, json!(3));
        add("counter/b", "final-read", EventType::Fail, Value::Null);
        add("counter/b", "final-read", EventType::Ok, json!(5));
        add("list/a", "final-read", EventType::Ok, json!([1, 3]));
        add("list/b", "final-read", EventType::Ok, json!([2]));
        assert!(check(&[]).passed());
        let r = check(&events);
        assert!(r.passed(), "{:?}", r.anomalies);
        // a duplicated append of position 3 in the history
        let last = events.len() - 3;
        events[last].value = json!([1, 3, 3]);
        let r = check(&events);
        assert!(!r.passed());
        assert!(r.anomalies.iter().any(|a| a.contains("repeats")), "{r:?}");
    }
}
