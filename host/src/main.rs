use std::process::ExitCode;

use clap::Parser;
use jobhost::cli::{Cli, Command, config, execute};

fn main() -> ExitCode {
    if let Err(error) = apply_config_file() {
        eprintln!("jobhost: {}", format!("{error:#}").replace('\n', " "));
        return ExitCode::FAILURE;
    }
    let cli = Cli::parse();
    // The benchmark's in-process host would otherwise log every job it drains.
    let default_level = match cli.command {
        Command::Bench(_) => "warn",
        _ => "info",
    };
    jobhost::logging::init(cli.log_format, default_level);
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
