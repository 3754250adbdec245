//! Running one job of a loaded plugin: in a fresh instance, or in the
//! instance this thread kept from the plugin's previous job (see `reuse.rs`),
//! and what the run came to.

use std::time::Duration;

use super::bindings::{DelayedRetry, Failure, Job};
use super::cancel::{Cancel, Cancelled};
use super::explain::explain;
use super::kv::KvWrite;
use super::load::LoadedPlugin;
use super::reuse::{InstanceCache, WarmInstance};
use super::slots::Slots;
use super::state::{FollowUp, JobState};
use super::store::{fresh_store, restart_store};

/// Largest output a job may return; more is a fatal error, since the same
/// handler would produce it again.
const MAX_OUTPUT: usize = 1 << 20;

/// What one run of a handler came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    Success {
        output: Vec<u8>,
        follow_ups: Vec<FollowUp>,
        /// Committed with the acknowledgement.
        kv_writes: Vec<KvWrite>,
    },
    /// Worth another attempt: the handler said so, or it trapped, timed out or
    /// hit a limit. `after`: the handler asked not to retry sooner.
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// The handler says the job can never succeed.
    Fatal(String),
    /// Cancelled while it ran: stopped where it was.
    Cancelled,
}

impl RunOutcome {
    /// A retry after the host's own backoff.
    pub fn retry(reason: String) -> Self {
        RunOutcome::Retry {
            reason,
            after: None,
        }
    }
}

impl LoadedPlugin {
    /// Runs one job in a fresh instance, or, when the plugin opts into reuse,
    /// in the instance `cache` kept from this thread's previous job of this
    /// load of the plugin. An instance is kept only after a clean success and
    /// for at most `jobs_per_instance` jobs: one that trapped, failed, timed
    /// out or hit a limit is dropped (wasmtime cannot enter it again, and its
    /// state is suspect). `queue`: the job's, whose key-value buckets it uses;
    /// `cancel` stops it wherever it is.
    pub fn run(
        &self,
        job: &Job,
        queue: &str,
        cancel: &Cancel,
        cache: &mut InstanceCache,
    ) -> RunOutcome {
        let _slot = self.running.as_ref().map(Slots::acquire);
        let timeout = self.limits.timeout;
        let (mut store, instance, served) = match cache.take(self.load_id) {
            Some(WarmInstance {
                mut store,
                instance,
                served,
                ..
            }) => {
                restart_store(&mut store, &job.id, timeout);
                (store, instance, served)
            }
            None => {
                // Host-side state this thread kept from a fresh instance of
                // this load has the same memory limit and grants.
                let state = match cache.take_state(self.load_id) {
                    Some(mut state) => {
                        state.recycle(&job.id);
                        state
                    }
                    None => JobState::new(
                        self.name(),
                        &job.id,
                        self.limits.memory_bytes,
                        &self.grants,
                        &self.services,
                    ),
                };
                let mut store = fresh_store(self.pre.engine(), state, timeout);
                match self.pre.instantiate(&mut store) {
                    Ok(instance) => (store, instance, 0),
                    Err(error) => return RunOutcome::retry(explain(&error, store.data(), timeout)),
                }
            }
        };
        store.data_mut().set_queue(queue);
        store.data_mut().set_cancel(cancel);
        let result = instance.handle(&mut store, job);
        store.data().finish_job();
        let secrets = store.data().secrets().clone();
        // A broken key-value limit fails the job whatever the guest made of it.
        let kv_writes = store.data_mut().take_kv_writes();
        let outcome = match result {
            _ if kv_writes.is_err() => RunOutcome::Fatal(kv_writes.err().unwrap_or_default()),
            Ok(Ok(output)) if output.len() > MAX_OUTPUT => RunOutcome::Fatal(format!(
                "output of {} bytes exceeds the limit of {MAX_OUTPUT} bytes",
                output.len()
            )),
            Ok(Ok(output)) => RunOutcome::Success {
                output,
                follow_ups: std::mem::take(&mut store.data_mut().follow_ups),
                kv_writes: kv_writes.unwrap_or_default(),
            },
            Ok(Err(Failure::Retry(reason))) => RunOutcome::retry(secrets.redact_owned(reason)),
            Ok(Err(Failure::RetryAfter(DelayedRetry { reason, delay_ms }))) => RunOutcome::Retry {
                reason: secrets.redact_owned(reason),
                after: Some(Duration::from_millis(delay_ms)),
            },
            Ok(Err(Failure::Fatal(reason))) => RunOutcome::Fatal(secrets.redact_owned(reason)),
            Err(error) if error.is::<Cancelled>() || store.data().is_cancelled() => {
                RunOutcome::Cancelled
            }
            Err(error) => RunOutcome::retry(explain(&error, store.data(), timeout)),
        };
        let served = served + 1;
        if matches!(outcome, RunOutcome::Success { .. }) && served < self.limits.jobs_per_instance {
            cache.keep(WarmInstance {
                load_id: self.load_id,
                store,
                instance,
                served,
            });
        } else {
            // The instance goes (its memory is reset when its slot returns to
            // the pool); the host-side state of its store serves the next one.
            cache.keep_state(self.load_id, store.into_data());
        }
        outcome
    }
}
