//! Measure 11: what a plugin in another language costs (README "Plugins in
//! other languages"), beside the Rust `hello`: its file size; the start of a
//! `jobhost run` (a child process) that compiles it (cold code cache) and
//! one that loads the cached code (warm); the host's idle RSS with it loaded
//! after each;
//! and jobs/s with a fresh instance per job and with instance reuse
//! (`jobs_per_instance`), with the host's peak RSS during those drains.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use jobhost::broker::Redis;
use jobhost::keys::QueueKeys;
use jobhost_tests::Host;

use super::child::child_host;
use super::{CHUNK, jobs_of, status_mib, wait_until_done};

/// Jobs one instance serves in the reuse drain: what the README recommends.
pub const JOBS_PER_INSTANCE: u32 = 1000;

/// One plugin under measure: its file (in `--plugins`) and the job it runs.
pub struct Subject {
    pub name: &'static str,
    pub job_type: &'static str,
    pub payload: &'static str,
    /// Its manifest's `[grants]` lines (py-greeter's follow-up counts in a bucket).
    pub grants: &'static str,
    /// Jobs done per job enqueued: 2 when each enqueues a follow-up.
    pub jobs_per_enqueued: u64,
}

/// The plugins measured: the Rust baseline and the two examples.
pub const SUBJECTS: [Subject; 3] = [
    Subject {
        name: "hello",
        job_type: "hello.bench",
        payload: r#"{"name":"Ada"}"#,
        grants: "",
        jobs_per_enqueued: 1,
    },
    Subject {
        name: "py-greeter",
        job_type: "py.greet",
        payload: r#"{"name":"Ada"}"#,
        grants: "keyvalue = [\"greetings\"]",
        jobs_per_enqueued: 2,
    },
    Subject {
        name: "js-greeter",
        job_type: "js.greet",
        payload: r#"{"name":"Ada"}"#,
        grants: "",
        jobs_per_enqueued: 2,
    },
];

/// What one plugin costs.
#[derive(Debug, Clone)]
pub struct LanguageFigures {
    pub size_mib: f64,
    /// Process start to consuming, compiling the plugin (empty cache), in s.
    pub cold_start_s: f64,
    /// The same with the compiled code cached, in s.
    pub warm_start_s: f64,
    /// RSS of the cold host (it compiled the plugin), idle, in MiB.
    pub cold_idle_mib: f64,
    /// RSS of the warm host, idle with the plugin loaded, in MiB.
    pub idle_mib: f64,
    /// Jobs/s (follow-ups included), a fresh instance per job.
    pub fresh_rate: f64,
    /// Jobs/s, one instance serving [`JOBS_PER_INSTANCE`] jobs.
    pub reuse_rate: f64,
    /// The host's peak RSS (VmHWM) over both drains, in MiB.
    pub peak_mib: f64,
}

/// Measures `subject` from `plugins` with `count` jobs enqueued per drain.
pub async fn language_cost(
    url: &str,
    plugins: &Path,
    subject: &Subject,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<LanguageFigures> {
    let file = plugins.join(format!("{}.wasm", subject.name));
    let size = std::fs::metadata(&file)
        .with_context(|| format!("{} (run scripts/build-plugins)", file.display()))?
        .len();
    let folder = tempfile::tempdir()?;
    std::fs::copy(&file, folder.path().join(format!("{}.wasm", subject.name)))?;
    let manifest = folder.path().join(format!("{}.toml", subject.name));
    let write_manifest = |limits: &str| {
        std::fs::write(
            &manifest,
            format!("[grants]\n{}\n\n[limits]\n{limits}\n", subject.grants),
        )
    };
    write_manifest("")?;
    let cache = tempfile::tempdir()?;
    let queue = format!("lang{}", fastrand::u32(..));
    let start = |queue: &str| {
        let host = child_host(url, folder.path(), cache.path(), queue, concurrency).metrics();
        let started = Instant::now();
        let host = tokio::task::block_in_place(|| host.start());
        (host, started.elapsed().as_secs_f64())
    };

    let (cold, cold_start_s) = start(&queue);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cold_idle_mib = rss(&cold, "VmRSS")?;
    drop(cold);
    let (host, warm_start_s) = start(&queue);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_mib = rss(&host, "VmRSS")?;
    let fresh_rate = drain(url, &queue, subject, count, &host).await?;
    let fresh_peak = rss(&host, "VmHWM")?;
    drop(host);

    write_manifest(&format!("jobs_per_instance = {JOBS_PER_INSTANCE}"))?;
    let queue = format!("lang{}", fastrand::u32(..));
    let (host, _) = start(&queue);
    let reuse_rate = drain(url, &queue, subject, count, &host).await?;
    let peak_mib = fresh_peak.max(rss(&host, "VmHWM")?);
    Ok(LanguageFigures {
        size_mib: size as f64 / (1 << 20) as f64,
        cold_start_s,
        warm_start_s,
        cold_idle_mib,
        idle_mib,
        fresh_rate,
        reuse_rate,
        peak_mib,
    })
}

/// Jobs/s of `host` draining `count` jobs of `subject` (and their
/// follow-ups) on `queue`, from the first enqueue to the last ack.
async fn drain(
    url: &str,
    queue: &str,
    subject: &Subject,
    count: usize,
    host: &Host,
) -> anyhow::Result<f64> {
    let keys = QueueKeys::new("bench", queue);
    let mut producer = Redis::connect(url).await?;
    let mut conn = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    let jobs = jobs_of(count, subject.job_type, subject.payload)?;
    let started = Instant::now();
    for chunk in jobs.chunks(CHUNK) {
        producer.enqueue_batch(&keys, chunk).await?;
    }
    let done = count as u64 * subject.jobs_per_enqueued;
    wait_until_done(&mut conn, &keys, done, || host.exited()).await?;
    Ok(done as f64 / started.elapsed().as_secs_f64())
}

fn rss(host: &Host, field: &str) -> anyhow::Result<f64> {
    status_mib(host.pid(), field).with_context(|| format!("no {field} in the host's /proc status"))
}
