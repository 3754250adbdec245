//! Recovering work from dead or hung hosts: reclaiming stale entries, the
//! heartbeat that keeps a live host's entries from looking stale, and removing
//! consumers that are gone.

use std::collections::HashMap;
use std::time::Duration;

use redis::{RedisError, Value};

use super::entries::{Delivery, parse_entries};
use super::{Broker, BrokerError};

impl Broker {
    /// Claims up to `count` entries idle for longer than `min_idle`, from any
    /// consumer (XAUTOCLAIM), with how often each has now been delivered.
    pub async fn claim_stale(
        &mut self,
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<Delivery>, BrokerError> {
        let reply: Value = redis::cmd("XAUTOCLAIM")
            .arg(&self.keys.stream)
            .arg(&self.keys.group)
            .arg(&self.consumer)
            .arg(min_idle.as_millis() as u64)
            .arg(&self.claim_cursor)
            .arg("COUNT")
            .arg(count)
            .query_async(&mut self.writer)
            .await
            .map_err(|e| self.command_error(e))?;
        let Value::Array(mut parts) = reply else {
            return Ok(Vec::new());
        };
        if parts.len() < 2 {
            return Ok(Vec::new());
        }
        let entries = parts.remove(1);
        self.claim_cursor = match parts.remove(0) {
            Value::BulkString(cursor) => String::from_utf8_lossy(&cursor).into_owned(),
            Value::SimpleString(cursor) => cursor,
            _ => "0-0".to_owned(),
        };
        let mut claimed = parse_entries(entries);
        if claimed.is_empty() {
            return Ok(claimed);
        }
        let counts = self
            .delivery_counts(&claimed)
            .await
            .map_err(|e| self.command_error(e))?;
        for delivery in &mut claimed {
            delivery.deliveries = counts.get(&delivery.entry_id).copied().unwrap_or(1);
        }
        Ok(claimed)
    }

    /// Delivery counts of entries now pending under this consumer.
    async fn delivery_counts(
        &mut self,
        claimed: &[Delivery],
    ) -> Result<HashMap<String, u64>, RedisError> {
        let first = &claimed.first().expect("checked non-empty").entry_id;
        let last = &claimed.last().expect("checked non-empty").entry_id;
        let rows: Vec<(String, String, u64, u64)> = redis::cmd("XPENDING")
            .arg(&self.keys.stream)
            .arg(&self.keys.group)
            .arg(first)
            .arg(last)
            .arg(claimed.len())
            .arg(&self.consumer)
            .query_async(&mut self.writer)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(id, _, _, deliveries)| (id, deliveries))
            .collect())
    }

    /// Heartbeat: renews this host's liveness key for `ttl` and resets the idle
    /// time of its in-flight entries.
    pub async fn heartbeat(
        &mut self,
        entry_ids: &[String],
        ttl: Duration,
    ) -> Result<(), BrokerError> {
        redis::cmd("SET")
            .arg(self.keys.alive(&self.consumer))
            .arg(1)
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .query_async::<()>(&mut self.writer)
            .await
            .map_err(|e| self.command_error(e))?;
        if entry_ids.is_empty() {
            return Ok(());
        }
        let mut invocation = self.touch_inflight.key(&self.keys.stream);
        invocation.arg(&self.keys.group).arg(&self.consumer);
        for id in entry_ids {
            invocation.arg(id);
        }
        invocation
            .invoke_async::<u64>(&mut self.writer)
            .await
            .map(drop)
            .map_err(|e| self.command_error(e))
    }

    /// Leaving cleanly: drops this host's liveness key and, if it holds no
    /// entries, its consumer, so the group lists only hosts that exist.
    pub async fn leave(&mut self) -> Result<(), BrokerError> {
        let alive = self.keys.alive(&self.consumer);
        redis::cmd("DEL")
            .arg(&alive)
            .query_async::<()>(&mut self.writer)
            .await
            .map_err(|e| self.command_error(e))?;
        self.remove_consumer
            .key(&self.keys.stream)
            .key(&alive)
            .arg(&self.keys.group)
            .arg(&self.consumer)
            .invoke_async::<u64>(&mut self.writer)
            .await
            .map(drop)
            .map_err(|e| self.command_error(e))
    }

    /// Removes other consumers idle for longer than `idle` whose host is gone
    /// (no liveness key) and that hold no entries. Returns their names.
    pub async fn remove_gone_consumers(
        &mut self,
        idle: Duration,
    ) -> Result<Vec<String>, BrokerError> {
        let consumers: Vec<HashMap<String, Value>> = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(&self.keys.stream)
            .arg(&self.keys.group)
            .query_async(&mut self.writer)
            .await
            .map_err(|e| self.command_error(e))?;
        let mut removed = Vec::new();
        for consumer in consumers {
            let name = match consumer.get("name") {
                Some(Value::BulkString(name)) => String::from_utf8_lossy(name).into_owned(),
                Some(Value::SimpleString(name)) => name.clone(),
                _ => continue,
            };
            let idle_ms = match consumer.get("idle") {
                Some(Value::Int(ms)) => *ms as u128,
                _ => continue,
            };
            if name == self.consumer || idle_ms <= idle.as_millis() {
                continue;
            }
            let gone: u64 = self
                .remove_consumer
                .key(&self.keys.stream)
                .key(self.keys.alive(&name))
                .arg(&self.keys.group)
                .arg(&name)
                .invoke_async(&mut self.writer)
                .await
                .map_err(|e| self.command_error(e))?;
            if gone == 1 {
                removed.push(name);
            }
        }
        Ok(removed)
    }
}
