//! The job a handler receives.

use serde::de::DeserializeOwned;

use crate::Error;

/// One job: its payload and what the host knows about it.
///
/// ```
/// use jobhost_sdk::Job;
///
/// let job = Job::new("orders.created", r#"{"id":7}"#).with_attempt(2);
/// assert_eq!(job.job_type(), "orders.created");
/// assert_eq!(job.attempt(), 2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub(crate) id: String,
    pub(crate) job_type: String,
    pub(crate) payload: Vec<u8>,
    pub(crate) attempt: u32,
    pub(crate) max_attempts: u32,
    pub(crate) trace_id: Option<String>,
    pub(crate) enqueued_at_ms: u64,
}

impl Job {
    /// A job as a test would build it: attempt 1 of 5, id `test-job`.
    ///
    /// ```
    /// let job = jobhost_sdk::Job::new("hello.world", "Ada");
    /// assert_eq!(job.payload(), b"Ada");
    /// ```
    pub fn new(job_type: &str, payload: impl Into<Vec<u8>>) -> Self {
        Job {
            id: "test-job".to_owned(),
            job_type: job_type.to_owned(),
            payload: payload.into(),
            attempt: 1,
            max_attempts: 5,
            trace_id: None,
            enqueued_at_ms: 0,
        }
    }

    /// The same job on another attempt.
    ///
    /// ```
    /// let job = jobhost_sdk::Job::new("a", "").with_attempt(3);
    /// assert_eq!(job.attempt(), 3);
    /// ```
    pub fn with_attempt(mut self, attempt: u32) -> Self {
        self.attempt = attempt;
        self
    }

    /// The same job with a trace id.
    ///
    /// ```
    /// let job = jobhost_sdk::Job::new("a", "").with_trace_id("t-1");
    /// assert_eq!(job.trace_id(), Some("t-1"));
    /// ```
    pub fn with_trace_id(mut self, trace_id: &str) -> Self {
        self.trace_id = Some(trace_id.to_owned());
        self
    }

    /// The job id, stable across retries.
    ///
    /// ```
    /// assert_eq!(jobhost_sdk::Job::new("a", "").id(), "test-job");
    /// ```
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The message type, e.g. `orders.created`.
    ///
    /// ```
    /// assert_eq!(jobhost_sdk::Job::new("a.b", "").job_type(), "a.b");
    /// ```
    pub fn job_type(&self) -> &str {
        &self.job_type
    }

    /// The payload as the producer wrote it.
    ///
    /// ```
    /// assert_eq!(jobhost_sdk::Job::new("a", "hi").payload(), b"hi");
    /// ```
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The payload as text; not UTF-8 is a fatal error.
    ///
    /// ```
    /// assert_eq!(jobhost_sdk::Job::new("a", "hi").payload_str().unwrap(), "hi");
    /// ```
    pub fn payload_str(&self) -> Result<&str, Error> {
        std::str::from_utf8(&self.payload)
            .map_err(|_| Error::fatal(format!("payload of {} is not UTF-8", self.job_type)))
    }

    /// The payload parsed as JSON into `T`; invalid JSON is a fatal error that
    /// names the problem (retrying would not fix it).
    ///
    /// ```
    /// #[derive(Debug, serde::Deserialize)]
    /// struct Order { id: u64 }
    ///
    /// let order: Order = jobhost_sdk::Job::new("orders.created", r#"{"id":7}"#).json().unwrap();
    /// assert_eq!(order.id, 7);
    /// assert!(jobhost_sdk::Job::new("orders.created", "nope").json::<Order>().unwrap_err().is_fatal());
    /// ```
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.payload)
            .map_err(|e| Error::fatal(format!("invalid JSON payload for {}: {e}", self.job_type)))
    }

    /// 1 on the first run, 2 on the first retry, ...
    ///
    /// ```
    /// assert_eq!(jobhost_sdk::Job::new("a", "").attempt(), 1);
    /// ```
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Attempts allowed before the job is dead-lettered.
    ///
    /// ```
    /// assert_eq!(jobhost_sdk::Job::new("a", "").max_attempts(), 5);
    /// ```
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The trace id the producer set, if any.
    ///
    /// ```
    /// assert_eq!(jobhost_sdk::Job::new("a", "").trace_id(), None);
    /// ```
    pub fn trace_id(&self) -> Option<&str> {
        self.trace_id.as_deref()
    }

    /// When the job was enqueued, in milliseconds since the Unix epoch.
    ///
    /// ```
    /// assert_eq!(jobhost_sdk::Job::new("a", "").enqueued_at_ms(), 0);
    /// ```
    pub fn enqueued_at_ms(&self) -> u64 {
        self.enqueued_at_ms
    }
}
