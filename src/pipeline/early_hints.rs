//! The app's 103 Early Hints, passed on to the client before the answer
//! (Rails' `send_early_hints` through Puma's `early_hints true`), so a
//! browser fetches stylesheets and scripts while the page is rendered.
//!
//! HTTP/1.1 clients get them through their connection's queue, written by
//! the socket wrapper between hyper's messages; HTTP/2 clients as an
//! informational HEADERS frame from the stream's task (`conn::interim`).
//! HTTP/1.0 clients never do: they would read the 103 as the answer.

use std::sync::Arc;

use http::header::CONTENT_LENGTH;
use http::{HeaderMap, Request, StatusCode, Version};

use super::forwarding;
use super::ConnInfo;
use crate::conn::interim::{self, http1_message, StreamHints};
use crate::conn::state::ConnState;

/// Where one request's hints go.
pub enum Hints {
    /// An HTTP/1.1 connection's queue.
    Connection(Arc<ConnState>),
    /// An HTTP/2 or HTTP/3 stream's task.
    Stream(StreamHints),
}

/// Where hints for `req` go, if its client can take them.
pub fn route<B>(conn: &ConnInfo, req: &mut Request<B>) -> Option<Hints> {
    match req.version() {
        Version::HTTP_2 | Version::HTTP_3 => req
            .extensions_mut()
            .remove::<StreamHints>()
            .map(Hints::Stream),
        Version::HTTP_11 if !conn.state.multiplexed() => {
            Some(Hints::Connection(conn.state.clone()))
        }
        _ => None,
    }
}

/// Hands the app's 103s for `upstream_req` on to the client until the
/// returned guard is dropped (once the answer's head has arrived).
pub fn listen<B>(hints: Hints, upstream_req: &mut Request<B>) -> Listening {
    let connection = match &hints {
        Hints::Connection(state) => {
            state.interim().open();
            Some(state.clone())
        }
        Hints::Stream(_) => None,
    };
    hyper::ext::on_informational(upstream_req, move |response| {
        if response.status() != StatusCode::EARLY_HINTS {
            return;
        }
        let headers = passed_on(response.headers());
        let taken = match &hints {
            Hints::Connection(state) => state.interim().push(&http1_message(&headers)),
            Hints::Stream(stream) => stream.push(headers),
        };
        if !taken {
            interim::dropped();
        }
    });
    Listening(connection)
}

/// Ends a request's hints when dropped.
pub struct Listening(Option<Arc<ConnState>>);

impl Drop for Listening {
    fn drop(&mut self) {
        if let Some(state) = &self.0 {
            state.interim().close();
        }
    }
}

/// A hint's headers as the client gets them: nothing about the app's
/// connection, no body length (a 103 has no body).
fn passed_on(headers: &HeaderMap) -> HeaderMap {
    let mut headers = headers.clone();
    forwarding::strip_hop_by_hop(&mut headers, false);
    headers.remove(CONTENT_LENGTH);
    headers
}
