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

const MIB: usize = 1 << 20;
/// Of the hostile case in issue #14: 20 entries of 20 MiB.
const HOSTILE: usize = 20;
const HOSTILE_BYTES: usize = 20 * MIB;

/// A raw XADD of a job whose payload is `payload`, bytes as they are.
fn xadd_payload(conn: &mut redis::Connection, job_type: &str, payload: &[u8]) -> String {
    redis::cmd("XADD")
        .arg(keys::STREAM)
        .arg("*")
        .arg("v")
        .arg("1")
        .arg("type")
        .arg(job_type)
        .arg("payload")
        .arg(payload)
        .arg("produced_at")
        .arg("2026-11-24T10:00:00Z")
        .query(conn)
        .expect("XADD")
}

/// An entry's fields, bytes as they are.
type Fields = Vec<(String, Vec<u8>)>;

/// Every DLQ entry's fields, read one at a time (each may be 20 MiB).
fn dlq_entries(conn: &mut redis::Connection) -> Vec<Fields> {
    let mut found = Vec::new();
    let mut from = "-".to_owned();
    loop {
        let reply: Vec<(String, Fields)> = redis::cmd("XRANGE")
            .arg(keys::DLQ)
            .arg(&from)
            .arg("+")
            .arg("COUNT")
            .arg(1)
            .query(conn)
            .expect("XRANGE");
        let Some((id, fields)) = reply.into_iter().next() else {
            return found;
        };
        from = format!("({id}");
        found.push(fields);
    }
}

fn value<'f>(fields: &'f [(String, Vec<u8>)], name: &str) -> &'f [u8] {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_slice())
        .unwrap_or_else(|| panic!("no field {name}"))
}

/// A payload of `len` bytes that differs per `index`, so a DLQ entry can only
/// match its own original.
fn hostile_payload(index: usize, len: usize) -> Vec<u8> {
    let mut payload = vec![b'a' + (index % 26) as u8; len];
    payload[..8].copy_from_slice(format!("{index:08}").as_bytes());
    payload
}

/// Peak RSS of a host that dead-letters 20 entries of 20 MiB: the host
/// itself (wasmtime, the compiled plugin, buffers) is some tens of MiB in a
/// debug build; the budget (at most `--max-held-bytes` of entries, none of
/// the oversized ones' bytes) adds little, and the wait for new entries may
/// bring one oversized entry whole (redis client buffer plus the parsed reply,
/// about 2.5 × 20 MiB) before it is dropped. Before the budget the host held
/// every entry of a read at once and copied each into its DLQ write: ~680 MiB.
const PEAK_RSS_BOUND_KIB: u64 = 200 * 1024;

#[test]
fn hostile_oversized_entries_are_dead_lettered_in_place_and_the_hosts_peak_rss_stays_bounded() {
    // The default budget (256 MiB), and one barely above the largest entry.
    for budget in [None, Some("1200000")] {
        let redis = RedisServer::start();
        let mut conn = redis.connection();
        let plugins = PluginDir::with(&["hello"]);
        let mut args = HOST_ARGS.to_vec();
        if let Some(budget) = budget {
            args.extend(["--max-held-bytes", budget]);
        }
        // Started first: the oversized entries arrive while it waits for new ones.
        let host = Host::start(&redis.url(), plugins.path(), &args);
        hello_jobs(&mut conn, 0);
        let hostile: Vec<String> = (0..HOSTILE)
            .map(|i| xadd_payload(&mut conn, "hello.batch", &hostile_payload(i, HOSTILE_BYTES)))
            .collect();
        hello_jobs(&mut conn, NEIGHBOURS);
        wait_until("every job is recorded", WAIT, || {
            done_count(&mut conn) == 2 * NEIGHBOURS as u64
                && counter(&mut conn, "dead") == HOSTILE as u64
        });
        let peak = host.status_kib("VmHWM").expect("the host runs");
        assert!(
            peak < PEAK_RSS_BOUND_KIB,
            "budget {budget:?}: peak RSS {peak} KiB, bound {PEAK_RSS_BOUND_KIB} KiB"
        );
        eprintln!(
            "budget {budget:?}: host peak RSS (VmHWM) {} MiB",
            peak / 1024
        );

        let dead = dlq_entries(&mut conn);
        assert_eq!(dead.len(), HOSTILE, "{}", host.tail());
        for fields in &dead {
            let original = String::from_utf8(value(fields, "original_id").to_vec()).unwrap();
            let index = hostile
                .iter()
                .position(|id| *id == original)
                .unwrap_or_else(|| panic!("{original} is no hostile entry"));
            assert!(
                value(fields, "payload") == hostile_payload(index, HOSTILE_BYTES).as_slice(),
                "the DLQ entry of {original} holds its whole payload"
            );
            assert_eq!(value(fields, "type"), b"hello.batch");
            assert_eq!(value(fields, "original_stream"), keys::STREAM.as_bytes());
            assert_eq!(value(fields, "consumer_group"), keys::GROUP.as_bytes());
            assert_eq!(value(fields, "total_attempts"), b"1");
            assert_eq!(value(fields, "replay_count"), b"0");
            let error = String::from_utf8_lossy(value(fields, "last_error")).into_owned();
            assert_eq!(
                error,
                format!(
                    "entry of {} bytes exceeds the largest the host takes ({} bytes)",
                    HOSTILE_BYTES + 55,
                    MIB + 64 * 1024
                )
            );
        }
        assert!(
            entries(&mut conn, keys::STREAM).is_empty(),
            "every entry is deleted"
        );
        assert_eq!(pending_count(&mut conn), 0);
    }
}

#[test]
fn the_host_never_holds_more_entry_bytes_than_max_held_bytes() {
    const BUDGET: usize = 3 * MIB;
    const JOBS: usize = 12;
    // 1 MB entries, each a 100 ms sleep: the job threads hold them long
    // enough for every read to find the budget taken.
    let mut payload = b"100".to_vec();
    payload.resize(1_000_000, b' ');
    let redis = RedisServer::start();
    let mut conn = redis.connection();
    for _ in 0..JOBS {
        xadd_payload(&mut conn, "test.sleep", &payload);
    }
    let plugins = PluginDir::with(&["testbed"]);
    let host = Host::builder(&redis.url(), plugins.path())
        .args(&[
            "--concurrency",
            "2",
            "--max-held-bytes",
            &BUDGET.to_string(),
        ])
        .metrics()
        .start();
    let (mut held_max, mut in_flight_max) = (0.0f64, 0.0f64);
    wait_until("every job is done", WAIT, || {
        let held = host
            .metric("jobhost_held_bytes")
            .expect("the held-bytes gauge");
        let in_flight = host
            .metric("jobhost_jobs_in_flight")
            .expect("the in-flight gauge");
        held_max = held_max.max(held);
        in_flight_max = in_flight_max.max(in_flight);
        done_count(&mut conn) == JOBS as u64
    });
    assert!(held_max <= BUDGET as f64, "held up to {held_max} bytes");
    assert!(
        held_max >= 1_000_000.0,
        "an entry was seen held: {held_max}"
    );
    // Room for three 1 MB entries in 3 MiB, not for the prefetch's 128.
    assert!(
        in_flight_max <= 3.0,
        "{in_flight_max} jobs in flight at once"
    );
    wait_until("the host holds nothing once all is recorded", WAIT, || {
        host.metric("jobhost_held_bytes") == Some(0.0)
    });
}

#[test]
fn a_budget_below_the_largest_entry_is_refused_in_one_line() {
    let plugins = PluginDir::with(&["hello"]);
    let dir = plugins.path().to_str().unwrap();
    let out = jobhost(&["run", "--plugins", dir, "--max-held-bytes", "1000000"]);
    let error = one_line_error(&out);
    assert!(
        error.contains(
            "--max-held-bytes 1000000 is below the largest entry the host takes: 1114112 bytes"
        ),
        "{error}"
    );
    // --print-config shows any value; only running checks it.
    let out = jobhost(&[
        "run",
        "--plugins",
        dir,
        "--max-held-bytes",
        "1000000",
        "--print-config",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn oversized_entries_in_a_stream_small_enough_to_read_unscreened_are_dead_lettered_in_place_too() {
    // 3 × 4 MiB: under the 16 largest entries up to which reads skip the
    // screening script, so they arrive whole and are dropped as parsed.
    const BYTES: usize = 4 * MIB;
    let redis = RedisServer::start();
    let mut conn = redis.connection();
    let ids: Vec<String> = (0..3)
        .map(|i| xadd_payload(&mut conn, "hello.batch", &hostile_payload(i, BYTES)))
        .collect();
    hello_jobs(&mut conn, 0);
    let plugins = PluginDir::with(&["hello"]);
    let host = Host::start(&redis.url(), plugins.path(), HOST_ARGS);
    wait_until("every job is recorded", WAIT, || {
        done_count(&mut conn) == NEIGHBOURS as u64 && counter(&mut conn, "dead") == 3
    });
    let dead = dlq_entries(&mut conn);
    assert_eq!(dead.len(), 3, "{}", host.tail());
    // Dead-lettered in whichever order the workers finish, so match by id.
    for fields in &dead {
        let original = String::from_utf8(value(fields, "original_id").to_vec()).unwrap();
        let index = ids
            .iter()
            .position(|id| *id == original)
            .unwrap_or_else(|| panic!("{original} is no hostile entry"));
        assert!(value(fields, "payload") == hostile_payload(index, BYTES).as_slice());
        assert!(
            String::from_utf8_lossy(value(fields, "last_error")).starts_with(&format!(
                "entry of {} bytes exceeds the largest",
                BYTES + 55
            )),
            "{}",
            String::from_utf8_lossy(value(fields, "last_error"))
        );
    }
    assert!(entries(&mut conn, keys::STREAM).is_empty());
}
