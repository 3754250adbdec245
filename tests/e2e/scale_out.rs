//! Scaling out (SPEC §9): hosts sharing one consumer group share the work, and
//! hosts joining or leaving (cleanly or by SIGKILL) move work without loss.

use std::time::Duration;

use jobhost_tests::{
    Host, PluginDir, RedisServer, done_count, entries, keys, pending_count, wait_until, xadd_jobs,
};

const WAIT: Duration = Duration::from_secs(120);

fn done_lines(host: &Host) -> usize {
    host.log()
        .matches("type=test.sleep plugin=testbed attempt=1 outcome=done")
        .count()
}

/// Waits until `jobs` jobs are recorded done and nothing is left waiting or
/// pending, then checks that none was recorded twice.
fn wait_every_job_recorded_once(conn: &mut redis::Connection, jobs: usize) {
    wait_until("every job is done", WAIT, || {
        done_count(conn) >= jobs as u64
    });
    wait_until("nothing pending", WAIT, || pending_count(conn) == 0);
    assert!(entries(conn, keys::STREAM).is_empty());
    assert_eq!(done_count(conn), jobs as u64, "each job recorded once");
}

#[test]
fn three_hosts_share_a_queue_and_one_killed_mid_run_loses_nothing() {
    let redis = RedisServer::start();
    let plugins = PluginDir::with(&["testbed"]);
    // Small prefetch so the work spreads; fast reclaim so the killed host's share moves quickly.
    let args = [
        "--concurrency",
        "2",
        "--prefetch",
        "2",
        "--claim-idle",
        "1s",
    ];
    let mut hosts: Vec<Host> = (0..3)
        .map(|_| Host::start(&redis.url(), plugins.path(), &args))
        .collect();
    let mut conn = redis.connection();
    let jobs = 300;
    xadd_jobs(&mut conn, "test.sleep", (0..jobs).map(|_| "20".to_owned()));

    wait_until("a third of the jobs are done", WAIT, || {
        hosts.iter().map(done_lines).sum::<usize>() >= jobs / 3
    });
    let shares: Vec<usize> = hosts.iter().map(done_lines).collect();
    assert!(
        shares.iter().all(|n| *n > 0),
        "every host took a share: {shares:?}"
    );
    hosts[0].kill();
    let killed_share = done_lines(&hosts[0]);

    wait_every_job_recorded_once(&mut conn, jobs);
    assert!(entries(&mut conn, keys::DLQ).is_empty());
    let survivors: usize = hosts[1..].iter().map(done_lines).sum();
    // A job the killed host ran but never recorded runs again elsewhere, so
    // the logs account for every job but those it recorded and was killed
    // before logging (a host logs after recording): at most its jobs in
    // flight, 2 threads × prefetch 2. The counter above already showed that
    // each job was recorded exactly once.
    let unlogged = jobs.saturating_sub(killed_share + survivors);
    assert!(
        unlogged <= 4,
        "{killed_share} + {survivors} of {jobs} jobs logged as done"
    );
}

#[test]
fn a_host_joining_takes_a_share_and_one_leaving_cleanly_loses_nothing() {
    let redis = RedisServer::start();
    let plugins = PluginDir::with(&["testbed"]);
    let args = [
        "--concurrency",
        "2",
        "--prefetch",
        "2",
        "--claim-idle",
        "1s",
    ];
    let mut leaving = Host::start(&redis.url(), plugins.path(), &args);
    let staying = Host::start(&redis.url(), plugins.path(), &args);
    let mut conn = redis.connection();
    let first = 100;
    xadd_jobs(&mut conn, "test.sleep", (0..first).map(|_| "50".to_owned()));
    wait_until("some jobs are done", WAIT, || {
        done_lines(&leaving) + done_lines(&staying) >= 20
    });

    // The newcomer is consuming before the bulk of the work arrives, so it
    // takes a share however long it took to start.
    let joining = Host::start(&redis.url(), plugins.path(), &args);
    let second = 500;
    xadd_jobs(
        &mut conn,
        "test.sleep",
        (0..second).map(|_| "50".to_owned()),
    );
    let jobs = first + second;
    joining.wait_for_log(
        "type=test.sleep plugin=testbed attempt=1 outcome=done",
        WAIT,
    );
    leaving.sigterm();
    assert!(leaving.wait_exit(WAIT).success(), "a clean leave exits 0");

    wait_every_job_recorded_once(&mut conn, jobs);
    // A clean leave finishes what it took, so no job ran twice. (Hosts log a
    // job after recording it: wait for the lines, not just the counter.)
    wait_until("every job's log line", WAIT, || {
        [&leaving, &staying, &joining]
            .iter()
            .map(|h| done_lines(h))
            .sum::<usize>()
            >= jobs
    });
    let ran: usize = [&leaving, &staying, &joining]
        .iter()
        .map(|h| done_lines(h))
        .sum();
    assert_eq!(ran, jobs, "every job ran exactly once");
}

#[test]
fn acl_user_with_limited_rights_runs_jobs_and_its_password_is_never_logged() {
    let redis = RedisServer::start();
    let mut conn = redis.connection();
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("worker")
        .arg("on")
        .arg(">s3cret-pass")
        .arg("~jobhost:*")
        .arg("resetchannels")
        .arg("+@all")
        .arg("-@dangerous")
        .arg("-@admin")
        .query(&mut conn)
        .unwrap();
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("stranger")
        .arg("on")
        .arg(">other-pass")
        .arg("~elsewhere:*")
        .arg("+@all")
        .query(&mut conn)
        .unwrap();
    let url = format!("redis://worker:s3cret-pass@127.0.0.1:{}", redis.port());
    let plugins = PluginDir::with(&["hello"]);
    let host = Host::start(&url, plugins.path(), &["--claim-idle", "1s"]);
    let out = jobhost_tests::jobhost(&["enqueue", "hello.acl", "{}", "--wait", "--redis", &url]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    host.wait_for_log("type=hello.acl plugin=hello attempt=1 outcome=done", WAIT);
    assert!(
        !host.log().contains("s3cret-pass"),
        "password logged:\n{}",
        host.log()
    );

    let stranger = format!("redis://stranger:other-pass@127.0.0.1:{}", redis.port());
    let out = jobhost_tests::jobhost(&[
        "run",
        "--plugins",
        plugins.path().to_str().unwrap(),
        "--redis",
        &stranger,
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("jobhost: ") && err.contains("no permissions"),
        "{err}"
    );
    assert!(!err.contains("other-pass"), "{err}");
}
