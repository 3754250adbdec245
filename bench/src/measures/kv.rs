//! The "key-value increment per job" measure (SPEC §10, issue #16): jobs/s
//! of the `tally` plugin, which adds to two counters of its `customers`
//! bucket per job (buffered in the job, applied by the script that acks it),
//! beside the same number of `hello` jobs drained the same way, so the
//! report can say what committing key-value writes with the ack costs a job.
//!
//! Every tally job counts the same customer, so the last figure read back
//! must equal the number of jobs: a measure that lost or doubled counts
//! would be measuring something else.

use std::path::Path;

use anyhow::Context;
use tempfile::TempDir;

use super::{drain_queue, jobs_of};

/// The customer every tally job counts, and what each job adds.
const CUSTOMER: &str = "c-17";
const CENTS: u64 = 1250;

/// What one run of the measure found.
#[derive(Debug, Clone, Copy)]
pub struct KvFigures {
    /// Jobs/s of `tally`, two increments committed with each ack.
    pub tally: f64,
    /// Jobs/s of `hello` draining the same number of jobs the same way.
    pub hello: f64,
}

impl KvFigures {
    /// µs a tally job costs beyond a hello job, per job in wall time at the
    /// same concurrency: the reads, the buffered writes and their commit.
    pub fn commit_us(&self) -> f64 {
        (1.0 / self.tally - 1.0 / self.hello) * 1e6
    }
}

/// A plugins folder holding copies of `NAME.wasm` (and `NAME.toml`, if
/// there is one) from `plugins` for each of `names`.
fn folder_of(plugins: &Path, names: &[&str]) -> anyhow::Result<TempDir> {
    let folder = tempfile::tempdir()?;
    for name in names {
        for file in [format!("{name}.wasm"), format!("{name}.toml")] {
            let from = plugins.join(&file);
            if file.ends_with(".toml") && !from.is_file() {
                continue;
            }
            std::fs::copy(&from, folder.path().join(&file))
                .with_context(|| format!("copying {}", from.display()))?;
        }
    }
    Ok(folder)
}

/// One run: `count` tally jobs and `count` hello jobs, at `concurrency`
/// with `prefetch`, with the plugins of `plugins` (which must hold
/// `tally.wasm`, its `tally.toml` granting `customers`, and `hello.wasm`).
pub async fn kv_increment_per_job(
    url: &str,
    plugins: &Path,
    count: usize,
    concurrency: usize,
    prefetch: usize,
) -> anyhow::Result<KvFigures> {
    let tallies = folder_of(plugins, &["tally"])?;
    let hellos = folder_of(plugins, &["hello"])?;
    let queue = format!("kv{}", fastrand::u32(..));
    let payload = format!(r#"{{"customer":"{CUSTOMER}","amount_cents":{CENTS}}}"#);
    let tally = drain_queue(
        url,
        tallies.path(),
        &queue,
        jobs_of(count, "tally.order", &payload)?,
        concurrency,
        prefetch,
    )
    .await?;
    let mut conn = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    let (orders, cents): (Option<u64>, Option<u64>) = redis::cmd("HMGET")
        .arg(format!("bench:{{{queue}}}:kv:customers"))
        .arg(format!("{CUSTOMER}:orders"))
        .arg(format!("{CUSTOMER}:cents"))
        .query_async(&mut conn)
        .await?;
    anyhow::ensure!(
        orders == Some(count as u64) && cents == Some(count as u64 * CENTS),
        "{count} tally jobs done, but the bucket counts {orders:?} orders and {cents:?} cents"
    );
    let hello = drain_queue(
        url,
        hellos.path(),
        &format!("kvhello{}", fastrand::u32(..)),
        jobs_of(count, "hello.bench", super::PAYLOAD)?,
        concurrency,
        prefetch,
    )
    .await?;
    Ok(KvFigures { tally, hello })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commit_cost_is_the_difference_in_time_per_job() {
        let figures = KvFigures {
            tally: 10_000.0,
            hello: 20_000.0,
        };
        assert!((figures.commit_us() - 50.0).abs() < 1e-9);
    }
}
