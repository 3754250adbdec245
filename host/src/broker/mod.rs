//! Redis Streams: connecting, reading jobs through the consumer group, and
//! recording each job's outcome atomically.

mod admin;
mod connection;
mod entries;
mod produce;
mod reclaim;
mod record;
mod target;

use std::time::Duration;

use redis::{RedisError, Script};
use thiserror::Error;

pub use admin::{Admin, ConsumerStats, DeadJob, QueueStats, Replay};
pub use connection::Connection;
pub use entries::{Delivery, Malformed};
pub use produce::{JobResult, Producer};
pub use record::{Record, Recorded, Unwritten};
pub use target::Target;

use crate::keys::QueueKeys;

/// How long one XREADGROUP waits for new entries before the reader looks around
/// (shutdown, delayed jobs) and reads again.
const READ_BLOCK: Duration = Duration::from_millis(500);
/// Replies slower than this mean the connection is unusable.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Most delayed jobs moved to the stream in one call.
const PROMOTE_BATCH: usize = 500;

/// Redis could not be used. Messages never contain the URL's password.
#[derive(Debug, Error)]
pub enum BrokerError {
    #[error("invalid Redis URL {url}: {reason}")]
    Url { url: String, reason: String },
    #[error("cannot reach Redis at {url}: {reason}; {hint}")]
    Connect {
        url: String,
        reason: String,
        hint: &'static str,
    },
    #[error("Redis at {url}: {error}")]
    Command { url: String, error: RedisError },
}

/// The URL with any password replaced by `***`, for messages and logs.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            let masked = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                "***".to_owned()
            };
            format!("{scheme}://{masked}@{host}")
        }
        None => url.to_owned(),
    }
}

/// One host's view of a queue in Redis. Clones share the connections.
#[derive(Clone)]
pub struct Broker {
    target: std::sync::Arc<Target>,
    keys: QueueKeys,
    consumer: String,
    writer: Connection,
    /// Blocking reads get their own connection so they never delay writes.
    reader: Connection,
    record_outcomes: Script,
    promote_due: Script,
    touch_inflight: Script,
    remove_consumer: Script,
    /// Where the next XAUTOCLAIM scan continues.
    claim_cursor: String,
}

impl Broker {
    /// Connects (failing fast with a clear message when Redis is unreachable).
    pub async fn connect(
        url: &str,
        keys: QueueKeys,
        consumer: String,
    ) -> Result<Self, BrokerError> {
        let (target, writer) = connect_to(url).await?;
        let reader = target
            .connect(READ_BLOCK + RESPONSE_TIMEOUT)
            .await
            .map_err(|e| target.connect_error(e))?;
        Ok(Broker {
            target: std::sync::Arc::new(target),
            keys,
            consumer,
            writer,
            reader,
            record_outcomes: Script::new(include_str!("record_outcomes.lua")),
            promote_due: Script::new(include_str!("promote_due.lua")),
            touch_inflight: Script::new(include_str!("touch_inflight.lua")),
            remove_consumer: Script::new(include_str!("remove_consumer.lua")),
            claim_cursor: "0-0".to_owned(),
        })
    }

    /// Replaces the read connection after an error, in case it cannot
    /// recover by itself (a blocked read cut off mid-reply).
    pub async fn reconnect_reader(&mut self) {
        if let Ok(reader) = self.target.connect(READ_BLOCK + RESPONSE_TIMEOUT).await {
            self.reader = reader;
        }
    }

    pub fn keys(&self) -> &QueueKeys {
        &self.keys
    }

    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    fn command_error(&self, source: RedisError) -> BrokerError {
        self.target.command_error(source)
    }

    /// Creates the stream and the consumer group if missing. A new group starts
    /// at the beginning of the stream: jobs enqueued before any host ran are served.
    pub async fn ensure_group(&mut self) -> Result<(), BrokerError> {
        let created: Result<(), RedisError> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.keys.stream)
            .arg(&self.keys.group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut self.writer)
            .await;
        match created {
            Err(e) if e.code() != Some("BUSYGROUP") => Err(self.command_error(e)),
            _ => Ok(()),
        }
    }

    /// Reads up to `count` entries never delivered to any consumer, waiting
    /// briefly when there are none.
    pub async fn read_new(&mut self, count: usize) -> Result<Vec<Delivery>, BrokerError> {
        let reply: redis::Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&self.keys.group)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(count)
            .arg("BLOCK")
            .arg(READ_BLOCK.as_millis() as u64)
            .arg("STREAMS")
            .arg(&self.keys.stream)
            .arg(">")
            .query_async(&mut self.reader)
            .await
            .map_err(|e| self.command_error(e))?;
        Ok(entries::parse_read_reply(reply))
    }

    /// Records outcomes, all in one atomic step, and says which it could not
    /// write (those entries stay pending) and which optional writes it skipped.
    /// Safe to call again with the same records after an error: an outcome
    /// already recorded is not written twice, and a script error comes before
    /// anything was written.
    pub async fn record(&mut self, records: &[Record<'_>]) -> Result<Recorded, BrokerError> {
        if records.is_empty() {
            return Ok(Recorded::default());
        }
        let command = record::batch_command(records, &self.keys, self.record_outcomes.get_hash());
        let result: Result<Recorded, RedisError> = command.query_async(&mut self.writer).await;
        match result {
            Err(e) if e.code() == Some("NOSCRIPT") => {
                self.record_outcomes
                    .prepare_invoke()
                    .load_async(&mut self.writer)
                    .await
                    .map_err(|e| self.command_error(e))?;
                command
                    .query_async::<Recorded>(&mut self.writer)
                    .await
                    .map_err(|e| self.command_error(e))
            }
            other => other.map_err(|e| self.command_error(e)),
        }
    }

    /// Moves due delayed jobs (retries, `--delay`) onto the stream.
    pub async fn promote_due(&mut self, now_ms: u64) -> Result<usize, BrokerError> {
        self.promote_due
            .key(&self.keys.delayed)
            .key(&self.keys.stream)
            .arg(now_ms)
            .arg(PROMOTE_BATCH)
            .invoke_async(&mut self.writer)
            .await
            .map_err(|e| self.command_error(e))
    }

    /// A clone of the write connection, for producers sharing this host's link.
    pub fn writer(&self) -> Connection {
        self.writer.clone()
    }
}

/// Parses `url` and opens the connection every non-blocking command goes
/// through, failing with a message that names the (redacted) URL.
async fn connect_to(url: &str) -> Result<(Target, Connection), BrokerError> {
    let target = Target::parse(url)?;
    let conn = target
        .connect(RESPONSE_TIMEOUT)
        .await
        .map_err(|e| target.connect_error(e))?;
    Ok((target, conn))
}

impl Target {
    fn connect_error(&self, error: RedisError) -> BrokerError {
        let reason = error.to_string();
        let hint = if reason.contains("ertificate") || reason.contains("TLS") {
            "check the URL's tls_ca, tls_cert and tls_key"
        } else {
            "is redis-server running? (set --redis or REDIS_URL)"
        };
        BrokerError::Connect {
            url: self.redacted().to_owned(),
            reason,
            hint,
        }
    }

    fn command_error(&self, error: RedisError) -> BrokerError {
        BrokerError::Command {
            url: self.redacted().to_owned(),
            error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(
            redact("redis://user:secret@host:6379/0"),
            "redis://user:***@host:6379/0"
        );
        assert_eq!(redact("rediss://secret@host"), "rediss://***@host");
    }
}
