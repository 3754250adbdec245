//! Chaos: thousands of jobs through two hosts while hosts are SIGKILLed and
//! Redis restarts. Every job leaves a receipt (a follow-up written atomically
//! with its ack) that no plugin handles, so receipts collect in the delayed
//! set where they are counted: a job without a receipt was lost, a job with
//! two was doubled by our bookkeeping.
//!
//! The same jobs prove key-value state exactly-once (SPEC §10): each sets a
//! marker of its own (failing fatally if it finds one already committed) and
//! adds 1 to one of 100 shared counters, both committed with its ack. After
//! the storm the counters sum to the number of jobs and there is one marker
//! per job, though jobs ran twice after reclaims.
//!
//! `JOBHOST_CHAOS_JOBS` sets the number of jobs (default 10000).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jobhost_tests::{Host, PluginDir, RedisServer, entries, keys, pending_count, xadd_jobs};

const HOST_ARGS: &[&str] = &[
    "--claim-idle",
    "1s",
    // Receipts have no handler: keep them waiting (counted) instead of dead-lettering.
    "--max-attempts",
    "1000",
    "--retry-base",
    "1h",
    "--retry-cap",
    "1h",
];

/// The buckets the chaos jobs count in, and the manifest granting them.
const COUNTERS: &str = "jobhost:{default}:kv:counters";
const MARKERS: &str = "jobhost:{default}:kv:markers";
const GRANTS: &str = "[grants]\nkeyvalue = [\"counters\", \"markers\"]\n";

fn done_count(conn: &mut redis::Connection) -> u64 {
    let done: Option<u64> = redis::cmd("HGET")
        .arg(keys::COUNTERS)
        .arg("done")
        .query(conn)
        .unwrap_or(None);
    done.unwrap_or(0)
}

/// Receipt count per job payload, read from the delayed set.
fn receipts(conn: &mut redis::Connection) -> HashMap<String, u32> {
    let members: Vec<Vec<u8>> = redis::cmd("ZRANGE")
        .arg(keys::DELAYED)
        .arg(0)
        .arg(-1)
        .query(conn)
        .unwrap();
    let mut counts = HashMap::new();
    for member in members {
        let fields =
            jobhost::broker::delayed::fields(&member).expect("delayed members are field lists");
        let field = |name: &str| {
            fields
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| String::from_utf8_lossy(value).into_owned())
        };
        if field("type").as_deref() == Some("receipt.chaos") {
            *counts
                .entry(field("payload").unwrap_or_default())
                .or_default() += 1;
        }
    }
    counts
}

#[test]
fn no_job_is_lost_or_doubled_while_hosts_die_and_redis_restarts() {
    let jobs: usize = std::env::var("JOBHOST_CHAOS_JOBS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    let mut redis = RedisServer::start_with_aof();
    let plugins = PluginDir::with(&["testbed"]);
    plugins.write("testbed.toml", GRANTS.as_bytes());
    let mut conn = redis.connection();
    xadd_jobs(&mut conn, "test.chaos", (0..jobs).map(|i| i.to_string()));

    let url = redis.url();
    let mut hosts = [
        Host::start(&url, plugins.path(), HOST_ARGS),
        Host::start(&url, plugins.path(), HOST_ARGS),
    ];
    // At these fractions of the jobs done: kill a host (and start a new one in
    // its place), or restart Redis.
    let mut plan = vec![
        (0.15, "kill 0"),
        (0.3, "kill 1"),
        (0.45, "restart redis"),
        (0.6, "kill 0"),
        (0.75, "kill 1"),
    ];
    plan.reverse();
    let (mut kills, mut restarts) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let done = match redis::cmd("PING").query::<String>(&mut conn) {
            Ok(_) => done_count(&mut conn),
            Err(_) => {
                conn = redis.connection();
                continue;
            }
        };
        if let Some(&(at, action)) = plan.last()
            && done as f64 >= at * jobs as f64
        {
            plan.pop();
            match action {
                "restart redis" => {
                    redis.kill();
                    redis.restart();
                    conn = redis.connection();
                    restarts += 1;
                }
                kill => {
                    let which: usize = kill.trim_start_matches("kill ").parse().unwrap();
                    hosts[which].kill();
                    hosts[which] = Host::start(&url, plugins.path(), HOST_ARGS);
                    kills += 1;
                }
            }
            continue;
        }
        let settled = plan.is_empty()
            && done >= jobs as u64
            && entries(&mut conn, keys::STREAM).is_empty()
            && pending_count(&mut conn) == 0;
        if settled || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    let receipts = receipts(&mut conn);
    let lost = (0..jobs)
        .filter(|i| !receipts.contains_key(&i.to_string()))
        .count();
    let duplicated: u32 = receipts.values().map(|n| n - 1).sum();
    let dead = entries(&mut conn, keys::DLQ);
    let dead_lettered = dead.len();
    let already_set = dead
        .iter()
        .filter(|(_, f)| {
            f.get("last_error")
                .is_some_and(|e| e.contains("already set"))
        })
        .count();
    let counters: HashMap<String, u64> = redis::cmd("HGETALL")
        .arg(COUNTERS)
        .query(&mut conn)
        .unwrap();
    let counter_sum: u64 = counters.values().sum();
    let markers: u64 = redis::cmd("HLEN").arg(MARKERS).query(&mut conn).unwrap();
    println!(
        "chaos: jobs={jobs} host_kills={kills} redis_restarts={restarts} lost={lost} duplicated={duplicated} dead-lettered={dead_lettered}"
    );
    println!("kv: jobs={jobs} counter_sum={counter_sum} markers={markers}");
    assert!(
        kills >= 3 && restarts >= 1,
        "the chaos plan did not run: {kills} kills, {restarts} restarts"
    );
    assert_eq!(lost, 0, "lost jobs");
    assert_eq!(dead_lettered, 0, "dead-lettered jobs");
    assert_eq!(duplicated, 0, "jobs recorded twice");
    assert_eq!(already_set, 0, "jobs that found their own marker committed");
    assert_eq!(
        counter_sum, jobs as u64,
        "counts lost or doubled: {counters:?}"
    );
    assert_eq!(markers, jobs as u64, "one marker per job");
    assert_eq!(counters.len(), jobs.min(100), "every counter counted");
}
