//! Feeding the job threads: reading new entries and reclaiming abandoned ones.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::broker::{Broker, BrokerError, Delivery};
use crate::metrics::Metrics;
use crate::pool::{Pool, Task};
use crate::shutdown::Shutdown;

use super::health::Health;
use super::{InFlight, READ_BATCH};

/// Feeds the job threads: reclaims stale entries now and then, reads new
/// ones while there are free slots, until shutdown.
pub(super) struct Reader<'a> {
    pub(super) broker: &'a mut Broker,
    pub(super) pool: &'a Pool,
    pub(super) slots: Arc<Semaphore>,
    pub(super) in_flight: InFlight,
    pub(super) claim_idle: Duration,
    pub(super) metrics: Arc<Metrics>,
}

impl Reader<'_> {
    pub(super) async fn run(&mut self, mut shutdown: Shutdown) {
        let mut health = Health::new(Some(self.metrics.clone()));
        let claim_every = self.claim_idle / 2;
        let mut next_claim = Instant::now();
        while !shutdown.is_triggered() {
            let first = tokio::select! {
                permit = self.slots.clone().acquire_owned() => permit.expect("the slot semaphore is never closed"),
                _ = shutdown.wait() => break,
            };
            let mut permits = vec![first];
            while permits.len() < READ_BATCH {
                match self.slots.clone().try_acquire_owned() {
                    Ok(permit) => permits.push(permit),
                    Err(_) => break,
                }
            }
            if Instant::now() >= next_claim {
                next_claim = Instant::now() + claim_every;
                match self.reclaim(permits.len()).await {
                    Ok(claimed) => permits = self.submit(claimed, permits),
                    Err(error) => {
                        if !self.back_off(&mut health, &error, &mut shutdown).await {
                            break;
                        }
                        continue;
                    }
                }
                if permits.is_empty() {
                    continue;
                }
            }
            // Not raced against shutdown: a read cut short could leave entries
            // delivered to this consumer that nobody runs until they are reclaimed.
            match self.broker.read_new(permits.len()).await {
                Ok(deliveries) => {
                    health.ok();
                    self.submit(deliveries, permits);
                }
                Err(error) => {
                    if !self.back_off(&mut health, &error, &mut shutdown).await {
                        break;
                    }
                }
            }
        }
    }

    /// Claims entries abandoned by dead or hung hosts, and removes consumers
    /// that are gone and hold nothing.
    async fn reclaim(&mut self, count: usize) -> Result<Vec<Delivery>, BrokerError> {
        let claimed = self.broker.claim_stale(self.claim_idle, count).await?;
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
            .broker
            .remove_gone_consumers(self.claim_idle * 3)
            .await?
        {
            tracing::info!(consumer = %name, "removed a consumer that is gone and holds no entries");
        }
        Ok(claimed)
    }

    /// Hands deliveries to the pool, one slot each; returns the unused slots.
    fn submit(
        &self,
        deliveries: Vec<Delivery>,
        mut permits: Vec<OwnedSemaphorePermit>,
    ) -> Vec<OwnedSemaphorePermit> {
        for delivery in deliveries {
            if !self.in_flight.insert(&delivery.entry_id) {
                continue; // Already running here; the reclaim only refreshed it.
            }
            let Some(permit) = permits.pop() else {
                break;
            };
            self.metrics.in_flight.fetch_add(1, Ordering::Relaxed);
            self.pool.submit(Task { delivery, permit });
        }
        permits
    }

    /// Waits out a Redis failure; false when shutdown came first.
    async fn back_off(
        &mut self,
        health: &mut Health,
        error: &BrokerError,
        shutdown: &mut Shutdown,
    ) -> bool {
        let wait = health.failed(error);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.wait() => return false,
        }
        self.broker.reconnect_reader().await;
        // A Redis that restarted without persistence has lost the group too.
        let _ = self.broker.ensure_group().await;
        true
    }
}
