//! thrust: the front server that runs inside an application's container.
//! `run` wires the supervisor, the readiness watch and the server together.

// The layers, from the bottom: each may call only the ones listed before it
// (each folder's first comment says what it owns and may not call).
mod app;
pub mod cli;
pub mod config;
mod conn;
mod http;
pub mod log;
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
    pub use crate::pipeline::forwarding::{
        set_forwarded, set_request_start, strip_hop_by_hop, ClientFacts,
    };
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
    // connections are served by the per-CPU workers (workers.rs).
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

async fn serve(config: Config, command: Vec<String>) -> u8 {
    let mut passed = match server::activation::take(&std::env::vars().collect()) {
        Ok(passed) => passed.unwrap_or_default(),
        Err(e) => return cannot_start(e, 2),
    };
    let listener = match listen(passed.http.take(), config.http_port, "HTTP_PORT") {
        Ok(listener) => listener,
        Err(e) => return cannot_start(e, 1),
    };
    let certificates = match &config.tls {
        Tls::Off => None,
        Tls::Static { cert, key } => match StaticCert::load(cert, key) {
            Ok(loaded) => Some(Certificates::Static(loaded)),
            Err(e) => {
                eprintln!("thrust: {e}");
                return 2;
            }
        },
        Tls::Acme => match tls::acme::Acme::new(config.acme.clone()) {
            Ok(acme) => Some(Certificates::Acme(acme)),
            Err(e) => {
                eprintln!("thrust: STORAGE_PATH={:?}: {e}", config.acme.storage);
                return 2;
            }
        },
    };
    let https = match &certificates {
        None => None,
        Some(certificates) => {
            let listener = match listen(passed.https.take(), config.https_port, "HTTPS_PORT") {
                Ok(listener) => listener,
                Err(e) => return cannot_start(e, 1),
            };
            let handshaker = match tls::Handshaker::new(certificates, config.http2) {
                Ok(handshaker) => handshaker,
                Err(e) => {
                    eprintln!("thrust: TLS setup failed: {e}");
                    return 2;
                }
            };
            certificates.keep_current();
            Some(server::Https {
                listener,
                handshaker: Arc::new(handshaker),
                http2: config.http2,
            })
        }
    };
    // Bound with the other ports, before the app starts: a taken port is a
    // start-up error, not a silent gap in monitoring.
    let metrics_listener = match config.metrics_port {
        Some(port) => match server::listen::bind(port, "THRUST_METRICS_PORT") {
            Ok(listener) => Some(listener),
            Err(e) => return cannot_start(e, 1),
        },
        None => None,
    };
    if passed.https.is_some() {
        tracing::warn!("A socket for HTTPS was passed, but TLS is off: it is closed");
    }
    let readiness = Arc::new(Readiness::default());
    let fd_limit = app::fd_limit::raise();
    let memory_limit = config::memory_budget::memory_limit();
    let admission = server::admission::Admission::new(
        config.max_connections,
        config::memory_budget::default_connections(
            memory_limit,
            config.cache_size,
            app::fd_limit::current(),
        ),
    );
    let target = AppTarget::new(config.worker.clone());
    let workers = match Workers::start(&target) {
        Ok(workers) => workers,
        Err(e) => return cannot_start(format!("cannot start worker threads: {e}"), 1),
    };
    let deep_check = config.health_upstream_path.clone().map(|path| {
        // A wildcard (beside a static certificate) is no host to ask for.
        let host = config
            .acme
            .domains
            .iter()
            .find(|d| !d.starts_with("*."))
            .cloned()
            .unwrap_or_else(|| "localhost".to_string());
        Arc::new(DeepCheck::new(path, host))
    });
    let (restart_requests, restarts) = tokio::sync::mpsc::channel(4);
    let config = Arc::new(config);
    let jitter = Arc::new(pipeline::compression::codec::Jitter::new(
        config.compression_jitter,
    ));
    let cache = pipeline::cache::Store::new(config.clone(), jitter.clone());
    let metrics = metrics_listener.map(|listener| {
        let metrics = metrics::Metrics::new(metrics::collect::Collected(Box::new(
            pipeline::scraped::Gauges {
                readiness: readiness.clone(),
                cache: cache.clone(),
                certificates: certificates.clone(),
            },
        )));
        if let Ok(address) = listener.local_addr() {
            tracing::info!(address = %address, "Serving /metrics");
        }
        tokio::spawn(metrics::endpoint::serve(listener, metrics.clone()));
        metrics
    });
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
    let lifecycle = match Lifecycle::start(command, fd_limit, wiring) {
        Ok(lifecycle) => lifecycle,
        Err(e) => {
            let code = e.exit_code();
            return cannot_start(e, code);
        }
    };
    let address = |l: &tokio::net::TcpListener| {
        l.local_addr()
            .map_or_else(|e| e.to_string(), |a| a.to_string())
    };
    match &https {
        Some(https) => tracing::info!(
            http = %address(&listener),
            https = %address(&https.listener),
            max_connections = admission.limit(),
            memory_limit_mib = memory_limit >> 20,
            "Server started"
        ),
        None => tracing::info!(
            http = %address(&listener),
            max_connections = admission.limit(),
            memory_limit_mib = memory_limit >> 20,
            "Server started"
        ),
    }

    // `thrust restart` (control.rs); without it, everything else still works.
    // Named after the port actually bound (socket activation may pass
    // another than HTTP_PORT), so two instances never share a name.
    let bound_port = listener.local_addr().map_or(config.http_port, |a| a.port());
    let control_address = app::control_socket::ControlAddress::of(&config, bound_port);
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
    let bad_gateway_page = std::fs::read(&config.bad_gateway_page)
        .unwrap_or_default()
        .into();
    let app = Arc::new(App {
        bad_gateway_page,
        readiness: readiness.clone(),
        deep_check,
        cache,
        metrics,
        certificates,
        jitter,
        config: config.clone(),
    });

    tokio::spawn(server::malloc_trim::keep_trimmed());

    let server = Server {
        app,
        h2c: config.h2c,
        workers,
        admission,
    };
    let status = server.serve_until(listener, https, lifecycle.run()).await;
    app::supervisor::exit_code(status)
}
