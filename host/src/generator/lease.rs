//! The lease that makes one generator per namespace the leader.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use crate::broker::{BrokerError, Redis};
use crate::keys::GeneratorKeys;

static RENEW: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("renew_lease.lua")));
static RELEASE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("release_lease.lua")));

/// A lease in Redis, held by `holder` while renewed.
pub struct Lease {
    redis: Redis,
    keys: GeneratorKeys,
    holder: String,
    ttl: Duration,
}

impl Lease {
    pub fn new(redis: Redis, namespace: &str, holder: String, ttl: Duration) -> Self {
        Lease {
            redis,
            keys: GeneratorKeys::new(namespace),
            holder,
            ttl,
        }
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    fn ttl_ms(&self) -> u64 {
        self.ttl.as_millis() as u64
    }

    /// Takes the lease if nobody holds it.
    pub async fn try_acquire(&mut self) -> Result<bool, BrokerError> {
        let set: Option<String> = self
            .redis
            .query(
                redis::cmd("SET")
                    .arg(&self.keys.lease)
                    .arg(&self.holder)
                    .arg("NX")
                    .arg("PX")
                    .arg(self.ttl_ms()),
            )
            .await?;
        Ok(set.is_some())
    }

    /// Who holds the lease now, if anyone.
    pub async fn current_holder(&mut self) -> Result<Option<String>, BrokerError> {
        self.redis
            .query(redis::cmd("GET").arg(&self.keys.lease))
            .await
    }

    /// Extends the lease; false when it is no longer ours.
    pub async fn renew(&mut self) -> Result<bool, BrokerError> {
        let ttl_ms = self.ttl_ms();
        let mut invocation = RENEW.key(&self.keys.lease);
        invocation.arg(&self.holder).arg(ttl_ms);
        let renewed: u64 = self.redis.invoke(&invocation).await?;
        Ok(renewed == 1)
    }

    pub async fn release(&mut self) -> Result<(), BrokerError> {
        let mut invocation = RELEASE.key(&self.keys.lease);
        invocation.arg(&self.holder);
        self.redis.invoke::<u64>(&invocation).await.map(drop)
    }

    /// A dedicated generator says it is waiting for the lease.
    pub async fn announce_waiting(&mut self) -> Result<(), BrokerError> {
        self.redis
            .query(
                redis::cmd("SET")
                    .arg(&self.keys.wanted)
                    .arg(&self.holder)
                    .arg("PX")
                    .arg(self.ttl_ms()),
            )
            .await
    }

    /// Whether a dedicated generator is waiting for the lease.
    pub async fn is_wanted(&mut self) -> Result<bool, BrokerError> {
        self.redis
            .query(redis::cmd("EXISTS").arg(&self.keys.wanted))
            .await
    }
}
