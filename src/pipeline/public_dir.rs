//! THRUST_PUBLIC_DIR: files below the app's public directory answered by
//! thrust, as Rails' ActionDispatch::Static would, without a request to the
//! app. Only an existing regular file whose real path is below the
//! directory is served; anything else — a missing file, a directory, a
//! path with dot segments or an encoded slash, a symlink that leads out —
//! goes to the app unchanged. Fingerprinted names (`app-3f2a9c1b.css`,
//! `app-3f2a9c1b.digested.js`) are immutable: a year of caching, and thrust
//! stores them; other files are sent with their Last-Modified only.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use http::{header, HeaderValue, Method, Request, Response, StatusCode};

use super::asset_name;

/// What a year of immutable caching is sent as.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// The file below `root` (a real path) that `req` names, if thrust answers it.
pub fn file_for<B>(root: &Path, req: &Request<B>) -> Option<PathBuf> {
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return None;
    }
    let relative = relative_path(req.uri().path().as_bytes())?;
    let named = root.join(relative);
    // One stat settles most requests (app routes name no file); only a file
    // has its path resolved, a component at a time.
    if !std::fs::metadata(&named).is_ok_and(|m| m.is_file()) {
        return None;
    }
    let real = std::fs::canonicalize(named).ok()?;
    // Symlinks are followed: the real file must still be below the root.
    (real.starts_with(root) && real.is_file()).then_some(real)
}

/// The request path as a path below the root: decoded, with no dot
/// segment, encoded slash or backslash, or NUL.
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
        if segment == b"." || segment == b".." {
            return None;
        }
        path.push(OsStr::from_bytes(segment));
    }
    (!path.as_os_str().is_empty()).then_some(path)
}

/// The response head thrust answers a public file with, before the file
/// describes itself (type, length, validators).
pub fn head(path: &Path) -> http::response::Parts {
    let mut response = Response::new(());
    *response.status_mut() = StatusCode::OK;
    if asset_name::fingerprinted(path) {
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    }
    response.into_parts().0
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
        ] {
            assert_eq!(
                relative_path(refused),
                None,
                "{}",
                String::from_utf8_lossy(refused)
            );
        }
    }
}
