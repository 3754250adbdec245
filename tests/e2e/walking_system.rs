//! The walking system: jobs enqueued with the CLI or raw XADD are handled by
//! the plugin for their type and acknowledged; the CLI's local tools work; bad
//! input gets one clear line and a non-zero exit.

use std::time::Duration;

use jobhost_tests::{
    Host, PluginDir, RedisServer, built_plugins, entries, jobhost, keys, pending_count, wait_until,
    xadd_job,
};

const WAIT: Duration = Duration::from_secs(30);

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn assert_no_panic(output: &std::process::Output) {
    let text = stderr(output);
    assert!(
        !text.contains("panicked") && !text.contains("RUST_BACKTRACE"),
        "{text}"
    );
}

#[test]
fn job_enqueued_with_cli_is_handled_acked_and_its_follow_up_runs() {
    let redis = RedisServer::start();
    let plugins = PluginDir::with(&["orders", "hello"]);
    let host = Host::start(&redis.url(), plugins.path(), &[]);

    let out = jobhost(&[
        "enqueue",
        "orders.created",
        r#"{"id":7}"#,
        "--redis",
        &redis.url(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let job_id = stdout(&out).trim().to_owned();
    assert!(!job_id.is_empty());

    host.wait_for_log(
        &format!("job_id={job_id} type=orders.created plugin=orders attempt=1 outcome=done"),
        WAIT,
    );
    // The follow-up is handled too, by the same plugin.
    host.wait_for_log(
        "type=orders.confirmed plugin=orders attempt=1 outcome=done",
        WAIT,
    );
    let mut conn = redis.connection();
    wait_until("nothing pending", WAIT, || pending_count(&mut conn) == 0);
    // Finished entries are acknowledged and deleted: the stream holds no work.
    assert_eq!(entries(&mut conn, keys::STREAM), vec![]);
    let counters: std::collections::HashMap<String, u64> = redis::cmd("HGETALL")
        .arg(keys::COUNTERS)
        .query(&mut conn)
        .unwrap();
    assert_eq!(counters.get("done"), Some(&2), "{counters:?}");
}

#[test]
fn raw_xadd_entry_is_handled_by_the_pattern_plugin_and_acked() {
    let redis = RedisServer::start();
    let plugins = PluginDir::with(&["orders", "hello"]);
    let host = Host::start(&redis.url(), plugins.path(), &[]);
    let mut conn = redis.connection();
    let entry_id = xadd_job(&mut conn, "hello.world", r#"{"name":"raw"}"#);

    host.wait_for_log(
        &format!("job_id={entry_id} type=hello.world plugin=hello attempt=1 outcome=done"),
        WAIT,
    );
    wait_until("nothing pending", WAIT, || pending_count(&mut conn) == 0);
    assert!(entries(&mut conn, keys::STREAM).is_empty());
}

#[test]
fn invoke_runs_one_job_locally_and_reports_its_outcome() {
    let hello = built_plugins().join("hello.wasm");
    let out = jobhost(&[
        "invoke",
        hello.to_str().unwrap(),
        "hello.x",
        r#"{"name":"x"}"#,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "Hello, x!");

    let orders = built_plugins().join("orders.wasm");
    let out = jobhost(&[
        "invoke",
        orders.to_str().unwrap(),
        "orders.created",
        "not json",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("fatal: invalid JSON payload"),
        "{}",
        stderr(&out)
    );

    let out = jobhost(&[
        "invoke",
        orders.to_str().unwrap(),
        "orders.created",
        r#"{"id":3}"#,
    ]);
    assert!(out.status.success());
    assert!(
        stderr(&out).contains(r#"follow-up: orders.confirmed {"id":3}"#),
        "{}",
        stderr(&out)
    );
}

#[test]
fn plugins_check_lists_types_and_refuses_files_that_are_not_components() {
    let orders = built_plugins().join("orders.wasm");
    let out = jobhost(&["plugins", "check", orders.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(stdout(&out).contains("orders.created"), "{}", stdout(&out));

    let folder = PluginDir::with(&[]);
    folder.write("text.wasm", b"this is not wasm");
    folder.write("core.wasm", b"\0asm\x01\0\0\0");
    for (file, reason) in [
        ("text.wasm", "not a WebAssembly file"),
        ("core.wasm", "not a component"),
    ] {
        let path = folder.path().join(file);
        let out = jobhost(&["plugins", "check", path.to_str().unwrap()]);
        assert!(!out.status.success());
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with("jobhost: ") && err.contains(file) && err.contains(reason),
            "{err}"
        );
        assert_no_panic(&out);
    }
}

#[test]
fn bad_input_gets_one_clear_line_and_a_non_zero_exit() {
    let out = jobhost(&["run", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
    assert_no_panic(&out);

    let nobody = format!(
        "redis://127.0.0.1:{}",
        jobhost_tests::RedisServer::start().port()
    );
    // A port that just lost its server: nothing listens there.
    let plugins = PluginDir::with(&["hello"]);
    let out = jobhost(&[
        "run",
        "--plugins",
        plugins.path().to_str().unwrap(),
        "--redis",
        &nobody,
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("jobhost: cannot reach Redis at"), "{err}");
    assert_no_panic(&out);

    let out = jobhost(&["run", "--plugins", "/nonexistent/plugins"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("jobhost: plugins folder /nonexistent/plugins"),
        "{err}"
    );
    assert_no_panic(&out);

    let out = jobhost(&["enqueue", "has space", "x", "--redis", &nobody]);
    assert!(!out.status.success());
    assert!(stderr(&out).starts_with("jobhost: "), "{}", stderr(&out));
}

#[test]
fn sigterm_stops_the_host_cleanly() {
    let redis = RedisServer::start();
    let plugins = PluginDir::with(&["hello"]);
    let mut host = Host::start(&redis.url(), plugins.path(), &[]);
    host.sigterm();
    let status = host.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status:?}\n{}", host.tail());
    assert!(host.log().contains("stopped"));
}

#[test]
fn two_plugins_claiming_one_type_are_a_load_error_naming_both_files() {
    let redis = RedisServer::start();
    let plugins = PluginDir::with(&["orders"]);
    plugins.add_as("orders", "orders2");
    plugins.write("broken.wasm", b"junk");
    plugins.add("hello");
    let host = Host::start(&redis.url(), plugins.path(), &[]);
    let log = host.log();
    let conflict = log
        .lines()
        .find(|line| line.contains("already handled by"))
        .unwrap_or_else(|| panic!("no conflict logged:\n{log}"));
    assert!(
        conflict.contains("orders2.wasm") && conflict.contains("orders.wasm"),
        "{conflict}"
    );
    assert!(log.contains("broken.wasm: not a WebAssembly file"), "{log}");
    // The others still serve.
    let mut conn = redis.connection();
    xadd_job(&mut conn, "hello.again", "x");
    host.wait_for_log("type=hello.again plugin=hello attempt=1 outcome=done", WAIT);
}
