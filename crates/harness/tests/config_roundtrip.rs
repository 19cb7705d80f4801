//! The configs the harness writes are what `perdure serve` loads: serialized through the node's
//! own loader (defaults, then the file, then `PERDURE_*` variables) they come back unchanged
//! and valid, so no key is renamed, unknown or ignored between the two.

use perdure_harness::{to_toml, NodeSpec};
use perdure_types::config::{LogFormat, NodeConfig};

fn load(config: &NodeConfig) -> NodeConfig {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("node.toml");
    std::fs::write(&file, to_toml(config).unwrap()).unwrap();
    perdure_node::config::load(Some(&file), Vec::new(), Vec::new())
        .unwrap_or_else(|e| panic!("{e}\n{}", to_toml(config).unwrap()))
}

#[test]
fn the_serialized_default_config_loads_back_unchanged() {
    let c = NodeConfig::default();
    assert_eq!(load(&c), c);
}

#[test]
fn a_serialized_cluster_config_loads_back_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let specs: Vec<NodeSpec> = (1..=3)
        .map(|id| NodeSpec::new(id, 0, dir.path()).unwrap())
        .collect();
    let mut c = specs[2].config(&specs);
    c.cluster.cluster_id = "roundtrip".into();
    c.cluster.secret = "a-secret-of-enough-length".into();
    c.partitions = 8;
    c.entities.test_types = true;
    c.raft.snapshot_every_entries = 2000;
    c.log.format = LogFormat::Json;
    assert_eq!(load(&c), c);
}

#[test]
fn a_written_config_file_loads_back_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let spec = NodeSpec::new(1, 0, dir.path()).unwrap();
    let c = spec.config(&[]);
    spec.write_config(&c).unwrap();
    let loaded = perdure_node::config::load(Some(&spec.config), Vec::new(), Vec::new()).unwrap();
    assert_eq!(loaded, c);
}
