// Guest bindings generated from `wit/` (the crate's link to the repository's
// `wit/`, copied into the packaged crate): the only place `generate!` runs.
// Plugin crates reach them through the `plugin!` macro, never directly.

wit_bindgen::generate!({
    path: "wit",
    world: "plugin",
    pub_export_macro: true,
    export_macro_name: "__export_plugin",
    default_bindings_module: "::jobhost_sdk::__bindings",
    runtime_path: "::jobhost_sdk::__private::wit_bindgen::rt",
    // The WASI interfaces the world imports (HTTP, config and what they use)
    // get bindings of their own here, for `http.rs` and `config.rs`.
    generate_all,
});
