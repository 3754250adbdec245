//! `jobhost dlq`: inspect and repair the dead-letter stream.

use std::io::{BufRead, Write};

use anyhow::bail;
use clap::{Args, Subcommand};

use super::QueueArgs;
use crate::broker::{Admin, DeadJob, Replay};

/// Replays allowed before an entry is frozen (thinrsmq's rule); `--force` overrides.
const MAX_REPLAYS: u32 = 3;

#[derive(Debug, Args)]
pub struct DlqArgs {
    #[command(subcommand)]
    pub command: DlqCommand,
    #[command(flatten)]
    pub queue: QueueArgs,
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// One line per dead job: id, type, attempts, replays, when, why.
    List {
        #[arg(long = "type", value_name = "TYPE")]
        job_type: Option<String>,
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
    },
    /// Every field of one dead job; a JSON payload is pretty-printed.
    Show { id: String },
    /// Put dead jobs back on their queue as fresh jobs.
    Replay {
        /// The DLQ entry id (see `dlq list`).
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<String>,
        /// Replay every dead job (of `--type`, if given).
        #[arg(long)]
        all: bool,
        #[arg(long = "type", value_name = "TYPE", requires = "all")]
        job_type: Option<String>,
        /// Replay even entries replayed {MAX_REPLAYS} times already.
        #[arg(long)]
        force: bool,
    },
    /// Delete dead jobs (of `--type`, if given).
    Purge {
        #[arg(long = "type", value_name = "TYPE")]
        job_type: Option<String>,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Print every dead job, then delete what was printed.
    Drain,
}

pub async fn execute(args: DlqArgs) -> anyhow::Result<i32> {
    let mut admin = Admin::connect(&args.queue.redis_url(), args.queue.keys()).await?;
    match args.command {
        DlqCommand::List { job_type, limit } => {
            let jobs = admin.dead_jobs(job_type.as_deref(), limit).await?;
            for job in &jobs {
                println!("{}", summary(job));
            }
            eprintln!("{} dead job(s) in {}", jobs.len(), admin.keys().dlq);
            Ok(0)
        }
        DlqCommand::Show { id } => match admin.dead_job(&id).await? {
            Some(job) => {
                print_full(&job);
                Ok(0)
            }
            None => bail!("no dead job {id} in {}", admin.keys().dlq),
        },
        DlqCommand::Replay {
            id,
            all,
            job_type,
            force,
        } => {
            let ids = match id {
                Some(id) => vec![id],
                None if all => admin
                    .dead_jobs(job_type.as_deref(), None)
                    .await?
                    .into_iter()
                    .map(|job| job.id)
                    .collect(),
                None => bail!("give an entry id or --all"),
            };
            let mut refused = 0;
            for id in ids {
                match admin.replay(&id, MAX_REPLAYS, force).await? {
                    Replay::Replayed(new_id) => println!("{id} replayed as {new_id}"),
                    Replay::Missing => {
                        refused += 1;
                        eprintln!("{id}: no such dead job");
                    }
                    Replay::Frozen(count) => {
                        refused += 1;
                        eprintln!(
                            "{id}: frozen after {count} replays; use --force to replay anyway"
                        );
                    }
                }
            }
            Ok(if refused > 0 { 1 } else { 0 })
        }
        DlqCommand::Purge { job_type, yes } => {
            let ids: Vec<String> = admin
                .dead_jobs(job_type.as_deref(), None)
                .await?
                .into_iter()
                .map(|job| job.id)
                .collect();
            if ids.is_empty() {
                eprintln!("nothing to purge");
                return Ok(0);
            }
            if !yes && !confirm(&format!("delete {} dead job(s)?", ids.len()))? {
                eprintln!("nothing deleted");
                return Ok(1);
            }
            let deleted = admin.delete(&ids).await?;
            println!("deleted {deleted} dead job(s)");
            Ok(0)
        }
        DlqCommand::Drain => {
            // Only what was printed is deleted: entries arriving meanwhile stay.
            let jobs = admin.dead_jobs(None, None).await?;
            let mut stdout = std::io::stdout().lock();
            for job in &jobs {
                writeln!(stdout, "{}", summary(job))?;
            }
            stdout.flush()?;
            let ids: Vec<String> = jobs.into_iter().map(|job| job.id).collect();
            let deleted = admin.delete(&ids).await?;
            eprintln!("drained {deleted} dead job(s)");
            Ok(0)
        }
    }
}

fn summary(job: &DeadJob) -> String {
    let field = |name| job.field(name).unwrap_or("-");
    let error: String = field("last_error").chars().take(120).collect();
    format!(
        "{}\t{}\tattempts={}\treplays={}\t{}\t{}",
        job.id,
        field("type"),
        field("total_attempts"),
        field("replay_count"),
        field("failed_at"),
        error.replace('\n', " ")
    )
}

fn print_full(job: &DeadJob) {
    println!("id: {}", job.id);
    for (name, value) in &job.fields {
        if name == "payload"
            && let Ok(json) = serde_json::from_str::<serde_json::Value>(value)
            && let Ok(pretty) = serde_json::to_string_pretty(&json)
        {
            println!("payload:\n{pretty}");
        } else {
            println!("{name}: {value}");
        }
    }
}

fn confirm(question: &str) -> anyhow::Result<bool> {
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}
