//! Stream subscriptions: what a cluster consumes from Kafka or NATS JetStream and how each record
//! becomes an entity operation.
//!
//! Subscriptions are cluster state: the metadata group holds every one of them as one value,
//! [`Subscriptions`], under a reserved entity id, encoded as JSON (so a field added later reads
//! back old values). Changes ([`SubscriptionChange`]) are pure functions here; the metadata
//! leader applies them, fenced to its term, like membership changes.
//!
//! Positions: every record of a source partition has a position, increasing from 1 (a Kafka
//! offset plus one; a JetStream stream sequence). A checkpoint `c` means every record at or
//! below `c` was applied; 0 means none.

mod spec;

pub use spec::*;

use crate::ids::EntityId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A subscription as the cluster holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    /// Its name.
    pub name: String,
    /// Its definition.
    pub spec: SubscriptionSpec,
    /// Paused: no consumer runs; the source keeps the records (lag grows).
    pub paused: bool,
    /// Changes when the source changes (created, or another stream or topic): positions and
    /// per-entity marks belong to one generation, so a new source starts from its beginning.
    pub generation: u64,
    /// Bumped by every change (a consumer restarts, at a checkpoint, when it moves).
    pub version: u64,
    /// When it was created (ms since the epoch).
    pub created_at_ms: u64,
    /// When it last changed.
    pub updated_at_ms: u64,
}

impl Subscription {
    /// The source id of source partition `partition` in this generation: what checkpoints and
    /// per-entity marks are kept under.
    pub fn source_key(&self, partition: u32) -> String {
        source_key(&self.name, self.generation, partition)
    }
}

/// `NAME#GENERATION:PARTITION`.
pub fn source_key(name: &str, generation: u64, partition: u32) -> String {
    format!("{name}#{generation}:{partition}")
}

/// The home partition of source partition `partition` of subscription `name`: its consumer
/// runs on this partition's leader. A pinned hash (the entities' key→partition function over
/// `NAME/PARTITION`), the same on every node and across restarts.
pub fn home_partition(name: &str, partition: u32, partitions: u32) -> crate::PartitionId {
    crate::partition::partition_of_canonical(&format!("{name}/{partition}"), partitions)
}

/// Splits a source key into subscription name, generation and partition.
pub fn parse_source_key(key: &str) -> Option<(&str, u64, u32)> {
    let (name, rest) = key.rsplit_once('#')?;
    let (g, p) = rest.split_once(':')?;
    Some((name, g.parse().ok()?, p.parse().ok()?))
}

/// A change of the subscriptions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SubscriptionChange {
    /// Create or replace one.
    Put {
        /// Its name.
        name: String,
        /// Its definition (validated again by the apply).
        spec: Box<SubscriptionSpec>,
    },
    /// Remove one.
    Delete {
        /// Its name.
        name: String,
    },
    /// Pause (`true`) or resume (`false`) one.
    Pause {
        /// Its name.
        name: String,
        /// Paused or not.
        paused: bool,
    },
}

/// Every subscription of the cluster: the metadata group's value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscriptions {
    /// By name.
    pub by_name: BTreeMap<String, Subscription>,
    /// The next generation handed out (never reused, so a recreated subscription starts anew).
    pub next_generation: u64,
    /// Bumped by every change.
    pub version: u64,
}

impl Subscriptions {
    /// The reserved entity under which the metadata group stores them.
    pub fn entity() -> EntityId {
        EntityId::new("perdure.cluster", "subscriptions").expect("valid reserved id")
    }

    /// Decodes the stored value (JSON).
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("stored subscriptions: {e}"))
    }

    /// Encodes the stored value (JSON).
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("subscriptions always encode")
    }

    /// The subscriptions after `change` at time `now`, and the one it is about (`None` once
    /// deleted); `Ok(None)` when nothing changes.
    #[allow(clippy::type_complexity)]
    pub fn apply(
        &self,
        change: &SubscriptionChange,
        now: u64,
    ) -> Result<Option<(Self, Option<Subscription>)>, SubscriptionError> {
        let mut next = self.clone();
        let about = match change {
            SubscriptionChange::Put { name, spec } => {
                check_name(name)?;
                spec.validate()?;
                match next.by_name.get_mut(name) {
                    Some(s) if s.spec == **spec => return Ok(None),
                    Some(s) => {
                        if s.spec.source != spec.source {
                            s.generation = next.next_generation;
                            next.next_generation += 1;
                        }
                        s.spec = (**spec).clone();
                        s.version += 1;
                        s.updated_at_ms = now;
                        s.clone()
                    }
                    None => {
                        if next.by_name.len() >= MAX_SUBSCRIPTIONS {
                            return Err(SubscriptionError::TooMany);
                        }
                        let s = Subscription {
                            name: name.clone(),
                            spec: (**spec).clone(),
                            paused: false,
                            generation: next.next_generation,
                            version: 1,
                            created_at_ms: now,
                            updated_at_ms: now,
                        };
                        next.next_generation += 1;
                        next.by_name.insert(name.clone(), s.clone());
                        s
                    }
                }
            }
            SubscriptionChange::Delete { name } => {
                if next.by_name.remove(name).is_none() {
                    return Err(SubscriptionError::NotFound(name.clone()));
                }
                next.version += 1;
                return Ok(Some((next, None)));
            }
            SubscriptionChange::Pause { name, paused } => {
                let s = next
                    .by_name
                    .get_mut(name)
                    .ok_or_else(|| SubscriptionError::NotFound(name.clone()))?;
                if s.paused == *paused {
                    return Ok(None);
                }
                s.paused = *paused;
                s.version += 1;
                s.updated_at_ms = now;
                s.clone()
            }
        };
        next.version += 1;
        Ok(Some((next, Some(about))))
    }
}

/// A source partition's checkpoint as its home partition holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointState {
    /// Every record at or below it was applied (0: none).
    pub position: u64,
    /// Records applied (operations run, including ones that failed), in all.
    pub applied: u64,
    /// Records whose operation failed, in all (counted in `applied` too).
    pub failed: u64,
    /// Records dead-lettered, in all.
    pub dead_lettered: u64,
    /// When it was written (ms since the epoch).
    pub at_ms: u64,
    /// The source's incarnation when it was written (a Kafka topic id or a JetStream stream's
    /// creation time): a source deleted and created again is noticed, not read from a position
    /// of the old one.
    pub incarnation: String,
}

/// A record that did not become an operation (or whose operation failed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Its source partition.
    pub partition: u32,
    /// Its position there.
    pub position: u64,
    /// Why.
    pub reason: String,
    /// Its key (UTF-8, lossy, truncated).
    pub key: Option<String>,
    /// Its value (UTF-8, lossy, truncated to [`DEAD_LETTER_VALUE_BYTES`]).
    pub value: String,
    /// When it was dead-lettered (ms since the epoch).
    pub at_ms: u64,
}

/// Most bytes of a record's value a dead letter keeps.
pub const DEAD_LETTER_VALUE_BYTES: usize = 4096;
/// Most dead letters a source partition keeps (the oldest go first).
pub const MAX_DEAD_LETTERS: usize = 1000;

/// Text of at most `max` bytes from `bytes` (lossy UTF-8, cut at a character boundary).
pub fn truncated_text(bytes: &[u8], max: usize) -> String {
    let s = String::from_utf8_lossy(&bytes[..bytes.len().min(max)]).into_owned();
    s.trim_end_matches('\u{FFFD}').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Result<SubscriptionSpec, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn changes_keep_generations_and_versions() {
        let a = spec(r#"{"source": {"nats": {"url": "nats://h:1", "stream": "s"}}, "mapping": {"entity": "counter", "key": "/u", "operation": "add"}}"#).unwrap();
        let mut b = a.clone();
        b.mapping.operation = "reset".into();
        let mut c = a.clone();
        if let SourceSpec::Nats(n) = &mut c.source {
            n.stream = "other".into();
        }
        let put = |n: &str, s: &SubscriptionSpec| SubscriptionChange::Put {
            name: n.into(),
            spec: Box::new(s.clone()),
        };
        let s0 = Subscriptions::default();
        let (s1, x) = s0.apply(&put("x", &a), 1).unwrap().unwrap();
        let x = x.unwrap();
        assert_eq!((x.generation, x.version), (0, 1));
        assert!(
            s1.apply(&put("x", &a), 2).unwrap().is_none(),
            "same definition"
        );
        let (s2, x) = s1.apply(&put("x", &b), 3).unwrap().unwrap();
        let x = x.unwrap();
        assert_eq!(
            (x.generation, x.version),
            (0, 2),
            "a mapping change keeps positions"
        );
        let (s3, x) = s2.apply(&put("x", &c), 4).unwrap().unwrap();
        assert_eq!(x.unwrap().generation, 1, "another source starts anew");
        let (s4, _) = s3
            .apply(
                &SubscriptionChange::Pause {
                    name: "x".into(),
                    paused: true,
                },
                5,
            )
            .unwrap()
            .unwrap();
        assert!(s4.by_name["x"].paused);
        let (s5, gone) = s4
            .apply(&SubscriptionChange::Delete { name: "x".into() }, 6)
            .unwrap()
            .unwrap();
        assert!(gone.is_none() && s5.by_name.is_empty());
        let (_, again) = s5.apply(&put("x", &a), 7).unwrap().unwrap();
        assert_eq!(
            again.unwrap().generation,
            2,
            "a recreated subscription starts anew"
        );
        assert_eq!(
            s5.apply(&SubscriptionChange::Delete { name: "x".into() }, 8),
            Err(SubscriptionError::NotFound("x".into()))
        );
        let back = Subscriptions::decode(&s4.encode()).unwrap();
        assert_eq!(back, s4);
    }

    #[test]
    fn source_keys_round_trip() {
        let k = source_key("orders.v2", 7, 3);
        assert_eq!(parse_source_key(&k), Some(("orders.v2", 7, 3)));
        assert_eq!(truncated_text("héllo".as_bytes(), 2), "h");
        // pinned: consumers must not move between versions
        let homes: Vec<u32> = (0..8).map(|p| home_partition("clicks", p, 16)).collect();
        assert_eq!(homes, vec![10, 10, 0, 7, 6, 4, 5, 5]);
    }
}
