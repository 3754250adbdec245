//! Measure 7: the resident memory of a real `jobhost run` process (started
//! as a child) with ten plugins loaded: idle after a cold and after a warm
//! start, and at checkpoints of a long drain.

use std::path::Path;

use anyhow::Context;
use jobhost::broker::Redis;
use jobhost::keys::QueueKeys;
use jobhost_tests::Host;
use tempfile::TempDir;

use super::child::{child_host, start_settled};
use super::{CHUNK, jobs, status_mib, wait_until_done};

/// Plugins the measured host loads.
pub const PLUGINS: usize = 10;
/// Most jobs waiting in Redis at once while the drain runs, so that Redis's
/// memory, not the host's, stays small.
const MAX_BACKLOG: u64 = 100_000;

/// What the host's memory came to, in MiB.
#[derive(Debug, Clone)]
pub struct HostMemory {
    pub plugins: usize,
    /// Idle, having just compiled every plugin (empty code cache).
    pub idle_cold: f64,
    /// Idle, restarted with a warm code cache.
    pub idle: f64,
    /// (jobs done, RSS) during the drain that follows the warm start.
    pub during: Vec<(u64, f64)>,
    /// The warm host's peak RSS (VmHWM).
    pub peak: f64,
}

/// Starts `jobhost run` twice on a folder of [`PLUGINS`] plugins (cold, then
/// warm cache) and drains `count` jobs of `job_type` through the warm one.
pub async fn host_memory(
    url: &str,
    plugins: &Path,
    job_type: &str,
    count: u64,
    concurrency: usize,
) -> anyhow::Result<HostMemory> {
    let folder = ten_plugins(plugins)?;
    let queue = format!("memory{}", fastrand::u32(..));
    let cache = folder.path().join("cache");
    let idle_cold = {
        let host = start_settled(child_host(url, folder.path(), &cache, &queue, concurrency)).await;
        memory_mib(&host, "VmRSS")?
    };
    let host = start_settled(child_host(url, folder.path(), &cache, &queue, concurrency)).await;
    let idle = memory_mib(&host, "VmRSS")?;

    let keys = QueueKeys::new("bench", &queue);
    let mut producer = Redis::connect(url).await?;
    let mut conn = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    let mut during = Vec::new();
    let mut enqueued = 0u64;
    let mut checkpoints = vec![count / 10, count / 2, count];
    checkpoints.dedup();
    for checkpoint in checkpoints {
        while enqueued < checkpoint {
            let n = (checkpoint - enqueued).min(CHUNK as u64);
            producer
                .enqueue_batch(&keys, &jobs(n as usize, job_type)?)
                .await?;
            enqueued += n;
            if enqueued.is_multiple_of(20 * CHUNK as u64) {
                let allowed = enqueued.saturating_sub(MAX_BACKLOG);
                wait_until_done(&mut conn, &keys, allowed, || host.exited()).await?;
            }
        }
        wait_until_done(&mut conn, &keys, checkpoint, || host.exited()).await?;
        during.push((checkpoint, memory_mib(&host, "VmRSS")?));
    }
    Ok(HostMemory {
        plugins: PLUGINS,
        idle_cold,
        idle,
        during,
        peak: memory_mib(&host, "VmHWM")?,
    })
}

/// A memory figure of the host's `/proc/PID/status` (`VmRSS`, `VmHWM`), in MiB.
fn memory_mib(host: &Host, field: &str) -> anyhow::Result<f64> {
    status_mib(host.pid(), field).with_context(|| format!("no {field} in the host's /proc status"))
}

/// A folder of [`PLUGINS`] distinct plugins: every `*.wasm` of `plugins`, and
/// copies of its `hello.wasm` renamed `ben01`, `ben02`, ... (name and pattern
/// `hello.*` rewritten in place: same length, so the component stays valid,
/// and a different content hash, so each is compiled and loaded on its own).
fn ten_plugins(plugins: &Path) -> anyhow::Result<TempDir> {
    let folder = tempfile::tempdir()?;
    let mut loaded = 0;
    for file in jobhost::plugins::wasm_files(plugins)?
        .into_iter()
        .take(PLUGINS)
    {
        let name = file.file_name().context("a plugin file has a name")?;
        std::fs::copy(&file, folder.path().join(name))?;
        loaded += 1;
    }
    let hello = std::fs::read(plugins.join("hello.wasm")).with_context(|| {
        format!(
            "{}/hello.wasm (run scripts/build-plugins)",
            plugins.display()
        )
    })?;
    for n in 1..=PLUGINS - loaded {
        let name = format!("ben{n:02}");
        let copy = replace_all(&hello, b"hello", name.as_bytes());
        std::fs::write(folder.path().join(format!("{name}.wasm")), copy)?;
    }
    Ok(folder)
}

/// `bytes` with every `from` replaced by `to` (of the same length).
fn replace_all(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len(), "a same-length replacement");
    let mut out = bytes.to_vec();
    let mut at = 0;
    while let Some(found) = out[at..].windows(from.len()).position(|w| w == from) {
        out[at + found..at + found + to.len()].copy_from_slice(to);
        at += found + to.len();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacement_rewrites_every_occurrence() {
        assert_eq!(
            replace_all(b"hello.* and hello", b"hello", b"ben01"),
            b"ben01.* and ben01"
        );
    }
}
