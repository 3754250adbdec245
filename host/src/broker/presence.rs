//! What hosts tell the fleet about themselves, for the dashboard: the
//! registry of live hosts and each queue's outcomes per minute.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{BrokerError, Redis};
use crate::keys::{QueueKeys, hosts_registry};

/// A minute's outcome counts are kept this long.
const HISTORY_TTL_MS: u64 = 2 * 60 * 60 * 1000;
/// A registry entry expired this long ago is deleted by whoever reads it.
const FORGET_AFTER_MS: u64 = 60 * 60 * 1000;

/// One host as it describes itself in the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInfo {
    /// Its consumer name in the groups.
    pub name: String,
    /// The jobhost version it runs.
    pub version: String,
    pub pid: u32,
    pub started_ms: u64,
    pub seen_ms: u64,
    /// Gone unless renewed by then.
    pub expires_ms: u64,
    pub concurrency: usize,
    /// The queues it serves, as given (`critical=6`).
    pub queues: Vec<String>,
    pub plugins: Vec<PluginInfo>,
    /// Jobs it finished since it started, by outcome (`done`, `dead`, ...).
    pub outcomes: BTreeMap<String, u64>,
    /// Jobs it holds now (read, running or being recorded).
    pub in_flight: u64,
}

/// A plugin a host serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    /// SHA-256 of its component file.
    pub hash: String,
}

impl Redis {
    /// Writes (or renews) `host`'s entry in the registry.
    pub async fn register_host(
        &mut self,
        namespace: &str,
        host: &HostInfo,
    ) -> Result<(), BrokerError> {
        let json = serde_json::to_string(host).expect("host info serializes");
        self.query::<()>(
            redis::cmd("HSET")
                .arg(hosts_registry(namespace))
                .arg(&host.name)
                .arg(json),
        )
        .await
    }

    /// Removes host `name` from the registry (it stopped).
    pub async fn deregister_host(
        &mut self,
        namespace: &str,
        name: &str,
    ) -> Result<(), BrokerError> {
        self.query::<()>(redis::cmd("HDEL").arg(hosts_registry(namespace)).arg(name))
            .await
    }

    /// The live hosts of `namespace` at `now_ms`, by name. Entries long
    /// expired (a killed host's) or unreadable are deleted on the way.
    pub async fn hosts(
        &mut self,
        namespace: &str,
        now_ms: u64,
    ) -> Result<Vec<HostInfo>, BrokerError> {
        let key = hosts_registry(namespace);
        let entries: BTreeMap<String, String> = self
            .query(redis::cmd("HGETALL").arg(&key))
            .await
            .map_err(|error| wrong_type(error, &key))?;
        let mut live = Vec::new();
        let mut forget = Vec::new();
        for (name, json) in entries {
            match serde_json::from_str::<HostInfo>(&json) {
                Ok(host) if host.expires_ms > now_ms => live.push(host),
                Ok(host) if host.expires_ms + FORGET_AFTER_MS > now_ms => {}
                _ => forget.push(name),
            }
        }
        if !forget.is_empty() {
            self.query::<()>(redis::cmd("HDEL").arg(&key).arg(&forget))
                .await?;
        }
        Ok(live)
    }

    /// Adds `counts` (outcome → how many) to the queue's history of `minute`.
    pub async fn add_history(
        &mut self,
        keys: &QueueKeys,
        minute: u64,
        counts: &BTreeMap<String, u64>,
    ) -> Result<(), BrokerError> {
        let key = keys.history(minute);
        let mut pipe = redis::pipe();
        for (outcome, count) in counts.iter().filter(|(_, count)| **count > 0) {
            pipe.cmd("HINCRBY")
                .arg(&key)
                .arg(outcome)
                .arg(*count)
                .ignore();
        }
        pipe.cmd("PEXPIRE").arg(&key).arg(HISTORY_TTL_MS).ignore();
        self.pipeline::<()>(&pipe)
            .await
            .map_err(|error| wrong_type(error, &key))
    }

    /// The queue's outcome counts of each minute from `first` to `last`,
    /// inclusive (an empty map for a minute without any).
    pub async fn history(
        &mut self,
        keys: &QueueKeys,
        first: u64,
        last: u64,
    ) -> Result<Vec<BTreeMap<String, u64>>, BrokerError> {
        let mut pipe = redis::pipe();
        for minute in first..=last {
            pipe.cmd("HGETALL").arg(keys.history(minute));
        }
        self.pipeline(&pipe)
            .await
            .map_err(|error| wrong_type(error, &keys.history(first)))
    }
}

/// A key of another type gets the message that names the key to delete.
fn wrong_type(error: BrokerError, key: &str) -> BrokerError {
    match &error {
        BrokerError::Command { error: cause, .. } if cause.code() == Some("WRONGTYPE") => {
            BrokerError::WrongType {
                key: key.to_owned(),
            }
        }
        _ => error,
    }
}
