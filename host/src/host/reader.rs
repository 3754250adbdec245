//! Feeding the job threads: reading new entries and reclaiming abandoned ones.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::broker::{BrokerError, ClaimCursor, Delivery, READ_BLOCK, Redis};
use crate::keys::QueueKeys;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;

use super::READ_BATCH;
use super::health::RedisPath;
use super::in_flight::{InFlight, Reservation, Slot};
use super::pause::Paused;
use super::pool::{Pool, Task};
use super::queues::ReadPlan;

/// Per entry read, room for what a stream stores smaller than it sends:
/// field names shared with the first entry of their node (under 4 KiB, the
/// node's size), and integers.
const ENTRY_SLACK: usize = 4096;

/// Feeds the job threads: reclaims stale entries now and then, reads new
/// ones while there are free slots, until shutdown. With several queues,
/// [`ReadPlan`] says which queue each free slot goes to; paused queues are
/// not read (nor reclaimed from) until resumed.
pub(super) struct Reader<'a> {
    /// A handle of its own: its reads block.
    pub(super) redis: Redis,
    pub(super) queues: &'a [QueueKeys],
    pub(super) plan: ReadPlan,
    pub(super) paused: Paused,
    pub(super) consumer: &'a str,
    pub(super) pool: &'a Pool,
    pub(super) in_flight: InFlight,
    pub(super) claim_idle: Duration,
    /// The largest entry read whole, in bytes ([`crate::dispatch::largest_entry`]).
    pub(super) largest: usize,
    pub(super) metrics: Arc<Metrics>,
    pub(super) health: RedisPath,
}

/// A Redis failure cut the round short.
struct Failed(BrokerError);

impl Reader<'_> {
    pub(super) async fn run(&mut self, mut shutdown: Shutdown) {
        let claim_every = self.claim_idle / 2;
        let mut next_claim = Instant::now();
        let mut cursors = vec![ClaimCursor::default(); self.queues.len()];
        // Per queue, an oversized entry came in its last read: screen the next too.
        let mut oversized = vec![false; self.queues.len()];
        while !shutdown.is_triggered() {
            let active = self.paused.active();
            if !active.contains(&true) {
                tokio::select! {
                    _ = self.paused.resumed() => {}
                    _ = tokio::time::sleep(READ_BLOCK) => {}
                    _ = shutdown.wait() => break,
                }
                continue;
            }
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
            let round = async {
                if Instant::now() >= next_claim {
                    next_claim = Instant::now() + claim_every;
                    for (queue, cursor) in cursors.iter_mut().enumerate() {
                        if active[queue] && !slots.is_empty() {
                            let claimed = self.reclaim(queue, cursor, slots.len()).await?;
                            slots = self.submit(queue, claimed, slots, &mut reservation);
                        }
                    }
                    if slots.is_empty() {
                        return Ok(());
                    }
                }
                self.read(&active, slots, &mut reservation, &mut oversized)
                    .await
            };
            if let Err(Failed(error)) = round.await
                && !self.back_off(&error, &mut shutdown).await
            {
                break;
            }
        }
    }

    /// Reads new entries into `slots`: each queue its share (see
    /// [`ReadPlan`]), what an empty queue leaves to the next by precedence,
    /// and when every active queue is empty, one wait on all of them.
    /// Not raced against shutdown: a read cut short could leave entries
    /// delivered to this consumer that nobody runs until they are reclaimed.
    async fn read(
        &mut self,
        active: &[bool],
        mut slots: Vec<Slot>,
        reservation: &mut Reservation,
        oversized: &mut [bool],
    ) -> Result<(), Failed> {
        let count = slots.len().min(reservation.room_for(self.largest));
        if count == 0 {
            return Ok(());
        }
        let mut empty: Vec<bool> = active.iter().map(|a| !a).collect();
        let mut shares = self.plan.allocate(count, active).into_iter();
        let mut read = 0;
        while read < count {
            // Each queue its share first, then what is left to the first
            // queue by precedence not found empty.
            let (queue, want) = match shares.next() {
                Some(share) => share,
                None => match self.plan.order().iter().find(|&&q| !empty[q]) {
                    Some(&queue) => (queue, count - read),
                    None => break,
                },
            };
            let want = want.min(count - read);
            let screened =
                oversized[queue] || !self.plain_read_fits(queue, want, reservation.bytes()).await;
            let deliveries = self
                .redis
                .read_new(
                    &self.queues[queue],
                    self.consumer,
                    want,
                    self.largest,
                    screened,
                    false,
                )
                .await
                .map_err(Failed)?;
            self.health.ok();
            oversized[queue] = deliveries.iter().any(Delivery::is_oversized);
            empty[queue] |= deliveries.len() < want;
            read += deliveries.len();
            slots = self.submit(queue, deliveries, slots, reservation);
        }
        if read > 0 {
            return Ok(());
        }
        // Everything was empty: wait for the first new entry of any queue,
        // at most one per queue and no more than there are slots for.
        let waiting: Vec<usize> = self
            .plan
            .order()
            .iter()
            .copied()
            .filter(|&q| active[q])
            .take(count)
            .collect();
        let keys: Vec<&QueueKeys> = waiting.iter().map(|&q| &self.queues[q]).collect();
        let deliveries = self
            .redis
            .wait_new(&keys, self.consumer, self.largest)
            .await
            .map_err(Failed)?;
        self.health.ok();
        for (index, delivery) in deliveries {
            let queue = waiting[index];
            oversized[queue] = delivery.is_oversized();
            slots = self.submit(queue, vec![delivery], slots, reservation);
        }
        Ok(())
    }

    /// Whether a plain read of `count` entries cannot bring more than `room`
    /// bytes (this read's share of the budget): the whole stream, as Redis
    /// stores it, fits in it. Entries written between this check and the read
    /// (one round trip) are not covered; a read that brings an oversized one
    /// makes the next read screened. Screening costs Redis about twice the
    /// work of a plain read, so it is kept for a stream larger than the room:
    /// the only one a plain read could overfill the budget from.
    async fn plain_read_fits(&mut self, queue: usize, count: usize, room: usize) -> bool {
        let cap = room;
        match self.redis.stream_bytes(&self.queues[queue]).await {
            Ok(bytes) => usize::try_from(bytes)
                .unwrap_or(usize::MAX)
                .saturating_add(count.saturating_mul(ENTRY_SLACK))
                .le(&cap),
            // Refused (an ACL without MEMORY) or Redis away: the screened read
            // is right either way, and reports the error.
            Err(_) => false,
        }
    }

    /// Claims entries of `queue` abandoned by dead or hung hosts, and
    /// removes consumers that are gone and hold nothing.
    async fn reclaim(
        &mut self,
        queue: usize,
        cursor: &mut ClaimCursor,
        count: usize,
    ) -> Result<Vec<Delivery>, Failed> {
        let keys = &self.queues[queue];
        let claimed = self
            .redis
            .claim_stale(
                keys,
                self.consumer,
                self.claim_idle,
                cursor,
                count,
                self.largest,
            )
            .await
            .map_err(Failed)?;
        if !claimed.is_empty() {
            self.metrics
                .reclaimed
                .fetch_add(claimed.len() as u64, Ordering::Relaxed);
            tracing::info!(
                count = claimed.len(),
                queue = %keys.queue,
                "reclaimed entries idle past {}",
                humantime::format_duration(self.claim_idle)
            );
        }
        for name in self
            .redis
            .remove_gone_consumers(keys, self.consumer, self.claim_idle * 3)
            .await
            .map_err(Failed)?
        {
            tracing::info!(consumer = %name, "removed a consumer that is gone and holds no entries");
        }
        Ok(claimed)
    }

    /// Hands deliveries to the pool, one slot and their bytes of the
    /// reservation each; returns the unused slots.
    fn submit(
        &self,
        queue: usize,
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
                .hold(queue, &delivery.entry_id, slot, reservation, delivery.bytes)
            {
                Ok(held) => {
                    self.pool.submit(Task {
                        queue,
                        delivery,
                        held,
                    });
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
        // A Redis that restarted without persistence has lost the groups too.
        for keys in self.queues {
            let _ = self.redis.ensure_group(keys).await;
        }
        true
    }
}
