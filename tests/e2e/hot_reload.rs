//! Hot reload (SPEC §6): a plugin file replaced, broken or deleted while the
//! host runs under load; restarts served from the compiled-code cache.

use std::path::Path;
use std::time::{Duration, Instant};

use jobhost_tests::{
    Host, PluginDir, RedisServer, built_plugins, enqueue, entries, jobhost_command, keys,
    pending_count, wait_until,
};

const WAIT: Duration = Duration::from_secs(60);

fn greeter(version: u32) -> std::path::PathBuf {
    built_plugins().join(format!("greeter_v{version}.wasm"))
}

/// Replaces `file` the way build tools do: write a temp file, then rename it over.
fn replace_by_rename(from: &Path, file: &Path) {
    let temp = file.with_extension("wasm.partial");
    std::fs::copy(from, &temp).unwrap();
    std::fs::rename(&temp, file).unwrap();
}

fn job_lines(log: &str, job_type: &str) -> Vec<String> {
    let needle = format!("type={job_type} ");
    log.lines()
        .filter(|l| l.contains("job finished") && l.contains(&needle))
        .map(str::to_owned)
        .collect()
}

#[test]
fn replaced_plugin_serves_new_jobs_within_a_second_and_no_job_is_lost_or_run_twice() {
    let redis = RedisServer::start();
    let cache = tempfile::tempdir().unwrap();
    let cache_dir = cache.path().to_str().unwrap();
    // Compile version 2 into the shared cache first, as a previous deploy
    // would have: the reload then measures swapping, not a debug-build compile.
    let warm = PluginDir::with(&[]);
    std::fs::copy(greeter(2), warm.path().join("greeter.wasm")).unwrap();
    drop(Host::start(
        &redis.url(),
        warm.path(),
        &["--cache-dir", cache_dir],
    ));

    let plugins = PluginDir::with(&[]);
    let file = plugins.path().join("greeter.wasm");
    std::fs::copy(greeter(1), &file).unwrap();
    let host = Host::start(&redis.url(), plugins.path(), &["--cache-dir", cache_dir]);
    let jobs = 900;
    let mut generator = jobhost_command(&[
        "generate",
        "--type",
        "greet.load",
        "--rate",
        "300/s",
        "--count",
        &jobs.to_string(),
        "--redis",
        &redis.url(),
    ])
    .spawn()
    .unwrap();
    wait_until("a third of the jobs are done", WAIT, || {
        job_lines(&host.log(), "greet.load").len() >= jobs / 3
    });

    let written = Instant::now();
    replace_by_rename(&greeter(2), &file);
    host.wait_for_log(
        "plugin reloaded plugin=greeter version=2.0.0",
        Duration::from_secs(1),
    );
    println!(
        "reload latency (file written → new version swapped in): {:?}",
        written.elapsed()
    );

    assert!(generator.wait().unwrap().success());
    let mut conn = redis.connection();
    wait_until("every job is done", WAIT, || {
        job_lines(&host.log(), "greet.load").len() >= jobs
    });
    wait_until("nothing left", WAIT, || {
        pending_count(&mut conn) == 0 && entries(&mut conn, keys::STREAM).is_empty()
    });
    let lines = job_lines(&host.log(), "greet.load");
    assert_eq!(lines.len(), jobs, "every job ran exactly once");
    assert!(lines.iter().all(|l| l.contains("outcome=done")));
    assert!(entries(&mut conn, keys::DLQ).is_empty());
    let first_v2 = lines
        .iter()
        .position(|l| l.contains("version=2.0.0"))
        .expect("jobs ran on version 2");
    // Jobs already running at the swap finish on version 1; no new job starts on it.
    let late_v1 = lines[first_v2..]
        .iter()
        .filter(|l| l.contains("version=1.0.0"))
        .count();
    assert!(
        late_v1 <= 4,
        "{late_v1} jobs ran on version 1 after version 2 served"
    );
    assert!(first_v2 > 0 && lines.last().unwrap().contains("version=2.0.0"));
}

#[test]
fn broken_file_keeps_the_old_version_and_a_copy_in_place_replaces_it() {
    let redis = RedisServer::start();
    let plugins = PluginDir::with(&[]);
    let file = plugins.path().join("greeter.wasm");
    std::fs::copy(greeter(1), &file).unwrap();
    let host = Host::start(&redis.url(), plugins.path(), &[]);

    std::fs::write(&file, b"half a build").unwrap();
    host.wait_for_log(
        "not a WebAssembly file; the previous version keeps serving",
        WAIT,
    );
    let id = enqueue(&redis.url(), &["greet.during", "x"]);
    host.wait_for_log(
        &format!("job_id={id} type=greet.during plugin=greeter attempt=1 outcome=done"),
        WAIT,
    );
    let line = job_lines(&host.log(), "greet.during").pop().unwrap();
    assert!(line.contains("version=1.0.0"), "{line}");
    assert_eq!(
        host.log().matches("not a WebAssembly file").count(),
        1,
        "error logged once"
    );

    std::fs::copy(greeter(2), &file).unwrap();
    host.wait_for_log("plugin reloaded plugin=greeter version=2.0.0", WAIT);
    let id = enqueue(&redis.url(), &["greet.after", "x"]);
    host.wait_for_log(
        &format!("job_id={id} type=greet.after plugin=greeter attempt=1 outcome=done"),
        WAIT,
    );
    assert!(job_lines(&host.log(), "greet.after")[0].contains("version=2.0.0"));
}

#[test]
fn deleted_plugin_stops_handling_its_types() {
    let redis = RedisServer::start();
    let plugins = PluginDir::with(&["hello"]);
    std::fs::copy(greeter(1), plugins.path().join("greeter.wasm")).unwrap();
    let host = Host::start(&redis.url(), plugins.path(), &["--max-attempts", "1"]);
    std::fs::remove_file(plugins.path().join("greeter.wasm")).unwrap();
    host.wait_for_log("plugin removed", WAIT);
    let id = enqueue(&redis.url(), &["greet.orphan", "x"]);
    host.wait_for_log(
        &format!("job_id={id} type=greet.orphan plugin=- attempt=1 outcome=dead"),
        WAIT,
    );
    let dead = entries(&mut redis.connection(), keys::DLQ);
    assert!(dead[0].1["last_error"].contains("no handler for type greet.orphan"));
    let id = enqueue(&redis.url(), &["hello.still", "x"]);
    host.wait_for_log(
        &format!("job_id={id} type=hello.still plugin=hello attempt=1 outcome=done"),
        WAIT,
    );
}

#[test]
fn restart_is_served_from_the_compiled_code_cache_and_a_corrupt_entry_is_rebuilt() {
    let redis = RedisServer::start();
    let cache = tempfile::tempdir().unwrap();
    let cache_dir = cache.path().to_str().unwrap();
    let plugins = PluginDir::with(&["hello"]);
    let start = || Host::start(&redis.url(), plugins.path(), &["--cache-dir", cache_dir]);

    let first = start();
    assert!(
        first.log().contains("plugin loaded plugin=hello") && first.log().contains("cache=miss"),
        "{}",
        first.log()
    );
    drop(first);
    let second = start();
    assert!(second.log().contains("cache=hit"), "{}", second.log());
    drop(second);

    for entry in std::fs::read_dir(cache.path()).unwrap() {
        let path = entry.unwrap().path();
        let mut bytes = std::fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
    }
    let third = start();
    assert!(third.log().contains("cache=rebuilt"), "{}", third.log());
    let id = enqueue(&redis.url(), &["hello.cached", "x"]);
    third.wait_for_log(
        &format!("job_id={id} type=hello.cached plugin=hello attempt=1 outcome=done"),
        WAIT,
    );
}
