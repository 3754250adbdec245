//! `jobhost.toml`: settings from a file, beneath the environment and the flags.
//!
//! A key is the name of a setting (see `settings.rs`), with `_` or `-`, and
//! stands for that setting's environment variable. The command line is parsed
//! once, leniently, to learn which settings its flags and the environment set
//! (clap's value source); every other setting the file holds is appended to
//! the command line as its flag, which clap then parses with the rest. So a
//! value from the file is checked by its flag's own parser, with its messages,
//! and a key the command at hand has no flag for is ignored (`redis` and
//! `queue` reach `enqueue`, `plugins` does not; `enqueue --max-attempts`, a
//! flag of its own without an environment variable, is not the setting
//! `max_attempts`).
//!
//! ```toml
//! redis = "redis://127.0.0.1:6379"
//! queue = ["critical", "default"]   # or "critical=3,default=1"
//! plugins = "./plugins"
//! concurrency = 4
//! metrics = "127.0.0.1:9464"
//! ```

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Command, CommandFactory};

use super::settings::is_setting;
use super::{Cli, env};

/// Where the file is looked for when neither `--config` nor `JOBHOST_CONFIG` names one.
pub const DEFAULT_FILE: &str = "jobhost.toml";
/// The key of the `[[schedule]]` entries.
const SCHEDULE_KEY: &str = "schedule";

/// The config file: `explicit` (from `--config` or `JOBHOST_CONFIG`), else
/// `./jobhost.toml` if it exists.
pub fn file(explicit: Option<PathBuf>) -> Option<PathBuf> {
    explicit.or_else(|| {
        Path::new(DEFAULT_FILE)
            .is_file()
            .then(|| PathBuf::from(DEFAULT_FILE))
    })
}

/// One `[[schedule]]` entry of the file.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleEntry {
    name: String,
    cron: String,
    #[serde(default)]
    tz: Option<String>,
    #[serde(default)]
    queue: Option<String>,
    #[serde(rename = "type")]
    job_type: String,
    /// A string is sent as is; any other value as its JSON text.
    payload: toml::Value,
    #[serde(default)]
    catch_up: Option<String>,
}

/// The `[[schedule]]` entries of `path`, checked as `schedule add` checks
/// its arguments. An entry without `queue` goes to `default_queue` (the
/// first queue `run` serves); without `tz`, UTC; without `catch_up`, one.
///
/// ```toml
/// [[schedule]]
/// name = "nightly-report"
/// cron = "0 3 * * *"
/// tz = "Europe/Paris"
/// type = "reports.nightly"
/// payload = { format = "pdf" }
/// ```
pub fn schedules(
    path: &Path,
    default_queue: &str,
) -> anyhow::Result<Vec<crate::schedule::Definition>> {
    let where_ = || format!("config file {}", path.display());
    let text = std::fs::read_to_string(path).with_context(where_)?;
    let mut table: toml::Table =
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {}", where_(), e.message()))?;
    let Some(entries) = table.remove(SCHEDULE_KEY) else {
        return Ok(Vec::new());
    };
    let toml::Value::Array(entries) = entries else {
        bail!("{}: `schedule` must be [[schedule]] tables", where_());
    };
    let mut definitions: Vec<crate::schedule::Definition> = Vec::new();
    for (index, entry) in entries.into_iter().enumerate() {
        let at = || format!("{}: [[schedule]] number {}", where_(), index + 1);
        let entry: ScheduleEntry = entry
            .try_into()
            .map_err(|e: toml::de::Error| anyhow::anyhow!("{}: {}", at(), e.message()))?;
        let payload = match entry.payload {
            toml::Value::String(text) => text.into_bytes(),
            other => serde_json::to_string(&other)?.into_bytes(),
        };
        let catch_up = match entry.catch_up.as_deref() {
            Some(text) => text.parse().map_err(|e| anyhow::anyhow!("{}: {e}", at()))?,
            None => crate::schedule::CatchUp::default(),
        };
        let definition = crate::schedule::Definition::new(
            &entry.name,
            &entry.cron,
            entry.tz.as_deref().unwrap_or("UTC"),
            entry.queue.as_deref().unwrap_or(default_queue),
            &entry.job_type,
            payload,
            catch_up,
        )
        .map_err(|e| anyhow::anyhow!("{} ({}): {e}", at(), entry.name))?;
        if definitions.iter().any(|d| d.name == definition.name) {
            bail!("{}: schedule {} is defined twice", at(), entry.name);
        }
        definitions.push(definition);
    }
    Ok(definitions)
}

/// `args` with the settings of the config file appended as flags wherever
/// neither a flag nor the environment set them.
pub fn beneath(mut args: Vec<OsString>) -> anyhow::Result<Vec<OsString>> {
    // `--help`, `--version`: the file plays no part.
    let Some(first) = lenient(&args) else {
        return Ok(args);
    };
    let Some((path, _)) = config_file(&first) else {
        return Ok(args);
    };
    let mut cli = Cli::command();
    cli.build();
    let (command, matches) = leaf(&cli, &first);
    let mut flags = Vec::new();
    for (variable, value) in read(&cli, &path)? {
        let Some(arg) = command
            .get_arguments()
            .find(|arg| arg.get_env() == Some(OsStr::new(variable)))
        else {
            continue;
        };
        if set_elsewhere(matches, arg) {
            continue;
        }
        flags.extend(
            as_flag(arg, &value).with_context(|| format!("config file {}", path.display()))?,
        );
    }
    // Before a `--`, after which everything is a positional value.
    let at = args.iter().position(|a| a == "--").unwrap_or(args.len());
    args.splice(at..at, flags);
    Ok(args)
}

/// The config file named by `--config FILE` in `args` or by `JOBHOST_CONFIG`
/// (then `true`), else `./jobhost.toml` if it exists. `None` when there is none.
pub fn locate<S: AsRef<OsStr>>(args: &[S]) -> Option<(PathBuf, bool)> {
    let args: Vec<OsString> = args.iter().map(|a| a.as_ref().to_owned()).collect();
    config_file(&lenient(&args)?)
}

/// What the command line and the environment say, errors aside: the file may
/// yet supply a required flag.
fn lenient(args: &[OsString]) -> Option<ArgMatches> {
    Cli::command()
        .ignore_errors(true)
        .try_get_matches_from(args)
        .ok()
}

fn config_file(matches: &ArgMatches) -> Option<(PathBuf, bool)> {
    if let Some(path) = matches.get_one::<PathBuf>("config") {
        return Some((path.clone(), true));
    }
    Path::new(DEFAULT_FILE)
        .is_file()
        .then(|| (PathBuf::from(DEFAULT_FILE), false))
}

/// The subcommand that runs, and its matches.
fn leaf<'a>(
    mut command: &'a Command,
    mut matches: &'a ArgMatches,
) -> (&'a Command, &'a ArgMatches) {
    while let Some((name, sub_matches)) = matches.subcommand() {
        let Some(sub) = command.find_subcommand(name) else {
            break;
        };
        command = sub;
        matches = sub_matches;
    }
    (command, matches)
}

/// Whether a flag or the environment already set `arg` (for the Redis URL,
/// also through the `REDIS_URL` fallback).
fn set_elsewhere(matches: &ArgMatches, arg: &clap::Arg) -> bool {
    let source = matches.value_source(arg.get_id().as_str());
    matches!(
        source,
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    ) || (arg.get_env() == Some(OsStr::new(env::REDIS_URL))
        && std::env::var_os(env::REDIS_URL_FALLBACK).is_some())
}

/// The command-line form of a setting's value.
fn as_flag(arg: &clap::Arg, value: &str) -> anyhow::Result<Option<OsString>> {
    let long = arg.get_long().expect("every setting has a long flag");
    let on = match (arg.get_action(), value) {
        (ArgAction::SetTrue, "true") | (ArgAction::SetFalse, "false") => true,
        (ArgAction::SetTrue | ArgAction::SetFalse, "true" | "false") => false,
        (ArgAction::SetTrue | ArgAction::SetFalse, _) => {
            bail!("`{}` must be true or false, not {value:?}", arg.get_id())
        }
        _ => return Ok(Some(format!("--{long}={value}").into())),
    };
    Ok(on.then(|| format!("--{long}").into()))
}

/// The settings of `path` as (environment variable, value) pairs; the keys
/// are those of `cli`'s `run` (a built command, so its global flags count).
pub fn read<'c>(cli: &'c Command, path: &Path) -> anyhow::Result<Vec<(&'c str, String)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("config file {}", path.display()))?;
    let table: toml::Table = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("config file {}: {}", path.display(), e.message()))?;
    let run = cli
        .find_subcommand("run")
        .expect("jobhost has a run command");
    let settings: Vec<&clap::Arg> = run.get_arguments().filter(|arg| is_setting(arg)).collect();
    let mut pairs = Vec::new();
    for (key, value) in table {
        // `[[schedule]]` entries are not settings: `run` reads them (`schedules`).
        if key == SCHEDULE_KEY {
            continue;
        }
        let name = key.replace('-', "_");
        let Some(arg) = settings.iter().find(|arg| arg.get_id() == name.as_str()) else {
            let known: Vec<&str> = settings.iter().map(|arg| arg.get_id().as_str()).collect();
            bail!(
                "config file {}: unknown key `{key}` (known: {})",
                path.display(),
                known.join(", ")
            );
        };
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(n) => n.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            // A list setting (`queue = ["critical", "low"]`), as its
            // environment variable spells it.
            toml::Value::Array(items) if arg.get_value_delimiter() == Some(',') => items
                .iter()
                .map(|item| match item {
                    toml::Value::String(s) => Ok(s.clone()),
                    toml::Value::Integer(n) => Ok(n.to_string()),
                    other => Err(anyhow::anyhow!(
                        "config file {}: `{key}` must list strings, not {}",
                        path.display(),
                        other.type_str()
                    )),
                })
                .collect::<anyhow::Result<Vec<_>>>()?
                .join(","),
            other => bail!(
                "config file {}: `{key}` must be a string or a number, not {}",
                path.display(),
                other.type_str()
            ),
        };
        let variable = arg
            .get_env()
            .and_then(OsStr::to_str)
            .expect("settings have environment variables");
        pairs.push((variable, value));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_keys_map_to_environment_variables_and_unknown_keys_are_refused() {
        let dir = std::env::temp_dir().join(format!("jobhost-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("jobhost.toml");
        std::fs::write(
            &file,
            "queue = \"emails\"\nconcurrency = 4\nclaim-idle = \"5s\"\n",
        )
        .unwrap();
        let mut cli = Cli::command();
        cli.build();
        let mut settings = read(&cli, &file).unwrap();
        settings.sort();
        assert_eq!(
            settings,
            vec![
                (env::CLAIM_IDLE, "5s".to_string()),
                (env::CONCURRENCY, "4".to_string()),
                (env::QUEUE, "emails".to_string()),
            ]
        );
        std::fs::write(&file, "queue = [\"critical\", \"low\"]\n").unwrap();
        assert_eq!(
            read(&cli, &file).unwrap(),
            vec![(env::QUEUE, "critical,low".to_string())]
        );
        std::fs::write(
            &file,
            "queue = \"emails\"\n[[schedule]]\nname = \"n\"\ncron = \"0 3 * * *\"\ntype = \"t.x\"\npayload = { id = 1 }\n",
        )
        .unwrap();
        assert_eq!(
            read(&cli, &file).unwrap(),
            vec![(env::QUEUE, "emails".to_string())]
        );
        let defined = schedules(&file, "emails").unwrap();
        assert_eq!(defined.len(), 1);
        assert_eq!(defined[0].queue, "emails");
        assert_eq!(defined[0].payload, br#"{"id":1}"#);
        assert_eq!(defined[0].cron.zone(), "UTC");
        std::fs::write(&file, "[[schedule]]\nname = \"n\"\ncron = \"0 3 * * *\"\ntz = \"Nowhere/City\"\ntype = \"t.x\"\npayload = \"p\"\n").unwrap();
        let error = schedules(&file, "default").unwrap_err().to_string();
        assert!(error.contains("Nowhere/City"), "{error}");
        std::fs::write(&file, "qeueu = \"x\"\n").unwrap();
        let error = read(&cli, &file).unwrap_err().to_string();
        assert!(error.contains("unknown key `qeueu`"), "{error}");
    }

    #[test]
    fn config_flag_wins_over_the_default_file() {
        let args: Vec<String> = ["jobhost", "run", "--config", "/etc/jobhost.toml"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            locate(&args),
            Some((PathBuf::from("/etc/jobhost.toml"), true))
        );
    }
}
