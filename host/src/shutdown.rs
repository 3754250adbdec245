//! The shutdown signal handed to every long-running task, instead of ad-hoc flags.

use tokio::sync::watch;

/// Triggers shutdown once; every [`Shutdown`] made from it sees it.
#[derive(Debug)]
pub struct Trigger(watch::Sender<bool>);

/// Tells a task that the host is stopping.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// A connected trigger and signal.
pub fn channel() -> (Trigger, Shutdown) {
    let (sender, receiver) = watch::channel(false);
    (Trigger(sender), Shutdown(receiver))
}

impl Trigger {
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }

    pub fn subscribe(&self) -> Shutdown {
        Shutdown(self.0.subscribe())
    }
}

impl Shutdown {
    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once shutdown has been triggered (at once if it already was).
    pub async fn wait(&mut self) {
        // An error means the trigger is gone, which also means stop.
        let _ = self.0.wait_for(|stopping| *stopping).await;
    }
}
