//! The power-loss nemesis's half in the run: each initial node's data directory mounted as a
//! powerfs over `n{id}-disk/` (only in runs that ask for `powerloss`, or `--powerfs`), and the
//! plug pulled on a node: `kill -9`, then every write it had not fsynced dropped.

use crate::nemesis::Cluster;
use perdure_chaos::powerfs::{PowerFsError, PowerMount};
use perdure_harness::NodeSpec;
use std::collections::HashMap;
use std::path::PathBuf;

/// The durable image behind node `spec`'s data directory.
pub fn backing(spec: &NodeSpec) -> PathBuf {
    let name = format!("n{}-disk", spec.id);
    spec.data_dir
        .parent()
        .map(|d| d.join(&name))
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Mounts a powerfs on every node's data directory.
pub fn mount_all(specs: &[NodeSpec]) -> Result<HashMap<u64, PowerMount>, PowerFsError> {
    let mut out = HashMap::new();
    for s in specs {
        out.insert(s.id, PowerMount::mount(&backing(s), &s.data_dir)?);
    }
    Ok(out)
}

/// Pulls the plug on node `id`: `kill -9` (reaped), then its unsynced writes are dropped.
/// Returns what was dropped; the node is started again by the heal.
pub fn pull_plug(c: &mut Cluster, id: u64) -> Result<String, String> {
    let i = c
        .nodes
        .iter()
        .position(|n| n.spec.id == id)
        .ok_or("no such node")?;
    if !c.power.contains_key(&id) {
        return Err(format!("node {id}'s data directory is not a powerfs mount (the run mounts them only when it includes powerloss)"));
    }
    if c.nodes[i].running() {
        c.kill(i)?;
    }
    c.power[&id]
        .pull_plug()
        .map(|d| format!("[{id}] {d}"))
        .map_err(|e| e.to_string())
}

/// Unmounts every powerfs of the run (the nodes must be stopped).
pub fn unmount_all(c: &mut Cluster) -> Vec<String> {
    c.power
        .drain()
        .filter_map(|(id, m)| m.unmount().err().map(|e| format!("node {id}: {e}")))
        .collect()
}
