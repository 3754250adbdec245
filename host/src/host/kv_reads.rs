//! Committed key-value state, read from Redis by jobs while they run, on
//! the job threads' own way to Redis (`job_redis.rs`). A read gives up at
//! the job's deadline.

use std::sync::Arc;
use std::time::Instant;

use redis::FromRedisValue;

use crate::broker::kv::reads;
use crate::keys::QueueKeys;
use crate::plugins::kv::{CommittedKv, KeyPage};

use super::job_redis::{Command, Failed, JobRedis};

/// The buckets of a namespace's queues.
pub(super) struct RedisKv {
    namespace: String,
    redis: Arc<JobRedis>,
}

impl RedisKv {
    pub(super) fn new(redis: Arc<JobRedis>, namespace: &str) -> Self {
        RedisKv {
            namespace: namespace.to_owned(),
            redis,
        }
    }

    fn keys(&self, queue: &str) -> QueueKeys {
        QueueKeys::new(&self.namespace, queue)
    }

    fn call<T: FromRedisValue + Send + 'static>(
        &self,
        keys: &QueueKeys,
        bucket: &str,
        deadline: Instant,
        command: Command,
    ) -> Result<T, String> {
        self.redis
            .call(deadline, command)
            .map_err(|failed| match failed {
                Failed::Redis(error) if error.code() == Some("WRONGTYPE") => format!(
                    "the bucket's Redis key {} holds another type, not a hash: fix or delete it",
                    keys.kv_bucket(bucket)
                ),
                Failed::Redis(error) if error.is_timeout() => deadline_passed(),
                Failed::Redis(error) => format!("state store unavailable: {error}"),
                Failed::Other(why) => format!("state store unavailable: {why}"),
                Failed::Deadline => deadline_passed(),
            })
    }
}

fn deadline_passed() -> String {
    "state store did not answer within the job's time limit".to_owned()
}

impl CommittedKv for RedisKv {
    fn get(
        &self,
        queue: &str,
        bucket: &str,
        key: &str,
        deadline: Instant,
    ) -> Result<Option<Vec<u8>>, String> {
        let keys = self.keys(queue);
        let cmd = reads::get(&keys, bucket, key);
        self.call(&keys, bucket, deadline, Command::Cmd(cmd))
    }

    fn exists(
        &self,
        queue: &str,
        bucket: &str,
        key: &str,
        deadline: Instant,
    ) -> Result<bool, String> {
        let keys = self.keys(queue);
        let cmd = reads::exists(&keys, bucket, key);
        self.call(&keys, bucket, deadline, Command::Cmd(cmd))
    }

    fn page(
        &self,
        queue: &str,
        bucket: &str,
        cursor: u64,
        count: usize,
        deadline: Instant,
    ) -> Result<KeyPage, String> {
        let keys = self.keys(queue);
        let script = reads::page(&keys, bucket, cursor, count);
        let page: reads::Page = self.call(&keys, bucket, deadline, Command::Script(script))?;
        let (next, keys) = reads::page_of(page);
        Ok(KeyPage {
            keys,
            next: (next != 0).then_some(next),
        })
    }
}
