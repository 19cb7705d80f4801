//! The storage layer's files under a power cut (powerfs): what it reports durable must still be
//! there once every unsynced write and directory entry is dropped. Needs /dev/fuse and root:
//! skipped with the reason printed, except under `PERDURE_TEST_REQUIRE_TOOLS=1` (CI).

use perdure_chaos::powerfs::{self, PowerMount};
use perdure_storage::datadir::DataDir;
use perdure_storage::raft_types::SnapshotMeta;
use perdure_storage::snapshot::{self, SnapshotStore};
use perdure_storage::NodeStore;
use perdure_types::config::NodeConfig;

fn mount_or_skip(test: &str) -> Option<(tempfile::TempDir, PowerMount)> {
    if let Some(why) = powerfs::unavailable() {
        if std::env::var("PERDURE_TEST_REQUIRE_TOOLS").as_deref() == Ok("1") {
            panic!("{test}: FUSE unavailable ({why}) and PERDURE_TEST_REQUIRE_TOOLS=1");
        }
        eprintln!("SKIPPED {test}: FUSE unavailable ({why})");
        return None;
    }
    let tmp = tempfile::tempdir().unwrap();
    let m = PowerMount::mount(&tmp.path().join("disk"), &tmp.path().join("data")).unwrap();
    Some((tmp, m))
}

#[test]
fn a_saved_snapshot_survives_a_power_cut_of_a_fresh_data_directory() {
    let Some((_tmp, m)) =
        mount_or_skip("a_saved_snapshot_survives_a_power_cut_of_a_fresh_data_directory")
    else {
        return;
    };
    let dir = DataDir::open(m.mountpoint(), 4, 1).unwrap();
    let store = SnapshotStore::open(dir.snapshot_dir(3)).unwrap();
    let pairs = vec![(b"k".to_vec(), b"acknowledged".to_vec())];
    let bytes = snapshot::encode(3, &SnapshotMeta::default(), &pairs).unwrap();
    store.save(&SnapshotMeta::default(), &bytes).unwrap();
    drop((store, dir));
    let dropped = m.pull_plug().unwrap();
    let dir = DataDir::open(m.mountpoint(), 4, 1).unwrap();
    let store = SnapshotStore::open(dir.snapshot_dir(3)).unwrap();
    let (path, back) = store
        .latest()
        .unwrap()
        .unwrap_or_else(|| panic!("the saved snapshot is gone after the power cut ({dropped})"));
    assert_eq!(back, bytes, "{}", path.display());
    drop((store, dir));
    m.unmount().unwrap();
}

#[test]
fn a_new_state_file_keeps_its_name_across_a_power_cut() {
    let Some((_tmp, m)) = mount_or_skip("a_new_state_file_keeps_its_name_across_a_power_cut")
    else {
        return;
    };
    let config = NodeConfig {
        data_dir: m.mountpoint().to_path_buf(),
        partitions: 2,
        ..NodeConfig::default()
    };
    let mut store = NodeStore::open(&config).unwrap();
    let (log, sm) = store.open_partition(1).unwrap();
    drop((log, sm));
    store.close();
    drop(store);
    let dropped = m.pull_plug().unwrap();
    let file = m.mountpoint().join("state/p00001.redb");
    assert!(
        file.exists(),
        "{} vanished at the power cut ({dropped})",
        file.display()
    );
    m.unmount().unwrap();
}
