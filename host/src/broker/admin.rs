//! Operating on a queue: the dead-letter stream (list, show, replay, delete)
//! and the figures `jobhost stats` shows.

use std::collections::HashMap;
use std::sync::LazyLock;

use redis::{Script, Value};

use super::entries::{raw_entries, text};
use super::{BrokerError, ConsumerStats, Redis};
use crate::keys::QueueKeys;

/// Entries read per XRANGE page.
const PAGE: usize = 500;
/// Replays allowed before a dead job is frozen (thinrsmq's rule); a forced
/// replay overrides.
pub const MAX_REPLAYS: u32 = 3;

static REPLAY: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("replay.lua")));

/// One dead-letter entry: its id and fields, in order. Values are bytes:
/// the payload may be binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadJob {
    pub id: String,
    pub fields: Vec<(String, Vec<u8>)>,
}

impl DeadJob {
    /// A text field's value; `None` when missing or not UTF-8.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }
}

/// The state of one queue, as `jobhost stats` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct QueueStats {
    pub queue: String,
    /// No host reads it until it is resumed (`jobhost queue resume`).
    pub paused: bool,
    /// Entries in the stream: waiting plus in flight.
    pub stream_length: u64,
    /// Entries delivered to a host and not yet acknowledged.
    pub pending: u64,
    /// Entries not yet delivered to any host.
    pub lag: u64,
    pub consumers: Vec<ConsumerStats>,
    /// Jobs waiting for their time (delayed jobs and retries).
    pub delayed: u64,
    pub dead_letters: u64,
    pub processed: u64,
    pub failed: u64,
    pub retried: u64,
    pub expired: u64,
    pub cancelled: u64,
    /// Deliveries held back by a fleet-wide limit (each wait counts once).
    pub throttled: u64,
    /// Key-value buckets of the queue and how many keys each holds.
    pub buckets: std::collections::BTreeMap<String, u64>,
}

/// The counts of one queue, without its consumers, buckets or pause.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueueCounts {
    /// Whether the queue's consumer group exists (some host served it).
    #[serde(skip)]
    pub has_group: bool,
    pub stream_length: u64,
    pub pending: u64,
    pub lag: u64,
    pub delayed: u64,
    pub dead_letters: u64,
    pub processed: u64,
    pub failed: u64,
    pub retried: u64,
    pub expired: u64,
    pub cancelled: u64,
    pub throttled: u64,
}

/// What became of a replay request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    /// Back on the stream under this new entry id.
    Replayed(String),
    Missing,
    /// Replayed this many times already; needs `--force`.
    Frozen(u32),
}

impl Redis {
    /// Dead jobs of the queue, oldest first, optionally only of one type, at most `limit`.
    pub async fn dead_jobs(
        &mut self,
        keys: &QueueKeys,
        job_type: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<DeadJob>, BrokerError> {
        let mut found = Vec::new();
        let mut start = "-".to_owned();
        loop {
            let page: Value = self
                .query(
                    redis::cmd("XRANGE")
                        .arg(&keys.dlq)
                        .arg(&start)
                        .arg("+")
                        .arg("COUNT")
                        .arg(PAGE),
                )
                .await?;
            let page = dead_jobs(page);
            let full = page.len() == PAGE;
            if let Some(last) = page.last() {
                start = format!("({}", last.id);
            }
            for job in page {
                if job_type.is_none_or(|t| job.field("type") == Some(t)) {
                    found.push(job);
                    if limit.is_some_and(|limit| found.len() >= limit) {
                        return Ok(found);
                    }
                }
            }
            if !full {
                return Ok(found);
            }
        }
    }

    /// Up to `count` dead jobs of the queue, newest first, from just before
    /// entry `before` (from the newest when `None`).
    pub async fn dead_jobs_newest_first(
        &mut self,
        keys: &QueueKeys,
        before: Option<&str>,
        count: usize,
    ) -> Result<Vec<DeadJob>, BrokerError> {
        let end = before.map_or_else(|| "+".to_owned(), |id| format!("({id}"));
        let page: Value = self
            .query(
                redis::cmd("XREVRANGE")
                    .arg(&keys.dlq)
                    .arg(end)
                    .arg("-")
                    .arg("COUNT")
                    .arg(count),
            )
            .await?;
        Ok(dead_jobs(page))
    }

    /// One dead job of the queue, by its DLQ entry id.
    pub async fn dead_job(
        &mut self,
        keys: &QueueKeys,
        id: &str,
    ) -> Result<Option<DeadJob>, BrokerError> {
        let page: Value = self
            .query(redis::cmd("XRANGE").arg(&keys.dlq).arg(id).arg(id))
            .await?;
        Ok(dead_jobs(page).into_iter().next())
    }

    /// Puts a dead job back on its stream (see `replay.lua`).
    pub async fn replay(
        &mut self,
        keys: &QueueKeys,
        id: &str,
        max_replays: u32,
        force: bool,
    ) -> Result<Replay, BrokerError> {
        let reply: Vec<String> = self
            .invoke(
                REPLAY
                    .key(&keys.dlq)
                    .key(&keys.stream)
                    .arg(id)
                    .arg(max_replays)
                    .arg(if force { "force" } else { "" }),
            )
            .await?;
        Ok(match reply.as_slice() {
            [status, id] if status == "ok" => Replay::Replayed(id.clone()),
            [status, count] if status == "frozen" => Replay::Frozen(count.parse().unwrap_or(0)),
            _ => Replay::Missing,
        })
    }

    /// Deletes the given dead-letter entries; returns how many existed.
    pub async fn delete_dead(
        &mut self,
        keys: &QueueKeys,
        ids: &[String],
    ) -> Result<u64, BrokerError> {
        let mut deleted = 0;
        for chunk in ids.chunks(PAGE) {
            deleted += self
                .query::<u64>(redis::cmd("XDEL").arg(&keys.dlq).arg(chunk))
                .await?;
        }
        Ok(deleted)
    }

    /// Queue names under `namespace` that have a stream or a delayed set.
    pub async fn queues(&mut self, namespace: &str) -> Result<Vec<String>, BrokerError> {
        let mut keys = Vec::new();
        for pattern in QueueKeys::queue_patterns(namespace) {
            keys.extend(self.scan(&pattern).await?);
        }
        let mut queues: Vec<String> = keys
            .iter()
            .filter_map(|key| QueueKeys::queue_of_key(namespace, key))
            .map(str::to_owned)
            .collect();
        queues.sort();
        queues.dedup();
        Ok(queues)
    }

    /// The counts of one queue, in two round trips (no scans): what the
    /// dashboard refreshes every second.
    pub async fn queue_counts(&mut self, keys: &QueueKeys) -> Result<QueueCounts, BrokerError> {
        let mut pipe = redis::pipe();
        pipe.cmd("XLEN").arg(&keys.stream);
        pipe.cmd("ZCARD").arg(&keys.delayed);
        pipe.cmd("XLEN").arg(&keys.dlq);
        pipe.cmd("HGETALL").arg(&keys.counters);
        let (stream_length, delayed, dead_letters, counters): (
            u64,
            u64,
            u64,
            HashMap<String, u64>,
        ) = self.pipeline(&pipe).await?;
        // A queue nobody consumed yet has no stream or group: no figures, not an error.
        let groups: Vec<HashMap<String, Value>> = self
            .query(redis::cmd("XINFO").arg("GROUPS").arg(&keys.stream))
            .await
            .unwrap_or_default();
        let group = groups.into_iter().find(|group| {
            group.get("name").cloned().and_then(text).as_deref() == Some(&keys.group)
        });
        let number = |name: &str| match group.as_ref().and_then(|g| g.get(name)) {
            Some(Value::Int(n)) => Some((*n).max(0) as u64),
            _ => None,
        };
        let pending = number("pending").unwrap_or(0);
        let counter = |name: &str| counters.get(name).copied().unwrap_or(0);
        Ok(QueueCounts {
            has_group: group.is_some(),
            stream_length,
            pending,
            // Redis cannot always tell the lag (after XDEL or XTRIM): then
            // every entry not pending is taken to be waiting.
            lag: number("lag").unwrap_or(stream_length.saturating_sub(pending)),
            delayed,
            dead_letters,
            processed: counter("done"),
            failed: counter("dead"),
            retried: counter("retry"),
            expired: counter("expired"),
            cancelled: counter("cancelled"),
            throttled: counter("throttled"),
        })
    }

    /// The figures of one queue.
    pub async fn stats(&mut self, keys: &QueueKeys) -> Result<QueueStats, BrokerError> {
        let counts = self.queue_counts(keys).await?;
        let consumers = if counts.has_group {
            self.consumers(keys).await?
        } else {
            Vec::new()
        };
        let buckets = self
            .kv_buckets(keys)
            .await?
            .into_iter()
            .map(|size| (size.bucket, size.keys))
            .collect();
        // Its own command: on a Cluster the set lives in another slot.
        let paused: bool = self
            .query(
                redis::cmd("SISMEMBER")
                    .arg(crate::keys::paused_queues(&keys.namespace))
                    .arg(&keys.queue),
            )
            .await?;
        Ok(QueueStats {
            queue: keys.queue.clone(),
            paused,
            stream_length: counts.stream_length,
            pending: counts.pending,
            lag: counts.lag,
            consumers,
            delayed: counts.delayed,
            dead_letters: counts.dead_letters,
            processed: counts.processed,
            failed: counts.failed,
            retried: counts.retried,
            expired: counts.expired,
            cancelled: counts.cancelled,
            throttled: counts.throttled,
            buckets,
        })
    }
}

fn dead_jobs(value: Value) -> Vec<DeadJob> {
    raw_entries(value)
        .into_iter()
        .map(|(id, fields)| DeadJob { id, fields })
        .collect()
}
