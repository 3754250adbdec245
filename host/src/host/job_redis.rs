//! Redis for job threads: the commands a job sends while it runs (reads of
//! committed key-value state, `kv_reads.rs`) or before it starts (fleet-wide
//! limits, `fleet_limits.rs`).
//!
//! Job threads are no tokio threads. Against one Redis server each job
//! thread sends its commands on a blocking connection of its own, taken from
//! a small pool: a round trip without waking the async runtime, which roughly
//! halves what a command costs. A Cluster or Sentinel has no one address for
//! such connections, so there a command waits for it to be sent on the
//! host's async connection. Either way a command gives up at its deadline.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::{FromRedisValue, RedisError};
use tokio::runtime::Handle;

use crate::broker::{BrokerError, Redis};

/// Job threads' way to Redis; one per host, shared by every use.
pub(super) struct JobRedis {
    path: Path,
}

enum Path {
    Blocking {
        client: redis::Client,
        /// Connections no job thread is using: at most one per job thread.
        idle: Mutex<Vec<redis::Connection>>,
    },
    Async {
        redis: Redis,
        runtime: Handle,
    },
}

/// A command for either path.
pub(super) enum Command {
    Cmd(redis::Cmd),
    Script(redis::ScriptInvocation<'static>),
}

/// Why a command got no reply.
pub(super) enum Failed {
    /// Redis answered with an error, or the connection failed.
    Redis(RedisError),
    Other(String),
    /// The deadline passed first.
    Deadline,
}

impl Failed {
    /// The failure in words, for a log line.
    pub(super) fn to_text(&self) -> String {
        match self {
            Failed::Redis(error) => error.to_string(),
            Failed::Other(why) => why.clone(),
            Failed::Deadline => "no answer within the deadline".to_owned(),
        }
    }
}

impl JobRedis {
    pub(super) fn new(redis: Redis, runtime: Handle) -> Self {
        let path = match redis.single_server() {
            Some(client) => Path::Blocking {
                client,
                idle: Mutex::new(Vec::new()),
            },
            None => Path::Async { redis, runtime },
        };
        JobRedis { path }
    }

    /// Sends `command` and waits for its reply until `deadline`.
    pub(super) fn call<T: FromRedisValue + Send + 'static>(
        &self,
        deadline: Instant,
        command: Command,
    ) -> Result<T, Failed> {
        match &self.path {
            Path::Blocking { client, idle } => blocking(client, idle, deadline, &command),
            Path::Async { redis, runtime } => {
                let mut redis = redis.clone();
                let deadline = tokio::time::Instant::from_std(deadline);
                runtime.block_on(async move {
                    let sent = async {
                        match &command {
                            Command::Cmd(cmd) => redis.query(cmd).await,
                            Command::Script(script) => redis.invoke(script).await,
                        }
                    };
                    match tokio::time::timeout_at(deadline, sent).await {
                        Ok(Ok(value)) => Ok(value),
                        Ok(Err(BrokerError::Command { error, .. })) => Err(Failed::Redis(error)),
                        Ok(Err(other)) => Err(Failed::Other(other.to_string())),
                        Err(_) => Err(Failed::Deadline),
                    }
                })
            }
        }
    }
}

/// Sends `command` on an idle connection of the pool, or a new one; a
/// connection that failed is dropped, not put back. A pooled connection
/// broken meanwhile (Redis restarted) is replaced once: the commands sent
/// here are safe to send again (reads; a limit's admission sent twice after
/// a lost reply renews the job's own lease and at worst spends a second
/// rate token).
fn blocking<T: FromRedisValue>(
    client: &redis::Client,
    idle: &Mutex<Vec<redis::Connection>>,
    deadline: Instant,
    command: &Command,
) -> Result<T, Failed> {
    let pooled = idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
    let was_pooled = pooled.is_some();
    let (mut result, mut usable) = send(client, pooled, deadline, command);
    if let Err(Failed::Redis(error)) = &result
        && was_pooled
        && (error.is_io_error() || error.is_connection_dropped())
    {
        (result, usable) = send(client, None, deadline, command);
    }
    if let Some(conn) = usable {
        idle.lock().unwrap_or_else(|e| e.into_inner()).push(conn);
    }
    result
}

/// One command on `conn` (or a new connection), within the deadline, and
/// the connection back if it can serve another command (after a reply, also
/// an error reply such as WRONGTYPE).
fn send<T: FromRedisValue>(
    client: &redis::Client,
    conn: Option<redis::Connection>,
    deadline: Instant,
    command: &Command,
) -> (Result<T, Failed>, Option<redis::Connection>) {
    let left = || deadline.saturating_duration_since(Instant::now());
    if left() < Duration::from_millis(1) {
        return (Err(Failed::Deadline), conn);
    }
    let mut conn = match conn.map_or_else(|| client.get_connection_with_timeout(left()), Ok) {
        Ok(conn) => conn,
        Err(error) => return (Err(Failed::Redis(error)), None),
    };
    let timeout = Some(left().max(Duration::from_millis(1)));
    if let Err(error) = conn
        .set_read_timeout(timeout)
        .and_then(|()| conn.set_write_timeout(timeout))
    {
        return (Err(Failed::Redis(error)), None);
    }
    let result = match command {
        Command::Cmd(cmd) => cmd.query(&mut conn),
        Command::Script(script) => script.invoke(&mut conn),
    };
    match result {
        Ok(value) => (Ok(value), Some(conn)),
        Err(error) if error.code().is_some() => (Err(Failed::Redis(error)), Some(conn)),
        Err(error) => (Err(Failed::Redis(error)), None),
    }
}
