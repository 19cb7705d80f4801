//! Starting an instance: a client's start (with its first turn as one command where no record
//! exists, else `StartInstance` under the reuse policy), a parent's start request from the
//! outbox, and what arrives for an instance that does not run.

use super::*;

impl Instance {
    /// A client's start (see [`StartMsg`]): with no record known here and no live execution, the
    /// start and the first turn as one command, which applies only if no record exists; else (or
    /// fenced out) `StartInstance`, then the instance goes on from a read.
    pub(super) async fn start(&mut self, s: StartMsg) -> Result<bool, Error> {
        let StartMsg {
            record,
            started,
            policy,
            reply,
        } = s;
        let immediate = record.scheduled_start.is_none();
        let orchestrator = self
            .rt
            .shared
            .registry
            .get_orchestrator(&record.name)
            .ok()
            .cloned();
        let unknown_here = self.record.is_none() && self.driver.is_none();
        if let (true, true, Some(f)) = (immediate, unknown_here, orchestrator) {
            match self.start_with_first_turn(&record, &started, f).await {
                Ok(true) => {
                    let _ = reply.send(Ok(OpResult::Done));
                    return Ok(true);
                }
                Ok(false) => {} // a record exists: the reuse policy decides
                Err(e) => {
                    // nothing known to be written: the caller hears why (and may retry); this
                    // task starts over from a read
                    let _ = reply.send(Err(e));
                    return Ok(true);
                }
            }
        }
        let scheduled = !immediate;
        let r = self
            .rt
            .leader
            .propose(vec![Op::StartInstance {
                record: Box::new(record),
                started: Box::new(started),
                policy,
            }])
            .await;
        let r = match r {
            Ok(results) => results
                .into_iter()
                .next()
                .ok_or_else(|| Error::Unavailable("a start answered no result".into())),
            Err(e) => Err(e),
        };
        if let Ok(OpResult::Done) = &r {
            // another execution now: start over from what is committed
            self.reset();
            self.inbox_dirty = true;
            if scheduled {
                self.rt.leader.timers_changed();
            }
        }
        let _ = reply.send(r);
        Ok(true)
    }

    /// The start of `record` (no record of the instance known here) and its first turn as one
    /// command: a turn that creates the instance. `Ok(false)` when it was fenced out (a record
    /// exists: nothing was written).
    pub(super) async fn start_with_first_turn(
        &mut self,
        record: &InstanceRecord,
        started: &HistoryEvent,
        orchestrator: crate::orchestrations::model::OrchestratorFn,
    ) -> Result<bool, Error> {
        // a fresh live orchestrator, as `rebuild` makes one
        self.exec = record.execution_id.clone();
        self.driver_events = 0;
        self.pending_actions.clear();
        self.running.clear();
        self.queued.clear();
        self.done.clear();
        self.items_loaded = true;
        let mut driver = Driver::new(orchestrator, self.id.clone(), record.execution_id.clone());
        let now = crate::host::now_ms();
        let events = vec![
            HistoryEvent::new(now, EventKind::OrchestratorStarted),
            started.clone(),
        ];
        let fed = driver.run(&events);
        let cap = self.rt.shared.config.max_actions_per_turn as usize;
        let mut actions = fed.output.actions;
        let n = fits(actions.iter().map(action_bytes), cap);
        if actions.len() > n {
            self.pending_actions = actions.split_off(n).into();
        }
        let input = TurnInput {
            record,
            partitions: self.rt.leader.partitions().count(),
            now,
            events,
            consumed_upto: None,
            done_items: Vec::new(),
            more: !self.pending_actions.is_empty(),
            actions,
            custom_status: driver.custom_status().cloned(),
            terminated: fed.terminated,
            open_children: driver.open_children().cloned().collect(),
            locks: driver.open_locks(),
            suspended: driver.suspended(),
            new_execution_id: String::new(),
            fail: None,
        };
        self.driver = Some(driver);
        let applied = self.commit_turn(input).await;
        match applied {
            Ok(true) => {
                // The instance did not exist until this command: what its inbox held before
                // came with wakes of its own (a delivery wakes its target once committed), which
                // this task either handled already (a read found no instance, and dropped them,
                // as before any start) or still has in its mailbox, to read after this turn.
                self.inbox_dirty = false;
            }
            _ => self.reset(),
        }
        applied
    }

    /// No running execution (no record, or a finished one): a start request at the head of the
    /// inbox starts one; other messages are consumed and dropped.
    pub(super) async fn not_running(
        &mut self,
        record: Option<InstanceRecord>,
        incoming: Vec<Incoming>,
    ) -> Result<bool, Error> {
        self.reset();
        self.running.clear();
        self.queued.clear();
        self.done.clear();
        if let Some(first) = incoming.first().filter(|m| m.is_start_request()) {
            return self.start_request(record.as_ref(), first).await;
        }
        let cut = incoming
            .iter()
            .position(Incoming::is_start_request)
            .unwrap_or(incoming.len());
        let Some(upto) = incoming[..cut].last().map(|m| m.seq) else {
            return Ok(false);
        };
        tracing::debug!(instance = %self.id, dropped = cut, status = ?record.map(|r| r.status), "events for an instance that is not running dropped");
        self.rt
            .leader
            .propose(vec![Op::Dequeue {
                target: self.target.clone(),
                upto,
            }])
            .await?;
        Ok(true)
    }

    /// A start request (a parent's sub-orchestration): starts this instance unless one runs
    /// under this id, or no orchestrator of that name is registered; then the parent is told
    /// it failed.
    pub(super) async fn start_request(
        &mut self,
        record: Option<&InstanceRecord>,
        m: &Incoming,
    ) -> Result<bool, Error> {
        let EventKind::ExecutionStarted {
            name,
            version,
            input,
            parent,
            scheduled_start,
            execution_id,
        } = &m.event.kind
        else {
            return Ok(false);
        };
        let policy = ReusePolicy::default();
        let dequeue = Op::Dequeue {
            target: self.target.clone(),
            upto: m.seq,
        };
        let refusal = if let Some(r) = record.filter(|r| !policy.replaces(r.status)) {
            Some(FailureDetails::new(
                "InstanceExists",
                format!(
                    "orchestration instance \"{}\" exists and is {}",
                    self.id, r.status
                ),
            ))
        } else if self.rt.shared.registry.get_orchestrator(name).is_err()
            && !self.rt.shared.remote_orchestrator(name)
        {
            Some(unknown_orchestrator(&self.rt, name))
        } else {
            None
        };
        let now = crate::host::now_ms();
        if let Some(failure) = refusal {
            let mut ops = vec![dequeue];
            ops.extend(parent_failed(&self.rt, parent.as_ref(), failure, now));
            self.rt.leader.propose(ops).await?;
            self.rt.leader.outbox_changed();
            return Ok(true);
        }
        let new = InstanceRecord::pending(
            self.id.clone(),
            name.clone(),
            version.clone(),
            execution_id.clone(),
            input.clone(),
            parent.clone(),
            *scheduled_start,
            now,
        );
        let start = Op::StartInstance {
            record: Box::new(new),
            started: Box::new(m.event.clone()),
            policy,
        };
        let results = self.rt.leader.propose(vec![start, dequeue]).await?;
        match results.first() {
            Some(OpResult::Refused(status)) => {
                // started by someone else meanwhile
                let failure = FailureDetails::new(
                    "InstanceExists",
                    format!(
                        "orchestration instance \"{}\" exists and is {status}",
                        self.id
                    ),
                );
                let ops = parent_failed(&self.rt, parent.as_ref(), failure, now);
                if !ops.is_empty() {
                    self.rt.leader.propose(ops).await?;
                    self.rt.leader.outbox_changed();
                }
            }
            Some(OpResult::Done) => {
                OrchestrationMetrics::inc(&self.rt.shared.metrics.started);
                if scheduled_start.is_some() {
                    self.rt.leader.timers_changed();
                }
            }
            _ => {}
        }
        Ok(true)
    }
}

/// The message telling a parent its sub-orchestration failed to start.
pub(super) fn parent_failed(
    rt: &PartitionRt,
    parent: Option<&ParentInstance>,
    failure: FailureDetails,
    now: u64,
) -> Vec<Op> {
    let Some(p) = parent else {
        return Vec::new();
    };
    let target = Target::Instance(p.instance_id.clone());
    let message = Message::InstanceEvent {
        execution_id: Some(p.execution_id.clone()),
        event: HistoryEvent::new(
            now,
            EventKind::SubOrchestrationFailed {
                scheduled_id: p.task_id,
                failure,
            },
        ),
    };
    vec![Op::Send {
        dest: target.partition(rt.leader.partitions().count()),
        target,
        message: message.encode(),
    }]
}
