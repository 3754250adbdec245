//! `jobhost invoke`: the plugin author's test loop. One job, one plugin, no Redis.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use clap::Args;

use crate::envelope::{Envelope, JobType};
use crate::plugins::kv::MemoryKv;
use crate::plugins::{CodeCache, InstanceCache, Job, RunOutcome, Runtime, Services};

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
    /// Committed key-value state the job reads, as JSON:
    /// `{"BUCKET": {"KEY": "value", "count": 5}}` (strings as their bytes,
    /// numbers as decimal text). Without it, every bucket starts empty.
    #[arg(long, value_name = "FILE.json")]
    pub kv_seed: Option<PathBuf>,
}

/// Prints the output on stdout and logs, follow-ups, key-value writes (which
/// a host would commit with the ack; nothing is kept) and outcome on stderr.
/// Exits 0 on success, 1 on a fatal error, 75 (EX_TEMPFAIL) on a retryable one.
pub fn execute(args: InvokeArgs) -> anyhow::Result<i32> {
    let job_type = JobType::parse(&args.job_type)?;
    let payload = if args.payload == "-" {
        std::io::read_to_string(std::io::stdin())?.into_bytes()
    } else {
        args.payload.into_bytes()
    };
    let kv = Arc::new(MemoryKv::default());
    if let Some(seed) = &args.kv_seed {
        load_seed(&kv, seed)?;
    }
    let services = Services {
        kv,
        ..Services::standalone()
    };
    let runtime = Runtime::new(1, CodeCache::new(None), services)
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
    let outcome = plugin.run(
        &job,
        crate::keys::DEFAULT_QUEUE,
        &crate::plugins::Cancel::never(),
        &mut InstanceCache::default(),
    );
    let took = started.elapsed();
    match outcome {
        RunOutcome::Success {
            output,
            follow_ups,
            kv_writes,
        } => {
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
            for write in kv_writes {
                eprintln!("kv: {write}");
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
        // Nothing cancels a job run here.
        RunOutcome::Cancelled => {
            eprintln!("cancelled (after {took:.1?})");
            Ok(1)
        }
    }
}

/// Fills `kv` from a seed file: an object of buckets, each an object of keys.
fn load_seed(kv: &MemoryKv, path: &Path) -> anyhow::Result<()> {
    let name = path.display();
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("--kv-seed {name}: {e}"))?;
    let seed: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("--kv-seed {name}: not a JSON object of buckets: {e}"))?;
    for (bucket, keys) in seed {
        let serde_json::Value::Object(keys) = keys else {
            anyhow::bail!("--kv-seed {name}: bucket {bucket:?} is not an object of keys");
        };
        for (key, value) in keys {
            let bytes = match value {
                serde_json::Value::String(text) => text.into_bytes(),
                serde_json::Value::Number(number) => number.to_string().into_bytes(),
                other => anyhow::bail!(
                    "--kv-seed {name}: {bucket}/{key} is {other}, not a string or a number"
                ),
            };
            kv.insert(&bucket, &key, bytes);
        }
    }
    Ok(())
}
