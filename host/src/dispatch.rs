//! Job → plugin → outcome: routes a delivery to the plugin for its type,
//! holds it back while a fleet-wide limit of the plugin says wait, runs it,
//! and applies the retry policy to failures.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::broker::Delivery;
use crate::envelope::{Envelope, now_ms, now_us};
use crate::keys::QueueKeys;
use crate::outcome::{Outcome, RetryPolicy, Throttle};
use crate::plugins::{Cancel, InstanceCache, Job, LoadedPlugin, Registry, RunOutcome};

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

/// The fleet-wide limits of plugins (`rate`, `fleet_concurrency`), agreed
/// by every host: asked, from a job thread, only for jobs of a plugin that
/// declares one. The host's implementation asks Redis
/// (`host/fleet_limits.rs`); [`NoFleetLimits`] lets everything run.
pub trait FleetLimits: Send + Sync {
    /// Whether `job` of `plugin` in queue `queue` may start now. On
    /// [`Admission::Run`] under a concurrency cap the job holds a slot until
    /// [`FleetLimits::release`].
    fn admit(&self, queue: &QueueKeys, plugin: &LoadedPlugin, job: &Envelope) -> Admission;

    /// `job`'s run is over: its concurrency slot is free (best effort: a
    /// slot not released ends with its lease).
    fn release(&self, queue: &QueueKeys, plugin: &LoadedPlugin, job: &Envelope);
}

/// What the fleet-wide limits say about one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    Run,
    /// Not now: it waits `after` without spending an attempt.
    Wait {
        after: Duration,
        reason: String,
        throttle: Throttle,
    },
}

/// Fleet-wide limits that never hold a job back (`jobhost invoke`, tests).
pub struct NoFleetLimits;

impl FleetLimits for NoFleetLimits {
    fn admit(&self, _: &QueueKeys, _: &LoadedPlugin, _: &Envelope) -> Admission {
        Admission::Run
    }

    fn release(&self, _: &QueueKeys, _: &LoadedPlugin, _: &Envelope) {}
}

/// A running job's concurrency slot, released when the run is over however
/// it ended.
struct Slot<'a> {
    limits: &'a dyn FleetLimits,
    queue: &'a QueueKeys,
    plugin: &'a LoadedPlugin,
    job: &'a Envelope,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.limits.release(self.queue, self.plugin, self.job);
    }
}

/// Runs jobs against the current plugin set.
pub struct Dispatcher {
    plugins: Arc<Registry>,
    policy: DispatchPolicy,
    limits: Arc<dyn FleetLimits>,
}

impl Dispatcher {
    /// A dispatcher without fleet-wide limits ([`NoFleetLimits`]).
    pub fn new(plugins: Arc<Registry>, policy: DispatchPolicy) -> Self {
        Dispatcher {
            plugins,
            policy,
            limits: Arc::new(NoFleetLimits),
        }
    }

    /// The same, asking `limits` before running a job of a limited plugin.
    pub fn with_fleet_limits(mut self, limits: Arc<dyn FleetLimits>) -> Self {
        self.limits = limits;
        self
    }

    /// Runs one delivery to its outcome. Never panics on bad input: a malformed
    /// entry or a misbehaving plugin is an outcome like any other. `cache` is
    /// the calling job thread's own (instance reuse); `queue` the keys of the
    /// queue the delivery came from.
    pub fn dispatch(
        &self,
        delivery: Delivery,
        queue: &QueueKeys,
        cancel: &Cancel,
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
            // Cancelled before it started: it never runs.
            Ok(_) if cancel.is_set() => (Outcome::Cancelled, None),
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
            Ok(job) => self.run(
                job,
                queue,
                produced_at_us.unwrap_or(0) / 1000,
                cancel,
                cache,
            ),
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
        cancel: &Cancel,
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
        // Unlimited plugins (most) ask nobody: no Redis call, no allocation.
        let fleet = plugin.limits.fleet;
        let _slot = if fleet.is_limited() {
            match self.limits.admit(queue, plugin, envelope) {
                Admission::Run => fleet.concurrency.is_some().then_some(Slot {
                    limits: &*self.limits,
                    queue,
                    plugin,
                    job: envelope,
                }),
                Admission::Wait {
                    after,
                    reason,
                    throttle,
                } => {
                    let outcome = Outcome::Wait {
                        after,
                        reason,
                        throttle,
                    };
                    return (outcome, Some(PluginTag(plugin.clone())));
                }
            }
        } else {
            None
        };
        let job = Job::from_envelope(envelope, max_attempts, produced_at_ms);
        let outcome = match plugin.run(&job, &queue.queue, cancel, cache) {
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
            RunOutcome::Cancelled => Outcome::Cancelled,
        };
        (outcome, Some(PluginTag(plugin.clone())))
    }
}
