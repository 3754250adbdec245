//! The start-up measure: from starting `jobhost run` (this binary, as a child
//! process) with a warm compiled-code cache to the first job it has served.

use std::path::Path;
use std::time::Instant;

use super::child::ChildHost;
use super::{ScratchDir, Spread, jobs, wait_until_done};
use crate::broker::Redis;
use crate::keys::QueueKeys;

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
    let cache = ScratchDir::new("startup-cache")?;
    let mut conn = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    let mut times = Vec::new();
    for run in 0..=runs {
        let queue = format!("startup{}", fastrand::u32(..));
        let keys = QueueKeys::new("bench", &queue);
        let mut producer = Redis::connect(url).await?;
        producer.enqueue_batch(&keys, &jobs(1, job_type)?).await?;
        let started = Instant::now();
        let host = ChildHost::spawn(url, plugins, &cache.0, &queue, concurrency, None)?;
        wait_until_done(&mut conn, &keys, 1, || host.stopped()).await?;
        let elapsed = started.elapsed();
        drop(host);
        if run > 0 {
            times.push(elapsed.as_secs_f64() * 1000.0);
        }
    }
    Ok(Spread::of(times))
}
