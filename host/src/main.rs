use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use jobhost::cli::{Cli, LogFormat, config, execute};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    if let Err(error) = apply_config_file() {
        eprintln!("jobhost: {}", format!("{error:#}").replace('\n', " "));
        return ExitCode::FAILURE;
    }
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match execute(cli) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(error) => {
            // One line, whatever the error chain holds.
            let text = format!("{error:#}").replace('\n', " ");
            eprintln!("jobhost: {text}");
            ExitCode::FAILURE
        }
    }
}

/// Turns the config file's settings into environment variables not already
/// set, so that flags > environment > file (see `cli::config`).
fn apply_config_file() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let Some((path, named)) = config::locate(&args) else {
        return Ok(());
    };
    if !named && !path.is_file() {
        return Ok(());
    }
    for (variable, value) in config::read(&path)? {
        if !config::is_set(variable) {
            // SAFETY: called first thing in main, before any other thread exists.
            unsafe { std::env::set_var(variable, value) };
        }
    }
    Ok(())
}

fn init_logging(format: LogFormat) {
    // The redis client logs every failed connection attempt; jobhost reports
    // outages itself, once each, so only its errors pass by default.
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,redis=error"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}
