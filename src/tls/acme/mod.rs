//! Automatic certificates (ACME, RFC 8555) through instant-acme: an account
//! kept in STORAGE_PATH, one certificate per TLS_DOMAIN name, ordered at
//! start-up in the background, answered by TLS-ALPN-01 (in the TLS resolver)
//! or HTTP-01 (on the HTTP port), reused across restarts and renewed when a
//! third of its lifetime remains, with backoff on failure.
//!
//! Copies of thrust sharing STORAGE_PATH (`storage`) order each name one at
//! a time: the copy holding the name's claim orders, publishes its
//! challenge answers in the store (the CA may ask any copy) and stores the
//! certificate; the others wait for it there, and every copy looks in the
//! store for certificates another copy renewed.

mod ask;
mod client;
mod file_claim;
mod on_demand;
pub mod storage;
pub mod store;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, ExternalAccountKey,
    Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use tokio::sync::watch;

use crate::config::{AcmeChallenge, AcmeSettings, Worker};
use storage::{Answer, Claim, Storage};
use store::FileStore;

/// Never order again for a domain sooner than this after a success, even
/// when the clock says a new certificate is already due (a clock far off).
const MIN_RENEWAL_GAP: Duration = Duration::from_secs(10);
/// First retry after a failed order; doubles up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_secs(30);
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// How an order's state is polled: from 50 ms, doubling (instant-acme's
/// default starts at 250 ms, which with a CA that validates at once is
/// half a second of a new on-demand name's first handshake), within 30 s;
/// a CA's Retry-After is honoured over it.
const POLL: RetryPolicy = RetryPolicy::new().initial_delay(Duration::from_millis(50));
/// The claim under which one of the copies sharing STORAGE_PATH makes the
/// account (no domain name has an underscore).
const ACCOUNT_CLAIM: &str = "_account";
/// How often a write STORAGE_PATH refused is tried again.
const STORE_RETRY: Duration = Duration::from_secs(5);
/// How often a copy waiting on another's order looks in the store again.
const SHARED_POLL: Duration = Duration::from_secs(2);
/// How often every copy looks in the store for a certificate another copy
/// renewed.
const STORE_CHECK: Duration = Duration::from_secs(30);
/// How long a challenge answer another copy published, once read, is kept.
const SHARED_ANSWER_KEPT: Duration = Duration::from_secs(5);
/// Store reads for challenge answers at a time: a flood of made-up tokens
/// or handshakes waits on none of them, it gets no answer.
const ANSWER_READS: usize = 4;

/// When a TLS-ALPN-01 answer was read from the store, and the challenge
/// certificate made from it (None: the store had none).
type SharedAnswer = (Instant, Option<Arc<CertifiedKey>>);

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
    store: Arc<dyn Storage>,
    /// This copy's name in the store's claims.
    holder: String,
    /// TLS-ALPN-01 answers other copies published, by name.
    shared_alpn: Mutex<HashMap<String, SharedAnswer>>,
    answer_reads: Arc<tokio::sync::Semaphore>,
    /// THRUST_ON_DEMAND_TLS_ASK: the question to the app, and the bounds on
    /// what its yes may cost.
    on_demand: Option<(ask::Ask, on_demand::Budget)>,
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
    /// `worker` is where the app listens, for an ask URL that is a path.
    pub fn new(settings: AcmeSettings, worker: Worker) -> std::io::Result<Arc<Self>> {
        let store = Arc::new(FileStore::open(&settings.storage)?);
        let on_demand = settings.on_demand.clone().map(|on_demand| {
            (
                ask::Ask::new(on_demand.ask, worker),
                on_demand::Budget::new(on_demand.per_minute, on_demand.most_names),
            )
        });
        Ok(Arc::new(Acme {
            on_demand,
            settings,
            certificates: RwLock::default(),
            arrived: watch::Sender::new(0),
            http_tokens: Mutex::default(),
            alpn_certificates: RwLock::default(),
            account: tokio::sync::Mutex::new(None),
            store,
            holder: holder_name(),
            shared_alpn: Mutex::default(),
            answer_reads: Arc::new(tokio::sync::Semaphore::new(ANSWER_READS)),
        }))
    }

    /// Whether `host` is one of TLS_DOMAIN's names.
    pub fn lists(&self, host: &str) -> bool {
        self.settings.domains.iter().any(|d| d == host)
    }

    /// Whether the HTTP port may redirect `host` to HTTPS: a listed name,
    /// one with a certificate, or one the app allows (on-demand TLS).
    pub async fn covers(&self, host: &str) -> bool {
        if self.lists(host) || self.current(host).is_some() {
            return true;
        }
        match &self.on_demand {
            Some((ask, _)) => on_demand::acceptable(host) && ask.allows(host).await,
            None => false,
        }
    }

    /// Whether a TLS-ALPN-01 handshake for `name` may be answered: a listed
    /// name, or with on-demand TLS any name it would ask about (the order
    /// may be another copy's).
    pub fn may_validate(&self, name: &str) -> bool {
        self.lists(name) || (self.on_demand.is_some() && on_demand::acceptable(name))
    }

    /// On-demand TLS: whether `name` has a certificate, once the app was
    /// asked (a yes kept for a while) and, for a name new to this copy, its
    /// stored certificate loaded or, within the order budget, one ordered
    /// (the handshake waits up to `limit` for it).
    pub async fn on_demand_certificate(self: &Arc<Self>, name: &str, limit: Duration) -> bool {
        let Some((ask, budget)) = &self.on_demand else {
            return false;
        };
        if !on_demand::acceptable(name) {
            return false;
        }
        if self.current(name).is_some() {
            return true;
        }
        if !ask.allows(name).await {
            return false;
        }
        if !budget.keeps(name) {
            let stored = self.stored_not_due(name, None).await;
            match budget.keep(name, stored.is_none()) {
                // This handshake took the name: it starts keeping it
                // current (the others racing for it wait below).
                Ok(true) => {
                    let acme = self.clone();
                    let domain = name.to_string();
                    tokio::spawn(async move { acme.maintain(domain, stored).await });
                }
                Ok(false) => {}
                Err(why) => {
                    tracing::warn!(
                        name,
                        reason = why,
                        "On-demand TLS: no certificate ordered for an allowed name"
                    );
                    return false;
                }
            }
        }
        self.certificate_for(name, limit).await.is_some()
    }

    /// Whether `domain` came by on-demand TLS, and the app still allows it
    /// (asked again before each renewal).
    async fn still_allowed(&self, domain: &str) -> bool {
        match &self.on_demand {
            Some((ask, budget)) if !self.lists(domain) => {
                let allowed = ask.allows(domain).await;
                if !allowed {
                    budget.forget(domain);
                    if let Ok(mut certificates) = self.certificates.write() {
                        certificates.remove(domain);
                    }
                    tracing::info!(
                        domain,
                        "On-demand TLS: the app no longer allows this name; not renewed"
                    );
                }
                allowed
            }
            _ => true,
        }
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

    /// The TLS-ALPN-01 certificate for `domain`: this copy's order's, or
    /// one made from the answer another copy published in the store (kept
    /// a few seconds: the CA validates from several places).
    pub fn alpn_challenge(&self, domain: &str) -> Option<Arc<CertifiedKey>> {
        if let Some(own) = self.alpn_certificates.read().ok()?.get(domain).cloned() {
            return Some(own);
        }
        let shared = self.shared_alpn.lock().ok()?;
        let (read_at, cert) = shared.get(domain)?;
        (read_at.elapsed() < SHARED_ANSWER_KEPT)
            .then(|| cert.clone())
            .flatten()
    }

    /// Looks in the store for a TLS-ALPN-01 answer another copy published
    /// for `domain`, unless this copy has one: called before a challenge
    /// handshake is answered (`alpn_challenge`).
    pub async fn fetch_alpn_challenge(self: &Arc<Self>, domain: &str) {
        let own = self
            .alpn_certificates
            .read()
            .is_ok_and(|own| own.contains_key(domain));
        let fresh = self.shared_alpn.lock().is_ok_and(|shared| {
            shared
                .get(domain)
                .is_some_and(|(at, _)| at.elapsed() < SHARED_ANSWER_KEPT)
        });
        if own || fresh {
            return;
        }
        let Some(digest) = self.read_answer(Answer::TlsAlpn01, domain).await else {
            return;
        };
        let cert = alpn_certificate(domain, &digest)
            .map_err(|e| tracing::warn!(domain, error = %e, "TLS-ALPN-01 answer from the store unusable"))
            .ok();
        if let Ok(mut shared) = self.shared_alpn.lock() {
            shared.retain(|_, (at, _)| at.elapsed() < SHARED_ANSWER_KEPT);
            shared.insert(domain.to_string(), (Instant::now(), cert));
        }
    }

    /// The HTTP-01 answer for `token`: this copy's order's, or one another
    /// copy published in the store.
    pub async fn http_challenge(self: &Arc<Self>, token: &str) -> Option<String> {
        if let Some(own) = self.http_tokens.lock().ok()?.get(token).cloned() {
            return Some(own);
        }
        let answer = self.read_answer(Answer::Http01, token).await?;
        String::from_utf8(answer).ok()
    }

    /// An answer from the store, read on the blocking pool, at most
    /// `ANSWER_READS` at a time (None past that).
    async fn read_answer(self: &Arc<Self>, kind: Answer, key: &str) -> Option<Vec<u8>> {
        let permit = self.answer_reads.clone().try_acquire_owned().ok()?;
        let (store, key) = (self.store.clone(), key.to_string());
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            store.answer(kind, &key)
        })
        .await
        .ok()
        .flatten()
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
        let mut not_before = Instant::now();
        loop {
            // Until it is due, every STORE_CHECK a look at the store: a copy
            // sharing it may have renewed it.
            while let Some((from, until)) = validity {
                let due = self
                    .renew_at(&domain, from, until)
                    .duration_since(SystemTime::now())
                    .unwrap_or_default()
                    .max(not_before.saturating_duration_since(Instant::now()));
                if due.is_zero() {
                    break;
                }
                tokio::time::sleep(due.min(STORE_CHECK)).await;
                if let Some(newer) = self.stored_newer(&domain, Some(until)).await {
                    tracing::info!(domain = %domain, "Certificate renewed by another copy sharing STORAGE_PATH, loaded");
                    validity = Some(newer);
                }
            }
            let renewing = validity.is_some();
            if renewing && !self.still_allowed(&domain).await {
                return;
            }
            match self.renew_shared(&domain, validity).await {
                Ok((obtained, by_us)) => {
                    validity = Some(obtained);
                    backoff = FIRST_BACKOFF;
                    not_before = Instant::now() + MIN_RENEWAL_GAP;
                    match (by_us, renewing) {
                        (false, _) => {
                            tracing::info!(domain = %domain, "Certificate loaded from storage, ordered by another copy sharing it")
                        }
                        (true, true) => tracing::info!(domain = %domain, "Certificate renewed"),
                        (true, false) => tracing::info!(domain = %domain, "Certificate obtained"),
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

    /// A certificate for `domain` that is not due: one another copy stored
    /// (false) or one this copy ordered while holding the name's claim
    /// (true). Waits while another copy holds the claim.
    async fn renew_shared(
        self: &Arc<Self>,
        domain: &str,
        validity: Option<(SystemTime, SystemTime)>,
    ) -> Result<((SystemTime, SystemTime), bool), String> {
        let than = validity.map(|(_, until)| until);
        let mut said_waiting = false;
        loop {
            if let Some(stored) = self.stored_not_due(domain, than).await {
                return Ok((stored, false));
            }
            match self.claim(domain).await {
                Ok(Claim::Held) => {
                    // One stored just before the claim was taken.
                    let result = match self.stored_not_due(domain, than).await {
                        Some(stored) => Ok((stored, false)),
                        None => self.obtain_claimed(domain).await.map(|v| (v, true)),
                    };
                    self.release(domain).await;
                    return result;
                }
                Ok(Claim::Busy) => {
                    if !said_waiting {
                        tracing::info!(domain = %domain, "Another copy sharing STORAGE_PATH is ordering this certificate; waiting for it");
                        said_waiting = true;
                    }
                    tokio::time::sleep(SHARED_POLL).await;
                }
                // A store that takes no claim (read-only, full) does not keep
                // a single copy from its certificate.
                Err(e) => {
                    tracing::warn!(domain = %domain, error = %e, "Could not claim the order in STORAGE_PATH, ordering without a claim");
                    return self.obtain(domain).await.map(|v| (v, true));
                }
            }
        }
    }

    /// `obtain`, with the claim renewed every third of its time to live
    /// while the order runs.
    async fn obtain_claimed(
        self: &Arc<Self>,
        domain: &str,
    ) -> Result<(SystemTime, SystemTime), String> {
        let keeper = {
            let (acme, domain) = (self.clone(), domain.to_string());
            tokio::spawn(async move {
                let every = acme.settings.claim_ttl / 3;
                loop {
                    tokio::time::sleep(every).await;
                    let (store, name, holder, ttl) = (
                        acme.store.clone(),
                        domain.clone(),
                        acme.holder.clone(),
                        acme.settings.claim_ttl,
                    );
                    let kept =
                        tokio::task::spawn_blocking(move || store.renew_claim(&name, &holder, ttl))
                            .await;
                    if !matches!(kept, Ok(Ok(true))) {
                        tracing::warn!(domain = %domain, "The claim on this order was lost (STORAGE_PATH unwritable, or renewed too late); another copy may order it too");
                    }
                }
            })
        };
        let result = self.obtain(domain).await;
        keeper.abort();
        result
    }

    async fn claim(&self, domain: &str) -> std::io::Result<Claim> {
        let (store, name, holder, ttl) = (
            self.store.clone(),
            domain.to_string(),
            self.holder.clone(),
            self.settings.claim_ttl,
        );
        tokio::task::spawn_blocking(move || store.try_claim(&name, &holder, ttl))
            .await
            .map_err(std::io::Error::other)?
    }

    async fn release(&self, domain: &str) {
        let (store, name, holder) = (self.store.clone(), domain.to_string(), self.holder.clone());
        let released =
            tokio::task::spawn_blocking(move || store.release_claim(&name, &holder)).await;
        if let Ok(Err(e)) = released {
            tracing::warn!(domain = %domain, error = %e, "Could not release the claim in STORAGE_PATH; it expires on its own");
        }
    }

    /// The stored certificate for `domain`, installed, when it ends after
    /// `than` (any, for None) and is not due for renewal.
    async fn stored_not_due(
        &self,
        domain: &str,
        than: Option<SystemTime>,
    ) -> Option<(SystemTime, SystemTime)> {
        let (from, until) = self.stored_newer(domain, than).await?;
        (self.renew_at(domain, from, until) > SystemTime::now()).then_some((from, until))
    }

    /// The stored certificate for `domain`, installed, when it ends after
    /// `than` (any, for None). A chain and a key that do not match (another
    /// copy writing them) are left for the next look.
    async fn stored_newer(
        &self,
        domain: &str,
        than: Option<SystemTime>,
    ) -> Option<(SystemTime, SystemTime)> {
        let (store, name) = (self.store.clone(), domain.to_string());
        let (chain, key) = tokio::task::spawn_blocking(move || store.certificate(&name))
            .await
            .ok()??;
        let (cert, from, until) = certified(&chain, &key).ok()?;
        if than.is_some_and(|than| until <= than) {
            return None;
        }
        self.install(domain, cert);
        Some((from, until))
    }

    async fn account(&self) -> Result<Account, String> {
        let mut slot = self.account.lock().await;
        if let Some(account) = slot.as_ref() {
            return Ok(account.clone());
        }
        let account = loop {
            // Copies sharing STORAGE_PATH make one account: one makes it
            // under a claim while the others wait for it to be stored.
            let claim = self.claim(ACCOUNT_CLAIM).await;
            if let Some(credentials) = self.stored_credentials().await {
                if matches!(claim, Ok(Claim::Held)) {
                    self.release(ACCOUNT_CLAIM).await;
                }
                break client::http_client()
                    .map(Account::builder_with_http)?
                    .from_credentials(credentials)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            match claim {
                Ok(Claim::Busy) => tokio::time::sleep(SHARED_POLL).await,
                held_or_unclaimable => {
                    let created = self.create_account().await;
                    if matches!(held_or_unclaimable, Ok(Claim::Held)) {
                        self.release(ACCOUNT_CLAIM).await;
                    }
                    break created?;
                }
            }
        };
        *slot = Some(account.clone());
        Ok(account)
    }

    /// The account stored for the directory, if any.
    async fn stored_credentials(&self) -> Option<AccountCredentials> {
        let (store, directory) = (self.store.clone(), self.settings.directory.clone());
        let json = tokio::task::spawn_blocking(move || store.account(&directory))
            .await
            .ok()??;
        serde_json::from_slice(&json).ok()
    }

    /// A new account at the directory, stored.
    async fn create_account(&self) -> Result<Account, String> {
        let directory = &self.settings.directory;
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
        let (account, credentials) = client::http_client()
            .map(Account::builder_with_http)?
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
        Ok(account)
    }

    /// One order, start to finish; returns the new certificate's validity.
    async fn obtain(&self, domain: &str) -> Result<(SystemTime, SystemTime), String> {
        tracing::info!(domain = %domain, renewing = self.current(domain).is_some(), "Certificate ordered");
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
            alpn: false,
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
                    let digest = key_authorization.digest().as_ref().to_vec();
                    let cert = alpn_certificate(domain, &digest)?;
                    published.alpn_certificate(cert, digest).await;
                }
                _ => {
                    published
                        .http_token(
                            challenge.token.clone(),
                            key_authorization.as_str().to_string(),
                        )
                        .await
                }
            }
            challenge.set_ready().await.map_err(|e| e.to_string())?;
        }
        let status = order.poll_ready(&POLL).await.map_err(|e| e.to_string());
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
            .poll_certificate(&POLL)
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
async fn persist<W>(store: &Arc<dyn Storage>, what: &'static str, name: String, write: W)
where
    W: Fn(&dyn Storage) -> std::io::Result<()> + Send + Sync + 'static,
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

async fn write_once<W>(store: &Arc<dyn Storage>, write: &Arc<W>) -> std::io::Result<()>
where
    W: Fn(&dyn Storage) -> std::io::Result<()> + Send + Sync + 'static,
{
    let (store, write) = (store.clone(), write.clone());
    tokio::task::spawn_blocking(move || write(store.as_ref()))
        .await
        .map_err(std::io::Error::other)?
}

/// The challenge answers one order has published, in this copy and in the
/// store for the others. They are withdrawn when the order's validation
/// ends, however it ends (an error, a dropped task), and only they are.
struct Published<'a> {
    acme: &'a Acme,
    domain: &'a str,
    tokens: Vec<String>,
    alpn: bool,
}

impl Published<'_> {
    async fn http_token(&mut self, token: String, key_authorization: String) {
        self.share(
            Answer::Http01,
            &token,
            key_authorization.as_bytes().to_vec(),
        )
        .await;
        if let Ok(mut map) = self.acme.http_tokens.lock() {
            map.insert(token.clone(), key_authorization);
        }
        self.tokens.push(token);
    }

    async fn alpn_certificate(&mut self, cert: Arc<CertifiedKey>, digest: Vec<u8>) {
        self.share(Answer::TlsAlpn01, self.domain, digest).await;
        if let Ok(mut map) = self.acme.alpn_certificates.write() {
            map.insert(self.domain.to_string(), cert);
        }
        self.alpn = true;
    }

    /// Into the store, for copies the CA's validation may reach instead;
    /// a store that refuses it leaves the answer to this copy alone.
    async fn share(&self, kind: Answer, key: &str, value: Vec<u8>) {
        let (store, key_owned) = (self.acme.store.clone(), key.to_string());
        let shared =
            tokio::task::spawn_blocking(move || store.put_answer(kind, &key_owned, &value)).await;
        if !matches!(shared, Ok(Ok(()))) {
            tracing::warn!(domain = %self.domain, "Challenge answer not written to STORAGE_PATH: only this copy can answer it");
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
        // Out of the store in the background: a drop cannot wait.
        let mut shared: Vec<(Answer, String)> = self
            .tokens
            .iter()
            .map(|token| (Answer::Http01, token.clone()))
            .collect();
        if self.alpn {
            shared.push((Answer::TlsAlpn01, self.domain.to_string()));
        }
        if !shared.is_empty() {
            let store = self.acme.store.clone();
            tokio::task::spawn_blocking(move || {
                for (kind, key) in shared {
                    let _ = store.remove_answer(kind, &key);
                }
            });
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

/// This copy's name in claims: its host name (a container's is its id or
/// pod name), process id and a random part, so a restarted copy on the same
/// host is never taken for the one before it.
fn holder_name() -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default();
    let host: String = host
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(48)
        .collect();
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &random[..12])
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

    fn settings(storage: &std::path::Path) -> AcmeSettings {
        AcmeSettings {
            domains: vec!["a.test".into(), "b.test".into()],
            directory: "https://127.0.0.1:1/dir".into(),
            email: None,
            eab: None,
            storage: storage.to_path_buf(),
            challenge: AcmeChallenge::Http01,
            renew_within: None,
            claim_ttl: Duration::from_secs(60),
            on_demand: None,
        }
    }

    /// Whether `token` has no answer, in this copy or the store, within a
    /// second (the store's copy is removed in the background).
    async fn withdrawn(acme: &Arc<Acme>, token: &str) -> bool {
        for _ in 0..100 {
            if acme.http_challenge(token).await.is_none() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    #[tokio::test]
    async fn an_order_withdraws_its_own_answers_and_no_others() {
        let storage = tempfile::tempdir().unwrap();
        let acme = Acme::new(settings(storage.path()), Worker::Port(1)).unwrap();
        // Another copy sharing STORAGE_PATH.
        let other = Acme::new(settings(storage.path()), Worker::Port(1)).unwrap();
        let mut a = Published {
            acme: &acme,
            domain: "a.test",
            tokens: Vec::new(),
            alpn: false,
        };
        a.http_token("token-a".into(), "answer-a".into()).await;
        let mut b = Published {
            acme: &acme,
            domain: "b.test",
            tokens: Vec::new(),
            alpn: false,
        };
        b.http_token("token-b".into(), "answer-b".into()).await;
        assert_eq!(
            other.http_challenge("token-a").await.as_deref(),
            Some("answer-a")
        );
        // a.test's order ends while b.test's validation is still to come.
        drop(a);
        assert!(withdrawn(&acme, "token-a").await);
        assert!(withdrawn(&other, "token-a").await);
        assert_eq!(
            acme.http_challenge("token-b").await.as_deref(),
            Some("answer-b")
        );
        assert_eq!(
            other.http_challenge("token-b").await.as_deref(),
            Some("answer-b")
        );
        drop(b);
        assert!(withdrawn(&other, "token-b").await);
        // A token that is not a file name never reaches the store.
        assert_eq!(other.http_challenge("../account.json").await, None);
    }

    #[tokio::test]
    async fn a_tls_alpn_answer_published_by_one_copy_is_served_by_another() {
        let storage = tempfile::tempdir().unwrap();
        let acme = Acme::new(settings(storage.path()), Worker::Port(1)).unwrap();
        let other = Acme::new(settings(storage.path()), Worker::Port(1)).unwrap();
        let digest = [7u8; 32].to_vec();
        let mut published = Published {
            acme: &acme,
            domain: "a.test",
            tokens: Vec::new(),
            alpn: false,
        };
        let cert = alpn_certificate("a.test", &digest).unwrap();
        published.alpn_certificate(cert, digest).await;
        assert!(other.alpn_challenge("a.test").is_none());
        other.fetch_alpn_challenge("a.test").await;
        assert!(other.alpn_challenge("a.test").is_some());
        assert!(other.alpn_challenge("b.test").is_none());
        drop(published);
    }
}
