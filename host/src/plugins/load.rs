//! Loading one plugin: its manifest read, the component compiled (or taken
//! from the code cache), checked against the world, pre-instantiated, and
//! asked to describe itself. What comes out is a [`LoadedPlugin`], ready for
//! jobs (see `run.rs`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use thiserror::Error;
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

use super::bindings::PluginInfo;
use super::cache::{CacheUse, CodeCache, content_hash};
use super::description::Description;
use super::explain::{explain, one_line};
use super::manifest::{self, Grants, Limits, Settings};
use super::services::Services;
use super::slots::Slots;
use super::state::JobState;
use super::store::fresh_store;
use super::wit_version::{self, WitVersion};
use super::world::PluginPre;

/// Numbers each plugin load, so that a reused instance is only ever used for
/// the load it came from.
static NEXT_LOAD_ID: AtomicU64 = AtomicU64::new(1);

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
    #[error(
        "plugin {file}: not a jobhost plugin (world jobhost:plugin/plugin, {}): {reason}",
        wit_version::SUPPORTED.join(" or ")
    )]
    WrongWorld { file: String, reason: String },
    #[error(
        "plugin {file}: built for {built_for}, which this host does not support (it supports {}); rebuild the plugin for one of those, or upgrade jobhost",
        wit_version::supported()
    )]
    UnsupportedWit { file: String, built_for: WitVersion },
    #[error("plugin {file}: describe failed: {reason}")]
    Describe { file: String, reason: String },
    #[error("plugin {file}: invalid self-description: {reason}")]
    Description { file: String, reason: String },
    #[error("plugin {file}: {reason}")]
    Manifest { file: String, reason: String },
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
    /// The interfaces the component imports (`wasi:http/outgoing-handler@0.2.12`, ...).
    pub imports: Vec<String>,
    /// The version of the jobhost WIT it was built for (`jobhost:plugin@0.2.0`).
    pub wit: WitVersion,
    /// Unique to this load: a reload of the same file gets another.
    pub(super) load_id: u64,
    pub(super) grants: Grants,
    /// Its own concurrency limit, if its manifest sets one.
    pub(super) running: Option<Slots>,
    pub(super) pre: PluginPre,
    pub(super) services: Services,
}

impl LoadedPlugin {
    /// Compiles, links and describes the component at `path`.
    pub fn load(
        engine: &Engine,
        linker: &Linker<JobState>,
        cache: &CodeCache,
        services: &Services,
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
        let (imports, exports) = interfaces(engine, &component);
        let wit = check_wit_version(&file, &imports, &exports)?;
        let pre = linker
            .instantiate_pre(&component)
            .and_then(|pre| PluginPre::new(pre, &wit))
            .map_err(|e| LoadError::WrongWorld {
                file: file.clone(),
                reason: one_line(&e),
            })?;
        let info = describe(&pre, limits.memory_bytes, &grants, services).map_err(|reason| {
            LoadError::Describe {
                file: file.clone(),
                reason,
            }
        })?;
        let description =
            Description::check(info).map_err(|reason| LoadError::Description { file, reason })?;
        Ok(LoadedPlugin {
            file: path.to_owned(),
            content_hash,
            cache_use,
            description,
            limits,
            imports,
            wit,
            load_id: NEXT_LOAD_ID.fetch_add(1, Ordering::Relaxed),
            grants,
            running: limits.concurrency.map(Slots::new),
            pre,
            services: services.clone(),
        })
    }

    pub fn name(&self) -> &str {
        &self.description.name
    }

    /// The first 12 hex digits of the content hash, for logs.
    pub fn short_hash(&self) -> &str {
        &self.content_hash[..12]
    }

    /// What its manifest grants and configures (secrets without their values).
    pub fn grants(&self) -> &Grants {
        &self.grants
    }
}

/// The names of what a component imports and exports.
fn interfaces(engine: &Engine, component: &Component) -> (Vec<String>, Vec<String>) {
    let ty = component.component_type();
    let imports = ty.imports(engine).map(|(name, _)| name.to_owned());
    let exports = ty.exports(engine).map(|(name, _)| name.to_owned());
    (imports.collect(), exports.collect())
}

/// The WIT version the component was built for, refused when this host has
/// no world for it.
fn check_wit_version<'a>(
    file: &str,
    imports: &'a [String],
    exports: &'a [String],
) -> Result<WitVersion, LoadError> {
    let names = |list: &'a [String]| list.iter().map(String::as_str);
    let wit =
        WitVersion::of(names(exports), names(imports)).ok_or_else(|| LoadError::WrongWorld {
            file: file.to_owned(),
            reason: format!("it names no {} interface", wit_version::PACKAGE),
        })?;
    if !wit.is_supported() {
        return Err(LoadError::UnsupportedWit {
            file: file.to_owned(),
            built_for: wit,
        });
    }
    Ok(wit)
}

/// Asks a fresh instance what the plugin is, under the plugin's own memory
/// limit and grants and a time limit of its own.
fn describe(
    pre: &PluginPre,
    memory_bytes: usize,
    grants: &Grants,
    services: &Services,
) -> Result<PluginInfo, String> {
    let state = JobState::new("", "describe", memory_bytes, grants, services);
    let mut store = fresh_store(pre.engine(), state, DESCRIBE_TIMEOUT);
    let instance = pre
        .instantiate(&mut store)
        .map_err(|e| explain(&e, store.data(), DESCRIBE_TIMEOUT))?;
    instance
        .describe(&mut store)
        .map_err(|e| explain(&e, store.data(), DESCRIBE_TIMEOUT))
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
}
