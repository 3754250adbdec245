//! `jobhost bench`: measured numbers, reproducible on any machine. Build with
//! `--release` before trusting what it prints.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;

use crate::envelope::{Envelope, JobType};
use crate::plugins::{CodeCache, Job, RunOutcome, Runtime};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Plugin to run jobs through.
    #[arg(long, value_name = "PLUGIN.wasm", default_value = "plugins/hello.wasm")]
    pub plugin: PathBuf,
    /// Job type sent to the plugin.
    #[arg(long = "type", value_name = "TYPE", default_value = "hello.bench")]
    pub job_type: String,
    /// Payload of every job (~100 bytes of JSON by default).
    #[arg(
        long,
        default_value = r#"{"name":"bench","order":{"id":12345,"items":[{"sku":"tea-green","qty":2}],"note":"x"}}"#
    )]
    pub payload: String,
    /// Jobs per run.
    #[arg(long, default_value_t = 20_000)]
    pub jobs: u32,
    /// Runs; the median, min and max are reported.
    #[arg(long, default_value_t = 5)]
    pub runs: u32,
}

/// Measures the per-job cost of a fresh instance, without Redis: the
/// overhead every job pays on top of its handler's own work.
pub fn execute(args: BenchArgs) -> anyhow::Result<i32> {
    let runtime = Runtime::new(1, CodeCache::new(None))
        .map_err(|e| anyhow::anyhow!("cannot start the wasm runtime: {e}"))?;
    let plugin = runtime.load(&args.plugin)?;
    let envelope = Envelope::new(JobType::parse(&args.job_type)?, args.payload.into_bytes());
    let job = Job {
        id: envelope.job_id.to_string(),
        job_type: envelope.job_type.to_string(),
        enqueued_at_ms: envelope.produced_at_ms(),
        payload: envelope.payload,
        attempt: 1,
        max_attempts: 5,
        trace_id: None,
    };
    if !matches!(plugin.run(&job), RunOutcome::Success { .. }) {
        anyhow::bail!("the plugin does not succeed on this job; pick another --type or --payload");
    }
    let mut per_job = Vec::with_capacity(args.runs as usize);
    for _ in 0..args.runs.max(1) {
        let started = Instant::now();
        for _ in 0..args.jobs {
            let _ = plugin.run(&job);
        }
        per_job.push(started.elapsed().as_secs_f64() * 1e6 / f64::from(args.jobs.max(1)));
    }
    per_job.sort_by(f64::total_cmp);
    println!(
        "fresh instance per job ({}): median {:.1} µs, min {:.1} µs, max {:.1} µs ({} runs of {} jobs)",
        plugin.name(),
        per_job[per_job.len() / 2],
        per_job[0],
        per_job[per_job.len() - 1],
        per_job.len(),
        args.jobs
    );
    Ok(0)
}
