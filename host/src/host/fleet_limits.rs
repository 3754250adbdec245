//! Fleet-wide limits asked of Redis from the job threads (`broker/limit.rs`
//! builds the calls, `broker/limit.lua` decides), on the job threads' own
//! way to Redis (`job_redis.rs`).
//!
//! Whatever goes wrong here, a job waits rather than running past a limit or
//! spending an attempt: Redis unreachable, or a limit key of another type
//! (logged once per key, with the fix).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::broker::limit::{self, Decision};
use crate::dispatch::{Admission, FleetLimits};
use crate::envelope::{Envelope, LimitKey};
use crate::keys::QueueKeys;
use crate::metrics::Metrics;
use crate::outcome::{Throttle, concurrency_backoff};
use crate::plugins::LoadedPlugin;

use super::job_redis::{Command, JobRedis};

/// A lease outlives the job's time limit by this much, so a job that runs
/// to its limit still holds its slot; a dead host's slots free after it.
pub const LEASE_MARGIN: Duration = Duration::from_secs(2);
/// How long a job waits when the limits cannot be asked.
const UNAVAILABLE_WAIT: Duration = Duration::from_secs(1);
/// How long one call to Redis may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// Keys logged as unusable, at most: beyond it, more are not remembered
/// (nor logged), so a hostile flood of limit keys cannot grow the set.
const REPORTED_KEYS: usize = 1000;

pub(super) struct RedisLimits {
    redis: Arc<JobRedis>,
    metrics: Arc<Metrics>,
    /// Whether the last call failed: an outage is logged once, not per job.
    failing: AtomicBool,
    reported: Mutex<HashSet<String>>,
}

impl RedisLimits {
    pub(super) fn new(redis: Arc<JobRedis>, metrics: Arc<Metrics>) -> Self {
        RedisLimits {
            redis,
            metrics,
            failing: AtomicBool::new(false),
            reported: Mutex::new(HashSet::new()),
        }
    }

    fn wait(
        &self,
        queue: &QueueKeys,
        plugin: &LoadedPlugin,
        after: Duration,
        reason: String,
        throttle: Throttle,
    ) -> Admission {
        self.metrics
            .job_throttled(&queue.queue, plugin.name(), throttle.label());
        Admission::Wait {
            after,
            reason,
            throttle,
        }
    }

    fn unusable_key(
        &self,
        queue: &QueueKeys,
        plugin: &LoadedPlugin,
        key: String,
        why: String,
    ) -> Admission {
        let mut reported = self.reported.lock().unwrap_or_else(|e| e.into_inner());
        if reported.len() < REPORTED_KEYS && reported.insert(key.clone()) {
            tracing::error!(
                plugin = %plugin.name(), %key,
                "fleet-wide limit key {key} {why}: its jobs wait until it is fixed; delete that key (jobhost recreates it)"
            );
        }
        drop(reported);
        let reason = format!("limit key {key} {why}");
        self.wait(
            queue,
            plugin,
            UNAVAILABLE_WAIT,
            reason,
            Throttle::Unavailable,
        )
    }
}

fn bucket(queue: &QueueKeys, plugin: &LoadedPlugin, job: &Envelope) -> crate::keys::LimitKeys {
    queue.limit(plugin.name(), job.limit_key.as_ref().map(LimitKey::as_str))
}

impl FleetLimits for RedisLimits {
    fn admit(&self, queue: &QueueKeys, plugin: &LoadedPlugin, job: &Envelope) -> Admission {
        let fleet = plugin.limits.fleet;
        // A paid slot still goes through the script: its start must
        // conform to the rate of starts too.
        let rate_paid = job.rate_paid.is_some();
        let keys = bucket(queue, plugin, job);
        let lease = plugin.limits.timeout + LEASE_MARGIN;
        let script = limit::admit(&keys, job.job_id.as_str(), &fleet, lease, rate_paid);
        let decided = self
            .redis
            .call::<Decision>(Instant::now() + CALL_TIMEOUT, Command::Script(script));
        if decided.is_ok() && self.failing.swap(false, Ordering::Relaxed) {
            tracing::info!("fleet-wide limits answer again");
        }
        match decided {
            Ok(Decision::Run) => Admission::Run,
            Ok(Decision::Reserved { wait, slot_ms }) => self.wait(
                queue,
                plugin,
                wait,
                format!(
                    "rate {}: its slot is in {} ms",
                    fleet.rate.map_or_else(String::new, |r| r.to_string()),
                    wait.as_millis()
                ),
                Throttle::Rate { slot_ms },
            ),
            Ok(Decision::Full { running }) => self.wait(
                queue,
                plugin,
                concurrency_backoff(job.throttled),
                format!(
                    "{running} of at most {} running across the fleet",
                    fleet.concurrency.unwrap_or(0)
                ),
                Throttle::Concurrency,
            ),
            Ok(Decision::WrongType { key, reason }) => {
                self.unusable_key(queue, plugin, key, reason)
            }
            Err(failed) => {
                let why = failed.to_text();
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %why, "cannot ask Redis for fleet-wide limits; limited jobs wait until it answers");
                }
                self.wait(
                    queue,
                    plugin,
                    UNAVAILABLE_WAIT,
                    format!("fleet-wide limits unavailable: {why}"),
                    Throttle::Unavailable,
                )
            }
        }
    }

    fn release(&self, queue: &QueueKeys, plugin: &LoadedPlugin, job: &Envelope) {
        let keys = bucket(queue, plugin, job);
        let cmd = limit::release(&keys, job.job_id.as_str());
        if let Err(failed) = self
            .redis
            .call::<i64>(Instant::now() + CALL_TIMEOUT, Command::Cmd(cmd))
        {
            tracing::debug!(
                job_id = %job.job_id, key = %keys.running, error = %failed.to_text(),
                "concurrency slot not released; it ends with its lease"
            );
        }
    }
}
