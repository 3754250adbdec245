//! `jobhost plugins check`.

use std::path::PathBuf;

use clap::Subcommand;

use crate::plugins::{CodeCache, Pattern, Runtime};

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
    let runtime = Runtime::new(1, CodeCache::new(None))
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
    Ok(0)
}
