//! The entity workload: durable entities on the partition host.
//!
//! [`Entities`] is the facade the HTTP API (and later gRPC) calls: signal, call, read, list.
//! Behind it, on each partition this node leads, a processor actor (`processor.rs`) owns that
//! partition's entity actors (`actor.rs`): one per active entity id, activated on its first
//! message, passivated when idle, running one operation at a time. An entity actor runs the
//! operations waiting for it in order, each on the state the previous one left, then proposes
//! their combined effects (state, idempotency keys, signals) through the host, which batches
//! commands of many entities into one Raft entry. Callers are answered only after that entry
//! commits.
//!
//! Signals between entities travel through the sender partition's durable outbox and the
//! receiver's inbox (the host delivers them exactly once and in order); scheduled signals are
//! durable timers that fire into the same path. Orchestrations' critical sections lock entities
//! through the same path (`actor.rs`: lock requests, releases, the messages that wait).
//!
//! Module arrows: `mod` (facade) → `local`, `forward`, `list` → `workload` → `processor` →
//! `actor` → `msg`, `shared`, `entity`, `registry`.

mod actor;
mod api;
pub mod builtin;
pub mod entity;
mod forward;
mod ingest;
mod list;
mod local;
mod metrics;
mod msg;
mod processor;
mod registry;
mod remote;
mod shared;
pub mod testing;
mod workload;

pub use api::{EntityPage, EntitySummary, SignalOutcome, SignalRequest};
pub use ingest::{IngestRecord, RecordOutcome};
pub use list::MAX_PAGE;
pub use metrics::{EntityMetrics, Passivation};
pub use registry::Registry;
pub use workload::EntityWorkload;

use crate::host::{within, Route, Router};
use crate::Error;
use forward::{EntityReply, EntityRequest};
use local::Local;
use msg::WorkKind;
use perdure_cluster::Partitions;
use perdure_types::{EntityId, PartitionId};
use serde_json::Value;
use std::sync::Arc;

/// The entity facade of one node: routes each request to its partition's leader (here, or
/// forwarded) and runs it there.
pub struct Entities {
    local: Arc<Local>,
}

impl std::fmt::Debug for Entities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entities")
            .field("registry", self.registry())
            .finish_non_exhaustive()
    }
}

impl Entities {
    /// The facade over `workload`, hosted behind `router`; serves forwarded requests from peers
    /// while it lives (added before the partitions serve peers).
    pub fn new(router: Arc<Router>, workload: Arc<EntityWorkload>) -> Result<Self, Error> {
        let local = Arc::new(Local { router, workload });
        forward::register(&local)?;
        Ok(Self { local })
    }

    /// The entity types.
    pub fn registry(&self) -> &Registry {
        self.local.workload.registry()
    }

    /// The workload (counters, active actors).
    pub fn workload(&self) -> &Arc<EntityWorkload> {
        &self.local.workload
    }

    fn partitions(&self) -> &Arc<Partitions> {
        self.local.router.partitions()
    }

    fn router(&self) -> &Router {
        &self.local.router
    }

    async fn forward(
        &self,
        leader: perdure_types::NodeId,
        req: EntityRequest,
    ) -> Result<EntityReply, Error> {
        // past the request's own deadline, so that deadline answers first (a write then has an
        // unknown outcome, as it may still take effect there); the transport's shorter timeout
        // would call it unavailable, which says a retry is safe
        let wait = self.deadline() + std::time::Duration::from_secs(1);
        self.router().forward(leader, &req, Some(wait)).await
    }

    /// Signals an entity to run no earlier than `due` (milliseconds since the epoch): durable
    /// (a timer of the entity's partition, with the idempotency key remembered in the same
    /// command) once this returns; the operation runs when the timer fires (within a second of
    /// `due`). A `due` already past is an ordinary signal.
    pub async fn signal_at(
        &self,
        req: SignalRequest,
        due: perdure_types::command::Millis,
    ) -> Result<SignalOutcome, Error> {
        let now = crate::host::now_ms();
        if due <= now {
            return self.signal(req).await;
        }
        self.check(&req.entity, &req.operation, req.input.as_ref())?;
        let p = self.partitions().partition_of(&req.entity);
        let target = perdure_types::Target::Entity(req.entity.clone());
        let mut ops = Vec::with_capacity(2);
        if let Some(id) = req.idempotency_key {
            let window = self.workload().config().idempotency_window_ms;
            ops.push(perdure_types::command::Op::RememberId {
                target: target.clone(),
                id,
                // remembered until well after the signal ran
                expires_at: due.max(now) + window,
            });
        }
        ops.push(perdure_types::command::Op::ScheduleTimer {
            due,
            target,
            message: perdure_types::message::Message::entity_operation(
                req.operation,
                req.input.as_ref(),
            )
            .encode(),
        });
        let command = perdure_types::command::Command {
            ops,
            fence_term: None,
        };
        let results = within(
            self.deadline(),
            p,
            true,
            self.router().propose_at(p, command),
        )
        .await?;
        Ok(
            if results.contains(&perdure_types::command::OpResult::Duplicate) {
                SignalOutcome::Duplicate
            } else {
                SignalOutcome::Accepted
            },
        )
    }

    /// Checks that `entity`'s type has `operation` and takes `input`, before anything is
    /// written (a type served by remote workers: the worker decides).
    fn check(
        &self,
        entity: &EntityId,
        operation: &str,
        input: Option<&Value>,
    ) -> Result<(), Error> {
        if self.workload().remote_type(entity.name()) {
            return Ok(());
        }
        self.registry().check(entity, operation, input).map(|_| ())
    }

    /// Longest a request waits for its partition (see [`crate::host::within`]).
    fn deadline(&self) -> std::time::Duration {
        self.workload().request_timeout()
    }

    /// Signals an entity; returns once the signal is durable (and applied, unless an
    /// orchestration's critical section holds the entity: then it waits in the entity's inbox
    /// for the release), or [`Error::DeadlineExceeded`] (outcome unknown) past
    /// `entities.request_timeout_ms`.
    pub async fn signal(&self, req: SignalRequest) -> Result<SignalOutcome, Error> {
        self.check(&req.entity, &req.operation, req.input.as_ref())?;
        let span = tracing::debug_span!("signal", entity = %req.entity, op = %req.operation);
        let p = self.partitions().partition_of(&req.entity);
        let signal = tracing::Instrument::instrument(self.signal_checked(p, req), span);
        within(self.deadline(), p, true, signal).await
    }

    async fn signal_checked(
        &self,
        p: PartitionId,
        req: SignalRequest,
    ) -> Result<SignalOutcome, Error> {
        match self.router().route(p).await? {
            Route::Local(_) => {
                let kind = WorkKind::Signal {
                    idempotency_key: req.idempotency_key,
                };
                let reply = self
                    .local
                    .run(p, req.entity, kind, &req.operation, req.input)
                    .await?;
                Ok(reply.signal_outcome())
            }
            Route::Remote(leader) => {
                let fwd = EntityRequest::Signal {
                    entity: req.entity,
                    operation: req.operation,
                    input: forward::to_json(req.input.as_ref()),
                    key: req.idempotency_key,
                };
                match self.forward(leader, fwd).await? {
                    EntityReply::Signal(o) => Ok(o),
                    other => Err(forward::unexpected(other)),
                }
            }
        }
    }

    /// Applies stream records bound for partition `p` (of source partition `source`, in
    /// position order) on `p`'s leader, here or forwarded: one outcome per record, in order,
    /// once all committed. An error leaves some outcomes unknown: send the records again
    /// (records applied before answer `Duplicate`). See `ingest.rs`.
    pub async fn ingest(
        &self,
        p: PartitionId,
        source: &str,
        records: Vec<IngestRecord>,
    ) -> Result<Vec<RecordOutcome>, Error> {
        let run = async {
            match self.router().route(p).await? {
                Route::Local(_) => self.local.ingest(p, source, records).await,
                Route::Remote(leader) => {
                    let fwd = EntityRequest::Ingest {
                        partition: p,
                        source: source.to_string(),
                        records: records
                            .into_iter()
                            .map(|r| {
                                (
                                    r.entity,
                                    r.operation,
                                    forward::to_json(r.input.as_ref()),
                                    r.position,
                                )
                            })
                            .collect(),
                    };
                    match self.forward(leader, fwd).await? {
                        EntityReply::Ingest(o) => Ok(o),
                        other => Err(forward::unexpected(other)),
                    }
                }
            }
        };
        within(self.deadline(), p, true, run).await
    }

    /// Checks, before anything is written, that `entity`'s type is one with Rust code on this
    /// node, has `operation` and takes `input` (stream ingestion maps records with it; types
    /// served by remote workers are refused).
    pub fn validate(
        &self,
        entity: &EntityId,
        operation: &str,
        input: Option<&Value>,
    ) -> Result<(), Error> {
        self.registry().check(entity, operation, input).map(|_| ())
    }

    /// Signals many entities; one result per request, in order.
    pub async fn signal_batch(
        &self,
        reqs: Vec<SignalRequest>,
    ) -> Vec<Result<SignalOutcome, Error>> {
        futures::future::join_all(reqs.into_iter().map(|r| self.signal(r))).await
    }

    /// Runs an operation and returns its result once committed, or
    /// [`Error::DeadlineExceeded`] (outcome unknown) past `entities.request_timeout_ms` (also
    /// while an orchestration's critical section holds the entity: the call waits for the
    /// release, and does not run if its caller gave up by then).
    pub async fn call(
        &self,
        entity: EntityId,
        operation: &str,
        input: Option<Value>,
    ) -> Result<Value, Error> {
        self.check(&entity, operation, input.as_ref())?;
        let span = tracing::debug_span!("call", entity = %entity, op = %operation);
        let p = self.partitions().partition_of(&entity);
        let call =
            tracing::Instrument::instrument(self.call_checked(p, entity, operation, input), span);
        within(self.deadline(), p, true, call).await
    }

    async fn call_checked(
        &self,
        p: PartitionId,
        entity: EntityId,
        operation: &str,
        input: Option<Value>,
    ) -> Result<Value, Error> {
        match self.router().route(p).await? {
            Route::Local(_) => Ok(self
                .local
                .run(p, entity, WorkKind::Call, operation, input)
                .await?
                .call_value()),
            Route::Remote(leader) => {
                let fwd = EntityRequest::Call {
                    entity,
                    operation: operation.to_string(),
                    input: forward::to_json(input.as_ref()),
                };
                match self.forward(leader, fwd).await? {
                    EntityReply::Call(v) => forward::parse(&v),
                    other => Err(forward::unexpected(other)),
                }
            }
        }
    }

    /// The committed state of an entity (linearizable: one read barrier), `None` if it does
    /// not exist; [`Error::DeadlineExceeded`] past `entities.request_timeout_ms`.
    pub async fn get(&self, entity: &EntityId) -> Result<Option<Value>, Error> {
        if !self.workload().remote_type(entity.name()) {
            self.registry().get(entity.name())?;
        }
        let p = self.partitions().partition_of(entity);
        within(self.deadline(), p, false, self.get_checked(p, entity)).await
    }

    async fn get_checked(&self, p: PartitionId, entity: &EntityId) -> Result<Option<Value>, Error> {
        if crate::chaos_bug::stale_reads() {
            return self.local.get(p, entity).await; // the injected bug: no forwarding, no barrier
        }
        match self.partitions().read(p).await {
            Ok(state) => local::read_entity(state, entity).await,
            Err(perdure_cluster::Error::NotLeader {
                leader: Some(l), ..
            }) if l != self.partitions().node_id() => {
                let fwd = EntityRequest::Get {
                    entity: entity.clone(),
                };
                match self.forward(l, fwd).await? {
                    EntityReply::Get(v) => v.as_deref().map(forward::parse).transpose(),
                    other => Err(forward::unexpected(other)),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// One partition's entities of type `t`, locally or from the partition's leader.
    /// The critical sections holding entities of partition `p` (at most `limit`): each
    /// entity (`@name@key`) and its holder.
    pub async fn locks(
        &self,
        p: PartitionId,
        limit: usize,
    ) -> Result<Vec<(String, perdure_types::command::LockHolder)>, Error> {
        let here = within(self.deadline(), p, false, self.local.locks(p, limit)).await;
        match here {
            Err(Error::NoLeader { .. } | Error::Unavailable(_)) => {
                match self.partitions().leader(p) {
                    Some(l) if l != self.partitions().node_id() => {
                        let fwd = EntityRequest::Locks {
                            partition: p,
                            limit: limit as u32,
                        };
                        match self.forward(l, fwd).await? {
                            EntityReply::Locks(v) => Ok(v),
                            other => Err(forward::unexpected(other)),
                        }
                    }
                    leader => Err(Error::NoLeader {
                        partition: p,
                        leader,
                    }),
                }
            }
            other => other,
        }
    }

    /// Releases `entity` from critical section `holder` (one whose orchestration is gone: a
    /// release like the orchestration's own, through the entity's partition; a section that no
    /// longer holds the entity is left alone by the entity).
    pub async fn release_lock(
        &self,
        entity: &EntityId,
        holder: &perdure_types::command::LockHolder,
    ) -> Result<(), Error> {
        let p = self.partitions().partition_of(entity);
        let target = perdure_types::Target::Entity(entity.clone());
        let message = perdure_types::message::Message::EntityUnlock {
            critical_section_id: holder.critical_section_id.clone(),
            holder: holder.instance.clone(),
            forward: Vec::new(),
        };
        let command = perdure_types::command::Command {
            ops: vec![perdure_types::command::Op::Send {
                dest: p,
                target,
                message: message.encode(),
            }],
            fence_term: None,
        };
        within(
            self.deadline(),
            p,
            true,
            self.router().propose_at(p, command),
        )
        .await?;
        Ok(())
    }

    /// How many partitions the cluster has.
    pub fn partition_count(&self) -> u32 {
        self.partitions().count()
    }

    async fn partition_entities(
        &self,
        p: PartitionId,
        t: &str,
        after: Option<&str>,
        want: usize,
    ) -> Result<Vec<(String, Value)>, Error> {
        match self.local.entities(p, t, after, want).await {
            Err(Error::NoLeader { .. } | Error::Unavailable(_)) => {
                match self.partitions().leader(p) {
                    Some(l) if l != self.partitions().node_id() => {
                        let fwd = EntityRequest::Entities {
                            partition: p,
                            name: t.to_string(),
                            after: after.map(str::to_string),
                            limit: want as u32,
                        };
                        match self.forward(l, fwd).await? {
                            EntityReply::Entities(v) => v
                                .into_iter()
                                .map(|(k, s)| Ok((k, forward::parse(&s)?)))
                                .collect(),
                            other => Err(forward::unexpected(other)),
                        }
                    }
                    leader => Err(Error::NoLeader {
                        partition: p,
                        leader,
                    }),
                }
            }
            other => other,
        }
    }

    /// A page of entities of type `name`, at most `limit` (capped at [`MAX_PAGE`]), after
    /// `continuation` (from the previous page).
    pub async fn list(
        &self,
        name: &str,
        continuation: Option<&str>,
        limit: usize,
    ) -> Result<EntityPage, Error> {
        let t: String = if self.workload().remote_type(name) {
            name.to_ascii_lowercase()
        } else {
            self.registry().get(name)?.name().to_string()
        };
        let t = t.as_str();
        let limit = limit.clamp(1, MAX_PAGE);
        let (mut p, mut after) = list::parse_continuation(t, continuation)?;
        let mut entities = Vec::new();
        while p < self.partitions().count() {
            let want = limit - entities.len();
            let page = self.partition_entities(p, t, after.as_deref(), want);
            let got = within(self.deadline(), p, false, page).await?;
            let full = got.len() == want;
            for (key, state) in got {
                entities.push(EntitySummary { key, state });
            }
            if full {
                let last = entities.last().map(|e| e.key.clone()).unwrap_or_default();
                return Ok(EntityPage {
                    entities,
                    continuation: Some(list::continuation(p, &last)),
                });
            }
            p += 1;
            after = None;
        }
        Ok(EntityPage {
            entities,
            continuation: None,
        })
    }
}
