//! Redis Streams: connecting, reading jobs through the consumer group, and
//! recording each job's outcome atomically.

mod admin;
mod entries;
mod produce;
mod reclaim;
mod record;

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, RedisError, Script};
use thiserror::Error;

pub use admin::{Admin, ConsumerStats, DeadJob, QueueStats, Replay};
pub use entries::{Delivery, Malformed};
pub use produce::{JobResult, Producer};
pub use record::Record;

use crate::keys::QueueKeys;

/// How long one XREADGROUP waits for new entries before the reader looks around
/// (shutdown, delayed jobs) and reads again.
const READ_BLOCK: Duration = Duration::from_millis(500);
/// Replies slower than this mean the connection is unusable.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Most delayed jobs moved to the stream in one call.
const PROMOTE_BATCH: usize = 500;

/// Redis could not be used. Messages never contain the URL's password.
#[derive(Debug, Error)]
pub enum BrokerError {
    #[error("invalid Redis URL {url}: {reason}")]
    Url { url: String, reason: String },
    #[error(
        "cannot reach Redis at {url}: {reason}; is redis-server running? (set --redis or REDIS_URL)"
    )]
    Connect { url: String, reason: String },
    #[error("Redis at {url}: {error}")]
    Command { url: String, error: RedisError },
}

/// Opens a client for `url`, checking its form.
pub fn open_client(url: &str) -> Result<Client, BrokerError> {
    Client::open(url).map_err(|e| BrokerError::Url {
        url: redact(url),
        reason: e.to_string(),
    })
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
    client: Client,
    url: String,
    keys: QueueKeys,
    consumer: String,
    writer: ConnectionManager,
    /// Blocking reads get their own connection so they never delay writes.
    reader: MultiplexedConnection,
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
        let client = open_client(url)?;
        let redacted = redact(url);
        let connect_error = |e: RedisError| BrokerError::Connect {
            url: redacted.clone(),
            reason: e.to_string(),
        };
        let reader = connect_reader(&client).await.map_err(connect_error)?;
        let writer = connect_writer(&client).await.map_err(connect_error)?;
        Ok(Broker {
            client,
            url: redacted,
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

    /// Replaces the read connection after an error: unlike the write side, a
    /// plain multiplexed connection does not reconnect by itself.
    pub async fn reconnect_reader(&mut self) {
        if let Ok(reader) = connect_reader(&self.client).await {
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
        BrokerError::Command {
            url: self.url.clone(),
            error: source,
        }
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

    /// Records outcomes, all in one atomic step.
    /// Safe to call again with the same records after an error: an outcome
    /// already recorded is not written twice.
    pub async fn record(&mut self, records: &[Record<'_>]) -> Result<(), BrokerError> {
        if records.is_empty() {
            return Ok(());
        }
        let command = record::batch_command(records, &self.keys, self.record_outcomes.get_hash());
        let result: Result<u64, RedisError> = command.query_async(&mut self.writer).await;
        match result {
            Err(e) if e.code() == Some("NOSCRIPT") => {
                self.record_outcomes
                    .prepare_invoke()
                    .load_async(&mut self.writer)
                    .await
                    .map_err(|e| self.command_error(e))?;
                command
                    .query_async::<u64>(&mut self.writer)
                    .await
                    .map(drop)
                    .map_err(|e| self.command_error(e))
            }
            other => other.map(drop).map_err(|e| self.command_error(e)),
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
    pub fn writer(&self) -> ConnectionManager {
        self.writer.clone()
    }
}

/// A client for `url` and its auto-reconnecting connection, failing with a
/// message that names the (redacted) URL.
async fn connect_to(url: &str) -> Result<(Client, ConnectionManager), BrokerError> {
    let client = open_client(url)?;
    let conn = connect_writer(&client)
        .await
        .map_err(|e| BrokerError::Connect {
            url: redact(url),
            reason: e.to_string(),
        })?;
    Ok((client, conn))
}

/// The auto-reconnecting connection every non-blocking command goes through.
async fn connect_writer(client: &Client) -> Result<ConnectionManager, RedisError> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(1);
    client.get_connection_manager_with_config(config).await
}

async fn connect_reader(client: &Client) -> Result<MultiplexedConnection, RedisError> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(READ_BLOCK + RESPONSE_TIMEOUT));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
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
