//! The measures: each runs against the bench's redis-server (flushed before
//! it) and returns jobs/s, µs or MiB. The in-process hosts are the library's
//! `host::run`; the ones measured from outside are `jobhost run` processes.

mod child;
mod http;
mod kv;
mod languages;
mod limits;
mod memory;
mod startup;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use jobhost::broker::Redis;
use jobhost::envelope::{Envelope, JobType};
use jobhost::host::{self, HostConfig};
use jobhost::keys::QueueKeys;
use jobhost::plugins::{Cancel, CodeCache, InstanceCache, Job, RunOutcome, Runtime, Services};
use tempfile::TempDir;

pub use http::{HttpFigures, http_post_per_job};
pub use kv::{KvFigures, kv_increment_per_job};
pub use languages::{JOBS_PER_INSTANCE as LANGUAGE_JOBS_PER_INSTANCE, SUBJECTS, language_cost};
pub use limits::{RATE as LIMITED_RATE, limited_jobs_rate};
pub use memory::host_memory;
pub use startup::first_job_ms;

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
    jobs_of(count, job_type, PAYLOAD)
}

fn jobs_of(count: usize, job_type: &str, payload: &str) -> anyhow::Result<Vec<Envelope>> {
    let job_type = JobType::parse(job_type)?;
    Ok((0..count)
        .map(|_| Envelope::new(job_type.clone(), payload.as_bytes().to_vec()))
        .collect())
}

/// Jobs/s of pipelined XADDs (1,000 a round trip) through the producer.
pub async fn enqueue_rate(url: &str, count: usize) -> anyhow::Result<f64> {
    let keys = QueueKeys::new("bench", "enqueue");
    let mut producer = Redis::connect(url).await?;
    let jobs = jobs(count, "hello.bench")?;
    let started = Instant::now();
    for chunk in jobs.chunks(CHUNK) {
        producer.enqueue_batch(&keys, chunk).await?;
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
    let jobs = jobs(count, job_type)?;
    drain_queue(url, plugins, &queue, jobs, concurrency, prefetch).await
}

/// Jobs/s of a host draining `jobs`, enqueued first on `queue` (of
/// namespace `bench`), from host start to the last ack.
async fn drain_queue(
    url: &str,
    plugins: &Path,
    queue: &str,
    jobs: Vec<Envelope>,
    concurrency: usize,
    prefetch: usize,
) -> anyhow::Result<f64> {
    let count = jobs.len();
    let keys = QueueKeys::new("bench", queue);
    let mut producer = Redis::connect(url).await?;
    for chunk in jobs.chunks(CHUNK) {
        producer.enqueue_batch(&keys, chunk).await?;
    }
    let mut conn = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    let config = host_config(url, plugins, queue, concurrency, prefetch);
    let (trigger, shutdown) = jobhost::shutdown::channel();
    let started = Instant::now();
    let running = tokio::spawn(host::run(config, shutdown));
    wait_until_done(&mut conn, &keys, count as u64, || running.is_finished()).await?;
    let elapsed = started.elapsed();
    trigger.trigger();
    running.await.context("host task")??;
    Ok(count as f64 / elapsed.as_secs_f64())
}

/// Queue wait (enqueue → handler start) at a steady `rate` jobs/s for `count`
/// jobs: the p50, p99 and max as bucket bounds of the host's histogram, in ms.
pub async fn latency(
    url: &str,
    plugins: &Path,
    job_type: &str,
    rate: f64,
    count: u64,
) -> anyhow::Result<(f64, f64, f64)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let queue = format!("latency{}", fastrand::u32(..));
    let keys = QueueKeys::new("bench", &queue);
    let mut config = host_config(url, plugins, &queue, num_threads(), 64);
    config.metrics_addr = Some(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    let (trigger, shutdown) = jobhost::shutdown::channel();
    let running = tokio::spawn(host::run(config, shutdown.clone()));
    let mut conn = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    // Wait until the host consumes: the metrics endpoint answers once it does.
    while http_get(port, "/healthz").await.is_err() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let producer = Redis::connect(url).await?;
    let lease = jobhost::generator::Lease::new(
        producer.clone(),
        &format!("bench-{queue}"),
        "bench".to_owned(),
        jobhost::generator::LEASE_TTL,
    );
    let generator = jobhost::generator::GeneratorConfig {
        job_type: JobType::parse(job_type)?,
        rate,
        count: Some(count),
        payload: Some(PAYLOAD.to_owned()),
    };
    // Held until the end: a dropped trigger reads as "stop".
    let (_keep_running, never) = jobhost::shutdown::channel();
    jobhost::generator::run(
        producer,
        &keys,
        lease,
        generator,
        jobhost::generator::Role::Dedicated,
        never,
    )
    .await?;
    wait_until_done(&mut conn, &keys, count, || running.is_finished()).await?;
    let metrics = http_get(port, "/metrics").await?;
    trigger.trigger();
    running.await.context("host task")??;
    let buckets: Vec<(f64, f64)> = metrics
        .lines()
        .filter_map(|line| line.strip_prefix("jobhost_queue_wait_seconds_bucket{le=\""))
        .filter_map(|rest| {
            let (bound, value) = rest.split_once("\"} ")?;
            Some((bound.parse().unwrap_or(f64::INFINITY), value.parse().ok()?))
        })
        .collect();
    let total = buckets.last().map_or(0.0, |b| b.1);
    let quantile = |q: f64| {
        buckets
            .iter()
            .find(|(_, n)| *n >= q * total)
            .map_or(f64::INFINITY, |(bound, _)| bound * 1000.0)
    };
    Ok((quantile(0.5), quantile(0.99), quantile(1.0)))
}

/// Waits until the host has recorded `count` jobs done, failing if it stops
/// first (`stopped`) or takes longer than five minutes.
async fn wait_until_done(
    conn: &mut redis::aio::MultiplexedConnection,
    keys: &QueueKeys,
    count: u64,
    mut stopped: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let done: Option<u64> = redis::cmd("HGET")
            .arg(&keys.counters)
            .arg("done")
            .query_async(conn)
            .await?;
        if done.unwrap_or(0) >= count {
            return Ok(());
        }
        anyhow::ensure!(!stopped(), "the host stopped before finishing the jobs");
        anyhow::ensure!(
            Instant::now() < deadline,
            "the host did not finish {count} jobs within 5 minutes"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(response)
}

fn num_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The settings of an in-process host: `jobhost run`'s defaults, without a
/// code cache, on a queue of the bench's own.
fn host_config(
    url: &str,
    plugins: &Path,
    queue: &str,
    concurrency: usize,
    prefetch: usize,
) -> HostConfig {
    let mut config = HostConfig::with_defaults(url, plugins);
    config.namespace = "bench".to_owned();
    config.queues = vec![jobhost::host::QueueSpec::named(queue)];
    config.concurrency = concurrency;
    config.prefetch = prefetch;
    config.cache_dir = None;
    config
}

/// The floor: a bare XREADGROUP COUNT `batch` + XACK loop over `count` entries.
pub async fn raw_floor(url: &str, count: usize, batch: usize) -> anyhow::Result<f64> {
    let stream = format!("bench:{{raw{}}}:stream", fastrand::u32(..));
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
    let runtime = Runtime::new(1, CodeCache::new(None), Services::standalone())
        .map_err(|e| anyhow::anyhow!("cannot start the wasm runtime: {e}"))?;
    let mut plugin = runtime.load(plugin)?;
    // A fresh instance per job, whatever a manifest beside the file says.
    plugin.limits.jobs_per_instance = 1;
    let plugin = Arc::new(plugin);
    let mut cache = InstanceCache::default();
    let envelope = Envelope::new(JobType::parse(job_type)?, PAYLOAD.as_bytes().to_vec());
    let job = Job::from_envelope(&envelope, 5, envelope.produced_at_ms());
    if !matches!(
        plugin.run(&job, "default", &Cancel::never(), &mut cache),
        RunOutcome::Success { .. }
    ) {
        anyhow::bail!("the plugin does not succeed on {job_type} jobs");
    }
    let per_job = (0..runs.max(1))
        .map(|_| {
            let started = Instant::now();
            for _ in 0..count {
                let _ = plugin.run(&job, "default", &Cancel::never(), &mut cache);
            }
            started.elapsed().as_secs_f64() * 1e6 / f64::from(count.max(1))
        })
        .collect();
    Ok(Spread::of(per_job))
}

/// Jobs one instance serves in the instance-reuse drain benchmark.
pub const REUSE_JOBS_PER_INSTANCE: u32 = 1000;

/// A plugins folder of its own holding a copy of `plugin` (`NAME.wasm`) and a
/// manifest `NAME.toml` that opts it into instance reuse.
pub fn reuse_folder(plugin: &Path, jobs_per_instance: u32) -> anyhow::Result<TempDir> {
    let folder = tempfile::tempdir()?;
    let file = plugin
        .file_name()
        .with_context(|| format!("{} is not a file", plugin.display()))?;
    std::fs::copy(plugin, folder.path().join(file))
        .with_context(|| format!("copying {}", plugin.display()))?;
    std::fs::write(
        folder.path().join(file).with_extension("toml"),
        format!("[limits]\njobs_per_instance = {jobs_per_instance}\n"),
    )?;
    Ok(folder)
}

/// Resident memory of this process, in MiB.
pub fn rss_mib() -> f64 {
    status_mib(std::process::id(), "VmRSS").unwrap_or(0.0)
}

/// A `/proc/PID/status` figure given in kB (`VmRSS`, `VmHWM`), in MiB.
fn status_mib(pid: u32, field: &str) -> Option<f64> {
    jobhost_tests::proc_status::status_kib(pid, field).map(|kib| kib as f64 / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spread_is_the_median_and_the_extremes_in_any_order() {
        let spread = Spread::of(vec![3.0, 1.0, 2.0]);
        assert_eq!((spread.median, spread.min, spread.max), (2.0, 1.0, 3.0));
    }
}
