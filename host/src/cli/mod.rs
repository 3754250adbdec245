//! The `jobhost` command line: each subcommand lives in its own file, the
//! settings of `run` in `settings.rs`. A setting can also come from the
//! environment variable named in its help or from `jobhost.toml` (`config.rs`):
//! flags beat the environment, which beats the file.

pub(crate) mod cancel;
pub mod config;
mod dashboard;
mod dlq;
pub mod enqueue;
pub mod generate;
mod invoke;
pub(crate) mod job;
mod kv;
mod plugins;
mod queue;
mod run;
pub(crate) mod schedule;
pub mod settings;
mod stats;

use std::ffi::OsString;

use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use crate::host::QueueSpec;

/// Environment variable names, each written once.
pub mod env {
    pub const REDIS_URL: &str = "JOBHOST_REDIS_URL";
    /// Read when neither `--redis` nor `JOBHOST_REDIS_URL` is set.
    pub const REDIS_URL_FALLBACK: &str = "REDIS_URL";
    pub const NAMESPACE: &str = "JOBHOST_NAMESPACE";
    pub const QUEUE: &str = "JOBHOST_QUEUE";
    pub const PLUGINS: &str = "JOBHOST_PLUGINS";
    pub const CONCURRENCY: &str = "JOBHOST_CONCURRENCY";
    pub const CONSUMER: &str = "JOBHOST_CONSUMER";
    pub const SHUTDOWN_TIMEOUT: &str = "JOBHOST_SHUTDOWN_TIMEOUT";
    pub const CLAIM_IDLE: &str = "JOBHOST_CLAIM_IDLE";
    pub const MAX_DELIVERIES: &str = "JOBHOST_MAX_DELIVERIES";
    pub const MAX_ATTEMPTS: &str = "JOBHOST_MAX_ATTEMPTS";
    pub const RETRY_BASE: &str = "JOBHOST_RETRY_BASE";
    pub const RETRY_CAP: &str = "JOBHOST_RETRY_CAP";
    pub const LOG_FORMAT: &str = "JOBHOST_LOG_FORMAT";
    pub const CACHE_DIR: &str = "JOBHOST_CACHE_DIR";
    pub const METRICS: &str = "JOBHOST_METRICS";
    pub const MAX_PAYLOAD: &str = "JOBHOST_MAX_PAYLOAD";
    pub const CONFIG: &str = "JOBHOST_CONFIG";
    pub const PREFETCH: &str = "JOBHOST_PREFETCH";
    pub const KEEP_RESULTS: &str = "JOBHOST_KEEP_RESULTS";
    pub const NO_CACHE: &str = "JOBHOST_NO_CACHE";
    pub const STANDBY_GENERATOR: &str = "JOBHOST_STANDBY_GENERATOR";
    pub const GENERATE_TYPE: &str = "JOBHOST_GENERATE_TYPE";
    pub const GENERATE_RATE: &str = "JOBHOST_GENERATE_RATE";
}

const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// Runs background jobs from Redis Streams through sandboxed WebAssembly plugins.
#[derive(Debug, Parser)]
#[command(name = "jobhost", version, about)]
pub struct Cli {
    /// Settings file (flags beat environment beat file) [default: ./jobhost.toml if present].
    #[arg(long, global = true, value_name = "FILE", env = env::CONFIG)]
    pub config: Option<std::path::PathBuf>,
    /// Log format on stderr.
    #[arg(long, global = true, env = env::LOG_FORMAT, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Consume jobs and run them through the plugins in a folder, until SIGINT/SIGTERM.
    Run(run::RunArgs),
    /// Put one job on a queue and print its id.
    Enqueue(enqueue::EnqueueArgs),
    /// Produce jobs at a steady pace (a load generator).
    Generate(generate::GenerateArgs),
    /// Run one job through one plugin locally, without Redis.
    Invoke(invoke::InvokeArgs),
    /// Inspect and repair the dead-letter stream.
    Dlq(dlq::DlqArgs),
    /// Queue figures: length, pending, lag, consumers, delayed, dead, totals.
    Stats(stats::StatsArgs),
    /// Read and repair the key-value buckets of a queue.
    Kv(kv::KvArgs),
    /// List queues; pause and resume them on every host.
    Queue(queue::QueueCommandArgs),
    /// Where a job is: waiting, delayed, running on which host, finished, dead.
    Job(job::JobArgs),
    /// Cancel jobs: waiting or delayed ones never run, running ones are stopped.
    Cancel(cancel::CancelArgs),
    /// Recurring jobs on a cron: add, list, show, remove, pause, resume, run-now.
    Schedule(schedule::ScheduleCommandArgs),
    /// Serve the web dashboard: queues, hosts, dead jobs, schedules, job lookup.
    Dashboard(dashboard::DashboardArgs),
    /// Inspect plugin files.
    #[command(subcommand)]
    Plugins(plugins::PluginsCommand),
}

/// Where the queue lives: settings of `run` and of every command that talks to Redis.
#[derive(Debug, Clone, Args, Serialize)]
pub struct QueueArgs {
    /// Redis URL [env: JOBHOST_REDIS_URL, then REDIS_URL] [default: redis://127.0.0.1:6379]
    // Global, so `jobhost dlq list --redis URL` works as well as `jobhost dlq --redis URL list`.
    #[arg(long, global = true, value_name = "URL", env = env::REDIS_URL, hide_env = true)]
    #[serde(serialize_with = "masked")]
    pub redis: Option<String>,
    /// Prefix of every Redis key.
    #[arg(long, global = true, env = env::NAMESPACE, default_value = crate::keys::DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// Queue name. `run` (and `stats`) take several, served in this order of
    /// strict priority, or weighted when each has a weight: `--queue
    /// critical=6 --queue default=3` (in the environment or jobhost.toml,
    /// comma-separated). Every other command takes one.
    #[arg(
        long,
        global = true,
        env = env::QUEUE,
        default_value = crate::keys::DEFAULT_QUEUE,
        value_delimiter = ',',
        value_parser = QueueSpec::parse,
        action = clap::ArgAction::Append,
        value_name = "NAME[=WEIGHT]"
    )]
    #[serde(serialize_with = "as_text")]
    pub queue: Vec<QueueSpec>,
}

impl QueueArgs {
    pub fn redis_url(&self) -> String {
        self.redis
            .clone()
            .or_else(|| std::env::var(env::REDIS_URL_FALLBACK).ok())
            .unwrap_or_else(|| DEFAULT_REDIS_URL.to_owned())
    }

    /// The keys of the one queue a command other than `run` works on.
    pub fn keys(&self) -> anyhow::Result<crate::keys::QueueKeys> {
        match self.queue.as_slice() {
            [queue] if queue.weight.is_none() => {
                Ok(crate::keys::QueueKeys::new(&self.namespace, &queue.name))
            }
            [queue] => anyhow::bail!(
                "--queue {queue}: a weight means something to `run` only; give the queue's name"
            ),
            _ => anyhow::bail!("this command works on one queue: give one --queue"),
        }
    }
}

impl QueueArgs {
    /// Where to look for a job by id: the queues given with `--queue`, then
    /// every other queue of the namespace.
    pub async fn lookup_queues(
        &self,
        redis: &mut crate::broker::Redis,
    ) -> anyhow::Result<Vec<crate::keys::QueueKeys>> {
        let mut names: Vec<String> = self.queue.iter().map(|q| q.name.clone()).collect();
        for name in redis.queues(&self.namespace).await? {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        Ok(names
            .iter()
            .map(|name| crate::keys::QueueKeys::new(&self.namespace, name))
            .collect())
    }
}

/// One queue as its name, several as a list of `NAME[=WEIGHT]`.
fn as_text<S: serde::Serializer>(queues: &[QueueSpec], serializer: S) -> Result<S::Ok, S::Error> {
    match queues {
        [one] => serializer.serialize_str(&one.to_string()),
        many => serializer.collect_seq(many.iter().map(QueueSpec::to_string)),
    }
}

/// The password never leaves the process through `--print-config`.
fn masked<S: serde::Serializer>(url: &Option<String>, serializer: S) -> Result<S::Ok, S::Error> {
    match url {
        Some(url) => serializer.serialize_str(&crate::broker::redact(url)),
        None => serializer.serialize_none(),
    }
}

/// Why the command line was refused.
#[derive(Debug, thiserror::Error)]
pub enum ArgsError {
    /// A usage error, or `--help` / `--version`: clap prints it and picks the exit code.
    #[error(transparent)]
    Usage(#[from] clap::Error),
    /// `jobhost.toml` could not be read, or holds an unknown key.
    #[error(transparent)]
    File(#[from] anyhow::Error),
}

/// Parses the command line `args` (program name first), with the settings of
/// `jobhost.toml` beneath the flags and the environment.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Cli, ArgsError> {
    let args = config::beneath(args.into_iter().collect())?;
    Ok(Cli::try_parse_from(args)?)
}

/// Runs the parsed command. The process exit code is the returned value.
pub fn execute(cli: Cli) -> anyhow::Result<i32> {
    let log_format = cli.log_format;
    let config_file = cli.config;
    match cli.command {
        Command::Invoke(args) => invoke::execute(args),
        Command::Plugins(command) => plugins::execute(command),
        command => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                match command {
                    Command::Run(args) => run::execute(args, log_format, config_file).await,
                    Command::Enqueue(args) => enqueue::execute(args).await,
                    Command::Generate(args) => generate::execute(args).await,
                    Command::Dlq(args) => dlq::execute(args).await,
                    Command::Stats(args) => stats::execute(args).await,
                    Command::Kv(args) => kv::execute(args).await,
                    Command::Queue(args) => queue::execute(args).await,
                    Command::Job(args) => job::execute(args).await,
                    Command::Cancel(args) => cancel::execute(args).await,
                    Command::Schedule(args) => schedule::execute(args).await,
                    Command::Dashboard(args) => dashboard::execute(args).await,
                    Command::Invoke(_) | Command::Plugins(_) => unreachable!("handled above"),
                }
            })
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub(crate) async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Parses `500ms`, `30s`, `5m`.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{text:?}: {e} (e.g. 500ms, 30s, 5m)"))
}
