//! Key-value state that outlives a job: the buckets the plugin's `NAME.toml`
//! grants, read and written through `wasi:keyvalue`.
//!
//! A job's writes (`set`, `delete`, `increment`) are held by the host and
//! committed in the same atomic step as the job's acknowledgement, only if
//! the job succeeds. A job that fails, traps or times out leaves no trace, so
//! a retried job counts once, never twice. Until then the job's own reads see
//! the committed values with its own writes applied; other jobs see them only
//! once it is acknowledged.
//!
//! ```toml
//! # counter.toml, beside counter.wasm
//! [grants]
//! keyvalue = ["views"]
//! ```
//!
//! ```
//! use jobhost_sdk::{Error, Job, kv, testing};
//!
//! #[derive(serde::Deserialize)]
//! struct Visit {
//!     page: String,
//! }
//!
//! fn count(job: Job) -> Result<String, Error> {
//!     let visit: Visit = job.json()?;
//!     let views = kv::Bucket::open("views")?; // not granted: retry, with the line to add
//!     let seen = views.increment(&visit.page, 1)?; // committed only with this job's ack
//!     views.set_json("last", &visit.page)?;
//!     Ok(format!("{} has {seen} views", visit.page))
//! }
//!
//! // Natively, buckets live in memory on the test's thread and writes apply
//! // at once (there is no ack to wait for).
//! let job = || Job::new("page.viewed", r#"{"page":"/home"}"#);
//! assert_eq!(count(job()).unwrap(), "/home has 1 views");
//! assert_eq!(count(job()).unwrap(), "/home has 2 views");
//! assert_eq!(testing::kv_get("views", "/home"), Some(b"2".to_vec())); // counters are decimal text
//! assert_eq!(testing::kv_keys("views"), ["/home", "last"]);
//! ```
//!
//! Errors from the store (a bucket not granted, the store unreachable) are
//! [`Error::retry`] and quote the host's message. The host also enforces
//! limits (the size of a value, the writes of one job): breaking one fails the
//! job as fatal, whatever the handler returns.

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;

/// An open bucket: a namespace of keys with byte values.
///
/// ```
/// use jobhost_sdk::kv::Bucket;
///
/// let carts = Bucket::open("carts").unwrap();
/// carts.set("c-1", "tea,milk").unwrap();
/// assert_eq!(carts.get("c-1").unwrap(), Some(b"tea,milk".to_vec()));
/// assert_eq!(carts.name(), "carts");
/// ```
pub struct Bucket {
    name: String,
    handle: imp::Handle,
}

impl Bucket {
    /// Opens the bucket `name`; one the manifest does not grant is a retry
    /// whose message says which line would grant it.
    ///
    /// ```
    /// use jobhost_sdk::{kv::Bucket, testing};
    ///
    /// assert!(Bucket::open("customers").is_ok());
    /// testing::deny_bucket("secrets");
    /// let error = Bucket::open("secrets").unwrap_err();
    /// assert!(!error.is_fatal());
    /// assert!(error.message().starts_with("kv: secrets: "));
    /// ```
    pub fn open(name: &str) -> Result<Bucket, Error> {
        let handle = imp::open(name).map_err(|why| failed(name, why))?;
        Ok(Bucket {
            name: name.to_owned(),
            handle,
        })
    }

    /// The bucket's name, as opened.
    ///
    /// ```
    /// assert_eq!(jobhost_sdk::kv::Bucket::open("a").unwrap().name(), "a");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value of `key`, or `None` when it is not set.
    ///
    /// ```
    /// use jobhost_sdk::{kv::Bucket, testing};
    ///
    /// testing::kv_set("flags", "beta", "on");
    /// let flags = Bucket::open("flags").unwrap();
    /// assert_eq!(flags.get("beta").unwrap(), Some(b"on".to_vec()));
    /// assert_eq!(flags.get("gamma").unwrap(), None);
    /// ```
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        self.handle.get(key).map_err(|why| self.failed(why))
    }

    /// The value of `key` parsed as JSON, or `None` when it is not set. A
    /// value that is not the JSON of `T` is fatal: retrying reads the same.
    ///
    /// ```
    /// use jobhost_sdk::{kv::Bucket, testing};
    ///
    /// testing::kv_set("prefs", "c-1", r#"{"lang":"fr"}"#);
    /// testing::kv_set("prefs", "c-2", "oops");
    /// let prefs = Bucket::open("prefs").unwrap();
    /// let c1: Option<serde_json::Value> = prefs.get_json("c-1").unwrap();
    /// assert_eq!(c1.unwrap()["lang"], "fr");
    /// assert!(prefs.get_json::<serde_json::Value>("c-2").unwrap_err().is_fatal());
    /// ```
    pub fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        let Some(bytes) = self.get(key)? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            Error::fatal(format!(
                "kv: {}: the value of {key:?} is not the JSON expected: {e}",
                self.name
            ))
        })
    }

    /// Sets `key` to `value`.
    ///
    /// ```
    /// use jobhost_sdk::{kv::Bucket, testing};
    ///
    /// Bucket::open("tokens").unwrap().set("t-1", [1u8, 2, 3]).unwrap();
    /// assert_eq!(testing::kv_get("tokens", "t-1"), Some(vec![1, 2, 3]));
    /// ```
    pub fn set(&self, key: &str, value: impl AsRef<[u8]>) -> Result<(), Error> {
        self.handle
            .set(key, value.as_ref())
            .map_err(|why| self.failed(why))
    }

    /// Sets `key` to `value` serialized as JSON.
    ///
    /// ```
    /// use jobhost_sdk::{kv::Bucket, testing};
    ///
    /// let prefs = Bucket::open("prefs").unwrap();
    /// prefs.set_json("c-1", &serde_json::json!({"lang": "fr"})).unwrap();
    /// assert_eq!(testing::kv_get("prefs", "c-1"), Some(br#"{"lang":"fr"}"#.to_vec()));
    /// ```
    pub fn set_json<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<(), Error> {
        let bytes = serde_json::to_vec(value).map_err(|e| {
            Error::fatal(format!(
                "kv: {}: cannot serialize the value of {key:?}: {e}",
                self.name
            ))
        })?;
        self.set(key, bytes)
    }

    /// Removes `key`; removing a key that is not set is no error.
    ///
    /// ```
    /// use jobhost_sdk::{kv::Bucket, testing};
    ///
    /// testing::kv_set("carts", "c-1", "tea");
    /// let carts = Bucket::open("carts").unwrap();
    /// carts.delete("c-1").unwrap();
    /// carts.delete("c-1").unwrap();
    /// assert_eq!(testing::kv_get("carts", "c-1"), None);
    /// ```
    pub fn delete(&self, key: &str) -> Result<(), Error> {
        self.handle.delete(key).map_err(|why| self.failed(why))
    }

    /// Whether `key` is set.
    ///
    /// ```
    /// use jobhost_sdk::{kv::Bucket, testing};
    ///
    /// testing::kv_set("seen", "evt-9", "");
    /// let seen = Bucket::open("seen").unwrap();
    /// assert!(seen.exists("evt-9").unwrap());
    /// assert!(!seen.exists("evt-10").unwrap());
    /// ```
    pub fn exists(&self, key: &str) -> Result<bool, Error> {
        self.handle.exists(key).map_err(|why| self.failed(why))
    }

    /// Adds `delta` to the counter at `key` and returns its new value. A
    /// counter is stored as decimal text (`b"5"`); a missing key counts as 0,
    /// and a value that is not a decimal `u64`, or a sum that overflows one,
    /// is an error.
    ///
    /// ```
    /// use jobhost_sdk::{kv::Bucket, testing};
    ///
    /// let stats = Bucket::open("stats").unwrap();
    /// assert_eq!(stats.increment("jobs", 2).unwrap(), 2);
    /// assert_eq!(stats.increment("jobs", 3).unwrap(), 5);
    /// assert_eq!(stats.get("jobs").unwrap(), Some(b"5".to_vec()));
    ///
    /// testing::kv_set("stats", "name", "Ada");
    /// assert!(stats.increment("name", 1).is_err());
    /// ```
    pub fn increment(&self, key: &str, delta: u64) -> Result<u64, Error> {
        self.handle
            .increment(key, delta)
            .map_err(|why| self.failed(why))
    }

    /// Every key of the bucket, sorted. Listing is slow on large buckets:
    /// it reads page after page until the host has none left.
    ///
    /// ```
    /// use jobhost_sdk::{kv::Bucket, testing};
    ///
    /// testing::kv_set("carts", "c-2", "milk");
    /// testing::kv_set("carts", "c-1", "tea");
    /// assert_eq!(Bucket::open("carts").unwrap().keys().unwrap(), ["c-1", "c-2"]);
    /// ```
    pub fn keys(&self) -> Result<Vec<String>, Error> {
        let mut keys = Vec::new();
        let mut cursor = None;
        loop {
            let (page, next) = self
                .handle
                .list_keys(cursor)
                .map_err(|why| self.failed(why))?;
            keys.extend(page);
            match next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        // Pages come in no particular order and a scanning store may return
        // a key on two pages: sorted and deduplicated, the list is the same
        // however the host paged it.
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    fn failed(&self, why: String) -> Error {
        failed(&self.name, why)
    }
}

impl fmt::Debug for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bucket").field("name", &self.name).finish()
    }
}

/// A store error as the handler sees it: worth a retry (the same convention
/// as a denied HTTP origin), with the host's words kept verbatim.
fn failed(bucket: &str, why: String) -> Error {
    Error::retry(format!("kv: {bucket}: {why}"))
}

/// A wasi:keyvalue error as one phrase. The host's own refusals (a bucket
/// not granted, the store unreachable) come as `other` with a message saying
/// what to do: that message is passed on unchanged.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
fn describe(error: crate::__bindings::wasi::keyvalue::store::Error) -> String {
    use crate::__bindings::wasi::keyvalue::store::Error as E;
    match error {
        E::NoSuchStore => "no such store".to_owned(),
        E::AccessDenied => "access denied".to_owned(),
        E::Other(message) => message,
    }
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::describe;
    use crate::__bindings::wasi::keyvalue::{atomics, store};

    pub struct Handle(store::Bucket);

    pub fn open(name: &str) -> Result<Handle, String> {
        store::open(name).map(Handle).map_err(describe)
    }

    impl Handle {
        pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
            self.0.get(key).map_err(describe)
        }

        pub fn set(&self, key: &str, value: &[u8]) -> Result<(), String> {
            self.0.set(key, value).map_err(describe)
        }

        pub fn delete(&self, key: &str) -> Result<(), String> {
            self.0.delete(key).map_err(describe)
        }

        pub fn exists(&self, key: &str) -> Result<bool, String> {
            self.0.exists(key).map_err(describe)
        }

        pub fn increment(&self, key: &str, delta: u64) -> Result<u64, String> {
            atomics::increment(&self.0, key, delta).map_err(describe)
        }

        /// One page of keys and the cursor of the next, if any.
        pub fn list_keys(&self, cursor: Option<u64>) -> Result<(Vec<String>, Option<u64>), String> {
            let page = self.0.list_keys(cursor).map_err(describe)?;
            Ok((page.keys, page.cursor))
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use crate::testing::{self, kv_store};

    /// Natively a bucket is its name in this thread's in-memory store.
    pub struct Handle(String);

    pub fn open(name: &str) -> Result<Handle, String> {
        kv_store::open(name)?;
        Ok(Handle(name.to_owned()))
    }

    impl Handle {
        pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
            Ok(testing::kv_get(&self.0, key))
        }

        pub fn set(&self, key: &str, value: &[u8]) -> Result<(), String> {
            testing::kv_set(&self.0, key, value);
            Ok(())
        }

        pub fn delete(&self, key: &str) -> Result<(), String> {
            kv_store::delete(&self.0, key);
            Ok(())
        }

        pub fn exists(&self, key: &str) -> Result<bool, String> {
            Ok(testing::kv_get(&self.0, key).is_some())
        }

        pub fn increment(&self, key: &str, delta: u64) -> Result<u64, String> {
            kv_store::increment(&self.0, key, delta)
        }

        /// Natively every key comes on one page.
        pub fn list_keys(
            &self,
            _cursor: Option<u64>,
        ) -> Result<(Vec<String>, Option<u64>), String> {
            Ok((testing::kv_keys(&self.0), None))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::__bindings::wasi::keyvalue::store::Error as StoreError;
    use crate::testing;

    #[test]
    fn host_messages_are_kept_verbatim_in_a_retry() {
        let denied =
            "bucket \"x\" is not granted to plugin p: add it to [grants] keyvalue in p.toml";
        let error = failed("x", describe(StoreError::Other(denied.to_owned())));
        assert!(!error.is_fatal());
        assert_eq!(error.message(), format!("kv: x: {denied}"));
        assert_eq!(describe(StoreError::AccessDenied), "access denied");
        assert_eq!(describe(StoreError::NoSuchStore), "no such store");
    }

    #[test]
    fn increment_refuses_text_and_overflow_and_leaves_the_value() {
        let bucket = Bucket::open("b").unwrap();
        testing::kv_set("b", "word", "five");
        let error = bucket.increment("word", 1).unwrap_err();
        assert!(error.message().starts_with("kv: b: "), "{error}");
        assert_eq!(testing::kv_get("b", "word"), Some(b"five".to_vec()));

        testing::kv_set("b", "big", u64::MAX.to_string());
        assert!(bucket.increment("big", 1).is_err());
        assert_eq!(bucket.increment("big", 0).unwrap(), u64::MAX);
    }

    #[test]
    fn buckets_are_apart_and_clear_kv_forgets_everything() {
        let a = Bucket::open("a").unwrap();
        a.set("k", "1").unwrap();
        assert_eq!(Bucket::open("b").unwrap().get("k").unwrap(), None);
        testing::deny_bucket("c");
        testing::clear_kv();
        assert_eq!(a.get("k").unwrap(), None);
        assert!(Bucket::open("c").is_ok());
    }
}
