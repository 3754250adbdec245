//! `jobhost generate`: a steady stream of jobs, for demos and load tests.
//! Default messages are `<uuid> <timestamp>`, as go-redis-dsg's generator writes.

use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args;

use super::{QueueArgs, parse_duration};
use crate::broker::Producer;
use crate::envelope::{Envelope, JobType, now_rfc3339};

/// Most jobs written in one pipelined round trip.
const MAX_BATCH: u64 = 1000;
const REPORT_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Job type of the generated jobs.
    #[arg(long = "type", value_name = "TYPE", default_value = "hello.generated")]
    pub job_type: String,
    /// Time between two jobs.
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

fn parse_rate(text: &str) -> Result<f64, String> {
    let number = text.strip_suffix("/s").unwrap_or(text);
    match number.parse::<f64>() {
        Ok(rate) if rate > 0.0 && rate.is_finite() => Ok(rate),
        _ => Err(format!("{text:?} is not a rate (e.g. 1000/s)")),
    }
}

pub async fn execute(args: GenerateArgs) -> anyhow::Result<i32> {
    let job_type = JobType::parse(&args.job_type)?;
    let rate = match (args.rate, args.interval) {
        (Some(rate), _) => rate,
        (None, Some(interval)) if interval.is_zero() => bail!("--interval must be above zero"),
        (None, Some(interval)) => 1.0 / interval.as_secs_f64(),
        (None, None) => 2.0,
    };
    let mut producer = Producer::connect(&args.queue.redis_url(), args.queue.keys()).await?;
    let producer_name = format!("jobhost-generate-{}", std::process::id());
    let started = Instant::now();
    let mut sent: u64 = 0;
    let mut last_report = (Instant::now(), 0u64);
    let mut ticker =
        tokio::time::interval(Duration::from_millis(10).min(Duration::from_secs_f64(1.0 / rate)));
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = &mut stop => break,
        }
        let due = (started.elapsed().as_secs_f64() * rate) as u64 + 1;
        let mut want = due.saturating_sub(sent).min(MAX_BATCH);
        if let Some(count) = args.count {
            want = want.min(count - sent);
        }
        let jobs: Vec<Envelope> = (0..want)
            .map(|_| {
                let payload = args
                    .payload
                    .clone()
                    .unwrap_or_else(|| format!("{} {}", uuid::Uuid::new_v4(), now_rfc3339()));
                let mut job = Envelope::new(job_type.clone(), payload.into_bytes());
                job.producer = Some(producer_name.clone());
                job
            })
            .collect();
        producer.enqueue_batch(&jobs).await?;
        sent += want;
        if last_report.0.elapsed() >= REPORT_EVERY {
            let rate_now = (sent - last_report.1) as f64 / last_report.0.elapsed().as_secs_f64();
            eprintln!("generated {sent} jobs ({rate_now:.0}/s)");
            last_report = (Instant::now(), sent);
        }
        if args.count.is_some_and(|count| sent >= count) {
            break;
        }
    }
    eprintln!("generated {sent} jobs in {:.1?}", started.elapsed());
    Ok(0)
}
