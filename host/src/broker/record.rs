//! The one place that turns jobs' outcomes into Redis writes.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use crate::envelope::{Envelope, field, now_rfc3339};
use crate::keys::QueueKeys;
use crate::outcome::{Outcome, Throttle};
use crate::plugins::kv::{KvOp, KvWrite};

use super::entries::{Delivery, Unfit};
use super::{BrokerError, Redis};

static RECORD_OUTCOMES: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("record_outcomes.lua")));

impl Redis {
    /// Records outcomes of jobs of the queue `keys`, all in one atomic step,
    /// and says which it could not write (those entries stay pending) and
    /// which optional writes it skipped. Safe to call again with the same
    /// records after an error: an outcome already recorded is not written
    /// twice, and a script error comes before anything was written.
    /// `keep`: how final outcomes are kept for lookups, if they are.
    pub async fn record(
        &mut self,
        keys: &QueueKeys,
        records: &[Record<'_>],
        keep: Option<&KeepResults>,
    ) -> Result<Recorded, BrokerError> {
        if records.is_empty() {
            return Ok(Recorded::default());
        }
        let command = batch_command(records, keys, keep, RECORD_OUTCOMES.get_hash());
        self.evalsha(&RECORD_OUTCOMES, &command).await
    }
}

/// `last_error` in a DLQ entry keeps at most this many characters.
const MAX_ERROR_CHARS: usize = 1000;

/// Final outcomes kept for `jobhost job ID` (`run --keep-results`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeepResults {
    /// How long a result hash lives.
    pub ttl: Duration,
    /// The host recording them.
    pub host: String,
}

/// One delivery and what became of it, ready to be written.
pub struct Record<'a> {
    pub delivery: &'a Delivery,
    pub outcome: &'a Outcome,
    /// Now, in ms since the Unix epoch: the base of a retry's due time.
    pub now_ms: u64,
}

/// What a batch's script call could not do. Empty for nearly every batch.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    /// Outcomes not written, because a key they need cannot take the write:
    /// their entries stay pending (never lost), to be reclaimed and run again.
    pub held: Vec<Unwritten>,
    /// Writes the outcome does not need, skipped: a reply to a waiting
    /// producer, the release of a unique key of another type, the counters
    /// (entry id empty).
    pub skipped: Vec<Unwritten>,
}

/// One write the script could not do: for which entry, on which key, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unwritten {
    pub entry_id: String,
    pub key: String,
    pub reason: String,
}

impl redis::FromRedisValue for Recorded {
    fn from_redis_value(value: redis::Value) -> Result<Self, redis::ParsingError> {
        // Bytes: a reason may quote a value some other program wrote.
        let (_recorded, held, skipped): (u64, Vec<Vec<u8>>, Vec<Vec<u8>>) =
            redis::from_redis_value(value)?;
        Ok(Recorded {
            held: triples(held),
            skipped: triples(skipped),
        })
    }
}

/// A "done" record's key-value writes, after its follow-ups: their count,
/// then bucket (index into KEYS), op, key and value or count per write.
fn push_kv_writes(
    args: &mut Vec<Vec<u8>>,
    writes: &[KvWrite],
    bucket_index: &dyn Fn(&str) -> usize,
) {
    if writes.is_empty() {
        return;
    }
    args.push(writes.len().to_string().into_bytes());
    for write in writes {
        args.push(bucket_index(&write.bucket).to_string().into_bytes());
        let (op, arg) = match &write.op {
            KvOp::Set(value) => ("set", value.clone()),
            KvOp::Delete => ("del", Vec::new()),
            KvOp::Increment(delta) => ("incr", delta.to_string().into_bytes()),
        };
        args.push(op.as_bytes().to_vec());
        args.push(write.key.as_bytes().to_vec());
        args.push(arg);
    }
}

/// `record_outcomes.lua` returns each list flat: entry id, key, reason, ...
fn triples(flat: Vec<Vec<u8>>) -> Vec<Unwritten> {
    let mut items = flat
        .into_iter()
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
    let mut triples = Vec::new();
    while let (Some(entry_id), Some(key), Some(reason)) = (items.next(), items.next(), items.next())
    {
        triples.push(Unwritten {
            entry_id,
            key,
            reason,
        });
    }
    triples
}

/// The EVALSHA of `record_outcomes.lua` that records `records` in one step.
fn batch_command(
    records: &[Record<'_>],
    keys: &QueueKeys,
    keep: Option<&KeepResults>,
    script_sha: &str,
) -> redis::Cmd {
    // Reply streams become KEYS[6..]; only this queue's: the field comes from the producer.
    let prefix = keys.reply_prefix();
    let mut replies: Vec<&str> = Vec::new();
    fn reply_of<'r>(record: &Record<'r>, prefix: &str) -> Option<&'r str> {
        record
            .delivery
            .job
            .as_ref()
            .ok()
            .and_then(|job| job.reply_to.as_deref())
            .filter(|key| key.starts_with(prefix))
    }
    // Then the buckets written, as KEYS[6 + replies..], then the unique keys
    // released, then the kept results.
    let mut buckets: Vec<&str> = Vec::new();
    let mut uniques: Vec<&str> = Vec::new();
    for record in records {
        if let Some(reply) = reply_of(record, &prefix)
            && !replies.contains(&reply)
        {
            replies.push(reply);
        }
        for write in record.kv_writes() {
            if !buckets.contains(&write.bucket.as_str()) {
                buckets.push(&write.bucket);
            }
        }
        if let Some(unique) = record.released_unique()
            && !uniques.contains(&unique)
        {
            uniques.push(unique);
        }
    }
    let bucket_keys: Vec<String> = buckets.iter().map(|b| keys.kv_bucket(b)).collect();
    let unique_keys: Vec<String> = uniques.iter().map(|u| keys.unique(u)).collect();
    // One result hash per record with a final outcome, when they are kept.
    let results: Vec<Option<String>> = records
        .iter()
        .map(|record| (keep.is_some() && record.is_final()).then(|| keys.result(record.job_id())))
        .collect();
    let result_keys: Vec<&String> = results.iter().flatten().collect();
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script_sha)
        .arg(5 + replies.len() + bucket_keys.len() + unique_keys.len() + result_keys.len())
        .arg(&keys.stream)
        .arg(&keys.delayed)
        .arg(&keys.dlq)
        .arg(&keys.counters)
        .arg(&keys.cancelling)
        .arg(&replies)
        .arg(&bucket_keys)
        .arg(&unique_keys)
        .arg(&result_keys)
        .arg(&keys.group)
        .arg(records.len())
        .arg(keep.map_or(0, |keep| keep.ttl.as_millis() as u64))
        .arg(keep.map_or("", |keep| keep.host.as_str()))
        .arg(crate::envelope::now_ms());
    let bucket_index = |bucket: &str| {
        let at = buckets.iter().position(|b| *b == bucket).unwrap_or(0);
        6 + replies.len() + at
    };
    let mut next_result = 6 + replies.len() + bucket_keys.len() + unique_keys.len();
    for (record, result) in records.iter().zip(&results) {
        let reply = reply_of(record, &prefix)
            .and_then(|key| replies.iter().position(|r| *r == key))
            .map_or(0, |index| index + 6);
        let unique = record
            .released_unique()
            .and_then(|key| uniques.iter().position(|u| *u == key))
            .map_or(0, |index| index + 6 + replies.len() + buckets.len());
        let result = match result {
            Some(_) => {
                next_result += 1;
                next_result - 1
            }
            None => 0,
        };
        record.add_args(&mut cmd, keys, reply, unique, result, &bucket_index);
    }
    cmd
}

impl<'a> Record<'a> {
    /// The job's id (an entry without a readable job is known by its entry id).
    fn job_id(&self) -> &str {
        self.delivery
            .job
            .as_ref()
            .map_or(self.delivery.entry_id.as_str(), |job| job.job_id.as_str())
    }

    /// Whether the outcome is the job's last: it will not run again.
    fn is_final(&self) -> bool {
        !matches!(self.outcome, Outcome::Retry { .. } | Outcome::Wait { .. })
    }

    /// The unique key this record's outcome releases: the job's, when the
    /// outcome is final (done, dead, expired, cancelled). A retry or a wait
    /// keeps it: the job is still alive. An entry that never reached the
    /// host whole (dead in place) or was malformed names none here; its key
    /// ends with its TTL.
    fn released_unique(&self) -> Option<&'a str> {
        let job = self.delivery.job.as_ref().ok()?;
        match self.outcome {
            Outcome::Done { .. } | Outcome::Dead { .. } | Outcome::Expired | Outcome::Cancelled => {
                job.unique.as_ref().map(|key| key.as_str())
            }
            Outcome::Retry { .. } | Outcome::Wait { .. } => None,
        }
    }

    /// The key-value writes this record commits.
    fn kv_writes(&self) -> &[KvWrite] {
        match (self.outcome, &self.delivery.job) {
            (Outcome::Done { kv_writes, .. }, Ok(_)) => kv_writes,
            _ => &[],
        }
    }

    /// This record's arguments, as `record_outcomes.lua` reads them;
    /// `reply`, `unique` and `result` are indexes into KEYS (0 for none),
    /// and `bucket_index` gives a bucket's.
    fn add_args(
        &self,
        cmd: &mut redis::Cmd,
        keys: &QueueKeys,
        reply: usize,
        unique: usize,
        result: usize,
        bucket_index: &dyn Fn(&str) -> usize,
    ) {
        let job = self.delivery.job.as_ref().ok();
        // Only a waiting producer or a kept result reads it; neither is
        // there for most jobs.
        let reply_text: &[u8] = match self.outcome {
            _ if reply == 0 && result == 0 => b"",
            Outcome::Done { output, .. } => output,
            Outcome::Dead { reason } => reason.as_bytes(),
            Outcome::Expired => b"expired before it ran",
            Outcome::Cancelled => b"cancelled",
            Outcome::Retry { .. } | Outcome::Wait { .. } => b"",
        };
        cmd.arg(&self.delivery.entry_id)
            .arg(self.job_id())
            .arg(reply)
            .arg(reply_text)
            .arg(unique)
            .arg(result)
            .arg(job.map_or(1, |job| job.attempt));
        if let Outcome::Done {
            follow_ups,
            kv_writes,
            ..
        } = self.outcome
            && follow_ups.is_empty()
            && kv_writes.is_empty()
            && job.is_some()
        {
            // Most outcomes: done, no follow-ups; the same arguments as
            // `action` gives ("done", 1, "0") without building a list.
            cmd.arg("done").arg(1).arg(0);
            return;
        }
        let (action, mut args) = self.action(keys);
        push_kv_writes(&mut args, self.kv_writes(), bucket_index);
        cmd.arg(action).arg(args.len()).arg(args);
    }

    /// The fields a DLQ entry gets beside the job's own.
    fn push_enrichment(
        &self,
        args: &mut Vec<Vec<u8>>,
        keys: &QueueKeys,
        reason: &str,
        attempts: u32,
        replays: u32,
    ) {
        let last_error: String = reason.chars().take(MAX_ERROR_CHARS).collect();
        let enrichment = [
            ("original_id", self.delivery.entry_id.clone()),
            ("original_stream", keys.stream.clone()),
            ("failed_at", now_rfc3339()),
            ("total_attempts", attempts.to_string()),
            ("last_error", last_error),
            ("consumer_group", keys.group.clone()),
            (field::REPLAY_COUNT, replays.to_string()),
        ];
        for (name, value) in enrichment {
            args.push(name.as_bytes().to_vec());
            args.push(value.into_bytes());
        }
    }

    /// The action and its arguments.
    fn action(&self, keys: &QueueKeys) -> (&'static str, Vec<Vec<u8>>) {
        let mut args: Vec<Vec<u8>> = Vec::new();
        let mut text = |value: &str| args.push(value.as_bytes().to_vec());
        match (self.outcome, &self.delivery.job) {
            (Outcome::Done { follow_ups, .. }, Ok(parent)) => {
                text(&follow_ups.len().to_string());
                for follow_up in follow_ups {
                    let mut job =
                        Envelope::new(follow_up.job_type.clone(), follow_up.payload.clone());
                    job.trace_id = parent.trace_id.clone();
                    job.producer = Some(format!("jobhost:{}", parent.job_type));
                    let fields = job.to_fields();
                    args.push((fields.len() * 2).to_string().into_bytes());
                    for (name, value) in fields {
                        args.push(name.as_bytes().to_vec());
                        args.push(value);
                    }
                }
                ("done", args)
            }
            (Outcome::Retry { after, .. }, Ok(job)) => {
                let mut next = job.clone();
                next.attempt += 1;
                // A new attempt queues for the fleet-wide limits afresh.
                next.rate_paid = None;
                next.throttled = 0;
                let due = self.now_ms + after.as_millis() as u64;
                text(&due.to_string());
                args.push(super::delayed::member(&next));
                ("retry", args)
            }
            (
                Outcome::Wait {
                    after, throttle, ..
                },
                Ok(job),
            ) => {
                // The same attempt, carrying what its wait paid for.
                let mut next = job.clone();
                match throttle {
                    Throttle::Rate { slot_ms } => next.rate_paid = Some(*slot_ms),
                    Throttle::Concurrency => next.throttled = next.throttled.saturating_add(1),
                    Throttle::Unavailable => {}
                }
                let due = self.now_ms + after.as_millis() as u64;
                text(&due.to_string());
                args.push(super::delayed::member(&next));
                ("wait", args)
            }
            (Outcome::Dead { reason }, Err(Unfit::Oversized { values, .. })) => {
                // Its fields never reached this host: the script copies them.
                text(&values.to_string());
                self.push_enrichment(&mut args, keys, reason, 1, 0);
                ("dead-in-place", args)
            }
            (Outcome::Dead { reason }, job) => {
                let (fields, attempts, replays) = match job {
                    Ok(job) => (
                        job.to_fields()
                            .into_iter()
                            .map(|(k, v)| (k.to_owned(), v))
                            .collect(),
                        job.attempt,
                        job.replay_count,
                    ),
                    Err(Unfit::Malformed(malformed)) => (malformed.fields.clone(), 0, 0),
                    Err(Unfit::Oversized { .. }) => (Vec::new(), 0, 0),
                };
                // Host-internal fields of a wait mean nothing to a replay.
                let dropped = [field::REPLAY_COUNT, field::RATE_PAID, field::THROTTLED];
                for (name, value) in fields
                    .into_iter()
                    .filter(|(k, _)| !dropped.contains(&k.as_str()))
                {
                    args.push(name.into_bytes());
                    args.push(value);
                }
                self.push_enrichment(&mut args, keys, reason, attempts, replays);
                ("dead", args)
            }
            (Outcome::Cancelled, _) => ("cancelled", args),
            // Expired jobs, and the impossible pairing of a malformed entry with
            // another outcome: acknowledge only.
            _ => ("ack", args),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{JobType, UniqueKey};

    #[test]
    fn only_a_final_outcome_releases_the_unique_key() {
        let mut job = Envelope::new(JobType::parse("a.b").unwrap(), b"{}".to_vec());
        job.unique = Some(UniqueKey::parse("order-42").unwrap());
        let delivery = Delivery {
            entry_id: "1-0".into(),
            job: Ok(job),
            deliveries: 1,
            bytes: 0,
        };
        let released = |outcome: Outcome| {
            Record {
                delivery: &delivery,
                outcome: &outcome,
                now_ms: 0,
            }
            .released_unique()
            .map(str::to_owned)
        };
        let done = Outcome::Done {
            output: Vec::new(),
            follow_ups: Vec::new(),
            kv_writes: Vec::new(),
        };
        assert_eq!(released(done).as_deref(), Some("order-42"));
        let dead = Outcome::Dead {
            reason: "no".into(),
        };
        assert_eq!(released(dead).as_deref(), Some("order-42"));
        assert_eq!(released(Outcome::Expired).as_deref(), Some("order-42"));
        let retry = Outcome::Retry {
            after: std::time::Duration::from_secs(1),
            error: "again".into(),
        };
        assert_eq!(released(retry), None, "the job lives on");
    }

    #[test]
    fn done_without_follow_ups_takes_the_generic_arguments_shortcut() {
        let job = Envelope::new(JobType::parse("a.b").unwrap(), b"{}".to_vec());
        let delivery = Delivery {
            entry_id: "1-0".into(),
            job: Ok(job.clone()),
            deliveries: 1,
            bytes: 0,
        };
        let outcome = Outcome::Done {
            output: b"out".to_vec(),
            follow_ups: Vec::new(),
            kv_writes: Vec::new(),
        };
        let record = Record {
            delivery: &delivery,
            outcome: &outcome,
            now_ms: 0,
        };
        let keys = QueueKeys::new("ns", "q");
        let mut shortcut = redis::cmd("EVALSHA");
        record.add_args(&mut shortcut, &keys, 0, 0, 0, &|_| 0);
        let (action, args) = record.action(&keys);
        let mut generic = redis::cmd("EVALSHA");
        generic
            .arg("1-0")
            .arg(job.job_id.as_str())
            .arg(0)
            .arg(b"")
            .arg(0)
            .arg(0)
            .arg(1)
            .arg(action)
            .arg(args.len())
            .arg(args);
        assert_eq!(shortcut.get_packed_command(), generic.get_packed_command());
    }
}
