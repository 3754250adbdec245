//! `jobhost run`: wires the broker, the plugins and the job threads together
//! and runs until shutdown.
//!
//! One job's path: the reader takes a slot of the in-flight limit and reads the
//! entry (XREADGROUP) → a job thread dispatches it to its plugin → the recorder
//! writes its outcome atomically (ack + follow-ups, retry or DLQ) → the slot is freed.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::broker::{Broker, BrokerError, Delivery, Producer, Record};
use crate::dispatch::{DispatchPolicy, Dispatcher, Finished};
use crate::envelope::now_ms;
use crate::generator::{GeneratorConfig, LEASE_TTL, Lease, Role};
use crate::keys::QueueKeys;
use crate::metrics::Metrics;
use crate::outcome::{Outcome, RetryPolicy};
use crate::plugins::{CodeCache, DirError, Registry, Runtime};
use crate::pool::{Done, Pool, Task};
use crate::shutdown::Shutdown;

/// Everything `jobhost run` needs to know.
#[derive(Debug, Clone)]
pub struct HostConfig {
    pub redis_url: String,
    pub plugins_dir: PathBuf,
    pub namespace: String,
    pub queue: String,
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
    #[error("cannot serve metrics on {addr}: {error}")]
    Metrics { addr: String, error: std::io::Error },
}

/// Most entries read in one XREADGROUP.
const READ_BATCH: usize = 256;
/// Most outcomes recorded in one pipeline.
const RECORD_BATCH: usize = 256;
const PROMOTE_EVERY: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

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
    let concurrency = config.concurrency.max(1);
    let runtime = Runtime::new(concurrency as u32, CodeCache::new(config.cache_dir.clone()))
        .map_err(|e| HostError::Runtime(e.to_string()))?;
    let metrics = Arc::new(Metrics::default());
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
    let keys = QueueKeys::new(&config.namespace, &config.queue);
    let mut broker = Broker::connect(&config.redis_url, keys, config.consumer.clone()).await?;
    broker.ensure_group().await?;

    let (done_tx, done_rx) = tokio::sync::mpsc::unbounded_channel();
    let dispatcher = Arc::new(Dispatcher::new(
        plugins,
        DispatchPolicy {
            retry: config.retry,
            max_deliveries: config.max_deliveries,
            max_payload: config.max_payload,
        },
    ));
    let pool = Pool::start(concurrency, dispatcher, done_tx);
    // Jobs read ahead of the threads: enough that one XREADGROUP fetches a
    // worthwhile batch and threads never wait on Redis, few enough that a crash
    // leaves little for others to reclaim.
    let slots = Arc::new(Semaphore::new(concurrency * config.prefetch.max(1)));
    let in_flight = InFlight::default();

    tracing::info!(
        stream = %broker.keys().stream,
        group = %broker.keys().group,
        consumer = %broker.consumer(),
        concurrency,
        "consuming"
    );
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
    let recorder = tokio::spawn(record_outcomes(
        broker.clone(),
        done_rx,
        in_flight.clone(),
        metrics.clone(),
    ));
    let promoter = tokio::spawn(promote_due_jobs(broker.clone(), shutdown.clone()));
    let standby = config.standby_generator.clone().map(|generator| {
        tokio::spawn(stand_by_as_generator(
            config.redis_url.clone(),
            broker.keys().clone(),
            config.namespace.clone(),
            generator,
            shutdown.clone(),
        ))
    });
    // The heartbeat outlives the reader: jobs draining after a signal stay fresh.
    let (stop_heartbeat, heartbeat_stop) = crate::shutdown::channel();
    let heartbeat = tokio::spawn(heartbeat(
        broker.clone(),
        in_flight.clone(),
        config.claim_idle,
        heartbeat_stop,
    ));
    let mut reader = Reader {
        broker: &mut broker,
        pool: &pool,
        slots,
        in_flight,
        claim_idle: config.claim_idle,
        metrics: metrics.clone(),
    };
    reader.run(shutdown).await;
    metrics.healthy.store(false, Ordering::Relaxed);

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
    let _ = heartbeat.await;
    let _ = promoter.await;
    if let Some(standby) = standby {
        let _ = standby.await;
    }
    if let Some(http) = http {
        let _ = http.await;
    }
    if drained.is_ok()
        && let Err(error) = broker.leave().await
    {
        tracing::warn!(%error, "could not leave the consumer group cleanly");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Reloads plugins as their files change, off the job path, until dropped.
fn watch_plugins(registry: Arc<Registry>) -> Option<impl Drop> {
    let (changed_tx, mut changed_rx) = tokio::sync::mpsc::unbounded_channel::<Vec<PathBuf>>();
    let watcher = match crate::plugins::watch(registry.dir(), move |files| {
        let _ = changed_tx.send(files);
    }) {
        Ok(watcher) => watcher,
        Err(error) => {
            tracing::warn!(%error, "cannot watch the plugins folder; plugin changes need a restart");
            return None;
        }
    };
    // Ends when the watcher (and with it the sender) is dropped.
    tokio::spawn(async move {
        while let Some(files) = changed_rx.recv().await {
            let registry = registry.clone();
            let _ = tokio::task::spawn_blocking(move || {
                for file in files {
                    registry.reload(&file);
                }
            })
            .await;
        }
    });
    Some(watcher)
}

/// Entry ids of the jobs this host holds, for the heartbeat.
#[derive(Clone, Default)]
struct InFlight(Arc<Mutex<HashSet<String>>>);

impl InFlight {
    /// Adds an entry; false when it was already held (a reclaim of our own entry).
    fn insert(&self, entry_id: &str) -> bool {
        self.0
            .lock()
            .expect("in-flight lock")
            .insert(entry_id.to_owned())
    }

    fn remove(&self, entry_id: &str) {
        self.0.lock().expect("in-flight lock").remove(entry_id);
    }

    fn snapshot(&self) -> Vec<String> {
        self.0
            .lock()
            .expect("in-flight lock")
            .iter()
            .cloned()
            .collect()
    }
}

/// Feeds the job threads: reclaims stale entries now and then, reads new
/// ones while there are free slots, until shutdown.
struct Reader<'a> {
    broker: &'a mut Broker,
    pool: &'a Pool,
    slots: Arc<Semaphore>,
    in_flight: InFlight,
    claim_idle: Duration,
    metrics: Arc<Metrics>,
}

impl Reader<'_> {
    async fn run(&mut self, mut shutdown: Shutdown) {
        let mut health = Health::new(Some(self.metrics.clone()));
        self.metrics.healthy.store(true, Ordering::Relaxed);
        let claim_every = self.claim_idle / 2;
        let mut next_claim = Instant::now();
        while !shutdown.is_triggered() {
            let first = tokio::select! {
                permit = self.slots.clone().acquire_owned() => permit.expect("the slot semaphore is never closed"),
                _ = shutdown.wait() => break,
            };
            let mut permits = vec![first];
            while permits.len() < READ_BATCH {
                match self.slots.clone().try_acquire_owned() {
                    Ok(permit) => permits.push(permit),
                    Err(_) => break,
                }
            }
            if Instant::now() >= next_claim {
                next_claim = Instant::now() + claim_every;
                match self.reclaim(permits.len()).await {
                    Ok(claimed) => permits = self.submit(claimed, permits),
                    Err(error) => {
                        if !self.back_off(&mut health, &error, &mut shutdown).await {
                            break;
                        }
                        continue;
                    }
                }
                if permits.is_empty() {
                    continue;
                }
            }
            // Not raced against shutdown: a read cut short could leave entries
            // delivered to this consumer that nobody runs until they are reclaimed.
            match self.broker.read_new(permits.len()).await {
                Ok(deliveries) => {
                    health.ok();
                    self.submit(deliveries, permits);
                }
                Err(error) => {
                    if !self.back_off(&mut health, &error, &mut shutdown).await {
                        break;
                    }
                }
            }
        }
    }

    /// Claims entries abandoned by dead or hung hosts, and removes consumers
    /// that are gone and hold nothing.
    async fn reclaim(&mut self, count: usize) -> Result<Vec<Delivery>, BrokerError> {
        let claimed = self.broker.claim_stale(self.claim_idle, count).await?;
        if !claimed.is_empty() {
            self.metrics
                .reclaimed
                .fetch_add(claimed.len() as u64, Ordering::Relaxed);
            tracing::info!(
                count = claimed.len(),
                "reclaimed entries idle past {}",
                humantime::format_duration(self.claim_idle)
            );
        }
        for name in self
            .broker
            .remove_gone_consumers(self.claim_idle * 3)
            .await?
        {
            tracing::info!(consumer = %name, "removed a consumer that is gone and holds no entries");
        }
        Ok(claimed)
    }

    /// Hands deliveries to the pool, one slot each; returns the unused slots.
    fn submit(
        &self,
        deliveries: Vec<Delivery>,
        mut permits: Vec<OwnedSemaphorePermit>,
    ) -> Vec<OwnedSemaphorePermit> {
        for delivery in deliveries {
            if !self.in_flight.insert(&delivery.entry_id) {
                continue; // Already running here; the reclaim only refreshed it.
            }
            let Some(permit) = permits.pop() else {
                break;
            };
            self.metrics.in_flight.fetch_add(1, Ordering::Relaxed);
            self.pool.submit(Task { delivery, permit });
        }
        permits
    }

    /// Waits out a Redis failure; false when shutdown came first.
    async fn back_off(
        &mut self,
        health: &mut Health,
        error: &BrokerError,
        shutdown: &mut Shutdown,
    ) -> bool {
        let wait = health.failed(error);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.wait() => return false,
        }
        self.broker.reconnect_reader().await;
        // A Redis that restarted without persistence has lost the group too.
        let _ = self.broker.ensure_group().await;
        true
    }
}

/// Keeps this host marked alive and its in-flight entries fresh until stopped,
/// beating three times per `claim_idle` so one missed beat costs nothing.
async fn heartbeat(
    mut broker: Broker,
    in_flight: InFlight,
    claim_idle: Duration,
    mut stop: Shutdown,
) {
    let mut ticker = tokio::time::interval((claim_idle / 3).max(Duration::from_millis(30)));
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait() => return,
        }
        let ids = in_flight.snapshot();
        if let Err(error) = broker.heartbeat(&ids, claim_idle).await {
            tracing::debug!(%error, "heartbeat failed");
        }
    }
}

/// Writes outcomes as jobs finish, batching what is ready. An outcome that
/// cannot be written is kept and retried until Redis takes it: never dropped.
async fn record_outcomes(
    mut broker: Broker,
    mut done: UnboundedReceiver<Done>,
    in_flight: InFlight,
    metrics: Arc<Metrics>,
) {
    let mut health = Health::new(None);
    let mut batch = Vec::with_capacity(RECORD_BATCH);
    while done.recv_many(&mut batch, RECORD_BATCH).await > 0 {
        let now_ms = now_ms();
        let records: Vec<Record<'_>> = batch
            .iter()
            .map(|done| Record {
                delivery: &done.finished.delivery,
                outcome: &done.finished.outcome,
                now_ms,
            })
            .collect();
        loop {
            match broker.record(&records).await {
                Ok(()) => {
                    health.ok();
                    break;
                }
                Err(error) => tokio::time::sleep(health.failed(&error)).await,
            }
        }
        drop(records);
        for done in batch.drain(..) {
            in_flight.remove(&done.finished.delivery.entry_id);
            metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
            log_finished(&done.finished, &metrics);
        }
    }
}

/// `--standby-generator`: generates whenever no dedicated generator is alive,
/// until shutdown. A Redis failure is logged and the standby starts over.
async fn stand_by_as_generator(
    url: String,
    keys: QueueKeys,
    namespace: String,
    generator: GeneratorConfig,
    mut shutdown: Shutdown,
) {
    let name = format!("jobhost-run-{}", default_consumer_name());
    while !shutdown.is_triggered() {
        let result = match Producer::connect(&url, keys.clone()).await {
            Ok(producer) => {
                let lease = Lease::new(producer.connection(), &namespace, name.clone(), LEASE_TTL);
                crate::generator::run(
                    producer,
                    lease,
                    generator.clone(),
                    Role::Fallback,
                    shutdown.clone(),
                )
                .await
                .map(drop)
            }
            Err(error) => Err(error),
        };
        if let Err(error) = result {
            tracing::warn!(%error, "standby generator stopped; starting over");
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.wait() => return,
            }
        }
    }
}

/// Moves due delayed jobs onto the stream, until shutdown.
async fn promote_due_jobs(mut broker: Broker, mut shutdown: Shutdown) {
    let mut ticker = tokio::time::interval(PROMOTE_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.wait() => return,
        }
        // Failures show up in the reader's and recorder's health logs; try again next tick.
        if let Err(error) = broker.promote_due(now_ms()).await {
            tracing::debug!(%error, "moving due jobs failed");
        }
    }
}

fn log_finished(finished: &Finished, metrics: &Metrics) {
    let delivery = &finished.delivery;
    let (job_id, job_type, attempt, trace_id) = match &delivery.job {
        Ok(job) => (
            job.job_id.as_str(),
            job.job_type.as_str(),
            job.attempt,
            job.trace_id.as_deref().unwrap_or(""),
        ),
        Err(_) => (delivery.entry_id.as_str(), "", 0, ""),
    };
    let (plugin, version) = finished
        .plugin
        .as_ref()
        .map_or(("-", "-"), |tag| (tag.name.as_str(), tag.version.as_str()));
    let outcome = finished.outcome.label();
    let duration_us = finished.duration.as_micros() as u64;
    metrics.job_finished(outcome, job_type, plugin, finished.duration);
    if let Some(waited) = finished.waited {
        metrics.job_waited(waited);
    }
    match &finished.outcome {
        Outcome::Done { .. } | Outcome::Expired => tracing::info!(
            %job_id, r#type = %job_type, %plugin, attempt, %outcome, duration_us, %version, %trace_id,
            "job finished"
        ),
        Outcome::Retry { after, error } => tracing::warn!(
            %job_id, r#type = %job_type, %plugin, attempt, %outcome, duration_us, %version, %trace_id,
            retry_in_ms = after.as_millis() as u64, %error, "job failed"
        ),
        Outcome::Dead { reason } => tracing::error!(
            %job_id, r#type = %job_type, %plugin, attempt, %outcome, duration_us, %version, %trace_id,
            %reason, "job dead-lettered"
        ),
    }
}

/// Tracks whether Redis answers, logging each change of state once, and the
/// backoff before the next try. The reader's health is the host's health.
struct Health {
    failures: u32,
    metrics: Option<Arc<Metrics>>,
}

impl Health {
    fn new(metrics: Option<Arc<Metrics>>) -> Self {
        Health {
            failures: 0,
            metrics,
        }
    }

    fn ok(&mut self) {
        if self.failures > 0 {
            tracing::info!("Redis reachable again");
            if let Some(metrics) = &self.metrics {
                metrics.redis_reconnects.fetch_add(1, Ordering::Relaxed);
                metrics.healthy.store(true, Ordering::Relaxed);
            }
        }
        self.failures = 0;
    }

    fn failed(&mut self, error: &BrokerError) -> Duration {
        if self.failures == 0 {
            tracing::warn!(%error, "Redis unreachable; retrying with backoff");
            if let Some(metrics) = &self.metrics {
                metrics.healthy.store(false, Ordering::Relaxed);
            }
        }
        self.failures = self.failures.saturating_add(1);
        let exponent = self.failures.min(8);
        (Duration::from_millis(50) * (1 << exponent)).min(MAX_BACKOFF)
    }
}
