//! Calls into the host: logging and follow-up jobs.
//!
//! Compiled for wasm32 they go to the host; compiled natively (unit tests of a
//! plugin) they are recorded in a thread-local that [`crate::testing`] reads,
//! so handlers can be tested with plain `cargo test`.

use serde::Serialize;

use crate::Error;

/// Severity of a log line.
///
/// ```
/// jobhost_sdk::log(jobhost_sdk::Level::Warn, "slow upstream", &[("ms", "900")]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Very detailed tracing.
    Trace,
    /// Useful when debugging.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected that the job survived.
    Warn,
    /// Something failed.
    Error,
}

/// Logs `message` with key/value `fields`; the host tags it with the plugin
/// name and the job id. The `info!`-style macros are shorthands for this.
///
/// ```
/// jobhost_sdk::log(jobhost_sdk::Level::Info, "order accepted", &[("id", "7")]);
/// ```
pub fn log(level: Level, message: &str, fields: &[(&str, &str)]) {
    imp::log(level, message, fields);
}

/// Emits a follow-up job. It is written only if the current job succeeds,
/// atomically with its acknowledgement, so a retried job never leaves
/// duplicates. The host refuses an empty type or too many follow-ups (fatal).
///
/// ```
/// jobhost_sdk::enqueue("emails.send", r#"{"to":"ada@example.com"}"#).unwrap();
/// ```
pub fn enqueue(job_type: &str, payload: impl AsRef<[u8]>) -> Result<(), Error> {
    imp::enqueue(job_type, payload.as_ref())
        .map_err(|e| Error::fatal(format!("enqueue refused: {e}")))
}

/// Emits a follow-up job whose payload is `value` as JSON.
///
/// ```
/// jobhost_sdk::enqueue_json("orders.confirmed", &serde_json::json!({"id": 7})).unwrap();
/// ```
pub fn enqueue_json<T: Serialize + ?Sized>(job_type: &str, value: &T) -> Result<(), Error> {
    let payload = serde_json::to_vec(value)
        .map_err(|e| Error::fatal(format!("cannot serialize the follow-up job: {e}")))?;
    enqueue(job_type, payload)
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::Level;
    use crate::__bindings::jobhost::plugin::host;
    use crate::__bindings::jobhost::plugin::types::LogLevel;

    pub fn log(level: Level, message: &str, fields: &[(&str, &str)]) {
        let level = match level {
            Level::Trace => LogLevel::Trace,
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
        };
        let fields: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        host::log(level, message, &fields);
    }

    pub fn enqueue(job_type: &str, payload: &[u8]) -> Result<(), String> {
        host::enqueue(job_type, payload)
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::Level;
    use crate::testing::{LogLine, RECORDED};

    pub fn log(level: Level, message: &str, fields: &[(&str, &str)]) {
        RECORDED.with(|r| {
            r.borrow_mut().logs.push(LogLine {
                level,
                message: message.to_owned(),
                fields: fields
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            })
        });
    }

    pub fn enqueue(job_type: &str, payload: &[u8]) -> Result<(), String> {
        if job_type.is_empty() {
            return Err("empty job type".to_owned());
        }
        RECORDED.with(|r| {
            r.borrow_mut()
                .enqueued
                .push((job_type.to_owned(), payload.to_vec()))
        });
        Ok(())
    }
}
