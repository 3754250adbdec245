//! Key-value state for plugins (`wasi:keyvalue` store, atomics and batch)
//! whose writes commit with the job's acknowledgement.
//!
//! A job opens only the buckets its manifest grants. Its reads see what is
//! committed plus its own writes; its writes are kept in the job
//! ([`JobWrites`]) and become part of its outcome, which the broker writes
//! in the same atomic step as the acknowledgement, only if the job succeeded
//! (`record_outcomes.lua`). So a job that fails, times out or runs twice
//! after a reclaim commits its writes at most once. An increment is
//! committed as an increment (HINCRBY), so concurrent jobs never lose counts;
//! a set is last-writer-wins.
//!
//! Committed values are read through [`CommittedKv`]: Redis for `run`
//! (the bucket is a hash under the queue's hash tag, see `keys.rs`), memory
//! for `invoke`.

mod committed;
mod guest;
mod writes;

use std::path::PathBuf;

pub use committed::{CommittedKv, KeyPage, MemoryKv, NoKv};
pub use guest::{Bucket, JobKv, KvView};
pub use writes::{JobWrites, parse_count};

/// Largest value one key may hold, by default.
pub const DEFAULT_VALUE_BYTES: usize = 1 << 20;
/// Keys one job may write, by default.
pub const DEFAULT_WRITES: usize = 1000;
/// Bytes (keys and values) one job may write, by default.
pub const DEFAULT_WRITE_BYTES: usize = 16 << 20;
/// Keys one `list-keys` call returns, about, by default.
pub const DEFAULT_LIST_KEYS: usize = 1000;
/// Longest key a job may write.
pub const MAX_KEY_BYTES: usize = 4096;
/// Longest bucket name.
const MAX_BUCKET_NAME: usize = 64;

/// Per-job bounds on key-value state (`[limits]` of the manifest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvLimits {
    pub value_bytes: usize,
    pub writes: usize,
    pub write_bytes: usize,
    pub list_keys: usize,
}

impl Default for KvLimits {
    fn default() -> Self {
        KvLimits {
            value_bytes: DEFAULT_VALUE_BYTES,
            writes: DEFAULT_WRITES,
            write_bytes: DEFAULT_WRITE_BYTES,
            list_keys: DEFAULT_LIST_KEYS,
        }
    }
}

/// The buckets a plugin may open, from its manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KvGrant {
    pub buckets: Vec<String>,
    pub limits: KvLimits,
    /// The manifest to name in refusals (`NAME.toml` beside the plugin).
    pub manifest: PathBuf,
}

impl KvGrant {
    pub fn allows(&self, bucket: &str) -> bool {
        self.buckets.iter().any(|granted| granted == bucket)
    }

    /// Why `plugin` may not open `bucket`, and what would grant it.
    pub fn refusal(&self, plugin: &str, bucket: &str) -> String {
        let manifest = self.manifest.display();
        if self.buckets.is_empty() {
            format!(
                "bucket {bucket:?} is not granted: plugin {plugin} has no key-value grant; add [grants] keyvalue = [{bucket:?}] to {manifest}"
            )
        } else {
            format!(
                "bucket {bucket:?} is not granted to plugin {plugin}: add {bucket:?} to [grants] keyvalue in {manifest}"
            )
        }
    }
}

/// Checks a bucket name: 1 to 64 letters, digits, `_`, `-` or `.`, so it
/// reads plainly in a Redis key and cannot reach into another key's name.
pub fn check_bucket_name(name: &str) -> Result<(), String> {
    let fine = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    if name.is_empty() || name.len() > MAX_BUCKET_NAME || !name.chars().all(fine) {
        return Err(format!(
            "bucket name {name:?} must be 1 to {MAX_BUCKET_NAME} letters, digits, '_', '-' or '.'"
        ));
    }
    Ok(())
}

/// One write a successful job commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvWrite {
    pub bucket: String,
    pub key: String,
    pub op: KvOp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvOp {
    Set(Vec<u8>),
    Delete,
    /// Added to the committed count at commit (HINCRBY).
    Increment(u64),
}

impl std::fmt::Display for KvWrite {
    /// How `invoke` shows a write: `set counters/k = "5"`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (bucket, key) = (&self.bucket, &self.key);
        match &self.op {
            KvOp::Set(value) => write!(f, "set {bucket}/{key} = \"{}\"", value.escape_ascii()),
            KvOp::Delete => write!(f, "delete {bucket}/{key}"),
            KvOp::Increment(delta) => write!(f, "increment {bucket}/{key} by {delta}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_are_plain() {
        assert!(check_bucket_name("counters").is_ok());
        assert!(check_bucket_name("a.b-c_1").is_ok());
        for bad in ["", "a:b", "a{b}", "a b", &"x".repeat(65)] {
            assert!(check_bucket_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn refusals_say_what_to_add_where() {
        let grant = KvGrant {
            manifest: "/p/tally.toml".into(),
            ..KvGrant::default()
        };
        let refusal = grant.refusal("tally", "sent");
        assert!(
            refusal.contains("[grants] keyvalue = [\"sent\"]"),
            "{refusal}"
        );
        assert!(refusal.contains("/p/tally.toml"), "{refusal}");
        let grant = KvGrant {
            buckets: vec!["counters".into()],
            ..grant
        };
        assert!(!grant.allows("sent") && grant.allows("counters"));
        assert!(
            grant
                .refusal("tally", "sent")
                .contains("add \"sent\" to [grants] keyvalue")
        );
    }
}
