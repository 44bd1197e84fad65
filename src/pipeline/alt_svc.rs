//! Alt-Svc: with THRUST_HTTP3, every answer over TCP+TLS tells the client
//! where HTTP/3 is served.

use http::{header, HeaderValue, Request};

/// How long a client may remember the offer (a day, as Caddy and nginx's
/// examples give).
const MAX_AGE_SECONDS: u32 = 86_400;

/// `h3=":PORT"; ma=86400`, PORT being the one the client reached over TCP
/// (named in its Host or the request's authority; 443 when neither names
/// one). Behind a port mapping HTTPS_PORT is not the port clients see; the
/// UDP port is expected to be published as the TCP one is. The value goes
/// back to the client that sent the Host only: answers are stored in the
/// cache before it is added.
pub fn value<B>(req: &Request<B>) -> HeaderValue {
    let port = req
        .headers()
        .get(header::HOST)
        .and_then(|host| host_port(host.as_bytes()))
        .or_else(|| req.uri().port_u16())
        .unwrap_or(443);
    let text = format!("h3=\":{port}\"; ma={MAX_AGE_SECONDS}");
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("clear"))
}

/// The port a Host value names, if it names a valid one.
fn host_port(host: &[u8]) -> Option<u16> {
    let host = std::str::from_utf8(host).ok()?;
    // An IPv6 literal keeps its colons inside brackets.
    let after_name = host.rfind(']').map_or(host, |end| &host[end + 1..]);
    let (_, port) = after_name.rsplit_once(':')?;
    port.parse::<u16>().ok().filter(|p| *p != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(host: Option<&str>, uri: &str) -> String {
        let mut req = Request::builder().uri(uri);
        if let Some(host) = host {
            req = req.header(header::HOST, host);
        }
        let req = req.body(()).unwrap();
        value(&req).to_str().unwrap().to_string()
    }

    #[test]
    fn the_port_is_the_one_the_client_reached() {
        assert_eq!(offer(Some("example.com"), "/"), "h3=\":443\"; ma=86400");
        assert_eq!(
            offer(Some("example.com:8443"), "/"),
            "h3=\":8443\"; ma=86400"
        );
        assert_eq!(offer(Some("[::1]:9443"), "/"), "h3=\":9443\"; ma=86400");
        assert_eq!(offer(Some("[::1]"), "/"), "h3=\":443\"; ma=86400");
        assert_eq!(
            offer(None, "https://example.com:7443/"),
            "h3=\":7443\"; ma=86400"
        );
    }

    #[test]
    fn a_port_that_is_not_one_is_not_repeated() {
        assert_eq!(
            offer(Some("example.com:99999"), "/"),
            "h3=\":443\"; ma=86400"
        );
        assert_eq!(offer(Some("example.com:0"), "/"), "h3=\":443\"; ma=86400");
        assert_eq!(offer(Some("example.com:\"x"), "/"), "h3=\":443\"; ma=86400");
    }
}
