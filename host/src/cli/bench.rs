//! `jobhost bench`: the performance figures, measured here and now. Build with
//! `--release` before trusting them; each starts its own redis-server.

use std::path::PathBuf;

use clap::Args;

use crate::bench::{self, BenchRedis, Spread};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Folder of plugins for the drain benchmark (must handle --type).
    #[arg(long, value_name = "DIR", default_value = "plugins")]
    pub plugins: PathBuf,
    /// Job type the drain and overhead benchmarks run (a trivial JSON-parsing handler).
    #[arg(long = "type", value_name = "TYPE", default_value = "hello.bench")]
    pub job_type: String,
    /// Jobs per run of the Redis benchmarks.
    #[arg(long, default_value_t = 100_000)]
    pub jobs: usize,
    /// Runs of each benchmark; the median, min and max are reported.
    #[arg(long, default_value_t = 3)]
    pub runs: u32,
    /// Job threads of the drain benchmark [default: number of CPUs].
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Jobs in flight per thread in the drain benchmark (`run --prefetch`).
    #[arg(long, default_value_t = 256)]
    pub prefetch: usize,
    /// Only the per-job overhead, without Redis.
    #[arg(long)]
    pub overhead_only: bool,
    /// Jobs drained by the `jobhost run` process whose memory is measured (0: skip).
    #[arg(long, default_value_t = 1_000_000)]
    pub memory_jobs: u64,
}

fn show(what: &str, unit: &str, spread: Spread) {
    println!(
        "{what:<52} median {:>10.1} {unit:<7} min {:>10.1}  max {:>10.1}",
        spread.median, spread.min, spread.max
    );
}

pub async fn execute(args: BenchArgs) -> anyhow::Result<i32> {
    let plugin = args.plugins.join(format!(
        "{}.wasm",
        args.job_type.split('.').next().unwrap_or("hello")
    ));
    let runs = args.runs.max(1);
    println!(
        "machine: {} CPUs; {} jobs per run, {runs} runs",
        num_cpus(),
        args.jobs
    );
    let overhead = tokio::task::block_in_place(|| {
        bench::dispatch_overhead(&plugin, &args.job_type, 20_000, runs.max(3))
    })?;
    show(
        "5. per-job overhead, fresh instance (no Redis)",
        "µs/job",
        overhead,
    );
    if args.overhead_only {
        return Ok(0);
    }
    let redis = BenchRedis::start()?;
    let concurrency = args.concurrency.unwrap_or_else(num_cpus);
    let reuse = bench::reuse_folder(&plugin, bench::REUSE_JOBS_PER_INSTANCE)?;
    let mut enqueue = Vec::new();
    let mut drain = Vec::new();
    let mut drain_reuse = Vec::new();
    let mut floor = Vec::new();
    for _ in 0..runs {
        redis.flush()?;
        enqueue.push(bench::enqueue_rate(&redis.url, args.jobs).await?);
        redis.flush()?;
        drain.push(
            bench::drain_rate(
                &redis.url,
                &args.plugins,
                &args.job_type,
                args.jobs,
                concurrency,
                args.prefetch,
            )
            .await?,
        );
        redis.flush()?;
        drain_reuse.push(
            bench::drain_rate(
                &redis.url,
                &reuse.0,
                &args.job_type,
                args.jobs,
                concurrency,
                args.prefetch,
            )
            .await?,
        );
        redis.flush()?;
        floor.push(bench::raw_floor(&redis.url, args.jobs, 100).await?);
    }
    show(
        "1. enqueue, pipelined batches",
        "jobs/s",
        Spread::of(enqueue),
    );
    let drain = Spread::of(drain);
    show(
        &format!(
            "2. drain, fresh instance/job ({concurrency} thr, prefetch {})",
            args.prefetch
        ),
        "jobs/s",
        drain,
    );
    show(
        &format!(
            "3. drain, instance reuse ({} jobs/instance)",
            bench::REUSE_JOBS_PER_INSTANCE
        ),
        "jobs/s",
        Spread::of(drain_reuse),
    );
    redis.flush()?;
    let (p50, p99) =
        bench::latency(&redis.url, &args.plugins, &args.job_type, 2000.0, 20_000).await?;
    println!(
        "{:<52} p50 <= {p50} ms, p99 <= {p99} ms (histogram bucket bounds)",
        "4. queue wait at 2,000 jobs/s (enqueue -> start)"
    );
    let floor = Spread::of(floor);
    show("6. raw floor: XREADGROUP COUNT 100 + XACK", "jobs/s", floor);
    println!(
        "{:<52} {:.0}% of the raw floor",
        "   drain / floor",
        100.0 * drain.median / floor.median
    );
    if args.memory_jobs > 0 {
        redis.flush()?;
        let memory = bench::host_memory(
            &redis.url,
            &args.plugins,
            &args.job_type,
            args.memory_jobs,
            concurrency,
        )
        .await?;
        println!(
            "{:<52} idle {:.1} MiB (cold cache {:.1}); {} ; peak {:.1} MiB",
            format!("7. `jobhost run` RSS, {} plugins", memory.plugins),
            memory.idle,
            memory.idle_cold,
            memory
                .during
                .iter()
                .map(|(jobs, mib)| format!("after {jobs} jobs {mib:.1}"))
                .collect::<Vec<_>>()
                .join(", "),
            memory.peak
        );
    }
    println!(
        "{:<52} {:.1} MiB",
        "   bench process RSS (in-process hosts, after the runs)",
        bench::rss_mib()
    );
    Ok(0)
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
