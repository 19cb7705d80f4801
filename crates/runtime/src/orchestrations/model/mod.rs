//! The in-process Rust programming model of orchestrations, and its replay engine.
//!
//! An **orchestrator** is an async function over an [`OrchestrationContext`]; an **activity** is
//! an async function over an [`ActivityContext`] and a JSON input. Both are registered by name in
//! an [`OrchestrationRegistry`]. The runtime drives each execution with an [`Executor`]: it feeds
//! the execution's history events and gets back the decisions ([`Action`]s) of each turn.
//!
//! ```
//! use perdure_runtime::orchestrations::model::{
//!     when_all, ActivityContext, OrchestrationContext, OrchestrationRegistry,
//! };
//! use serde_json::{json, Value};
//!
//! let reg = OrchestrationRegistry::new()
//!     .orchestrator("HelloSequence", |ctx: OrchestrationContext| async move {
//!         let mut out = vec![];
//!         for city in ["Tokyo", "Seattle", "London"] {
//!             out.push(ctx.call_activity("SayHello", city).await?);
//!         }
//!         Ok(json!(out))
//!     })
//!     .orchestrator("FanOut", |ctx: OrchestrationContext| async move {
//!         let n: u64 = ctx.input()?;
//!         let tasks = (0..n).map(|i| ctx.call_activity("Square", i)).collect();
//!         let mut sum = 0;
//!         for r in when_all(tasks).await {
//!             sum += r?.as_u64().unwrap_or(0);
//!         }
//!         Ok(json!(sum))
//!     })
//!     .activity("SayHello", |_ctx: ActivityContext, input: Value| async move {
//!         Ok(json!(format!("Hello {}!", input.as_str().unwrap_or_default())))
//!     })
//!     .activity("Square", |_ctx: ActivityContext, input: Value| async move {
//!         let i: u64 = serde_json::from_value(input)?;
//!         Ok(json!(i * i))
//!     });
//! assert_eq!(reg.orchestrator_names(), ["FanOut", "HelloSequence"]);
//! ```
//!
//! # Rules for orchestrator code
//!
//! Orchestrator code is replayed from the history after a restart, so it must make the same
//! decisions every time:
//! - **Await only the context's futures**: [`Task`]s, [`when_all`], [`when_any`] and `async`
//!   code built from them. The executor polls with a no-op waker and polls again only when a
//!   history event resolved a task: any other future (tokio's sleep, a channel, I/O,
//!   `futures::join_all`, which relies on wakers past 30 futures) would never be polled again.
//! - **No nondeterminism**: take the time from [`OrchestrationContext::current_time`], GUIDs
//!   from [`OrchestrationContext::new_guid`]; no system clock, random numbers, environment,
//!   global state or I/O. Work with effects belongs in activities.
//! - A task of a cancelled timer never completes; do not await it.
//!
//! # Replay contract
//!
//! Every decision takes the next task id of the execution, from 0 (`CancelTimer` takes none: it
//! names the timer's). The history records a decision as an event whose `event_id` is that task
//! id (`TaskScheduled`, `TimerCreated`, ...; the completion as `ExecutionCompleted`). On replay
//! the executor matches each such event with the decision the code made with the same task id;
//! a different decision there fails the execution with `NonDeterminism`, naming the step. See
//! [`Executor`] for the events it reads.
//!
//! [`Action`]: perdure_types::orchestration::Action

mod context;
mod determinism;
mod error;
mod executor;
mod guid;
mod mailbox;
mod payload;
mod registry;
mod retry;
mod state;
mod task;

#[cfg(test)]
mod tests;

pub use context::OrchestrationContext;
pub use error::{ActivityError, OrchestrationError, TaskError};
pub use executor::Executor;
pub use registry::{
    ActivityContext, ActivityFn, OrchestrationRegistry, OrchestratorFn, RegistryError,
};
pub use retry::RetryPolicy;
pub use task::{when_all, when_any, Task, WhenAll, WhenAny};
