//! `jobhost generate`: a steady stream of jobs, for demos and load tests; one
//! generator per namespace at a time (see [`crate::generator`]).

use std::time::Duration;

use anyhow::bail;
use clap::Args;

use super::{QueueArgs, parse_duration};
use crate::broker::Redis;
use crate::envelope::JobType;
use crate::generator::{self, GeneratorConfig, LEASE_TTL, Lease, Role};

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Job type of the generated jobs.
    #[arg(long = "type", value_name = "TYPE", default_value = "hello.generated")]
    pub job_type: String,
    /// Time between two jobs [default: 500ms].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, conflicts_with = "rate")]
    pub interval: Option<Duration>,
    /// Jobs per second, e.g. 1000/s.
    #[arg(long, value_name = "N/s", value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Stop after this many jobs [default: run until interrupted].
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Payload of every job [default: `<uuid> <timestamp>`].
    #[arg(long, value_name = "TEXT")]
    pub payload: Option<String>,
    #[command(flatten)]
    pub queue: QueueArgs,
}

pub fn parse_rate(text: &str) -> Result<f64, String> {
    let number = text.strip_suffix("/s").unwrap_or(text);
    match number.parse::<f64>() {
        Ok(rate) if rate > 0.0 && rate.is_finite() => Ok(rate),
        _ => Err(format!("{text:?} is not a rate (e.g. 1000/s)")),
    }
}

/// A name unique to this process, written as the `producer` of its jobs.
pub fn generator_name() -> String {
    format!(
        "jobhost-generate-{}-{:04x}",
        std::process::id(),
        fastrand::u16(..)
    )
}

pub async fn execute(args: GenerateArgs) -> anyhow::Result<i32> {
    let rate = match (args.rate, args.interval) {
        (Some(rate), _) => rate,
        (None, Some(interval)) if interval.is_zero() => bail!("--interval must be above zero"),
        (None, Some(interval)) => 1.0 / interval.as_secs_f64(),
        (None, None) => 2.0,
    };
    let config = GeneratorConfig {
        job_type: JobType::parse(&args.job_type)?,
        rate,
        count: args.count,
        payload: args.payload,
    };
    let redis = Redis::connect(&args.queue.redis_url()).await?;
    let lease = Lease::new(
        redis.clone(),
        &args.queue.namespace,
        generator_name(),
        LEASE_TTL,
    );
    let (trigger, shutdown) = crate::shutdown::channel();
    tokio::spawn(async move {
        super::wait_for_signal().await;
        trigger.trigger();
    });
    let keys = args.queue.keys()?;
    let sent = generator::run(redis, &keys, lease, config, Role::Dedicated, shutdown).await?;
    eprintln!("generated {sent} jobs");
    Ok(0)
}
