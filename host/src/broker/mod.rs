//! Redis: one handle ([`Redis`]) that knows where Redis is, holds a
//! connection and maps every error to one message, and the queue operations
//! on it, each taking the keys of the queue it works on — so one process
//! serves any number of queues over one set of connections.
//!
//! `consume.rs` reads jobs through the consumer group, `record.rs` writes each
//! job's outcome atomically, `reclaim.rs` recovers work from dead hosts,
//! `produce.rs` enqueues, `admin.rs` inspects (DLQ, stats), `kv.rs` reads
//! and repairs key-value buckets, `limit.rs` asks for fleet-wide limits,
//! `pause.rs` pauses and resumes queues, `schedules.rs` keeps recurring
//! schedules and fires their ticks, `lookup.rs` finds a job by its id and
//! `cancel.rs` cancels it;
//! `entries.rs` is the one parser of stream replies.

mod admin;
mod cancel;
mod connection;
mod consume;
pub mod delayed;
mod entries;
pub mod kv;
pub mod limit;
mod lookup;
mod pause;
mod presence;
mod produce;
mod reclaim;
mod record;
pub mod schedules;
mod target;

use std::sync::Arc;
use std::time::Duration;

use redis::{FromRedisValue, RedisError, Script, ScriptInvocation};
use thiserror::Error;

pub use admin::{DeadJob, MAX_REPLAYS, QueueCounts, QueueStats, Replay};
pub use cancel::{CancelReport, Cancelling};
pub use connection::Connection;
pub use consume::READ_BLOCK;
pub use entries::{Delivery, Malformed};
pub use kv::BucketSize;
pub use lookup::{Found, Kept, Place};
pub use presence::{HostInfo, PluginInfo};
pub use produce::{Enqueued, JobResult, UNIQUE_CAP, unique_ttl_ms};
pub use reclaim::{ClaimCursor, ConsumerStats};
pub use record::{KeepResults, Record, Recorded, Unwritten};
pub use target::Target;

/// Replies slower than this mean the connection is unusable.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

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
    #[error("key {key} holds another type than jobhost keeps there; delete it")]
    WrongType { key: String },
    /// A key the write needs holds something it cannot take; nothing was written.
    #[error("key {key} {reason}; delete or rename that key")]
    Refused { key: String, reason: String },
}

impl BrokerError {
    /// Whether a key held another type than the command works on: a
    /// problem of that key, not of Redis.
    pub fn is_wrong_type(&self) -> bool {
        match self {
            BrokerError::WrongType { .. } => true,
            // A pipeline's error keeps each failed command's own.
            BrokerError::Command { error, .. } => error
                .clone()
                .into_server_errors()
                .is_some_and(|errors| errors.iter().any(|(_, e)| e.code() == "WRONGTYPE")),
            _ => false,
        }
    }
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

/// A handle on Redis: its target, a connection, and the one mapping of Redis
/// errors to [`BrokerError`]. Clones share the connection.
#[derive(Clone)]
pub struct Redis {
    target: Arc<Target>,
    conn: Connection,
    /// How long a reply may take on this handle's connection.
    response_timeout: Duration,
}

impl Redis {
    /// Connects (failing fast with a clear message when Redis is unreachable).
    pub async fn connect(url: &str) -> Result<Self, BrokerError> {
        Self::open(Arc::new(Target::parse(url)?), RESPONSE_TIMEOUT).await
    }

    /// Another handle on the same Redis with a connection of its own, for
    /// commands that block up to `block` (XREADGROUP/XREAD BLOCK), so they
    /// never hold up the commands sent through this one.
    pub async fn blocking(&self, block: Duration) -> Result<Self, BrokerError> {
        Self::open(self.target.clone(), block + RESPONSE_TIMEOUT).await
    }

    async fn open(target: Arc<Target>, response_timeout: Duration) -> Result<Self, BrokerError> {
        let conn = target
            .connect(response_timeout)
            .await
            .map_err(|e| connect_error(&target, e))?;
        Ok(Redis {
            target,
            conn,
            response_timeout,
        })
    }

    /// Replaces this handle's connection after an error, in case it cannot
    /// recover by itself (a blocked read cut off mid-reply). Keeps the old one
    /// when Redis is still unreachable.
    pub async fn reconnect(&mut self) {
        if let Ok(conn) = self.target.connect(self.response_timeout).await {
            self.conn = conn;
        }
    }

    /// The URL, password masked.
    pub fn redacted_url(&self) -> &str {
        self.target.redacted()
    }

    /// A client for connections of its own, when Redis is one server (a
    /// Cluster or Sentinel has no single address to connect to).
    pub fn single_server(&self) -> Option<redis::Client> {
        match &self.target.kind {
            target::Kind::Single(client) => Some(client.clone()),
            _ => None,
        }
    }

    /// Whether Redis is a Cluster (a command without keys reaches one node).
    pub fn is_cluster(&self) -> bool {
        self.target.is_cluster()
    }

    /// Sends one command.
    pub async fn query<T: FromRedisValue>(&mut self, cmd: &redis::Cmd) -> Result<T, BrokerError> {
        cmd.query_async(&mut self.conn)
            .await
            .map_err(|e| self.error(e))
    }

    /// Sends a pipeline, in one round trip.
    pub async fn pipeline<T: FromRedisValue>(
        &mut self,
        pipe: &redis::Pipeline,
    ) -> Result<T, BrokerError> {
        pipe.query_async(&mut self.conn)
            .await
            .map_err(|e| self.error(e))
    }

    /// Runs a script (EVALSHA, loading it first when Redis does not know it).
    pub async fn invoke<T: FromRedisValue>(
        &mut self,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, BrokerError> {
        invocation
            .invoke_async(&mut self.conn)
            .await
            .map_err(|e| self.error(e))
    }

    /// Sends an EVALSHA of `script` built by hand (to spare copying large
    /// argument lists), loading the script and sending it again when Redis
    /// does not know it yet.
    async fn evalsha<T: FromRedisValue>(
        &mut self,
        script: &Script,
        command: &redis::Cmd,
    ) -> Result<T, BrokerError> {
        match command.query_async(&mut self.conn).await {
            Err(e) if e.code() == Some("NOSCRIPT") => {
                script
                    .prepare_invoke()
                    .load_async(&mut self.conn)
                    .await
                    .map_err(|e| self.error(e))?;
                self.query(command).await
            }
            other => other.map_err(|e| self.error(e)),
        }
    }

    /// Every key matching `pattern` (SCAN, on every master of a cluster).
    pub async fn scan(&mut self, pattern: &str) -> Result<Vec<String>, BrokerError> {
        self.conn.scan(pattern).await.map_err(|e| self.error(e))
    }

    /// The one mapping of a failed command to the error users see.
    fn error(&self, error: RedisError) -> BrokerError {
        BrokerError::Command {
            url: self.target.redacted().to_owned(),
            error,
        }
    }
}

fn connect_error(target: &Target, error: RedisError) -> BrokerError {
    let reason = error.to_string();
    let hint = if reason.contains("ertificate") || reason.contains("TLS") {
        "check the URL's tls_ca, tls_cert and tls_key"
    } else {
        "is redis-server running? (set --redis or REDIS_URL)"
    };
    BrokerError::Connect {
        url: target.redacted().to_owned(),
        reason,
        hint,
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
