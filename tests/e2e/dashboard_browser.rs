//! The dashboard in a real browser (headless chromium): the overview keeps
//! itself up to date without a reload, a dead job is found, replayed through
//! its confirmation and then done by a host, and the pages fit a phone.

use std::time::Duration;

use jobhost_tests::browser::Browser;
use jobhost_tests::dashboard::Dashboard;
use jobhost_tests::{Host, PluginDir, RedisServer, built_plugins, enqueue};

const WAIT: Duration = Duration::from_secs(60);
const DONE: &str = r#"#queues tr[data-queue="default"] td[data-stat="done"]"#;

/// `jobs` hello jobs, each awaited until the host has done it.
fn done_jobs(host: &Host, redis: &RedisServer, jobs: usize) {
    for _ in 0..jobs {
        let id = enqueue(&redis.url(), &["hello.x", "{}"]);
        host.wait_for_log(
            &format!("job_id={id} type=hello.x plugin=hello attempt=1 outcome=done"),
            WAIT,
        );
    }
}

/// A job of `job_type`, which no plugin handles, dead after its one attempt
/// (the host runs with `--max-attempts 1`).
fn dead_job(host: &Host, redis: &RedisServer, job_type: &str, payload: &str) -> String {
    let id = enqueue(&redis.url(), &[job_type, payload]);
    host.wait_for_log(
        &format!("job_id={id} type={job_type} plugin=- attempt=1 outcome=dead"),
        WAIT,
    );
    id
}

#[test]
fn the_overview_counts_jobs_as_they_finish_without_a_reload() {
    let redis = RedisServer::start();
    let plugins = PluginDir::with(&["hello"]);
    let host = Host::start(
        &redis.url(),
        plugins.path(),
        &["--consumer", "browser-host"],
    );
    done_jobs(&host, &redis, 1);
    let dashboard = Dashboard::start(&redis.url(), &[]);
    let browser = Browser::start(1280, 900);

    browser.goto(&dashboard.url("/"));
    browser.wait_for_text(DONE, "1", WAIT);
    browser.wait_for_text("#hosts-count", "1", WAIT);
    assert_eq!(browser.count("svg.chart"), 2, "the two charts");
    // A mark only this very page holds: gone if anything reloads it.
    browser.script("window.sameDocument = true; return null;");

    done_jobs(&host, &redis, 3);
    browser.wait_for_text(DONE, "4", WAIT);
    browser.wait_for("a bar in the throughput chart", WAIT, |b| {
        b.attr_now("#chart-throughput path", "d")
            .is_some_and(|d| d.starts_with('M'))
    });
    assert_eq!(
        browser.script("return window.sameDocument === true;"),
        serde_json::Value::Bool(true),
        "the overview was reloaded to show the new counts"
    );
    assert!(browser.text_now("#status").unwrap_or_default().is_empty());

    browser.click("header nav a[href='/hosts']", WAIT);
    browser.wait_for("the host's row", WAIT, |b| {
        b.exists(r#"table#hosts tr[data-host="browser-host"]"#)
    });
}

#[test]
fn a_dead_job_found_by_type_is_replayed_through_its_confirmation() {
    let redis = RedisServer::start();
    let plugins = PluginDir::with(&["hello"]);
    let host = Host::start(
        &redis.url(),
        plugins.path(),
        &["--max-attempts", "1", "--consumer", "browser-host"],
    );
    let greeting = dead_job(&host, &redis, "greet.me", "x");
    dead_job(&host, &redis, "invoice.send", "{}");
    // The fix: the plugin for greet.me arrives.
    std::fs::copy(
        built_plugins().join("greeter_v1.wasm"),
        plugins.path().join("greeter.wasm"),
    )
    .expect("copy the greeter plugin in");
    host.wait_for_log("plugin loaded plugin=greeter", WAIT);
    let dashboard = Dashboard::start(&redis.url(), &[]);
    let browser = Browser::start(1280, 900);

    browser.wait_for_page(&dashboard.url("/dead"), "both dead jobs", WAIT, |b| {
        b.count("#dead-jobs tr.dead-job") == 2
    });
    browser.fill("#dead-filter input[name='type']", "greet", WAIT);
    browser.click("#dead-filter button#filter", WAIT);
    browser.wait_for("only the greet.me job", WAIT, |b| {
        b.current_url().contains("type=greet")
            && b.count("#dead-jobs tr.dead-job") == 1
            && b.text_now("#dead-jobs tr.dead-job td[data-field='type']")
                .as_deref()
                == Some("greet.me")
    });
    let entry = browser
        .attr_now("#dead-jobs tr.dead-job", "data-id")
        .expect("the row's entry id");

    browser.click("#dead-jobs tr.dead-job a.job-link", WAIT);
    browser.wait_for("the job's page", WAIT, |b| {
        b.exists("form#replay") && b.exists("form#purge")
    });
    assert!(
        browser.current_url().contains("/dead/show?"),
        "{}",
        browser.current_url()
    );
    assert!(browser.text("h1", WAIT).contains(&entry));
    browser.click("form#replay button", WAIT);
    browser.wait_for("the confirmation", WAIT, |b| {
        b.exists("form#confirm button#confirm-button")
    });
    browser.click("#confirm-button", WAIT);
    browser.wait_for_text("p#result", "Replayed 1 job", WAIT);

    host.wait_for_log(
        &format!("job_id={greeting} type=greet.me plugin=greeter attempt=1 outcome=done"),
        WAIT,
    );
    let dead = dashboard.url("/dead");
    browser.wait_for_page(&dead, "only the other dead job left", WAIT, |b| {
        b.count("#dead-jobs tr.dead-job") == 1
            && b.text_now("#dead-jobs td[data-field='type']").as_deref() == Some("invoice.send")
    });
}

#[test]
fn the_pages_fit_a_phone_without_sideways_scrolling() {
    let redis = RedisServer::start();
    let plugins = PluginDir::with(&["hello"]);
    let host = Host::start(
        &redis.url(),
        plugins.path(),
        &[
            "--max-attempts",
            "1",
            "--consumer",
            "browser-host-with-a-long-name",
        ],
    );
    done_jobs(&host, &redis, 1);
    // Long words are what push a narrow page sideways.
    let long_type = "reports.monthly-invoice-generation.eu-west-1";
    dead_job(
        &host,
        &redis,
        long_type,
        &format!("{{\"customer\":\"{}\"}}", "x".repeat(300)),
    );
    let dashboard = Dashboard::start(&redis.url(), &[]);
    let browser = Browser::start(390, 844);

    let pages = [
        ("/", "table#queues tr[data-queue='default']"),
        ("/dead", "#dead-jobs tr.dead-job"),
        ("/hosts", "table#hosts tr[data-host]"),
    ];
    for (path, content) in pages {
        let what = format!("{path} to show {content}");
        browser.wait_for_page(&dashboard.url(path), &what, WAIT, |b| b.exists(content));
        assert_fits(&browser, path);
    }
    browser.goto(&dashboard.url("/dead"));
    browser.click("#dead-jobs a.job-link", WAIT);
    browser.wait_for("the job's page", WAIT, |b| b.exists("form#replay"));
    assert_fits(&browser, "/dead/show");
}

fn assert_fits(browser: &Browser, page: &str) {
    let overflow = browser.horizontal_overflow();
    assert!(
        overflow <= 0,
        "{page} is {overflow} px wider than a 390 px phone; too wide: {}",
        browser.too_wide()
    );
}
