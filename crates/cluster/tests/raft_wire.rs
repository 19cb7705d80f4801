//! openraft's RPC messages survive the codec (bincode cannot decode every serde pattern, so this
//! is checked, not assumed): requests and every response shape.

use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Membership, SnapshotMeta, Vote};
use perdure_storage::TypeConfig;
use perdure_types::codec;
use perdure_types::command::{Command, Op, Proposal};
use perdure_types::EntityId;
use std::collections::{BTreeMap, BTreeSet};

fn round_trip<T: serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug>(v: &T) -> T {
    let bytes = codec::encode(v).expect("encode");
    codec::decode(&bytes).unwrap_or_else(|e| panic!("{v:?}: {e}"))
}

#[test]
fn raft_messages_round_trip_through_the_codec() {
    let lid = |t, i| LogId::new(CommittedLeaderId::new(t, 1), i);
    let members = BTreeMap::from([
        (1u64, openraft::BasicNode::new("127.0.0.1:1")),
        (2, openraft::BasicNode::new("127.0.0.1:2")),
    ]);
    let membership = Membership::new(vec![BTreeSet::from([1u64, 2])], members.clone());
    let entries = vec![
        Entry::<TypeConfig> {
            log_id: lid(1, 1),
            payload: EntryPayload::Blank,
        },
        Entry {
            log_id: lid(1, 2),
            payload: EntryPayload::Membership(membership.clone()),
        },
        Entry {
            log_id: lid(2, 3),
            payload: EntryPayload::Normal(Proposal::from(Command::single(Op::SetState {
                entity: EntityId::new("counter", "a").unwrap(),
                state: b"1".to_vec(),
            }))),
        },
    ];
    let req = AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new_committed(2, 1),
        prev_log_id: Some(lid(1, 0)),
        entries,
        leader_commit: Some(lid(1, 2)),
    };
    let back = round_trip(&req);
    assert_eq!(back.entries.len(), 3);
    assert_eq!(back.leader_commit, req.leader_commit);
    for r in [
        AppendEntriesResponse::<u64>::Success,
        AppendEntriesResponse::PartialSuccess(Some(lid(1, 2))),
        AppendEntriesResponse::Conflict,
        AppendEntriesResponse::HigherVote(Vote::new(3, 2)),
    ] {
        assert_eq!(round_trip(&r), r);
    }
    let v = VoteRequest::<u64> {
        vote: Vote::new(3, 2),
        last_log_id: Some(lid(2, 3)),
    };
    assert_eq!(round_trip(&v), v);
    let vr = VoteResponse::<u64> {
        vote: Vote::new(3, 2),
        vote_granted: true,
        last_log_id: None,
    };
    assert_eq!(round_trip(&vr), vr);
    let snap = InstallSnapshotRequest::<TypeConfig> {
        vote: Vote::new_committed(2, 1),
        meta: SnapshotMeta {
            last_log_id: Some(lid(2, 3)),
            last_membership: openraft::StoredMembership::new(Some(lid(1, 2)), membership),
            snapshot_id: "p1-4-123".into(),
        },
        offset: 0,
        data: vec![1, 2, 3],
        done: true,
    };
    let back = round_trip(&snap);
    assert_eq!(back.meta, snap.meta);
    assert_eq!(back.data, snap.data);
    let sr = InstallSnapshotResponse::<u64> {
        vote: Vote::new(2, 1),
    };
    assert_eq!(round_trip(&sr), sr);
}
