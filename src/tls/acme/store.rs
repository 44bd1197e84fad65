//! STORAGE_PATH: the ACME account and one certificate per domain, readable
//! by thrust's user only (directory 0700, files 0600).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

#[derive(Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        Ok(Store { dir: dir.into() })
    }

    /// Whether `open` would succeed, without creating anything: the
    /// directory, or its nearest ancestor that exists, is a directory thrust
    /// may write in.
    pub fn probe(dir: &Path) -> std::io::Result<()> {
        let existing = dir
            .ancestors()
            .find(|p| p.exists())
            .unwrap_or(Path::new("."));
        if !std::fs::metadata(existing)?.is_dir() {
            return Err(std::io::Error::other(format!(
                "{} is not a directory",
                existing.display()
            )));
        }
        use nix::unistd::{access, AccessFlags};
        access(existing, AccessFlags::W_OK | AccessFlags::X_OK).map_err(|e| {
            std::io::Error::other(format!("{} is not writable: {e}", existing.display()))
        })
    }

    fn write(&self, name: &str, contents: &[u8]) -> std::io::Result<()> {
        // Written beside, then renamed: a crash never leaves half a key.
        let path = self.dir.join(name);
        let partial = self.dir.join(format!(".{name}.partial"));
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&partial)
            .and_then(|mut file| {
                file.write_all(contents)?;
                file.sync_all()
            })
            .and_then(|()| std::fs::rename(&partial, &path));
        if written.is_err() {
            // A full disk: what was written of it only takes space.
            let _ = std::fs::remove_file(&partial);
        }
        written
    }

    fn read(&self, name: &str) -> Option<Vec<u8>> {
        std::fs::read(self.dir.join(name)).ok()
    }

    /// The stored account for a directory URL.
    pub fn account(&self, directory: &str) -> Option<Vec<u8>> {
        self.read(&format!("account-{}.json", file_safe(directory)))
    }

    pub fn save_account(&self, directory: &str, credentials: &[u8]) -> std::io::Result<()> {
        self.write(
            &format!("account-{}.json", file_safe(directory)),
            credentials,
        )
    }

    /// The stored chain and key for a domain, as PEM.
    pub fn certificate(&self, domain: &str) -> Option<(Vec<u8>, Vec<u8>)> {
        Some((
            self.read(&format!("{domain}.crt"))?,
            self.read(&format!("{domain}.key"))?,
        ))
    }

    /// A certificate Thruster stored for a domain (Go's autocert directory
    /// cache: one file named after the domain, `domain+rsa` for an RSA key,
    /// holding the private key and then the chain, in PEM), so that
    /// switching from Thruster does not order certificates anew. Returned
    /// whole: the key and the chain are read from the same text.
    pub fn thruster_certificate(&self, domain: &str) -> Option<Vec<u8>> {
        self.read(domain)
            .or_else(|| self.read(&format!("{domain}+rsa")))
    }

    pub fn save_certificate(
        &self,
        domain: &str,
        chain_pem: &[u8],
        key_pem: &[u8],
    ) -> std::io::Result<()> {
        self.write(&format!("{domain}.key"), key_pem)?;
        self.write(&format!("{domain}.crt"), chain_pem)
    }
}

/// A directory URL as a file-name part: letters and digits kept, the rest `_`.
fn file_safe(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}
