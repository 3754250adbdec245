//! Plugins: the wasmtime engine, loading and checking components, routing job
//! types to them, hot reload, and running one job in a fresh instance.

mod bindings;
pub mod cache;
pub mod engine;
mod guest_output;
pub mod manifest;
pub mod plugin;
pub mod registry;
mod reuse;
pub mod routing;
mod state;
mod watch;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use thiserror::Error;
use wasmtime::Engine;
use wasmtime::component::{HasSelf, Linker};

pub use bindings::Job;
pub use cache::{CacheUse, CodeCache};
pub use plugin::{Description, Limits, LoadError, LoadedPlugin, RunOutcome};
pub use registry::Registry;
pub use reuse::InstanceCache;
pub use routing::{Pattern, Routes};
pub use state::FollowUp;
pub use watch::watch;

use engine::EpochTicker;
use state::JobState;

/// The engine and linker shared by every plugin, the compiled-code cache, and
/// the epoch clock.
pub struct Runtime {
    engine: Engine,
    linker: Linker<JobState>,
    cache: CodeCache,
    _ticker: EpochTicker,
}

impl Runtime {
    /// A runtime able to run `max_concurrent_jobs` instances at once.
    pub fn new(max_concurrent_jobs: u32, cache: CodeCache) -> wasmtime::Result<Self> {
        let engine = engine::new_engine(max_concurrent_jobs)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        bindings::Plugin::add_to_linker::<JobState, HasSelf<JobState>>(&mut linker, |state| state)?;
        let ticker = EpochTicker::start(&engine);
        Ok(Runtime {
            engine,
            linker,
            cache,
            _ticker: ticker,
        })
    }

    /// Loads and checks one plugin file (and its manifest).
    pub fn load(&self, path: &Path) -> Result<LoadedPlugin, LoadError> {
        LoadedPlugin::load(&self.engine, &self.linker, &self.cache, path)
    }
}

/// The plugins folder could not be read.
#[derive(Debug, Error)]
#[error("plugins folder {}: {error}; create it or pass --plugins DIR", .dir.display())]
pub struct DirError {
    pub dir: PathBuf,
    pub error: std::io::Error,
}

/// The `*.wasm` files in `dir`, sorted.
pub fn wasm_files(dir: &Path) -> Result<Vec<PathBuf>, DirError> {
    let error = |error| DirError {
        dir: dir.to_owned(),
        error,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(error)? {
        let path = entry.map_err(error)?.path();
        if is_plugin_file(&path) && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Whether `path` names a plugin component.
pub fn is_plugin_file(path: &Path) -> bool {
    path.extension().is_some_and(|ext| ext == "wasm")
}

/// The loaded plugins and the routing table over them: one immutable version,
/// swapped as a whole when a plugin changes.
#[derive(Default, Clone)]
pub struct PluginSet {
    routes: Routes<Arc<LoadedPlugin>>,
    plugins: Vec<Arc<LoadedPlugin>>,
}

impl PluginSet {
    /// Adds a plugin unless one of its types is already taken.
    pub fn add(&mut self, plugin: Arc<LoadedPlugin>) -> Result<(), routing::Conflict> {
        self.routes
            .insert(&plugin.file, &plugin.description.handles, plugin.clone())?;
        self.plugins.push(plugin);
        Ok(())
    }

    pub fn route(&self, job_type: &str) -> Option<&Arc<LoadedPlugin>> {
        self.routes.route(job_type)
    }

    pub fn plugins(&self) -> &[Arc<LoadedPlugin>] {
        &self.plugins
    }
}
