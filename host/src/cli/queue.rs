//! `jobhost queue`: list the namespace's queues, pause and resume them.
//!
//! A pause is a name in the namespace's set of paused queues, kept until
//! resumed (across host restarts). Hosts read that set about every 250 ms
//! and stop reading a paused queue: jobs they already hold finish, delayed
//! jobs keep moving to its stream, producers can still enqueue.

use clap::{Args, Subcommand};
use serde::Serialize;

use super::QueueArgs;
use crate::broker::Redis;
use crate::host::check_queue_name;
use crate::keys::QueueKeys;

#[derive(Debug, Args)]
pub struct QueueCommandArgs {
    #[command(subcommand)]
    pub command: QueueCommand,
    #[command(flatten)]
    pub queue: QueueArgs,
}

#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Every queue of the namespace: paused or not, waiting, running, delayed, dead.
    List {
        /// A JSON array, one object per queue.
        #[arg(long)]
        json: bool,
    },
    /// Stops every host reading QUEUE (within about a second); jobs in flight finish.
    Pause {
        #[arg(value_name = "QUEUE")]
        name: String,
    },
    /// Lets hosts read QUEUE again.
    Resume {
        #[arg(value_name = "QUEUE")]
        name: String,
    },
}

/// One line of `queue list`.
#[derive(Debug, Serialize)]
struct QueueLine {
    queue: String,
    paused: bool,
    /// Not yet delivered to any host.
    waiting: u64,
    /// Delivered and not yet acknowledged.
    running: u64,
    delayed: u64,
    dead: u64,
}

pub async fn execute(args: QueueCommandArgs) -> anyhow::Result<i32> {
    let namespace = &args.queue.namespace;
    let mut redis = Redis::connect(&args.queue.redis_url()).await?;
    match args.command {
        QueueCommand::Pause { name } => {
            check_queue_name(&name).map_err(anyhow::Error::msg)?;
            if redis.pause(namespace, &name).await? {
                println!("paused queue {name}: hosts stop reading it within about a second");
            } else {
                println!("queue {name} was paused already");
            }
        }
        QueueCommand::Resume { name } => {
            check_queue_name(&name).map_err(anyhow::Error::msg)?;
            if redis.resume(namespace, &name).await? {
                println!("resumed queue {name}");
            } else {
                println!("queue {name} was not paused");
            }
        }
        QueueCommand::List { json } => {
            let paused = redis.paused(namespace).await?;
            let mut names = redis.queues(namespace).await?;
            names.extend(paused.iter().cloned());
            names.sort();
            names.dedup();
            let mut lines = Vec::with_capacity(names.len());
            for name in names {
                let stats = redis.stats(&QueueKeys::new(namespace, &name)).await?;
                lines.push(QueueLine {
                    paused: paused.contains(&name),
                    queue: name,
                    // Acknowledged entries are deleted: the stream holds
                    // what waits and what runs (also before any group exists).
                    waiting: stats.stream_length.saturating_sub(stats.pending),
                    running: stats.pending,
                    delayed: stats.delayed,
                    dead: stats.dead_letters,
                });
            }
            if json {
                println!("{}", serde_json::to_string(&lines)?);
            } else if lines.is_empty() {
                println!("no queues in namespace {namespace}");
            } else {
                println!(
                    "{:<24} {:<7} {:>9} {:>9} {:>9} {:>9}",
                    "QUEUE", "STATE", "WAITING", "RUNNING", "DELAYED", "DEAD"
                );
                for line in &lines {
                    println!(
                        "{:<24} {:<7} {:>9} {:>9} {:>9} {:>9}",
                        line.queue,
                        if line.paused { "paused" } else { "active" },
                        line.waiting,
                        line.running,
                        line.delayed,
                        line.dead
                    );
                }
            }
        }
    }
    Ok(0)
}
