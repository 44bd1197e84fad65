//! The configuration layer: every variable thrust reads from the environment.
//!
//! One table (`VARIABLES`) names every variable, its aliases, its default and
//! what it means; parsing, `thrust --help` and the README's table are all
//! produced from it so they cannot drift apart. Also owns the values
//! derived from the machine rather than read (`memory_budget`) and the
//! trusted-proxy list with its questions (`trusted_proxies`).
//!
//! May call no other layer: every layer reads the `Config` it makes.

mod env;
pub mod memory_budget;
mod sections;
mod table;
mod tls;
pub mod trusted_proxies;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use env::Env;
pub use env::{parse_bool, resolved, ConfigError, Resolved};
pub use table::{
    help_text, markdown_table, spellings, Kind, Variable, DEFAULT_ACME_DIRECTORY,
    SOCKET_ACTIVATION_VARIABLES, VARIABLES,
};
pub use tls::is_dns_label;
use trusted_proxies::TrustedProxies;

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
    /// How long a copy's claim on a name outlives its last renewal: copies
    /// sharing STORAGE_PATH order a name one at a time, and another copy
    /// takes over this long after the one ordering died.
    pub claim_ttl: Duration,
    /// THRUST_ON_DEMAND_TLS_ASK: names outside `domains` the app allows get
    /// a certificate at their first handshake.
    pub on_demand: Option<OnDemand>,
}

/// On-demand TLS: where to ask, and how many orders it may cause.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OnDemand {
    pub ask: AskAt,
    /// THRUST_ON_DEMAND_TLS_PER_MINUTE: new names ordered in a minute.
    pub per_minute: u32,
    /// THRUST_ON_DEMAND_TLS_MAX_NAMES: names kept at once.
    pub most_names: usize,
}

/// Where `GET <path>?domain=<name>` goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AskAt {
    /// The app, on its port or socket (a path such as `/thrust/domains`).
    App { path: String },
    /// An absolute `http://` URL: its host and port, and its path and query.
    Url { authority: String, path: String },
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
    /// THRUST_HTTP3: QUIC on the HTTPS port's UDP twin.
    pub http3: bool,
    pub cache_size: u64,
    pub max_cache_item_size: u64,
    pub x_sendfile: bool,
    pub send_file_header: SendFileHeader,
    pub accel_mapping: Option<(String, String)>,
    /// THRUST_SEND_FILE_ROOTS; empty: any absolute path.
    pub send_file_roots: Vec<PathBuf>,
    /// THRUST_PUBLIC_DIR, resolved (symlinks followed) at start-up.
    pub public_dir: Option<PathBuf>,
    /// THRUST_ASSET_PREFIX: starts and ends with `/`.
    pub asset_prefix: String,
    pub compression: bool,
    /// THRUST_COMPRESSION_DICTIONARIES.
    pub dictionaries: bool,
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
    /// THRUST_PROXY_PROTOCOL: each connection opens with a PROXY header.
    pub proxy_protocol: bool,
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
    /// THRUST_MAX_APP_CONNECTIONS; `None`: from the number of CPUs.
    pub max_app_connections: Option<usize>,
}

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_vars(&std::env::vars().collect())
    }

    /// Reads the configuration from an environment snapshot: each concern's
    /// parser in turn, then the checks across them.
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Config, ConfigError> {
        let env = Env { vars };
        let domains = tls::domains(&env)?;
        let on_demand = tls::on_demand(&env)?;
        let tls = tls::mode(&env, &domains, on_demand.is_some())?;
        let tls_on = tls != Tls::Off;
        let http_port = env.port("HTTP_PORT")?.unwrap_or(80);
        let https_port = env.port("HTTPS_PORT")?.unwrap_or(443);
        let listening_on_3000 = http_port == 3000 || (tls_on && https_port == 3000);
        let upstream_timeout = env.seconds("THRUST_UPSTREAM_TIMEOUT", 60)?;
        let config = Config {
            http_port,
            https_port,
            worker: sections::worker(&env, listening_on_3000)?,
            tls,
            acme: tls::acme(&env, domains, on_demand)?,
            http2: env.boolean("THRUST_HTTP2", tls_on)?,
            h2c: env.boolean("H2C_ENABLED", false)?,
            http3: sections::http3(&env, tls_on)?,
            cache_size: env.number("CACHE_SIZE", 64 << 20)?,
            max_cache_item_size: env.number("MAX_CACHE_ITEM_SIZE", 1 << 20)?,
            x_sendfile: env.boolean("X_SENDFILE_ENABLED", true)?,
            send_file_header: sections::send_file_header(&env)?,
            accel_mapping: sections::accel_mapping(&env)?,
            send_file_roots: sections::send_file_roots(&env)?,
            public_dir: sections::public_dir(&env)?,
            asset_prefix: sections::asset_prefix(&env)?,
            compression: env.boolean("GZIP_COMPRESSION_ENABLED", true)?,
            dictionaries: env.boolean("THRUST_COMPRESSION_DICTIONARIES", false)?,
            encodings: sections::encodings(&env)?,
            compression_disable_on_auth: env.boolean("GZIP_COMPRESSION_DISABLE_ON_AUTH", false)?,
            compression_jitter: sections::compression_jitter(&env)?,
            max_request_body: env.number("MAX_REQUEST_BODY", 0)?,
            bad_gateway_page: env
                .text("BAD_GATEWAY_PAGE")
                .unwrap_or_else(|| "./public/502.html".to_string())
                .into(),
            idle_timeout: env.seconds("HTTP_IDLE_TIMEOUT", 60)?,
            read_timeout: env.seconds("HTTP_READ_TIMEOUT", 30)?,
            write_timeout: env.seconds("HTTP_WRITE_TIMEOUT", 30)?,
            trusted_proxies: sections::trusted_proxies(&env, tls_on)?,
            proxy_protocol: env.boolean("THRUST_PROXY_PROTOCOL", false)?,
            log_requests: env.boolean("LOG_REQUESTS", true)?,
            debug: env.boolean("DEBUG", false)?,
            health_path: sections::health_path(&env)?,
            health_upstream_path: sections::health_upstream_path(&env)?,
            upstream_timeout: (!upstream_timeout.is_zero()).then_some(upstream_timeout),
            boot_wait: env.seconds("THRUST_BOOT_WAIT", 5)?,
            shutdown_timeout: env.seconds("THRUST_SHUTDOWN_TIMEOUT", 30)?,
            metrics_port: env.port("THRUST_METRICS_PORT")?,
            restart: sections::restart(&env)?,
            restart_boot_timeout: env.seconds("THRUST_RESTART_BOOT_TIMEOUT", 120)?,
            control_socket: sections::control_socket(&env)?,
            max_connections: sections::limit(&env, "THRUST_MAX_CONNECTIONS")?,
            max_app_connections: sections::limit(&env, "THRUST_MAX_APP_CONNECTIONS")?,
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

#[cfg(test)]
mod tests {
    use super::*;
    use table::lookup;
    use trusted_proxies::DEFAULT_TRUSTED;

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
        let cases: [(&[(&str, &str)], &str); 16] = [
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
            (&[("THRUST_ACME_CLAIM_TTL", "2")], "THRUST_ACME_CLAIM_TTL"),
            (&[("THRUST_ACME_CLAIM_TTL", "1m")], "THRUST_ACME_CLAIM_TTL"),
        ];
        for (vars, variable) in cases {
            assert_eq!(parse(vars).unwrap_err().variable, variable, "{vars:?}");
        }
    }

    #[test]
    fn on_demand_tls_asks_a_path_on_the_app_or_an_http_url_and_turns_tls_on() {
        let c = parse(&[("THRUST_ON_DEMAND_TLS_ASK", "/thrust/domains")]).unwrap();
        assert_eq!(c.tls, Tls::Acme);
        assert!(c.acme.domains.is_empty());
        let on_demand = c.acme.on_demand.unwrap();
        assert_eq!(
            on_demand.ask,
            AskAt::App {
                path: "/thrust/domains".into()
            }
        );
        assert_eq!((on_demand.per_minute, on_demand.most_names), (10, 1000));
        let c = parse(&[(
            "THRUST_ON_DEMAND_TLS_ASK",
            "http://auth.internal:8080/check?site=1",
        )])
        .unwrap();
        assert_eq!(
            c.acme.on_demand.unwrap().ask,
            AskAt::Url {
                authority: "auth.internal:8080".into(),
                path: "/check?site=1".into()
            }
        );
        for (vars, variable) in [
            (
                &[("THRUST_ON_DEMAND_TLS_ASK", "https://auth.internal/check")][..],
                "THRUST_ON_DEMAND_TLS_ASK",
            ),
            (
                &[("THRUST_ON_DEMAND_TLS_ASK", "thrust/domains")],
                "THRUST_ON_DEMAND_TLS_ASK",
            ),
            (
                &[("THRUST_ON_DEMAND_TLS_ASK", "//evil.example/x")],
                "THRUST_ON_DEMAND_TLS_ASK",
            ),
            (
                &[
                    ("THRUST_ON_DEMAND_TLS_ASK", "/thrust/domains"),
                    ("THRUST_ON_DEMAND_TLS_PER_MINUTE", "0"),
                ],
                "THRUST_ON_DEMAND_TLS_PER_MINUTE",
            ),
        ] {
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
    fn http3_is_off_by_default_and_needs_tls() {
        assert!(!parse(&[("TLS_DOMAIN", "example.com")]).unwrap().http3);
        let on = [("TLS_DOMAIN", "example.com"), ("THRUST_HTTP3", "1")];
        assert!(parse(&on).unwrap().http3);
        let e = parse(&[("THRUST_HTTP3", "1")]).unwrap_err();
        assert_eq!(e.variable, "THRUST_HTTP3");
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
