//! Waiting on conditions with a deadline, instead of sleeping and hoping.

use std::time::{Duration, Instant};

/// Polls `condition` every 20 ms until it holds; panics naming `what` at the deadline.
pub fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
