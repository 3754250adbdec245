//! The plugin's configuration: the `[config]` values of its `NAME.toml`,
//! read through `wasi:config/store`.
//!
//! ```toml
//! [config]
//! url = "https://hooks.example.com/orders"
//! api_key = { env = "HOOKS_KEY", secret = true }   # never logged by the host
//! ```
//!
//! ```
//! use jobhost_sdk::{config, testing};
//!
//! testing::set_config("url", "https://hooks.example.com/orders");
//! assert_eq!(config::require("url").unwrap(), "https://hooks.example.com/orders");
//! assert_eq!(config::get("region").unwrap(), None);
//! ```

use crate::Error;

/// The value of `key`, or `None` when the manifest does not set it.
///
/// ```
/// use jobhost_sdk::{config, testing};
///
/// testing::set_config("region", "eu");
/// let region = config::get("region").unwrap().unwrap_or_else(|| "us".to_owned());
/// assert_eq!(region, "eu");
/// ```
pub fn get(key: &str) -> Result<Option<String>, Error> {
    imp::get(key).map_err(|why| Error::retry(format!("config: reading {key:?}: {why}")))
}

/// The value of `key`; a key the manifest does not set is a fatal error
/// saying where to set it.
///
/// ```
/// use jobhost_sdk::{config, testing};
///
/// let error = config::require("api_key").unwrap_err();
/// assert!(error.is_fatal());
/// assert!(error.message().contains("[config]"));
///
/// testing::set_config("api_key", "s3cret");
/// assert_eq!(config::require("api_key").unwrap(), "s3cret");
/// ```
pub fn require(key: &str) -> Result<String, Error> {
    get(key)?.ok_or_else(|| {
        Error::fatal(format!(
            "config key {key:?} is not set: add `{key} = ...` under [config] in the plugin's NAME.toml"
        ))
    })
}

/// Every configured key and value, sorted by key.
///
/// ```
/// use jobhost_sdk::{config, testing};
///
/// testing::set_config("b", "2");
/// testing::set_config("a", "1");
/// assert_eq!(
///     config::all().unwrap(),
///     vec![("a".to_owned(), "1".to_owned()), ("b".to_owned(), "2".to_owned())],
/// );
/// ```
pub fn all() -> Result<Vec<(String, String)>, Error> {
    let mut all = imp::all().map_err(|why| Error::retry(format!("config: reading: {why}")))?;
    all.sort();
    Ok(all)
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use crate::__bindings::wasi::config::store::{self, Error as StoreError};

    pub fn get(key: &str) -> Result<Option<String>, String> {
        store::get(key).map_err(describe)
    }

    pub fn all() -> Result<Vec<(String, String)>, String> {
        store::get_all().map_err(describe)
    }

    fn describe(error: StoreError) -> String {
        match error {
            StoreError::Upstream(why) => why,
            StoreError::Io(why) => format!("I/O error: {why}"),
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use crate::testing::RECORDED;

    pub fn get(key: &str) -> Result<Option<String>, String> {
        Ok(RECORDED.with(|r| r.borrow().config.get(key).cloned()))
    }

    pub fn all() -> Result<Vec<(String, String)>, String> {
        Ok(RECORDED.with(|r| {
            r.borrow()
                .config
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        }))
    }
}
