//! The one table of variables: each one's name, aliases, kind, default and
//! meaning. Parsing looks names up here; `thrust --help`, `thrust check` and
//! the README's table are printed from it.

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
    pub fn expected(self) -> &'static str {
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
    var("STORAGE_PATH", &[], Kind::Text, "./storage/thruster", "where the ACME account key and certificates are kept (0600); copies that share it as a volume order each name once and answer each other's challenges"),
    var("THRUST_ON_DEMAND_TLS_ASK", &[], Kind::Text, "unset", "on-demand TLS: a path on the app (`/thrust/domains`) or an `http://` URL asked `?domain=<name>` at the first handshake for a name not in TLS_DOMAIN; 200 orders its certificate. Turns TLS on"),
    var("THRUST_ON_DEMAND_TLS_PER_MINUTE", &[], Kind::Count, "10", "on-demand TLS: new names ordered per minute, at most"),
    var("THRUST_ON_DEMAND_TLS_MAX_NAMES", &[], Kind::Count, "1000", "on-demand TLS: names kept with certificates, at most"),
    var("THRUST_ACME_CLAIM_TTL", &[], Kind::Seconds, "60", "copies sharing STORAGE_PATH: how long the claim of the copy ordering a name outlives it, should it die (at least 3)"),
    var("THRUST_HTTP2", &[], Kind::Bool, "on when TLS is on", "offer `h2` by ALPN on the TLS port"),
    var("THRUST_HTTP3", &[], Kind::Bool, "off", "also serve HTTP/3 over QUIC on UDP at `HTTPS_PORT` (needs TLS), advertised by `Alt-Svc` on TLS responses"),
    var("H2C_ENABLED", &[], Kind::Bool, "off", "HTTP/2 prior-knowledge cleartext on the HTTP port"),
    var("CACHE_SIZE", &[], Kind::Bytes, "67108864", "total bytes of the in-memory response cache"),
    var("MAX_CACHE_ITEM_SIZE", &[], Kind::Bytes, "1048576", "largest cacheable response body"),
    var("X_SENDFILE_ENABLED", &[], Kind::Bool, "on", "serve files named by X-Sendfile responses"),
    var("THRUST_SEND_FILE_HEADER", &[], Kind::Text, "X-Sendfile", "response header carrying the file: `X-Sendfile` or `X-Accel-Redirect`"),
    var("THRUST_ACCEL_MAPPING", &[], Kind::Text, "unset", "`X-Accel-Mapping` sent with `X-Accel-Redirect` (`/real/root/=/uri/`)"),
    var("THRUST_SEND_FILE_ROOTS", &[], Kind::Text, "unset (any absolute path)", "comma-separated directories: files the app names outside them are refused (404)"),
    var("THRUST_PUBLIC_DIR", &[], Kind::Text, "unset", "the app's public directory: GET and HEAD for an existing regular file below it (dotfiles excepted) are answered by thrust without the app, cached by path whatever the Host or query; everything else goes to the app"),
    var("THRUST_ASSET_PREFIX", &[], Kind::Text, "/assets/", "with `THRUST_PUBLIC_DIR`: the path below which fingerprinted names (`app-<hex>.css`) are immutable, sent with a year of caching and stored; elsewhere (a dated `report-20240131.pdf`) they are not"),
    var("GZIP_COMPRESSION_ENABLED", &[], Kind::Bool, "on", "response compression (all encodings)"),
    var("THRUST_COMPRESSION", &[], Kind::Text, "zstd,br,gzip", "encodings offered, in server preference order"),
    var("GZIP_COMPRESSION_DISABLE_ON_AUTH", &[], Kind::Bool, "off", "no compression for requests with credentials or private responses"),
    var("THRUST_COMPRESSION_DICTIONARIES", &[], Kind::Bool, "off", "compression dictionaries (RFC 9842) for stored fingerprinted JS and CSS: earlier versions offered as dictionaries, new versions sent as `dcz` deltas to browsers holding one"),
    var("GZIP_COMPRESSION_JITTER", &[], Kind::Count, "32", "BREACH mitigation: up to N bytes of padding per compressed response; 0 disables"),
    var("MAX_REQUEST_BODY", &[], Kind::Bytes, "0 (no limit)", "larger request bodies get 413"),
    var("BAD_GATEWAY_PAGE", &[], Kind::Text, "./public/502.html", "HTML served with 502 when the app server cannot answer"),
    var("THRUST_MAX_CONNECTIONS", &[], Kind::Count, "from the memory limit (6,144 in 256 MiB) and half the open-file limit", "client connections open at once; at it the longest idle connection (or a request head coming for 100 ms or more) is closed to make room, and only when every connection is busy do new ones get 503 (HTTP) or are closed (HTTPS)"),
    var("THRUST_MAX_APP_CONNECTIONS", &[], Kind::Count, "8 per CPU, at least 16", "requests at the app at once (from sending one to its response head; uploads not counted); more wait in a queue within THRUST_UPSTREAM_TIMEOUT, and no more connections to the app are opened"),
    var("HTTP_IDLE_TIMEOUT", &[], Kind::Seconds, "60", "keep-alive idle limit"),
    var("HTTP_READ_TIMEOUT", &[], Kind::Seconds, "30", "time to receive request headers and body"),
    var("HTTP_WRITE_TIMEOUT", &[], Kind::Seconds, "30", "time a client may take to accept more of the response"),
    var("FORWARD_HEADERS", &[], Kind::Bool, "unset", "`true`: keep every peer's forwarded headers (X-Forwarded-*, Forwarded); `false`: no peer's; unset: `THRUST_TRUSTED_PROXIES` decides"),
    var("THRUST_TRUSTED_PROXIES", &[], Kind::Text, "loopback and private ranges without TLS, none with TLS", "peers (networks or addresses, comma-separated) whose forwarded headers are kept; from others they are replaced or removed"),
    var("THRUST_PROXY_PROTOCOL", &[], Kind::Bool, "off", "every connection to the HTTP and HTTPS ports starts with a PROXY protocol v1 or v2 header (thrust behind an L4 load balancer); its client address is used when the peer is a trusted proxy; a connection without a valid header is closed"),
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

/// Socket activation's variables (`server::activation` reads them): thrust
/// consumes them, and they are removed from the app's environment.
pub const SOCKET_ACTIVATION_VARIABLES: [&str; 3] = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"];

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

pub fn lookup(name: &str) -> &'static Variable {
    VARIABLES
        .iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("{name} is missing from the configuration table"))
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
