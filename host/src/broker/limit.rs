//! Fleet-wide limits of plugins, agreed in Redis: the commands that ask
//! `limit.lua` whether a job may start and that end its lease, for a
//! connection of either kind (the host's async one, or a job thread's own,
//! see `host/job_redis.rs`), and the parsing of the script's answer.

use std::sync::LazyLock;
use std::time::Duration;

use redis::{FromRedisValue, ParsingError, Script, Value};

use crate::keys::LimitKeys;
use crate::plugins::FleetLimit;

static LIMIT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("limit.lua")));

/// What `limit.lua` decided for one job.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Start now: its rate token is taken and its lease (if capped) added.
    Run,
    /// Its rate slot is reserved for it, `wait` from now (at `slot_ms`,
    /// Redis's clock): it must not start before.
    Reserved { wait: Duration, slot_ms: u64 },
    /// The concurrency cap is reached (`running` leases); nothing was spent.
    Full { running: u64 },
    /// A key of the bucket cannot be used (another type, or not a time);
    /// nothing was written.
    WrongType { key: String, reason: String },
}

/// The call that decides whether job `job_id` may start under `limit`, in
/// the bucket `keys`; `lease` is how long its slot outlives a dead host;
/// `rate_paid`: it already waited for a reserved rate slot.
pub fn admit(
    keys: &LimitKeys,
    job_id: &str,
    limit: &FleetLimit,
    lease: Duration,
    rate_paid: bool,
) -> redis::ScriptInvocation<'static> {
    let mut invocation = LIMIT.key(&keys.rate);
    invocation.key(&keys.running).key(&keys.starts).arg(job_id);
    match &limit.rate {
        Some(rate) => invocation.arg(rate.interval_ms()).arg(rate.burst),
        None => invocation.arg(0).arg(1),
    };
    invocation
        .arg(limit.concurrency.unwrap_or(0))
        .arg(lease.as_millis() as u64)
        .arg(if rate_paid { "1" } else { "0" });
    invocation
}

/// Ends job `job_id`'s lease in the bucket `keys` (its run is over).
pub fn release(keys: &LimitKeys, job_id: &str) -> redis::Cmd {
    let mut cmd = redis::cmd("ZREM");
    cmd.arg(&keys.running).arg(job_id);
    cmd
}

impl FromRedisValue for Decision {
    fn from_redis_value(value: Value) -> Result<Self, ParsingError> {
        let parts: Vec<String> = redis::from_redis_value(value)?;
        let number = |i: usize| -> Result<f64, ParsingError> {
            parts
                .get(i)
                .and_then(|text| text.parse::<f64>().ok())
                .filter(|n| n.is_finite() && *n >= 0.0)
                .ok_or_else(|| format!("limit.lua answered {parts:?}").into())
        };
        Ok(match parts.first().map(String::as_str) {
            Some("run") => Decision::Run,
            Some("reserved") => Decision::Reserved {
                wait: Duration::from_secs_f64(number(1)? / 1000.0),
                slot_ms: number(2)? as u64,
            },
            Some("wait") => Decision::Full {
                running: number(1)? as u64,
            },
            Some("wrongtype") if parts.len() == 3 => Decision::WrongType {
                key: parts[1].clone(),
                reason: parts[2].clone(),
            },
            _ => return Err(format!("limit.lua answered {parts:?}").into()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(parts: &[&str]) -> Result<Decision, ParsingError> {
        let value = Value::Array(
            parts
                .iter()
                .map(|p| Value::BulkString(p.as_bytes().to_vec()))
                .collect(),
        );
        Decision::from_redis_value(value)
    }

    #[test]
    fn answers_of_the_script_are_read() {
        assert_eq!(parse(&["run"]).unwrap(), Decision::Run);
        assert_eq!(
            parse(&["reserved", "20.500", "1700000000020.500"]).unwrap(),
            Decision::Reserved {
                wait: Duration::from_micros(20_500),
                slot_ms: 1_700_000_000_020
            }
        );
        assert_eq!(
            parse(&["wait", "2"]).unwrap(),
            Decision::Full { running: 2 }
        );
        assert!(matches!(
            parse(&["wrongtype", "k", "holds a hash, not a string"]).unwrap(),
            Decision::WrongType { .. }
        ));
        assert!(parse(&["reserved", "nan", "1"]).is_err());
        assert!(parse(&["maybe"]).is_err());
    }
}
