//! One small parser per concern for the values that are more than a plain
//! number, switch or duration: each reads its variables through `Env` and
//! names the variable in its error.

use std::path::PathBuf;

use super::env::{parse_bool, parse_encodings, ConfigError, Env};
use super::trusted_proxies::{TrustedProxies, DEFAULT_TRUSTED};
use super::{Encoding, RestartPolicy, SendFileHeader, Worker};

/// Where the app server listens: THRUST_WORKER_SOCKET, or a port that is
/// not 3000 when thrust itself listens there.
pub fn worker(env: &Env, listening_on_3000: bool) -> Result<Worker, ConfigError> {
    Ok(match env.text("THRUST_WORKER_SOCKET") {
        Some(path) => Worker::Socket(path.into()),
        None => Worker::Port(
            env.port("THRUST_WORKER_PORT")?
                .unwrap_or(if listening_on_3000 { 3001 } else { 3000 }),
        ),
    })
}

/// A limit such as THRUST_MAX_CONNECTIONS or THRUST_MAX_APP_CONNECTIONS:
/// a whole number above 0; `None` when unset (sized at start-up).
pub fn limit(env: &Env, name: &str) -> Result<Option<usize>, ConfigError> {
    if env.text(name).is_none() {
        return Ok(None);
    }
    match env.number(name, 0)? {
        0 => Err(env.invalid(name, "a whole number above 0")),
        n => Ok(Some(usize::try_from(n).unwrap_or(usize::MAX))),
    }
}

/// THRUST_HTTP3: QUIC is TLS 1.3 inside, so without TLS there is nothing to
/// serve it with; asked for then, start-up stops rather than ignore it.
pub fn http3(env: &Env, tls_on: bool) -> Result<bool, ConfigError> {
    let on = env.boolean("THRUST_HTTP3", false)?;
    if on && !tls_on {
        return Err(env.invalid(
            "THRUST_HTTP3",
            "off unless TLS is on (TLS_DOMAIN, or SSL_CERT_PATH and SSL_KEY_PATH)",
        ));
    }
    Ok(on)
}

pub fn send_file_header(env: &Env) -> Result<SendFileHeader, ConfigError> {
    match env.text("THRUST_SEND_FILE_HEADER") {
        None => Ok(SendFileHeader::XSendfile),
        Some(v) if v.eq_ignore_ascii_case("x-sendfile") => Ok(SendFileHeader::XSendfile),
        Some(v) if v.eq_ignore_ascii_case("x-accel-redirect") => Ok(SendFileHeader::XAccelRedirect),
        Some(_) => Err(env.invalid("THRUST_SEND_FILE_HEADER", "X-Sendfile or X-Accel-Redirect")),
    }
}

/// THRUST_ACCEL_MAPPING: the real root and the URI prefix it is sent under.
pub fn accel_mapping(env: &Env) -> Result<Option<(String, String)>, ConfigError> {
    let Some(value) = env.text("THRUST_ACCEL_MAPPING") else {
        return Ok(None);
    };
    match value.split_once('=') {
        Some((root, uri)) if root.starts_with('/') && uri.starts_with('/') => {
            Ok(Some((root.to_string(), uri.to_string())))
        }
        _ => Err(env.invalid("THRUST_ACCEL_MAPPING", "/real/root/=/uri/")),
    }
}

pub fn send_file_roots(env: &Env) -> Result<Vec<PathBuf>, ConfigError> {
    env.text("THRUST_SEND_FILE_ROOTS")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|root| !root.is_empty())
        .map(|root| match root.starts_with('/') {
            true => Ok(PathBuf::from(root)),
            false => Err(env.invalid(
                "THRUST_SEND_FILE_ROOTS",
                "absolute directory paths separated by commas",
            )),
        })
        .collect()
}

/// THRUST_PUBLIC_DIR: an existing directory, kept as its real path so that
/// files found below it can be checked against it.
pub fn public_dir(env: &Env) -> Result<Option<PathBuf>, ConfigError> {
    let Some(dir) = env.text("THRUST_PUBLIC_DIR") else {
        return Ok(None);
    };
    match std::fs::canonicalize(&dir) {
        Ok(real) if real.is_dir() => Ok(Some(real)),
        _ => Err(env.invalid("THRUST_PUBLIC_DIR", "an existing directory")),
    }
}

/// THRUST_ASSET_PREFIX: a path (`/assets/`), kept ending in `/` so that
/// `/assets-old/` is not below `/assets`.
pub fn asset_prefix(env: &Env) -> Result<String, ConfigError> {
    let Some(prefix) = env.text("THRUST_ASSET_PREFIX") else {
        return Ok("/assets/".into());
    };
    let plain = prefix.starts_with('/')
        && prefix
            .split('/')
            .all(|segment| segment != "." && segment != "..")
        && !prefix.contains(['?', '#', '%', '\\']);
    if !plain {
        return Err(env.invalid(
            "THRUST_ASSET_PREFIX",
            "a path starting with / (no dot segments, query or percent-encoding)",
        ));
    }
    Ok(if prefix.ends_with('/') {
        prefix
    } else {
        prefix + "/"
    })
}

pub fn encodings(env: &Env) -> Result<Vec<Encoding>, ConfigError> {
    let all = vec![Encoding::Zstd, Encoding::Brotli, Encoding::Gzip];
    env.typed("THRUST_COMPRESSION", parse_encodings, all)
        .map_err(|e| ConfigError {
            expected: "a comma-separated list of zstd, br, gzip".to_string(),
            ..e
        })
}

pub fn compression_jitter(env: &Env) -> Result<u32, ConfigError> {
    let jitter = env.number("GZIP_COMPRESSION_JITTER", 32)?;
    u32::try_from(jitter)
        .ok()
        .filter(|j| *j <= 65_535)
        .ok_or_else(|| env.invalid("GZIP_COMPRESSION_JITTER", "a whole number from 0 to 65535"))
}

/// THRUST_HEALTH_PATH: `/up` when unset, `None` when set empty.
pub fn health_path(env: &Env) -> Result<Option<String>, ConfigError> {
    match env.text("THRUST_HEALTH_PATH") {
        None => Ok(Some("/up".to_string())),
        Some(p) if p.is_empty() => Ok(None),
        Some(p) if p.starts_with('/') => Ok(Some(p)),
        Some(_) => Err(env.invalid(
            "THRUST_HEALTH_PATH",
            "a path starting with / (or empty to disable)",
        )),
    }
}

pub fn health_upstream_path(env: &Env) -> Result<Option<String>, ConfigError> {
    match env.text("THRUST_HEALTH_UPSTREAM_PATH") {
        Some(p) if !p.starts_with('/') => {
            Err(env.invalid("THRUST_HEALTH_UPSTREAM_PATH", "a path starting with /"))
        }
        other => Ok(other),
    }
}

pub fn control_socket(env: &Env) -> Result<Option<PathBuf>, ConfigError> {
    match env.text("THRUST_CONTROL_SOCKET") {
        Some(path) if !path.starts_with('/') => {
            Err(env.invalid("THRUST_CONTROL_SOCKET", "an absolute path"))
        }
        other => Ok(other.map(PathBuf::from)),
    }
}

/// THRUST_RESTART, THRUST_RESTART_LIMIT and THRUST_RESTART_WINDOW.
pub fn restart(env: &Env) -> Result<RestartPolicy, ConfigError> {
    let on_failure = match env.text("THRUST_RESTART") {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("never") => false,
        Some(v) if v.eq_ignore_ascii_case("on-failure") => true,
        Some(_) => return Err(env.invalid("THRUST_RESTART", "never or on-failure")),
    };
    let limit = match env.number("THRUST_RESTART_LIMIT", 10)? {
        0 => return Err(env.invalid("THRUST_RESTART_LIMIT", "a whole number above 0")),
        n => u32::try_from(n).unwrap_or(u32::MAX),
    };
    Ok(RestartPolicy {
        on_failure,
        limit,
        window: env.seconds("THRUST_RESTART_WINDOW", 300)?,
    })
}

/// FORWARD_HEADERS overrides (Thruster's meaning: trust every peer or
/// none); else THRUST_TRUSTED_PROXIES; else the private ranges, or nobody
/// with TLS on (Thruster's default with TLS: thrust faces the internet).
pub fn trusted_proxies(env: &Env, tls_on: bool) -> Result<TrustedProxies, ConfigError> {
    match env.parsed("FORWARD_HEADERS", parse_bool)? {
        Some(true) => return Ok(TrustedProxies::Everyone),
        Some(false) => return Ok(TrustedProxies::Nobody),
        None => {}
    }
    match env.text("THRUST_TRUSTED_PROXIES") {
        Some(list) => TrustedProxies::parse(&list).ok_or_else(|| {
            env.invalid(
                "THRUST_TRUSTED_PROXIES",
                "networks or addresses separated by commas (10.0.0.0/8, 203.0.113.7)",
            )
        }),
        None if tls_on => Ok(TrustedProxies::Nobody),
        None => Ok(TrustedProxies::parse(DEFAULT_TRUSTED).unwrap_or(TrustedProxies::Nobody)),
    }
}
