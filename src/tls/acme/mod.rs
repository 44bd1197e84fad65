//! Automatic certificates (ACME, RFC 8555) through instant-acme: an account
//! kept in STORAGE_PATH, one certificate per TLS_DOMAIN name, ordered at
//! start-up in the background, answered by TLS-ALPN-01 (in the TLS resolver)
//! or HTTP-01 (on the HTTP port), reused across restarts and renewed when a
//! third of its lifetime remains, with backoff on failure.

mod client;
pub mod store;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, ExternalAccountKey,
    Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use tokio::sync::watch;

use crate::config::{AcmeChallenge, AcmeSettings};
use store::Store;

/// Never order again for a domain sooner than this after a success, even
/// when the clock says a new certificate is already due (a clock far off).
const MIN_RENEWAL_GAP: Duration = Duration::from_secs(10);
/// First retry after a failed order; doubles up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_secs(30);
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// How often a write STORAGE_PATH refused is tried again.
const STORE_RETRY: Duration = Duration::from_secs(5);

pub struct Acme {
    settings: AcmeSettings,
    /// Current certificate per domain.
    certificates: RwLock<HashMap<String, Arc<CertifiedKey>>>,
    /// Bumped whenever a certificate arrives, for handshakes waiting on one.
    arrived: watch::Sender<u64>,
    /// HTTP-01: token → key authorization.
    http_tokens: Mutex<HashMap<String, String>>,
    /// TLS-ALPN-01: domain → the challenge certificate.
    alpn_certificates: RwLock<HashMap<String, Arc<CertifiedKey>>>,
    account: tokio::sync::Mutex<Option<Account>>,
    store: Store,
}

/// A chain and key in PEM, ready for rustls, with the chain's end of validity.
pub(crate) fn certified(
    chain_pem: &[u8],
    key_pem: &[u8],
) -> Result<(Arc<CertifiedKey>, SystemTime, SystemTime), String> {
    let chain = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let leaf = chain.first().ok_or("empty certificate chain")?;
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf).map_err(|e| e.to_string())?;
    let at = |t: x509_parser::time::ASN1Time| {
        SystemTime::UNIX_EPOCH + Duration::from_secs(t.timestamp().max(0) as u64)
    };
    let (from, until) = (
        at(parsed.validity().not_before),
        at(parsed.validity().not_after),
    );
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| e.to_string())?;
    let certified = CertifiedKey::from_der(chain, key, &crate::tls::crypto_provider())
        .map_err(|e| e.to_string())?;
    Ok((Arc::new(certified), from, until))
}

impl Acme {
    pub fn new(settings: AcmeSettings) -> std::io::Result<Arc<Self>> {
        let store = Store::open(&settings.storage)?;
        Ok(Arc::new(Acme {
            settings,
            certificates: RwLock::default(),
            arrived: watch::Sender::new(0),
            http_tokens: Mutex::default(),
            alpn_certificates: RwLock::default(),
            account: tokio::sync::Mutex::new(None),
            store,
        }))
    }

    pub fn covers(&self, host: &str) -> bool {
        self.settings.domains.iter().any(|d| d == host)
    }

    /// The certificate for `domain`, waiting up to `limit` while its order is
    /// in flight.
    pub async fn certificate_for(
        &self,
        domain: &str,
        limit: Duration,
    ) -> Option<Arc<CertifiedKey>> {
        let mut arrived = self.arrived.subscribe();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(found) = self.current(domain) {
                return Some(found);
            }
            if tokio::time::timeout_at(deadline, arrived.changed())
                .await
                .is_err()
            {
                return None;
            }
        }
    }

    pub fn current(&self, domain: &str) -> Option<Arc<CertifiedKey>> {
        self.certificates.read().ok()?.get(domain).cloned()
    }

    /// Every domain's current certificate.
    pub fn current_all(&self) -> Vec<(String, Arc<CertifiedKey>)> {
        self.certificates
            .read()
            .map(|all| all.iter().map(|(d, c)| (d.clone(), c.clone())).collect())
            .unwrap_or_default()
    }

    pub fn alpn_challenge(&self, domain: &str) -> Option<Arc<CertifiedKey>> {
        self.alpn_certificates.read().ok()?.get(domain).cloned()
    }

    pub fn http_challenge(&self, token: &str) -> Option<String> {
        self.http_tokens.lock().ok()?.get(token).cloned()
    }

    /// Loads stored certificates and starts keeping every domain's current.
    pub fn start(self: &Arc<Self>) {
        for domain in self.settings.domains.clone() {
            // thrust's own files first, then what Thruster left there.
            let stored = self
                .store
                .certificate(&domain)
                .map(|(chain, key)| (chain, key, "thrust"))
                .or_else(|| {
                    let both = self.store.thruster_certificate(&domain)?;
                    Some((both.clone(), both, "Thruster"))
                });
            let expires = stored.and_then(|(chain, key, stored_by)| match certified(&chain, &key) {
                Ok((cert, from, until)) => {
                    self.install(&domain, cert);
                    tracing::info!(domain = %domain, stored_by, "Certificate loaded from storage");
                    Some((from, until))
                }
                Err(e) => {
                    tracing::warn!(domain = %domain, stored_by, error = %e, "Stored certificate unusable, ordering a new one");
                    None
                }
            });
            let acme = self.clone();
            tokio::spawn(async move { acme.maintain(domain, expires).await });
        }
    }

    fn install(&self, domain: &str, cert: Arc<CertifiedKey>) {
        if let Ok(mut certificates) = self.certificates.write() {
            certificates.insert(domain.to_string(), cert);
        }
        self.arrived.send_modify(|n| *n += 1);
    }

    /// When a certificate valid `from`..`until` is due for renewal: a third
    /// of its lifetime before it ends, or THRUST_ACME_RENEW_WITHIN before.
    /// A setting that would renew before a third of the lifetime has been
    /// used is clamped to that, with a warning: a longer setting would order
    /// again at once, forever (Let's Encrypt allows 5 duplicates a week).
    fn renew_at(&self, domain: &str, from: SystemTime, until: SystemTime) -> SystemTime {
        let lifetime = until.duration_since(from).unwrap_or_default();
        let longest = lifetime - lifetime / 3;
        let ahead = match self.settings.renew_within {
            Some(within) if within > longest => {
                tracing::warn!(domain = %domain, renew_within_s = within.as_secs(), lifetime_s = lifetime.as_secs(), renewing_s_before_expiry = longest.as_secs(), "THRUST_ACME_RENEW_WITHIN leaves less than a third of the certificate's lifetime to use; clamped");
                longest
            }
            Some(within) => within,
            None => lifetime / 3,
        };
        until.checked_sub(ahead).unwrap_or(SystemTime::UNIX_EPOCH)
    }

    async fn maintain(
        self: Arc<Self>,
        domain: String,
        mut validity: Option<(SystemTime, SystemTime)>,
    ) {
        let mut backoff = FIRST_BACKOFF;
        // No gap before the first renewal of a certificate found in storage.
        let mut gap = Duration::ZERO;
        loop {
            if let Some((from, until)) = validity {
                let wait = self
                    .renew_at(&domain, from, until)
                    .duration_since(SystemTime::now())
                    .unwrap_or_default();
                tokio::time::sleep(wait.max(gap)).await;
            }
            let renewing = validity.is_some();
            tracing::info!(domain = %domain, renewing, "Certificate ordered");
            match self.obtain(&domain).await {
                Ok(obtained) => {
                    validity = Some(obtained);
                    backoff = FIRST_BACKOFF;
                    gap = MIN_RENEWAL_GAP;
                    if renewing {
                        tracing::info!(domain = %domain, "Certificate renewed");
                    } else {
                        tracing::info!(domain = %domain, "Certificate obtained");
                    }
                }
                Err(e) => {
                    tracing::error!(domain = %domain, error = %e, retry_in_s = backoff.as_secs(), "Certificate failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    async fn account(&self) -> Result<Account, String> {
        let mut slot = self.account.lock().await;
        if let Some(account) = slot.as_ref() {
            return Ok(account.clone());
        }
        let directory = &self.settings.directory;
        let builder = || client::http_client().map(Account::builder_with_http);
        let account = match self
            .store
            .account(directory)
            .and_then(|json| serde_json::from_slice::<AccountCredentials>(&json).ok())
        {
            Some(credentials) => builder()?
                .from_credentials(credentials)
                .await
                .map_err(|e| e.to_string())?,
            None => {
                let contact = self
                    .settings
                    .email
                    .as_ref()
                    .map(|email| format!("mailto:{email}"));
                let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
                let eab = match &self.settings.eab {
                    Some((kid, key)) => Some(ExternalAccountKey::new(
                        kid.clone(),
                        &decode_base64url(key)?,
                    )),
                    None => None,
                };
                let new = NewAccount {
                    contact: &contacts,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                };
                let (account, credentials) = builder()?
                    .create(&new, directory.clone(), eab.as_ref())
                    .await
                    .map_err(|e| e.to_string())?;
                let json = serde_json::to_vec(&credentials).map_err(|e| e.to_string())?;
                tracing::info!(directory = %directory, "ACME account created");
                let directory_url = directory.clone();
                persist(&self.store, "account", directory.clone(), move |store| {
                    store.save_account(&directory_url, &json)
                })
                .await;
                account
            }
        };
        *slot = Some(account.clone());
        Ok(account)
    }

    /// One order, start to finish; returns the new certificate's validity.
    async fn obtain(&self, domain: &str) -> Result<(SystemTime, SystemTime), String> {
        let account = self.account().await?;
        let identifiers = [Identifier::Dns(domain.to_string())];
        let mut order = account
            .new_order(&NewOrder::new(&identifiers))
            .await
            .map_err(|e| e.to_string())?;
        let kind = match self.settings.challenge {
            AcmeChallenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
            AcmeChallenge::Http01 => ChallengeType::Http01,
        };
        // Answers published for this order only: orders for the other
        // domains run at the same time with answers of their own.
        let mut published = Published {
            acme: self,
            domain,
            tokens: Vec::new(),
        };
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = authorization.map_err(|e| e.to_string())?;
            match authorization.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => return Err(format!("authorization is {other:?}")),
            }
            let mut challenge = authorization
                .challenge(kind.clone())
                .ok_or(format!("the ACME server offers no {kind:?} challenge"))?;
            let key_authorization = challenge.key_authorization();
            match kind {
                ChallengeType::TlsAlpn01 => {
                    let cert = alpn_certificate(domain, key_authorization.digest().as_ref())?;
                    published.alpn_certificate(cert);
                }
                _ => published.http_token(
                    challenge.token.clone(),
                    key_authorization.as_str().to_string(),
                ),
            }
            challenge.set_ready().await.map_err(|e| e.to_string())?;
        }
        let status = order
            .poll_ready(&RetryPolicy::default())
            .await
            .map_err(|e| e.to_string());
        drop(published);
        if status? != OrderStatus::Ready {
            return Err("the order did not become ready (challenge failed)".into());
        }
        let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
        let mut params =
            rcgen::CertificateParams::new(vec![domain.to_string()]).map_err(|e| e.to_string())?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        let csr = params.serialize_request(&key).map_err(|e| e.to_string())?;
        order
            .finalize_csr(csr.der())
            .await
            .map_err(|e| e.to_string())?;
        let chain = order
            .poll_certificate(&RetryPolicy::default())
            .await
            .map_err(|e| e.to_string())?;
        let key_pem = key.serialize_pem();
        let (cert, from, until) = certified(chain.as_bytes(), key_pem.as_bytes())?;
        let name = domain.to_string();
        persist(
            &self.store,
            "certificate",
            domain.to_string(),
            move |store| store.save_certificate(&name, chain.as_bytes(), key_pem.as_bytes()),
        )
        .await;
        self.install(domain, cert);
        Ok((from, until))
    }
}

/// Writes to STORAGE_PATH on the blocking pool (writes end with an fsync, and
/// the runtime's threads also accept connections). A failed write (a full or
/// read-only disk) loses nothing the CA gave: the caller uses it from memory,
/// the failure is logged, and the write is tried again in the background every
/// `STORE_RETRY` until it lands. Until then a restart orders anew.
async fn persist<W>(store: &Store, what: &'static str, name: String, write: W)
where
    W: Fn(&Store) -> std::io::Result<()> + Send + Sync + 'static,
{
    let write = Arc::new(write);
    let Err(e) = write_once(store, &write).await else {
        return;
    };
    tracing::error!(what, name = %name, error = %e, retry_in_s = STORE_RETRY.as_secs(), "Not stored in STORAGE_PATH, kept in memory");
    let store = store.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(STORE_RETRY).await;
            if write_once(&store, &write).await.is_ok() {
                tracing::info!(what, name = %name, "Stored in STORAGE_PATH");
                return;
            }
        }
    });
}

async fn write_once<W>(store: &Store, write: &Arc<W>) -> std::io::Result<()>
where
    W: Fn(&Store) -> std::io::Result<()> + Send + Sync + 'static,
{
    let (store, write) = (store.clone(), write.clone());
    tokio::task::spawn_blocking(move || write(&store))
        .await
        .map_err(std::io::Error::other)?
}

/// The challenge answers one order has published. They are withdrawn when
/// the order's validation ends, however it ends (an error, a dropped task),
/// and only they are.
struct Published<'a> {
    acme: &'a Acme,
    domain: &'a str,
    tokens: Vec<String>,
}

impl Published<'_> {
    fn http_token(&mut self, token: String, key_authorization: String) {
        if let Ok(mut map) = self.acme.http_tokens.lock() {
            map.insert(token.clone(), key_authorization);
        }
        self.tokens.push(token);
    }

    fn alpn_certificate(&mut self, cert: Arc<CertifiedKey>) {
        if let Ok(mut map) = self.acme.alpn_certificates.write() {
            map.insert(self.domain.to_string(), cert);
        }
    }
}

impl Drop for Published<'_> {
    fn drop(&mut self) {
        if let Ok(mut map) = self.acme.alpn_certificates.write() {
            map.remove(self.domain);
        }
        if let Ok(mut map) = self.acme.http_tokens.lock() {
            for token in &self.tokens {
                map.remove(token);
            }
        }
    }
}

/// The self-signed certificate that answers a TLS-ALPN-01 challenge
/// (RFC 8737): the domain, and the key authorization's digest in the
/// acmeIdentifier extension.
fn alpn_certificate(domain: &str, digest: &[u8]) -> Result<Arc<CertifiedKey>, String> {
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params =
        rcgen::CertificateParams::new(vec![domain.to_string()]).map_err(|e| e.to_string())?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let key_der = PrivateKeyDer::Pkcs8(key.serialize_der().into());
    // Built without `from_der`'s consistency check: that parses the
    // certificate with webpki, which rejects the critical acmeIdentifier
    // extension this certificate exists to carry.
    let signing_key = crate::tls::crypto_provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(CertifiedKey::new(
        vec![cert.der().clone()],
        signing_key,
    )))
}

fn decode_base64url(text: &str) -> Result<Vec<u8>, String> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|e| format!("EAB_HMAC_KEY is not base64url: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AcmeChallenge;

    #[test]
    fn an_order_withdraws_its_own_answers_and_no_others() {
        let storage = tempfile::tempdir().unwrap();
        let acme = Acme::new(AcmeSettings {
            domains: vec!["a.test".into(), "b.test".into()],
            directory: "https://127.0.0.1:1/dir".into(),
            email: None,
            eab: None,
            storage: storage.path().to_path_buf(),
            challenge: AcmeChallenge::Http01,
            renew_within: None,
        })
        .unwrap();
        let mut a = Published {
            acme: &acme,
            domain: "a.test",
            tokens: Vec::new(),
        };
        a.http_token("token-a".into(), "answer-a".into());
        let mut b = Published {
            acme: &acme,
            domain: "b.test",
            tokens: Vec::new(),
        };
        b.http_token("token-b".into(), "answer-b".into());
        // a.test's order ends while b.test's validation is still to come.
        drop(a);
        assert_eq!(acme.http_challenge("token-a"), None);
        assert_eq!(acme.http_challenge("token-b").as_deref(), Some("answer-b"));
        drop(b);
        assert_eq!(acme.http_challenge("token-b"), None);
    }
}
