//! Any bytes are a payload: binary payloads travel byte for byte from the
//! producer through the plugin, a retry, the DLQ and a replay, and reach a
//! terminal only escaped.

use std::time::Duration;

use jobhost_tests::{
    Host, PluginDir, RedisServer, jobhost, jobhost_with_input, jobhost_with_stdin, keys, ok_stdout,
    wait_until,
};

const WAIT: Duration = Duration::from_secs(30);
const FAST_RETRY: &[&str] = &["--retry-base", "20ms", "--retry-cap", "100ms"];

/// Every byte value, an escape sequence, a NUL and bytes that are not UTF-8.
fn binary_payload() -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..=255u8).collect();
    bytes.extend_from_slice(b"\x1b[31mred\x00\xff\xfe");
    bytes
}

/// One stream entry with its raw field values.
type RawEntry = (String, Vec<(String, Vec<u8>)>);

fn raw_entries(conn: &mut redis::Connection, stream: &str) -> Vec<RawEntry> {
    redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query(conn)
        .expect("XRANGE")
}

/// The raw payload of every entry of `stream`, oldest first.
fn payloads(conn: &mut redis::Connection, stream: &str) -> Vec<Vec<u8>> {
    raw_entries(conn, stream)
        .into_iter()
        .filter_map(|(_, fields)| {
            fields
                .into_iter()
                .find(|(name, _)| name == "payload")
                .map(|(_, value)| value)
        })
        .collect()
}

fn dlq_ids(conn: &mut redis::Connection) -> Vec<String> {
    raw_entries(conn, keys::DLQ)
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

#[test]
fn a_binary_payload_round_trips_through_a_plugin_a_retry_and_back_through_wait() {
    let redis = RedisServer::start();
    let url = redis.url();
    let plugins = PluginDir::with(&["testbed"]);
    let _host = Host::start(&url, plugins.path(), FAST_RETRY);
    let payload = binary_payload();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &payload).unwrap();
    let path = file.path().to_str().unwrap();

    let wait = ["--wait", "--timeout", "30s", "--redis", &url];
    let from_file = [&["enqueue", "test.echo", "--payload-file", path][..], &wait].concat();
    let out = jobhost(&from_file);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        out.stdout, payload,
        "output from a file's payload, unchanged"
    );

    // From stdin, and through the delayed set by a retry.
    let from_stdin = [&["enqueue", "test.echo-retry", "-"][..], &wait].concat();
    let out = jobhost_with_input(&from_stdin, &payload);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, payload, "output after a retry, unchanged");

    // A raw XADD of binary bytes is a job like any other.
    let mut conn = redis.connection();
    let _: String = redis::cmd("XADD")
        .arg(keys::STREAM)
        .arg("*")
        .arg("v")
        .arg("1")
        .arg("type")
        .arg("test.echo")
        .arg("payload")
        .arg(&payload[..])
        .arg("produced_at")
        .arg("2026-11-24T10:00:00Z")
        .query(&mut conn)
        .unwrap();
    wait_until("the raw entry is done", WAIT, || {
        jobhost_tests::done_count(&mut conn) == 3
    });
    assert!(dlq_ids(&mut conn).is_empty(), "nothing dead-lettered");
}

#[test]
fn a_binary_dead_letter_keeps_its_bytes_and_prints_escaped() {
    let redis = RedisServer::start();
    let url = redis.url();
    let payload = binary_payload();
    let out = jobhost_with_input(&["enqueue", "test.fatal", "-", "--redis", &url], &payload);
    ok_stdout(out);
    let plugins = PluginDir::with(&["testbed"]);
    let host = Host::start(&url, plugins.path(), &[]);
    let mut conn = redis.connection();
    wait_until("the job is dead-lettered", WAIT, || {
        dlq_ids(&mut conn).len() == 1
    });
    assert_eq!(payloads(&mut conn, keys::DLQ), vec![payload.clone()]);
    let id = dlq_ids(&mut conn).remove(0);

    for args in [&["dlq", "show", &id][..], &["dlq", "list"][..]] {
        let out = jobhost(&[args, &["--redis", &url][..]].concat());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !out.stdout
                .iter()
                .any(|b| b.is_ascii_control() && *b != b'\n' && *b != b'\t'),
            "no raw control bytes reach the terminal: {:?}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let shown = ok_stdout(jobhost(&["dlq", "show", &id, "--redis", &url]));
    let binary = format!("payload: (binary, {} bytes)", payload.len());
    assert!(shown.contains(&binary), "{shown}");
    assert!(shown.contains("\\u{1b}[31mred"), "{shown}");

    // Replayed, it runs again with the same bytes (and dies again: test.fatal).
    ok_stdout(jobhost(&["dlq", "replay", &id, "--redis", &url]));
    wait_until("the replayed job is dead again", WAIT, || {
        let ids = dlq_ids(&mut conn);
        ids.len() == 1 && ids[0] != id
    });
    assert_eq!(payloads(&mut conn, keys::DLQ), vec![payload]);
    drop(host);
}

#[test]
fn batch_lines_carry_binary_payloads_in_base64() {
    let redis = RedisServer::start();
    let url = redis.url();
    // "AP8bAA==" is the bytes 00 ff 1b 00.
    let lines = "{\"type\":\"test.echo\",\"payload_base64\":\"AP8bAA==\"}\n\
                 {\"type\":\"test.echo\",\"payload\":\"text\"}\n";
    ok_stdout(jobhost_with_stdin(
        &["enqueue", "--batch", "--redis", &url],
        lines,
    ));
    let mut conn = redis.connection();
    assert_eq!(
        payloads(&mut conn, keys::STREAM),
        vec![vec![0x00, 0xff, 0x1b, 0x00], b"text".to_vec()]
    );
    let bad = "{\"type\":\"test.echo\",\"payload_base64\":\"not base64!\"}\n";
    let out = jobhost_with_stdin(&["enqueue", "--batch", "--redis", &url], bad);
    let error = jobhost_tests::one_line_error(&out);
    assert!(
        error.contains("line 1") && error.contains("base64"),
        "{error}"
    );
}
