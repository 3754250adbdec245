//! What Linux says of a process in `/proc/PID/status`: whether it still runs,
//! and its memory figures (the sandbox's bounds, the bench's RSS).

/// A figure given in kB (`VmRSS`, `VmHWM`, ...) of process `pid`; `None` once
/// the process is gone or if it has no such line.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    field_kib(&read(pid)?, field)
}

/// Whether process `pid` is gone, or a zombie whose exit nobody collected yet
/// (a child that died keeps its `/proc` entry until it is waited for).
pub fn exited(pid: u32) -> bool {
    read(pid).is_none_or(|status| status.contains("State:\tZ"))
}

fn read(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/status")).ok()
}

fn field_kib(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_figure_is_read_by_its_exact_name() {
        let status = "Name:\tjobhost\nVmHWM:\t  20480 kB\nVmRSS:\t   18432 kB\n";
        assert_eq!(field_kib(status, "VmRSS"), Some(18432));
        assert_eq!(field_kib(status, "VmHWM"), Some(20480));
        assert_eq!(field_kib(status, "Vm"), None);
    }

    #[test]
    fn this_process_runs_and_has_a_resident_size() {
        assert!(!exited(std::process::id()));
        assert!(status_kib(std::process::id(), "VmRSS").is_some_and(|kib| kib > 0));
    }
}
