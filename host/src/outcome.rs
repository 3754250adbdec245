//! What became of a job, and the retry policy that decides between another
//! attempt and the dead-letter stream.

use std::time::Duration;

use crate::plugins::FollowUp;
use crate::plugins::kv::KvWrite;

/// The result of one delivery, as the broker records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Handled: acknowledge, and write the follow-up jobs and the key-value
    /// writes in the same step.
    Done {
        output: Vec<u8>,
        follow_ups: Vec<FollowUp>,
        kv_writes: Vec<KvWrite>,
    },
    /// Run again after `after`, as the next attempt.
    Retry { after: Duration, error: String },
    /// Never run again: move to the dead-letter stream with the reason.
    Dead { reason: String },
    /// Past its expiry: acknowledged without running.
    Expired,
    /// Cancelled (`jobhost cancel`): acknowledged, stopped if it was running,
    /// never run again.
    Cancelled,
    /// Over a fleet-wide limit of its plugin: run again after `after`, as
    /// the same attempt (none is spent).
    Wait {
        after: Duration,
        reason: String,
        throttle: Throttle,
    },
}

/// Which fleet-wide limit made a job wait, and what it carries to its next
/// delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttle {
    /// Its rate slot at `slot_ms` (Redis's clock) is reserved: it comes back
    /// then and takes no other token.
    Rate { slot_ms: u64 },
    /// Every slot of the fleet-wide concurrency is taken.
    Concurrency,
    /// The limits could not be asked (Redis unreachable, a key of another type).
    Unavailable,
}

impl Throttle {
    /// The `limit` label of `jobhost_throttled_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Throttle::Rate { .. } => "rate",
            Throttle::Concurrency => "concurrency",
            Throttle::Unavailable => "unavailable",
        }
    }
}

/// How long a job waits after its `waits`-th consecutive denial by a full
/// concurrency cap (0 for the first): 100 ms · 2^waits capped at 2 s, with
/// jitter in its upper half, so waiting jobs neither spin nor come back
/// together.
pub fn concurrency_backoff(waits: u32) -> Duration {
    let ceiling = (100u64 << waits.min(5)).min(2000);
    Duration::from_millis(fastrand::u64(ceiling / 2..=ceiling))
}

impl Outcome {
    /// The short word logs and metrics use.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Done { .. } => "done",
            Outcome::Retry { .. } => "retry",
            Outcome::Dead { .. } => "dead",
            Outcome::Expired => "expired",
            Outcome::Cancelled => "cancelled",
            Outcome::Wait { .. } => "throttled",
        }
    }
}

/// Exponential backoff with full jitter, and a limit on attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub base: Duration,
    pub cap: Duration,
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    /// Base 1 s, cap 5 min, 5 attempts.
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(300),
            max_attempts: 5,
        }
    }
}

impl RetryPolicy {
    /// After failed attempt number `attempt` (1-based): retry later, or give up.
    /// `asked`: the handler's own delay (e.g. from a `Retry-After`), used
    /// instead of the backoff and capped by the same cap.
    pub fn after_failure(
        &self,
        attempt: u32,
        max_attempts: u32,
        error: String,
        asked: Option<Duration>,
    ) -> Outcome {
        if attempt >= max_attempts {
            return Outcome::Dead {
                reason: format!("failed {attempt} of {max_attempts} attempts: {error}"),
            };
        }
        Outcome::Retry {
            after: asked.map_or_else(|| self.backoff(attempt), |asked| asked.min(self.cap)),
            error,
        }
    }

    /// Full jitter: uniformly random in `0..=min(cap, base * 2^(attempt-1))`, so
    /// jobs that failed together do not all come back together.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(31);
        let ceiling = self.base.saturating_mul(1 << exponent).min(self.cap);
        let ceiling_ms = ceiling.as_millis() as u64;
        Duration::from_millis(fastrand::u64(0..=ceiling_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_and_stays_under_the_cap() {
        let policy = RetryPolicy {
            base: Duration::from_millis(100),
            cap: Duration::from_millis(1000),
            max_attempts: 10,
        };
        for _ in 0..200 {
            assert!(policy.backoff(1) <= Duration::from_millis(100));
            assert!(policy.backoff(3) <= Duration::from_millis(400));
            assert!(policy.backoff(30) <= Duration::from_millis(1000));
        }
        // Jitter spreads the delays out.
        let distinct: std::collections::HashSet<_> = (0..50).map(|_| policy.backoff(4)).collect();
        assert!(distinct.len() > 5);
    }

    #[test]
    fn concurrency_waits_grow_and_stay_under_two_seconds() {
        for _ in 0..100 {
            let first = concurrency_backoff(0);
            assert!((50..=100).contains(&first.as_millis()), "{first:?}");
            let third = concurrency_backoff(2);
            assert!((200..=400).contains(&third.as_millis()), "{third:?}");
            assert!(concurrency_backoff(40) <= Duration::from_secs(2));
            assert!(concurrency_backoff(40) >= Duration::from_secs(1));
        }
    }

    #[test]
    fn last_attempt_goes_to_the_dead_letter_stream() {
        let policy = RetryPolicy::default();
        assert!(matches!(
            policy.after_failure(4, 5, "x".into(), None),
            Outcome::Retry { .. }
        ));
        assert_eq!(
            policy.after_failure(5, 5, "boom".into(), Some(Duration::from_secs(1))),
            Outcome::Dead {
                reason: "failed 5 of 5 attempts: boom".into()
            }
        );
    }

    #[test]
    fn a_delay_the_handler_asks_for_replaces_the_backoff_up_to_the_cap() {
        let policy = RetryPolicy::default();
        let retry_after = |asked| match policy.after_failure(1, 5, "x".into(), Some(asked)) {
            Outcome::Retry { after, .. } => after,
            other => panic!("{other:?}"),
        };
        assert_eq!(retry_after(Duration::from_secs(2)), Duration::from_secs(2));
        assert_eq!(retry_after(Duration::from_secs(3600)), policy.cap);
    }
}
