//! Writing new jobs onto a queue's stream (or its delayed set).

use redis::RedisError;
use redis::aio::ConnectionManager;

use super::{BrokerError, connect_writer, open_client, redact};
use crate::envelope::Envelope;
use crate::keys::QueueKeys;

/// Enqueues jobs on one queue.
#[derive(Clone)]
pub struct Producer {
    url: String,
    keys: QueueKeys,
    conn: ConnectionManager,
}

impl Producer {
    pub async fn connect(url: &str, keys: QueueKeys) -> Result<Self, BrokerError> {
        let client = open_client(url)?;
        let conn = connect_writer(&client)
            .await
            .map_err(|e| BrokerError::Connect {
                url: redact(url),
                reason: e.to_string(),
            })?;
        Ok(Producer {
            url: redact(url),
            keys,
            conn,
        })
    }

    pub fn keys(&self) -> &QueueKeys {
        &self.keys
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
        BrokerError::Command {
            url: self.url.clone(),
            error: source,
        }
    }
}

fn xadd(stream: &str, job: &Envelope) -> redis::Cmd {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(stream).arg("*");
    for (name, value) in job.to_fields() {
        cmd.arg(name).arg(value);
    }
    cmd
}
