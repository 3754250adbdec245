//! Reliable delivery (SPEC §5): retries with backoff, the dead-letter stream,
//! delayed and expiring jobs, reclaim from dead hosts, graceful shutdown,
//! Redis restarts, and follow-ups that are never doubled by a retry.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jobhost_tests::{
    Host, PluginDir, RedisServer, enqueue, entries, keys, pending_count, wait_until, xadd_job,
};

const WAIT: Duration = Duration::from_secs(30);
/// Fast retries, so tests see several attempts in well under a second.
const FAST_RETRY: &[&str] = &["--retry-base", "20ms", "--retry-cap", "100ms"];

fn counters(conn: &mut redis::Connection) -> HashMap<String, u64> {
    redis::cmd("HGETALL")
        .arg(keys::COUNTERS)
        .query(conn)
        .unwrap()
}

fn dead_letters(conn: &mut redis::Connection) -> Vec<HashMap<String, String>> {
    entries(conn, keys::DLQ)
        .into_iter()
        .map(|(_, f)| f)
        .collect()
}

#[test]
fn flaky_job_succeeds_on_its_third_attempt() {
    let redis = RedisServer::start();
    let plugins = PluginDir::with(&["flaky"]);
    let host = Host::start(&redis.url(), plugins.path(), FAST_RETRY);
    let id = enqueue(&redis.url(), &["flaky.job", r#"{"succeed_on_attempt":3}"#]);

    host.wait_for_log(
        &format!("job_id={id} type=flaky.job plugin=flaky attempt=3 outcome=done"),
        WAIT,
    );
    let log = host.log();
    assert!(log.contains(&format!(
        "job_id={id} type=flaky.job plugin=flaky attempt=1 outcome=retry"
    )));
    assert!(log.contains(&format!(
        "job_id={id} type=flaky.job plugin=flaky attempt=2 outcome=retry"
    )));
    let mut conn = redis.connection();
    let counts = counters(&mut conn);
    assert_eq!(
        (counts.get("retry"), counts.get("done")),
        (Some(&2), Some(&1)),
        "{counts:?}"
    );
    assert!(dead_letters(&mut conn).is_empty());
}

#[test]
fn always_failing_job_is_dead_lettered_after_its_attempts_with_enrichment() {
    let redis = RedisServer::start();
    let plugins = PluginDir::with(&["flaky"]);
    let host = Host::start(&redis.url(), plugins.path(), FAST_RETRY);
    let id = enqueue(
        &redis.url(),
        &[
            "flaky.job",
            r#"{"succeed_on_attempt":99}"#,
            "--max-attempts",
            "3",
        ],
    );

    host.wait_for_log(
        &format!("job_id={id} type=flaky.job plugin=flaky attempt=3 outcome=dead"),
        WAIT,
    );
    let mut conn = redis.connection();
    let dead = dead_letters(&mut conn);
    assert_eq!(dead.len(), 1, "{dead:?}");
    let entry = &dead[0];
    assert_eq!(entry["job_id"], id);
    assert_eq!(entry["type"], "flaky.job");
    assert_eq!(entry["payload"], r#"{"succeed_on_attempt":99}"#);
    assert_eq!(entry["original_stream"], keys::STREAM);
    assert_eq!(entry["total_attempts"], "3");
    assert_eq!(entry["consumer_group"], keys::GROUP);
    assert_eq!(entry["replay_count"], "0");
    assert!(entry["original_id"].contains('-'));
    assert!(entry["failed_at"].starts_with("20"), "{entry:?}");
    assert!(
        entry["last_error"].contains("attempt 3 of 99 fails on purpose"),
        "{entry:?}"
    );
    assert_eq!(pending_count(&mut conn), 0);
}

#[test]
fn fatal_error_goes_straight_to_the_dead_letter_stream() {
    let redis = RedisServer::start();
    let plugins = PluginDir::with(&["orders"]);
    let host = Host::start(&redis.url(), plugins.path(), FAST_RETRY);
    let id = enqueue(&redis.url(), &["orders.created", "not json"]);

    host.wait_for_log(
        &format!("job_id={id} type=orders.created plugin=orders attempt=1 outcome=dead"),
        WAIT,
    );
    let mut conn = redis.connection();
    let dead = dead_letters(&mut conn);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["total_attempts"], "1");
    assert!(
        dead[0]["last_error"].starts_with("fatal: invalid JSON payload"),
        "{dead:?}"
    );
    assert_eq!(counters(&mut conn).get("retry"), None);
}

#[test]
fn job_without_a_handler_is_retried_then_dead_lettered_naming_its_type() {
    let redis = RedisServer::start();
    let plugins = PluginDir::with(&["hello"]);
    let host = Host::start(
        &redis.url(),
        plugins.path(),
        &[FAST_RETRY, &["--max-attempts", "2"]].concat(),
    );
    let id = enqueue(&redis.url(), &["nobody.handles", "x"]);

    host.wait_for_log(
        &format!("job_id={id} type=nobody.handles plugin=- attempt=2 outcome=dead"),
        WAIT,
    );
    let mut conn = redis.connection();
    let dead = dead_letters(&mut conn);
    assert!(
        dead[0]["last_error"].contains("no handler for type nobody.handles"),
        "{dead:?}"
    );
}

#[test]
fn delayed_job_does_not_run_early_and_does_run() {
    let redis = RedisServer::start();
    let plugins = PluginDir::with(&["hello"]);
    let host = Host::start(&redis.url(), plugins.path(), &[]);
    let enqueued = Instant::now();
    let id = enqueue(&redis.url(), &["hello.later", "x", "--delay", "2s"]);
    let mut conn = redis.connection();
    let waiting: u64 = redis::cmd("ZCARD")
        .arg(keys::DELAYED)
        .query(&mut conn)
        .unwrap();
    assert_eq!(waiting, 1);

    host.wait_for_log(
        &format!("job_id={id} type=hello.later plugin=hello attempt=1 outcome=done"),
        WAIT,
    );
    assert!(
        enqueued.elapsed() >= Duration::from_secs(2),
        "ran after {:?}",
        enqueued.elapsed()
    );
    let waiting: u64 = redis::cmd("ZCARD")
        .arg(keys::DELAYED)
        .query(&mut conn)
        .unwrap();
    assert_eq!(waiting, 0);
}

#[test]
fn a_delayed_member_that_is_not_a_job_is_dead_lettered_and_the_others_still_move() {
    let redis = RedisServer::start();
    let mut conn = redis.connection();
    // A hostile or broken producer's members: not MessagePack or JSON, an odd
    // field count, a JSON list with a number. They are due at once.
    let broken: [&[u8]; 3] = [b"garbage", b"\x93\xa1v\xa11\xa4type", br#"["v",1]"#];
    for member in broken {
        let _: () = redis::cmd("ZADD")
            .arg(keys::DELAYED)
            .arg(0)
            .arg(member)
            .query(&mut conn)
            .unwrap();
    }
    let id = enqueue(&redis.url(), &["hello.later", "{}", "--delay", "1s"]);
    let plugins = PluginDir::with(&["hello"]);
    let host = Host::start(&redis.url(), plugins.path(), &[]);
    host.wait_for_log(
        &format!("job_id={id} type=hello.later plugin=hello attempt=1 outcome=done"),
        WAIT,
    );
    wait_until("the broken members are dead-lettered", WAIT, || {
        dead_letters(&mut conn).len() == broken.len()
    });
    for dead in dead_letters(&mut conn) {
        assert!(
            dead["last_error"].contains("malformed delayed job"),
            "{dead:?}"
        );
    }
    let waiting: u64 = redis::cmd("ZCARD")
        .arg(keys::DELAYED)
        .query(&mut conn)
        .unwrap();
    assert_eq!(waiting, 0);
}

#[test]
fn a_delayed_set_of_another_type_is_reported_once_and_jobs_still_run() {
    let redis = RedisServer::start();
    let mut conn = redis.connection();
    let _: () = redis::cmd("SET")
        .arg(keys::DELAYED)
        .arg("not a sorted set")
        .query(&mut conn)
        .unwrap();
    let plugins = PluginDir::with(&["hello"]);
    let host = Host::start(&redis.url(), plugins.path(), &[]);
    host.wait_for_log("delayed jobs cannot move", WAIT);
    let id = enqueue(&redis.url(), &["hello.now", "{}"]);
    host.wait_for_log(
        &format!("job_id={id} type=hello.now plugin=hello attempt=1 outcome=done"),
        WAIT,
    );
    let log = host.log();
    assert_eq!(log.matches("delayed jobs cannot move").count(), 1, "{log}");
    assert!(!log.contains("Redis unreachable"), "not an outage: {log}");
}

#[test]
fn expired_job_is_acknowledged_without_running() {
    let redis = RedisServer::start();
    let expires_in = Duration::from_millis(200);
    let enqueued = Instant::now();
    let id = enqueue(&redis.url(), &["hello.stale", "x", "--expires-in", "200ms"]);
    wait_until("the job's expiry passes", WAIT, || {
        enqueued.elapsed() > expires_in
    });

    let plugins = PluginDir::with(&["hello"]);
    let host = Host::start(&redis.url(), plugins.path(), &[]);
    host.wait_for_log(
        &format!("job_id={id} type=hello.stale plugin=- attempt=1 outcome=expired"),
        WAIT,
    );
    let mut conn = redis.connection();
    assert_eq!(counters(&mut conn).get("expired"), Some(&1));
    assert_eq!(pending_count(&mut conn), 0);
    assert!(
        !host.log().contains("type=hello.stale plugin=hello"),
        "the expired job ran:\n{}",
        host.log()
    );
}

#[test]
fn job_of_a_killed_host_is_finished_by_another_and_the_dead_consumer_removed() {
    let redis = RedisServer::start();
    let plugins = PluginDir::with(&["testbed"]);
    let reclaim = ["--claim-idle", "1s"];
    let mut doomed = Host::start(&redis.url(), plugins.path(), &reclaim);
    let id = enqueue(&redis.url(), &["test.sleep", "3000"]);
    doomed.wait_for_log("sleeping 3000 ms", WAIT);
    doomed.kill();

    let rescuer = Host::start(&redis.url(), plugins.path(), &reclaim);
    rescuer.wait_for_log(
        &format!("job_id={id} type=test.sleep plugin=testbed attempt=1 outcome=done"),
        WAIT,
    );
    rescuer.wait_for_log("reclaimed entries", WAIT);
    let mut conn = redis.connection();
    assert_eq!(pending_count(&mut conn), 0);
    wait_until("the killed host's consumer is removed", WAIT, || {
        let consumers: Vec<HashMap<String, redis::Value>> = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(keys::STREAM)
            .arg(keys::GROUP)
            .query(&mut conn)
            .unwrap();
        consumers.len() <= 1
    });
}

#[test]
fn live_host_keeps_its_long_job_from_being_reclaimed() {
    let redis = RedisServer::start();
    let plugins = PluginDir::with(&["testbed"]);
    let reclaim = ["--claim-idle", "500ms"];
    let first = Host::start(&redis.url(), plugins.path(), &reclaim);
    let second = Host::start(&redis.url(), plugins.path(), &reclaim);
    let id = enqueue(&redis.url(), &["test.sleep", "2500"]);
    let done = format!("job_id={id} type=test.sleep plugin=testbed attempt=1 outcome=done");
    wait_until("the long job finishes", WAIT, || {
        first.log().contains(&done) || second.log().contains(&done)
    });
    let both = first.log() + &second.log();
    assert_eq!(
        both.matches("sleeping 2500 ms").count(),
        1,
        "ran twice:\n{both}"
    );
    assert!(!both.contains("reclaimed entries"), "{both}");
}

#[test]
fn sigterm_during_a_long_job_lets_it_finish_before_exit() {
    let redis = RedisServer::start();
    let plugins = PluginDir::with(&["testbed"]);
    let mut host = Host::start(&redis.url(), plugins.path(), &[]);
    let id = enqueue(&redis.url(), &["test.sleep", "1500"]);
    host.wait_for_log("sleeping 1500 ms", WAIT);
    host.sigterm();
    let status = host.wait_exit(WAIT);
    assert!(status.success(), "{status:?}");
    let log = host.log();
    let done = log
        .find(&format!(
            "job_id={id} type=test.sleep plugin=testbed attempt=1 outcome=done"
        ))
        .unwrap_or_else(|| panic!("the job did not finish:\n{log}"));
    assert!(done < log.find("stopped").unwrap());
    assert_eq!(pending_count(&mut redis.connection()), 0);
}

#[test]
fn host_survives_a_redis_restart_without_being_restarted() {
    let mut redis = RedisServer::start_with_aof();
    let plugins = PluginDir::with(&["hello"]);
    let host = Host::start(&redis.url(), plugins.path(), &[]);
    let before: Vec<String> = (0..10)
        .map(|i| enqueue(&redis.url(), &["hello.before", &i.to_string()]))
        .collect();
    for id in &before {
        host.wait_for_log(
            &format!("job_id={id} type=hello.before plugin=hello attempt=1 outcome=done"),
            WAIT,
        );
    }
    redis.kill();
    host.wait_for_log("Redis unreachable", WAIT);
    redis.restart();
    let after: Vec<String> = (0..10)
        .map(|i| enqueue(&redis.url(), &["hello.after", &i.to_string()]))
        .collect();
    for id in &after {
        host.wait_for_log(
            &format!("job_id={id} type=hello.after plugin=hello attempt=1 outcome=done"),
            WAIT,
        );
    }
    host.wait_for_log("Redis reachable again", WAIT);
    let log = host.log();
    assert_eq!(
        log.matches("Redis unreachable").count(),
        1,
        "state change logged once:\n{log}"
    );
}

#[test]
fn follow_ups_are_not_duplicated_across_retries() {
    let redis = RedisServer::start();
    let plugins = PluginDir::with(&["testbed"]);
    let host = Host::start(&redis.url(), plugins.path(), FAST_RETRY);
    let id = enqueue(&redis.url(), &["test.chain", "x"]);
    host.wait_for_log(
        &format!("job_id={id} type=test.chain plugin=testbed attempt=3 outcome=done"),
        WAIT,
    );
    host.wait_for_log(
        "type=test.chain-next plugin=testbed attempt=1 outcome=done",
        WAIT,
    );
    let mut conn = redis.connection();
    wait_until("all settled", WAIT, || {
        pending_count(&mut conn) == 0 && entries(&mut conn, keys::STREAM).is_empty()
    });
    let log = host.log();
    assert_eq!(log.matches("type=test.chain-next").count(), 1, "{log}");
    assert_eq!(counters(&mut conn).get("done"), Some(&2));
}

#[test]
fn malformed_and_poison_entries_go_to_the_dlq_with_their_reason() {
    let redis = RedisServer::start();
    let mut conn = redis.connection();
    // A malformed entry, and a valid one that was delivered 5 times without an ack.
    let _: String = redis::cmd("XADD")
        .arg(keys::STREAM)
        .arg("*")
        .arg("garbage")
        .arg("1")
        .query(&mut conn)
        .unwrap();
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(keys::STREAM)
        .arg(keys::GROUP)
        .arg("0")
        .query(&mut conn)
        .unwrap();
    let poison = xadd_job(&mut conn, "hello.poison", "x");
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(keys::GROUP)
        .arg("crasher")
        .arg("STREAMS")
        .arg(keys::STREAM)
        .arg(">")
        .query(&mut conn)
        .unwrap();
    for _ in 0..4 {
        let _: redis::Value = redis::cmd("XCLAIM")
            .arg(keys::STREAM)
            .arg(keys::GROUP)
            .arg("crasher")
            .arg(0)
            .arg(&poison)
            .query(&mut conn)
            .unwrap();
    }
    let plugins = PluginDir::with(&["hello"]);
    let host = Host::start(
        &redis.url(),
        plugins.path(),
        &["--claim-idle", "200ms", "--max-deliveries", "3"],
    );
    host.wait_for_log(
        &format!("job_id={poison} type=hello.poison plugin=- attempt=1 outcome=dead"),
        WAIT,
    );
    let dead = dead_letters(&mut conn);
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert!(dead.iter().any(|d| d["last_error"] == "malformed entry: missing field `v`" && d["garbage"] == "1"), "{dead:?}");
    assert!(
        dead.iter()
            .any(|d| d["last_error"].starts_with("poison: delivered 6 times")),
        "{dead:?}"
    );
    assert!(
        !host.log().contains("type=hello.poison plugin=hello"),
        "the poison job ran"
    );
}
