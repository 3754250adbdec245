//! `jobhost-bench`: jobhost's performance figures, measured here and now
//! against a redis-server of the bench's own. `scripts/bench` builds it and
//! the `jobhost` it starts with `--release`; trust no other build's figures.

mod measures;
mod report;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use jobhost_tests::RedisServer;
use tracing_subscriber::EnvFilter;

use measures::Spread;
use report::{Target, cpu_model, line, num_cpus, show};

/// Measure throughput and per-job overhead against an own redis-server (build with --release first).
#[derive(Debug, Parser)]
#[command(name = "jobhost-bench", version, about)]
struct BenchArgs {
    /// Folder of plugins for the drain benchmark (must handle --type).
    #[arg(long, value_name = "DIR", default_value = "plugins")]
    plugins: PathBuf,
    /// Job type the drain and overhead benchmarks run (a trivial JSON-parsing handler).
    #[arg(long = "type", value_name = "TYPE", default_value = "hello.bench")]
    job_type: String,
    /// Jobs per run of the Redis benchmarks.
    #[arg(long, default_value_t = 100_000)]
    jobs: usize,
    /// Runs of each benchmark; the median, min and max are reported.
    #[arg(long, default_value_t = 3)]
    runs: u32,
    /// Job threads of the drain benchmark [default: number of CPUs].
    #[arg(long)]
    concurrency: Option<usize>,
    /// Jobs in flight per thread in the drain benchmark (`run --prefetch`).
    #[arg(long, default_value_t = 256)]
    prefetch: usize,
    /// Only the per-job overhead, without Redis.
    #[arg(long)]
    overhead_only: bool,
    /// Only the cost of plugins in other languages (measure 11).
    #[arg(long)]
    languages_only: bool,
    /// Jobs enqueued per drain of the other-languages measure (py-greeter,
    /// js-greeter and hello; each greet enqueues a follow-up; 0: skip).
    #[arg(long, default_value_t = 2_000)]
    language_jobs: usize,
    /// Jobs drained by the `jobhost run` process whose memory is measured (0: skip).
    #[arg(long, default_value_t = 1_000_000)]
    memory_jobs: u64,
    /// Jobs per run of the HTTP POST per job measure (`webhook` against a
    /// loopback responder; needs webhook.wasm among --plugins; 0: skip).
    #[arg(long, default_value_t = 5_000)]
    http_jobs: usize,
    /// Jobs per run of the key-value increment per job measure (`tally`,
    /// whose writes commit with the ack; needs tally.wasm and tally.toml
    /// among --plugins; 0: skip).
    #[arg(long, default_value_t = 20_000)]
    kv_jobs: usize,
    /// Jobs per run of the fleet-wide rate measure (`hello` under a manifest
    /// `rate = "2000/s"`, one host; 0: skip).
    #[arg(long, default_value_t = 10_000)]
    limited_jobs: usize,
}

fn main() -> ExitCode {
    // The harness the bench starts its servers with reports failures by
    // panicking, as tests do; here they reach the user as one line.
    std::panic::set_hook(Box::new(|info| {
        let text = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("panicked");
        eprintln!("jobhost-bench: {}", text.replace('\n', " "));
    }));
    let args = BenchArgs::parse();
    init_logging();
    let outcome = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(execute(args)));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("jobhost-bench: {}", format!("{error:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

/// The in-process hosts would otherwise log every job they drain, so `warn`
/// unless `RUST_LOG` says otherwise (the redis client's errors only, as in
/// `jobhost`).
fn init_logging() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn,redis=error"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

async fn execute(args: BenchArgs) -> anyhow::Result<()> {
    let plugin = args.plugins.join(format!(
        "{}.wasm",
        args.job_type.split('.').next().unwrap_or("hello")
    ));
    let runs = args.runs.max(1);
    if args.languages_only {
        println!("machine: {} CPUs ({})", num_cpus(), cpu_model());
        let redis = tokio::task::block_in_place(RedisServer::start);
        return other_languages(&redis, &args).await;
    }
    println!(
        "machine: {} CPUs ({}); {} jobs per run, {runs} runs",
        num_cpus(),
        cpu_model(),
        args.jobs
    );
    let overhead = tokio::task::block_in_place(|| {
        measures::dispatch_overhead(&plugin, &args.job_type, 20_000, runs.max(3))
    })?;
    show(
        "5. per-job overhead, fresh instance (no Redis)",
        "µs/job",
        overhead,
        Target::AtMost(10.0),
    );
    if args.overhead_only {
        return Ok(());
    }
    let redis = tokio::task::block_in_place(RedisServer::start);
    let url = redis.url();
    let concurrency = args.concurrency.unwrap_or_else(num_cpus);
    let reuse = measures::reuse_folder(&plugin, measures::REUSE_JOBS_PER_INSTANCE)?;
    let mut enqueue = Vec::new();
    let mut drain = Vec::new();
    let mut drain_reuse = Vec::new();
    let mut floor = Vec::new();
    for _ in 0..runs {
        flush(&redis)?;
        enqueue.push(measures::enqueue_rate(&url, args.jobs).await?);
        // The same drain twice: a fresh instance per job, then instance reuse.
        for (folder, rates) in [
            (args.plugins.as_path(), &mut drain),
            (reuse.path(), &mut drain_reuse),
        ] {
            flush(&redis)?;
            rates.push(
                measures::drain_rate(
                    &url,
                    folder,
                    &args.job_type,
                    args.jobs,
                    concurrency,
                    args.prefetch,
                )
                .await?,
            );
        }
        flush(&redis)?;
        floor.push(measures::raw_floor(&url, args.jobs, 100).await?);
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
            measures::REUSE_JOBS_PER_INSTANCE
        ),
        "jobs/s",
        Spread::of(drain_reuse),
        Target::AtLeast(120_000.0),
    );
    flush(&redis)?;
    let (p50, p99, max) =
        measures::latency(&url, &args.plugins, &args.job_type, 2000.0, 20_000).await?;
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
    flush(&redis)?;
    let startup =
        measures::first_job_ms(&url, &args.plugins, &args.job_type, concurrency, runs).await?;
    show(
        "   start -> first job served, warm code cache",
        "ms",
        startup,
        Target::AtMost(100.0),
    );
    if args.memory_jobs > 0 {
        flush(&redis)?;
        let memory = measures::host_memory(
            &url,
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
    if args.http_jobs > 0 {
        http_post_per_job(&redis, &args, concurrency, runs).await?;
    }
    if args.kv_jobs > 0 {
        kv_increment_per_job(&redis, &args, concurrency, runs).await?;
    }
    if args.limited_jobs > 0 {
        limited_jobs(&redis, &args, concurrency, runs).await?;
    }
    if args.language_jobs > 0 {
        other_languages(&redis, &args).await?;
    }
    line(
        "   bench process RSS (in-process hosts, after)",
        &format!("{:.1} MiB", measures::rss_mib()),
    );
    Ok(())
}

/// Measure 8, "HTTP POST per job": webhook jobs/s against a loopback
/// responder, hello jobs/s and bare POSTs/s at the same concurrency, and the
/// host's own share of a job's HTTP call.
async fn http_post_per_job(
    redis: &RedisServer,
    args: &BenchArgs,
    concurrency: usize,
    runs: u32,
) -> anyhow::Result<()> {
    if !args.plugins.join("webhook.wasm").is_file() {
        line(
            "8. HTTP POST per job",
            &format!("skipped: no webhook.wasm in {}", args.plugins.display()),
        );
        return Ok(());
    }
    let mut figures = Vec::new();
    for _ in 0..runs {
        flush(redis)?;
        figures.push(
            measures::http_post_per_job(&redis.url(), &args.plugins, args.http_jobs, concurrency)
                .await?,
        );
    }
    let of = |figure: fn(&measures::HttpFigures) -> f64| {
        Spread::of(figures.iter().map(figure).collect())
    };
    show(
        &format!(
            "8. HTTP POST per job, webhook ({} jobs, {concurrency} thr)",
            args.http_jobs
        ),
        "jobs/s",
        of(|f| f.webhook),
        Target::None,
    );
    show(
        "   the same number of hello jobs",
        "jobs/s",
        of(|f| f.hello),
        Target::None,
    );
    show(
        "   bare POSTs from the bench, same concurrency",
        "req/s",
        of(|f| f.bare),
        Target::None,
    );
    show(
        "   host's share of a job's POST (beyond hello + POST)",
        "µs/job",
        of(measures::HttpFigures::overhead_us),
        Target::None,
    );
    Ok(())
}

/// Measure 11, "plugins in other languages": per plugin, its size, cold and
/// warm start, idle RSS, jobs/s fresh and reused, peak RSS; one run each
/// (a cold start of the Python plugin alone takes seconds).
async fn other_languages(redis: &RedisServer, args: &BenchArgs) -> anyhow::Result<()> {
    let concurrency = args.concurrency.unwrap_or_else(num_cpus);
    line(
        &format!(
            "11. other languages ({} jobs + follow-ups, {concurrency} thr)",
            args.language_jobs
        ),
        &format!(
            "size; start cold/warm cache; idle RSS cold/warm; jobs/s fresh, reuse {}; peak RSS",
            measures::LANGUAGE_JOBS_PER_INSTANCE
        ),
    );
    for subject in &measures::SUBJECTS {
        flush(redis)?;
        let cost = measures::language_cost(
            &redis.url(),
            &args.plugins,
            subject,
            args.language_jobs,
            concurrency,
        )
        .await?;
        line(
            &format!("   {}", subject.name),
            &format!(
                "{:.1} MiB; {:.2} s / {:.2} s; {:.0} / {:.0} MiB; {:.0} ({:.0} µs/job), {:.0} ({:.0} µs/job); {:.0} MiB",
                cost.size_mib,
                cost.cold_start_s,
                cost.warm_start_s,
                cost.cold_idle_mib,
                cost.idle_mib,
                cost.fresh_rate,
                concurrency as f64 * 1e6 / cost.fresh_rate,
                cost.reuse_rate,
                concurrency as f64 * 1e6 / cost.reuse_rate,
                cost.peak_mib,
            ),
        );
    }
    Ok(())
}

/// Measure 10, "fleet-wide rate": hello jobs/s drained by one host under a
/// manifest rate, against that rate.
async fn limited_jobs(
    redis: &RedisServer,
    args: &BenchArgs,
    concurrency: usize,
    runs: u32,
) -> anyhow::Result<()> {
    let mut rates = Vec::new();
    for _ in 0..runs {
        flush(redis)?;
        rates.push(
            measures::limited_jobs_rate(
                &redis.url(),
                &args.plugins,
                args.limited_jobs,
                concurrency,
                args.prefetch,
            )
            .await?,
        );
    }
    let limit = f64::from(measures::LIMITED_RATE);
    let achieved = Spread::of(rates);
    show(
        &format!(
            "10. rate-limited hello, rate {limit}/s burst 100 ({} jobs, {concurrency} thr)",
            args.limited_jobs
        ),
        "jobs/s",
        achieved,
        Target::None,
    );
    show(
        "   share of the limit achieved",
        "%",
        Spread::of(vec![
            achieved.median / limit * 100.0,
            achieved.min / limit * 100.0,
            achieved.max / limit * 100.0,
        ]),
        Target::AtLeast(90.0),
    );
    Ok(())
}

/// Measure 9, "key-value increment per job": tally jobs/s (two increments
/// committed with each ack) beside hello jobs/s, and what the commit costs
/// a job.
async fn kv_increment_per_job(
    redis: &RedisServer,
    args: &BenchArgs,
    concurrency: usize,
    runs: u32,
) -> anyhow::Result<()> {
    if !args.plugins.join("tally.wasm").is_file() {
        line(
            "9. key-value increment per job",
            &format!("skipped: no tally.wasm in {}", args.plugins.display()),
        );
        return Ok(());
    }
    let mut figures = Vec::new();
    for _ in 0..runs {
        flush(redis)?;
        figures.push(
            measures::kv_increment_per_job(
                &redis.url(),
                &args.plugins,
                args.kv_jobs,
                concurrency,
                args.prefetch,
            )
            .await?,
        );
    }
    let of =
        |figure: fn(&measures::KvFigures) -> f64| Spread::of(figures.iter().map(figure).collect());
    show(
        &format!(
            "9. KV increments per job, tally ({} jobs, {concurrency} thr)",
            args.kv_jobs
        ),
        "jobs/s",
        of(|f| f.tally),
        Target::None,
    );
    show(
        "   the same number of hello jobs",
        "jobs/s",
        of(|f| f.hello),
        Target::None,
    );
    show(
        "   cost of the KV reads, writes and commit",
        "µs/job",
        of(measures::KvFigures::commit_us),
        Target::None,
    );
    Ok(())
}

/// Empties the bench's redis-server between measures.
fn flush(redis: &RedisServer) -> anyhow::Result<()> {
    redis::cmd("FLUSHALL").query::<()>(&mut redis.try_connection()?)?;
    Ok(())
}
