//! The partition processor: one ractor actor per partition this node leads. It owns that
//! partition's entity actors: routes each message to the entity's actor, activating it on first
//! use, and passivates idle ones without losing a message (an actor stops only when it has handled
//! everything the processor ever forwarded to it).

use super::actor::{EntityActor, EntityArgs};
use super::msg::{EntityMsg, ProcessorMsg};
use super::shared::Shared;
use crate::Error;
use perdure_types::EntityId;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use std::collections::HashMap;
use std::sync::Arc;

pub(crate) struct Processor;

struct Active {
    actor: ActorRef<EntityMsg>,
    forwarded: u64,
}

pub(crate) struct ProcessorState {
    shared: Arc<Shared>,
    active: HashMap<EntityId, Active>,
    by_actor: HashMap<ActorId, EntityId>,
}

impl Actor for Processor {
    type Msg = ProcessorMsg;
    type State = ProcessorState;
    type Arguments = Arc<Shared>;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        shared: Arc<Shared>,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(ProcessorState {
            shared,
            active: HashMap::new(),
            by_actor: HashMap::new(),
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
            ProcessorMsg::Idle { entity, received } => {
                if let Some(a) = st.active.get(&entity) {
                    if a.forwarded == received {
                        // Nothing forwarded is unhandled, and nothing more will be: this is the
                        // only sender, and it forgets the actor now.
                        a.actor.stop(Some("passivated".into()));
                        let a = st.active.remove(&entity).expect("present");
                        st.by_actor.remove(&a.actor.get_id());
                        st.shared.metrics.passivated();
                    }
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<Self::Msg>,
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
                st.active.remove(&entity);
            }
            if matches!(evt, SupervisionEvent::ActorFailed(..)) {
                tracing::warn!(%entity, reason = ?why, "entity actor failed; it reactivates on its next message");
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        for (_, a) in st.active.drain() {
            a.actor.stop(Some("partition processor stopped".into()));
        }
        Ok(())
    }
}

impl ProcessorState {
    async fn deliver(&mut self, myself: &ActorRef<ProcessorMsg>, entity: EntityId, msg: EntityMsg) {
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
                    return;
                }
                Err(ractor::MessagingErr::SendErr(m)) => {
                    // The actor stopped on its own (failed batch): forget it and try a fresh one.
                    let a = self.active.remove(&entity).expect("present");
                    self.by_actor.remove(&a.actor.get_id());
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

    async fn activate(
        &mut self,
        myself: &ActorRef<ProcessorMsg>,
        entity: &EntityId,
    ) -> Result<(), Error> {
        let etype = self.shared.registry.get(entity.name())?.clone();
        let args = EntityArgs {
            entity: entity.clone(),
            etype,
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
        other => {
            tracing::warn!(error = %e, msg = ?other, "message for an entity that cannot be activated dropped")
        }
    }
}
