//! A batch of an entity type that remote workers run (`crate::remote`): its operations go to a
//! worker together, with the state the batch has reached, and the worker's state, results and
//! actions become the batch's effects.

use super::*;

impl EntityState {
    /// Runs a remote entity's operations `run` on a worker, with the state the batch has
    /// reached, and keeps their effects in the batch: the state after them, the signals and
    /// orchestration starts of the successful ones, each caller's answer. A state or action the
    /// node cannot take fails every operation of the run (nothing of it is kept). Waits for a
    /// worker; an error (the work withdrawn: the node stops) stops the actor with nothing
    /// committed, and its callers are told to retry.
    pub(super) async fn run_remote(
        &self,
        b: &mut Batch,
        run: Vec<Work>,
        now: u64,
    ) -> Result<(), Error> {
        if run.is_empty() {
            return Ok(());
        }
        let current = match &b.new_state {
            Some(s) => s.clone(),
            None => self.state.clone(),
        };
        let operations = run
            .iter()
            .map(|w| {
                let request_id = match &w.kind {
                    WorkKind::Inbox {
                        reply_to: Some((_, _, r)),
                        ..
                    } => Some(r.as_str()),
                    _ => None,
                };
                crate::entities::remote::operation(&w.operation, w.input.as_ref(), request_id)
            })
            .collect();
        let work = crate::remote::RemoteWork::Entity(crate::remote::EntityWork {
            entity: self.entity.clone(),
            state: current.as_ref().map(Value::to_string),
            operations,
        });
        let asked = self.shared.remote.ask(work);
        // waiting for a worker ends with this leadership (else the actor would outlive it)
        let leader = self.shared.leader.clone();
        let lost = async move {
            let p = leader.partition();
            while leader.partitions().is_leader(p) {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        };
        let answered = tokio::select! {
            a = asked => a.ok(),
            _ = lost => None,
        };
        let out = match answered {
            Some(crate::remote::Outcome::Entity(out)) => out,
            _ => {
                return Err(Error::Unavailable(format!(
                    "{}: its batch was withdrawn from the remote workers (the node stops); retry",
                    self.entity
                )))
            }
        };
        let n = run.len();
        let cap = self.shared.config.max_state_bytes;
        let partitions = self.shared.leader.partitions().count();
        let taken = (|| -> Result<_, String> {
            if out.results.len() != n {
                return Err(format!(
                    "the worker answered {} results for {n} operations",
                    out.results.len()
                ));
            }
            let state: Option<Value> = match out.state.as_deref().filter(|s| !s.is_empty()) {
                None => None,
                Some(s) => Some(
                    serde_json::from_str(s)
                        .map_err(|e| format!("the worker's entity state is not JSON: {e}"))?,
                ),
            };
            let bytes = state.as_ref().map_or(0, json_len);
            if bytes as u64 > cap {
                return Err(format!(
                    "the entity's state would be {bytes} bytes, over its limit of {cap} \
                     (entities.max_state_bytes); the operations were not applied"
                ));
            }
            let ops = crate::entities::remote::action_ops(out.actions, partitions, now)?;
            Ok((state, bytes, ops))
        })();
        let results: Vec<Result<Option<Value>, String>> = match taken {
            Ok((state, bytes, ops)) => {
                if state != current {
                    b.new_state = Some(state);
                    b.state_bytes = bytes;
                }
                for op in &ops {
                    b.sent |= matches!(op, Op::Send { .. });
                    b.scheduled |= matches!(op, Op::ScheduleTimer { .. });
                    b.other_bytes += op.payload_bytes();
                }
                b.effect_ops.extend(ops);
                out.results
                    .into_iter()
                    .map(|r| match r {
                        Ok(v) => Ok(v
                            .filter(|s| !s.is_empty())
                            .map(|s| serde_json::from_str(&s).unwrap_or(Value::String(s)))),
                        Err(f) => Err(f.message),
                    })
                    .collect()
            }
            Err(why) => {
                tracing::warn!(entity = %self.entity, error = %why, "a remote worker's batch was refused");
                (0..n).map(|_| Err(why.clone())).collect()
            }
        };
        for (w, outcome) in run.into_iter().zip(results) {
            if let WorkKind::Inbox {
                reply_to: Some((instance, execution, request_id)),
                ..
            } = &w.kind
            {
                self.answer_orchestration(b, instance, execution, request_id, &outcome, now);
            }
            if let (Some(reply), Some(tx)) = (self.reply_of(&w, outcome), w.reply) {
                b.replies.push((tx, reply));
            }
        }
        Ok(())
    }
}
