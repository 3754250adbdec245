//! Key-value buckets: each a hash under its queue's hash tag (see
//! `keys.rs`), read while jobs run and by `jobhost kv`. Jobs' writes are not
//! here: they commit with the job's acknowledgement (`record.rs`).

use std::sync::LazyLock;

use redis::Script;

use crate::keys::QueueKeys;

use super::{BrokerError, Redis};

static KV_KEYS: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("kv_keys.lua")));

/// A bucket of a queue and how many keys it holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BucketSize {
    pub bucket: String,
    pub keys: u64,
}

/// The commands that read a bucket, for a connection of either kind: the
/// host's async one, or a job thread's own (see `host/kv_reads.rs`).
pub mod reads {
    use super::*;

    /// A key's value (`Option<Vec<u8>>`).
    pub fn get(keys: &QueueKeys, bucket: &str, key: &str) -> redis::Cmd {
        let mut cmd = redis::cmd("HGET");
        cmd.arg(keys.kv_bucket(bucket)).arg(key);
        cmd
    }

    /// Whether a key is there (`bool`).
    pub fn exists(keys: &QueueKeys, bucket: &str, key: &str) -> redis::Cmd {
        let mut cmd = redis::cmd("HEXISTS");
        cmd.arg(keys.kv_bucket(bucket)).arg(key);
        cmd
    }

    /// About `count` keys from `cursor` (0: the start): a [`Page`] through
    /// [`page_of`]. A key may show on two pages (HSCAN's promise).
    pub fn page(
        keys: &QueueKeys,
        bucket: &str,
        cursor: u64,
        count: usize,
    ) -> redis::ScriptInvocation<'static> {
        let mut invocation = KV_KEYS.key(keys.kv_bucket(bucket));
        invocation.arg(cursor).arg(count.max(1));
        invocation
    }

    /// The reply of [`page`].
    pub type Page = (String, Vec<Vec<u8>>);

    /// The next cursor (0: no more) and the keys of a page.
    pub fn page_of((next, names): Page) -> (u64, Vec<String>) {
        let names = names
            .into_iter()
            .map(|name| String::from_utf8_lossy(&name).into_owned())
            .collect();
        (next.parse().unwrap_or(0), names)
    }
}

impl Redis {
    pub async fn kv_get(
        &mut self,
        keys: &QueueKeys,
        bucket: &str,
        key: &str,
    ) -> Result<Option<Vec<u8>>, BrokerError> {
        self.query(&reads::get(keys, bucket, key)).await
    }

    pub async fn kv_exists(
        &mut self,
        keys: &QueueKeys,
        bucket: &str,
        key: &str,
    ) -> Result<bool, BrokerError> {
        self.query(&reads::exists(keys, bucket, key)).await
    }

    /// See [`reads::page`].
    pub async fn kv_page(
        &mut self,
        keys: &QueueKeys,
        bucket: &str,
        cursor: u64,
        count: usize,
    ) -> Result<(u64, Vec<String>), BrokerError> {
        let page: reads::Page = self
            .invoke(&reads::page(keys, bucket, cursor, count))
            .await?;
        Ok(reads::page_of(page))
    }

    /// Every key of a bucket, sorted.
    pub async fn kv_keys(
        &mut self,
        keys: &QueueKeys,
        bucket: &str,
    ) -> Result<Vec<String>, BrokerError> {
        let mut all = Vec::new();
        let mut cursor = 0;
        loop {
            let (next, page) = self.kv_page(keys, bucket, cursor, 1000).await?;
            all.extend(page);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        all.sort();
        all.dedup();
        Ok(all)
    }

    /// Sets a key outside any job (an operator's repair).
    pub async fn kv_set(
        &mut self,
        keys: &QueueKeys,
        bucket: &str,
        key: &str,
        value: &[u8],
    ) -> Result<(), BrokerError> {
        self.query(
            redis::cmd("HSET")
                .arg(keys.kv_bucket(bucket))
                .arg(key)
                .arg(value),
        )
        .await
    }

    /// Deletes a key outside any job; false if there was none.
    pub async fn kv_delete(
        &mut self,
        keys: &QueueKeys,
        bucket: &str,
        key: &str,
    ) -> Result<bool, BrokerError> {
        self.query(redis::cmd("HDEL").arg(keys.kv_bucket(bucket)).arg(key))
            .await
    }

    /// The buckets of a queue and their sizes, by name. A key under the
    /// buckets' prefix that is no hash is left out.
    pub async fn kv_buckets(&mut self, keys: &QueueKeys) -> Result<Vec<BucketSize>, BrokerError> {
        let prefix = keys.kv_prefix();
        let pattern = format!("{}*", glob_escape(&prefix));
        let mut found = self.scan(&pattern).await?;
        found.sort();
        found.dedup();
        let mut sizes = Vec::new();
        for key in found {
            let Some(bucket) = key.strip_prefix(&prefix) else {
                continue;
            };
            let kind: String = self.query(redis::cmd("TYPE").arg(&key)).await?;
            if kind == "hash" {
                let size: u64 = self.query(redis::cmd("HLEN").arg(&key)).await?;
                sizes.push(BucketSize {
                    bucket: bucket.to_owned(),
                    keys: size,
                });
            }
        }
        Ok(sizes)
    }
}

/// `text` matched literally in a SCAN pattern.
fn glob_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_patterns_match_names_literally() {
        assert_eq!(glob_escape("ns:{q*}:kv:"), "ns:{q\\*}:kv:");
    }
}
