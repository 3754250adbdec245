//! A `redis-server` of the test's own, on a free loopback port: killed and
//! restarted at will, never the machine's shared one.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::wait_until;

pub struct RedisServer {
    port: u16,
    dir: TempDir,
    aof: bool,
    /// More `redis-server` arguments (cluster mode, TLS, replication...).
    extra: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// A server without persistence.
    pub fn start() -> Self {
        Self::launch(false)
    }

    /// A server that fsyncs every write to an append-only file, so it keeps
    /// its data across [`RedisServer::kill`] + [`RedisServer::restart`].
    pub fn start_with_aof() -> Self {
        Self::launch(true)
    }

    /// A server without persistence, started with more arguments.
    pub fn start_with(args: &[&str]) -> Self {
        Self::launch_in(tempfile::tempdir().expect("temp dir"), false, args)
    }

    /// Like [`RedisServer::start_with`], in a folder the caller prepared (with a
    /// config file a sentinel can rewrite, say).
    pub fn start_in(dir: TempDir, args: &[&str]) -> Self {
        Self::launch_in(dir, false, args)
    }

    fn launch(aof: bool) -> Self {
        Self::launch_in(tempfile::tempdir().expect("temp dir"), aof, &[])
    }

    fn launch_in(dir: TempDir, aof: bool, args: &[&str]) -> Self {
        let mut server = RedisServer {
            port: free_port(),
            dir,
            aof,
            extra: args.iter().map(|a| a.to_string()).collect(),
            child: None,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("redis.log")).expect("redis log");
        let mut command = Command::new("redis-server");
        // A config file, when given, must come first.
        let (config, options) = match self.extra.first() {
            Some(first) if !first.starts_with("--") => (Some(first), &self.extra[1..]),
            _ => (None, &self.extra[..]),
        };
        command
            .args(config)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", ""])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log));
        if self.aof {
            command.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            command.args(["--appendonly", "no"]);
        }
        command.args(options);
        self.child = Some(command.spawn().expect("redis-server is installed"));
        let url = self.url();
        wait_until("redis-server answers PING", Duration::from_secs(10), || {
            redis::Client::open(url.as_str())
                .and_then(|c| c.get_connection())
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
                .is_ok()
        });
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn connection(&self) -> redis::Connection {
        self.try_connection()
            .expect("connect to the test redis-server")
    }

    /// For polls that must outlast a moment when the server drops its
    /// clients (a failover changing its role does).
    pub fn try_connection(&self) -> redis::RedisResult<redis::Connection> {
        redis::Client::open(self.url()).and_then(|c| c.get_connection())
    }

    /// SIGKILL, and wait until it is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts again on the same port and directory.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}
