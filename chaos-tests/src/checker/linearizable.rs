//! Linearizability of the `register` workload, key by key: the Wing-Gong-Lowe search (with the
//! memoization of Lowe's "just-in-time" variant) over a register model with `write`, `read` and
//! `cas`. Each key's search has a step budget; a key whose search runs out is reported as
//! undecided, which fails the check.
//!
//! `fail` operations did not happen and are dropped, as are `info` reads (no effect). `info`
//! writes and cas may have happened at any time after their invocation, or never: their return
//! is at infinity, and the search succeeds once every operation that completed is linearized.

use super::CheckResult;
use crate::history::{by_key, ops, Event, Op, Outcome};
use serde_json::Value;
use std::collections::HashSet;

/// Steps of the search per key before the key is reported as undecided.
pub const DEFAULT_STEP_BUDGET: u64 = 2_000_000;

const NIL: usize = usize::MAX;
const HEAD: usize = 0;

/// The register model: the state after `op` is applied to `state`, or `None` when `op` cannot
/// take effect in that state with the result it returned.
fn step(state: &Value, op: &Op) -> Option<Value> {
    match op.f.as_str() {
        "write" => Some(op.input.clone()),
        "read" => (op.output == *state).then(|| state.clone()),
        "cas" => {
            let expected = &op.input["expected"];
            let new = &op.input["new"];
            match (op.outcome, op.output.as_bool()) {
                (Outcome::Ok, Some(false)) => (state != expected).then(|| state.clone()),
                (Outcome::Ok, Some(true)) | (Outcome::Info, _) => {
                    (state == expected).then(|| new.clone())
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// The verdict for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyVerdict {
    /// A linearization exists.
    Linearizable,
    /// None exists; the text names the operation the search could not get past.
    NotLinearizable(String),
    /// The step budget ran out.
    Unknown,
}

/// Searches for a linearization of one key's operations (any order), starting from `initial`.
pub fn check_key(ops: &[Op], initial: &Value, budget: u64) -> KeyVerdict {
    let ops: Vec<&Op> = ops
        .iter()
        .filter(|o| match o.outcome {
            Outcome::Fail => false,
            Outcome::Info => o.f != "read",
            Outcome::Ok => true,
        })
        .collect();
    // Unknown writes and cas whose value nobody ever saw (no read returned it, no cas expected
    // it): each one left in doubles the search, since it may take effect at any point after its
    // call. Leaving them all out ("they never took effect", which an unknown operation may) keeps
    // any linearization a linearization, so a linearizable reduced history proves the whole one
    // linearizable. The converse holds too unless a cas failed: in a linearization of the whole
    // history, while an unseen value is the state nothing but a write (or another left-out
    // operation) can take effect, since reads and cas need a value somebody saw; dropping the
    // left-out ones changes no other operation's outcome. A failed cas, though, may have failed
    // because an unseen value was the state, so with one in the history a reduced search that
    // finds no linearization is followed by a search of the whole history.
    let observed: HashSet<String> = ops
        .iter()
        .filter_map(|o| match (o.f.as_str(), o.outcome) {
            ("read", Outcome::Ok) => Some(o.output.to_string()),
            ("cas", _) => Some(o.input["expected"].to_string()),
            _ => None,
        })
        .collect();
    let unseen = |o: &Op| {
        o.outcome == Outcome::Info
            && match o.f.as_str() {
                "write" => !observed.contains(&o.input.to_string()),
                "cas" => !observed.contains(&o.input["new"].to_string()),
                _ => false,
            }
    };
    if ops.iter().any(|o| unseen(o)) {
        let reduced: Vec<&Op> = ops.iter().copied().filter(|o| !unseen(o)).collect();
        let verdict = search(&reduced, initial, budget);
        let failed_cas = ops
            .iter()
            .any(|o| o.f == "cas" && o.outcome == Outcome::Ok && o.output == Value::Bool(false));
        if verdict == KeyVerdict::Linearizable || !failed_cas {
            return verdict;
        }
    }
    search(&ops, initial, budget)
}

/// The Wing-Gong-Lowe search over `ops` (unknown operations' returns at infinity).
fn search(ops: &[&Op], initial: &Value, budget: u64) -> KeyVerdict {
    if ops.is_empty() {
        return KeyVerdict::Linearizable;
    }
    // entries 1..=2n: (time, is_return, op); calls before returns at the same time
    let mut order: Vec<(u64, bool, usize)> = Vec::with_capacity(ops.len() * 2);
    for (i, o) in ops.iter().enumerate() {
        order.push((o.invoke_us, false, i));
        order.push((o.complete_us, true, i));
    }
    order.sort();
    let n = order.len() + 1;
    let mut is_call = vec![false; n];
    let mut op_of = vec![0usize; n];
    let mut matching = vec![NIL; n];
    let mut call_entry = vec![NIL; ops.len()];
    for (k, &(_, ret, i)) in order.iter().enumerate() {
        let e = k + 1;
        is_call[e] = !ret;
        op_of[e] = i;
        if ret {
            matching[e] = call_entry[i];
            matching[call_entry[i]] = e;
        } else {
            call_entry[i] = e;
        }
    }
    let mut next: Vec<usize> = (0..n)
        .map(|e| if e + 1 < n { e + 1 } else { NIL })
        .collect();
    let mut prev: Vec<usize> = (0..n).map(|e| if e == 0 { NIL } else { e - 1 }).collect();

    let lift = |e: usize, next: &mut Vec<usize>, prev: &mut Vec<usize>, m: usize| {
        for x in [e, m] {
            next[prev[x]] = next[x];
            if next[x] != NIL {
                prev[next[x]] = prev[x];
            }
        }
    };
    let unlift = |e: usize, next: &mut Vec<usize>, prev: &mut Vec<usize>, m: usize| {
        for x in [m, e] {
            next[prev[x]] = x;
            if next[x] != NIL {
                prev[next[x]] = x;
            }
        }
    };

    let words = ops.len().div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut cache: HashSet<(Vec<u64>, String)> = HashSet::new();
    let mut stack: Vec<(usize, Value)> = Vec::new();
    let mut state = initial.clone();
    let mut entry = next[HEAD];
    let mut steps = 0u64;
    let mut deepest = (0usize, NIL);
    while next[HEAD] != NIL {
        steps += 1;
        if steps > budget {
            return KeyVerdict::Unknown;
        }
        if entry == NIL {
            // cannot happen: a call's return always follows it
            return KeyVerdict::NotLinearizable("internal: ran off the list".into());
        }
        let i = op_of[entry];
        if is_call[entry] {
            if let Some(s2) = step(&state, ops[i]) {
                linearized[i / 64] |= 1 << (i % 64);
                if cache.insert((linearized.clone(), s2.to_string())) {
                    stack.push((entry, std::mem::replace(&mut state, s2)));
                    lift(entry, &mut next, &mut prev, matching[entry]);
                    entry = next[HEAD];
                    continue;
                }
                linearized[i / 64] &= !(1 << (i % 64));
            }
            entry = next[entry];
        } else {
            if ops[i].outcome == Outcome::Info {
                // every remaining entry is an unknown operation's return at infinity: every
                // completed operation is linearized
                return KeyVerdict::Linearizable;
            }
            if stack.len() >= deepest.0 {
                deepest = (stack.len(), i);
            }
            let Some((e, s)) = stack.pop() else {
                let o = ops[deepest.1];
                return KeyVerdict::NotLinearizable(format!(
                    "no linearization: stuck at op {} (process {}, {} {} -> {}, {}..{} us) after {} linearized ops",
                    o.id, o.process, o.f, o.input, o.output, o.invoke_us, o.complete_us, deepest.0
                ));
            };
            state = s;
            let j = op_of[e];
            linearized[j / 64] &= !(1 << (j % 64));
            unlift(e, &mut next, &mut prev, matching[e]);
            entry = next[e];
        }
    }
    KeyVerdict::Linearizable
}

/// Checks every key of the `register` workload (initial state `null`: no entity).
pub fn check(events: &[Event], budget: u64) -> CheckResult {
    let mut r = CheckResult::new("linearizable-register");
    for (key, ops) in by_key(ops(events, "register")) {
        r.keys += 1;
        r.ops += ops.len();
        match check_key(&ops, &Value::Null, budget) {
            KeyVerdict::Linearizable => {}
            KeyVerdict::NotLinearizable(why) => r.anomaly(format!("register {key}: {why}")),
            KeyVerdict::Unknown => r.unknown(format!(
                "register {key}: undecided after {budget} search steps ({} ops): counts as a failure",
                ops.len()
            )),
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::Validity;
    use crate::history::Builder;
    use serde_json::json;
    use Outcome::{Fail, Info, Ok};

    fn verdict(b: &Builder) -> Validity {
        check(&b.events(), DEFAULT_STEP_BUDGET).valid
    }

    #[test]
    fn sequential_and_concurrent_good_histories_pass() {
        let mut b = Builder::new("register");
        b.op(1, "read", "a", json!(null), 0, 1, Ok, json!(null))
            .op(1, "write", "a", json!(1), 2, 3, Ok, json!(null))
            .op(2, "read", "a", json!(null), 4, 5, Ok, json!(1))
            // concurrent write 2 and read seeing 2 before the write returned
            .op(1, "write", "a", json!(2), 6, 20, Ok, json!(null))
            .op(2, "read", "a", json!(null), 7, 8, Ok, json!(2))
            .op(
                3,
                "cas",
                "a",
                json!({"expected": 2, "new": 3}),
                21,
                22,
                Ok,
                json!(true),
            )
            .op(
                3,
                "cas",
                "a",
                json!({"expected": 2, "new": 4}),
                23,
                24,
                Ok,
                json!(false),
            )
            .op(2, "read", "a", json!(null), 25, 26, Ok, json!(3))
            // another key is independent
            .op(4, "write", "b", json!(9), 0, 100, Ok, json!(null))
            .op(5, "read", "b", json!(null), 1, 2, Ok, json!(null));
        assert_eq!(verdict(&b), Validity::Valid);
    }

    #[test]
    fn unknown_writes_may_or_may_not_happen() {
        let mut b = Builder::new("register");
        b.op(1, "write", "a", json!(1), 0, 1, Ok, json!(null))
            .op(2, "write", "a", json!(5), 2, 3, Info, json!(null))
            .op(3, "read", "a", json!(null), 10, 11, Ok, json!(1))
            .op(3, "read", "a", json!(null), 12, 13, Ok, json!(5))
            .op(4, "write", "a", json!(7), 14, 15, Fail, json!(null))
            .op(3, "read", "a", json!(null), 16, 17, Ok, json!(5));
        assert_eq!(verdict(&b), Validity::Valid);
        // an unknown write that never shows up is fine as well
        let mut b = Builder::new("register");
        b.op(1, "write", "a", json!(1), 0, 1, Ok, json!(null))
            .op(
                2,
                "cas",
                "a",
                json!({"expected": 9, "new": 5}),
                2,
                3,
                Info,
                json!(null),
            )
            .op(3, "read", "a", json!(null), 10, 11, Ok, json!(1));
        assert_eq!(verdict(&b), Validity::Valid);
    }

    #[test]
    fn stale_read_is_flagged() {
        let mut b = Builder::new("register");
        b.op(1, "write", "a", json!(1), 0, 1, Ok, json!(null))
            .op(1, "write", "a", json!(2), 2, 3, Ok, json!(null))
            .op(2, "read", "a", json!(null), 4, 5, Ok, json!(1));
        assert_eq!(verdict(&b), Validity::Invalid);
    }

    #[test]
    fn a_read_going_back_in_time_is_flagged() {
        // two reads by other processes: 2 then 1, with the write of 2 after the write of 1
        let mut b = Builder::new("register");
        b.op(1, "write", "a", json!(1), 0, 1, Ok, json!(null))
            .op(1, "write", "a", json!(2), 2, 50, Ok, json!(null))
            .op(2, "read", "a", json!(null), 5, 6, Ok, json!(2))
            .op(3, "read", "a", json!(null), 7, 8, Ok, json!(1));
        assert_eq!(verdict(&b), Validity::Invalid);
    }

    #[test]
    fn a_failed_write_that_shows_up_is_flagged() {
        let mut b = Builder::new("register");
        b.op(1, "write", "a", json!(1), 0, 1, Fail, json!(null)).op(
            2,
            "read",
            "a",
            json!(null),
            4,
            5,
            Ok,
            json!(1),
        );
        assert_eq!(verdict(&b), Validity::Invalid);
    }

    #[test]
    fn a_lost_cas_is_flagged() {
        let mut b = Builder::new("register");
        b.op(1, "write", "a", json!(1), 0, 1, Ok, json!(null))
            .op(
                1,
                "cas",
                "a",
                json!({"expected": 1, "new": 2}),
                2,
                3,
                Ok,
                json!(true),
            )
            .op(
                2,
                "cas",
                "a",
                json!({"expected": 1, "new": 3}),
                4,
                5,
                Ok,
                json!(true),
            );
        assert_eq!(verdict(&b), Validity::Invalid);
    }

    #[test]
    fn many_unknown_writes_nobody_saw_are_decided_quickly() {
        // 40 concurrent unknown writes: 2^40 subsets for a plain search; none was ever read
        let mut b = Builder::new("register");
        b.op(1, "write", "a", json!(1), 0, 1, Ok, json!(null));
        for i in 0..40u64 {
            b.op(
                10 + i,
                "write",
                "a",
                json!(100 + i),
                2 + i,
                3 + i,
                Info,
                json!(null),
            );
        }
        b.op(2, "read", "a", json!(null), 60, 61, Ok, json!(1))
            .op(2, "write", "a", json!(2), 62, 63, Ok, json!(null))
            .op(2, "read", "a", json!(null), 64, 65, Ok, json!(2));
        assert_eq!(check(&b.events(), 10_000).valid, Validity::Valid);
        // one of them read afterwards: still decided, still linearizable
        b.op(3, "read", "a", json!(null), 70, 71, Ok, json!(120));
        assert_eq!(check(&b.events(), 10_000).valid, Validity::Valid);
        // and a read of a value nobody wrote is still caught
        b.op(3, "read", "a", json!(null), 72, 73, Ok, json!(999));
        assert_eq!(
            check(&b.events(), DEFAULT_STEP_BUDGET).valid,
            Validity::Invalid
        );
    }

    #[test]
    fn an_unseen_unknown_write_can_explain_a_failed_cas() {
        // the cas failed although the register held 1, unless the unknown write of 5 (never
        // read) happened first: linearizable only with it, so the reduced search alone would
        // be wrong
        let mut b = Builder::new("register");
        b.op(1, "write", "a", json!(1), 0, 1, Ok, json!(null))
            .op(2, "write", "a", json!(5), 2, 3, Info, json!(null))
            .op(
                3,
                "cas",
                "a",
                json!({"expected": 1, "new": 7}),
                10,
                11,
                Ok,
                json!(false),
            );
        assert_eq!(verdict(&b), Validity::Valid);
    }

    #[test]
    fn an_exhausted_budget_fails_instead_of_passing() {
        let mut b = Builder::new("register");
        for i in 0..12u64 {
            b.op(i, "write", "a", json!(i), 0, 100, Ok, json!(null));
        }
        b.op(99, "read", "a", json!(null), 101, 102, Ok, json!(1000));
        let r = check(&b.events(), 50);
        assert_eq!(r.valid, Validity::Unknown);
        assert!(!r.passed());
        assert_eq!(
            check(&b.events(), DEFAULT_STEP_BUDGET).valid,
            Validity::Invalid
        );
    }
}
