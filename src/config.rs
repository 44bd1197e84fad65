//! Configuration from the environment.
//!
//! One table (`VARIABLES`) names every variable, its aliases, its default and
//! what it means; parsing, `thrust --help` and the README's table are all
//! produced from it so they cannot drift apart.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::trusted_proxies::{TrustedProxies, DEFAULT_TRUSTED};

/// What kind of value a variable holds; drives parsing and the "expected" text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Port,
    Bool,
    Bytes,
    Seconds,
    Count,
    Text,
}

impl Kind {
    fn expected(self) -> &'static str {
        match self {
            Kind::Port => "a port number from 1 to 65535",
            Kind::Bool => "one of 1/0, true/false, t/f, yes/no, on/off",
            Kind::Bytes => "a whole number of bytes",
            Kind::Seconds => "a whole number of seconds",
            Kind::Count => "a whole number",
            Kind::Text => "text",
        }
    }
}

/// One row of the configuration table.
pub struct Variable {
    pub name: &'static str,
    pub aliases: &'static [&'static str],
    pub kind: Kind,
    pub default: &'static str,
    pub meaning: &'static str,
}

const fn var(
    name: &'static str,
    aliases: &'static [&'static str],
    kind: Kind,
    default: &'static str,
    meaning: &'static str,
) -> Variable {
    Variable {
        name,
        aliases,
        kind,
        default,
        meaning,
    }
}

pub const DEFAULT_ACME_DIRECTORY: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// Every variable thrust reads, in the order the docs list them.
#[rustfmt::skip]
pub const VARIABLES: &[Variable] = &[
    var("HTTP_PORT", &["PORT"], Kind::Port, "80", "plain-HTTP listen port; `HTTP_PORT` wins over `PORT`"),
    var("THRUST_WORKER_PORT", &["TARGET_PORT"], Kind::Port, "3000 (3001 when listening on 3000)", "the app server's port; the child gets `PORT` set to it"),
    var("THRUST_WORKER_SOCKET", &[], Kind::Text, "unset", "proxy to this Unix socket instead of a TCP port; the child gets it in its environment too"),
    var("HTTPS_PORT", &[], Kind::Port, "443", "TLS listen port"),
    var("TLS_DOMAIN", &["THRUST_ACME_DOMAIN"], Kind::Text, "unset", "comma-separated domains: enables TLS with ACME certificates"),
    var("SSL_CERT_PATH", &[], Kind::Text, "unset", "PEM certificate chain: enables TLS with a static certificate (with `SSL_KEY_PATH`)"),
    var("SSL_KEY_PATH", &[], Kind::Text, "unset", "PEM private key for `SSL_CERT_PATH`"),
    var("ACME_DIRECTORY", &[], Kind::Text, DEFAULT_ACME_DIRECTORY, "ACME directory URL"),
    var("ACME_EMAIL", &[], Kind::Text, "unset", "ACME account contact"),
    var("EAB_KID", &[], Kind::Text, "unset", "External Account Binding key id"),
    var("EAB_HMAC_KEY", &[], Kind::Text, "unset", "External Account Binding key (base64url)"),
    var("THRUST_ACME_CHALLENGE", &[], Kind::Text, "tls-alpn-01", "ACME challenge to answer: `tls-alpn-01` (needs only the HTTPS port) or `http-01`"),
    var("THRUST_ACME_RENEW_WITHIN", &[], Kind::Seconds, "a third of the lifetime", "renew a certificate this many seconds before it expires (at most two thirds of its lifetime: longer is clamped, with a warning)"),
    var("STORAGE_PATH", &[], Kind::Text, "./storage/thruster", "where the ACME account key and certificates are kept (0600)"),
    var("THRUST_HTTP2", &[], Kind::Bool, "on when TLS is on", "offer `h2` by ALPN on the TLS port"),
    var("H2C_ENABLED", &[], Kind::Bool, "off", "HTTP/2 prior-knowledge cleartext on the HTTP port"),
    var("CACHE_SIZE", &[], Kind::Bytes, "67108864", "total bytes of the in-memory response cache"),
    var("MAX_CACHE_ITEM_SIZE", &[], Kind::Bytes, "1048576", "largest cacheable response body"),
    var("X_SENDFILE_ENABLED", &[], Kind::Bool, "on", "serve files named by X-Sendfile responses"),
    var("THRUST_SEND_FILE_HEADER", &[], Kind::Text, "X-Sendfile", "response header carrying the file: `X-Sendfile` or `X-Accel-Redirect`"),
    var("THRUST_ACCEL_MAPPING", &[], Kind::Text, "unset", "`X-Accel-Mapping` sent with `X-Accel-Redirect` (`/real/root/=/uri/`)"),
    var("THRUST_SEND_FILE_ROOTS", &[], Kind::Text, "unset (any absolute path)", "comma-separated directories: files the app names outside them are refused (404)"),
    var("GZIP_COMPRESSION_ENABLED", &[], Kind::Bool, "on", "response compression (all encodings)"),
    var("THRUST_COMPRESSION", &[], Kind::Text, "zstd,br,gzip", "encodings offered, in server preference order"),
    var("GZIP_COMPRESSION_DISABLE_ON_AUTH", &[], Kind::Bool, "off", "no compression for requests with credentials or private responses"),
    var("GZIP_COMPRESSION_JITTER", &[], Kind::Count, "32", "BREACH mitigation: up to N bytes of padding per compressed response; 0 disables"),
    var("MAX_REQUEST_BODY", &[], Kind::Bytes, "0 (no limit)", "larger request bodies get 413"),
    var("BAD_GATEWAY_PAGE", &[], Kind::Text, "./public/502.html", "HTML served with 502 when the app server cannot answer"),
    var("THRUST_MAX_CONNECTIONS", &[], Kind::Count, "from the memory limit (384 in 256 MiB) and half the open-file limit", "client connections open at once; beyond it new ones get 503 (HTTP) or are closed (HTTPS)"),
    var("HTTP_IDLE_TIMEOUT", &[], Kind::Seconds, "60", "keep-alive idle limit"),
    var("HTTP_READ_TIMEOUT", &[], Kind::Seconds, "30", "time to receive request headers and body"),
    var("HTTP_WRITE_TIMEOUT", &[], Kind::Seconds, "30", "time a client may take to accept more of the response"),
    var("FORWARD_HEADERS", &[], Kind::Bool, "unset", "`true`: keep every peer's forwarded headers (X-Forwarded-*, Forwarded); `false`: no peer's; unset: `THRUST_TRUSTED_PROXIES` decides"),
    var("THRUST_TRUSTED_PROXIES", &[], Kind::Text, "loopback and private ranges without TLS, none with TLS", "peers (networks or addresses, comma-separated) whose forwarded headers are kept; from others they are replaced or removed"),
    var("LOG_REQUESTS", &[], Kind::Bool, "on", "one JSON line per request"),
    var("DEBUG", &[], Kind::Bool, "off", "debug-level logs"),
    var("THRUST_HEALTH_PATH", &[], Kind::Text, "/up", "path thrust answers itself; empty disables"),
    var("THRUST_HEALTH_UPSTREAM_PATH", &[], Kind::Text, "unset", "deep check: this app path must also answer 2xx"),
    var("THRUST_UPSTREAM_TIMEOUT", &[], Kind::Seconds, "60", "wait for the app's response head, then 504; 0 = no limit"),
    var("THRUST_BOOT_WAIT", &[], Kind::Seconds, "5", "how long a request that arrives before the app is ready waits for it"),
    var("THRUST_SHUTDOWN_TIMEOUT", &[], Kind::Seconds, "30", "time in-flight requests get after the app exits"),
    var("THRUST_METRICS_PORT", &[], Kind::Port, "unset", "Prometheus `/metrics` on this port"),
    var("THRUST_RESTART", &[], Kind::Text, "never", "`on-failure`: start the app again when it exits with a failure, after a back-off from 100 ms to 30 s"),
    var("THRUST_RESTART_LIMIT", &[], Kind::Count, "10", "with `on-failure`: after this many failures within `THRUST_RESTART_WINDOW`, thrust exits with the app's status"),
    var("THRUST_RESTART_WINDOW", &[], Kind::Seconds, "300", "the window `THRUST_RESTART_LIMIT` counts failures in"),
    var("THRUST_CONTROL_SOCKET", &[], Kind::Text, "unset (abstract socket `thrust-control-<HTTP port>`)", "`thrust restart`'s socket as a file (created 0600; put it in a directory only thrust's user can write)"),
    var("THRUST_RESTART_BOOT_TIMEOUT", &[], Kind::Seconds, "120", "`thrust restart`: how long the new copy of the app has to become ready before it is abandoned"),
];

/// A configuration value that cannot be used. Its text is the one line the
/// user sees before thrust exits with status 2.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub variable: String,
    pub value: String,
    pub expected: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid {}={:?}: expected {}",
            self.variable, self.value, self.expected
        )
    }
}

impl std::error::Error for ConfigError {}

/// Where the app server listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Worker {
    Port(u16),
    Socket(PathBuf),
}

/// THRUST_RESTART and its limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestartPolicy {
    pub on_failure: bool,
    /// Failures within `window` after which thrust gives up.
    pub limit: u32,
    pub window: Duration,
}

/// Which header carries a file for thrust to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendFileHeader {
    XSendfile,
    XAccelRedirect,
}

/// Response encodings thrust can produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Zstd,
    Brotli,
    Gzip,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcmeChallenge {
    TlsAlpn01,
    Http01,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcmeSettings {
    pub domains: Vec<String>,
    pub directory: String,
    pub email: Option<String>,
    pub eab: Option<(String, String)>,
    pub storage: PathBuf,
    pub challenge: AcmeChallenge,
    /// None: renew when a third of the lifetime remains.
    pub renew_within: Option<Duration>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tls {
    Off,
    Static { cert: PathBuf, key: PathBuf },
    Acme,
}

/// The parsed configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub http_port: u16,
    pub https_port: u16,
    pub worker: Worker,
    pub tls: Tls,
    pub acme: AcmeSettings,
    pub http2: bool,
    pub h2c: bool,
    pub cache_size: u64,
    pub max_cache_item_size: u64,
    pub x_sendfile: bool,
    pub send_file_header: SendFileHeader,
    pub accel_mapping: Option<(String, String)>,
    /// THRUST_SEND_FILE_ROOTS; empty: any absolute path.
    pub send_file_roots: Vec<PathBuf>,
    pub compression: bool,
    pub encodings: Vec<Encoding>,
    pub compression_disable_on_auth: bool,
    pub compression_jitter: u32,
    pub max_request_body: u64,
    pub bad_gateway_page: PathBuf,
    pub idle_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    /// Whose forwarded headers are kept (FORWARD_HEADERS, THRUST_TRUSTED_PROXIES).
    pub trusted_proxies: TrustedProxies,
    pub log_requests: bool,
    pub debug: bool,
    pub health_path: Option<String>,
    pub health_upstream_path: Option<String>,
    /// `None`: wait for the app's response head without limit.
    pub upstream_timeout: Option<Duration>,
    pub boot_wait: Duration,
    pub shutdown_timeout: Duration,
    pub metrics_port: Option<u16>,
    pub restart: RestartPolicy,
    pub restart_boot_timeout: Duration,
    /// THRUST_CONTROL_SOCKET.
    pub control_socket: Option<PathBuf>,
    /// THRUST_MAX_CONNECTIONS; `None`: sized from the open-file limit.
    pub max_connections: Option<usize>,
}

/// Names a variable may be given under, most specific first:
/// `THRUST_NAME`, `THRUSTER_NAME`, `NAME`, then the same for each alias.
/// A name that already starts with `THRUST_` is only looked up as written.
pub fn spellings(variable: &Variable) -> Vec<String> {
    let mut names = Vec::new();
    for name in std::iter::once(&variable.name).chain(variable.aliases) {
        if name.starts_with("THRUST_") {
            names.push(name.to_string());
        } else {
            names.push(format!("THRUST_{name}"));
            names.push(format!("THRUSTER_{name}"));
            names.push(name.to_string());
        }
    }
    names
}

/// Raw lookup over an environment snapshot.
struct Env<'a> {
    vars: &'a HashMap<String, String>,
}

impl Env<'_> {
    /// The first spelling that is set, with the name it was found under.
    /// Empty values count as unset, except where emptiness means something.
    fn raw(&self, name: &str) -> Option<(String, String)> {
        let variable = lookup(name);
        let empty_is_a_value = name == "THRUST_HEALTH_PATH";
        spellings(variable).into_iter().find_map(|spelling| {
            let value = self.vars.get(&spelling)?;
            (empty_is_a_value || !value.is_empty()).then(|| (spelling, value.clone()))
        })
    }

    fn parsed<T>(
        &self,
        name: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<Option<T>, ConfigError> {
        let Some((spelling, value)) = self.raw(name) else {
            return Ok(None);
        };
        match parse(value.trim()) {
            Some(v) => Ok(Some(v)),
            None => Err(ConfigError {
                variable: spelling,
                value,
                expected: lookup(name).kind.expected().to_string(),
            }),
        }
    }

    fn typed<T>(
        &self,
        name: &str,
        parse: impl Fn(&str) -> Option<T>,
        default: T,
    ) -> Result<T, ConfigError> {
        Ok(self.parsed(name, parse)?.unwrap_or(default))
    }

    fn port(&self, name: &str) -> Result<Option<u16>, ConfigError> {
        self.parsed(name, |v| v.parse::<u16>().ok().filter(|p| *p != 0))
    }

    fn boolean(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        self.typed(name, parse_bool, default)
    }

    fn number(&self, name: &str, default: u64) -> Result<u64, ConfigError> {
        self.typed(name, parse_whole, default)
    }

    fn seconds(&self, name: &str, default: u64) -> Result<Duration, ConfigError> {
        Ok(Duration::from_secs(self.number(name, default)?))
    }

    fn text(&self, name: &str) -> Option<String> {
        self.raw(name).map(|(_, value)| value)
    }

    fn invalid(&self, name: &str, expected: &str) -> ConfigError {
        let (variable, value) = self
            .raw(name)
            .unwrap_or_else(|| (name.to_string(), String::new()));
        ConfigError {
            variable,
            value,
            expected: expected.to_string(),
        }
    }
}

fn lookup(name: &str) -> &'static Variable {
    VARIABLES
        .iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("{name} is missing from the configuration table"))
}

pub fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "t" | "yes" | "y" | "on" => Some(true),
        "0" | "false" | "f" | "no" | "n" | "off" => Some(false),
        _ => None,
    }
}

fn parse_whole(value: &str) -> Option<u64> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

fn parse_encodings(value: &str) -> Option<Vec<Encoding>> {
    let mut encodings = Vec::new();
    for word in value.split(',').map(str::trim) {
        let encoding = match word.to_ascii_lowercase().as_str() {
            "zstd" => Encoding::Zstd,
            "br" => Encoding::Brotli,
            "gzip" => Encoding::Gzip,
            _ => return None,
        };
        if !encodings.contains(&encoding) {
            encodings.push(encoding);
        }
    }
    Some(encodings)
}

fn is_base64url(value: &str) -> bool {
    !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'=')
}

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_vars(&std::env::vars().collect())
    }

    /// Reads the configuration from an environment snapshot.
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Config, ConfigError> {
        let env = Env { vars };

        // Internationalised names are kept in their ASCII (punycode) form,
        // which is what SNI, Host headers and certificates carry.
        let mut domains: Vec<String> = Vec::new();
        for name in env
            .text("TLS_DOMAIN")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
        {
            if name.is_empty() {
                continue;
            }
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

        let tls = match (env.text("SSL_CERT_PATH"), env.text("SSL_KEY_PATH")) {
            (Some(cert), Some(key)) => {
                for name in ["SSL_CERT_PATH", "SSL_KEY_PATH"] {
                    let path = env.text(name).unwrap_or_default();
                    if !std::path::Path::new(&path).is_file() {
                        return Err(env.invalid(name, "a readable PEM file"));
                    }
                }
                Tls::Static {
                    cert: cert.into(),
                    key: key.into(),
                }
            }
            (Some(_), None) => {
                return Err(env.invalid("SSL_CERT_PATH", "SSL_KEY_PATH to be set as well"))
            }
            (None, Some(_)) => {
                return Err(env.invalid("SSL_KEY_PATH", "SSL_CERT_PATH to be set as well"))
            }
            (None, None) if !domains.is_empty() => {
                if let Some(wildcard) = domains.iter().find(|d| d.starts_with("*.")) {
                    return Err(ConfigError {
                        expected: format!(
                            "names thrust can order certificates for: {wildcard:?} is a \
                             wildcard, and ACME issues wildcards only through DNS-01, \
                             which thrust does not answer. List each name, or use a \
                             wildcard certificate with SSL_CERT_PATH and SSL_KEY_PATH"
                        ),
                        ..env.invalid("TLS_DOMAIN", "")
                    });
                }
                Tls::Acme
            }
            (None, None) => Tls::Off,
        };
        let tls_on = tls != Tls::Off;

        let http_port = env.port("HTTP_PORT")?.unwrap_or(80);
        let https_port = env.port("HTTPS_PORT")?.unwrap_or(443);
        let listening_on_3000 = http_port == 3000 || (tls_on && https_port == 3000);
        let worker = match env.text("THRUST_WORKER_SOCKET") {
            Some(path) => Worker::Socket(path.into()),
            None => Worker::Port(
                env.port("THRUST_WORKER_PORT")?
                    .unwrap_or(if listening_on_3000 { 3001 } else { 3000 }),
            ),
        };
        let metrics_port = env.port("THRUST_METRICS_PORT")?;
        let max_connections = match env.text("THRUST_MAX_CONNECTIONS") {
            None => None,
            Some(_) => match env.number("THRUST_MAX_CONNECTIONS", 0)? {
                0 => return Err(env.invalid("THRUST_MAX_CONNECTIONS", "a whole number above 0")),
                n => Some(usize::try_from(n).unwrap_or(usize::MAX)),
            },
        };

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
        let renew_within = env
            .parsed("THRUST_ACME_RENEW_WITHIN", parse_whole)?
            .map(Duration::from_secs);

        let send_file_header = match env.text("THRUST_SEND_FILE_HEADER") {
            None => SendFileHeader::XSendfile,
            Some(v) if v.eq_ignore_ascii_case("x-sendfile") => SendFileHeader::XSendfile,
            Some(v) if v.eq_ignore_ascii_case("x-accel-redirect") => SendFileHeader::XAccelRedirect,
            Some(_) => {
                return Err(env.invalid("THRUST_SEND_FILE_HEADER", "X-Sendfile or X-Accel-Redirect"))
            }
        };
        let accel_mapping = match env.text("THRUST_ACCEL_MAPPING") {
            None => None,
            Some(v) => match v.split_once('=') {
                Some((root, uri)) if root.starts_with('/') && uri.starts_with('/') => {
                    Some((root.to_string(), uri.to_string()))
                }
                _ => return Err(env.invalid("THRUST_ACCEL_MAPPING", "/real/root/=/uri/")),
            },
        };
        let mut send_file_roots = Vec::new();
        for root in env
            .text("THRUST_SEND_FILE_ROOTS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|root| !root.is_empty())
        {
            if !root.starts_with('/') {
                return Err(env.invalid(
                    "THRUST_SEND_FILE_ROOTS",
                    "absolute directory paths separated by commas",
                ));
            }
            send_file_roots.push(PathBuf::from(root));
        }
        let encodings = env
            .typed(
                "THRUST_COMPRESSION",
                parse_encodings,
                vec![Encoding::Zstd, Encoding::Brotli, Encoding::Gzip],
            )
            .map_err(|e| ConfigError {
                expected: "a comma-separated list of zstd, br, gzip".to_string(),
                ..e
            })?;

        let health_path = match env.text("THRUST_HEALTH_PATH") {
            None => Some("/up".to_string()),
            Some(p) if p.is_empty() => None,
            Some(p) if p.starts_with('/') => Some(p),
            Some(_) => {
                return Err(env.invalid(
                    "THRUST_HEALTH_PATH",
                    "a path starting with / (or empty to disable)",
                ))
            }
        };
        let health_upstream_path = match env.text("THRUST_HEALTH_UPSTREAM_PATH") {
            Some(p) if !p.starts_with('/') => {
                return Err(env.invalid("THRUST_HEALTH_UPSTREAM_PATH", "a path starting with /"))
            }
            other => other,
        };
        let upstream_timeout = env.seconds("THRUST_UPSTREAM_TIMEOUT", 60)?;

        let control_socket = match env.text("THRUST_CONTROL_SOCKET") {
            Some(path) if !path.starts_with('/') => {
                return Err(env.invalid("THRUST_CONTROL_SOCKET", "an absolute path"))
            }
            other => other.map(PathBuf::from),
        };
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
        let restart = RestartPolicy {
            on_failure,
            limit,
            window: env.seconds("THRUST_RESTART_WINDOW", 300)?,
        };

        let jitter = env.number("GZIP_COMPRESSION_JITTER", 32)?;
        let compression_jitter = u32::try_from(jitter)
            .ok()
            .filter(|j| *j <= 65_535)
            .ok_or_else(|| {
                env.invalid("GZIP_COMPRESSION_JITTER", "a whole number from 0 to 65535")
            })?;

        let config = Config {
            http_port,
            https_port,
            worker,
            tls,
            acme: AcmeSettings {
                domains,
                directory,
                email: env.text("ACME_EMAIL"),
                eab,
                storage: env
                    .text("STORAGE_PATH")
                    .unwrap_or_else(|| "./storage/thruster".to_string())
                    .into(),
                challenge,
                renew_within,
            },
            http2: env.boolean("THRUST_HTTP2", tls_on)?,
            h2c: env.boolean("H2C_ENABLED", false)?,
            cache_size: env.number("CACHE_SIZE", 64 << 20)?,
            max_cache_item_size: env.number("MAX_CACHE_ITEM_SIZE", 1 << 20)?,
            x_sendfile: env.boolean("X_SENDFILE_ENABLED", true)?,
            send_file_header,
            accel_mapping,
            send_file_roots,
            compression: env.boolean("GZIP_COMPRESSION_ENABLED", true)?,
            encodings,
            compression_disable_on_auth: env.boolean("GZIP_COMPRESSION_DISABLE_ON_AUTH", false)?,
            compression_jitter,
            max_request_body: env.number("MAX_REQUEST_BODY", 0)?,
            bad_gateway_page: env
                .text("BAD_GATEWAY_PAGE")
                .unwrap_or_else(|| "./public/502.html".to_string())
                .into(),
            idle_timeout: env.seconds("HTTP_IDLE_TIMEOUT", 60)?,
            read_timeout: env.seconds("HTTP_READ_TIMEOUT", 30)?,
            write_timeout: env.seconds("HTTP_WRITE_TIMEOUT", 30)?,
            trusted_proxies: trusted_proxies(&env, tls_on)?,
            log_requests: env.boolean("LOG_REQUESTS", true)?,
            debug: env.boolean("DEBUG", false)?,
            health_path,
            health_upstream_path,
            upstream_timeout: (!upstream_timeout.is_zero()).then_some(upstream_timeout),
            boot_wait: env.seconds("THRUST_BOOT_WAIT", 5)?,
            shutdown_timeout: env.seconds("THRUST_SHUTDOWN_TIMEOUT", 30)?,
            metrics_port,
            restart,
            restart_boot_timeout: env.seconds("THRUST_RESTART_BOOT_TIMEOUT", 120)?,
            control_socket,
            max_connections,
        };
        config.check_ports(&env)?;
        Ok(config)
    }

    /// The listen, worker and metrics ports must all differ.
    fn check_ports(&self, env: &Env) -> Result<(), ConfigError> {
        let mut ports: Vec<(&str, u16)> = vec![("HTTP_PORT", self.http_port)];
        if self.tls != Tls::Off {
            ports.push(("HTTPS_PORT", self.https_port));
        }
        if let Worker::Port(p) = self.worker {
            ports.push(("THRUST_WORKER_PORT", p));
        }
        if let Some(p) = self.metrics_port {
            ports.push(("THRUST_METRICS_PORT", p));
        }
        for (i, (name, port)) in ports.iter().enumerate() {
            if let Some((other, _)) = ports[..i].iter().find(|(_, p)| p == port) {
                let (variable, value) = env
                    .raw(name)
                    .unwrap_or_else(|| (name.to_string(), port.to_string()));
                return Err(ConfigError {
                    variable,
                    value,
                    expected: format!("a port different from {other} ({port})"),
                });
            }
        }
        Ok(())
    }

    pub fn tls_enabled(&self) -> bool {
        self.tls != Tls::Off
    }
}

/// FORWARD_HEADERS overrides (Thruster's meaning: trust every peer or
/// none); else THRUST_TRUSTED_PROXIES; else the private ranges, or nobody
/// with TLS on (Thruster's default with TLS: thrust faces the internet).
fn trusted_proxies(env: &Env, tls_on: bool) -> Result<TrustedProxies, ConfigError> {
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

/// A DNS name, or a wildcard (`*.example.com`: a `*` as the whole leftmost
/// label, above at least two labels).
fn is_domain_name(name: &str) -> bool {
    let labels = match name.strip_prefix("*.") {
        Some(parent) => parent.contains('.').then_some(parent),
        None => Some(name),
    };
    labels.is_some_and(|labels| {
        name.len() <= 253
            && labels.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
    })
}

/// The table as Markdown, for the README.
pub fn markdown_table() -> String {
    let mut out =
        String::from("| variable | also read as | default | meaning |\n|---|---|---|---|\n");
    for v in VARIABLES {
        let aliases = spellings(v)
            .into_iter()
            .filter(|s| s != v.name)
            .map(|s| format!("`{s}`"))
            .collect::<Vec<_>>()
            .join(", ");
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            v.name, aliases, v.default, v.meaning
        ));
    }
    out
}

/// Where a variable's value comes from, for `thrust check`.
pub struct Resolved {
    pub variable: &'static Variable,
    /// The value and the spelling it was found under; None: the default.
    pub set: Option<(String, String)>,
}

/// Variables whose values are secrets: `thrust check` shows only that they are set.
const SECRETS: [&str; 1] = ["EAB_HMAC_KEY"];

impl Resolved {
    /// One line: the variable, its value and where the value came from.
    pub fn line(&self) -> String {
        let name = self.variable.name;
        match &self.set {
            None => format!("{name}={}  (default)", self.variable.default),
            Some((spelling, _)) if SECRETS.contains(&name) => {
                format!("{name}=(set, not shown)  (from {spelling})")
            }
            Some((spelling, value)) => format!("{name}={value}  (from {spelling})"),
        }
    }
}

/// Every variable with the value an environment gives it and where from.
pub fn resolved(vars: &HashMap<String, String>) -> Vec<Resolved> {
    let env = Env { vars };
    VARIABLES
        .iter()
        .map(|variable| Resolved {
            variable,
            set: env.raw(variable.name),
        })
        .collect()
}

/// The table as plain text, for `thrust --help`.
pub fn help_text() -> String {
    let mut out = String::new();
    for v in VARIABLES {
        out.push_str(&format!("  {:<34} default: {}\n", v.name, v.default));
        if !v.aliases.is_empty() {
            out.push_str(&format!("  {:<34} also: {}\n", "", v.aliases.join(", ")));
        }
        out.push_str(&format!("  {:<34} {}\n", "", v.meaning.replace('`', "")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_vars(
            &pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn resolved_values_name_the_spelling_they_came_from() {
        let vars: HashMap<String, String> = [
            ("THRUSTER_HTTP_PORT", "8080"),
            ("TARGET_PORT", "4000"),
            ("EAB_HMAC_KEY", "c2VjcmV0"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let lines: Vec<String> = resolved(&vars).iter().map(Resolved::line).collect();
        assert!(lines.contains(&"HTTP_PORT=8080  (from THRUSTER_HTTP_PORT)".to_string()));
        assert!(lines.contains(&"THRUST_WORKER_PORT=4000  (from TARGET_PORT)".to_string()));
        assert!(lines.contains(&"EAB_HMAC_KEY=(set, not shown)  (from EAB_HMAC_KEY)".to_string()));
        assert!(lines.contains(&"CACHE_SIZE=67108864  (default)".to_string()));
        assert_eq!(lines.len(), VARIABLES.len());
    }

    #[test]
    fn defaults() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.http_port, 80);
        assert_eq!(c.worker, Worker::Port(3000));
        assert_eq!(c.health_path.as_deref(), Some("/up"));
        assert_eq!(
            c.trusted_proxies,
            TrustedProxies::parse(DEFAULT_TRUSTED).unwrap()
        );
        assert!(!c.http2);
        assert_eq!(c.upstream_timeout, Some(Duration::from_secs(60)));
        assert_eq!(c.cache_size, 64 << 20);
    }

    #[test]
    fn prefix_precedence() {
        let c = parse(&[
            ("HTTP_PORT", "1"),
            ("THRUSTER_HTTP_PORT", "2"),
            ("THRUST_HTTP_PORT", "3"),
        ])
        .unwrap();
        assert_eq!(c.http_port, 3);
        let c = parse(&[("HTTP_PORT", "1"), ("THRUSTER_HTTP_PORT", "2")]).unwrap();
        assert_eq!(c.http_port, 2);
        let c = parse(&[("HTTP_PORT", "8080"), ("PORT", "9090")]).unwrap();
        assert_eq!(c.http_port, 8080);
        let c = parse(&[("PORT", "9090")]).unwrap();
        assert_eq!(c.http_port, 9090);
    }

    #[test]
    fn worker_port_moves_off_3000() {
        let c = parse(&[("PORT", "3000")]).unwrap();
        assert_eq!(c.worker, Worker::Port(3001));
        let c = parse(&[("TARGET_PORT", "4000")]).unwrap();
        assert_eq!(c.worker, Worker::Port(4000));
        let c = parse(&[("THRUST_WORKER_SOCKET", "/tmp/app.sock")]).unwrap();
        assert_eq!(c.worker, Worker::Socket("/tmp/app.sock".into()));
    }

    #[test]
    fn booleans_accept_every_word() {
        for word in ["1", "true", "T", "yes", "ON"] {
            assert!(parse(&[("DEBUG", word)]).unwrap().debug, "{word}");
        }
        for word in ["0", "False", "f", "NO", "off"] {
            assert!(
                !parse(&[("LOG_REQUESTS", word)]).unwrap().log_requests,
                "{word}"
            );
        }
    }

    #[test]
    fn bad_values_name_the_variable() {
        let e = parse(&[("THRUSTER_HTTP_PORT", "eighty")]).unwrap_err();
        assert_eq!(e.variable, "THRUSTER_HTTP_PORT");
        assert_eq!(e.value, "eighty");
        assert!(e.to_string().contains("port number"));
        let cases: [(&[(&str, &str)], &str); 14] = [
            (&[("THRUST_RESTART", "always")], "THRUST_RESTART"),
            (&[("THRUST_RESTART_LIMIT", "0")], "THRUST_RESTART_LIMIT"),
            (&[("THRUST_RESTART_WINDOW", "5m")], "THRUST_RESTART_WINDOW"),
            (&[("DEBUG", "maybe")], "DEBUG"),
            (&[("CACHE_SIZE", "-1")], "CACHE_SIZE"),
            (&[("CACHE_SIZE", "99999999999999999999999")], "CACHE_SIZE"),
            (&[("HTTP_PORT", "0")], "HTTP_PORT"),
            (&[("HTTP_PORT", "65536")], "HTTP_PORT"),
            (&[("THRUST_COMPRESSION", "gzip,lzma")], "THRUST_COMPRESSION"),
            (
                &[
                    ("SSL_CERT_PATH", "/nonexistent.pem"),
                    ("SSL_KEY_PATH", "/nonexistent.key"),
                ],
                "SSL_CERT_PATH",
            ),
            (&[("SSL_CERT_PATH", "/etc/hostname")], "SSL_CERT_PATH"),
            (&[("THRUST_HEALTH_PATH", "up")], "THRUST_HEALTH_PATH"),
            (&[("TLS_DOMAIN", "a b.com")], "TLS_DOMAIN"),
            (
                &[("EAB_KID", "kid"), ("EAB_HMAC_KEY", "not base64!")],
                "EAB_HMAC_KEY",
            ),
        ];
        for (vars, variable) in cases {
            assert_eq!(parse(vars).unwrap_err().variable, variable, "{vars:?}");
        }
    }

    #[test]
    fn restart_policy_defaults_to_never_with_ten_failures_in_five_minutes() {
        let c = parse(&[]).unwrap();
        assert_eq!(
            c.restart,
            RestartPolicy {
                on_failure: false,
                limit: 10,
                window: Duration::from_secs(300)
            }
        );
        let c = parse(&[("THRUST_RESTART", "On-Failure")]).unwrap();
        assert!(c.restart.on_failure);
    }

    #[test]
    fn wildcards_are_refused_for_acme_and_accepted_beside_a_certificate() {
        let e = parse(&[("TLS_DOMAIN", "example.com, *.example.com")]).unwrap_err();
        assert_eq!(e.variable, "TLS_DOMAIN");
        assert!(e.to_string().contains("DNS-01"), "{e}");
        for not_a_name in [
            "*",
            "*.com",
            "a.*.example.com",
            "*a.example.com",
            "**.example.com",
        ] {
            let e = parse(&[("TLS_DOMAIN", not_a_name)]).unwrap_err();
            assert!(e.to_string().contains("domain names"), "{not_a_name}: {e}");
        }
        let c = parse(&[
            ("TLS_DOMAIN", "*.example.com"),
            ("SSL_CERT_PATH", "/etc/hostname"),
            ("SSL_KEY_PATH", "/etc/hostname"),
        ])
        .unwrap();
        assert_eq!(c.acme.domains, vec!["*.example.com"]);
        assert!(matches!(c.tls, Tls::Static { .. }));
    }

    #[test]
    fn conflicting_ports_are_refused() {
        let e = parse(&[("HTTP_PORT", "8080"), ("TARGET_PORT", "8080")]).unwrap_err();
        assert_eq!(e.variable, "TARGET_PORT");
        let e = parse(&[("HTTP_PORT", "8080"), ("THRUST_METRICS_PORT", "8080")]).unwrap_err();
        assert_eq!(e.variable, "THRUST_METRICS_PORT");
    }

    #[test]
    fn health_path_can_be_disabled_and_upstream_timeout_zero_means_none() {
        let c = parse(&[("THRUST_HEALTH_PATH", ""), ("THRUST_UPSTREAM_TIMEOUT", "0")]).unwrap();
        assert_eq!(c.health_path, None);
        assert_eq!(c.upstream_timeout, None);
    }

    #[test]
    fn tls_turns_forwarding_off_and_http2_on() {
        let c = parse(&[("TLS_DOMAIN", "Example.com, www.example.com")]).unwrap();
        assert_eq!(c.tls, Tls::Acme);
        assert_eq!(c.acme.domains, vec!["example.com", "www.example.com"]);
        let c = parse(&[(
            "TLS_DOMAIN",
            "Bücher.example,xn--bcher-kva.example, ÉCOLE.example",
        )])
        .unwrap();
        assert_eq!(
            c.acme.domains,
            vec!["xn--bcher-kva.example", "xn--cole-9oa.example"]
        );
        assert_eq!(c.trusted_proxies, TrustedProxies::Nobody);
        assert!(c.http2);
    }

    #[test]
    fn forward_headers_overrides_the_trusted_proxies() {
        let trust = |pairs: &[(&str, &str)]| parse(pairs).unwrap().trusted_proxies;
        assert_eq!(trust(&[("FORWARD_HEADERS", "1")]), TrustedProxies::Everyone);
        assert_eq!(
            trust(&[
                ("FORWARD_HEADERS", "off"),
                ("THRUST_TRUSTED_PROXIES", "10.0.0.0/8")
            ]),
            TrustedProxies::Nobody
        );
        assert_eq!(
            trust(&[
                ("THRUST_TRUSTED_PROXIES", "10.0.0.0/8"),
                ("TLS_DOMAIN", "a.example")
            ]),
            TrustedProxies::parse("10.0.0.0/8").unwrap()
        );
        let error = parse(&[("THRUST_TRUSTED_PROXIES", "10.0.0.0/8, kamal")]).unwrap_err();
        assert_eq!(error.variable, "THRUST_TRUSTED_PROXIES");
    }

    #[test]
    fn every_variable_has_a_row_and_spellings() {
        let help = help_text();
        let table = markdown_table();
        for v in VARIABLES {
            assert!(help.contains(v.name));
            assert!(table.contains(&format!("`{}`", v.name)));
        }
        assert_eq!(
            spellings(lookup("HTTP_PORT")),
            [
                "THRUST_HTTP_PORT",
                "THRUSTER_HTTP_PORT",
                "HTTP_PORT",
                "THRUST_PORT",
                "THRUSTER_PORT",
                "PORT"
            ]
        );
        assert_eq!(
            spellings(lookup("THRUST_WORKER_PORT"))[0],
            "THRUST_WORKER_PORT"
        );
    }
}
