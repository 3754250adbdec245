//! `jobhost run`.

use clap::{Args, CommandFactory};
use serde::Serialize;

use super::settings::{RunSettings, is_setting};
use super::{Cli, LogFormat, QueueArgs};
use crate::host;

#[derive(Debug, Args, Serialize)]
pub struct RunArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub queue: QueueArgs,
    #[command(flatten)]
    #[serde(flatten)]
    pub settings: RunSettings,
    /// Print the effective configuration (secrets masked) and exit.
    #[arg(long)]
    #[serde(skip)]
    pub print_config: bool,
}

pub async fn execute(
    mut args: RunArgs,
    log_format: LogFormat,
    config_file: Option<std::path::PathBuf>,
) -> anyhow::Result<i32> {
    args.settings = args.settings.resolve();
    let mut config = args.settings.clone().host_config(&args.queue)?;
    if let Some(path) = super::config::file(config_file) {
        let first_queue = config
            .queues
            .first()
            .map_or(crate::keys::DEFAULT_QUEUE, |q| q.name.as_str());
        config.schedules = super::config::schedules(&path, first_queue)?;
    }
    if args.print_config {
        args.queue.redis = Some(config.redis_url.clone());
        print!("{}", config_text(&args, log_format)?);
        return Ok(0);
    }
    let (trigger, shutdown) = crate::shutdown::channel();
    tokio::spawn(async move {
        super::wait_for_signal().await;
        tracing::info!("shutdown requested; send the signal again to exit at once");
        trigger.trigger();
        super::wait_for_signal().await;
        tracing::warn!("second signal: exiting at once; unfinished jobs will be reclaimed");
        std::process::exit(130);
    });
    host::run(config, shutdown).await?;
    Ok(0)
}

/// Every setting of `run` as `key = value` (the keys of `jobhost.toml`), in
/// the order they are defined in; `(none)` for one that is not set.
fn config_text(args: &RunArgs, log_format: LogFormat) -> anyhow::Result<String> {
    let serde_json::Value::Object(mut values) = serde_json::to_value(args)? else {
        unreachable!("settings serialize as a map");
    };
    // The one setting of every command (`Cli`) that is not in `args`.
    values.insert("log_format".into(), serde_json::to_value(log_format)?);
    let mut cli = Cli::command();
    cli.build();
    let run = cli
        .find_subcommand("run")
        .expect("jobhost has a run command");
    let mut text = String::new();
    for arg in run.get_arguments().filter(|arg| is_setting(arg)) {
        let key = arg.get_id().as_str();
        let value = match values.get(key) {
            Some(serde_json::Value::String(s)) => s.clone(),
            None | Some(serde_json::Value::Null) => "(none)".to_owned(),
            Some(other) => other.to_string(),
        };
        text.push_str(&format!("{key} = {value}\n"));
    }
    Ok(text)
}
