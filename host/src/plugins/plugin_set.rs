//! One immutable version of the loaded plugins and the routing table over
//! them, swapped as a whole when a plugin changes (see `registry.rs`).

use std::sync::Arc;

use super::load::LoadedPlugin;
use super::routing::{Conflict, Routes};

#[derive(Default, Clone)]
pub struct PluginSet {
    routes: Routes<Arc<LoadedPlugin>>,
    plugins: Vec<Arc<LoadedPlugin>>,
}

impl PluginSet {
    /// Adds a plugin unless one of its types is already taken.
    pub fn add(&mut self, plugin: Arc<LoadedPlugin>) -> Result<(), Conflict> {
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
