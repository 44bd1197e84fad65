//! Header rewriting between the client and the app: hop-by-hop headers out,
//! X-Forwarded-*, X-Request-Start and X-Request-Id in.

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::config::trusted_proxies::{AddrText, X_FORWARDED_FOR};

/// Hop-by-hop headers of RFC 9110 §7.6.1 plus the old proxy ones.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_REQUEST_START: HeaderName = HeaderName::from_static("x-request-start");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Where a proxy says the client asked to go: host, scheme, port, path
/// prefix. Rack, Rails and other frameworks build URLs and redirects from
/// them, so they are kept only from trusted proxies, and the cache keys on
/// them (`ORIGIN_HEADERS` as the app receives them).
pub const ORIGIN_HEADERS: [HeaderName; ORIGIN_HEADER_COUNT] = [
    X_FORWARDED_HOST,
    X_FORWARDED_PROTO,
    HeaderName::from_static("x-forwarded-port"),
    HeaderName::from_static("x-forwarded-scheme"),
    HeaderName::from_static("x-forwarded-ssl"),
    HeaderName::from_static("x-forwarded-prefix"),
    HeaderName::from_static("forwarded"),
];

pub const ORIGIN_HEADER_COUNT: usize = 7;

/// Who a proxy says the client is, beside X-Forwarded-For (Rails reads
/// Client-Ip; nginx setups send X-Real-Ip): kept only from trusted proxies.
const ADDRESS_HEADERS: [HeaderName; 2] = [
    HeaderName::from_static("client-ip"),
    HeaderName::from_static("x-real-ip"),
];

/// Headers a `Connection` option never removes: Host, and what thrust sets,
/// replaces or vouches for (a client naming X-Request-Id there would make
/// the log and the app disagree; naming Host would strip it).
const NEVER_CONNECTION_OPTIONS: [HeaderName; 6] = [
    header::HOST,
    X_FORWARDED_FOR,
    X_REQUEST_ID,
    X_REQUEST_START,
    HeaderName::from_static("x-sendfile-type"),
    HeaderName::from_static("x-accel-mapping"),
];

/// Removes hop-by-hop headers and those the Connection header names. With
/// `keep_upgrade`, `Connection: upgrade` and `Upgrade` stay (a WebSocket
/// handshake travels end to end).
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // One look at the few names a head has: most have none of these, and a
    // removal by name each cost about 2,000 instructions a request.
    let present = |name: &HeaderName| HOP_BY_HOP.contains(name) || name == header::UPGRADE;
    if headers.keys().any(present) {
        if headers.contains_key(header::CONNECTION) {
            remove_connection_named(headers);
        }
        for name in &HOP_BY_HOP {
            headers.remove(name);
        }
        if !keep_upgrade {
            headers.remove(header::UPGRADE);
        }
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Removes the headers a Connection header names. The usual tokens
/// (`keep-alive`, `close`, `upgrade`, the hop-by-hop names) are dealt with
/// by the caller, so the common case allocates nothing.
fn remove_connection_named(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|token| !handled_by_caller(token))
        .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
        .filter(|name| !vouched_for(name))
        .collect();
    for name in named {
        headers.remove(name);
    }
}

/// Whether a Connection option naming this header is ignored.
fn vouched_for(name: &HeaderName) -> bool {
    NEVER_CONNECTION_OPTIONS.contains(name)
        || ORIGIN_HEADERS.contains(name)
        || ADDRESS_HEADERS.contains(name)
}

/// Connection tokens `strip_hop_by_hop` handles itself: `upgrade` is kept or
/// removed there, `close` names no header, the rest are always removed.
fn handled_by_caller(token: &str) -> bool {
    token.eq_ignore_ascii_case("close")
        || token.eq_ignore_ascii_case(header::UPGRADE.as_str())
        || HOP_BY_HOP
            .iter()
            .any(|name| token.eq_ignore_ascii_case(name.as_str()))
}

/// Turns an HTTP/2 extended CONNECT for WebSocket into the HTTP/1.1
/// handshake the app expects: GET, Upgrade, and a fresh Sec-WebSocket-Key
/// (RFC 8441 drops the key; the app server requires one).
pub fn as_websocket_handshake(parts: &mut http::request::Parts) {
    use base64::Engine;
    parts.method = http::Method::GET;
    parts
        .headers
        .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    parts
        .headers
        .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    let key = base64::engine::general_purpose::STANDARD.encode(uuid::Uuid::new_v4().as_bytes());
    if let Ok(key) = HeaderValue::from_str(&key) {
        parts.headers.insert(header::SEC_WEBSOCKET_KEY, key);
    }
    if !parts.headers.contains_key(header::SEC_WEBSOCKET_VERSION) {
        parts.headers.insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
    }
}

/// Whether a request asks to switch protocols (WebSocket over HTTP/1.1).
pub fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
}

pub struct ClientFacts<'a> {
    /// The peer: the client, or the proxy in front.
    pub addr: IpAddr,
    pub https: bool,
    pub host: Option<&'a HeaderValue>,
    /// Whether the peer is a trusted proxy (THRUST_TRUSTED_PROXIES).
    pub trusted: bool,
    /// When thrust read the request (Unix milliseconds), for X-Request-Start.
    pub start_millis: u128,
}

/// Sets what the app learns of the request's origin. From a trusted proxy
/// its X-Forwarded-* and Forwarded headers are kept and the peer is
/// appended to X-Forwarded-For; from anyone else they are replaced by what
/// thrust itself saw (X-Forwarded-For/-Host/-Proto, X-Request-Start) or
/// removed, so no client can choose the address, host or scheme the app
/// builds its answer from.
pub fn set_forwarded(headers: &mut HeaderMap, client: &ClientFacts) {
    let addr = client.addr.to_canonical();
    // Which of them the head holds, in one pass over its names: a hashed
    // lookup by name costs about 200 instructions, and there were four.
    let (mut kept, mut claimed) = (Kept::default(), false);
    for name in headers.keys() {
        if name == X_FORWARDED_FOR {
            kept.forwarded_for = true;
        } else if name == X_FORWARDED_HOST {
            kept.host = true;
        } else if name == X_FORWARDED_PROTO {
            kept.proto = true;
        } else if name == X_REQUEST_START {
            kept.start = true;
        }
        claimed |= name == X_REQUEST_START
            || ORIGIN_HEADERS.contains(name)
            || ADDRESS_HEADERS.contains(name);
    }
    if !client.trusted {
        if claimed {
            for name in ORIGIN_HEADERS.iter().chain(&ADDRESS_HEADERS) {
                headers.remove(name);
            }
            headers.remove(X_REQUEST_START);
        }
        // Nothing of a client's is kept: each is set without looking.
        kept = Kept::default();
    }
    let forwarded_for = kept
        .forwarded_for
        .then(|| appended(headers, &X_FORWARDED_FOR, addr))
        .flatten()
        .or_else(|| HeaderValue::from_str(AddrText::of(addr).as_str()).ok());
    if let Some(value) = forwarded_for {
        headers.insert(X_FORWARDED_FOR, value);
    }
    if let (false, Some(host)) = (kept.host, client.host) {
        headers.insert(X_FORWARDED_HOST, host.clone());
    }
    if !kept.proto {
        let proto = if client.https { "https" } else { "http" };
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    }
    if !kept.start {
        set_request_start(headers, client.start_millis);
    }
}

/// Which of the headers thrust sets a trusted proxy's own are kept.
#[derive(Default)]
struct Kept {
    forwarded_for: bool,
    host: bool,
    proto: bool,
    start: bool,
}

/// A list header's values as one, with `addr` appended; None when it has
/// no value that is not blank.
fn appended(headers: &HeaderMap, name: &HeaderName, addr: IpAddr) -> Option<HeaderValue> {
    let mut list = String::new();
    for value in headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
    {
        list.push_str(value);
        list.push_str(", ");
    }
    if list.is_empty() {
        return None;
    }
    list.push_str(AddrText::of(addr).as_str());
    HeaderValue::from_str(&list).ok()
}

/// Sets `X-Request-Start: t=<unix ms>`.
fn set_request_start(headers: &mut HeaderMap, millis: u128) {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(millis).as_bytes();
    // "t=" and up to 39 digits.
    let mut text = [0u8; 41];
    text[..2].copy_from_slice(b"t=");
    text[2..2 + digits.len()].copy_from_slice(digits);
    if let Ok(value) = HeaderValue::from_bytes(&text[..2 + digits.len()]) {
        headers.insert(X_REQUEST_START, value);
    }
}

/// Milliseconds since the Unix epoch, for X-Request-Start.
pub fn unix_millis() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default()
}

/// Everything that turns a client's request head into the one the app
/// receives. Kept with a miss that may be stored, so the cache can redo it
/// on its copy of the client's headers: copying the rewritten headers
/// instead would cost an allocation for each value thrust made, on every
/// request (they are owned bytes; the client's are shared with hyper's
/// buffer).
#[derive(Clone)]
pub struct Rewrite {
    /// HTTP/2's :authority, which becomes Host when there is none.
    pub authority: Option<HeaderValue>,
    pub upgrade: bool,
    pub addr: IpAddr,
    pub https: bool,
    pub trusted: bool,
    pub start_millis: u128,
}

impl Rewrite {
    /// Rewrites `headers` as the app is to receive them: Host, hop-by-hop
    /// headers out, X-Forwarded-* and X-Request-Start as the peer's trust
    /// allows.
    pub fn apply(&self, headers: &mut HeaderMap) {
        if !headers.contains_key(header::HOST) {
            if let Some(authority) = &self.authority {
                headers.insert(header::HOST, authority.clone());
            }
        }
        strip_hop_by_hop(headers, self.upgrade);
        let host = headers.get(header::HOST).cloned();
        set_forwarded(
            headers,
            &ClientFacts {
                addr: self.addr,
                https: self.https,
                host: host.as_ref(),
                trusted: self.trusted,
                start_millis: self.start_millis,
            },
        );
    }
}

/// The request id: the client's if it sent one, else a new random UUID.
pub fn ensure_request_id(headers: &mut HeaderMap, sent: Option<HeaderValue>) -> HeaderValue {
    if let Some(id) = sent {
        return id;
    }
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let id = HeaderValue::from_bytes(
        uuid::Uuid::new_v4()
            .hyphenated()
            .encode_lower(&mut text)
            .as_bytes(),
    )
    .unwrap_or_else(|_| HeaderValue::from_static("-"));
    headers.insert(X_REQUEST_ID, id.clone());
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::headers;

    #[test]
    fn hop_by_hop_and_connection_named_headers_go() {
        let mut h = headers(&[
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "5"),
            ("te", "trailers"),
            ("upgrade", "h2c"),
            ("accept", "*/*"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("accept"));
    }

    #[test]
    fn upgrade_survives_when_kept() {
        let mut h = headers(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        assert!(wants_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
    }

    #[test]
    fn connection_options_never_remove_what_thrust_vouches_for() {
        let mut h = headers(&[
            (
                "connection",
                "Host, X-Request-Id, x-forwarded-host, Forwarded, X-Sendfile-Type",
            ),
            ("connection", "x-forwarded-for, x-secret"),
            ("host", "example.com"),
            ("x-request-id", "abc"),
            ("x-forwarded-host", "outer.example"),
            ("forwarded", "proto=https"),
            ("x-forwarded-for", "1.1.1.1"),
            ("x-secret", "1"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert!(!h.contains_key("x-secret"));
        assert!(!h.contains_key("connection"));
        for name in [
            "host",
            "x-request-id",
            "x-forwarded-host",
            "forwarded",
            "x-forwarded-for",
        ] {
            assert!(h.contains_key(name), "{name}");
        }
    }

    #[test]
    fn forwarded_headers_follow_trust() {
        let host = HeaderValue::from_static("example.com");
        let facts = |trusted| ClientFacts {
            addr: "10.1.2.3".parse().unwrap(),
            https: false,
            host: Some(&host),
            trusted,
            start_millis: 1_796_000_000_123,
        };
        let sent = || {
            headers(&[
                ("x-forwarded-for", "1.1.1.1"),
                ("x-forwarded-for", "2.2.2.2"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "outer.example"),
                ("x-forwarded-port", "8443"),
                ("x-forwarded-ssl", "on"),
                ("forwarded", "for=1.1.1.1;proto=https"),
                ("client-ip", "1.1.1.1"),
                ("x-request-start", "t=1"),
            ])
        };
        let mut h = sent();
        set_forwarded(&mut h, &facts(true));
        assert_eq!(h["x-forwarded-for"], "1.1.1.1, 2.2.2.2, 10.1.2.3");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "outer.example");
        assert_eq!(h["x-forwarded-port"], "8443");
        assert_eq!(h["forwarded"], "for=1.1.1.1;proto=https");
        assert_eq!(h["x-request-start"], "t=1");
        let mut h = sent();
        set_forwarded(&mut h, &facts(false));
        assert_eq!(h["x-forwarded-for"], "10.1.2.3");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "example.com");
        assert_eq!(h["x-request-start"], "t=1796000000123");
        for name in [
            "x-forwarded-port",
            "x-forwarded-ssl",
            "forwarded",
            "client-ip",
        ] {
            assert!(!h.contains_key(name), "{name}");
        }
        // A trusted proxy that sent none of them: each is set.
        let mut h = HeaderMap::new();
        set_forwarded(&mut h, &facts(true));
        assert_eq!(h["x-forwarded-for"], "10.1.2.3");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "example.com");
        assert_eq!(h["x-request-start"], "t=1796000000123");
    }

    #[test]
    fn a_request_id_is_added_once() {
        let mut h = headers(&[("x-request-id", "abc")]);
        let sent = h.get("x-request-id").cloned();
        assert_eq!(ensure_request_id(&mut h, sent), "abc");
        assert_eq!(h.get_all("x-request-id").iter().count(), 1);
        let mut h = HeaderMap::new();
        let id = ensure_request_id(&mut h, None);
        assert_eq!(id.len(), 36);
        assert_eq!(h["x-request-id"], id);
    }
}
