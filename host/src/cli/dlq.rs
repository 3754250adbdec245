//! `jobhost dlq`: inspect and repair the dead-letter stream.

use std::io::{BufRead, Write};

use anyhow::bail;
use clap::{Args, Subcommand};

use super::QueueArgs;
use crate::broker::{DeadJob, Redis, Replay};

use crate::broker::MAX_REPLAYS;

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
    let mut redis = Redis::connect(&args.queue.redis_url()).await?;
    let keys = args.queue.keys()?;
    match args.command {
        DlqCommand::List { job_type, limit } => {
            let jobs = redis.dead_jobs(&keys, job_type.as_deref(), limit).await?;
            for job in &jobs {
                println!("{}", summary(job));
            }
            eprintln!("{} dead job(s) in {}", jobs.len(), keys.dlq);
            Ok(0)
        }
        DlqCommand::Show { id } => match redis.dead_job(&keys, &id).await? {
            Some(job) => {
                print_full(&job);
                Ok(0)
            }
            None => bail!("no dead job {id} in {}", keys.dlq),
        },
        DlqCommand::Replay {
            id,
            all,
            job_type,
            force,
        } => {
            let ids = match id {
                Some(id) => vec![id],
                None if all => redis
                    .dead_jobs(&keys, job_type.as_deref(), None)
                    .await?
                    .into_iter()
                    .map(|job| job.id)
                    .collect(),
                None => bail!("give an entry id or --all"),
            };
            let mut refused = 0;
            for id in ids {
                match redis.replay(&keys, &id, MAX_REPLAYS, force).await? {
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
            let ids: Vec<String> = redis
                .dead_jobs(&keys, job_type.as_deref(), None)
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
            let deleted = redis.delete_dead(&keys, &ids).await?;
            println!("deleted {deleted} dead job(s)");
            Ok(0)
        }
        DlqCommand::Drain => {
            // Only what was printed is deleted: entries arriving meanwhile stay.
            let jobs = redis.dead_jobs(&keys, None, None).await?;
            let mut stdout = std::io::stdout().lock();
            for job in &jobs {
                writeln!(stdout, "{}", summary(job))?;
            }
            stdout.flush()?;
            let ids: Vec<String> = jobs.into_iter().map(|job| job.id).collect();
            let deleted = redis.delete_dead(&keys, &ids).await?;
            eprintln!("drained {deleted} dead job(s)");
            Ok(0)
        }
    }
}

/// One line per dead job. Every value came from outside (a producer, a
/// guest's error), so control characters are shown escaped, never sent raw to
/// the terminal.
fn summary(job: &DeadJob) -> String {
    let field = |name| job.field(name).unwrap_or("-");
    let error: String = field("last_error").chars().take(120).collect();
    format!(
        "{}\t{}\tattempts={}\treplays={}\t{}\t{}",
        shown(job.id.as_bytes()),
        shown(field("type").as_bytes()),
        shown(field("total_attempts").as_bytes()),
        shown(field("replay_count").as_bytes()),
        shown(field("failed_at").as_bytes()),
        shown(error.as_bytes())
    )
}

/// Every field; a JSON payload pretty-printed, a binary one escaped.
fn print_full(job: &DeadJob) {
    println!("id: {}", shown(job.id.as_bytes()));
    for (name, value) in &job.fields {
        let name = shown(name.as_bytes());
        let pretty = (name == "payload")
            .then(|| serde_json::from_slice::<serde_json::Value>(value).ok())
            .flatten()
            .and_then(|json| serde_json::to_string_pretty(&json).ok());
        match pretty {
            Some(pretty) => println!("payload:\n{pretty}"),
            None if std::str::from_utf8(value).is_err() => {
                println!("{name}: (binary, {} bytes) {}", value.len(), shown(value));
            }
            None => println!("{name}: {}", shown(value)),
        }
    }
}

/// `value` safe for a terminal: text as it is, but control characters
/// escaped as in the log (`\n`, `\u{1b}`) and bytes that are not UTF-8 as
/// `\xff`.
fn shown(value: &[u8]) -> String {
    let mut out = String::with_capacity(value.len());
    for chunk in value.utf8_chunks() {
        out.push_str(&crate::logging::escape(chunk.valid()));
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02x}"));
        }
    }
    out
}

fn confirm(question: &str) -> anyhow::Result<bool> {
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_from_outside_reach_the_terminal_escaped() {
        assert_eq!(shown(b"plain text"), "plain text");
        assert_eq!(shown("caf\u{e9}".as_bytes()), "caf\u{e9}");
        assert_eq!(shown(b"a\x1b[31mb\nc"), "a\\u{1b}[31mb\\nc");
        assert_eq!(shown(&[0xff, b'x', 0x00]), "\\xffx\\u{0}");
    }
}
