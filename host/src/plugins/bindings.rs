//! Host-side bindings generated from `wit/`: the only place `bindgen!` runs.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
});

pub use self::exports::jobhost::plugin::handler::{Failure, Job, PluginInfo};
pub use self::jobhost::plugin::types::LogLevel;
