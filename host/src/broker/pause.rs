//! Pausing queues: the namespace's set of paused queue names, which every
//! host reads now and then (see `host/pause.rs`) and `jobhost queue` writes.

use std::collections::BTreeSet;

use super::{BrokerError, Redis};
use crate::keys::paused_queues;

impl Redis {
    /// Pauses `queue`; false when it was paused already.
    pub async fn pause(&mut self, namespace: &str, queue: &str) -> Result<bool, BrokerError> {
        let added: u64 = self
            .query(redis::cmd("SADD").arg(paused_queues(namespace)).arg(queue))
            .await?;
        Ok(added == 1)
    }

    /// Resumes `queue`; false when it was not paused.
    pub async fn resume(&mut self, namespace: &str, queue: &str) -> Result<bool, BrokerError> {
        let removed: u64 = self
            .query(redis::cmd("SREM").arg(paused_queues(namespace)).arg(queue))
            .await?;
        Ok(removed == 1)
    }

    /// The names of the paused queues of `namespace`.
    pub async fn paused(&mut self, namespace: &str) -> Result<BTreeSet<String>, BrokerError> {
        self.query(redis::cmd("SMEMBERS").arg(paused_queues(namespace)))
            .await
    }
}
