//! `jobhost.toml`: settings from a file, below the environment and the flags.
//!
//! The file is read before the command line is parsed, and each setting it
//! holds becomes the environment variable of its flag unless that variable is
//! already set. Clap then applies flags over environment, so the precedence
//! flags > environment > file holds without a second merge.
//!
//! ```toml
//! redis = "redis://127.0.0.1:6379"
//! queue = "emails"
//! plugins = "./plugins"
//! concurrency = 4
//! metrics = "127.0.0.1:9464"
//! ```

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::env;

/// Where the file is looked for when neither `--config` nor `JOBHOST_CONFIG` names one.
pub const DEFAULT_FILE: &str = "jobhost.toml";

/// File keys and the environment variables they stand for.
const KEYS: &[(&str, &str)] = &[
    ("redis", env::REDIS_URL),
    ("namespace", env::NAMESPACE),
    ("queue", env::QUEUE),
    ("plugins", env::PLUGINS),
    ("concurrency", env::CONCURRENCY),
    ("prefetch", env::PREFETCH),
    ("consumer", env::CONSUMER),
    ("shutdown_timeout", env::SHUTDOWN_TIMEOUT),
    ("claim_idle", env::CLAIM_IDLE),
    ("max_deliveries", env::MAX_DELIVERIES),
    ("max_attempts", env::MAX_ATTEMPTS),
    ("retry_base", env::RETRY_BASE),
    ("retry_cap", env::RETRY_CAP),
    ("cache_dir", env::CACHE_DIR),
    ("metrics", env::METRICS),
    ("max_payload", env::MAX_PAYLOAD),
    ("log_format", env::LOG_FORMAT),
    ("no_cache", env::NO_CACHE),
    ("standby_generator", env::STANDBY_GENERATOR),
    ("generate_type", env::GENERATE_TYPE),
    ("generate_rate", env::GENERATE_RATE),
];

/// The config file named by `--config FILE` in `args` or by `JOBHOST_CONFIG`,
/// else `./jobhost.toml` if it exists. `Ok(None)` when there is none.
pub fn locate(args: &[String]) -> Option<(PathBuf, bool)> {
    let mut named = None;
    for (i, arg) in args.iter().enumerate() {
        if let Some(value) = arg.strip_prefix("--config=") {
            named = Some(value.to_owned());
        } else if arg == "--config" {
            named = args.get(i + 1).cloned();
        }
    }
    if let Some(path) = named.or_else(|| std::env::var(env::CONFIG).ok()) {
        return Some((PathBuf::from(path), true));
    }
    Path::new(DEFAULT_FILE)
        .is_file()
        .then(|| (PathBuf::from(DEFAULT_FILE), false))
}

/// Whether the environment already sets `variable` (for the Redis URL, also
/// through the `REDIS_URL` fallback), so a file value must not override it.
pub fn is_set(variable: &str) -> bool {
    std::env::var_os(variable).is_some()
        || (variable == env::REDIS_URL && std::env::var_os(env::REDIS_URL_FALLBACK).is_some())
}

/// The settings of `path` as (environment variable, value) pairs.
pub fn read(path: &Path) -> anyhow::Result<Vec<(&'static str, String)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("config file {}", path.display()))?;
    let table: toml::Table = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("config file {}: {}", path.display(), e.message()))?;
    let mut settings = Vec::new();
    for (key, value) in table {
        let Some((_, variable)) = KEYS.iter().find(|(name, _)| *name == key.replace('-', "_"))
        else {
            let known: Vec<&str> = KEYS.iter().map(|(name, _)| *name).collect();
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
            other => bail!(
                "config file {}: `{key}` must be a string or a number, not {}",
                path.display(),
                other.type_str()
            ),
        };
        settings.push((*variable, value));
    }
    Ok(settings)
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
        let mut settings = read(&file).unwrap();
        settings.sort();
        assert_eq!(
            settings,
            vec![
                (env::CLAIM_IDLE, "5s".to_string()),
                (env::CONCURRENCY, "4".to_string()),
                (env::QUEUE, "emails".to_string()),
            ]
        );
        std::fs::write(&file, "qeueu = \"x\"\n").unwrap();
        let error = read(&file).unwrap_err().to_string();
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
