//! The "fleet-wide rate" measure (issue #17): jobs/s of `hello` under a
//! manifest `rate`, drained by one host, against the rate itself. Every job
//! passes `limit.lua` once or twice (a job over the rate reserves its slot,
//! waits in the delayed set, and comes back), so this shows both whether the
//! host keeps up with the limit and how close to it the fleet gets.

use std::path::Path;

use anyhow::Context;

use super::{drain_queue, jobs};

/// The rate the measure's manifest sets, in jobs/s, and its burst.
pub const RATE: u32 = 2000;
const BURST: u32 = 100;

/// One run: `count` hello jobs under `rate = "2000/s"`, jobs/s achieved.
pub async fn limited_jobs_rate(
    url: &str,
    plugins: &Path,
    count: usize,
    concurrency: usize,
    prefetch: usize,
) -> anyhow::Result<f64> {
    let folder = tempfile::tempdir()?;
    let from = plugins.join("hello.wasm");
    std::fs::copy(&from, folder.path().join("hello.wasm"))
        .with_context(|| format!("copying {}", from.display()))?;
    std::fs::write(
        folder.path().join("hello.toml"),
        format!("[limits]\nrate = \"{RATE}/s\"\nburst = {BURST}\n"),
    )?;
    drain_queue(
        url,
        folder.path(),
        &format!("limited{}", fastrand::u32(..)),
        jobs(count, "hello.bench")?,
        concurrency,
        prefetch,
    )
    .await
}
