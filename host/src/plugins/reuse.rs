//! Instance reuse, a plugin's opt-in (`jobs_per_instance` in its manifest):
//! the instance a job thread keeps between jobs of one loaded plugin.
//!
//! Each job thread owns one [`InstanceCache`] and holds at most one instance
//! in it, so the pooling allocator's slots (sized one per thread, see
//! `engine.rs`) are never exceeded and no instance is ever entered by two
//! threads. A kept instance is tied to the load of its plugin ([`LoadedPlugin`]'s
//! `load_id`): after a hot reload the next job of the plugin gets an instance of
//! the new version, never one of the old.
//!
//! [`LoadedPlugin`]: super::load::LoadedPlugin

use std::marker::PhantomData;

use wasmtime::Store;

use super::state::JobState;
use super::world::Plugin;

/// An instance that served jobs cleanly and may serve more.
pub(super) struct WarmInstance {
    /// The plugin load it was instantiated from.
    pub(super) load_id: u64,
    pub(super) store: Store<JobState>,
    pub(super) instance: Plugin,
    /// Jobs it has served so far.
    pub(super) served: u32,
}

/// What one job thread keeps between jobs: at most one warm instance, or,
/// after a fresh instance, the host-side state of its store (see
/// [`JobState::recycle`]), tagged with its plugin load.
///
/// Neither `Send` nor `Sync`: it is created on its job thread and stays there.
#[derive(Default)]
pub struct InstanceCache {
    warm: Option<WarmInstance>,
    spare: Option<(u64, JobState)>,
    _one_thread: PhantomData<*const ()>,
}

impl InstanceCache {
    /// The kept instance if it belongs to load `load_id`; any other kept
    /// instance is dropped (its slot is needed for the job about to run).
    pub(super) fn take(&mut self, load_id: u64) -> Option<WarmInstance> {
        match self.warm.take() {
            Some(warm) if warm.load_id == load_id => Some(warm),
            _ => None,
        }
    }

    /// Keeps `warm` for the next job.
    pub(super) fn keep(&mut self, warm: WarmInstance) {
        self.warm = Some(warm);
    }

    /// The store state kept from a fresh instance of load `load_id`, if any.
    pub(super) fn take_state(&mut self, load_id: u64) -> Option<JobState> {
        match self.spare.take() {
            Some((id, state)) if id == load_id => Some(state),
            _ => None,
        }
    }

    /// Keeps the state of a finished fresh instance's store for the next job.
    pub(super) fn keep_state(&mut self, load_id: u64, state: JobState) {
        self.spare = Some((load_id, state));
    }

    /// Drops what is kept, e.g. when the thread goes idle.
    pub fn clear(&mut self) {
        self.warm = None;
        self.spare = None;
    }

    /// Whether anything is kept.
    pub fn is_warm(&self) -> bool {
        self.warm.is_some() || self.spare.is_some()
    }
}
