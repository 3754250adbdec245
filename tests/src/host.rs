//! Running the real `jobhost` binary: a long-lived `run` host, or one CLI call.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::{free_port, jobhost_bin, proc_status, wait_until};

/// A `jobhost run` process with its log captured to a file.
pub struct Host {
    child: Child,
    log: PathBuf,
    metrics_port: Option<u16>,
    _dir: TempDir,
}

/// How to start a `jobhost run` process beyond [`Host::start`]'s defaults:
/// another binary, another log level, a metrics endpoint.
pub struct HostBuilder<'a> {
    redis_url: &'a str,
    plugins: &'a Path,
    args: Vec<OsString>,
    binary: Option<&'a Path>,
    log_level: Option<String>,
    metrics: bool,
    envs: Vec<(OsString, OsString)>,
}

impl<'a> HostBuilder<'a> {
    /// One more `jobhost run` argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// More `jobhost run` arguments.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(OsString::from));
        self
    }

    /// Runs `binary` instead of the debug build of [`jobhost_bin`] (the bench
    /// measures a release build).
    pub fn binary(mut self, binary: &'a Path) -> Self {
        self.binary = Some(binary);
        self
    }

    /// The host's `RUST_LOG`, instead of the caller's own or `info`.
    pub fn log_level(mut self, filter: &str) -> Self {
        self.log_level = Some(filter.to_owned());
        self
    }

    /// One more environment variable for the process (a secret a manifest
    /// reads, say).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.envs
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Serves `--metrics` on a free port. [`HostBuilder::start`] then waits
    /// for `/healthz` to say 200 rather than for the "consuming" line, which a
    /// quieter [`HostBuilder::log_level`] leaves out (both happen together).
    pub fn metrics(mut self) -> Self {
        self.metrics = true;
        self
    }

    /// Starts the process and waits until it consumes.
    pub fn start(self) -> Host {
        let mut host = self.spawn();
        match host.metrics_port {
            Some(port) => host.wait_healthy(port, Duration::from_secs(60)),
            None => host.wait_for_log("consuming", Duration::from_secs(60)),
        }
        host
    }

    /// Starts the process and returns at once.
    /// Compiled plugins are cached in the host's own folder unless the
    /// arguments say otherwise.
    pub fn spawn(self) -> Host {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("host.log");
        let file = std::fs::File::create(&log).expect("host log");
        let log_level = self
            .log_level
            .unwrap_or_else(|| std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()));
        let mut command = Command::new(self.binary.unwrap_or_else(|| jobhost_bin()));
        command
            .arg("run")
            .arg("--plugins")
            .arg(self.plugins)
            .args(["--redis", self.redis_url])
            .args(&self.args)
            .env("RUST_LOG", log_level)
            .env_remove("REDIS_URL")
            .env_remove("JOBHOST_REDIS_URL")
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(file.try_clone().expect("log")))
            .stderr(Stdio::from(file));
        if !self
            .args
            .iter()
            .any(|a| *a == "--cache-dir" || *a == "--no-cache")
        {
            command.arg("--cache-dir").arg(dir.path().join("cache"));
        }
        let metrics_port = self.metrics.then(free_port);
        if let Some(port) = metrics_port {
            command.args(["--metrics", &format!("127.0.0.1:{port}")]);
        }
        Host {
            child: command.spawn().expect("spawn jobhost run"),
            log,
            metrics_port,
            _dir: dir,
        }
    }
}

impl Host {
    /// Starts `jobhost run --plugins DIR --redis URL ARGS...` and waits until it consumes.
    /// Compiled plugins are cached in the host's own folder unless ARGS say otherwise.
    pub fn start(redis_url: &str, plugins: &Path, args: &[&str]) -> Self {
        Host::builder(redis_url, plugins).args(args).start()
    }

    /// A host to configure further before it starts.
    pub fn builder<'a>(redis_url: &'a str, plugins: &'a Path) -> HostBuilder<'a> {
        HostBuilder {
            redis_url,
            plugins,
            args: Vec::new(),
            binary: None,
            log_level: None,
            metrics: false,
            envs: Vec::new(),
        }
    }

    /// The port of `/metrics` and `/healthz`, if started with [`HostBuilder::metrics`].
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics_port
    }

    /// An unlabelled sample of `/metrics` (a gauge or counter); `None` when
    /// the host serves no metrics or not that one.
    pub fn metric(&self, name: &str) -> Option<f64> {
        self.metrics_text()?.lines().find_map(|line| {
            let (series, value) = line.split_once(' ')?;
            (series == name).then(|| value.trim().parse().ok())?
        })
    }

    /// The sum of every sample of metric `name` whose labels include each of
    /// `labels` (`[("status", "denied")]`); 0 when none has, `None` when the
    /// host serves no metrics.
    pub fn metric_sum(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let text = self.metrics_text()?;
        let prefix = format!("{name}{{");
        Some(
            text.lines()
                .filter_map(|line| {
                    let rest = line.strip_prefix(&prefix)?;
                    let (series, value) = rest.rsplit_once("} ")?;
                    labels
                        .iter()
                        .all(|(k, v)| series.contains(&format!("{k}=\"{v}\"")))
                        .then(|| value.trim().parse::<f64>().ok())?
                })
                .sum(),
        )
    }

    /// The whole `/metrics` response (head and body); `None` when the host
    /// serves no metrics or does not answer.
    pub fn metrics_text(&self) -> Option<String> {
        use std::io::{Read, Write};
        let port = self.metrics_port?;
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        write!(stream, "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        Some(response)
    }

    /// Whether the process has exited (or died), as `/proc` sees it; unlike
    /// [`Host::wait_exit`] it needs no `&mut` and collects nothing.
    pub fn exited(&self) -> bool {
        proc_status::exited(self.pid())
    }

    /// A `/proc/PID/status` figure in kB (`VmRSS`, `VmHWM`); `None` once gone.
    pub fn status_kib(&self, field: &str) -> Option<u64> {
        proc_status::status_kib(self.pid(), field)
    }

    /// Polls `/healthz` until it says 200; panics with the log's tail if the
    /// process exits first or at the deadline.
    fn wait_healthy(&mut self, port: u16, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !healthy(port) {
            if self.child.try_wait().ok().flatten().is_some() {
                panic!("host exited at start; log:\n{}", self.tail());
            }
            if Instant::now() >= deadline {
                panic!(
                    "host /healthz did not say 200 within {timeout:?}; log:\n{}",
                    self.tail()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the host logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `text`; the panic shows the log's tail.
    pub fn wait_for_log(&self, text: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.log().contains(text) {
            if Instant::now() >= deadline {
                panic!(
                    "host did not log {text:?} within {timeout:?}; log:\n{}",
                    self.tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the log contains `text` at least `count` times.
    pub fn wait_for_log_count(&self, text: &str, count: usize, timeout: Duration) {
        let what = format!("{count} log lines containing {text:?}");
        let deadline = Instant::now() + timeout;
        while self.log().matches(text).count() < count {
            if Instant::now() >= deadline {
                panic!("timed out waiting for {what}; log:\n{}", self.tail());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The last 40 lines of the log.
    pub fn tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, signal);
        }
    }

    pub fn sigterm(&self) {
        self.signal(libc::SIGTERM);
    }

    pub fn sigint(&self) {
        self.signal(libc::SIGINT);
    }

    /// SIGKILL: the host dies mid-whatever, as a crashed machine would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit; panics with the log tail at the deadline.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let mut status = None;
        wait_until("the host exits", timeout, || {
            status = self.child.try_wait().expect("try_wait");
            status.is_some()
        });
        status.expect("exited")
    }
}

/// Whether `GET /healthz` on 127.0.0.1:`port` answers 200.
fn healthy(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let mut response = String::new();
    stream
        .write_all(b"GET /healthz HTTP/1.0\r\n\r\n")
        .and_then(|()| stream.read_to_string(&mut response))
        .is_ok()
        && response.split_whitespace().nth(1) == Some("200")
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `jobhost ARGS...` command to spawn in the background (e.g. `generate`).
pub fn jobhost_command(args: &[&str]) -> Command {
    let mut command = Command::new(jobhost_bin());
    command
        .args(args)
        .env_remove("REDIS_URL")
        .env_remove("JOBHOST_REDIS_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

/// Runs `jobhost ARGS...` once (60 s at most) and returns what it did.
pub fn jobhost(args: &[&str]) -> Output {
    jobhost_with_stdin(args, "")
}

/// Runs `jobhost ARGS...` once with `stdin` as its input (60 s at most).
pub fn jobhost_with_stdin(args: &[&str], stdin: &str) -> Output {
    jobhost_with_input(args, stdin.as_bytes())
}

/// Runs `jobhost ARGS...` once with the bytes `input` as its stdin (60 s at most).
pub fn jobhost_with_input(args: &[&str], input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(jobhost_bin())
        .args(args)
        .env_remove("REDIS_URL")
        .env_remove("JOBHOST_REDIS_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn jobhost");
    let bytes = input.to_owned();
    let mut input = child.stdin.take().expect("stdin");
    std::thread::spawn(move || {
        let _ = input.write_all(&bytes);
    });
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    finished
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("jobhost {args:?} did not finish within 60 s"))
        .expect("jobhost output")
}

/// The output of a `jobhost` call that must succeed.
pub fn ok_stdout(out: Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The error of a `jobhost` call that must fail with one line, `jobhost: ...`,
/// and a non-zero exit.
pub fn one_line_error(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "expected a failure; stderr: {stderr}"
    );
    assert!(stderr.starts_with("jobhost: "), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    stderr
}
