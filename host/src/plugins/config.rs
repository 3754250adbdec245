//! The `[config]` of a plugin's manifest: the values its jobs read through
//! `wasi:config/store`, some of them secrets read from the host's environment
//! when the plugin loads.
//!
//! ```toml
//! [config]
//! webhook_url = "https://hooks.example.com/orders"
//! region = { env = "REGION" }                         # from the host's environment
//! api_key = { env = "STRIPE_KEY", secret = true }     # and never shown
//! ```
//!
//! A secret's value goes to the guest and nowhere else: every line a job makes
//! the host write (log lines, guest output, failure reasons that end in the
//! DLQ) passes through [`Secrets::redact`], which replaces the value with
//! `[secret KEY]`, and descriptions of the config (`plugins check`) show where
//! a secret comes from, never what it is.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;

/// One `[config]` entry as written in the manifest.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum ConfigEntry {
    Value(String),
    FromEnv {
        env: String,
        #[serde(default)]
        secret: bool,
    },
}

/// Where a config value came from, for `plugins check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// Written in the manifest: shown as is.
    Value(String),
    /// Read from a host environment variable.
    Env { variable: String, secret: bool },
}

/// A plugin's config, read once when it loads and shared by its jobs.
/// Its `Debug` shows keys and sources only: no value can leak through it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PluginConfig {
    values: BTreeMap<String, String>,
    sources: BTreeMap<String, ConfigSource>,
    secrets: Arc<Secrets>,
}

impl PluginConfig {
    /// Reads the manifest's entries; a variable named by an entry must be set.
    pub(super) fn from_entries(entries: BTreeMap<String, ConfigEntry>) -> Result<Self, String> {
        let mut config = PluginConfig::default();
        let mut secrets = Vec::new();
        for (key, entry) in entries {
            let (value, source) = match entry {
                ConfigEntry::Value(value) => (value.clone(), ConfigSource::Value(value)),
                ConfigEntry::FromEnv { env, secret } => {
                    let value = std::env::var(&env).map_err(|_| {
                        format!("config.{key}: environment variable {env} is not set")
                    })?;
                    if secret && !value.is_empty() {
                        secrets.push((key.clone(), value.clone()));
                    }
                    let source = ConfigSource::Env {
                        variable: env,
                        secret,
                    };
                    (value, source)
                }
            };
            config.values.insert(key.clone(), value);
            config.sources.insert(key, source);
        }
        config.secrets = Arc::new(Secrets::new(secrets));
        Ok(config)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    pub fn all(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Each key and where its value comes from, secrets without their value.
    pub fn sources(&self) -> impl Iterator<Item = (&str, &ConfigSource)> {
        self.sources.iter().map(|(k, s)| (k.as_str(), s))
    }

    /// The secret values, to keep out of everything the host writes.
    pub fn secrets(&self) -> &Arc<Secrets> {
        &self.secrets
    }
}

impl std::fmt::Debug for PluginConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.sources()).finish()
    }
}

/// Secret values of one plugin, and how to keep them out of text. Its `Debug`
/// shows the keys only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secrets {
    /// (key, value), longest value first: a secret that contains another is
    /// replaced whole.
    values: Vec<(String, String)>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.values.iter().map(|(key, _)| key))
            .finish()
    }
}

impl Secrets {
    fn new(mut values: Vec<(String, String)>) -> Self {
        values.sort_by_key(|(_, value)| std::cmp::Reverse(value.len()));
        Secrets { values }
    }

    /// `text` with every occurrence of a secret value replaced by `[secret KEY]`.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut text = Cow::Borrowed(text);
        for (key, value) in &self.values {
            if text.contains(value.as_str()) {
                text = Cow::Owned(text.replace(value.as_str(), &format!("[secret {key}]")));
            }
        }
        text
    }

    /// As [`redact`](Self::redact), for an owned string.
    pub fn redact_owned(&self, text: String) -> String {
        match self.redact(&text) {
            Cow::Borrowed(_) => text,
            Cow::Owned(redacted) => redacted,
        }
    }

    /// As [`redact`](Self::redact), for bytes that may not be UTF-8: the
    /// secret's bytes are replaced wherever they occur.
    pub fn redact_bytes<'a>(&self, bytes: &'a [u8]) -> Cow<'a, [u8]> {
        let mut bytes = Cow::Borrowed(bytes);
        for (key, value) in &self.values {
            let needle = value.as_bytes();
            if let Some(replaced) =
                replace_bytes(&bytes, needle, format!("[secret {key}]").as_bytes())
            {
                bytes = Cow::Owned(replaced);
            }
        }
        bytes
    }
}

/// `haystack` with every `needle` replaced, or `None` when there is none.
fn replace_bytes(haystack: &[u8], needle: &[u8], with: &[u8]) -> Option<Vec<u8>> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    let mut out = Vec::new();
    let mut start = 0;
    let mut at = 0;
    while at + needle.len() <= haystack.len() {
        if &haystack[at..at + needle.len()] == needle {
            out.extend_from_slice(&haystack[start..at]);
            out.extend_from_slice(with);
            at += needle.len();
            start = at;
        } else {
            at += 1;
        }
    }
    if start == 0 {
        return None;
    }
    out.extend_from_slice(&haystack[start..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_replaced_by_their_key_longest_first() {
        let secrets = Secrets::new(vec![
            ("short".into(), "abc".into()),
            ("long".into(), "xxabcxx".into()),
        ]);
        assert_eq!(
            secrets.redact("key=xxabcxx and abc"),
            "key=[secret long] and [secret short]"
        );
        assert!(matches!(secrets.redact("nothing here"), Cow::Borrowed(_)));
        assert_eq!(
            &*secrets.redact_bytes(b"\xffabc\xff"),
            b"\xff[secret short]\xff"
        );
    }

    #[test]
    fn entries_from_the_environment_must_be_set_and_secrets_are_not_described() {
        let mut entries = BTreeMap::new();
        entries.insert("url".to_owned(), ConfigEntry::Value("https://x".into()));
        entries.insert(
            "key".to_owned(),
            ConfigEntry::FromEnv {
                env: "PATH".into(),
                secret: true,
            },
        );
        let config = PluginConfig::from_entries(entries).unwrap();
        let path = std::env::var("PATH").unwrap();
        assert_eq!(config.get("key"), Some(path.as_str()));
        assert_eq!(config.secrets().redact(&path), "[secret key]");
        let described = format!("{:?}", config.sources().collect::<Vec<_>>());
        assert!(!described.contains(&path), "{described}");

        let mut missing = BTreeMap::new();
        missing.insert(
            "key".to_owned(),
            ConfigEntry::FromEnv {
                env: "JOBHOST_TEST_SURELY_UNSET".into(),
                secret: true,
            },
        );
        let error = PluginConfig::from_entries(missing).unwrap_err();
        assert!(error.contains("JOBHOST_TEST_SURELY_UNSET"), "{error}");
    }
}
