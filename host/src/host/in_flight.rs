//! What a job holds while this host has it: a slot of the in-flight limit,
//! its entry's bytes in the byte budget (`--max-held-bytes`), its entry id in
//! the set the heartbeat keeps fresh, and its count in the in-flight and
//! held-bytes gauges — all owned by one [`Held`] guard and given back
//! together, once, when the guard drops after the job's outcome is recorded.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::metrics::Metrics;

/// The jobs this host holds, and the limits on how many and how many bytes.
#[derive(Clone)]
pub(super) struct InFlight {
    slots: Arc<Semaphore>,
    held: Arc<Mutex<Holdings>>,
    /// Wakes a reader waiting for budget when bytes come back.
    freed: Arc<Notify>,
    metrics: Arc<Metrics>,
}

struct Holdings {
    /// (queue index, entry id) → since when it is held (ms since the Unix
    /// epoch): entry ids are unique within a stream only.
    entries: HashMap<(usize, String), u64>,
    /// Bytes of the budget neither held nor reserved for a read.
    free_bytes: usize,
}

/// Budget set aside for one read: enough for `units` entries of the largest
/// size, so the read's reply can never exceed it. What its entries do not
/// take goes back when it drops.
pub(super) struct Reservation {
    bytes: usize,
    in_flight: InFlight,
}

/// A free place for one more job, taken before its entry is read.
pub(super) struct Slot {
    _permit: OwnedSemaphorePermit,
}

impl InFlight {
    /// At most `limit` jobs and `max_bytes` bytes of entries held at once.
    pub(super) fn new(limit: usize, max_bytes: usize, metrics: Arc<Metrics>) -> Self {
        InFlight {
            slots: Arc::new(Semaphore::new(limit.max(1))),
            held: Arc::new(Mutex::new(Holdings {
                entries: HashMap::new(),
                free_bytes: max_bytes,
            })),
            freed: Arc::default(),
            metrics,
        }
    }

    /// Waits until the budget has room for one entry of `largest` bytes, then
    /// reserves room for as many as fit, up to `max`.
    pub(super) async fn reserve(&self, largest: usize, max: usize) -> Reservation {
        let largest = largest.max(1);
        loop {
            let freed = self.freed.notified();
            {
                let mut held = self.lock();
                let units = (held.free_bytes / largest).min(max);
                if units > 0 {
                    held.free_bytes -= units * largest;
                    return Reservation {
                        bytes: units * largest,
                        in_flight: self.clone(),
                    };
                }
            }
            // A release after the check above still wakes this: `notify_one`
            // keeps its permit for the next wait.
            freed.await;
        }
    }

    fn give_back(&self, bytes: usize) {
        if bytes > 0 {
            self.lock().free_bytes += bytes;
            self.freed.notify_one();
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

    /// Holds the job of `entry_id` of queue `queue` in `slot` and `bytes` of
    /// `reservation`; gives the slot back when this host already holds that
    /// entry (a reclaim of its own entry).
    pub(super) fn hold(
        &self,
        queue: usize,
        entry_id: &str,
        slot: Slot,
        reservation: &mut Reservation,
        bytes: usize,
    ) -> Result<Held, Slot> {
        match self.lock().entries.entry((queue, entry_id.to_owned())) {
            std::collections::hash_map::Entry::Occupied(_) => return Err(slot),
            std::collections::hash_map::Entry::Vacant(place) => {
                place.insert(crate::envelope::now_ms());
            }
        }
        // A read asks for no more entries than its reservation has room for
        // at the largest size, so this never takes more than is reserved.
        let bytes = bytes.min(reservation.bytes);
        reservation.bytes -= bytes;
        self.metrics.in_flight.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .held_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
        Ok(Held {
            queue,
            entry_id: entry_id.to_owned(),
            bytes,
            _slot: slot,
            in_flight: self.clone(),
        })
    }

    /// The entries of queue `queue` held now and since when, for the heartbeat.
    pub(super) fn snapshot(&self, queue: usize) -> Vec<(String, u64)> {
        self.lock()
            .entries
            .iter()
            .filter(|((q, _), _)| *q == queue)
            .map(|((_, id), since)| (id.clone(), *since))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Holdings> {
        self.held.lock().expect("in-flight lock")
    }
}

impl Reservation {
    /// The bytes still reserved.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// How many more entries of `largest` bytes fit.
    pub(super) fn room_for(&self, largest: usize) -> usize {
        self.bytes / largest.max(1)
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.in_flight.give_back(self.bytes);
    }
}

/// One job held by this host, from its read until its outcome is recorded.
pub(super) struct Held {
    queue: usize,
    entry_id: String,
    bytes: usize,
    _slot: Slot,
    in_flight: InFlight,
}

impl Drop for Held {
    fn drop(&mut self) {
        let entry = (self.queue, std::mem::take(&mut self.entry_id));
        self.in_flight.lock().entries.remove(&entry);
        self.in_flight.give_back(self.bytes);
        let metrics = &self.in_flight.metrics;
        metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
        metrics
            .held_bytes
            .fetch_sub(self.bytes as u64, Ordering::Relaxed);
        // The slot is freed right after, as the field drops.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_held_job_gives_back_its_slot_bytes_entry_and_gauges_once_when_dropped() {
        let metrics = Arc::new(Metrics::default());
        let in_flight = InFlight::new(2, 100, metrics.clone());
        let mut slots = in_flight.free_slots(5).await;
        assert_eq!(slots.len(), 2);
        let mut reservation = in_flight.reserve(40, 5).await;
        assert_eq!(reservation.room_for(40), 2);
        let held = in_flight
            .hold(0, "1-0", slots.pop().unwrap(), &mut reservation, 30)
            .ok()
            .unwrap();
        let again = in_flight.hold(0, "1-0", slots.pop().unwrap(), &mut reservation, 30);
        assert!(again.is_err(), "an entry is held once");
        drop(again);
        drop(reservation);
        let held_ids: Vec<String> = in_flight
            .snapshot(0)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(held_ids, vec!["1-0".to_owned()]);
        assert!(in_flight.snapshot(1).is_empty());
        assert_eq!(metrics.in_flight.load(Ordering::Relaxed), 1);
        assert_eq!(metrics.held_bytes.load(Ordering::Relaxed), 30);
        assert_eq!(in_flight.slots.available_permits(), 1);
        assert_eq!(in_flight.lock().free_bytes, 70);
        drop(held);
        assert!(in_flight.snapshot(0).is_empty());
        assert_eq!(metrics.in_flight.load(Ordering::Relaxed), 0);
        assert_eq!(metrics.held_bytes.load(Ordering::Relaxed), 0);
        assert_eq!(in_flight.slots.available_permits(), 2);
        assert_eq!(in_flight.lock().free_bytes, 100);
    }

    #[tokio::test]
    async fn a_read_waits_for_budget_until_a_held_entry_gives_its_bytes_back() {
        let in_flight = InFlight::new(4, 100, Arc::new(Metrics::default()));
        let mut slots = in_flight.free_slots(4).await;
        let mut reservation = in_flight.reserve(60, 4).await;
        assert_eq!(
            reservation.room_for(60),
            1,
            "one entry of the largest size fits"
        );
        let held = in_flight
            .hold(0, "1-0", slots.pop().unwrap(), &mut reservation, 50)
            .ok()
            .unwrap();
        drop(reservation);
        let waiting = tokio::spawn({
            let in_flight = in_flight.clone();
            async move { in_flight.reserve(60, 4).await.room_for(60) }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "50 bytes free: no room for 60");
        drop(held);
        let room = tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("woken when the bytes came back")
            .unwrap();
        assert_eq!(room, 1);
    }
}
