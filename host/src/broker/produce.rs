//! Writing new jobs onto a queue's stream (or its delayed set).

use std::time::{Duration, Instant};

use std::sync::Arc;

use redis::RedisError;
use redis::streams::StreamReadReply;

use super::{BrokerError, Connection, Target, connect_to};
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
    /// No outcome within the timeout; the job may still run.
    TimedOut,
}

/// Enqueues jobs on one queue.
#[derive(Clone)]
pub struct Producer {
    target: Arc<Target>,
    keys: QueueKeys,
    conn: Connection,
}

impl Producer {
    pub async fn connect(url: &str, keys: QueueKeys) -> Result<Self, BrokerError> {
        let (target, conn) = connect_to(url).await?;
        Ok(Producer {
            target: Arc::new(target),
            keys,
            conn,
        })
    }

    pub fn keys(&self) -> &QueueKeys {
        &self.keys
    }

    /// A handle on this producer's connection, for other commands (leases).
    pub fn connection(&self) -> Connection {
        self.conn.clone()
    }

    /// Appends one job to the stream; returns its stream entry id.
    pub async fn enqueue(&mut self, job: &Envelope) -> Result<String, BrokerError> {
        xadd(&self.keys.stream, job)
            .query_async(&mut self.conn)
            .await
            .map_err(|e| self.error(e))
    }

    /// Appends many jobs in one pipelined round trip, in order.
    pub async fn enqueue_batch(&mut self, jobs: &[Envelope]) -> Result<(), BrokerError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for job in jobs {
            pipe.add_command(xadd(&self.keys.stream, job)).ignore();
        }
        pipe.query_async::<()>(&mut self.conn)
            .await
            .map_err(|e| self.error(e))
    }

    /// Enqueues `job` and waits up to `timeout` for its final outcome, which the
    /// host sends to a reply stream of this producer's own. The stream expires
    /// unless renewed, so a producer that dies while waiting leaves nothing behind.
    pub async fn enqueue_and_wait(
        &mut self,
        mut job: Envelope,
        due_ms: Option<u64>,
        timeout: Duration,
    ) -> Result<JobResult, BrokerError> {
        let reply = self.keys.reply(&uuid::Uuid::new_v4().simple().to_string());
        redis::pipe()
            .cmd("XADD")
            .arg(&reply)
            .arg("*")
            .arg("open")
            .arg(1)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&reply)
            .arg(REPLY_TTL.as_millis() as u64)
            .ignore()
            .query_async::<()>(&mut self.conn)
            .await
            .map_err(|e| self.error(e))?;
        job.reply_to = Some(reply.clone());
        let result = self.submit_and_wait(&job, due_ms, &reply, timeout).await;
        // Best effort: if this fails the stream still expires by itself.
        let _ = redis::cmd("DEL")
            .arg(&reply)
            .query_async::<()>(&mut self.conn)
            .await;
        result
    }

    async fn submit_and_wait(
        &mut self,
        job: &Envelope,
        due_ms: Option<u64>,
        reply: &str,
        timeout: Duration,
    ) -> Result<JobResult, BrokerError> {
        match due_ms {
            Some(due) => self.schedule(job, due).await?,
            None => {
                self.enqueue(job).await?;
            }
        }
        let mut reader = self
            .target
            .connect(REPLY_POLL * 5)
            .await
            .map_err(|e| self.error(e))?;
        let deadline = Instant::now() + timeout;
        let mut last_id = "0-0".to_owned();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(JobResult::TimedOut);
            }
            let block = left.min(REPLY_POLL).as_millis().max(1) as u64;
            let reply_read: StreamReadReply = redis::cmd("XREAD")
                .arg("BLOCK")
                .arg(block)
                .arg("STREAMS")
                .arg(reply)
                .arg(&last_id)
                .query_async(&mut reader)
                .await
                .map_err(|e| self.error(e))?;
            redis::cmd("PEXPIRE")
                .arg(reply)
                .arg(REPLY_TTL.as_millis() as u64)
                .query_async::<()>(&mut self.conn)
                .await
                .map_err(|e| self.error(e))?;
            for entry in reply_read.keys.into_iter().flat_map(|key| key.ids) {
                last_id = entry.id.clone();
                let text = |name: &str| -> Vec<u8> {
                    entry
                        .map
                        .get(name)
                        .and_then(|v| redis::from_redis_value::<Vec<u8>>(v.clone()).ok())
                        .unwrap_or_default()
                };
                if text("job_id") != job.job_id.as_str().as_bytes() {
                    continue;
                }
                return Ok(match text("outcome").as_slice() {
                    b"done" => JobResult::Done(text("text")),
                    b"expired" => JobResult::Expired,
                    _ => JobResult::Failed(String::from_utf8_lossy(&text("text")).into_owned()),
                });
            }
        }
    }

    /// Puts a job in the delayed set, to be moved onto the stream at `due_ms`
    /// (ms since the Unix epoch) by whichever host gets there first.
    pub async fn schedule(&mut self, job: &Envelope, due_ms: u64) -> Result<(), BrokerError> {
        redis::cmd("ZADD")
            .arg(&self.keys.delayed)
            .arg(due_ms)
            .arg(super::record::delayed_member(job))
            .query_async::<()>(&mut self.conn)
            .await
            .map_err(|e| self.error(e))
    }

    fn error(&self, source: RedisError) -> BrokerError {
        self.target.command_error(source)
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
