//! Redis Cluster (SPEC §8–§9): a real three-master cluster; jobhost is given
//! one seed node and finds the rest. Every key of a queue shares a hash tag,
//! so each atomic step stays in one slot, and different queues spread over
//! the masters.

use std::time::Duration;

use jobhost_tests::topologies::RedisCluster;
use jobhost_tests::{Host, PluginDir, enqueue_and_wait, jobhost, ok_stdout, wait_until};

const WAIT: Duration = Duration::from_secs(60);
const FAST_RETRY: &[&str] = &["--retry-base", "20ms", "--retry-cap", "100ms"];

#[test]
fn jobs_retries_and_dead_letters_work_on_a_three_master_cluster() {
    let cluster = RedisCluster::start();
    let url = cluster.url();
    let plugins = PluginDir::with(&["hello", "flaky", "orders"]);
    let default = "default".to_owned();
    let other = cluster.queue_on_another_master(&default);
    let hosts: Vec<Host> = [&default, &other]
        .iter()
        .map(|queue| {
            let mut args = vec!["--queue", queue.as_str(), "--claim-idle", "2s"];
            args.extend_from_slice(FAST_RETRY);
            Host::start(&url, plugins.path(), &args)
        })
        .collect();

    // A job on each queue, each queue on its own master, round trip with --wait.
    for queue in [&default, &other] {
        let out = enqueue_and_wait(
            &url,
            &["hello.cluster", r#"{"name":"cluster"}"#, "--queue", queue],
            "30s",
        );
        assert!(ok_stdout(out).contains("Hello, cluster!"));
    }
    // The second queue's own host ran its job.
    hosts[1].wait_for_log(
        "type=hello.cluster plugin=hello attempt=1 outcome=done",
        WAIT,
    );

    // Retries: the delayed set and the stream of the queue share a slot.
    let id = ok_stdout(jobhost(&[
        "enqueue",
        "flaky.job",
        r#"{"succeed_on_attempt":3}"#,
        "--queue",
        &other,
        "--redis",
        &url,
    ]));
    hosts[1].wait_for_log(
        &format!(
            "job_id={} type=flaky.job plugin=flaky attempt=3 outcome=done",
            id.trim()
        ),
        WAIT,
    );

    // A fatal error dead-letters the job; the DLQ and stats commands work on a cluster.
    let out = enqueue_and_wait(&url, &["orders.created", "not json"], "30s");
    assert!(!out.status.success(), "a fatal job reports its failure");
    let listed = ok_stdout(jobhost(&["dlq", "list", "--redis", &url]));
    assert!(listed.contains("orders.created"), "{listed}");

    let stats = ok_stdout(jobhost(&["stats", "--all", "--json", "--redis", &url]));
    let stats: serde_json::Value = serde_json::from_str(&stats).expect("stats JSON");
    let queues: Vec<&str> = stats
        .as_array()
        .expect("a list of queues")
        .iter()
        .filter_map(|q| q["queue"].as_str())
        .collect();
    assert!(
        queues.contains(&default.as_str()) && queues.contains(&other.as_str()),
        "stats --all finds the queues on every master: {queues:?}"
    );

    // Many jobs at once: batches pipelined into one slot, read and recorded there.
    let lines: String = (0..500)
        .map(|i| format!("{{\"type\":\"hello.bulk\",\"payload\":{{\"name\":\"n{i}\"}}}}\n"))
        .collect();
    ok_stdout(jobhost_tests::jobhost_with_stdin(
        &["enqueue", "--batch", "--queue", &other, "--redis", &url],
        &lines,
    ));
    hosts[1].wait_for_log_count(
        "type=hello.bulk plugin=hello attempt=1 outcome=done",
        500,
        WAIT,
    );
    let mut home = cluster
        .node_of(&format!("jobhost:{{{other}}}:stream"))
        .connection();
    wait_until("the queue's stream is empty", WAIT, || {
        let length: u64 = redis::cmd("XLEN")
            .arg(format!("jobhost:{{{other}}}:stream"))
            .query(&mut home)
            .unwrap_or(u64::MAX);
        length == 0
    });
}

const STREAM: &str = "jobhost:{default}:stream";
const DONE: &str = "type=test.sleep plugin=testbed attempt=1 outcome=done";

/// Enqueues `count` short `test.sleep` jobs on the default queue in one batch.
fn enqueue_sleeps(url: &str, count: usize) {
    let lines: String = (0..count)
        .map(|_| "{\"type\":\"test.sleep\",\"payload\":\"3\"}\n".to_owned())
        .collect();
    ok_stdout(jobhost_tests::jobhost_with_stdin(
        &["enqueue", "--batch", "--redis", url],
        &lines,
    ));
}

/// Waits until `node` has recorded `count` jobs of the default queue as done
/// and holds none waiting. (The host logs a job after recording it, so wait
/// for its log lines separately.)
fn wait_all_recorded_on(node: &jobhost_tests::RedisServer, count: u64) {
    let mut conn = node.connection();
    wait_until("every job is recorded on the queue's master", WAIT, || {
        let counted: Option<u64> = redis::cmd("HGET")
            .arg("jobhost:{default}:counters")
            .arg("done")
            .query(&mut conn)
            .unwrap_or(None);
        counted.unwrap_or(0) >= count
    });
    let length: u64 = redis::cmd("XLEN").arg(STREAM).query(&mut conn).unwrap();
    assert_eq!(length, 0, "nothing left waiting");
}

#[test]
fn host_keeps_working_while_its_queue_moves_to_another_master() {
    let cluster = RedisCluster::start();
    let url = cluster.url();
    let plugins = PluginDir::with(&["testbed"]);
    let host = Host::start(&url, plugins.path(), &["--claim-idle", "2s"]);
    enqueue_sleeps(&url, 1000);
    host.wait_for_log_count(DONE, 30, WAIT);

    // Resharding mid-run: ASK while the keys move, MOVED once they have.
    let home = cluster
        .nodes
        .iter()
        .position(|n| n.port() == cluster.node_of(STREAM).port());
    let to = (home.expect("a home node") + 1) % cluster.nodes.len();
    cluster.move_slot_of(STREAM, to);
    enqueue_sleeps(&url, 100);

    wait_all_recorded_on(&cluster.nodes[to], 1100);
    host.wait_for_log_count(DONE, 1100, WAIT);
}

#[test]
fn host_keeps_working_through_a_failover_of_its_queues_master() {
    let mut cluster = RedisCluster::start();
    let replica = cluster.add_replica_of(STREAM);
    let url = cluster.url();
    let plugins = PluginDir::with(&["testbed"]);
    let host = Host::start(&url, plugins.path(), &["--claim-idle", "2s"]);
    enqueue_sleeps(&url, 1000);
    host.wait_for_log_count(DONE, 30, WAIT);

    cluster.fail_over_to(replica, STREAM);
    enqueue_sleeps(&url, 100);

    wait_all_recorded_on(&cluster.nodes[replica], 1100);
    host.wait_for_log_count(DONE, 1100, WAIT);
}

/// Enqueues a `kv.count` job for each of `numbers` on `queue`, in one batch.
fn enqueue_counts(url: &str, queue: &str, numbers: std::ops::Range<usize>) {
    let lines: String = numbers
        .map(|n| format!("{{\"type\":\"kv.count\",\"payload\":{{\"n\":{n}}}}}\n"))
        .collect();
    ok_stdout(jobhost_tests::jobhost_with_stdin(
        &["enqueue", "--batch", "--queue", queue, "--redis", url],
        &lines,
    ));
}

#[test]
fn key_value_state_commits_with_the_ack_on_each_queues_own_master() {
    let cluster = RedisCluster::start();
    let url = cluster.url();
    let plugins = PluginDir::with(&["kv-probe"]);
    plugins.write(
        "kv-probe.toml",
        b"[grants]\nkeyvalue = [\"counters\", \"markers\"]\n",
    );
    let default = "default".to_owned();
    let other = cluster.queue_on_another_master(&default);
    let _hosts: Vec<Host> = [&default, &other]
        .iter()
        .map(|queue| {
            Host::start(
                &url,
                plugins.path(),
                &["--queue", queue.as_str(), "--claim-idle", "2s"],
            )
        })
        .collect();
    // Different numbers of jobs per queue, so a bucket counted in the wrong
    // queue shows.
    let jobs = [(&default, 300), (&other, 200)];
    for (queue, count) in jobs {
        enqueue_counts(&url, queue, 0..count);
    }

    for (queue, count) in jobs {
        let counters = format!("jobhost:{{{queue}}}:kv:counters");
        let markers = format!("jobhost:{{{queue}}}:kv:markers");
        let home = cluster.node_of(&format!("jobhost:{{{queue}}}:stream"));
        assert_eq!(
            cluster.node_of(&counters).port(),
            home.port(),
            "a bucket lives on its queue's master"
        );
        let mut conn = home.connection();
        wait_until(&format!("every job of queue {queue} is done"), WAIT, || {
            let done: Option<u64> = redis::cmd("HGET")
                .arg(format!("jobhost:{{{queue}}}:counters"))
                .arg("done")
                .query(&mut conn)
                .unwrap_or(None);
            done.unwrap_or(0) >= count as u64
        });
        let values: std::collections::HashMap<String, u64> = redis::cmd("HGETALL")
            .arg(&counters)
            .query(&mut conn)
            .unwrap();
        assert_eq!(values.len(), 100, "queue {queue}: {values:?}");
        assert!(
            values.values().all(|&v| v == count as u64 / 100),
            "queue {queue}: each counter counts its jobs exactly: {values:?}"
        );
        let marked: u64 = redis::cmd("HLEN").arg(&markers).query(&mut conn).unwrap();
        assert_eq!(marked, count as u64, "queue {queue}: one marker per job");
        let dead: u64 = redis::cmd("XLEN")
            .arg(format!("jobhost:{{{queue}}}:dlq"))
            .query(&mut conn)
            .unwrap();
        assert_eq!(dead, 0, "queue {queue}: nothing dead-lettered");
        // `jobhost kv` finds the bucket of each queue through the cluster.
        let got = ok_stdout(jobhost(&[
            "kv", "get", "counters", "c0", "--queue", queue, "--redis", &url,
        ]));
        assert_eq!(got.trim(), (count / 100).to_string(), "queue {queue}");
    }
    assert_ne!(
        cluster.node_of("jobhost:{default}:kv:counters").port(),
        cluster
            .node_of(&format!("jobhost:{{{other}}}:kv:counters"))
            .port(),
        "one bucket name in two queues is two buckets, on two masters"
    );
}

#[test]
fn a_cluster_url_naming_no_reachable_node_is_one_clear_error() {
    let port = jobhost_tests::free_port();
    let out = jobhost(&[
        "enqueue",
        "hello.x",
        "{}",
        "--redis",
        &format!("redis+cluster://127.0.0.1:{port}"),
    ]);
    let stderr = jobhost_tests::one_line_error(&out);
    assert!(
        stderr.starts_with("jobhost: cannot reach Redis"),
        "{stderr}"
    );
}
