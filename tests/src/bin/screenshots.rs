//! Takes the README's pictures of the dashboard from its real pages:
//! `cargo run -p jobhost-tests --bin screenshots -- docs/` (or
//! `scripts/screenshots`) writes `overview.png` and `dead-jobs.png` there.
//!
//! It starts its own redis-server, a host with the example plugins, some
//! traffic (jobs done, jobs dead, one delayed) and the dashboard, then opens
//! the pages in headless chromium. The charts cover an hour, which a run of
//! a few seconds cannot fill: the earlier minutes' history is written the
//! way hosts publish it, so the pictures show what an hour of work looks like.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jobhost_tests::browser::Browser;
use jobhost_tests::dashboard::Dashboard;
use jobhost_tests::{Host, PluginDir, RedisServer, enqueue};

const WAIT: Duration = Duration::from_secs(120);
/// Wide enough for every column and both charts side by side.
const WIDTH: u32 = 1100;
const HEIGHT: u32 = 700;

fn main() {
    let out = match std::env::args_os().nth(1) {
        Some(dir) => PathBuf::from(dir),
        None => {
            eprintln!("usage: screenshots OUT_DIR (e.g. docs/)");
            std::process::exit(2);
        }
    };
    if let Err(error) = std::fs::create_dir_all(&out) {
        eprintln!("screenshots: cannot create {}: {error}", out.display());
        std::process::exit(1);
    }

    let redis = RedisServer::start();
    let plugins = PluginDir::with(&["hello", "orders"]);
    let host = Host::start(
        &redis.url(),
        plugins.path(),
        &["--consumer", "worker-1", "--max-attempts", "1"],
    );
    traffic(&host, &redis);
    backfill_history(&redis);
    let dashboard = Dashboard::start(&redis.url(), &[]);
    let browser = Browser::start(WIDTH, HEIGHT);

    browser.goto(&dashboard.url("/"));
    browser.wait_for("the overview's counts and charts", WAIT, |b| {
        b.text_now("#hosts-count").as_deref() == Some("1")
            && b.text_now(r#"#queues tr[data-queue="default"] td[data-stat="done"]"#)
                .is_some_and(|done| done != "0")
            && b.attr_now("#chart-failures path", "d")
                .is_some_and(|d| d.starts_with('M'))
    });
    save(&browser, &out.join("overview.png"));

    browser.goto(&dashboard.url("/dead"));
    browser.wait_for("the dead jobs", WAIT, |b| {
        b.count("#dead-jobs tr.dead-job") >= 3
    });
    save(&browser, &out.join("dead-jobs.png"));
}

/// Jobs done, jobs dead for two reasons, and one waiting an hour.
fn traffic(host: &Host, redis: &RedisServer) {
    let url = redis.url();
    for i in 0..12 {
        enqueue(&url, &["hello.world", &format!("{{\"n\":{i}}}")]);
    }
    // The orders plugin refuses what is not JSON; no plugin handles invoices.
    enqueue(&url, &["orders.created", "not json"]);
    enqueue(&url, &["orders.created", "{\"order\": "]);
    enqueue(&url, &["invoice.send", "{\"invoice\":\"2026-0042\"}"]);
    enqueue(&url, &["hello.later", "{}", "--delay", "1h"]);
    host.wait_for_log_count("outcome=done", 12, WAIT);
    host.wait_for_log_count("outcome=dead", 3, WAIT);
}

/// The previous hour's per-minute outcomes, as hosts would have published
/// them: a working day's curve with the odd failure.
fn backfill_history(redis: &RedisServer) {
    let now_minute = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
        / 60;
    let mut conn = redis.connection();
    let mut pipe = redis::pipe();
    for ago in 1..60u64 {
        let key = format!("jobhost:{{default}}:history:{}", now_minute - ago);
        // A smooth rise and fall, with a little wobble from minute to minute.
        let phase = (ago as f64 / 60.0) * std::f64::consts::PI;
        let done = 40.0 + 90.0 * phase.sin() + ((ago * 37) % 17) as f64;
        pipe.cmd("HINCRBY")
            .arg(&key)
            .arg("done")
            .arg(done as u64)
            .ignore();
        if ago % 7 == 3 || ago % 11 == 5 {
            let retries = 1 + (ago * 13) % 6;
            pipe.cmd("HINCRBY")
                .arg(&key)
                .arg("retry")
                .arg(retries)
                .ignore();
        }
        pipe.cmd("PEXPIRE")
            .arg(&key)
            .arg(2 * 60 * 60 * 1000)
            .ignore();
    }
    let _: () = pipe.query(&mut conn).expect("write the history");
}

fn save(browser: &Browser, path: &Path) {
    browser.screenshot_page(path);
    let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    println!("wrote {} ({} KB)", path.display(), bytes / 1024);
}
