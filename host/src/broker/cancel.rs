//! Cancelling a job found by a lookup (`lookup.rs`): removing it from the
//! stream or the delayed set with its outcome recorded as cancelled, or,
//! when a host runs it, marking it for that host (`host/cancels.rs`).

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use super::lookup::{Found, Place};
use super::{BrokerError, Redis};
use crate::envelope::{field, now_ms};
use crate::keys::QueueKeys;

static CANCEL: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("cancel.lua")));

/// What one cancel step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cancelling {
    /// It was waiting or delayed: it never runs.
    Cancelled,
    /// Host `consumer` holds it: marked, to be stopped there.
    Marked { consumer: String },
    /// It moved on meanwhile (read by a host, promoted, finished): look again.
    Moved,
    /// Not waiting, delayed or running: nothing to cancel.
    NotCancellable,
}

impl Redis {
    /// Cancels job `job_id` of queue `keys`, found at `found`; a cancelled
    /// job's outcome is kept for `keep` (zero: not kept).
    pub async fn cancel_found(
        &mut self,
        keys: &QueueKeys,
        job_id: &str,
        found: &Found,
        keep: Duration,
    ) -> Result<Cancelling, BrokerError> {
        let (place, target) = match &found.place {
            Place::Waiting { entry_id } | Place::Running { entry_id, .. } => {
                ("stream", entry_id.as_bytes())
            }
            Place::Delayed { member, .. } => ("delayed", member.as_slice()),
            Place::Finished(_) | Place::Dead { .. } => return Ok(Cancelling::NotCancellable),
        };
        let result = keys.result(job_id);
        // Only this queue's reply streams: the field comes from the producer.
        let reply = found
            .field(field::REPLY_TO)
            .filter(|key| key.starts_with(&keys.reply_prefix()));
        let reply_key = reply.clone().unwrap_or_else(|| result.clone());
        let unique = found.field(field::UNIQUE).map(|key| keys.unique(&key));
        let unique_key = unique.clone().unwrap_or_else(|| result.clone());
        let answer: Vec<String> = self
            .invoke(
                CANCEL
                    .key(&keys.stream)
                    .key(&keys.delayed)
                    .key(&keys.cancelling)
                    .key(&keys.counters)
                    .key(&result)
                    .key(&reply_key)
                    .key(&unique_key)
                    .arg(&keys.group)
                    .arg(job_id)
                    .arg(place)
                    .arg(target)
                    .arg(now_ms())
                    .arg(keep.as_millis() as u64)
                    .arg(u8::from(reply.is_some()))
                    .arg(u8::from(unique.is_some())),
            )
            .await?;
        Ok(match answer.first().map(String::as_str) {
            Some("cancelled") => Cancelling::Cancelled,
            Some("running") => Cancelling::Marked {
                consumer: answer.get(1).cloned().unwrap_or_default(),
            },
            Some("wrongtype") => {
                let key = answer.get(1).cloned().unwrap_or_default();
                return Err(BrokerError::WrongType { key });
            }
            _ => Cancelling::Moved,
        })
    }
}

/// How long `cancel_job` waits for a host to stop a running job.
const STOP_WAIT: Duration = Duration::from_secs(5);
const STOP_POLL: Duration = Duration::from_millis(50);
/// Lookups again when the job moved on between the lookup and the step.
const MOVES: usize = 5;

/// What became of one `cancel` of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelReport {
    /// It was waiting or delayed in `queue`: it never runs.
    Removed { queue: String, was: &'static str },
    /// It ran on `host`, which stopped it.
    Stopped { queue: String, host: String },
    /// It runs on `host`, which was asked to stop it and has not yet (it
    /// does when it sees the mark, or the host that reclaims it does).
    Stopping { queue: String, host: String },
    /// It finished already (done, dead, expired or cancelled).
    Finished { queue: String, outcome: String },
    /// No queue knows it.
    Unknown,
}

impl Redis {
    /// Cancels job `job_id`, looking for it in `queues` in order; a
    /// cancelled waiting or delayed job's outcome is kept for `keep`.
    pub async fn cancel_job(
        &mut self,
        queues: &[QueueKeys],
        job_id: &str,
        keep: Duration,
    ) -> Result<CancelReport, BrokerError> {
        for _ in 0..MOVES {
            let Some((keys, found)) = self.locate(queues, job_id).await? else {
                return Ok(CancelReport::Unknown);
            };
            let queue = keys.queue.clone();
            let was = match &found.place {
                Place::Finished(kept) => {
                    return Ok(CancelReport::Finished {
                        queue,
                        outcome: kept.outcome.clone(),
                    });
                }
                Place::Dead { .. } => {
                    return Ok(CancelReport::Finished {
                        queue,
                        outcome: "dead".to_owned(),
                    });
                }
                Place::Waiting { .. } | Place::Running { .. } => "waiting",
                Place::Delayed { .. } => "delayed",
            };
            match self.cancel_found(keys, job_id, &found, keep).await? {
                Cancelling::Cancelled => return Ok(CancelReport::Removed { queue, was }),
                Cancelling::Marked { consumer } => {
                    let keys = keys.clone();
                    match self.wait_until_stopped(&keys, job_id, consumer).await? {
                        // Back in the stream or the delayed set (it failed
                        // and will be retried): cancel it there.
                        None => continue,
                        Some(report) => return Ok(report),
                    }
                }
                Cancelling::NotCancellable | Cancelling::Moved => continue,
            }
        }
        Ok(CancelReport::Unknown)
    }

    /// The first of `queues` holding job `job_id`, and where in it.
    pub async fn locate<'q>(
        &mut self,
        queues: &'q [QueueKeys],
        job_id: &str,
    ) -> Result<Option<(&'q QueueKeys, Found)>, BrokerError> {
        for keys in queues {
            if let Some(found) = self.find_job(keys, job_id).await? {
                return Ok(Some((keys, found)));
            }
        }
        Ok(None)
    }

    /// Waits up to [`STOP_WAIT`] for the host to record the job's outcome;
    /// `None` when the job came back to wait (a retry recorded before the
    /// host saw the mark).
    async fn wait_until_stopped(
        &mut self,
        keys: &QueueKeys,
        job_id: &str,
        host: String,
    ) -> Result<Option<CancelReport>, BrokerError> {
        let deadline = tokio::time::Instant::now() + STOP_WAIT;
        let queue = keys.queue.clone();
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(STOP_POLL).await;
            match self.find_job(keys, job_id).await?.map(|found| found.place) {
                Some(Place::Running { .. }) => {}
                Some(Place::Waiting { .. } | Place::Delayed { .. }) => return Ok(None),
                // It finished before its host saw the mark.
                Some(Place::Finished(kept)) if kept.outcome != "cancelled" => {
                    let outcome = kept.outcome;
                    return Ok(Some(CancelReport::Finished { queue, outcome }));
                }
                // Recorded (gone from the stream), or kept as finished.
                _ => return Ok(Some(CancelReport::Stopped { queue, host })),
            }
        }
        Ok(Some(CancelReport::Stopping { queue, host }))
    }
}
