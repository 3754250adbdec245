//! A test-only plugin whose job types each exercise one behaviour the host
//! must survive or get right: slow jobs, follow-ups across retries, receipts
//! and key-value counts for the chaos test, and hostile code (loops, memory
//! bombs, floods).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use jobhost_sdk::{Error, Job, Output, kv};

fn handle(job: Job) -> Result<Output, Error> {
    match job.job_type() {
        // Slow but honest: sleeps `ms` (payload) milliseconds.
        "test.sleep" => {
            let ms: u64 = job.payload_str()?.trim().parse().unwrap_or(1000);
            jobhost_sdk::info!("sleeping {ms} ms");
            std::thread::sleep(Duration::from_millis(ms));
            Ok(format!("slept {ms} ms").into())
        }
        // Waits `ms` (payload) milliseconds in `poll(2)` on no descriptors:
        // wasi-libc waits in `wasi:io/poll.poll` on a clock subscription, the
        // other way (besides `pollable.block`) a guest can sleep.
        "test.poll" => {
            let ms: i32 = job.payload_str()?.trim().parse().unwrap_or(1000);
            // SAFETY: no descriptors are passed, so nothing is read or written.
            let ready = unsafe { poll(std::ptr::null_mut(), 0, ms) };
            Ok(format!("poll returned {ready}").into())
        }
        // Emits a follow-up, then fails retryably until attempt 3: the follow-up
        // must be written once, by the attempt that succeeds.
        "test.chain" => {
            jobhost_sdk::enqueue("test.chain-next", job.id())?;
            if job.attempt() < 3 {
                return Err(Error::retry(format!("chain attempt {}", job.attempt())));
            }
            Ok(().into())
        }
        "test.chain-next" => Ok(().into()),
        // The chaos test's job: leaves a receipt naming the payload (no
        // plugin handles receipts, so they wait in the delayed set to be
        // counted) and counts itself in key-value state: a marker per job,
        // refused if already committed, and one of 100 shared counters. Both
        // commit with the ack, so a job run twice must neither find its own
        // marker nor count twice.
        "test.chaos" => {
            jobhost_sdk::enqueue("receipt.chaos", job.payload())?;
            let n: u64 = job
                .payload_str()?
                .trim()
                .parse()
                .map_err(|e| Error::fatal(format!("payload is not a job number: {e}")))?;
            count_once(n).map_err(|e| {
                // The store unreachable while Redis restarts: soon again,
                // not after the host's hour-long backoff of this test.
                if e.is_fatal() {
                    e
                } else {
                    Error::retry_after(e.message().to_owned(), Duration::from_millis(200))
                }
            })?;
            Ok(().into())
        }
        // Counts itself in key-value state (counter `slept` of `counters`),
        // then sleeps `ms` (payload) milliseconds: a job two hosts can both
        // finish when the first one stalls past the reclaim time.
        "test.kv-sleep" => {
            let ms: u64 = job.payload_str()?.trim().parse().unwrap_or(1000);
            let count = kv::Bucket::open("counters")?.increment("slept", 1)?;
            jobhost_sdk::info!("counted {count}, sleeping {ms} ms");
            std::thread::sleep(Duration::from_millis(ms));
            Ok(count.to_string().into())
        }
        // Fleet-wide limits: sleeps `ms` (payload) milliseconds and records
        // when it ran in bucket `runs`: key the job id, value
        // "START_MS END_MS ATTEMPT" (committed with the ack).
        "test.stamp" => {
            let ms: u64 = job.payload_str()?.trim().parse().unwrap_or(0);
            let start = now_ms();
            if ms > 0 {
                std::thread::sleep(Duration::from_millis(ms));
            }
            let stamp = format!("{start} {} {}", now_ms(), job.attempt());
            kv::Bucket::open("runs")?.set(job.id(), stamp.as_bytes())?;
            Ok(().into())
        }
        "test.fatal" => Err(Error::fatal("refused on purpose")),
        // Binary payloads: returns the payload's bytes as they came, after one
        // retry for `test.echo-retry` (so they also pass through the delayed set).
        "test.echo" => Ok(job.payload().to_vec().into()),
        "test.echo-retry" if job.attempt() < 2 => Err(Error::retry("echo on the next attempt")),
        "test.echo-retry" => Ok(job.payload().to_vec().into()),
        // Instance reuse: counts the `test.count` jobs this instance has run,
        // in a static that only a reused instance carries from job to job.
        "test.count" => {
            static COUNTED: AtomicU32 = AtomicU32::new(0);
            let n = COUNTED.fetch_add(1, Ordering::Relaxed) + 1;
            jobhost_sdk::info!("{} is job {n} of its instance", job.payload_str()?);
            Ok(n.to_string().into())
        }
        // Capabilities: reads an environment variable / a file named by the payload.
        "test.env" => std::env::var(job.payload_str()?)
            .map(Output::from)
            .map_err(|_| {
                Error::fatal(format!(
                    "no environment variable {}",
                    job.payload_str().unwrap_or("")
                ))
            }),
        "test.read" => std::fs::read_to_string(job.payload_str()?)
            .map(Output::from)
            .map_err(|e| {
                Error::fatal(format!(
                    "cannot read {}: {e}",
                    job.payload_str().unwrap_or("")
                ))
            }),
        "test.panic" => panic!("testbed panics on purpose"),
        "test.loop" =>
        {
            #[allow(clippy::empty_loop)]
            loop {}
        }
        "test.memory" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
            }
        }
        "test.recursion" => Ok(recurse(job.attempt() as u64 + 1).to_string().into()),
        "test.log-flood" => {
            for i in 0..20_000u32 {
                println!("flood line {i}");
            }
            Ok(().into())
        }
        // Hostile text for the host log: a log message, a stdout line and an
        // error, each with a newline, a carriage return or escape sequences.
        "test.log-escape" => {
            jobhost_sdk::info!(
                "guest message\n2026-01-01T00:00:00.000000Z ERROR jobhost: FORGED by a guest \u{1b}[31mred"
            );
            jobhost_sdk::log(
                jobhost_sdk::Level::Warn,
                "guest fields",
                &[("key\nFORGED", "value\r\u{1b}[1AFORGED")],
            );
            println!("guest stdout \u{1b}[2J\rFORGED over the line\u{7f}\u{9b}");
            Err(Error::fatal(
                "guest error\n2026-01-01T00:00:00.000000Z ERROR jobhost: FORGED \u{1b}[0m",
            ))
        }
        "test.huge-output" => Ok(vec![b'x'; 8 << 20].into()),
        "test.enqueue-loop" => loop {
            jobhost_sdk::enqueue("test.chain-next", "again")?;
        },
        other => Err(Error::fatal(format!(
            "testbed has no behaviour for {other}"
        ))),
    }
}

/// The chaos job's key-value work: its marker `m{n}`, refused if already
/// committed, and one more in counter `c{n % 100}`.
fn count_once(n: u64) -> Result<(), Error> {
    let markers = kv::Bucket::open("markers")?;
    let marker = format!("m{n}");
    if markers.exists(&marker)? {
        return Err(Error::fatal(format!("marker {marker} already set")));
    }
    markers.set(&marker, b"1")?;
    kv::Bucket::open("counters")?.increment(&format!("c{}", n % 100), 1)?;
    Ok(())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

unsafe extern "C" {
    /// wasi-libc's `poll(2)`; `nfds_t` is `unsigned long`, 32 bits on wasm32.
    fn poll(fds: *mut std::ffi::c_void, nfds: usize, timeout_ms: i32) -> i32;
}

#[inline(never)]
#[allow(unconditional_recursion)] // Exhausting the stack is the point.
fn recurse(depth: u64) -> u64 {
    let deeper = recurse(std::hint::black_box(depth + 1));
    std::hint::black_box(deeper + 1)
}

jobhost_sdk::plugin! {
    name: "testbed",
    version: env!("CARGO_PKG_VERSION"),
    handles: ["test.*"],
    handler: handle,
}
