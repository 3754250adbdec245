//! The one backoff between tries against Redis while it does not answer.

use std::time::Duration;

/// Exponential backoff: 100 ms after the first failure, doubling up to 5 s.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: u32,
}

/// The longest wait between two tries.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
const FIRST: Duration = Duration::from_millis(100);

impl Backoff {
    /// Counts a failure; returns how long to wait before the next try.
    pub fn failed(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let exponent = (self.failures - 1).min(16);
        FIRST.saturating_mul(1 << exponent).min(MAX_BACKOFF)
    }

    /// A try succeeded; returns whether it ended a run of failures.
    pub fn succeeded(&mut self) -> bool {
        std::mem::take(&mut self.failures) > 0
    }

    /// Whether the last try failed.
    pub fn is_failing(&self) -> bool {
        self.failures > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap_and_reset_on_success() {
        let mut backoff = Backoff::default();
        assert!(!backoff.is_failing());
        assert_eq!(backoff.failed(), Duration::from_millis(100));
        assert_eq!(backoff.failed(), Duration::from_millis(200));
        assert_eq!(backoff.failed(), Duration::from_millis(400));
        for _ in 0..40 {
            assert!(backoff.failed() <= MAX_BACKOFF);
        }
        assert_eq!(backoff.failed(), MAX_BACKOFF);
        assert!(backoff.is_failing());
        assert!(backoff.succeeded());
        assert!(!backoff.succeeded());
        assert_eq!(backoff.failed(), Duration::from_millis(100));
    }
}
