//! `jobhost job ID`: where a job is — waiting, delayed until a time,
//! running on which host, finished (when outcomes are kept), dead — or that
//! nobody knows it.

use clap::Args;
use serde_json::json;

use super::QueueArgs;
use crate::broker::{Found, Kept, Place, Redis};
use crate::envelope::{field, format_rfc3339_ms};
use crate::keys::QueueKeys;

/// Exit code when no queue knows the job.
pub const EXIT_UNKNOWN: i32 = 1;

#[derive(Debug, Args)]
pub struct JobArgs {
    /// The job's id (as `enqueue` printed it).
    #[arg(value_name = "ID")]
    pub id: String,
    /// One JSON object.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub queue: QueueArgs,
}

pub async fn execute(args: JobArgs) -> anyhow::Result<i32> {
    let mut redis = Redis::connect(&args.queue.redis_url()).await?;
    let queues = args.queue.lookup_queues(&mut redis).await?;
    let located = redis.locate(&queues, &args.id).await?;
    let Some((keys, found)) = located else {
        if args.json {
            println!("{}", json!({ "id": args.id, "state": "unknown" }));
        } else {
            println!(
                "job {}: unknown (not waiting, delayed, running or dead in any queue; \
                 finished jobs are kept only by hosts run with --keep-results)",
                args.id
            );
        }
        return Ok(EXIT_UNKNOWN);
    };
    if args.json {
        println!("{}", as_json(&args.id, keys, &found));
    } else {
        println!("{}", in_words(&args.id, keys, &found));
    }
    Ok(0)
}

fn attempt(found: &Found) -> u32 {
    found
        .field(field::ATTEMPT)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1)
}

/// One line, then the job's type and, for a finished or dead job, its
/// output or last error.
fn in_words(id: &str, keys: &QueueKeys, found: &Found) -> String {
    let attempt = attempt(found);
    let job_type = found.field(field::TYPE).unwrap_or_default();
    let state = match &found.place {
        Place::Waiting { entry_id } => format!("waiting (stream entry {entry_id})"),
        Place::Delayed { due_ms, .. } => format!(
            "delayed until {} (attempt {attempt})",
            format_rfc3339_ms(*due_ms)
        ),
        Place::Running {
            consumer,
            since_ms,
            deliveries,
            ..
        } => format!(
            "running on {consumer} since {} (attempt {attempt}, delivered {deliveries} times)",
            format_rfc3339_ms(*since_ms)
        ),
        Place::Dead { entry_id } => format!(
            "dead after {} attempts (dead-letter entry {entry_id}): {}",
            found.field("total_attempts").unwrap_or_default(),
            found.field("last_error").unwrap_or_default()
        ),
        Place::Finished(kept) => finished_in_words(kept),
    };
    let mut out = format!("job {id} in queue {}: {state}", keys.queue);
    if !job_type.is_empty() {
        out.push_str(&format!("\n  type {job_type}"));
    }
    out
}

fn finished_in_words(kept: &Kept) -> String {
    let mut out = kept.outcome.clone();
    if let Some(attempt) = kept.attempt {
        out.push_str(&format!(" at attempt {attempt}"));
    }
    if let Some(host) = &kept.host {
        out.push_str(&format!(" on {host}"));
    }
    if let Some(ms) = kept.finished_ms {
        out.push_str(&format!(" at {}", format_rfc3339_ms(ms)));
    }
    let text = String::from_utf8_lossy(&kept.text);
    match kept.outcome.as_str() {
        "done" if !text.is_empty() => out.push_str(&format!("\n  output {text}")),
        "dead" => out.push_str(&format!("\n  last error {text}")),
        _ => {}
    }
    out
}

pub(crate) fn as_json(id: &str, keys: &QueueKeys, found: &Found) -> serde_json::Value {
    let mut object = json!({
        "id": id,
        "queue": keys.queue,
        "type": found.field(field::TYPE),
        "attempt": attempt(found),
    });
    let extra = match &found.place {
        Place::Waiting { entry_id } => json!({ "state": "waiting", "entry_id": entry_id }),
        Place::Delayed { due_ms, .. } => json!({
            "state": "delayed", "due_at": format_rfc3339_ms(*due_ms), "due_ms": due_ms,
        }),
        Place::Running {
            entry_id,
            consumer,
            since_ms,
            deliveries,
        } => json!({
            "state": "running", "host": consumer, "entry_id": entry_id,
            "since": format_rfc3339_ms(*since_ms), "since_ms": since_ms,
            "deliveries": deliveries,
        }),
        Place::Dead { entry_id } => json!({
            "state": "dead", "dlq_entry_id": entry_id,
            "attempt": found.field("total_attempts").and_then(|a| a.parse::<u64>().ok()),
            "last_error": found.field("last_error"),
        }),
        Place::Finished(kept) => json!({
            "state": kept.outcome,
            "attempt": kept.attempt,
            "host": kept.host,
            "finished_at": kept.finished_ms.map(format_rfc3339_ms),
            "output": (kept.outcome == "done").then(|| String::from_utf8_lossy(&kept.text)),
            "last_error": (kept.outcome == "dead").then(|| String::from_utf8_lossy(&kept.text)),
        }),
    };
    if let (Some(object), serde_json::Value::Object(extra)) = (object.as_object_mut(), extra) {
        object.extend(extra);
    }
    object
}
