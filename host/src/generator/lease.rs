//! The lease that makes one generator per namespace the leader.

use std::time::Duration;

use crate::broker::Connection;
use redis::Script;

/// A lease in Redis, held by `holder` while renewed.
pub struct Lease {
    conn: Connection,
    key: String,
    /// Set by a dedicated generator waiting in standby: a consumer host that
    /// generates as a fallback hands the lease back when it sees this.
    wanted_key: String,
    holder: String,
    ttl: Duration,
    renew: Script,
    release: Script,
}

impl Lease {
    pub fn new(conn: Connection, namespace: &str, holder: String, ttl: Duration) -> Self {
        Lease {
            conn,
            key: format!("{namespace}:generator:lease"),
            wanted_key: format!("{namespace}:generator:wanted"),
            holder,
            ttl,
            renew: Script::new(include_str!("renew_lease.lua")),
            release: Script::new(include_str!("release_lease.lua")),
        }
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    fn ttl_ms(&self) -> u64 {
        self.ttl.as_millis() as u64
    }

    /// Takes the lease if nobody holds it.
    pub async fn try_acquire(&mut self) -> redis::RedisResult<bool> {
        let set: Option<String> = redis::cmd("SET")
            .arg(&self.key)
            .arg(&self.holder)
            .arg("NX")
            .arg("PX")
            .arg(self.ttl_ms())
            .query_async(&mut self.conn)
            .await?;
        Ok(set.is_some())
    }

    /// Who holds the lease now, if anyone.
    pub async fn current_holder(&mut self) -> redis::RedisResult<Option<String>> {
        redis::cmd("GET")
            .arg(&self.key)
            .query_async(&mut self.conn)
            .await
    }

    /// Extends the lease; false when it is no longer ours.
    pub async fn renew(&mut self) -> redis::RedisResult<bool> {
        let renewed: u64 = self
            .renew
            .key(&self.key)
            .arg(&self.holder)
            .arg(self.ttl_ms())
            .invoke_async(&mut self.conn)
            .await?;
        Ok(renewed == 1)
    }

    pub async fn release(&mut self) -> redis::RedisResult<()> {
        self.release
            .key(&self.key)
            .arg(&self.holder)
            .invoke_async::<u64>(&mut self.conn)
            .await
            .map(drop)
    }

    /// A dedicated generator says it is waiting for the lease.
    pub async fn announce_waiting(&mut self) -> redis::RedisResult<()> {
        redis::cmd("SET")
            .arg(&self.wanted_key)
            .arg(&self.holder)
            .arg("PX")
            .arg(self.ttl_ms())
            .query_async(&mut self.conn)
            .await
    }

    /// Whether a dedicated generator is waiting for the lease.
    pub async fn is_wanted(&mut self) -> redis::RedisResult<bool> {
        redis::cmd("EXISTS")
            .arg(&self.wanted_key)
            .query_async(&mut self.conn)
            .await
    }
}
