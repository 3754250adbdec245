//! A redis-server of the benchmark's own on a free loopback port, stopped on drop.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

pub struct BenchRedis {
    child: Child,
    pub url: String,
    _dir: ScratchDir,
}

/// A throwaway directory removed on drop (no dependency for the benchmarks' few uses).
pub struct ScratchDir(pub std::path::PathBuf);

impl ScratchDir {
    /// A new empty directory `jobhost-bench-NAME-PID` in the system's temp dir.
    pub fn new(name: &str) -> std::io::Result<Self> {
        let dir = std::env::temp_dir().join(format!("jobhost-bench-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(ScratchDir(dir))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl BenchRedis {
    pub fn start() -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = ScratchDir::new(&format!("redis-{port}"))?;
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&dir.0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server (is it installed?)")?;
        let url = format!("redis://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let up = redis::Client::open(url.as_str())
                .and_then(|c| c.get_connection())
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
                .is_ok();
            if up {
                break;
            }
            if Instant::now() > deadline {
                bail!("redis-server on port {port} did not answer within 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(BenchRedis {
            child,
            url,
            _dir: dir,
        })
    }

    pub fn flush(&self) -> anyhow::Result<()> {
        let mut conn = redis::Client::open(self.url.as_str())?.get_connection()?;
        redis::cmd("FLUSHALL").query::<()>(&mut conn)?;
        Ok(())
    }
}

impl Drop for BenchRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
