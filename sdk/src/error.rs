//! What a handler returns: output on success, or an error that says whether
//! trying again could help.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

/// Why a job failed, and whether it is worth another attempt.
///
/// ```
/// use jobhost_sdk::Error;
///
/// let later = Error::retry("payment service unavailable");
/// let never = Error::fatal("order has no items");
/// assert!(!later.is_fatal() && never.is_fatal());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    message: String,
    fatal: bool,
    /// For a retry: not before this long from now (else the host's backoff).
    delay: Option<Duration>,
}

impl Error {
    /// A failure worth retrying later (with backoff), until attempts run out.
    ///
    /// ```
    /// assert!(!jobhost_sdk::Error::retry("busy").is_fatal());
    /// ```
    pub fn retry(message: impl Into<String>) -> Self {
        Error {
            message: message.into(),
            fatal: false,
            delay: None,
        }
    }

    /// A failure worth retrying, but not before `delay` from now (e.g. what
    /// an HTTP 429's `Retry-After` asks). The host caps the delay by its
    /// `--retry-cap`; the attempt counts like any retry.
    ///
    /// ```
    /// use std::time::Duration;
    /// let error = jobhost_sdk::Error::retry_after("rate limited", Duration::from_secs(2));
    /// assert_eq!(error.retry_delay(), Some(Duration::from_secs(2)));
    /// ```
    pub fn retry_after(message: impl Into<String>, delay: Duration) -> Self {
        Error {
            message: message.into(),
            fatal: false,
            delay: Some(delay),
        }
    }

    /// The delay a [`retry_after`](Self::retry_after) asked for.
    ///
    /// ```
    /// assert_eq!(jobhost_sdk::Error::retry("busy").retry_delay(), None);
    /// ```
    pub fn retry_delay(&self) -> Option<Duration> {
        self.delay
    }

    /// A failure no retry can fix: the job goes to the dead-letter stream at once.
    ///
    /// ```
    /// assert!(jobhost_sdk::Error::fatal("bad input").is_fatal());
    /// ```
    pub fn fatal(message: impl Into<String>) -> Self {
        Error {
            message: message.into(),
            fatal: true,
            delay: None,
        }
    }

    /// Whether this error dead-letters the job without retrying.
    ///
    /// ```
    /// assert!(jobhost_sdk::Error::fatal("x").is_fatal());
    /// ```
    pub fn is_fatal(&self) -> bool {
        self.fatal
    }

    /// The message shown in logs and in the dead-letter entry.
    ///
    /// ```
    /// assert_eq!(jobhost_sdk::Error::retry("busy").message(), "busy");
    /// ```
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.fatal { "fatal" } else { "retry" };
        write!(f, "{kind}: {}", self.message)
    }
}

impl std::error::Error for Error {}

/// Malformed JSON never becomes valid by retrying: `?` on serde errors is fatal.
///
/// ```
/// fn parse(text: &str) -> Result<u64, jobhost_sdk::Error> {
///     Ok(serde_json::from_str(text)?)
/// }
/// assert!(parse("x").unwrap_err().is_fatal());
/// ```
impl From<serde_json::Error> for Error {
    fn from(error: serde_json::Error) -> Self {
        Error::fatal(error.to_string())
    }
}

/// The bytes a successful handler hands back to whoever waits on the job.
///
/// ```
/// use jobhost_sdk::Output;
///
/// assert_eq!(Output::from("done").into_bytes(), b"done");
/// assert!(Output::from(()).into_bytes().is_empty());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output(Vec<u8>);

impl Output {
    /// `value` serialized as JSON.
    ///
    /// ```
    /// let output = jobhost_sdk::Output::json(&serde_json::json!({"ok": true})).unwrap();
    /// assert_eq!(output.into_bytes(), br#"{"ok":true}"#);
    /// ```
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Self, Error> {
        serde_json::to_vec(value)
            .map(Output)
            .map_err(|e| Error::fatal(format!("cannot serialize the output: {e}")))
    }

    /// The raw bytes.
    ///
    /// ```
    /// assert_eq!(jobhost_sdk::Output::from(vec![1u8]).into_bytes(), vec![1u8]);
    /// ```
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

impl From<()> for Output {
    fn from(_: ()) -> Self {
        Output(Vec::new())
    }
}

impl From<Vec<u8>> for Output {
    fn from(bytes: Vec<u8>) -> Self {
        Output(bytes)
    }
}

impl From<String> for Output {
    fn from(text: String) -> Self {
        Output(text.into_bytes())
    }
}

impl From<&str> for Output {
    fn from(text: &str) -> Self {
        Output(text.as_bytes().to_vec())
    }
}
