//! Honest health: what `/readyz` answers, and fail-stop on a fatal storage error.
//!
//! Ready means this node can serve what it is a member of: its cluster is formed, every
//! partition has a leader known here, this node's entity runtime runs on every partition it
//! leads, and no group it is a member of is stopped or without a leader.
//!
//! Fail-stop: when a group's Raft core stops on an error (the write-ahead log failing with
//! EMFILE, ENOSPC or EIO, a snapshot or state write failing, a panic), openraft never restarts
//! it, and the shared write-ahead log stays poisoned after its first failed write: the process
//! could not commit again. [`fatal_storage_error`] notices it; the node then stops (bounded) and
//! exits non-zero with the cause in the log, so that a supervisor (systemd, Kubernetes) restarts
//! it once the cause is gone, and the cluster fails over meanwhile. Nothing acknowledged is
//! lost: an acknowledgement follows the fsync, and recovery replays the log.

use perdure_cluster::status::GroupProblem;
use perdure_cluster::Partitions;
use perdure_runtime::Host;
use std::time::Duration;

/// How often [`fatal_storage_error`] looks at the groups.
const WATCH_EVERY: Duration = Duration::from_millis(100);

/// Whether the node can serve: `Ok` with how many partitions it leads, or why not.
pub async fn readiness(partitions: &Partitions, host: &Host) -> Result<usize, String> {
    let starting = host.starting();
    if !starting.is_empty() {
        return Err(format!(
            "entity runtime still starting on partitions {starting:?}"
        ));
    }
    let problems = partitions.unservable();
    let fatal: Vec<GroupProblem> = problems.iter().filter(|p| p.fatal).cloned().collect();
    if !fatal.is_empty() {
        return Err(describe(&fatal));
    }
    // formation (founding, joining, removed) and leaders of every partition, as before; then
    // the groups this node is a member of
    partitions
        .wait_ready(Duration::ZERO)
        .await
        .map_err(|e| e.to_string())?;
    if !problems.is_empty() {
        return Err(describe(&problems));
    }
    Ok(partitions.leading())
}

/// `partition 3: no leader known; metadata group: raft stopped on an error: ...`.
fn describe(problems: &[GroupProblem]) -> String {
    let each: Vec<String> = problems
        .iter()
        .map(|p| {
            let group = if p.metadata {
                "metadata group".to_string()
            } else {
                format!("partition {}", p.group)
            };
            format!("{group}: {}", p.problem)
        })
        .collect();
    format!(
        "groups this node is a member of cannot serve: {}",
        each.join("; ")
    )
}

/// Completes when a group's Raft core has stopped on an error (see the module doc), with the
/// group and the cause.
pub async fn fatal_storage_error(partitions: &Partitions) -> GroupProblem {
    loop {
        if let Some(p) = partitions.fatal() {
            return p;
        }
        tokio::time::sleep(WATCH_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_name_their_group() {
        let text = describe(&[
            GroupProblem {
                group: 3,
                metadata: false,
                fatal: false,
                problem: "no leader known".into(),
            },
            GroupProblem {
                group: 8,
                metadata: true,
                fatal: true,
                problem: "raft stopped on an error: disk full".into(),
            },
        ]);
        assert!(text.contains("partition 3: no leader known"), "{text}");
        assert!(
            text.contains("metadata group: raft stopped on an error: disk full"),
            "{text}"
        );
    }
}
