//! Plugins: the wasmtime engine, loading and checking components, routing job
//! types to them, hot reload, and running jobs in their instances.
//!
//! Loading (`load.rs`, `description.rs`, `cache.rs`, `manifest.rs`) ends in a
//! [`LoadedPlugin`] of the world it was built for (`wit_version.rs` reads
//! which, `world.rs` serves each); running one
//! job (`run.rs`) builds its store (`store.rs`, `state.rs`, `limiter.rs`,
//! `deadline.rs`, with outbound HTTP in `outbound/`, config and secrets
//! in `config.rs` and key-value state in `kv/`), may reuse an instance (`reuse.rs`) and puts a failure in
//! words (`explain.rs`). Modules import one way only: nothing
//! here imports this file's re-exports.

mod bindings;
pub mod cache;
pub mod cancel;
pub mod config;
mod deadline;
mod description;
pub mod engine;
mod explain;
pub mod fleet;
mod folder;
mod guest_output;
mod job;
pub mod kv;
mod limiter;
mod load;
pub mod manifest;
pub mod outbound;
mod plugin_set;
pub mod registry;
mod reuse;
pub mod routing;
mod run;
mod runtime;
mod services;
mod slots;
mod state;
mod store;
mod watch;
mod wit_version;
mod world;

pub use bindings::Job;
pub use cache::{CacheUse, CodeCache};
pub use cancel::Cancel;
pub use description::Description;
pub use fleet::{FleetLimit, Rate};
pub use folder::{DirError, is_plugin_file, wasm_files};
pub use load::{LoadError, LoadedPlugin};
pub use manifest::Limits;
pub use plugin_set::PluginSet;
pub use registry::Registry;
pub use reuse::InstanceCache;
pub use routing::{Pattern, Routes};
pub use run::RunOutcome;
pub use runtime::Runtime;
pub use services::Services;
pub use state::FollowUp;
pub use watch::watch;
pub use wit_version::WitVersion;
