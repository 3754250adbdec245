//! The tasks beside the job path: heartbeat, delayed jobs, hot reload and the
//! standby generator.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::backoff::Backoff;
use crate::broker::Redis;
use crate::envelope::now_ms;
use crate::generator::{GeneratorConfig, LEASE_TTL, Lease, Role};
use crate::keys::QueueKeys;
use crate::plugins::Registry;
use crate::shutdown::Shutdown;

use super::health::RedisPath;
use super::in_flight::InFlight;
use super::{PROMOTE_EVERY, default_consumer_name};

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
/// beating three times per `claim_idle` so one missed beat costs nothing; after
/// a failure it tries again on the backoff, so health turns green soon after
/// Redis does.
pub(super) async fn heartbeat(
    mut redis: Redis,
    queues: Arc<[QueueKeys]>,
    consumer: String,
    in_flight: InFlight,
    claim_idle: Duration,
    mut health: RedisPath,
    mut stop: Shutdown,
) {
    let every = (claim_idle / 3).max(Duration::from_millis(30));
    let mut wait = Duration::ZERO;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait() => return,
        }
        let mut beat = Ok(());
        for (queue, keys) in queues.iter().enumerate() {
            let held = in_flight.snapshot(queue);
            beat = beat.and(redis.heartbeat(keys, &consumer, &held, claim_idle).await);
        }
        wait = match beat {
            Ok(()) => {
                health.ok();
                every
            }
            Err(error) => health.failed(&error).min(every),
        };
    }
}

/// `--standby-generator`: generates whenever no dedicated generator is alive,
/// until shutdown, over the host's own connection. A Redis failure is logged
/// and the standby starts over after a backoff.
pub(super) async fn stand_by_as_generator(
    redis: Redis,
    keys: QueueKeys,
    namespace: String,
    generator: GeneratorConfig,
    mut shutdown: Shutdown,
) {
    let name = format!("jobhost-run-{}", default_consumer_name());
    let mut backoff = Backoff::default();
    while !shutdown.is_triggered() {
        let lease = Lease::new(redis.clone(), &namespace, name.clone(), LEASE_TTL);
        let result = crate::generator::run(
            redis.clone(),
            &keys,
            lease,
            generator.clone(),
            Role::Fallback,
            shutdown.clone(),
        )
        .await;
        match result {
            Ok(_) => backoff.succeeded(),
            Err(error) => {
                tracing::warn!(%error, "standby generator stopped; starting over");
                tokio::select! {
                    _ = tokio::time::sleep(backoff.failed()) => {}
                    _ = shutdown.wait() => return,
                }
                continue;
            }
        };
    }
}

/// Moves due delayed jobs of every queue onto its stream, paused queues
/// too (their jobs wait in the stream), until shutdown.
pub(super) async fn promote_due_jobs(
    mut redis: Redis,
    queues: Arc<[QueueKeys]>,
    mut health: RedisPath,
    mut shutdown: Shutdown,
) {
    let mut ticker = tokio::time::interval(PROMOTE_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reported_wrong_type = vec![false; queues.len()];
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.wait() => return,
        }
        for (keys, reported) in queues.iter().zip(reported_wrong_type.iter_mut()) {
            promote_due(&mut redis, keys, &mut health, reported).await;
        }
    }
}

async fn promote_due(
    redis: &mut Redis,
    keys: &QueueKeys,
    health: &mut RedisPath,
    reported_wrong_type: &mut bool,
) {
    match redis.promote_due(keys, now_ms()).await {
        Ok(Some(_)) => {
            health.ok();
            *reported_wrong_type = false;
        }
        // Redis answers; the key is the problem: say so once, not as an outage.
        Ok(None) => {
            health.ok();
            if !std::mem::replace(reported_wrong_type, true) {
                let key = &keys.delayed;
                tracing::error!(%key, "delayed jobs cannot move: key {key} is not a sorted set; rename or delete it");
            }
        }
        // Try again next tick; the host's health says Redis is failing.
        Err(error) => {
            health.failed(&error);
        }
    }
}
