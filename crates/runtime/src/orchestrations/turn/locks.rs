//! Critical sections in a turn: the order a lock set is acquired in, and the releases a turn
//! sends (one unlock, an unlock before the grant, everything still held when the execution
//! ends). The tests here are the turn's lock handling as a whole.

use super::*;

/// A lock set in the order its entities are taken: sorted, without duplicates.
pub(super) fn acquisition_order(lock_set: &[String]) -> Vec<String> {
    let mut set = lock_set.to_vec();
    set.sort();
    set.dedup();
    set
}

/// A release of critical section `cs` of `me` for `entity`, passed on to `forward`.
pub(super) fn release(
    partitions: u32,
    me: &InstanceId,
    cs: &str,
    entity: &str,
    forward: Vec<String>,
) -> Option<Op> {
    // the lock set was checked when it was requested
    let e = EntityId::from_canonical(entity).ok()?;
    Some(send(
        partitions,
        Target::Entity(e),
        Message::EntityUnlock {
            critical_section_id: cs.to_string(),
            holder: me.clone(),
            forward,
        },
    ))
}

/// The release of `l` from its first entity along the whole set (a section maybe not granted:
/// the release goes behind the request).
pub(super) fn release_along(partitions: u32, me: &InstanceId, l: &OpenLock) -> Option<Op> {
    let mut order = acquisition_order(&l.lock_set).into_iter();
    let first = order.next()?;
    release(
        partitions,
        me,
        &l.critical_section_id,
        &first,
        order.collect(),
    )
}

/// The releases of everything `l` may still hold, when the execution ends.
pub(super) fn release_rest(partitions: u32, me: &InstanceId, l: &OpenLock) -> Vec<Op> {
    if l.granted {
        // every entity holds it: each one not released yet is told directly
        acquisition_order(&l.lock_set)
            .iter()
            .filter(|t| !l.released.contains(*t))
            .filter_map(|t| release(partitions, me, &l.critical_section_id, t, Vec::new()))
            .collect()
    } else if l.released.is_empty() {
        release_along(partitions, me, l).into_iter().collect()
    } else {
        // not granted, and a release went along the whole set with the first unlock
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_history_events: 10_000,
        max_history_bytes: 1 << 30,
        max_payload_bytes: 1 << 20,
    };

    fn me() -> InstanceId {
        InstanceId::new("transfer").unwrap()
    }

    fn record() -> InstanceRecord {
        InstanceRecord::pending(
            me(),
            "Transfer".into(),
            None,
            "x1".into(),
            None,
            None,
            None,
            5,
        )
    }

    fn input<'a>(
        record: &'a InstanceRecord,
        actions: Vec<Action>,
        locks: Vec<OpenLock>,
    ) -> TurnInput<'a> {
        TurnInput {
            record,
            partitions: 4,
            now: 10,
            events: vec![HistoryEvent::new(10, EventKind::OrchestratorStarted)],
            consumed_upto: None,
            done_items: Vec::new(),
            actions,
            custom_status: None,
            terminated: None,
            open_children: Vec::new(),
            locks,
            suspended: false,
            more: false,
            new_execution_id: "x2".into(),
            fail: None,
        }
    }

    fn c(key: &str) -> String {
        format!("@counter@{key}")
    }

    /// The messages the planned command sends, with their entity addressee (canonical).
    fn sent(p: &Planned) -> Vec<(String, Message)> {
        p.ops
            .iter()
            .filter_map(|op| match op {
                Op::Send {
                    target, message, ..
                } => Some((target.canonical(), Message::decode(message).unwrap())),
                _ => None,
            })
            .collect()
    }

    fn unlock(cs: &str, forward: &[String]) -> Message {
        Message::EntityUnlock {
            critical_section_id: cs.into(),
            holder: me(),
            forward: forward.to_vec(),
        }
    }

    fn open(lock_set: &[String], granted: bool, released: &[String]) -> OpenLock {
        OpenLock {
            critical_section_id: "cs".into(),
            lock_set: lock_set.to_vec(),
            granted,
            released: released.iter().cloned().collect(),
        }
    }

    fn complete() -> Action {
        Action::CompleteOrchestration {
            id: 9,
            status: RuntimeStatus::Completed,
            result: None,
            failure: None,
            carryover_events: Vec::new(),
        }
    }

    #[test]
    fn a_lock_is_recorded_and_asked_of_the_first_entity_of_the_sorted_set() {
        let r = record();
        let lock = Action::LockEntities {
            id: 3,
            critical_section_id: "cs".into(),
            lock_set: vec![c("b"), c("a"), c("b")],
        };
        let p = plan(input(&r, vec![lock], Vec::new()), &LIMITS);
        let Op::CompleteTurn(turn) = &p.ops[0] else {
            panic!("no turn")
        };
        let requested = turn
            .events
            .iter()
            .find(|e| e.kind_name() == "EntityLockRequested")
            .unwrap();
        assert_eq!(requested.event_id, 3);
        assert_eq!(p.decided, vec![requested.clone()]);
        assert_eq!(
            sent(&p),
            vec![(
                c("a"),
                Message::EntityLock {
                    critical_section_id: "cs".into(),
                    lock_set: vec![c("a"), c("b")],
                    position: 0,
                    holder: (me(), "x1".into()),
                }
            )]
        );
        assert_eq!(p.record.status, RuntimeStatus::Running);
    }

    #[test]
    fn a_malformed_lock_fails_the_execution() {
        let r = record();
        for lock_set in [vec![], vec![c("a"), "not an entity".to_string()]] {
            let lock = Action::LockEntities {
                id: 0,
                critical_section_id: "cs".into(),
                lock_set,
            };
            let p = plan(input(&r, vec![lock], Vec::new()), &LIMITS);
            assert_eq!(p.record.status, RuntimeStatus::Failed);
            assert!(sent(&p).is_empty());
        }
    }

    #[test]
    fn entity_requests_name_their_sender() {
        let r = record();
        let signal = Action::SignalEntity {
            id: 0,
            request_id: "r0".into(),
            target: c("a"),
            operation: "add".into(),
            input: None,
            scheduled_time: None,
        };
        let call = Action::CallEntity {
            id: 1,
            request_id: "r1".into(),
            target: c("a"),
            operation: "get".into(),
            input: None,
        };
        let p = plan(input(&r, vec![signal, call], Vec::new()), &LIMITS);
        for (_, m) in sent(&p) {
            let Message::EntityRequest { sender, .. } = m else {
                panic!("not a request")
            };
            assert_eq!(sender, Some((me(), "x1".to_string())));
        }
    }

    #[test]
    fn an_unlock_after_the_grant_releases_each_entity_directly() {
        let r = record();
        let set = [c("a"), c("b")];
        let unlocks = set
            .iter()
            .enumerate()
            .map(|(i, t)| Action::UnlockEntity {
                id: i as i32 + 4,
                critical_section_id: "cs".into(),
                target: t.clone(),
            })
            .collect();
        let p = plan(input(&r, unlocks, vec![open(&set, true, &[])]), &LIMITS);
        assert_eq!(
            sent(&p),
            vec![(c("a"), unlock("cs", &[])), (c("b"), unlock("cs", &[]))]
        );
        assert_eq!(p.decided.len(), 2);
    }

    #[test]
    fn an_unlock_before_the_grant_goes_along_the_set_behind_the_request() {
        let r = record();
        let set = [c("a"), c("b"), c("c")];
        // the lock and its release in one turn, then the execution ends: one release, from the
        // first entity along the rest, and nothing more at the end
        let actions = vec![
            Action::LockEntities {
                id: 0,
                critical_section_id: "cs".into(),
                lock_set: set.to_vec(),
            },
            Action::UnlockEntity {
                id: 1,
                critical_section_id: "cs".into(),
                target: c("b"),
            },
            complete(),
        ];
        let p = plan(input(&r, actions, Vec::new()), &LIMITS);
        let msgs = sent(&p);
        assert_eq!(msgs.len(), 2, "{msgs:?}");
        assert!(matches!(msgs[0].1, Message::EntityLock { .. }));
        assert_eq!(msgs[1], (c("a"), unlock("cs", &[c("b"), c("c")])));
    }

    /// Makes a turn end the execution.
    type EndTurn = dyn Fn(&mut TurnInput<'_>);

    #[test]
    fn an_execution_that_ends_releases_every_section_still_open() {
        let r = record();
        let set = [c("a"), c("b"), c("c")];
        let ends: Vec<(&str, Box<EndTurn>)> = vec![
            (
                "completed",
                Box::new(|i: &mut TurnInput<'_>| i.actions = vec![complete()]),
            ),
            (
                "failed",
                Box::new(|i: &mut TurnInput<'_>| {
                    i.actions = vec![Action::CompleteOrchestration {
                        id: 9,
                        status: RuntimeStatus::Failed,
                        result: None,
                        failure: None,
                        carryover_events: Vec::new(),
                    }]
                }),
            ),
            (
                "continued as new",
                Box::new(|i: &mut TurnInput<'_>| {
                    i.actions = vec![Action::CompleteOrchestration {
                        id: 9,
                        status: RuntimeStatus::ContinuedAsNew,
                        result: None,
                        failure: None,
                        carryover_events: Vec::new(),
                    }]
                }),
            ),
            (
                "terminated (its decisions dropped)",
                Box::new(|i: &mut TurnInput<'_>| {
                    i.terminated = Some((None, false));
                    // an unlock decided in the same turn is not taken: the release at the end
                    // covers the entity
                    i.actions = vec![Action::UnlockEntity {
                        id: 4,
                        critical_section_id: "cs".into(),
                        target: c("c"),
                    }];
                }),
            ),
            (
                "quarantined",
                Box::new(|i: &mut TurnInput<'_>| {
                    i.fail = Some(FailureDetails::new("PoisonMessage", "crashed"))
                }),
            ),
        ];
        for (what, end) in ends {
            // granted, one entity released already: the others are released directly
            let mut i = input(&r, Vec::new(), vec![open(&set, true, &[c("a")])]);
            end(&mut i);
            let p = plan(i, &LIMITS);
            assert_eq!(
                sent(&p),
                vec![(c("b"), unlock("cs", &[])), (c("c"), unlock("cs", &[]))],
                "{what}"
            );
            // not granted yet: one release along the set, behind the request
            let mut i = input(&r, Vec::new(), vec![open(&set, false, &[])]);
            end(&mut i);
            let p = plan(i, &LIMITS);
            assert_eq!(
                sent(&p),
                vec![(c("a"), unlock("cs", &[c("b"), c("c")]))],
                "{what}"
            );
            // not granted, released along the set already: nothing more
            let mut i = input(&r, Vec::new(), vec![open(&set, false, &[c("b")])]);
            end(&mut i);
            assert!(sent(&plan(i, &LIMITS)).is_empty(), "{what}");
        }
        // a turn that does not end the execution releases nothing by itself
        let p = plan(input(&r, Vec::new(), vec![open(&set, true, &[])]), &LIMITS);
        assert!(sent(&p).is_empty());
    }
}
