//! A file the app named, made into the answer: the file's metadata in the
//! app's headers, a precompressed sibling when the client accepts one, then
//! sent as `preconditions` decided.
//!
//! File system calls run on the connection's worker thread, as nginx's
//! workers make them: files thrust sends are local and mostly in the page
//! cache, and a hop to a blocking thread for every call (tokio::fs) cost
//! more than the read itself.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{response, Response, StatusCode};

use crate::config::{Config, Encoding};
use crate::conn::zero_copy::Slots;
use crate::http::accept_encoding::negotiate;
use crate::http::body::{self, Body};
use crate::http::headers::{set, vary_on_accept_encoding, weaken_etag};
use crate::pipeline::compression::{choose, mark_encoded, CompressionRequest};
use crate::pipeline::preconditions::{Conditions, Outcome};
use crate::pipeline::representation::{self, Content};

use super::beneath;

/// Where a file to send is: a path the app named, or a path below
/// THRUST_PUBLIC_DIR, opened without leaving that directory (`beneath`).
pub struct FileSource {
    /// The file's path, for its name (Content-Type, logs, the versions
    /// beside it).
    path: PathBuf,
    /// For a public file: the directory and the path below it.
    below: Option<(PathBuf, PathBuf)>,
    /// Opened already (a public file is opened to know it is one).
    opened: Option<NamedFile>,
}

impl FileSource {
    /// A file the app named by its absolute path.
    pub fn named(path: PathBuf) -> Self {
        FileSource {
            path,
            below: None,
            opened: None,
        }
    }

    /// The regular file `relative` names below `root`, if there is one.
    pub fn below(root: &Path, relative: PathBuf) -> Option<Self> {
        let file = beneath::open(root, &relative).ok()?;
        let opened = NamedFile::of(file)?;
        Some(FileSource {
            path: root.join(&relative),
            below: Some((root.to_path_buf(), relative)),
            opened: Some(opened),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file, open (None: missing, unreadable or not a regular file).
    pub fn open(&mut self) -> Option<NamedFile> {
        if let Some(opened) = self.opened.take() {
            return Some(opened);
        }
        match &self.below {
            Some((root, relative)) => NamedFile::of(beneath::open(root, relative).ok()?),
            None => NamedFile::open(&self.path),
        }
    }

    /// Its precompressed sibling for `encoding` (`app.css.br`), if one is
    /// there, opened the same way.
    fn open_sibling(&self, encoding: Encoding) -> Option<NamedFile> {
        match &self.below {
            Some((root, relative)) => {
                NamedFile::of(beneath::open(root, &sibling(relative, encoding)).ok()?)
            }
            None => NamedFile::open(&sibling(&self.path, encoding)),
        }
    }
}

/// An open regular file with what its answer needs to say about it.
pub struct NamedFile {
    file: File,
    size: u64,
    modified: Option<SystemTime>,
}

impl NamedFile {
    /// None when the file is missing, unreadable or not a regular file.
    /// Opened non-blocking: opening a FIFO for reading would otherwise wait
    /// for a writer, holding the worker thread (and every connection on it).
    /// O_NONBLOCK means nothing to regular files' reads.
    pub fn open(path: &Path) -> Option<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(path)
            .ok()?;
        Self::of(file)
    }

    /// `file`, if it is a regular file.
    fn of(file: File) -> Option<Self> {
        let meta = file.metadata().ok().filter(|m| m.is_file())?;
        Some(NamedFile {
            file,
            size: meta.len(),
            modified: meta.modified().ok(),
        })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The whole file, when it holds at most `limit` bytes.
    pub fn read_all(self, limit: u64) -> Option<Bytes> {
        let mut bytes = Vec::with_capacity(self.size.min(limit) as usize);
        // One byte more than allowed tells a file that grew past the limit.
        (&self.file)
            .take(limit.saturating_add(1))
            .read_to_end(&mut bytes)
            .ok()?;
        (bytes.len() as u64 <= limit).then(|| Bytes::from(bytes))
    }

    /// Turns the app's headers into the file's: framing from the file,
    /// Content-Type from the name when the app set none, Last-Modified from
    /// the file when the app set none. The app's own Content-Encoding (it
    /// named a precompressed file) is kept, and with it the Vary it implies.
    pub fn describe(&self, path: &Path, headers: &mut HeaderMap) {
        for stale in [
            header::CONTENT_LENGTH,
            header::TRANSFER_ENCODING,
            header::CONTENT_RANGE,
        ] {
            headers.remove(stale);
        }
        let encoded_by_app = headers.contains_key(header::CONTENT_ENCODING);
        if encoded_by_app {
            vary_on_accept_encoding(headers);
        }
        if !headers.contains_key(header::CONTENT_TYPE) {
            // app.css.gz sent as gzip is a stylesheet, not a gzip archive.
            let encoding_extension = path.extension().is_some_and(|ext| {
                [Encoding::Gzip, Encoding::Brotli, Encoding::Zstd]
                    .iter()
                    .any(|e| ext == e.extension())
            });
            let named = if encoded_by_app && encoding_extension {
                path.with_extension("")
            } else {
                path.to_path_buf()
            };
            let mime = mime_guess::from_path(named).first_or_octet_stream();
            set(headers, header::CONTENT_TYPE, mime.as_ref());
        }
        if let (false, Some(modified)) =
            (headers.contains_key(header::LAST_MODIFIED), self.modified)
        {
            set(
                headers,
                header::LAST_MODIFIED,
                httpdate::fmt_http_date(modified),
            );
        }
        headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    }
}

fn sibling(path: &Path, encoding: Encoding) -> PathBuf {
    let extension = encoding.extension();
    // Sized once: each of the two pushes would otherwise grow the name
    // anew, three siblings a request.
    let mut name = std::ffi::OsString::with_capacity(path.as_os_str().len() + 1 + extension.len());
    name.push(path.as_os_str());
    name.push(".");
    name.push(extension);
    PathBuf::from(name)
}

/// The 404 for a file the app named that cannot be read.
pub fn not_found(path: &Path) -> Response<Body> {
    tracing::warn!(path = %path.display(), "X-Sendfile names a file that is missing, unreadable or not a regular file, answering 404");
    not_found_response()
}

/// The 404 thrust answers in place of a file it does not send.
pub fn not_found_response() -> Response<Body> {
    let mut response = Response::new(body::full("file not found\n"));
    *response.status_mut() = StatusCode::NOT_FOUND;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Answers a request with the file at `path`, keeping the app's status and
/// headers in `parts`. A whole answer goes out as the precompressed sibling
/// (`path.br`, `.zst`, `.gz`) the client prefers among the configured
/// encodings (when compression is on), if one exists and the app did not
/// encode the file itself. The body is sent as stand-ins (`zero_copy`) when
/// the connection has `file_slots` and the answer leaves uncompressed.
pub fn serve(
    config: &Config,
    mut source: FileSource,
    conditions: &Conditions,
    compression: &CompressionRequest,
    mut parts: response::Parts,
    file_slots: Option<&Arc<Slots>>,
) -> Response<Body> {
    let offered = if config.compression {
        config.encodings.as_slice()
    } else {
        &[]
    };
    let Some(named) = source.open() else {
        return not_found(source.path());
    };
    named.describe(source.path(), &mut parts.headers);
    // Each sibling opened once: what was found is what is sent.
    let mut siblings: Vec<(Encoding, NamedFile)> =
        if parts.headers.contains_key(header::CONTENT_ENCODING) {
            Vec::new()
        } else {
            offered
                .iter()
                .filter_map(|&e| source.open_sibling(e).map(|file| (e, file)))
                .collect()
        };
    if !siblings.is_empty() {
        vary_on_accept_encoding(&mut parts.headers);
    }
    // Preconditions and Range apply to the file itself: a range resumes
    // the identity bytes.
    let outcome = conditions.evaluate(parts.status, &parts.headers, named.size);
    let (mut file, mut size) = (named.file, named.size);
    let encodings: Vec<Encoding> = siblings.iter().map(|(e, _)| *e).collect();
    let preferred = negotiate(compression.accept_encoding(), &encodings);
    match (outcome, preferred) {
        (Outcome::Whole, Some(encoding)) => {
            if let Some(at) = siblings.iter().position(|(e, _)| *e == encoding) {
                let (_, sibling) = siblings.swap_remove(at);
                mark_encoded(&mut parts.headers, encoding);
                (file, size) = (sibling.file, sibling.size);
            }
        }
        // A 304 carries the validator the 200 would have carried.
        (Outcome::NotModified, Some(_)) => weaken_etag(&mut parts.headers),
        _ => {}
    }
    // Stand-ins only where nothing reads the body on its way out: not when
    // it may be compressed (the final headers only make that less likely).
    let file_slots = file_slots
        .filter(|_| choose(config, compression, parts.status, &parts.headers).is_none())
        .cloned();
    representation::respond(
        outcome,
        conditions.method(),
        parts,
        Content::File(file, file_slots),
        size,
    )
}
