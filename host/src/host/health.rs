//! Whether Redis answers: each change of state logged once, and the backoff.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::broker::BrokerError;
use crate::metrics::Metrics;

use super::MAX_BACKOFF;

/// Tracks whether Redis answers, logging each change of state once, and the
/// backoff before the next try. The reader's health is the host's health.
pub(super) struct Health {
    failures: u32,
    metrics: Option<Arc<Metrics>>,
}

impl Health {
    pub(super) fn new(metrics: Option<Arc<Metrics>>) -> Self {
        Health {
            failures: 0,
            metrics,
        }
    }

    pub(super) fn ok(&mut self) {
        if self.failures > 0 {
            tracing::info!("Redis reachable again");
            if let Some(metrics) = &self.metrics {
                metrics.redis_reconnects.fetch_add(1, Ordering::Relaxed);
                metrics.healthy.store(true, Ordering::Relaxed);
            }
        }
        self.failures = 0;
    }

    pub(super) fn failed(&mut self, error: &BrokerError) -> Duration {
        if self.failures == 0 {
            tracing::warn!(%error, "Redis unreachable; retrying with backoff");
            if let Some(metrics) = &self.metrics {
                metrics.healthy.store(false, Ordering::Relaxed);
            }
        }
        self.failures = self.failures.saturating_add(1);
        let exponent = self.failures.min(8);
        (Duration::from_millis(50) * (1 << exponent)).min(MAX_BACKOFF)
    }
}
