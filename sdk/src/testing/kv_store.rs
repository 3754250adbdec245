//! The in-memory key-value store that [`kv`](crate::kv) uses natively, one
//! per thread: what a test seeds and inspects, and what a handler reads and
//! writes. Writes apply at once: there is no acknowledgement to wait for.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Default)]
struct Store {
    buckets: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    denied: BTreeSet<String>,
}

thread_local! {
    static STORE: RefCell<Store> = RefCell::new(Store::default());
}

/// The value of `key` in `bucket` on this thread, or `None` when it is not set.
///
/// ```
/// use jobhost_sdk::{kv::Bucket, testing};
///
/// Bucket::open("carts").unwrap().set("c-1", "tea").unwrap();
/// assert_eq!(testing::kv_get("carts", "c-1"), Some(b"tea".to_vec()));
/// assert_eq!(testing::kv_get("carts", "c-2"), None);
/// ```
pub fn kv_get(bucket: &str, key: &str) -> Option<Vec<u8>> {
    STORE.with(|s| s.borrow().buckets.get(bucket)?.get(key).cloned())
}

/// Sets `key` in `bucket` on this thread, as if an earlier job had written it.
///
/// ```
/// use jobhost_sdk::{kv::Bucket, testing};
///
/// testing::kv_set("stats", "jobs", "41");
/// assert_eq!(Bucket::open("stats").unwrap().increment("jobs", 1).unwrap(), 42);
/// ```
pub fn kv_set(bucket: &str, key: &str, value: impl AsRef<[u8]>) {
    STORE.with(|s| {
        s.borrow_mut()
            .buckets
            .entry(bucket.to_owned())
            .or_default()
            .insert(key.to_owned(), value.as_ref().to_vec())
    });
}

/// Every key set in `bucket` on this thread, sorted.
///
/// ```
/// use jobhost_sdk::testing;
///
/// testing::kv_set("carts", "c-2", "milk");
/// testing::kv_set("carts", "c-1", "tea");
/// assert_eq!(testing::kv_keys("carts"), ["c-1", "c-2"]);
/// assert!(testing::kv_keys("other").is_empty());
/// ```
pub fn kv_keys(bucket: &str) -> Vec<String> {
    STORE.with(|s| {
        s.borrow()
            .buckets
            .get(bucket)
            .map(|keys| keys.keys().cloned().collect())
            .unwrap_or_default()
    })
}

/// Forgets every bucket, value and denial on this thread.
///
/// ```
/// use jobhost_sdk::testing;
///
/// testing::kv_set("carts", "c-1", "tea");
/// testing::clear_kv();
/// assert_eq!(testing::kv_get("carts", "c-1"), None);
/// ```
pub fn clear_kv() {
    STORE.with(|s| *s.borrow_mut() = Store::default());
}

/// Makes `bucket` one the manifest does not grant: opening it fails on this
/// thread as it would in the host.
///
/// ```
/// use jobhost_sdk::{kv::Bucket, testing};
///
/// testing::deny_bucket("secrets");
/// let error = Bucket::open("secrets").unwrap_err();
/// assert!(error.message().contains("[grants] keyvalue"));
/// ```
pub fn deny_bucket(bucket: &str) {
    STORE.with(|s| s.borrow_mut().denied.insert(bucket.to_owned()));
}

/// Refuses a denied bucket with the host's kind of message.
pub(crate) fn open(bucket: &str) -> Result<(), String> {
    if STORE.with(|s| s.borrow().denied.contains(bucket)) {
        return Err(format!(
            "bucket {bucket:?} is not granted to this plugin: add it to [grants] keyvalue \
             in the plugin's NAME.toml (denied by testing::deny_bucket)"
        ));
    }
    Ok(())
}

pub(crate) fn delete(bucket: &str, key: &str) {
    STORE.with(|s| {
        if let Some(keys) = s.borrow_mut().buckets.get_mut(bucket) {
            keys.remove(key);
        }
    });
}

/// The host's counter semantics: decimal text, a missing key is 0, and a
/// refused increment changes nothing.
pub(crate) fn increment(bucket: &str, key: &str, delta: u64) -> Result<u64, String> {
    let current = match kv_get(bucket, key) {
        None => 0,
        Some(bytes) => std::str::from_utf8(&bytes)
            .ok()
            .and_then(|text| text.parse::<u64>().ok())
            .ok_or_else(|| {
                format!(
                    "cannot increment {key:?}: its value {:?} is not a decimal u64",
                    String::from_utf8_lossy(&bytes)
                )
            })?,
    };
    let next = current
        .checked_add(delta)
        .ok_or_else(|| format!("cannot increment {key:?}: {current} + {delta} overflows a u64"))?;
    kv_set(bucket, key, next.to_string());
    Ok(next)
}
