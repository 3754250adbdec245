//! The engine and linker every plugin shares, the compiled-code cache, and
//! the epoch clock: what loading a plugin needs.

use std::path::Path;

use wasmtime::Engine;
use wasmtime::component::Linker;

use super::cache::CodeCache;
use super::deadline;
use super::engine::{self, EpochTicker};
use super::load::{LoadError, LoadedPlugin};
use super::outbound;
use super::services::Services;
use super::state::JobState;
use super::world;

pub struct Runtime {
    engine: Engine,
    linker: Linker<JobState>,
    cache: CodeCache,
    services: Services,
    _ticker: EpochTicker,
}

impl Runtime {
    /// A runtime able to run `max_concurrent_jobs` instances at once, its
    /// jobs' host calls reaching `services`.
    pub fn new(
        max_concurrent_jobs: u32,
        cache: CodeCache,
        services: Services,
    ) -> wasmtime::Result<Self> {
        let engine = engine::new_engine(max_concurrent_jobs)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_sync(&mut linker)?;
        deadline::add_to_linker(&mut linker)?;
        outbound::add_to_linker(&mut linker)?;
        world::add_to_linker(&mut linker)?;
        let ticker = EpochTicker::start(&engine);
        Ok(Runtime {
            engine,
            linker,
            cache,
            services,
            _ticker: ticker,
        })
    }

    /// Loads and checks one plugin file (and its manifest).
    pub fn load(&self, path: &Path) -> Result<LoadedPlugin, LoadError> {
        LoadedPlugin::load(
            &self.engine,
            &self.linker,
            &self.cache,
            &self.services,
            path,
        )
    }
}
