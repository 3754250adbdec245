//! Feeding the job threads: reading new entries and reclaiming abandoned ones.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::broker::{BrokerError, ClaimCursor, Delivery, Redis};
use crate::keys::QueueKeys;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;

use super::READ_BATCH;
use super::health::RedisPath;
use super::in_flight::{InFlight, Reservation, Slot};
use super::pool::{Pool, Task};

/// Per entry read, room for what a stream stores smaller than it sends:
/// field names shared with the first entry of their node (under 4 KiB, the
/// node's size), and integers.
const ENTRY_SLACK: usize = 4096;

/// Feeds the job threads: reclaims stale entries now and then, reads new
/// ones while there are free slots, until shutdown.
pub(super) struct Reader<'a> {
    /// A handle of its own: its reads block.
    pub(super) redis: Redis,
    pub(super) keys: &'a QueueKeys,
    pub(super) consumer: &'a str,
    pub(super) pool: &'a Pool,
    pub(super) in_flight: InFlight,
    pub(super) claim_idle: Duration,
    /// The largest entry read whole, in bytes ([`crate::dispatch::largest_entry`]).
    pub(super) largest: usize,
    pub(super) metrics: Arc<Metrics>,
    pub(super) health: RedisPath,
}

impl Reader<'_> {
    pub(super) async fn run(&mut self, mut shutdown: Shutdown) {
        let claim_every = self.claim_idle / 2;
        let mut next_claim = Instant::now();
        let mut cursor = ClaimCursor::default();
        // An oversized entry came in the last read: screen the next too.
        let mut oversized = false;
        while !shutdown.is_triggered() {
            let mut slots = tokio::select! {
                slots = self.in_flight.free_slots(READ_BATCH) => slots,
                _ = shutdown.wait() => break,
            };
            // A read asks for no more entries than the budget has room for at
            // the largest size: its reply cannot exceed the free budget.
            let mut reservation = tokio::select! {
                reservation = self.in_flight.reserve(self.largest, slots.len()) => reservation,
                _ = shutdown.wait() => break,
            };
            slots.truncate(reservation.room_for(self.largest));
            if Instant::now() >= next_claim {
                next_claim = Instant::now() + claim_every;
                match self.reclaim(&mut cursor, slots.len()).await {
                    Ok(claimed) => slots = self.submit(claimed, slots, &mut reservation),
                    Err(error) => {
                        if !self.back_off(&error, &mut shutdown).await {
                            break;
                        }
                        continue;
                    }
                }
                if slots.is_empty() {
                    continue;
                }
            }
            let count = slots.len().min(reservation.room_for(self.largest));
            if count == 0 {
                continue;
            }
            let screened = oversized || !self.plain_read_fits(count, reservation.bytes()).await;
            // Not raced against shutdown: a read cut short could leave entries
            // delivered to this consumer that nobody runs until they are reclaimed.
            match self
                .redis
                .read_new(self.keys, self.consumer, count, self.largest, screened)
                .await
            {
                Ok(deliveries) => {
                    self.health.ok();
                    oversized = deliveries.iter().any(Delivery::is_oversized);
                    self.submit(deliveries, slots, &mut reservation);
                }
                Err(error) => {
                    if !self.back_off(&error, &mut shutdown).await {
                        break;
                    }
                }
            }
        }
    }

    /// Whether a plain read of `count` entries cannot bring more than `room`
    /// bytes (this read's share of the budget): the whole stream, as Redis
    /// stores it, fits in it. Entries written between this check and the read
    /// (one round trip) are not covered; a read that brings an oversized one
    /// makes the next read screened. Screening costs Redis about twice the
    /// work of a plain read, so it is kept for a stream larger than the room:
    /// the only one a plain read could overfill the budget from.
    async fn plain_read_fits(&mut self, count: usize, room: usize) -> bool {
        let cap = room;
        match self.redis.stream_bytes(self.keys).await {
            Ok(bytes) => usize::try_from(bytes)
                .unwrap_or(usize::MAX)
                .saturating_add(count.saturating_mul(ENTRY_SLACK))
                .le(&cap),
            // Refused (an ACL without MEMORY) or Redis away: the screened read
            // is right either way, and reports the error.
            Err(_) => false,
        }
    }

    /// Claims entries abandoned by dead or hung hosts, and removes consumers
    /// that are gone and hold nothing.
    async fn reclaim(
        &mut self,
        cursor: &mut ClaimCursor,
        count: usize,
    ) -> Result<Vec<Delivery>, BrokerError> {
        let claimed = self
            .redis
            .claim_stale(
                self.keys,
                self.consumer,
                self.claim_idle,
                cursor,
                count,
                self.largest,
            )
            .await?;
        if !claimed.is_empty() {
            self.metrics
                .reclaimed
                .fetch_add(claimed.len() as u64, Ordering::Relaxed);
            tracing::info!(
                count = claimed.len(),
                "reclaimed entries idle past {}",
                humantime::format_duration(self.claim_idle)
            );
        }
        for name in self
            .redis
            .remove_gone_consumers(self.keys, self.consumer, self.claim_idle * 3)
            .await?
        {
            tracing::info!(consumer = %name, "removed a consumer that is gone and holds no entries");
        }
        Ok(claimed)
    }

    /// Hands deliveries to the pool, one slot and their bytes of the
    /// reservation each; returns the unused slots.
    fn submit(
        &self,
        deliveries: Vec<Delivery>,
        mut slots: Vec<Slot>,
        reservation: &mut Reservation,
    ) -> Vec<Slot> {
        for delivery in deliveries {
            let Some(slot) = slots.pop() else {
                break;
            };
            match self
                .in_flight
                .hold(&delivery.entry_id, slot, reservation, delivery.bytes)
            {
                Ok(held) => {
                    self.pool.submit(Task { delivery, held });
                }
                // Already running here; the reclaim only refreshed it.
                Err(slot) => slots.push(slot),
            }
        }
        slots
    }

    /// Waits out a Redis failure; false when shutdown came first.
    async fn back_off(&mut self, error: &BrokerError, shutdown: &mut Shutdown) -> bool {
        let wait = self.health.failed(error);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.wait() => return false,
        }
        self.redis.reconnect().await;
        // A Redis that restarted without persistence has lost the group too.
        let _ = self.redis.ensure_group(self.keys).await;
        true
    }
}
