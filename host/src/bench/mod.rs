//! Benchmarks behind `jobhost bench`: each measure runs against a
//! redis-server of its own and reports jobs/s (or µs) over several runs.

mod server;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

pub use server::BenchRedis;

use crate::broker::Producer;
use crate::envelope::{Envelope, JobType};
use crate::host::{self, HostConfig};
use crate::keys::QueueKeys;
use crate::outcome::RetryPolicy;
use crate::plugins::{CodeCache, Job, RunOutcome, Runtime};

/// About 100 bytes of JSON, like a typical job.
pub const PAYLOAD: &str =
    r#"{"name":"bench","order":{"id":12345,"items":[{"sku":"tea-green","qty":2}],"note":"x"}}"#;
const CHUNK: usize = 1000;

/// Median, min and max of a set of runs.
#[derive(Debug, Clone, Copy)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(mut values: Vec<f64>) -> Self {
        values.sort_by(f64::total_cmp);
        Spread {
            median: values[values.len() / 2],
            min: values[0],
            max: values[values.len() - 1],
        }
    }
}

fn jobs(count: usize, job_type: &str) -> anyhow::Result<Vec<Envelope>> {
    let job_type = JobType::parse(job_type)?;
    Ok((0..count)
        .map(|_| Envelope::new(job_type.clone(), PAYLOAD.as_bytes().to_vec()))
        .collect())
}

/// Jobs/s of pipelined XADDs (1,000 a round trip) through the producer.
pub async fn enqueue_rate(url: &str, count: usize) -> anyhow::Result<f64> {
    let mut producer = Producer::connect(url, QueueKeys::new("bench", "enqueue")).await?;
    let jobs = jobs(count, "hello.bench")?;
    let started = Instant::now();
    for chunk in jobs.chunks(CHUNK) {
        producer.enqueue_batch(chunk).await?;
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

/// Jobs/s of a host draining `count` waiting jobs through the plugin for
/// `job_type` (a fresh instance per job), from host start to the last ack.
pub async fn drain_rate(
    url: &str,
    plugins: &Path,
    job_type: &str,
    count: usize,
    concurrency: usize,
    prefetch: usize,
) -> anyhow::Result<f64> {
    let queue = format!("drain{}", fastrand::u32(..));
    let keys = QueueKeys::new("bench", &queue);
    let mut producer = Producer::connect(url, keys.clone()).await?;
    for chunk in jobs(count, job_type)?.chunks(CHUNK) {
        producer.enqueue_batch(chunk).await?;
    }
    let mut conn = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    let config = HostConfig {
        redis_url: url.to_owned(),
        plugins_dir: plugins.to_owned(),
        namespace: "bench".to_owned(),
        queue,
        concurrency,
        prefetch,
        consumer: host::default_consumer_name(),
        shutdown_timeout: Duration::from_secs(30),
        retry: RetryPolicy::default(),
        max_payload: 1 << 20,
        claim_idle: Duration::from_secs(30),
        max_deliveries: 5,
        cache_dir: None,
        metrics_addr: None,
        standby_generator: None,
    };
    let (trigger, shutdown) = crate::shutdown::channel();
    let started = Instant::now();
    let running = tokio::spawn(host::run(config, shutdown));
    loop {
        let done: Option<u64> = redis::cmd("HGET")
            .arg(&keys.counters)
            .arg("done")
            .query_async(&mut conn)
            .await?;
        if done.unwrap_or(0) >= count as u64 {
            break;
        }
        if running.is_finished() {
            anyhow::bail!("the host stopped before draining the queue");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = started.elapsed();
    trigger.trigger();
    running.await.context("host task")??;
    Ok(count as f64 / elapsed.as_secs_f64())
}

/// The floor: a bare XREADGROUP COUNT `batch` + XACK loop over `count` entries.
pub async fn raw_floor(url: &str, count: usize, batch: usize) -> anyhow::Result<f64> {
    let stream = format!("bench:{{raw{}}}:stream", fastrand::u32(..));
    let mut producer = Producer::connect(url, QueueKeys::new("bench", "raw")).await?;
    let _ = &mut producer;
    let mut conn = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    for chunk in jobs(count, "raw.bench")?.chunks(CHUNK) {
        let mut pipe = redis::pipe();
        for job in chunk {
            let cmd = pipe.cmd("XADD").arg(&stream).arg("*");
            for (name, value) in job.to_fields() {
                cmd.arg(name).arg(value);
            }
            cmd.ignore();
        }
        pipe.query_async::<()>(&mut conn).await?;
    }
    redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&stream)
        .arg("g")
        .arg("0")
        .query_async::<()>(&mut conn)
        .await?;
    let started = Instant::now();
    let mut seen = 0;
    while seen < count {
        let reply: redis::streams::StreamReadReply = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("g")
            .arg("c")
            .arg("COUNT")
            .arg(batch)
            .arg("STREAMS")
            .arg(&stream)
            .arg(">")
            .query_async(&mut conn)
            .await?;
        let ids: Vec<String> = reply
            .keys
            .into_iter()
            .flat_map(|k| k.ids)
            .map(|e| e.id)
            .collect();
        if ids.is_empty() {
            break;
        }
        seen += ids.len();
        redis::cmd("XACK")
            .arg(&stream)
            .arg("g")
            .arg(&ids)
            .query_async::<()>(&mut conn)
            .await?;
    }
    Ok(seen as f64 / started.elapsed().as_secs_f64())
}

/// µs per job of a fresh instance, without Redis, in `runs` runs of `count` jobs.
pub fn dispatch_overhead(
    plugin: &Path,
    job_type: &str,
    count: u32,
    runs: u32,
) -> anyhow::Result<Spread> {
    let runtime = Runtime::new(1, CodeCache::new(None))
        .map_err(|e| anyhow::anyhow!("cannot start the wasm runtime: {e}"))?;
    let plugin = Arc::new(runtime.load(plugin)?);
    let envelope = Envelope::new(JobType::parse(job_type)?, PAYLOAD.as_bytes().to_vec());
    let job = Job {
        id: envelope.job_id.to_string(),
        job_type: envelope.job_type.to_string(),
        enqueued_at_ms: envelope.produced_at_ms(),
        payload: envelope.payload,
        attempt: 1,
        max_attempts: 5,
        trace_id: None,
    };
    if !matches!(plugin.run(&job), RunOutcome::Success { .. }) {
        anyhow::bail!("the plugin does not succeed on {job_type} jobs");
    }
    let per_job = (0..runs.max(1))
        .map(|_| {
            let started = Instant::now();
            for _ in 0..count {
                let _ = plugin.run(&job);
            }
            started.elapsed().as_secs_f64() * 1e6 / f64::from(count.max(1))
        })
        .collect();
    Ok(Spread::of(per_job))
}

/// Resident memory of this process, in MiB.
pub fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}
