//! Redis Sentinel (SPEC §8–§9): jobhost finds the master through a sentinel
//! and follows it through a failover, without a restart and without losing
//! the jobs that reached the new master.

use std::time::Duration;

use jobhost_tests::topologies::SentinelSetup;
use jobhost_tests::{
    Host, PluginDir, done_count, enqueue_and_wait, jobhost, keys, wait_until, xadd_jobs,
};

const WAIT: Duration = Duration::from_secs(90);

fn backlog(conn: &mut redis::Connection) -> u64 {
    redis::cmd("XLEN")
        .arg(keys::STREAM)
        .query(conn)
        .unwrap_or(u64::MAX)
}

#[test]
fn host_follows_the_master_through_a_forced_failover() {
    let setup = SentinelSetup::start();
    let url = setup.url();
    let plugins = PluginDir::with(&["testbed"]);
    let host = Host::start(
        &url,
        plugins.path(),
        &["--concurrency", "2", "--claim-idle", "2s"],
    );

    let mut master = setup.master.connection();
    let before = 400;
    xadd_jobs(
        &mut master,
        "test.sleep",
        (0..before).map(|_| "5".to_owned()),
    );
    wait_until("some jobs are done on the first master", WAIT, || {
        done_count(&mut master) >= 50
    });

    setup.fail_over();

    // Jobs written after the failover go to the new master, through the sentinel.
    let after = 100;
    let lines: String = (0..after)
        .map(|_| "{\"type\":\"test.sleep\",\"payload\":\"5\"}\n".to_owned())
        .collect();
    let out = jobhost_tests::jobhost_with_stdin(&["enqueue", "--batch", "--redis", &url], &lines);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = enqueue_and_wait(&url, &["test.sleep", "1"], "60s");
    assert!(
        out.status.success(),
        "{}\nhost log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        host.tail()
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "slept 1 ms");

    // The new master ends with nothing waiting and nothing pending: every job
    // it holds was run and acknowledged by the same, never restarted, host.
    // A fresh connection per poll: the failover may still drop clients.
    wait_until("the new master's backlog is worked off", WAIT, || {
        setup.replica.try_connection().is_ok_and(|mut new_master| {
            backlog(&mut new_master) == 0 && jobhost_tests::pending_count(&mut new_master) == 0
        })
    });
    let mut new_master = setup.replica.connection();
    let done = done_count(&mut new_master);
    assert!(
        done > (before + after) as u64,
        "done {done} of {}; host log:\n{}",
        before + after + 1,
        host.tail()
    );
}

#[test]
fn a_sentinel_url_naming_an_unknown_service_is_one_clear_error() {
    let setup = SentinelSetup::start();
    let url = format!(
        "redis+sentinel://127.0.0.1:{}/nosuchservice",
        setup.sentinel.port()
    );
    let out = jobhost(&["enqueue", "hello.x", "{}", "--redis", &url]);
    let stderr = jobhost_tests::one_line_error(&out);
    assert!(
        stderr.starts_with("jobhost: cannot reach Redis"),
        "{stderr}"
    );
}
