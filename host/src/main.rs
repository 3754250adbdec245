use std::process::ExitCode;

use jobhost::cli::{ArgsError, execute, parse};

fn main() -> ExitCode {
    let cli = match parse(std::env::args_os()) {
        Ok(cli) => cli,
        // A value a flag's parser refused: one line, like every other error
        // a user can cause (clap's own lines for unknown flags and `--help`).
        Err(ArgsError::Usage(error))
            if matches!(
                error.kind(),
                clap::error::ErrorKind::ValueValidation | clap::error::ErrorKind::InvalidValue
            ) =>
        {
            let text = error.to_string();
            let first = text.lines().next().unwrap_or_default();
            eprintln!(
                "jobhost: {}",
                first.strip_prefix("error: ").unwrap_or(first)
            );
            return ExitCode::from(2);
        }
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
