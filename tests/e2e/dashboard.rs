//! The dashboard's server (SPEC §13) on a real Redis with real hosts: its
//! pages show what Redis holds, its actions touch exactly what they say,
//! and it refuses what it must (no token beyond loopback, forms without
//! their anti-CSRF token, markup in producer-supplied text).

use std::time::Duration;

use jobhost_tests::dashboard::{Dashboard, Response};
use jobhost_tests::{
    Host, PluginDir, RedisServer, enqueue, entries, jobhost, keys, one_line_error, wait_until,
};

const WAIT: Duration = Duration::from_secs(60);

/// `jobs` jobs of `job_type` that die at once, by id: the `orders` plugin
/// refuses a payload that is not JSON; a type no plugin handles dies after
/// one attempt with `--max-attempts 1`.
fn dead_jobs(host: &Host, redis: &RedisServer, job_type: &str, jobs: usize) -> Vec<String> {
    let ids: Vec<String> = (0..jobs)
        .map(|_| enqueue(&redis.url(), &[job_type, "not json"]))
        .collect();
    for id in &ids {
        host.wait_for_log(&format!("job_id={id} type={job_type} "), WAIT);
    }
    let mut conn = redis.connection();
    wait_until("the jobs are dead-lettered", WAIT, || {
        entries(&mut conn, keys::DLQ)
            .iter()
            .filter(|(_, f)| f.get("type").map(String::as_str) == Some(job_type))
            .count()
            == jobs
    });
    ids
}

/// The DLQ's entries of `job_type`.
fn dead_of(redis: &RedisServer, job_type: &str) -> Vec<String> {
    let mut conn = redis.connection();
    entries(&mut conn, keys::DLQ)
        .into_iter()
        .filter(|(_, f)| f.get("type").map(String::as_str) == Some(job_type))
        .map(|(id, _)| id)
        .collect()
}

/// Both steps of an action: the form, then its confirmation.
fn confirmed(dashboard: &Dashboard, path: &str, fields: &[(&str, &str)]) -> Response {
    let csrf = dashboard.get("/dead").csrf();
    let mut first: Vec<(&str, &str)> = vec![("csrf", &csrf)];
    first.extend_from_slice(fields);
    let question = dashboard.post(path, &first);
    assert_eq!(question.status, 200, "{}", question.body);
    assert!(
        question.body.contains("id=\"confirm\""),
        "{}",
        question.body
    );
    first.push(("confirm", "yes"));
    let done = dashboard.post(path, &first);
    assert_eq!(done.status, 200, "{}", done.body);
    done
}

#[test]
fn every_page_shows_what_redis_holds() {
    let redis = RedisServer::start();
    let plugins = PluginDir::with(&["hello", "orders"]);
    let host = Host::start(
        &redis.url(),
        plugins.path(),
        &["--consumer", "dash-host", "--concurrency", "3"],
    );
    let done = enqueue(&redis.url(), &["hello.world", "{}"]);
    host.wait_for_log(
        &format!("job_id={done} type=hello.world plugin=hello attempt=1 outcome=done"),
        WAIT,
    );
    let dead = dead_jobs(&host, &redis, "orders.created", 1);
    let delayed = enqueue(&redis.url(), &["hello.later", "{}", "--delay", "1h"]);
    let dashboard = Dashboard::start(&redis.url(), &[]);

    // The overview: the queue with its counts, from the sampler.
    let mut overview = dashboard.get("/");
    wait_until("the overview counts the finished jobs", WAIT, || {
        overview = dashboard.get("/");
        overview.body.contains("data-stat=\"done\">1<")
    });
    assert_eq!(overview.status, 200);
    assert!(
        overview.body.contains("data-queue=\"default\""),
        "{}",
        overview.body
    );
    assert!(
        overview.body.contains("data-stat=\"dead\">1<"),
        "{}",
        overview.body
    );
    assert!(
        overview.body.contains("data-stat=\"delayed\">1<"),
        "{}",
        overview.body
    );
    let api = dashboard.get("/api/overview");
    let json: serde_json::Value = serde_json::from_str(&api.body).expect("overview JSON");
    assert_eq!(json["queues"][0]["queue"], "default");
    assert_eq!(json["queues"][0]["done"], 1);
    assert_eq!(json["queues"][0]["failed"], 1);
    assert_eq!(json["throughput"].as_array().map(Vec::len), Some(60));

    // Hosts: the live one, its plugins, and gone when it stops.
    let mut hosts = dashboard.get("/hosts");
    wait_until("the hosts page lists the host", WAIT, || {
        hosts = dashboard.get("/hosts");
        hosts.body.contains("data-host=\"dash-host\"")
    });
    assert!(hosts.body.contains("hello 0.1.0"), "{}", hosts.body);
    assert!(hosts.body.contains("orders"), "{}", hosts.body);

    // Dead jobs: the list, then one job's page with its error and payload.
    let list = dashboard.get("/dead");
    assert_eq!(list.status, 200);
    let dlq_id = &dead_of(&redis, "orders.created")[0];
    assert!(
        list.body.contains(&format!("data-id=\"{dlq_id}\"")),
        "{}",
        list.body
    );
    let shown = dashboard.get(&format!("/dead/show?queue=default&id={dlq_id}"));
    assert_eq!(shown.status, 200, "{}", shown.body);
    assert!(shown.body.contains("not json"), "{}", shown.body);
    assert!(shown.body.contains(&dead[0]), "{}", shown.body);

    // Lookup: the delayed job, and an unknown one.
    let found = dashboard.get(&format!("/jobs?id={delayed}"));
    assert!(
        found
            .element("job-state")
            .is_some_and(|s| s.contains(&delayed)),
        "{}",
        found.body
    );
    assert!(found.body.contains("delayed"), "{}", found.body);
    let unknown = dashboard.get("/jobs?id=no-such-job");
    assert!(unknown.body.contains("is unknown"), "{}", unknown.body);

    // Schedules: none yet, and the page says so without failing.
    assert_eq!(dashboard.get("/schedules").status, 200);
    assert_eq!(dashboard.get("/no/such/page").status, 404);

    drop(host);
    wait_until("the stopped host leaves the hosts page", WAIT, || {
        !dashboard
            .get("/hosts")
            .body
            .contains("data-host=\"dash-host\"")
    });
}

#[test]
fn replay_and_purge_touch_exactly_what_the_filter_matches() {
    let redis = RedisServer::start();
    let plugins = PluginDir::with(&["orders"]);
    let host = Host::start(&redis.url(), plugins.path(), &["--max-attempts", "1"]);
    dead_jobs(&host, &redis, "orders.created", 3);
    dead_jobs(&host, &redis, "orders.refunded", 2);
    dead_jobs(&host, &redis, "emails.sent", 2);
    // Stopped, so replayed jobs wait in the stream to be counted.
    drop(host);
    let dashboard = Dashboard::start(&redis.url(), &[]);

    let filtered = dashboard.get("/dead?type=orders.");
    assert!(filtered.body.contains("5 dead jobs"), "{}", filtered.body);

    // Purge what the filter matches: `orders.created` only.
    let purged = confirmed(
        &dashboard,
        "/dead/purge",
        &[
            ("queue", "default"),
            ("type", "orders.created"),
            ("scope", "filtered"),
        ],
    );
    assert_eq!(
        purged.element("result"),
        Some("Purged 3 jobs"),
        "{}",
        purged.body
    );
    assert!(dead_of(&redis, "orders.created").is_empty());
    assert_eq!(dead_of(&redis, "orders.refunded").len(), 2);
    assert_eq!(dead_of(&redis, "emails.sent").len(), 2);

    // Replay one: it leaves the DLQ and is back on the stream.
    let mut conn = redis.connection();
    let waiting_before = entries(&mut conn, keys::STREAM).len();
    let one = dead_of(&redis, "emails.sent")[0].clone();
    let replayed = confirmed(
        &dashboard,
        "/dead/replay",
        &[("queue", "default"), ("id", &one)],
    );
    assert_eq!(
        replayed.element("result"),
        Some("Replayed 1 job"),
        "{}",
        replayed.body
    );
    assert_eq!(dead_of(&redis, "emails.sent").len(), 1);
    let stream = entries(&mut conn, keys::STREAM);
    assert_eq!(stream.len(), waiting_before + 1);
    assert_eq!(
        stream.last().unwrap().1.get("type").map(String::as_str),
        Some("emails.sent")
    );

    // Replay every `orders.refunded`.
    let replayed = confirmed(
        &dashboard,
        "/dead/replay",
        &[
            ("queue", "default"),
            ("type", "refunded"),
            ("scope", "filtered"),
        ],
    );
    assert_eq!(
        replayed.element("result"),
        Some("Replayed 2 jobs"),
        "{}",
        replayed.body
    );
    assert!(dead_of(&redis, "orders.refunded").is_empty());
    assert_eq!(entries(&mut conn, keys::STREAM).len(), waiting_before + 3);
    assert_eq!(
        dead_of(&redis, "emails.sent").len(),
        1,
        "untouched by the filter"
    );

    // The host finishes what came back: the replayed job runs again.
    let host = Host::start(&redis.url(), plugins.path(), &["--max-attempts", "1"]);
    host.wait_for_log_count(
        "type=orders.refunded plugin=- attempt=1 outcome=dead",
        2,
        WAIT,
    );
}

#[test]
fn a_form_without_its_token_or_from_another_site_changes_nothing() {
    let redis = RedisServer::start();
    let plugins = PluginDir::with(&["orders"]);
    let host = Host::start(&redis.url(), plugins.path(), &[]);
    dead_jobs(&host, &redis, "orders.created", 2);
    let dashboard = Dashboard::start(&redis.url(), &[]);
    let csrf = dashboard.get("/dead").csrf();
    let purge_all = [
        ("queue", "default"),
        ("scope", "filtered"),
        ("confirm", "yes"),
    ];

    let without = dashboard.post("/dead/purge", &purge_all);
    assert_eq!(without.status, 403, "{}", without.body);
    assert!(without.body.contains("anti-CSRF"), "{}", without.body);

    let mut stale = purge_all.to_vec();
    stale.push(("csrf", "0123456789abcdef0123456789abcdef"));
    assert_eq!(dashboard.post("/dead/purge", &stale).status, 403);

    let mut right = purge_all.to_vec();
    right.push(("csrf", &csrf));
    let body = right
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let cross_site = dashboard.request(
        "POST",
        "/dead/purge",
        Some(&right),
        &[("Sec-Fetch-Site", "cross-site")],
    );
    assert_eq!(cross_site.status, 403, "{body}: {}", cross_site.body);

    // A GET never changes anything, whatever it carries.
    let get = dashboard.get(&format!("/dead/purge?{body}"));
    assert_eq!(get.status, 405);
    assert_eq!(dead_of(&redis, "orders.created").len(), 2);

    // The same form with its token does what it says.
    let done = dashboard.post("/dead/purge", &right);
    assert_eq!(
        done.element("result"),
        Some("Purged 2 jobs"),
        "{}",
        done.body
    );
}

#[test]
fn beyond_loopback_it_needs_a_token_and_then_every_request_carries_it() {
    let redis = RedisServer::start();
    let out = jobhost(&[
        "dashboard",
        "--listen",
        "0.0.0.0:0",
        "--redis",
        &redis.url(),
    ]);
    let error = one_line_error(&out);
    assert!(error.contains("--token"), "{error}");
    let out = jobhost(&[
        "dashboard",
        "--listen",
        "127.0.0.1:0",
        "--token",
        "short-secret",
        "--redis",
        &redis.url(),
    ]);
    assert!(one_line_error(&out).contains("16 characters or more"));

    let token = "correct-horse-battery-staple";
    let dashboard = Dashboard::start(&redis.url(), &["--token", token]);
    assert_eq!(dashboard.get("/").status, 200);
    let anonymous = dashboard.request("GET", "/", None, &[("Authorization", "Bearer wrong")]);
    assert_eq!(anonymous.status, 401);
    assert!(
        anonymous
            .header("www-authenticate")
            .is_some_and(|h| h.starts_with("Basic"))
    );
    // A browser's basic auth: any user, the token as password ("ops:" + token).
    let basic = "Basic b3BzOmNvcnJlY3QtaG9yc2UtYmF0dGVyeS1zdGFwbGU=";
    assert_eq!(
        dashboard
            .request("GET", "/", None, &[("Authorization", basic)])
            .status,
        200
    );
}

#[test]
fn markup_in_a_type_or_payload_is_shown_as_text() {
    let redis = RedisServer::start();
    let mut conn = redis.connection();
    let script = "<script>alert(1)</script>";
    let id: String = redis::cmd("XADD")
        .arg(keys::DLQ)
        .arg("*")
        .arg(&[
            "v", "1", "job_id", "x<b>1", "type", script, "payload", script,
        ])
        .arg(&[
            "last_error",
            "<img src=x onerror=alert(2)>",
            "total_attempts",
            "1",
        ])
        .query(&mut conn)
        .unwrap();
    redis::cmd("XADD")
        .arg(keys::DLQ)
        .arg("*")
        .arg(&["v", "1", "type", "bytes", "payload"])
        .arg(b"\xff\x00<script>".as_slice())
        .query::<String>(&mut conn)
        .unwrap();
    let dashboard = Dashboard::start(&redis.url(), &[]);
    for page in [
        dashboard.get("/dead"),
        dashboard.get(&format!("/dead/show?queue=default&id={id}")),
        dashboard.get(&format!("/dead?type={}", "%3Cscript%3E")),
    ] {
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(!page.body.contains("<script>alert"), "{}", page.body);
        assert!(!page.body.contains("<img"), "{}", page.body);
        assert!(
            page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{}",
            page.body
        );
        assert!(
            page.header("content-security-policy")
                .is_some_and(|csp| csp.contains("script-src 'self'")),
            "{:?}",
            page.headers
        );
    }
    let binary_id = entries(&mut conn, keys::DLQ).last().unwrap().0.clone();
    let binary = dashboard.get(&format!("/dead/show?queue=default&id={binary_id}"));
    assert!(
        binary.body.contains("binary, bytes escaped"),
        "{}",
        binary.body
    );
    assert!(
        binary.body.contains("\\xff\\x00&lt;script&gt;"),
        "{}",
        binary.body
    );
}

#[test]
fn keys_of_the_wrong_type_are_named_and_the_rest_is_shown() {
    let redis = RedisServer::start();
    let mut conn = redis.connection();
    for (key, value) in [
        ("jobhost:hosts", "not a hash"),
        ("jobhost:{broken}:stream", "not a stream"),
    ] {
        redis::cmd("SET")
            .arg(key)
            .arg(value)
            .query::<()>(&mut conn)
            .unwrap();
    }
    let plugins = PluginDir::with(&["hello"]);
    let host = Host::start(&redis.url(), plugins.path(), &[]);
    let id = enqueue(&redis.url(), &["hello.world", "{}"]);
    host.wait_for_log(
        &format!("job_id={id} type=hello.world plugin=hello attempt=1 outcome=done"),
        WAIT,
    );
    let dashboard = Dashboard::start(&redis.url(), &[]);
    let mut overview = dashboard.get("/");
    wait_until("the overview shows the healthy queue", WAIT, || {
        overview = dashboard.get("/");
        overview.body.contains("data-stat=\"done\">1<")
    });
    let status = overview.element("status").unwrap_or_default().to_owned();
    assert!(status.contains("jobhost:hosts"), "{status}");
    assert!(status.contains("queue broken"), "{status}");
    assert_eq!(dashboard.get("/hosts").status, 200);
    let dead = dashboard.get("/dead?queue=broken");
    assert!(dead.body.contains("0 dead jobs"), "{}", dead.body);
}

#[test]
fn pause_cancel_schedules_pages_and_frozen_entries_work_from_the_page() {
    let redis = RedisServer::start();
    let url = redis.url();
    let mut conn = redis.connection();
    // 30 dead entries, the newest frozen (replayed three times already).
    for n in 0..30 {
        let replays = if n == 29 { "3" } else { "0" };
        redis::cmd("XADD")
            .arg(keys::DLQ)
            .arg("*")
            .arg(&["v", "1", "type", &format!("bulk.{n}"), "payload", "{}"])
            .arg(&["last_error", "boom", "replay_count", replays])
            .query::<String>(&mut conn)
            .unwrap();
    }
    let delayed = enqueue(&url, &["hello.later", "{}", "--delay", "1h"]);
    let added = jobhost(&[
        "schedule",
        "add",
        "nightly",
        "reports.nightly",
        "{}",
        "--cron",
        "0 3 * * *",
        "--redis",
        &url,
    ]);
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let dashboard = Dashboard::start(&url, &[]);

    // Pages of 25, newest first; the frozen one says so.
    let first = dashboard.get("/dead");
    assert_eq!(
        first.body.matches("class=\"dead-job\"").count(),
        25,
        "{}",
        first.body
    );
    assert!(first.body.contains("page 1 of 2"), "{}", first.body);
    assert!(
        first.body.contains("bulk.29") && !first.body.contains("bulk.4<"),
        "{}",
        first.body
    );
    assert!(first.body.contains("frozen"), "{}", first.body);
    let second = dashboard.get("/dead?page=2");
    assert_eq!(
        second.body.matches("class=\"dead-job\"").count(),
        5,
        "{}",
        second.body
    );
    assert!(second.body.contains("bulk.0<"), "{}", second.body);

    // Pause and resume a queue.
    let paused = confirmed(&dashboard, "/queues/pause", &[("queue", "default")]);
    assert_eq!(paused.status, 200, "{}", paused.body);
    let members: Vec<String> = redis::cmd("SMEMBERS")
        .arg("jobhost:paused")
        .query(&mut conn)
        .unwrap();
    assert_eq!(members, ["default"]);
    confirmed(&dashboard, "/queues/resume", &[("queue", "default")]);
    let members: Vec<String> = redis::cmd("SMEMBERS")
        .arg("jobhost:paused")
        .query(&mut conn)
        .unwrap();
    assert!(members.is_empty());

    // Cancel the delayed job; the lookup then says it is cancelled.
    let cancelled = confirmed(&dashboard, "/jobs/cancel", &[("id", &delayed)]);
    assert!(
        cancelled
            .element("result")
            .is_some_and(|r| r.contains(&delayed)),
        "{}",
        cancelled.body
    );
    let zcard: u64 = redis::cmd("ZCARD")
        .arg(keys::DELAYED)
        .query(&mut conn)
        .unwrap();
    assert_eq!(zcard, 0, "the delayed job is gone: {}", cancelled.body);
    let found = dashboard.get(&format!("/jobs?id={delayed}"));
    assert!(found.body.contains("cancelled"), "{}", found.body);

    // Schedules: listed, paused and run now from the page.
    let schedules = dashboard.get("/schedules");
    assert!(
        schedules.body.contains("data-schedule=\"nightly\""),
        "{}",
        schedules.body
    );
    let paused = confirmed(&dashboard, "/schedules/pause", &[("name", "nightly")]);
    assert_eq!(
        paused.element("result"),
        Some("Paused schedule nightly"),
        "{}",
        paused.body
    );
    let listed = String::from_utf8_lossy(&jobhost(&["schedule", "list", "--redis", &url]).stdout)
        .into_owned();
    assert!(listed.contains("paused"), "{listed}");
    let stream_before = entries(&mut conn, keys::STREAM).len();
    confirmed(&dashboard, "/schedules/run-now", &[("name", "nightly")]);
    let stream = entries(&mut conn, keys::STREAM);
    assert_eq!(stream.len(), stream_before + 1);
    assert_eq!(
        stream.last().unwrap().1.get("type").map(String::as_str),
        Some("reports.nightly")
    );
}
