//! One loaded plugin: compiled, checked against the world, described, and
//! pre-instantiated so that each job's fresh instance is cheap.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use thiserror::Error;
use wasmtime::{Engine, Store, StoreLimitsBuilder, Trap};

use super::bindings::{Failure, Job, PluginInfo, PluginPre};
use super::cache::{CacheUse, CodeCache, content_hash};
use super::engine::ticks_for;
use super::manifest::{self, Grants, Settings};
use super::reuse::{InstanceCache, WarmInstance};
use super::routing::Pattern;
use super::state::{FollowUp, JobState};

/// Resource limits of each job of a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub memory_bytes: usize,
    pub timeout: Duration,
    /// Overrides the host's attempt limit (a job's own limit still wins).
    pub max_attempts: Option<u32>,
    /// Most jobs of this plugin running at once.
    pub concurrency: Option<u32>,
    /// Jobs one instance serves before it is replaced; 1 (the default) is a
    /// fresh instance per job. Above 1, a job sees what earlier jobs of the
    /// same thread left in the instance (statics, heap), and the memory limit
    /// covers the instance over all its jobs.
    pub jobs_per_instance: u32,
}

impl Default for Limits {
    /// 64 MiB of linear memory and 30 s of wall time per job, a fresh instance each.
    fn default() -> Self {
        Limits {
            memory_bytes: 64 << 20,
            timeout: Duration::from_secs(30),
            max_attempts: None,
            concurrency: None,
            jobs_per_instance: 1,
        }
    }
}

/// Numbers each plugin load, so that a reused instance is only ever used for
/// the load it came from.
static NEXT_LOAD_ID: AtomicU64 = AtomicU64::new(1);

/// Largest output a job may return; more is a fatal error, since the same
/// handler would produce it again.
pub const MAX_OUTPUT: usize = 1 << 20;

/// How long `describe` may run when a plugin is loaded.
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a file is not a usable plugin. Each message names the file.
#[derive(Debug, Error)]
pub enum LoadError {
    #[error("plugin {file}: cannot read: {error}")]
    Read { file: String, error: std::io::Error },
    #[error("plugin {file}: not a WebAssembly file")]
    NotWasm { file: String },
    #[error("plugin {file}: not a component (core module); rebuild with --target wasm32-wasip2")]
    CoreModule { file: String },
    #[error("plugin {file}: invalid component: {reason}")]
    Invalid { file: String, reason: String },
    #[error("plugin {file}: not a jobhost plugin (world jobhost:plugin/plugin): {reason}")]
    WrongWorld { file: String, reason: String },
    #[error("plugin {file}: describe failed: {reason}")]
    Describe { file: String, reason: String },
    #[error("plugin {file}: invalid self-description: {reason}")]
    Description { file: String, reason: String },
    #[error("plugin {file}: {reason}")]
    Manifest { file: String, reason: String },
}

/// A plugin's self-description, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description {
    pub name: String,
    pub version: String,
    pub handles: Vec<Pattern>,
}

/// What one run of a handler came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    Success {
        output: Vec<u8>,
        follow_ups: Vec<FollowUp>,
    },
    /// Worth another attempt: the handler said so, or it trapped, timed out or hit a limit.
    Retry(String),
    /// The handler says the job can never succeed.
    Fatal(String),
}

/// A plugin ready to run jobs.
pub struct LoadedPlugin {
    pub file: PathBuf,
    /// SHA-256 of the component file: which build of the plugin this is.
    pub content_hash: String,
    /// Whether its compiled code came from the cache.
    pub cache_use: CacheUse,
    pub description: Description,
    pub limits: Limits,
    /// Unique to this load: a reload of the same file gets another.
    load_id: u64,
    grants: Grants,
    running: Option<Slots>,
    pre: PluginPre<JobState>,
}

impl LoadedPlugin {
    /// Compiles, links and describes the component at `path`.
    pub fn load(
        engine: &Engine,
        linker: &wasmtime::component::Linker<JobState>,
        cache: &CodeCache,
        path: &Path,
    ) -> Result<Self, LoadError> {
        let file = path.display().to_string();
        let Settings { limits, grants } =
            manifest::load(path).map_err(|reason| LoadError::Manifest {
                file: file.clone(),
                reason,
            })?;
        let bytes = std::fs::read(path).map_err(|error| LoadError::Read {
            file: file.clone(),
            error,
        })?;
        check_header(&file, &bytes)?;
        let content_hash = content_hash(&bytes);
        let (component, cache_use) =
            cache
                .component(engine, &bytes, &content_hash)
                .map_err(|e| LoadError::Invalid {
                    file: file.clone(),
                    reason: one_line(&e),
                })?;
        let pre = linker
            .instantiate_pre(&component)
            .and_then(PluginPre::new)
            .map_err(|e| LoadError::WrongWorld {
                file: file.clone(),
                reason: one_line(&e),
            })?;
        let mut plugin = LoadedPlugin {
            file: path.to_owned(),
            content_hash,
            cache_use,
            description: Description {
                name: String::new(),
                version: String::new(),
                handles: Vec::new(),
            },
            limits,
            load_id: NEXT_LOAD_ID.fetch_add(1, Ordering::Relaxed),
            running: limits.concurrency.map(Slots::new),
            grants,
            pre,
        };
        let info = plugin.describe().map_err(|reason| LoadError::Describe {
            file: file.clone(),
            reason,
        })?;
        plugin.description =
            check_description(info).map_err(|reason| LoadError::Description { file, reason })?;
        Ok(plugin)
    }

    pub fn name(&self) -> &str {
        &self.description.name
    }

    /// The first 12 hex digits of the content hash, for logs.
    pub fn short_hash(&self) -> &str {
        &self.content_hash[..12]
    }

    /// A store for a fresh instance, with `recycled` state if the thread kept
    /// some of this load's (its memory limit is the same).
    fn new_store(
        &self,
        job_id: &str,
        timeout: Duration,
        recycled: Option<JobState>,
    ) -> Store<JobState> {
        let state = match recycled {
            Some(mut state) => {
                state.recycle(job_id);
                state
            }
            None => {
                let limits = StoreLimitsBuilder::new()
                    .memory_size(self.limits.memory_bytes)
                    .trap_on_grow_failure(true)
                    .build();
                JobState::new(self.name(), job_id, limits, &self.grants)
            }
        };
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|state| &mut state.limits);
        store.set_epoch_deadline(ticks_for(timeout));
        store
    }

    fn describe(&self) -> Result<PluginInfo, String> {
        let mut store = self.new_store("describe", DESCRIBE_TIMEOUT, None);
        let instance = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| self.explain(&e, DESCRIBE_TIMEOUT, None))?;
        instance
            .jobhost_plugin_handler()
            .call_describe(&mut store)
            .map_err(|e| self.explain(&e, DESCRIBE_TIMEOUT, store.data().panic_message()))
    }

    /// Runs one job in a fresh instance, or, when the plugin opts into reuse,
    /// in the instance `cache` kept from this thread's previous job of this
    /// load of the plugin. An instance is kept only after a clean success and
    /// for at most `jobs_per_instance` jobs: one that trapped, failed, timed
    /// out or hit a limit is dropped (wasmtime cannot enter it again, and its
    /// state is suspect).
    pub fn run(&self, job: &Job, cache: &mut InstanceCache) -> RunOutcome {
        let _slot = self.running.as_ref().map(Slots::acquire);
        let timeout = self.limits.timeout;
        let (mut store, instance, served) = match cache.take(self.load_id) {
            Some(WarmInstance {
                mut store,
                instance,
                served,
                ..
            }) => {
                store.data_mut().start_job(&job.id);
                // A reused store keeps its memory limit; its deadline is per job.
                store.set_epoch_deadline(ticks_for(timeout));
                (store, instance, served)
            }
            None => {
                let recycled = cache.take_state(self.load_id);
                let mut store = self.new_store(&job.id, timeout, recycled);
                match self.pre.instantiate(&mut store) {
                    Ok(instance) => (store, instance, 0),
                    Err(error) => {
                        let panic = store.data().panic_message();
                        return RunOutcome::Retry(self.explain(&error, timeout, panic));
                    }
                }
            }
        };
        let result = instance
            .jobhost_plugin_handler()
            .call_handle(&mut store, job);
        store.data().finish_job();
        let outcome = match result {
            Ok(Ok(output)) if output.len() > MAX_OUTPUT => RunOutcome::Fatal(format!(
                "output of {} bytes exceeds the limit of {MAX_OUTPUT} bytes",
                output.len()
            )),
            Ok(Ok(output)) => RunOutcome::Success {
                output,
                follow_ups: std::mem::take(&mut store.data_mut().follow_ups),
            },
            Ok(Err(Failure::Retry(reason))) => RunOutcome::Retry(reason),
            Ok(Err(Failure::Fatal(reason))) => RunOutcome::Fatal(reason),
            Err(error) => {
                RunOutcome::Retry(self.explain(&error, timeout, store.data().panic_message()))
            }
        };
        let served = served + 1;
        if matches!(outcome, RunOutcome::Success { .. }) && served < self.limits.jobs_per_instance {
            cache.keep(WarmInstance {
                load_id: self.load_id,
                store,
                instance,
                served,
            });
        } else {
            // The instance goes (its memory is reset when its slot returns to
            // the pool); the host-side state of its store serves the next one.
            cache.keep_state(self.load_id, store.into_data());
        }
        outcome
    }

    /// Puts a trap or host error in plain words.
    fn explain(&self, error: &wasmtime::Error, timeout: Duration, panic: Option<String>) -> String {
        if let Some(trap) = error.downcast_ref::<Trap>() {
            if *trap == Trap::Interrupt {
                return format!("timed out after {}", humantime::format_duration(timeout));
            }
            if let Some(panic) = panic {
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
            return format!("trap: {what}{place}");
        }
        let text = format!("{error:#}");
        if text.contains("forcing trap when growing memory") {
            return format!(
                "memory limit of {} MiB reached",
                self.limits.memory_bytes >> 20
            );
        }
        one_line_text(&text)
    }
}

/// A counting semaphore for a plugin's own concurrency limit. Job threads
/// block on it, so a limited plugin never runs more than its share at once.
struct Slots {
    free: std::sync::Mutex<u32>,
    freed: std::sync::Condvar,
}

struct Slot<'a>(&'a Slots);

impl Slots {
    fn new(count: u32) -> Self {
        Slots {
            free: std::sync::Mutex::new(count),
            freed: std::sync::Condvar::new(),
        }
    }

    fn acquire(&self) -> Slot<'_> {
        let mut free = self.free.lock().expect("slots lock");
        while *free == 0 {
            free = self.freed.wait(free).expect("slots lock");
        }
        *free -= 1;
        Slot(self)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().expect("slots lock") += 1;
        self.0.freed.notify_one();
    }
}

/// Whether a guest function name is the plugin's own code rather than the
/// standard library's panic and abort machinery, which every trap passes through.
fn is_user_code(name: &str) -> bool {
    const MACHINERY: &[&str] = &["std::", "core::", "alloc::", "__rust", "rust_", "<"];
    !(MACHINERY.iter().any(|prefix| name.starts_with(prefix))
        || name.contains("panic")
        || name == "abort")
}

/// Tells a core module or a non-wasm file apart from a component before compiling.
fn check_header(file: &str, bytes: &[u8]) -> Result<(), LoadError> {
    const MAGIC: &[u8] = b"\0asm";
    const CORE_VERSION: [u8; 4] = [1, 0, 0, 0];
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Err(LoadError::NotWasm {
            file: file.to_owned(),
        });
    }
    if bytes[4..8] == CORE_VERSION {
        return Err(LoadError::CoreModule {
            file: file.to_owned(),
        });
    }
    Ok(())
}

fn check_description(info: PluginInfo) -> Result<Description, String> {
    let name_ok = !info.name.is_empty()
        && info
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !name_ok {
        return Err(format!(
            "name {:?} must be non-empty ASCII letters, digits, '-', '_' or '.'",
            info.name
        ));
    }
    if info.version.trim().is_empty() {
        return Err("version is empty".into());
    }
    if info.handles.is_empty() {
        return Err("handles no job types".into());
    }
    let handles = info
        .handles
        .iter()
        .map(|text| Pattern::parse(text))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Description {
        name: info.name,
        version: info.version,
        handles,
    })
}

fn one_line(error: &wasmtime::Error) -> String {
    one_line_text(&format!("{error:#}"))
}

fn one_line_text(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_check_names_core_modules_and_non_wasm() {
        assert!(matches!(
            check_header("x.wasm", b"hello world"),
            Err(LoadError::NotWasm { .. })
        ));
        assert!(matches!(
            check_header("x.wasm", b"\0asm\x01\0\0\0"),
            Err(LoadError::CoreModule { .. })
        ));
        assert!(check_header("x.wasm", b"\0asm\x0d\0\x01\0").is_ok());
    }

    #[test]
    fn description_needs_a_name_a_version_and_types() {
        let info = |name: &str, version: &str, handles: &[&str]| PluginInfo {
            name: name.into(),
            version: version.into(),
            handles: handles.iter().map(|s| s.to_string()).collect(),
        };
        assert!(check_description(info("orders", "1.0.0", &["orders.*"])).is_ok());
        assert!(check_description(info("", "1.0.0", &["a"])).is_err());
        assert!(check_description(info("a b", "1.0.0", &["a"])).is_err());
        assert!(check_description(info("orders", " ", &["a"])).is_err());
        assert!(check_description(info("orders", "1", &[])).is_err());
        assert!(check_description(info("orders", "1", &["has space"])).is_err());
    }
}
