//! Tells the fleet, off the job path, that this host is alive and what it
//! runs (the registry behind the dashboard's hosts page), and adds the
//! outcomes it recorded to each queue's per-minute history (the dashboard's
//! charts).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::broker::{HostInfo, PluginInfo, Redis};
use crate::envelope::now_ms;
use crate::keys::QueueKeys;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;

/// How often the host renews its entry and publishes its counts.
const PUBLISH_EVERY: Duration = Duration::from_secs(2);
/// A host not heard of for this long is gone (killed, or cut off from Redis).
const ALIVE_FOR: Duration = Duration::from_secs(10);

/// What stays the same for the life of the host.
pub(super) struct Identity {
    pub namespace: String,
    pub consumer: String,
    pub concurrency: usize,
    /// As given: `critical=6`.
    pub served: Vec<String>,
}

/// Publishes every [`PUBLISH_EVERY`] until stopped, then once more (the
/// last outcomes) and leaves the registry. Redis failures are skipped: the
/// counts not yet published go with the next round.
pub(super) async fn publish_presence(
    mut redis: Redis,
    identity: Identity,
    queues: Arc<[QueueKeys]>,
    metrics: Arc<Metrics>,
    mut stop: Shutdown,
) {
    let started_ms = now_ms();
    let mut published: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    loop {
        let stopping = tokio::select! {
            _ = tokio::time::sleep(PUBLISH_EVERY) => false,
            _ = stop.wait() => true,
        };
        publish_history(&mut redis, &queues, &metrics, &mut published).await;
        if stopping {
            let _ = redis
                .deregister_host(&identity.namespace, &identity.consumer)
                .await;
            return;
        }
        let host = describe(&identity, started_ms, &metrics);
        if let Err(error) = redis.register_host(&identity.namespace, &host).await {
            tracing::debug!(%error, "could not renew this host's entry in the registry");
        }
    }
}

fn describe(identity: &Identity, started_ms: u64, metrics: &Metrics) -> HostInfo {
    let now = now_ms();
    let mut outcomes = BTreeMap::new();
    for counts in metrics.outcome_totals().into_values() {
        for (outcome, count) in counts {
            *outcomes.entry(outcome).or_default() += count;
        }
    }
    HostInfo {
        name: identity.consumer.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        pid: std::process::id(),
        started_ms,
        seen_ms: now,
        expires_ms: now + ALIVE_FOR.as_millis() as u64,
        concurrency: identity.concurrency,
        queues: identity.served.clone(),
        plugins: metrics
            .serving()
            .into_iter()
            .map(|(name, (version, hash))| PluginInfo {
                name,
                version,
                hash,
            })
            .collect(),
        outcomes,
        in_flight: metrics.in_flight.load(Ordering::Relaxed),
    }
}

/// Adds what each queue recorded since the last publication to its
/// history of this minute.
async fn publish_history(
    redis: &mut Redis,
    queues: &[QueueKeys],
    metrics: &Metrics,
    published: &mut BTreeMap<String, BTreeMap<String, u64>>,
) {
    let minute = now_ms() / 60_000;
    let totals = metrics.outcome_totals();
    for keys in queues {
        let Some(now) = totals.get(&keys.queue) else {
            continue;
        };
        let before = published.entry(keys.queue.clone()).or_default();
        let added: BTreeMap<String, u64> = now
            .iter()
            .map(|(outcome, count)| {
                let was = before.get(outcome).copied().unwrap_or(0);
                (outcome.clone(), count.saturating_sub(was))
            })
            .filter(|(_, added)| *added > 0)
            .collect();
        if added.is_empty() {
            continue;
        }
        match redis.add_history(keys, minute, &added).await {
            Ok(()) => *before = now.clone(),
            Err(error) => {
                tracing::debug!(queue = %keys.queue, %error, "could not publish the queue's history")
            }
        }
    }
}
