//! Finding one job by its id in a queue, for `jobhost job` and `jobhost
//! cancel`: its kept final outcome, its stream entry (waiting, or running on
//! a host), its delayed-set member, or its dead-letter entry.
//!
//! Nothing indexes jobs by id (that would cost every enqueue a write), so a
//! lookup scans: the stream and the dead-letter stream in pages of
//! [`PAGE`] entries (inside Redis, `find_entry.lua`), the delayed set with ZSCAN
//! (`find_delayed.lua`): only the match leaves Redis. It costs time in proportion
//! to the backlog, paid by the one who asks, never by the job path.

use std::sync::LazyLock;

use redis::{Script, Value};

use super::entries::{RawEntry, raw_entries};
use super::{BrokerError, Redis};
use crate::keys::QueueKeys;

/// Entries read per round trip of a scan: in Redis, which sends only the match.
const PAGE: usize = 200;

static FIND_ENTRY: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("find_entry.lua")));
static FIND_DELAYED: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("find_delayed.lua")));

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

/// A key the lookup reads holds `found` where jobhost keeps `kind`.
fn refused(key: &str, found: &str, kind: &str) -> BrokerError {
    let name = |t: &str| {
        if t == "zset" {
            "sorted set".to_owned()
        } else {
            t.to_owned()
        }
    };
    BrokerError::Refused {
        key: key.to_owned(),
        reason: format!("holds a {}, not a {}", name(found), name(kind)),
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
        let key = keys.result(job_id);
        let fields: Vec<(String, Vec<u8>)> = match self.query(redis::cmd("HGETALL").arg(&key)).await
        {
            Err(BrokerError::Command { error, .. }) if error.code() == Some("WRONGTYPE") => {
                return Err(BrokerError::Refused {
                    key,
                    reason: "holds another type, not a hash".to_owned(),
                });
            }
            other => other?,
        };
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
        let mut after = String::new();
        loop {
            let (found, last, other): (Option<String>, Option<String>, Option<String>) = self
                .invoke(
                    FIND_ENTRY
                        .key(stream)
                        .arg(job_id)
                        .arg(&after)
                        .arg(if newest_first { "newest" } else { "oldest" })
                        .arg(PAGE),
                )
                .await?;
            if let Some(found_type) = other {
                return Err(refused(stream, &found_type, "stream"));
            }
            if let Some(id) = found {
                let entry: Value = self
                    .query(redis::cmd("XRANGE").arg(stream).arg(&id).arg(&id))
                    .await?;
                // Deleted in between: it moved on (the caller looks again).
                return Ok(raw_entries(entry).pop());
            }
            match last {
                Some(last) => after = last,
                None => return Ok(None),
            }
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
            let (next, member, score, other): (
                String,
                Option<Vec<u8>>,
                Option<String>,
                Option<String>,
            ) = self
                .invoke(
                    FIND_DELAYED
                        .key(&keys.delayed)
                        .arg(job_id)
                        .arg(&cursor)
                        .arg(PAGE),
                )
                .await?;
            if let Some(found_type) = other {
                return Err(refused(&keys.delayed, &found_type, "zset"));
            }
            if let Some(member) = member
                && let Some(fields) = super::delayed::fields(&member)
            {
                let due_ms = score
                    .and_then(|score| score.parse::<f64>().ok())
                    .map_or(0, |ms| ms as u64);
                return Ok(Some(Found {
                    place: Place::Delayed { due_ms, member },
                    fields,
                }));
            }
            if next == "0" {
                return Ok(None);
            }
            cursor = next;
        }
    }
}
