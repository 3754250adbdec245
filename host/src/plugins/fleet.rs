//! Fleet-wide limits a plugin's manifest declares (`rate`, `burst`,
//! `fleet_concurrency` under `[limits]`): agreed through Redis by every host
//! that loads the plugin, unlike `concurrency`, which bounds one host. How
//! they are enforced is `broker/limit.lua`; this is what they are.

use std::fmt;
use std::time::Duration;

/// A steady rate of job starts: `count` per `period`, with `burst` starts
/// allowed at once above it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub period: Duration,
    /// At least 1: starts allowed back to back before the rate spaces them.
    pub burst: u32,
}

impl Rate {
    /// Parses `N/s`, `N/m`, `N/h` or `N/DURATION` (`5/500ms`, `100/10s`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?} is not a rate (e.g. 50/s, 1000/m, 3/h, 10/500ms)");
        let (count, per) = text.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = count
            .trim()
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(bad)?;
        let period = match per.trim() {
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            other => humantime::parse_duration(other).map_err(|_| bad())?,
        };
        if period < Duration::from_millis(1) || period > Duration::from_secs(86_400) {
            return Err(format!(
                "{text:?}: the period of a rate must be 1 ms to 24 h"
            ));
        }
        Ok(Rate {
            count,
            period,
            burst: 1,
        })
    }

    /// The time between two starts at the steady rate, in ms (fractional:
    /// 2000/s is 0.5 ms).
    pub fn interval_ms(&self) -> f64 {
        self.period.as_secs_f64() * 1000.0 / f64::from(self.count)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let per = match self.period.as_millis() {
            1000 => "s".to_owned(),
            60_000 => "m".to_owned(),
            3_600_000 => "h".to_owned(),
            _ => humantime::format_duration(self.period).to_string(),
        };
        write!(f, "{}/{per}, burst {}", self.count, self.burst)
    }
}

/// A plugin's fleet-wide limits; both absent (the default) means none, and
/// its jobs never ask Redis before they run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FleetLimit {
    pub rate: Option<Rate>,
    /// At most this many of its jobs run at once across all hosts.
    pub concurrency: Option<u32>,
}

impl FleetLimit {
    /// Whether any fleet-wide limit applies.
    pub fn is_limited(&self) -> bool {
        self.rate.is_some() || self.concurrency.is_some()
    }
}

impl fmt::Display for FleetLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.rate, self.concurrency) {
            (None, None) => f.write_str("none"),
            (Some(rate), None) => write!(f, "rate {rate}"),
            (None, Some(n)) => write!(f, "at most {n} running"),
            (Some(rate), Some(n)) => write!(f, "rate {rate}; at most {n} running"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_per_second_minute_hour_or_any_duration() {
        let rate = |text| Rate::parse(text).unwrap();
        assert_eq!(rate("50/s").period, Duration::from_secs(1));
        assert_eq!(rate("50/s").count, 50);
        assert_eq!(rate("1000/m").period, Duration::from_secs(60));
        assert_eq!(rate(" 3 / h ").period, Duration::from_secs(3600));
        assert_eq!(rate("10/500ms").period, Duration::from_millis(500));
        assert_eq!(rate("100/10s").period, Duration::from_secs(10));
        assert_eq!(rate("2000/s").interval_ms(), 0.5);
        assert_eq!(rate("10/500ms").interval_ms(), 50.0);
        assert_eq!(rate("50/s").burst, 1);
        assert_eq!(rate("50/s").to_string(), "50/s, burst 1");
        assert_eq!(rate("5/500ms").to_string(), "5/500ms, burst 1");
    }

    #[test]
    fn a_bad_rate_says_what_a_rate_looks_like() {
        for text in [
            "", "50", "0/s", "-1/s", "x/s", "50/", "50/week", "1/0ms", "1/2days",
        ] {
            let error = Rate::parse(text).unwrap_err();
            assert!(error.contains(&format!("{text:?}")), "{error}");
        }
        assert!(Rate::parse("50/s/s").is_err());
    }
}
