//! The start-up measure: from starting `jobhost run` (a child process) with a
//! warm compiled-code cache to the first job it has served.

use std::path::Path;
use std::time::Instant;

use jobhost::broker::Redis;
use jobhost::keys::QueueKeys;

use super::child::child_host;
use super::{Spread, jobs, wait_until_done};

/// Milliseconds from process start to the first job recorded as done, over
/// `runs` starts on the plugins of `plugins`; one start before them fills
/// the code cache and is not counted.
pub async fn first_job_ms(
    url: &str,
    plugins: &Path,
    job_type: &str,
    concurrency: usize,
    runs: u32,
) -> anyhow::Result<Spread> {
    let cache = tempfile::tempdir()?;
    let mut conn = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    let mut times = Vec::new();
    for run in 0..=runs {
        let queue = format!("startup{}", fastrand::u32(..));
        let keys = QueueKeys::new("bench", &queue);
        let mut producer = Redis::connect(url).await?;
        producer.enqueue_batch(&keys, &jobs(1, job_type)?).await?;
        let host = child_host(url, plugins, cache.path(), &queue, concurrency);
        let started = Instant::now();
        let host = host.spawn();
        wait_until_done(&mut conn, &keys, 1, || host.exited()).await?;
        let elapsed = started.elapsed();
        drop(host);
        if run > 0 {
            times.push(elapsed.as_secs_f64() * 1000.0);
        }
    }
    Ok(Spread::of(times))
}
