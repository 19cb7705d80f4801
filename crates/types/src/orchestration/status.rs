//! An instance's status record, kept beside its history and rewritten by every turn (it is
//! small: no history in it).

use super::history::{FailureDetails, ParentInstance};
use crate::command::Millis;
use crate::target::InstanceId;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Where an instance stands (Durable Functions' `runtimeStatus`). Variants are only added at
/// the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum RuntimeStatus {
    /// Started, its first turn not run yet (or its scheduled start not reached).
    Pending,
    /// Its first turn ran; not finished.
    Running,
    /// Finished with an output.
    Completed,
    /// Restarted with new input (the status an old execution ends with).
    ContinuedAsNew,
    /// Finished with a failure.
    Failed,
    /// Terminated by a request.
    Terminated,
    /// Suspended: its events wait until it is resumed.
    Suspended,
}

impl RuntimeStatus {
    /// Every status, in declaration order.
    pub const ALL: [RuntimeStatus; 7] = [
        RuntimeStatus::Pending,
        RuntimeStatus::Running,
        RuntimeStatus::Completed,
        RuntimeStatus::ContinuedAsNew,
        RuntimeStatus::Failed,
        RuntimeStatus::Terminated,
        RuntimeStatus::Suspended,
    ];

    /// Finished for good: completed, failed or terminated.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RuntimeStatus::Completed | RuntimeStatus::Failed | RuntimeStatus::Terminated
        )
    }

    /// Durable Functions' name (`Running`, `Completed`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeStatus::Pending => "Pending",
            RuntimeStatus::Running => "Running",
            RuntimeStatus::Completed => "Completed",
            RuntimeStatus::ContinuedAsNew => "ContinuedAsNew",
            RuntimeStatus::Failed => "Failed",
            RuntimeStatus::Terminated => "Terminated",
            RuntimeStatus::Suspended => "Suspended",
        }
    }
}

impl fmt::Display for RuntimeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A runtime status name that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown runtime status {0:?}; expected one of Pending, Running, Completed, ContinuedAsNew, Failed, Terminated, Suspended")]
pub struct UnknownStatus(pub String);

impl FromStr for RuntimeStatus {
    type Err = UnknownStatus;

    /// Case-insensitive, as Durable Functions accepts them.
    fn from_str(s: &str) -> Result<Self, UnknownStatus> {
        RuntimeStatus::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownStatus(s.to_string()))
    }
}

/// What a start does when the instance id is taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReusePolicy {
    /// Statuses of an existing instance that a start replaces (its history, inbox, work items and
    /// timers are dropped, and a new execution begins). Any other status refuses the start.
    pub replaceable: Vec<RuntimeStatus>,
    /// Instead of refusing, answer as if started and change nothing (Durable Task's `IGNORE`).
    pub ignore_if_running: bool,
}

impl Default for ReusePolicy {
    /// Durable Functions' default: a finished instance (completed, failed, terminated) is
    /// replaced, a pending, running or suspended one refuses the start.
    fn default() -> Self {
        Self {
            replaceable: vec![
                RuntimeStatus::Completed,
                RuntimeStatus::Failed,
                RuntimeStatus::Terminated,
            ],
            ignore_if_running: false,
        }
    }
}

impl ReusePolicy {
    /// Whether an instance in `status` may be replaced.
    pub fn replaces(&self, status: RuntimeStatus) -> bool {
        self.replaceable.contains(&status)
    }
}

/// An instance's status record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRecord {
    /// The instance id.
    pub instance_id: InstanceId,
    /// The orchestrator's name.
    pub name: String,
    /// Its version, if given.
    pub version: Option<String>,
    /// The current execution (a new one per start and continue-as-new).
    pub execution_id: String,
    /// When the instance was started.
    pub created_at: Millis,
    /// When its record last changed.
    pub updated_at: Millis,
    /// When it finished (terminal statuses).
    pub completed_at: Option<Millis>,
    /// Not started before this time.
    pub scheduled_start: Option<Millis>,
    /// Its input (JSON text).
    pub input: Option<String>,
    /// Its output (JSON text): the result, or the reason when terminated.
    pub output: Option<String>,
    /// Its custom status (JSON text).
    pub custom_status: Option<String>,
    /// Where it stands.
    pub status: RuntimeStatus,
    /// Why it failed.
    pub failure: Option<FailureDetails>,
    /// The parent, for a sub-orchestration.
    pub parent: Option<ParentInstance>,
    /// Events in the current execution's history.
    pub history_events: u64,
    /// Their encoded bytes.
    pub history_bytes: u64,
    /// Turns committed in the current execution: the fence of the next turn (a turn computed
    /// for another count, or another execution, applies nothing).
    pub turns: u64,
}

impl InstanceRecord {
    /// The record of an instance started now (`Pending`, no history yet).
    #[allow(clippy::too_many_arguments)]
    pub fn pending(
        instance_id: InstanceId,
        name: String,
        version: Option<String>,
        execution_id: String,
        input: Option<String>,
        parent: Option<ParentInstance>,
        scheduled_start: Option<Millis>,
        now: Millis,
    ) -> Self {
        Self {
            instance_id,
            name,
            version,
            execution_id,
            created_at: now,
            updated_at: now,
            completed_at: None,
            scheduled_start,
            input,
            output: None,
            custom_status: None,
            status: RuntimeStatus::Pending,
            failure: None,
            parent,
            history_events: 0,
            history_bytes: 0,
            turns: 0,
        }
    }

    /// Its encoded bytes.
    pub fn encode(&self) -> Vec<u8> {
        crate::codec::encode(self).expect("an instance record always encodes")
    }

    /// Decodes bytes written by [`InstanceRecord::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, crate::codec::Error> {
        crate::codec::decode(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_parse_case_insensitively_and_print_as_df_does() {
        for s in RuntimeStatus::ALL {
            assert_eq!(s.as_str().to_lowercase().parse::<RuntimeStatus>(), Ok(s));
        }
        assert!("done".parse::<RuntimeStatus>().is_err());
        assert!(RuntimeStatus::Failed.is_terminal());
        assert!(!RuntimeStatus::ContinuedAsNew.is_terminal());
    }

    #[test]
    fn the_default_reuse_policy_replaces_only_finished_instances() {
        let p = ReusePolicy::default();
        assert!(p.replaces(RuntimeStatus::Completed));
        assert!(!p.replaces(RuntimeStatus::Running));
        assert!(!p.replaces(RuntimeStatus::Pending));
    }
}
