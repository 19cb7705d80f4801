//! The chaos run's nodes: `perdure-harness` nodes started in a cgroup (for network faults),
//! under libfaketime (clock skew) or with the chaos bug switch, and their config (short Raft
//! timeouts, test entity types, the sample orchestrations).

use perdure_harness::{Node, NodeSpec};
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};

/// A chaos node could not be configured or started.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The harness failed (config, spawn, signal).
    #[error(transparent)]
    Harness(#[from] perdure_harness::Error),
    /// A clock skew was asked for and libfaketime is not installed.
    #[error("node {node}: libfaketime not found (apt-get install -y faketime)")]
    NoFaketime {
        /// The node.
        node: u64,
    },
}

/// The log filter of a chaos node.
const LOG: &str = "info,openraft=error";

/// Writes `spec`'s config: `members` (the whole cluster as this node should know it; empty or
/// one: a single node), every partition on `replication_factor` of them, test entity types and
/// the sample orchestrations on, a snapshot every `snapshot_every` log entries (the node's
/// default when `None`; a run that pulls plugs snapshots often, so that restarts meet snapshots
/// and purged logs).
pub fn write_config(
    spec: &NodeSpec,
    members: &[NodeSpec],
    replication_factor: usize,
    partitions: u32,
    snapshot_every: Option<u64>,
) -> Result<(), ClusterError> {
    let mut c = spec.config(members);
    c.partitions = partitions;
    if let Some(n) = snapshot_every {
        c.raft.snapshot_every_entries = n;
        c.raft.keep_entries_after_snapshot = (n / 5).max(1);
    }
    c.entities.test_types = true;
    c.samples.enabled = true; // HelloSequence5, FanOutFanIn (the orchestration workload)
    c.cluster.cluster_id = "chaos".into();
    c.cluster.secret = "chaos-harness-secret-0123456789".into();
    c.cluster.replication_factor = replication_factor as u32;
    Ok(spec.write_config(&c)?)
}

/// How to start a node process.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// The `cgroup.procs` file to join before exec (for network faults).
    pub cgroup_procs: Option<PathBuf>,
    /// A libfaketime offset such as `+90s` (wall clock only; monotonic time stays real).
    pub faketime: Option<String>,
    /// The value of `CHAOS_INJECT_BUG` (the deliberately broken build).
    pub bug: Option<String>,
}

/// Where libfaketime's multi-threaded library is.
pub fn libfaketime() -> Option<PathBuf> {
    let dirs = std::fs::read_dir("/usr/lib").ok()?;
    let mut candidates: Vec<PathBuf> = dirs
        .flatten()
        .map(|d| d.path().join("faketime/libfaketimeMT.so.1"))
        .collect();
    candidates.push(PathBuf::from("/usr/lib/faketime/libfaketimeMT.so.1"));
    candidates.into_iter().find(|p| p.exists())
}

/// A harness node and the clock skews it ran under (a [`Node`] for everything else).
#[derive(Debug)]
pub struct NodeProc {
    node: Node,
    /// The libfaketime offset it runs under, if any.
    pub skew: Option<String>,
    /// Pids of every incarnation that ran with a skewed clock.
    pub skewed_pids: Vec<u32>,
}

impl NodeProc {
    /// Node `spec` run from `bin`, not started yet.
    pub fn new(spec: NodeSpec, bin: &Path) -> Self {
        Self {
            node: Node::new(spec, bin),
            skew: None,
            skewed_pids: Vec::new(),
        }
    }

    /// Starts `bin serve --config ...` with `opts`, output appended to the node's log.
    pub fn start(&mut self, opts: &StartOptions) -> Result<u32, ClusterError> {
        let mut harness = perdure_harness::StartOptions {
            log: Some(LOG.into()),
            env_remove: vec!["CHAOS_INJECT_BUG".into()],
            cgroup_procs: opts.cgroup_procs.clone(),
            ..Default::default()
        };
        if let Some(bug) = &opts.bug {
            harness.env.push(("CHAOS_INJECT_BUG".into(), bug.clone()));
        }
        if let Some(offset) = &opts.faketime {
            let lib = libfaketime().ok_or(ClusterError::NoFaketime {
                node: self.node.spec.id,
            })?;
            harness.env.extend([
                ("LD_PRELOAD".into(), lib.display().to_string()),
                ("FAKETIME".into(), offset.clone()),
                ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
                ("FAKETIME_NO_CACHE".into(), "1".into()),
            ]);
        }
        let pid = self.node.start(&harness)?;
        self.skew = opts.faketime.clone();
        if self.skew.is_some() {
            self.skewed_pids.push(pid);
        }
        Ok(pid)
    }
}

impl Deref for NodeProc {
    type Target = Node;

    fn deref(&self) -> &Node {
        &self.node
    }
}

impl DerefMut for NodeProc {
    fn deref_mut(&mut self) -> &mut Node {
        &mut self.node
    }
}
