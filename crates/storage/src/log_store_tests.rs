//! The weight of a partition's held log: append, truncate, purge, replay, and the node's sums.

use super::*;
use crate::log_memory::ENTRY_OVERHEAD;
use openraft::{CommittedLeaderId, EntryPayload};
use perdure_types::command::{Command, Op, Proposal};
use perdure_types::EntityId;

fn id(index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(1, 1), index)
}

/// An entry at `index` setting a state of `state` bytes.
fn entry(index: u64, state: usize) -> Entry {
    let op = Op::SetState {
        entity: EntityId::new("register", "k").unwrap(),
        state: vec![7; state],
    };
    Entry {
        log_id: id(index),
        payload: EntryPayload::Normal(Proposal::from(Command::new(vec![op]))),
    }
}

/// What [`entry`]`(_, state)` weighs.
fn weight(state: usize) -> u64 {
    log_memory::weigh(&entry(0, state))
}

fn record(kind: RecordKind, index: u64, payload: Vec<u8>) -> Record {
    Record {
        partition: 3,
        kind,
        index,
        payload,
    }
}

fn entries_record(entries: &[Entry]) -> Record {
    let last = entries.last().unwrap().log_id.index;
    record(RecordKind::Entries, last, codec::encode(entries).unwrap())
}

fn purge_record(index: u64) -> Record {
    record(RecordKind::Purge, index, codec::encode(&id(index)).unwrap())
}

#[test]
fn an_entry_weighs_its_payload_plus_a_fixed_overhead() {
    let w = weight(1 << 20);
    assert!(w > (1 << 20) + ENTRY_OVERHEAD, "{w}");
    assert!(w < (1 << 20) + 1024, "{w}");
    let blank = Entry {
        log_id: id(1),
        payload: EntryPayload::Blank,
    };
    assert_eq!(log_memory::weigh(&blank), ENTRY_OVERHEAD);
}

#[test]
fn appends_truncations_and_purges_keep_the_weight_and_the_node_sums_exact() {
    let memory = Arc::new(LogMemory::new(4));
    let mut log = PartitionLog::new(2, memory.clone());
    log.insert((1..=10).map(|i| entry(i, 1000 * i as usize)));
    let sum = |r: std::ops::RangeInclusive<u64>| r.map(|i| weight(1000 * i as usize)).sum::<u64>();
    assert_eq!(log.bytes(), sum(1..=10));
    assert_eq!(memory.group_bytes(2), sum(1..=10));
    assert_eq!(memory.total_bytes(), sum(1..=10));
    assert_eq!(memory.clock(), sum(1..=10));

    // truncation (a new leader's log replaces the tail)
    log.truncate_from(8);
    assert_eq!(log.bytes(), sum(1..=7));
    assert_eq!(memory.group_bytes(2), sum(1..=7));
    // re-appending over a held tail does not count twice
    log.insert([entry(7, 50), entry(8, 60)]);
    let now = sum(1..=6) + weight(50) + weight(60);
    assert_eq!(log.bytes(), now);
    assert_eq!(memory.total_bytes(), now);

    // purge
    log.purge_through(id(3));
    let now = sum(4..=6) + weight(50) + weight(60);
    assert_eq!(log.bytes(), now);
    assert_eq!(memory.group_bytes(2), now);
    assert_eq!(log.last_purged, Some(id(3)));
    assert_eq!(log.oldest().map(|(i, _)| i), Some(4));

    // another group adds to the node's total only
    let mut other = PartitionLog::new(0, memory.clone());
    other.insert([entry(1, 10)]);
    assert_eq!(memory.total_bytes(), now + weight(10));
    assert_eq!(memory.group_bytes(2), now);

    // a log dropped (its store closed) is no longer held
    drop(log);
    assert_eq!(memory.total_bytes(), weight(10));
    assert_eq!(memory.group_bytes(2), 0);
}

#[test]
fn ranges_and_purge_points_are_weighed_from_the_running_sums() {
    let mut log = PartitionLog::default();
    log.insert((1..=10).map(|i| entry(i, 1000)));
    let w = weight(1000);
    assert_eq!(log.bytes_between(None, 10), 10 * w);
    assert_eq!(log.bytes_between(Some(4), 7), 3 * w);
    assert_eq!(log.bytes_between(Some(9), 20), w);
    assert_eq!(log.bytes_between(Some(10), 20), 0);
    // keep at most 3 entries' weight of 1..=8: purge through 5
    assert_eq!(log.purge_point(8, 3 * w), Some(5));
    assert_eq!(log.purge_point(8, 3 * w + 1), Some(5));
    assert_eq!(log.purge_point(8, 3 * w - 1), Some(6));
    assert_eq!(log.purge_point(8, 0), Some(8));
    // already light enough: nothing to purge
    assert_eq!(log.purge_point(8, 8 * w), None);
    log.purge_through(id(5));
    assert_eq!(log.bytes_between(None, 8), 3 * w);
    assert_eq!(log.purge_point(8, 3 * w), None);
    assert_eq!(log.purge_point(8, w), Some(7));
    // below what is held
    assert_eq!(log.purge_point(3, 0), None);
    assert_eq!(log.bytes_between(None, 3), 0);
}

#[test]
fn replay_weighs_like_appends_and_drops_purged_entries_at_once() {
    let memory = Arc::new(LogMemory::new(4));
    let dir = std::path::Path::new("wal");
    let mut log = PartitionLog::new(3, memory.clone());
    let batch: Vec<Entry> = (1..=6).map(|i| entry(i, 4000)).collect();
    log.replay(&entries_record(&batch), dir).unwrap();
    assert_eq!(log.bytes(), 6 * weight(4000));
    log.replay(&record(RecordKind::Truncate, 5, Vec::new()), dir)
        .unwrap();
    assert_eq!(log.bytes(), 4 * weight(4000));
    log.replay(&purge_record(2), dir).unwrap();
    assert_eq!(
        log.bytes(),
        2 * weight(4000),
        "a purge drops entries at once"
    );
    assert_eq!(memory.group_bytes(3), 2 * weight(4000));
    // entries at or below the purge (an older copy) are not held again
    let again: Vec<Entry> = (2..=5).map(|i| entry(i, 100)).collect();
    log.replay(&entries_record(&again), dir).unwrap();
    assert_eq!(log.oldest().map(|(i, _)| i), Some(3));
    assert_eq!(log.bytes(), 3 * weight(100));
    log.finish(3, dir).unwrap();
    assert_eq!(log.len(), 3);
    assert_eq!(memory.total_bytes(), 3 * weight(100));
}

#[test]
fn the_clock_orders_entries_across_groups_by_when_they_came() {
    let memory = Arc::new(LogMemory::new(2));
    let mut a = PartitionLog::new(0, memory.clone());
    let mut b = PartitionLog::new(1, memory.clone());
    a.insert([entry(1, 10)]);
    b.insert([entry(1, 5000)]);
    a.insert([entry(2, 10)]);
    assert_eq!(a.oldest(), Some((1, 0)));
    assert_eq!(b.oldest(), Some((1, weight(10))));
    a.purge_through(id(1));
    assert_eq!(a.oldest(), Some((2, weight(10) + weight(5000))));
    assert_eq!(memory.clock(), 2 * weight(10) + weight(5000));
}
