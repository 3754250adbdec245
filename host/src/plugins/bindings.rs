//! Host-side bindings generated from the plugin world: the only place
//! `bindgen!` runs. The current world is `wit/`; [`v0_1`] is the world of
//! `jobhost:plugin@0.1.0`, which plugins built before 0.2.0 were made for
//! (see `world.rs` for how both are served).

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
    // Job state crosses to wasmtime-wasi's runtime in wasi:io calls.
    require_store_data_send: true,
    // wasi:http's host side is wasmtime-wasi-http's; these are its types.
    with: {
        "wasi:http": wasmtime_wasi_http::p2::bindings::http,
        "wasi:io": wasmtime_wasi::p2::bindings::io,
        "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        "wasi:keyvalue/store.bucket": super::kv::Bucket,
    },
});

pub use self::exports::jobhost::plugin::handler::{Failure, Job, PluginInfo};
pub use self::jobhost::plugin::types::{DelayedRetry, LogLevel};

/// The world of `jobhost:plugin@0.1.0`, kept so its plugins run unchanged.
pub mod v0_1 {
    wasmtime::component::bindgen!({
        path: "wit/plugin-0.1.0",
        world: "plugin",
    });
}
