//! The `jobhost run` process the measures that look at a real host from the
//! outside (its memory, its start-up) run: the release build, through the
//! test harness's launcher, logging at `warn` like the in-process hosts.

use std::path::Path;
use std::time::Duration;

use jobhost_tests::{Host, HostBuilder, jobhost_release_bin};

/// A host on `queue` of namespace `bench`, its compiled code cached in `cache`.
/// Built (and the binary located) before anyone starts a clock.
pub(super) fn child_host<'a>(
    url: &'a str,
    plugins: &'a Path,
    cache: &Path,
    queue: &str,
    concurrency: usize,
) -> HostBuilder<'a> {
    Host::builder(url, plugins)
        .binary(jobhost_release_bin())
        .log_level("warn")
        .arg("--cache-dir")
        .arg(cache)
        .args(&["--namespace", "bench", "--queue", queue])
        .args(&[
            "--concurrency",
            &concurrency.to_string(),
            "--prefetch",
            "256",
        ])
}

/// Starts the host with a metrics endpoint and waits until it consumes
/// (`/healthz` says 200), then one more second for it to settle.
pub(super) async fn start_settled(host: HostBuilder<'_>) -> Host {
    let host = tokio::task::block_in_place(|| host.metrics().start());
    tokio::time::sleep(Duration::from_secs(1)).await;
    host
}
