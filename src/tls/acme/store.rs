//! STORAGE_PATH: the ACME account and one certificate per domain, readable
//! by thrust's user only (directories 0700, files 0600); with it, what
//! copies sharing the directory agree on: claims (`claims/`, see
//! `file_claim`) and challenge answers (`answers/http-01/`,
//! `answers/tls-alpn-01/`).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::file_claim;
use super::storage::{Answer, Claim, Storage};

pub struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        let folder = |path: &Path| {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(path)
        };
        folder(dir)?;
        // A STORAGE_PATH thrust cannot write in (read-only, full) still
        // serves what it holds: claims and answers then fail one by one,
        // and a single copy orders without them.
        for sub in ["claims", "answers/http-01", "answers/tls-alpn-01"] {
            let _ = folder(&dir.join(sub));
        }
        Ok(FileStore { dir: dir.into() })
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
        // Written beside, then renamed: a crash never leaves half a key,
        // and a copy reading meanwhile sees the old file or the new one.
        let path = self.dir.join(name);
        let partial = self.dir.join(partial_name(name));
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

    /// Where an answer is kept; None for a key that is not a plain file
    /// name (a token comes from a request path).
    fn answer_path(kind: Answer, key: &str) -> Option<String> {
        let plain = !key.is_empty()
            && key.len() <= 255
            && !key.starts_with('.')
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
        let folder = match kind {
            Answer::Http01 => "answers/http-01",
            Answer::TlsAlpn01 => "answers/tls-alpn-01",
        };
        plain.then(|| format!("{folder}/{key}"))
    }
}

/// The name a file is written under before it is renamed into place: in
/// the same folder, hidden, and this process's own, so that copies writing
/// the same file at once never write into one partial file.
fn partial_name(name: &str) -> String {
    let (folder, file) = name.rsplit_once('/').unwrap_or(("", name));
    let hidden = format!(".{file}.partial.{}", std::process::id());
    if folder.is_empty() {
        hidden
    } else {
        format!("{folder}/{hidden}")
    }
}

impl Storage for FileStore {
    fn account(&self, directory: &str) -> Option<Vec<u8>> {
        self.read(&format!("account-{}.json", file_safe(directory)))
    }

    fn save_account(&self, directory: &str, credentials: &[u8]) -> std::io::Result<()> {
        self.write(
            &format!("account-{}.json", file_safe(directory)),
            credentials,
        )
    }

    fn certificate(&self, name: &str) -> Option<(Vec<u8>, Vec<u8>)> {
        Some((
            self.read(&format!("{name}.crt"))?,
            self.read(&format!("{name}.key"))?,
        ))
    }

    /// The key, then the chain: a copy reading between the two renames
    /// gets a chain and a key that do not match, which it refuses and
    /// reads again later (`certified` checks that they match).
    fn save_certificate(
        &self,
        name: &str,
        chain_pem: &[u8],
        key_pem: &[u8],
    ) -> std::io::Result<()> {
        self.write(&format!("{name}.key"), key_pem)?;
        self.write(&format!("{name}.crt"), chain_pem)
    }

    /// Go's autocert directory cache, as Thruster leaves it: one file
    /// named after the domain (`domain+rsa` for an RSA key), the private
    /// key and then the chain, so that switching from Thruster does not
    /// order certificates anew.
    fn thruster_certificate(&self, name: &str) -> Option<Vec<u8>> {
        self.read(name)
            .or_else(|| self.read(&format!("{name}+rsa")))
    }

    fn try_claim(&self, name: &str, holder: &str, ttl: Duration) -> std::io::Result<Claim> {
        file_claim::try_claim(&self.dir.join("claims"), name, holder, ttl)
    }

    fn renew_claim(&self, name: &str, holder: &str, ttl: Duration) -> std::io::Result<bool> {
        file_claim::renew(&self.dir.join("claims"), name, holder, ttl)
    }

    fn release_claim(&self, name: &str, holder: &str) -> std::io::Result<()> {
        file_claim::release(&self.dir.join("claims"), name, holder)
    }

    fn put_answer(&self, kind: Answer, key: &str, value: &[u8]) -> std::io::Result<()> {
        let path = Self::answer_path(kind, key)
            .ok_or_else(|| std::io::Error::other("not a plain file name"))?;
        self.write(&path, value)
    }

    fn answer(&self, kind: Answer, key: &str) -> Option<Vec<u8>> {
        self.read(&Self::answer_path(kind, key)?)
    }

    fn remove_answer(&self, kind: Answer, key: &str) -> std::io::Result<()> {
        let Some(path) = Self::answer_path(kind, key) else {
            return Ok(());
        };
        match std::fs::remove_file(self.dir.join(path)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// A directory URL as a file-name part: letters and digits kept, the rest `_`.
fn file_safe(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}
