//! Where a job reads committed key-value state from.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

/// Committed state, read by jobs while they run. A bucket belongs to a
/// queue: `queue` is that of the job reading. Every call returns by
/// `deadline` (the job's), with an error if the store has not answered.
pub trait CommittedKv: Send + Sync {
    fn get(
        &self,
        queue: &str,
        bucket: &str,
        key: &str,
        deadline: Instant,
    ) -> Result<Option<Vec<u8>>, String>;

    fn exists(
        &self,
        queue: &str,
        bucket: &str,
        key: &str,
        deadline: Instant,
    ) -> Result<bool, String>;

    /// About `count` keys of `bucket` from `cursor` (0: the start).
    fn page(
        &self,
        queue: &str,
        bucket: &str,
        cursor: u64,
        count: usize,
        deadline: Instant,
    ) -> Result<KeyPage, String>;
}

/// Keys of one page of a bucket, and where the next page starts (None: no more).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct KeyPage {
    pub keys: Vec<String>,
    pub next: Option<u64>,
}

/// No store: for loading plugins, where no job runs.
pub struct NoKv;

impl CommittedKv for NoKv {
    fn get(&self, _: &str, _: &str, _: &str, _: Instant) -> Result<Option<Vec<u8>>, String> {
        Err(no_store())
    }

    fn exists(&self, _: &str, _: &str, _: &str, _: Instant) -> Result<bool, String> {
        Err(no_store())
    }

    fn page(&self, _: &str, _: &str, _: u64, _: usize, _: Instant) -> Result<KeyPage, String> {
        Err(no_store())
    }
}

fn no_store() -> String {
    "no key-value store is available here".to_owned()
}

/// State in memory: `jobhost invoke`'s, seeded from a file; one queue's.
#[derive(Debug, Default)]
pub struct MemoryKv {
    buckets: Mutex<BTreeMap<String, BTreeMap<String, Vec<u8>>>>,
}

impl MemoryKv {
    pub fn insert(&self, bucket: &str, key: &str, value: Vec<u8>) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        buckets
            .entry(bucket.to_owned())
            .or_default()
            .insert(key.to_owned(), value);
    }

    fn read<T>(&self, bucket: &str, read: impl FnOnce(&BTreeMap<String, Vec<u8>>) -> T) -> T {
        let buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        read(buckets.get(bucket).unwrap_or(&BTreeMap::new()))
    }
}

impl CommittedKv for MemoryKv {
    fn get(&self, _: &str, bucket: &str, key: &str, _: Instant) -> Result<Option<Vec<u8>>, String> {
        Ok(self.read(bucket, |keys| keys.get(key).cloned()))
    }

    fn exists(&self, _: &str, bucket: &str, key: &str, _: Instant) -> Result<bool, String> {
        Ok(self.read(bucket, |keys| keys.contains_key(key)))
    }

    fn page(
        &self,
        _: &str,
        bucket: &str,
        cursor: u64,
        count: usize,
        _: Instant,
    ) -> Result<KeyPage, String> {
        // The cursor is an offset into the sorted keys; the guest may pass any.
        Ok(self.read(bucket, |keys| {
            let start = usize::try_from(cursor).unwrap_or(usize::MAX);
            let page: Vec<String> = keys
                .keys()
                .skip(start)
                .take(count.max(1))
                .cloned()
                .collect();
            let end = start.saturating_add(page.len());
            KeyPage {
                next: (end < keys.len()).then_some(end as u64),
                keys: page,
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_pages_walk_every_key_once() {
        let kv = MemoryKv::default();
        for key in ["a", "b", "c"] {
            kv.insert("b1", key, b"1".to_vec());
        }
        let now = Instant::now();
        let first = kv.page("q", "b1", 0, 2, now).unwrap();
        assert_eq!((first.keys.len(), first.next), (2, Some(2)));
        let second = kv.page("q", "b1", 2, 2, now).unwrap();
        assert_eq!((second.keys, second.next), (vec!["c".to_owned()], None));
        assert_eq!(
            kv.page("q", "b1", u64::MAX, 2, now).unwrap(),
            KeyPage::default()
        );
        assert_eq!(kv.page("q", "none", 0, 2, now).unwrap(), KeyPage::default());
    }
}
