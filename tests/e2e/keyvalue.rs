//! Key-value state committed with the ack (SPEC §10, issue #16): a job's
//! `wasi:keyvalue` writes are buffered and applied by the script that acks
//! it, only if it succeeds; its reads see committed values plus its own
//! writes. A job that fails, traps, times out or is fatal commits nothing; a
//! job retried to success commits once; concurrent increments lose nothing.
//! Buckets are granted per plugin, bounded per job, and inspected with
//! `jobhost kv` and `jobhost stats`.
//!
//! Real redis-server, real `jobhost run`, the real test guest `kv-probe`,
//! whose `kv.run` jobs carry a list of operations and what to do after them.

use std::collections::HashMap;
use std::process::Output;
use std::time::Duration;

use jobhost_tests::{
    Host, PluginDir, RedisServer, done_count, enqueue, enqueue_and_wait, entries, jobhost, keys,
    last_error, ok_stdout, pending_count, wait_until, xadd_jobs,
};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);
/// The test guest: `kv.run` runs operations, `kv.count` is the chaos test's
/// exactly-once counter.
const PROBE: &str = "kv-probe";
const GRANTS: &str = "[grants]\nkeyvalue = [\"counters\", \"markers\"]\n";
const FAST_RETRY: &[&str] = &["--retry-base", "20ms", "--retry-cap", "100ms"];

/// The Redis hash holding `bucket` of the default queue.
fn bucket_key(bucket: &str) -> String {
    format!("jobhost:{{default}}:kv:{bucket}")
}

/// The probe alone, with `toml` as its manifest (none if empty).
fn probe_folder(toml: &str) -> PluginDir {
    let plugins = PluginDir::with(&[PROBE]);
    if !toml.is_empty() {
        plugins.write(&format!("{PROBE}.toml"), toml.as_bytes());
    }
    plugins
}

/// A `kv.run` payload: `ops`, then `then`.
fn run_payload(ops: Value, then: &str) -> String {
    json!({ "ops": ops, "then": then }).to_string()
}

/// Everything `bucket` of the default queue holds, as text.
fn bucket(redis: &RedisServer, name: &str) -> HashMap<String, String> {
    redis::cmd("HGETALL")
        .arg(bucket_key(name))
        .query(&mut redis.connection())
        .expect("HGETALL a bucket")
}

/// `jobhost kv ARGS... --redis URL`.
fn kv(redis: &RedisServer, args: &[&str]) -> Output {
    jobhost(&[&["kv"], args, &["--redis", &redis.url()]].concat())
}

/// Waits until the host logs the outcome line of job `id` at `attempt` with
/// `outcome` (`done`, `retry`, `dead`).
fn wait_outcome(host: &Host, id: &str, attempt: u32, outcome: &str) {
    let job = format!("job_id={id} ");
    let end = format!(" attempt={attempt} outcome={outcome}");
    wait_until(
        &format!("job {id} logs attempt={attempt} outcome={outcome}"),
        WAIT,
        || {
            host.log()
                .lines()
                .any(|l| l.contains(&job) && l.contains(&end))
        },
    );
}

/// The DLQ entry of job `id`, once there is one.
fn dead_letter(redis: &RedisServer, id: &str) -> HashMap<String, String> {
    jobhost_tests::dead_letter(redis, id, WAIT)
}

/// The message of a `jobhost kv` call that must fail: non-zero, one line.
fn kv_failure(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "expected a failure; stderr: {stderr}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    stderr
}

/// Runs `ops` in one `kv.run` job with `--wait`; the job's JSON output.
fn run_ok(redis: &RedisServer, ops: Value) -> Value {
    let out = enqueue_and_wait(&redis.url(), &["kv.run", &run_payload(ops, "ok")], "30s");
    let text = ok_stdout(out);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("output {text:?}: {e}"))
}

// --- commit on success, reads of the job's own writes ------------------------

#[test]
fn writes_of_a_successful_job_are_committed_and_visible_to_jobhost_kv() {
    let redis = RedisServer::start();
    let plugins = probe_folder(GRANTS);
    let _host = Host::start(&redis.url(), plugins.path(), &[]);

    let output = run_ok(
        &redis,
        json!([
            {"op": "set", "bucket": "markers", "key": "greeting", "value": "hello"},
            {"op": "set", "bucket": "markers", "key": "gone", "value": "soon"},
            {"op": "del", "bucket": "markers", "key": "gone"},
            {"op": "incr", "bucket": "counters", "key": "hits", "by": 5},
        ]),
    );
    assert_eq!(output, json!([null, null, null, 5]));

    assert_eq!(
        bucket(&redis, "markers"),
        HashMap::from([("greeting".to_owned(), "hello".to_owned())])
    );
    assert_eq!(
        bucket(&redis, "counters"),
        HashMap::from([("hits".to_owned(), "5".to_owned())]),
        "an increment is stored as decimal text"
    );
    assert_eq!(
        ok_stdout(kv(&redis, &["get", "markers", "greeting"])).trim(),
        "hello"
    );
    assert_eq!(
        ok_stdout(kv(&redis, &["get", "counters", "hits"])).trim(),
        "5"
    );
    assert_eq!(ok_stdout(kv(&redis, &["list", "markers"])), "greeting\n");
    let missing = kv_failure(&kv(&redis, &["get", "markers", "gone"]));
    assert!(missing.contains("gone"), "{missing}");

    // A second job reads what the first committed and adds to it.
    let output = run_ok(
        &redis,
        json!([
            {"op": "get", "bucket": "markers", "key": "greeting"},
            {"op": "incr", "bucket": "counters", "key": "hits", "by": 2},
        ]),
    );
    assert_eq!(output, json!(["hello", 7]));
    assert_eq!(
        ok_stdout(kv(&redis, &["get", "counters", "hits"])).trim(),
        "7"
    );
}

#[test]
fn a_job_reads_committed_values_and_its_own_uncommitted_writes() {
    let redis = RedisServer::start();
    ok_stdout(kv(&redis, &["set", "counters", "base", "10"]));
    let plugins = probe_folder(GRANTS);
    let _host = Host::start(&redis.url(), plugins.path(), &[]);

    let output = run_ok(
        &redis,
        json!([
            {"op": "get", "bucket": "counters", "key": "base"},
            {"op": "set", "bucket": "markers", "key": "k", "value": "v"},
            {"op": "get", "bucket": "markers", "key": "k"},
            {"op": "exists", "bucket": "markers", "key": "k"},
            {"op": "incr", "bucket": "counters", "key": "base", "by": 2},
            {"op": "get", "bucket": "counters", "key": "base"},
            {"op": "incr", "bucket": "counters", "key": "fresh", "by": 3},
            {"op": "incr", "bucket": "counters", "key": "fresh", "by": 4},
            {"op": "list", "bucket": "counters"},
            {"op": "set", "bucket": "markers", "key": "j", "value": "w"},
            {"op": "list", "bucket": "markers"},
            {"op": "del", "bucket": "markers", "key": "k"},
            {"op": "exists", "bucket": "markers", "key": "k"},
            {"op": "get", "bucket": "markers", "key": "k"},
            {"op": "list", "bucket": "markers"},
        ]),
    );
    assert_eq!(
        output,
        json!([
            "10",
            null,
            "v",
            true,
            12,
            "12",
            3,
            7,
            ["base", "fresh"],
            null,
            ["j", "k"],
            null,
            false,
            null,
            ["j"],
        ])
    );
    assert_eq!(
        bucket(&redis, "counters"),
        HashMap::from([
            ("base".to_owned(), "12".to_owned()),
            ("fresh".to_owned(), "7".to_owned()),
        ])
    );
    assert_eq!(
        bucket(&redis, "markers"),
        HashMap::from([("j".to_owned(), "w".to_owned())])
    );
}

// --- a job that does not succeed commits nothing -----------------------------

/// Runs one `kv.run` job that writes to both buckets and then ends as `then`
/// says (with up to `attempts` attempts), and checks that it is dead-lettered
/// with `error` in its last error and that no bucket changed.
fn assert_commits_nothing(then: &str, limits: &str, attempts: &str, error: &str) {
    let redis = RedisServer::start();
    ok_stdout(kv(&redis, &["set", "counters", "base", "7"]));
    let plugins = probe_folder(&format!("{GRANTS}\n[limits]\n{limits}\n"));
    let host = Host::start(&redis.url(), plugins.path(), FAST_RETRY);
    let payload = run_payload(
        json!([
            {"op": "set", "bucket": "markers", "key": then, "value": "written"},
            {"op": "incr", "bucket": "counters", "key": "base", "by": 1},
            {"op": "incr", "bucket": "counters", "key": then, "by": 1},
            {"op": "del", "bucket": "counters", "key": "base"},
        ]),
        then,
    );
    let id = enqueue(
        &redis.url(),
        &["kv.run", &payload, "--max-attempts", attempts],
    );

    let dead = dead_letter(&redis, &id);
    assert!(last_error(&dead).contains(error), "{dead:?}");
    assert_eq!(
        dead.get("total_attempts").map(String::as_str),
        Some(attempts),
        "{dead:?}"
    );
    wait_outcome(&host, &id, attempts.parse().unwrap(), "dead");
    assert_eq!(
        bucket(&redis, "counters"),
        HashMap::from([("base".to_owned(), "7".to_owned())]),
        "the job's increments and delete were not committed"
    );
    let markers: bool = redis::cmd("EXISTS")
        .arg(bucket_key("markers"))
        .query(&mut redis.connection())
        .unwrap();
    assert!(!markers, "the job's set was not committed");
    assert_eq!(done_count(&mut redis.connection()), 0);
}

#[test]
fn writes_of_a_job_retried_until_dead_are_not_committed() {
    assert_commits_nothing("retry", "", "3", "asked to retry");
}

#[test]
fn writes_of_a_job_that_fails_fatally_are_not_committed() {
    assert_commits_nothing("fatal", "", "1", "fatal: asked to fail");
}

#[test]
fn writes_of_a_job_that_traps_are_not_committed() {
    assert_commits_nothing("trap", "", "2", "trap: panicked");
}

#[test]
fn writes_of_a_job_that_times_out_are_not_committed() {
    assert_commits_nothing("sleep", "timeout = \"2s\"", "1", "timed out after 2s");
}

#[test]
fn job_succeeding_on_its_third_attempt_commits_its_writes_once() {
    let redis = RedisServer::start();
    let plugins = probe_folder(GRANTS);
    let host = Host::start(&redis.url(), plugins.path(), FAST_RETRY);
    let payload = run_payload(
        json!([
            {"op": "incr", "bucket": "counters", "key": "tries", "by": 1},
            {"op": "set", "bucket": "markers", "key": "once", "value": "1"},
        ]),
        "succeed-on-3",
    );
    let id = enqueue(&redis.url(), &["kv.run", &payload, "--max-attempts", "5"]);

    wait_outcome(&host, &id, 1, "retry");
    wait_outcome(&host, &id, 2, "retry");
    wait_outcome(&host, &id, 3, "done");
    assert_eq!(
        bucket(&redis, "counters"),
        HashMap::from([("tries".to_owned(), "1".to_owned())]),
        "three attempts, one commit"
    );
    assert_eq!(
        bucket(&redis, "markers"),
        HashMap::from([("once".to_owned(), "1".to_owned())])
    );
}

#[test]
fn job_finished_by_two_hosts_after_a_reclaim_commits_once() {
    let redis = RedisServer::start();
    let plugins = PluginDir::with(&["testbed"]);
    plugins.write("testbed.toml", GRANTS.as_bytes());
    let url = redis.url();
    let args = ["--claim-idle", "1s"];
    let first = Host::start(&url, plugins.path(), &args);
    let id = enqueue(&url, &["test.kv-sleep", "3000"]);
    first.wait_for_log("counted 1, sleeping 3000 ms", WAIT);

    // The first host stalls mid-job (its heartbeats with it); the second
    // reclaims the job, runs it again and commits.
    signal(&first, libc::SIGSTOP);
    let second = Host::start(&url, plugins.path(), &args);
    wait_until("the second host runs the job to done", WAIT, || {
        second
            .log()
            .lines()
            .any(|l| l.contains(&format!("job_id={id} ")) && l.contains(" outcome=done"))
    });
    let mut conn = redis.connection();
    assert_eq!(done_count(&mut conn), 1);

    // The first host wakes and finishes its run too: its writes must not
    // commit a second time.
    signal(&first, libc::SIGCONT);
    wait_until("the first host finishes its run as done", WAIT, || {
        first
            .log()
            .lines()
            .any(|l| l.contains(&format!("job_id={id} ")) && l.contains(" outcome=done"))
    });
    assert_eq!(
        bucket(&redis, "counters"),
        HashMap::from([("slept".to_owned(), "1".to_owned())]),
        "two runs, one commit; first host:\n{}",
        first.tail()
    );
    assert_eq!(done_count(&mut conn), 1);
    assert_eq!(pending_count(&mut conn), 0);
}

fn signal(host: &Host, signal: libc::c_int) {
    // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
    unsafe {
        libc::kill(host.pid() as libc::pid_t, signal);
    }
}

// --- grants and limits ---------------------------------------------------------

#[test]
fn bucket_not_granted_is_denied_naming_the_grant() {
    let redis = RedisServer::start();
    let plugins = probe_folder("[grants]\nkeyvalue = [\"counters\"]\n");
    let host = Host::start(&redis.url(), plugins.path(), FAST_RETRY);
    let payload = run_payload(
        json!([
            {"op": "incr", "bucket": "counters", "key": "before", "by": 1},
            {"op": "open", "bucket": "markers"},
        ]),
        "ok",
    );
    let id = enqueue(&redis.url(), &["kv.run", &payload, "--max-attempts", "3"]);

    let dead = dead_letter(&redis, &id);
    let error = last_error(&dead);
    for part in ["kv: ", "not granted", "markers", "[grants] keyvalue"] {
        assert!(error.contains(part), "{part:?} missing from {error:?}");
    }
    wait_outcome(&host, &id, 1, "dead");
    assert!(
        bucket(&redis, "counters").is_empty(),
        "a failed job commits nothing"
    );
}

#[test]
fn plugin_without_a_keyvalue_grant_is_denied_every_bucket() {
    let redis = RedisServer::start();
    let plugins = probe_folder("");
    let _host = Host::start(&redis.url(), plugins.path(), FAST_RETRY);
    let payload = run_payload(json!([{"op": "open", "bucket": "counters"}]), "ok");

    let out = enqueue_and_wait(&redis.url(), &["kv.run", &payload], "30s");
    assert!(!out.status.success(), "the job must fail");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for part in ["not granted", "counters", "[grants] keyvalue"] {
        assert!(stderr.contains(part), "{part:?} missing from {stderr:?}");
    }
}

#[test]
fn value_over_kv_value_bytes_fails_the_job_fatally_naming_the_limit() {
    let redis = RedisServer::start();
    let plugins = probe_folder(&format!("{GRANTS}\n[limits]\nkv_value_bytes = 1024\n"));
    let host = Host::start(&redis.url(), plugins.path(), FAST_RETRY);
    let fits = run_ok(
        &redis,
        json!([{"op": "set", "bucket": "markers", "key": "fits", "size": 1024}]),
    );
    assert_eq!(fits, json!([null]));

    let payload = run_payload(
        json!([
            {"op": "incr", "bucket": "counters", "key": "before", "by": 1},
            {"op": "set", "bucket": "markers", "key": "big", "size": 1025},
        ]),
        "ok",
    );
    let id = enqueue(&redis.url(), &["kv.run", &payload, "--max-attempts", "5"]);

    let dead = dead_letter(&redis, &id);
    assert!(last_error(&dead).contains("kv_value_bytes"), "{dead:?}");
    assert_eq!(
        dead.get("total_attempts").map(String::as_str),
        Some("1"),
        "fatal, not retried: {dead:?}"
    );
    wait_outcome(&host, &id, 1, "dead");
    assert!(bucket(&redis, "counters").is_empty(), "nothing committed");
    assert_eq!(
        bucket(&redis, "markers").len(),
        1,
        "only the first job's value"
    );
    assert_eq!(bucket(&redis, "markers")["fits"].len(), 1024);
}

#[test]
fn writing_more_keys_than_kv_writes_fails_the_job_fatally_naming_the_limit() {
    let redis = RedisServer::start();
    let plugins = probe_folder(&format!("{GRANTS}\n[limits]\nkv_writes = 3\n"));
    let host = Host::start(&redis.url(), plugins.path(), FAST_RETRY);
    // Writing one key again is not another key.
    let same = run_ok(
        &redis,
        json!([
            {"op": "set", "bucket": "markers", "key": "a", "value": "1"},
            {"op": "set", "bucket": "markers", "key": "a", "value": "2"},
            {"op": "incr", "bucket": "counters", "key": "a", "by": 1},
            {"op": "incr", "bucket": "counters", "key": "a", "by": 1},
            {"op": "set", "bucket": "markers", "key": "b", "value": "3"},
        ]),
    );
    assert_eq!(same, json!([null, null, 1, 2, null]));

    let ops: Vec<Value> = (0..4)
        .map(|i| json!({"op": "set", "bucket": "markers", "key": format!("k{i}"), "value": "x"}))
        .collect();
    let id = enqueue(
        &redis.url(),
        &[
            "kv.run",
            &run_payload(Value::Array(ops), "ok"),
            "--max-attempts",
            "5",
        ],
    );

    let dead = dead_letter(&redis, &id);
    assert!(last_error(&dead).contains("kv_writes"), "{dead:?}");
    assert_eq!(dead.get("total_attempts").map(String::as_str), Some("1"));
    wait_outcome(&host, &id, 1, "dead");
    let mut markers: Vec<String> = bucket(&redis, "markers").into_keys().collect();
    markers.sort();
    assert_eq!(markers, ["a", "b"], "the second job committed nothing");
}

// --- the CLI and stats -----------------------------------------------------------

#[test]
fn jobhost_kv_sets_gets_lists_and_deletes_keys() {
    let redis = RedisServer::start();
    ok_stdout(kv(&redis, &["set", "counters", "b", "two words"]));
    ok_stdout(kv(&redis, &["set", "counters", "a", "1"]));
    assert_eq!(ok_stdout(kv(&redis, &["list", "counters"])), "a\nb\n");
    assert_eq!(
        ok_stdout(kv(&redis, &["get", "counters", "b"])).trim_end_matches('\n'),
        "two words"
    );
    assert_eq!(
        bucket(&redis, "counters")["b"],
        "two words",
        "the layout of §10"
    );

    ok_stdout(kv(&redis, &["del", "counters", "a"]));
    assert_eq!(ok_stdout(kv(&redis, &["list", "counters"])), "b\n");
    let missing = kv_failure(&kv(&redis, &["get", "counters", "a"]));
    assert!(missing.contains('a'), "{missing}");
    assert_eq!(ok_stdout(kv(&redis, &["list", "empty"])), "");

    // A bucket lives with its queue: the same name in another queue and
    // namespace is another bucket.
    ok_stdout(kv(
        &redis,
        &[
            "set",
            "counters",
            "a",
            "elsewhere",
            "--queue",
            "other",
            "--namespace",
            "ns",
        ],
    ));
    let elsewhere: Option<String> = redis::cmd("HGET")
        .arg("ns:{other}:kv:counters")
        .arg("a")
        .query(&mut redis.connection())
        .unwrap();
    assert_eq!(elsewhere.as_deref(), Some("elsewhere"));
    assert_eq!(ok_stdout(kv(&redis, &["list", "counters"])), "b\n");
    assert_eq!(
        ok_stdout(kv(
            &redis,
            &[
                "get",
                "counters",
                "a",
                "--queue",
                "other",
                "--namespace",
                "ns"
            ]
        ))
        .trim(),
        "elsewhere"
    );
}

#[test]
fn stats_show_the_size_of_each_bucket() {
    let redis = RedisServer::start();
    for key in ["a", "b", "c"] {
        ok_stdout(kv(&redis, &["set", "counters", key, "1"]));
    }
    ok_stdout(kv(&redis, &["set", "markers", "m", "1"]));

    let json = ok_stdout(jobhost(&["stats", "--json", "--redis", &redis.url()]));
    let stats: Value = serde_json::from_str(&json).expect("stats JSON");
    assert_eq!(
        stats[0]["buckets"],
        json!({"counters": 3, "markers": 1}),
        "{stats}"
    );
    assert_eq!(ok_stdout(kv(&redis, &["list"])), "counters 3\nmarkers 1\n");
    let text = ok_stdout(jobhost(&["stats", "--redis", &redis.url()]));
    for (name, size) in [("counters", "3"), ("markers", "1")] {
        assert!(
            text.lines()
                .any(|l| l.contains("buckets") && l.contains(&format!("{name} {size}"))),
            "no line shows bucket {name} with {size} keys:\n{text}"
        );
    }
}

// --- hostile state -------------------------------------------------------------

#[test]
fn bucket_key_of_the_wrong_type_holds_the_job_until_it_is_deleted() {
    let redis = RedisServer::start();
    let mut conn = redis.connection();
    redis::cmd("SET")
        .arg(bucket_key("counters"))
        .arg("not a hash")
        .query::<()>(&mut conn)
        .unwrap();
    let plugins = probe_folder(GRANTS);
    let host = Host::start(
        &redis.url(),
        plugins.path(),
        &[
            FAST_RETRY,
            &["--claim-idle", "1s", "--max-attempts", "1000"],
        ]
        .concat(),
    );
    let payload = run_payload(
        json!([{"op": "set", "bucket": "counters", "key": "k", "value": "v"}]),
        "ok",
    );
    enqueue(&redis.url(), &["kv.run", &payload]);

    // The commit cannot apply: the job is neither done nor lost (pending, to
    // be reclaimed), and the host says why and what to do.
    host.wait_for_log(
        "outcome not recorded: key jobhost:{default}:kv:counters holds a string, not a hash; rename or delete that key",
        WAIT,
    );
    assert_eq!(done_count(&mut conn), 0);
    assert_eq!(pending_count(&mut conn), 1, "the job stays pending");
    assert!(
        entries(&mut conn, keys::DLQ).is_empty(),
        "not dead-lettered"
    );
    assert!(!host.exited(), "the host survives");
    assert!(!host.log().contains("panicked"), "{}", host.tail());

    redis::cmd("DEL")
        .arg(bucket_key("counters"))
        .query::<()>(&mut conn)
        .unwrap();
    wait_until("the job completes once the key is gone", WAIT, || {
        done_count(&mut conn) == 1
    });
    assert_eq!(
        bucket(&redis, "counters"),
        HashMap::from([("k".to_owned(), "v".to_owned())])
    );
    assert_eq!(pending_count(&mut conn), 0);
    assert!(entries(&mut conn, keys::DLQ).is_empty());
}

#[test]
fn bucket_key_of_the_wrong_type_read_by_a_job_retries_it_until_it_is_deleted() {
    let redis = RedisServer::start();
    let mut conn = redis.connection();
    let customers = "jobhost:{default}:kv:customers";
    redis::cmd("RPUSH")
        .arg(customers)
        .arg("not a hash")
        .query::<()>(&mut conn)
        .unwrap();
    // tally reads its counters (an increment returns the new count), and the
    // SDK makes a store error a retry.
    let plugins = PluginDir::with(&["tally"]);
    plugins.write("tally.toml", b"[grants]\nkeyvalue = [\"customers\"]\n");
    let host = Host::start(
        &redis.url(),
        plugins.path(),
        &[FAST_RETRY, &["--max-attempts", "1000"]].concat(),
    );
    let id = enqueue(
        &redis.url(),
        &["tally.order", r#"{"customer":"c-17","amount_cents":1250}"#],
    );

    wait_outcome(&host, &id, 2, "retry");
    let retried = host
        .log()
        .lines()
        .find(|l| l.contains(&format!("job_id={id} ")) && l.contains("outcome=retry"))
        .map(str::to_owned)
        .unwrap_or_default();
    assert!(
        retried.contains(customers) && retried.contains("not a hash"),
        "the retry names the key and what is wrong: {retried}"
    );
    assert!(
        entries(&mut conn, keys::DLQ).is_empty(),
        "not dead-lettered"
    );
    assert!(!host.exited() && !host.log().contains("panicked"));

    redis::cmd("DEL")
        .arg(customers)
        .query::<()>(&mut conn)
        .unwrap();
    wait_until("the job completes once the key is gone", WAIT, || {
        done_count(&mut conn) == 1
    });
    let counts: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(customers)
        .query(&mut conn)
        .unwrap();
    assert_eq!(
        counts,
        HashMap::from([
            ("c-17:orders".to_owned(), "1".to_owned()),
            ("c-17:cents".to_owned(), "1250".to_owned()),
        ])
    );
}

// --- concurrency ---------------------------------------------------------------

#[test]
fn two_hosts_incrementing_the_same_keys_lose_no_count() {
    const COUNTED: usize = 600;
    const SAME_KEY: usize = 400;
    let redis = RedisServer::start();
    let plugins = probe_folder(GRANTS);
    let url = redis.url();
    let args = ["--concurrency", "2"];
    let _hosts = [
        Host::start(&url, plugins.path(), &args),
        Host::start(&url, plugins.path(), &args),
    ];
    let mut conn = redis.connection();
    let incr = run_payload(
        json!([{"op": "incr", "bucket": "counters", "key": "total", "by": 1}]),
        "ok",
    );
    // Interleaved so both kinds run on both hosts at once.
    for i in 0..COUNTED.max(SAME_KEY) {
        if i < COUNTED {
            xadd_jobs(&mut conn, "kv.count", [json!({ "n": i }).to_string()]);
        }
        if i < SAME_KEY {
            xadd_jobs(&mut conn, "kv.run", [incr.clone()]);
        }
    }

    wait_until("every job is done", WAIT * 3, || {
        done_count(&mut conn) >= (COUNTED + SAME_KEY) as u64
    });
    let counters = bucket(&redis, "counters");
    assert_eq!(
        counters["total"],
        SAME_KEY.to_string(),
        "one key, every increment"
    );
    for c in 0..100 {
        assert_eq!(
            counters[&format!("c{c}")],
            (COUNTED / 100).to_string(),
            "counter c{c}"
        );
    }
    assert_eq!(bucket(&redis, "markers").len(), COUNTED);
    assert!(entries(&mut conn, keys::DLQ).is_empty());
}
