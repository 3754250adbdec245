//! Reading what a handler asked of the host, in native unit tests.
//!
//! ```
//! use jobhost_sdk::{Job, testing};
//!
//! jobhost_sdk::info!("hello {}", 1);
//! jobhost_sdk::enqueue("next.step", "x").unwrap();
//! assert_eq!(testing::take_logs()[0].message, "hello 1");
//! assert_eq!(testing::take_enqueued(), vec![("next.step".to_string(), b"x".to_vec())]);
//! ```

use std::cell::RefCell;

use crate::Level;

/// One recorded log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Its severity.
    pub level: Level,
    /// Its message.
    pub message: String,
    /// Its key/value fields.
    pub fields: Vec<(String, String)>,
}

#[derive(Default)]
pub(crate) struct Recorded {
    pub(crate) logs: Vec<LogLine>,
    pub(crate) enqueued: Vec<(String, Vec<u8>)>,
}

thread_local! {
    pub(crate) static RECORDED: RefCell<Recorded> = RefCell::new(Recorded::default());
}

/// The log lines recorded on this thread since the last call.
///
/// ```
/// jobhost_sdk::warn!("careful");
/// assert_eq!(jobhost_sdk::testing::take_logs()[0].level, jobhost_sdk::Level::Warn);
/// ```
pub fn take_logs() -> Vec<LogLine> {
    RECORDED.with(|r| std::mem::take(&mut r.borrow_mut().logs))
}

/// The follow-up jobs (type, payload) enqueued on this thread since the last call.
///
/// ```
/// jobhost_sdk::enqueue("a.b", "p").unwrap();
/// assert_eq!(jobhost_sdk::testing::take_enqueued().len(), 1);
/// ```
pub fn take_enqueued() -> Vec<(String, Vec<u8>)> {
    RECORDED.with(|r| std::mem::take(&mut r.borrow_mut().enqueued))
}
