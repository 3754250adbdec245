//! `jobhost run`: wires the broker, the plugins and the job threads together
//! and runs until shutdown.
//!
//! One job's path: the reader takes a slot of the in-flight limit and reads the
//! entry (XREADGROUP) → a job thread dispatches it to its plugin → the recorder
//! writes its outcome atomically (ack + follow-ups, retry or DLQ) → the slot is freed.
//!
//! `reader.rs` feeds the job threads (`pool.rs`; their own way to Redis is
//! `job_redis.rs`, for `kv_reads.rs` and `fleet_limits.rs`), `recorder.rs` writes
//! outcomes, `in_flight.rs` owns what a job holds meanwhile, `background.rs`
//! holds the tasks beside the job path (heartbeat, delayed jobs, hot reload,
//! standby generator), `presence.rs` tells the fleet (and the dashboard) what
//! this host runs and did, `schedules.rs` fires the namespace's recurring
//! schedules, `health.rs` tracks whether Redis answers them all.

mod background;
mod cancels;
mod fleet_limits;
mod health;
mod in_flight;
mod job_redis;
mod kv_reads;
mod pause;
mod pool;
mod presence;
mod queues;
mod reader;
mod recorder;
mod schedules;

pub use queues::{MAX_WEIGHT, QueueSpec, check_name as check_queue_name, check_queues};

use background::{heartbeat, promote_due_jobs, stand_by_as_generator, watch_plugins};
use cancels::{Cancels, read_marks, watch_cancels};
use health::Health;
use in_flight::InFlight;
use pause::{Paused, watch_paused};
use pool::Pool;
use presence::{Identity, publish_presence};
use queues::ReadPlan;
use reader::Reader;
use recorder::record_outcomes;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

use crate::broker::{BrokerError, KeepResults, READ_BLOCK, Redis};
use crate::dispatch::{DispatchPolicy, Dispatcher};
use crate::generator::GeneratorConfig;
use crate::keys::QueueKeys;
use crate::metrics::Metrics;
use crate::outcome::RetryPolicy;
use crate::plugins::{CodeCache, DirError, Registry, Runtime, Services};
use crate::shutdown::Shutdown;

/// Everything `jobhost run` needs to know. Its values come from the settings
/// of `run` (`cli/settings.rs`); [`HostConfig::with_defaults`] gives one with
/// their defaults, for programs that run a host themselves.
#[derive(Debug, Clone)]
pub struct HostConfig {
    pub redis_url: String,
    pub plugins_dir: PathBuf,
    pub namespace: String,
    /// The queues served: in strict priority by their order, or by their
    /// weights (see `queues.rs`).
    pub queues: Vec<QueueSpec>,
    /// Jobs running at once (one thread each).
    pub concurrency: usize,
    /// Jobs in flight (read, running or being recorded) per job thread. More
    /// means bigger reads and higher throughput; fewer means fairer sharing of
    /// slow jobs between hosts and less to reclaim after a crash.
    pub prefetch: usize,
    /// This host's consumer name in the group; unique per process.
    pub consumer: String,
    /// How long in-flight jobs may take to finish after a shutdown signal.
    pub shutdown_timeout: Duration,
    pub retry: RetryPolicy,
    /// A larger payload is dead-lettered without running.
    pub max_payload: usize,
    /// Entries idle this long are presumed abandoned by a dead or hung host and
    /// reclaimed. Live hosts refresh their own entries well within it.
    pub claim_idle: Duration,
    /// Where compiled plugins are cached; `None` compiles on every start.
    pub cache_dir: Option<PathBuf>,
    /// Serve `/metrics` and `/healthz` here.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Generate these jobs whenever no dedicated generator is alive.
    pub standby_generator: Option<GeneratorConfig>,
    /// An entry delivered more often than this without an ack is dead-lettered as poison.
    pub max_deliveries: u64,
    /// Most bytes of entries held at once (read, running or being recorded);
    /// at least [`crate::dispatch::largest_entry`] of `max_payload`.
    pub max_held_bytes: usize,
    /// Keep final outcomes this long for lookups (`jobhost job ID`).
    pub keep_results: Option<Duration>,
    /// Schedules to define at start (`[[schedule]]` in `jobhost.toml`): each
    /// overwrites the definition of its name and keeps its fire state.
    pub schedules: Vec<crate::schedule::Definition>,
}

/// Why the host could not start.
#[derive(Debug, Error)]
pub enum HostError {
    #[error(transparent)]
    Plugins(#[from] DirError),
    #[error("cannot start the wasm runtime: {0}")]
    Runtime(String),
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error("--queue: {0}")]
    Queues(String),
    #[error("cannot serve metrics on {addr}: {error}")]
    Metrics { addr: String, error: std::io::Error },
    #[error(
        "--max-held-bytes {budget} is below the largest entry the host takes: {largest} bytes (--max-payload plus {} for the other fields)",
        crate::dispatch::ENTRY_ALLOWANCE
    )]
    Budget { budget: usize, largest: usize },
}

/// Most entries read in one XREADGROUP.
const READ_BATCH: usize = 256;
/// Most outcomes recorded in one pipeline.
const RECORD_BATCH: usize = 256;
const PROMOTE_EVERY: Duration = Duration::from_millis(100);

/// A unique consumer name for this process: host name, pid and a random tag.
pub fn default_consumer_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "host".to_owned());
    format!("{host}-{}-{:04x}", std::process::id(), fastrand::u16(..))
}

/// Runs the host until `shutdown` triggers, then lets in-flight jobs finish.
pub async fn run(config: HostConfig, shutdown: Shutdown) -> Result<(), HostError> {
    // Checked here, not with the settings: `--print-config` shows any value.
    let largest = crate::dispatch::largest_entry(config.max_payload);
    if config.max_held_bytes < largest {
        return Err(HostError::Budget {
            budget: config.max_held_bytes,
            largest,
        });
    }
    check_queues(&config.queues).map_err(HostError::Queues)?;
    let concurrency = config.concurrency.max(1);
    let metrics = Arc::new(Metrics::default());
    let queues: Arc<[QueueKeys]> = config
        .queues
        .iter()
        .map(|queue| QueueKeys::new(&config.namespace, &queue.name))
        .collect();
    let mut redis = Redis::connect(&config.redis_url).await?;
    let job_redis = Arc::new(job_redis::JobRedis::new(
        redis.clone(),
        tokio::runtime::Handle::current(),
    ));
    let services = Services {
        http_metrics: metrics.http.clone(),
        kv: Arc::new(kv_reads::RedisKv::new(job_redis.clone(), &config.namespace)),
    };
    let runtime = Runtime::new(
        concurrency as u32,
        CodeCache::new(config.cache_dir.clone()),
        services,
    )
    .map_err(|e| HostError::Runtime(e.to_string()))?;
    let plugins = Arc::new(Registry::open(
        runtime,
        &config.plugins_dir,
        metrics.clone(),
    )?);
    let _watcher = watch_plugins(plugins.clone());
    if plugins.current().plugins().is_empty() {
        tracing::warn!(
            dir = %config.plugins_dir.display(),
            "no plugins loaded; jobs will wait for a host that handles their type"
        );
    }
    let consumer = config.consumer.clone();
    for keys in queues.iter() {
        redis.ensure_group(keys).await?;
    }
    let paused = Paused::new(queues.len());
    // A broken paused set must not keep the fleet from starting.
    match paused
        .load(&mut redis, &config.namespace, &queues, &metrics)
        .await
    {
        Err(error) if pause::is_wrong_type(&error) => pause::report_wrong_type(&config.namespace),
        other => other?,
    }
    schedules::apply(&mut redis, &config.namespace, &config.schedules).await?;
    let read_redis = redis.blocking(READ_BLOCK).await?;

    let (done_tx, done_rx) = tokio::sync::mpsc::unbounded_channel();
    let dispatcher = Arc::new(
        Dispatcher::new(
            plugins,
            DispatchPolicy {
                retry: config.retry,
                max_deliveries: config.max_deliveries,
                max_payload: config.max_payload,
            },
        )
        .with_fleet_limits(Arc::new(fleet_limits::RedisLimits::new(
            job_redis,
            metrics.clone(),
        ))),
    );
    let cancels = Arc::new(Cancels::default());
    // Best effort: the watcher reads them again within 100 ms.
    let _ = read_marks(
        &mut redis,
        &queues,
        &cancels,
        &mut vec![false; queues.len()],
    )
    .await;
    let pool = Pool::start(
        concurrency,
        dispatcher,
        queues.clone(),
        cancels.clone(),
        done_tx,
    );
    // Jobs read ahead of the threads: enough that one XREADGROUP fetches a
    // worthwhile batch and threads never wait on Redis, few enough that a crash
    // leaves little for others to reclaim.
    let in_flight = InFlight::new(
        concurrency * config.prefetch.max(1),
        config.max_held_bytes,
        metrics.clone(),
    );
    let health = Health::new(metrics.clone());

    let http = match config.metrics_addr {
        Some(addr) => Some(
            crate::http::serve(addr, metrics.clone(), shutdown.clone())
                .await
                .map_err(|error| HostError::Metrics {
                    addr: addr.to_string(),
                    error,
                })?,
        ),
        None => None,
    };
    // Redis answered and the metrics endpoint listens: from the "consuming"
    // line on, /healthz says 200 until Redis stops answering.
    health.set_consuming(true);
    let served: Vec<String> = config.queues.iter().map(QueueSpec::to_string).collect();
    tracing::info!(
        queues = %served.join(","),
        streams = %queues.iter().map(|k| k.stream.as_str()).collect::<Vec<_>>().join(","),
        group = %queues[0].group,
        %consumer,
        concurrency,
        "consuming"
    );
    let keep = config.keep_results.map(|ttl| KeepResults {
        ttl,
        host: consumer.clone(),
    });
    let recorder = tokio::spawn(record_outcomes(
        redis.clone(),
        queues.clone(),
        keep,
        done_rx,
        metrics.clone(),
        health.path("recorder"),
    ));
    let promoter = tokio::spawn(promote_due_jobs(
        redis.clone(),
        queues.clone(),
        health.path("promoter"),
        shutdown.clone(),
    ));
    let pause_watcher = tokio::spawn(watch_paused(
        redis.clone(),
        config.namespace.clone(),
        queues.clone(),
        paused.clone(),
        metrics.clone(),
        health.path("pause"),
        shutdown.clone(),
    ));
    let cancel_watcher = tokio::spawn(watch_cancels(
        redis.clone(),
        queues.clone(),
        cancels,
        health.path("cancel"),
        shutdown.clone(),
    ));
    let scheduler = tokio::spawn(schedules::fire_schedules(
        redis.clone(),
        config.namespace.clone(),
        health.path("schedules"),
        shutdown.clone(),
    ));
    let standby = config.standby_generator.clone().map(|generator| {
        tokio::spawn(stand_by_as_generator(
            redis.clone(),
            queues[0].clone(),
            config.namespace.clone(),
            generator,
            shutdown.clone(),
        ))
    });
    // The heartbeat outlives the reader: jobs draining after a signal stay fresh.
    let (stop_heartbeat, heartbeat_stop) = crate::shutdown::channel();
    let heartbeat = tokio::spawn(heartbeat(
        redis.clone(),
        queues.clone(),
        consumer.clone(),
        in_flight.clone(),
        config.claim_idle,
        health.path("heartbeat"),
        heartbeat_stop,
    ));
    // Stopped after the recorder: the last outcomes reach the history.
    let (stop_presence, presence_stop) = crate::shutdown::channel();
    let presence = tokio::spawn(publish_presence(
        redis.clone(),
        Identity {
            namespace: config.namespace.clone(),
            consumer: consumer.clone(),
            concurrency,
            served: served.clone(),
        },
        queues.clone(),
        metrics.clone(),
        presence_stop,
    ));
    let mut reader = Reader {
        redis: read_redis,
        queues: &queues,
        plan: ReadPlan::new(&config.queues),
        paused,
        consumer: &consumer,
        pool: &pool,
        in_flight,
        claim_idle: config.claim_idle,
        largest,
        metrics: metrics.clone(),
        health: health.path("reader"),
    };
    reader.run(shutdown).await;
    health.set_consuming(false);

    tracing::info!("stopping: no new jobs are read; waiting for jobs in flight");
    let threads = pool.close();
    let drained = tokio::time::timeout(config.shutdown_timeout, async {
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await;
        let _ = recorder.await;
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            timeout = %humantime::format_duration(config.shutdown_timeout),
            "jobs still running at the shutdown timeout stay pending; another host will reclaim them"
        );
    }
    stop_heartbeat.trigger();
    stop_presence.trigger();
    let _ = heartbeat.await;
    let _ = presence.await;
    let _ = promoter.await;
    let _ = pause_watcher.await;
    let _ = cancel_watcher.await;
    let _ = scheduler.await;
    if let Some(standby) = standby {
        let _ = standby.await;
    }
    if let Some(http) = http {
        let _ = http.await;
    }
    if drained.is_ok() {
        for keys in queues.iter() {
            if let Err(error) = redis.leave(keys, &consumer).await {
                tracing::warn!(queue = %keys.queue, %error, "could not leave the consumer group cleanly");
            }
        }
    }
    tracing::info!("stopped");
    Ok(())
}
