//! The plugin worlds the host serves: the current `jobhost:plugin@0.2.0`
//! and `0.1.0`, so plugins built before 0.2.0 run unchanged. A component is
//! matched to the world of the version it was built for (`wit_version.rs`);
//! calls to an older world are translated to the current types here, and
//! nowhere else.

use wasmtime::Store;
use wasmtime::component::InstancePre;

use super::bindings::{self, Failure, Job, LogLevel, PluginInfo, v0_1};
use super::state::JobState;
use super::wit_version::WitVersion;

/// A plugin pre-instantiated for the world it was built for.
pub enum PluginPre {
    Current(bindings::PluginPre<JobState>),
    V0_1(v0_1::PluginPre<JobState>),
}

/// One instance of a plugin.
pub enum Plugin {
    Current(bindings::Plugin),
    V0_1(v0_1::Plugin),
}

impl PluginPre {
    /// Matches `pre` to the world of `wit`, the version it was built for
    /// (one of [`SUPPORTED`](super::wit_version::SUPPORTED)); the error says
    /// what in it does not fit that world.
    pub fn new(pre: InstancePre<JobState>, wit: &WitVersion) -> wasmtime::Result<Self> {
        Ok(match wit.version() {
            Some("0.1.0") => PluginPre::V0_1(v0_1::PluginPre::new(pre)?),
            _ => PluginPre::Current(bindings::PluginPre::new(pre)?),
        })
    }

    pub fn engine(&self) -> &wasmtime::Engine {
        match self {
            PluginPre::Current(pre) => pre.engine(),
            PluginPre::V0_1(pre) => pre.engine(),
        }
    }

    pub fn instantiate(&self, store: &mut Store<JobState>) -> wasmtime::Result<Plugin> {
        Ok(match self {
            PluginPre::Current(pre) => Plugin::Current(pre.instantiate(store)?),
            PluginPre::V0_1(pre) => Plugin::V0_1(pre.instantiate(store)?),
        })
    }
}

impl Plugin {
    pub fn describe(&self, store: &mut Store<JobState>) -> wasmtime::Result<PluginInfo> {
        match self {
            Plugin::Current(plugin) => plugin.jobhost_plugin_handler().call_describe(store),
            Plugin::V0_1(plugin) => {
                let info = plugin.jobhost_plugin_handler().call_describe(store)?;
                Ok(PluginInfo {
                    name: info.name,
                    version: info.version,
                    handles: info.handles,
                })
            }
        }
    }

    pub fn handle(
        &self,
        store: &mut Store<JobState>,
        job: &Job,
    ) -> wasmtime::Result<Result<Vec<u8>, Failure>> {
        match self {
            Plugin::Current(plugin) => plugin.jobhost_plugin_handler().call_handle(store, job),
            Plugin::V0_1(plugin) => {
                let job = v0_1::exports::jobhost::plugin::handler::Job {
                    id: job.id.clone(),
                    job_type: job.job_type.clone(),
                    payload: job.payload.clone(),
                    attempt: job.attempt,
                    max_attempts: job.max_attempts,
                    trace_id: job.trace_id.clone(),
                    enqueued_at_ms: job.enqueued_at_ms,
                };
                let result = plugin.jobhost_plugin_handler().call_handle(store, &job)?;
                Ok(result.map_err(|failure| match failure {
                    v0_1::jobhost::plugin::types::Failure::Retry(reason) => Failure::Retry(reason),
                    v0_1::jobhost::plugin::types::Failure::Fatal(reason) => Failure::Fatal(reason),
                }))
            }
        }
    }
}

/// The 0.1.0 host interface is the current one, with its own types.
impl v0_1::jobhost::plugin::host::Host for JobState {
    fn log(
        &mut self,
        level: v0_1::jobhost::plugin::types::LogLevel,
        message: String,
        fields: Vec<(String, String)>,
    ) {
        use v0_1::jobhost::plugin::types::LogLevel as Old;
        let level = match level {
            Old::Trace => LogLevel::Trace,
            Old::Debug => LogLevel::Debug,
            Old::Info => LogLevel::Info,
            Old::Warn => LogLevel::Warn,
            Old::Error => LogLevel::Error,
        };
        bindings::jobhost::plugin::host::Host::log(self, level, message, fields);
    }

    fn enqueue(&mut self, job_type: String, payload: Vec<u8>) -> Result<(), String> {
        bindings::jobhost::plugin::host::Host::enqueue(self, job_type, payload)
    }
}

impl v0_1::jobhost::plugin::types::Host for JobState {}

/// Links the host side of every world the host serves, with WASI and
/// `wasi:http` (added by the caller), `wasi:config` and `wasi:keyvalue`.
pub fn add_to_linker(linker: &mut wasmtime::component::Linker<JobState>) -> wasmtime::Result<()> {
    use wasmtime::component::HasSelf;
    bindings::jobhost::plugin::types::add_to_linker::<JobState, HasSelf<JobState>>(linker, |s| s)?;
    bindings::jobhost::plugin::host::add_to_linker::<JobState, HasSelf<JobState>>(linker, |s| s)?;
    bindings::wasi::config::store::add_to_linker::<JobState, HasSelf<JobState>>(linker, |s| s)?;
    bindings::wasi::keyvalue::store::add_to_linker::<JobState, HasSelf<JobState>>(linker, |s| s)?;
    bindings::wasi::keyvalue::atomics::add_to_linker::<JobState, HasSelf<JobState>>(linker, |s| s)?;
    bindings::wasi::keyvalue::batch::add_to_linker::<JobState, HasSelf<JobState>>(linker, |s| s)?;
    v0_1::jobhost::plugin::types::add_to_linker::<JobState, HasSelf<JobState>>(linker, |s| s)?;
    v0_1::jobhost::plugin::host::add_to_linker::<JobState, HasSelf<JobState>>(linker, |s| s)?;
    Ok(())
}
