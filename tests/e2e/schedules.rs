//! Recurring schedules (SPEC §12, issue #18): `jobhost schedule` and
//! `[[schedule]]` in jobhost.toml; every `run` host fires them, and each
//! tick enqueues exactly one job across all hosts.
//!
//! Most schedules here put their jobs on a queue no host serves (`ticks`),
//! so every job a tick enqueued stays on the stream to be counted, with its
//! `schedule_tick` (the cron instant, ms) and `schedule_catch_up` fields.

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jobhost::keys::QueueKeys;
use jobhost_tests::topologies::RedisCluster;
use jobhost_tests::{
    Host, PluginDir, RedisServer, entries, jobhost, ok_stdout, one_line_error, wait_until,
};

const WAIT: Duration = Duration::from_secs(60);
/// What the host calls due "now" (`jobhost::schedule::GRACE`).
const GRACE_MS: u64 = 2_000;
const EVERY_SECOND: &str = "* * * * * *";

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64
}

/// `jobhost schedule ARGS... --redis URL`, which must succeed; its stdout.
fn schedule(url: &str, args: &[&str]) -> String {
    ok_stdout(jobhost(&[&["schedule"], args, &["--redis", url]].concat()))
}

/// Adds schedule `name` firing every second onto queue `ticks`.
fn add_every_second(url: &str, name: &str, catch_up: &str) {
    schedule(
        url,
        &[
            "add",
            name,
            "--cron",
            EVERY_SECOND,
            "--queue",
            "ticks",
            "--catch-up",
            catch_up,
            "test.echo",
            "tick",
        ],
    );
}

/// One job a schedule enqueued.
#[derive(Debug, Clone)]
struct Tick {
    schedule: String,
    /// The cron instant it stands for (ms); `None` for a run-now.
    tick: Option<u64>,
    catch_up: bool,
}

/// Every job on queue `queue`'s stream, oldest first.
fn ticks(redis: &RedisServer, queue: &str) -> Vec<Tick> {
    let mut conn = redis.connection();
    let stream = QueueKeys::new("jobhost", queue).stream;
    entries(&mut conn, &stream)
        .into_iter()
        .map(|(id, fields)| Tick {
            schedule: fields
                .get("schedule")
                .unwrap_or_else(|| panic!("entry {id} has no schedule field: {fields:?}"))
                .clone(),
            tick: fields
                .get("schedule_tick")
                .map(|t| t.parse().expect("a tick in ms")),
            catch_up: fields.get("schedule_catch_up").map(String::as_str) == Some("1"),
        })
        .collect()
}

/// No tick enqueued two jobs.
fn assert_each_tick_once(ticks: &[Tick]) {
    let mut seen = HashSet::new();
    for tick in ticks {
        if let Some(at) = tick.tick {
            assert!(
                seen.insert((tick.schedule.clone(), at)),
                "tick {at} of {} enqueued two jobs: {ticks:?}",
                tick.schedule
            );
        }
    }
}

/// The schedule's object in `schedule list --json`.
fn listed(url: &str, name: &str) -> serde_json::Value {
    let out = schedule(url, &["list", "--json"]);
    let list: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    list.as_array()
        .expect("an array")
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("schedule list has no {name}: {out}"))
        .clone()
}

fn stop(hosts: Vec<Host>) {
    for host in &hosts {
        host.sigterm();
    }
    for mut host in hosts {
        assert!(host.wait_exit(WAIT).success());
    }
}

#[test]
fn a_schedule_every_second_enqueues_one_job_per_tick_across_three_hosts() {
    let redis = RedisServer::start();
    let url = redis.url();
    let plugins = PluginDir::with(&["testbed"]);
    add_every_second(&url, "every", "one");
    let hosts: Vec<Host> = (0..3)
        .map(|_| Host::start(&url, plugins.path(), &[]))
        .collect();
    wait_until("the first tick fires", WAIT, || {
        !ticks(&redis, "ticks").is_empty()
    });

    let before = ticks(&redis, "ticks").len();
    std::thread::sleep(Duration::from_secs(10));
    let all = ticks(&redis, "ticks");
    let fired = all.len() - before;
    assert!(
        (9..=11).contains(&fired),
        "10 ± 1 jobs in 10 s, got {fired}: {all:?}"
    );
    assert_each_tick_once(&all);
    // Consecutive seconds: no tick was skipped either.
    let seconds: Vec<u64> = all[before..].iter().filter_map(|t| t.tick).collect();
    for pair in seconds.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            1000,
            "ticks one second apart: {seconds:?}"
        );
    }
    // Each host fired some ticks (no leader), and all logged them.
    let logged: usize = hosts
        .iter()
        .map(|h| h.log().matches("schedule fired").count())
        .sum();
    assert_eq!(logged, all.len(), "one 'schedule fired' line per job");
    let listed = listed(&url, "every");
    assert_eq!(listed["paused"], false);
    assert!(listed["last_fired_at"].is_string(), "{listed}");
    assert!(listed["next_fire"].is_string(), "{listed}");
    stop(hosts);
}

/// What a stop of every host did.
struct Restart {
    /// The last tick fired before the stop.
    last_before: u64,
    /// When the host was started again (before its process was spawned).
    restarted: u64,
    /// When it was running again (it logged "consuming").
    running: u64,
    /// The jobs of the ticks after the stop.
    after: Vec<Tick>,
}

/// Runs `every` with `catch_up` on one host, stops it for 5 s, starts it
/// again and returns what the ticks did once they flow again.
fn stopped_for_five_seconds(catch_up: &str) -> Restart {
    let redis = RedisServer::start();
    let url = redis.url();
    let plugins = PluginDir::with(&["testbed"]);
    add_every_second(&url, "every", catch_up);
    let host = Host::start(&url, plugins.path(), &[]);
    wait_until("two ticks fire", WAIT, || ticks(&redis, "ticks").len() >= 2);
    stop(vec![host]);
    let before_stop = ticks(&redis, "ticks");
    let last_before = before_stop
        .iter()
        .filter_map(|t| t.tick)
        .max()
        .expect("ticks");

    std::thread::sleep(Duration::from_secs(5));
    let restarted = now_ms();
    let host = Host::start(&url, plugins.path(), &[]);
    let running = now_ms();
    wait_until("ticks after the restart fire", WAIT, || {
        ticks(&redis, "ticks")
            .iter()
            .filter_map(|t| t.tick)
            .any(|t| t > restarted + 1000)
    });
    stop(vec![host]);
    let all = ticks(&redis, "ticks");
    assert_each_tick_once(&all);
    Restart {
        last_before,
        restarted,
        running,
        after: all[before_stop.len()..].to_vec(),
    }
}

#[test]
fn a_tick_missed_while_no_host_ran_fires_once_on_restart_with_catch_up_one() {
    let Restart {
        last_before,
        restarted,
        running,
        after,
    } = stopped_for_five_seconds("one");
    let catch_ups: Vec<&Tick> = after.iter().filter(|t| t.catch_up).collect();
    assert_eq!(catch_ups.len(), 1, "exactly one catch-up job: {after:?}");
    let tick = catch_ups[0].tick.expect("a catch-up job has its tick");
    assert!(
        tick > last_before && tick < running,
        "it stands for a tick missed while no host ran: {tick} not in ({last_before}, {running})"
    );
    // The other missed ticks (beyond the grace before the restart) fired nothing.
    let missed_and_fired: Vec<&Tick> = after
        .iter()
        .filter(|t| !t.catch_up && t.tick.is_some_and(|at| at + GRACE_MS < restarted))
        .collect();
    assert!(missed_and_fired.is_empty(), "{missed_and_fired:?}");
}

#[test]
fn ticks_missed_while_no_host_ran_fire_nothing_with_catch_up_none() {
    let Restart {
        restarted, after, ..
    } = stopped_for_five_seconds("none");
    assert!(
        after.iter().all(|t| !t.catch_up),
        "no catch-up job: {after:?}"
    );
    let missed_and_fired: Vec<&Tick> = after
        .iter()
        .filter(|t| t.tick.is_some_and(|at| at + GRACE_MS < restarted))
        .collect();
    assert!(
        missed_and_fired.is_empty(),
        "no job for a tick missed by more than the grace: {missed_and_fired:?}"
    );
}

#[test]
fn pause_stops_the_ticks_on_every_host_and_resume_restarts_them_without_the_missed_ones() {
    let redis = RedisServer::start();
    let url = redis.url();
    let plugins = PluginDir::with(&["testbed"]);
    add_every_second(&url, "every", "one");
    let hosts: Vec<Host> = (0..2)
        .map(|_| Host::start(&url, plugins.path(), &[]))
        .collect();
    wait_until("the first tick fires", WAIT, || {
        !ticks(&redis, "ticks").is_empty()
    });

    let out = schedule(&url, &["pause", "every"]);
    assert!(out.contains("paused schedule every"), "{out}");
    assert_eq!(listed(&url, "every")["paused"], true);
    assert!(listed(&url, "every")["next_fire"].is_null());
    // The fire script checks the pause in the same step: not one tick after it.
    let paused_with = ticks(&redis, "ticks").len();
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        assert_eq!(
            ticks(&redis, "ticks").len(),
            paused_with,
            "no job while paused"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let resumed = now_ms();
    let out = schedule(&url, &["resume", "every"]);
    assert!(out.contains("resumed schedule every"), "{out}");
    wait_until("ticks fire again", WAIT, || {
        ticks(&redis, "ticks").len() >= paused_with + 2
    });
    let all = ticks(&redis, "ticks");
    for tick in &all[paused_with..] {
        assert!(
            !tick.catch_up,
            "ticks missed while paused never fire: {tick:?}"
        );
        assert!(
            tick.tick.expect("a tick") >= resumed,
            "a tick from while it was paused fired: {tick:?} (resumed at {resumed})"
        );
    }
    assert_each_tick_once(&all);

    // run-now enqueues one job, marked with its schedule but no tick, and
    // leaves the ticks alone.
    let last_tick = listed(&url, "every")["last_tick"].clone();
    let id = schedule(&url, &["run-now", "every"]);
    assert!(!id.trim().is_empty());
    let run_now: Vec<Tick> = ticks(&redis, "ticks")
        .into_iter()
        .filter(|t| t.tick.is_none())
        .collect();
    assert_eq!(run_now.len(), 1, "{run_now:?}");
    assert_eq!(run_now[0].schedule, "every");
    assert!(last_tick.is_string());

    let out = schedule(&url, &["remove", "every"]);
    assert!(out.contains("removed schedule every"), "{out}");
    let out = schedule(&url, &["list"]);
    assert!(out.contains("no schedules"), "{out}");
    stop(hosts);
}

#[test]
fn bad_crons_zones_and_keys_of_another_type_are_one_line_errors() {
    let redis = RedisServer::start();
    let url = redis.url();
    let add = |name: &str, cron: &str, tz: &str| {
        jobhost(&[
            "schedule",
            "add",
            name,
            "--cron",
            cron,
            "--tz",
            tz,
            "test.echo",
            "x",
            "--redis",
            &url,
        ])
    };
    let error = one_line_error(&add("bad", "61 * * * *", "UTC"));
    assert!(error.contains("cron \"61 * * * *\""), "{error}");
    let error = one_line_error(&add("bad", "* * *", "UTC"));
    assert!(error.contains("cron"), "{error}");
    let error = one_line_error(&add("bad", "0 3 * * *", "Mars/Olympus"));
    assert!(error.contains("Mars/Olympus"), "{error}");
    let error = one_line_error(&add("two words", "0 3 * * *", "UTC"));
    assert!(error.contains("schedule name"), "{error}");
    let error = one_line_error(&jobhost(&["schedule", "pause", "nothing", "--redis", &url]));
    assert!(error.contains("no schedule nothing"), "{error}");

    // A schedule's key holding a string.
    let mut conn = redis.connection();
    let key = QueueKeys::new("jobhost", "default").schedule("broken");
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("x")
        .query(&mut conn)
        .unwrap();
    let error = one_line_error(&add("broken", "0 3 * * *", "UTC"));
    assert!(error.contains(&key), "the error names the key: {error}");
    // Indexed, the host reports it and keeps serving and firing the others.
    let _: () = redis::cmd("HSET")
        .arg("jobhost:schedules")
        .arg("broken")
        .arg("default")
        .query(&mut conn)
        .unwrap();
    add_every_second(&url, "good", "one");
    let plugins = PluginDir::with(&["testbed"]);
    let host = Host::start(&url, plugins.path(), &[]);
    host.wait_for_log(&key, WAIT);
    wait_until("the good schedule fires", WAIT, || {
        !ticks(&redis, "ticks").is_empty()
    });
    assert!(!host.exited());
    // Over several reloads of the list (one a second), one report.
    std::thread::sleep(Duration::from_millis(2500));
    let reports = host.log().matches("schedule broken cannot be read").count();
    assert_eq!(reports, 1, "reported once: {}", host.log());
    let error = one_line_error(&jobhost(&["schedule", "show", "broken", "--redis", &url]));
    assert!(error.contains(&key), "{error}");
    let broken = listed(&url, "broken");
    assert!(
        broken["problem"].as_str().unwrap_or("").contains(&key),
        "list shows the broken schedule with its key: {broken}"
    );
    let table = schedule(&url, &["list"]);
    assert!(
        table.contains("broken") && table.contains("good"),
        "{table}"
    );
    stop(vec![host]);

    // The index itself of another type.
    let _: () = redis::cmd("DEL")
        .arg("jobhost:schedules")
        .query(&mut conn)
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("jobhost:schedules")
        .arg("x")
        .query(&mut conn)
        .unwrap();
    let error = one_line_error(&jobhost(&["schedule", "list", "--redis", &url]));
    assert!(error.contains("jobhost:schedules"), "{error}");
}

#[test]
fn schedules_in_jobhost_toml_are_applied_by_run_and_leave_the_others_alone() {
    let redis = RedisServer::start();
    let url = redis.url();
    let plugins = PluginDir::with(&["testbed"]);
    // Added by command before: one the file redefines, one it does not name.
    schedule(
        &url,
        &[
            "add",
            "echo",
            "--cron",
            "0 3 * * *",
            "--queue",
            "ticks",
            "test.echo",
            "old",
        ],
    );
    schedule(
        &url,
        &[
            "add",
            "other",
            "--cron",
            "0 4 * * *",
            "--queue",
            "ticks",
            "test.echo",
            "x",
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("jobhost.toml");
    std::fs::write(
        &config,
        r#"
concurrency = 1

[[schedule]]
name = "echo"
cron = "* * * * * *"
tz = "Europe/Paris"
queue = "default"
type = "test.echo"
payload = { hello = "from the file" }
catch_up = "none"
"#,
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let host = Host::builder(&url, plugins.path())
        .args(&["--config", config, "--log-format", "json"])
        .start();
    // The host serves `default`: the jobs run, and their log lines name the schedule.
    wait_until("a job of the schedule runs", WAIT, || {
        host.log().lines().any(|line| {
            serde_json::from_str::<serde_json::Value>(line).is_ok_and(|line| {
                line["fields"]["message"] == "job finished" && line["fields"]["schedule"] == "echo"
            })
        })
    });
    let echo = listed(&url, "echo");
    assert_eq!(echo["queue"], "default");
    assert_eq!(echo["tz"], "Europe/Paris");
    assert_eq!(echo["catch_up"], "none");
    assert_eq!(echo["payload"], r#"{"hello":"from the file"}"#);
    let other = listed(&url, "other");
    assert_eq!(
        other["cron"], "0 4 * * *",
        "a schedule the file does not name is left alone"
    );
    stop(vec![host]);

    // Applied again at the next start, the entry keeps the fire state.
    let last_tick = listed(&url, "echo")["last_tick"].clone();
    assert!(last_tick.is_string(), "it fired: {last_tick}");
    let host = Host::builder(&url, plugins.path())
        .args(&["--config", config, "--log-format", "json"])
        .start();
    host.wait_for_log(r#""change":"Replaced""#, WAIT);
    let again = listed(&url, "echo");
    assert!(
        again["last_tick"].as_str() >= last_tick.as_str(),
        "{again} after {last_tick}"
    );
    stop(vec![host]);

    // A bad entry stops `run` with one line naming it.
    std::fs::write(
        dir.path().join("bad.toml"),
        "[[schedule]]\nname = \"b\"\ncron = \"* * * * * *\"\ntz = \"Nowhere/City\"\ntype = \"t.x\"\npayload = \"p\"\n",
    )
    .unwrap();
    let bad = dir.path().join("bad.toml");
    let error = one_line_error(&jobhost(&[
        "run",
        "--config",
        bad.to_str().unwrap(),
        "--plugins",
        plugins.path().to_str().unwrap(),
        "--redis",
        &url,
    ]));
    assert!(error.contains("Nowhere/City"), "{error}");
}

#[test]
fn the_scheduler_outlives_a_redis_outage_and_catches_up_once() {
    let mut redis = RedisServer::start_with_aof();
    let url = redis.url();
    let plugins = PluginDir::with(&["testbed"]);
    add_every_second(&url, "every", "one");
    let host = Host::start(&url, plugins.path(), &[]);
    wait_until("the first tick fires", WAIT, || {
        !ticks(&redis, "ticks").is_empty()
    });
    let before = ticks(&redis, "ticks").len();

    redis.kill();
    let down = Instant::now();
    while down.elapsed() < Duration::from_secs(4) {
        assert!(!host.exited(), "the host keeps running while Redis is down");
        std::thread::sleep(Duration::from_millis(100));
    }
    redis.restart();
    wait_until("ticks fire again", WAIT, || {
        ticks(&redis, "ticks")
            .iter()
            .skip(before)
            .filter(|t| !t.catch_up)
            .count()
            >= 2
    });
    let all = ticks(&redis, "ticks");
    assert_each_tick_once(&all);
    let catch_ups = all[before..].iter().filter(|t| t.catch_up).count();
    assert!(
        catch_ups <= 1,
        "one catch-up job at most for the ticks of the outage: {all:?}"
    );
    stop(vec![host]);
}

#[test]
fn on_a_cluster_each_tick_still_enqueues_one_job() {
    let cluster = RedisCluster::start();
    let url = cluster.url();
    let plugins = PluginDir::with(&["testbed"]);
    add_every_second(&url, "every", "one");
    let hosts: Vec<Host> = (0..2)
        .map(|_| Host::start(&url, plugins.path(), &[]))
        .collect();
    // The schedule's hash and its queue's stream share a slot: one node holds both.
    let node = cluster.node_of(&QueueKeys::new("jobhost", "ticks").stream);
    wait_until("three ticks fire", WAIT, || ticks(node, "ticks").len() >= 3);
    assert_each_tick_once(&ticks(node, "ticks"));
    let listed = listed(&url, "every");
    assert!(listed["last_tick"].is_string(), "{listed}");
    stop(hosts);
}
