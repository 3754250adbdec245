//! Where Redis is and how to reach it: one URL names a single server, a Redis
//! Cluster or a master found through Sentinel, with or without TLS.
//!
//! | form | topology |
//! |---|---|
//! | `redis://[USER:PASS@]HOST:PORT[/DB]` | one server (`rediss://` for TLS) |
//! | `redis+cluster://[USER:PASS@]HOST:PORT[,HOST:PORT…]` | Redis Cluster, from any seed nodes |
//! | `redis+sentinel://[USER:PASS@]HOST:PORT[,HOST:PORT…]/SERVICE[/DB]` | the master Sentinel names |
//!
//! `rediss+cluster://` and `rediss+sentinel://` use TLS. TLS options ride in the
//! query, so one string says everything about the connection wherever a URL is
//! taken (flag, environment, config file, Rust client): `?tls_ca=FILE` trusts a
//! private CA, `&tls_cert=FILE&tls_key=FILE` present a client certificate.
//! USER and PASS authenticate to the data nodes; sentinels are asked without them.

use std::sync::Arc;

use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{ClientTlsConfig, ConnectionAddr, IntoConnectionInfo, TlsCertificates, TlsMode};

use super::{BrokerError, redact};

/// A parsed Redis URL, ready to open connections.
pub struct Target {
    pub(super) redacted: String,
    pub(super) kind: Kind,
}

// A handful exist per process, so the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
pub(super) enum Kind {
    Single(redis::Client),
    Cluster(redis::cluster::ClusterClient),
    Sentinel(Arc<tokio::sync::Mutex<SentinelClient>>),
}

/// The parts of a URL this module reads itself; redis parses each node's own URL.
struct Parts<'a> {
    tls: bool,
    topology: &'a str,
    userinfo: Option<&'a str>,
    hosts: Vec<&'a str>,
    path: &'a str,
    certificates: Option<TlsCertificates>,
}

impl Target {
    /// Parses `url`, reading any TLS files it names.
    pub fn parse(url: &str) -> Result<Self, BrokerError> {
        let redacted = redact(url);
        let invalid = |reason: String| BrokerError::Url {
            url: redacted.clone(),
            reason,
        };
        let parts = split(url).map_err(invalid)?;
        let kind = match parts.topology {
            "" | "unix" => single(url, &parts),
            "cluster" => cluster(&parts),
            "sentinel" => sentinel(&parts),
            other => Err(format!(
                "unknown topology +{other} (use redis://, redis+cluster:// or redis+sentinel://)"
            )),
        }
        .map_err(invalid)?;
        install_tls_provider();
        Ok(Target { redacted, kind })
    }

    /// The URL with its password masked, for messages.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }
}

fn split(url: &str) -> Result<Parts<'_>, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or("expected SCHEME://HOST:PORT, e.g. redis://127.0.0.1:6379")?;
    let (base, topology) = scheme.split_once('+').unwrap_or((scheme, ""));
    let tls = match base {
        "redis" | "unix" => false,
        "rediss" => true,
        other => {
            return Err(format!(
                "unknown scheme {other}:// (use redis:// or rediss://)"
            ));
        }
    };
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (userinfo, rest) = match rest.rsplit_once('@') {
        Some((userinfo, rest)) => (Some(userinfo), rest),
        None => (None, rest),
    };
    let (hosts, path) = rest.split_once('/').unwrap_or((rest, ""));
    let certificates = tls_files(query, tls)?;
    Ok(Parts {
        tls,
        topology,
        userinfo,
        hosts: hosts.split(',').filter(|h| !h.is_empty()).collect(),
        path,
        certificates,
    })
}

/// Reads the certificate files named by `tls_ca`, `tls_cert` and `tls_key`.
fn tls_files(query: &str, tls: bool) -> Result<Option<TlsCertificates>, String> {
    let (mut ca, mut cert, mut key) = (None, None, None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match name {
            "tls_ca" => &mut ca,
            "tls_cert" => &mut cert,
            "tls_key" => &mut key,
            other => {
                return Err(format!(
                    "unknown option {other:?} (known: tls_ca, tls_cert, tls_key)"
                ));
            }
        };
        let contents =
            std::fs::read(value).map_err(|e| format!("{name}: cannot read {value}: {e}"))?;
        *slot = Some(contents);
    }
    if ca.is_none() && cert.is_none() && key.is_none() {
        return Ok(None);
    }
    if !tls {
        return Err("tls_ca, tls_cert and tls_key need a rediss:// URL".to_owned());
    }
    let client_tls = match (cert, key) {
        (Some(client_cert), Some(client_key)) => Some(ClientTlsConfig {
            client_cert,
            client_key,
        }),
        (None, None) => None,
        _ => return Err("tls_cert and tls_key go together".to_owned()),
    };
    Ok(Some(TlsCertificates {
        client_tls,
        root_cert: ca,
    }))
}

/// The URL of one node, in the plain form redis parses.
fn node_url(parts: &Parts, host: &str, db: &str) -> String {
    let scheme = if parts.tls { "rediss" } else { "redis" };
    let userinfo = parts.userinfo.map(|u| format!("{u}@")).unwrap_or_default();
    format!("{scheme}://{userinfo}{host}/{db}")
}

fn single(url: &str, parts: &Parts) -> Result<Kind, String> {
    // Without TLS files the URL goes to redis untouched, so every form it knows works.
    let url = url.split_once('?').map_or(url, |(base, _)| base);
    let client = match &parts.certificates {
        Some(certificates) => redis::Client::build_with_tls(url, certificates.clone()),
        None => redis::Client::open(url),
    };
    client.map(Kind::Single).map_err(|e| e.to_string())
}

fn cluster(parts: &Parts) -> Result<Kind, String> {
    if parts.hosts.is_empty() {
        return Err("name at least one node: redis+cluster://HOST:PORT[,HOST:PORT...]".into());
    }
    if !parts.path.is_empty() {
        return Err("Redis Cluster has only database 0; remove the /PATH".into());
    }
    let nodes: Vec<String> = parts.hosts.iter().map(|h| node_url(parts, h, "")).collect();
    let mut builder = redis::cluster::ClusterClientBuilder::new(nodes).retries(3);
    if parts.tls {
        builder = builder.tls(TlsMode::Secure);
    }
    if let Some(certificates) = &parts.certificates {
        builder = builder.certs(certificates.clone());
    }
    builder
        .build()
        .map(Kind::Cluster)
        .map_err(|e| e.to_string())
}

fn sentinel(parts: &Parts) -> Result<Kind, String> {
    let usage = "redis+sentinel://HOST:PORT[,HOST:PORT...]/SERVICE[/DB]";
    let (service, db) = parts.path.split_once('/').unwrap_or((parts.path, "0"));
    if parts.hosts.is_empty() || service.is_empty() {
        return Err(format!("name the sentinels and the service: {usage}"));
    }
    let db: i64 = db
        .parse()
        .map_err(|_| format!("database {db:?} is not a number: {usage}"))?;
    let mut sentinels = Vec::new();
    for host in &parts.hosts {
        let info = format!("redis://{host}")
            .into_connection_info()
            .map_err(|e| format!("sentinel {host}: {e}"))?;
        sentinels.push(match info.addr() {
            ConnectionAddr::Tcp(host, port) if parts.tls => ConnectionAddr::TcpTls {
                host: host.clone(),
                port: *port,
                insecure: false,
                tls_params: None,
            },
            addr => addr.clone(),
        });
    }
    // The master's credentials, decoded the way redis decodes any URL.
    let auth = node_url(parts, "localhost", "0")
        .into_connection_info()
        .map_err(|e| e.to_string())?;
    let auth = auth.redis_settings();
    let mut builder = SentinelClientBuilder::new(sentinels, service, SentinelServerType::Master)
        .map_err(|e| e.to_string())?
        .set_client_to_redis_db(db);
    if let Some(username) = auth.username() {
        builder = builder.set_client_to_redis_username(username);
    }
    if let Some(password) = auth.password() {
        builder = builder.set_client_to_redis_password(password);
    }
    if parts.tls {
        builder = builder
            .set_client_to_redis_tls_mode(TlsMode::Secure)
            .set_client_to_sentinel_tls_mode(TlsMode::Secure);
    }
    if let Some(certificates) = &parts.certificates {
        builder = builder
            .set_client_to_redis_certificates(certificates.clone())
            .set_client_to_sentinel_certificates(certificates.clone());
    }
    builder
        .build()
        .map(|client| Kind::Sentinel(Arc::new(tokio::sync::Mutex::new(client))))
        .map_err(|e| e.to_string())
}

/// rustls needs one crypto provider per process; redis leaves the choice to us.
fn install_tls_provider() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        // Err only when another provider is installed already, which serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(url: &str) -> String {
        match Target::parse(url) {
            Ok(_) => panic!("{url} parsed"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn every_topology_parses() {
        for url in [
            "redis://127.0.0.1:6379",
            "redis://user:secret@127.0.0.1:6379/2",
            "rediss://127.0.0.1:6380",
            "redis+cluster://127.0.0.1:7000,127.0.0.1:7001",
            "rediss+cluster://user:pw@127.0.0.1:7000",
            "redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/mymaster",
            "redis+sentinel://:pw@127.0.0.1:26379/mymaster/3",
        ] {
            assert!(Target::parse(url).is_ok(), "{url}");
        }
    }

    #[test]
    fn mistakes_are_named() {
        assert!(error("http://x").contains("unknown scheme http://"));
        assert!(error("redis+pool://x:1").contains("unknown topology +pool"));
        assert!(error("redis+sentinel://127.0.0.1:26379").contains("SERVICE"));
        assert!(error("redis+cluster://127.0.0.1:7000/1").contains("database 0"));
        assert!(error("redis://h:1?tls_ca=/nonexistent/ca.pem").contains("cannot read"));
        assert!(error("redis://h:1?tls=yes").contains("unknown option \"tls\""));
    }

    #[test]
    fn tls_files_need_rediss_and_come_in_pairs() {
        let dir = std::env::temp_dir().join(format!("jobhost-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pem = dir.join("ca.pem");
        std::fs::write(&pem, "not really a certificate").unwrap();
        let pem = pem.display();
        assert!(error(&format!("redis://h:1?tls_ca={pem}")).contains("need a rediss://"));
        assert!(error(&format!("rediss://h:1?tls_cert={pem}")).contains("go together"));
        assert!(error("redis://user:secret@h:1?x=1").contains("user:***@h:1"));
    }
}
