//! Whether every Redis path the host depends on answers: the reader, the
//! recorder, the heartbeat and the promoter each report through a
//! [`RedisPath`]; `/healthz` is green while the host consumes and no path is
//! failing. The outage and the recovery are logged once each for the host,
//! however many paths notice them.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::backoff::Backoff;
use crate::broker::BrokerError;
use crate::metrics::Metrics;

/// The host's health, shared by its Redis paths.
pub(super) struct Health {
    state: Mutex<State>,
    metrics: Arc<Metrics>,
}

#[derive(Default)]
struct State {
    consuming: bool,
    /// Paths whose last try failed.
    failing: u32,
}

impl Health {
    pub(super) fn new(metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Health {
            state: Mutex::new(State::default()),
            metrics,
        })
    }

    /// The reader started (true) or stopped (false) consuming.
    pub(super) fn set_consuming(&self, consuming: bool) {
        self.update(|state| state.consuming = consuming);
    }

    /// A path of its own for one task that talks to Redis.
    pub(super) fn path(self: &Arc<Self>, name: &'static str) -> RedisPath {
        RedisPath {
            name,
            backoff: Backoff::default(),
            health: self.clone(),
        }
    }

    /// Changes the state and publishes it, under one lock so the published
    /// value is always the latest state's.
    fn update(&self, change: impl FnOnce(&mut State)) {
        let mut state = self.state.lock().expect("health lock");
        change(&mut state);
        let healthy = state.consuming && state.failing == 0;
        self.metrics.healthy.store(healthy, Ordering::Relaxed);
    }
}

/// One task's way to Redis: its failures, its backoff, its share in the
/// host's health.
pub(super) struct RedisPath {
    name: &'static str,
    backoff: Backoff,
    health: Arc<Health>,
}

impl RedisPath {
    /// The last command succeeded.
    pub(super) fn ok(&mut self) {
        if !self.backoff.succeeded() {
            return;
        }
        let metrics = &self.health.metrics;
        self.health.update(|state| {
            state.failing -= 1;
            if state.failing == 0 {
                tracing::info!("Redis reachable again");
                metrics.redis_reconnects.fetch_add(1, Ordering::Relaxed);
            }
        });
    }

    /// The last command failed; returns how long to wait before trying again.
    pub(super) fn failed(&mut self, error: &BrokerError) -> Duration {
        if !self.backoff.is_failing() {
            let path = self.name;
            self.health.update(|state| {
                if state.failing == 0 {
                    tracing::warn!(%error, path, "Redis unreachable; retrying with backoff");
                }
                state.failing += 1;
            });
        }
        self.backoff.failed()
    }
}
