//! The end-to-end test harness: real `redis-server` processes on free loopback
//! ports, the real `jobhost` binary, real plugins built from `plugins/`.
//!
//! Tests wait on conditions with deadlines ([`wait_until`]), never on sleeps.

mod binaries;
pub mod browser;
mod cli;
pub mod dashboard;
mod host;
pub mod http_server;
pub mod proc_status;
mod redis_server;
pub mod topologies;
mod wait;

pub use binaries::{
    PluginDir, built_plugins, jobhost_bin, jobhost_release_bin, shared_code_cache,
    with_shared_code_cache, workspace_root,
};
pub use cli::{enqueue, enqueue_and_wait};
pub use host::{
    Host, HostBuilder, jobhost, jobhost_command, jobhost_with_input, jobhost_with_stdin, ok_stdout,
    one_line_error,
};
pub use http_server::HttpServer;
pub use redis_server::{RedisServer, free_port};
pub use wait::wait_until;

/// Key names of the default queue (namespace `jobhost`, queue `default`).
pub mod keys {
    pub const STREAM: &str = "jobhost:{default}:stream";
    pub const DELAYED: &str = "jobhost:{default}:delayed";
    pub const DLQ: &str = "jobhost:{default}:dlq";
    pub const COUNTERS: &str = "jobhost:{default}:counters";
    pub const GROUP: &str = "workers";
}

/// One stream entry: id and fields.
pub type Entry = (String, std::collections::HashMap<String, String>);

/// Every entry of `stream`, oldest first.
pub fn entries(conn: &mut redis::Connection, stream: &str) -> Vec<Entry> {
    let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query(conn)
        .expect("XRANGE");
    reply
        .ids
        .into_iter()
        .map(|entry| {
            let fields = entry
                .map
                .into_iter()
                .map(|(k, v)| {
                    let text: String = redis::from_redis_value(v).unwrap_or_default();
                    (k, text)
                })
                .collect();
            (entry.id, fields)
        })
        .collect()
}

/// The fields of the dead-letter entry of job `id` in the default queue,
/// waiting up to `wait` for it.
pub fn dead_letter(
    redis: &RedisServer,
    id: &str,
    wait: std::time::Duration,
) -> std::collections::HashMap<String, String> {
    let mut conn = redis.connection();
    let mut found = None;
    wait_until(&format!("job {id} is dead-lettered"), wait, || {
        found = entries(&mut conn, keys::DLQ)
            .into_iter()
            .map(|(_, fields)| fields)
            .find(|f| f.get("job_id").map(String::as_str) == Some(id));
        found.is_some()
    });
    found.expect("found")
}

/// The `last_error` field of a dead-letter entry ("" without one).
pub fn last_error(entry: &std::collections::HashMap<String, String>) -> &str {
    entry.get("last_error").map(String::as_str).unwrap_or("")
}

/// Jobs of the default queue recorded as done (its `done` counter).
pub fn done_count(conn: &mut redis::Connection) -> u64 {
    redis::cmd("HGET")
        .arg(keys::COUNTERS)
        .arg("done")
        .query::<Option<u64>>(conn)
        .ok()
        .flatten()
        .unwrap_or(0)
}

/// Entries of the default group delivered and not yet acknowledged.
pub fn pending_count(conn: &mut redis::Connection) -> u64 {
    let reply: redis::Value = redis::cmd("XPENDING")
        .arg(keys::STREAM)
        .arg(keys::GROUP)
        .query(conn)
        .unwrap_or(redis::Value::Nil);
    match reply {
        redis::Value::Array(items) => match items.first() {
            Some(redis::Value::Int(n)) => *n as u64,
            _ => 0,
        },
        _ => 0,
    }
}

/// An envelope-v1 entry the way any producer could write it, with raw XADD.
fn xadd_command(job_type: &str, payload: &str) -> redis::Cmd {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(keys::STREAM)
        .arg("*")
        .arg("v")
        .arg("1")
        .arg("type")
        .arg(job_type)
        .arg("payload")
        .arg(payload)
        .arg("produced_at")
        .arg("2026-11-24T10:00:00Z");
    cmd
}

/// Writes one envelope-v1 entry of `job_type` per payload, pipelined 1,000 at a time.
pub fn xadd_jobs(
    conn: &mut redis::Connection,
    job_type: &str,
    payloads: impl IntoIterator<Item = String>,
) {
    let payloads: Vec<String> = payloads.into_iter().collect();
    for chunk in payloads.chunks(1000) {
        let mut pipe = redis::pipe();
        for payload in chunk {
            pipe.add_command(xadd_command(job_type, payload)).ignore();
        }
        let _: () = pipe.query(conn).expect("XADD a chunk of jobs");
    }
}

/// Writes one envelope-v1 entry with raw XADD; returns its entry id.
pub fn xadd_job(conn: &mut redis::Connection, job_type: &str, payload: &str) -> String {
    xadd_command(job_type, payload).query(conn).expect("XADD")
}
