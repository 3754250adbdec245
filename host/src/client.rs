//! A Rust client for other services: enqueue one job, a batch, or one and
//! wait for its outcome; cancel a job.
//!
//! Submitted jobs go through a bounded in-memory buffer to a background task
//! that writes them in order. While Redis is unreachable they stay buffered
//! (and `enqueue` waits once the buffer is full: back-pressure, not loss);
//! when Redis returns, they are written in the order they were submitted.
//!
//! A job with a unique key (`enqueue_unique`) is different: its answer (queued,
//! or a duplicate of a job holding the key) is what the caller asks for, so
//! it goes straight to Redis, on a connection of the client's own, and is not
//! buffered: it needs Redis now, and it is not ordered with buffered jobs
//! (call `flush` first if it must come after them).
//!
//! ```no_run
//! # async fn demo() -> Result<(), jobhost::client::ClientError> {
//! use jobhost::client::Client;
//!
//! let client = Client::new("redis://127.0.0.1:6379", "jobhost", "default", 10_000)?;
//! let id = client.enqueue("orders.created", r#"{"id":1}"#).await?;
//! client.flush().await?; // everything submitted so far is in Redis
//! # let _ = id; Ok(()) }
//! ```

use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::backoff::Backoff;
pub use crate::broker::Enqueued;
use crate::broker::{BrokerError, CancelReport, JobResult, Redis};
use crate::envelope::{Envelope, EnvelopeError, JobId, JobType, LimitKey, UniqueKey};
use crate::keys::QueueKeys;

/// Most jobs written in one round trip by the background task.
const WRITE_BATCH: usize = 1000;

#[derive(Debug, Error)]
pub enum ClientError {
    #[error(transparent)]
    Job(#[from] EnvelopeError),
    #[error(transparent)]
    Redis(#[from] BrokerError),
    #[error("the client's writer task has stopped")]
    Closed,
    /// `submit` of a job with a unique key: the buffer could not say whether
    /// it was a duplicate.
    #[error(
        "job {0} has a unique key: enqueue it with submit_unique, which says whether it is a duplicate"
    )]
    UniqueNotBuffered(JobId),
}

// Nearly every message is a job: boxing it would cost an allocation per job
// to make the rare flush smaller.
#[allow(clippy::large_enum_variant)]
enum Message {
    Job(Envelope),
    /// Answered once every job submitted before it is written.
    Flush(oneshot::Sender<()>),
}

/// A handle to submit jobs; clones share the buffer and the writer.
#[derive(Clone)]
pub struct Client {
    url: String,
    keys: QueueKeys,
    sender: mpsc::Sender<Message>,
    /// The connection unique enqueues go through, opened on first use and
    /// dropped after an error (the next call connects again).
    direct: Arc<Mutex<Option<Redis>>>,
}

impl Client {
    /// A client for `queue` under `namespace`, buffering up to `buffer` jobs.
    /// Does not need Redis to be reachable yet. Call from within a Tokio runtime.
    pub fn new(
        url: &str,
        namespace: &str,
        queue: &str,
        buffer: usize,
    ) -> Result<Self, ClientError> {
        crate::broker::Target::parse(url)?;
        let keys = QueueKeys::new(namespace, queue);
        let (sender, receiver) = mpsc::channel(buffer.max(1));
        tokio::spawn(write_in_order(url.to_owned(), keys.clone(), receiver));
        Ok(Client {
            url: url.to_owned(),
            keys,
            sender,
            direct: Arc::default(),
        })
    }

    /// Submits one job; returns its id once it is buffered.
    pub async fn enqueue(
        &self,
        job_type: &str,
        payload: impl Into<Vec<u8>>,
    ) -> Result<JobId, ClientError> {
        let job = Envelope::new(JobType::parse(job_type)?, payload.into());
        self.submit(job).await
    }

    /// Submits one job under limit key `limit_key`: it counts against that
    /// key's own bucket of its plugin's fleet-wide limits (`--limit-key`).
    pub async fn enqueue_with_limit_key(
        &self,
        job_type: &str,
        payload: impl Into<Vec<u8>>,
        limit_key: &str,
    ) -> Result<JobId, ClientError> {
        let mut job = Envelope::new(JobType::parse(job_type)?, payload.into());
        job.limit_key = Some(LimitKey::parse(limit_key)?);
        self.submit(job).await
    }

    /// Enqueues one job with unique key `key`, straight to Redis (not
    /// buffered): it is written only if no other job of this queue holds the
    /// key, and then holds it until its final outcome (done, dead, expired),
    /// but at most `unique_for`, or without it [`crate::broker::UNIQUE_CAP`].
    /// Otherwise the answer is [`Enqueued::Duplicate`] with the holder's id.
    pub async fn enqueue_unique(
        &self,
        job_type: &str,
        payload: impl Into<Vec<u8>>,
        key: &str,
        unique_for: Option<Duration>,
    ) -> Result<Enqueued, ClientError> {
        let mut job = Envelope::new(JobType::parse(job_type)?, payload.into());
        job.unique = Some(UniqueKey::parse(key)?);
        self.submit_unique(job, unique_for).await
    }

    /// Enqueues a prepared envelope whose `unique` is set, straight to Redis,
    /// as [`Client::enqueue_unique`] does (a job without a key is written the
    /// same way, and always queued).
    pub async fn submit_unique(
        &self,
        job: Envelope,
        unique_for: Option<Duration>,
    ) -> Result<Enqueued, ClientError> {
        let mut direct = self.direct.lock().await;
        let redis = match direct.as_mut() {
            Some(redis) => redis,
            None => direct.insert(Redis::connect(&self.url).await?),
        };
        let answer = redis.submit(&self.keys, &job, None, unique_for).await;
        // A refusal (a key of another type) leaves the connection sound.
        if matches!(answer, Err(ref error) if !matches!(error, BrokerError::Refused { .. })) {
            *direct = None;
        }
        Ok(answer?)
    }

    /// Submits a prepared envelope (trace id, max attempts, expiry, limit
    /// key...) to the buffer. A job with a unique key is refused
    /// ([`ClientError::UniqueNotBuffered`]): use [`Client::submit_unique`].
    pub async fn submit(&self, job: Envelope) -> Result<JobId, ClientError> {
        if job.unique.is_some() {
            return Err(ClientError::UniqueNotBuffered(job.job_id));
        }
        let id = job.job_id.clone();
        self.sender
            .send(Message::Job(job))
            .await
            .map_err(|_| ClientError::Closed)?;
        Ok(id)
    }

    /// Submits many jobs, in order.
    pub async fn enqueue_batch(
        &self,
        jobs: Vec<(String, Vec<u8>)>,
    ) -> Result<Vec<JobId>, ClientError> {
        let mut ids = Vec::with_capacity(jobs.len());
        for (job_type, payload) in jobs {
            ids.push(self.enqueue(&job_type, payload).await?);
        }
        Ok(ids)
    }

    /// Waits until every job submitted so far is written to Redis.
    pub async fn flush(&self) -> Result<(), ClientError> {
        let (done, written) = oneshot::channel();
        self.sender
            .send(Message::Flush(done))
            .await
            .map_err(|_| ClientError::Closed)?;
        written.await.map_err(|_| ClientError::Closed)
    }

    /// Enqueues one job and waits up to `timeout` for its outcome. Needs Redis
    /// now: waiting is pointless while it is unreachable.
    pub async fn enqueue_and_wait(
        &self,
        job_type: &str,
        payload: impl Into<Vec<u8>>,
        timeout: Duration,
    ) -> Result<JobResult, ClientError> {
        let job = Envelope::new(JobType::parse(job_type)?, payload.into());
        let mut redis = Redis::connect(&self.url).await?;
        Ok(redis
            .enqueue_and_wait(&self.keys, job, None, None, timeout)
            .await?)
    }
}

impl Client {
    /// Cancels job `job_id` of this client's queue: a waiting or delayed job
    /// never runs (its outcome is kept an hour for `jobhost job`), a running
    /// one is stopped by its host (waiting up to 5 s to see it stop). Needs
    /// Redis now, and flushes first, so a job submitted through this client
    /// is found.
    pub async fn cancel(&self, job_id: &JobId) -> Result<CancelReport, ClientError> {
        self.flush().await?;
        let mut redis = Redis::connect(&self.url).await?;
        let queues = std::slice::from_ref(&self.keys);
        Ok(redis
            .cancel_job(queues, job_id.as_str(), Duration::from_secs(3600))
            .await?)
    }
}

/// The writer: takes jobs in submission order and writes them in batches,
/// holding a batch (and so everything after it) until Redis takes it.
async fn write_in_order(url: String, keys: QueueKeys, mut receiver: mpsc::Receiver<Message>) {
    let mut redis: Option<Redis> = None;
    let mut messages = Vec::with_capacity(WRITE_BATCH);
    while receiver.recv_many(&mut messages, WRITE_BATCH).await > 0 {
        let mut jobs = Vec::with_capacity(messages.len());
        let mut flushes = Vec::new();
        for message in messages.drain(..) {
            match message {
                Message::Job(job) => jobs.push(job),
                Message::Flush(done) => flushes.push(done),
            }
        }
        let mut backoff = Backoff::default();
        loop {
            let written = match redis.as_mut() {
                Some(redis) => redis.enqueue_batch(&keys, &jobs).await,
                None => match Redis::connect(&url).await {
                    Ok(connected) => redis.insert(connected).enqueue_batch(&keys, &jobs).await,
                    Err(error) => Err(error),
                },
            };
            match written {
                Ok(()) => break,
                Err(error) => {
                    if !backoff.is_failing() {
                        tracing::warn!(%error, buffered = jobs.len(), "Redis unreachable; jobs stay buffered");
                    }
                    tokio::time::sleep(backoff.failed()).await;
                }
            }
        }
        // Flushes sent after jobs of this batch are answered once those are written.
        for done in flushes {
            let _ = done.send(());
        }
    }
}
