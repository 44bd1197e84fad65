//! A certificate and key from PEM files (SSL_CERT_PATH, SSL_KEY_PATH),
//! re-read when either file changes, without a restart and without touching
//! open connections (each handshake takes whatever is current).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ParsedCertificate, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// How often the files are checked for changes.
const RELOAD_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("SSL_CERT_PATH={path:?}: {problem}")]
    Cert { path: PathBuf, problem: String },
    #[error("SSL_KEY_PATH={path:?}: {problem}")]
    Key { path: PathBuf, problem: String },
}

/// Reads and checks a chain and its key.
pub fn load(cert_path: &Path, key_path: &Path) -> Result<Arc<CertifiedKey>, CertError> {
    let cert_err = |problem: String| CertError::Cert {
        path: cert_path.into(),
        problem,
    };
    let key_err = |problem: String| CertError::Key {
        path: key_path.into(),
        problem,
    };
    let cert_pem = std::fs::read(cert_path).map_err(|e| cert_err(e.to_string()))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_err(format!("not a PEM certificate chain ({e})")))?;
    if chain.is_empty() {
        return Err(cert_err("no certificate in the file".into()));
    }
    let key_pem = std::fs::read(key_path).map_err(|e| key_err(e.to_string()))?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        key_err(format!(
            "no PKCS#8, RSA or EC private key in the file ({e})"
        ))
    })?;
    let provider = rustls::crypto::ring::default_provider();
    let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|e| {
        key_err(format!(
            "does not match the certificate in SSL_CERT_PATH ({e})"
        ))
    })?;
    ParsedCertificate::try_from(
        certified
            .end_entity_cert()
            .map_err(|e| cert_err(e.to_string()))?,
    )
    .map_err(|e| cert_err(format!("unreadable certificate ({e})")))?;
    Ok(Arc::new(certified))
}

/// Whether a certificate is valid for `host` (its DNS names, wildcards included).
pub fn covers(certified: &CertifiedKey, host: &str) -> bool {
    let Ok(name) = ServerName::try_from(host.to_string()) else {
        return false;
    };
    certified
        .end_entity_cert()
        .ok()
        .and_then(|der| ParsedCertificate::try_from(der).ok())
        .is_some_and(|cert| rustls::client::verify_server_name(&cert, &name).is_ok())
}

/// The current certificate, swapped in place when its files change.
pub struct StaticCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl StaticCert {
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Arc<Self>, CertError> {
        Ok(Arc::new(StaticCert {
            cert_path: cert_path.into(),
            key_path: key_path.into(),
            current: RwLock::new(load(cert_path, key_path)?),
        }))
    }

    pub fn current(&self) -> Arc<CertifiedKey> {
        match self.current.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Polls the files and swaps in a new certificate when they change and
    /// load cleanly; a broken pair (half-written renewal) keeps the old one.
    pub async fn watch(self: Arc<Self>) {
        let stamp = |this: &Self| (modified(&this.cert_path), modified(&this.key_path));
        let mut seen = stamp(&self);
        loop {
            tokio::time::sleep(RELOAD_EVERY).await;
            let now = stamp(&self);
            if now == seen {
                continue;
            }
            match load(&self.cert_path, &self.key_path) {
                Ok(fresh) => {
                    seen = now;
                    if let Ok(mut current) = self.current.write() {
                        *current = fresh;
                    }
                    tracing::info!(cert = %self.cert_path.display(), "Certificate reloaded");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Certificate files changed but do not load; keeping the current certificate")
                }
            }
        }
    }
}

impl std::fmt::Debug for StaticCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticCert")
            .field("cert_path", &self.cert_path)
            .finish()
    }
}

impl ResolvesServerCert for StaticCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}
