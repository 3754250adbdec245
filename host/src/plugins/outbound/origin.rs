//! Origins: what `[grants] http` lists and what a request is checked against.
//! An origin is a scheme, a host and a port; a grant's host may be `*.DOMAIN`
//! for every subdomain of DOMAIN (not DOMAIN itself).

use std::fmt;

/// The origin of one request: scheme, lowercase host and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    https: bool,
    host: String,
    port: u16,
}

impl Origin {
    /// The origin of a request URI, if it has a scheme jobhost sends
    /// (http, https) and a host.
    pub fn of(uri: &http::Uri) -> Option<Origin> {
        let https = match uri.scheme_str()? {
            "https" => true,
            "http" => false,
            _ => return None,
        };
        let host = uri.host()?.to_ascii_lowercase();
        let port = uri.port_u16().unwrap_or(default_port(https));
        Some(Origin { https, host, port })
    }

    pub fn is_https(&self) -> bool {
        self.https
    }

    /// `host:port`, to connect to.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The host without IPv6 brackets, for TLS server names.
    pub fn host(&self) -> &str {
        self.host.trim_start_matches('[').trim_end_matches(']')
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}", self.host)?;
        if self.port != default_port(self.https) {
            write!(f, ":{}", self.port)?;
        }
        Ok(())
    }
}

fn default_port(https: bool) -> u16 {
    if https { 443 } else { 80 }
}

/// One entry of `[grants] http`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginGrant {
    https: bool,
    /// Exact host, or for `*.DOMAIN` the suffix `.DOMAIN`.
    host: HostPattern,
    port: u16,
    /// As written, for messages and `plugins check`.
    text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Exact(String),
    SubdomainsOf(String),
}

impl OriginGrant {
    /// Parses `scheme://host[:port]`, with `*.` allowed at the start of the host.
    pub fn parse(text: &str) -> Result<Self, String> {
        let invalid = |why: &str| {
            format!(
                "grants.http: {text:?} {why} (expected e.g. \"https://api.example.com\", \"https://*.example.org\" or \"http://127.0.0.1:8080\")"
            )
        };
        let (https, rest) = if let Some(rest) = text.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = text.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(invalid("has no http:// or https:// scheme"));
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) {
            return Err(invalid("is more than an origin (no path, query or user)"));
        }
        let (host, port) = split_port(rest).ok_or_else(|| invalid("has an invalid port"))?;
        let host = host.to_ascii_lowercase();
        if host.is_empty() || host == "*." {
            return Err(invalid("has no host"));
        }
        let pattern = match host.strip_prefix("*.") {
            Some(domain) if !domain.contains('*') => {
                HostPattern::SubdomainsOf(format!(".{domain}"))
            }
            _ if host.contains('*') => {
                return Err(invalid("may only use * as the first label (*.example.org)"));
            }
            _ => HostPattern::Exact(host),
        };
        Ok(OriginGrant {
            https,
            host: pattern,
            port: port.unwrap_or(default_port(https)),
            text: text.to_owned(),
        })
    }

    pub fn allows(&self, origin: &Origin) -> bool {
        self.https == origin.https
            && self.port == origin.port
            && match &self.host {
                HostPattern::Exact(host) => *host == origin.host,
                HostPattern::SubdomainsOf(suffix) => {
                    origin.host.len() > suffix.len() && origin.host.ends_with(suffix.as_str())
                }
            }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// `host[:port]` split, IPv6 literals in brackets; `None` for a bad port.
fn split_port(authority: &str) -> Option<(&str, Option<u16>)> {
    let port_at = if authority.starts_with('[') {
        authority.find(']').map(|end| end + 1)
    } else {
        authority.rfind(':')
    };
    match port_at {
        Some(at) if authority[at..].starts_with(':') => {
            let port = authority[at + 1..].parse().ok()?;
            Some((&authority[..at], Some(port)))
        }
        _ => Some((authority, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(uri: &str) -> Origin {
        Origin::of(&uri.parse().unwrap()).unwrap()
    }

    #[test]
    fn grants_match_scheme_host_and_port() {
        let grant = OriginGrant::parse("https://api.example.com").unwrap();
        assert!(grant.allows(&origin("https://API.example.com/v1?x=1")));
        assert!(grant.allows(&origin("https://api.example.com:443/")));
        assert!(!grant.allows(&origin("http://api.example.com/")));
        assert!(!grant.allows(&origin("https://api.example.com:8443/")));
        assert!(!grant.allows(&origin("https://api.example.com.evil.org/")));

        let local = OriginGrant::parse("http://127.0.0.1:8080").unwrap();
        assert!(local.allows(&origin("http://127.0.0.1:8080/hooks")));
        assert!(!local.allows(&origin("http://127.0.0.1:8081/hooks")));
        assert!(!local.allows(&origin("https://127.0.0.1:8080/hooks")));
    }

    #[test]
    fn a_star_matches_subdomains_only() {
        let grant = OriginGrant::parse("https://*.example.org").unwrap();
        assert!(grant.allows(&origin("https://a.example.org/")));
        assert!(grant.allows(&origin("https://a.b.example.org/")));
        assert!(!grant.allows(&origin("https://example.org/")));
        assert!(!grant.allows(&origin("https://badexample.org/")));
    }

    #[test]
    fn bad_grants_say_what_is_wrong() {
        for bad in [
            "api.example.com",
            "ftp://x",
            "https://x/path",
            "https://u@x",
            "https://x:99999",
            "https://a.*.org",
            "https://",
        ] {
            let error = OriginGrant::parse(bad).unwrap_err();
            assert!(error.contains("grants.http"), "{bad}: {error}");
        }
        assert!(OriginGrant::parse("http://[::1]:8080").is_ok());
    }

    #[test]
    fn origins_print_as_a_grant_would_be_written() {
        assert_eq!(
            origin("http://127.0.0.1:8080/x").to_string(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            origin("https://Api.Example.com:443/x").to_string(),
            "https://api.example.com"
        );
    }
}
