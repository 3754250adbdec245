//! The built-in generator: jobs at a steady rate, `<uuid> <timestamp>` by
//! default as go-redis-dsg writes them, with one leader per namespace.
//!
//! A generator takes the namespace's lease before producing and renews it as it
//! goes; others wait in standby and take over within one lease period of the
//! leader stopping or dying. A consumer host may stand by as a fallback
//! ([`Role::Fallback`]); it hands the lease back as soon as a dedicated
//! generator is waiting.

mod lease;

use std::time::{Duration, Instant};

use crate::broker::{BrokerError, Redis};
use crate::envelope::{Envelope, JobType, now_rfc3339};
use crate::keys::QueueKeys;
use crate::shutdown::Shutdown;
pub use lease::Lease;

/// How long a lease lives without renewal: the longest a dead leader stops generation.
pub const LEASE_TTL: Duration = Duration::from_secs(3);
/// Most jobs written in one pipelined round trip.
const MAX_BATCH: u64 = 1000;
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// What to generate.
#[derive(Debug, Clone)]
pub struct GeneratorConfig {
    pub job_type: JobType,
    /// Jobs per second.
    pub rate: f64,
    /// Stop after this many jobs.
    pub count: Option<u64>,
    /// Payload of every job; `None` means `<uuid> <timestamp>`.
    pub payload: Option<String>,
}

/// Whether a generator yields to others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `jobhost generate`: keeps the lease until it stops.
    Dedicated,
    /// `jobhost run --standby-generator`: generates only while no dedicated generator wants to.
    Fallback,
}

/// Runs until shutdown (or `count` jobs), writing to the queue `keys` through
/// `redis`; returns how many jobs this generator wrote.
pub async fn run(
    mut redis: Redis,
    keys: &QueueKeys,
    mut lease: Lease,
    config: GeneratorConfig,
    role: Role,
    mut shutdown: Shutdown,
) -> Result<u64, BrokerError> {
    let mut sent = 0u64;
    let tick = LEASE_TTL / 3;
    loop {
        // Standby until the lease is ours.
        let mut announced_wait = false;
        loop {
            if shutdown.is_triggered() {
                return Ok(sent);
            }
            let free_to_take = role == Role::Dedicated || !lease.is_wanted().await.unwrap_or(true);
            if free_to_take && lease.try_acquire().await.unwrap_or(false) {
                break;
            }
            if role == Role::Dedicated {
                let _ = lease.announce_waiting().await;
            }
            if !announced_wait {
                let holder = lease
                    .current_holder()
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                tracing::info!(%holder, "standby: another generator holds the lease");
                announced_wait = true;
            }
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = shutdown.wait() => return Ok(sent),
            }
        }
        tracing::info!(generator = %lease.holder(), "generating: this generator holds the lease");
        let finished = generate_while_leader(
            &mut redis,
            keys,
            &mut lease,
            &config,
            role,
            &mut sent,
            &mut shutdown,
        )
        .await?;
        if finished || shutdown.is_triggered() {
            let _ = lease.release().await;
            return Ok(sent);
        }
    }
}

/// Produces at the configured rate while the lease holds. True when `count`
/// is reached; false when the lease was lost or handed back.
async fn generate_while_leader(
    redis: &mut Redis,
    keys: &QueueKeys,
    lease: &mut Lease,
    config: &GeneratorConfig,
    role: Role,
    sent: &mut u64,
    shutdown: &mut Shutdown,
) -> Result<bool, BrokerError> {
    let started = Instant::now();
    let start_count = *sent;
    let mut next_renewal = Instant::now() + LEASE_TTL / 3;
    let mut last_report = (Instant::now(), *sent);
    let period = Duration::from_millis(10).min(Duration::from_secs_f64(1.0 / config.rate));
    let mut ticker = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.wait() => return Ok(false),
        }
        if Instant::now() >= next_renewal {
            next_renewal = Instant::now() + LEASE_TTL / 3;
            if !lease.renew().await.unwrap_or(false) {
                tracing::warn!("lost the generator lease; back to standby");
                return Ok(false);
            }
            if role == Role::Fallback && lease.is_wanted().await.unwrap_or(false) {
                tracing::info!("a dedicated generator is waiting; handing the lease back");
                let _ = lease.release().await;
                return Ok(false);
            }
        }
        let due = (started.elapsed().as_secs_f64() * config.rate) as u64 + 1;
        let mut want = due.saturating_sub(*sent - start_count).min(MAX_BATCH);
        if let Some(count) = config.count {
            want = want.min(count.saturating_sub(*sent));
        }
        let jobs: Vec<Envelope> = (0..want)
            .map(|_| {
                let payload = config
                    .payload
                    .clone()
                    .unwrap_or_else(|| format!("{} {}", uuid::Uuid::new_v4(), now_rfc3339()));
                let mut job = Envelope::new(config.job_type.clone(), payload.into_bytes());
                job.producer = Some(lease.holder().to_owned());
                job
            })
            .collect();
        redis.enqueue_batch(keys, &jobs).await?;
        *sent += want;
        if last_report.0.elapsed() >= REPORT_EVERY {
            let rate = (*sent - last_report.1) as f64 / last_report.0.elapsed().as_secs_f64();
            tracing::info!(total = *sent, "generated {} jobs ({rate:.0}/s)", *sent);
            last_report = (Instant::now(), *sent);
        }
        if config.count.is_some_and(|count| *sent >= count) {
            return Ok(true);
        }
    }
}
