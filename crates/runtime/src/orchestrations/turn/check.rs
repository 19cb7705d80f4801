//! Whether a decision can be taken: its payloads within their limits, its entity ids well
//! formed; otherwise the failure (naming the step) that fails the execution instead.

use super::*;

fn payload_len(s: &Option<String>) -> u64 {
    s.as_ref().map_or(0, |s| s.len() as u64)
}

/// Why the execution must fail instead of taking its decisions (a payload too large, a
/// malformed decision), naming the step.
pub(super) fn check_action(a: &Action, limits: &Limits) -> Result<(), FailureDetails> {
    let too_large = |what: &str, n: u64| {
        Err(FailureDetails::new(
            "PayloadTooLarge",
            format!(
                "step {}: {what} is {n} bytes, over the limit of {} (orchestrations.max_payload_bytes)",
                a.id(),
                limits.max_payload_bytes
            ),
        ))
    };
    let n = match a {
        Action::ScheduleTask { input, .. }
        | Action::CreateSubOrchestration { input, .. }
        | Action::SignalEntity { input, .. }
        | Action::CallEntity { input, .. } => payload_len(input),
        Action::SendEvent { data, .. } => payload_len(data),
        Action::CompleteOrchestration { result, .. } => payload_len(result),
        Action::TerminateOrchestration { reason, .. } => payload_len(reason),
        _ => 0,
    };
    if n > limits.max_payload_bytes {
        return too_large("its payload", n);
    }
    match a {
        Action::SignalEntity { target, .. }
        | Action::CallEntity { target, .. }
        | Action::UnlockEntity { target, .. } => entity_id(a, target).map(|_| ()),
        Action::LockEntities { lock_set, .. } => {
            if lock_set.is_empty() {
                return Err(FailureDetails::new(
                    "InvalidLockSet",
                    format!("step {}: a lock needs at least one entity", a.id()),
                ));
            }
            let n: u64 = lock_set.iter().map(|t| t.len() as u64).sum();
            if n > limits.max_payload_bytes {
                return too_large("its lock set", n);
            }
            lock_set
                .iter()
                .try_for_each(|t| entity_id(a, t).map(|_| ()))
        }
        _ => Ok(()),
    }
}

/// The entity `target` names, or the failure naming the step.
fn entity_id(a: &Action, target: &str) -> Result<EntityId, FailureDetails> {
    EntityId::from_canonical(target).map_err(|e| {
        FailureDetails::new(
            "InvalidEntityId",
            format!("step {}: entity {target:?}: {e}", a.id()),
        )
    })
}
