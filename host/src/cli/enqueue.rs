//! `jobhost enqueue`: one job (optionally waiting for its outcome), or a batch
//! of NDJSON lines from stdin, pipelined.
//!
//! A job with a unique key (`--unique KEY`, a line's `"unique"`) that another
//! job of the queue holds is not enqueued: the holder's id is printed on
//! stdout where the job's own id would be, a note on stderr, and the exit
//! code is [`EXIT_DUPLICATE`] (for `--batch`: if any line was a duplicate;
//! the other lines are enqueued).

use std::io::{BufRead, Read, Write};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;

use super::{QueueArgs, parse_duration};
use crate::broker::{Enqueued, JobResult, Redis};
use crate::envelope::{
    Envelope, JobId, JobType, LimitKey, UniqueKey, format_rfc3339_ms, now_ms, parse_rfc3339_ms,
};
use crate::keys::QueueKeys;

/// Largest payload `enqueue` accepts.
pub const MAX_PAYLOAD_BYTES: usize = 1 << 20;
/// Jobs sent in one pipelined round trip by `--batch`.
const BATCH_CHUNK: usize = 1000;
/// Exit code when `--wait` gives up (as `timeout(1)` does).
pub const EXIT_TIMED_OUT: i32 = 124;
/// Exit code when the job `--wait` waits for is cancelled.
pub const EXIT_CANCELLED: i32 = 4;
/// Exit code when the job was a duplicate: another job holds its unique key.
pub const EXIT_DUPLICATE: i32 = 3;

#[derive(Debug, Args)]
pub struct EnqueueArgs {
    /// Job type, e.g. orders.created.
    #[arg(value_name = "TYPE", required_unless_present = "batch")]
    pub job_type: Option<String>,
    /// Payload (usually JSON); `-` reads it from stdin, as any bytes.
    #[arg(required_unless_present_any = ["batch", "payload_file"])]
    pub payload: Option<String>,
    /// Read the payload from this file, as any bytes (protobuf, MessagePack...).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["payload", "batch"])]
    pub payload_file: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub queue: QueueArgs,
    /// Read NDJSON lines `{"type": .., "payload": ..}` from stdin and enqueue them all, pipelined.
    #[arg(long, conflicts_with_all = ["job_type", "payload", "wait", "delay", "at"])]
    pub batch: bool,
    /// Attempts before the job is dead-lettered (overrides the host's default).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attempts: Option<u32>,
    /// Trace id carried in the envelope and shown in every log line about the job.
    #[arg(long, value_name = "ID")]
    pub trace_id: Option<String>,
    /// Count the job against its own bucket of its plugin's fleet-wide limits
    /// (each key gets the plugin's rate and concurrency), e.g. acct_42.
    #[arg(long, value_name = "KEY")]
    pub limit_key: Option<String>,
    /// Enqueue only if no job of the queue holding this unique key is waiting,
    /// delayed or running; otherwise print that job's id and exit 3.
    #[arg(long, value_name = "KEY", conflicts_with = "batch")]
    pub unique: Option<String>,
    /// Hold the unique key at most this long from now, e.g. 10m (default:
    /// until the job's final outcome, at most 24 h after it is due). With
    /// --batch: for lines with a "unique" key and no "unique_for".
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub unique_for: Option<Duration>,
    /// Run no earlier than this long from now, e.g. 30s.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, conflicts_with = "at")]
    pub delay: Option<Duration>,
    /// Run no earlier than this time (RFC 3339), e.g. 2026-12-01T09:00:00Z.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub at: Option<u64>,
    /// Skip the job (acknowledge without running) if it has not started within this long.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub expires_in: Option<Duration>,
    /// Wait for the outcome: print the handler's output and exit 0, or print the
    /// final error and exit 1; exit 124 at the timeout.
    #[arg(long)]
    pub wait: bool,
    /// How long `--wait` waits.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "30s", requires = "wait")]
    pub timeout: Duration,
}

/// `--limit-key`, checked here rather than by clap, whose refusals take
/// several lines.
fn limit_key(args: &EnqueueArgs) -> anyhow::Result<Option<LimitKey>> {
    args.limit_key
        .as_deref()
        .map(|key| LimitKey::parse(key).map_err(|e| anyhow::anyhow!("--limit-key: {e}")))
        .transpose()
}

/// `--unique`, checked like `--limit-key`.
fn unique_key(args: &EnqueueArgs) -> anyhow::Result<Option<UniqueKey>> {
    if args.unique.is_none() && args.unique_for.is_some() && !args.batch {
        bail!("--unique-for needs --unique KEY");
    }
    args.unique
        .as_deref()
        .map(|key| UniqueKey::parse(key).map_err(|e| anyhow::anyhow!("--unique: {e}")))
        .transpose()
}

/// Tells that the job was not enqueued: the holder's id on stdout, where the
/// job's own id would be, and why on stderr.
fn report_duplicate(first: &JobId, key: Option<&UniqueKey>) {
    println!("{first}");
    let key = key.map_or("", UniqueKey::as_str);
    eprintln!("jobhost: duplicate of {first} (unique key {key}); not enqueued");
}

fn parse_time(text: &str) -> Result<u64, String> {
    parse_rfc3339_ms(text)
        .ok_or_else(|| format!("{text:?} is not an RFC 3339 time (e.g. 2026-12-01T09:00:00Z)"))
}

pub async fn execute(args: EnqueueArgs) -> anyhow::Result<i32> {
    if args.batch {
        return enqueue_batch(args).await;
    }
    let Some(job_type) = &args.job_type else {
        bail!("give TYPE and PAYLOAD, or --batch");
    };
    let job_type = JobType::parse(job_type)?;
    let payload = read_payload(args.payload.as_deref(), args.payload_file.as_deref())?;
    check_payload(&payload)?;
    let mut job = Envelope::new(job_type, payload);
    job.limit_key = limit_key(&args)?;
    job.unique = unique_key(&args)?;
    job.trace_id = args.trace_id;
    job.max_attempts = args.max_attempts;
    job.producer = Some("jobhost-cli".to_owned());
    let now = now_ms();
    if let Some(expires_in) = args.expires_in {
        job.expires_at = Some(format_rfc3339_ms(now + expires_in.as_millis() as u64));
    }
    let due = args
        .at
        .or(args.delay.map(|delay| now + delay.as_millis() as u64))
        .filter(|due| *due > now);
    let mut redis = Redis::connect(&args.queue.redis_url()).await?;
    let keys = args.queue.keys()?;
    if args.wait {
        let (id, unique) = (job.job_id.clone(), job.unique.clone());
        return Ok(
            match redis
                .enqueue_and_wait(&keys, job, due, args.unique_for, args.timeout)
                .await?
            {
                JobResult::Done(output) => {
                    let mut stdout = std::io::stdout().lock();
                    stdout.write_all(&output)?;
                    // A prompt on the next line for a person; the bytes unchanged for a pipe.
                    let at_terminal = std::io::IsTerminal::is_terminal(&stdout);
                    if at_terminal && !output.ends_with(b"\n") && !output.is_empty() {
                        stdout.write_all(b"\n")?;
                    }
                    0
                }
                JobResult::Failed(error) => {
                    eprintln!("jobhost: job {id} failed: {error}");
                    1
                }
                JobResult::Expired => {
                    eprintln!("jobhost: job {id} expired before it ran");
                    1
                }
                JobResult::Cancelled => {
                    eprintln!("jobhost: job {id} was cancelled");
                    EXIT_CANCELLED
                }
                JobResult::TimedOut => {
                    eprintln!(
                        "jobhost: no outcome for job {id} within {}; it may still run",
                        humantime::format_duration(args.timeout)
                    );
                    EXIT_TIMED_OUT
                }
                JobResult::Duplicate(first) => {
                    report_duplicate(&first, unique.as_ref());
                    EXIT_DUPLICATE
                }
            },
        );
    }
    match redis.submit(&keys, &job, due, args.unique_for).await? {
        Enqueued::Queued(id) => {
            println!("{id}");
            Ok(0)
        }
        Enqueued::Duplicate(first) => {
            report_duplicate(&first, job.unique.as_ref());
            Ok(EXIT_DUPLICATE)
        }
    }
}

/// The payload as given: the argument's text, stdin's bytes for `-`, or a
/// file's bytes. Reads at most one byte past the limit, so a huge input is
/// refused without being held.
pub(crate) fn read_payload(
    text: Option<&str>,
    file: Option<&std::path::Path>,
) -> anyhow::Result<Vec<u8>> {
    let limit = MAX_PAYLOAD_BYTES as u64 + 1;
    let mut buffer = Vec::new();
    match (text, file) {
        (_, Some(path)) => {
            std::fs::File::open(path)
                .and_then(|file| file.take(limit).read_to_end(&mut buffer))
                .with_context(|| format!("reading the payload from {}", path.display()))?;
        }
        (Some("-"), None) => {
            std::io::stdin()
                .take(limit)
                .read_to_end(&mut buffer)
                .context("reading the payload from stdin")?;
        }
        (Some(text), None) => buffer = text.as_bytes().to_vec(),
        (None, None) => bail!("give TYPE and PAYLOAD, or --batch"),
    }
    Ok(buffer)
}

pub(crate) fn check_payload(payload: &[u8]) -> anyhow::Result<()> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        bail!("payload is larger than the limit of {MAX_PAYLOAD_BYTES} bytes");
    }
    Ok(())
}

/// One NDJSON line of `--batch`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchLine {
    #[serde(rename = "type")]
    job_type: String,
    /// A string is sent as is; any other JSON value is sent as its JSON text.
    #[serde(default)]
    payload: Option<serde_json::Value>,
    /// Binary payloads: the bytes in standard base64.
    #[serde(default)]
    payload_base64: Option<String>,
    #[serde(default)]
    trace_id: Option<String>,
    #[serde(default)]
    max_attempts: Option<u32>,
    #[serde(default)]
    limit_key: Option<String>,
    /// A unique key: the line is a duplicate while a job holding it lives.
    #[serde(default)]
    unique: Option<String>,
    /// How long the key is held at most, e.g. "10m".
    #[serde(default)]
    unique_for: Option<String>,
}

/// One job of a `--batch`, with its line number and how long its unique key is held.
struct BatchJob {
    line: usize,
    job: Envelope,
    unique_for: Option<Duration>,
}

/// Enqueues NDJSON lines from stdin in pipelined chunks, printing each job id
/// (a duplicate's: the holder's, reported on stderr with its line number).
/// A bad line stops the batch with its line number; earlier chunks stay
/// enqueued.
async fn enqueue_batch(args: EnqueueArgs) -> anyhow::Result<i32> {
    let default_key = limit_key(&args)?;
    let mut redis = Redis::connect(&args.queue.redis_url()).await?;
    let keys = args.queue.keys()?;
    let mut chunk = Vec::with_capacity(BATCH_CHUNK);
    let mut tally = Tally::default();
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    for (index, line) in std::io::stdin().lock().lines().enumerate() {
        let line = line.context("reading stdin")?;
        if line.trim().is_empty() {
            continue;
        }
        let number = index + 1;
        let defaults = LineDefaults {
            trace_id: args.trace_id.as_deref(),
            max_attempts: args.max_attempts,
            limit_key: default_key.as_ref(),
            unique_for: args.unique_for,
        };
        let (job, unique_for) = parse_line(&line, &defaults).map_err(|e| {
            anyhow::anyhow!(
                "line {number}: {e:#} ({} jobs before it were enqueued)",
                tally.queued
            )
        })?;
        chunk.push(BatchJob {
            line: number,
            job,
            unique_for,
        });
        if chunk.len() == BATCH_CHUNK {
            flush(&mut redis, &keys, &mut chunk, &mut stdout, &mut tally).await?;
        }
    }
    flush(&mut redis, &keys, &mut chunk, &mut stdout, &mut tally).await?;
    stdout.flush()?;
    if tally.duplicates > 0 {
        eprintln!(
            "enqueued {} jobs; {} duplicates not enqueued",
            tally.queued, tally.duplicates
        );
        return Ok(EXIT_DUPLICATE);
    }
    eprintln!("enqueued {} jobs", tally.queued);
    Ok(0)
}

/// What a `--batch` did so far.
#[derive(Default)]
struct Tally {
    queued: usize,
    duplicates: usize,
}

/// What a `--batch` line that does not say otherwise gets from the flags.
struct LineDefaults<'a> {
    trace_id: Option<&'a str>,
    max_attempts: Option<u32>,
    limit_key: Option<&'a LimitKey>,
    unique_for: Option<Duration>,
}

/// The job of one `--batch` line, and how long its unique key is held.
fn parse_line(
    line: &str,
    defaults: &LineDefaults<'_>,
) -> anyhow::Result<(Envelope, Option<Duration>)> {
    use base64::Engine as _;
    let parsed: BatchLine =
        serde_json::from_str(line).context("not a {\"type\":..,\"payload\":..} object")?;
    let payload = match (parsed.payload, parsed.payload_base64) {
        (Some(serde_json::Value::String(text)), None) => text.into_bytes(),
        (Some(other), None) => other.to_string().into_bytes(),
        (None, Some(encoded)) => base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .context("payload_base64 is not standard base64")?,
        (None, None) => bail!("missing \"payload\" (or \"payload_base64\")"),
        (Some(_), Some(_)) => bail!("give \"payload\" or \"payload_base64\", not both"),
    };
    check_payload(&payload)?;
    let mut job = Envelope::new(JobType::parse(&parsed.job_type)?, payload);
    job.trace_id = parsed.trace_id.or(defaults.trace_id.map(str::to_owned));
    job.max_attempts = parsed.max_attempts.or(defaults.max_attempts);
    job.limit_key = match parsed.limit_key {
        Some(key) => Some(LimitKey::parse(&key)?),
        None => defaults.limit_key.cloned(),
    };
    job.unique = parsed.unique.as_deref().map(UniqueKey::parse).transpose()?;
    let unique_for = match parsed.unique_for {
        Some(_) if job.unique.is_none() => bail!("\"unique_for\" needs a \"unique\" key"),
        Some(text) => Some(parse_duration(&text).map_err(|e| anyhow::anyhow!("unique_for: {e}"))?),
        None => defaults.unique_for.filter(|_| job.unique.is_some()),
    };
    job.producer = Some("jobhost-cli".to_owned());
    Ok((job, unique_for))
}

/// Sends `chunk` in one round trip and prints an id per job: its own, or for
/// a duplicate the holder's. A key that refused a job (another type) stops
/// the batch once the chunk's answers are printed.
async fn flush(
    redis: &mut Redis,
    keys: &QueueKeys,
    chunk: &mut Vec<BatchJob>,
    out: &mut impl Write,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    let lines: Vec<usize> = chunk.iter().map(|batch| batch.line).collect();
    let jobs: Vec<(Envelope, Option<Duration>)> = chunk
        .drain(..)
        .map(|batch| (batch.job, batch.unique_for))
        .collect();
    let answers = redis.submit_batch(keys, &jobs).await?;
    let mut refused = None;
    for (((job, _), line), answer) in jobs.iter().zip(lines).zip(answers) {
        match answer {
            Ok(Enqueued::Queued(id)) => {
                writeln!(out, "{id}")?;
                tally.queued += 1;
            }
            Ok(Enqueued::Duplicate(first)) => {
                writeln!(out, "{first}")?;
                out.flush()?;
                let key = job.unique.as_ref().map_or("", UniqueKey::as_str);
                eprintln!("jobhost: line {line}: duplicate of {first} (unique key {key})");
                tally.duplicates += 1;
            }
            Err(error) => {
                refused.get_or_insert((line, error));
            }
        }
    }
    if let Some((line, error)) = refused {
        out.flush()?;
        bail!(
            "line {line}: {error} ({} jobs were enqueued, the others of its round trip included)",
            tally.queued
        );
    }
    Ok(())
}
