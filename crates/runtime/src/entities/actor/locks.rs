//! Critical sections as the entity actor runs them: who holds the entity during a batch, lock
//! requests taken and passed along the lock set, releases, and a client's signal to a locked
//! entity kept in the inbox for after the release.

use super::*;

/// Whether `w` runs while `holder` holds the entity: the holder's own requests, and releases
/// (which decide for themselves whom they release).
pub(super) fn admits(holder: &LockHolder, kind: &WorkKind) -> bool {
    match kind {
        WorkKind::Unlock { .. } => true,
        WorkKind::Inbox {
            sender: Some((instance, execution)),
            ..
        } => *instance == holder.instance && *execution == holder.execution_id,
        _ => false,
    }
}

impl EntityState {
    /// Who holds the entity at this point of batch `b`.
    pub(super) fn lock_now<'a>(&'a self, b: &'a Batch) -> Option<&'a LockHolder> {
        match &b.new_lock {
            Some(l) => l.as_ref(),
            None => self.lock.as_ref(),
        }
    }

    /// A client's signal to a locked entity: put in the entity's own inbox, where it waits for
    /// the release like the messages from other entities and orchestrations.
    pub(super) fn enqueue_for_later(&self, b: &mut Batch, w: &Work) {
        let message = Message::entity_operation(w.operation.clone(), w.input.as_ref()).encode();
        let op = Op::Enqueue {
            target: self.target.clone(),
            message,
        };
        b.other_bytes += op.payload_bytes();
        b.effect_ops.push(op);
        b.enqueued = true;
    }

    /// A lock request reached the entity while it is free: the holder takes it, and the request
    /// goes on to the next entity of the set, or, from the last one, the holder is told its
    /// critical section is granted. All in the batch's command.
    pub(super) fn acquire(&self, b: &mut Batch, r: LockRequest, now: u64) {
        let me = self.entity.canonical();
        let position = r.position as usize;
        if r.lock_set.get(position) != Some(&me) {
            tracing::warn!(entity = %self.entity, position, lock_set = ?r.lock_set, "a lock request names another entity at this position; taken here anyway");
        }
        let (instance, execution_id) = r.holder;
        let next = match r.lock_set.get(position + 1) {
            None => None,
            Some(c) => match EntityId::from_canonical(c) {
                Ok(e) => Some(e),
                Err(e) => {
                    // checked when the orchestration decided it: never here
                    tracing::error!(entity = %self.entity, next = %c, error = %e, "a lock request names an invalid entity: the critical section is not granted");
                    return;
                }
            },
        };
        let (target, message) = match next {
            Some(e) => (
                Target::Entity(e),
                Message::EntityLock {
                    critical_section_id: r.critical_section_id.clone(),
                    lock_set: r.lock_set,
                    position: r.position + 1,
                    holder: (instance.clone(), execution_id.clone()),
                },
            ),
            None => (
                Target::Instance(instance.clone()),
                Message::InstanceEvent {
                    execution_id: Some(execution_id.clone()),
                    event: HistoryEvent::new(
                        now,
                        EventKind::EntityLockGranted {
                            critical_section_id: r.critical_section_id.clone(),
                        },
                    ),
                },
            ),
        };
        tracing::debug!(entity = %self.entity, %instance, critical_section = %r.critical_section_id, "locked");
        b.new_lock = Some(Some(LockHolder {
            instance,
            execution_id,
            critical_section_id: r.critical_section_id,
        }));
        self.send(b, target, message);
    }

    /// A release: frees the entity if the critical section holds it (passing the release on
    /// when asked to), and the messages that waited run next, before anything that came after
    /// them. If the section's request is still waiting here instead (released before it was
    /// granted), the request is dropped: it never went further, so neither does the release.
    pub(super) fn release(
        &mut self,
        b: &mut Batch,
        critical_section_id: &str,
        holder: &InstanceId,
        forward: Vec<String>,
    ) {
        let holds = self
            .lock_now(b)
            .is_some_and(|h| h.critical_section_id == critical_section_id && h.instance == *holder);
        if holds {
            tracing::debug!(entity = %self.entity, instance = %holder, critical_section = %critical_section_id, "unlocked");
            b.new_lock = Some(None);
            let mut rest = forward.into_iter();
            if let Some(next) = rest.next() {
                match EntityId::from_canonical(&next) {
                    Ok(e) => {
                        let message = Message::EntityUnlock {
                            critical_section_id: critical_section_id.to_string(),
                            holder: holder.clone(),
                            forward: rest.collect(),
                        };
                        self.send(b, Target::Entity(e), message);
                    }
                    Err(e) => {
                        tracing::error!(entity = %self.entity, next = %next, error = %e, "a release names an invalid entity")
                    }
                }
            }
            while let Some(w) = self.held.pop_back() {
                self.pending.push_front(w);
            }
            return;
        }
        let waiting = self.held.iter().position(|w| {
            matches!(&w.kind, WorkKind::Lock { request, .. }
                if request.critical_section_id == critical_section_id && request.holder.0 == *holder)
        });
        match waiting.and_then(|i| self.held.remove(i)) {
            Some(w) => {
                tracing::debug!(entity = %self.entity, instance = %holder, critical_section = %critical_section_id, "a lock request released before it was granted: dropped");
                b.run_seqs.extend(w.kind.inbox_seq());
            }
            None => {
                tracing::debug!(entity = %self.entity, instance = %holder, critical_section = %critical_section_id, "a release of a lock not held here: ignored")
            }
        }
    }
}
