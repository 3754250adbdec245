//! Operating on a queue: the dead-letter stream (list, show, replay, purge,
//! drain) and the figures `jobhost stats` shows.

use redis::{RedisError, Script, Value};

use super::entries::raw_entries;
use super::{BrokerError, Connection, Target, connect_to};
use crate::keys::QueueKeys;

/// Entries read per XRANGE page.
const PAGE: usize = 500;

/// One dead-letter entry: its id and fields, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadJob {
    pub id: String,
    pub fields: Vec<(String, String)>,
}

impl DeadJob {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The state of one queue, as `jobhost stats` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct QueueStats {
    pub queue: String,
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
}

/// One host's consumer in the group.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConsumerStats {
    pub name: String,
    pub pending: u64,
    pub idle_ms: u64,
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

/// Administrative access to one queue.
pub struct Admin {
    target: Target,
    keys: QueueKeys,
    conn: Connection,
    replay: Script,
}

impl Admin {
    pub async fn connect(url: &str, keys: QueueKeys) -> Result<Self, BrokerError> {
        let (target, conn) = connect_to(url).await?;
        Ok(Admin {
            target,
            keys,
            conn,
            replay: Script::new(include_str!("replay.lua")),
        })
    }

    pub fn keys(&self) -> &QueueKeys {
        &self.keys
    }

    fn error(&self, error: RedisError) -> BrokerError {
        self.target.command_error(error)
    }

    /// Dead jobs, oldest first, optionally only of one type, at most `limit`.
    pub async fn dead_jobs(
        &mut self,
        job_type: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<DeadJob>, BrokerError> {
        let mut found = Vec::new();
        let mut start = "-".to_owned();
        loop {
            let page: Value = redis::cmd("XRANGE")
                .arg(&self.keys.dlq)
                .arg(&start)
                .arg("+")
                .arg("COUNT")
                .arg(PAGE)
                .query_async(&mut self.conn)
                .await
                .map_err(|e| self.error(e))?;
            let page = parse_entries(page);
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

    pub async fn dead_job(&mut self, id: &str) -> Result<Option<DeadJob>, BrokerError> {
        let page: Value = redis::cmd("XRANGE")
            .arg(&self.keys.dlq)
            .arg(id)
            .arg(id)
            .query_async(&mut self.conn)
            .await
            .map_err(|e| self.error(e))?;
        Ok(parse_entries(page).into_iter().next())
    }

    /// Puts a dead job back on its stream (see `replay.lua`).
    pub async fn replay(
        &mut self,
        id: &str,
        max_replays: u32,
        force: bool,
    ) -> Result<Replay, BrokerError> {
        let reply: Vec<String> = self
            .replay
            .key(&self.keys.dlq)
            .key(&self.keys.stream)
            .arg(id)
            .arg(max_replays)
            .arg(if force { "force" } else { "" })
            .invoke_async(&mut self.conn)
            .await
            .map_err(|e| self.error(e))?;
        Ok(match reply.as_slice() {
            [status, id] if status == "ok" => Replay::Replayed(id.clone()),
            [status, count] if status == "frozen" => Replay::Frozen(count.parse().unwrap_or(0)),
            _ => Replay::Missing,
        })
    }

    /// Deletes the given dead-letter entries; returns how many existed.
    pub async fn delete(&mut self, ids: &[String]) -> Result<u64, BrokerError> {
        let mut deleted = 0;
        for chunk in ids.chunks(PAGE) {
            let count: u64 = redis::cmd("XDEL")
                .arg(&self.keys.dlq)
                .arg(chunk)
                .query_async(&mut self.conn)
                .await
                .map_err(|e| self.error(e))?;
            deleted += count;
        }
        Ok(deleted)
    }

    /// Runs a read-only command against this queue's keys, for stats.
    pub async fn query<T: redis::FromRedisValue>(
        &mut self,
        cmd: &redis::Cmd,
    ) -> Result<T, BrokerError> {
        cmd.query_async(&mut self.conn)
            .await
            .map_err(|e| self.error(e))
    }
}

impl Admin {
    /// Queue names under `namespace` that have a stream.
    pub async fn queues(&mut self, namespace: &str) -> Result<Vec<String>, BrokerError> {
        let pattern = format!("{namespace}:{{*}}:stream");
        let keys = self.conn.scan(&pattern).await.map_err(|e| self.error(e))?;
        let mut queues: Vec<String> = keys
            .iter()
            .filter_map(|key| {
                let rest = key.strip_prefix(namespace)?.strip_prefix(":{")?;
                Some(rest.strip_suffix("}:stream")?.to_owned())
            })
            .collect();
        queues.sort();
        queues.dedup();
        Ok(queues)
    }

    /// The figures of this admin's queue.
    pub async fn stats(&mut self) -> Result<QueueStats, BrokerError> {
        let keys = self.keys.clone();
        let mut pipe = redis::pipe();
        pipe.cmd("XLEN").arg(&keys.stream);
        pipe.cmd("ZCARD").arg(&keys.delayed);
        pipe.cmd("XLEN").arg(&keys.dlq);
        pipe.cmd("HGETALL").arg(&keys.counters);
        let (stream_length, delayed, dead_letters, counters): (
            u64,
            u64,
            u64,
            std::collections::HashMap<String, u64>,
        ) = pipe
            .query_async(&mut self.conn)
            .await
            .map_err(|e| self.error(e))?;
        let groups: Vec<std::collections::HashMap<String, Value>> = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&keys.stream)
            .query_async(&mut self.conn)
            .await
            .unwrap_or_default();
        let group = groups.iter().find(|group| {
            group.get("name").and_then(|v| text(v.clone())).as_deref() == Some(keys.group.as_str())
        });
        let number = |map: Option<&std::collections::HashMap<String, Value>>, name: &str| match map
            .and_then(|m| m.get(name))
        {
            Some(Value::Int(n)) => (*n).max(0) as u64,
            _ => 0,
        };
        let consumers = if group.is_some() {
            let list: Vec<std::collections::HashMap<String, Value>> = redis::cmd("XINFO")
                .arg("CONSUMERS")
                .arg(&keys.stream)
                .arg(&keys.group)
                .query_async(&mut self.conn)
                .await
                .map_err(|e| self.error(e))?;
            list.iter()
                .map(|c| ConsumerStats {
                    name: c
                        .get("name")
                        .and_then(|v| text(v.clone()))
                        .unwrap_or_default(),
                    pending: number(Some(c), "pending"),
                    idle_ms: number(Some(c), "idle"),
                })
                .collect()
        } else {
            Vec::new()
        };
        let counter = |name: &str| counters.get(name).copied().unwrap_or(0);
        Ok(QueueStats {
            queue: keys.queue.clone(),
            stream_length,
            pending: number(group, "pending"),
            lag: number(group, "lag"),
            consumers,
            delayed,
            dead_letters,
            processed: counter("done"),
            failed: counter("dead"),
            retried: counter("retry"),
            expired: counter("expired"),
        })
    }
}

fn parse_entries(value: Value) -> Vec<DeadJob> {
    raw_entries(value)
        .into_iter()
        .map(|(id, pairs)| DeadJob {
            id,
            fields: pairs
                .into_iter()
                .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
                .collect(),
        })
        .collect()
}

fn text(value: Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
        Value::SimpleString(s) => Some(s),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}
