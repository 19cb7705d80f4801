//! Tasks: what the context's calls return, and the two ways to wait for many ([`when_all`],
//! [`when_any`]).
//!
//! A [`Task`] is a handle on a result the history will deliver. It is cheap to clone (a clone
//! waits for the same result) and can be awaited any number of times, also after it finished.
//! The groups are O(1) per completion: a fan-out of 100,000 tasks costs 100,000 small steps, not
//! a rescan of every task on each one.

use super::error::TaskError;
use super::state::{Shared, SlotId};
use serde_json::Value;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// A result the history will deliver: an activity's, a sub-orchestration's, an entity call's, a
/// timer (`Ok(null)`), an external event's data, a lock (`Ok(null)` once granted).
///
/// Await it only inside the orchestrator it belongs to (see the module documentation).
#[derive(Clone)]
pub struct Task {
    pub(crate) shared: Arc<Shared>,
    pub(crate) slot: SlotId,
}

impl fmt::Debug for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Task")
            .field("slot", &self.slot)
            .field("completed", &self.is_completed())
            .finish()
    }
}

impl Task {
    pub(crate) fn new(shared: Arc<Shared>, slot: SlotId) -> Self {
        Self { shared, slot }
    }

    /// Whether its result is known.
    pub fn is_completed(&self) -> bool {
        self.shared.lock().is_resolved(self.slot)
    }
}

impl Future for Task {
    type Output = Result<Value, TaskError>;

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.shared.lock().poll_slot(self.slot) {
            Some(r) => Poll::Ready(r),
            None => Poll::Pending,
        }
    }
}

/// The slots of `tasks` in the state of the first one; a task of another orchestration (which
/// cannot be waited on here) counts as failed.
fn group_slots(tasks: &[Task]) -> Option<(Arc<Shared>, Vec<SlotId>)> {
    let shared = tasks.first()?.shared.clone();
    let mut st = shared.lock();
    let slots = tasks
        .iter()
        .map(|t| {
            if Arc::ptr_eq(&t.shared, &shared) {
                t.slot
            } else {
                st.resolved_slot(Err(TaskError::new(
                    "ForeignTask",
                    "a task of another orchestration cannot be awaited here",
                )))
            }
        })
        .collect();
    drop(st);
    Some((shared, slots))
}

/// Waits for every task; their results in the order given (failures included: decide
/// yourself whether one failure fails the whole). Tasks that finished already count at once.
pub fn when_all(tasks: Vec<Task>) -> WhenAll {
    let group = group_slots(&tasks).map(|(shared, slots)| {
        let g = shared.lock().group_all(&slots);
        (shared, g, slots)
    });
    WhenAll { group }
}

/// Waits for the first task to finish: its index in `tasks` and its result. When several have
/// finished already, the one whose completion came first in the history wins, so replay picks
/// the same one. The others keep running (cancel a losing timer with
/// [`OrchestrationContext::cancel_timer`](super::OrchestrationContext::cancel_timer)).
///
/// Over no tasks it resolves at once to `(0, Err(..))` with error type `EmptyWhenAny`.
pub fn when_any(tasks: Vec<Task>) -> WhenAny {
    let group = group_slots(&tasks).map(|(shared, slots)| {
        let g = shared.lock().group_any(&slots);
        (shared, g, slots)
    });
    WhenAny { group }
}

/// The future of [`when_all`].
pub struct WhenAll {
    group: Option<(Arc<Shared>, usize, Vec<SlotId>)>,
}

impl fmt::Debug for WhenAll {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.group.as_ref().map_or(0, |(_, _, s)| s.len());
        f.debug_struct("WhenAll").field("tasks", &n).finish()
    }
}

impl Future for WhenAll {
    type Output = Vec<Result<Value, TaskError>>;

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some((shared, g, slots)) = &self.group else {
            return Poll::Ready(Vec::new());
        };
        match shared.lock().all_results(*g, slots) {
            Some(r) => Poll::Ready(r),
            None => Poll::Pending,
        }
    }
}

/// The future of [`when_any`].
pub struct WhenAny {
    group: Option<(Arc<Shared>, usize, Vec<SlotId>)>,
}

impl fmt::Debug for WhenAny {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.group.as_ref().map_or(0, |(_, _, s)| s.len());
        f.debug_struct("WhenAny").field("tasks", &n).finish()
    }
}

impl Future for WhenAny {
    type Output = (usize, Result<Value, TaskError>);

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some((shared, g, slots)) = &self.group else {
            return Poll::Ready((
                0,
                Err(TaskError::new("EmptyWhenAny", "when_any over no tasks")),
            ));
        };
        match shared.lock().any_result(*g, slots) {
            Some(r) => Poll::Ready(r),
            None => Poll::Pending,
        }
    }
}
