//! Committed key-value state, read from Redis by jobs while they run.

use std::future::Future;
use std::time::Instant;

use tokio::runtime::Handle;

use crate::broker::{BrokerError, Redis};
use crate::keys::QueueKeys;
use crate::plugins::kv::{CommittedKv, KeyPage};

/// The buckets of one queue. Job threads are no tokio threads: each call
/// waits here for a command sent on the host's runtime, at most until the
/// job's deadline.
pub(super) struct RedisKv {
    redis: Redis,
    keys: QueueKeys,
    runtime: Handle,
}

impl RedisKv {
    pub(super) fn new(redis: Redis, keys: QueueKeys, runtime: Handle) -> Self {
        RedisKv {
            redis,
            keys,
            runtime,
        }
    }

    fn call<T, F>(
        &self,
        bucket: &str,
        deadline: Instant,
        command: impl FnOnce(Redis, QueueKeys) -> F,
    ) -> Result<T, String>
    where
        F: Future<Output = Result<T, BrokerError>>,
    {
        let future = command(self.redis.clone(), self.keys.clone());
        let deadline = tokio::time::Instant::from_std(deadline);
        let result = self
            .runtime
            .block_on(async move { tokio::time::timeout_at(deadline, future).await });
        match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(BrokerError::Command { error, .. })) if error.code() == Some("WRONGTYPE") => {
                Err(format!(
                    "the bucket's Redis key {} holds another type, not a hash: fix or delete it",
                    self.keys.kv_bucket(bucket)
                ))
            }
            Ok(Err(error)) => Err(format!("state store unavailable: {error}")),
            Err(_) => Err("state store did not answer within the job's time limit".to_owned()),
        }
    }
}

impl CommittedKv for RedisKv {
    fn get(&self, bucket: &str, key: &str, deadline: Instant) -> Result<Option<Vec<u8>>, String> {
        self.call(bucket, deadline, |mut redis, keys| async move {
            redis.kv_get(&keys, bucket, key).await
        })
    }

    fn exists(&self, bucket: &str, key: &str, deadline: Instant) -> Result<bool, String> {
        self.call(bucket, deadline, |mut redis, keys| async move {
            redis.kv_exists(&keys, bucket, key).await
        })
    }

    fn page(
        &self,
        bucket: &str,
        cursor: u64,
        count: usize,
        deadline: Instant,
    ) -> Result<KeyPage, String> {
        let (next, keys) = self.call(bucket, deadline, |mut redis, keys| async move {
            redis.kv_page(&keys, bucket, cursor, count).await
        })?;
        Ok(KeyPage {
            keys,
            next: (next != 0).then_some(next),
        })
    }
}
