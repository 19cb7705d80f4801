//! openraft's storage conformance suite against perdure's log store and state machine, each case
//! on a fresh data directory with a real write-ahead log and redb state store.

use openraft::testing::{StoreBuilder, Suite};
use perdure_storage::log_store::LogStore;
use perdure_storage::raft_types::StorageError;
use perdure_storage::state_machine::StateMachine;
use perdure_storage::{NodeStore, TypeConfig};
use perdure_types::config::NodeConfig;

struct Builder;

/// Keeps the directory and the node store alive for one test case.
struct Guard {
    _store: NodeStore,
    _dir: tempfile::TempDir,
}

impl StoreBuilder<TypeConfig, LogStore, StateMachine, Guard> for Builder {
    async fn build(&self) -> Result<(Guard, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = NodeConfig {
            data_dir: dir.path().join("data"),
            partitions: 4,
            ..Default::default()
        };
        let mut store = NodeStore::open(&config).expect("open node store");
        let (log, sm) = store.open_partition(2).expect("open partition");
        Ok((
            Guard {
                _store: store,
                _dir: dir,
            },
            log,
            sm,
        ))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(Builder).expect("openraft storage suite");
}
