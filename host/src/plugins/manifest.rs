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
//! http_requests = 64        # outbound HTTP requests per job (default 64)
//! http_response_bytes = 16777216  # response bytes per job, all requests (default 16 MiB)
//! http_connect_timeout = "10s"    # per request (default 10s; never past the job's limit)
//! kv_value_bytes = 1048576  # largest value a job may write (default 1 MiB)
//! kv_writes = 1000          # keys one job may write (default 1000)
//! kv_write_bytes = 16777216 # bytes of keys and values one job may write (default 16 MiB)
//! kv_list_keys = 1000       # keys one list-keys call returns, about (default 1000)
//! rate = "50/s"             # fleet-wide starts (N/s, N/m, N/h, N/500ms; see `fleet.rs`)
//! burst = 20                # starts at once above the rate (default 1)
//! fleet_concurrency = 2     # jobs running at once across all hosts
//!
//! [grants]
//! env = ["API_BASE"]                                   # host variables passed through
//! dirs = [{ host = "/srv/data", guest = "/data" }]     # read-only
//! http = ["https://api.example.com", "https://*.example.org", "http://127.0.0.1:8080"]
//! keyvalue = ["counters", "sent"]                      # buckets (see `kv/`)
//!
//! [config]                     # what wasi:config/store returns (see `config.rs`)
//! webhook_url = "https://hooks.example.com/orders"
//! api_key = { env = "STRIPE_KEY", secret = true }
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::config::{ConfigEntry, PluginConfig};
use super::fleet::{FleetLimit, Rate};
use super::kv::{self, KvGrant, KvLimits};
use super::outbound::{HttpGrant, HttpLimits, OriginGrant};

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
    /// Bounds on each job's outbound HTTP.
    pub http: HttpLimits,
    /// Bounds on each job's key-value state.
    pub kv: KvLimits,
    /// Limits shared by every host through Redis; none by default.
    pub fleet: FleetLimit,
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
            http: HttpLimits::default(),
            kv: KvLimits::default(),
            fleet: FleetLimit::default(),
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
    #[serde(default)]
    config: BTreeMap<String, ConfigEntry>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsSection {
    memory_mib: Option<u32>,
    timeout: Option<String>,
    max_attempts: Option<u32>,
    concurrency: Option<u32>,
    jobs_per_instance: Option<u32>,
    http_requests: Option<u32>,
    http_response_bytes: Option<u64>,
    http_connect_timeout: Option<String>,
    kv_value_bytes: Option<usize>,
    kv_writes: Option<usize>,
    kv_write_bytes: Option<usize>,
    kv_list_keys: Option<usize>,
    rate: Option<String>,
    burst: Option<u32>,
    fleet_concurrency: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantsSection {
    #[serde(default)]
    env: Vec<String>,
    #[serde(default)]
    dirs: Vec<DirGrant>,
    #[serde(default)]
    http: Vec<String>,
    #[serde(default)]
    keyvalue: Vec<String>,
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
    /// Origins its jobs may send HTTP requests to, and the bounds on them.
    pub http: Arc<HttpGrant>,
    /// What `wasi:config/store` gives its jobs.
    pub config: PluginConfig,
    /// Key-value buckets its jobs may open, and the bounds on them.
    pub kv: Arc<KvGrant>,
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
    let mut settings = match std::fs::read_to_string(&path) {
        Ok(text) => parse(&text, path.parent().unwrap_or(Path::new(".")))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Settings::default(),
        Err(e) => return Err(format!("manifest {}: {e}", path.display())),
    };
    // Refusals of HTTP requests name the file to edit, existing or not.
    let mut http = (*settings.grants.http).clone();
    http.manifest = path.clone();
    settings.grants.http = Arc::new(http);
    let mut kv = (*settings.grants.kv).clone();
    kv.manifest = path;
    settings.grants.kv = Arc::new(kv);
    Ok(settings)
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
    if let Some(timeout) = &manifest.limits.timeout {
        limits.timeout = humantime::parse_duration(timeout)
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
    parse_http_limits(&manifest.limits, &mut limits.http)?;
    parse_kv_limits(&manifest.limits, &mut limits.kv)?;
    limits.fleet = parse_fleet_limit(&manifest.limits)?;
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
    let origins = manifest
        .grants
        .http
        .iter()
        .map(|text| OriginGrant::parse(text))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("manifest: {e}"))?;
    let http = Arc::new(HttpGrant {
        origins,
        limits: limits.http,
        manifest: PathBuf::new(),
    });
    let config =
        PluginConfig::from_entries(manifest.config).map_err(|e| format!("manifest: {e}"))?;
    for bucket in &manifest.grants.keyvalue {
        kv::check_bucket_name(bucket).map_err(|e| format!("manifest: grants.keyvalue: {e}"))?;
    }
    let kv = Arc::new(KvGrant {
        buckets: manifest.grants.keyvalue,
        limits: limits.kv,
        manifest: PathBuf::new(),
    });
    Ok(Settings {
        limits,
        grants: Grants {
            env,
            dirs,
            http,
            config,
            kv,
        },
    })
}

fn parse_fleet_limit(section: &LimitsSection) -> Result<FleetLimit, String> {
    let mut rate = section
        .rate
        .as_deref()
        .map(Rate::parse)
        .transpose()
        .map_err(|e| format!("manifest: limits.rate {e}"))?;
    match (section.burst, rate.as_mut()) {
        (Some(0), _) => return Err("manifest: limits.burst must be at least 1".into()),
        (Some(burst), Some(rate)) => rate.burst = burst,
        (Some(_), None) => {
            return Err("manifest: limits.burst needs limits.rate (e.g. rate = \"50/s\")".into());
        }
        (None, _) => {}
    }
    if section.fleet_concurrency == Some(0) {
        return Err("manifest: limits.fleet_concurrency must be above 0".into());
    }
    Ok(FleetLimit {
        rate,
        concurrency: section.fleet_concurrency,
    })
}

fn parse_kv_limits(section: &LimitsSection, kv: &mut KvLimits) -> Result<(), String> {
    let limits = [
        (
            "kv_value_bytes",
            section.kv_value_bytes,
            &mut kv.value_bytes,
        ),
        ("kv_writes", section.kv_writes, &mut kv.writes),
        (
            "kv_write_bytes",
            section.kv_write_bytes,
            &mut kv.write_bytes,
        ),
        ("kv_list_keys", section.kv_list_keys, &mut kv.list_keys),
    ];
    for (name, value, limit) in limits {
        match value {
            Some(0) => return Err(format!("manifest: limits.{name} must be above 0")),
            Some(value) => *limit = value,
            None => {}
        }
    }
    Ok(())
}

fn parse_http_limits(section: &LimitsSection, http: &mut HttpLimits) -> Result<(), String> {
    if let Some(requests) = section.http_requests {
        http.requests = requests;
    }
    if let Some(bytes) = section.http_response_bytes {
        http.response_bytes = bytes;
    }
    if let Some(timeout) = &section.http_connect_timeout {
        http.connect_timeout = humantime::parse_duration(timeout)
            .ok()
            .filter(|t| *t > Duration::ZERO)
            .ok_or_else(|| {
                format!(
                    "manifest: limits.http_connect_timeout {timeout:?} is not a duration (e.g. 5s)"
                )
            })?;
    }
    Ok(())
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
    fn fleet_limits_are_read_and_checked() {
        let settings = parse(
            "[limits]\nrate = \"50/s\"\nburst = 20\nfleet_concurrency = 2\n",
            Path::new("."),
        )
        .unwrap();
        let fleet = settings.limits.fleet;
        assert_eq!(fleet.rate.unwrap().count, 50);
        assert_eq!(fleet.rate.unwrap().burst, 20);
        assert_eq!(fleet.concurrency, Some(2));
        assert!(fleet.is_limited());
        assert!(!parse("", Path::new(".")).unwrap().limits.fleet.is_limited());
        for (text, says) in [
            ("[limits]\nrate = \"fast\"\n", "limits.rate"),
            ("[limits]\nburst = 3\n", "needs limits.rate"),
            ("[limits]\nrate = \"1/s\"\nburst = 0\n", "limits.burst"),
            ("[limits]\nfleet_concurrency = 0\n", "fleet_concurrency"),
        ] {
            let error = parse(text, Path::new(".")).unwrap_err();
            assert!(error.contains(says), "{text}: {error}");
        }
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
    fn keyvalue_grants_and_limits_are_read_and_checked() {
        let settings = parse(
            "[limits]\nkv_writes = 5\nkv_value_bytes = 10\n[grants]\nkeyvalue = [\"counters\", \"sent\"]\n",
            Path::new("."),
        )
        .unwrap();
        assert_eq!(settings.grants.kv.buckets, ["counters", "sent"]);
        assert_eq!(settings.limits.kv.writes, 5);
        assert_eq!(settings.grants.kv.limits.value_bytes, 10);
        let error = parse("[grants]\nkeyvalue = [\"a:b\"]\n", Path::new(".")).unwrap_err();
        assert!(error.contains("grants.keyvalue"), "{error}");
        let error = parse("[limits]\nkv_writes = 0\n", Path::new(".")).unwrap_err();
        assert!(error.contains("kv_writes"), "{error}");
    }

    #[test]
    fn no_manifest_means_defaults_and_no_grants() {
        let settings = load(Path::new("/nonexistent/x.wasm")).unwrap();
        assert_eq!(settings.limits, Limits::default());
        assert!(settings.grants.http.origins.is_empty());
        assert!(settings.grants.kv.buckets.is_empty());
        assert_eq!(
            settings.grants.kv.manifest,
            Path::new("/nonexistent/x.toml")
        );
        assert_eq!(
            settings.grants.http.manifest,
            Path::new("/nonexistent/x.toml")
        );
        assert_eq!(settings.grants.config, PluginConfig::default());
    }

    #[test]
    fn http_grants_limits_and_config_are_read() {
        let settings = parse(
            r#"
            [limits]
            http_requests = 3
            http_response_bytes = 1024
            http_connect_timeout = "2s"
            [grants]
            http = ["http://127.0.0.1:8080", "https://*.example.org"]
            [config]
            url = "http://127.0.0.1:8080/hooks"
            "#,
            Path::new("."),
        )
        .unwrap();
        let http = &settings.limits.http;
        assert_eq!((http.requests, http.response_bytes), (3, 1024));
        assert_eq!(http.connect_timeout, Duration::from_secs(2));
        assert_eq!(settings.grants.http.origins.len(), 2);
        assert_eq!(settings.grants.http.limits, *http);
        assert_eq!(
            settings.grants.config.get("url"),
            Some("http://127.0.0.1:8080/hooks")
        );
        let error = parse("[grants]\nhttp = [\"example.com\"]\n", Path::new(".")).unwrap_err();
        assert!(error.contains("grants.http"), "{error}");
        let error = parse("[config]\nx = 5\n", Path::new(".")).unwrap_err();
        assert!(error.contains("manifest"), "{error}");
    }
}
