//! Job lifecycle against real Redis and real hosts: cancelling jobs where
//! they are (waiting, delayed, running on a host) and looking jobs up.

use std::process::Stdio;
use std::time::{Duration, Instant};

use jobhost_tests::{
    Host, PluginDir, RedisServer, enqueue, entries, jobhost, jobhost_command, keys, ok_stdout,
    one_line_error, wait_until,
};

fn now_ms() -> u64 {
    jobhost::envelope::now_ms()
}

const WAIT: Duration = Duration::from_secs(60);
const JSON_LOG: &[&str] = &["--log-format", "json"];

/// `jobhost job ID --json`: the job's state object.
fn lookup(url: &str, id: &str) -> serde_json::Value {
    let out = jobhost(&["job", id, "--json", "--redis", url]);
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("job --json: {e}: {text}"))
}

fn state(url: &str, id: &str) -> String {
    lookup(url, id)["state"].as_str().unwrap_or("?").to_owned()
}

fn cancel(url: &str, ids: &[&str]) -> std::process::Output {
    jobhost(&[&["cancel"], ids, &["--redis", url]].concat())
}

/// The outcome of job `id` in `host`'s JSON log, once it is there.
fn logged_outcome(host: &Host, id: &str) -> Option<String> {
    host.log()
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line["fields"]["message"] == "job finished")
        .find(|line| line["fields"]["job_id"] == id)
        .map(|line| line["fields"]["outcome"].as_str().unwrap_or("").to_owned())
}

fn counter(conn: &mut redis::Connection, name: &str) -> u64 {
    let value: Option<u64> = redis::cmd("HGET")
        .arg(keys::COUNTERS)
        .arg(name)
        .query(conn)
        .expect("HGET");
    value.unwrap_or(0)
}

#[test]
fn a_waiting_job_cancelled_never_runs() {
    let redis = RedisServer::start();
    let url = redis.url();
    let first = enqueue(&url, &["test.echo", "first"]);
    let second = enqueue(&url, &["test.echo", "second"]);
    assert_eq!(state(&url, &first), "waiting");
    let out = ok_stdout(cancel(&url, &[&first]));
    assert!(out.contains("cancelled while waiting"), "{out}");
    assert_eq!(state(&url, &first), "cancelled", "kept by cancel");

    let plugins = PluginDir::with(&["testbed"]);
    let host = Host::builder(&url, plugins.path()).args(JSON_LOG).start();
    // The second was behind the first: once it ran, the first would have.
    wait_until("the second job runs", WAIT, || {
        logged_outcome(&host, &second).is_some()
    });
    assert_eq!(logged_outcome(&host, &first), None, "{}", host.tail());
    let mut conn = redis.connection();
    assert_eq!(counter(&mut conn, "cancelled"), 1);
    assert_eq!(counter(&mut conn, "done"), 1);
}

#[test]
fn a_delayed_job_cancelled_never_runs_and_cancelling_it_again_says_it_finished() {
    let redis = RedisServer::start();
    let url = redis.url();
    let plugins = PluginDir::with(&["testbed"]);
    let host = Host::builder(&url, plugins.path()).args(JSON_LOG).start();
    let delayed = enqueue(&url, &["test.echo", "later", "--delay", "2s"]);
    let job = lookup(&url, &delayed);
    assert_eq!(job["state"], "delayed", "{job}");
    let out = ok_stdout(cancel(&url, &[&delayed]));
    assert!(out.contains("cancelled while delayed"), "{out}");
    // Enqueued after it and due after it: once it ran, the cancelled one would have.
    let after = enqueue(&url, &["test.echo", "after", "--delay", "3s"]);
    wait_until("the later job runs", WAIT, || {
        logged_outcome(&host, &after).is_some()
    });
    assert_eq!(logged_outcome(&host, &delayed), None, "{}", host.tail());

    let again = cancel(&url, &[&delayed]);
    assert_eq!(again.status.code(), Some(1));
    let text = String::from_utf8_lossy(&again.stdout);
    assert!(text.contains("already finished (cancelled)"), "{text}");
    let unknown = cancel(&url, &["no-such-job"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stdout).contains("unknown"));
}

/// The job id of the one entry in the default stream.
fn only_job_id(conn: &mut redis::Connection) -> String {
    let all = entries(conn, keys::STREAM);
    assert_eq!(all.len(), 1, "{all:?}");
    all[0].1["job_id"].clone()
}

/// Starts `jobhost enqueue TYPE PAYLOAD --wait` in the background.
fn waiter(url: &str, job_type: &str, payload: &str) -> std::process::Child {
    jobhost_command(&[
        "enqueue",
        job_type,
        payload,
        "--wait",
        "--timeout",
        "60s",
        "--redis",
        url,
    ])
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawning a waiting producer")
}

/// Waits for `child` to exit; its exit code and when it exited.
fn exit_of(mut child: std::process::Child) -> (Option<i32>, Instant) {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return (status.code(), Instant::now());
        }
        assert!(Instant::now() < deadline, "the waiter did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn assert_running_job_is_stopped(job_type: &str, payload: &str) {
    let redis = RedisServer::start();
    let url = redis.url();
    let mut conn = redis.connection();
    let plugins = PluginDir::with(&["testbed"]);
    let host = Host::builder(&url, plugins.path())
        .args(JSON_LOG)
        .args(&["--consumer", "host-a", "--keep-results", "1h"])
        .start();
    let producer = waiter(&url, job_type, payload);
    wait_until("the job is in the stream", WAIT, || {
        !entries(&mut conn, keys::STREAM).is_empty()
    });
    let id = only_job_id(&mut conn);
    wait_until("the job runs on host-a", WAIT, || {
        let job = lookup(&url, &id);
        job["state"] == "running" && job["host"] == "host-a"
    });
    let asked = Instant::now();
    let out = ok_stdout(cancel(&url, &[&id]));
    assert!(out.contains("host-a stopped it"), "{out}");
    let (code, exited) = exit_of(producer);
    assert_eq!(
        code,
        Some(4),
        "a waiting producer exits 4 when its job is cancelled"
    );
    let took = exited - asked;
    assert!(took < Duration::from_secs(1), "stopped after {took:?}");
    wait_until("the host logs the outcome", WAIT, || {
        logged_outcome(&host, &id).is_some()
    });
    assert_eq!(logged_outcome(&host, &id).as_deref(), Some("cancelled"));
    let job = lookup(&url, &id);
    assert_eq!(job["state"], "cancelled", "{job}");
    assert_eq!(job["host"], "host-a", "{job}");
    assert_eq!(counter(&mut conn, "cancelled"), 1);
    assert_eq!(
        counter(&mut conn, "retry"),
        0,
        "a cancelled job is not retried"
    );
    assert_eq!(counter(&mut conn, "dead"), 0);
    let delayed: u64 = redis::cmd("ZCARD")
        .arg(keys::DELAYED)
        .query(&mut conn)
        .unwrap();
    assert_eq!(delayed, 0);
    let marks: u64 = redis::cmd("EXISTS")
        .arg("jobhost:{default}:cancelling")
        .query(&mut conn)
        .unwrap();
    assert_eq!(marks, 0, "the mark goes with the outcome");
}

#[test]
fn a_job_sleeping_in_a_host_call_is_stopped_in_under_a_second_and_its_waiter_told() {
    assert_running_job_is_stopped("test.sleep", "30000");
}

#[test]
fn a_job_spinning_in_wasm_code_is_stopped_in_under_a_second() {
    assert_running_job_is_stopped("test.loop", "");
}

#[test]
fn lookup_reports_waiting_delayed_running_done_dead_and_unknown() {
    let redis = RedisServer::start();
    let url = redis.url();
    let waiting = enqueue(&url, &["test.echo", "w"]);
    let text = ok_stdout(jobhost(&["job", &waiting, "--redis", &url]));
    assert!(text.contains("waiting (stream entry"), "{text}");
    let expiring = enqueue(&url, &["test.echo", "e", "--expires-in", "1ms"]);
    let delayed = enqueue(&url, &["test.echo", "d", "--delay", "1h"]);
    let job = lookup(&url, &delayed);
    assert_eq!(job["state"], "delayed", "{job}");
    assert!(job["due_at"].as_str().is_some(), "{job}");

    let plugins = PluginDir::with(&["testbed"]);
    let _host = Host::builder(&url, plugins.path())
        .args(&[
            "--consumer",
            "host-b",
            "--keep-results",
            "1h",
            "--max-attempts",
            "1",
        ])
        // A heartbeat every 400 ms, which resets the entry's idle time.
        .args(&["--claim-idle", "1200ms"])
        .start();
    let enqueued = now_ms();
    let slow = enqueue(&url, &["test.sleep", "30000"]);
    wait_until("the slow job runs on host-b", WAIT, || {
        let job = lookup(&url, &slow);
        job["state"] == "running" && job["host"] == "host-b"
    });
    let since = |job: &serde_json::Value| job["since_ms"].as_u64().expect("since_ms");
    let first = since(&lookup(&url, &slow));
    assert!(
        first + 1000 >= enqueued && first <= now_ms(),
        "since {first}, enqueued {enqueued}"
    );
    let mut conn = redis.connection();
    wait_until("a heartbeat wrote what host-b holds", WAIT, || {
        redis::cmd("EXISTS")
            .arg("jobhost:{default}:held:host-b")
            .query::<u64>(&mut conn)
            .unwrap()
            == 1
    });
    let after_beat = since(&lookup(&url, &slow));
    assert!(
        first.abs_diff(after_beat) < 500,
        "{first} then {after_beat}"
    );
    let text = ok_stdout(jobhost(&["job", &slow, "--redis", &url]));
    assert!(text.contains("running on host-b since "), "{text}");
    assert!(text.contains("(attempt 1"), "{text}");

    wait_until("the waiting job is done", WAIT, || {
        state(&url, &waiting) == "done"
    });
    wait_until("the expiring job is recorded expired", WAIT, || {
        state(&url, &expiring) == "expired"
    });
    let done = lookup(&url, &waiting);
    assert_eq!(done["output"], "w", "{done}");
    assert_eq!(done["host"], "host-b", "{done}");
    let fatal = enqueue(&url, &["test.fatal", "x"]);
    wait_until("the fatal job is dead", WAIT, || {
        state(&url, &fatal) == "dead"
    });
    let dead = lookup(&url, &fatal);
    assert!(
        dead["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("refused on purpose"),
        "{dead}"
    );
    // Without a kept result, the dead-letter stream still knows it.
    let _: () = redis::cmd("DEL")
        .arg(format!("jobhost:{{default}}:result:{fatal}"))
        .query(&mut conn)
        .unwrap();
    let dead = lookup(&url, &fatal);
    assert_eq!(dead["state"], "dead", "{dead}");
    assert!(dead["dlq_entry_id"].as_str().is_some(), "{dead}");

    let unknown = jobhost(&["job", "no-such-job", "--redis", &url]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stdout).contains("unknown"));
    ok_stdout(cancel(&url, &[&slow]));
}

#[test]
fn keys_of_another_type_are_reported_and_keep_no_host_from_serving() {
    let redis = RedisServer::start();
    let url = redis.url();
    let mut conn = redis.connection();
    let _: () = redis::cmd("SET")
        .arg("jobhost:{default}:cancelling")
        .arg("x")
        .query(&mut conn)
        .unwrap();
    let plugins = PluginDir::with(&["testbed"]);
    let host = Host::builder(&url, plugins.path())
        .args(JSON_LOG)
        .args(&["--keep-results", "1h"])
        .start();
    let id = enqueue(&url, &["test.echo", "served"]);
    wait_until("the job runs", WAIT, || {
        logged_outcome(&host, &id).is_some()
    });
    assert_eq!(logged_outcome(&host, &id).as_deref(), Some("done"));
    host.wait_for_log("key jobhost:{default}:cancelling is not a hash", WAIT);
    // A delayed job needs no mark: it is cancelled all the same.
    let waiting = enqueue(&url, &["test.sleep", "1", "--delay", "1h"]);
    ok_stdout(cancel(&url, &[&waiting]));
    // A running one does: refused in one line naming the key.
    let running = enqueue(&url, &["test.sleep", "30000"]);
    wait_until("the slow job runs", WAIT, || {
        state(&url, &running) == "running"
    });
    let refused = one_line_error(&cancel(&url, &[&running]));
    assert!(
        refused.contains("jobhost:{default}:cancelling"),
        "{refused}"
    );

    let _: () = redis::cmd("SET")
        .arg(format!("jobhost:{{default}}:result:{waiting}"))
        .arg("x")
        .query(&mut conn)
        .unwrap();
    one_line_error(&jobhost(&["job", &waiting, "--redis", &url]));
    let _: () = redis::cmd("SET")
        .arg(keys::DELAYED)
        .arg("x")
        .query(&mut conn)
        .unwrap();
    let refused = one_line_error(&jobhost(&["job", "any-id", "--redis", &url]));
    assert!(
        refused.contains("holds a string, not a sorted set"),
        "{refused}"
    );
}

#[test]
fn a_cancelled_unique_job_frees_its_key_whether_it_was_delayed_or_running() {
    let redis = RedisServer::start();
    let url = redis.url();
    let unique_enqueue = |args: &[&str]| {
        jobhost(
            &[
                &["enqueue"],
                args,
                &["--unique", "order-7", "--redis", &url],
            ]
            .concat(),
        )
    };
    let delayed = enqueue(
        &url,
        &["test.echo", "a", "--unique", "order-7", "--delay", "1h"],
    );
    assert_eq!(unique_enqueue(&["test.echo", "b"]).status.code(), Some(3));
    ok_stdout(cancel(&url, &[&delayed]));
    let running = ok_stdout(unique_enqueue(&["test.sleep", "30000"]));
    let running = running.trim();
    assert_ne!(running, delayed);

    let plugins = PluginDir::with(&["testbed"]);
    let _host = Host::builder(&url, plugins.path()).start();
    wait_until("the job runs", WAIT, || state(&url, running) == "running");
    assert_eq!(unique_enqueue(&["test.echo", "c"]).status.code(), Some(3));
    ok_stdout(cancel(&url, &[running]));
    let third = unique_enqueue(&["test.echo", "d"]);
    assert_eq!(third.status.code(), Some(0), "{third:?}");
}

fn signal(host: &Host, signal: libc::c_int) {
    // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
    unsafe {
        libc::kill(host.pid() as libc::pid_t, signal);
    }
}

#[test]
fn a_running_job_of_a_frozen_host_is_cancelled_by_the_host_that_reclaims_it_without_running() {
    let redis = RedisServer::start();
    let url = redis.url();
    let plugins = PluginDir::with(&["testbed"]);
    let reclaim = ["--claim-idle", "1s"];
    let frozen = Host::builder(&url, plugins.path())
        .args(&reclaim)
        .args(&["--consumer", "frozen"])
        .start();
    let id = enqueue(&url, &["test.sleep", "30000"]);
    wait_until("the job runs on the first host", WAIT, || {
        lookup(&url, &id)["host"] == "frozen"
    });
    signal(&frozen, libc::SIGSTOP);
    let out = ok_stdout(cancel(&url, &[&id]));
    assert!(out.contains("frozen has not stopped it yet"), "{out}");

    let second = Host::builder(&url, plugins.path())
        .args(JSON_LOG)
        .args(&reclaim)
        .start();
    wait_until("the second host records it", WAIT, || {
        logged_outcome(&second, &id).is_some()
    });
    assert_eq!(logged_outcome(&second, &id).as_deref(), Some("cancelled"));
    assert!(
        !second.log().contains("sleeping 30000 ms"),
        "{}",
        second.tail()
    );
    let mut conn = redis.connection();
    assert_eq!(counter(&mut conn, "cancelled"), 1);
    signal(&frozen, libc::SIGCONT);
}
