//! The settings of `jobhost run`, each defined once: a field below (or in
//! [`QueueArgs`], or `--log-format` in [`super::Cli`]) is its flag, its
//! environment variable, its `jobhost.toml` key (the field's name), its default
//! and its `--print-config` line. `config.rs` and `run.rs` walk these
//! definitions (clap's view of them, [`is_setting`]) rather than list settings again.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, FromArgMatches};
use serde::{Serialize, Serializer};

use super::{QueueArgs, env, parse_duration};
use crate::envelope::JobType;
use crate::generator::GeneratorConfig;
use crate::host::{self, HostConfig};
use crate::outcome::RetryPolicy;

#[derive(Debug, Clone, Args, Serialize)]
pub struct RunSettings {
    /// Folder of plugin components (`*.wasm`).
    #[arg(long, value_name = "DIR", env = env::PLUGINS)]
    pub plugins: PathBuf,
    /// Jobs run at once [default: number of CPUs].
    #[arg(long, value_name = "N", env = env::CONCURRENCY, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: Option<u16>,
    /// Jobs in flight per job thread (read ahead, running, or being recorded).
    #[arg(long, value_name = "N", env = env::PREFETCH, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    pub prefetch: u16,
    /// This host's consumer name in the group [default: hostname-pid-random].
    #[arg(long, value_name = "NAME", env = env::CONSUMER)]
    pub consumer: Option<String>,
    /// How long jobs in flight may take to finish after SIGINT/SIGTERM.
    #[arg(long, value_name = "DURATION", env = env::SHUTDOWN_TIMEOUT, default_value = "30s", value_parser = parse_duration)]
    #[serde(serialize_with = "duration")]
    pub shutdown_timeout: Duration,
    /// Entries idle this long are reclaimed from their (presumed dead) host.
    #[arg(long, value_name = "DURATION", env = env::CLAIM_IDLE, default_value = "30s", value_parser = parse_duration)]
    #[serde(serialize_with = "duration")]
    pub claim_idle: Duration,
    /// An entry delivered more often than this without an ack is dead-lettered as poison.
    #[arg(long, value_name = "N", env = env::MAX_DELIVERIES, default_value_t = 5)]
    pub max_deliveries: u64,
    /// Attempts of a job before it is dead-lettered (a job's own --max-attempts wins).
    #[arg(long, value_name = "N", env = env::MAX_ATTEMPTS, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attempts: u32,
    /// Backoff before the first retry; doubles with each attempt (full jitter).
    #[arg(long, value_name = "DURATION", env = env::RETRY_BASE, default_value = "1s", value_parser = parse_duration)]
    #[serde(serialize_with = "duration")]
    pub retry_base: Duration,
    /// Longest backoff between two attempts.
    #[arg(long, value_name = "DURATION", env = env::RETRY_CAP, default_value = "5m", value_parser = parse_duration)]
    #[serde(serialize_with = "duration")]
    pub retry_cap: Duration,
    /// Keep each job's final outcome (and output or last error) this long,
    /// for `jobhost job ID` [default: not kept, so recording writes nothing extra].
    #[arg(long, value_name = "DURATION", env = env::KEEP_RESULTS, value_parser = parse_duration)]
    #[serde(serialize_with = "optional_duration")]
    pub keep_results: Option<Duration>,
    /// Largest payload run, in bytes; larger jobs are dead-lettered.
    #[arg(long, value_name = "BYTES", env = env::MAX_PAYLOAD, default_value_t = super::enqueue::MAX_PAYLOAD_BYTES)]
    pub max_payload: usize,
    /// Most bytes of entries held at once (read, running, being recorded);
    /// at least --max-payload plus 64 KiB.
    #[arg(long, value_name = "BYTES", env = "JOBHOST_MAX_HELD_BYTES", default_value_t = 256 << 20)]
    pub max_held_bytes: usize,
    /// Where compiled plugins are cached [default: $XDG_CACHE_HOME/jobhost or ~/.cache/jobhost].
    #[arg(long, value_name = "DIR", env = env::CACHE_DIR)]
    pub cache_dir: Option<PathBuf>,
    /// Compile plugins on every start instead of caching their code.
    #[arg(long, env = env::NO_CACHE)]
    pub no_cache: bool,
    /// Serve Prometheus metrics on http://ADDR/metrics and health on /healthz;
    /// a bare port (9464) binds loopback.
    #[arg(long, value_name = "ADDR", env = env::METRICS, value_parser = parse_listen_addr)]
    pub metrics: Option<SocketAddr>,
    /// Generate jobs whenever no `jobhost generate` is alive (one generator per namespace).
    #[arg(long, env = env::STANDBY_GENERATOR)]
    pub standby_generator: bool,
    /// Job type the standby generator writes.
    #[arg(
        long,
        value_name = "TYPE",
        env = env::GENERATE_TYPE,
        default_value = "hello.generated",
        requires = "standby_generator"
    )]
    pub generate_type: String,
    /// Rate of the standby generator, e.g. 10/s.
    #[arg(long, value_name = "N/s", env = env::GENERATE_RATE, default_value = "2/s", value_parser = super::generate::parse_rate)]
    #[serde(serialize_with = "rate")]
    pub generate_rate: f64,
}

/// Whether `arg` is a setting: one that also reads an environment variable
/// and so has a `jobhost.toml` key. `--config` names the file itself.
pub fn is_setting(arg: &clap::Arg) -> bool {
    arg.get_env()
        .is_some_and(|variable| variable != std::ffi::OsStr::new(env::CONFIG))
}

impl RunSettings {
    /// Fills in the defaults that depend on the machine, so that
    /// `--print-config` shows what the host will use.
    pub fn resolve(mut self) -> Self {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        self.concurrency
            .get_or_insert(u16::try_from(cpus).unwrap_or(u16::MAX));
        self.consumer
            .get_or_insert_with(host::default_consumer_name);
        self.cache_dir = if self.no_cache {
            None
        } else {
            self.cache_dir.or_else(default_cache_dir)
        };
        self
    }

    /// The host's configuration from these settings and the queue's.
    pub fn host_config(self, queue: &QueueArgs) -> anyhow::Result<HostConfig> {
        let settings = self.resolve();
        let standby_generator = if settings.standby_generator {
            Some(GeneratorConfig {
                job_type: JobType::parse(&settings.generate_type)?,
                rate: settings.generate_rate,
                count: None,
                payload: None,
            })
        } else {
            None
        };
        Ok(HostConfig {
            redis_url: queue.redis_url(),
            plugins_dir: settings.plugins,
            namespace: queue.namespace.clone(),
            queues: queue.queue.clone(),
            concurrency: usize::from(settings.concurrency.unwrap_or(1)),
            prefetch: usize::from(settings.prefetch),
            consumer: settings
                .consumer
                .unwrap_or_else(host::default_consumer_name),
            shutdown_timeout: settings.shutdown_timeout,
            retry: RetryPolicy {
                base: settings.retry_base,
                cap: settings.retry_cap,
                max_attempts: settings.max_attempts,
            },
            max_payload: settings.max_payload,
            claim_idle: settings.claim_idle.max(Duration::from_millis(100)),
            metrics_addr: settings.metrics,
            standby_generator,
            cache_dir: settings.cache_dir,
            max_deliveries: settings.max_deliveries.max(1),
            max_held_bytes: settings.max_held_bytes,
            keep_results: settings.keep_results.filter(|keep| !keep.is_zero()),
            schedules: Vec::new(),
        })
    }
}

impl HostConfig {
    /// Every setting at the default `jobhost run` has, for programs that run a
    /// host themselves (embedders, benchmarks); change fields as needed.
    /// Neither `JOBHOST_*` variables nor `jobhost.toml` play a part.
    pub fn with_defaults(redis_url: impl Into<String>, plugins_dir: impl Into<PathBuf>) -> Self {
        let command = QueueArgs::augment_args(RunSettings::augment_args(clap::Command::new("run")))
            .mut_args(|arg| arg.env(None::<&'static str>));
        let mut args = vec![std::ffi::OsString::from("run"), "--plugins".into()];
        args.push(plugins_dir.into().into_os_string());
        let matches = command
            .try_get_matches_from(args)
            .expect("the defaults parse");
        let queue = QueueArgs::from_arg_matches(&matches).expect("the defaults parse");
        let settings = RunSettings::from_arg_matches(&matches).expect("the defaults parse");
        let mut config = settings
            .host_config(&queue)
            .expect("the default settings are valid");
        config.redis_url = redis_url.into();
        config
    }
}

/// `127.0.0.1:9464`, `0.0.0.0:9464`, or a bare port on loopback.
fn parse_listen_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.parse()
        .map_err(|_| format!("{text:?} is not an address (e.g. 127.0.0.1:9464 or 9464)"))
}

fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("jobhost"))
}

// `--print-config` shows values as they are written in flags and files.
fn duration<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&humantime::format_duration(*value))
}

fn optional_duration<S: Serializer>(
    value: &Option<Duration>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(value) => duration(value, serializer),
        None => serializer.serialize_none(),
    }
}

fn rate<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&format_args!("{value}/s"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_defaults_has_the_defaults_of_jobhost_run() {
        let config = HostConfig::with_defaults("redis://127.0.0.1:1", "/srv/plugins");
        assert_eq!(config.redis_url, "redis://127.0.0.1:1");
        assert_eq!(config.plugins_dir, PathBuf::from("/srv/plugins"));
        assert_eq!(config.namespace, crate::keys::DEFAULT_NAMESPACE);
        assert_eq!(
            config.queues,
            vec![crate::host::QueueSpec::named(crate::keys::DEFAULT_QUEUE)]
        );
        assert_eq!(config.prefetch, 64);
        assert_eq!(config.retry.max_attempts, 5);
        assert_eq!(config.retry.cap, Duration::from_secs(300));
        assert_eq!(config.shutdown_timeout, Duration::from_secs(30));
        assert_eq!(config.max_payload, super::super::enqueue::MAX_PAYLOAD_BYTES);
        assert!(config.concurrency >= 1);
        assert!(config.standby_generator.is_none());
        assert_eq!(config.max_held_bytes, 256 << 20);
        assert_eq!(config.keep_results, None);
    }
}
