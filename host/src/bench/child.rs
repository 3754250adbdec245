//! A `jobhost run` process (this very binary) started by the benchmarks that
//! measure a real host from the outside: its memory, its start-up.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::http_get;

/// A `jobhost run` child process, killed on drop.
pub(super) struct ChildHost {
    child: Child,
    pid: u32,
}

impl ChildHost {
    /// Starts the host and waits until it consumes (its `/healthz` says 200),
    /// then one more second for it to settle.
    pub(super) async fn start(
        url: &str,
        plugins: &Path,
        cache: &Path,
        queue: &str,
        concurrency: usize,
    ) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut host = ChildHost::spawn(url, plugins, cache, queue, concurrency, Some(port))?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let health = http_get(port, "/healthz").await.unwrap_or_default();
            if health.starts_with("HTTP/1.1 200") || health.starts_with("HTTP/1.0 200") {
                break;
            }
            anyhow::ensure!(
                host.child.try_wait()?.is_none(),
                "jobhost run exited at start"
            );
            anyhow::ensure!(
                Instant::now() < deadline,
                "jobhost run did not consume within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok(host)
    }

    /// Starts `jobhost run` (this very binary) and returns at once.
    pub(super) fn spawn(
        url: &str,
        plugins: &Path,
        cache: &Path,
        queue: &str,
        concurrency: usize,
        metrics_port: Option<u16>,
    ) -> anyhow::Result<Self> {
        let exe: PathBuf = std::env::current_exe().context("locating this binary")?;
        let mut command = Command::new(exe);
        command
            .arg("run")
            .arg("--plugins")
            .arg(plugins)
            .arg("--cache-dir")
            .arg(cache)
            .args(["--redis", url, "--namespace", "bench", "--queue", queue])
            .args([
                "--concurrency",
                &concurrency.to_string(),
                "--prefetch",
                "256",
            ])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(port) = metrics_port {
            command.args(["--metrics", &format!("127.0.0.1:{port}")]);
        }
        let child = command.spawn().context("starting jobhost run")?;
        Ok(ChildHost {
            pid: child.id(),
            child,
        })
    }

    /// Whether the process is gone (or a zombie, its exit not yet collected).
    pub(super) fn stopped(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .map_or(true, |status| status.contains("State:\tZ"))
    }

    /// A memory figure of `/proc/PID/status` (`VmRSS`, `VmHWM`), in MiB.
    pub(super) fn status(&self, field: &str) -> anyhow::Result<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        super::status_mib(&status, field).with_context(|| format!("no {field} in /proc status"))
    }
}

impl Drop for ChildHost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
