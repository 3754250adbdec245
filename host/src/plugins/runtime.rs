//! The engine and linker every plugin shares, the compiled-code cache, and
//! the epoch clock: what loading a plugin needs.

use std::path::Path;

use wasmtime::Engine;
use wasmtime::component::{HasSelf, Linker};

use super::bindings;
use super::cache::CodeCache;
use super::deadline;
use super::engine::{self, EpochTicker};
use super::load::{LoadError, LoadedPlugin};
use super::state::JobState;

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
        deadline::add_to_linker(&mut linker)?;
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
