//! Operating jobhost (SPEC §3, §8): metrics and health over real HTTP, the
//! dead-letter commands, stats, and configuration precedence.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use jobhost_tests::{
    Host, PluginDir, RedisServer, built_plugins, enqueue, entries, free_port, jobhost, keys,
    wait_until, xadd_job,
};

const WAIT: Duration = Duration::from_secs(60);

/// GET `path` from 127.0.0.1:`port`: (status code, body).
fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the metrics port");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Samples of a Prometheus text exposition: `name{labels}` → value.
fn parse_exposition(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (series, value) = line
                .rsplit_once(' ')
                .expect("sample lines are `series value`");
            (
                series.to_owned(),
                value.parse().expect("sample values are numbers"),
            )
        })
        .collect()
}

fn run_cli(args: &[&str], redis: &RedisServer) -> std::process::Output {
    let url = redis.url();
    let mut all = args.to_vec();
    all.extend_from_slice(&["--redis", &url]);
    jobhost(&all)
}

#[test]
fn metrics_count_exactly_the_workload() {
    let redis = RedisServer::start();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let plugins = PluginDir::with(&["hello", "flaky", "orders"]);
    let host = Host::start(
        &redis.url(),
        plugins.path(),
        &["--metrics", &addr, "--retry-base", "20ms"],
    );
    for _ in 0..3 {
        enqueue(&redis.url(), &["hello.x", "{}"]);
    }
    let flaky = enqueue(&redis.url(), &["flaky.job", r#"{"succeed_on_attempt":2}"#]);
    let bad = enqueue(&redis.url(), &["orders.created", "not json"]);
    host.wait_for_log(
        &format!("job_id={flaky} type=flaky.job plugin=flaky attempt=2 outcome=done"),
        WAIT,
    );
    host.wait_for_log(
        &format!("job_id={bad} type=orders.created plugin=orders attempt=1 outcome=dead"),
        WAIT,
    );
    host.wait_for_log_count("type=hello.x plugin=hello attempt=1 outcome=done", 3, WAIT);

    let (status, body) = http_get(port, "/metrics");
    assert_eq!(status, 200);
    let samples = parse_exposition(&body);
    let expect = [
        (
            r#"jobhost_jobs_total{queue="default",outcome="done",type="hello.x",plugin="hello"}"#,
            3.0,
        ),
        (
            r#"jobhost_jobs_total{queue="default",outcome="retry",type="flaky.job",plugin="flaky"}"#,
            1.0,
        ),
        (
            r#"jobhost_jobs_total{queue="default",outcome="done",type="flaky.job",plugin="flaky"}"#,
            1.0,
        ),
        (
            r#"jobhost_jobs_total{queue="default",outcome="dead",type="orders.created",plugin="orders"}"#,
            1.0,
        ),
        ("jobhost_retries_total", 1.0),
        ("jobhost_dlq_writes_total", 1.0),
        ("jobhost_jobs_in_flight", 0.0),
        (
            r#"jobhost_handler_duration_seconds_count{plugin="hello"}"#,
            3.0,
        ),
        (
            r#"jobhost_handler_duration_seconds_bucket{plugin="hello",le="+Inf"}"#,
            3.0,
        ),
        ("jobhost_plugin_load_errors_total", 0.0),
        ("jobhost_plugin_reloads_total", 0.0),
    ];
    for (series, value) in expect {
        assert_eq!(samples.get(series), Some(&value), "{series} in\n{body}");
    }
    let info = samples
        .keys()
        .find(|k| k.starts_with(r#"jobhost_plugin_info{plugin="hello",version="0.1.0",hash=""#))
        .unwrap_or_else(|| panic!("no plugin info for hello in\n{body}"));
    assert_eq!(samples[info], 1.0);
    let jobs: f64 = samples
        .iter()
        .filter(|(k, _)| k.starts_with("jobhost_jobs_total{"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(jobs, 6.0, "{body}");
}

#[test]
fn healthz_follows_redis_down_and_back() {
    let mut redis = RedisServer::start_with_aof();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let plugins = PluginDir::with(&["hello"]);
    let _host = Host::start(&redis.url(), plugins.path(), &["--metrics", &addr]);
    assert_eq!(http_get(port, "/healthz").0, 200);
    redis.kill();
    wait_until("/healthz says 503", WAIT, || {
        http_get(port, "/healthz").0 == 503
    });
    redis.restart();
    wait_until("/healthz says 200 again", WAIT, || {
        http_get(port, "/healthz").0 == 200
    });
    let (_, metrics) = http_get(port, "/metrics");
    assert_eq!(
        parse_exposition(&metrics).get("jobhost_redis_reconnects_total"),
        Some(&1.0)
    );
}

#[test]
fn replayed_dead_job_succeeds_once_its_plugin_is_there_and_replays_freeze() {
    let redis = RedisServer::start();
    let plugins = PluginDir::with(&["hello"]);
    let host = Host::start(&redis.url(), plugins.path(), &["--max-attempts", "1"]);
    let id = enqueue(&redis.url(), &["greet.me", "x"]);
    host.wait_for_log(
        &format!("job_id={id} type=greet.me plugin=- attempt=1 outcome=dead"),
        WAIT,
    );

    // The fix: the plugin for the type arrives.
    std::fs::copy(
        built_plugins().join("greeter_v1.wasm"),
        plugins.path().join("greeter.wasm"),
    )
    .unwrap();
    host.wait_for_log("plugin loaded plugin=greeter", WAIT);
    let list = run_cli(&["dlq", "list"], &redis);
    let listed = String::from_utf8_lossy(&list.stdout).into_owned();
    let dlq_id = listed.split('\t').next().unwrap().to_owned();
    assert!(
        listed.contains("greet.me") && listed.contains("no handler for type greet.me"),
        "{listed}"
    );

    let out = run_cli(&["dlq", "replay", &dlq_id], &redis);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    host.wait_for_log(
        &format!("job_id={id} type=greet.me plugin=greeter attempt=1 outcome=done"),
        WAIT,
    );
    let mut conn = redis.connection();
    assert!(entries(&mut conn, keys::DLQ).is_empty());

    // Frozen: an entry replayed three times is refused unless --force.
    let mut frozen = HashMap::new();
    for (k, v) in [
        ("v", "1"),
        ("type", "greet.again"),
        ("payload", "x"),
        ("produced_at", "2026-11-24T10:00:00Z"),
        ("replay_count", "3"),
    ] {
        frozen.insert(k, v);
    }
    let mut cmd = redis::cmd("XADD");
    cmd.arg(keys::DLQ).arg("*");
    for (k, v) in &frozen {
        cmd.arg(*k).arg(*v);
    }
    let frozen_id: String = cmd.query(&mut conn).unwrap();
    let out = run_cli(&["dlq", "replay", &frozen_id], &redis);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("frozen after 3 replays"));
    let out = run_cli(&["dlq", "replay", &frozen_id, "--force"], &redis);
    assert!(out.status.success());
    host.wait_for_log(
        "type=greet.again plugin=greeter attempt=1 outcome=done",
        WAIT,
    );
}

#[test]
fn drain_prints_every_dead_job_then_empties_the_dlq() {
    let redis = RedisServer::start();
    let plugins = PluginDir::with(&["orders"]);
    let host = Host::start(&redis.url(), plugins.path(), &[]);
    let ids: Vec<String> = (0..3)
        .map(|_| enqueue(&redis.url(), &["orders.created", "not json"]))
        .collect();
    for id in &ids {
        host.wait_for_log(
            &format!("job_id={id} type=orders.created plugin=orders attempt=1 outcome=dead"),
            WAIT,
        );
    }
    let mut conn = redis.connection();
    let dlq_ids: Vec<String> = entries(&mut conn, keys::DLQ)
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let out = run_cli(&["dlq", "drain"], &redis);
    assert!(out.status.success());
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(printed.lines().count(), 3, "{printed}");
    for id in &dlq_ids {
        assert!(printed.contains(id.as_str()), "{printed}");
    }
    assert!(entries(&mut conn, keys::DLQ).is_empty());

    let out = run_cli(&["dlq", "show", &dlq_ids[0]], &redis);
    assert!(!out.status.success(), "drained entries are gone");
}

#[test]
fn stats_json_matches_what_redis_holds() {
    let redis = RedisServer::start();
    let plugins = PluginDir::with(&["orders", "hello"]);
    let host = Host::start(&redis.url(), plugins.path(), &[]);
    enqueue(&redis.url(), &["hello.x", "{}"]);
    let bad = enqueue(&redis.url(), &["orders.created", "not json"]);
    enqueue(&redis.url(), &["hello.later", "{}", "--delay", "1h"]);
    host.wait_for_log(
        &format!("job_id={bad} type=orders.created plugin=orders attempt=1 outcome=dead"),
        WAIT,
    );
    host.wait_for_log("type=hello.x plugin=hello attempt=1 outcome=done", WAIT);
    drop(host);
    let mut conn = redis.connection();
    xadd_job(&mut conn, "hello.waiting", "{}");

    let out = run_cli(&["stats", "--json"], &redis);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let queue = &stats[0];
    assert_eq!(queue["queue"], "default");
    let xlen: u64 = redis::cmd("XLEN")
        .arg(keys::STREAM)
        .query(&mut conn)
        .unwrap();
    assert_eq!(queue["stream_length"], xlen);
    assert_eq!(queue["stream_length"], 1);
    assert_eq!(queue["lag"], 1);
    assert_eq!(queue["pending"], 0);
    assert_eq!(queue["delayed"], 1);
    assert_eq!(queue["dead_letters"], 1);
    assert_eq!(queue["processed"], 1);
    assert_eq!(queue["failed"], 1);
    assert_eq!(queue["retried"], 0);
}

#[test]
fn flags_beat_environment_beat_config_file_and_secrets_are_masked() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jobhost.toml");
    std::fs::write(
        &file,
        "redis = \"redis://ops:hunter2@127.0.0.1:1\"\nnamespace = \"from-file\"\nqueue = \"from-file\"\nconcurrency = 3\nclaim_idle = \"7s\"\n",
    )
    .unwrap();
    let output = std::process::Command::new(jobhost_tests::jobhost_bin())
        .args([
            "run",
            "--plugins",
            ".",
            "--print-config",
            "--concurrency",
            "5",
        ])
        .arg("--config")
        .arg(&file)
        .env_remove("REDIS_URL")
        .env_remove("JOBHOST_REDIS_URL")
        .env("JOBHOST_QUEUE", "from-env")
        .env("JOBHOST_CONCURRENCY", "4")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8_lossy(&output.stdout);
    let setting = |key: &str| {
        printed
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("{key} missing:\n{printed}"))
            .to_owned()
    };
    assert_eq!(setting("concurrency"), "5", "flag beats env and file");
    assert_eq!(setting("queue"), "from-env", "env beats file");
    assert_eq!(setting("namespace"), "from-file");
    assert_eq!(setting("claim_idle"), "7s");
    assert_eq!(setting("redis"), "redis://ops:***@127.0.0.1:1");
    assert!(!printed.contains("hunter2"));

    std::fs::write(&file, "concurency = 3\n").unwrap();
    let output = std::process::Command::new(jobhost_tests::jobhost_bin())
        .args(["run", "--plugins", ".", "--print-config", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown key `concurency`"));
}

#[test]
fn job_log_lines_carry_the_trace_id_in_text_and_json() {
    let redis = RedisServer::start();
    let plugins = PluginDir::with(&["hello"]);
    let host = Host::start(&redis.url(), plugins.path(), &[]);
    let id = enqueue(
        &redis.url(),
        &["hello.traced", "{}", "--trace-id", "req-42"],
    );
    host.wait_for_log(
        &format!("job_id={id} type=hello.traced plugin=hello attempt=1 outcome=done"),
        WAIT,
    );
    let line = host
        .log()
        .lines()
        .find(|l| l.contains(&id))
        .unwrap()
        .to_owned();
    assert!(line.contains("trace_id=req-42"), "{line}");
    drop(host);

    let host = Host::start(&redis.url(), plugins.path(), &["--log-format", "json"]);
    let id = enqueue(
        &redis.url(),
        &["hello.traced", "{}", "--trace-id", "req-43"],
    );
    host.wait_for_log("job finished", WAIT);
    let log = host.log();
    let line = log
        .lines()
        .find(|l| l.contains(&id) && l.contains("job finished"))
        .unwrap();
    let json: serde_json::Value = serde_json::from_str(line).expect("JSON log lines");
    let fields = &json["fields"];
    assert_eq!(fields["job_id"], id.as_str());
    assert_eq!(fields["type"], "hello.traced");
    assert_eq!(fields["plugin"], "hello");
    assert_eq!(fields["attempt"], 1);
    assert_eq!(fields["trace_id"], "req-43");
}

#[test]
fn standby_generator_type_from_the_config_file_is_the_type_generated() {
    let redis = RedisServer::start();
    let plugins = PluginDir::with(&["hello"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jobhost.toml");
    std::fs::write(
        &file,
        "standby_generator = true\ngenerate_type = \"hello.from-file\"\ngenerate-rate = \"20/s\"\n",
    )
    .unwrap();
    let host = Host::start(
        &redis.url(),
        plugins.path(),
        &["--config", file.to_str().unwrap()],
    );
    host.wait_for_log("generating: this generator holds the lease", WAIT);
    host.wait_for_log(
        "type=hello.from-file plugin=hello attempt=1 outcome=done",
        WAIT,
    );
    assert!(
        !host.log().contains("type=hello.generated"),
        "{}",
        host.tail()
    );
}

#[test]
fn config_file_reaches_enqueue_and_its_run_only_keys_are_ignored_there() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jobhost.toml");
    // `max_attempts` is the host's default for jobs, not `enqueue --max-attempts`.
    std::fs::write(
        &file,
        "queue = \"from-file\"\nplugins = \"./plugins\"\nmax_attempts = 2\nconcurrency = 3\n",
    )
    .unwrap();
    let out = run_cli(
        &[
            "enqueue",
            "hello.x",
            "{}",
            "--config",
            file.to_str().unwrap(),
        ],
        &redis,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut conn = redis.connection();
    assert!(entries(&mut conn, keys::STREAM).is_empty());
    let jobs = entries(&mut conn, "jobhost:{from-file}:stream");
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].1["type"], "hello.x");
    assert!(!jobs[0].1.contains_key("max_attempts"), "{:?}", jobs[0].1);

    std::fs::write(&file, "queue = \"from-file\"\nqeueu = \"x\"\n").unwrap();
    let out = run_cli(&["stats", "--config", file.to_str().unwrap()], &redis);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown key `qeueu`"));
}
