//! Fleet-wide limits (SPEC §11, issue #17): a plugin's `rate` (with a
//! `burst`) and `fleet_concurrency`, agreed through Redis by every host,
//! optionally per limit key. A job over a limit waits in the delayed set
//! without spending an attempt; a dead host's concurrency slots free when
//! their leases end.
//!
//! Real redis-server, real `jobhost run` hosts, the test guest `testbed`,
//! whose `test.stamp` jobs sleep `payload` ms and commit "START END ATTEMPT"
//! into bucket `runs` under their job id. The script `broker/limit.lua` is
//! also driven directly, for what no run of hosts shows reliably.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jobhost::broker::limit::{self, Decision};
use jobhost::keys::{LimitKeys, QueueKeys};
use jobhost::plugins::{FleetLimit, Rate};
use jobhost_tests::{
    Host, PluginDir, RedisServer, jobhost, jobhost_with_stdin, keys, ok_stdout, one_line_error,
    wait_until, xadd_jobs,
};

const RUNS: &str = "jobhost:{default}:kv:runs";

/// When one job ran, by the guest's clock.
#[derive(Debug, Clone, Copy)]
struct Run {
    start: u64,
    end: u64,
    attempt: u32,
}

/// The testbed alone, with `limits` under `[limits]` and bucket `runs` granted.
fn stamp_folder(limits: &str) -> PluginDir {
    let plugins = PluginDir::with(&["testbed"]);
    let manifest = format!("[limits]\n{limits}\n[grants]\nkeyvalue = [\"runs\"]\n");
    plugins.write("testbed.toml", manifest.as_bytes());
    plugins
}

/// `n` hosts on `plugins`, sharing one compiled-code cache (compiled once).
fn hosts(redis: &RedisServer, plugins: &PluginDir, cache: &std::path::Path, n: usize) -> Vec<Host> {
    let cache = cache.to_str().expect("utf-8 temp path");
    let args = ["--concurrency", "2", "--cache-dir", cache];
    (0..n)
        .map(|_| {
            Host::builder(&redis.url(), plugins.path())
                .args(&args)
                .metrics()
                .start()
        })
        .collect()
}

/// Every run recorded so far, by job id.
fn runs(redis: &RedisServer) -> HashMap<String, Run> {
    let all: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(RUNS)
        .query(&mut redis.connection())
        .expect("HGETALL runs");
    all.into_iter()
        .map(|(id, stamp)| {
            let parts: Vec<u64> = stamp
                .split(' ')
                .map(|n| n.parse().expect("a stamp of numbers"))
                .collect();
            let run = Run {
                start: parts[0],
                end: parts[1],
                attempt: parts[2] as u32,
            };
            (id, run)
        })
        .collect()
}

fn wait_for_runs(redis: &RedisServer, n: usize, timeout: Duration) -> HashMap<String, Run> {
    let mut found = HashMap::new();
    wait_until(&format!("{n} jobs ran"), timeout, || {
        found = runs(redis);
        found.len() >= n
    });
    found
}

/// The most starts within any one second (a window opening at each start).
fn most_starts_in_a_second(starts: &[u64]) -> usize {
    let mut starts = starts.to_vec();
    starts.sort_unstable();
    (0..starts.len())
        .map(|i| {
            starts[i..]
                .iter()
                .take_while(|s| **s < starts[i] + 1000)
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// The most runs overlapping at any instant.
fn most_at_once(runs: &[Run]) -> usize {
    let mut edges: Vec<(u64, i32)> = runs
        .iter()
        .flat_map(|r| [(r.start, 1), (r.end, -1)])
        .collect();
    // An end before a start at the same ms: touching runs do not overlap.
    edges.sort_unstable();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, step) in edges {
        now += step;
        most = most.max(now);
    }
    most as usize
}

fn dlq_len(redis: &RedisServer) -> u64 {
    redis::cmd("XLEN")
        .arg(keys::DLQ)
        .query(&mut redis.connection())
        .unwrap()
}

fn counter(redis: &RedisServer, name: &str) -> u64 {
    redis::cmd("HGET")
        .arg(keys::COUNTERS)
        .arg(name)
        .query::<Option<u64>>(&mut redis.connection())
        .unwrap()
        .unwrap_or(0)
}

// --- the rate, across hosts --------------------------------------------------

#[test]
fn a_fleet_rate_holds_across_three_hosts_without_spending_attempts() {
    let redis = RedisServer::start();
    let plugins = stamp_folder("rate = \"50/s\"\nburst = 10");
    let cache = tempfile::tempdir().unwrap();
    let _hosts = hosts(&redis, &plugins, cache.path(), 3);
    xadd_jobs(
        &mut redis.connection(),
        "test.stamp",
        (0..500).map(|_| "0".to_owned()),
    );

    let runs = wait_for_runs(&redis, 500, Duration::from_secs(40));
    let starts: Vec<u64> = runs.values().map(|r| r.start).collect();
    let span = starts.iter().max().unwrap() - starts.iter().min().unwrap();
    // 10 at once, then 490 at one per 20 ms: 9.8 s.
    assert!(span >= 9_500, "500 jobs at 50/s started within {span} ms");
    let most = most_starts_in_a_second(&starts);
    assert!(
        most <= 60,
        "{most} starts within one second (rate 50/s, burst 10)"
    );
    assert!(
        runs.values().all(|r| r.attempt == 1),
        "a wait spends no attempt"
    );
    assert_eq!(dlq_len(&redis), 0);
    assert!(
        counter(&redis, "throttled") > 0,
        "jobs were counted as throttled"
    );
    assert_eq!(counter(&redis, "retry"), 0);
}

// --- concurrency, across hosts, and a dead host's slots ----------------------

#[test]
fn at_most_fleet_concurrency_jobs_run_at_once_across_hosts() {
    let redis = RedisServer::start();
    let plugins = stamp_folder("fleet_concurrency = 2\ntimeout = \"3s\"");
    let cache = tempfile::tempdir().unwrap();
    let hosts = hosts(&redis, &plugins, cache.path(), 3);
    xadd_jobs(
        &mut redis.connection(),
        "test.stamp",
        (0..20).map(|_| "300".to_owned()),
    );

    let runs = wait_for_runs(&redis, 20, Duration::from_secs(30));
    let runs: Vec<Run> = runs.into_values().collect();
    let most = most_at_once(&runs);
    assert!(
        most <= 2,
        "{most} jobs ran at once under fleet_concurrency 2"
    );
    assert!(runs.iter().all(|r| r.attempt == 1));
    assert_eq!(dlq_len(&redis), 0);
    let running = QueueKeys::new("jobhost", "default")
        .limit("testbed", None)
        .running;
    let leases: u64 = redis::cmd("ZCARD")
        .arg(&running)
        .query(&mut redis.connection())
        .unwrap();
    assert_eq!(leases, 0, "every finished job gave its slot back");
    let throttled: f64 = hosts
        .iter()
        .map(|h| throttled_metric(h, "concurrency"))
        .sum();
    assert!(throttled > 0.0, "jobhost_throttled_total counts the waits");
    assert!(counter(&redis, "throttled") > 0);
}

fn throttled_metric(host: &Host, limit: &str) -> f64 {
    host.metric_sum("jobhost_throttled_total", &[("limit", limit)])
        .unwrap_or(0.0)
}

#[test]
fn slots_of_a_killed_host_free_when_their_leases_end() {
    let redis = RedisServer::start();
    // Lease: the 3 s time limit plus the host's 2 s margin.
    let plugins = stamp_folder("fleet_concurrency = 2\ntimeout = \"3s\"");
    let cache = tempfile::tempdir().unwrap();
    let mut doomed = hosts(&redis, &plugins, cache.path(), 1).remove(0);
    let mut conn = redis.connection();
    xadd_jobs(
        &mut conn,
        "test.stamp",
        ["2900".to_owned(), "2900".to_owned()],
    );
    let running = QueueKeys::new("jobhost", "default")
        .limit("testbed", None)
        .running;
    let mut leases: Vec<(String, f64)> = Vec::new();
    wait_until(
        "the doomed host holds both slots",
        Duration::from_secs(20),
        || {
            leases = redis::cmd("ZRANGE")
                .arg(&running)
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES")
                .query(&mut conn)
                .unwrap();
            leases.len() == 2
        },
    );
    doomed.kill();
    let lease_ends = leases.iter().map(|(_, end)| *end as u64).min().unwrap();

    let _others = hosts(&redis, &plugins, cache.path(), 2);
    let short: Vec<String> = (0..6)
        .map(|_| jobhost_tests::xadd_job(&mut conn, "test.stamp", "100"))
        .collect();
    let left = Duration::from_millis(lease_ends.saturating_sub(now_ms()));
    let mut done = HashMap::new();
    wait_until(
        "the short jobs finish once the dead host's leases end",
        left + Duration::from_secs(8),
        || {
            done = runs(&redis);
            short.iter().all(|id| done.contains_key(id))
        },
    );
    let first_start = short.iter().map(|id| done[id].start).min().unwrap();
    assert!(
        first_start + 50 >= lease_ends,
        "a short job started at {first_start}, before the dead host's slots ended at {lease_ends}"
    );
    let short_runs: Vec<Run> = short.iter().map(|id| done[id]).collect();
    assert!(most_at_once(&short_runs) <= 2);
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

// --- per limit key ------------------------------------------------------------

#[test]
fn each_limit_key_gets_its_own_rate() {
    let redis = RedisServer::start();
    let plugins = stamp_folder("rate = \"10/s\"");
    let cache = tempfile::tempdir().unwrap();
    let _hosts = hosts(&redis, &plugins, cache.path(), 2);
    let lines: String = (0..60)
        .map(|i| {
            let key = if i % 2 == 0 { "acct_a" } else { "acct_b" };
            format!("{{\"type\":\"test.stamp\",\"payload\":\"0\",\"limit_key\":\"{key}\"}}\n")
        })
        .collect();
    let ids: Vec<String> = ok_stdout(jobhost_with_stdin(
        &["enqueue", "--batch", "--redis", &redis.url()],
        &lines,
    ))
    .lines()
    .map(str::to_owned)
    .collect();
    assert_eq!(ids.len(), 60);

    let runs = wait_for_runs(&redis, 60, Duration::from_secs(30));
    let starts_of = |parity: usize| -> Vec<u64> {
        ids.iter()
            .enumerate()
            .filter(|(i, _)| i % 2 == parity)
            .map(|(_, id)| runs[id].start)
            .collect()
    };
    let all: Vec<u64> = runs.values().map(|r| r.start).collect();
    let span = |starts: &[u64]| starts.iter().max().unwrap() - starts.iter().min().unwrap();
    // 30 per key at 10/s: 2.9 s each, side by side rather than 5.9 s in a row.
    assert!(span(&all) < 4_500, "both keys took {} ms", span(&all));
    for parity in [0, 1] {
        let starts = starts_of(parity);
        assert!(
            span(&starts) >= 2_600,
            "one key's 30 jobs took {} ms",
            span(&starts)
        );
        let most = most_starts_in_a_second(&starts);
        assert!(
            most <= 12,
            "{most} starts of one key within a second at 10/s"
        );
    }
    let keyed = QueueKeys::new("jobhost", "default").limit("testbed", Some("acct_a"));
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&keyed.rate)
        .query(&mut redis.connection())
        .unwrap();
    assert!(ttl <= 1_000, "a key's rate state expires (PTTL {ttl})");
}

#[test]
fn a_bad_limit_key_is_refused_at_enqueue_and_dead_lettered_from_a_raw_xadd() {
    let redis = RedisServer::start();
    let long = "k".repeat(201);
    let out = jobhost(&[
        "enqueue",
        "test.stamp",
        "0",
        "--limit-key",
        &long,
        "--redis",
        &redis.url(),
    ]);
    let error = one_line_error(&out);
    assert!(
        error.contains("limit key") && error.contains("200"),
        "{error}"
    );

    let plugins = stamp_folder("rate = \"10/s\"");
    let _host = Host::start(&redis.url(), plugins.path(), &[]);
    let mut conn = redis.connection();
    let id: String = redis::cmd("XADD")
        .arg(keys::STREAM)
        .arg("*")
        .arg("v")
        .arg("1")
        .arg("type")
        .arg("test.stamp")
        .arg("payload")
        .arg("0")
        .arg("produced_at")
        .arg("2026-11-24T10:00:00Z")
        .arg("limit_key")
        .arg("x".repeat(100_000))
        .query(&mut conn)
        .unwrap();
    // Malformed: its DLQ entry keeps the entry's own fields (no job id) and
    // names the entry in `original_id`.
    let mut dead = None;
    wait_until(
        "the entry is dead-lettered",
        Duration::from_secs(30),
        || {
            dead = jobhost_tests::entries(&mut conn, keys::DLQ)
                .into_iter()
                .map(|(_, fields)| fields)
                .find(|f| f.get("original_id") == Some(&id));
            dead.is_some()
        },
    );
    let dead = dead.expect("found");
    let reason = jobhost_tests::last_error(&dead);
    assert!(reason.contains("limit_key"), "{reason}");
    let limit_keys: Vec<String> = redis::cmd("KEYS")
        .arg("jobhost:{default}:limit:*")
        .query(&mut conn)
        .unwrap();
    assert!(limit_keys.is_empty(), "{limit_keys:?}");
}

// --- limit.lua, driven directly -------------------------------------------------

fn bucket(name: &str) -> LimitKeys {
    QueueKeys::new("jobhost", "default").limit(name, None)
}

fn decide(
    conn: &mut redis::Connection,
    keys: &LimitKeys,
    job: &str,
    limit: &FleetLimit,
    lease: Duration,
    rate_paid: bool,
) -> Decision {
    limit::admit(keys, job, limit, lease, rate_paid)
        .invoke(conn)
        .expect("limit.lua answers")
}

fn rate(text: &str, burst: u32) -> Option<Rate> {
    let mut rate = Rate::parse(text).unwrap();
    rate.burst = burst;
    Some(rate)
}

fn reserved_wait(decision: Decision) -> Duration {
    match decision {
        Decision::Reserved { wait, .. } => wait,
        other => panic!("expected a reservation, got {other:?}"),
    }
}

#[test]
fn paid_slots_that_come_due_together_still_start_no_faster_than_the_rate() {
    let redis = RedisServer::start();
    let mut conn = redis.connection();
    let keys = bucket("late");
    let limit = FleetLimit {
        rate: rate("10/s", 2),
        concurrency: None,
    };
    let lease = Duration::from_secs(5);
    // Ten jobs reserve slots 100 ms apart, then all come back at once, as
    // after a host that promotes them ran a second late.
    let mut runs = 0;
    for n in 0..10 {
        if decide(&mut conn, &keys, &format!("j{n}"), &limit, lease, false) == Decision::Run {
            runs += 1;
        }
    }
    assert_eq!(runs, 2, "the burst starts at once, the rest reserve");
    let mut waits = Vec::new();
    for n in runs..10 {
        let before: Option<String> = redis::cmd("GET")
            .arg(&keys.starts)
            .query(&mut conn)
            .unwrap();
        match decide(&mut conn, &keys, &format!("j{n}"), &limit, lease, true) {
            Decision::Run => panic!("a paid slot started beyond the burst"),
            Decision::Reserved { wait, .. } => waits.push(wait),
            other => panic!("{other:?}"),
        }
        let after: Option<String> = redis::cmd("GET")
            .arg(&keys.starts)
            .query(&mut conn)
            .unwrap();
        assert_eq!(before, after, "a paid job told to wait writes nothing");
    }
    assert!(
        waits.iter().all(|w| *w > Duration::from_millis(50)),
        "{waits:?}"
    );
    // Once the starts' pace allows, one of them starts, and the next waits again.
    std::thread::sleep(waits[0]);
    assert_eq!(
        decide(&mut conn, &keys, "j2", &limit, lease, true),
        Decision::Run
    );
    assert!(matches!(
        decide(&mut conn, &keys, "j3", &limit, lease, true),
        Decision::Reserved { .. }
    ));
}

#[test]
fn the_script_reserves_rate_slots_one_interval_apart() {
    let redis = RedisServer::start();
    let mut conn = redis.connection();
    let keys = bucket("spaced");
    let limit = FleetLimit {
        rate: rate("10/s", 2),
        concurrency: None,
    };
    let lease = Duration::from_secs(5);
    assert_eq!(
        decide(&mut conn, &keys, "j1", &limit, lease, false),
        Decision::Run
    );
    assert_eq!(
        decide(&mut conn, &keys, "j2", &limit, lease, false),
        Decision::Run
    );
    let third = reserved_wait(decide(&mut conn, &keys, "j3", &limit, lease, false));
    let fourth = reserved_wait(decide(&mut conn, &keys, "j4", &limit, lease, false));
    assert!(
        (Duration::from_millis(80)..=Duration::from_millis(100)).contains(&third),
        "{third:?}"
    );
    let step = fourth - third;
    assert!(
        (Duration::from_millis(95)..=Duration::from_millis(105)).contains(&step),
        "slots {third:?} and {fourth:?} are not one interval apart"
    );
    // A job that waited for its slot takes no second token.
    std::thread::sleep(third);
    assert_eq!(
        decide(&mut conn, &keys, "j3", &limit, lease, true),
        Decision::Run
    );
    let fifth = reserved_wait(decide(&mut conn, &keys, "j5", &limit, lease, false));
    // Its wait counts from after the sleep.
    assert!(third + fifth > fourth, "{fifth:?} after {fourth:?}");
    let ttl: i64 = redis::cmd("PTTL").arg(&keys.rate).query(&mut conn).unwrap();
    assert!(
        (1..=1_000).contains(&ttl),
        "the rate key expires with its TAT: {ttl}"
    );
    let running: bool = redis::cmd("EXISTS")
        .arg(&keys.running)
        .query(&mut conn)
        .unwrap();
    assert!(!running, "no concurrency cap, no leases");
}

#[test]
fn the_script_frees_a_slot_when_its_lease_expires() {
    let redis = RedisServer::start();
    let mut conn = redis.connection();
    let keys = bucket("leased");
    let limit = FleetLimit {
        rate: rate("1/m", 5),
        concurrency: Some(1),
    };
    let lease = Duration::from_millis(300);
    let started = Instant::now();
    assert_eq!(
        decide(&mut conn, &keys, "holder", &limit, lease, false),
        Decision::Run
    );
    let tat_before: String = redis::cmd("GET").arg(&keys.rate).query(&mut conn).unwrap();
    assert_eq!(
        decide(&mut conn, &keys, "waiter", &limit, lease, false),
        Decision::Full { running: 1 }
    );
    let tat_after: String = redis::cmd("GET").arg(&keys.rate).query(&mut conn).unwrap();
    assert_eq!(
        tat_before, tat_after,
        "a job denied by the cap spends no rate token"
    );
    // The holder's host died: nobody releases it; its lease runs out.
    wait_until(
        "the waiter gets the dead holder's slot",
        Duration::from_secs(5),
        || decide(&mut conn, &keys, "waiter", &limit, lease, false) == Decision::Run,
    );
    assert!(started.elapsed() >= Duration::from_millis(290));
    let members: Vec<String> = redis::cmd("ZRANGE")
        .arg(&keys.running)
        .arg(0)
        .arg(-1)
        .query(&mut conn)
        .unwrap();
    assert_eq!(members, ["waiter"]);
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&keys.running)
        .query(&mut conn)
        .unwrap();
    assert!(
        (1..=400).contains(&ttl),
        "the leases key expires with its last lease: {ttl}"
    );
    // Released by its host (ZREM): the slot is free at once.
    let _: i64 = limit::release(&keys, "waiter").query(&mut conn).unwrap();
    assert_eq!(
        decide(&mut conn, &keys, "next", &limit, lease, false),
        Decision::Run
    );
}

#[test]
fn the_script_writes_nothing_when_a_key_holds_another_type() {
    let redis = RedisServer::start();
    let mut conn = redis.connection();
    let limit = FleetLimit {
        rate: rate("10/s", 1),
        concurrency: Some(2),
    };
    let lease = Duration::from_secs(5);

    // The rate key is a hash: no lease is added, the hash is untouched.
    let keys = bucket("hashed");
    let _: () = redis::cmd("HSET")
        .arg(&keys.rate)
        .arg("f")
        .arg("v")
        .query(&mut conn)
        .unwrap();
    match decide(&mut conn, &keys, "j", &limit, lease, false) {
        Decision::WrongType { key, reason } => {
            assert_eq!(key, keys.rate);
            assert!(reason.contains("hash"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let running: bool = redis::cmd("EXISTS")
        .arg(&keys.running)
        .query(&mut conn)
        .unwrap();
    assert!(!running, "no lease after a refused check");

    // The running key is a string: the rate's TAT does not move.
    let keys = bucket("stringed");
    let _: () = redis::cmd("SET")
        .arg(&keys.running)
        .arg("x")
        .query(&mut conn)
        .unwrap();
    assert!(matches!(
        decide(&mut conn, &keys, "j", &limit, lease, false),
        Decision::WrongType { ref key, .. } if *key == keys.running
    ));
    let rate: bool = redis::cmd("EXISTS")
        .arg(&keys.rate)
        .query(&mut conn)
        .unwrap();
    assert!(!rate, "no token taken after a refused check");

    // The rate key holds text that is no time.
    let keys = bucket("texted");
    let _: () = redis::cmd("SET")
        .arg(&keys.rate)
        .arg("soon")
        .query(&mut conn)
        .unwrap();
    assert!(matches!(
        decide(&mut conn, &keys, "j", &limit, lease, false),
        Decision::WrongType { .. }
    ));
    let value: String = redis::cmd("GET").arg(&keys.rate).query(&mut conn).unwrap();
    assert_eq!(value, "soon");
}
