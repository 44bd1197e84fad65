//! A certificate and key from PEM files (SSL_CERT_PATH, SSL_KEY_PATH),
//! re-read when either file changes, without a restart and without touching
//! open connections (each handshake takes whatever is current).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ParsedCertificate, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use x509_parser::extensions::GeneralName;

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
    let certified = CertifiedKey::from_der(chain, key, &super::crypto_provider()).map_err(|e| {
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

/// A loaded certificate and the names it is valid for, read once: the HTTP
/// port asks for every redirect.
pub struct Loaded {
    pub certified: Arc<CertifiedKey>,
    names: Vec<String>,
    addresses: Vec<IpAddr>,
}

impl Loaded {
    fn new(certified: Arc<CertifiedKey>) -> Result<Self, String> {
        let der = certified.end_entity_cert().map_err(|e| e.to_string())?;
        let (_, parsed) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
        let (mut names, mut addresses) = (Vec::new(), Vec::new());
        if let Ok(Some(alt)) = parsed.subject_alternative_name() {
            for name in &alt.value.general_names {
                match name {
                    GeneralName::DNSName(dns) => names.push(dns.to_ascii_lowercase()),
                    GeneralName::IPAddress(bytes) => addresses.extend(ip_address(bytes)),
                    _ => {}
                }
            }
        }
        Ok(Loaded {
            certified,
            names,
            addresses,
        })
    }

    /// The DNS names the certificate is valid for (wildcards as `*.parent`).
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Whether the certificate is valid for `host`: a DNS name of its own,
    /// a wildcard standing for exactly one leftmost label, or an address.
    pub fn covers(&self, host: &str) -> bool {
        if let Ok(address) = host.parse::<IpAddr>() {
            return self.addresses.contains(&address);
        }
        let host = host.trim_end_matches('.');
        self.names.iter().any(|name| match name.strip_prefix("*.") {
            Some(parent) => host.split_once('.').is_some_and(|(label, rest)| {
                !label.is_empty() && rest.eq_ignore_ascii_case(parent)
            }),
            None => name.eq_ignore_ascii_case(host),
        })
    }
}

fn ip_address(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// The current certificate, swapped in place when its files change.
pub struct StaticCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<Loaded>>,
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl StaticCert {
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Arc<Self>, CertError> {
        Ok(Arc::new(StaticCert {
            cert_path: cert_path.into(),
            key_path: key_path.into(),
            current: RwLock::new(load_with_names(cert_path, key_path)?),
        }))
    }

    pub fn current(&self) -> Arc<Loaded> {
        match self.current.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Polls the files and swaps in a new certificate when they change and
    /// load cleanly; a broken pair (half-written renewal) keeps the old one,
    /// and is reported once, not at every poll.
    pub async fn watch(self: Arc<Self>) {
        let stamp = |this: &Self| (modified(&this.cert_path), modified(&this.key_path));
        let mut stamps = Stamps::new(stamp(&self));
        loop {
            tokio::time::sleep(RELOAD_EVERY).await;
            let now = stamp(&self);
            if !stamps.worth_loading(now) {
                continue;
            }
            let (cert_path, key_path) = (self.cert_path.clone(), self.key_path.clone());
            let loaded =
                tokio::task::spawn_blocking(move || load_with_names(&cert_path, &key_path)).await;
            match loaded {
                Ok(Ok(fresh)) => {
                    stamps.loaded(now);
                    if let Ok(mut current) = self.current.write() {
                        *current = fresh;
                    }
                    tracing::info!(cert = %self.cert_path.display(), "Certificate reloaded");
                }
                Ok(Err(e)) => {
                    stamps.broken(now);
                    tracing::warn!(error = %e, "Certificate files changed but do not load; keeping the current certificate");
                }
                Err(e) => tracing::warn!(error = %e, "Certificate reload did not finish"),
            }
        }
    }
}

/// The two files' modification times.
type Stamp = (Option<SystemTime>, Option<SystemTime>);

/// What the watch knows of the files: the times of the pair last loaded,
/// and of a broken pair already reported.
struct Stamps {
    seen: Stamp,
    broken: Option<Stamp>,
}

impl Stamps {
    fn new(seen: Stamp) -> Self {
        Stamps { seen, broken: None }
    }

    /// Files changed since the last load, other than the broken pair
    /// already reported, are loaded.
    fn worth_loading(&self, now: Stamp) -> bool {
        now != self.seen && Some(now) != self.broken
    }

    fn loaded(&mut self, now: Stamp) {
        self.seen = now;
        self.broken = None;
    }

    fn broken(&mut self, now: Stamp) {
        self.broken = Some(now);
    }
}

/// `load`, and the names the certificate is valid for.
fn load_with_names(cert_path: &Path, key_path: &Path) -> Result<Arc<Loaded>, CertError> {
    let certified = load(cert_path, key_path)?;
    Loaded::new(certified)
        .map(Arc::new)
        .map_err(|problem| CertError::Cert {
            path: cert_path.into(),
            problem: format!("unreadable certificate ({problem})"),
        })
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
        Some(self.current().certified.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_pair_is_tried_and_reported_once_until_the_files_change_again() {
        let at = |seconds| Some(SystemTime::UNIX_EPOCH + Duration::from_secs(seconds));
        let mut stamps = Stamps::new((at(1), at(1)));
        assert!(!stamps.worth_loading((at(1), at(1))), "unchanged");
        // A renewal half-written: tried once, then left alone.
        assert!(stamps.worth_loading((at(1), at(2))));
        stamps.broken((at(1), at(2)));
        assert!(!stamps.worth_loading((at(1), at(2))));
        // Written again: tried again, and loaded.
        assert!(stamps.worth_loading((at(3), at(3))));
        stamps.loaded((at(3), at(3)));
        assert!(!stamps.worth_loading((at(3), at(3))));
    }
}
