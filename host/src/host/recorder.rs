//! Writing outcomes as jobs finish, and the one log line per job.

use std::sync::Arc;

use tokio::sync::mpsc::UnboundedReceiver;

use crate::broker::{BrokerError, KeepResults, Record, Recorded, Redis, Unwritten};
use crate::dispatch::Finished;
use crate::envelope::now_ms;
use crate::keys::QueueKeys;
use crate::metrics::Metrics;
use crate::outcome::Outcome;

use super::RECORD_BATCH;
use super::health::RedisPath;
use super::pool::Done;

/// Writes outcomes as jobs finish, batching what is ready. An outcome that
/// cannot be written is kept and retried until Redis takes it: never dropped.
/// One that Redis can never take (a key of another type) stays pending in
/// the stream, logged as an error, and is reclaimed later. A job stays held
/// (its slot, its heartbeat) until its outcome is written or given up.
pub(super) async fn record_outcomes(
    mut redis: Redis,
    queues: Arc<[QueueKeys]>,
    keep: Option<KeepResults>,
    mut done: UnboundedReceiver<Done>,
    metrics: Arc<Metrics>,
    mut health: RedisPath,
) {
    let mut batch = Vec::with_capacity(RECORD_BATCH);
    while done.recv_many(&mut batch, RECORD_BATCH).await > 0 {
        // One atomic step per queue: a script's keys are one queue's (its
        // hash tag's slot on a Cluster).
        while let Some(queue) = batch.first().map(|done| done.queue) {
            let mut mine = if batch.iter().all(|done| done.queue == queue) {
                std::mem::take(&mut batch)
            } else {
                let (mine, rest) = batch.drain(..).partition(|done| done.queue == queue);
                batch = rest;
                mine
            };
            let keys = &queues[queue];
            record_batch(
                &mut redis,
                keys,
                keep.as_ref(),
                &mut mine,
                &metrics,
                &mut health,
            )
            .await;
            if batch.is_empty() {
                // Keep the allocation for the next batch.
                batch = mine;
            }
        }
    }
}

/// Records `batch`, all of `keys`'s queue, and logs each job.
async fn record_batch(
    redis: &mut Redis,
    keys: &QueueKeys,
    keep: Option<&KeepResults>,
    batch: &mut Vec<Done>,
    metrics: &Metrics,
    health: &mut RedisPath,
) {
    {
        let now_ms = now_ms();
        let records: Vec<Record<'_>> = batch
            .iter()
            .map(|done| Record {
                delivery: &done.finished.delivery,
                outcome: &done.finished.outcome,
                now_ms,
            })
            .collect();
        let recorded = record(redis, keys, &records, keep, health).await;
        drop(records);
        let unique_prefix = keys.unique_prefix();
        for done in batch.drain(..) {
            let entry_id = done.finished.delivery.entry_id.as_str();
            match recorded.held.iter().find(|held| held.entry_id == entry_id) {
                Some(held) => log_held(&done.finished, held),
                None => log_finished(&done.finished, &keys.queue, metrics),
            }
            for skipped in recorded.skipped.iter().filter(|s| s.entry_id == entry_id) {
                log_skipped(&done.finished, skipped, &unique_prefix);
            }
        }
        for skipped in recorded.skipped.iter().filter(|s| s.entry_id.is_empty()) {
            let (key, reason) = (skipped.key.as_str(), skipped.reason.as_str());
            let what = if key == keys.cancelling {
                "cancel requests not cleared"
            } else {
                "outcome counters not updated"
            };
            tracing::warn!(%key, "{what}: key {key} {reason}; rename or delete that key");
        }
    }
}

/// Writes one batch, trying again until Redis takes it.
///
/// Repeating the same batch can neither lose nor double anything: the script
/// is one atomic step, run whole or not at all; if it ran and only its reply
/// was lost, the second run finds those entries no longer pending (XACK
/// answers 0) and writes nothing for them; and a script error can only come
/// before its first write, since every check runs first. Anything else would
/// break that: dropping the batch frees its entries as if recorded, splitting
/// it or acknowledging without the outcome loses jobs, and running the jobs
/// again from here doubles their effects.
async fn record(
    redis: &mut Redis,
    keys: &QueueKeys,
    records: &[Record<'_>],
    keep: Option<&KeepResults>,
    health: &mut RedisPath,
) -> Recorded {
    let mut refused = false;
    loop {
        match redis.record(keys, records, keep).await {
            Ok(recorded) => {
                health.ok();
                return recorded;
            }
            Err(error) => {
                // Redis answered with an error rather than not answering: say so, once.
                if !refused
                    && matches!(&error, BrokerError::Command { error, .. } if error.code().is_some())
                {
                    refused = true;
                    tracing::error!(%error, "Redis refused to record the outcomes (nothing was written); retrying with backoff");
                }
                tokio::time::sleep(health.failed(&error)).await;
            }
        }
    }
}

/// An outcome the script could not write: its entry is still pending, so
/// it is reclaimed and run again once its idle time passes `--claim-idle`.
fn log_held(finished: &Finished, held: &Unwritten) {
    let (job_id, job_type) = match &finished.delivery.job {
        Ok(job) => (job.job_id.as_str(), job.job_type.as_str()),
        Err(_) => (finished.delivery.entry_id.as_str(), ""),
    };
    let key = held.key.as_str();
    let reason = held.reason.as_str();
    tracing::error!(
        %job_id, r#type = %job_type, entry_id = %held.entry_id, %key,
        outcome = %finished.outcome.label(),
        "outcome not recorded: key {key} {reason}; rename or delete that key: the job stays pending and runs again once reclaimed after --claim-idle"
    );
}

/// A write the outcome did not need, skipped: the reply to a waiting
/// producer (who waits until its timeout), or the release of a unique key
/// that holds something other than a job id (left alone).
fn log_skipped(finished: &Finished, skipped: &Unwritten, unique_prefix: &str) {
    let job_id = finished
        .delivery
        .job
        .as_ref()
        .map_or(finished.delivery.entry_id.as_str(), |job| {
            job.job_id.as_str()
        });
    let (key, reason) = (skipped.key.as_str(), skipped.reason.as_str());
    if key.starts_with(unique_prefix) {
        tracing::warn!(
            %job_id, %key,
            "unique key not released: key {key} {reason}; delete that key; the outcome itself is recorded"
        );
    } else {
        tracing::warn!(
            %job_id, %key,
            "reply to the waiting producer skipped: key {key} {reason}; the outcome itself is recorded"
        );
    }
}

fn log_finished(finished: &Finished, queue: &str, metrics: &Metrics) {
    let delivery = &finished.delivery;
    let (job_id, job_type, attempt, trace_id, schedule) = match &delivery.job {
        Ok(job) => (
            job.job_id.as_str(),
            job.job_type.as_str(),
            job.attempt,
            job.trace_id.as_deref().unwrap_or(""),
            // Only on jobs a schedule enqueued (a `None` field is left out).
            job.schedule.as_ref().map(|s| s.name.as_str()),
        ),
        Err(_) => (delivery.entry_id.as_str(), "", 0, "", None),
    };
    let (plugin, version) = finished
        .plugin
        .as_ref()
        .map_or(("-", "-"), |tag| (tag.name(), tag.version()));
    let outcome = finished.outcome.label();
    let duration_us = finished.duration.as_micros() as u64;
    if let Outcome::Wait {
        after,
        reason,
        throttle,
    } = &finished.outcome
    {
        // Counted where it was decided (`jobhost_throttled_total`); at debug,
        // since a throttled backlog would flood the log.
        tracing::debug!(
            %job_id, r#type = %job_type, %plugin, attempt, %outcome, limit = throttle.label(), %queue,
            wait_ms = after.as_millis() as u64, %reason, %trace_id, "job waits for a fleet-wide limit"
        );
        return;
    }
    metrics.job_finished(queue, outcome, job_type, plugin, finished.duration);
    if let Some(waited) = finished.waited {
        metrics.job_waited(waited);
    }
    match &finished.outcome {
        // The keys it wrote, committed with its ack: what an operator looks
        // for when a count seems off.
        Outcome::Done { kv_writes, .. } if !kv_writes.is_empty() => tracing::info!(
            %job_id, r#type = %job_type, %plugin, attempt, %outcome, duration_us, %version, %trace_id, %queue,
            schedule, kv_writes = kv_writes.len(), "job finished"
        ),
        Outcome::Done { .. } | Outcome::Expired | Outcome::Cancelled => tracing::info!(
            %job_id, r#type = %job_type, %plugin, attempt, %outcome, duration_us, %version, %trace_id, %queue,
            schedule, "job finished"
        ),
        Outcome::Retry { after, error } => tracing::warn!(
            %job_id, r#type = %job_type, %plugin, attempt, %outcome, duration_us, %version, %trace_id, %queue,
            schedule, retry_in_ms = after.as_millis() as u64, %error, "job failed"
        ),
        Outcome::Dead { reason } => tracing::error!(
            %job_id, r#type = %job_type, %plugin, attempt, %outcome, duration_us, %version, %trace_id, %queue,
            schedule, %reason, "job dead-lettered"
        ),
        Outcome::Wait { .. } => {}
    }
}
