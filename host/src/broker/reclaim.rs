//! Recovering work from dead or hung hosts: reclaiming stale entries, the
//! heartbeat that keeps a live host's entries from looking stale, and removing
//! consumers that are gone.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use redis::{Script, Value};

use super::consume::READ_ENTRIES;
use super::entries::{Delivery, screened_entries, text};
use super::{BrokerError, Redis};
use crate::keys::QueueKeys;

static TOUCH_INFLIGHT: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("touch_inflight.lua")));
static REMOVE_CONSUMER: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("remove_consumer.lua")));

/// Where the next XAUTOCLAIM scan of a queue continues; one per queue a host reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimCursor(String);

impl Default for ClaimCursor {
    fn default() -> Self {
        ClaimCursor("0-0".to_owned())
    }
}

/// One consumer of a group, as `XINFO CONSUMERS` lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConsumerStats {
    pub name: String,
    pub pending: u64,
    pub idle_ms: u64,
}

impl Redis {
    /// Claims for `consumer` up to `count` entries idle for longer than
    /// `min_idle`, from any consumer (XAUTOCLAIM, in `read_entries.lua`: an
    /// entry larger than `largest` bytes comes with its size only), with how
    /// often each has now been delivered.
    pub async fn claim_stale(
        &mut self,
        keys: &QueueKeys,
        consumer: &str,
        min_idle: Duration,
        cursor: &mut ClaimCursor,
        count: usize,
        largest: usize,
    ) -> Result<Vec<Delivery>, BrokerError> {
        let reply: Value = self
            .invoke(
                READ_ENTRIES
                    .key(&keys.stream)
                    .arg("stale")
                    .arg(&keys.group)
                    .arg(consumer)
                    .arg(count)
                    .arg(largest)
                    .arg(min_idle.as_millis() as u64)
                    .arg(&cursor.0),
            )
            .await?;
        let Value::Array(mut parts) = reply else {
            return Ok(Vec::new());
        };
        if parts.len() < 2 {
            return Ok(Vec::new());
        }
        let entries = parts.remove(1);
        cursor.0 = text(parts.remove(0)).unwrap_or_else(|| "0-0".to_owned());
        let mut claimed = screened_entries(entries, largest);
        if claimed.is_empty() {
            return Ok(claimed);
        }
        let counts = self.delivery_counts(keys, consumer, &claimed).await?;
        for delivery in &mut claimed {
            delivery.deliveries = counts.get(&delivery.entry_id).copied().unwrap_or(1);
        }
        Ok(claimed)
    }

    /// Delivery counts of entries now pending under `consumer`.
    async fn delivery_counts(
        &mut self,
        keys: &QueueKeys,
        consumer: &str,
        claimed: &[Delivery],
    ) -> Result<HashMap<String, u64>, BrokerError> {
        let first = &claimed.first().expect("checked non-empty").entry_id;
        let last = &claimed.last().expect("checked non-empty").entry_id;
        let rows: Vec<(String, String, u64, u64)> = self
            .query(
                redis::cmd("XPENDING")
                    .arg(&keys.stream)
                    .arg(&keys.group)
                    .arg(first)
                    .arg(last)
                    .arg(claimed.len())
                    .arg(consumer),
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|(id, _, _, deliveries)| (id, deliveries))
            .collect())
    }

    /// Heartbeat: renews `consumer`'s liveness key for `ttl` and resets the
    /// idle time of its in-flight entries.
    pub async fn heartbeat(
        &mut self,
        keys: &QueueKeys,
        consumer: &str,
        entries: &[(String, u64)],
        ttl: Duration,
    ) -> Result<(), BrokerError> {
        self.query::<()>(
            redis::cmd("SET")
                .arg(keys.alive(consumer))
                .arg(1)
                .arg("PX")
                .arg(ttl.as_millis() as u64),
        )
        .await?;
        if entries.is_empty() {
            return Ok(());
        }
        let mut invocation = TOUCH_INFLIGHT.key(&keys.stream);
        invocation
            .key(keys.held(consumer))
            .arg(&keys.group)
            .arg(consumer)
            .arg(ttl.as_millis() as u64);
        for (id, since_ms) in entries {
            invocation.arg(id).arg(since_ms);
        }
        self.invoke::<u64>(&invocation).await.map(drop)
    }

    /// Leaving cleanly: drops `consumer`'s liveness key and, if it holds no
    /// entries, the consumer itself, so the group lists only hosts that exist.
    pub async fn leave(&mut self, keys: &QueueKeys, consumer: &str) -> Result<(), BrokerError> {
        self.query::<()>(redis::cmd("DEL").arg(keys.alive(consumer)))
            .await?;
        self.remove_consumer(keys, consumer).await.map(drop)
    }

    /// Removes consumers other than `consumer` idle for longer than `idle`
    /// whose host is gone (no liveness key) and that hold no entries. Returns
    /// their names.
    pub async fn remove_gone_consumers(
        &mut self,
        keys: &QueueKeys,
        consumer: &str,
        idle: Duration,
    ) -> Result<Vec<String>, BrokerError> {
        let mut removed = Vec::new();
        for other in self.consumers(keys).await? {
            if other.name == consumer || u128::from(other.idle_ms) <= idle.as_millis() {
                continue;
            }
            if self.remove_consumer(keys, &other.name).await? {
                removed.push(other.name);
            }
        }
        Ok(removed)
    }

    /// Removes `consumer` if its host is gone and it holds nothing (see `remove_consumer.lua`).
    async fn remove_consumer(
        &mut self,
        keys: &QueueKeys,
        consumer: &str,
    ) -> Result<bool, BrokerError> {
        let removed: u64 = self
            .invoke(
                REMOVE_CONSUMER
                    .key(&keys.stream)
                    .key(keys.alive(consumer))
                    .arg(&keys.group)
                    .arg(consumer),
            )
            .await?;
        Ok(removed == 1)
    }

    /// The consumers of the queue's group (`XINFO CONSUMERS`).
    pub async fn consumers(&mut self, keys: &QueueKeys) -> Result<Vec<ConsumerStats>, BrokerError> {
        let list: Vec<HashMap<String, Value>> = self
            .query(
                redis::cmd("XINFO")
                    .arg("CONSUMERS")
                    .arg(&keys.stream)
                    .arg(&keys.group),
            )
            .await?;
        Ok(list
            .into_iter()
            .filter_map(|mut consumer| {
                let mut number = |name: &str| match consumer.remove(name) {
                    Some(Value::Int(n)) => Some(n.max(0) as u64),
                    _ => None,
                };
                let pending = number("pending").unwrap_or(0);
                let idle_ms = number("idle")?;
                Some(ConsumerStats {
                    name: text(consumer.remove("name")?)?,
                    pending,
                    idle_ms,
                })
            })
            .collect())
    }
}
