//! `jobhost stats`: what each queue holds and who works on it.

use std::time::Duration;

use clap::Args;

use super::QueueArgs;
use crate::broker::{QueueStats, Redis};
use crate::keys::QueueKeys;

const WATCH_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, Args)]
pub struct StatsArgs {
    #[command(flatten)]
    pub queue: QueueArgs,
    /// Show every queue of the namespace, not just --queue.
    #[arg(long)]
    pub all: bool,
    /// Refresh every 2 s until interrupted.
    #[arg(long)]
    pub watch: bool,
    /// Machine-readable output: a JSON array with one object per queue.
    #[arg(long)]
    pub json: bool,
}

pub async fn execute(args: StatsArgs) -> anyhow::Result<i32> {
    // One connection for every queue and every refresh.
    let mut redis = Redis::connect(&args.queue.redis_url()).await?;
    loop {
        let queues = if args.all {
            redis.queues(&args.queue.namespace).await?
        } else {
            args.queue.queue.iter().map(|q| q.name.clone()).collect()
        };
        let mut all = Vec::with_capacity(queues.len());
        for queue in queues {
            all.push(
                redis
                    .stats(&QueueKeys::new(&args.queue.namespace, &queue))
                    .await?,
            );
        }
        if args.watch && !args.json {
            print!("\x1b[2J\x1b[H");
        }
        if args.json {
            println!("{}", serde_json::to_string(&all)?);
        } else {
            for stats in &all {
                print_table(stats);
            }
        }
        if !args.watch {
            return Ok(0);
        }
        tokio::select! {
            _ = tokio::time::sleep(WATCH_EVERY) => {}
            _ = tokio::signal::ctrl_c() => return Ok(0),
        }
    }
}

fn print_table(stats: &QueueStats) {
    if stats.paused {
        println!("queue {} (paused)", stats.queue);
    } else {
        println!("queue {}", stats.queue);
    }
    println!(
        "  stream {}  pending {}  lag {}  delayed {}  dead {}",
        stats.stream_length, stats.pending, stats.lag, stats.delayed, stats.dead_letters
    );
    println!(
        "  processed {}  failed {}  retried {}  expired {}  cancelled {}  throttled {}",
        stats.processed,
        stats.failed,
        stats.retried,
        stats.expired,
        stats.cancelled,
        stats.throttled
    );
    if !stats.buckets.is_empty() {
        let sizes: Vec<String> = stats
            .buckets
            .iter()
            .map(|(bucket, keys)| format!("{bucket} {keys}"))
            .collect();
        println!("  buckets (keys)  {}", sizes.join("  "));
    }
    if stats.consumers.is_empty() {
        println!("  no consumers");
    }
    for consumer in &stats.consumers {
        println!(
            "  consumer {}  pending {}  idle {:.1}s",
            consumer.name,
            consumer.pending,
            consumer.idle_ms as f64 / 1000.0
        );
    }
}
