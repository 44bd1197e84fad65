//! The naming rule of fingerprinted assets: a name that carries a digest
//! of the file's content (`app-4f4d5a3b.css`, Propshaft's and Sprockets'
//! `-<hex>.`, jsbundling's `.digested.`) names content that never changes.
//! With the asset prefix it decides which public files are cached for a
//! year (`public_dir`); it decides which scripts and stylesheets serve as
//! compression dictionaries (`compression::dictionary`).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Whether a file name carries a content digest, so that its content never
/// changes under that name.
pub fn fingerprinted(path: &Path) -> bool {
    let Some(name) = path.file_name().map(OsStr::as_bytes) else {
        return false;
    };
    if name.windows(10).any(|w| w == b".digested.") {
        return true;
    }
    // `-` then at least 7 hex digits, then the extension.
    name.split(|&b| b == b'-').skip(1).any(|after| {
        let digits = after.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        digits >= 7 && after.get(digits) == Some(&b'.')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_in_names_mark_immutable_files() {
        for name in [
            "application-4f4d5a3b.css",
            "app-0123456789abcdef.js",
            "app-Xy12Ab34.digested.js",
        ] {
            assert!(fingerprinted(Path::new(name)), "{name}");
        }
        for name in ["robots.txt", "my-file.css", "app-12345.css", "favicon.ico"] {
            assert!(!fingerprinted(Path::new(name)), "{name}");
        }
    }
}
