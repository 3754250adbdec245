//! Outbound HTTP for plugins (`wasi:http/outgoing-handler`): only to the
//! origins a plugin's manifest grants, and never past its job's limits.
//!
//! wasmtime-wasi-http implements the interface; [`Outbound`] is its hook
//! for sending, one per job: it checks the origin, counts the job's requests,
//! cuts every wait to the job's remaining time and sends through `send.rs`.
//! What the guest waits on (the response future, body streams) it waits on in
//! `wasi:io`, whose blocking calls end at the job's deadline (`deadline.rs`).
//! A refusal reaches the guest as `internal-error` with a message saying
//! which line of which file would grant the request.

mod guest_errors;
mod origin;
mod send;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use crate::metrics::HttpMetrics;
pub use guest_errors::add_to_linker;
pub use origin::{Origin, OriginGrant};
use send::{ByteBudget, Waits};

/// Requests one job may send, by default.
pub const DEFAULT_REQUESTS: u32 = 64;
/// Response bytes one job may receive over all its requests, by default.
pub const DEFAULT_RESPONSE_BYTES: u64 = 16 << 20;
/// How long connecting (TCP, TLS, HTTP handshake) may take, by default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How far past the job's deadline the waits of a request are cut.
const PAST_DEADLINE: Duration = Duration::from_millis(500);

/// Per-job bounds on outbound HTTP (`[limits]` of the manifest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    pub requests: u32,
    pub response_bytes: u64,
    pub connect_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            requests: DEFAULT_REQUESTS,
            response_bytes: DEFAULT_RESPONSE_BYTES,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

/// What a plugin may reach over HTTP, from its manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpGrant {
    pub origins: Vec<OriginGrant>,
    pub limits: HttpLimits,
    /// The manifest to name in refusals (`NAME.toml` beside the plugin).
    pub manifest: std::path::PathBuf,
}

impl HttpGrant {
    fn allows(&self, origin: &Origin) -> bool {
        self.origins.iter().any(|grant| grant.allows(origin))
    }

    fn refusal(&self, plugin: &str, origin: &Origin) -> String {
        let manifest = self.manifest.display();
        if self.origins.is_empty() {
            format!(
                "plugin {plugin} has no HTTP grant: add [grants] http = [\"{origin}\"] to {manifest}"
            )
        } else {
            format!(
                "origin {origin} is not granted to plugin {plugin}: add \"{origin}\" to [grants] http in {manifest}"
            )
        }
    }
}

/// The sending hook of one job's `wasi:http`.
pub struct Outbound {
    grant: Arc<HttpGrant>,
    metrics: Arc<HttpMetrics>,
    plugin: String,
    deadline: Instant,
    sent: u32,
    received: Arc<AtomicU64>,
}

impl Outbound {
    pub fn new(plugin: &str, grant: Arc<HttpGrant>, metrics: Arc<HttpMetrics>) -> Self {
        Outbound {
            grant,
            metrics,
            plugin: plugin.to_owned(),
            deadline: Instant::now(),
            sent: 0,
            received: Arc::new(AtomicU64::new(0)),
        }
    }

    /// A new job starts, with its time up at `deadline`: its counts start at 0.
    pub fn start_job(&mut self, deadline: Instant) {
        self.deadline = deadline;
        self.sent = 0;
        // A body still streaming from the previous job keeps its own count.
        match Arc::get_mut(&mut self.received) {
            Some(received) => *received.get_mut() = 0,
            None => self.received = Arc::new(AtomicU64::new(0)),
        }
    }

    fn refuse(&self, origin: &str, message: String) -> PendingSend {
        self.metrics
            .request_done(&self.plugin, origin, "denied", None);
        tracing::warn!(plugin = %self.plugin, %origin, "http request refused: {message}");
        Box::new(async move { Err(Error::InternalError(Some(message))) })
    }

    fn waits(&self, options: Option<RequestOptions>) -> Waits {
        // A little past the deadline: a job out of time ends with its own
        // limit (`deadline.rs` traps the guest's wait at the deadline), not
        // with the request's wait failing a moment before.
        let left = self.deadline.saturating_duration_since(Instant::now()) + PAST_DEADLINE;
        let asked = |pick: fn(&RequestOptions) -> Option<Duration>| {
            options.as_ref().and_then(pick).unwrap_or(left).min(left)
        };
        Waits {
            connect: asked(|o| o.connect_timeout).min(self.grant.limits.connect_timeout),
            first_byte: asked(|o| o.first_byte_timeout),
            between_bytes: asked(|o| o.between_bytes_timeout),
        }
    }
}

type PendingSend = Box<dyn Future<Output = Result<send::Sent, Error>> + Send>;

impl WasiHttpHooks for Outbound {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _request_done: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> PendingSend {
        let Some(origin) = Origin::of(request.uri()) else {
            let uri = request.uri().to_string();
            return self.refuse("-", format!("{uri:?} is not an http or https URL"));
        };
        let label = origin.to_string();
        if !self.grant.allows(&origin) {
            let refusal = self.grant.refusal(&self.plugin, &origin);
            return self.refuse(&label, refusal);
        }
        let limits = self.grant.limits;
        if self.sent >= limits.requests {
            let message = format!(
                "a job of plugin {} may send at most {} HTTP requests (limits.http_requests in {})",
                self.plugin,
                limits.requests,
                self.grant.manifest.display()
            );
            return self.refuse(&label, message);
        }
        self.sent += 1;
        let budget = ByteBudget {
            used: self.received.clone(),
            limit: limits.response_bytes,
            exceeded: format!(
                "HTTP response bytes over the job's limit of {} (limits.http_response_bytes in {})",
                limits.response_bytes,
                self.grant.manifest.display()
            )
            .into(),
        };
        let waits = self.waits(options);
        let metrics = self.metrics.clone();
        let plugin = self.plugin.clone();
        Box::new(async move {
            let started = Instant::now();
            let sent = send::send(origin, request, waits, budget).await;
            let status = match &sent {
                Ok((response, _)) => response.status().as_str().to_owned(),
                Err(Error::ConnectionTimeout | Error::ConnectionReadTimeout) => "timeout".into(),
                Err(_) => "error".into(),
            };
            metrics.request_done(&plugin, &label, &status, Some(started.elapsed()));
            sent
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_the_origin_and_the_line_that_would_grant_it() {
        let origin = Origin::of(&"http://127.0.0.1:9/x".parse().unwrap()).unwrap();
        let mut grant = HttpGrant {
            manifest: "/plugins/probe.toml".into(),
            ..HttpGrant::default()
        };
        assert_eq!(
            grant.refusal("probe", &origin),
            "plugin probe has no HTTP grant: add [grants] http = [\"http://127.0.0.1:9\"] to /plugins/probe.toml"
        );
        grant.origins = vec![OriginGrant::parse("http://127.0.0.1:8").unwrap()];
        assert!(!grant.allows(&origin));
        assert_eq!(
            grant.refusal("probe", &origin),
            "origin http://127.0.0.1:9 is not granted to plugin probe: add \"http://127.0.0.1:9\" to [grants] http in /plugins/probe.toml"
        );
    }
}
