//! Counter exactness, key by key, for the `counter` workload: `add` (a positive amount, signalled
//! with an idempotency key and retried with the same key), `read` (the state, linearizable) and
//! `final-read` (after the final heal).
//!
//! - The final value is the sum of the acknowledged adds plus the amounts of some subset of the
//!   unknown ones: nothing acknowledged is lost or applied twice, nothing unknown applied twice,
//!   nothing that failed or was never sent appears.
//! - Every read lies between the sum of the adds acknowledged before it was invoked and the sum of
//!   the adds (acknowledged or unknown) invoked before it completed.

use super::CheckResult;
use crate::history::{by_key, ops, Event, Op, Outcome};

fn amount(op: &Op) -> i64 {
    op.input.as_i64().unwrap_or(1)
}

fn value(op: &Op) -> Option<i64> {
    if op.output.is_null() {
        Some(0)
    } else {
        op.output.as_i64()
    }
}

/// Whether `target` is the sum of some subset of `amounts` (all positive).
fn subset_sum(amounts: &[i64], target: i64) -> bool {
    if target < 0 {
        return false;
    }
    let total: i64 = amounts.iter().sum();
    if target > total {
        return false;
    }
    let mut reach = vec![false; target as usize + 1];
    reach[0] = true;
    for &a in amounts {
        let a = a as usize;
        for s in (a..reach.len()).rev() {
            if reach[s - a] {
                reach[s] = true;
            }
        }
    }
    reach[target as usize]
}

/// Checks every key of the `counter` workload.
pub fn check(events: &[Event]) -> CheckResult {
    let mut r = CheckResult::new("counter");
    for (key, ops) in by_key(ops(events, "counter")) {
        r.keys += 1;
        r.ops += ops.len();
        let adds: Vec<&Op> = ops.iter().filter(|o| o.f == "add").collect();
        if let Some(bad) = adds.iter().find(|o| amount(o) <= 0) {
            r.anomaly(format!(
                "counter {key}: op {} adds {} (the checker needs positive amounts)",
                bad.id, bad.input
            ));
            continue;
        }
        let ok_sum: i64 = adds
            .iter()
            .filter(|o| o.outcome == Outcome::Ok)
            .map(|o| amount(o))
            .sum();
        let unknown: Vec<i64> = adds
            .iter()
            .filter(|o| o.outcome == Outcome::Info)
            .map(|o| amount(o))
            .collect();
        let reads: Vec<&Op> = ops
            .iter()
            .filter(|o| (o.f == "read" || o.f == "final-read") && o.outcome == Outcome::Ok)
            .collect();
        for rd in &reads {
            let Some(v) = value(rd) else {
                r.anomaly(format!(
                    "counter {key}: read op {} returned a non-integer {}",
                    rd.id, rd.output
                ));
                continue;
            };
            let lower: i64 = adds
                .iter()
                .filter(|a| a.outcome == Outcome::Ok && a.complete_us < rd.invoke_us)
                .map(|a| amount(a))
                .sum();
            let upper: i64 = adds
                .iter()
                .filter(|a| a.outcome != Outcome::Fail && a.invoke_us < rd.complete_us)
                .map(|a| amount(a))
                .sum();
            if v < lower || v > upper {
                r.anomaly(format!(
                    "counter {key}: read op {} (process {}, {}..{} us) saw {v}, outside [{lower}, {upper}] (acknowledged before it began .. attempted before it ended)",
                    rd.id, rd.process, rd.invoke_us, rd.complete_us
                ));
            }
        }
        let finals: Vec<&&Op> = reads.iter().filter(|o| o.f == "final-read").collect();
        let Some(last) = finals.iter().max_by_key(|o| o.invoke_us) else {
            if !adds.is_empty() {
                r.anomaly(format!(
                    "counter {key}: no successful final read (the cluster did not recover)"
                ));
            }
            continue;
        };
        let Some(fin) = value(last) else { continue };
        if fin < ok_sum {
            r.anomaly(format!(
                "counter {key}: final value {fin} < {ok_sum}, the sum of acknowledged adds: acknowledged adds lost"
            ));
        } else if !subset_sum(&unknown, fin - ok_sum) {
            r.anomaly(format!(
                "counter {key}: final value {fin} = {ok_sum} acknowledged + {} not explained by any subset of the {} unknown adds (sum {}): an add applied twice, or a failed one applied",
                fin - ok_sum,
                unknown.len(),
                unknown.iter().sum::<i64>()
            ));
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

    fn base() -> Builder {
        let mut b = Builder::new("counter");
        b.op(1, "add", "c", json!(2), 0, 10, Ok, json!(null))
            .op(2, "add", "c", json!(3), 5, 15, Info, json!(null))
            .op(3, "add", "c", json!(4), 6, 8, Fail, json!(null))
            .op(4, "read", "c", json!(null), 1, 2, Ok, json!(null))
            .op(4, "read", "c", json!(null), 11, 12, Ok, json!(5));
        b
    }

    #[test]
    fn exact_counts_pass() {
        let mut b = base();
        b.op(9, "final-read", "c", json!(null), 100, 101, Ok, json!(5));
        assert_eq!(check(&b.events()).valid, Validity::Valid);
        let mut b = base();
        b.op(9, "final-read", "c", json!(null), 100, 101, Ok, json!(2));
        assert_eq!(check(&b.events()).valid, Validity::Valid);
    }

    #[test]
    fn a_lost_acknowledged_add_is_flagged() {
        let mut b = base();
        b.op(9, "final-read", "c", json!(null), 100, 101, Ok, json!(0));
        assert_eq!(check(&b.events()).valid, Validity::Invalid);
    }

    #[test]
    fn a_double_apply_is_flagged() {
        let mut b = base();
        b.op(9, "final-read", "c", json!(null), 100, 101, Ok, json!(7));
        assert_eq!(check(&b.events()).valid, Validity::Invalid);
    }

    #[test]
    fn a_failed_add_that_shows_up_is_flagged() {
        let mut b = base();
        b.op(9, "final-read", "c", json!(null), 100, 101, Ok, json!(6));
        assert_eq!(check(&b.events()).valid, Validity::Invalid);
    }

    #[test]
    fn a_stale_read_is_flagged() {
        let mut b = base();
        b.op(5, "read", "c", json!(null), 20, 21, Ok, json!(0)).op(
            9,
            "final-read",
            "c",
            json!(null),
            100,
            101,
            Ok,
            json!(5),
        );
        assert_eq!(check(&b.events()).valid, Validity::Invalid);
    }

    #[test]
    fn a_read_from_the_future_is_flagged() {
        let mut b = Builder::new("counter");
        b.op(4, "read", "c", json!(null), 1, 2, Ok, json!(2))
            .op(1, "add", "c", json!(2), 3, 10, Ok, json!(null))
            .op(9, "final-read", "c", json!(null), 100, 101, Ok, json!(2));
        assert_eq!(check(&b.events()).valid, Validity::Invalid);
    }

    #[test]
    fn a_missing_final_read_is_flagged() {
        assert_eq!(check(&base().events()).valid, Validity::Invalid);
    }

    #[test]
    fn subset_sums() {
        assert!(subset_sum(&[3, 5, 1], 6));
        assert!(subset_sum(&[], 0));
        assert!(!subset_sum(&[3, 5], 4));
        assert!(!subset_sum(&[3], -1));
    }
}
