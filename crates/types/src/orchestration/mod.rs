//! The orchestration vocabulary shared by storage, the runtime and (next) the gRPC interface:
//! history events ([`history`]), an instance's status record ([`status`]) and the decisions an
//! orchestrator makes in one turn ([`action`]).
//!
//! The shapes follow the Durable Task protocol's `HistoryEvent` and `OrchestratorAction`
//! messages field for field where they overlap, so the gRPC interface maps them one to one and
//! the in-process Rust orchestrators and remote workers share one turn path. JSON payloads
//! (inputs, outputs, event data) travel as JSON text: bincode cannot carry `serde_json::Value`.

pub mod action;
pub mod history;
pub mod status;

pub use action::{Action, TurnOutput};
pub use history::{EventKind, FailureDetails, HistoryEvent, ParentInstance};
pub use status::{InstanceRecord, ReusePolicy, RuntimeStatus};

/// A task id inside one execution: the sequence number of the action that scheduled it
/// (Durable Task's `eventId` of `TaskScheduled`, `TimerCreated`, ...), from 0.
pub type TaskId = i32;
