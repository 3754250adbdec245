//! A failed guest call in plain words: timeouts, limits, panics and traps,
//! each as one line a job's `last_error` can carry.

use std::time::Duration;

use wasmtime::Trap;

use super::deadline::DeadlineReached;
use super::state::JobState;

/// Puts the error of a guest call in job `state` under `timeout` in plain
/// words, without the plugin's secrets (a panic message may quote one).
pub fn explain(error: &wasmtime::Error, state: &JobState, timeout: Duration) -> String {
    state
        .secrets()
        .redact_owned(in_words(error, state, timeout))
}

fn in_words(error: &wasmtime::Error, state: &JobState, timeout: Duration) -> String {
    if let Some(limit_bytes) = state.memory_limit_reached() {
        return format!("memory limit of {} MiB reached", limit_bytes >> 20);
    }
    if error.is::<DeadlineReached>() {
        return timed_out(timeout);
    }
    let Some(trap) = error.downcast_ref::<Trap>() else {
        return one_line(error);
    };
    if *trap == Trap::Interrupt {
        return timed_out(timeout);
    }
    if let Some(panic) = state.panic_message() {
        return format!("trap: {panic}");
    }
    let place = error
        .downcast_ref::<wasmtime::WasmBacktrace>()
        .and_then(|bt| {
            bt.frames()
                .iter()
                .filter_map(|frame| frame.func_name())
                .map(|name| format!("{:#}", rustc_demangle::demangle(name)))
                .find(|name| is_user_code(name))
        })
        .map(|name| format!(" in {name}"))
        .unwrap_or_default();
    let what = trap.to_string();
    let what = what.strip_prefix("wasm trap: ").unwrap_or(&what);
    format!("trap: {what}{place}")
}

/// Wasm code interrupted by the epoch and a host call stopped at the
/// deadline are the same failure to the job.
fn timed_out(timeout: Duration) -> String {
    format!("timed out after {}", humantime::format_duration(timeout))
}

/// An error and its causes on one line.
pub fn one_line(error: &wasmtime::Error) -> String {
    format!("{error:#}")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether a guest function name is the plugin's own code rather than the
/// standard library's panic and abort machinery, which every trap passes through.
fn is_user_code(name: &str) -> bool {
    const MACHINERY: &[&str] = &["std::", "core::", "alloc::", "__rust", "rust_", "<"];
    !(MACHINERY.iter().any(|prefix| name.starts_with(prefix))
        || name.contains("panic")
        || name == "abort")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backtraces_name_the_plugins_own_function() {
        assert!(is_user_code("testbed::recurse"));
        assert!(!is_user_code("std::panicking::begin_panic"));
        assert!(!is_user_code("<T as core::any::Any>::type_id"));
        assert!(!is_user_code("abort"));
    }
}
