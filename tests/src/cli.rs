//! The producer's calls tests make most: `jobhost enqueue`, with and without `--wait`.

use std::process::Output;

use crate::jobhost;

/// `jobhost enqueue ARGS... --redis URL` (ARGS: the type, the payload, then any
/// flags), which must succeed; returns the job id it printed.
pub fn enqueue(redis_url: &str, args: &[&str]) -> String {
    let out = jobhost(&[&["enqueue"], args, &["--redis", redis_url]].concat());
    assert!(
        out.status.success(),
        "jobhost enqueue {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `jobhost enqueue ARGS... --wait --timeout TIMEOUT --redis URL`: what it did
/// (the handler's output and exit 0, or the final error).
pub fn enqueue_and_wait(redis_url: &str, args: &[&str], timeout: &str) -> Output {
    let wait = ["--wait", "--timeout", timeout, "--redis", redis_url];
    jobhost(&[&["enqueue"], args, &wait].concat())
}
