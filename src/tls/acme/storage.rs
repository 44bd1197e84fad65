//! What ACME keeps, and what copies of thrust sharing it agree on, behind
//! one interface: the account, one certificate per name, a claim on a name
//! while one copy orders it, and the challenge answers of that order, which
//! the CA may ask any copy for.
//!
//! `store::FileStore` keeps it in STORAGE_PATH, which copies share as a
//! volume (a Kubernetes ReadWriteMany volume, NFS, EFS). A networked store
//! (Redis, the app's PostgreSQL) implements the same calls: values by key,
//! a claim that is taken only when free or expired and that its holder
//! renews (`SET key holder NX PX ttl` in Redis, an `INSERT ... ON CONFLICT`
//! on an expiry column in PostgreSQL), and removal by key.
//!
//! Every call may block on the network or the disk: the ACME code calls
//! them on tokio's blocking pool.

use std::io;
use std::time::Duration;

/// A claim on a name, as `try_claim` found it.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// This copy holds it until `release` or the time to live runs out.
    Held,
    /// Another copy holds it, and renewed it within its time to live.
    Busy,
}

/// The challenge an answer is for (RFC 8555 §8.3, RFC 8737).
#[derive(Clone, Copy, Debug)]
pub enum Answer {
    /// HTTP-01, by token: the key authorization.
    Http01,
    /// TLS-ALPN-01, by name: the key authorization's SHA-256.
    TlsAlpn01,
}

pub trait Storage: Send + Sync {
    /// The stored account for an ACME directory URL.
    fn account(&self, directory: &str) -> Option<Vec<u8>>;
    fn save_account(&self, directory: &str, credentials: &[u8]) -> io::Result<()>;

    /// The stored chain and key for a name, as PEM.
    fn certificate(&self, name: &str) -> Option<(Vec<u8>, Vec<u8>)>;
    /// Stores a chain and key so that a reader sees the old pair or the
    /// new one, never a chain with another's key.
    fn save_certificate(&self, name: &str, chain_pem: &[u8], key_pem: &[u8]) -> io::Result<()>;
    /// What Thruster stored for a name (its key and chain in one text).
    fn thruster_certificate(&self, name: &str) -> Option<Vec<u8>>;

    /// Takes the claim on `name` for `holder` when no other holder's claim
    /// is alive; a claim lives for `ttl` after it was taken or renewed.
    fn try_claim(&self, name: &str, holder: &str, ttl: Duration) -> io::Result<Claim>;
    /// Renews `holder`'s claim on `name` for another `ttl`; false when it is
    /// no longer `holder`'s.
    fn renew_claim(&self, name: &str, holder: &str, ttl: Duration) -> io::Result<bool>;
    /// Gives up `holder`'s claim on `name` (another holder's stays).
    fn release_claim(&self, name: &str, holder: &str) -> io::Result<()>;

    /// Publishes a challenge answer for every copy.
    fn put_answer(&self, kind: Answer, key: &str, value: &[u8]) -> io::Result<()>;
    fn answer(&self, kind: Answer, key: &str) -> Option<Vec<u8>>;
    fn remove_answer(&self, kind: Answer, key: &str) -> io::Result<()>;
}
