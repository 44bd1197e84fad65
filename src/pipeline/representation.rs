//! Sending a representation thrust holds whole — a cache entry's bytes or an
//! open file — as `preconditions` decided: the whole of it, a part (206),
//! nothing (304, 412, 416), and never a body for HEAD.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{response, Method, Response, StatusCode};
use http_body::Frame;

use super::preconditions::Outcome;
use crate::conn::zero_copy::{self, FileParts, Slots};
use crate::http::body::{self, Body};
use crate::http::headers::set;

/// Read size for file bodies: large enough for few syscalls, small enough
/// that memory stays flat however big the file.
const CHUNK: u64 = 256 * 1024;

/// The bytes of a representation.
pub enum Content {
    Memory(Bytes),
    /// An open file, from its start; sent as stand-ins for its parts when
    /// the connection's slots are given (see `zero_copy`).
    File(File, Option<Arc<Slots>>),
}

fn without_body(mut parts: response::Parts, status: StatusCode) -> Response<Body> {
    parts.status = status;
    Response::from_parts(parts, body::empty())
}

/// Answers with `content` (`size` bytes), the representation `parts`
/// describes, as `outcome` says.
pub fn respond(
    outcome: Outcome,
    method: &Method,
    mut parts: response::Parts,
    content: Content,
    size: u64,
) -> Response<Body> {
    let headers = &mut parts.headers;
    headers.remove(header::CONTENT_RANGE);
    let (start, length) = match outcome {
        Outcome::NotModified => {
            headers.remove(header::CONTENT_LENGTH);
            return without_body(parts, StatusCode::NOT_MODIFIED);
        }
        Outcome::PreconditionFailed => {
            for gone in [header::CONTENT_TYPE, header::CONTENT_ENCODING] {
                headers.remove(gone);
            }
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
            return without_body(parts, StatusCode::PRECONDITION_FAILED);
        }
        Outcome::Unsatisfiable => {
            set(headers, header::CONTENT_RANGE, format!("bytes */{size}"));
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
            return without_body(parts, StatusCode::RANGE_NOT_SATISFIABLE);
        }
        Outcome::Part { start, end } => {
            set(
                headers,
                header::CONTENT_RANGE,
                format!("bytes {start}-{end}/{size}"),
            );
            parts.status = StatusCode::PARTIAL_CONTENT;
            (start, end - start + 1)
        }
        Outcome::Whole => (0, size),
    };
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    if method == Method::HEAD {
        return Response::from_parts(parts, body::empty());
    }
    let body = match content {
        Content::Memory(bytes) => match usize::try_from(start + length) {
            Ok(end) if end <= bytes.len() => body::full(bytes.slice(start as usize..end)),
            _ => return without_body(parts, StatusCode::INTERNAL_SERVER_ERROR),
        },
        Content::File(file, Some(slots)) => body::boxed(FileBody {
            source: Source::StandIns(FileParts::new(slots, file, start)),
            remaining: length,
        }),
        Content::File(mut file, None) => {
            if start > 0 && file.seek(SeekFrom::Start(start)).is_err() {
                return without_body(parts, StatusCode::INTERNAL_SERVER_ERROR);
            }
            body::boxed(FileBody {
                source: Source::Read(file),
                remaining: length,
            })
        }
    };
    Response::from_parts(parts, body)
}

/// `remaining` bytes of a file, a chunk at a time as the client takes them.
struct FileBody {
    source: Source,
    remaining: u64,
}

enum Source {
    /// Read on the connection's worker thread (see `sendfile::file`).
    Read(File),
    /// Stand-ins the connection's socket sends with `sendfile(2)`.
    StandIns(FileParts),
}

impl http_body::Body for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = &mut *self;
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let chunk = match &mut this.source {
            Source::Read(file) => {
                let want = this.remaining.min(CHUNK);
                let mut chunk = Vec::with_capacity(want as usize);
                match file.take(want).read_to_end(&mut chunk) {
                    // The file shrank under us: the client must not take a
                    // short body for a whole one.
                    Ok(0) => Err(std::io::ErrorKind::UnexpectedEof.into()),
                    Ok(_) => Ok(Bytes::from(chunk)),
                    Err(e) => Err(e),
                }
            }
            Source::StandIns(parts) => {
                parts.next(this.remaining.min(zero_copy::SLOT_LEN as u64) as usize)
            }
        };
        if let Ok(chunk) = &chunk {
            this.remaining -= chunk.len() as u64;
        }
        Poll::Ready(Some(chunk.map(Frame::data)))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.remaining)
    }
}
