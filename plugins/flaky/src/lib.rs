//! Fails with a retryable error until attempt `succeed_on_attempt` (default 3):
//! the plugin the retry tests use.

use jobhost_sdk::{Error, Job};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Plan {
    #[serde(default = "default_attempt")]
    succeed_on_attempt: u32,
}

fn default_attempt() -> u32 {
    3
}

fn handle(job: Job) -> Result<String, Error> {
    let plan: Plan = if job.payload().is_empty() {
        Plan {
            succeed_on_attempt: default_attempt(),
        }
    } else {
        job.json()?
    };
    let (attempt, goal) = (job.attempt(), plan.succeed_on_attempt);
    if attempt < goal {
        return Err(Error::retry(format!(
            "flaky: attempt {attempt} of {goal} fails on purpose"
        )));
    }
    Ok(format!("succeeded on attempt {attempt}"))
}

jobhost_sdk::plugin! {
    name: "flaky",
    version: env!("CARGO_PKG_VERSION"),
    handles: ["flaky.job"],
    handler: handle,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fails_retryably_until_the_planned_attempt() {
        let job = Job::new("flaky.job", r#"{"succeed_on_attempt":2}"#);
        assert!(!handle(job.clone()).unwrap_err().is_fatal());
        assert_eq!(
            handle(job.with_attempt(2)).unwrap(),
            "succeeded on attempt 2"
        );
        assert!(
            handle(Job::new("flaky.job", "nope"))
                .unwrap_err()
                .is_fatal()
        );
    }
}
