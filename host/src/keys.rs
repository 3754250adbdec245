//! The one place that names Redis keys.
//!
//! Every key of a queue carries the queue's hash tag (`{queue}`), so that all
//! keys one atomic step touches live in one Redis Cluster slot. The
//! generator's keys belong to the namespace, not to a queue.

/// The Redis keys and consumer group of one queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueKeys {
    /// The namespace the queue belongs to, e.g. `jobhost`.
    pub namespace: String,
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
    /// Hash of running jobs asked to stop (`jobhost cancel`): field the job
    /// id, value when it was asked (ms). Each host watches it for its jobs;
    /// a job's mark goes with its final outcome.
    pub cancelling: String,
    /// The consumer group every host of this queue reads through.
    pub group: String,
    /// `{namespace}:{{queue}}`, the start of every key of this queue.
    prefix: String,
}

/// The two keys of one bucket of a plugin's fleet-wide limits; both expire
/// once they hold nothing that matters any more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitKeys {
    /// String: the rate's theoretical arrival time (GCRA), ms of Redis's clock.
    pub rate: String,
    /// Sorted set of running jobs' leases: member the job id, score its expiry (ms).
    pub running: String,
    /// String: the theoretical arrival time of the starts themselves, which
    /// keeps jobs whose reserved slots came due together to the rate.
    pub starts: String,
}

/// Namespace used when none is given.
pub const DEFAULT_NAMESPACE: &str = "jobhost";
/// Queue used when none is given.
pub const DEFAULT_QUEUE: &str = "default";
/// The consumer group shared by all hosts of a queue.
pub const GROUP: &str = "workers";

impl QueueKeys {
    /// Keys of `queue` under `namespace`: `{namespace}:{{queue}}:stream` and so on.
    pub fn new(namespace: &str, queue: &str) -> Self {
        let prefix = format!("{namespace}:{{{queue}}}");
        QueueKeys {
            namespace: namespace.to_owned(),
            queue: queue.to_owned(),
            stream: format!("{prefix}:stream"),
            delayed: format!("{prefix}:delayed"),
            dlq: format!("{prefix}:dlq"),
            counters: format!("{prefix}:counters"),
            cancelling: format!("{prefix}:cancelling"),
            group: GROUP.to_owned(),
            prefix,
        }
    }

    /// Present while the host behind `consumer` is alive (it expires unless renewed).
    pub fn alive(&self, consumer: &str) -> String {
        format!("{}:alive:{consumer}", self.prefix)
    }

    /// Hash of the entries host `consumer` holds: field the entry id, value
    /// since when (ms). Its heartbeat rewrites it; it expires with the host.
    pub fn held(&self, consumer: &str) -> String {
        format!("{}:held:{consumer}", self.prefix)
    }

    /// The hash holding key-value bucket `bucket` of this queue (field: the
    /// key, value: its bytes). A bucket lives with its queue, so its writes
    /// commit in the same atomic step as the queue's acknowledgements.
    pub fn kv_bucket(&self, bucket: &str) -> String {
        format!("{}{bucket}", self.kv_prefix())
    }

    /// The start of every bucket key of this queue.
    pub fn kv_prefix(&self) -> String {
        format!("{}:kv:", self.prefix)
    }

    /// The keys of plugin `plugin`'s fleet-wide limits in this queue: its own
    /// bucket, or the bucket of the producer's limit key `key`.
    pub fn limit(&self, plugin: &str, key: Option<&str>) -> LimitKeys {
        let base = match key {
            None => format!("{}:limit:{plugin}", self.prefix),
            Some(key) => format!("{}:limit:{plugin}:key:{key}", self.prefix),
        };
        LimitKeys {
            rate: format!("{base}:rate"),
            running: format!("{base}:running"),
            starts: format!("{base}:starts"),
        }
    }

    /// Hash of job `job_id`'s final outcome, kept for lookups (`run
    /// --keep-results`, and `jobhost cancel`); it expires.
    pub fn result(&self, job_id: &str) -> String {
        format!("{}:result:{job_id}", self.prefix)
    }

    /// The string holding the id of the job that holds unique key `key`
    /// (`enqueue --unique KEY`) while it is waiting, delayed or running. It
    /// lives under the queue's hash tag, so the enqueue's check and write and
    /// the release with the job's outcome are each one step on one slot.
    pub fn unique(&self, key: &str) -> String {
        format!("{}{key}", self.unique_prefix())
    }

    /// The start of every unique key of this queue.
    pub fn unique_prefix(&self) -> String {
        format!("{}:unique:", self.prefix)
    }

    /// The hash of schedule `name`, whose jobs go to this queue: its
    /// definition and its fire state. It lives under the queue's hash tag, so
    /// moving its last tick and adding its job are one atomic step, also on a
    /// Cluster.
    pub fn schedule(&self, name: &str) -> String {
        format!("{}:schedule:{name}", self.prefix)
    }

    /// Hash of the outcomes recorded in minute `minute` (ms since the epoch
    /// / 60 000): field the outcome (`done`, `retry`, `dead`, ...), value how
    /// many. Hosts add to it as they record; it expires after two hours. The
    /// dashboard's charts read it.
    pub fn history(&self, minute: u64) -> String {
        format!("{}:history:{minute}", self.prefix)
    }

    /// The start of every reply stream of this queue.
    pub fn reply_prefix(&self) -> String {
        format!("{}:reply:", self.prefix)
    }

    /// The reply stream of the waiting producer `client`.
    pub fn reply(&self, client: &str) -> String {
        format!("{}{client}", self.reply_prefix())
    }

    /// SCAN patterns matching the keys that make a queue exist under
    /// `namespace`: its stream, and its delayed set (a queue whose only job
    /// is delayed has no stream yet).
    pub fn queue_patterns(namespace: &str) -> [String; 2] {
        [
            format!("{namespace}:{{*}}:stream"),
            format!("{namespace}:{{*}}:delayed"),
        ]
    }

    /// The queue whose stream or delayed set is `key`, if it is one under
    /// `namespace`.
    pub fn queue_of_key<'k>(namespace: &str, key: &'k str) -> Option<&'k str> {
        let rest = key.strip_prefix(namespace)?.strip_prefix(":{")?;
        rest.strip_suffix("}:stream")
            .or_else(|| rest.strip_suffix("}:delayed"))
    }
}

/// The set of the namespace's paused queues (their names): one key for all,
/// so a host learns the state of every queue it serves with one command, on
/// a Cluster too. Kept until resumed: pausing survives restarts.
pub fn paused_queues(namespace: &str) -> String {
    format!("{namespace}:paused")
}

/// The namespace's index of schedules: a hash of schedule name → the queue
/// its jobs go to (and so where its own hash, [`QueueKeys::schedule`], is).
/// Hosts read it about every second to learn of schedules added and removed.
pub fn schedules_index(namespace: &str) -> String {
    format!("{namespace}:schedules")
}

/// The namespace's registry of live hosts: a hash of host (consumer) name →
/// what it runs, as JSON with the time it expires unless renewed. Each host
/// rewrites its own field with its heartbeat and removes it when it stops;
/// readers skip (and clear) expired ones.
pub fn hosts_registry(namespace: &str) -> String {
    format!("{namespace}:hosts")
}

/// The keys of the namespace's one generator lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratorKeys {
    /// Names the generator that may produce; expires unless renewed.
    pub lease: String,
    /// Set by a `generate` waiting in standby, so a consumer host generating as
    /// a fallback hands the lease over.
    pub wanted: String,
}

impl GeneratorKeys {
    pub fn new(namespace: &str) -> Self {
        GeneratorKeys {
            lease: format!("{namespace}:generator:lease"),
            wanted: format!("{namespace}:generator:wanted"),
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
        assert_eq!(keys.reply("c"), "jobhost:{default}:reply:c");
        assert_eq!(keys.kv_bucket("counters"), "jobhost:{default}:kv:counters");
        assert_eq!(keys.cancelling, "jobhost:{default}:cancelling");
        assert_eq!(keys.result("j1"), "jobhost:{default}:result:j1");
        assert_eq!(keys.unique("order-42"), "jobhost:{default}:unique:order-42");
        assert_eq!(
            keys.schedule("nightly"),
            "jobhost:{default}:schedule:nightly"
        );
        assert_eq!(schedules_index("jobhost"), "jobhost:schedules");
        assert_eq!(
            keys.history(29_000_000),
            "jobhost:{default}:history:29000000"
        );
        assert_eq!(hosts_registry("jobhost"), "jobhost:hosts");
        let limit = keys.limit("mailer", None);
        assert_eq!(limit.rate, "jobhost:{default}:limit:mailer:rate");
        assert_eq!(limit.running, "jobhost:{default}:limit:mailer:running");
        let keyed = keys.limit("mailer", Some("acct_42"));
        assert_eq!(
            keyed.rate,
            "jobhost:{default}:limit:mailer:key:acct_42:rate"
        );
        assert_eq!(
            keyed.running,
            "jobhost:{default}:limit:mailer:key:acct_42:running"
        );
    }

    #[test]
    fn a_stream_or_delayed_set_key_names_its_queue() {
        let keys = QueueKeys::new("jobhost", "emails");
        assert_eq!(
            QueueKeys::queue_of_key("jobhost", &keys.stream),
            Some("emails")
        );
        assert_eq!(
            QueueKeys::queue_of_key("jobhost", &keys.delayed),
            Some(keys.queue.as_str())
        );
        assert_eq!(QueueKeys::queue_of_key("jobhost", &keys.dlq), None);
        assert_eq!(QueueKeys::queue_of_key("other", &keys.stream), None);
        assert_eq!(
            QueueKeys::queue_patterns("jobhost"),
            ["jobhost:{*}:stream", "jobhost:{*}:delayed"]
        );
        assert_eq!(
            GeneratorKeys::new("jobhost").lease,
            "jobhost:generator:lease"
        );
    }
}
