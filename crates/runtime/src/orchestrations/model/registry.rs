//! The orchestrators and activities a node runs, by name (case-insensitive), and what an
//! activity sees ([`ActivityContext`]).

use super::context::OrchestrationContext;
use super::error::{ActivityError, OrchestrationError};
use super::executor::Executor;
use futures::future::BoxFuture;
use perdure_types::orchestration::TaskId;
use perdure_types::InstanceId;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

/// An orchestrator function, boxed.
pub type OrchestratorFn = Arc<
    dyn Fn(OrchestrationContext) -> BoxFuture<'static, Result<Value, OrchestrationError>>
        + Send
        + Sync,
>;

/// An activity function, boxed.
pub type ActivityFn = Arc<
    dyn Fn(ActivityContext, Value) -> BoxFuture<'static, Result<Value, ActivityError>>
        + Send
        + Sync,
>;

/// What an activity sees: which orchestration task it runs for, and which attempt this is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityContext {
    instance_id: InstanceId,
    task_id: TaskId,
    name: String,
    attempt: u32,
}

impl ActivityContext {
    /// The context of attempt `attempt` (from 1) of task `task_id` of `instance_id`, running
    /// activity `name`.
    pub fn new(instance_id: InstanceId, task_id: TaskId, name: String, attempt: u32) -> Self {
        Self {
            instance_id,
            task_id,
            name,
            attempt,
        }
    }

    /// The orchestration instance that scheduled it.
    pub fn instance_id(&self) -> &InstanceId {
        &self.instance_id
    }

    /// Its task id in that instance's execution.
    pub fn task_id(&self) -> TaskId {
        self.task_id
    }

    /// The activity's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Which delivery of this task this is, from 1 (activities run at least once: a crash
    /// before the result was recorded runs the task again).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }
}

/// A name no orchestrator or activity is registered under.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// No orchestrator has this name.
    #[error("unknown orchestrator {name:?}; known orchestrators: {known}")]
    UnknownOrchestrator {
        /// The name asked for.
        name: String,
        /// The registered names, comma-separated.
        known: String,
    },
    /// No activity has this name.
    #[error("unknown activity {name:?}; known activities: {known}")]
    UnknownActivity {
        /// The name asked for.
        name: String,
        /// The registered names, comma-separated.
        known: String,
    },
}

/// Registered functions by lower-cased name, with the name as registered.
type Table<F> = BTreeMap<String, (String, F)>;

/// The orchestrators and activities a node runs.
///
/// ```
/// use perdure_runtime::orchestrations::model::{
///     ActivityContext, OrchestrationContext, OrchestrationRegistry,
/// };
/// use serde_json::{json, Value};
///
/// let reg = OrchestrationRegistry::new()
///     .orchestrator("Greet", |ctx: OrchestrationContext| async move {
///         let name: String = ctx.input()?;
///         Ok(ctx.call_activity("SayHello", name).await?)
///     })
///     .activity("SayHello", |_ctx: ActivityContext, input: Value| async move {
///         Ok(json!(format!("Hello {}!", input.as_str().unwrap_or_default())))
///     });
/// assert!(reg.get_orchestrator("greet").is_ok());
/// assert!(reg.get_activity("SayBye").is_err());
/// ```
#[derive(Clone, Default)]
pub struct OrchestrationRegistry {
    orchestrators: Table<OrchestratorFn>,
    activities: Table<ActivityFn>,
}

impl fmt::Debug for OrchestrationRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OrchestrationRegistry")
            .field("orchestrators", &self.orchestrator_names())
            .field("activities", &self.activity_names())
            .finish()
    }
}

impl OrchestrationRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an orchestrator (replacing one of the same name, compared case-insensitively).
    pub fn orchestrator<F, Fut>(mut self, name: &str, f: F) -> Self
    where
        F: Fn(OrchestrationContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, OrchestrationError>> + Send + 'static,
    {
        let boxed: OrchestratorFn = Arc::new(move |ctx| Box::pin(f(ctx)));
        self.orchestrators
            .insert(name.to_lowercase(), (name.to_string(), boxed));
        self
    }

    /// Adds an activity (replacing one of the same name, compared case-insensitively).
    pub fn activity<F, Fut>(mut self, name: &str, f: F) -> Self
    where
        F: Fn(ActivityContext, Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, ActivityError>> + Send + 'static,
    {
        let boxed: ActivityFn = Arc::new(move |ctx, input| Box::pin(f(ctx, input)));
        self.activities
            .insert(name.to_lowercase(), (name.to_string(), boxed));
        self
    }

    /// The orchestrator named `name` (case-insensitive).
    pub fn get_orchestrator(&self, name: &str) -> Result<&OrchestratorFn, RegistryError> {
        self.orchestrators
            .get(&name.to_lowercase())
            .map(|(_, f)| f)
            .ok_or_else(|| RegistryError::UnknownOrchestrator {
                name: name.to_string(),
                known: self.orchestrator_names().join(", "),
            })
    }

    /// The activity named `name` (case-insensitive).
    pub fn get_activity(&self, name: &str) -> Result<&ActivityFn, RegistryError> {
        self.activities
            .get(&name.to_lowercase())
            .map(|(_, f)| f)
            .ok_or_else(|| RegistryError::UnknownActivity {
                name: name.to_string(),
                known: self.activity_names().join(", "),
            })
    }

    /// An executor for a new or replayed execution of orchestrator `name`.
    pub fn executor(
        &self,
        name: &str,
        instance_id: InstanceId,
        execution_id: String,
    ) -> Result<Executor, RegistryError> {
        let f = self.get_orchestrator(name)?;
        Ok(Executor::new(f.clone(), instance_id, execution_id))
    }

    /// The orchestrators' names, as registered.
    pub fn orchestrator_names(&self) -> Vec<&str> {
        self.orchestrators
            .values()
            .map(|(n, _)| n.as_str())
            .collect()
    }

    /// The activities' names, as registered.
    pub fn activity_names(&self) -> Vec<&str> {
        self.activities.values().map(|(n, _)| n.as_str()).collect()
    }
}
