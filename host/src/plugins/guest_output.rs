//! Guest stdout/stderr, forwarded to the host log line by line and tagged with
//! plugin and job id. Bounded: past a budget per job the rest is dropped with
//! one note, so a flooding guest costs neither memory nor a trap (wasmtime's
//! in-memory pipe would trap the guest when full). The plugin's secrets are
//! redacted from each line (a secret cut by the line length limit is not).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use super::config::Secrets;

/// Bytes of one stream kept per job before the rest is dropped.
pub const OUTPUT_BUDGET: usize = 64 << 10;
/// A longer line is cut and logged in pieces.
const MAX_LINE: usize = 4096;

/// One guest stream of one job.
#[derive(Clone)]
pub struct GuestOutput(Arc<Mutex<LineSink>>);

struct LineSink {
    plugin: String,
    job_id: String,
    stream: &'static str,
    line: Vec<u8>,
    budget: usize,
    truncated: bool,
    /// A Rust guest's panic report (`panicked at FILE:LINE:COL:` + message),
    /// kept to explain the trap that follows it.
    panic: Option<String>,
    secrets: Arc<Secrets>,
}

impl GuestOutput {
    pub fn new(plugin: &str, job_id: &str, stream: &'static str, secrets: Arc<Secrets>) -> Self {
        GuestOutput(Arc::new(Mutex::new(LineSink {
            plugin: plugin.to_owned(),
            job_id: job_id.to_owned(),
            stream,
            line: Vec::new(),
            budget: OUTPUT_BUDGET,
            truncated: false,
            panic: None,
            secrets,
        })))
    }

    /// The job is over: logs what is left of an unfinished line now, rather
    /// than when the store state is dropped or handed to the next job.
    pub fn finish(&self) {
        self.0.lock().expect("guest output lock").emit();
    }

    /// Hands the stream to the next job of a reused instance: what is left of
    /// an unfinished line is logged under the job that wrote it, and the new
    /// job gets a full budget, its own tag and no panic report.
    pub fn restart(&self, job_id: &str) {
        let mut sink = self.0.lock().expect("guest output lock");
        sink.emit();
        sink.job_id.clear();
        sink.job_id.push_str(job_id);
        sink.budget = OUTPUT_BUDGET;
        sink.truncated = false;
        sink.panic = None;
    }

    /// The guest's panic report, if it printed one.
    pub fn panic_message(&self) -> Option<String> {
        self.0.lock().expect("guest output lock").panic.clone()
    }

    fn accept(&self, bytes: &[u8]) {
        self.0.lock().expect("guest output lock").accept(bytes);
    }
}

impl LineSink {
    fn accept(&mut self, bytes: &[u8]) {
        let kept = bytes.len().min(self.budget);
        self.budget -= kept;
        for &byte in &bytes[..kept] {
            if byte == b'\n' {
                self.emit();
            } else {
                self.line.push(byte);
                if self.line.len() >= MAX_LINE {
                    self.emit();
                }
            }
        }
        if kept < bytes.len() && !self.truncated {
            self.truncated = true;
            self.emit();
            tracing::warn!(
                target: "plugin", plugin = %self.plugin, job_id = %self.job_id, stream = %self.stream,
                "guest {} truncated after {OUTPUT_BUDGET} bytes", self.stream
            );
        }
    }

    fn emit(&mut self) {
        if self.line.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.line);
        let text = self.secrets.redact(&text);
        match &mut self.panic {
            // The line after the location is the panic message.
            Some(report) if report.ends_with(':') => {
                report.push(' ');
                report.push_str(&text);
            }
            None => {
                if let Some(at) = text.find("panicked at ") {
                    self.panic = Some(text[at..].to_owned());
                }
            }
            Some(_) => {}
        }
        tracing::info!(target: "plugin", plugin = %self.plugin, job_id = %self.job_id, stream = %self.stream, "{text}");
        self.line.clear();
    }
}

impl Drop for LineSink {
    /// The job is over: log what is left of an unfinished line.
    fn drop(&mut self) {
        self.emit();
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    /// Written to directly: jobs run on plain threads, without an async runtime.
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.accept(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        // Always ready: output past the budget is dropped, never refused.
        Ok(1 << 20)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.accept(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_past_the_budget_is_dropped_not_buffered() {
        let output = GuestOutput::new("p", "j", "stdout", Default::default());
        let chunk = vec![b'x'; 1000];
        for _ in 0..(OUTPUT_BUDGET / 1000 + 50) {
            output.accept(&chunk);
        }
        let sink = output.0.lock().unwrap();
        assert!(sink.truncated);
        assert_eq!(sink.budget, 0);
        assert!(sink.line.len() < MAX_LINE);
    }

    #[test]
    fn a_restarted_stream_has_a_full_budget_and_no_panic_report() {
        let output = GuestOutput::new("p", "j1", "stderr", Default::default());
        output.accept(&vec![b'x'; OUTPUT_BUDGET + 10]);
        output.accept(b"panicked at src/lib.rs:1:1:\nboom\n");
        output.restart("j2");
        let sink = output.0.lock().unwrap();
        assert_eq!(sink.job_id, "j2");
        assert_eq!(sink.budget, OUTPUT_BUDGET);
        assert!(!sink.truncated && sink.panic.is_none() && sink.line.is_empty());
    }

    #[test]
    fn a_rust_panic_report_is_kept_to_explain_the_trap() {
        let output = GuestOutput::new("p", "j", "stderr", Default::default());
        output
            .accept(b"thread '<unnamed>' (1) panicked at src/lib.rs:13:25:\nboom\nnote: run with");
        assert_eq!(
            output.panic_message().as_deref(),
            Some("panicked at src/lib.rs:13:25: boom")
        );
    }
}
