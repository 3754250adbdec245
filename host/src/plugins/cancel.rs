//! A job's cancellation: set by whoever cancels it (`jobhost cancel`, seen
//! by the host's watcher), read by the job's wasm code at its epoch checks
//! and by its waiting host calls, which end at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use thiserror::Error;
use tokio::sync::Notify;

/// The job was cancelled while it ran; it traps the guest.
#[derive(Debug, Error)]
#[error("cancelled")]
pub struct Cancelled;

/// Shared between the job and the one who may cancel it; clones share it.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<Signal>);

#[derive(Debug, Default)]
struct Signal {
    set: AtomicBool,
    woken: Notify,
}

impl Cancel {
    /// A signal nobody can set: jobs run by `jobhost invoke` and benchmarks.
    pub fn never() -> Self {
        Cancel::default()
    }

    /// Cancels the job: its code stops at its next epoch check, a host call
    /// waiting now or later returns.
    pub fn set(&self) {
        self.0.set.store(true, Ordering::Release);
        self.0.woken.notify_waiters();
    }

    pub fn is_set(&self) -> bool {
        self.0.set.load(Ordering::Acquire)
    }

    /// Resolves once the job is cancelled.
    pub async fn wait(&self) {
        loop {
            let woken = self.0.woken.notified();
            tokio::pin!(woken);
            // Registered before the check: a `set` after it still wakes this.
            woken.as_mut().enable();
            if self.is_set() {
                return;
            }
            woken.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_waiter_wakes_when_the_job_is_cancelled_even_if_set_before_it_waits() {
        let cancel = Cancel::default();
        let waiter = tokio::spawn({
            let cancel = cancel.clone();
            async move { cancel.wait().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        cancel.set();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), cancel.wait())
            .await
            .expect("already set");
        assert!(!Cancel::never().is_set());
    }
}
