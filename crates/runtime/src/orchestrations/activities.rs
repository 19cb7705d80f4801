//! Activities run in-process: each work item of a live instance runs on a tokio task once a
//! node-wide slot is free (`orchestrations.max_concurrent_activities`), and its result goes
//! back to its instance, which records it in its next turn (at least once: a work item whose
//! result was not committed runs again after a leader change; its result is recorded once).

use super::instance::InstanceMsg;
use super::metrics::OrchestrationMetrics;
use super::model::ActivityContext;
use super::workload::PartitionRt;
use futures::FutureExt;
use perdure_types::command::WorkItem;
use perdure_types::orchestration::{EventKind, FailureDetails, HistoryEvent};
use perdure_types::InstanceId;
use serde_json::Value;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The event an activity that cannot run answers with at once (unknown name, bad input).
pub(crate) fn refused(item: &WorkItem, failure: FailureDetails) -> Box<HistoryEvent> {
    Box::new(HistoryEvent::new(
        crate::host::now_ms(),
        EventKind::TaskFailed {
            scheduled_id: item.task_id,
            failure,
        },
    ))
}

/// Starts `item` of execution `execution_id` of `instance`; its result is delivered to the
/// instance as [`InstanceMsg::ActivityDone`]. Returns the failure event instead when it cannot
/// start (no activity of that name, an input that is not JSON).
pub(crate) fn start(
    rt: &Arc<PartitionRt>,
    instance: &InstanceId,
    execution_id: &str,
    item: WorkItem,
) -> Result<(), Box<HistoryEvent>> {
    let shared = &rt.shared;
    let Some(f) = shared.registry.get_activity(&item.name).ok().cloned() else {
        let known = shared.registry.activity_names().join(", ");
        return Err(refused(
            &item,
            FailureDetails::new(
                "UnknownActivity",
                format!(
                    "no activity {:?} on this node; known activities: {known}",
                    item.name
                ),
            ),
        ));
    };
    let input: Value = match item.input.as_deref().map(serde_json::from_str).transpose() {
        Ok(v) => v.unwrap_or(Value::Null),
        Err(e) => {
            return Err(refused(
                &item,
                FailureDetails::new("BadInput", format!("the activity's input is not JSON: {e}")),
            ))
        }
    };
    let rt = rt.clone();
    let instance = instance.clone();
    let execution_id = execution_id.to_string();
    let metrics: Arc<OrchestrationMetrics> = shared.metrics.clone();
    let slots = shared.activity_slots.clone();
    metrics.activities_pending.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(async move {
        let _slot = slots.acquire_owned().await;
        OrchestrationMetrics::inc(&metrics.activities_started);
        let ctx = ActivityContext::new(instance.clone(), item.task_id, item.name.clone(), 1);
        let out = AssertUnwindSafe(f(ctx, input)).catch_unwind().await;
        let result = match out {
            Ok(Ok(v)) => Ok(Some(v.to_string())),
            Ok(Err(e)) => Err(e.details()),
            Err(panic) => Err(FailureDetails::new(
                "ActivityPanicked",
                format!(
                    "activity {:?} panicked: {}",
                    item.name,
                    panic_message(&panic)
                ),
            )),
        };
        metrics.activities_pending.fetch_sub(1, Ordering::Relaxed);
        finished(
            &rt,
            &instance,
            execution_id,
            item.task_id,
            &item.name,
            result,
        );
    });
    Ok(())
}

/// An activity of `instance` finished (in-process or on a remote worker) with `result`: its
/// history event (a result over `orchestrations.max_payload_bytes` fails the activity) goes to
/// the instance as [`InstanceMsg::ActivityDone`], counted as completed or failed.
fn finished(
    rt: &Arc<PartitionRt>,
    instance: &InstanceId,
    execution_id: String,
    task_id: perdure_types::orchestration::TaskId,
    name: &str,
    result: Result<Option<String>, FailureDetails>,
) {
    let max = rt.shared.config.max_payload_bytes;
    let kind = match result {
        Ok(Some(r)) if r.len() as u64 > max => EventKind::TaskFailed {
            scheduled_id: task_id,
            failure: FailureDetails::new(
                "PayloadTooLarge",
                format!(
                    "activity {name:?} returned {} bytes, over the limit of {max} (orchestrations.max_payload_bytes)",
                    r.len()
                ),
            ),
        },
        Ok(result) => EventKind::TaskCompleted {
            scheduled_id: task_id,
            result: result.filter(|r| !r.is_empty()),
        },
        Err(failure) => EventKind::TaskFailed {
            scheduled_id: task_id,
            failure,
        },
    };
    let metrics = &rt.shared.metrics;
    OrchestrationMetrics::inc(if matches!(kind, EventKind::TaskCompleted { .. }) {
        &metrics.activities_completed
    } else {
        &metrics.activities_failed
    });
    rt.deliver(
        instance,
        InstanceMsg::ActivityDone {
            execution_id,
            task_id,
            event: Box::new(HistoryEvent::new(crate::host::now_ms(), kind)),
        },
    );
}

/// A panic's message, if it carried one.
pub(crate) fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
}

/// Where a remote worker's activity result goes: its instance, as [`InstanceMsg::ActivityDone`]
/// (a result over the payload limit fails the activity, as in-process).
pub(crate) struct RemoteAnswer(pub std::sync::Weak<PartitionRt>);

impl crate::remote::queue::Answer for RemoteAnswer {
    fn orphaned(&self) -> bool {
        self.0.upgrade().is_none_or(|rt| !rt.is_alive())
    }

    fn answer(self: Box<Self>, work: crate::remote::RemoteWork, outcome: crate::remote::Outcome) {
        let (crate::remote::RemoteWork::Activity(w), crate::remote::Outcome::Activity(result)) =
            (work, outcome)
        else {
            return; // kinds are matched by the queue
        };
        if let Some(rt) = self.0.upgrade() {
            finished(
                &rt,
                &w.instance_id,
                w.execution_id,
                w.task_id,
                &w.name,
                result,
            );
        }
    }
}
