//! Entity types for tests and fault runs, compiled into every node but registered only when
//! `entities.test_types = true`.
//!
//! - `relay`: `send {to, amount}` signals `counter/{to}` to add `amount` (across partitions when
//!   the keys land elsewhere); `later {to, ms}` signals it to add 1 after `ms` milliseconds. Its
//!   state counts the signals it sent.
//! - `probe`: `visit` records entering and leaving in a process-wide table and counts an overlap
//!   if another operation on the same entity is running; its state is the number of visits, and it
//!   answers `{"visits": n, "overlaps": total overlaps seen by this process, "seq": n,
//!   "start_us": .., "end_us": .., "pid": ..}`: `seq` is the visit's per-entity sequence number
//!   (the count it leaves), `start_us`/`end_us` the wall-clock microseconds (Unix epoch) at which
//!   the operation entered and left, `pid` the node's process id (so the chaos harness can tell
//!   which node's clock a time comes from).

use super::entity::{Context, EntityType, OperationError};
use perdure_types::EntityId;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

/// The `relay` test type.
#[derive(Debug, Default)]
pub struct Relay;

impl EntityType for Relay {
    fn name(&self) -> &'static str {
        "relay"
    }
    fn operations(&self) -> &'static [&'static str] {
        &["send", "later"]
    }
    fn validate(&self, _op: &str, input: Option<&Value>) -> Result<(), OperationError> {
        match input.and_then(|i| i["to"].as_str()) {
            Some(to) => EntityId::new("counter", to)
                .map(|_| ())
                .map_err(|e| OperationError::BadInput(e.to_string())),
            None => Err(OperationError::BadInput("takes {\"to\": KEY, ...}".into())),
        }
    }
    fn execute(&self, ctx: &mut Context<'_>) -> Result<Option<Value>, OperationError> {
        let input: Value = ctx.input_as()?;
        let to = input["to"].as_str().unwrap_or_default();
        let target =
            EntityId::new("counter", to).map_err(|e| OperationError::BadInput(e.to_string()))?;
        if ctx.operation() == "send" {
            let amount = input.get("amount").cloned().unwrap_or(json!(1));
            ctx.signal(target, "add", Some(amount));
        } else {
            let at = ctx.now() + input["ms"].as_u64().unwrap_or(0);
            ctx.signal_at(target, "add", Some(json!(1)), at);
        }
        let sent: u64 = ctx.state_or_default()?;
        ctx.set_state(&(sent + 1))?;
        Ok(None)
    }
}

fn running() -> &'static Mutex<HashSet<String>> {
    static R: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    R.get_or_init(Default::default)
}

static OVERLAPS: AtomicU64 = AtomicU64::new(0);

/// Overlapping operations seen by `probe` in this process.
pub fn probe_overlaps() -> u64 {
    OVERLAPS.load(Ordering::SeqCst)
}

/// Microseconds since the Unix epoch on this node's wall clock (0 if it is before 1970).
fn wall_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The `probe` test type.
#[derive(Debug, Default)]
pub struct Probe;

impl EntityType for Probe {
    fn name(&self) -> &'static str {
        "probe"
    }
    fn operations(&self) -> &'static [&'static str] {
        &["visit"]
    }
    fn execute(&self, ctx: &mut Context<'_>) -> Result<Option<Value>, OperationError> {
        let start_us = wall_micros();
        let key = ctx.entity().to_string();
        if !running()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.clone())
        {
            OVERLAPS.fetch_add(1, Ordering::SeqCst);
        }
        // stay inside long enough for an overlap to be seen if one were possible
        std::thread::sleep(std::time::Duration::from_micros(200));
        let n: u64 = ctx.state_or_default()?;
        ctx.set_state(&(n + 1))?;
        running()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
        Ok(Some(json!({
            "visits": n + 1,
            "overlaps": probe_overlaps(),
            "seq": n + 1,
            "start_us": start_us,
            "end_us": wall_micros(),
            "pid": std::process::id(),
        })))
    }
}
