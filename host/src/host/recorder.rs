//! Writing outcomes as jobs finish, and the one log line per job.

use std::sync::Arc;

use tokio::sync::mpsc::UnboundedReceiver;

use crate::broker::{Record, Redis};
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
/// A job stays held (its slot, its heartbeat) until its outcome is written.
pub(super) async fn record_outcomes(
    mut redis: Redis,
    keys: QueueKeys,
    mut done: UnboundedReceiver<Done>,
    metrics: Arc<Metrics>,
    mut health: RedisPath,
) {
    let mut batch = Vec::with_capacity(RECORD_BATCH);
    while done.recv_many(&mut batch, RECORD_BATCH).await > 0 {
        let now_ms = now_ms();
        let records: Vec<Record<'_>> = batch
            .iter()
            .map(|done| Record {
                delivery: &done.finished.delivery,
                outcome: &done.finished.outcome,
                now_ms,
            })
            .collect();
        loop {
            match redis.record(&keys, &records).await {
                Ok(()) => {
                    health.ok();
                    break;
                }
                Err(error) => tokio::time::sleep(health.failed(&error)).await,
            }
        }
        drop(records);
        for done in batch.drain(..) {
            log_finished(&done.finished, &metrics);
        }
    }
}

fn log_finished(finished: &Finished, metrics: &Metrics) {
    let delivery = &finished.delivery;
    let (job_id, job_type, attempt, trace_id) = match &delivery.job {
        Ok(job) => (
            job.job_id.as_str(),
            job.job_type.as_str(),
            job.attempt,
            job.trace_id.as_deref().unwrap_or(""),
        ),
        Err(_) => (delivery.entry_id.as_str(), "", 0, ""),
    };
    let (plugin, version) = finished
        .plugin
        .as_ref()
        .map_or(("-", "-"), |tag| (tag.name(), tag.version()));
    let outcome = finished.outcome.label();
    let duration_us = finished.duration.as_micros() as u64;
    metrics.job_finished(outcome, job_type, plugin, finished.duration);
    if let Some(waited) = finished.waited {
        metrics.job_waited(waited);
    }
    match &finished.outcome {
        Outcome::Done { .. } | Outcome::Expired => tracing::info!(
            %job_id, r#type = %job_type, %plugin, attempt, %outcome, duration_us, %version, %trace_id,
            "job finished"
        ),
        Outcome::Retry { after, error } => tracing::warn!(
            %job_id, r#type = %job_type, %plugin, attempt, %outcome, duration_us, %version, %trace_id,
            retry_in_ms = after.as_millis() as u64, %error, "job failed"
        ),
        Outcome::Dead { reason } => tracing::error!(
            %job_id, r#type = %job_type, %plugin, attempt, %outcome, duration_us, %version, %trace_id,
            %reason, "job dead-lettered"
        ),
    }
}
