//! Hardening (issue #14): no outcome is acknowledged and then lost when one
//! of its writes is impossible; text from producers and guests reaches the
//! host log escaped; the quick start's set-up works on a fresh machine.

use std::time::Duration;

use jobhost_tests::{
    Host, PluginDir, RedisServer, done_count, entries, jobhost, keys, one_line_error,
    pending_count, wait_until, xadd_jobs,
};

const WAIT: Duration = Duration::from_secs(30);
/// Fast retries, and held entries reclaimed within about a second; a held
/// entry is delivered again on each reclaim, so the poison limit stays out of the way.
const HOST_ARGS: &[&str] = &[
    "--retry-base",
    "20ms",
    "--retry-cap",
    "100ms",
    "--claim-idle",
    "1s",
    "--max-deliveries",
    "1000",
];
/// Jobs queued before and after the one whose outcome cannot be written, so
/// they are read, run and recorded in the same batches as it.
const NEIGHBOURS: usize = 40;

/// Writes one entry with raw XADD, the way any producer could; returns its id.
fn xadd(conn: &mut redis::Connection, fields: &[(&str, &str)]) -> String {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(keys::STREAM).arg("*");
    for (name, value) in [("v", "1"), ("produced_at", "2026-11-24T10:00:00Z")]
        .iter()
        .chain(fields)
    {
        cmd.arg(*name).arg(*value);
    }
    cmd.query(conn).expect("XADD")
}

fn is_pending(conn: &mut redis::Connection, entry_id: &str) -> bool {
    let pending: Vec<redis::Value> = redis::cmd("XPENDING")
        .arg(keys::STREAM)
        .arg(keys::GROUP)
        .arg(entry_id)
        .arg(entry_id)
        .arg(1)
        .query(conn)
        .expect("XPENDING");
    !pending.is_empty()
}

fn counter(conn: &mut redis::Connection, outcome: &str) -> u64 {
    redis::cmd("HGET")
        .arg(keys::COUNTERS)
        .arg(outcome)
        .query::<Option<u64>>(conn)
        .expect("HGET")
        .unwrap_or(0)
}

fn set(conn: &mut redis::Connection, key: &str, value: &str) {
    let _: () = redis::cmd("SET").arg(key).arg(value).query(conn).unwrap();
}

fn del(conn: &mut redis::Connection, key: &str) {
    let _: () = redis::cmd("DEL").arg(key).query(conn).unwrap();
}

fn hello_jobs(conn: &mut redis::Connection, from: usize) {
    xadd_jobs(
        conn,
        "hello.batch",
        (from..from + NEIGHBOURS).map(|i| format!("{{\"name\":\"n{i}\"}}")),
    );
}

/// Queues neighbours, the entry `fields` describes, more neighbours; starts
/// a host; waits until the neighbours are done and the entry is reported
/// held. Returns the host, its plugins folder and the held entry's id.
fn held_among_neighbours(
    redis: &RedisServer,
    plugins: &[&str],
    fields: &[(&str, &str)],
    held_log: &str,
) -> (Host, PluginDir, String) {
    let mut conn = redis.connection();
    hello_jobs(&mut conn, 0);
    let held = xadd(&mut conn, fields);
    hello_jobs(&mut conn, NEIGHBOURS);
    let dir = PluginDir::with(plugins);
    let host = Host::start(&redis.url(), dir.path(), HOST_ARGS);
    host.wait_for_log(held_log, WAIT);
    wait_until("every neighbour is recorded done", WAIT, || {
        done_count(&mut conn) == 2 * NEIGHBOURS as u64
    });
    assert!(is_pending(&mut conn, &held), "{}", host.tail());
    assert_eq!(
        pending_count(&mut conn),
        1,
        "only the held entry is pending"
    );
    let left: Vec<String> = entries(&mut conn, keys::STREAM)
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(
        left,
        vec![held.clone()],
        "the held entry stays in the stream"
    );
    let line = host
        .log()
        .lines()
        .find(|line| line.contains(held_log))
        .map(str::to_owned)
        .unwrap();
    assert!(line.contains("ERROR"), "{line}");
    assert!(line.contains("rename or delete that key"), "{line}");
    (host, dir, held)
}

#[test]
fn reply_key_of_another_type_is_skipped_and_the_fatal_job_still_dead_lettered() {
    let redis = RedisServer::start();
    let mut conn = redis.connection();
    let reply = "jobhost:{default}:reply:x";
    set(&mut conn, reply, "x");
    let plugins = PluginDir::with(&["orders"]);
    let host = Host::start(&redis.url(), plugins.path(), HOST_ARGS);
    let id = xadd(
        &mut conn,
        &[
            ("type", "orders.created"),
            ("payload", "not json"),
            ("max_attempts", "1"),
            ("reply_to", reply),
        ],
    );

    wait_until("the job is dead-lettered", WAIT, || {
        entries(&mut conn, keys::DLQ).len() == 1
    });
    host.wait_for_log(
        &format!("reply to the waiting producer skipped: key {reply} holds a string, not a stream"),
        WAIT,
    );
    let dead = entries(&mut conn, keys::DLQ);
    assert_eq!(dead[0].1["original_id"], id);
    assert_eq!(pending_count(&mut conn), 0);
    assert!(entries(&mut conn, keys::STREAM).is_empty());
    assert_eq!(counter(&mut conn, "dead"), 1);
    let value: String = redis::cmd("GET").arg(reply).query(&mut conn).unwrap();
    assert_eq!(value, "x", "the key that is not a stream is left alone");
}

#[test]
fn retry_whose_delayed_set_has_another_type_stays_pending_until_the_key_is_fixed() {
    let redis = RedisServer::start();
    let mut conn = redis.connection();
    set(&mut conn, keys::DELAYED, "not a sorted set");
    let (host, _plugins, held) = held_among_neighbours(
        &redis,
        &["hello", "flaky"],
        &[
            ("type", "flaky.job"),
            ("payload", r#"{"succeed_on_attempt":2}"#),
        ],
        "outcome not recorded: key jobhost:{default}:delayed holds a string, not a sorted set",
    );
    assert_eq!(counter(&mut conn, "retry"), 0);

    del(&mut conn, keys::DELAYED);
    wait_until("the held job is reclaimed, retried and done", WAIT, || {
        done_count(&mut conn) == 2 * NEIGHBOURS as u64 + 1
    });
    assert!(!is_pending(&mut conn, &held));
    assert_eq!(counter(&mut conn, "retry"), 1, "{}", host.tail());
    assert_eq!(pending_count(&mut conn), 0);
    assert!(entries(&mut conn, keys::DLQ).is_empty());
}

#[test]
fn dead_letter_whose_dlq_has_another_type_stays_pending_until_the_key_is_fixed() {
    let redis = RedisServer::start();
    let mut conn = redis.connection();
    set(&mut conn, keys::DLQ, "not a stream");
    let (host, _plugins, held) = held_among_neighbours(
        &redis,
        &["hello", "orders"],
        &[("type", "orders.created"), ("payload", "not json")],
        "outcome not recorded: key jobhost:{default}:dlq holds a string, not a stream",
    );
    assert_eq!(counter(&mut conn, "dead"), 0);

    del(&mut conn, keys::DLQ);
    wait_until("the held job is reclaimed and dead-lettered", WAIT, || {
        entries(&mut conn, keys::DLQ).len() == 1
    });
    let dead = entries(&mut conn, keys::DLQ);
    assert_eq!(dead[0].1["original_id"], held, "{}", host.tail());
    assert_eq!(counter(&mut conn, "dead"), 1);
    assert_eq!(pending_count(&mut conn), 0);
    assert!(entries(&mut conn, keys::STREAM).is_empty());
}

#[test]
fn dead_letter_stream_out_of_entry_ids_holds_the_outcome_instead_of_losing_it() {
    let redis = RedisServer::start();
    let mut conn = redis.connection();
    let max_id = "18446744073709551615-18446744073709551615";
    let _: String = redis::cmd("XADD")
        .arg(keys::DLQ)
        .arg(max_id)
        .arg("k")
        .arg("v")
        .query(&mut conn)
        .unwrap();
    let (_host, _plugins, held) = held_among_neighbours(
        &redis,
        &["hello", "orders"],
        &[("type", "orders.created"), ("payload", "not json")],
        "outcome not recorded: key jobhost:{default}:dlq is a stream that has used up its entry ids",
    );
    assert_eq!(counter(&mut conn, "dead"), 0);
    assert!(is_pending(&mut conn, &held));
}

#[test]
fn counters_of_another_type_are_skipped_and_the_jobs_still_recorded() {
    let redis = RedisServer::start();
    let mut conn = redis.connection();
    set(&mut conn, keys::COUNTERS, "not a hash");
    let plugins = PluginDir::with(&["hello"]);
    let host = Host::start(&redis.url(), plugins.path(), HOST_ARGS);
    hello_jobs(&mut conn, 0);

    host.wait_for_log_count("outcome=done", NEIGHBOURS, WAIT);
    host.wait_for_log(
        "outcome counters not updated: key jobhost:{default}:counters holds a string, not a hash",
        WAIT,
    );
    wait_until("every job is acknowledged and deleted", WAIT, || {
        pending_count(&mut conn) == 0 && entries(&mut conn, keys::STREAM).is_empty()
    });
}

/// Nothing in `log` a terminal would act on: no control character but the
/// line ends, no invisible text; and no line starts as a forged one would.
fn assert_log_is_inert(log: &str) {
    for (number, line) in log.lines().enumerate() {
        assert!(
            !line.contains(jobhost::logging::is_unsafe_in_log),
            "line {number} holds a control character: {line:?}"
        );
        assert!(
            !line.starts_with("2026-01-01T00:00:00"),
            "forged line {number}: {line:?}"
        );
    }
}

#[test]
fn job_type_with_an_escape_sequence_is_dead_lettered_as_malformed_and_logged_escaped() {
    for format in ["text", "json"] {
        let redis = RedisServer::start();
        let mut conn = redis.connection();
        let plugins = PluginDir::with(&["hello"]);
        let mut args = HOST_ARGS.to_vec();
        args.extend(["--log-format", format]);
        let host = Host::start(&redis.url(), plugins.path(), &args);
        xadd(
            &mut conn,
            &[
                ("type", "hello.\u{1b}[2J\u{1b}[31mred"),
                ("payload", "x"),
                ("trace_id", "t\r\n2026-01-01T00:00:00.000000Z ERROR FORGED"),
            ],
        );
        xadd(
            &mut conn,
            &[
                ("type", "hello.traced"),
                ("payload", "x"),
                (
                    "trace_id",
                    "t\r\n2026-01-01T00:00:00.000000Z ERROR FORGED\u{1b}[0m",
                ),
            ],
        );

        wait_until("the bad type is dead-lettered", WAIT, || {
            entries(&mut conn, keys::DLQ).len() == 1
        });
        let dead = &entries(&mut conn, keys::DLQ)[0].1;
        assert!(
            dead["last_error"].contains("is not a job type (printable characters, no whitespace)"),
            "{dead:?}"
        );
        host.wait_for_log_count("job dead-lettered", 1, WAIT);
        host.wait_for_log_count("job finished", 1, WAIT);
        let log = host.log();
        assert_log_is_inert(&log);
        assert!(log.contains("FORGED"), "{log}");
        if format == "json" {
            for line in log.lines() {
                let value: serde_json::Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
                if value.to_string().contains("hello.traced") {
                    let trace = value["fields"]["trace_id"].as_str().unwrap();
                    assert!(
                        trace.ends_with("FORGED\u{1b}[0m"),
                        "kept as written: {trace:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn guest_log_messages_output_and_errors_reach_the_log_escaped() {
    for format in ["text", "json"] {
        let redis = RedisServer::start();
        let mut conn = redis.connection();
        let plugins = PluginDir::with(&["testbed"]);
        let host = Host::start(&redis.url(), plugins.path(), &["--log-format", format]);
        let id = xadd(&mut conn, &[("type", "test.log-escape"), ("payload", "x")]);

        host.wait_for_log("job dead-lettered", WAIT);
        host.wait_for_log("guest stdout", WAIT);
        let log = host.log();
        assert_log_is_inert(&log);
        let tagged = |text: &str| {
            let lines: Vec<&str> = log.lines().filter(|l| l.contains(text)).collect();
            assert_eq!(lines.len(), 1, "{text:?} in one line: {log}");
            assert!(lines[0].contains(&id), "tagged with the job: {}", lines[0]);
        };
        tagged("guest message");
        tagged("guest fields");
        tagged("guest stdout");
        tagged("guest error");
        // Every FORGED sits inside a line of the job it came from.
        for line in log.lines().filter(|l| l.contains("FORGED")) {
            assert!(line.contains(&id), "{line}");
        }
        if format == "json" {
            let message = log
                .lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON"))
                .find_map(|v| {
                    let text = v["fields"]["message"].as_str()?.to_owned();
                    text.starts_with("guest message").then_some(text)
                })
                .unwrap();
            assert!(
                message.contains('\n') && message.contains("\u{1b}[31m"),
                "kept as written: {message:?}"
            );
        }
    }
}

#[test]
fn enqueue_refuses_a_job_type_with_control_characters_in_one_line() {
    let redis = RedisServer::start();
    let url = redis.url();
    for bad in ["orders.\u{1b}[31mcreated", "orders\ncreated", "x\u{7f}"] {
        let out = jobhost(&["enqueue", bad, "{}", "--redis", &url]);
        let error = one_line_error(&out);
        assert!(error.contains("is not a job type"), "{error}");
        assert!(
            !error
                .trim_end()
                .contains(jobhost::logging::is_unsafe_in_log),
            "{error:?}"
        );
    }
    let long = "t".repeat(257);
    let error = one_line_error(&jobhost(&["enqueue", &long, "{}", "--redis", &url]));
    assert!(error.contains("too long (at most 256)"), "{error}");
    assert!(entries(&mut redis.connection(), keys::STREAM).is_empty());
}

/// Stand-ins for a fresh machine's tools, first on PATH, for running the
/// set-up scripts without changing this machine: each records how it was
/// called. A missing tool is one that fails to run, until the fake apt-get
/// "installs" it.
struct FreshMachine {
    dir: tempfile::TempDir,
}

impl FreshMachine {
    /// rustup without the guest target, no Redis, no openssl, no
    /// cargo-nextest; `uid` is what `id -u` says.
    fn new(uid: u32) -> Self {
        let machine = FreshMachine {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        machine.tool(
            "rustup",
            r#"case "$*" in
  "target list"*) echo x86_64-unknown-linux-gnu ;;
  "component list"*) echo rustfmt-x86_64-unknown-linux-gnu ;;
esac"#,
        );
        for tool in ["redis-server", "redis-cli", "openssl"] {
            machine.tool(tool, r#"[ -f "$FAKE/installed" ] || exit 127"#);
        }
        machine.tool(
            "apt-get",
            r#"[ "$1" = install ] && touch "$FAKE/installed"; exit 0"#,
        );
        machine.tool("cargo", r#"[ "$1" = nextest ] && exit 1; exit 0"#);
        machine.tool("id", &format!("echo {uid}"));
        machine
    }

    fn tool(&self, name: &str, body: &str) {
        use std::os::unix::fs::PermissionsExt;
        let path = self.dir.path().join(name);
        let script = format!("#!/bin/sh\necho \"{name} $*\" >> \"$FAKE/calls\"\n{body}\n");
        std::fs::write(&path, script).expect("write a stand-in");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// Runs `script ARGS` of the repository with the stand-ins first on PATH.
    fn run(&self, script: &str, args: &[&str]) -> std::process::Output {
        let path = format!(
            "{}:{}",
            self.dir.path().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        std::process::Command::new("bash")
            .arg(jobhost_tests::workspace_root().join(script))
            .args(args)
            .env("PATH", path)
            .env("FAKE", self.dir.path())
            .env_remove("REDIS_URL")
            .output()
            .expect("run the script")
    }

    fn calls(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("calls")).unwrap_or_default()
    }
}

#[test]
fn setup_for_the_demo_adds_the_guest_target_and_installs_redis_as_root() {
    let machine = FreshMachine::new(0);
    let out = machine.run("scripts/setup", &["demo"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let calls = machine.calls();
    let toolchain =
        std::fs::read_to_string(jobhost_tests::workspace_root().join("rust-toolchain.toml"))
            .unwrap();
    let channel = toolchain
        .lines()
        .find_map(|l| l.strip_prefix("channel = \""))
        .and_then(|l| l.strip_suffix('"'))
        .unwrap();
    assert!(
        calls.contains(&format!(
            "rustup target add --toolchain {channel} wasm32-wasip2\n"
        )),
        "{calls}"
    );
    assert!(
        calls.contains("apt-get install -y -qq redis-server redis-tools\n"),
        "{calls}"
    );
    assert!(
        !calls.contains("openssl"),
        "the demo needs no openssl: {calls}"
    );
    assert!(
        !calls.contains("cargo install"),
        "nor the test runner: {calls}"
    );
}

#[test]
fn setup_for_the_tests_also_installs_openssl_clippy_and_the_test_runner() {
    let machine = FreshMachine::new(0);
    let out = machine.run("scripts/setup", &["test"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let calls = machine.calls();
    for call in [
        "rustup component add --toolchain",
        "apt-get install -y -qq redis-server redis-tools openssl\n",
        "cargo install cargo-nextest --locked\n",
    ] {
        assert!(calls.contains(call), "{call:?} not in {calls}");
    }
    assert!(
        calls.contains(" clippy\n") && !calls.contains(" rustfmt\n"),
        "{calls}"
    );
}

#[test]
fn without_root_setup_says_in_one_line_what_to_install() {
    let machine = FreshMachine::new(1000);
    let out = machine.run("scripts/setup", &["test"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(
            "setup: missing redis-server redis-cli openssl; install them \
             (Debian/Ubuntu: sudo apt-get install redis-server redis-tools openssl;"
        ),
        "{stderr}"
    );
    assert!(!machine.calls().contains("apt-get install"));
}

#[test]
fn without_rustup_a_missing_guest_target_is_named_in_one_line() {
    let machine = FreshMachine::new(1000);
    machine.tool("rustup", "exit 127");
    let sysroot = machine.dir.path().join("sysroot");
    std::fs::create_dir_all(sysroot.join("lib/rustlib/x86_64-unknown-linux-gnu")).unwrap();
    machine.tool("rustc", &format!("echo {}", sysroot.display()));
    let out = machine.run("scripts/setup", &["demo"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("the Rust target wasm32-wasip2 is missing")
            && stderr.contains("rustup target add wasm32-wasip2"),
        "{stderr}"
    );
}

#[test]
fn the_readme_commands_and_ci_run_the_setup_before_anything_else() {
    for script in ["scripts/demo", "scripts/test", ".ci/run"] {
        let machine = FreshMachine::new(1000);
        let out = machine.run(script, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{script}");
        assert!(
            stderr.starts_with("setup: missing redis-server"),
            "{script}: {stderr}"
        );
        let calls = machine.calls();
        assert!(
            calls.contains("rustup target add") && !calls.contains("cargo build"),
            "{script} set up first: {calls}"
        );
    }
}
