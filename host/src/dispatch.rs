//! Job → plugin → outcome: routes a delivery to the plugin for its type, runs
//! it, and applies the retry policy to failures.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::broker::Delivery;
use crate::envelope::{Envelope, now_ms, now_us};
use crate::keys::QueueKeys;
use crate::outcome::{Outcome, RetryPolicy};
use crate::plugins::{InstanceCache, Job, LoadedPlugin, Registry, RunOutcome};

/// Room an entry gets beside its payload, for its other fields (type, ids,
/// times, trace id, reply key), as the largest entry a host takes.
pub const ENTRY_ALLOWANCE: usize = 64 << 10;

/// The largest entry, in bytes of field names and values, a host with this
/// `--max-payload` reads whole; a larger one is dead-lettered without its
/// fields ever reaching the host.
pub fn largest_entry(max_payload: usize) -> usize {
    max_payload.saturating_add(ENTRY_ALLOWANCE)
}

/// A delivery and what became of it, waiting to be recorded.
#[derive(Debug)]
pub struct Finished {
    pub delivery: Delivery,
    pub outcome: Outcome,
    /// The plugin that ran the job, if one did.
    pub plugin: Option<PluginTag>,
    pub duration: Duration,
    /// From the producer's `produced_at` to the dispatch (by the two machines' clocks).
    pub waited: Option<Duration>,
}

/// The rules a dispatcher applies before and after running a job.
#[derive(Debug, Clone, Copy)]
pub struct DispatchPolicy {
    pub retry: RetryPolicy,
    /// An entry delivered more often than this without an ack is poison.
    pub max_deliveries: u64,
    /// A larger payload is dead-lettered without running.
    pub max_payload: usize,
}

/// Which plugin, in which version, ran a job: the loaded plugin itself, which
/// costs a reference count rather than copies of its name and version per job.
#[derive(Clone)]
pub struct PluginTag(Arc<LoadedPlugin>);

impl PluginTag {
    pub fn name(&self) -> &str {
        self.0.name()
    }

    pub fn version(&self) -> &str {
        &self.0.description.version
    }
}

impl std::fmt::Debug for PluginTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.name(), self.version())
    }
}

/// Runs jobs against the current plugin set.
pub struct Dispatcher {
    plugins: Arc<Registry>,
    policy: DispatchPolicy,
}

impl Dispatcher {
    pub fn new(plugins: Arc<Registry>, policy: DispatchPolicy) -> Self {
        Dispatcher { plugins, policy }
    }

    /// Runs one delivery to its outcome. Never panics on bad input: a malformed
    /// entry or a misbehaving plugin is an outcome like any other. `queue`:
    /// the one the delivery came from. `cache` is the calling job thread's
    /// own (instance reuse).
    pub fn dispatch(
        &self,
        delivery: Delivery,
        queue: &QueueKeys,
        cache: &mut InstanceCache,
    ) -> Finished {
        let started = Instant::now();
        let produced_at_us = delivery.job.as_ref().ok().map(Envelope::produced_at_us);
        let waited = produced_at_us.map(|us| Duration::from_micros(now_us().saturating_sub(us)));
        let (outcome, plugin) = match &delivery.job {
            // Malformed, or too large to have been read whole.
            Err(unfit) => (
                Outcome::Dead {
                    reason: unfit.to_string(),
                },
                None,
            ),
            Ok(job) if job.is_expired(now_ms()) => (Outcome::Expired, None),
            // Checked before running: a job that keeps killing its host must stop
            // being handed out.
            Ok(job) if job.payload.len() > self.policy.max_payload => (
                Outcome::Dead {
                    reason: format!(
                        "payload of {} bytes exceeds the limit of {} bytes",
                        job.payload.len(),
                        self.policy.max_payload
                    ),
                },
                None,
            ),
            Ok(_) if delivery.deliveries > self.policy.max_deliveries => (
                Outcome::Dead {
                    reason: format!(
                        "poison: delivered {} times without being acknowledged (it may crash its host)",
                        delivery.deliveries
                    ),
                },
                None,
            ),
            Ok(job) => self.run(job, queue, produced_at_us.unwrap_or(0) / 1000, cache),
        };
        Finished {
            delivery,
            outcome,
            plugin,
            duration: started.elapsed(),
            waited,
        }
    }

    fn run(
        &self,
        envelope: &Envelope,
        queue: &QueueKeys,
        produced_at_ms: u64,
        cache: &mut InstanceCache,
    ) -> (Outcome, Option<PluginTag>) {
        // The set current now: a reload while this job runs does not affect it.
        let plugins = self.plugins.current();
        let plugin = plugins.route(envelope.job_type.as_str());
        // The job's own limit wins over its plugin's, which wins over the host's.
        let max_attempts = envelope
            .max_attempts
            .or(plugin.and_then(|p| p.limits.max_attempts))
            .unwrap_or(self.policy.retry.max_attempts);
        let fail = |error: String| {
            self.policy
                .retry
                .after_failure(envelope.attempt, max_attempts, error, None)
        };
        let Some(plugin) = plugin else {
            // Another host, or a plugin loaded later, may handle it: retry first.
            return (
                fail(format!("no handler for type {}", envelope.job_type)),
                None,
            );
        };
        let job = Job::from_envelope(envelope, max_attempts, produced_at_ms);
        let outcome = match plugin.run(&job, &queue.queue, cache) {
            RunOutcome::Success {
                output,
                follow_ups,
                kv_writes,
            } => Outcome::Done {
                output,
                follow_ups,
                kv_writes,
            },
            RunOutcome::Retry { reason, after } => {
                self.policy
                    .retry
                    .after_failure(envelope.attempt, max_attempts, reason, after)
            }
            RunOutcome::Fatal(error) => Outcome::Dead {
                reason: format!("fatal: {error}"),
            },
        };
        (outcome, Some(PluginTag(plugin.clone())))
    }
}
