//! Entity types served by remote workers (`crate::remote`): what the entity actor hands a worker
//! and how a worker's answer becomes the batch's ops. The actor stays the one place the entity's
//! operations run, one batch at a time, so a remote entity has the same single activation as a
//! Rust one, across failover.

use super::entity::{Context, EntityType, OperationError};
use crate::remote::{EntityAction, EntityOperation};
use perdure_types::command::Op;
use perdure_types::message::Message;
use perdure_types::orchestration::{EventKind, HistoryEvent};
use perdure_types::{EntityId, InstanceId, Target};
use serde_json::Value;

/// The stand-in type of an entity whose operations a remote worker runs: the actor never calls
/// it (it asks the worker instead), it only gives the actor a type to hold.
pub(crate) struct RemoteEntity;

impl EntityType for RemoteEntity {
    fn name(&self) -> &'static str {
        "(remote worker)"
    }

    fn operations(&self) -> &'static [&'static str] {
        &[]
    }

    fn execute(&self, _ctx: &mut Context<'_>) -> Result<Option<Value>, OperationError> {
        Err(OperationError::Failed("run by a remote worker".into()))
    }
}

/// The operation `operation` with `input`, as a worker receives it.
pub(crate) fn operation(
    operation: &str,
    input: Option<&Value>,
    request_id: Option<&str>,
) -> EntityOperation {
    EntityOperation {
        operation: operation.to_string(),
        request_id: request_id.map_or_else(crate::orchestrations::api::new_id, String::from),
        input: input.map(Value::to_string),
    }
}

/// The ops carrying out a worker's actions (signals go through the outbox, or a timer when
/// scheduled later; a new orchestration is a start request to its instance's partition), or why
/// one cannot be taken.
pub(crate) fn action_ops(
    actions: Vec<EntityAction>,
    partitions: u32,
    now: u64,
) -> Result<Vec<Op>, String> {
    let mut ops = Vec::with_capacity(actions.len());
    for a in actions {
        match a {
            EntityAction::Signal {
                target,
                operation,
                input,
                scheduled_time,
            } => {
                let e = EntityId::from_canonical(&target)
                    .map_err(|e| format!("cannot signal {target:?}: {e}"))?;
                let input = input
                    .as_deref()
                    .map(serde_json::from_str::<Value>)
                    .transpose()
                    .map_err(|e| format!("signal to {target}: its input is not JSON: {e}"))?;
                let message = Message::entity_operation(operation, input.as_ref()).encode();
                let target = Target::Entity(e);
                ops.push(match scheduled_time.filter(|&t| t > now) {
                    Some(due) => Op::ScheduleTimer {
                        due,
                        target,
                        message,
                    },
                    None => Op::Send {
                        dest: target.partition(partitions),
                        target,
                        message,
                    },
                });
            }
            EntityAction::StartOrchestration {
                instance_id,
                name,
                version,
                input,
                scheduled_time,
            } => {
                let id = InstanceId::new(&instance_id)
                    .map_err(|e| format!("cannot start orchestration {instance_id:?}: {e}"))?;
                let started = HistoryEvent::new(
                    now,
                    EventKind::ExecutionStarted {
                        name,
                        version,
                        input,
                        parent: None,
                        scheduled_start: scheduled_time.filter(|&t| t > now),
                        execution_id: crate::orchestrations::api::new_id(),
                    },
                );
                // no execution id: a start request, which the instance's partition runs
                let message = Message::InstanceEvent {
                    execution_id: None,
                    event: started,
                };
                let target = Target::Instance(id);
                ops.push(Op::Send {
                    dest: target.partition(partitions),
                    target,
                    message: message.encode(),
                });
            }
        }
    }
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_become_sends_timers_and_start_requests_and_bad_ones_are_refused() {
        let ops = action_ops(
            vec![
                EntityAction::Signal {
                    target: "@counter@a".into(),
                    operation: "add".into(),
                    input: Some("1".into()),
                    scheduled_time: None,
                },
                EntityAction::Signal {
                    target: "@counter@a".into(),
                    operation: "add".into(),
                    input: None,
                    scheduled_time: Some(5_000),
                },
                EntityAction::StartOrchestration {
                    instance_id: "o1".into(),
                    name: "Hello".into(),
                    version: None,
                    input: None,
                    scheduled_time: None,
                },
            ],
            4,
            1_000,
        )
        .unwrap();
        assert!(matches!(ops[0], Op::Send { .. }));
        assert!(matches!(ops[1], Op::ScheduleTimer { due: 5_000, .. }));
        assert!(
            matches!(&ops[2], Op::Send { target: Target::Instance(i), .. } if i.as_str() == "o1")
        );
        let bad = action_ops(
            vec![EntityAction::Signal {
                target: "counter".into(),
                operation: "add".into(),
                input: None,
                scheduled_time: None,
            }],
            4,
            0,
        );
        assert!(bad.is_err());
    }
}
