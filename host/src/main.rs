use std::io::IsTerminal;
use std::process::ExitCode;

use jobhost::cli::{ArgsError, Command, LogFormat, execute, parse};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = match parse(std::env::args_os()) {
        Ok(cli) => cli,
        Err(ArgsError::Usage(error)) => error.exit(),
        Err(ArgsError::File(error)) => {
            eprintln!("jobhost: {}", one_line(&error));
            return ExitCode::FAILURE;
        }
    };
    // The benchmark's in-process host would otherwise log every job it drains.
    let default_level = match cli.command {
        Command::Bench(_) => "warn",
        _ => "info",
    };
    init_logging(cli.log_format, default_level);
    match execute(cli) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(error) => {
            eprintln!("jobhost: {}", one_line(&error));
            ExitCode::FAILURE
        }
    }
}

/// One line, whatever the error chain holds.
fn one_line(error: &anyhow::Error) -> String {
    format!("{error:#}").replace('\n', " ")
}

fn init_logging(format: LogFormat, default_level: &str) {
    // The redis client logs every failed connection attempt; jobhost reports
    // outages itself, once each, so only its errors pass by default.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{default_level},redis=error")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}
