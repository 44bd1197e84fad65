//! `thrust check [CMD...]`: prints the configuration as thrust resolves it
//! (each value and the spelling it came from) and validates what start-up
//! validates — the values, the certificate files or ACME storage, the
//! ports, the command — without starting anything. Exits 0, or with the
//! code and the message start-up would give.

use std::collections::HashMap;

use crate::app::supervisor;
use crate::config::{resolved, AskAt, Config, Tls, Worker};
use crate::server::activation;
use crate::server::listen::{self, BindError};
use crate::tls::acme::store::FileStore;
use crate::tls::static_cert::StaticCert;

/// A failure as start-up reports it.
fn fail(message: impl std::fmt::Display, code: u8) -> u8 {
    eprintln!("thrust: {message}");
    code
}

/// Whether a port can be listened on, the way start-up binds it.
fn bindable(port: u16, variable: &'static str) -> Result<(), BindError> {
    std::net::TcpListener::bind(("0.0.0.0", port))
        .map(drop)
        .map_err(|source| BindError {
            port,
            variable,
            source,
        })
}

fn on_off(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}

/// What the values amount to, where defaults depend on other values.
fn effective(config: &Config) -> Vec<String> {
    let mut lines = vec![format!("HTTP on 0.0.0.0:{}", config.http_port)];
    match &config.tls {
        Tls::Off => lines.push("TLS off".into()),
        Tls::Static { .. } => lines.push(format!(
            "HTTPS on 0.0.0.0:{} with the certificate files",
            config.https_port
        )),
        Tls::Acme => lines.push(format!(
            "HTTPS on 0.0.0.0:{} with automatic certificates for {}",
            config.https_port,
            acme_names(config)
        )),
    }
    lines.push(match &config.worker {
        Worker::Port(port) => format!("the app on 127.0.0.1:{port} (it gets PORT={port})"),
        Worker::Socket(path) => format!("the app on unix:{}", path.display()),
    });
    lines.push(format!(
        "HTTP/2: over TLS {}, h2c {}",
        on_off(config.http2 && config.tls != Tls::Off),
        on_off(config.h2c)
    ));
    lines.push(if config.http3 {
        format!("HTTP/3 on UDP 0.0.0.0:{}", config.https_port)
    } else {
        "HTTP/3 off".into()
    });
    let encodings: Vec<&str> = config.encodings.iter().map(|e| e.token()).collect();
    lines.push(if config.compression {
        let dictionaries = if config.dictionaries {
            " (dcz deltas for fingerprinted JS and CSS)"
        } else {
            ""
        };
        format!("compression: {}{dictionaries}", encodings.join(", "))
    } else {
        "compression off".into()
    });
    lines.push(format!(
        "cache: {} bytes, items up to {} bytes",
        config.cache_size, config.max_cache_item_size
    ));
    lines.push(format!(
        "forwarded headers kept from: {}; request log {}",
        config.trusted_proxies,
        on_off(config.log_requests)
    ));
    lines
}

pub fn run(command: &[String]) -> u8 {
    let vars: HashMap<String, String> = std::env::vars().collect();
    println!("Configuration:");
    for row in resolved(&vars) {
        println!("  {}", row.line());
    }
    let config = match Config::from_vars(&vars) {
        Ok(config) => config,
        Err(e) => return fail(e, 2),
    };

    println!("In effect:");
    for line in effective(&config) {
        println!("  {line}");
    }
    println!("Checks:");
    match &config.tls {
        Tls::Off => println!("  TLS: off"),
        Tls::Static { cert, key } => match StaticCert::load(cert, key) {
            Ok(_) => println!(
                "  TLS: certificate {} and key {} load",
                cert.display(),
                key.display()
            ),
            Err(e) => return fail(e, 2),
        },
        Tls::Acme => match FileStore::probe(&config.acme.storage) {
            Ok(()) => println!(
                "  TLS: automatic certificates for {}, stored in {}",
                acme_names(&config),
                config.acme.storage.display()
            ),
            Err(e) => return fail(format!("STORAGE_PATH={:?}: {e}", config.acme.storage), 2),
        },
    }

    let passed = match activation::take(&vars) {
        Ok(passed) => passed.unwrap_or_default(),
        Err(e) => return fail(e, 2),
    };
    // HTTP/3 listens on UDP at the HTTPS socket's number.
    let udp_port = passed
        .https
        .as_ref()
        .and_then(|s| s.local_addr().ok())
        .map_or(config.https_port, |a| a.port());
    let mut ports = vec![(passed.http, config.http_port, "HTTP_PORT")];
    if config.tls != Tls::Off {
        ports.push((passed.https, config.https_port, "HTTPS_PORT"));
    }
    for (socket, port, variable) in ports {
        match socket {
            Some(socket) => {
                let address = socket
                    .local_addr()
                    .map_or_else(|e| e.to_string(), |a| a.to_string());
                println!("  {variable}: a socket passed by the service manager ({address})");
            }
            None => match bindable(port, variable) {
                Ok(()) => println!("  {variable}: port {port} can be listened on"),
                Err(e) => return fail(e, 1),
            },
        }
    }

    if config.http3 {
        match listen::bind_udp(udp_port, "HTTPS_PORT") {
            Ok(_) => println!("  HTTPS_PORT: UDP port {udp_port} can be listened on (HTTP/3)"),
            Err(e) => return fail(e, 1),
        }
    }

    match command.first() {
        None => println!("  command: none given, not checked"),
        Some(program) => match supervisor::resolve(program) {
            Ok(path) => println!("  command: {} ({})", command.join(" "), path.display()),
            Err(e) => {
                let code = e.exit_code();
                return fail(e, code);
            }
        },
    }
    println!("OK");
    0
}

/// The names ACME certificates are for: TLS_DOMAIN's, and with on-demand
/// TLS those the ask URL allows.
fn acme_names(config: &Config) -> String {
    let asked = config
        .acme
        .on_demand
        .as_ref()
        .map(|on_demand| match &on_demand.ask {
            AskAt::App { path } => format!("the names the app allows at {path}"),
            AskAt::Url { authority, path } => format!("the names http://{authority}{path} allows"),
        });
    let listed = (!config.acme.domains.is_empty()).then(|| config.acme.domains.join(", "));
    [listed, asked]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", and ")
}
