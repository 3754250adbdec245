//! `jobhost invoke`: the plugin author's test loop. One job, one plugin, no Redis.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;

use crate::envelope::{Envelope, JobType};
use crate::plugins::{CodeCache, InstanceCache, Job, RunOutcome, Runtime};

#[derive(Debug, Args)]
pub struct InvokeArgs {
    /// The plugin component.
    #[arg(value_name = "PLUGIN.wasm")]
    pub plugin: PathBuf,
    /// Job type, e.g. orders.created.
    #[arg(value_name = "TYPE")]
    pub job_type: String,
    /// Payload; `-` reads it from stdin.
    pub payload: String,
    /// Attempt number the job reports.
    #[arg(long, default_value_t = 1)]
    pub attempt: u32,
}

/// Prints the output on stdout and logs, follow-ups and outcome on stderr.
/// Exits 0 on success, 1 on a fatal error, 75 (EX_TEMPFAIL) on a retryable one.
pub fn execute(args: InvokeArgs) -> anyhow::Result<i32> {
    let job_type = JobType::parse(&args.job_type)?;
    let payload = if args.payload == "-" {
        std::io::read_to_string(std::io::stdin())?.into_bytes()
    } else {
        args.payload.into_bytes()
    };
    let runtime = Runtime::new(1, CodeCache::new(None), Default::default())
        .map_err(|e| anyhow::anyhow!("cannot start the wasm runtime: {e}"))?;
    let plugin = runtime.load(&args.plugin)?;
    let mut envelope = Envelope::new(job_type, payload);
    envelope.attempt = args.attempt;
    let max_attempts = crate::outcome::RetryPolicy::default().max_attempts;
    let job = Job::from_envelope(&envelope, max_attempts, envelope.produced_at_ms());
    if plugin
        .description
        .handles
        .iter()
        .all(|p| !p.matches(&job.job_type))
    {
        eprintln!(
            "note: {} does not declare type {}; a host would not route it there",
            plugin.name(),
            job.job_type
        );
    }
    let started = Instant::now();
    let outcome = plugin.run(&job, &mut InstanceCache::default());
    let took = started.elapsed();
    match outcome {
        RunOutcome::Success { output, follow_ups } => {
            std::io::stdout().write_all(&output)?;
            if !output.is_empty() && !output.ends_with(b"\n") {
                println!();
            }
            for follow_up in follow_ups {
                eprintln!(
                    "follow-up: {} {}",
                    follow_up.job_type,
                    String::from_utf8_lossy(&follow_up.payload)
                );
            }
            eprintln!("done in {took:.1?}");
            Ok(0)
        }
        RunOutcome::Retry { reason, after } => {
            let asked = after
                .map(|after| format!(", asks to wait {}", humantime::format_duration(after)))
                .unwrap_or_default();
            eprintln!("retry: {reason} (after {took:.1?}{asked})");
            Ok(75)
        }
        RunOutcome::Fatal(error) => {
            eprintln!("fatal: {error} (after {took:.1?})");
            Ok(1)
        }
    }
}
