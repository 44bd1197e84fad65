//! Header rewriting between the client and the app: hop-by-hop headers out,
//! X-Forwarded-*, X-Request-Start and X-Request-Id in.

use std::io::Write;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

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
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Removes hop-by-hop headers and those the Connection header names. With
/// `keep_upgrade`, `Connection: upgrade` and `Upgrade` stay (a WebSocket
/// handshake travels end to end).
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    if headers.contains_key(header::CONNECTION) {
        remove_connection_named(headers);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
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
        .collect();
    for name in named {
        headers.remove(name);
    }
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
    pub addr: IpAddr,
    pub https: bool,
    pub host: Option<&'a HeaderValue>,
    pub trust_forwarded: bool,
}

/// Sets X-Forwarded-For/-Host/-Proto: the client's values are kept only when
/// FORWARD_HEADERS trusts them.
pub fn set_forwarded(headers: &mut HeaderMap, client: &ClientFacts) {
    let addr = client.addr.to_canonical();
    let forwarded_for = match headers.get(X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(list) if client.trust_forwarded && !list.trim().is_empty() => {
            HeaderValue::from_str(&format!("{list}, {addr}")).ok()
        }
        _ => formatted(format_args!("{addr}")),
    };
    if let Some(value) = forwarded_for {
        headers.insert(X_FORWARDED_FOR, value);
    }
    if !(client.trust_forwarded && headers.contains_key(&X_FORWARDED_HOST)) {
        match client.host {
            Some(host) => headers.insert(X_FORWARDED_HOST, host.clone()),
            None => headers.remove(&X_FORWARDED_HOST),
        };
    }
    if !(client.trust_forwarded && headers.contains_key(&X_FORWARDED_PROTO)) {
        let proto = if client.https { "https" } else { "http" };
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    }
}

/// Adds `X-Request-Start: t=<unix ms>` unless the client (an outer proxy) set one.
pub fn set_request_start(headers: &mut HeaderMap) {
    if headers.contains_key(&X_REQUEST_START) {
        return;
    }
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    if let Some(value) = formatted(format_args!("t={millis}")) {
        headers.insert(X_REQUEST_START, value);
    }
}

/// A short header value (an address, a time) formatted on the stack: the
/// value's own copy is the only allocation.
fn formatted(args: std::fmt::Arguments) -> Option<HeaderValue> {
    let mut text = [0u8; 64];
    let mut room = &mut text[..];
    room.write_fmt(args).ok()?;
    let unused = room.len();
    HeaderValue::from_bytes(&text[..text.len() - unused]).ok()
}

/// The request id: the client's if it sent one, else a new random UUID.
pub fn ensure_request_id(headers: &mut HeaderMap) -> HeaderValue {
    if let Some(id) = headers.get(&X_REQUEST_ID) {
        return id.clone();
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
    fn forwarded_headers_follow_trust() {
        let host = HeaderValue::from_static("example.com");
        let facts = |trust| ClientFacts {
            addr: "10.1.2.3".parse().unwrap(),
            https: false,
            host: Some(&host),
            trust_forwarded: trust,
        };
        let mut h = headers(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "outer.example"),
        ]);
        set_forwarded(&mut h, &facts(true));
        assert_eq!(h["x-forwarded-for"], "1.1.1.1, 10.1.2.3");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "outer.example");
        let mut h = headers(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "outer.example"),
        ]);
        set_forwarded(&mut h, &facts(false));
        assert_eq!(h["x-forwarded-for"], "10.1.2.3");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "example.com");
    }

    #[test]
    fn request_id_and_start_are_added_once() {
        let mut h = headers(&[("x-request-id", "abc"), ("x-request-start", "t=1")]);
        assert_eq!(ensure_request_id(&mut h), "abc");
        set_request_start(&mut h);
        assert_eq!(h["x-request-start"], "t=1");
        let mut h = HeaderMap::new();
        let id = ensure_request_id(&mut h);
        assert_eq!(id.len(), 36);
        set_request_start(&mut h);
        assert!(h["x-request-start"].to_str().unwrap().starts_with("t=1"));
    }
}
