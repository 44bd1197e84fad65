//! The TLS layer: the rustls server configuration, which hosts it covers,
//! static certificates reloaded from their files (`static_cert`) and ACME
//! certificates ordered and renewed (`acme`).
//!
//! May call config only. The pipeline asks it which hosts are covered and
//! for ACME's HTTP-01 answers; the server hands it connections to decrypt.

pub mod acme;
pub mod static_cert;

use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::server::{Acceptor, ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::{LazyConfigAcceptor, TlsAcceptor};

use crate::tls::acme::Acme;
use static_cert::StaticCert;

/// How long a handshake waits for a certificate whose order is in flight.
const WAIT_FOR_ORDER: Duration = Duration::from_secs(30);
const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Where certificates come from.
#[derive(Clone)]
pub enum Certificates {
    Static(Arc<StaticCert>),
    Acme(Arc<Acme>),
}

/// The current ACME certificate for the client's server name.
#[derive(Debug)]
struct AcmeCurrent(Arc<Acme>);

impl ResolvesServerCert for AcmeCurrent {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.current(&hello.server_name()?.to_ascii_lowercase())
    }
}

/// The TLS-ALPN-01 challenge certificate for the client's server name.
#[derive(Debug)]
struct AcmeChallenge(Arc<Acme>);

impl ResolvesServerCert for AcmeChallenge {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0
            .alpn_challenge(&hello.server_name()?.to_ascii_lowercase())
    }
}

impl std::fmt::Debug for Acme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Acme")
    }
}

impl Certificates {
    fn resolver(&self) -> Arc<dyn ResolvesServerCert> {
        match self {
            Certificates::Static(cert) => cert.clone(),
            Certificates::Acme(acme) => Arc::new(AcmeCurrent(acme.clone())),
        }
    }

    /// Starts the background work that keeps certificates current.
    pub fn keep_current(&self) {
        match self {
            Certificates::Static(cert) => {
                tokio::spawn(cert.clone().watch());
            }
            Certificates::Acme(acme) => acme.start(),
        }
    }

    /// The ACME HTTP-01 answer for a token, when one is pending here or
    /// in a copy sharing STORAGE_PATH.
    pub async fn http_challenge(&self, token: &str) -> Option<String> {
        match self {
            Certificates::Acme(acme) => acme.http_challenge(token).await,
            Certificates::Static(_) => None,
        }
    }

    /// When each name's current certificate expires, for /metrics: every
    /// DNS name of a static certificate, every ACME domain that has one.
    pub fn expiries(&self) -> Vec<(String, SystemTime)> {
        match self {
            Certificates::Static(cert) => {
                let loaded = cert.current();
                match not_after(&loaded.certified) {
                    Some(at) => loaded.names().iter().map(|n| (n.clone(), at)).collect(),
                    None => Vec::new(),
                }
            }
            Certificates::Acme(acme) => acme
                .current_all()
                .into_iter()
                .filter_map(|(domain, certified)| Some((domain, not_after(&certified)?)))
                .collect(),
        }
    }

    /// Whether the HTTP port may redirect this host to HTTPS (with
    /// on-demand TLS, the app may be asked).
    pub async fn covers(&self, host: &str) -> bool {
        match self {
            Certificates::Static(cert) => cert.current().covers(host),
            Certificates::Acme(acme) => acme.covers(host).await,
        }
    }
}

/// The end of a certificate's validity.
fn not_after(certified: &CertifiedKey) -> Option<SystemTime> {
    let der = certified.end_entity_cert().ok()?;
    let (_, parsed) = x509_parser::parse_x509_certificate(der).ok()?;
    let seconds = parsed.validity().not_after.timestamp();
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).ok()?))
}

/// The cryptography every TLS configuration and key of thrust's uses:
/// aws-lc-rs, whose RSA signatures cost about 0.6 of ring's (a new TLS
/// connection with an RSA 2048 certificate: 0.69 ms of CPU against 1.0).
pub(crate) fn crypto_provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::aws_lc_rs::default_provider()
}

/// TLS 1.2 and 1.3 with `crypto_provider` and the given ALPN protocols.
fn config_with(
    resolver: Arc<dyn ResolvesServerCert>,
    alpn: Vec<Vec<u8>>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let mut config = ServerConfig::builder_with_provider(Arc::new(crypto_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = alpn;
    Ok(Arc::new(config))
}

/// The TLS inside QUIC, for HTTP/3: TLS 1.3 only (QUIC has no other),
/// ALPN `h3`, the certificates the TCP listener serves. Without 0-RTT:
/// early data can be replayed, and thrust cannot tell which requests the
/// app would mind seeing twice. An ACME name whose first order is still in
/// flight fails its QUIC handshake (the resolver cannot wait there); the
/// client then stays on TCP, where the handshake waits.
pub fn quic_config(certificates: &Certificates) -> Result<Arc<ServerConfig>, rustls::Error> {
    let mut config = ServerConfig::builder_with_provider(Arc::new(crypto_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_cert_resolver(certificates.resolver());
    config.alpn_protocols = vec![b"h3".to_vec()];
    Ok(Arc::new(config))
}

/// Performs TLS handshakes for the HTTPS listener.
pub enum Handshaker {
    Static(TlsAcceptor),
    /// Reads the ClientHello first: challenges get the challenge
    /// certificate, listed names wait (bounded) for an order in flight, and
    /// unlisted names are refused without contacting the ACME server.
    Acme {
        acme: Arc<Acme>,
        main: Arc<ServerConfig>,
        challenge: Arc<ServerConfig>,
    },
}

impl Handshaker {
    /// ALPN offers h2 when enabled.
    pub fn new(certificates: &Certificates, http2: bool) -> Result<Self, rustls::Error> {
        let alpn = if http2 {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        let main = config_with(certificates.resolver(), alpn)?;
        Ok(match certificates {
            Certificates::Static(_) => Handshaker::Static(TlsAcceptor::from(main)),
            Certificates::Acme(acme) => Handshaker::Acme {
                acme: acme.clone(),
                main,
                challenge: config_with(
                    Arc::new(AcmeChallenge(acme.clone())),
                    vec![ACME_TLS_ALPN.to_vec()],
                )?,
            },
        })
    }

    pub async fn accept(&self, stream: TcpStream) -> io::Result<TlsStream<TcpStream>> {
        let (acme, main, challenge) = match self {
            Handshaker::Static(acceptor) => return acceptor.accept(stream).await,
            Handshaker::Acme {
                acme,
                main,
                challenge,
            } => (acme, main, challenge),
        };
        let start = LazyConfigAcceptor::new(Acceptor::default(), stream).await?;
        let hello = start.client_hello();
        let name = hello.server_name().map(str::to_ascii_lowercase);
        let wants_challenge = hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
        let refused = || {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "server name not in TLS_DOMAIN, nor allowed by THRUST_ON_DEMAND_TLS_ASK",
            )
        };
        let Some(name) = name else {
            return Err(refused());
        };
        if wants_challenge {
            if !acme.may_validate(&name) {
                return Err(refused());
            }
            // The order may be another copy's, its answer in the store.
            acme.fetch_alpn_challenge(&name).await;
            return start.into_stream(challenge.clone()).await;
        }
        let certified = if acme.lists(&name) {
            acme.certificate_for(&name, WAIT_FOR_ORDER).await.is_some()
        } else if acme.on_demand_certificate(&name, WAIT_FOR_ORDER).await {
            true
        } else {
            return Err(refused());
        };
        if !certified {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no certificate for {name} yet"),
            ));
        }
        start.into_stream(main.clone()).await
    }
}
