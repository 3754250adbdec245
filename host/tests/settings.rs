//! Every setting of `jobhost run`, enumerated from its definition: a flag
//! beats the environment, which beats `jobhost.toml`, which beats the default,
//! and `--print-config` shows the winner (the Redis password masked). The real
//! binary runs with an environment of the test's choosing, so no test touches
//! this process's environment.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use clap::CommandFactory;
use jobhost::cli::Cli;

/// A folder of its own, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "jobhost-settings-{}-{name}-{:x}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&path).unwrap();
        Dir(path)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One setting as the test drives it.
struct Setting {
    key: String,
    long: String,
    variable: String,
    switch: bool,
    required: bool,
    default: Option<String>,
    /// Two values, each as given and as `--print-config` shows it; the first
    /// differs from the default.
    samples: [(String, String); 2],
}

/// The settings of `run`: every argument but `--help`, `--print-config` and
/// `--config`, which names the file itself.
fn settings() -> Vec<Setting> {
    let mut cli = Cli::command();
    cli.build();
    let run = cli.find_subcommand("run").unwrap();
    run.get_arguments()
        .filter(|arg| !["help", "print_config", "config"].contains(&arg.get_id().as_str()))
        .map(|arg| {
            let key = arg.get_id().to_string();
            let variable = arg
                .get_env()
                .unwrap_or_else(|| panic!("`{key}` has no environment variable"))
                .to_str()
                .unwrap()
                .to_owned();
            assert!(variable.starts_with("JOBHOST_"), "{key}: {variable}");
            let default = arg
                .get_default_values()
                .first()
                .map(|v| v.to_str().unwrap().to_owned());
            let switch = !arg.get_action().takes_values();
            let possible: Vec<String> = arg
                .get_possible_values()
                .iter()
                .map(|v| v.get_name().to_owned())
                .collect();
            let value_name = arg
                .get_value_names()
                .and_then(|names| names.first())
                .map(|name| name.to_string());
            let samples = samples(&key, switch, &possible, default.as_deref(), value_name);
            Setting {
                long: arg.get_long().unwrap().to_owned(),
                key,
                variable,
                switch,
                required: arg.is_required_set(),
                default,
                samples,
            }
        })
        .collect()
}

fn samples(
    key: &str,
    switch: bool,
    possible: &[String],
    default: Option<&str>,
    value_name: Option<String>,
) -> [(String, String); 2] {
    let same = |a: &str, b: &str| [(a.to_owned(), a.to_owned()), (b.to_owned(), b.to_owned())];
    if switch {
        return same("true", "false");
    }
    if !possible.is_empty() {
        let other: Vec<&String> = possible
            .iter()
            .filter(|v| Some(v.as_str()) != default)
            .collect();
        return same(other[0], default.unwrap_or(&possible[0]));
    }
    // A value name clap made up from the key: a plain string.
    let value_name = value_name.filter(|name| *name != key.to_uppercase());
    match value_name.as_deref() {
        None => same(&format!("{key}-a"), &format!("{key}-b")),
        // Not a likely number of CPUs, `--concurrency`'s default.
        Some("N") => same("301", "307"),
        Some("BYTES") => same("2048", "4096"),
        Some("DURATION") => same("7s", "9s"),
        Some("DIR") => same("/tmp/from-a", "/tmp/from-b"),
        Some("NAME") => same("name-a", "name-b"),
        Some("NAME[=WEIGHT]") => same("queue-a", "queue-b"),
        Some("TYPE") => same("type.a", "type.b"),
        Some("N/s") => same("3/s", "7/s"),
        Some("ADDR") => same("127.0.0.1:1001", "127.0.0.1:1002"),
        Some("URL") => [
            (
                "redis://ops:secret-a@127.0.0.1:1".to_owned(),
                "redis://ops:***@127.0.0.1:1".to_owned(),
            ),
            (
                "redis://ops:secret-b@127.0.0.1:2".to_owned(),
                "redis://ops:***@127.0.0.1:2".to_owned(),
            ),
        ],
        Some(other) => panic!("`{key}`: add sample values for value name {other}"),
    }
}

/// Where each setting comes from in one run.
#[derive(Default)]
struct Sources<'a> {
    flag: Option<&'a str>,
    env: Option<&'a str>,
    file: Option<&'a str>,
}

/// `jobhost run --print-config` with `setting` given by `sources`, the others
/// at their defaults (but for what `run` requires).
fn print_config(setting: &Setting, all: &[Setting], sources: &Sources) -> Output {
    let dir = Dir::new(&setting.key);
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_jobhost"));
    command
        .env_clear()
        .env("HOME", &dir.0)
        .current_dir(&dir.0)
        .args(["run", "--print-config"]);
    for other in all.iter().filter(|o| o.key != setting.key) {
        if other.required {
            command.arg(format!("--{}={}", other.long, other.samples[0].0));
        }
    }
    // The standby generator's type and rate require it.
    if setting.key != "standby_generator" {
        command.arg("--standby-generator");
    }
    if let Some(value) = sources.flag {
        if setting.switch {
            assert_eq!(value, "true", "a switch's flag can only turn it on");
            command.arg(format!("--{}", setting.long));
        } else {
            command.arg(format!("--{}={value}", setting.long));
        }
    }
    if let Some(value) = sources.env {
        command.env(&setting.variable, value);
    }
    if let Some(value) = sources.file {
        let toml = if value.parse::<i64>().is_ok() || value == "true" || value == "false" {
            value.to_owned()
        } else {
            format!("{value:?}")
        };
        write(
            &dir.0.join("jobhost.toml"),
            &format!("{} = {toml}\n", setting.key),
        );
    }
    command.output().unwrap()
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

fn printed(output: &Output) -> HashMap<String, String> {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_once(" = "))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[test]
fn every_run_setting_takes_flag_over_environment_over_file_over_default_and_is_printed() {
    let all = settings();
    assert!(all.len() >= 20, "only {} settings found", all.len());
    for setting in &all {
        let key = &setting.key;
        let [(a, shown_a), (b, shown_b)] = &setting.samples;
        let shows = |sources: &Sources, expected: &str, what: &str| {
            let output = print_config(setting, &all, sources);
            let values = printed(&output);
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(!stdout.contains("secret"), "a password printed:\n{stdout}");
            assert_eq!(
                values.get(key).map(String::as_str),
                Some(expected),
                "`{key}` {what}:\n{stdout}"
            );
        };

        let defaults = print_config(setting, &all, &Sources::default());
        if setting.required {
            assert!(!defaults.status.success(), "`{key}` is required");
        } else {
            let values = printed(&defaults);
            let shown = values
                .get(key)
                .unwrap_or_else(|| panic!("`{key}` not printed"));
            match &setting.default {
                Some(default) => assert_eq!(shown, default, "`{key}` default"),
                None => assert!(shown != shown_a && shown != shown_b, "`{key}`: {shown}"),
            }
        }
        let file = Sources {
            file: Some(a),
            ..Sources::default()
        };
        shows(&file, shown_a, "from the file beats the default");
        let env = Sources {
            env: Some(b),
            file: Some(a),
            ..Sources::default()
        };
        shows(&env, shown_b, "from the environment beats the file");
        let flag = Sources {
            flag: Some(a),
            env: Some(b),
            file: Some(a),
        };
        let flag_only = Sources {
            flag: Some(a),
            file: Some(b),
            ..Sources::default()
        };
        shows(&flag, shown_a, "from a flag beats the environment");
        if !setting.switch {
            shows(&flag_only, shown_a, "from a flag beats the file");
        }
    }
}

#[test]
fn redis_url_is_read_after_jobhost_redis_url_and_before_the_file() {
    let dir = Dir::new("redis-url");
    write(&dir.0.join("jobhost.toml"), "redis = \"redis://file:1\"\n");
    let redis = |vars: &[(&str, &str)]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_jobhost"))
            .env_clear()
            .envs(vars.iter().copied())
            .current_dir(&dir.0)
            .args(["run", "--plugins", ".", "--print-config"])
            .output()
            .unwrap();
        printed(&output)["redis"].clone()
    };
    assert_eq!(redis(&[]), "redis://file:1");
    assert_eq!(
        redis(&[("REDIS_URL", "redis://fallback:1")]),
        "redis://fallback:1"
    );
    assert_eq!(
        redis(&[
            ("REDIS_URL", "redis://fallback:1"),
            ("JOBHOST_REDIS_URL", "redis://own:1")
        ]),
        "redis://own:1"
    );
}
