//! The "HTTP POST per job" measure (SPEC §10): jobs/s of the `webhook`
//! plugin posting each job to a loopback responder (a fresh instance per
//! job), beside the same number of `hello` jobs and the same number of bare
//! POSTs sent from here, so the report can say what a job that makes one
//! HTTP call costs the host beyond the call itself.
//!
//! The responder is the fastest thing that is still HTTP/1.1: it reads a
//! request (sized or chunked body), answers `200 ok` with `Connection:
//! close` and closes; no routes, no recording. The test harness's server
//! records and routes every request on its own thread, which would measure
//! itself rather than the host.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::Context;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{PAYLOAD, drain_rate};

const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nok";

/// What one run of the measure found.
#[derive(Debug, Clone, Copy)]
pub struct HttpFigures {
    /// Jobs/s of `webhook`, one POST each.
    pub webhook: f64,
    /// Jobs/s of `hello` draining the same number of jobs the same way.
    pub hello: f64,
    /// POSTs/s sent straight to the responder, `concurrency` at a time.
    pub bare: f64,
}

impl HttpFigures {
    /// µs a webhook job costs beyond a hello job and beyond its bare POST:
    /// the host's own share of an HTTP call (grant check, limits, the
    /// wasi-http plumbing). Per job in wall time at the same concurrency.
    pub fn overhead_us(&self) -> f64 {
        (1.0 / self.webhook - 1.0 / self.hello - 1.0 / self.bare) * 1e6
    }
}

/// A loopback responder serving until dropped; counts what it answered.
struct Responder {
    port: u16,
    answered: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Responder {
    async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let answered = Arc::new(AtomicU64::new(0));
        let counter = answered.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    let _ = answer(stream, &counter).await;
                });
            }
        });
        Ok(Responder {
            port,
            answered,
            task,
        })
    }

    fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn answered(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one request to its end, counts it and answers it (counted first,
/// so whoever has the answer sees the count).
async fn answer(mut stream: TcpStream, answered: &AtomicU64) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(at) = find(&buf, b"\r\n\r\n") {
            break at + 4;
        }
        if buf.len() > 64 * 1024 {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length = head.lines().find_map(|l| {
        l.strip_prefix("content-length:")
            .and_then(|v| v.trim().parse::<usize>().ok())
    });
    let chunked = head
        .lines()
        .any(|l| l.starts_with("transfer-encoding:") && l.contains("chunked"));
    loop {
        let body = &buf[head_end..];
        let complete = match (length, chunked) {
            (Some(length), _) => body.len() >= length,
            // The last chunk (no trailers from the clients measured here).
            (None, true) => body.ends_with(b"0\r\n\r\n"),
            (None, false) => true,
        };
        if complete {
            break;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    answered.fetch_add(1, Ordering::Relaxed);
    stream.write_all(RESPONSE).await?;
    stream.shutdown().await
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A plugins folder holding `webhook.wasm` (from `plugins`) and a manifest
/// that grants `origin` and posts there.
fn webhook_folder(plugins: &Path, origin: &str) -> anyhow::Result<TempDir> {
    let folder = tempfile::tempdir()?;
    let wasm = plugins.join("webhook.wasm");
    std::fs::copy(&wasm, folder.path().join("webhook.wasm"))
        .with_context(|| format!("copying {}", wasm.display()))?;
    std::fs::write(
        folder.path().join("webhook.toml"),
        format!(
            "[grants]\nhttp = [{origin:?}]\n\n[limits]\nmax_attempts = 1\n\n[config]\nurl = \"{origin}/bench\"\n"
        ),
    )?;
    Ok(folder)
}

/// A plugins folder holding only `hello.wasm` (from `plugins`).
fn hello_folder(plugins: &Path) -> anyhow::Result<TempDir> {
    let folder = tempfile::tempdir()?;
    let wasm = plugins.join("hello.wasm");
    std::fs::copy(&wasm, folder.path().join("hello.wasm"))
        .with_context(|| format!("copying {}", wasm.display()))?;
    Ok(folder)
}

/// POSTs/s of `count` bare POSTs of [`PAYLOAD`], `concurrency` at a time,
/// each on a connection of its own (as the host's client opens them).
async fn bare_posts(port: u16, count: usize, concurrency: usize) -> anyhow::Result<f64> {
    let request = format!(
        "POST /bench HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{PAYLOAD}",
        PAYLOAD.len()
    );
    let request: Arc<[u8]> = request.into_bytes().into();
    let left = Arc::new(AtomicU64::new(count as u64));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (request, left) = (request.clone(), left.clone());
        workers.spawn(async move {
            while left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
            {
                let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
                stream.write_all(&request).await?;
                let mut response = Vec::new();
                stream.read_to_end(&mut response).await?;
                anyhow::ensure!(
                    response.starts_with(b"HTTP/1.1 200"),
                    "the responder answered {:?}",
                    String::from_utf8_lossy(&response)
                );
            }
            anyhow::Ok(())
        });
    }
    while let Some(worker) = workers.join_next().await {
        worker.context("bare POST worker")??;
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

/// One run: `count` webhook jobs, `count` hello jobs and `count` bare POSTs,
/// all at `concurrency`, with the plugins of `plugins` (which must hold
/// `webhook.wasm` and `hello.wasm`).
pub async fn http_post_per_job(
    url: &str,
    plugins: &Path,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<HttpFigures> {
    let responder = Responder::start().await?;
    let webhooks = webhook_folder(plugins, &responder.origin())?;
    let hellos = hello_folder(plugins)?;
    // A small prefetch: a webhook job is slow next to a hello job, and
    // holding hundreds of them would only measure the queue.
    let prefetch = 16;
    let webhook = drain_rate(
        url,
        webhooks.path(),
        "webhook.bench",
        count,
        concurrency,
        prefetch,
    )
    .await?;
    anyhow::ensure!(
        responder.answered() >= count as u64,
        "{count} webhook jobs done, but the responder answered {} POSTs",
        responder.answered()
    );
    let hello = drain_rate(
        url,
        hellos.path(),
        "hello.bench",
        count,
        concurrency,
        prefetch,
    )
    .await?;
    let bare = bare_posts(responder.port, count, concurrency).await?;
    Ok(HttpFigures {
        webhook,
        hello,
        bare,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_responder_answers_sized_and_chunked_posts() {
        let responder = Responder::start().await.unwrap();
        for request in [
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello".to_owned(),
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
                .to_owned(),
        ] {
            let mut stream = TcpStream::connect(("127.0.0.1", responder.port))
                .await
                .unwrap();
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut response = Vec::new();
            stream.read_to_end(&mut response).await.unwrap();
            assert_eq!(response, RESPONSE);
        }
        let rate = bare_posts(responder.port, 50, 2).await.unwrap();
        assert!(rate > 0.0);
        assert_eq!(responder.answered(), 52);
    }
}
