//! Serving a file from disk as the answer to a request: precompressed
//! siblings, conditional requests, a single Range, HEAD, and streaming in
//! bounded chunks so memory does not grow with the file.
//!
//! File system calls run on the connection's worker thread, as nginx's
//! workers make them: files thrust sends are local and mostly in the page
//! cache, and a hop to a blocking thread for every call (tokio::fs) cost
//! more than the read itself.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{response, Method, Response, StatusCode};
use http_body::Frame;

use crate::body::{self, Body};
use crate::config::Encoding;
use crate::protocol::accept_encoding::negotiate;
use crate::protocol::conditional;
use crate::protocol::headers::{set, text, vary_on_accept_encoding, weaken_etag};
use crate::protocol::range::{self, RangeRequest};

/// Read size for file bodies: large enough for few syscalls, small enough
/// that memory stays flat however big the file.
const CHUNK: u64 = 256 * 1024;

/// The parts of a request that decide how a file is answered, taken before
/// the request is forwarded.
#[derive(Clone, Debug)]
pub struct FileRequest {
    pub method: Method,
    pub range: Option<String>,
    pub if_range: Option<String>,
    pub if_none_match: Option<String>,
    pub if_modified_since: Option<String>,
    pub accept_encoding: Option<String>,
}

fn owned(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    text(headers, name).map(str::to_string)
}

impl FileRequest {
    pub fn of(method: &Method, headers: &HeaderMap) -> Self {
        FileRequest {
            method: method.clone(),
            range: owned(headers, header::RANGE),
            if_range: owned(headers, header::IF_RANGE),
            if_none_match: owned(headers, header::IF_NONE_MATCH),
            if_modified_since: owned(headers, header::IF_MODIFIED_SINCE),
            accept_encoding: owned(headers, header::ACCEPT_ENCODING),
        }
    }
}

fn sibling(path: &Path, encoding: Encoding) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".");
    name.push(encoding.extension());
    PathBuf::from(name)
}

/// The precompressed sibling to send, if the client accepts one that exists.
/// Returns it with whether any sibling exists (the answer then varies).
fn choose_sibling(
    path: &Path,
    request: &FileRequest,
    offered: &[Encoding],
) -> (Option<(Encoding, PathBuf)>, bool) {
    let mut existing = Vec::new();
    for &encoding in offered {
        if std::fs::metadata(sibling(path, encoding)).is_ok_and(|m| m.is_file()) {
            existing.push(encoding);
        }
    }
    let varies = !existing.is_empty();
    // A Range applies to the identity bytes the client can resume.
    if request.range.is_some() {
        return (None, varies);
    }
    let chosen =
        negotiate(request.accept_encoding.as_deref(), &existing).map(|e| (e, sibling(path, e)));
    (chosen, varies)
}

fn empty_response(mut parts: response::Parts, status: StatusCode) -> Response<Body> {
    parts.status = status;
    Response::from_parts(parts, body::empty())
}

/// Answers `request` with the file at `path`, keeping the app's status and
/// headers in `parts`. A missing or unreadable file is a 404.
pub fn serve(
    path: &Path,
    request: &FileRequest,
    offered: &[Encoding],
    mut parts: response::Parts,
) -> Response<Body> {
    let (chosen, varies) = choose_sibling(path, request, offered);
    let send_path = chosen.as_ref().map(|(_, p)| p.as_path()).unwrap_or(path);
    let opened = match File::open(send_path) {
        Ok(file) => match file.metadata() {
            Ok(meta) if meta.is_file() => Some((file, meta)),
            _ => None,
        },
        Err(_) => None,
    };
    let Some((mut file, meta)) = opened else {
        tracing::warn!(path = %path.display(), "X-Sendfile names a file that is missing or unreadable, answering 404");
        let mut response = Response::new(body::full("file not found\n"));
        *response.status_mut() = StatusCode::NOT_FOUND;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        return response;
    };
    let size = meta.len();
    let modified = meta.modified().ok();

    let headers = &mut parts.headers;
    for stale in [
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
        header::CONTENT_ENCODING,
        header::CONTENT_RANGE,
    ] {
        headers.remove(stale);
    }
    if !headers.contains_key(header::CONTENT_TYPE) {
        let mime = mime_guess::from_path(path).first_or_octet_stream();
        set(headers, header::CONTENT_TYPE, mime.as_ref());
    }
    if let (false, Some(modified)) = (headers.contains_key(header::LAST_MODIFIED), modified) {
        set(
            headers,
            header::LAST_MODIFIED,
            httpdate::fmt_http_date(modified),
        );
    }
    if let Some((encoding, _)) = &chosen {
        set(headers, header::CONTENT_ENCODING, encoding.token());
        weaken_etag(headers);
    }
    if varies {
        vary_on_accept_encoding(headers);
    }
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));

    let (mut start, mut length) = (0, size);
    if parts.status == StatusCode::OK {
        let etag = headers
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let not_modified = match (&request.if_none_match, &request.if_modified_since, modified) {
            (Some(inm), _, _) => conditional::none_match(inm, etag.as_deref()),
            (None, Some(ims), Some(modified)) => conditional::not_modified_since(ims, modified),
            _ => false,
        };
        if not_modified {
            return empty_response(parts, StatusCode::NOT_MODIFIED);
        }
        let range_applies = request.method == Method::GET
            && request.if_range.as_deref().is_none_or(|if_range| {
                conditional::range_still_valid(if_range, etag.as_deref(), modified)
            });
        let asked = if range_applies {
            request.range.as_deref()
        } else {
            None
        };
        match range::parse(asked, size) {
            RangeRequest::Whole => {}
            RangeRequest::Part { start: first, end } => {
                parts.status = StatusCode::PARTIAL_CONTENT;
                set(
                    &mut parts.headers,
                    header::CONTENT_RANGE,
                    format!("bytes {first}-{end}/{size}"),
                );
                (start, length) = (first, end - first + 1);
            }
            RangeRequest::Unsatisfiable => {
                set(
                    &mut parts.headers,
                    header::CONTENT_RANGE,
                    format!("bytes */{size}"),
                );
                parts
                    .headers
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(0));
                return empty_response(parts, StatusCode::RANGE_NOT_SATISFIABLE);
            }
        }
    }
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    if request.method == Method::HEAD {
        return Response::from_parts(parts, body::empty());
    }
    if start > 0 && file.seek(SeekFrom::Start(start)).is_err() {
        return empty_response(parts, StatusCode::INTERNAL_SERVER_ERROR);
    }
    Response::from_parts(parts, file_body(file, length))
}

fn file_body(file: File, length: u64) -> Body {
    body::boxed(FileBody {
        file,
        remaining: length,
    })
}

/// `remaining` bytes of `file`, read a chunk at a time as the client takes them.
struct FileBody {
    file: File,
    remaining: u64,
}

impl http_body::Body for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let want = self.remaining.min(CHUNK);
        let mut chunk = Vec::with_capacity(want as usize);
        let read = (&self.file).take(want).read_to_end(&mut chunk);
        Poll::Ready(Some(match read {
            Ok(0) => Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                self.remaining -= n as u64;
                Ok(Frame::data(Bytes::from(chunk)))
            }
            Err(e) => Err(e),
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.remaining)
    }
}
