//! Single activation, key by key, for the `probe` workload: `visit` calls answer the visit's
//! per-entity sequence number (`seq`, the count it leaves), its wall-clock start and end
//! (`start_us`, `end_us`) and the node's `pid`; `final-read` reads the count after the heal.
//!
//! - No two acknowledged visits share a sequence number; numbers are gap-free: the final count
//!   covers every acknowledged number, and the numbers no acknowledged visit holds are at most
//!   the unknown visits (each may have run once).
//! - Real time: a visit acknowledged before another was invoked has the smaller number.
//! - No overlap: in sequence order, each visit starts (node wall clock) after every earlier one
//!   ended. Visits from nodes whose clock was skewed (`untrusted_pids`) are left out of this one.

use super::CheckResult;
use crate::history::{by_key, ops, Event, Op, Outcome};
use std::collections::{HashMap, HashSet};

#[derive(Debug)]
struct Visit<'a> {
    op: &'a Op,
    seq: u64,
    start: u64,
    end: u64,
    pid: u64,
}

/// Checks every key of the `probe` workload.
pub fn check(events: &[Event], untrusted_pids: &HashSet<u64>) -> CheckResult {
    let mut r = CheckResult::new("single-activation-probe");
    for (key, ops) in by_key(ops(events, "probe")) {
        r.keys += 1;
        r.ops += ops.len();
        let mut visits = Vec::new();
        for o in ops
            .iter()
            .filter(|o| o.f == "visit" && o.outcome == Outcome::Ok)
        {
            let field = |k: &str| o.output[k].as_u64();
            match (field("seq"), field("start_us"), field("end_us"), field("pid")) {
                (Some(seq), Some(start), Some(end), Some(pid)) => visits.push(Visit {
                    op: o,
                    seq,
                    start,
                    end,
                    pid,
                }),
                _ => r.anomaly(format!(
                    "probe {key}: visit op {} answered {} (no seq/start_us/end_us/pid: an old probe?)",
                    o.id, o.output
                )),
            }
        }
        let unknown = ops
            .iter()
            .filter(|o| o.f == "visit" && o.outcome == Outcome::Info)
            .count() as u64;
        let mut by_seq: HashMap<u64, &Visit<'_>> = HashMap::new();
        for v in &visits {
            if let Some(other) = by_seq.insert(v.seq, v) {
                r.anomaly(format!(
                    "probe {key}: visits op {} and op {} both got sequence number {}: two operations saw the same state",
                    other.op.id, v.op.id, v.seq
                ));
            }
        }
        // real-time order
        let mut by_invoke: Vec<&Visit<'_>> = visits.iter().collect();
        by_invoke.sort_by_key(|v| v.op.invoke_us);
        let mut by_complete: Vec<&Visit<'_>> = visits.iter().collect();
        by_complete.sort_by_key(|v| v.op.complete_us);
        let mut done = 0;
        let mut max_done: Option<&Visit<'_>> = None;
        for b in &by_invoke {
            while done < by_complete.len() && by_complete[done].op.complete_us < b.op.invoke_us {
                let a = by_complete[done];
                if max_done.is_none_or(|m| a.seq > m.seq) {
                    max_done = Some(a);
                }
                done += 1;
            }
            if let Some(a) = max_done {
                if a.seq >= b.seq {
                    r.anomaly(format!(
                        "probe {key}: visit op {} (seq {}) was acknowledged before op {} (seq {}) was invoked: sequence went back",
                        a.op.id, a.seq, b.op.id, b.seq
                    ));
                }
            }
        }
        // overlap, in sequence order, on trusted clocks
        let mut ordered: Vec<&Visit<'_>> = visits
            .iter()
            .filter(|v| !untrusted_pids.contains(&v.pid))
            .collect();
        ordered.sort_by_key(|v| v.seq);
        let mut latest_end: Option<&Visit<'_>> = None;
        for v in ordered {
            if let Some(p) = latest_end {
                if v.start < p.end && p.seq < v.seq {
                    r.anomaly(format!(
                        "probe {key}: visit seq {} (op {}, pid {}) started at {} us, before visit seq {} (op {}, pid {}) ended at {} us: overlapping operations",
                        v.seq, v.op.id, v.pid, v.start, p.seq, p.op.id, p.pid, p.end
                    ));
                }
            }
            if latest_end.is_none_or(|p| v.end > p.end) {
                latest_end = Some(v);
            }
        }
        // gap-free
        let finals: Vec<&Op> = ops
            .iter()
            .filter(|o| o.f == "final-read" && o.outcome == Outcome::Ok)
            .collect();
        let Some(last) = finals.iter().max_by_key(|o| o.invoke_us) else {
            if !visits.is_empty() {
                r.anomaly(format!(
                    "probe {key}: no successful final read (the cluster did not recover)"
                ));
            }
            continue;
        };
        let count = last.output.as_u64().unwrap_or(0);
        let max_seq = visits.iter().map(|v| v.seq).max().unwrap_or(0);
        if count < max_seq {
            r.anomaly(format!(
                "probe {key}: final count {count} is below acknowledged sequence number {max_seq}: an acknowledged visit was lost"
            ));
        }
        let held = by_seq.keys().filter(|s| **s <= count).count() as u64;
        let missing = count.saturating_sub(held);
        if missing > unknown {
            r.anomaly(format!(
                "probe {key}: {missing} of the sequence numbers 1..={count} belong to no acknowledged visit, but only {unknown} visits are unknown: visits ran that nobody invoked, or twice"
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
    use Outcome::{Info, Ok};

    fn visit(seq: u64, start: u64, end: u64, pid: u64) -> serde_json::Value {
        json!({"seq": seq, "start_us": start, "end_us": end, "pid": pid, "visits": seq})
    }

    /// Process `process` visited between `start` and `end`, answered `v`.
    trait Visits {
        fn visited(
            &mut self,
            process: u64,
            start: u64,
            end: u64,
            v: serde_json::Value,
        ) -> &mut Self;
    }

    impl Visits for Builder {
        fn visited(
            &mut self,
            process: u64,
            start: u64,
            end: u64,
            v: serde_json::Value,
        ) -> &mut Self {
            self.op(process, "visit", "p", json!(null), start, end, Ok, v)
        }
    }

    fn base() -> Builder {
        let mut b = Builder::new("probe");
        b.visited(1, 0, 10, visit(1, 1000, 1005, 7))
            .visited(2, 2, 20, visit(2, 1006, 1010, 7))
            .op(3, "visit", "p", json!(null), 21, 30, Info, json!(null))
            .visited(1, 31, 40, visit(4, 1100, 1105, 8));
        b
    }

    #[test]
    fn a_good_history_passes() {
        let mut b = base();
        b.op(9, "final-read", "p", json!(null), 100, 101, Ok, json!(4));
        assert_eq!(check(&b.events(), &HashSet::new()).valid, Validity::Valid);
    }

    #[test]
    fn duplicates_gaps_and_losses_are_flagged() {
        let mut b = base();
        b.op(9, "final-read", "p", json!(null), 100, 101, Ok, json!(5));
        assert_eq!(
            check(&b.events(), &HashSet::new()).valid,
            Validity::Invalid,
            "gap"
        );
        let mut b = base();
        b.op(9, "final-read", "p", json!(null), 100, 101, Ok, json!(3));
        assert_eq!(
            check(&b.events(), &HashSet::new()).valid,
            Validity::Invalid,
            "lost"
        );
        let mut b = base();
        b.visited(5, 41, 50, visit(4, 1200, 1201, 8)).op(
            9,
            "final-read",
            "p",
            json!(null),
            100,
            101,
            Ok,
            json!(4),
        );
        assert_eq!(
            check(&b.events(), &HashSet::new()).valid,
            Validity::Invalid,
            "duplicate"
        );
    }

    #[test]
    fn overlap_and_real_time_violations_are_flagged() {
        let mut b = Builder::new("probe");
        b.visited(1, 0, 10, visit(1, 1000, 1005, 7))
            .visited(2, 2, 20, visit(2, 1003, 1010, 8))
            .op(9, "final-read", "p", json!(null), 100, 101, Ok, json!(2));
        assert_eq!(
            check(&b.events(), &HashSet::new()).valid,
            Validity::Invalid,
            "overlap"
        );
        // the same with pid 8's clock untrusted passes
        assert_eq!(
            check(&b.events(), &HashSet::from([8])).valid,
            Validity::Valid
        );
        let mut b = Builder::new("probe");
        b.visited(1, 0, 10, visit(2, 1000, 1005, 7))
            .visited(2, 12, 20, visit(1, 1006, 1010, 7))
            .op(9, "final-read", "p", json!(null), 100, 101, Ok, json!(2));
        assert_eq!(
            check(&b.events(), &HashSet::new()).valid,
            Validity::Invalid,
            "real time"
        );
    }
}
