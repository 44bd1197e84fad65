//! Which file a response header names: an X-Sendfile path as it is, an
//! X-Accel-Redirect URI decoded and mapped back to the file system as nginx
//! does; dot segments resolved, and nothing outside the mapped root or
//! THRUST_SEND_FILE_ROOTS.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::config::{Config, SendFileHeader};

/// Why a named file is not sent.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not an absolute path (the app's mistake: 500).
    Relative,
    /// An X-Accel-Redirect URI that is not under THRUST_ACCEL_MAPPING's URI
    /// once decoded and its dot segments resolved, or that holds a NUL.
    OutsideMapping,
    /// A path outside every THRUST_SEND_FILE_ROOTS directory.
    OutsideRoots,
}

impl Refusal {
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Relative => "a relative path; it must be absolute",
            Refusal::OutsideMapping => "a URI outside THRUST_ACCEL_MAPPING",
            Refusal::OutsideRoots => "a path outside THRUST_SEND_FILE_ROOTS",
        }
    }
}

/// The file a response header's `value` names.
pub fn resolve(value: &[u8], config: &Config) -> Result<PathBuf, Refusal> {
    let path = match config.send_file_header {
        SendFileHeader::XSendfile => {
            let path = Path::new(OsStr::from_bytes(value));
            if !path.is_absolute() {
                return Err(Refusal::Relative);
            }
            normalized(path)
        }
        SendFileHeader::XAccelRedirect => accel_path(value, config)?,
    };
    if !config.send_file_roots.is_empty()
        && !config
            .send_file_roots
            .iter()
            .any(|root| path.starts_with(root))
    {
        return Err(Refusal::OutsideRoots);
    }
    Ok(path)
}

/// An X-Accel-Redirect URI as nginx reads it: the query dropped, the path
/// percent-decoded (Rack::Sendfile escapes it, `?` as `%3F`), dot segments
/// resolved, then mapped from the mapping's URI to its root.
fn accel_path(value: &[u8], config: &Config) -> Result<PathBuf, Refusal> {
    let encoded = value.split(|&b| b == b'?').next().unwrap_or_default();
    let decoded = decode(encoded).ok_or(Refusal::OutsideMapping)?;
    let uri_path = Path::new(OsStr::from_bytes(&decoded));
    if !uri_path.is_absolute() {
        return Err(Refusal::Relative);
    }
    let uri_path = normalized(uri_path);
    let Some((root, uri)) = &config.accel_mapping else {
        // Without a mapping the URI is the file's path.
        return Ok(uri_path);
    };
    let rest = uri_path
        .strip_prefix(uri)
        .map_err(|_| Refusal::OutsideMapping)?;
    Ok(normalized(&Path::new(root).join(rest)))
}

/// Percent-decoding (a `%` not followed by two hex digits stays as it
/// is); None for an encoded NUL, which no file name holds.
fn decode(encoded: &[u8]) -> Option<Vec<u8>> {
    let bytes: Vec<u8> = percent_encoding::percent_decode(encoded).collect();
    (!bytes.contains(&0)).then_some(bytes)
}

/// `.` and `..` resolved without the file system (`/a/../..` is `/`), and
/// repeated slashes collapsed.
fn normalized(path: &Path) -> PathBuf {
    // Never longer than the path with a leading slash: sized once.
    let mut out = PathBuf::with_capacity(path.as_os_str().len() + 1);
    out.push("/");
    for component in path.components() {
        match component {
            Component::Normal(name) => out.push(name),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Config {
        let vars: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_vars(&vars).unwrap()
    }

    fn accel() -> Config {
        config(&[
            ("THRUST_SEND_FILE_HEADER", "X-Accel-Redirect"),
            ("THRUST_ACCEL_MAPPING", "/srv/app/storage/=/files/"),
        ])
    }

    #[test]
    fn accel_uris_are_decoded_as_rack_encodes_them() {
        let c = accel();
        for (uri, file) in [
            ("/files/with%20space.txt", "/srv/app/storage/with space.txt"),
            ("/files/q%3Fmark.txt", "/srv/app/storage/q?mark.txt"),
            ("/files/na%C3%AFve.txt", "/srv/app/storage/naïve.txt"),
            ("/files/100%25.txt", "/srv/app/storage/100%.txt"),
            ("/files/a/./b/../c.txt?x=1", "/srv/app/storage/a/c.txt"),
            ("/files//double.txt", "/srv/app/storage/double.txt"),
            ("/files/bad%zz", "/srv/app/storage/bad%zz"),
        ] {
            assert_eq!(
                resolve(uri.as_bytes(), &c),
                Ok(PathBuf::from(file)),
                "{uri}"
            );
        }
    }

    #[test]
    fn accel_uris_never_leave_the_mapped_root() {
        let c = accel();
        for uri in [
            "/files/../../etc/passwd",
            "/files/%2E%2E/%2e%2e/etc/passwd",
            "/files/..%2F..%2Fetc/passwd",
            "/etc/passwd",
            "/filesystem/x",
            "/files/nul%00.txt",
        ] {
            assert_eq!(
                resolve(uri.as_bytes(), &c),
                Err(Refusal::OutsideMapping),
                "{uri}"
            );
        }
        assert_eq!(resolve(b"files/x", &c), Err(Refusal::Relative));
    }

    #[test]
    fn send_file_roots_bound_every_path() {
        let c = config(&[(
            "THRUST_SEND_FILE_ROOTS",
            "/srv/app/public, /srv/app/storage",
        )]);
        assert_eq!(
            resolve(b"/srv/app/public/a.css", &c),
            Ok(PathBuf::from("/srv/app/public/a.css"))
        );
        for path in [
            "/srv/app/public/../config/master.key",
            "/srv/app/publicity/x",
            "/etc/passwd",
        ] {
            assert_eq!(
                resolve(path.as_bytes(), &c),
                Err(Refusal::OutsideRoots),
                "{path}"
            );
        }
        assert_eq!(resolve(b"relative", &c), Err(Refusal::Relative));
        // Without roots, any absolute path the app names.
        assert_eq!(
            resolve(b"/etc/hostname", &config(&[])),
            Ok(PathBuf::from("/etc/hostname"))
        );
    }
}
