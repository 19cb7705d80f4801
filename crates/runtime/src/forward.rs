//! Any node accepts any request: a node that does not lead the entity's partition forwards the
//! request to the node that does, over the node-to-node transport. The receiving node only ever
//! runs a forwarded request locally (it never forwards again), so a request cannot loop; if
//! leadership moved meanwhile, the caller gets `Unavailable` and retries.

use crate::actor::{EntityMsg, Reply, Work, WorkKind};
use crate::partition::{self, PartitionHandle};
use crate::{Error, SignalOutcome};
use perdure_cluster::transport::{Kind, RemoteError, Rpc, Service};
use perdure_cluster::Partitions;
use perdure_types::command::{Command, Op, OpResult};
use perdure_types::{EntityId, NodeId, PartitionId};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::{Arc, Weak};
use tokio::sync::oneshot;

/// A forwarded request. JSON values travel as text.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ForwardRequest {
    Signal {
        entity: EntityId,
        operation: String,
        input: Option<String>,
        key: Option<String>,
    },
    Call {
        entity: EntityId,
        operation: String,
        input: Option<String>,
    },
    Get {
        entity: EntityId,
    },
    Entities {
        partition: PartitionId,
        name: String,
        after: Option<String>,
        limit: u32,
    },
    /// Propose a command to `partition` on its leader (outbox delivery to another node).
    Propose {
        partition: PartitionId,
        command: Command,
    },
}

/// A forwarded request travels as [`Kind::Forward`].
impl Rpc for ForwardRequest {
    const KIND: Kind = Kind::Forward;
    type Reply = ForwardReply;
}

/// Its answer.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ForwardReply {
    Signal(SignalOutcome),
    Call(String),
    Get(Option<String>),
    Entities(Vec<(String, String)>),
    Proposed(Vec<OpResult>),
    /// `kind`: 0 unavailable, 1 operation failed, 2 bad request.
    Error {
        kind: u8,
        message: String,
    },
}

fn to_json(v: Option<&Value>) -> Option<String> {
    v.map(Value::to_string)
}

fn from_json(s: Option<&str>) -> Result<Option<Value>, Error> {
    s.map(serde_json::from_str)
        .transpose()
        .map_err(|e| Error::Unavailable(format!("undecodable forwarded JSON: {e}")))
}

/// What runs on this node, never forwarded.
pub(crate) struct Local {
    pub partitions: Arc<Partitions>,
    pub handles: Arc<Vec<PartitionHandle>>,
}

impl Local {
    /// Whether this node's entity runtime runs partition `p` now.
    pub fn serves(&self, p: PartitionId) -> bool {
        self.handles
            .get(p as usize)
            .is_some_and(|h| h.processor().is_some())
    }

    pub async fn run(
        &self,
        entity: EntityId,
        kind: WorkKind,
        operation: &str,
        input: Option<Value>,
    ) -> Result<Reply, Error> {
        let p = self.partitions.partition_of(&entity);
        // this node won leadership and its entity runtime is starting (read barrier): wait
        let since = std::time::Instant::now();
        while !self.serves(p)
            && self.partitions.is_leader(p)
            && since.elapsed() < crate::LEADER_WAIT
        {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let (tx, rx) = oneshot::channel();
        let work = Work {
            kind,
            operation: operation.to_string(),
            input,
            reply: Some(tx),
        };
        partition::route(&self.handles, p, entity, EntityMsg::Work(work))?;
        rx.await.map_err(|_| {
            Error::Unavailable("the entity was deactivated before answering; retry".into())
        })?
    }

    pub async fn get(&self, entity: &EntityId) -> Result<Option<Value>, Error> {
        let p = self.partitions.partition_of(entity);
        let state = if crate::chaos_bug::stale_reads() {
            self.partitions.local_state(p)? // the injected bug (chaos_bug.rs): no barrier
        } else {
            self.partitions.read(p).await?
        };
        match state
            .state(entity)
            .map_err(|e| Error::Unavailable(e.to_string()))?
        {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                Error::Unavailable(format!("{entity}: stored state is not JSON: {e}"))
            }),
        }
    }

    pub async fn entities(
        &self,
        p: PartitionId,
        name: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Value)>, Error> {
        let state = self.partitions.read(p).await?;
        let got = state
            .entities(name, after, limit)
            .map_err(|e| Error::Unavailable(e.to_string()))?;
        Ok(got
            .into_iter()
            .map(|(k, bytes)| (k, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
            .collect())
    }

    /// Proposes `command` to partition `p`, which this node must lead, then wakes the entities
    /// it delivered inbox messages to.
    async fn propose_here(&self, p: PartitionId, command: Command) -> Result<Vec<OpResult>, Error> {
        if !self.serves(p) {
            return Err(Error::Unavailable(format!(
                "partition {p} is not led by this node"
            )));
        }
        let targets: Vec<EntityId> = command
            .ops
            .iter()
            .filter_map(|op| match op {
                Op::Receive { entity, .. } => Some(entity.clone()),
                _ => None,
            })
            .collect();
        let results = self.handles[p as usize].proposer.propose(command).await?;
        partition::wake_inboxes(&self.handles, p, targets);
        Ok(results)
    }

    async fn serve(&self, req: ForwardRequest) -> Result<ForwardReply, Error> {
        Ok(match req {
            ForwardRequest::Signal {
                entity,
                operation,
                input,
                key,
            } => {
                let input = from_json(input.as_deref())?;
                match self
                    .run(
                        entity,
                        WorkKind::Signal {
                            idempotency_key: key,
                        },
                        &operation,
                        input,
                    )
                    .await?
                {
                    Reply::Signal(o) => ForwardReply::Signal(o),
                    Reply::Call(_) => ForwardReply::Signal(SignalOutcome::Accepted),
                }
            }
            ForwardRequest::Call {
                entity,
                operation,
                input,
            } => {
                let input = from_json(input.as_deref())?;
                match self.run(entity, WorkKind::Call, &operation, input).await? {
                    Reply::Call(v) => ForwardReply::Call(v.to_string()),
                    Reply::Signal(_) => ForwardReply::Call("null".into()),
                }
            }
            ForwardRequest::Propose { partition, command } => {
                ForwardReply::Proposed(self.propose_here(partition, command).await?)
            }
            ForwardRequest::Get { entity } => {
                ForwardReply::Get(self.get(&entity).await?.map(|v| v.to_string()))
            }
            ForwardRequest::Entities {
                partition,
                name,
                after,
                limit,
            } => ForwardReply::Entities(
                self.entities(partition, &name, after.as_deref(), limit as usize)
                    .await?
                    .into_iter()
                    .map(|(k, v)| (k, v.to_string()))
                    .collect(),
            ),
        })
    }
}

/// Serves forwarded requests from peers. It holds the runtime weakly: the partitions hold the
/// table of services, and the runtime holds the partitions; once the runtime is gone, requests
/// are answered unavailable.
pub(crate) struct ForwardService(pub Weak<Local>);

impl Service for ForwardService {
    type Request = ForwardRequest;

    async fn call(&self, _from: NodeId, req: ForwardRequest) -> Result<ForwardReply, RemoteError> {
        let served = match self.0.upgrade() {
            Some(local) => local.serve(req).await,
            None => Err(Error::Unavailable(
                "this node's entity runtime has stopped".into(),
            )),
        };
        Ok(served.unwrap_or_else(|e| ForwardReply::Error {
            kind: match e.status_hint() {
                crate::error::StatusHint::Unavailable => 0,
                crate::error::StatusHint::OperationFailed => 1,
                crate::error::StatusHint::BadRequest => 2,
            },
            message: e.to_string(),
        }))
    }
}

/// Proposes `command` to partition `p` wherever its leader is: here, or forwarded to the
/// leader, which wakes the receiving entities itself.
pub(crate) async fn propose_at(
    local: &Local,
    p: PartitionId,
    command: Command,
) -> Result<Vec<OpResult>, Error> {
    if local.serves(p) {
        return local.propose_here(p, command).await;
    }
    let leader = match local.partitions.leader(p) {
        Some(l) if l != local.partitions.node_id() => l,
        _ => {
            return Err(Error::Unavailable(format!(
                "partition {p} has no reachable leader"
            )))
        }
    };
    let req = ForwardRequest::Propose {
        partition: p,
        command,
    };
    match forward(&local.partitions, leader, req).await? {
        ForwardReply::Proposed(results) => Ok(results),
        other => Err(unexpected(other)),
    }
}

/// A reply of the wrong kind (a peer running another version, or a bug): never taken as success.
pub(crate) fn unexpected(reply: ForwardReply) -> Error {
    Error::Unavailable(format!(
        "unexpected answer to a forwarded request: {reply:?}"
    ))
}

/// Sends a request to `leader` and returns its reply (errors mapped back).
pub(crate) async fn forward(
    partitions: &Partitions,
    leader: NodeId,
    req: ForwardRequest,
) -> Result<ForwardReply, Error> {
    let reply: ForwardReply = partitions
        .peers()
        .rpc(leader, &req, None)
        .await
        .map_err(|e| Error::Unavailable(format!("forwarding to node {leader}: {e}")))?;
    match reply {
        ForwardReply::Error { kind: 1, message } => Err(Error::Operation(message)),
        ForwardReply::Error { kind: 2, message } => Err(Error::BadInput {
            entity_type: String::new(),
            operation: String::new(),
            reason: message,
        }),
        ForwardReply::Error { message, .. } => Err(Error::Unavailable(message)),
        ok => Ok(ok),
    }
}

pub(crate) fn signal_request(
    entity: EntityId,
    operation: &str,
    input: Option<&Value>,
    key: Option<String>,
) -> ForwardRequest {
    ForwardRequest::Signal {
        entity,
        operation: operation.to_string(),
        input: to_json(input),
        key,
    }
}

pub(crate) fn call_request(
    entity: EntityId,
    operation: &str,
    input: Option<&Value>,
) -> ForwardRequest {
    ForwardRequest::Call {
        entity,
        operation: operation.to_string(),
        input: to_json(input),
    }
}

pub(crate) fn parse(s: &str) -> Result<Value, Error> {
    serde_json::from_str(s)
        .map_err(|e| Error::Unavailable(format!("undecodable forwarded JSON: {e}")))
}
