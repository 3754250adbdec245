//! Writing new jobs onto a queue's stream (or its delayed set), and waiting
//! for a job's outcome on a reply stream.
//!
//! A job with a unique key (`enqueue --unique KEY`) is written by
//! `enqueue_unique.lua`, which checks the key, writes the job and takes the
//! key in one step; `record_outcomes.lua` releases it with the job's final
//! outcome.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use redis::Script;

use super::entries::{raw_entries, read_reply_entries};
use super::{BrokerError, Redis};
use crate::envelope::{Envelope, JobId, now_ms};
use crate::keys::QueueKeys;

static ENQUEUE_UNIQUE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("enqueue_unique.lua")));

/// How long a unique key is held at most after its job is due, when the
/// producer gave no `--unique-for`: the job's final outcome releases it
/// sooner, and this cap frees it even if nothing ever does (a job deleted by
/// hand, a dead-in-place entry whose key the host never read).
pub const UNIQUE_CAP: Duration = Duration::from_secs(24 * 60 * 60);

/// What an enqueue became.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    /// Written, with this job id.
    Queued(JobId),
    /// Not written: its unique key is held by this job, enqueued before it.
    Duplicate(JobId),
}

/// How long a unique key is held (ms, at least 1): `unique_for` from now, or
/// else [`UNIQUE_CAP`] past the job's due time.
pub fn unique_ttl_ms(unique_for: Option<Duration>, now_ms: u64, due_ms: Option<u64>) -> u64 {
    let ttl = match unique_for {
        Some(hold) => hold.as_millis() as u64,
        None => due_ms.unwrap_or(now_ms).saturating_sub(now_ms) + UNIQUE_CAP.as_millis() as u64,
    };
    ttl.max(1)
}

/// A reply stream outlives its producer by at most this long; the producer
/// renews it every second while it waits.
const REPLY_TTL: Duration = Duration::from_secs(10);
const REPLY_POLL: Duration = Duration::from_secs(1);

/// How a job a producer waited for ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobResult {
    /// Handled; the handler's output.
    Done(Vec<u8>),
    /// Dead-lettered; the final error.
    Failed(String),
    /// Skipped: it expired before it ran.
    Expired,
    /// Cancelled (`jobhost cancel`), before or while it ran.
    Cancelled,
    /// No outcome within the timeout; the job may still run.
    TimedOut,
    /// Not enqueued: its unique key is held by this job (nothing was waited for).
    Duplicate(JobId),
}

impl Redis {
    /// Writes `job` onto the stream, or into the delayed set when `due_ms` is
    /// given. A job with a unique key is written only if no other job holds
    /// that key, which it then holds for [`unique_ttl_ms`] or until its final
    /// outcome; otherwise the answer names the holder.
    pub async fn submit(
        &mut self,
        keys: &QueueKeys,
        job: &Envelope,
        due_ms: Option<u64>,
        unique_for: Option<Duration>,
    ) -> Result<Enqueued, BrokerError> {
        if job.unique.is_some() {
            let command = unique_command(keys, job, due_ms, unique_for);
            let reply: Vec<Vec<u8>> = self.evalsha(&ENQUEUE_UNIQUE, &command).await?;
            return unique_answer(job, reply);
        }
        match due_ms {
            Some(due) => self.schedule(keys, job, due).await?,
            None => {
                self.enqueue(keys, job).await?;
            }
        }
        Ok(Enqueued::Queued(job.job_id.clone()))
    }

    /// Writes each job onto the stream, in one pipelined round trip, in
    /// order; those with a unique key (held for its duration, see
    /// [`Redis::submit`]) only if no other job holds it. One answer per job:
    /// a job refused (its key of another type) does not stop the others.
    pub async fn submit_batch(
        &mut self,
        keys: &QueueKeys,
        jobs: &[(Envelope, Option<Duration>)],
    ) -> Result<Vec<Result<Enqueued, BrokerError>>, BrokerError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        if jobs.iter().any(|(job, _)| job.unique.is_some()) {
            // An EVALSHA refused with NOSCRIPT inside a pipeline cannot be
            // sent again alone (the commands after it already ran): load first.
            ENQUEUE_UNIQUE
                .prepare_invoke()
                .load_async(&mut self.conn)
                .await
                .map_err(|e| self.error(e))?;
        }
        let mut pipe = redis::pipe();
        for (job, unique_for) in jobs {
            match job.unique {
                Some(_) => pipe.add_command(unique_command(keys, job, None, *unique_for)),
                None => pipe.add_command(xadd(&keys.stream, job)),
            };
        }
        let replies: Vec<redis::Value> = self.pipeline(&pipe).await?;
        Ok(jobs
            .iter()
            .zip(replies)
            .map(|((job, _), reply)| match job.unique {
                None => Ok(Enqueued::Queued(job.job_id.clone())),
                Some(_) => redis::from_redis_value(reply)
                    .map_err(|e| self.error(e.into()))
                    .and_then(|reply| unique_answer(job, reply)),
            })
            .collect())
    }

    /// Appends one job to the queue's stream; returns its stream entry id.
    pub async fn enqueue(
        &mut self,
        keys: &QueueKeys,
        job: &Envelope,
    ) -> Result<String, BrokerError> {
        self.query(&xadd(&keys.stream, job)).await
    }

    /// Appends many jobs in one pipelined round trip, in order.
    pub async fn enqueue_batch(
        &mut self,
        keys: &QueueKeys,
        jobs: &[Envelope],
    ) -> Result<(), BrokerError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for job in jobs {
            pipe.add_command(xadd(&keys.stream, job)).ignore();
        }
        self.pipeline(&pipe).await
    }

    /// Puts a job in the delayed set, to be moved onto the stream at `due_ms`
    /// (ms since the Unix epoch) by whichever host gets there first.
    pub async fn schedule(
        &mut self,
        keys: &QueueKeys,
        job: &Envelope,
        due_ms: u64,
    ) -> Result<(), BrokerError> {
        self.query(
            redis::cmd("ZADD")
                .arg(&keys.delayed)
                .arg(due_ms)
                .arg(super::delayed::member(job)),
        )
        .await
    }

    /// Enqueues `job` (at `due_ms`, if given) and waits up to `timeout` for its
    /// final outcome, which the host sends to a reply stream of this producer's
    /// own. The stream expires unless renewed, so a producer that dies while
    /// waiting leaves nothing behind.
    pub async fn enqueue_and_wait(
        &mut self,
        keys: &QueueKeys,
        mut job: Envelope,
        due_ms: Option<u64>,
        unique_for: Option<Duration>,
        timeout: Duration,
    ) -> Result<JobResult, BrokerError> {
        let reply = keys.reply(&uuid::Uuid::new_v4().simple().to_string());
        let mut open = redis::pipe();
        open.cmd("XADD")
            .arg(&reply)
            .arg("*")
            .arg("open")
            .arg(1)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&reply)
            .arg(REPLY_TTL.as_millis() as u64)
            .ignore();
        self.pipeline::<()>(&open).await?;
        job.reply_to = Some(reply.clone());
        let result = self
            .submit_and_wait(keys, &job, due_ms, unique_for, &reply, timeout)
            .await;
        // Best effort: if this fails the stream still expires by itself.
        let _ = self.query::<()>(redis::cmd("DEL").arg(&reply)).await;
        result
    }

    async fn submit_and_wait(
        &mut self,
        keys: &QueueKeys,
        job: &Envelope,
        due_ms: Option<u64>,
        unique_for: Option<Duration>,
        reply: &str,
        timeout: Duration,
    ) -> Result<JobResult, BrokerError> {
        if let Enqueued::Duplicate(first) = self.submit(keys, job, due_ms, unique_for).await? {
            return Ok(JobResult::Duplicate(first));
        }
        let mut reader = self.blocking(REPLY_POLL).await?;
        let deadline = Instant::now() + timeout;
        let mut last_id = "0-0".to_owned();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(JobResult::TimedOut);
            }
            let block = left.min(REPLY_POLL).as_millis().max(1) as u64;
            let read: redis::Value = reader
                .query(
                    redis::cmd("XREAD")
                        .arg("BLOCK")
                        .arg(block)
                        .arg("STREAMS")
                        .arg(reply)
                        .arg(&last_id),
                )
                .await?;
            self.query::<()>(
                redis::cmd("PEXPIRE")
                    .arg(reply)
                    .arg(REPLY_TTL.as_millis() as u64),
            )
            .await?;
            for (id, fields) in read_reply_entries(read).into_iter().flat_map(raw_entries) {
                last_id = id;
                let field = |name: &str| -> &[u8] {
                    fields
                        .iter()
                        .find(|(key, _)| key == name)
                        .map_or(&[], |(_, value)| value.as_slice())
                };
                if field("job_id") != job.job_id.as_str().as_bytes() {
                    continue;
                }
                return Ok(match field("outcome") {
                    b"done" => JobResult::Done(field("text").to_vec()),
                    b"expired" => JobResult::Expired,
                    b"cancelled" => JobResult::Cancelled,
                    _ => JobResult::Failed(String::from_utf8_lossy(field("text")).into_owned()),
                });
            }
        }
    }
}

fn xadd(stream: &str, job: &Envelope) -> redis::Cmd {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(stream).arg("*");
    job.for_each_field(|name, value| {
        cmd.arg(name).arg(value);
    });
    cmd
}

/// The EVALSHA of `enqueue_unique.lua` that writes `job` (onto the stream,
/// or into the delayed set at `due_ms`) if no other job holds its key.
fn unique_command(
    keys: &QueueKeys,
    job: &Envelope,
    due_ms: Option<u64>,
    unique_for: Option<Duration>,
) -> redis::Cmd {
    let unique = job.unique.as_ref().map_or("", |key| key.as_str());
    let ttl = unique_ttl_ms(unique_for, now_ms(), due_ms);
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(ENQUEUE_UNIQUE.get_hash())
        .arg(2)
        .arg(keys.unique(unique))
        .arg(if due_ms.is_some() {
            &keys.delayed
        } else {
            &keys.stream
        })
        .arg(job.job_id.as_str())
        .arg(ttl);
    match due_ms {
        Some(due) => {
            cmd.arg("zadd").arg(due).arg(super::delayed::member(job));
        }
        None => {
            cmd.arg("xadd").arg("");
            job.for_each_field(|name, value| {
                cmd.arg(name).arg(value);
            });
        }
    }
    cmd
}

/// `enqueue_unique.lua`'s answer for `job`.
fn unique_answer(job: &Envelope, reply: Vec<Vec<u8>>) -> Result<Enqueued, BrokerError> {
    let text =
        |at: usize| String::from_utf8_lossy(reply.get(at).map_or(&[][..], |v| v)).into_owned();
    match reply.first().map(Vec::as_slice) {
        Some(b"queued") => Ok(Enqueued::Queued(job.job_id.clone())),
        Some(b"duplicate") => Ok(Enqueued::Duplicate(JobId::from_stored(text(1)))),
        _ => Err(BrokerError::Refused {
            key: text(1),
            reason: text(2),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unique_key_is_held_for_unique_for_or_else_the_cap_past_its_due_time() {
        let now = 1_000_000;
        assert_eq!(
            unique_ttl_ms(Some(Duration::from_secs(600)), now, None),
            600_000
        );
        let cap = UNIQUE_CAP.as_millis() as u64;
        assert_eq!(unique_ttl_ms(None, now, None), cap);
        assert_eq!(unique_ttl_ms(None, now, Some(now + 5_000)), 5_000 + cap);
        assert_eq!(
            unique_ttl_ms(None, now, Some(now - 5_000)),
            cap,
            "already due"
        );
        assert_eq!(unique_ttl_ms(Some(Duration::ZERO), now, None), 1, "never 0");
    }
}
