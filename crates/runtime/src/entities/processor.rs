//! The partition processor: one ractor actor per partition this node leads. It owns that
//! partition's entity actors: routes each message to the entity's actor, activating it on first
//! use, and passivates actors without losing a message: an actor is stopped only when it has
//! handled everything the processor ever forwarded to it and has nothing in flight.
//!
//! Active actors are bounded (`entities.max_active`, this partition's share: see
//! [`share_of`]). Each actor reports when it goes idle (the handshake: it tells how many
//! messages it handled, the processor compares with how many it forwarded); idle actors wait in
//! least-recently-active order. They are stopped when idle longer than
//! `entities.passivate_after_ms` (reason `idle`), or, when a new entity needs a slot and the
//! partition is at its bound, the one idle the longest is stopped first (reason `pressure`). If
//! every active actor is busy, the new entity's messages wait here, in order, until one goes
//! idle: the bound is never exceeded and nothing is refused.

use super::actor::{EntityActor, EntityArgs};
use super::metrics::Passivation;
use super::msg::{EntityMsg, ProcessorMsg};
use super::shared::Shared;
use crate::Error;
use perdure_types::EntityId;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) struct Processor;

/// This partition's share of the node's `entities.max_active`: an equal share per partition
/// (at least 1), so the node's bound holds however many partitions it leads, and each processor
/// enforces its own share without coordinating with the others.
pub(crate) fn share_of(max_active: u64, partitions: u32) -> usize {
    (max_active / u64::from(partitions.max(1))).max(1) as usize
}

struct Active {
    actor: ActorRef<EntityMsg>,
    forwarded: u64,
    /// While the actor has handled everything forwarded to it and has nothing in flight: its
    /// place in the idle order, and since when.
    idle: Option<(u64, Instant)>,
}

pub(crate) struct ProcessorState {
    shared: Arc<Shared>,
    active: HashMap<EntityId, Active>,
    by_actor: HashMap<ActorId, EntityId>,
    /// The idle actors, the one idle the longest first.
    idle: BTreeMap<u64, EntityId>,
    next_idle: u64,
    /// Entities waiting for a slot, first come first served, and each one's messages in order.
    waiting: VecDeque<EntityId>,
    parked: HashMap<EntityId, Vec<EntityMsg>>,
    /// Most actors active at once.
    cap: usize,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Actor for Processor {
    type Msg = ProcessorMsg;
    type State = ProcessorState;
    type Arguments = Arc<Shared>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        shared: Arc<Shared>,
    ) -> Result<Self::State, ActorProcessingErr> {
        let idle = Duration::from_millis(shared.config.passivate_after_ms);
        let ticker = myself.send_interval((idle / 4).max(Duration::from_millis(10)), || {
            ProcessorMsg::Tick
        });
        let cap = share_of(shared.config.max_active, shared.leader.partitions().count());
        Ok(ProcessorState {
            shared,
            active: HashMap::new(),
            by_actor: HashMap::new(),
            idle: BTreeMap::new(),
            next_idle: 0,
            waiting: VecDeque::new(),
            parked: HashMap::new(),
            cap,
            ticker: Some(ticker),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ProcessorMsg::Deliver(entity, msg) => st.deliver(&myself, entity, msg).await,
            ProcessorMsg::Idle {
                entity,
                actor,
                received,
            } => {
                st.went_idle(entity, actor, received);
                st.admit_waiting(&myself).await;
            }
            ProcessorMsg::Tick => st.passivate_idle(),
        }
        st.shared.metrics.set_active(st.active.len());
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        evt: SupervisionEvent,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let (id, why) = match &evt {
            SupervisionEvent::ActorTerminated(cell, _, reason) => (cell.get_id(), reason.clone()),
            SupervisionEvent::ActorFailed(cell, e) => (cell.get_id(), Some(e.to_string())),
            _ => return Ok(()),
        };
        if let Some(entity) = st.by_actor.remove(&id) {
            if st
                .active
                .get(&entity)
                .is_some_and(|a| a.actor.get_id() == id)
            {
                st.forget(&entity);
            }
            if matches!(evt, SupervisionEvent::ActorFailed(..)) {
                tracing::warn!(%entity, reason = ?why, "entity actor failed; it reactivates on its next message");
            }
            st.admit_waiting(&myself).await;
            st.shared.metrics.set_active(st.active.len());
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(t) = st.ticker.take() {
            t.abort();
        }
        for (_, a) in st.active.drain() {
            a.actor.stop(Some("partition processor stopped".into()));
        }
        // callers waiting for a slot learn to retry (inbox wake-ups are repeated by the next
        // leader's scan)
        for m in st.parked.drain().flat_map(|(_, msgs)| msgs) {
            if let EntityMsg::Work(_) | EntityMsg::Works(_) = m {
                fail(
                    m,
                    Error::Unavailable("the partition's leadership changed; retry".into()),
                );
            }
        }
        st.shared.metrics.set_active(0);
        Ok(())
    }
}

impl ProcessorState {
    async fn deliver(&mut self, myself: &ActorRef<ProcessorMsg>, entity: EntityId, msg: EntityMsg) {
        if let Some(msgs) = self.parked.get_mut(&entity) {
            // behind the entity's earlier messages; a second inbox wake-up adds nothing
            if !(matches!(msg, EntityMsg::ProcessInbox)
                && msgs.iter().any(|m| matches!(m, EntityMsg::ProcessInbox)))
            {
                msgs.push(msg);
            }
            return;
        }
        if !self.active.contains_key(&entity) && !self.make_room() {
            self.waiting.push_back(entity.clone());
            self.parked.insert(entity, vec![msg]);
            return;
        }
        self.send(myself, entity, msg).await;
    }

    /// Sends `msg` to the entity's actor, activating it if needed (there is room).
    async fn send(&mut self, myself: &ActorRef<ProcessorMsg>, entity: EntityId, msg: EntityMsg) {
        let mut msg = msg;
        for _attempt in 0..2 {
            if !self.active.contains_key(&entity) {
                match self.activate(myself, &entity).await {
                    Ok(()) => {}
                    Err(e) => return fail(msg, e),
                }
            }
            let a = self.active.get_mut(&entity).expect("activated");
            match a.actor.cast(msg) {
                Ok(()) => {
                    a.forwarded += 1;
                    if let Some((order, _)) = a.idle.take() {
                        self.idle.remove(&order);
                    }
                    return;
                }
                Err(ractor::MessagingErr::SendErr(m)) => {
                    // The actor stopped on its own (failed batch): forget it and try a fresh one.
                    self.forget(&entity);
                    msg = m;
                }
                Err(_) => return,
            }
        }
        fail(
            msg,
            Error::Unavailable(format!("{entity}: could not activate")),
        );
    }

    /// Whether a new actor may start: below the bound, or after stopping the actor idle the
    /// longest.
    fn make_room(&mut self) -> bool {
        if self.active.len() < self.cap {
            return true;
        }
        let Some((_, entity)) = self.idle.pop_first() else {
            return false;
        };
        self.passivate(&entity, Passivation::Pressure);
        true
    }

    /// The actor reported idle after handling `received` messages: if that is everything it
    /// was sent, it may be stopped from now on.
    fn went_idle(&mut self, entity: EntityId, actor: ActorId, received: u64) {
        let Some(a) = self.active.get_mut(&entity) else {
            return;
        };
        if a.actor.get_id() != actor || a.forwarded != received || a.idle.is_some() {
            // an earlier actor of the entity (stopped after a failed batch), more on its way
            // to it (it reports again), or known idle already
            return;
        }
        let order = self.next_idle;
        self.next_idle += 1;
        a.idle = Some((order, Instant::now()));
        self.idle.insert(order, entity);
    }

    /// Starts the entities waiting for a slot while there is room.
    async fn admit_waiting(&mut self, myself: &ActorRef<ProcessorMsg>) {
        while !self.waiting.is_empty() && self.make_room() {
            let entity = self.waiting.pop_front().expect("not empty");
            let msgs = self.parked.remove(&entity).unwrap_or_default();
            for m in msgs {
                self.send(myself, entity.clone(), m).await;
            }
        }
    }

    /// Stops the actors idle longer than `entities.passivate_after_ms`.
    fn passivate_idle(&mut self) {
        let after = Duration::from_millis(self.shared.config.passivate_after_ms);
        while let Some((_, entity)) = self.idle.first_key_value() {
            let since = self
                .active
                .get(entity)
                .and_then(|a| a.idle)
                .map(|(_, since)| since);
            if since.is_some_and(|s| s.elapsed() < after) {
                break; // the rest went idle later
            }
            let (_, entity) = self.idle.pop_first().expect("not empty");
            self.passivate(&entity, Passivation::Idle);
        }
    }

    /// Stops an idle actor. Nothing forwarded is unhandled, and nothing more will be: this is
    /// the only sender, and it forgets the actor now.
    fn passivate(&mut self, entity: &EntityId, why: Passivation) {
        if let Some(a) = self.forget(entity) {
            a.actor.stop(Some("passivated".into()));
            self.shared.metrics.passivated(why);
        }
    }

    /// Removes the entity's actor from every table.
    fn forget(&mut self, entity: &EntityId) -> Option<Active> {
        let a = self.active.remove(entity)?;
        self.by_actor.remove(&a.actor.get_id());
        if let Some((order, _)) = a.idle {
            self.idle.remove(&order);
        }
        Some(a)
    }

    async fn activate(
        &mut self,
        myself: &ActorRef<ProcessorMsg>,
        entity: &EntityId,
    ) -> Result<(), Error> {
        let (etype, remote) = match self.shared.registry.get(entity.name()) {
            Ok(t) => (t.clone(), false),
            // no Rust type: a remote worker runs its operations, when workers are served
            Err(_) if self.shared.remote_type(entity.name()) => (
                Arc::new(super::remote::RemoteEntity) as Arc<dyn super::entity::EntityType>,
                true,
            ),
            Err(e) => return Err(e),
        };
        let args = EntityArgs {
            entity: entity.clone(),
            etype,
            remote,
            shared: self.shared.clone(),
            processor: myself.clone(),
        };
        let (actor, _) = Actor::spawn_linked(None, EntityActor, args, myself.get_cell())
            .await
            .map_err(|e| Error::Unavailable(format!("{entity}: activation failed: {e}")))?;
        self.by_actor.insert(actor.get_id(), entity.clone());
        self.active.insert(
            entity.clone(),
            Active {
                actor,
                forwarded: 0,
                idle: None,
            },
        );
        self.shared.metrics.activated();
        Ok(())
    }
}

fn fail(msg: EntityMsg, e: Error) {
    match msg {
        EntityMsg::Work(w) => {
            if let Some(tx) = w.reply {
                let _ = tx.send(Err(e));
            }
        }
        EntityMsg::Works(ws) => {
            let message = e.to_string();
            for tx in ws.into_iter().filter_map(|w| w.reply) {
                let _ = tx.send(Err(Error::Unavailable(message.clone())));
            }
        }
        other => {
            tracing::warn!(error = %e, msg = ?other, "message for an entity that cannot be activated dropped")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::share_of;

    #[test]
    fn each_partition_gets_an_equal_share_of_at_least_one() {
        assert_eq!(share_of(20_000, 16), 1250);
        assert_eq!(share_of(100, 1), 100);
        assert_eq!(share_of(5, 16), 1);
    }
}
