//! The one place that turns a job's outcome into Redis writes.

use crate::envelope::{Envelope, field, now_rfc3339};
use crate::keys::QueueKeys;
use crate::outcome::Outcome;

use super::entries::Delivery;

/// `last_error` in a DLQ entry keeps at most this many characters.
const MAX_ERROR_CHARS: usize = 1000;

/// One delivery and what became of it, ready to be written.
pub struct Record<'a> {
    pub delivery: &'a Delivery,
    pub outcome: &'a Outcome,
    /// Now, in ms since the Unix epoch: the base of a retry's due time.
    pub now_ms: u64,
}

impl Record<'_> {
    /// Adds the EVALSHA of `record_outcome.lua` for this record to `pipe`.
    pub(super) fn add_to(&self, pipe: &mut redis::Pipeline, keys: &QueueKeys, script_sha: &str) {
        let job = self.delivery.job.as_ref().ok();
        // Only reply streams of this queue: the field comes from the producer.
        let reply_to = job
            .and_then(|job| job.reply_to.as_deref())
            .filter(|key| key.starts_with(&keys.reply_prefix()));
        let cmd = pipe.cmd("EVALSHA").arg(script_sha);
        cmd.arg(if reply_to.is_some() { 5 } else { 4 })
            .arg(&keys.stream)
            .arg(&keys.delayed)
            .arg(&keys.dlq)
            .arg(&keys.counters);
        if let Some(reply_to) = reply_to {
            cmd.arg(reply_to);
        }
        let reply_text: &[u8] = match self.outcome {
            Outcome::Done { output, .. } => output,
            Outcome::Dead { reason } => reason.as_bytes(),
            Outcome::Expired => b"expired before it ran",
            Outcome::Retry { .. } => b"",
        };
        cmd.arg(&keys.group)
            .arg(&self.delivery.entry_id)
            .arg(job.map_or(self.delivery.entry_id.as_str(), |job| job.job_id.as_str()))
            .arg(reply_text);
        match (self.outcome, &self.delivery.job) {
            (Outcome::Done { follow_ups, .. }, Ok(parent)) => {
                cmd.arg("done").arg(follow_ups.len());
                for follow_up in follow_ups {
                    let mut job =
                        Envelope::new(follow_up.job_type.clone(), follow_up.payload.clone());
                    job.trace_id = parent.trace_id.clone();
                    job.producer = Some(format!("jobhost:{}", parent.job_type));
                    let fields = job.to_fields();
                    cmd.arg(fields.len() * 2);
                    for (name, value) in fields {
                        cmd.arg(name).arg(value);
                    }
                }
            }
            (Outcome::Retry { after, .. }, Ok(job)) => {
                let mut next = job.clone();
                next.attempt += 1;
                let due = self.now_ms + after.as_millis() as u64;
                cmd.arg("retry").arg(due).arg(delayed_member(&next));
            }
            (Outcome::Dead { reason }, job) => {
                cmd.arg("dead");
                let (fields, attempts, replays) = match job {
                    Ok(job) => (
                        job.to_fields()
                            .into_iter()
                            .map(|(k, v)| (k.to_owned(), v))
                            .collect(),
                        job.attempt,
                        job.replay_count,
                    ),
                    Err(malformed) => (malformed.fields.clone(), 0, 0),
                };
                for (name, value) in fields.iter().filter(|(k, _)| k != field::REPLAY_COUNT) {
                    cmd.arg(name.as_str()).arg(value.as_slice());
                }
                let last_error: String = reason.chars().take(MAX_ERROR_CHARS).collect();
                cmd.arg("original_id")
                    .arg(&self.delivery.entry_id)
                    .arg("original_stream")
                    .arg(&keys.stream)
                    .arg("failed_at")
                    .arg(now_rfc3339())
                    .arg("total_attempts")
                    .arg(attempts)
                    .arg("last_error")
                    .arg(last_error)
                    .arg("consumer_group")
                    .arg(&keys.group)
                    .arg(field::REPLAY_COUNT)
                    .arg(replays);
            }
            // Expired jobs, and the impossible pairing of a malformed entry with
            // another outcome: acknowledge only.
            _ => {
                cmd.arg("ack");
            }
        }
    }
}

/// A delayed job as a member of the sorted set: its fields as a JSON list,
/// which `promote_due.lua` hands to XADD. Job id and attempt make it unique.
pub fn delayed_member(job: &Envelope) -> String {
    let flat: Vec<String> = job
        .to_fields()
        .into_iter()
        .flat_map(|(k, v)| [k.to_owned(), String::from_utf8_lossy(&v).into_owned()])
        .collect();
    serde_json::to_string(&flat).expect("a list of strings always serializes")
}
