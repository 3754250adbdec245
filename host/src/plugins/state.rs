//! What one job's store holds: its WASI context (with HTTP, config and
//! key-value state), its limits, and what the guest asked of the host while
//! it ran.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::bindings::LogLevel;
use super::bindings::jobhost::plugin::{host, types};
use super::bindings::wasi::config::store as config_store;
use super::cancel::{Cancel, Cancelled};
use super::config::{PluginConfig, Secrets};
use super::guest_output::GuestOutput;
use super::kv::{JobKv, KvView};
use super::limiter::MemoryLimiter;
use super::manifest::Grants;
use super::outbound::Outbound;
use super::services::Services;
use crate::envelope::JobType;

/// Follow-up jobs one job may emit; more is a guest bug, not a workload.
pub const MAX_FOLLOW_UPS: usize = 1000;
/// Largest payload of one follow-up job.
pub const MAX_FOLLOW_UP_PAYLOAD: usize = 1 << 20;

/// A job a handler asked to enqueue; written only if the handler succeeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowUp {
    pub job_type: JobType,
    pub payload: Vec<u8>,
}

/// The store data of one job's instance.
pub struct JobState {
    wasi: WasiCtx,
    stdout: GuestOutput,
    stderr: GuestOutput,
    table: ResourceTable,
    pub(super) memory: MemoryLimiter,
    /// When the job's time is up, for host calls that wait (see `deadline.rs`);
    /// wasm code is stopped by the store's epoch deadline at the same time.
    deadline: Instant,
    /// Set when the job is cancelled while it runs.
    cancel: Cancel,
    plugin: String,
    job_id: String,
    pub(super) follow_ups: Vec<FollowUp>,
    http: WasiHttpCtx,
    outbound: Outbound,
    config: PluginConfig,
    kv: JobKv,
}

impl JobState {
    pub fn new(
        plugin: &str,
        job_id: &str,
        memory_bytes: usize,
        grants: &Grants,
        services: &Services,
    ) -> Self {
        // The default WASI context grants nothing: no files, no network, no
        // environment; clocks and randomness are allowed. Outbound HTTP goes
        // only where `grants.http` says (see `outbound/`).
        let secrets = grants.config.secrets();
        let stdout = GuestOutput::new(plugin, job_id, "stdout", secrets.clone());
        let stderr = GuestOutput::new(plugin, job_id, "stderr", secrets.clone());
        let mut wasi = WasiCtx::builder();
        wasi.stdout(stdout.clone())
            .stderr(stderr.clone())
            .envs(&grants.env);
        for dir in &grants.dirs {
            if let Err(error) = wasi.preopened_dir(&dir.host, &dir.guest, FsPerms::ReadOnly) {
                tracing::warn!(%plugin, %job_id, host = %dir.host.display(), %error, "granted directory not available");
            }
        }
        let wasi = wasi.build();
        JobState {
            wasi,
            stdout,
            stderr,
            table: ResourceTable::new(),
            memory: MemoryLimiter::new(memory_bytes),
            deadline: Instant::now(),
            cancel: Cancel::never(),
            plugin: plugin.to_owned(),
            job_id: job_id.to_owned(),
            follow_ups: Vec::new(),
            http: WasiHttpCtx::new(),
            outbound: Outbound::new(plugin, grants.http.clone(), services.http_metrics.clone()),
            config: grants.config.clone(),
            kv: JobKv::new(grants.kv.clone(), services.kv.clone()),
        }
    }
}

impl JobState {
    /// Makes a reused instance's state that of job `job_id`: its own log tag,
    /// fresh output budgets, no follow-ups or key-value writes, and no panic
    /// report or memory limit hit of the job before.
    pub fn start_job(&mut self, job_id: &str) {
        self.memory.reset();
        self.job_id.clear();
        self.job_id.push_str(job_id);
        self.stdout.restart(job_id);
        self.stderr.restart(job_id);
        self.follow_ups.clear();
        self.kv.start_job();
    }

    /// The job runs for `queue`, whose buckets it reads and writes.
    pub fn set_queue(&mut self, queue: &str) {
        if self.kv.queue != queue {
            self.kv.queue.clear();
            self.kv.queue.push_str(queue);
        }
    }

    /// What a key-value call needs: the job's grant, store and writes, its
    /// deadline and resources.
    pub fn kv_view(&mut self) -> KvView<'_> {
        KvView {
            kv: &mut self.kv,
            table: &mut self.table,
            deadline: self.deadline,
            plugin: &self.plugin,
        }
    }

    /// The writes a successful job commits, or the key-value limit it broke.
    pub fn take_kv_writes(&mut self) -> Result<Vec<super::kv::KvWrite>, String> {
        match self.kv.writes.violation() {
            Some(violation) => Err(violation.to_owned()),
            None => Ok(self.kv.writes.take()),
        }
    }

    /// The job's call returned: logs what is left of its output lines.
    pub fn finish_job(&self) {
        self.stdout.finish();
        self.stderr.finish();
    }

    /// Readies the state a finished store gave back (`Store::into_data`) for a
    /// fresh instance of the same plugin load running job `job_id`: as
    /// [`start_job`](Self::start_job), plus an empty resource table. What stays
    /// is host-side and read-only to guests (the granted environment and
    /// directories, clocks, the random generators' state), so nothing of the
    /// previous job is visible; it saves building a WASI context per job.
    pub fn recycle(&mut self, job_id: &str) {
        self.start_job(job_id);
        self.table = ResourceTable::new();
    }

    /// What a panicking Rust guest printed about its panic.
    pub fn panic_message(&self) -> Option<String> {
        self.stderr.panic_message()
    }

    /// The job's time is up `timeout` from now (set as each job starts).
    pub fn set_deadline(&mut self, timeout: Duration) {
        self.deadline = Instant::now() + timeout;
        self.outbound.start_job(self.deadline);
    }

    /// The job is cancelled through `cancel` (set as each job starts).
    pub fn set_cancel(&mut self, cancel: &Cancel) {
        self.cancel = cancel.clone();
    }

    /// Whether the job was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_set()
    }

    /// At an epoch check: trap if the job was cancelled or its time is up,
    /// else run on until the next check (or the deadline, if sooner).
    pub fn epoch_check(&self) -> wasmtime::Result<wasmtime::UpdateDeadline> {
        if self.cancel.is_set() {
            return Err(wasmtime::Error::new(Cancelled));
        }
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(wasmtime::UpdateDeadline::Interrupt);
        }
        Ok(wasmtime::UpdateDeadline::Continue(
            super::store::ticks_until_check(left),
        ))
    }

    /// The plugin's secrets, to keep out of what the host writes.
    pub fn secrets(&self) -> &Arc<Secrets> {
        self.config.secrets()
    }

    /// The resources of the job's guest.
    pub fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }

    /// What a waiting host call needs: until when it may wait, what ends it
    /// sooner, and the resources it waits on.
    pub fn deadline_and_table(&mut self) -> (Instant, Cancel, &mut ResourceTable) {
        (self.deadline, self.cancel.clone(), &mut self.table)
    }

    /// The memory limit, if this job's guest hit it.
    pub fn memory_limit_reached(&self) -> Option<usize> {
        self.memory.reached()
    }
}

impl WasiView for JobState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for JobState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

impl config_store::Host for JobState {
    fn get(&mut self, key: String) -> Result<Option<String>, config_store::Error> {
        Ok(self.config.get(&key).map(str::to_owned))
    }

    fn get_all(&mut self) -> Result<Vec<(String, String)>, config_store::Error> {
        Ok(self
            .config
            .all()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect())
    }
}

impl types::Host for JobState {}

impl host::Host for JobState {
    fn log(&mut self, level: LogLevel, message: String, fields: Vec<(String, String)>) {
        let secrets = self.config.secrets();
        let fields = secrets.redact_owned(render_fields(&fields));
        let message = secrets.redact(&message);
        let (plugin, job_id) = (self.plugin.as_str(), self.job_id.as_str());
        macro_rules! emit {
            ($level:ident) => {
                if fields.is_empty() {
                    tracing::$level!(target: "plugin", %plugin, %job_id, "{message}")
                } else {
                    tracing::$level!(target: "plugin", %plugin, %job_id, "{message} {fields}")
                }
            };
        }
        match level {
            LogLevel::Trace => emit!(trace),
            LogLevel::Debug => emit!(debug),
            LogLevel::Info => emit!(info),
            LogLevel::Warn => emit!(warn),
            LogLevel::Error => emit!(error),
        }
    }

    fn enqueue(&mut self, job_type: String, payload: Vec<u8>) -> Result<(), String> {
        if self.follow_ups.len() >= MAX_FOLLOW_UPS {
            return Err(format!(
                "a job may enqueue at most {MAX_FOLLOW_UPS} follow-up jobs"
            ));
        }
        if payload.len() > MAX_FOLLOW_UP_PAYLOAD {
            return Err(format!(
                "follow-up payload of {} bytes exceeds the limit of {MAX_FOLLOW_UP_PAYLOAD}",
                payload.len()
            ));
        }
        let job_type = JobType::parse(&job_type).map_err(|e| e.to_string())?;
        self.follow_ups.push(FollowUp { job_type, payload });
        Ok(())
    }
}

fn render_fields(fields: &[(String, String)]) -> String {
    let mut out = String::new();
    for (key, value) in fields {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(key);
        out.push('=');
        out.push_str(value);
    }
    out
}
