//! Remote workers: orchestrators and activities with no Rust function on the node, run by
//! processes that connect to a node (the Durable Task gRPC protocol's workers, `perdure-grpc`).
//!
//! Entity types with no Rust type on the node are served the same way: the entity's actor (still
//! the one place its operations run, one batch at a time) hands a batch of operations and the
//! current state to a worker and commits the state, results and actions it returns as the
//! batch's one command (`entities/actor.rs`).
//!
//! The instance task stays the one place a turn is planned and committed (`instance.rs`,
//! `turn.rs`); what changes is who computes it. For an orchestrator name the registry does not
//! know, the live orchestrator is a `Driver` without an executor: each turn it
//! hands the committed history and the new events to the queue of the node leading the
//! partition (`queue.rs`) and waits for the worker's decisions; an activity name the registry
//! does not know is queued there too, and its result goes back to the instance like an
//! in-process activity's. Work is leased, never given away: a lease ends with its completion,
//! an abandon, its worker's session ending or going silent, or its timeout, and whatever was not
//! completed is queued again. A completion token names the lease (node, number, salt): a token
//! that was never issued, or whose lease ended, completes nothing.
//!
//! Workers connect to any node (`session.rs`): a session there fetches from the queue of every
//! node of the cluster (its own directly, the others' through `Kind::Orchestration` requests),
//! within the concurrency the worker declared, and routes completions to the node that issued
//! the token. Leases live in memory only: a leader change drops them with the instance tasks
//! that wait for them, and the new leader dispatches the stored work again (activity work items
//! are durable rows of their instance; a turn is recomputed from the history).

pub mod queue;
pub(crate) mod session;

use perdure_types::orchestration::{FailureDetails, HistoryEvent, TaskId, TurnOutput};
use perdure_types::{EntityId, InstanceId, NodeId};
use serde::{Deserialize, Serialize};
use std::time::Duration;

pub use session::{WorkerInfo, WorkerSession};

/// How remote work is served (set by the node when its gRPC listener is on).
#[derive(Debug, Clone)]
pub struct RemoteConfig {
    /// How long a worker may hold a work item before it is dispatched again (a worker that
    /// never completes; a worker whose stream ends gives its work back at once).
    pub lease: Duration,
    /// Largest work item (an orchestrator's whole history, inline) a worker receives: a turn
    /// whose history is larger fails the instance (`HistoryTooLarge`) instead of stalling the
    /// worker at its message limit.
    pub max_work_item_bytes: u64,
}

impl Default for RemoteConfig {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(300),
            max_work_item_bytes: 4 << 20,
        }
    }
}

/// A name (and versions) a worker takes (Durable Task's `WorkItemFilters` entries).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameFilter {
    /// The orchestrator's or activity's name.
    pub name: String,
    /// The versions taken; empty: any version.
    pub versions: Vec<String>,
}

impl NameFilter {
    fn accepts(&self, name: &str, version: Option<&str>) -> bool {
        self.name == name
            && (self.versions.is_empty()
                || self.versions.iter().any(|v| v == version.unwrap_or("")))
    }
}

/// Which work a worker takes. A kind with no entries gets nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkFilter {
    /// Orchestrators.
    pub orchestrations: Vec<NameFilter>,
    /// Activities.
    pub activities: Vec<NameFilter>,
    /// Entity names (lower case).
    pub entities: Vec<String>,
}

impl WorkFilter {
    /// Whether `work` passes.
    pub fn accepts(&self, work: &RemoteWork) -> bool {
        match work {
            RemoteWork::Orchestrator(o) => self
                .orchestrations
                .iter()
                .any(|f| f.accepts(&o.name, o.version.as_deref())),
            RemoteWork::Activity(a) => self
                .activities
                .iter()
                .any(|f| f.accepts(&a.name, a.version.as_deref())),
            RemoteWork::Entity(e) => {
                let name = e.entity.name();
                self.entities.iter().any(|n| n.eq_ignore_ascii_case(name))
            }
        }
    }
}

/// What a worker declared when it connected.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    /// Most orchestrator work items it holds at once.
    pub max_orchestrators: u32,
    /// Most activity work items it holds at once.
    pub max_activities: u32,
    /// What it takes (`None`: everything).
    pub filter: Option<WorkFilter>,
    /// Who it is, for the dashboard (its address).
    pub peer: String,
}

/// The kinds of work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WorkKind {
    /// A turn of an orchestrator.
    Orchestrator,
    /// An activity.
    Activity,
    /// A batch of an entity's operations.
    Entity,
}

impl WorkKind {
    /// Every kind.
    pub const ALL: [WorkKind; 3] = [WorkKind::Orchestrator, WorkKind::Activity, WorkKind::Entity];

    /// Its label in metrics.
    pub fn label(self) -> &'static str {
        match self {
            WorkKind::Orchestrator => "orchestrator",
            WorkKind::Activity => "activity",
            WorkKind::Entity => "entity",
        }
    }
}

/// A turn of an orchestrator to compute: Durable Task's `OrchestratorRequest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrchestratorWork {
    /// The instance.
    pub instance_id: InstanceId,
    /// Its execution.
    pub execution_id: String,
    /// The orchestrator's name.
    pub name: String,
    /// Its version, if the start named one.
    pub version: Option<String>,
    /// The history committed so far (replayed by the worker).
    pub past: Vec<HistoryEvent>,
    /// The turn's new events: `OrchestratorStarted` (the turn's time) first.
    pub new: Vec<HistoryEvent>,
}

/// An activity to run: Durable Task's `ActivityRequest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityWork {
    /// The instance that scheduled it.
    pub instance_id: InstanceId,
    /// Its execution.
    pub execution_id: String,
    /// The activity's name.
    pub name: String,
    /// Its version (none in perdure's histories).
    pub version: Option<String>,
    /// Its input (JSON text).
    pub input: Option<String>,
    /// The task id that scheduled it.
    pub task_id: TaskId,
}

/// One operation of an entity batch: Durable Task's `OperationRequest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityOperation {
    /// The operation's name.
    pub operation: String,
    /// The request's id.
    pub request_id: String,
    /// Its input (JSON text).
    pub input: Option<String>,
}

/// A batch of operations of one entity: Durable Task's `EntityBatchRequest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityWork {
    /// The entity.
    pub entity: EntityId,
    /// Its state before the batch (JSON text), `None` when it has none.
    pub state: Option<String>,
    /// The operations, in the order they run.
    pub operations: Vec<EntityOperation>,
}

/// Something a successful entity operation asked for: Durable Task's `OperationAction`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntityAction {
    /// Signal an entity.
    Signal {
        /// The entity, `@name@key`.
        target: String,
        /// The operation.
        operation: String,
        /// Its input (JSON text).
        input: Option<String>,
        /// Not before this time.
        scheduled_time: Option<perdure_types::command::Millis>,
    },
    /// Start an orchestration.
    StartOrchestration {
        /// Its instance id.
        instance_id: String,
        /// The orchestrator's name.
        name: String,
        /// Its version.
        version: Option<String>,
        /// Its input (JSON text).
        input: Option<String>,
        /// Not before this time.
        scheduled_time: Option<perdure_types::command::Millis>,
    },
}

/// A worker's answer to an entity batch: Durable Task's `EntityBatchResult`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct EntityBatchOutcome {
    /// One per operation, in order: its result (JSON text) or failure (a failed operation's
    /// changes were rolled back by the worker).
    pub results: Vec<Result<Option<String>, FailureDetails>>,
    /// The state after the batch (JSON text), `None`: the entity has no state any more.
    pub state: Option<String>,
    /// What the successful operations asked for, in order.
    pub actions: Vec<EntityAction>,
}

/// Work for a remote worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RemoteWork {
    /// A turn of an orchestrator.
    Orchestrator(OrchestratorWork),
    /// An activity.
    Activity(ActivityWork),
    /// A batch of an entity's operations.
    Entity(EntityWork),
}

impl RemoteWork {
    /// Its kind.
    pub fn kind(&self) -> WorkKind {
        match self {
            RemoteWork::Orchestrator(_) => WorkKind::Orchestrator,
            RemoteWork::Activity(_) => WorkKind::Activity,
            RemoteWork::Entity(_) => WorkKind::Entity,
        }
    }

    /// The instance it is for (`None` for an entity batch).
    pub fn instance_id(&self) -> Option<&InstanceId> {
        match self {
            RemoteWork::Orchestrator(o) => Some(&o.instance_id),
            RemoteWork::Activity(a) => Some(&a.instance_id),
            RemoteWork::Entity(_) => None,
        }
    }

    /// Who it is for, for logs: the instance or the entity.
    pub fn subject(&self) -> String {
        match self {
            RemoteWork::Orchestrator(o) => o.instance_id.to_string(),
            RemoteWork::Activity(a) => a.instance_id.to_string(),
            RemoteWork::Entity(e) => e.entity.canonical(),
        }
    }
}

/// Work handed to a worker, with the token that completes or abandons it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dispatched {
    /// The completion token (unique per dispatch).
    pub token: String,
    /// The work.
    pub work: RemoteWork,
}

/// A worker's answer to a work item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// An orchestrator's decisions for the turn (every decision the history does not record
    /// yet) and its custom status.
    Orchestrator(TurnOutput),
    /// An activity's result (JSON text) or failure.
    Activity(Result<Option<String>, FailureDetails>),
    /// An entity batch's results, state and actions.
    Entity(EntityBatchOutcome),
}

impl Outcome {
    /// The kind of work it answers.
    pub fn kind(&self) -> WorkKind {
        match self {
            Outcome::Orchestrator(_) => WorkKind::Orchestrator,
            Outcome::Activity(_) => WorkKind::Activity,
            Outcome::Entity(_) => WorkKind::Entity,
        }
    }
}

/// A session of a worker on a node: which node and which session there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SessionKey {
    /// The node the worker is connected to.
    pub node: NodeId,
    /// The session's number there.
    pub id: u64,
}

/// A completion token: the node that issued it, the lease's number there, and a salt (a token
/// nobody was given does not complete a lease by guessing its number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Token {
    pub node: NodeId,
    pub lease: u64,
    pub salt: u32,
}

impl Token {
    pub fn parse(s: &str) -> Option<Self> {
        let mut it = s.split('.');
        let node = it.next()?.parse().ok()?;
        let lease = it.next()?.parse().ok()?;
        let salt = u32::from_str_radix(it.next()?, 16).ok()?;
        if it.next().is_some() {
            return None;
        }
        Some(Self { node, lease, salt })
    }
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{:08x}", self.node, self.lease, self.salt)
    }
}

/// Counters of remote work on this node (work items it issued), by kind.
#[derive(Debug, Default)]
pub struct RemoteStats {
    counters: [[std::sync::atomic::AtomicU64; 4]; 3],
    /// Workers connected to this node now.
    pub workers: std::sync::atomic::AtomicU64,
}

/// What happened to a work item, for [`RemoteStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkEvent {
    /// Handed to a worker (first time).
    Dispatched,
    /// Completed by its worker.
    Completed,
    /// Given back by its worker.
    Abandoned,
    /// Handed out again (after an abandon, a lost session or an expired lease).
    Redispatched,
}

impl WorkEvent {
    /// Every event, in [`RemoteStats::get`]'s order.
    pub const ALL: [WorkEvent; 4] = [
        WorkEvent::Dispatched,
        WorkEvent::Completed,
        WorkEvent::Abandoned,
        WorkEvent::Redispatched,
    ];

    /// Its label in metrics.
    pub fn label(self) -> &'static str {
        match self {
            WorkEvent::Dispatched => "dispatched",
            WorkEvent::Completed => "completed",
            WorkEvent::Abandoned => "abandoned",
            WorkEvent::Redispatched => "redispatched",
        }
    }
}

impl RemoteStats {
    pub(crate) fn inc(&self, kind: WorkKind, e: WorkEvent) {
        self.counters[kind as usize][e as usize].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// How many work items of `kind` had event `e` on this node.
    pub fn get(&self, kind: WorkKind, e: WorkEvent) -> u64 {
        self.counters[kind as usize][e as usize].load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        let t = Token {
            node: 3,
            lease: 42,
            salt: 0xdead_beef,
        };
        assert_eq!(Token::parse(&t.to_string()), Some(t));
        for bad in [
            "",
            "3",
            "3.42",
            "3.42.zz",
            "x.42.00",
            "3.42.00.1",
            "3.-1.00",
        ] {
            assert_eq!(Token::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn filters_match_names_and_versions() {
        let f = WorkFilter {
            orchestrations: vec![NameFilter {
                name: "Hello".into(),
                versions: vec![],
            }],
            activities: vec![NameFilter {
                name: "say".into(),
                versions: vec!["2".into()],
            }],
            entities: vec![],
        };
        let orch = |name: &str| {
            RemoteWork::Orchestrator(OrchestratorWork {
                instance_id: InstanceId::new("i").unwrap(),
                execution_id: "e".into(),
                name: name.into(),
                version: Some("9".into()),
                past: vec![],
                new: vec![],
            })
        };
        let act = |version: Option<&str>| {
            RemoteWork::Activity(ActivityWork {
                instance_id: InstanceId::new("i").unwrap(),
                execution_id: "e".into(),
                name: "say".into(),
                version: version.map(String::from),
                input: None,
                task_id: 1,
            })
        };
        assert!(f.accepts(&orch("Hello")));
        assert!(!f.accepts(&orch("Other")));
        assert!(f.accepts(&act(Some("2"))));
        assert!(!f.accepts(&act(None)));
        assert!(!WorkFilter::default().accepts(&orch("Hello")));
    }
}
