use std::process::ExitCode;

use jobhost::cli::{ArgsError, execute, parse};

fn main() -> ExitCode {
    let cli = match parse(std::env::args_os()) {
        Ok(cli) => cli,
        Err(ArgsError::Usage(error)) => error.exit(),
        Err(ArgsError::File(error)) => {
            eprintln!("jobhost: {}", one_line(&error));
            return ExitCode::FAILURE;
        }
    };
    jobhost::logging::init(cli.log_format, "info");
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
