//! Capabilities a plugin is granted (SPEC §10): outbound HTTP to the origins
//! its manifest lists and nowhere else, bounded per job (time, requests,
//! response bytes); configuration whose secrets never reach a log line, an
//! error or `plugins check`; retries at the time a plugin asks for; and
//! plugins built for the previous WIT still running unchanged, while one
//! built for a WIT this host does not know is refused, naming its version.
//!
//! Real redis-server, real `jobhost run`, real plugins (`webhook` from
//! `plugins/`, the test guest `http-probe`), against the harness's
//! [`HttpServer`] on loopback, which records what the plugins really sent.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jobhost_tests::{
    Host, HttpServer, PluginDir, RedisServer, built_plugins, enqueue, enqueue_and_wait, entries,
    jobhost, jobhost_command, keys, last_error, wait_until, workspace_root, xadd_job,
};

const WAIT: Duration = Duration::from_secs(60);
/// The test guest that makes the requests a test asks for.
const PROBE: &str = "http-probe";
/// The secret `probe.secrets` is handed through the host's environment.
const SECRET: &str = "s3cr3t-XYZ-123";
/// A part of it no log line has any other reason to contain: a secret cut
/// short (a truncated error, say) must not leak either.
const SECRET_PART: &str = "s3cr3t";

/// Waits until the host logs the outcome line of job `id` at `attempt` with
/// `outcome` (`done`, `retry`, `dead`), whatever the plugin's name; returns it.
fn wait_outcome(host: &Host, id: &str, attempt: u32, outcome: &str) -> String {
    let job = format!("job_id={id} ");
    let end = format!(" attempt={attempt} outcome={outcome}");
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(line) = host
            .log()
            .lines()
            .find(|l| l.contains(&job) && l.contains(&end))
        {
            return line.to_owned();
        }
        if Instant::now() >= deadline {
            panic!(
                "job {id} did not log attempt={attempt} outcome={outcome} within {WAIT:?}; log:\n{}",
                host.tail()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The DLQ entry of job `id`, once there is one.
fn dead_letter(redis: &RedisServer, id: &str) -> HashMap<String, String> {
    jobhost_tests::dead_letter(redis, id, WAIT)
}

/// GET `/healthz` on the host's metrics port: its status code.
fn healthz(host: &Host) -> u16 {
    use std::io::{Read, Write};
    let port = host.metrics_port().expect("the host serves metrics");
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("metrics port");
    write!(stream, "GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// A manifest granting `origins`, with `limits` and `config` as TOML lines.
fn manifest(origins: &[String], limits: &str, config: &str) -> String {
    let grants = origins
        .iter()
        .map(|o| format!("{o:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!("[grants]\nhttp = [{grants}]\n\n[limits]\n{limits}\n\n[config]\n{config}\n")
}

/// The webhook plugin alone, granted `server` and posting to its `path`.
fn webhook_folder(server: &HttpServer, path: &str, limits: &str) -> PluginDir {
    let plugins = PluginDir::with(&["webhook"]);
    plugins.write(
        "webhook.toml",
        manifest(
            &[server.origin()],
            limits,
            &format!("url = {:?}", server.url(path)),
        )
        .as_bytes(),
    );
    plugins
}

/// The probe alone, with `toml` as its manifest (none if empty).
fn probe_folder(toml: &str) -> PluginDir {
    let plugins = PluginDir::with(&[PROBE]);
    if !toml.is_empty() {
        plugins.write(&format!("{PROBE}.toml"), toml.as_bytes());
    }
    plugins
}

fn probe_manifest_path(plugins: &PluginDir) -> String {
    plugins
        .path()
        .join(format!("{PROBE}.toml"))
        .display()
        .to_string()
}

fn get_payload(url: &str) -> String {
    serde_json::json!({ "method": "GET", "url": url }).to_string()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64
}

// --- webhook: delivery, retries, Retry-After, a stalled server ------------

#[test]
fn webhook_posts_the_payload_with_the_job_id_as_idempotency_key() {
    let redis = RedisServer::start();
    let server = HttpServer::start();
    let plugins = webhook_folder(&server, "/echo", "max_attempts = 1");
    let host = Host::builder(&redis.url(), plugins.path())
        .metrics()
        .start();
    let payload = r#"{"order":42,"note":"tea"}"#;
    let id = enqueue(&redis.url(), &["webhook.order", payload]);

    wait_outcome(&host, &id, 1, "done");
    let requests = server.wait_for_requests(1, WAIT);
    assert_eq!(requests.len(), 1, "one delivery: {requests:?}");
    let request = &requests[0];
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("POST", "/echo")
    );
    assert_eq!(request.body_text(), payload);
    assert_eq!(request.header("idempotency-key"), Some(id.as_str()));
    let granted = [("status", "200"), ("origin", &server.origin()[..])];
    let ok = host
        .metric_sum("jobhost_http_requests_total", &granted)
        .expect("metrics");
    assert_eq!(ok, 1.0, "{:?}", host.metrics_text());
    let timed = host
        .metric_sum("jobhost_http_request_seconds_count", &[])
        .expect("metrics");
    assert!(timed >= 1.0, "{:?}", host.metrics_text());
}

#[test]
fn webhook_answered_500_is_retried_and_then_delivered() {
    let redis = RedisServer::start();
    let server = HttpServer::start();
    let plugins = webhook_folder(&server, "/flaky/1", "max_attempts = 3");
    let host = Host::start(
        &redis.url(),
        plugins.path(),
        &["--retry-base", "20ms", "--retry-cap", "100ms"],
    );
    let id = enqueue(&redis.url(), &["webhook.order", r#"{"n":1}"#]);

    wait_outcome(&host, &id, 1, "retry");
    wait_outcome(&host, &id, 2, "done");
    let requests = server.wait_for_requests(2, WAIT);
    assert_eq!(requests.len(), 2, "{requests:?}");
    // Both attempts carry the same key, so the receiver can drop a repeat.
    assert!(
        requests
            .iter()
            .all(|r| r.header("idempotency-key") == Some(id.as_str())),
        "{requests:?}"
    );
    assert!(entries(&mut redis.connection(), keys::DLQ).is_empty());
}

#[test]
fn webhook_answered_429_with_retry_after_is_retried_no_sooner() {
    let redis = RedisServer::start();
    let server = HttpServer::start();
    let plugins = webhook_folder(&server, "/retry-after/2", "max_attempts = 3");
    // The host's own backoff would retry within 10 ms; only Retry-After can
    // explain a wait of 2 s, and the cap leaves room for it.
    let host = Host::start(
        &redis.url(),
        plugins.path(),
        &["--retry-base", "10ms", "--retry-cap", "60s"],
    );
    let id = enqueue(&redis.url(), &["webhook.order", r#"{"n":2}"#]);

    wait_outcome(&host, &id, 2, "done");
    let requests = server.wait_for_requests(2, WAIT);
    assert_eq!(requests.len(), 2, "{requests:?}");
    let waited = requests[1].received - requests[0].received;
    assert!(
        waited >= Duration::from_secs(2),
        "second request after {waited:?}, Retry-After said 2 s"
    );
    assert!(
        waited < Duration::from_secs(10),
        "second request only after {waited:?}"
    );
}

#[test]
fn stalled_request_ends_at_the_time_limit_while_the_host_serves_other_jobs() {
    let redis = RedisServer::start();
    let server = HttpServer::start();
    let plugins = webhook_folder(&server, "/stall", "timeout = \"2s\"\nmax_attempts = 1");
    plugins.add("hello");
    let host = Host::builder(&redis.url(), plugins.path())
        .args(&["--concurrency", "2"])
        .metrics()
        .start();
    let id = enqueue(&redis.url(), &["webhook.order", r#"{"n":3}"#]);
    let stalled = server.wait_for_requests(1, WAIT)[0].received;

    // While the webhook waits on a server that never answers, the host stays
    // healthy and its other slot keeps serving hello jobs.
    let mut conn = redis.connection();
    let hellos: Vec<String> = (0..3)
        .map(|i| {
            xadd_job(
                &mut conn,
                "hello.meanwhile",
                &format!("{{\"name\":\"n{i}\"}}"),
            )
        })
        .collect();
    let done_lines = || {
        host.log()
            .lines()
            .filter(|l| l.contains("type=hello.meanwhile") && l.contains("outcome=done"))
            .count()
    };
    wait_until("the hello jobs are done", WAIT, || {
        done_lines() == hellos.len()
    });
    assert_eq!(healthz(&host), 200);
    let job = format!("job_id={id} ");
    assert!(
        !host
            .log()
            .lines()
            .any(|l| l.contains(&job) && l.contains(" outcome=")),
        "the hello jobs finished only after the stalled job ended:\n{}",
        host.tail()
    );

    // The host's limit ends the job, not an HTTP error handed to the guest
    // just before it (which the plugin would report as its own failure).
    let dead = dead_letter(&redis, &id);
    let ended = stalled.elapsed();
    assert!(last_error(&dead).contains("timed out after 2s"), "{dead:?}");
    assert!(
        ended < Duration::from_secs(10),
        "the job outlived its 2 s limit: dead-lettered {ended:?} after its request"
    );
    assert_eq!(healthz(&host), 200);
    assert_eq!(server.requests_to("/stall").len(), 1, "max_attempts = 1");
}

// --- bounds per job: response bytes, requests ------------------------------

#[test]
fn response_over_the_byte_cap_fails_the_job_and_host_memory_stays_bounded() {
    let redis = RedisServer::start();
    let server = HttpServer::start();
    let plugins = probe_folder(&manifest(
        &[server.origin()],
        "max_attempts = 1\nhttp_response_bytes = 1048576",
        "",
    ));
    let host = Host::start(&redis.url(), plugins.path(), &[]);
    // One request first, so the HTTP client is warmed up in the baseline.
    let warm = enqueue(
        &redis.url(),
        &["probe.request", &get_payload(&server.url("/ok"))],
    );
    wait_outcome(&host, &warm, 1, "done");
    let baseline = host.status_kib("VmHWM").expect("the host runs");

    let id = enqueue(
        &redis.url(),
        &[
            "probe.request",
            &get_payload(&server.url("/huge/100000000")),
        ],
    );
    let dead = dead_letter(&redis, &id);
    assert!(
        last_error(&dead).contains("http_response_bytes"),
        "{dead:?}"
    );
    let peak = host.status_kib("VmHWM").expect("the host runs");
    let growth_mib = peak.saturating_sub(baseline) as f64 / 1024.0;
    assert!(
        growth_mib < 64.0,
        "peak RSS grew {growth_mib:.1} MiB for a 100 MB response capped at 1 MiB"
    );
    // The host is fine and serves the next job.
    let next = enqueue(
        &redis.url(),
        &["probe.request", &get_payload(&server.url("/ok"))],
    );
    wait_outcome(&host, &next, 1, "done");
}

#[test]
fn requests_beyond_the_per_job_cap_fail_the_job_naming_the_limit() {
    let redis = RedisServer::start();
    let server = HttpServer::start();
    let plugins = probe_folder(&manifest(
        &[server.origin()],
        "max_attempts = 1\nhttp_requests = 8",
        "",
    ));
    let host = Host::start(&redis.url(), plugins.path(), &[]);
    let payload = serde_json::json!({ "url": server.url("/ok"), "count": 9 }).to_string();
    let id = enqueue(&redis.url(), &["probe.many", &payload]);

    let dead = dead_letter(&redis, &id);
    assert!(last_error(&dead).contains("http_requests"), "{dead:?}");
    assert_eq!(
        server.requests_to("/ok").len(),
        8,
        "the ninth request never left the host"
    );
    // Within the cap the same job succeeds.
    let payload = serde_json::json!({ "url": server.url("/ok"), "count": 8 }).to_string();
    let id = enqueue(&redis.url(), &["probe.many", &payload]);
    wait_outcome(&host, &id, 1, "done");
}

// --- grants ---------------------------------------------------------------

#[test]
fn request_to_an_origin_not_granted_is_denied_naming_the_line_that_would_grant_it() {
    let redis = RedisServer::start();
    let granted = HttpServer::start();
    let other = HttpServer::start();
    let plugins = probe_folder(&manifest(&[granted.origin()], "max_attempts = 1", ""));
    let host = Host::builder(&redis.url(), plugins.path())
        .metrics()
        .start();

    let allowed = enqueue(
        &redis.url(),
        &["probe.request", &get_payload(&granted.url("/ok"))],
    );
    wait_outcome(&host, &allowed, 1, "done");
    let id = enqueue(
        &redis.url(),
        &["probe.request", &get_payload(&other.url("/ok"))],
    );
    let dead = dead_letter(&redis, &id);
    let error = last_error(&dead);
    assert!(
        error.contains(&format!("origin {} is not granted", other.origin())),
        "{error}"
    );
    assert!(
        error.contains(&format!("add \"{}\"", other.origin())),
        "{error}"
    );
    assert!(error.contains(&probe_manifest_path(&plugins)), "{error}");
    assert!(
        other.requests().is_empty(),
        "the request never left the host"
    );
    assert_eq!(granted.requests().len(), 1);
    let denied = host
        .metric_sum("jobhost_http_requests_total", &[("status", "denied")])
        .expect("metrics");
    assert!(denied >= 1.0, "{:?}", host.metrics_text());
}

#[test]
fn plugin_without_an_http_grant_is_told_how_to_add_one() {
    let redis = RedisServer::start();
    let server = HttpServer::start();
    let plugins = probe_folder("[limits]\nmax_attempts = 1\n");
    let host = Host::start(&redis.url(), plugins.path(), &[]);
    let id = enqueue(
        &redis.url(),
        &["probe.request", &get_payload(&server.url("/ok"))],
    );

    let dead = dead_letter(&redis, &id);
    let error = last_error(&dead);
    assert!(error.contains("has no HTTP grant"), "{error}");
    assert!(
        error.contains(&format!("[grants] http = [\"{}\"]", server.origin())),
        "{error}"
    );
    assert!(error.contains(&probe_manifest_path(&plugins)), "{error}");
    assert!(server.requests().is_empty());
    wait_outcome(&host, &id, 1, "dead");
}

// --- configuration and secrets ---------------------------------------------

#[test]
fn a_secret_from_the_environment_never_reaches_a_log_an_error_or_plugins_check() {
    let redis = RedisServer::start();
    let plugins = probe_folder(
        "[limits]\nmax_attempts = 1\n\n[config]\n\
         api_key = { env = \"PROBE_SECRET\", secret = true }\n\
         greeting = \"plain-value-visible\"\n",
    );
    let host = Host::builder(&redis.url(), plugins.path())
        .env("PROBE_SECRET", SECRET)
        .start();
    let id = enqueue(&redis.url(), &["probe.secrets", "{}"]);

    let dead = dead_letter(&redis, &id);
    wait_outcome(&host, &id, 1, "dead");
    let log = host.log();
    assert!(
        log.contains("plain-value-visible"),
        "the probe logged its config values:\n{}",
        host.tail()
    );
    assert!(log.contains("[secret api_key]"), "{}", host.tail());
    assert!(
        !log.contains(SECRET_PART),
        "the secret is in the log:\n{log}"
    );
    for (field, value) in &dead {
        assert!(!value.contains(SECRET_PART), "DLQ field {field}: {value}");
    }
    assert!(last_error(&dead).contains("[secret api_key]"), "{dead:?}");

    // `--wait` prints the final error: masked too.
    let waited = enqueue_and_wait(&redis.url(), &["probe.secrets", "{}"], "60s");
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&waited.stdout),
        String::from_utf8_lossy(&waited.stderr)
    );
    assert!(!waited.status.success());
    assert!(!shown.contains(SECRET_PART), "{shown}");

    let mut check = jobhost_command(&["plugins", "check"]);
    check
        .arg(plugins.path().join(format!("{PROBE}.wasm")))
        .env("PROBE_SECRET", SECRET)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = check.output().expect("jobhost plugins check");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("secret from env PROBE_SECRET"), "{text}");
    assert!(text.contains("greeting"), "{text}");
    assert!(!text.contains(SECRET_PART), "{text}");
}

#[test]
fn plugins_check_lists_imports_and_http_grants() {
    let server = HttpServer::start();
    let plugins = webhook_folder(&server, "/echo", "");
    let wasm = plugins.path().join("webhook.wasm");
    let out = jobhost(&["plugins", "check", wasm.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    assert!(text.contains("wasi:http/outgoing-handler"), "{text}");
    assert!(text.contains(&server.origin()), "{text}");
}

// --- a retry at the time the plugin asks for --------------------------------

#[test]
fn retry_after_from_a_plugin_delays_the_next_attempt_by_that_much() {
    let redis = RedisServer::start();
    let plugins = probe_folder("[limits]\nmax_attempts = 2\n");
    let host = Host::start(
        &redis.url(),
        plugins.path(),
        &["--retry-base", "10ms", "--retry-cap", "60s"],
    );
    let mut conn = redis.connection();
    let before = now_ms();
    let id = enqueue(&redis.url(), &["probe.retry-after", "1500"]);

    // The retry waits in the delayed set, scored with its due time in ms.
    let mut due = None;
    wait_until("the retry waits in the delayed set", WAIT, || {
        let scored: Vec<(Vec<u8>, f64)> = redis::cmd("ZRANGE")
            .arg(keys::DELAYED)
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query(&mut conn)
            .expect("ZRANGE");
        due = scored.first().map(|(_, score)| (*score as u64, now_ms()));
        due.is_some()
    });
    let (due, seen) = due.expect("seen");
    // Scheduled no earlier than the enqueue, no later than now: due 1.5 s
    // after whenever that was.
    assert!(
        due >= before + 1500,
        "due {} ms after the enqueue",
        due as i64 - before as i64
    );
    assert!(
        due <= seen + 1500 + 5,
        "due {} ms after it was seen",
        due as i64 - seen as i64
    );
    wait_outcome(&host, &id, 1, "retry");
    // Promoted only when due: the second attempt runs, and not before.
    let line = wait_outcome(&host, &id, 2, "dead");
    assert!(
        now_ms() >= due,
        "attempt 2 ended before the retry was due: {line}"
    );
}

// --- plugins built for the previous WIT --------------------------------------

#[test]
fn a_plugin_built_for_wit_0_1_0_loads_and_runs_unchanged() {
    let redis = RedisServer::start();
    let plugins = PluginDir::with(&[]);
    let fixture = workspace_root().join("tests/fixtures/hello-wit-0.1.0.wasm");
    plugins.write(
        "hello.wasm",
        &std::fs::read(&fixture).expect("the 0.1.0 fixture"),
    );
    let host = Host::start(&redis.url(), plugins.path(), &[]);
    let out = enqueue_and_wait(&redis.url(), &["hello.x", r#"{"name":"Ada"}"#], "60s");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        host.tail()
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "Hello, Ada!");
    assert!(
        host.log()
            .contains("type=hello.x plugin=hello attempt=1 outcome=done")
    );
}

#[test]
fn plugins_check_shows_the_wit_version_each_plugin_was_built_for() {
    let fixture = workspace_root().join("tests/fixtures/hello-wit-0.1.0.wasm");
    for (file, wit) in [
        (built_plugins().join("orders.wasm"), "jobhost:plugin@0.2.0"),
        (fixture, "jobhost:plugin@0.1.0"),
    ] {
        let out = jobhost(&["plugins", "check", file.to_str().unwrap()]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.lines().any(|line| line == format!("wit: {wit}")),
            "{}: {text}",
            file.display()
        );
    }
}

#[test]
fn a_plugin_built_for_an_unknown_wit_version_is_refused_naming_it_and_the_supported_ones() {
    let newer = built_plugins().join("newer-wit.wasm");
    let out = jobhost(&["plugins", "check", newer.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("jobhost: plugin "), "{err}");
    assert!(err.contains("newer-wit.wasm"), "{err}");
    assert!(err.contains("built for jobhost:plugin@9.0.0"), "{err}");
    assert!(
        err.contains("supports jobhost:plugin 0.2.0 or 0.1.0"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

// --- `jobhost invoke` reads the manifest beside the file ---------------------

fn invoke(plugin: &Path, job_type: &str, payload: &str) -> Output {
    jobhost(&["invoke", plugin.to_str().unwrap(), job_type, payload])
}

#[test]
fn invoke_honours_the_manifest_beside_the_plugin() {
    let server = HttpServer::start();
    let plugins = webhook_folder(&server, "/echo", "");
    let out = invoke(
        &plugins.path().join("webhook.wasm"),
        "webhook.x",
        r#"{"a":1}"#,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let requests = server.wait_for_requests(1, WAIT);
    assert_eq!(requests[0].body_text(), r#"{"a":1}"#);

    // The same plugin configured to post there, with no grant.
    let ungranted = PluginDir::with(&[]);
    std::fs::copy(
        built_plugins().join("webhook.wasm"),
        ungranted.path().join("webhook.wasm"),
    )
    .expect("copy webhook.wasm");
    ungranted.write(
        "webhook.toml",
        format!("[config]\nurl = {:?}\n", server.url("/echo")).as_bytes(),
    );
    let out = invoke(
        &ungranted.path().join("webhook.wasm"),
        "webhook.x",
        r#"{"a":2}"#,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("has no HTTP grant"), "{stderr}");
    assert!(
        stderr.contains(&ungranted.path().join("webhook.toml").display().to_string()),
        "{stderr}"
    );
    assert_eq!(server.requests().len(), 1, "the second request never left");
}
