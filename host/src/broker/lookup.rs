//! Finding one job by its id in a queue, for `jobhost job` and `jobhost
//! cancel`: its kept final outcome, its stream entry (waiting, or running on
//! a host), its delayed-set member, or its dead-letter entry.
//!
//! Nothing indexes jobs by id (that would cost every enqueue a write), so a
//! lookup scans: the stream and the dead-letter stream in pages of
//! [`PAGE`] entries, the delayed set with ZSCAN. It costs time in proportion
//! to the backlog, paid by the one who asks, never by the job path.

use redis::Value;

use super::entries::{RawEntry, raw_entries};
use super::{BrokerError, Redis};
use crate::envelope::field;
use crate::keys::QueueKeys;

/// Entries read per round trip of a scan.
const PAGE: usize = 1000;

/// Where a job was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// Finished; its outcome was kept (`run --keep-results`, `cancel`).
    Finished(Kept),
    /// In the stream, not delivered to any host yet.
    Waiting { entry_id: String },
    /// Delivered to host `consumer` and not acknowledged: running there (or
    /// about to be reclaimed from it, if it died).
    Running {
        entry_id: String,
        consumer: String,
        /// Since when that host holds it (ms since the Unix epoch).
        since_ms: u64,
        deliveries: u64,
    },
    /// In the delayed set until `due_ms` (a delayed job, a retry, or a job
    /// waiting for a fleet-wide limit); `member` is its exact member.
    Delayed { due_ms: u64, member: Vec<u8> },
    /// In the dead-letter stream.
    Dead { entry_id: String },
}

/// A finished job's outcome, as kept in its result hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    /// done, dead, expired or cancelled.
    pub outcome: String,
    /// The output (done) or the final error (dead).
    pub text: Vec<u8>,
    pub attempt: Option<u32>,
    /// When it finished, ms since the Unix epoch.
    pub finished_ms: Option<u64>,
    /// The host that recorded it.
    pub host: Option<String>,
}

/// A job found, with its fields (none for a kept outcome).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub place: Place,
    pub fields: Vec<(String, Vec<u8>)>,
}

impl Found {
    /// The value of field `name`, as text.
    pub fn field(&self, name: &str) -> Option<String> {
        self.fields
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| String::from_utf8_lossy(value).into_owned())
    }
}

/// Whether the entry holds job `job_id`. An entry without a job id (a plain
/// `XADD`) is known by its entry id.
fn holds(entry: &RawEntry, job_id: &str) -> bool {
    match entry.1.iter().find(|(key, _)| key == field::JOB_ID) {
        Some((_, value)) => value == job_id.as_bytes(),
        None => entry.0 == job_id,
    }
}

impl Redis {
    /// Where job `job_id` of queue `keys` is, or `None`.
    pub async fn find_job(
        &mut self,
        keys: &QueueKeys,
        job_id: &str,
    ) -> Result<Option<Found>, BrokerError> {
        if let Some(kept) = self.kept_result(keys, job_id).await? {
            return Ok(Some(Found {
                place: Place::Finished(kept),
                fields: Vec::new(),
            }));
        }
        if let Some((entry_id, fields)) = self.scan_stream(&keys.stream, job_id, false).await? {
            let place = match self.pending_entry(keys, &entry_id).await? {
                Some((consumer, idle_ms, deliveries)) => Place::Running {
                    since_ms: self.held_since(keys, &consumer, &entry_id, idle_ms).await,
                    entry_id,
                    consumer,
                    deliveries,
                },
                None => Place::Waiting { entry_id },
            };
            return Ok(Some(Found { place, fields }));
        }
        if let Some(found) = self.scan_delayed(keys, job_id).await? {
            return Ok(Some(found));
        }
        // Newest first: a replayed job may have died more than once.
        if let Some((entry_id, fields)) = self.scan_stream(&keys.dlq, job_id, true).await? {
            return Ok(Some(Found {
                place: Place::Dead { entry_id },
                fields,
            }));
        }
        Ok(None)
    }

    /// The job's kept outcome, if any.
    async fn kept_result(
        &mut self,
        keys: &QueueKeys,
        job_id: &str,
    ) -> Result<Option<Kept>, BrokerError> {
        let fields: Vec<(String, Vec<u8>)> = self
            .query(redis::cmd("HGETALL").arg(keys.result(job_id)))
            .await?;
        if fields.is_empty() {
            return Ok(None);
        }
        let text_of = |name: &str| {
            fields
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        };
        let parsed =
            |name: &str| text_of(name).and_then(|v| String::from_utf8(v).ok()?.parse::<u64>().ok());
        Ok(Some(Kept {
            outcome: text_of("outcome")
                .map(|v| String::from_utf8_lossy(&v).into_owned())
                .unwrap_or_default(),
            text: text_of("text").unwrap_or_default(),
            attempt: parsed("attempt").map(|a| a.min(u64::from(u32::MAX)) as u32),
            finished_ms: parsed("finished_ms"),
            host: text_of("host").map(|v| String::from_utf8_lossy(&v).into_owned()),
        }))
    }

    /// The first entry of `stream` holding `job_id` (from the newest when
    /// `newest_first`). A missing stream holds nothing.
    async fn scan_stream(
        &mut self,
        stream: &str,
        job_id: &str,
        newest_first: bool,
    ) -> Result<Option<RawEntry>, BrokerError> {
        let (command, mut from, to) = if newest_first {
            ("XREVRANGE", "+".to_owned(), "-")
        } else {
            ("XRANGE", "-".to_owned(), "+")
        };
        loop {
            let page: Value = self
                .query(
                    redis::cmd(command)
                        .arg(stream)
                        .arg(&from)
                        .arg(to)
                        .arg("COUNT")
                        .arg(PAGE),
                )
                .await?;
            let entries = raw_entries(page);
            let Some(last) = entries.last().map(|(id, _)| id.clone()) else {
                return Ok(None);
            };
            let full = entries.len() == PAGE;
            if let Some(entry) = entries.into_iter().find(|entry| holds(entry, job_id)) {
                return Ok(Some(entry));
            }
            if !full {
                return Ok(None);
            }
            // Exclusive: the next page starts after the last entry read.
            from = format!("({last}");
        }
    }

    /// Who holds entry `entry_id` unacknowledged: its consumer, idle time and
    /// deliveries; `None` when no host has it (or the group does not exist).
    async fn pending_entry(
        &mut self,
        keys: &QueueKeys,
        entry_id: &str,
    ) -> Result<Option<(String, u64, u64)>, BrokerError> {
        let pending: Result<Vec<(String, String, u64, u64)>, BrokerError> = self
            .query(
                redis::cmd("XPENDING")
                    .arg(&keys.stream)
                    .arg(&keys.group)
                    .arg(entry_id)
                    .arg(entry_id)
                    .arg(1),
            )
            .await;
        match pending {
            Ok(mut entries) => Ok(entries
                .pop()
                .map(|(_, consumer, idle, deliveries)| (consumer, idle, deliveries))),
            Err(BrokerError::Command { error, .. }) if error.code() == Some("NOGROUP") => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Since when host `consumer` holds entry `entry_id`: as its heartbeat
    /// last wrote, or, before its first beat touched the entry (which resets
    /// its idle time), its delivery.
    async fn held_since(
        &mut self,
        keys: &QueueKeys,
        consumer: &str,
        entry_id: &str,
        idle_ms: u64,
    ) -> u64 {
        let written: Result<Option<u64>, BrokerError> = self
            .query(redis::cmd("HGET").arg(keys.held(consumer)).arg(entry_id))
            .await;
        written
            .ok()
            .flatten()
            .unwrap_or_else(|| crate::envelope::now_ms().saturating_sub(idle_ms))
    }

    /// The delayed-set member holding `job_id`, with its due time.
    async fn scan_delayed(
        &mut self,
        keys: &QueueKeys,
        job_id: &str,
    ) -> Result<Option<Found>, BrokerError> {
        let mut cursor = "0".to_owned();
        loop {
            let (next, flat): (String, Vec<Vec<u8>>) = self
                .query(
                    redis::cmd("ZSCAN")
                        .arg(&keys.delayed)
                        .arg(&cursor)
                        .arg("COUNT")
                        .arg(PAGE),
                )
                .await?;
            for pair in flat.chunks_exact(2) {
                let (member, score) = (&pair[0], &pair[1]);
                let Some(fields) = super::delayed::fields(member) else {
                    continue;
                };
                let id = fields
                    .iter()
                    .find(|(key, _)| key == field::JOB_ID)
                    .map(|(_, value)| value.as_slice());
                if id == Some(job_id.as_bytes()) {
                    let due_ms = String::from_utf8_lossy(score)
                        .parse::<f64>()
                        .map_or(0, |ms| ms as u64);
                    return Ok(Some(Found {
                        place: Place::Delayed {
                            due_ms,
                            member: member.clone(),
                        },
                        fields,
                    }));
                }
            }
            if next == "0" {
                return Ok(None);
            }
            cursor = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_known_by_its_job_id_or_without_one_by_its_entry_id() {
        let with_id: RawEntry = ("1-0".into(), vec![(field::JOB_ID.into(), b"j1".to_vec())]);
        assert!(holds(&with_id, "j1"));
        assert!(!holds(&with_id, "1-0"));
        let plain: RawEntry = ("2-0".into(), vec![("type".into(), b"a.b".to_vec())]);
        assert!(holds(&plain, "2-0"));
        assert!(!holds(&plain, "j1"));
    }
}
