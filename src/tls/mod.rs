//! TLS: the rustls server configuration and which hosts it covers.

pub mod static_cert;

use std::sync::Arc;

use rustls::server::ResolvesServerCert;
use rustls::ServerConfig;

use static_cert::StaticCert;

/// Where certificates come from.
#[derive(Clone, Debug)]
pub enum Certificates {
    Static(Arc<StaticCert>),
}

impl Certificates {
    fn resolver(&self) -> Arc<dyn ResolvesServerCert> {
        match self {
            Certificates::Static(cert) => cert.clone(),
        }
    }

    /// Starts the background work that keeps certificates current.
    pub fn keep_current(&self) {
        match self {
            Certificates::Static(cert) => {
                tokio::spawn(cert.clone().watch());
            }
        }
    }

    /// Whether the HTTP port may redirect this host to HTTPS.
    pub fn covers(&self, host: &str) -> bool {
        match self {
            Certificates::Static(cert) => static_cert::covers(&cert.current(), host),
        }
    }
}

/// TLS 1.2 and 1.3 with the ring provider; ALPN offers h2 when enabled.
pub fn server_config(
    certificates: &Certificates,
    http2: bool,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(certificates.resolver());
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(Arc::new(config))
}
