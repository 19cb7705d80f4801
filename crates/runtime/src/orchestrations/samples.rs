//! The sample orchestrations the standard binary ships behind `[samples] enabled = true`: the
//! six patterns of Durable Functions' overview (README "Orchestrations"), under the names the
//! benchmarks and outside checks use.
//!
//! - `HelloSequence` (function chaining): `SayHello` with "Tokyo", "Seattle", "London" in turn;
//!   output `["Hello Tokyo!", "Hello Seattle!", "Hello London!"]`.
//! - `HelloSequence5`: the same with five cities (the benchmarks' HelloSequence5).
//! - `FanOutFanIn`: input N; N `GetNumber` activities in parallel, activity i returns i; output
//!   their sum, N(N-1)/2.
//! - `Monitor`: input `{"counter": KEY, "target": N, "interval_ms": I, "expiry_ms": E}`; reads
//!   entity `counter/KEY` every I ms on a durable timer until it reaches N (`"reached"`) or E ms
//!   passed (`"expired"`).
//! - `Approval` (human interaction): input `{"timeout_ms": T}`; external event `Approval` (a JSON
//!   boolean) raced against a durable timer of T ms; `"approved"`, `"rejected"`, or
//!   `"escalated"` when the timer wins (the losing timer is cancelled).
//! - `CounterAggregation` (aggregator): input `{"key": K, "adds": N}`; signals `counter/K` with
//!   `add 1` N times, then calls its `get` and returns the value.
//! - The async HTTP API pattern is the HTTP API itself: start any of them, get `202`, poll
//!   `Location` until `200`.

use super::model::{
    when_all, when_any, ActivityContext, ActivityError, OrchestrationContext, OrchestrationError,
    OrchestrationRegistry,
};
use perdure_types::config::SamplesConfig;
use perdure_types::EntityId;
use serde::Deserialize;
use serde_json::{json, Value};

/// The samples' registry when `[samples] enabled`, else an empty one.
pub fn registry_for(config: &SamplesConfig) -> OrchestrationRegistry {
    if config.enabled {
        register(OrchestrationRegistry::default())
    } else {
        OrchestrationRegistry::default()
    }
}

/// Adds the samples and their activities to `reg`.
pub fn register(reg: OrchestrationRegistry) -> OrchestrationRegistry {
    reg.orchestrator("HelloSequence", |ctx| {
        sequence(ctx, &["Tokyo", "Seattle", "London"])
    })
    .orchestrator("HelloSequence5", |ctx| {
        sequence(ctx, &["Tokyo", "Seattle", "London", "Paris", "Cairo"])
    })
    .orchestrator("FanOutFanIn", fan_out_fan_in)
    .orchestrator("Monitor", monitor)
    .orchestrator("Approval", approval)
    .orchestrator("CounterAggregation", counter_aggregation)
    .activity("SayHello", say_hello)
    .activity("GetNumber", get_number)
}

async fn sequence(
    ctx: OrchestrationContext,
    cities: &'static [&'static str],
) -> Result<Value, OrchestrationError> {
    let mut out = Vec::with_capacity(cities.len());
    for city in cities {
        out.push(ctx.call_activity("SayHello", city).await?);
    }
    Ok(json!(out))
}

async fn say_hello(_ctx: ActivityContext, input: Value) -> Result<Value, ActivityError> {
    let name = input
        .as_str()
        .ok_or_else(|| ActivityError::non_retriable("BadInput", "SayHello takes a string"))?;
    Ok(json!(format!("Hello {name}!")))
}

async fn get_number(_ctx: ActivityContext, input: Value) -> Result<Value, ActivityError> {
    Ok(input)
}

async fn fan_out_fan_in(ctx: OrchestrationContext) -> Result<Value, OrchestrationError> {
    let n: u64 = ctx.input()?;
    let tasks = (0..n).map(|i| ctx.call_activity("GetNumber", i)).collect();
    let mut sum: u64 = 0;
    for r in when_all(tasks).await {
        sum += r?.as_u64().unwrap_or(0);
    }
    Ok(json!(sum))
}

#[derive(Deserialize)]
struct MonitorInput {
    counter: String,
    target: i64,
    interval_ms: u64,
    expiry_ms: u64,
}

async fn monitor(ctx: OrchestrationContext) -> Result<Value, OrchestrationError> {
    let input: MonitorInput = ctx.input()?;
    let counter = EntityId::new("counter", &input.counter)
        .map_err(|e| OrchestrationError::new("BadInput", e.to_string()))?;
    let expiry = ctx.current_time() + input.expiry_ms;
    loop {
        let v = ctx.call_entity(&counter, "get", Value::Null).await?;
        if v.as_i64().unwrap_or(0) >= input.target {
            return Ok(json!("reached"));
        }
        if ctx.current_time() + input.interval_ms > expiry {
            return Ok(json!("expired"));
        }
        ctx.sleep(input.interval_ms).await?;
    }
}

#[derive(Deserialize)]
struct ApprovalInput {
    timeout_ms: u64,
}

async fn approval(ctx: OrchestrationContext) -> Result<Value, OrchestrationError> {
    let input: ApprovalInput = ctx.input()?;
    let timer = ctx.create_timer(ctx.current_time() + input.timeout_ms);
    let event = ctx.wait_for_external_event("Approval");
    let (winner, result) = when_any(vec![event, timer.clone()]).await;
    if winner == 1 {
        return Ok(json!("escalated"));
    }
    ctx.cancel_timer(&timer);
    Ok(json!(if result?.as_bool().unwrap_or(false) {
        "approved"
    } else {
        "rejected"
    }))
}

#[derive(Deserialize)]
struct AggregationInput {
    key: String,
    adds: u64,
}

async fn counter_aggregation(ctx: OrchestrationContext) -> Result<Value, OrchestrationError> {
    let input: AggregationInput = ctx.input()?;
    let counter = EntityId::new("counter", &input.key)
        .map_err(|e| OrchestrationError::new("BadInput", e.to_string()))?;
    for _ in 0..input.adds {
        ctx.signal_entity(&counter, "add", 1)?;
    }
    Ok(ctx.call_entity(&counter, "get", Value::Null).await?)
}
