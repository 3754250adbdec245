//! `jobhost enqueue`.

use std::io::Read;

use anyhow::{Context, bail};
use clap::Args;

use std::time::Duration;

use super::{QueueArgs, parse_duration};
use crate::broker::Producer;
use crate::envelope::{Envelope, JobType, format_rfc3339_ms, now_ms, parse_rfc3339_ms};

/// Largest payload `enqueue` accepts.
pub const MAX_PAYLOAD_BYTES: usize = 1 << 20;

#[derive(Debug, Args)]
pub struct EnqueueArgs {
    /// Job type, e.g. orders.created.
    #[arg(value_name = "TYPE")]
    pub job_type: String,
    /// Payload (usually JSON); `-` reads it from stdin.
    pub payload: String,
    #[command(flatten)]
    pub queue: QueueArgs,
    /// Attempts before the job is dead-lettered (overrides the host's default).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attempts: Option<u32>,
    /// Trace id carried in the envelope and shown in every log line about the job.
    #[arg(long, value_name = "ID")]
    pub trace_id: Option<String>,
    /// Run no earlier than this long from now, e.g. 30s.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, conflicts_with = "at")]
    pub delay: Option<Duration>,
    /// Run no earlier than this time (RFC 3339), e.g. 2026-12-01T09:00:00Z.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub at: Option<u64>,
    /// Skip the job (acknowledge without running) if it has not started within this long.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub expires_in: Option<Duration>,
}

fn parse_time(text: &str) -> Result<u64, String> {
    parse_rfc3339_ms(text)
        .ok_or_else(|| format!("{text:?} is not an RFC 3339 time (e.g. 2026-12-01T09:00:00Z)"))
}

pub async fn execute(args: EnqueueArgs) -> anyhow::Result<i32> {
    let job_type = JobType::parse(&args.job_type)?;
    let payload = if args.payload == "-" {
        let mut buffer = Vec::new();
        std::io::stdin()
            .take(MAX_PAYLOAD_BYTES as u64 + 1)
            .read_to_end(&mut buffer)
            .context("reading the payload from stdin")?;
        buffer
    } else {
        args.payload.into_bytes()
    };
    if payload.len() > MAX_PAYLOAD_BYTES {
        bail!("payload is larger than the limit of {MAX_PAYLOAD_BYTES} bytes");
    }
    if std::str::from_utf8(&payload).is_err() {
        bail!("payload is not UTF-8 text; encode binary data (e.g. base64) first");
    }
    let mut job = Envelope::new(job_type, payload);
    job.trace_id = args.trace_id;
    job.max_attempts = args.max_attempts;
    job.producer = Some("jobhost-cli".to_owned());
    let now = now_ms();
    if let Some(expires_in) = args.expires_in {
        job.expires_at = Some(format_rfc3339_ms(now + expires_in.as_millis() as u64));
    }
    let due = args
        .at
        .or(args.delay.map(|delay| now + delay.as_millis() as u64));
    let mut producer = Producer::connect(&args.queue.redis_url(), args.queue.keys()).await?;
    match due {
        Some(due) if due > now => producer.schedule(&job, due).await?,
        _ => {
            producer.enqueue(&job).await?;
        }
    }
    println!("{}", job.job_id);
    Ok(0)
}
