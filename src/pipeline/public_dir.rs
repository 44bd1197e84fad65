//! THRUST_PUBLIC_DIR: files below the app's public directory answered by
//! thrust, as Rails' ActionDispatch::Static would, without a request to the
//! app. Only an existing regular file below the directory is served, opened
//! without leaving it (`sendfile::beneath`: a symlink that leads out, even
//! one swapped in while the request runs, is never followed); anything
//! else — a missing file, a directory, a dotfile (`.env`, `.git/config`), a
//! path with dot segments or an encoded slash — goes to the app unchanged.
//! A public file is the same whatever the Host or query, so it is cached by
//! its path alone (`Target::key`): made-up Hosts or queries cannot make
//! every request a miss. Fingerprinted names (`app-3f2a9c1b.css`) under
//! THRUST_ASSET_PREFIX are immutable: a year of caching, and thrust stores
//! them; other files are sent with their Last-Modified only.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use http::{header, HeaderValue, Method, Request, Response, StatusCode};

use super::asset_name;
use super::sendfile::FileSource;

/// What a year of immutable caching is sent as.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// A request that names a path below the public directory, before the file
/// system is asked whether a file is there.
pub struct Target {
    relative: PathBuf,
    /// The decoded path, `/`-led (None when not UTF-8: such a file is
    /// served but not cached).
    key: Option<String>,
    immutable: bool,
}

impl Target {
    /// None when `req` cannot name a public file: not GET or HEAD, or a
    /// path that could leave the directory or names a dotfile.
    pub fn of<B>(req: &Request<B>, asset_prefix: &str) -> Option<Self> {
        if !matches!(*req.method(), Method::GET | Method::HEAD) {
            return None;
        }
        let relative = relative_path(req.uri().path().as_bytes())?;
        let key = relative.to_str().map(|path| format!("/{path}"));
        let immutable = asset_name::fingerprinted(&relative)
            && key.as_deref().is_some_and(|k| k.starts_with(asset_prefix));
        Some(Target {
            relative,
            key,
            immutable,
        })
    }

    /// What the cache keys the file on: its path, not the Host or query.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// The file below `root`, opened, with the head it is answered with
    /// (before the file describes itself: type, length, validators); None
    /// when there is no regular file there.
    pub fn open(self, root: &Path) -> Option<(FileSource, http::response::Parts)> {
        let source = FileSource::below(root, self.relative)?;
        let mut response = Response::new(());
        *response.status_mut() = StatusCode::OK;
        if self.immutable {
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
        }
        Some((source, response.into_parts().0))
    }
}

/// The request path as a path below the root: decoded, with no dot
/// segment, dotfile, encoded slash or backslash, or NUL.
fn relative_path(encoded: &[u8]) -> Option<PathBuf> {
    let lowered = encoded.to_ascii_lowercase();
    if lowered.windows(3).any(|w| w == b"%2f" || w == b"%5c") {
        return None;
    }
    let decoded: Vec<u8> = percent_encoding::percent_decode(encoded).collect();
    if decoded.contains(&0) || decoded.contains(&b'\\') {
        return None;
    }
    let mut path = PathBuf::new();
    for segment in decoded.split(|&b| b == b'/').filter(|s| !s.is_empty()) {
        // `.`, `..`, and every dotfile or dot directory (`.env`, `.git/`).
        if segment.starts_with(b".") {
            return None;
        }
        path.push(OsStr::from_bytes(segment));
    }
    (!path.as_os_str().is_empty()).then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_paths_that_could_leave_the_directory_go_to_the_app() {
        assert_eq!(
            relative_path(b"/assets/app.css"),
            Some(PathBuf::from("assets/app.css"))
        );
        assert_eq!(
            relative_path(b"/caf%C3%A9.txt"),
            Some(PathBuf::from("café.txt"))
        );
        for refused in [
            &b"/"[..],
            b"/../etc/passwd",
            b"/assets/./app.css",
            b"/%2e%2e/etc/passwd",
            b"/assets%2Fapp.css",
            b"/assets%5capp.css",
            b"/a\\b",
            b"/a%00b",
            b"/.env",
            b"/.git/config",
            b"/assets/.hidden.css",
            b"/%2eenv",
        ] {
            assert_eq!(
                relative_path(refused),
                None,
                "{}",
                String::from_utf8_lossy(refused)
            );
        }
    }

    #[test]
    fn fingerprinted_names_are_immutable_only_under_the_asset_prefix() {
        let target = |path: &str| {
            let req = Request::get(path).body(()).unwrap();
            Target::of(&req, "/assets/").unwrap()
        };
        assert!(target("/assets/app-3f2a9c1b.css").immutable);
        assert!(target("/assets/js/app-3f2a9c1b.js").immutable);
        assert!(!target("/report-20240131.pdf").immutable);
        assert!(!target("/files/report-20240131.pdf").immutable);
        assert!(!target("/assets-old/app-3f2a9c1b.css").immutable);
        assert!(!target("/assets/app.css").immutable);
        // One key for every spelling of the path, whatever the query.
        assert_eq!(
            target("/assets//app.css?v=1").key(),
            Some("/assets/app.css")
        );
        assert_eq!(target("/assets/%61pp.css").key(), Some("/assets/app.css"));
        let post = Request::post("/assets/app.css").body(()).unwrap();
        assert!(Target::of(&post, "/assets/").is_none());
    }
}
