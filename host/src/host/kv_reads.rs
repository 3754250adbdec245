//! Committed key-value state, read from Redis by jobs while they run.
//!
//! Job threads are no tokio threads. Against one Redis server each job
//! thread sends its reads on a blocking connection of its own, taken from a
//! small pool: a round trip without waking the async runtime, which roughly
//! halves what a read costs. A Cluster or Sentinel has no one address for
//! such connections, so there a read waits for a command sent on the host's
//! async connection. Either way a read gives up at the job's deadline.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::{FromRedisValue, RedisError};
use tokio::runtime::Handle;

use crate::broker::kv::reads;
use crate::broker::{BrokerError, Redis};
use crate::keys::QueueKeys;
use crate::plugins::kv::{CommittedKv, KeyPage};

/// The buckets of a namespace's queues.
pub(super) struct RedisKv {
    namespace: String,
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
enum Command {
    Cmd(redis::Cmd),
    Script(redis::ScriptInvocation<'static>),
}

impl RedisKv {
    pub(super) fn new(redis: Redis, namespace: &str, runtime: Handle) -> Self {
        let path = match redis.single_server() {
            Some(client) => Path::Blocking {
                client,
                idle: Mutex::new(Vec::new()),
            },
            None => Path::Async { redis, runtime },
        };
        RedisKv {
            namespace: namespace.to_owned(),
            path,
        }
    }

    fn keys(&self, queue: &str) -> QueueKeys {
        QueueKeys::new(&self.namespace, queue)
    }

    fn call<T: FromRedisValue + Send + 'static>(
        &self,
        keys: &QueueKeys,
        bucket: &str,
        deadline: Instant,
        command: Command,
    ) -> Result<T, String> {
        let result = match &self.path {
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
        };
        result.map_err(|failed| match failed {
            Failed::Redis(error) if error.code() == Some("WRONGTYPE") => format!(
                "the bucket's Redis key {} holds another type, not a hash: fix or delete it",
                keys.kv_bucket(bucket)
            ),
            Failed::Redis(error) if error.is_timeout() => deadline_passed(),
            Failed::Redis(error) => format!("state store unavailable: {error}"),
            Failed::Other(why) => format!("state store unavailable: {why}"),
            Failed::Deadline => deadline_passed(),
        })
    }
}

enum Failed {
    Redis(RedisError),
    Other(String),
    Deadline,
}

fn deadline_passed() -> String {
    "state store did not answer within the job's time limit".to_owned()
}

/// Sends `command` on an idle connection of the pool, or a new one; a
/// connection that failed is dropped, not put back. A pooled connection
/// broken meanwhile (Redis restarted) is replaced once: reads are safe to
/// send again.
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

impl CommittedKv for RedisKv {
    fn get(
        &self,
        queue: &str,
        bucket: &str,
        key: &str,
        deadline: Instant,
    ) -> Result<Option<Vec<u8>>, String> {
        let keys = self.keys(queue);
        let cmd = reads::get(&keys, bucket, key);
        self.call(&keys, bucket, deadline, Command::Cmd(cmd))
    }

    fn exists(
        &self,
        queue: &str,
        bucket: &str,
        key: &str,
        deadline: Instant,
    ) -> Result<bool, String> {
        let keys = self.keys(queue);
        let cmd = reads::exists(&keys, bucket, key);
        self.call(&keys, bucket, deadline, Command::Cmd(cmd))
    }

    fn page(
        &self,
        queue: &str,
        bucket: &str,
        cursor: u64,
        count: usize,
        deadline: Instant,
    ) -> Result<KeyPage, String> {
        let keys = self.keys(queue);
        let script = reads::page(&keys, bucket, cursor, count);
        let page: reads::Page = self.call(&keys, bucket, deadline, Command::Script(script))?;
        let (next, keys) = reads::page_of(page);
        Ok(KeyPage {
            keys,
            next: (next != 0).then_some(next),
        })
    }
}
