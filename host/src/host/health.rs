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

#[cfg(test)]
mod tests {
    use super::*;

    fn error() -> BrokerError {
        BrokerError::Url {
            url: "redis://x".into(),
            reason: "down".into(),
        }
    }

    #[test]
    fn the_host_is_healthy_only_while_consuming_and_no_path_fails() {
        let metrics = Arc::new(Metrics::default());
        let healthy = || metrics.healthy.load(Ordering::Relaxed);
        let health = Health::new(metrics.clone());
        let (mut reader, mut recorder) = (health.path("reader"), health.path("recorder"));
        assert!(!healthy(), "not before consuming");
        health.set_consuming(true);
        assert!(healthy());
        recorder.failed(&error());
        assert!(!healthy(), "a failing recorder turns the host red");
        reader.failed(&error());
        recorder.ok();
        assert!(!healthy(), "red while any path fails");
        reader.ok();
        assert!(healthy());
        assert_eq!(metrics.redis_reconnects.load(Ordering::Relaxed), 1);
        health.set_consuming(false);
        assert!(!healthy());
    }

    #[test]
    fn repeated_failures_of_one_path_count_once_and_back_off() {
        let metrics = Arc::new(Metrics::default());
        let health = Health::new(metrics.clone());
        health.set_consuming(true);
        let mut reader = health.path("reader");
        let first = reader.failed(&error());
        let second = reader.failed(&error());
        assert!(second > first, "{second:?} after {first:?}");
        reader.ok();
        assert!(metrics.healthy.load(Ordering::Relaxed));
    }
}
