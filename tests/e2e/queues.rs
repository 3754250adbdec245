//! Queues and flow control (SPEC §11, issue #17): one host serving several
//! queues in strict priority or by weight, and `jobhost queue pause|resume|list`
//! stopping and restarting every host's reads of a queue.
//!
//! Hosts log with `--log-format json`, so each "job finished" line is parsed
//! as an object: its `queue`, its order among the others, and its time.

use std::collections::HashMap;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jobhost::keys::QueueKeys;
use jobhost_tests::topologies::RedisCluster;
use jobhost_tests::{
    Host, PluginDir, RedisServer, enqueue, jobhost, jobhost_bin, jobhost_with_stdin, ok_stdout,
    one_line_error, wait_until,
};

const WAIT: Duration = Duration::from_secs(60);
const JSON_LOG: &[&str] = &["--log-format", "json"];

/// One "job finished" line of a host's log.
#[derive(Debug, Clone)]
struct Finished {
    job_id: String,
    queue: String,
    /// When the line was logged, in ms since the Unix epoch (the outcome is
    /// recorded just before).
    at_ms: u64,
    duration_us: u64,
}

impl Finished {
    /// When the handler started, in ms since the Unix epoch, give or take the
    /// time the outcome took to record (which only makes it look later).
    fn started_ms(&self) -> u64 {
        self.at_ms.saturating_sub(self.duration_us / 1000)
    }
}

/// Every "job finished" line of `host`'s JSON log, in the order logged.
fn finished(host: &Host) -> Vec<Finished> {
    host.log()
        .lines()
        // A line being written as we read is cut short and fails to parse.
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line["fields"]["message"] == "job finished")
        .map(|line| {
            let fields = &line["fields"];
            let text = |name: &str| fields[name].as_str().unwrap_or_default().to_owned();
            Finished {
                job_id: text("job_id"),
                queue: text("queue"),
                at_ms: line["timestamp"]
                    .as_str()
                    .and_then(jobhost::envelope::parse_rfc3339_ms)
                    .unwrap_or_else(|| panic!("a log line without a timestamp: {line}")),
                duration_us: fields["duration_us"].as_u64().unwrap_or(0),
            }
        })
        .collect()
}

fn finished_on(host: &Host, queue: &str) -> usize {
    finished(host).iter().filter(|f| f.queue == queue).count()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64
}

/// Enqueues `count` jobs of `job_type` with `payload` on `queue` in one
/// `enqueue --batch`; returns their ids.
fn enqueue_many(
    url: &str,
    queue: &str,
    job_type: &str,
    payload: &str,
    count: usize,
) -> Vec<String> {
    let line = serde_json::json!({ "type": job_type, "payload": payload }).to_string() + "\n";
    let out = ok_stdout(jobhost_with_stdin(
        &["enqueue", "--batch", "--queue", queue, "--redis", url],
        &line.repeat(count),
    ));
    let ids: Vec<String> = out.lines().map(str::to_owned).collect();
    assert_eq!(ids.len(), count, "one id per job enqueued");
    ids
}

fn stream_of(queue: &str) -> String {
    QueueKeys::new(jobhost::keys::DEFAULT_NAMESPACE, queue).stream
}

fn xlen(conn: &mut redis::Connection, key: &str) -> u64 {
    redis::cmd("XLEN").arg(key).query(conn).expect("XLEN")
}

/// The objects of a `--json` command's array, by their `queue`.
fn by_queue(json: &str) -> HashMap<String, serde_json::Value> {
    let parsed: serde_json::Value =
        serde_json::from_str(json).unwrap_or_else(|e| panic!("not JSON ({e}): {json}"));
    parsed
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {json}"))
        .iter()
        .map(|q| {
            (
                q["queue"].as_str().expect("a queue name").to_owned(),
                q.clone(),
            )
        })
        .collect()
}

/// `jobhost queue ARGS... --redis URL`, which must succeed; its stdout.
fn queue_cmd(url: &str, args: &[&str]) -> String {
    ok_stdout(jobhost(&[&["queue"], args, &["--redis", url]].concat()))
}

/// Whether `queue list --json` says `queue` is paused.
fn listed_paused(url: &str, queue: &str) -> bool {
    let list = queue_cmd(url, &["list", "--json"]);
    let entry = by_queue(&list)
        .remove(queue)
        .unwrap_or_else(|| panic!("queue list has no {queue}: {list}"));
    entry["paused"]
        .as_bool()
        .unwrap_or_else(|| panic!("`paused` is not a bool: {entry}"))
}

/// `jobhost stats --queue QUEUE --json`: the queue's one object.
fn stats(url: &str, queue: &str) -> serde_json::Value {
    let out = ok_stdout(jobhost(&[
        "stats", "--queue", queue, "--json", "--redis", url,
    ]));
    by_queue(&out)
        .remove(queue)
        .unwrap_or_else(|| panic!("stats has no {queue}: {out}"))
}

/// Checks for `hold` that `condition` keeps holding (the absence of
/// something: nothing left to wait for, so it is watched for the whole time).
fn holds_for(what: &str, hold: Duration, mut condition: impl FnMut() -> bool) {
    let until = Instant::now() + hold;
    while Instant::now() < until {
        assert!(condition(), "no longer true: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn strict_priority_runs_no_lower_queues_job_before_every_higher_queues_job_has_finished() {
    let redis = RedisServer::start();
    let url = redis.url();
    let plugins = PluginDir::with(&["testbed"]);
    // The lowest queue's backlog is the oldest, so only the order of the
    // queues can put it last.
    let mut queue_of = HashMap::new();
    for queue in ["low", "default", "critical"] {
        for id in enqueue_many(&url, queue, "test.echo", "x", 100) {
            queue_of.insert(id, queue);
        }
    }
    // One job at a time, read one ahead: the order the jobs finish in is the
    // order they started in.
    let host = Host::builder(&url, plugins.path())
        .args(JSON_LOG)
        .args(&[
            "--queue", "critical", "--queue", "default", "--queue", "low",
        ])
        .args(&["--concurrency", "1", "--prefetch", "1"])
        .metrics()
        .start();
    wait_until("every job is finished", WAIT, || {
        finished(&host).len() >= 300
    });

    let order = finished(&host);
    assert_eq!(order.len(), 300, "each job finished once");
    for job in &order {
        assert_eq!(
            queue_of.get(&job.job_id).copied(),
            Some(job.queue.as_str()),
            "the line of job {} names the queue it was enqueued on",
            job.job_id
        );
    }
    let queues: Vec<&str> = order.iter().map(|f| f.queue.as_str()).collect();
    let expected: Vec<&str> = ["critical", "default", "low"]
        .iter()
        .flat_map(|q| std::iter::repeat_n(*q, 100))
        .collect();
    assert!(
        queues == expected,
        "all of critical, then all of default, then all of low; got {queues:?}"
    );
    for queue in ["critical", "default", "low"] {
        assert_eq!(
            host.metric_sum(
                "jobhost_jobs_total",
                &[("queue", queue), ("outcome", "done")]
            ),
            Some(100.0),
            "jobhost_jobs_total counts by queue"
        );
    }
}

#[test]
fn a_higher_queues_job_enqueued_while_a_lower_one_drains_runs_next() {
    let redis = RedisServer::start();
    let url = redis.url();
    let plugins = PluginDir::with(&["testbed"]);
    let host = Host::builder(&url, plugins.path())
        .args(JSON_LOG)
        .args(&["--queue", "critical", "--queue", "low"])
        .args(&["--concurrency", "1", "--prefetch", "1"])
        .start();
    // 60 jobs of 50 ms: three seconds of low work.
    enqueue_many(&url, "low", "test.sleep", "50", 60);
    wait_until("low is draining", WAIT, || finished_on(&host, "low") >= 10);
    let urgent = enqueue(&url, &["test.sleep", "1", "--queue", "critical"]);
    let low_before = finished_on(&host, "low");
    wait_until("every job is finished", WAIT, || {
        finished(&host).len() >= 61
    });

    let order = finished(&host);
    let position = order
        .iter()
        .position(|f| f.job_id == urgent)
        .expect("the critical job finished");
    assert_eq!(order[position].queue, "critical");
    // Behind it at most the low job running when it came and the one read
    // ahead (and one more for a read already on its way).
    assert!(
        position <= low_before + 3,
        "the critical job finished {position}th, when {low_before} low jobs had finished before it was enqueued"
    );
    assert!(
        order[position + 1..].iter().all(|f| f.queue == "low"),
        "the rest is low"
    );
}

#[test]
fn weighted_queues_share_the_work_by_weight_and_an_empty_queue_yields_its_share() {
    let redis = RedisServer::start();
    let url = redis.url();
    let plugins = PluginDir::with(&["testbed"]);
    let (critical, low) = (3000, 2000);
    enqueue_many(&url, "critical", "test.echo", "x", critical);
    enqueue_many(&url, "low", "test.echo", "x", low);
    let host = Host::builder(&url, plugins.path())
        .args(JSON_LOG)
        .args(&["--queue", "critical=3", "--queue", "low=1"])
        .args(&["--concurrency", "2"])
        .metrics()
        .start();
    wait_until("every job is finished", WAIT, || {
        finished(&host).len() >= critical + low
    });

    let order = finished(&host);
    assert_eq!(order.len(), critical + low, "each job finished once");
    let first = &order[..2000];
    let share = first.iter().filter(|f| f.queue == "critical").count() as f64 / 2000.0;
    assert!(
        (0.675..=0.825).contains(&share),
        "critical's share of the first 2,000 jobs is 3/4 ± 10%: {share}"
    );

    // Once critical is empty, low has the host to itself: it keeps going at
    // about the rate both had together, not at its quarter of it.
    let last_critical = order
        .iter()
        .rposition(|f| f.queue == "critical")
        .expect("critical jobs ran");
    let tail = &order[last_critical + 1..];
    assert!(
        tail.len() >= 500,
        "low still had work once critical was empty: {} jobs",
        tail.len()
    );
    let rate = |jobs: &[Finished]| {
        let span = jobs.last().unwrap().at_ms - jobs.first().unwrap().at_ms;
        jobs.len() as f64 / (span.max(1) as f64 / 1000.0)
    };
    let (together, alone) = (rate(&order[..=last_critical]), rate(tail));
    assert!(
        alone >= together * 0.5,
        "low alone runs {alone:.0} jobs/s, both together ran {together:.0} jobs/s"
    );
    assert_eq!(
        host.metric_sum("jobhost_jobs_total", &[("queue", "critical")]),
        Some(critical as f64)
    );
    assert_eq!(
        host.metric_sum("jobhost_jobs_total", &[("queue", "low")]),
        Some(low as f64)
    );
}

#[test]
fn a_paused_queue_is_read_by_no_host_within_a_second_and_resumed_flows_on_every_host() {
    let redis = RedisServer::start();
    let url = redis.url();
    let mut conn = redis.connection();
    let plugins = PluginDir::with(&["testbed"]);
    // Read one ahead, so what a host holds when the pause comes is little.
    let cache = tempfile::tempdir().expect("temp dir");
    let hosts: Vec<Host> = (0..2)
        .map(|_| {
            Host::builder(&url, plugins.path())
                .args(JSON_LOG)
                .arg("--cache-dir")
                .arg(cache.path())
                .args(&["--concurrency", "2", "--prefetch", "1"])
                .start()
        })
        .collect();
    // Ten seconds of 100 ms jobs for four threads.
    enqueue_many(&url, "default", "test.sleep", "100", 400);
    wait_until("both hosts run jobs", WAIT, || {
        hosts.iter().all(|h| finished(h).len() >= 3)
    });
    assert!(!listed_paused(&url, "default"));

    let paused_at = now_ms();
    queue_cmd(&url, &["pause", "default"]);
    assert!(listed_paused(&url, "default"), "queue list shows the pause");
    assert_eq!(stats(&url, "default")["paused"], true, "so does stats");
    // Within about a second no host starts a job; what was in flight ends
    // 100 ms later. Then nothing more finishes for a while.
    let settled = Duration::from_millis(1500);
    std::thread::sleep(settled);
    let after_pause: Vec<usize> = hosts.iter().map(|h| finished(h).len()).collect();
    let waiting = xlen(&mut conn, &stream_of("default"));
    holds_for(
        "nothing finishes while paused",
        Duration::from_secs(2),
        || hosts.iter().map(|h| finished(h).len()).collect::<Vec<_>>() == after_pause,
    );
    for host in &hosts {
        let late: Vec<Finished> = finished(host)
            .into_iter()
            .filter(|f| f.started_ms() > paused_at + 1100)
            .collect();
        assert!(
            late.is_empty(),
            "started more than 1.1 s after the pause: {late:?}"
        );
    }
    assert_eq!(jobhost_tests::pending_count(&mut conn), 0, "nothing held");
    assert!(waiting > 200, "the rest waits in the stream: {waiting}");
    // Producers still enqueue.
    enqueue(&url, &["test.sleep", "100"]);
    assert_eq!(xlen(&mut conn, &stream_of("default")), waiting + 1);

    queue_cmd(&url, &["resume", "default"]);
    assert!(!listed_paused(&url, "default"));
    assert_eq!(stats(&url, "default")["paused"], false);
    wait_until("both hosts run jobs again", WAIT, || {
        hosts
            .iter()
            .zip(&after_pause)
            .all(|(h, before)| finished(h).len() >= before + 3)
    });
}

#[test]
fn a_host_started_or_restarted_while_its_queue_is_paused_leaves_the_jobs_waiting_until_resume() {
    let redis = RedisServer::start();
    let url = redis.url();
    let mut conn = redis.connection();
    let plugins = PluginDir::with(&["testbed"]);
    // Paused before any host ever served it; the pause lives in Redis.
    queue_cmd(&url, &["pause", "default"]);
    enqueue_many(&url, "default", "test.echo", "x", 20);
    assert!(listed_paused(&url, "default"));

    // One compiled-code cache for both hosts: the second starts warm.
    let cache = tempfile::tempdir().expect("temp dir");
    let start = || {
        Host::builder(&url, plugins.path())
            .args(JSON_LOG)
            .arg("--cache-dir")
            .arg(cache.path())
            .start()
    };
    let mut host = start();
    let untouched = |conn: &mut redis::Connection, host: &Host| {
        let stats = stats(&url, "default");
        finished(host).is_empty()
            && xlen(conn, &stream_of("default")) == 20
            && stats["stream_length"] == 20
            && stats["pending"] == 0
            && stats["paused"] == true
    };
    holds_for("the jobs wait", Duration::from_secs(2), || {
        untouched(&mut conn, &host)
    });
    // A restart does not forget it either.
    host.sigterm();
    assert!(host.wait_exit(WAIT).success());
    let host = start();
    holds_for("the jobs still wait", Duration::from_millis(1500), || {
        untouched(&mut conn, &host)
    });

    queue_cmd(&url, &["resume", "default"]);
    wait_until("every job is finished", WAIT, || {
        finished(&host).len() >= 20
    });
    assert!(finished(&host).iter().all(|f| f.queue == "default"));
}

#[test]
fn a_delayed_job_due_while_its_queue_is_paused_is_promoted_but_runs_only_after_resume() {
    let redis = RedisServer::start();
    let url = redis.url();
    let mut conn = redis.connection();
    let plugins = PluginDir::with(&["testbed"]);
    let host = Host::builder(&url, plugins.path()).args(JSON_LOG).start();
    queue_cmd(&url, &["pause", "default"]);
    let keys = QueueKeys::new(jobhost::keys::DEFAULT_NAMESPACE, "default");
    let id = enqueue(&url, &["test.echo", "later", "--delay", "1s"]);
    wait_until("the due job is promoted into the stream", WAIT, || {
        let delayed: u64 = redis::cmd("ZCARD")
            .arg(&keys.delayed)
            .query(&mut conn)
            .expect("ZCARD");
        delayed == 0 && xlen(&mut conn, &keys.stream) == 1
    });
    holds_for(
        "the promoted job waits",
        Duration::from_millis(1500),
        || finished(&host).is_empty() && jobhost_tests::pending_count(&mut conn) == 0,
    );

    queue_cmd(&url, &["resume", "default"]);
    wait_until("the job runs", WAIT, || {
        finished(&host).iter().any(|f| f.job_id == id)
    });
}

#[test]
fn a_paused_set_of_another_type_is_reported_and_keeps_no_host_from_serving() {
    let redis = RedisServer::start();
    let url = redis.url();
    let mut conn = redis.connection();
    let key = jobhost::keys::paused_queues(jobhost::keys::DEFAULT_NAMESPACE);
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("default")
        .query(&mut conn)
        .expect("SET");
    let plugins = PluginDir::with(&["testbed"]);
    let host = Host::builder(&url, plugins.path()).args(JSON_LOG).start();
    let id = enqueue(&url, &["test.echo", "served"]);
    wait_until("the job runs", WAIT, || {
        finished(&host).iter().any(|f| f.job_id == id)
    });
    host.wait_for_log(&format!("key {key} is not a set; delete it"), WAIT);
    let out = jobhost(&["queue", "pause", "default", "--redis", &url]);
    one_line_error(&out);
}

#[test]
fn one_host_serves_two_queues_on_different_cluster_masters() {
    let cluster = RedisCluster::start();
    let url = cluster.url();
    let plugins = PluginDir::with(&["testbed"]);
    let first = "a".to_owned();
    let second = cluster.queue_on_another_master(&first);
    assert_ne!(
        cluster.node_of(&stream_of(&first)).port(),
        cluster.node_of(&stream_of(&second)).port(),
        "the queues live on different masters"
    );
    let host = Host::builder(&url, plugins.path())
        .args(JSON_LOG)
        .args(&["--queue", &first, "--queue", &second])
        .start();
    let mut queue_of = HashMap::new();
    for (queue, count) in [(&first, 150), (&second, 100)] {
        for id in enqueue_many(&url, queue, "test.echo", "x", count) {
            queue_of.insert(id, queue.clone());
        }
    }
    wait_until("every job is finished", WAIT, || {
        finished(&host).len() >= 250
    });
    for job in finished(&host) {
        assert_eq!(queue_of.get(&job.job_id), Some(&job.queue), "{job:?}");
    }
    for (queue, count) in [(&first, 150), (&second, 100)] {
        let keys = QueueKeys::new(jobhost::keys::DEFAULT_NAMESPACE, queue);
        let mut home = cluster.node_of(&keys.stream).connection();
        let done: Option<u64> = redis::cmd("HGET")
            .arg(&keys.counters)
            .arg("done")
            .query(&mut home)
            .expect("HGET");
        assert_eq!(
            done,
            Some(count),
            "queue {queue}'s jobs recorded on its own master"
        );
        assert_eq!(
            xlen(&mut home, &keys.stream),
            0,
            "queue {queue}: nothing left"
        );
    }
}

#[test]
fn queues_come_from_the_environment_and_the_config_file_as_a_comma_separated_list() {
    let redis = RedisServer::start();
    let url = redis.url();
    let plugins = PluginDir::with(&["testbed"]);
    let from_env = Host::builder(&url, plugins.path())
        .args(JSON_LOG)
        .env("JOBHOST_QUEUE", "critical,low")
        .start();
    for queue in ["critical", "low"] {
        let id = enqueue(&url, &["test.echo", "x", "--queue", queue]);
        wait_until(&format!("the job on {queue} runs"), WAIT, || {
            finished(&from_env)
                .iter()
                .any(|f| f.job_id == id && f.queue == queue)
        });
    }
    drop(from_env);

    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("jobhost.toml");
    std::fs::write(&config, "queue = \"critical,low\"\n").expect("jobhost.toml");
    let from_file = Host::builder(&url, plugins.path())
        .args(JSON_LOG)
        .arg("--config")
        .arg(&config)
        .start();
    for queue in ["critical", "low"] {
        let id = enqueue(&url, &["test.echo", "x", "--queue", queue]);
        wait_until(&format!("the job on {queue} runs"), WAIT, || {
            finished(&from_file)
                .iter()
                .any(|f| f.job_id == id && f.queue == queue)
        });
    }
}

/// `jobhost run ARGS...` expected to refuse its arguments: what it did, or a
/// panic if it is still running after 20 s (it accepted them).
fn run_refused(url: &str, plugins: &std::path::Path, args: &[&str]) -> Output {
    let mut child = Command::new(jobhost_bin())
        .arg("run")
        .arg("--plugins")
        .arg(plugins)
        .args(["--redis", url])
        .args(args)
        .env_remove("JOBHOST_QUEUE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn jobhost run");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "jobhost run {args:?} was accepted; log:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

#[test]
fn bad_queue_lists_are_refused_in_one_line() {
    let redis = RedisServer::start();
    let url = redis.url();
    let plugins = PluginDir::with(&["testbed"]);
    let cases: &[(&[&str], &str)] = &[
        (&["--queue", ""], ""),
        (&["--queue", "a=0"], "a=0"),
        (&["--queue", "a=x"], "a=x"),
        (&["--queue", "a", "--queue", "a"], "a"),
        (&["--queue", "a=2", "--queue", "b", "--queue", "a=1"], "a"),
    ];
    for (args, named) in cases {
        let out = run_refused(&url, plugins.path(), args);
        let error = one_line_error(&out);
        assert!(!error.contains("panicked"), "{args:?}: {error}");
        assert!(
            error.contains("queue") && error.contains(named),
            "{args:?}: the error names the queue {named:?}: {error}"
        );
    }
    // Every other command works on one queue.
    let out = jobhost(&[
        "enqueue",
        "test.echo",
        "x",
        "--queue",
        "a",
        "--queue",
        "b",
        "--redis",
        &url,
    ]);
    one_line_error(&out);
    let mut conn = redis.connection();
    for queue in ["a", "b"] {
        assert_eq!(
            xlen(&mut conn, &stream_of(queue)),
            0,
            "nothing enqueued on {queue}"
        );
    }
}
