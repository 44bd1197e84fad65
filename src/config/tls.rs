//! TLS and ACME: TLS_DOMAIN, the certificate pair, and the ACME settings.

use std::time::Duration;

use super::env::{parse_whole, ConfigError, Env};
use super::table::DEFAULT_ACME_DIRECTORY;
use super::{AcmeChallenge, AcmeSettings, AskAt, OnDemand, Tls};

/// TLS_DOMAIN's names. Internationalised names are kept in their ASCII
/// (punycode) form, which is what SNI, Host headers and certificates carry.
pub fn domains(env: &Env) -> Result<Vec<String>, ConfigError> {
    let mut domains: Vec<String> = Vec::new();
    for name in env
        .text("TLS_DOMAIN")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
    {
        match idna::domain_to_ascii(name)
            .ok()
            .filter(|ascii| is_domain_name(ascii))
        {
            Some(ascii) if !domains.contains(&ascii) => domains.push(ascii),
            Some(_) => {}
            None => {
                return Err(ConfigError {
                    expected: format!("comma-separated domain names ({name:?} is not one)"),
                    ..env.invalid("TLS_DOMAIN", "")
                })
            }
        }
    }
    Ok(domains)
}

/// THRUST_ON_DEMAND_TLS_ASK and its limits, when set.
pub fn on_demand(env: &Env) -> Result<Option<OnDemand>, ConfigError> {
    let Some(ask) = env.text("THRUST_ON_DEMAND_TLS_ASK") else {
        return Ok(None);
    };
    let expected = "a path on the app (/thrust/domains) or an absolute http:// URL";
    let ask = if ask.starts_with('/') && !ask.starts_with("//") {
        AskAt::App { path: ask }
    } else if let Some(rest) = ask.strip_prefix("http://") {
        let (authority, path) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else if path.is_empty() {
            "/".to_string()
        } else {
            path.to_string()
        };
        if authority.is_empty() || authority.contains('@') || path.contains('#') {
            return Err(env.invalid("THRUST_ON_DEMAND_TLS_ASK", expected));
        }
        AskAt::Url {
            authority: authority.to_string(),
            path,
        }
    } else {
        return Err(env.invalid("THRUST_ON_DEMAND_TLS_ASK", expected));
    };
    let per_minute = match env.parsed("THRUST_ON_DEMAND_TLS_PER_MINUTE", parse_whole)? {
        None => 10,
        Some(n @ 1..=10_000) => n as u32,
        Some(_) => return Err(env.invalid("THRUST_ON_DEMAND_TLS_PER_MINUTE", "1 to 10000")),
    };
    let most_names = match env.parsed("THRUST_ON_DEMAND_TLS_MAX_NAMES", parse_whole)? {
        None => 1000,
        Some(n @ 1..=1_000_000) => n as usize,
        Some(_) => return Err(env.invalid("THRUST_ON_DEMAND_TLS_MAX_NAMES", "1 to 1000000")),
    };
    Ok(Some(OnDemand {
        ask,
        per_minute,
        most_names,
    }))
}

/// TLS off, with the certificate pair, or with ACME for `domains` (and,
/// `on_demand`, for the names the app allows).
pub fn mode(env: &Env, domains: &[String], on_demand: bool) -> Result<Tls, ConfigError> {
    match (env.text("SSL_CERT_PATH"), env.text("SSL_KEY_PATH")) {
        (Some(cert), Some(key)) => {
            for name in ["SSL_CERT_PATH", "SSL_KEY_PATH"] {
                let path = env.text(name).unwrap_or_default();
                if !std::path::Path::new(&path).is_file() {
                    return Err(env.invalid(name, "a readable PEM file"));
                }
            }
            Ok(Tls::Static {
                cert: cert.into(),
                key: key.into(),
            })
        }
        (Some(_), None) => Err(env.invalid("SSL_CERT_PATH", "SSL_KEY_PATH to be set as well")),
        (None, Some(_)) => Err(env.invalid("SSL_KEY_PATH", "SSL_CERT_PATH to be set as well")),
        (None, None) if domains.is_empty() && !on_demand => Ok(Tls::Off),
        (None, None) => match domains.iter().find(|d| d.starts_with("*.")) {
            Some(wildcard) => Err(ConfigError {
                expected: format!(
                    "names thrust can order certificates for: {wildcard:?} is a \
                     wildcard, and ACME issues wildcards only through DNS-01, \
                     which thrust does not answer. List each name, or use a \
                     wildcard certificate with SSL_CERT_PATH and SSL_KEY_PATH"
                ),
                ..env.invalid("TLS_DOMAIN", "")
            }),
            None => Ok(Tls::Acme),
        },
    }
}

/// The ACME directory, account, challenge, storage and renewal settings.
pub fn acme(
    env: &Env,
    domains: Vec<String>,
    on_demand: Option<OnDemand>,
) -> Result<AcmeSettings, ConfigError> {
    let directory = env
        .text("ACME_DIRECTORY")
        .unwrap_or_else(|| DEFAULT_ACME_DIRECTORY.to_string());
    if !(directory.starts_with("https://") || directory.starts_with("http://")) {
        return Err(env.invalid("ACME_DIRECTORY", "an http:// or https:// URL"));
    }
    let eab = match (env.text("EAB_KID"), env.text("EAB_HMAC_KEY")) {
        (Some(kid), Some(key)) if is_base64url(&key) => Some((kid, key)),
        (Some(_), Some(_)) => return Err(env.invalid("EAB_HMAC_KEY", "a base64url key")),
        (Some(_), None) => return Err(env.invalid("EAB_KID", "EAB_HMAC_KEY to be set as well")),
        (None, Some(_)) => return Err(env.invalid("EAB_HMAC_KEY", "EAB_KID to be set as well")),
        (None, None) => None,
    };
    let challenge = match env.text("THRUST_ACME_CHALLENGE") {
        None => AcmeChallenge::TlsAlpn01,
        Some(v) if v.eq_ignore_ascii_case("tls-alpn-01") => AcmeChallenge::TlsAlpn01,
        Some(v) if v.eq_ignore_ascii_case("http-01") => AcmeChallenge::Http01,
        Some(_) => return Err(env.invalid("THRUST_ACME_CHALLENGE", "tls-alpn-01 or http-01")),
    };
    Ok(AcmeSettings {
        domains,
        directory,
        email: env.text("ACME_EMAIL"),
        eab,
        storage: env
            .text("STORAGE_PATH")
            .unwrap_or_else(|| "./storage/thruster".to_string())
            .into(),
        challenge,
        renew_within: env
            .parsed("THRUST_ACME_RENEW_WITHIN", parse_whole)?
            .map(Duration::from_secs),
        claim_ttl: match env.parsed("THRUST_ACME_CLAIM_TTL", parse_whole)? {
            None => Duration::from_secs(60),
            Some(seconds) if seconds >= 3 => Duration::from_secs(seconds),
            Some(_) => return Err(env.invalid("THRUST_ACME_CLAIM_TTL", "at least 3 seconds")),
        },
        on_demand,
    })
}

/// A DNS name, or a wildcard (`*.example.com`: a `*` as the whole leftmost
/// label, above at least two labels).
fn is_domain_name(name: &str) -> bool {
    let labels = match name.strip_prefix("*.") {
        Some(parent) => parent.contains('.').then_some(parent),
        None => Some(name),
    };
    labels.is_some_and(|labels| name.len() <= 253 && labels.split('.').all(is_dns_label))
}

/// One label of a DNS name: 1 to 63 letters, digits and inner hyphens.
pub fn is_dns_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn is_base64url(value: &str) -> bool {
    !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'=')
}
