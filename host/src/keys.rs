//! The one place that names Redis keys.
//!
//! Every key of a queue carries the queue's hash tag (`{queue}`), so that all
//! keys one atomic step touches live in one Redis Cluster slot.

/// The Redis keys and consumer group of one queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueKeys {
    /// The queue's name, e.g. `default`.
    pub queue: String,
    /// The stream jobs are read from.
    pub stream: String,
    /// Sorted set of jobs waiting for a time (delayed jobs and retries), scored by due time in ms.
    pub delayed: String,
    /// The dead-letter stream.
    pub dlq: String,
    /// Hash of outcome counters (done, retry, dead, expired), for `jobhost stats`.
    pub counters: String,
    /// The consumer group every host of this queue reads through.
    pub group: String,
}

/// Namespace used when none is given.
pub const DEFAULT_NAMESPACE: &str = "jobhost";
/// Queue used when none is given.
pub const DEFAULT_QUEUE: &str = "default";
/// The consumer group shared by all hosts of a queue.
pub const GROUP: &str = "workers";

impl QueueKeys {
    /// Present while the host behind `consumer` is alive (it expires unless renewed).
    pub fn alive(&self, consumer: &str) -> String {
        let prefix = self.stream.trim_end_matches(":stream");
        format!("{prefix}:alive:{consumer}")
    }

    /// The start of every reply stream of this queue.
    pub fn reply_prefix(&self) -> String {
        let prefix = self.stream.trim_end_matches(":stream");
        format!("{prefix}:reply:")
    }

    /// The reply stream of the waiting producer `client`.
    pub fn reply(&self, client: &str) -> String {
        format!("{}{client}", self.reply_prefix())
    }

    /// Keys of `queue` under `namespace`: `{namespace}:{{queue}}:stream` and so on.
    pub fn new(namespace: &str, queue: &str) -> Self {
        let prefix = format!("{namespace}:{{{queue}}}");
        QueueKeys {
            queue: queue.to_owned(),
            stream: format!("{prefix}:stream"),
            delayed: format!("{prefix}:delayed"),
            dlq: format!("{prefix}:dlq"),
            counters: format!("{prefix}:counters"),
            group: GROUP.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_a_queue_share_one_hash_tag() {
        let keys = QueueKeys::new("jobhost", "default");
        assert_eq!(keys.stream, "jobhost:{default}:stream");
        assert_eq!(keys.delayed, "jobhost:{default}:delayed");
        assert_eq!(keys.dlq, "jobhost:{default}:dlq");
        assert_eq!(keys.alive("h-1"), "jobhost:{default}:alive:h-1");
    }
}
