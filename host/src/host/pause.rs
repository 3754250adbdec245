//! Which of the host's queues are paused, as Redis says: read every
//! [`CHECK_EVERY`] (one SMEMBERS for all queues, not a command per job), so
//! every host stops reading a queue within about that plus one blocking read
//! of it being paused.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use crate::broker::{BrokerError, Redis};
use crate::keys::{QueueKeys, paused_queues};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;

use super::health::RedisPath;

const CHECK_EVERY: Duration = Duration::from_millis(250);

/// Per queue of the host, whether it is paused; shared by the watcher and
/// the reader.
#[derive(Clone)]
pub(super) struct Paused {
    flags: Arc<[AtomicBool]>,
    resumed: Arc<Notify>,
}

impl Paused {
    pub(super) fn new(queues: usize) -> Self {
        Paused {
            flags: (0..queues).map(|_| AtomicBool::new(false)).collect(),
            resumed: Arc::default(),
        }
    }

    /// Per queue, whether it may be read now.
    pub(super) fn active(&self) -> Vec<bool> {
        self.flags
            .iter()
            .map(|flag| !flag.load(Ordering::Relaxed))
            .collect()
    }

    /// Waits until some queue is resumed.
    pub(super) async fn resumed(&self) {
        self.resumed.notified().await;
    }

    /// Takes the paused set Redis holds; logs each change.
    fn update(&self, queues: &[QueueKeys], paused: &BTreeSet<String>, metrics: &Metrics) {
        let mut resumed = false;
        for (index, keys) in queues.iter().enumerate() {
            let now = paused.contains(&keys.queue);
            let was = self.flags[index].swap(now, Ordering::Relaxed);
            metrics.set_paused(&keys.queue, now);
            match (was, now) {
                (false, true) => {
                    tracing::info!(queue = %keys.queue, "queue paused: not reading it until it is resumed")
                }
                (true, false) => {
                    resumed = true;
                    tracing::info!(queue = %keys.queue, "queue resumed");
                }
                _ => {}
            }
        }
        if resumed {
            self.resumed.notify_waiters();
        }
    }

    /// Reads the paused set once: a host started while a queue is paused
    /// must not read it, not even once.
    pub(super) async fn load(
        &self,
        redis: &mut Redis,
        namespace: &str,
        queues: &[QueueKeys],
        metrics: &Metrics,
    ) -> Result<(), BrokerError> {
        let paused = redis.paused(namespace).await?;
        self.update(queues, &paused, metrics);
        Ok(())
    }
}

/// Whether the paused set's key holds another type: Redis answers, the
/// key is the problem.
pub(super) fn is_wrong_type(error: &BrokerError) -> bool {
    matches!(error, BrokerError::Command { error, .. } if error.code() == Some("WRONGTYPE"))
}

/// The paused set cannot be read: until it is fixed, every queue is read.
pub(super) fn report_wrong_type(namespace: &str) {
    let key = paused_queues(namespace);
    tracing::error!(%key, "cannot tell which queues are paused: key {key} is not a set; delete it (until then no queue counts as paused)");
}

/// Keeps `paused` up to date until shutdown. While Redis fails, the last
/// known state holds; a key of another type is reported once.
pub(super) async fn watch_paused(
    mut redis: Redis,
    namespace: String,
    queues: Arc<[QueueKeys]>,
    paused: Paused,
    metrics: Arc<Metrics>,
    mut health: RedisPath,
    mut shutdown: Shutdown,
) {
    let mut ticker = tokio::time::interval(CHECK_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reported = false;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.wait() => return,
        }
        match paused.load(&mut redis, &namespace, &queues, &metrics).await {
            Ok(()) => {
                health.ok();
                reported = false;
            }
            Err(error) if is_wrong_type(&error) => {
                health.ok();
                if !std::mem::replace(&mut reported, true) {
                    report_wrong_type(&namespace);
                }
            }
            Err(error) => {
                health.failed(&error);
            }
        }
    }
}
