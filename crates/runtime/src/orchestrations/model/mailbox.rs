//! External events of one execution: waits with no event yet, and events with no wait yet.
//! Names compare case-insensitively; both sides are served oldest first.

use super::payload;
use super::state::{Outcome, SlotId};
use perdure_types::orchestration::{EventKind, HistoryEvent};
use std::collections::{HashMap, VecDeque};

/// The waits and the kept events, by lower-cased name.
#[derive(Debug, Default)]
pub(crate) struct Mailbox {
    /// Waits with no event yet, oldest first.
    waiters: HashMap<String, VecDeque<SlotId>>,
    /// Events with no wait yet, with their arrival number.
    kept: HashMap<String, VecDeque<(u64, HistoryEvent)>>,
    next_arrival: u64,
}

impl Mailbox {
    /// An `EventRaised`: the oldest wait for its name and what it resolves to, or `None` when
    /// no one waits (the event is kept for the next wait).
    pub(crate) fn deliver(&mut self, event: &HistoryEvent) -> Option<(SlotId, Outcome)> {
        let EventKind::EventRaised { name, input } = &event.kind else {
            return None;
        };
        match self
            .waiters
            .get_mut(&name.to_lowercase())
            .and_then(VecDeque::pop_front)
        {
            Some(slot) => Some((slot, payload::decode(input.as_deref()))),
            None => {
                self.keep(event);
                None
            }
        }
    }

    /// Keeps an `EventRaised` without looking for a wait (the code has returned: a
    /// continue-as-new carries it over).
    pub(crate) fn keep(&mut self, event: &HistoryEvent) {
        if let EventKind::EventRaised { name, .. } = &event.kind {
            let arrival = self.next_arrival;
            self.next_arrival += 1;
            self.kept
                .entry(name.to_lowercase())
                .or_default()
                .push_back((arrival, event.clone()));
        }
    }

    /// The data of the oldest kept event named `name`, taken; `None` (and `slot` waits for the
    /// next such event) if there is none.
    pub(crate) fn take_or_wait(&mut self, name: &str, slot: SlotId) -> Option<Outcome> {
        let key = name.to_lowercase();
        match self.kept.get_mut(&key).and_then(VecDeque::pop_front) {
            Some((_, event)) => {
                let input = match &event.kind {
                    EventKind::EventRaised { input, .. } => input.as_deref(),
                    _ => None,
                };
                Some(payload::decode(input))
            }
            None => {
                self.waiters.entry(key).or_default().push_back(slot);
                None
            }
        }
    }

    /// The kept events, in arrival order.
    pub(crate) fn kept_events(&self) -> Vec<HistoryEvent> {
        let mut events: Vec<&(u64, HistoryEvent)> = self.kept.values().flatten().collect();
        events.sort_by_key(|(arrival, _)| *arrival);
        events.into_iter().map(|(_, e)| e.clone()).collect()
    }
}
