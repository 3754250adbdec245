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

/// What a figure must reach on the 2-core reference machine (issue #9).
#[derive(Debug, Clone, Copy)]
enum Target {
    AtLeast(f64),
    AtMost(f64),
    None,
}

impl Target {
    fn verdict(self, value: f64) -> String {
        match self {
            Target::AtLeast(goal) => format!("target >= {goal}: {}", met(value >= goal)),
            Target::AtMost(goal) => format!("target <= {goal}: {}", met(value <= goal)),
            Target::None => String::new(),
        }
    }
}

fn met(yes: bool) -> &'static str {
    if yes { "met" } else { "NOT MET" }
}

fn show(what: &str, unit: &str, spread: Spread, target: Target) {
    println!(
        "{what:<52} median {:>9.1} {unit:<6} min {:>9.1} max {:>9.1}  {}",
        spread.median,
        spread.min,
        spread.max,
        target.verdict(spread.median)
    );
}

fn line(what: &str, text: &str) {
    println!("{what:<52} {text}");
}

pub async fn execute(args: BenchArgs) -> anyhow::Result<i32> {
    let plugin = args.plugins.join(format!(
        "{}.wasm",
        args.job_type.split('.').next().unwrap_or("hello")
    ));
    let runs = args.runs.max(1);
    println!(
        "machine: {} CPUs ({}); {} jobs per run, {runs} runs",
        num_cpus(),
        cpu_model(),
        args.jobs
    );
    let overhead = tokio::task::block_in_place(|| {
        bench::dispatch_overhead(&plugin, &args.job_type, 20_000, runs.max(3))
    })?;
    show(
        "5. per-job overhead, fresh instance (no Redis)",
        "µs/job",
        overhead,
        Target::AtMost(10.0),
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
        // The same drain twice: a fresh instance per job, then instance reuse.
        for (folder, rates) in [(&args.plugins, &mut drain), (&reuse.0, &mut drain_reuse)] {
            redis.flush()?;
            rates.push(
                bench::drain_rate(
                    &redis.url,
                    folder,
                    &args.job_type,
                    args.jobs,
                    concurrency,
                    args.prefetch,
                )
                .await?,
            );
        }
        redis.flush()?;
        floor.push(bench::raw_floor(&redis.url, args.jobs, 100).await?);
    }
    show(
        "1. enqueue, pipelined batches",
        "jobs/s",
        Spread::of(enqueue),
        Target::AtLeast(300_000.0),
    );
    let drain = Spread::of(drain);
    show(
        &format!(
            "2. drain, fresh instance/job ({concurrency} thr, prefetch {})",
            args.prefetch
        ),
        "jobs/s",
        drain,
        Target::AtLeast(75_000.0),
    );
    show(
        &format!(
            "3. drain, instance reuse ({} jobs/instance)",
            bench::REUSE_JOBS_PER_INSTANCE
        ),
        "jobs/s",
        Spread::of(drain_reuse),
        Target::AtLeast(120_000.0),
    );
    redis.flush()?;
    let (p50, p99, max) =
        bench::latency(&redis.url, &args.plugins, &args.job_type, 2000.0, 20_000).await?;
    line(
        "4. queue wait at 2,000 jobs/s (enqueue -> start)",
        &format!(
            "p50 <= {p50} ms, p99 <= {p99} ms, max <= {max} ms (bucket bounds)  {}",
            Target::AtMost(2.0).verdict(p99)
        ),
    );
    let floor = Spread::of(floor);
    show(
        "6. raw floor: XREADGROUP COUNT 100 + XACK",
        "jobs/s",
        floor,
        Target::None,
    );
    let share = 100.0 * drain.median / floor.median;
    line(
        "   drain (2.) / floor (6.)",
        &format!("{share:.0}%  {}", Target::AtLeast(50.0).verdict(share)),
    );
    redis.flush()?;
    let startup =
        bench::first_job_ms(&redis.url, &args.plugins, &args.job_type, concurrency, runs).await?;
    show(
        "   start -> first job served, warm code cache",
        "ms",
        startup,
        Target::AtMost(100.0),
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
        line(
            &format!("7. `jobhost run` RSS, {} plugins", memory.plugins),
            &format!(
                "idle {:.1} MiB (cold cache {:.1}); {}; peak {:.1} MiB",
                memory.idle,
                memory.idle_cold,
                memory
                    .during
                    .iter()
                    .map(|(jobs, mib)| format!("after {jobs} jobs {mib:.1}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                memory.peak
            ),
        );
        line("   idle RSS", &Target::AtMost(60.0).verdict(memory.idle));
        // The first checkpoint is past warm-up (allocator arenas, the
        // instance pool); what grows after it would be a leak.
        if let (Some(first), Some(last)) = (memory.during.first(), memory.during.last()) {
            let growth = last.1 - first.1;
            line(
                &format!("   growth from {} to {} jobs", first.0, last.0),
                &format!("{growth:.1} MiB  {}", Target::AtMost(2.0).verdict(growth)),
            );
        }
    }
    line(
        "   bench process RSS (in-process hosts, after)",
        &format!("{:.1} MiB", bench::rss_mib()),
    );
    Ok(0)
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The CPU's model name, as Linux reports it.
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
                .map(|(_, name)| name.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned())
}
