//! thrust: the front server that runs inside an application's container.
//!
//! This file is the wiring: it declares the layers (one folder each, below)
//! and `run` starts them in order — ports, limits, worker threads, metrics,
//! the app, the control socket — then serves until the app is gone.

// Futures a connection or a request holds for as long as it lives are
// written as functions returning an `async` block: an `async fn` keeps each
// argument twice (as given and as moved into its body) for as long as it
// runs (`pipeline::handle`, `server::parking::serve`, benches/RESULTS.md).
#![allow(clippy::manual_async_fn)]

// The layers, from the bottom: each may call only the ones listed before it
// (each folder's first comment says what it owns and may not call).
mod app;
pub mod cli;
pub mod config;
mod conn;
mod http;
pub mod log;
mod memory;
mod metrics;
mod pipeline;
mod server;
mod tls;

#[doc(hidden)]
pub mod fuzzing;
#[cfg(test)]
mod test_support;

use std::sync::Arc;

/// The per-request hot paths, for the criterion benchmarks (benches/hot_paths.rs).
#[doc(hidden)]
pub mod hot_paths {
    pub use crate::config::Encoding;
    pub use crate::http::accept_encoding::negotiate;
    pub use crate::http::cache_control::CacheControl;
    pub use crate::pipeline::cache::policy::vary_names;
    pub use crate::pipeline::cache::store::{BaseKey, Entry, ResponseCache};
    pub use crate::pipeline::compression::codec::compress_all;
    pub use crate::pipeline::compression::dictionary::{dcz, sha256};
    pub use crate::pipeline::forwarding::{set_forwarded, strip_hop_by_hop, ClientFacts};
}

use app::deep_check::DeepCheck;
use app::lifecycle::{Lifecycle, ReadyCheck, Wiring};
use app::readiness::Readiness;
use app::target::AppTarget;
use config::{Config, Tls};
use pipeline::App;
use server::workers::Workers;
use server::Server;
use tls::static_cert::StaticCert;
use tls::Certificates;

/// Runs thrust in front of `command`; returns the process exit code.
pub fn run(config: Config, command: Vec<String>) -> u8 {
    if command.is_empty() {
        eprintln!("thrust: no command to run");
        return 2;
    }
    // Supervision, readiness, certificates and accepting run here; client
    // connections are served by the per-CPU workers (`server::workers`).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "Cannot start the async runtime");
            return 1;
        }
    };
    // The child is spawned from this (the main) thread: its parent-death
    // signal is tied to the spawning thread, which lives as long as thrust.
    runtime.block_on(serve(config, command))
}

/// Reports a start-up failure in the log and on stderr; returns the exit code.
fn cannot_start(error: impl std::fmt::Display, code: u8) -> u8 {
    tracing::error!(error = %error, "Cannot start");
    eprintln!("thrust: {error}");
    code
}

/// The socket for a port: the one the service manager passed, or bound here.
fn listen(
    passed: Option<std::net::TcpListener>,
    port: u16,
    variable: &'static str,
) -> Result<tokio::net::TcpListener, server::listen::BindError> {
    match passed {
        Some(listener) => server::listen::adopt(listener, variable),
        None => server::listen::bind(port, variable),
    }
}

/// Runs thrust once the configuration is read: every step of start-up,
/// then serving until the app is gone; returns the exit code.
async fn serve(config: Config, command: Vec<String>) -> u8 {
    match start(config, command).await {
        Ok((server, ports, lifecycle)) => {
            let status = server
                .serve_until(ports.http, ports.https, lifecycle.run())
                .await;
            app::supervisor::exit_code(status)
        }
        Err(code) => code,
    }
}

/// Start-up in order: ports (so a taken one stops thrust before the app
/// starts), limits, worker threads, metrics, the app, the control socket.
/// Err: the exit code, the reason already reported.
async fn start(config: Config, command: Vec<String>) -> Result<(Server, Ports, Lifecycle), u8> {
    let certificates = certificates(&config)?;
    let mut ports = open_ports(&config, certificates.as_ref())?;
    let readiness = Arc::new(Readiness::default());
    let fd_limit = app::fd_limit::raise();
    let memory_limit = config::memory_budget::memory_limit();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let max_app_connections = config
        .max_app_connections
        .unwrap_or_else(|| app::app_connections::default_cap(cpus));
    let target = AppTarget::new(config.worker.clone());
    let workers = Workers::start(&target, max_app_connections)
        .map_err(|e| cannot_start(format!("cannot start worker threads: {e}"), 1))?;
    if let (Some(https), Some(pending)) = (ports.https.as_mut(), ports.quic.take()) {
        let endpoint = pending.open(&workers.quic_home().handle);
        https.quic =
            Some(endpoint.map_err(|e| cannot_start(format!("cannot open HTTP/3: {e}"), 1))?);
    }
    let deep_check = deep_check(&config);
    let (restart_requests, restarts) = tokio::sync::mpsc::channel(4);
    let config = Arc::new(config);
    let jitter = Arc::new(pipeline::compression::codec::Jitter::new(
        config.compression_jitter,
    ));
    let budget = config::memory_budget::connection_budget(
        memory_limit,
        config.cache_size,
        config.dictionaries && config.compression,
        app::fd_limit::current(),
    );
    let cache_share = conn::cache_share::CacheShare::new(budget.cache_lendable);
    let cache = pipeline::cache::Store::new(config.clone(), jitter.clone(), cache_share.clone());
    let metrics = ports.metrics.map(|listener| {
        let gauges = pipeline::scraped::Gauges {
            readiness: readiness.clone(),
            cache: cache.clone(),
            certificates: certificates.clone(),
            app_connections: workers
                .pools()
                .iter()
                .map(|(_, pool)| pool.app_connections().clone())
                .collect(),
        };
        serve_metrics(listener, gauges)
    });
    let admission = server::admission::Admission::new(
        config.max_connections,
        budget,
        cache_share,
        metrics.clone(),
    );
    let wiring = Wiring {
        config: config.clone(),
        readiness: readiness.clone(),
        target,
        pools: workers.pools(),
        ready_check: match &deep_check {
            Some(deep_check) => ReadyCheck::Deep(deep_check.clone()),
            None => ReadyCheck::Answers(config.health_path.clone().unwrap_or_else(|| "/".into())),
        },
        restarts,
        metrics: metrics.clone(),
    };
    let lifecycle = Lifecycle::start(command, fd_limit, wiring).map_err(|e| {
        let code = e.exit_code();
        cannot_start(e, code)
    })?;
    let ports = Ports {
        metrics: None,
        ..ports
    };
    log_started(&ports, admission.limit(), max_app_connections, memory_limit);
    open_control_socket(&config, &ports.http, restart_requests);
    let app = Arc::new(App {
        bad_gateway_page: std::fs::read(&config.bad_gateway_page)
            .unwrap_or_default()
            .into(),
        readiness,
        deep_check,
        cache,
        metrics,
        certificates,
        jitter,
        config: config.clone(),
    });
    let server = Server {
        app,
        h2c: config.h2c,
        workers,
        admission,
    };
    Ok((server, ports, lifecycle))
}

/// The certificates TLS serves, when it is on.
fn certificates(config: &Config) -> Result<Option<Certificates>, u8> {
    match &config.tls {
        Tls::Off => Ok(None),
        Tls::Static { cert, key } => match StaticCert::load(cert, key) {
            Ok(loaded) => Ok(Some(Certificates::Static(loaded))),
            Err(e) => {
                eprintln!("thrust: {e}");
                Err(2)
            }
        },
        Tls::Acme => match tls::acme::Acme::new(config.acme.clone(), config.worker.clone()) {
            Ok(acme) => Ok(Some(Certificates::Acme(acme))),
            Err(e) => {
                eprintln!("thrust: STORAGE_PATH={:?}: {e}", config.acme.storage);
                Err(2)
            }
        },
    }
}

/// With THRUST_HTTP3: QUIC on the UDP port of the HTTPS listener's number
/// (the passed socket's, with socket activation).
fn quic_endpoint(
    config: &Config,
    certificates: &Certificates,
    https: &tokio::net::TcpListener,
) -> Result<server::http3::Pending, u8> {
    let port = https.local_addr().map_or(config.https_port, |a| a.port());
    let socket = server::listen::bind_udp(port, "HTTPS_PORT").map_err(|e| cannot_start(e, 1))?;
    let failed = |e: String| {
        eprintln!("thrust: HTTP/3 setup failed: {e}");
        2
    };
    let tls = tls::quic_config(certificates).map_err(|e| failed(e.to_string()))?;
    let idle = (!config.idle_timeout.is_zero()).then_some(config.idle_timeout);
    server::http3::prepare(socket, tls, idle).map_err(|e| failed(e.to_string()))
}

/// thrust's listening sockets.
struct Ports {
    http: tokio::net::TcpListener,
    https: Option<server::Https>,
    /// With THRUST_HTTP3, until the workers run: then it is `https.quic`.
    quic: Option<server::http3::Pending>,
    metrics: Option<tokio::net::TcpListener>,
}

/// Binds (or takes from the service manager) every port, before the app
/// starts: a taken port is a start-up error, not a silent gap.
fn open_ports(config: &Config, certificates: Option<&Certificates>) -> Result<Ports, u8> {
    let mut passed = match server::activation::take(&std::env::vars().collect()) {
        Ok(passed) => passed.unwrap_or_default(),
        Err(e) => return Err(cannot_start(e, 2)),
    };
    let http = listen(passed.http.take(), config.http_port, "HTTP_PORT")
        .map_err(|e| cannot_start(e, 1))?;
    let mut quic = None;
    let https = match certificates {
        None => None,
        Some(certificates) => {
            let listener = listen(passed.https.take(), config.https_port, "HTTPS_PORT")
                .map_err(|e| cannot_start(e, 1))?;
            let handshaker = tls::Handshaker::new(certificates, config.http2).map_err(|e| {
                eprintln!("thrust: TLS setup failed: {e}");
                2
            })?;
            if config.http3 {
                quic = Some(quic_endpoint(config, certificates, &listener)?);
            }
            certificates.keep_current();
            Some(server::Https {
                listener,
                handshaker: Arc::new(handshaker),
                http2: config.http2,
                quic: None,
            })
        }
    };
    let metrics = match config.metrics_port {
        Some(port) => Some(
            server::listen::bind(port, "THRUST_METRICS_PORT").map_err(|e| cannot_start(e, 1))?,
        ),
        None => None,
    };
    if passed.https.is_some() {
        tracing::warn!("A socket for HTTPS was passed, but TLS is off: it is closed");
    }
    Ok(Ports {
        http,
        https,
        quic,
        metrics,
    })
}

/// The deep health check, when THRUST_HEALTH_UPSTREAM_PATH is set.
fn deep_check(config: &Config) -> Option<Arc<DeepCheck>> {
    let path = config.health_upstream_path.clone()?;
    // A wildcard (beside a static certificate) is no host to ask for.
    let host = config
        .acme
        .domains
        .iter()
        .find(|d| !d.starts_with("*."))
        .cloned()
        .unwrap_or_else(|| "localhost".to_string());
    Some(Arc::new(DeepCheck::new(path, host)))
}

/// Starts answering scrapes on the metrics port.
fn serve_metrics(
    listener: tokio::net::TcpListener,
    gauges: pipeline::scraped::Gauges,
) -> Arc<metrics::Metrics> {
    let metrics = metrics::Metrics::new(metrics::collect::Collected(Box::new(gauges)));
    if let Ok(address) = listener.local_addr() {
        tracing::info!(address = %address, "Serving /metrics");
    }
    tokio::spawn(metrics::endpoint::serve(listener, metrics.clone()));
    metrics
}

fn log_started(
    ports: &Ports,
    max_connections: usize,
    max_app_connections: usize,
    memory_limit: u64,
) {
    let address = |l: &tokio::net::TcpListener| {
        l.local_addr()
            .map_or_else(|e| e.to_string(), |a| a.to_string())
    };
    match &ports.https {
        Some(https) => tracing::info!(
            http = %address(&ports.http),
            https = %address(&https.listener),
            http3 = %https.quic.as_ref().and_then(|q| q.local_addr().ok())
                .map_or_else(|| "off".to_string(), |a| format!("udp {a}")),
            max_connections,
            max_app_connections,
            memory_limit_mib = memory_limit >> 20,
            "Server started"
        ),
        None => tracing::info!(
            http = %address(&ports.http),
            max_connections,
            max_app_connections,
            memory_limit_mib = memory_limit >> 20,
            "Server started"
        ),
    }
}

/// `thrust restart`'s socket; without it, everything else still works.
/// Named after the port actually bound (socket activation may pass another
/// than HTTP_PORT), so two instances never share a name.
fn open_control_socket(
    config: &Config,
    http: &tokio::net::TcpListener,
    restart_requests: tokio::sync::mpsc::Sender<app::control_socket::RestartRequest>,
) {
    let bound_port = http.local_addr().map_or(config.http_port, |a| a.port());
    let control_address = app::control_socket::ControlAddress::of(config, bound_port);
    match app::control_socket::listen(&control_address) {
        Ok(listener) => {
            tracing::info!(socket = %control_address, "Control socket open for thrust restart");
            tokio::spawn(app::control_socket::serve(listener, restart_requests));
        }
        Err(e) => tracing::warn!(
            error = %e,
            "thrust restart is unavailable: the control socket cannot be opened, and thrust restart will not talk to a socket another user holds"
        ),
    }
}
