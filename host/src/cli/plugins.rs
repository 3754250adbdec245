//! `jobhost plugins check`.

use std::path::PathBuf;

use clap::Subcommand;

use crate::plugins::config::ConfigSource;
use crate::plugins::{CodeCache, LoadedPlugin, Pattern, Runtime, Services};

#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// Validate a plugin file and print what it handles.
    Check {
        #[arg(value_name = "PLUGIN.wasm")]
        file: PathBuf,
    },
}

pub fn execute(command: PluginsCommand) -> anyhow::Result<i32> {
    let PluginsCommand::Check { file } = command;
    let runtime = Runtime::new(1, CodeCache::new(None), Services::standalone())
        .map_err(|e| anyhow::anyhow!("cannot start the wasm runtime: {e}"))?;
    let plugin = runtime.load(&file)?;
    let description = &plugin.description;
    println!("{} {}", description.name, description.version);
    println!(
        "handles: {}",
        description
            .handles
            .iter()
            .map(Pattern::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("wit: {}", plugin.wit);
    println!("imports: {}", plugin.imports.join(", "));
    println!("fleet-wide limits: {}", plugin.limits.fleet);
    print_grants(&plugin);
    Ok(0)
}

/// What the manifest grants and configures; a secret shows where it comes
/// from, never its value.
fn print_grants(plugin: &LoadedPlugin) {
    let grants = plugin.grants();
    let list = |items: Vec<String>| {
        if items.is_empty() {
            "none".to_owned()
        } else {
            items.join(", ")
        }
    };
    let origins = grants.http.origins.iter().map(|o| o.as_str().to_owned());
    let limits = plugin.limits.http;
    println!(
        "grants http: {} (per job: {} requests, {} response bytes, connect timeout {})",
        list(origins.collect()),
        limits.requests,
        limits.response_bytes,
        humantime::format_duration(limits.connect_timeout)
    );
    let kv = plugin.limits.kv;
    println!(
        "grants keyvalue: {} (per job: {} keys written, {} bytes written, values up to {} bytes)",
        list(grants.kv.buckets.clone()),
        kv.writes,
        kv.write_bytes,
        kv.value_bytes
    );
    let env = grants.env.iter().map(|(name, _)| name.clone()).collect();
    println!("grants env: {}", list(env));
    let dirs = grants
        .dirs
        .iter()
        .map(|d| format!("{} as {}", d.host.display(), d.guest))
        .collect();
    println!("grants dirs: {}", list(dirs));
    let config = grants
        .config
        .sources()
        .map(|(key, source)| match source {
            ConfigSource::Value(value) => format!("{key} = {value:?}"),
            ConfigSource::Env {
                variable,
                secret: true,
            } => format!("{key} = secret from env {variable}"),
            ConfigSource::Env { variable, .. } => format!("{key} = from env {variable}"),
        })
        .collect();
    println!("config: {}", list(config));
}
