//! `NAME.toml` beside `NAME.wasm`: per-plugin limits and the capabilities
//! granted to it. Anything not granted is denied; an unknown key is an error.
//!
//! ```toml
//! [limits]
//! memory_mib = 128      # linear memory per job (default 64)
//! timeout = "10s"       # wall time per job (default 30s)
//! max_attempts = 3      # before the DLQ (default: the host's)
//! concurrency = 2       # jobs of this plugin at once (default: the host's)
//! jobs_per_instance = 1000  # jobs one instance serves before it is replaced (default 1)
//!
//! [grants]
//! env = ["API_BASE"]                                   # host variables passed through
//! dirs = [{ host = "/srv/data", guest = "/data" }]     # read-only
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Resource limits of each job of a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub memory_bytes: usize,
    pub timeout: Duration,
    /// Overrides the host's attempt limit (a job's own limit still wins).
    pub max_attempts: Option<u32>,
    /// Most jobs of this plugin running at once.
    pub concurrency: Option<u32>,
    /// Jobs one instance serves before it is replaced; 1 (the default) is a
    /// fresh instance per job. Above 1, a job sees what earlier jobs of the
    /// same thread left in the instance (statics, heap), and the memory limit
    /// covers the instance over all its jobs.
    pub jobs_per_instance: u32,
}

impl Default for Limits {
    /// 64 MiB of linear memory and 30 s of wall time per job, a fresh instance each.
    fn default() -> Self {
        Limits {
            memory_bytes: 64 << 20,
            timeout: Duration::from_secs(30),
            max_attempts: None,
            concurrency: None,
            jobs_per_instance: 1,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    #[serde(default)]
    limits: LimitsSection,
    #[serde(default)]
    grants: GrantsSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsSection {
    memory_mib: Option<u32>,
    timeout: Option<String>,
    max_attempts: Option<u32>,
    concurrency: Option<u32>,
    jobs_per_instance: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantsSection {
    #[serde(default)]
    env: Vec<String>,
    #[serde(default)]
    dirs: Vec<DirGrant>,
}

/// A host directory a plugin may read, and where the guest sees it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirGrant {
    pub host: PathBuf,
    pub guest: String,
}

/// Capabilities granted to a plugin's jobs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// Environment variables (name, value as read when the plugin loaded).
    pub env: Vec<(String, String)>,
    pub dirs: Vec<DirGrant>,
}

/// What a manifest sets: limits and grants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    pub limits: Limits,
    pub grants: Grants,
}

/// The manifest path for a plugin file: `NAME.toml` beside `NAME.wasm`.
pub fn manifest_path(wasm: &Path) -> PathBuf {
    wasm.with_extension("toml")
}

/// Reads the manifest beside `wasm`, if there is one.
pub fn load(wasm: &Path) -> Result<Settings, String> {
    let path = manifest_path(wasm);
    match std::fs::read_to_string(&path) {
        Ok(text) => parse(&text, path.parent().unwrap_or(Path::new("."))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Settings::default()),
        Err(e) => Err(format!("manifest {}: {e}", path.display())),
    }
}

/// Parses a manifest; relative granted directories are relative to `base`.
fn parse(text: &str, base: &Path) -> Result<Settings, String> {
    let manifest: Manifest =
        toml::from_str(text).map_err(|e| format!("manifest: {}", e.message()))?;
    let mut limits = Limits::default();
    if let Some(mib) = manifest.limits.memory_mib {
        if mib == 0 {
            return Err("manifest: limits.memory_mib must be above 0".into());
        }
        limits.memory_bytes = (mib as usize) << 20;
    }
    if let Some(timeout) = manifest.limits.timeout {
        limits.timeout = humantime::parse_duration(&timeout)
            .ok()
            .filter(|t| *t > Duration::ZERO)
            .ok_or_else(|| {
                format!("manifest: limits.timeout {timeout:?} is not a duration (e.g. 10s)")
            })?;
    }
    limits.max_attempts = manifest.limits.max_attempts.filter(|n| *n > 0);
    limits.concurrency = manifest.limits.concurrency.filter(|n| *n > 0);
    if let Some(jobs) = manifest.limits.jobs_per_instance {
        if jobs == 0 {
            return Err(
                "manifest: limits.jobs_per_instance must be at least 1 (1: a fresh instance per job)"
                    .into(),
            );
        }
        limits.jobs_per_instance = jobs;
    }
    let env = manifest
        .grants
        .env
        .into_iter()
        .filter_map(|name| match std::env::var(&name) {
            Ok(value) => Some((name, value)),
            Err(_) => {
                tracing::warn!(variable = %name, "granted environment variable is not set; not passed");
                None
            }
        })
        .collect();
    let dirs = manifest
        .grants
        .dirs
        .into_iter()
        .map(|grant| DirGrant {
            host: base.join(grant.host),
            guest: grant.guest,
        })
        .collect();
    Ok(Settings {
        limits,
        grants: Grants { env, dirs },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_overrides_limits_and_grants() {
        let settings = parse(
            r#"
            [limits]
            memory_mib = 128
            timeout = "2s"
            max_attempts = 3
            [grants]
            dirs = [{ host = "data", guest = "/data" }]
            "#,
            Path::new("/plugins"),
        )
        .unwrap();
        assert_eq!(settings.limits.memory_bytes, 128 << 20);
        assert_eq!(settings.limits.timeout, Duration::from_secs(2));
        assert_eq!(settings.limits.max_attempts, Some(3));
        assert_eq!(settings.grants.dirs[0].host, Path::new("/plugins/data"));
        assert_eq!(settings.limits.jobs_per_instance, 1);
    }

    #[test]
    fn instance_reuse_is_opt_in_and_at_least_one_job() {
        let settings = parse("[limits]\njobs_per_instance = 1000\n", Path::new(".")).unwrap();
        assert_eq!(settings.limits.jobs_per_instance, 1000);
        let error = parse("[limits]\njobs_per_instance = 0\n", Path::new(".")).unwrap_err();
        assert!(error.contains("jobs_per_instance"), "{error}");
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        let error = parse("[limits]\nmemory = 5\n", Path::new(".")).unwrap_err();
        assert!(error.contains("memory"), "{error}");
        let error = parse("[grant]\n", Path::new(".")).unwrap_err();
        assert!(error.contains("grant"), "{error}");
    }

    #[test]
    fn no_manifest_means_defaults_and_no_grants() {
        let settings = load(Path::new("/nonexistent/x.wasm")).unwrap();
        assert_eq!(settings, Settings::default());
    }
}
