//! Reading jobs through a queue's consumer group, and moving due delayed jobs
//! onto its stream.

use std::sync::LazyLock;
use std::time::Duration;

use redis::{RedisError, Script};

use super::entries::{self, Delivery};
use super::{BrokerError, Redis};
use crate::envelope::now_rfc3339;
use crate::keys::QueueKeys;

/// How long one XREADGROUP waits for new entries before the reader looks around
/// (shutdown, delayed jobs) and reads again. A handle that reads needs a
/// connection made with [`Redis::blocking`] for this long.
pub const READ_BLOCK: Duration = Duration::from_millis(500);
/// Most delayed jobs moved to the stream in one call.
const PROMOTE_BATCH: usize = 500;

/// Reads and reclaims that leave an oversized entry's fields in Redis.
pub(super) static READ_ENTRIES: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("read_entries.lua")));
static PROMOTE_DUE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("promote_due.lua")));

impl Redis {
    /// Creates the queue's stream and consumer group if missing. A new group
    /// starts at the beginning of the stream: jobs enqueued before any host ran
    /// are served.
    pub async fn ensure_group(&mut self, keys: &QueueKeys) -> Result<(), BrokerError> {
        let created: Result<(), RedisError> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&keys.stream)
            .arg(&keys.group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut self.conn)
            .await;
        match created {
            Err(e) if e.code() != Some("BUSYGROUP") => Err(self.error(e)),
            _ => Ok(()),
        }
    }

    /// Reads up to `count` entries never delivered to any consumer, as
    /// `consumer`; when there are none and `wait`, waits up to [`READ_BLOCK`].
    /// `screened`: through `read_entries.lua`, where an entry larger than
    /// `largest` bytes comes with its size only; else a plain XREADGROUP
    /// (cheaper by about half of Redis's work for the read), for a caller
    /// that knows the stream small enough to come whole (see
    /// [`Redis::stream_bytes`]). Either way the wait for new entries (a
    /// blocking XREADGROUP of one entry: a script cannot block) may bring
    /// one entry whole; an oversized entry read whole has its fields dropped
    /// as it is parsed.
    pub async fn read_new(
        &mut self,
        keys: &QueueKeys,
        consumer: &str,
        count: usize,
        largest: usize,
        screened: bool,
        wait: bool,
    ) -> Result<Vec<Delivery>, BrokerError> {
        let deliveries = if screened {
            let reply: redis::Value = self
                .invoke(
                    READ_ENTRIES
                        .key(&keys.stream)
                        .arg("new")
                        .arg(&keys.group)
                        .arg(consumer)
                        .arg(count)
                        .arg(largest),
                )
                .await?;
            entries::screened_entries(reply, largest)
        } else {
            let reply = self.read_group(keys, consumer, count, None).await?;
            entries::parse_read_reply(reply, largest)
        };
        if !deliveries.is_empty() || !wait {
            return Ok(deliveries);
        }
        let reply = self.read_group(keys, consumer, 1, Some(READ_BLOCK)).await?;
        Ok(entries::parse_read_reply(reply, largest))
    }

    /// Waits up to [`READ_BLOCK`] for a new entry on any of `queues`, all
    /// empty when last read: one blocking XREADGROUP over every stream, which
    /// brings at most one entry of each. Each delivery comes with the index
    /// of its queue. A Cluster refuses one command over keys of several
    /// slots, so there each queue is waited on in turn for its share of the
    /// time: a job arriving meanwhile on another waits that long.
    pub async fn wait_new(
        &mut self,
        queues: &[&QueueKeys],
        consumer: &str,
        largest: usize,
    ) -> Result<Vec<(usize, Delivery)>, BrokerError> {
        if queues.len() > 1 && self.is_cluster() {
            let share = (READ_BLOCK / queues.len() as u32).max(Duration::from_millis(20));
            for (index, keys) in queues.iter().enumerate() {
                let reply = self.read_group(keys, consumer, 1, Some(share)).await?;
                let deliveries = entries::parse_read_reply(reply, largest);
                if !deliveries.is_empty() {
                    return Ok(deliveries.into_iter().map(|d| (index, d)).collect());
                }
            }
            return Ok(Vec::new());
        }
        let Some(first) = queues.first() else {
            return Ok(Vec::new());
        };
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&first.group)
            .arg(consumer)
            .arg("COUNT")
            .arg(1)
            .arg("BLOCK")
            .arg(READ_BLOCK.as_millis() as u64)
            .arg("STREAMS");
        for keys in queues {
            cmd.arg(&keys.stream);
        }
        for _ in queues {
            cmd.arg(">");
        }
        let reply: redis::Value = self.query(&cmd).await?;
        let mut deliveries = Vec::new();
        for (stream, list) in entries::read_reply_streams(reply) {
            let Some(index) = queues.iter().position(|keys| keys.stream == stream) else {
                continue;
            };
            for (id, pairs) in entries::raw_entries(list) {
                deliveries.push((index, Delivery::from_entry(id, pairs, largest)));
            }
        }
        Ok(deliveries)
    }

    async fn read_group(
        &mut self,
        keys: &QueueKeys,
        consumer: &str,
        count: usize,
        block: Option<Duration>,
    ) -> Result<redis::Value, BrokerError> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&keys.group)
            .arg(consumer)
            .arg("COUNT")
            .arg(count);
        if let Some(block) = block {
            cmd.arg("BLOCK").arg(block.as_millis() as u64);
        }
        cmd.arg("STREAMS").arg(&keys.stream).arg(">");
        self.query(&cmd).await
    }

    /// The bytes the queue's stream takes in Redis, every node counted
    /// (`MEMORY USAGE ... SAMPLES 0`: one step per node of about 4 KiB, not
    /// per entry); 0 when it does not exist.
    pub async fn stream_bytes(&mut self, keys: &QueueKeys) -> Result<u64, BrokerError> {
        let bytes: Option<u64> = self
            .query(
                redis::cmd("MEMORY")
                    .arg("USAGE")
                    .arg(&keys.stream)
                    .arg("SAMPLES")
                    .arg(0),
            )
            .await?;
        Ok(bytes.unwrap_or(0))
    }

    /// Moves due delayed jobs (retries, `--delay`) onto the stream; `None`
    /// when the delayed set's key holds another type, so nothing can move.
    pub async fn promote_due(
        &mut self,
        keys: &QueueKeys,
        now_ms: u64,
    ) -> Result<Option<usize>, BrokerError> {
        let moved: i64 = self
            .invoke(
                PROMOTE_DUE
                    .key(&keys.delayed)
                    .key(&keys.stream)
                    .key(&keys.dlq)
                    .arg(now_ms)
                    .arg(PROMOTE_BATCH)
                    .arg(now_rfc3339()),
            )
            .await?;
        Ok(usize::try_from(moved).ok())
    }
}
