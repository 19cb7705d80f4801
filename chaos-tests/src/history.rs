//! The history of a run: one [`Event`] per invocation and one per completion of every operation,
//! with monotonic timestamps, written as JSON lines; and [`Op`], an invocation paired with its
//! completion, which is what the checkers judge.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::Path;

/// What an event says about its operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    /// The client is about to send the operation.
    Invoke,
    /// It happened, with the result in `value`.
    Ok,
    /// It certainly did not happen (the server refused it with a 4xx; reads that failed).
    Fail,
    /// Outcome unknown (a timeout, a dropped connection, a 5xx): it may or may not have happened,
    /// and may still take effect at any later time.
    Info,
}

/// One line of the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The operation this event belongs to (an invocation and its completion share it).
    pub op: u64,
    /// The client worker (a single-threaded process in Jepsen's sense).
    pub process: u64,
    /// Invoke, or how it completed.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// Microseconds since the run started, on the harness's monotonic clock.
    pub time_us: u64,
    /// The workload: `register`, `counter`, `list`, `probe`, `orchestration`.
    pub workload: String,
    /// The entity key (an orchestration's instance id).
    pub key: String,
    /// The function: `write`, `read`, `cas`, `add`, `append`, `visit`, `start`, `final-read`.
    pub f: String,
    /// On invoke the argument, on `ok` the result (`null` when there is none).
    #[serde(default)]
    pub value: Value,
    /// Why it failed or is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// It happened.
    Ok,
    /// It did not happen.
    Fail,
    /// It may or may not have happened.
    Info,
}

/// An invocation with its completion.
#[derive(Debug, Clone, PartialEq)]
pub struct Op {
    /// The operation id.
    pub id: u64,
    /// The worker.
    pub process: u64,
    /// The entity key.
    pub key: String,
    /// The function.
    pub f: String,
    /// The argument.
    pub input: Value,
    /// The result (`ok` only; `null` otherwise).
    pub output: Value,
    /// How it ended (an invocation without a completion is `Info`).
    pub outcome: Outcome,
    /// When it was invoked (µs since the start).
    pub invoke_us: u64,
    /// When it completed; `u64::MAX` for `Info` (it may take effect at any later time).
    pub complete_us: u64,
}

/// Errors reading or writing a history.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The file could not be read or written.
    #[error("history file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A line is not an event.
    #[error("history file {path} line {line}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

/// Writes `events` as JSON lines.
pub fn write_jsonl(path: &Path, events: &[Event]) -> Result<(), HistoryError> {
    let io = |source| HistoryError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut w = std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?);
    for e in events {
        serde_json::to_writer(&mut w, e).map_err(|e| io(e.into()))?;
        w.write_all(b"\n").map_err(io)?;
    }
    w.flush().map_err(io)
}

/// Reads a history written by [`write_jsonl`].
pub fn read_jsonl(path: &Path) -> Result<Vec<Event>, HistoryError> {
    let io = |source| HistoryError::Io {
        path: path.display().to_string(),
        source,
    };
    let f = std::fs::File::open(path).map_err(io)?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(
            serde_json::from_str(&line).map_err(|source| HistoryError::Parse {
                path: path.display().to_string(),
                line: i + 1,
                source,
            })?,
        );
    }
    Ok(out)
}

/// The operations of `workload`, invocations paired with their completions, in invocation order.
/// An invocation never completed counts as `Info`.
pub fn ops(events: &[Event], workload: &str) -> Vec<Op> {
    let mut open: HashMap<u64, Op> = HashMap::new();
    let mut done = Vec::new();
    for e in events.iter().filter(|e| e.workload == workload) {
        match e.kind {
            EventType::Invoke => {
                open.insert(
                    e.op,
                    Op {
                        id: e.op,
                        process: e.process,
                        key: e.key.clone(),
                        f: e.f.clone(),
                        input: e.value.clone(),
                        output: Value::Null,
                        outcome: Outcome::Info,
                        invoke_us: e.time_us,
                        complete_us: u64::MAX,
                    },
                );
            }
            kind => {
                if let Some(mut op) = open.remove(&e.op) {
                    match kind {
                        EventType::Ok => {
                            op.outcome = Outcome::Ok;
                            op.output = e.value.clone();
                            op.complete_us = e.time_us;
                        }
                        EventType::Fail => {
                            op.outcome = Outcome::Fail;
                            op.complete_us = e.time_us;
                        }
                        _ => {}
                    }
                    done.push(op);
                }
            }
        }
    }
    done.extend(open.into_values());
    done.sort_by_key(|o| (o.invoke_us, o.id));
    done
}

/// Operations grouped by key (keys sorted), each group in invocation order.
pub fn by_key(ops: Vec<Op>) -> Vec<(String, Vec<Op>)> {
    let mut m: std::collections::BTreeMap<String, Vec<Op>> = Default::default();
    for o in ops {
        m.entry(o.key.clone()).or_default().push(o);
    }
    m.into_iter().collect()
}

/// Builds histories in tests: `b.op(process, f, key, input, start, end, outcome, output)`.
#[derive(Debug, Default)]
pub struct Builder {
    workload: String,
    events: Vec<Event>,
    next: u64,
}

impl Builder {
    /// A builder for one workload.
    pub fn new(workload: &str) -> Self {
        Self {
            workload: workload.into(),
            ..Default::default()
        }
    }

    /// Adds one operation invoked at `start` and completed at `end` (ignored for `Info`).
    #[allow(clippy::too_many_arguments)]
    pub fn op(
        &mut self,
        process: u64,
        f: &str,
        key: &str,
        input: Value,
        start: u64,
        end: u64,
        outcome: Outcome,
        output: Value,
    ) -> &mut Self {
        let id = self.next;
        self.next += 1;
        let ev = |kind, time_us, value| Event {
            op: id,
            process,
            kind,
            time_us,
            workload: self.workload.clone(),
            key: key.into(),
            f: f.into(),
            value,
            error: None,
        };
        let inv = ev(EventType::Invoke, start, input);
        let done = match outcome {
            Outcome::Ok => Some(ev(EventType::Ok, end, output)),
            Outcome::Fail => Some(ev(EventType::Fail, end, Value::Null)),
            Outcome::Info => Some(ev(EventType::Info, end, Value::Null)),
        };
        self.events.push(inv);
        self.events.extend(done);
        self
    }

    /// The events, sorted by time (invocations before completions at the same time).
    pub fn events(&self) -> Vec<Event> {
        let mut e = self.events.clone();
        e.sort_by_key(|e| (e.time_us, e.kind != EventType::Invoke));
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pairs_and_round_trips() {
        let mut b = Builder::new("register");
        b.op(1, "write", "a", json!(1), 0, 10, Outcome::Ok, json!(null));
        b.op(
            2,
            "read",
            "a",
            json!(null),
            5,
            20,
            Outcome::Info,
            json!(null),
        );
        let events = b.events();
        let dir = std::env::temp_dir().join(format!("chaos-hist-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("h.jsonl");
        write_jsonl(&path, &events).unwrap();
        assert_eq!(read_jsonl(&path).unwrap(), events);
        let ops = ops(&events, "register");
        assert_eq!(ops.len(), 2);
        assert_eq!(ops[0].outcome, Outcome::Ok);
        assert_eq!(ops[1].complete_us, u64::MAX);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
