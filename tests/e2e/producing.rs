//! Producing jobs (SPEC §3): every `enqueue` option, `--wait`, `--batch`, the
//! generator's single leader with failover, and the Rust client's buffering
//! across a Redis outage.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use jobhost_tests::{
    Host, PluginDir, RedisServer, entries, jobhost, jobhost_command, jobhost_with_stdin, keys,
    wait_until,
};

const WAIT: Duration = Duration::from_secs(60);

fn cli(redis: &RedisServer, args: &[&str]) -> std::process::Output {
    let url = redis.url();
    let mut all = args.to_vec();
    all.extend_from_slice(&["--redis", &url]);
    jobhost(&all)
}

fn only_entry(conn: &mut redis::Connection, stream: &str) -> HashMap<String, String> {
    let all = entries(conn, stream);
    assert_eq!(all.len(), 1, "{all:?}");
    all.into_iter().next().unwrap().1
}

fn reply_keys(conn: &mut redis::Connection) -> Vec<String> {
    redis::cmd("KEYS").arg("*:reply:*").query(conn).unwrap()
}

#[test]
fn every_enqueue_option_lands_in_the_envelope() {
    let redis = RedisServer::start();
    let mut conn = redis.connection();
    let out = cli(
        &redis,
        &[
            "enqueue",
            "a.b",
            "{}",
            "--max-attempts",
            "2",
            "--trace-id",
            "t-9",
            "--expires-in",
            "10m",
        ],
    );
    assert!(out.status.success());
    let entry = only_entry(&mut conn, keys::STREAM);
    assert_eq!(entry["max_attempts"], "2");
    assert_eq!(entry["trace_id"], "t-9");
    assert!(entry["expires_at"].starts_with("20"), "{entry:?}");
    assert_eq!(entry["job_id"], String::from_utf8_lossy(&out.stdout).trim());
    let _: () = redis::cmd("DEL")
        .arg(keys::STREAM)
        .query(&mut conn)
        .unwrap();

    let url = redis.url();
    let out = jobhost_with_stdin(&["enqueue", "a.b", "-", "--redis", &url], "from stdin");
    assert!(out.status.success());
    assert_eq!(only_entry(&mut conn, keys::STREAM)["payload"], "from stdin");

    let out = cli(
        &redis,
        &["enqueue", "a.b", "x", "--at", "2030-01-01T00:00:00Z"],
    );
    assert!(out.status.success());
    let members: Vec<(Vec<u8>, f64)> = redis::cmd("ZRANGE")
        .arg(keys::DELAYED)
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query(&mut conn)
        .unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].1, 1_893_456_000_000.0);

    let out = cli(&redis, &["enqueue", "a.b", "x", "--queue", "emails"]);
    assert!(out.status.success());
    assert_eq!(
        only_entry(&mut conn, "jobhost:{emails}:stream")["type"],
        "a.b"
    );
}

#[test]
fn batch_enqueues_ndjson_lines_in_order_and_names_a_bad_line() {
    let redis = RedisServer::start();
    let url = redis.url();
    let lines = "{\"type\":\"a.one\",\"payload\":{\"n\":1}}\n{\"type\":\"a.two\",\"payload\":\"two\"}\n\n{\"type\":\"a.three\",\"payload\":3}\n";
    let out = jobhost_with_stdin(&["enqueue", "--batch", "--redis", &url], lines);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 3);
    let mut conn = redis.connection();
    let written: Vec<(String, String)> = entries(&mut conn, keys::STREAM)
        .into_iter()
        .map(|(_, f)| (f["type"].clone(), f["payload"].clone()))
        .collect();
    assert_eq!(
        written,
        vec![
            ("a.one".into(), r#"{"n":1}"#.into()),
            ("a.two".into(), "two".into()),
            ("a.three".into(), "3".into())
        ]
    );
    let out = jobhost_with_stdin(
        &["enqueue", "--batch", "--redis", &url],
        "{\"type\":\"a.b\",\"payload\":1}\nnot json\n",
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 2:"));
}

#[test]
fn wait_prints_the_output_or_the_final_error_and_cleans_up() {
    let redis = RedisServer::start();
    let plugins = PluginDir::with(&["orders"]);
    let _host = Host::start(&redis.url(), plugins.path(), &[]);
    let out = cli(
        &redis,
        &["enqueue", "orders.created", r#"{"id":4}"#, "--wait"],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        r#"{"accepted":4,"total_cents":0}"#
    );

    let out = cli(&redis, &["enqueue", "orders.created", "nope", "--wait"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("failed: fatal: invalid JSON payload"));

    let out = cli(
        &redis,
        &[
            "enqueue",
            "nobody.handles",
            "x",
            "--wait",
            "--timeout",
            "500ms",
        ],
    );
    assert_eq!(out.status.code(), Some(124));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no outcome for job"));
    assert!(reply_keys(&mut redis.connection()).is_empty());
}

#[test]
fn reply_stream_of_a_killed_waiting_client_is_collected() {
    let redis = RedisServer::start();
    let mut waiting = jobhost_command(&[
        "enqueue",
        "nobody.handles",
        "x",
        "--wait",
        "--timeout",
        "5m",
        "--redis",
        &redis.url(),
    ])
    .spawn()
    .unwrap();
    let mut conn = redis.connection();
    wait_until("the client opened its reply stream", WAIT, || {
        reply_keys(&mut conn).len() == 1
    });
    waiting.kill().unwrap();
    let _ = waiting.wait();
    wait_until("the reply stream expires", WAIT, || {
        reply_keys(&mut conn).is_empty()
    });
}

/// (first, last) entry timestamp in ms of each producer's entries.
fn spans_by_producer(conn: &mut redis::Connection) -> HashMap<String, (u64, u64)> {
    let mut spans: HashMap<String, (u64, u64)> = HashMap::new();
    for (id, fields) in entries(conn, keys::STREAM) {
        let ms: u64 = id.split('-').next().unwrap().parse().unwrap();
        let span = spans.entry(fields["producer"].clone()).or_insert((ms, ms));
        span.0 = span.0.min(ms);
        span.1 = span.1.max(ms);
    }
    spans
}

#[test]
fn one_generator_at_a_time_and_the_standby_takes_over_from_a_killed_leader() {
    let redis = RedisServer::start();
    let url = redis.url();
    let generate = || {
        jobhost_command(&["generate", "--rate", "100/s", "--redis", &url])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut first = generate();
    let mut conn = redis.connection();
    wait_until("the first generator writes", WAIT, || {
        !entries(&mut conn, keys::STREAM).is_empty()
    });
    let mut second = generate();
    std::thread::sleep(Duration::from_millis(1500)); // both alive: only one may write meanwhile
    assert_eq!(
        spans_by_producer(&mut conn).len(),
        1,
        "two generators wrote at once"
    );
    first.kill().unwrap();
    let _ = first.wait();
    wait_until("the standby takes over", WAIT, || {
        spans_by_producer(&mut conn).len() == 2
    });
    second.kill().unwrap();
    let _ = second.wait();

    let spans: Vec<(u64, u64)> = spans_by_producer(&mut conn).into_values().collect();
    let (a, b) = if spans[0].0 < spans[1].0 {
        (spans[0], spans[1])
    } else {
        (spans[1], spans[0])
    };
    assert!(a.1 < b.0, "generators overlapped: {a:?} {b:?}");
    // Within one lease period (3 s) plus a renewal tick of the leader's death.
    assert!(b.0 - a.1 < 4_500, "takeover took {} ms", b.0 - a.1);
    let payload = &entries(&mut conn, keys::STREAM)[0].1["payload"];
    let (uuid, timestamp) = payload.split_once(' ').unwrap();
    assert_eq!(uuid.len(), 36, "{payload}");
    assert!(timestamp.starts_with("20"), "{payload}");
}

#[test]
fn standby_generator_on_a_host_takes_over_and_hands_back_to_a_real_generator() {
    let redis = RedisServer::start();
    let plugins = PluginDir::with(&["hello"]);
    let host = Host::start(
        &redis.url(),
        plugins.path(),
        &[
            "--standby-generator",
            "--generate-type",
            "hello.standby",
            "--generate-rate",
            "20/s",
        ],
    );
    host.wait_for_log("generating: this generator holds the lease", WAIT);
    host.wait_for_log(
        "type=hello.standby plugin=hello attempt=1 outcome=done",
        WAIT,
    );

    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("generate.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut real = jobhost_command(&[
        "generate",
        "--type",
        "hello.real",
        "--rate",
        "20/s",
        "--redis",
        &redis.url(),
    ])
    .stderr(Stdio::from(log))
    .spawn()
    .unwrap();
    host.wait_for_log("type=hello.real plugin=hello attempt=1 outcome=done", WAIT);
    real.kill().unwrap();
    let _ = real.wait();

    let host_log = host.log();
    let handed_back = host_log
        .lines()
        .find(|l| l.contains("handing the lease back"))
        .expect("the host handed back");
    let generator_log = std::fs::read_to_string(&log_path).unwrap();
    let took_over = generator_log
        .lines()
        .find(|l| l.contains("generating: this generator holds the lease"))
        .expect("took over");
    // tracing timestamps are fixed-width RFC 3339 UTC: comparable as text.
    let time = |line: &str| line.split_whitespace().next().unwrap().to_owned();
    assert!(
        time(took_over) >= time(handed_back),
        "{took_over}\n{handed_back}"
    );
}

#[test]
fn client_buffers_across_a_redis_restart_without_loss() {
    let mut redis = RedisServer::start_with_aof();
    let url = redis.url();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = runtime
        .block_on(async { jobhost::client::Client::new(&url, "jobhost", "default", 1000) })
        .unwrap();
    runtime.block_on(async {
        for i in 0..50 {
            client.enqueue("client.job", i.to_string()).await.unwrap();
        }
        client.flush().await.unwrap();
    });
    redis.kill();
    runtime.block_on(async {
        for i in 50..150 {
            client.enqueue("client.job", i.to_string()).await.unwrap();
        }
    });
    redis.restart();
    runtime.block_on(async {
        tokio::time::timeout(WAIT, client.flush())
            .await
            .expect("flushed after the restart")
            .unwrap()
    });
    let mut conn = redis.connection();
    let payloads: Vec<String> = entries(&mut conn, keys::STREAM)
        .into_iter()
        .map(|(_, f)| f["payload"].clone())
        .collect();
    let expected: Vec<String> = (0..150).map(|i| i.to_string()).collect();
    assert_eq!(payloads, expected, "every job, in submission order");
}
