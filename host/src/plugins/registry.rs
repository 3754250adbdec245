//! The live set of plugins of a folder, kept up to date as files change.
//!
//! Jobs take the current [`PluginSet`] (an `Arc`) when they start, so a job in
//! flight finishes on the version it started with while new jobs get the new
//! one; a version is swapped in whole, never half-built.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};

use crate::metrics::Metrics;

use super::folder::{DirError, wasm_files};
use super::load::LoadedPlugin;
use super::plugin_set::PluginSet;
use super::runtime::Runtime;

/// The plugins of one folder.
pub struct Registry {
    runtime: Runtime,
    metrics: Arc<Metrics>,
    dir: PathBuf,
    /// The accepted version of each file; reloads are serialized by this lock.
    accepted: Mutex<BTreeMap<PathBuf, Arc<LoadedPlugin>>>,
    current: RwLock<Arc<PluginSet>>,
}

impl Registry {
    /// Loads every `*.wasm` in `dir`. A bad file is logged and skipped so the
    /// others still serve; only an unreadable folder is an error.
    pub fn open(runtime: Runtime, dir: &Path, metrics: Arc<Metrics>) -> Result<Self, DirError> {
        // Absolute, so paths from the folder listing and from the watcher agree.
        let dir = std::fs::canonicalize(dir).map_err(|error| DirError {
            dir: dir.to_owned(),
            error,
        })?;
        let files = wasm_files(&dir)?;
        let registry = Registry {
            runtime,
            metrics,
            dir,
            accepted: Mutex::new(BTreeMap::new()),
            current: RwLock::new(Arc::new(PluginSet::default())),
        };
        for file in files {
            registry.reload(&file);
        }
        Ok(registry)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The plugin set new jobs run against.
    pub fn current(&self) -> Arc<PluginSet> {
        self.current.read().expect("plugin set lock").clone()
    }

    /// Brings `file`'s plugin in line with the disk: loads a new or changed
    /// file, drops a deleted one. A file that fails to load, or that claims a
    /// type another plugin has, leaves the previous version serving.
    pub fn reload(&self, file: &Path) {
        let mut accepted = self.accepted.lock().expect("registry lock");
        if !file.is_file() {
            if let Some(old) = accepted.remove(file) {
                tracing::info!(plugin = %old.name(), file = %file.display(), "plugin removed; its types are no longer handled here");
                self.publish(&accepted);
            }
            return;
        }
        let plugin = match self.runtime.load(file) {
            Ok(plugin) => Arc::new(plugin),
            Err(error) => {
                self.metrics
                    .plugin_load_errors
                    .fetch_add(1, Ordering::Relaxed);
                match accepted.get(file) {
                    Some(old) => {
                        tracing::error!(version = %old.short_hash(), "{error}; the previous version keeps serving")
                    }
                    None => tracing::error!("{error}"),
                }
                return;
            }
        };
        let mut others = PluginSet::default();
        for (_, other) in accepted.iter().filter(|(path, _)| path.as_path() != file) {
            let _ = others.add(other.clone());
        }
        if let Err(conflict) = others.add(plugin.clone()) {
            self.metrics
                .plugin_load_errors
                .fetch_add(1, Ordering::Relaxed);
            tracing::error!("{conflict}");
            return;
        }
        let description = &plugin.description;
        let handles = description
            .handles
            .iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>()
            .join(",");
        match accepted.insert(file.to_owned(), plugin.clone()) {
            Some(old) => {
                self.metrics.plugin_reloads.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                plugin = %description.name, version = %description.version, hash = %plugin.short_hash(),
                previous = %old.short_hash(), cache = %plugin.cache_use.label(), file = %file.display(), %handles,
                "plugin reloaded"
                )
            }
            None => tracing::info!(
                plugin = %description.name, version = %description.version, hash = %plugin.short_hash(),
                cache = %plugin.cache_use.label(), file = %file.display(), %handles,
                "plugin loaded"
            ),
        }
        self.publish(&accepted);
    }

    /// Makes the accepted plugins the current set.
    fn publish(&self, accepted: &BTreeMap<PathBuf, Arc<LoadedPlugin>>) {
        let mut set = PluginSet::default();
        for plugin in accepted.values() {
            if let Err(conflict) = set.add(plugin.clone()) {
                tracing::error!("{conflict}");
            }
        }
        let serving = set
            .plugins()
            .iter()
            .map(|p| {
                let version = (p.description.version.clone(), p.short_hash().to_owned());
                (p.name().to_owned(), version)
            })
            .collect();
        *self.current.write().expect("plugin set lock") = Arc::new(set);
        self.metrics.set_serving(serving);
    }
}
