//! The tasks beside the job path: heartbeat, delayed jobs, hot reload and the
//! standby generator.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::broker::{Broker, Producer};
use crate::envelope::now_ms;
use crate::generator::{GeneratorConfig, LEASE_TTL, Lease, Role};
use crate::keys::QueueKeys;
use crate::plugins::Registry;
use crate::shutdown::Shutdown;

use super::{InFlight, PROMOTE_EVERY, default_consumer_name};

/// Reloads plugins as their files change, off the job path, until dropped.
pub(super) fn watch_plugins(registry: Arc<Registry>) -> Option<impl Drop> {
    let (changed_tx, mut changed_rx) = tokio::sync::mpsc::unbounded_channel::<Vec<PathBuf>>();
    let watcher = match crate::plugins::watch(registry.dir(), move |files| {
        let _ = changed_tx.send(files);
    }) {
        Ok(watcher) => watcher,
        Err(error) => {
            tracing::warn!(%error, "cannot watch the plugins folder; plugin changes need a restart");
            return None;
        }
    };
    // Ends when the watcher (and with it the sender) is dropped.
    tokio::spawn(async move {
        while let Some(files) = changed_rx.recv().await {
            let registry = registry.clone();
            let _ = tokio::task::spawn_blocking(move || {
                for file in files {
                    registry.reload(&file);
                }
            })
            .await;
        }
    });
    Some(watcher)
}

/// Keeps this host marked alive and its in-flight entries fresh until stopped,
/// beating three times per `claim_idle` so one missed beat costs nothing.
pub(super) async fn heartbeat(
    mut broker: Broker,
    in_flight: InFlight,
    claim_idle: Duration,
    mut stop: Shutdown,
) {
    let mut ticker = tokio::time::interval((claim_idle / 3).max(Duration::from_millis(30)));
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait() => return,
        }
        let ids = in_flight.snapshot();
        if let Err(error) = broker.heartbeat(&ids, claim_idle).await {
            tracing::debug!(%error, "heartbeat failed");
        }
    }
}

/// `--standby-generator`: generates whenever no dedicated generator is alive,
/// until shutdown. A Redis failure is logged and the standby starts over.
pub(super) async fn stand_by_as_generator(
    url: String,
    keys: QueueKeys,
    namespace: String,
    generator: GeneratorConfig,
    mut shutdown: Shutdown,
) {
    let name = format!("jobhost-run-{}", default_consumer_name());
    while !shutdown.is_triggered() {
        let result = match Producer::connect(&url, keys.clone()).await {
            Ok(producer) => {
                let lease = Lease::new(producer.connection(), &namespace, name.clone(), LEASE_TTL);
                crate::generator::run(
                    producer,
                    lease,
                    generator.clone(),
                    Role::Fallback,
                    shutdown.clone(),
                )
                .await
                .map(drop)
            }
            Err(error) => Err(error),
        };
        if let Err(error) = result {
            tracing::warn!(%error, "standby generator stopped; starting over");
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.wait() => return,
            }
        }
    }
}

/// Moves due delayed jobs onto the stream, until shutdown.
pub(super) async fn promote_due_jobs(mut broker: Broker, mut shutdown: Shutdown) {
    let mut ticker = tokio::time::interval(PROMOTE_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.wait() => return,
        }
        // Failures show up in the reader's and recorder's health logs; try again next tick.
        if let Err(error) = broker.promote_due(now_ms()).await {
            tracing::debug!(%error, "moving due jobs failed");
        }
    }
}
