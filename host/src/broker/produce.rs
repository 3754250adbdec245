//! Writing new jobs onto a queue's stream (or its delayed set), and waiting
//! for a job's outcome on a reply stream.

use std::time::{Duration, Instant};

use super::entries::{raw_entries, read_reply_entries};
use super::{BrokerError, Redis};
use crate::envelope::Envelope;
use crate::keys::QueueKeys;

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
}

impl Redis {
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
            .submit_and_wait(keys, &job, due_ms, &reply, timeout)
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
        reply: &str,
        timeout: Duration,
    ) -> Result<JobResult, BrokerError> {
        match due_ms {
            Some(due) => self.schedule(keys, job, due).await?,
            None => {
                self.enqueue(keys, job).await?;
            }
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
