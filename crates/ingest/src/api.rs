//! [`Ingest`]: the facade the HTTP API, the CLI and the config file use to manage subscriptions
//! and read their progress, and the peer request ([`Kind::Ingest`]) that asks home partitions'
//! leaders for their consumers, checkpoints and dead letters.

use crate::status::ConsumerStatus;
use crate::workload::IngestWorkload;
use perdure_cluster::transport::{Kind, Rpc};
use perdure_runtime::host::{serve_weak, Route, Router};
use perdure_runtime::Entities;
use perdure_types::subscription::{
    check_name, CheckpointState, DeadLetter, Subscription, SubscriptionChange, SubscriptionError,
    SubscriptionSpec, Subscriptions,
};
use perdure_types::{EntityId, Failure, NodeId, PartitionId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Why a subscription request failed. The edge maps it to a status.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The definition or name is invalid (the message names the field).
    #[error("{0}")]
    Invalid(String),
    /// No such subscription.
    #[error("no subscription named {0:?}")]
    NotFound(String),
    /// The cluster holds its maximum of subscriptions.
    #[error("{0}")]
    TooMany(String),
    /// The cluster could not take or answer it now: retry.
    #[error("{0}")]
    Unavailable(String),
}

impl From<SubscriptionError> for IngestError {
    fn from(e: SubscriptionError) -> Self {
        match e {
            SubscriptionError::Invalid { .. } => Self::Invalid(e.to_string()),
            SubscriptionError::NotFound(n) => Self::NotFound(n),
            SubscriptionError::TooMany => Self::TooMany(e.to_string()),
        }
    }
}

/// One source partition of a subscription, as its home partition reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionReport {
    /// The source partition.
    pub source_partition: u32,
    /// Its home partition.
    pub home_partition: PartitionId,
    /// The checkpoint as committed (absent before the first).
    pub checkpoint: Option<CheckpointState>,
    /// The consumer running it (absent when none runs: paused, the source unreachable, no
    /// leader).
    pub consumer: Option<ConsumerStatus>,
}

/// A subscription with its progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionStatus {
    /// The subscription as the cluster holds it.
    pub subscription: Subscription,
    /// Records applied (operations run, failed ones included), by committed checkpoints.
    pub applied: u64,
    /// Of those, records whose operation failed.
    pub failed: u64,
    /// Records dead-lettered.
    pub dead_lettered: u64,
    /// Records the source holds past the checkpoints (as the running consumers last saw).
    pub lag: u64,
    /// Per source partition.
    pub partitions: Vec<PartitionReport>,
    /// The last error reaching the source, if any.
    pub error: Option<String>,
}

/// Requests for the leaders of home partitions.
#[derive(Debug, Serialize, Deserialize)]
enum IngestRequest {
    /// What these partitions (led by the receiver) hold for subscription `name` (generation).
    Status {
        partitions: Vec<PartitionId>,
        name: String,
        generation: u64,
    },
    /// The dead letters these partitions hold for `name`, at most `limit` each.
    DeadLetters {
        partitions: Vec<PartitionId>,
        name: String,
        generation: u64,
        limit: u32,
    },
    /// The consumers running on the receiver.
    Consumers,
}

#[derive(Debug, Serialize, Deserialize)]
enum IngestReply {
    /// JSON of `Vec<PartitionReport>` (the statuses hold `Option`s, which the codec keeps, but
    /// JSON keeps a peer of another version readable).
    Status(String),
    /// JSON of `Vec<DeadLetter>`.
    DeadLetters(String),
    /// JSON of `Vec<ConsumerStatus>`.
    Consumers(String),
}

impl Rpc for IngestRequest {
    const KIND: Kind = Kind::Ingest;
    type Reply = Result<IngestReply, Failure>;
}

/// The stream-ingestion facade of one node.
pub struct Ingest {
    router: Arc<Router>,
    entities: Arc<Entities>,
    workload: Arc<IngestWorkload>,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest").finish_non_exhaustive()
    }
}

/// The partition's leader node, if known.
async fn leader_of(router: &Router, p: PartitionId) -> Option<Option<NodeId>> {
    match router.route(p).await {
        Ok(Route::Local(_)) => Some(None),
        Ok(Route::Remote(n)) => Some(Some(n)),
        Err(_) => None,
    }
}

impl Ingest {
    /// The facade; serves the ingestion peer requests while it lives (call it before the
    /// partitions serve peers), and hands `workload` the entity facade.
    pub fn new(
        router: Arc<Router>,
        entities: Arc<Entities>,
        workload: Arc<IngestWorkload>,
    ) -> Result<Arc<Self>, perdure_runtime::Error> {
        workload.set_entities(entities.clone());
        let me = Arc::new(Self {
            router,
            entities,
            workload,
        });
        serve_weak(
            me.router.partitions(),
            &me,
            |me, req: IngestRequest| async move { me.serve(req).await },
        )?;
        Ok(me)
    }

    /// The workload (the consumers running on this node).
    pub fn workload(&self) -> &Arc<IngestWorkload> {
        &self.workload
    }

    fn unavailable(e: impl std::fmt::Display) -> IngestError {
        IngestError::Unavailable(e.to_string())
    }

    /// Every subscription (this node's copy of the cluster's).
    pub fn list(&self) -> Result<Vec<Subscription>, IngestError> {
        Ok(self.subscriptions()?.by_name.into_values().collect())
    }

    fn subscriptions(&self) -> Result<Subscriptions, IngestError> {
        self.router
            .partitions()
            .subscriptions()
            .map_err(Self::unavailable)
    }

    /// Creates or replaces subscription `name`: checked first (the name, every field, and that
    /// the entity type runs here in Rust with the operation); answers it as stored and whether
    /// it was created.
    pub async fn put(
        &self,
        name: &str,
        spec: SubscriptionSpec,
    ) -> Result<(Subscription, bool), IngestError> {
        check_name(name)?;
        spec.validate()?;
        let probe = EntityId::new(&spec.mapping.entity, "probe")
            .map_err(|e| IngestError::Invalid(format!("mapping.entity: {e}")))?;
        let registry = self.entities.registry();
        match registry.get(probe.name()).ok() {
            None => {
                return Err(IngestError::Invalid(format!(
                    "mapping.entity: no entity type {:?} runs on this node in Rust (stream records feed Rust entity types only)",
                    spec.mapping.entity
                )))
            }
            Some(t) => {
                if !t.operations().contains(&spec.mapping.operation.as_str()) {
                    return Err(IngestError::Invalid(format!(
                        "mapping.operation: entity type {:?} has no operation {:?} (it has {:?})",
                        spec.mapping.entity,
                        spec.mapping.operation,
                        t.operations()
                    )));
                }
            }
        }
        let existed = self.subscriptions()?.by_name.contains_key(name);
        let subs = self
            .change(SubscriptionChange::Put {
                name: name.to_string(),
                spec: Box::new(spec),
            })
            .await?;
        let s = subs.by_name.get(name).cloned().ok_or_else(|| {
            IngestError::Unavailable("the subscription was not kept; retry".into())
        })?;
        Ok((s, !existed))
    }

    /// Deletes subscription `name` (its consumers stop; its checkpoints are forgotten soon).
    pub async fn delete(&self, name: &str) -> Result<(), IngestError> {
        self.change(SubscriptionChange::Delete {
            name: name.to_string(),
        })
        .await
        .map(|_| ())
    }

    /// Pauses (or resumes) subscription `name`.
    pub async fn pause(&self, name: &str, paused: bool) -> Result<Subscription, IngestError> {
        let subs = self
            .change(SubscriptionChange::Pause {
                name: name.to_string(),
                paused,
            })
            .await?;
        subs.by_name
            .get(name)
            .cloned()
            .ok_or_else(|| IngestError::NotFound(name.to_string()))
    }

    /// Applies `change` on the metadata leader, then waits (up to 2 s) until this node's copy
    /// shows it, so a read here right after sees it.
    async fn change(&self, change: SubscriptionChange) -> Result<Subscriptions, IngestError> {
        let current = self.subscriptions()?;
        // refused here before anything is proposed, with the error's kind intact
        current.apply(&change, 0)?;
        let partitions = self.router.partitions();
        let subs = partitions
            .change_subscriptions(change)
            .await
            .map_err(|e| match e {
                perdure_cluster::membership::MetaError::Refused(m) => {
                    if m.starts_with("no subscription named") {
                        IngestError::NotFound(m)
                    } else {
                        IngestError::Invalid(m)
                    }
                }
                other => IngestError::Unavailable(other.to_string()),
            })?;
        for _ in 0..200 {
            if self.subscriptions()?.version >= subs.version {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(subs)
    }

    /// Subscription `name` with its progress, gathered from the leaders of its home
    /// partitions.
    pub async fn status(&self, name: &str) -> Result<SubscriptionStatus, IngestError> {
        let subscription = self
            .subscriptions()?
            .by_name
            .remove(name)
            .ok_or_else(|| IngestError::NotFound(name.to_string()))?;
        let mut partitions: Vec<PartitionReport> = Vec::new();
        for (leader, ps) in self.by_leader().await {
            let req = IngestRequest::Status {
                partitions: ps,
                name: name.to_string(),
                generation: subscription.generation,
            };
            if let Ok(IngestReply::Status(json)) = self.ask(leader, req).await {
                partitions.extend(
                    serde_json::from_str::<Vec<PartitionReport>>(&json).unwrap_or_default(),
                );
            }
        }
        partitions.sort_by_key(|r| r.source_partition);
        let sum = |f: fn(&CheckpointState) -> u64| {
            partitions
                .iter()
                .filter_map(|r| r.checkpoint.as_ref())
                .map(f)
                .sum::<u64>()
        };
        let (applied, failed, dead_lettered) = (
            sum(|c| c.applied),
            sum(|c| c.failed),
            sum(|c| c.dead_lettered),
        );
        let lag = partitions
            .iter()
            .filter_map(|r| r.consumer.as_ref())
            .map(|c| c.lag)
            .sum();
        let error = self
            .workload
            .shared
            .source_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
            .or_else(|| {
                partitions
                    .iter()
                    .filter_map(|r| r.consumer.as_ref()?.error.clone())
                    .next()
            });
        Ok(SubscriptionStatus {
            subscription,
            applied,
            failed,
            dead_lettered,
            lag,
            partitions,
            error,
        })
    }

    /// The dead letters of subscription `name` (at most `limit` per source partition), by
    /// source partition and position.
    pub async fn dead_letters(
        &self,
        name: &str,
        limit: u32,
    ) -> Result<Vec<DeadLetter>, IngestError> {
        let subscription = self
            .subscriptions()?
            .by_name
            .remove(name)
            .ok_or_else(|| IngestError::NotFound(name.to_string()))?;
        let mut out = Vec::new();
        for (leader, ps) in self.by_leader().await {
            let req = IngestRequest::DeadLetters {
                partitions: ps,
                name: name.to_string(),
                generation: subscription.generation,
                limit,
            };
            if let Ok(IngestReply::DeadLetters(json)) = self.ask(leader, req).await {
                out.extend(serde_json::from_str::<Vec<DeadLetter>>(&json).unwrap_or_default());
            }
        }
        out.sort_by_key(|d| (d.partition, d.position));
        Ok(out)
    }

    /// Every consumer running in the cluster (asked of every node that leads a partition).
    pub async fn consumers(&self) -> Vec<ConsumerStatus> {
        let mut out = Vec::new();
        for (leader, _) in self.by_leader().await {
            if let Ok(IngestReply::Consumers(json)) =
                self.ask(leader, IngestRequest::Consumers).await
            {
                out.extend(serde_json::from_str::<Vec<ConsumerStatus>>(&json).unwrap_or_default());
            }
        }
        out.sort_by(|a, b| {
            (a.subscription.as_str(), a.source_partition)
                .cmp(&(b.subscription.as_str(), b.source_partition))
        });
        out
    }

    /// The partitions by the node leading them (`None`: this node); partitions without a
    /// known leader are left out.
    async fn by_leader(&self) -> BTreeMap<Option<NodeId>, Vec<PartitionId>> {
        let mut m: BTreeMap<Option<NodeId>, Vec<PartitionId>> = BTreeMap::new();
        for p in 0..self.router.partitions().count() {
            if let Some(l) = leader_of(&self.router, p).await {
                m.entry(l).or_default().push(p);
            }
        }
        m
    }

    async fn ask(
        &self,
        leader: Option<NodeId>,
        req: IngestRequest,
    ) -> Result<IngestReply, perdure_runtime::Error> {
        match leader {
            None => self.serve(req).await,
            Some(n) => {
                self.router
                    .forward(n, &req, Some(Duration::from_secs(5)))
                    .await
            }
        }
    }

    async fn serve(&self, req: IngestRequest) -> Result<IngestReply, perdure_runtime::Error> {
        let board = &self.workload.shared.board;
        match req {
            IngestRequest::Consumers => Ok(IngestReply::Consumers(
                serde_json::to_string(&board.all()).unwrap_or_default(),
            )),
            IngestRequest::Status {
                partitions,
                name,
                generation,
            } => {
                let mut out = Vec::new();
                for p in partitions {
                    let Some(leader) = self.router.local(p) else {
                        continue;
                    };
                    let prefix = format!("{name}#{generation}:");
                    let kept = leader
                        .read(move |st| st.ingest().checkpoints(&prefix, 100_000))
                        .await?;
                    let mut consumers: BTreeMap<u32, ConsumerStatus> = board
                        .of(p, Some(&name))
                        .into_iter()
                        .filter(|c| c.generation == generation)
                        .map(|c| (c.source_partition, c))
                        .collect();
                    for (key, cp) in kept {
                        let Some((_, _, s)) = perdure_types::subscription::parse_source_key(&key)
                        else {
                            continue;
                        };
                        out.push(PartitionReport {
                            source_partition: s,
                            home_partition: p,
                            checkpoint: Some(cp),
                            consumer: consumers.remove(&s),
                        });
                    }
                    for (s, c) in consumers {
                        out.push(PartitionReport {
                            source_partition: s,
                            home_partition: p,
                            checkpoint: None,
                            consumer: Some(c),
                        });
                    }
                }
                Ok(IngestReply::Status(
                    serde_json::to_string(&out).unwrap_or_default(),
                ))
            }
            IngestRequest::DeadLetters {
                partitions,
                name,
                generation,
                limit,
            } => {
                let mut out = Vec::new();
                for p in partitions {
                    let Some(leader) = self.router.local(p) else {
                        continue;
                    };
                    let prefix = format!("{name}#{generation}:");
                    let got = leader
                        .read(move |st| {
                            let mut out = Vec::new();
                            for (key, _) in st.ingest().checkpoints(&prefix, 100_000)? {
                                out.extend(st.ingest().dead_letters(&key, 0, limit as usize)?);
                            }
                            Ok(out)
                        })
                        .await?;
                    out.extend(got);
                }
                Ok(IngestReply::DeadLetters(
                    serde_json::to_string(&out).unwrap_or_default(),
                ))
            }
        }
    }
}
