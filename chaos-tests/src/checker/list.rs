//! List-append, key by key, for the `list` workload: `append` of unique elements (signals with
//! idempotency keys), `read` and `final-read` of the whole list.
//!
//! - The final list holds no duplicate, every acknowledged element, and nothing that was never
//!   attempted or certainly failed.
//! - Every read is a prefix of the final list (no element lost, reordered or invented in between).
//! - Every read holds every element acknowledged before it was invoked, and none whose append
//!   was invoked after it completed.

use super::CheckResult;
use crate::history::{by_key, ops, Event, Op, Outcome};
use serde_json::Value;
use std::collections::{HashMap, HashSet};

/// Checks every key of the `list` workload.
pub fn check(events: &[Event]) -> CheckResult {
    let mut r = CheckResult::new("list-append");
    for (key, ops) in by_key(ops(events, "list")) {
        r.keys += 1;
        r.ops += ops.len();
        let appends: HashMap<String, &Op> = ops
            .iter()
            .filter(|o| o.f == "append")
            .map(|o| (o.input.to_string(), o))
            .collect();
        let reads: Vec<(&Op, Vec<String>)> = ops
            .iter()
            .filter(|o| (o.f == "read" || o.f == "final-read") && o.outcome == Outcome::Ok)
            .filter_map(|o| match &o.output {
                Value::Array(items) => Some((o, items.iter().map(Value::to_string).collect())),
                Value::Null => Some((o, Vec::new())),
                other => {
                    r.anomaly(format!(
                        "list {key}: read op {} returned a non-list {other}",
                        o.id
                    ));
                    None
                }
            })
            .collect();
        let Some((_, fin)) = reads
            .iter()
            .filter(|(o, _)| o.f == "final-read")
            .max_by_key(|(o, _)| o.invoke_us)
        else {
            if !appends.is_empty() {
                r.anomaly(format!(
                    "list {key}: no successful final read (the cluster did not recover)"
                ));
            }
            continue;
        };
        let mut seen = HashSet::new();
        for x in fin {
            if !seen.insert(x) {
                r.anomaly(format!(
                    "list {key}: element {x} appears twice in the final list"
                ));
            }
            match appends.get(x) {
                None => r.anomaly(format!(
                    "list {key}: element {x} in the final list was never appended"
                )),
                Some(a) if a.outcome == Outcome::Fail => r.anomaly(format!(
                    "list {key}: element {x} in the final list was appended by op {}, which failed",
                    a.id
                )),
                _ => {}
            }
        }
        for (x, a) in &appends {
            if a.outcome == Outcome::Ok && !seen.contains(x) {
                r.anomaly(format!(
                    "list {key}: acknowledged element {x} (op {}, {}..{} us) is lost: not in the final list",
                    a.id, a.invoke_us, a.complete_us
                ));
            }
        }
        for (rd, items) in &reads {
            if items.len() > fin.len() || items[..] != fin[..items.len()] {
                let at = items
                    .iter()
                    .zip(fin.iter())
                    .position(|(a, b)| a != b)
                    .unwrap_or(items.len().min(fin.len()));
                r.anomaly(format!(
                    "list {key}: read op {} ({} elements) is not a prefix of the final list ({} elements): differs at index {at}",
                    rd.id,
                    items.len(),
                    fin.len()
                ));
                continue;
            }
            let has: HashSet<&String> = items.iter().collect();
            for (x, a) in &appends {
                if a.outcome == Outcome::Ok && a.complete_us < rd.invoke_us && !has.contains(x) {
                    r.anomaly(format!(
                        "list {key}: read op {} ({}..{} us) misses {x}, acknowledged at {} us before the read began: stale read",
                        rd.id, rd.invoke_us, rd.complete_us, a.complete_us
                    ));
                }
                if a.invoke_us > rd.complete_us && has.contains(x) {
                    r.anomaly(format!(
                        "list {key}: read op {} saw {x}, appended only after the read completed",
                        rd.id
                    ));
                }
            }
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
        let mut b = Builder::new("list");
        b.op(1, "append", "l", json!(1), 0, 10, Ok, json!(null))
            .op(2, "append", "l", json!(2), 11, 20, Ok, json!(null))
            .op(3, "append", "l", json!(3), 21, 30, Info, json!(null))
            .op(4, "append", "l", json!(4), 31, 40, Fail, json!(null))
            .op(5, "read", "l", json!(null), 12, 13, Ok, json!([1]));
        b
    }

    #[test]
    fn good_histories_pass() {
        let mut b = base();
        b.op(
            9,
            "final-read",
            "l",
            json!(null),
            100,
            101,
            Ok,
            json!([1, 2, 3]),
        );
        assert_eq!(check(&b.events()).valid, Validity::Valid);
        let mut b = base();
        b.op(
            9,
            "final-read",
            "l",
            json!(null),
            100,
            101,
            Ok,
            json!([1, 2]),
        );
        assert_eq!(check(&b.events()).valid, Validity::Valid);
    }

    #[test]
    fn bad_histories_are_flagged() {
        for (fin, why) in [
            (json!([1, 3]), "lost acknowledged"),
            (json!([1, 2, 2]), "duplicate"),
            (json!([2, 1]), "reordered"),
            (json!([1, 2, 4]), "failed element present"),
            (json!([1, 2, 99]), "invented element"),
        ] {
            let mut b = base();
            b.op(9, "final-read", "l", json!(null), 100, 101, Ok, fin);
            assert_eq!(check(&b.events()).valid, Validity::Invalid, "{why}");
        }
    }

    #[test]
    fn stale_and_non_prefix_reads_are_flagged() {
        for (start, end, read, why) in [
            (25, 26, json!([1]), "stale"),
            (25, 26, json!([2]), "not a prefix"),
            (1, 2, json!([1, 2]), "from the future"),
        ] {
            let mut b = base();
            b.op(6, "read", "l", json!(null), start, end, Ok, read).op(
                9,
                "final-read",
                "l",
                json!(null),
                100,
                101,
                Ok,
                json!([1, 2]),
            );
            assert_eq!(check(&b.events()).valid, Validity::Invalid, "{why}");
        }
    }

    #[test]
    fn a_missing_final_read_is_flagged() {
        assert_eq!(check(&base().events()).valid, Validity::Invalid);
    }
}
