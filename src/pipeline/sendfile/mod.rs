//! X-Sendfile / X-Accel-Redirect: the app names a file in a response header
//! and thrust sends the file, so Puma's threads are not tied up streaming it.

mod app_body;
mod beneath;
pub mod file;
pub(crate) mod path;

pub use file::{serve, FileSource};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{response, Response, StatusCode};

use super::proxy;
use crate::config::{Config, SendFileHeader};
use crate::http::body::Body;
use path::Refusal;

const X_SENDFILE: HeaderName = HeaderName::from_static("x-sendfile");
const X_ACCEL_REDIRECT: HeaderName = HeaderName::from_static("x-accel-redirect");
const X_SENDFILE_TYPE: HeaderName = HeaderName::from_static("x-sendfile-type");
const X_ACCEL_MAPPING: HeaderName = HeaderName::from_static("x-accel-mapping");

impl SendFileHeader {
    fn name(self) -> HeaderName {
        match self {
            SendFileHeader::XSendfile => X_SENDFILE,
            SendFileHeader::XAccelRedirect => X_ACCEL_REDIRECT,
        }
    }
}

/// Announces to the app which header thrust honours. A client's own
/// X-Sendfile-Type or X-Accel-Mapping never reaches the app: a client must
/// never choose a file.
pub fn announce(headers: &mut HeaderMap, config: &Config) {
    // A look at the head's names first: a removal by name is a hashed
    // lookup, and a client almost never sends either.
    if headers
        .keys()
        .any(|name| name == X_SENDFILE_TYPE || name == X_ACCEL_MAPPING)
    {
        headers.remove(X_SENDFILE_TYPE);
        headers.remove(X_ACCEL_MAPPING);
    }
    if !config.x_sendfile {
        return;
    }
    let kind = match config.send_file_header {
        SendFileHeader::XSendfile => "X-Sendfile",
        SendFileHeader::XAccelRedirect => "X-Accel-Redirect",
    };
    headers.insert(X_SENDFILE_TYPE, HeaderValue::from_static(kind));
    if let (SendFileHeader::XAccelRedirect, Some((root, uri))) =
        (config.send_file_header, &config.accel_mapping)
    {
        if let Ok(mapping) = HeaderValue::from_str(&format!("{root}={uri}")) {
            headers.insert(X_ACCEL_MAPPING, mapping);
        }
    }
}

/// What the app's response asks of thrust.
pub enum Named {
    /// No file: the response goes on as it is.
    Nothing(Response<Body>),
    /// This file, answered with the app's status and headers (the app's
    /// body read and thrown away, the file header removed).
    File(FileSource, response::Parts),
}

/// Whether `response` names a file for thrust to send. A relative path is
/// the app's mistake (500 and an error log); a path outside the mapping or
/// THRUST_SEND_FILE_ROOTS is refused (404 and a warning).
pub fn named(config: &Config, response: Response<Body>) -> Named {
    let name = config.send_file_header.name();
    if !config.x_sendfile {
        return Named::Nothing(response);
    }
    let Some(value) = response.headers().get(&name) else {
        return Named::Nothing(response);
    };
    let resolved = path::resolve(value.as_bytes(), config);
    // The value as the logs show it, copied only for a refusal.
    let shown = match resolved {
        Ok(_) => String::new(),
        Err(_) => String::from_utf8_lossy(value.as_bytes()).into_owned(),
    };
    // The app's body (usually empty) is replaced by the file.
    let (mut parts, body) = response.into_parts();
    app_body::release(body);
    parts.headers.remove(&name);
    // An app that cut a range itself (Rack::Files answers a Range with 206)
    // still names the whole file: thrust cuts the client's range from it.
    if parts.status == StatusCode::PARTIAL_CONTENT {
        parts.status = StatusCode::OK;
        parts.headers.remove(header::CONTENT_RANGE);
    }
    match resolved {
        Ok(path) => Named::File(FileSource::named(path), parts),
        Err(Refusal::Relative) => {
            tracing::error!(path = %shown, header = %name, "The app named a relative path to send; it must be absolute");
            Named::Nothing(proxy::plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal server error\n",
                false,
            ))
        }
        Err(refusal) => {
            tracing::warn!(path = %shown, header = %name, reason = refusal.reason(), "The app named a file thrust does not send, answering 404");
            Named::Nothing(file::not_found_response())
        }
    }
}
