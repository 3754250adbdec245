//! What a job holds while this host has it: a slot of the in-flight limit,
//! its entry id in the set the heartbeat keeps fresh, and its count in the
//! in-flight gauge — all owned by one [`Held`] guard and given back together,
//! once, when the guard drops after the job's outcome is recorded.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::Metrics;

/// The jobs this host holds, and the limit on how many.
#[derive(Clone)]
pub(super) struct InFlight {
    slots: Arc<Semaphore>,
    entries: Arc<Mutex<HashSet<String>>>,
    metrics: Arc<Metrics>,
}

/// A free place for one more job, taken before its entry is read.
pub(super) struct Slot {
    _permit: OwnedSemaphorePermit,
}

impl InFlight {
    /// At most `limit` jobs held at once.
    pub(super) fn new(limit: usize, metrics: Arc<Metrics>) -> Self {
        InFlight {
            slots: Arc::new(Semaphore::new(limit.max(1))),
            entries: Arc::default(),
            metrics,
        }
    }

    /// Waits for one free slot, then takes up to `max` without waiting more.
    pub(super) async fn free_slots(&self, max: usize) -> Vec<Slot> {
        let first = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the slot semaphore is never closed");
        let mut slots = vec![Slot { _permit: first }];
        while slots.len() < max {
            match self.slots.clone().try_acquire_owned() {
                Ok(permit) => slots.push(Slot { _permit: permit }),
                Err(_) => break,
            }
        }
        slots
    }

    /// Holds the job of `entry_id` in `slot`; gives the slot back when this
    /// host already holds that entry (a reclaim of its own entry).
    pub(super) fn hold(&self, entry_id: &str, slot: Slot) -> Result<Held, Slot> {
        if !self.lock().insert(entry_id.to_owned()) {
            return Err(slot);
        }
        self.metrics.in_flight.fetch_add(1, Ordering::Relaxed);
        Ok(Held {
            entry_id: entry_id.to_owned(),
            _slot: slot,
            in_flight: self.clone(),
        })
    }

    /// The entry ids held now, for the heartbeat.
    pub(super) fn snapshot(&self) -> Vec<String> {
        self.lock().iter().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.entries.lock().expect("in-flight lock")
    }
}

/// One job held by this host, from its read until its outcome is recorded.
pub(super) struct Held {
    entry_id: String,
    _slot: Slot,
    in_flight: InFlight,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.in_flight.lock().remove(&self.entry_id);
        self.in_flight
            .metrics
            .in_flight
            .fetch_sub(1, Ordering::Relaxed);
        // The slot is freed right after, as the field drops.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_held_job_gives_back_its_slot_entry_and_gauge_once_when_dropped() {
        let metrics = Arc::new(Metrics::default());
        let in_flight = InFlight::new(2, metrics.clone());
        let mut slots = in_flight.free_slots(5).await;
        assert_eq!(slots.len(), 2);
        let held = in_flight.hold("1-0", slots.pop().unwrap()).ok().unwrap();
        let again = in_flight.hold("1-0", slots.pop().unwrap());
        assert!(again.is_err(), "an entry is held once");
        drop(again);
        assert_eq!(in_flight.snapshot(), vec!["1-0".to_owned()]);
        assert_eq!(metrics.in_flight.load(Ordering::Relaxed), 1);
        assert_eq!(in_flight.slots.available_permits(), 1);
        drop(held);
        assert!(in_flight.snapshot().is_empty());
        assert_eq!(metrics.in_flight.load(Ordering::Relaxed), 0);
        assert_eq!(in_flight.slots.available_permits(), 2);
    }
}
