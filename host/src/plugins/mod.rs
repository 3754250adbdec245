//! Plugins: the wasmtime engine, loading and checking components, routing job
//! types to them, and running one job in a fresh instance.

mod bindings;
pub mod engine;
mod guest_output;
pub mod manifest;
pub mod plugin;
pub mod routing;
mod state;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use thiserror::Error;
use wasmtime::Engine;
use wasmtime::component::{HasSelf, Linker};

pub use bindings::Job;
pub use plugin::{Description, Limits, LoadError, LoadedPlugin, RunOutcome};
pub use routing::{Pattern, Routes};
pub use state::FollowUp;

use engine::EpochTicker;
use state::JobState;

/// The engine and linker shared by every plugin, and the epoch clock.
pub struct Runtime {
    engine: Engine,
    linker: Linker<JobState>,
    _ticker: EpochTicker,
}

impl Runtime {
    /// A runtime able to run `max_concurrent_jobs` instances at once.
    pub fn new(max_concurrent_jobs: u32) -> wasmtime::Result<Self> {
        let engine = engine::new_engine(max_concurrent_jobs)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        bindings::Plugin::add_to_linker::<JobState, HasSelf<JobState>>(&mut linker, |state| state)?;
        let ticker = EpochTicker::start(&engine);
        Ok(Runtime {
            engine,
            linker,
            _ticker: ticker,
        })
    }

    /// Loads and checks one plugin file.
    pub fn load(&self, path: &Path) -> Result<LoadedPlugin, LoadError> {
        LoadedPlugin::load(&self.engine, &self.linker, path)
    }

    /// Loads every `*.wasm` in `dir`. A bad file is logged and skipped so the
    /// others still serve; only a missing folder is an error.
    pub fn load_dir(&self, dir: &Path) -> Result<PluginSet, DirError> {
        let files = wasm_files(dir)?;
        let mut set = PluginSet::default();
        for file in files {
            match self.load(&file) {
                Ok(plugin) => {
                    if let Err(conflict) = set.add(plugin) {
                        tracing::error!("{conflict}");
                    }
                }
                Err(error) => tracing::error!("{error}"),
            }
        }
        Ok(set)
    }
}

/// The plugins folder could not be read.
#[derive(Debug, Error)]
#[error("plugins folder {}: {error}; create it or pass --plugins DIR", .dir.display())]
pub struct DirError {
    pub dir: PathBuf,
    pub error: std::io::Error,
}

fn wasm_files(dir: &Path) -> Result<Vec<PathBuf>, DirError> {
    let error = |error| DirError {
        dir: dir.to_owned(),
        error,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(error)? {
        let path = entry.map_err(error)?.path();
        if path.extension().is_some_and(|ext| ext == "wasm") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The loaded plugins and the routing table over them.
#[derive(Default, Clone)]
pub struct PluginSet {
    routes: Routes<Arc<LoadedPlugin>>,
    plugins: Vec<Arc<LoadedPlugin>>,
}

impl PluginSet {
    /// Adds a plugin unless one of its types is already taken.
    pub fn add(&mut self, plugin: LoadedPlugin) -> Result<(), routing::Conflict> {
        let plugin = Arc::new(plugin);
        self.routes
            .insert(&plugin.file, &plugin.description.handles, plugin.clone())?;
        tracing::info!(
            plugin = %plugin.description.name,
            version = %plugin.description.version,
            file = %plugin.file.display(),
            handles = %plugin.description.handles.iter().map(Pattern::as_str).collect::<Vec<_>>().join(","),
            "plugin loaded"
        );
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
