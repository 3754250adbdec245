//! Unique jobs (SPEC §12, issue #18): `enqueue --unique KEY [--unique-for D]`.
//! While a job holding KEY is waiting, delayed or running, another enqueue of
//! KEY is a duplicate: it prints the first job's id and exits 3. The job's
//! final outcome releases the key, only if it still holds it.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use jobhost::client::{Client, Enqueued};
use jobhost::keys::QueueKeys;
use jobhost_tests::topologies::RedisCluster;
use jobhost_tests::{
    Host, PluginDir, RedisServer, dead_letter, done_count, enqueue, jobhost, jobhost_bin,
    jobhost_with_stdin, keys, one_line_error, pending_count, wait_until,
};

const WAIT: Duration = Duration::from_secs(30);
const EXIT_DUPLICATE: i32 = 3;

/// The Redis key of unique key `key` in the default queue.
fn unique_key(key: &str) -> String {
    QueueKeys::new("jobhost", "default").unique(key)
}

fn holder(conn: &mut redis::Connection, key: &str) -> Option<String> {
    redis::cmd("GET").arg(unique_key(key)).query(conn).unwrap()
}

fn stream_len(conn: &mut redis::Connection) -> u64 {
    redis::cmd("XLEN").arg(keys::STREAM).query(conn).unwrap()
}

fn stdout_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `jobhost enqueue ARGS... --redis URL`, whatever it does.
fn try_enqueue(url: &str, args: &[&str]) -> Output {
    jobhost(&[&["enqueue"], args, &["--redis", url]].concat())
}

/// An enqueue that must be refused as a duplicate of `first`.
fn assert_duplicate_of(out: &Output, first: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(EXIT_DUPLICATE), "{stderr}");
    assert_eq!(stdout_of(out), first, "the first job's id on stdout");
    assert!(
        stderr.contains(&format!("duplicate of {first}")),
        "{stderr}"
    );
}

fn wait_done(host: &Host, id: &str) {
    host.wait_for_log(
        &format!("job_id={id} type=test.echo plugin=testbed attempt=1 outcome=done"),
        WAIT,
    );
}

#[test]
fn a_hundred_racing_enqueues_of_one_key_make_exactly_one_job() {
    let redis = RedisServer::start();
    let url = redis.url();
    // 100 producer processes at once, released together.
    let children: Vec<_> = (0..100)
        .map(|i| {
            Command::new(jobhost_bin())
                .args(["enqueue", "--unique", "order-42", "test.echo"])
                .arg(format!("attempt {i}"))
                .args(["--redis", &url])
                .env_remove("REDIS_URL")
                .env_remove("JOBHOST_REDIS_URL")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn jobhost enqueue")
        })
        .collect();
    let outputs: Vec<Output> = children
        .into_iter()
        .map(|child| child.wait_with_output().expect("jobhost enqueue output"))
        .collect();

    let (queued, refused): (Vec<&Output>, Vec<&Output>) =
        outputs.iter().partition(|out| out.status.success());
    assert_eq!(queued.len(), 1, "exactly one enqueue is accepted");
    let first = stdout_of(queued[0]);
    assert_eq!(refused.len(), 99);
    for out in refused {
        assert_duplicate_of(out, &first);
    }
    let mut conn = redis.connection();
    assert_eq!(stream_len(&mut conn), 1, "one job in Redis");
    assert_eq!(
        holder(&mut conn, "order-42").as_deref(),
        Some(first.as_str())
    );
}

#[test]
fn a_key_is_free_again_once_its_job_is_done_or_dead() {
    let redis = RedisServer::start();
    let plugins = PluginDir::with(&["testbed"]);
    let mut conn = redis.connection();
    // Held while waiting: no host runs yet.
    let first = enqueue(&redis.url(), &["--unique", "k", "test.echo", "one"]);
    assert_duplicate_of(
        &try_enqueue(&redis.url(), &["--unique", "k", "test.echo", "two"]),
        &first,
    );
    let host = Host::start(&redis.url(), plugins.path(), &[]);
    wait_done(&host, &first);
    wait_until("the done job releases its key", WAIT, || {
        holder(&mut conn, "k").is_none()
    });
    let second = enqueue(&redis.url(), &["--unique", "k", "test.echo", "three"]);
    assert_ne!(second, first);
    wait_done(&host, &second);

    let dead = enqueue(&redis.url(), &["--unique", "d", "test.fatal", "x"]);
    dead_letter(&redis, &dead, WAIT);
    wait_until("the dead job releases its key", WAIT, || {
        holder(&mut conn, "d").is_none()
    });
    let again = enqueue(&redis.url(), &["--unique", "d", "test.echo", "y"]);
    assert_ne!(again, dead);
    wait_done(&host, &again);
}

#[test]
fn an_expired_job_frees_its_key() {
    let redis = RedisServer::start();
    let plugins = PluginDir::with(&["testbed"]);
    let mut conn = redis.connection();
    let stale = enqueue(
        &redis.url(),
        &["--unique", "e", "--expires-in", "1ms", "test.echo", "x"],
    );
    let host = Host::start(&redis.url(), plugins.path(), &[]);
    host.wait_for_log(&format!("job_id={stale} "), WAIT);
    wait_until("the expired job releases its key", WAIT, || {
        holder(&mut conn, "e").is_none()
    });
}

#[test]
fn unique_jobs_work_on_a_cluster() {
    let cluster = RedisCluster::start();
    let url = cluster.url();
    let plugins = PluginDir::with(&["testbed"]);
    let queue = cluster.queue_on_another_master("default");
    let args = |payload: &'static str| {
        vec![
            "--queue",
            queue.as_str(),
            "--unique",
            "k",
            "test.echo",
            payload,
        ]
    };
    let first = enqueue(&url, &args("a"));
    assert_duplicate_of(&try_enqueue(&url, &args("b")), &first);
    let lines = r#"{"type":"test.echo","payload":"c","unique":"k"}"#;
    let out = jobhost_with_stdin(
        &["enqueue", "--batch", "--queue", &queue, "--redis", &url],
        lines,
    );
    assert_eq!(out.status.code(), Some(EXIT_DUPLICATE));
    assert_eq!(stdout_of(&out), first);

    let host = Host::start(&url, plugins.path(), &["--queue", &queue]);
    host.wait_for_log(
        &format!("job_id={first} type=test.echo plugin=testbed attempt=1 outcome=done"),
        WAIT,
    );
    wait_until("the key is released on its slot", WAIT, || {
        try_enqueue(&url, &args("d")).status.success()
    });
}

#[test]
fn after_unique_for_a_second_job_is_accepted_and_the_first_cannot_release_its_key() {
    let redis = RedisServer::start();
    let plugins = PluginDir::with(&["testbed"]);
    let mut conn = redis.connection();
    let first = enqueue(
        &redis.url(),
        &[
            "--unique",
            "k",
            "--unique-for",
            "1s",
            "--delay",
            "2s",
            "test.echo",
            "first",
        ],
    );
    assert_duplicate_of(
        &try_enqueue(&redis.url(), &["--unique", "k", "test.echo", "x"]),
        &first,
    );
    wait_until("the key expires after 1 s", WAIT, || {
        holder(&mut conn, "k").is_none()
    });
    let delayed: u64 = redis::cmd("ZCARD")
        .arg(keys::DELAYED)
        .query(&mut conn)
        .unwrap();
    assert_eq!(delayed, 1, "the first job still waits in the delayed set");

    // The second holds the key for a long time (delayed an hour).
    let second = enqueue(
        &redis.url(),
        &["--unique", "k", "--delay", "1h", "test.echo", "second"],
    );
    assert_ne!(second, first);
    let ttl: i64 = redis::cmd("PTTL")
        .arg(unique_key("k"))
        .query(&mut conn)
        .unwrap();
    assert!(
        ttl > 24 * 3_600_000,
        "held up to 24 h past its due time: {ttl} ms"
    );

    let host = Host::start(&redis.url(), plugins.path(), &[]);
    wait_done(&host, &first);
    assert_eq!(
        holder(&mut conn, "k").as_deref(),
        Some(second.as_str()),
        "the first job's outcome left the second's key alone"
    );
    assert_duplicate_of(
        &try_enqueue(&redis.url(), &["--unique", "k", "test.echo", "y"]),
        &second,
    );
}

#[test]
fn a_job_of_a_killed_host_releases_its_key_when_another_host_finishes_it() {
    let redis = RedisServer::start();
    let plugins = PluginDir::with(&["testbed"]);
    let reclaim = ["--claim-idle", "1s"];
    let mut conn = redis.connection();
    let mut doomed = Host::start(&redis.url(), plugins.path(), &reclaim);
    let id = enqueue(&redis.url(), &["--unique", "slow", "test.sleep", "3000"]);
    doomed.wait_for_log("sleeping 3000 ms", WAIT);
    doomed.kill();
    assert_duplicate_of(
        &try_enqueue(&redis.url(), &["--unique", "slow", "test.echo", "x"]),
        &id,
    );

    let rescuer = Host::start(&redis.url(), plugins.path(), &reclaim);
    rescuer.wait_for_log(
        &format!("job_id={id} type=test.sleep plugin=testbed attempt=1 outcome=done"),
        WAIT,
    );
    wait_until("the reclaimed job's outcome releases its key", WAIT, || {
        holder(&mut conn, "slow").is_none()
    });
    let next = enqueue(&redis.url(), &["--unique", "slow", "test.echo", "next"]);
    wait_done(&rescuer, &next);
}

#[test]
fn a_unique_key_of_another_type_is_refused_with_one_line() {
    let redis = RedisServer::start();
    let mut conn = redis.connection();
    let key = unique_key("taken");
    let _: () = redis::cmd("HSET")
        .arg(&key)
        .arg("f")
        .arg("v")
        .query(&mut conn)
        .unwrap();
    let out = try_enqueue(&redis.url(), &["--unique", "taken", "test.echo", "x"]);
    let error = one_line_error(&out);
    assert_eq!(out.status.code(), Some(1), "{error}");
    assert!(
        error.contains(&key) && error.contains("hash") && error.contains("delete"),
        "{error}"
    );
    assert_eq!(stream_len(&mut conn), 0, "nothing was written");

    let out = try_enqueue(&redis.url(), &["--unique", "", "test.echo", "x"]);
    assert!(one_line_error(&out).contains("--unique"));
    let out = try_enqueue(&redis.url(), &["--unique-for", "1m", "test.echo", "x"]);
    assert!(one_line_error(&out).contains("--unique KEY"));
}

#[test]
fn a_unique_key_of_another_type_at_release_leaves_the_job_recorded_done() {
    let redis = RedisServer::start();
    let plugins = PluginDir::with(&["testbed"]);
    let mut conn = redis.connection();
    let id = enqueue(&redis.url(), &["--unique", "k", "test.echo", "x"]);
    let key = unique_key("k");
    let _: () = redis::cmd("DEL").arg(&key).query(&mut conn).unwrap();
    let _: () = redis::cmd("RPUSH")
        .arg(&key)
        .arg("x")
        .query(&mut conn)
        .unwrap();

    let host = Host::start(&redis.url(), plugins.path(), &[]);
    wait_done(&host, &id);
    host.wait_for_log("unique key not released", WAIT);
    assert_eq!(done_count(&mut conn), 1);
    assert_eq!(pending_count(&mut conn), 0);
    let kind: String = redis::cmd("TYPE").arg(&key).query(&mut conn).unwrap();
    assert_eq!(kind, "list", "left alone");
}

#[test]
fn a_batch_reports_each_duplicate_line_and_goes_on() {
    let redis = RedisServer::start();
    let mut conn = redis.connection();
    let lines = [
        r#"{"type":"test.echo","payload":"a","unique":"u1"}"#,
        r#"{"type":"test.echo","payload":"b","unique":"u1"}"#,
        r#"{"type":"test.echo","payload":"c"}"#,
        r#"{"type":"test.echo","payload":"d","unique":"u2","unique_for":"10m"}"#,
    ]
    .join("\n");
    let out = jobhost_with_stdin(&["enqueue", "--batch", "--redis", &redis.url()], &lines);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(EXIT_DUPLICATE), "{stderr}");
    let ids: Vec<String> = stdout_of(&out).lines().map(str::to_owned).collect();
    assert_eq!(ids.len(), 4, "one id per line: {ids:?}");
    assert_eq!(ids[1], ids[0], "the duplicate line prints the first id");
    assert!(
        stderr.contains(&format!("line 2: duplicate of {}", ids[0])),
        "{stderr}"
    );
    assert_eq!(stream_len(&mut conn), 3);
    assert_eq!(holder(&mut conn, "u2").as_deref(), Some(ids[3].as_str()));
    let ttl: i64 = redis::cmd("PTTL")
        .arg(unique_key("u2"))
        .query(&mut conn)
        .unwrap();
    assert!(ttl > 0 && ttl <= 600_000, "held 10 minutes: {ttl} ms");

    // A batch without duplicates exits 0.
    let out = jobhost_with_stdin(
        &["enqueue", "--batch", "--redis", &redis.url()],
        r#"{"type":"test.echo","payload":"e","unique":"u3"}"#,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_waiting_duplicate_is_told_at_once_and_a_delayed_job_holds_its_key() {
    let redis = RedisServer::start();
    let first = enqueue(
        &redis.url(),
        &[
            "--unique",
            "k",
            "--at",
            "2099-01-01T00:00:00Z",
            "test.echo",
            "later",
        ],
    );
    let out = try_enqueue(
        &redis.url(),
        &[
            "--unique",
            "k",
            "--wait",
            "--timeout",
            "30s",
            "test.echo",
            "now",
        ],
    );
    assert_duplicate_of(&out, &first);
}

#[test]
fn the_client_says_whether_a_unique_job_was_queued_or_a_duplicate() {
    let redis = RedisServer::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (first, second) = runtime.block_on(async {
        let client = Client::new(&redis.url(), "jobhost", "default", 10).unwrap();
        let first = client
            .enqueue_unique("test.echo", "a", "c1", None)
            .await
            .unwrap();
        let second = client
            .enqueue_unique("test.echo", "b", "c1", Some(Duration::from_secs(60)))
            .await
            .unwrap();
        (first, second)
    });
    let Enqueued::Queued(id) = first else {
        panic!("the first is queued: {first:?}");
    };
    assert_eq!(second, Enqueued::Duplicate(id.clone()));
    let mut conn = redis.connection();
    assert_eq!(holder(&mut conn, "c1").as_deref(), Some(id.as_str()));
    assert_eq!(stream_len(&mut conn), 1);
}
