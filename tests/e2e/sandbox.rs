//! The sandbox (SPEC §6): a bad plugin or a bad message costs only its own job.
//! Misbehaving guests get plain-words outcomes while the host and every other
//! plugin keep working; hostile entries and hostile files are refused with
//! their reason.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jobhost_tests::{
    Host, PluginDir, RedisServer, built_plugins, enqueue, entries, jobhost, jobhost_with_stdin,
    keys, wait_until, xadd_job,
};

const WAIT: Duration = Duration::from_secs(60);

/// DLQ entries by job id (or by entry id for entries without one).
fn dead_by_id(conn: &mut redis::Connection) -> HashMap<String, HashMap<String, String>> {
    entries(conn, keys::DLQ)
        .into_iter()
        .map(|(_, fields)| {
            let id = fields
                .get("job_id")
                .or(fields.get("original_id"))
                .cloned()
                .unwrap_or_default();
            (id, fields)
        })
        .collect()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn misbehaving_jobs_get_plain_words_outcomes_while_everything_else_keeps_flowing() {
    let redis = RedisServer::start();
    let plugins = PluginDir::with(&["testbed", "hello"]);
    plugins.write(
        "testbed.toml",
        b"[limits]\ntimeout = \"1s\"\nmax_attempts = 1\n",
    );
    let host = Host::start(&redis.url(), plugins.path(), &["--concurrency", "2"]);

    let bad = [
        ("test.loop", "timed out after 1s"),
        ("test.memory", "memory limit of 64 MiB reached"),
        ("test.recursion", "trap: call stack exhausted"),
        (
            "test.panic",
            "trap: panicked at tests/guests/testbed/src/lib.rs",
        ),
        (
            "test.huge-output",
            "output of 8388608 bytes exceeds the limit",
        ),
        (
            "test.enqueue-loop",
            "enqueue refused: a job may enqueue at most 1000 follow-up jobs",
        ),
    ];
    let mut bad_ids = Vec::new();
    let mut good_ids = Vec::new();
    for (job_type, _) in bad {
        bad_ids.push(enqueue(&redis.url(), &[job_type, "x"]));
        good_ids.push(enqueue(&redis.url(), &["hello.neighbour", "{}"]));
    }
    let slow = enqueue(&redis.url(), &["test.sleep", "300"]);

    for id in &good_ids {
        host.wait_for_log(
            &format!("job_id={id} type=hello.neighbour plugin=hello attempt=1 outcome=done"),
            WAIT,
        );
    }
    host.wait_for_log(
        &format!("job_id={slow} type=test.sleep plugin=testbed attempt=1 outcome=done"),
        WAIT,
    );

    let mut conn = redis.connection();
    wait_until("every bad job is dead-lettered", WAIT, || {
        entries(&mut conn, keys::DLQ).len() == bad.len()
    });
    let dead = dead_by_id(&mut conn);
    for ((job_type, reason), id) in bad.iter().zip(&bad_ids) {
        let error = &dead[id]["last_error"];
        assert!(
            error.contains(reason),
            "{job_type}: {error:?} lacks {reason:?}"
        );
    }
    assert!(dead[&bad_ids[3]]["last_error"].contains("testbed panics on purpose"));
    // The host survived all of it, within bounded memory.
    let rss = rss_kib(host.pid());
    assert!(rss > 0 && rss < 256 * 1024, "host RSS {rss} KiB");
    let id = enqueue(&redis.url(), &["hello.after", "{}"]);
    host.wait_for_log(
        &format!("job_id={id} type=hello.after plugin=hello attempt=1 outcome=done"),
        WAIT,
    );
}

/// Kept apart from the test above and its 1 s limit: logging 64 KiB line by
/// line is slow in a debug build on a busy machine, and here the job must finish.
#[test]
fn a_log_flood_is_truncated_and_the_job_and_its_neighbours_finish() {
    let redis = RedisServer::start();
    let plugins = PluginDir::with(&["testbed", "hello"]);
    let host = Host::start(&redis.url(), plugins.path(), &["--concurrency", "2"]);
    let flood = enqueue(&redis.url(), &["test.log-flood", "x"]);
    let neighbour = enqueue(&redis.url(), &["hello.neighbour", "{}"]);
    host.wait_for_log(
        &format!("job_id={neighbour} type=hello.neighbour plugin=hello attempt=1 outcome=done"),
        WAIT,
    );
    host.wait_for_log(
        &format!("job_id={flood} type=test.log-flood plugin=testbed attempt=1 outcome=done"),
        WAIT,
    );
    let log = host.log();
    assert!(log.contains("guest stdout truncated after 65536 bytes"));
    assert!(
        !log.contains("flood line 19999"),
        "lines past the budget are dropped"
    );
}

#[test]
fn invoke_shows_the_same_plain_words_errors() {
    let testbed = built_plugins().join("testbed.wasm");
    let out = jobhost(&["invoke", testbed.to_str().unwrap(), "test.memory", "x"]);
    assert_eq!(out.status.code(), Some(75));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("retry: memory limit of 64 MiB reached"),
        "{err}"
    );

    let out = jobhost(&["invoke", testbed.to_str().unwrap(), "test.panic", "x"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("retry: trap: panicked at") && err.contains("testbed panics on purpose"),
        "{err}"
    );
}

#[test]
fn nothing_is_granted_unless_the_manifest_grants_it() {
    let redis = RedisServer::start();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("note.txt"), "from the host").unwrap();
    let plugins = PluginDir::with(&["testbed"]);
    let host = Host::start(&redis.url(), plugins.path(), &["--max-attempts", "1"]);
    let env = enqueue(&redis.url(), &["test.env", "HOME"]);
    let read = enqueue(&redis.url(), &["test.read", "/data/note.txt"]);
    host.wait_for_log(
        &format!("job_id={env} type=test.env plugin=testbed attempt=1 outcome=dead"),
        WAIT,
    );
    host.wait_for_log(
        &format!("job_id={read} type=test.read plugin=testbed attempt=1 outcome=dead"),
        WAIT,
    );
    drop(host);

    plugins.write(
        "testbed.toml",
        format!(
            "[grants]\nenv = [\"HOME\"]\ndirs = [{{ host = \"{}\", guest = \"/data\" }}]\n",
            data.path().display()
        )
        .as_bytes(),
    );
    let host = Host::start(&redis.url(), plugins.path(), &["--max-attempts", "1"]);
    let env = enqueue(&redis.url(), &["test.env", "HOME"]);
    let read = enqueue(&redis.url(), &["test.read", "/data/note.txt"]);
    host.wait_for_log(
        &format!("job_id={env} type=test.env plugin=testbed attempt=1 outcome=done"),
        WAIT,
    );
    host.wait_for_log(
        &format!("job_id={read} type=test.read plugin=testbed attempt=1 outcome=done"),
        WAIT,
    );
}

#[test]
fn manifest_with_an_unknown_key_is_refused_naming_the_key() {
    let redis = RedisServer::start();
    let plugins = PluginDir::with(&["testbed", "hello"]);
    plugins.write("testbed.toml", b"[limits]\nmemroy_mib = 8\n");
    let host = Host::start(&redis.url(), plugins.path(), &[]);
    let log = host.log();
    let line = log
        .lines()
        .find(|l| l.contains("testbed.wasm"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        line.contains("ERROR") && line.contains("memroy_mib"),
        "{line}"
    );
    assert!(log.contains("plugin loaded plugin=hello"), "{log}");
}

#[test]
fn hostile_entries_are_dead_lettered_with_their_reason() {
    let redis = RedisServer::start();
    let plugins = PluginDir::with(&["hello"]);
    let host = Host::start(&redis.url(), plugins.path(), &["--max-payload", "1000"]);
    let mut conn = redis.connection();
    let mut xadd = |fields: &[(&str, &[u8])]| -> String {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(keys::STREAM).arg("*");
        for (k, v) in fields {
            cmd.arg(*k).arg(*v);
        }
        cmd.query(&mut conn).unwrap()
    };
    let at: &[u8] = b"2026-11-24T10:00:00Z";
    let cases = [
        (
            xadd(&[("type", b"hello.x"), ("payload", b"x"), ("produced_at", at)]),
            "missing field `v`",
        ),
        (
            xadd(&[
                ("v", b"2"),
                ("type", b"hello.x"),
                ("payload", b"x"),
                ("produced_at", at),
            ]),
            "unsupported envelope version \"2\"",
        ),
        (
            xadd(&[("v", b"1"), ("payload", b"x"), ("produced_at", at)]),
            "missing field `type`",
        ),
        (
            xadd(&[
                ("v", b"1"),
                ("type", &[0xff, 0xfe]),
                ("payload", b"x"),
                ("produced_at", at),
            ]),
            "field `type` is not UTF-8",
        ),
        (
            xadd(&[
                ("v", b"1"),
                ("type", b"hello.x"),
                ("payload", &[b'x'; 2000]),
                ("produced_at", at),
            ]),
            "payload of 2000 bytes exceeds the limit of 1000 bytes",
        ),
    ];
    let mut conn = redis.connection();
    wait_until("every hostile entry is dead-lettered", WAIT, || {
        entries(&mut conn, keys::DLQ).len() == cases.len()
    });
    let dead = dead_by_id(&mut conn);
    for (entry_id, reason) in &cases {
        let error = &dead[entry_id]["last_error"];
        assert!(
            error.contains(reason),
            "{entry_id}: {error:?} lacks {reason:?}"
        );
    }
    let id = xadd_job(&mut conn, "hello.fine", "{}");
    host.wait_for_log(
        &format!("job_id={id} type=hello.fine plugin=hello attempt=1 outcome=done"),
        WAIT,
    );
}

#[test]
fn enqueue_refuses_an_oversized_payload_before_touching_redis() {
    let huge = "x".repeat((1 << 20) + 1);
    // Nothing listens on port 1: the error must come before any connection attempt.
    let out = jobhost_with_stdin(
        &["enqueue", "hello.x", "-", "--redis", "redis://127.0.0.1:1"],
        &huge,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("payload is larger than the limit of 1048576 bytes"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn hostile_files_are_refused_one_line_each_while_the_others_load() {
    let redis = RedisServer::start();
    let plugins = PluginDir::with(&["hello", "orders", "otherworld", "badinfo", "newer-wit"]);
    plugins.add_as("orders", "orders2");
    plugins.write("text.wasm", b"not wasm at all");
    plugins.write("core.wasm", b"\0asm\x01\0\0\0");
    let host = Host::start(&redis.url(), plugins.path(), &[]);
    let log = host.log();
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    let expect = [
        ("text.wasm", "not a WebAssembly file"),
        ("core.wasm", "not a component (core module)"),
        ("otherworld.wasm", "not a jobhost plugin"),
        ("newer-wit.wasm", "built for jobhost:plugin@9.0.0"),
        ("badinfo.wasm", "invalid self-description"),
        ("orders2.wasm", "orders.created is already handled by"),
    ];
    for (file, reason) in expect {
        let lines: Vec<_> = errors
            .iter()
            .filter(|l| l.contains(file) && l.contains(reason))
            .collect();
        assert_eq!(lines.len(), 1, "{file}: {reason}\n{log}");
    }
    assert_eq!(errors.len(), expect.len(), "{log}");
    let hello = enqueue(&redis.url(), &["hello.x", "{}"]);
    let orders = enqueue(&redis.url(), &["orders.created", r#"{"id":1}"#]);
    host.wait_for_log(
        &format!("job_id={hello} type=hello.x plugin=hello attempt=1 outcome=done"),
        WAIT,
    );
    host.wait_for_log(
        &format!("job_id={orders} type=orders.created plugin=orders attempt=1 outcome=done"),
        WAIT,
    );
}

/// Writes one `test.count` (or other testbed) job per `(type, payload)` in a
/// single pipeline, so a one-thread host runs them back to back, in order.
fn xadd_in_order(redis: &RedisServer, jobs: &[(&str, &str)]) {
    let mut pipe = redis::pipe();
    for (job_type, payload) in jobs {
        pipe.cmd("XADD")
            .arg(keys::STREAM)
            .arg("*")
            .arg("v")
            .arg("1")
            .arg("type")
            .arg(*job_type)
            .arg("payload")
            .arg(*payload)
            .arg("produced_at")
            .arg("2026-11-24T10:00:00Z")
            .ignore();
    }
    let _: () = pipe.query(&mut redis.connection()).expect("XADD jobs");
}

/// Waits until `tag`'s `test.count` job logged which job of its instance it was.
fn count_of(host: &Host, tag: &str) -> u32 {
    let marker = format!("{tag} is job ");
    host.wait_for_log(&marker, WAIT);
    let log = host.log();
    let at = log.find(&marker).expect("just seen") + marker.len();
    log[at..]
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count after {marker:?} in\n{log}"))
}

#[test]
fn a_fresh_instance_per_job_carries_no_state_over() {
    let redis = RedisServer::start();
    let plugins = PluginDir::with(&["testbed"]);
    let host = Host::start(&redis.url(), plugins.path(), &["--concurrency", "1"]);
    xadd_in_order(
        &redis,
        &[
            ("test.count", "a"),
            ("test.count", "b"),
            ("test.count", "c"),
        ],
    );
    for tag in ["a", "b", "c"] {
        assert_eq!(count_of(&host, tag), 1, "{tag}");
    }
}

#[test]
fn a_reused_instance_keeps_state_until_its_job_limit_or_a_failure() {
    let redis = RedisServer::start();
    let plugins = PluginDir::with(&["testbed"]);
    let manifest = "[limits]\njobs_per_instance = 3\nmax_attempts = 1\n";
    plugins.write("testbed.toml", manifest.as_bytes());
    let host = Host::start(&redis.url(), plugins.path(), &["--concurrency", "1"]);

    xadd_in_order(
        &redis,
        &[
            ("test.count", "a"),
            ("test.count", "b"),
            ("test.count", "c"),
            // Three jobs served: replaced.
            ("test.count", "d"),
            ("test.count", "e"),
            // A trap: the instance is dropped, never entered again.
            ("test.panic", "x"),
            ("test.count", "f"),
            ("test.count", "g"),
            // An error returned by the handler: dropped too.
            ("test.fatal", "x"),
            ("test.count", "h"),
        ],
    );
    let counts: Vec<u32> = ["a", "b", "c", "d", "e", "f", "g", "h"]
        .iter()
        .map(|tag| count_of(&host, tag))
        .collect();
    assert_eq!(counts, [1, 2, 3, 1, 2, 1, 2, 1]);
    // Its outcome is logged once recorded, which may come after later jobs ran.
    host.wait_for_log("trap: panicked at", WAIT);
}

#[test]
fn a_reloaded_plugin_never_runs_in_an_instance_of_its_previous_version() {
    let redis = RedisServer::start();
    let plugins = PluginDir::with(&["testbed"]);
    let manifest = "[limits]\njobs_per_instance = 100\n";
    plugins.write("testbed.toml", manifest.as_bytes());
    let host = Host::start(&redis.url(), plugins.path(), &["--concurrency", "1"]);
    // Without a reload, state carries over a slow job of the same instance.
    xadd_in_order(
        &redis,
        &[
            ("test.count", "a"),
            ("test.sleep", "100"),
            ("test.count", "b"),
        ],
    );
    assert_eq!((count_of(&host, "a"), count_of(&host, "b")), (1, 2));
    // The plugin reloads while the thread is busy in its kept instance.
    xadd_in_order(&redis, &[("test.count", "c"), ("test.sleep", "3000")]);
    assert_eq!(count_of(&host, "c"), 3);
    host.wait_for_log("sleeping 3000 ms", WAIT);
    plugins.write("testbed.toml", format!("{manifest}# edited\n").as_bytes());
    host.wait_for_log("plugin reloaded plugin=testbed", WAIT);
    xadd_in_order(&redis, &[("test.count", "d")]);
    assert_eq!(count_of(&host, "d"), 1);
}

/// The dead-lettered job `id`'s last error, once it is there.
fn last_error_of(redis: &RedisServer, id: &str) -> String {
    let mut conn = redis.connection();
    wait_until(&format!("{id} is dead-lettered"), WAIT, || {
        dead_by_id(&mut conn).contains_key(id)
    });
    dead_by_id(&mut conn)[id]["last_error"].clone()
}

/// Epoch interruption stops wasm code only; a guest asleep in a WASI host call
/// (`std::thread::sleep` waits in `wasi:io/poll`) must be stopped at its
/// deadline too, or it holds its job thread for as long as it likes.
#[test]
fn a_guest_asleep_in_a_host_call_is_stopped_at_its_time_limit_and_its_thread_runs_the_next_job() {
    let redis = RedisServer::start();
    let plugins = PluginDir::with(&["testbed"]);
    plugins.write(
        "testbed.toml",
        b"[limits]\ntimeout = \"2s\"\nmax_attempts = 1\n",
    );
    let host = Host::start(&redis.url(), plugins.path(), &["--concurrency", "1"]);

    let started = Instant::now();
    let sleeper = enqueue(&redis.url(), &["test.sleep", "60000"]);
    let next = enqueue(&redis.url(), &["test.sleep", "1"]);
    host.wait_for_log(
        &format!("job_id={next} type=test.sleep plugin=testbed attempt=1 outcome=done"),
        Duration::from_secs(30),
    );
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "the job behind the sleeper finished {took:?} after the sleeper was enqueued"
    );
    let error = last_error_of(&redis, &sleeper);
    assert!(error.contains("timed out after 2s"), "{error:?}");
}

/// A reused instance's store serves many jobs; its deadline must be each
/// job's own, for host calls as for wasm code.
#[test]
fn each_job_of_a_reused_instance_gets_its_own_deadline_in_host_calls() {
    let redis = RedisServer::start();
    let plugins = PluginDir::with(&["testbed"]);
    plugins.write(
        "testbed.toml",
        b"[limits]\ntimeout = \"2s\"\nmax_attempts = 1\njobs_per_instance = 100\n",
    );
    let host = Host::start(&redis.url(), plugins.path(), &["--concurrency", "1"]);

    // Together longer than one limit, each well within its own: they pass
    // only if the second job's deadline is not the first's.
    let first = enqueue(&redis.url(), &["test.sleep", "1500"]);
    let second = enqueue(&redis.url(), &["test.sleep", "1000"]);
    for id in [&first, &second] {
        host.wait_for_log(
            &format!("job_id={id} type=test.sleep plugin=testbed attempt=1 outcome=done"),
            WAIT,
        );
    }
    // This one waits in `wasi:io/poll.poll`, the other test's in `pollable.block`.
    let started = Instant::now();
    let sleeper = enqueue(&redis.url(), &["test.poll", "60000"]);
    let next = enqueue(&redis.url(), &["test.sleep", "1"]);
    host.wait_for_log(
        &format!("job_id={next} type=test.sleep plugin=testbed attempt=1 outcome=done"),
        Duration::from_secs(30),
    );
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "{took:?}");
    let error = last_error_of(&redis, &sleeper);
    assert!(error.contains("timed out after 2s"), "{error:?}");
}
