//! Orchestrations: durable, replayable workflows (Durable Functions' orchestrator functions) on
//! the partition host. [`model`] is how they are written in Rust and how their code is replayed
//! against a history: the orchestrator and activity functions, their contexts, the registry, and
//! the [`model::Executor`] that turns history events into decisions (the runtime that stores
//! histories and runs turns is built on top of it).

pub mod model;
