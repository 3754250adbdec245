//! `jobhost run`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::{QueueArgs, env, parse_duration};
use crate::envelope::JobType;
use crate::generator::GeneratorConfig;
use crate::host::{self, HostConfig};
use crate::outcome::RetryPolicy;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Folder of plugin components (`*.wasm`).
    #[arg(long, value_name = "DIR", env = env::PLUGINS)]
    pub plugins: PathBuf,
    #[command(flatten)]
    pub queue: QueueArgs,
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
    pub shutdown_timeout: Duration,
    /// Entries idle this long are reclaimed from their (presumed dead) host.
    #[arg(long, value_name = "DURATION", env = env::CLAIM_IDLE, default_value = "30s", value_parser = parse_duration)]
    pub claim_idle: Duration,
    /// An entry delivered more often than this without an ack is dead-lettered as poison.
    #[arg(long, value_name = "N", env = env::MAX_DELIVERIES, default_value_t = 5)]
    pub max_deliveries: u64,
    /// Attempts of a job before it is dead-lettered (a job's own --max-attempts wins).
    #[arg(long, value_name = "N", env = env::MAX_ATTEMPTS, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attempts: u32,
    /// Backoff before the first retry; doubles with each attempt (full jitter).
    #[arg(long, value_name = "DURATION", env = env::RETRY_BASE, default_value = "1s", value_parser = parse_duration)]
    pub retry_base: Duration,
    /// Where compiled plugins are cached [default: $XDG_CACHE_HOME/jobhost or ~/.cache/jobhost].
    #[arg(long, value_name = "DIR", env = env::CACHE_DIR)]
    pub cache_dir: Option<PathBuf>,
    /// Serve Prometheus metrics on http://ADDR/metrics and health on /healthz;
    /// a bare port (9464) binds loopback.
    #[arg(long, value_name = "ADDR", env = env::METRICS, value_parser = parse_listen_addr)]
    pub metrics: Option<std::net::SocketAddr>,
    /// Compile plugins on every start instead of caching their code.
    #[arg(long, env = env::NO_CACHE)]
    pub no_cache: bool,
    /// Largest payload run, in bytes; larger jobs are dead-lettered.
    #[arg(long, value_name = "BYTES", env = env::MAX_PAYLOAD, default_value_t = crate::cli::enqueue::MAX_PAYLOAD_BYTES)]
    pub max_payload: usize,
    /// Generate jobs whenever no `jobhost generate` is alive (one generator per namespace).
    #[arg(long, env = env::STANDBY_GENERATOR)]
    pub standby_generator: bool,
    /// Job type the standby generator writes.
    #[arg(
        long,
        value_name = "TYPE",
        default_value = "hello.generated",
        requires = "standby_generator"
    )]
    pub generate_type: String,
    /// Rate of the standby generator, e.g. 10/s.
    #[arg(long, value_name = "N/s", env = env::GENERATE_RATE, default_value = "2/s", value_parser = super::generate::parse_rate)]
    pub generate_rate: f64,
    /// Print the effective configuration (secrets masked) and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Longest backoff between two attempts.
    #[arg(long, value_name = "DURATION", env = env::RETRY_CAP, default_value = "5m", value_parser = parse_duration)]
    pub retry_cap: Duration,
}

pub async fn execute(args: RunArgs) -> anyhow::Result<i32> {
    let concurrency = match args.concurrency {
        Some(n) => usize::from(n),
        None => std::thread::available_parallelism().map_or(2, |n| n.get()),
    };
    let config = HostConfig {
        redis_url: args.queue.redis_url(),
        plugins_dir: args.plugins,
        namespace: args.queue.namespace.clone(),
        queue: args.queue.queue.clone(),
        concurrency,
        prefetch: usize::from(args.prefetch),
        consumer: args.consumer.unwrap_or_else(host::default_consumer_name),
        shutdown_timeout: args.shutdown_timeout,
        retry: RetryPolicy {
            base: args.retry_base,
            cap: args.retry_cap,
            max_attempts: args.max_attempts,
        },
        max_payload: args.max_payload,
        claim_idle: args.claim_idle.max(Duration::from_millis(100)),
        metrics_addr: args.metrics,
        standby_generator: if args.standby_generator {
            Some(GeneratorConfig {
                job_type: JobType::parse(&args.generate_type)?,
                rate: args.generate_rate,
                count: None,
                payload: None,
            })
        } else {
            None
        },
        cache_dir: if args.no_cache {
            None
        } else {
            args.cache_dir.or_else(default_cache_dir)
        },
        max_deliveries: args.max_deliveries.max(1),
    };
    if args.print_config {
        print_config(&config);
        return Ok(0);
    }
    let (trigger, shutdown) = crate::shutdown::channel();
    tokio::spawn(async move {
        super::wait_for_signal().await;
        tracing::info!("shutdown requested; send the signal again to exit at once");
        trigger.trigger();
        super::wait_for_signal().await;
        tracing::warn!("second signal: exiting at once; unfinished jobs will be reclaimed");
        std::process::exit(130);
    });
    host::run(config, shutdown).await?;
    Ok(0)
}

/// `127.0.0.1:9464`, `0.0.0.0:9464`, or a bare port on loopback.
fn parse_listen_addr(text: &str) -> Result<std::net::SocketAddr, String> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.parse()
        .map_err(|_| format!("{text:?} is not an address (e.g. 127.0.0.1:9464 or 9464)"))
}

/// The configuration as `key = value` lines, in the config file's own keys.
fn print_config(config: &HostConfig) {
    let duration = |d: Duration| humantime::format_duration(d).to_string();
    let optional = |value: Option<String>| value.unwrap_or_else(|| "(none)".to_owned());
    let lines = [
        ("redis", crate::broker::redact(&config.redis_url)),
        ("namespace", config.namespace.clone()),
        ("queue", config.queue.clone()),
        ("plugins", config.plugins_dir.display().to_string()),
        ("concurrency", config.concurrency.to_string()),
        ("prefetch", config.prefetch.to_string()),
        ("consumer", config.consumer.clone()),
        ("shutdown_timeout", duration(config.shutdown_timeout)),
        ("claim_idle", duration(config.claim_idle)),
        ("max_deliveries", config.max_deliveries.to_string()),
        ("max_attempts", config.retry.max_attempts.to_string()),
        ("retry_base", duration(config.retry.base)),
        ("retry_cap", duration(config.retry.cap)),
        ("max_payload", config.max_payload.to_string()),
        (
            "cache_dir",
            optional(config.cache_dir.as_ref().map(|d| d.display().to_string())),
        ),
        (
            "metrics",
            optional(config.metrics_addr.map(|a| a.to_string())),
        ),
    ];
    for (key, value) in lines {
        println!("{key} = {value}");
    }
}

fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("jobhost"))
}
