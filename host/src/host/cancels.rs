//! Stopping the jobs of this host that `jobhost cancel` marked: each queue's
//! `cancelling` hash is read every [`CHECK_EVERY`], and the signal of every
//! marked job this host holds is set. A marked job not started yet never
//! runs; a running one stops at its next epoch check or waiting host call.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::broker::{BrokerError, Redis};
use crate::keys::QueueKeys;
use crate::plugins::Cancel;
use crate::shutdown::Shutdown;

use super::health::RedisPath;

/// How often a host reads the marks: with the 50 ms epoch check, a running
/// job stops within about 150 ms of `jobhost cancel`.
const CHECK_EVERY: Duration = Duration::from_millis(100);

/// The jobs this host holds and the marks last read, per queue.
#[derive(Default)]
pub(super) struct Cancels {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// (queue index, job id) → the job's signal.
    held: HashMap<(usize, String), Cancel>,
    /// Per queue index: the job ids marked when last read.
    marked: HashMap<usize, HashSet<String>>,
}

/// A job's place in [`Cancels`] while this host holds it.
pub(super) struct Tracked {
    cancels: Arc<Cancels>,
    key: Option<(usize, String)>,
    pub(super) cancel: Cancel,
}

impl Cancels {
    /// Tracks job `job_id` of queue `queue` until the guard drops; its signal
    /// is set already when the job is marked. `None` (an entry without a
    /// readable job) gets a signal nobody sets.
    pub(super) fn track(self: &Arc<Self>, queue: usize, job_id: Option<&str>) -> Tracked {
        let cancel = Cancel::default();
        let key = job_id.map(|id| (queue, id.to_owned()));
        if let Some(key) = &key {
            let mut state = self.lock();
            if state
                .marked
                .get(&queue)
                .is_some_and(|ids| ids.contains(&key.1))
            {
                cancel.set();
            }
            state.held.insert(key.clone(), cancel.clone());
        }
        Tracked {
            cancels: self.clone(),
            key,
            cancel,
        }
    }

    /// The marks of queue `queue` now: cancels every marked job held here.
    fn update(&self, queue: usize, marked: HashSet<String>) {
        let mut state = self.lock();
        for id in &marked {
            if let Some(cancel) = state.held.get(&(queue, id.clone())) {
                cancel.set();
            }
        }
        state.marked.insert(queue, marked);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("cancels lock")
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.cancels.lock().held.remove(&key);
        }
    }
}

/// Reads every queue's marks until shutdown. While Redis fails the last
/// marks hold; a key of another type is reported once per queue.
pub(super) async fn watch_cancels(
    mut redis: Redis,
    queues: Arc<[QueueKeys]>,
    cancels: Arc<Cancels>,
    mut health: RedisPath,
    mut shutdown: Shutdown,
) {
    let mut ticker = tokio::time::interval(CHECK_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reported = vec![false; queues.len()];
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.wait() => return,
        }
        match read_marks(&mut redis, &queues, &cancels, &mut reported).await {
            Ok(()) => health.ok(),
            Err(error) => {
                health.failed(&error);
            }
        }
    }
}

/// Reads every queue's marks once: at start, before any job is read (so a
/// marked job this host reclaims never starts), then from the watcher.
pub(super) async fn read_marks(
    redis: &mut Redis,
    queues: &[QueueKeys],
    cancels: &Cancels,
    reported: &mut [bool],
) -> Result<(), BrokerError> {
    for (queue, keys) in queues.iter().enumerate() {
        let read: Result<HashSet<String>, BrokerError> =
            redis.query(redis::cmd("HKEYS").arg(&keys.cancelling)).await;
        match read {
            Ok(marked) => {
                reported[queue] = false;
                cancels.update(queue, marked);
            }
            Err(BrokerError::Command { error, .. }) if error.code() == Some("WRONGTYPE") => {
                if !std::mem::replace(&mut reported[queue], true) {
                    let key = &keys.cancelling;
                    tracing::error!(%key, "cannot tell which jobs are cancelled: key {key} is not a hash; delete it (until then no running job can be cancelled)");
                }
            }
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marked_job_is_cancelled_whether_it_was_held_before_or_after_the_mark() {
        let cancels = Arc::new(Cancels::default());
        let before = cancels.track(0, Some("a"));
        let other_queue = cancels.track(1, Some("a"));
        assert!(!before.cancel.is_set());
        cancels.update(0, HashSet::from(["a".to_owned(), "b".to_owned()]));
        assert!(before.cancel.is_set());
        assert!(!other_queue.cancel.is_set(), "job ids are per queue");
        let after = cancels.track(0, Some("b"));
        assert!(after.cancel.is_set());
        assert!(!cancels.track(0, None).cancel.is_set());
        drop(before);
        assert!(!cancels.lock().held.contains_key(&(0, "a".to_owned())));
    }
}
