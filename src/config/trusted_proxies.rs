//! Which peers may vouch for a request's origin (THRUST_TRUSTED_PROXIES,
//! FORWARD_HEADERS), and the client's address along a chain of trusted
//! proxies, as Rails' RemoteIp finds it.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use http::header::{HeaderMap, HeaderName};
use ipnet::IpNet;

/// The default list: loopback and the private ranges, what Rails' RemoteIp
/// trusts. kamal-proxy on a Docker network is inside it; an internet client
/// is not.
pub const DEFAULT_TRUSTED: &str =
    "127.0.0.0/8, ::1/128, 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, fc00::/7";

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Whose forwarded headers thrust keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrustedProxies {
    /// FORWARD_HEADERS=true: every peer.
    Everyone,
    /// FORWARD_HEADERS=false, or TLS on with no list given: no peer.
    Nobody,
    /// Peers whose address is in one of these networks.
    Networks(Vec<IpNet>),
}

impl TrustedProxies {
    /// A list of networks (`10.0.0.0/8`) or addresses (`203.0.113.7`),
    /// separated by commas or spaces. None when an item is neither.
    pub fn parse(list: &str) -> Option<Self> {
        let mut networks = Vec::new();
        for item in list
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|item| !item.is_empty())
        {
            let network = match item.parse::<IpNet>() {
                Ok(network) => network.trunc(),
                Err(_) => IpNet::from(item.parse::<IpAddr>().ok()?),
            };
            networks.push(network);
        }
        Some(TrustedProxies::Networks(networks))
    }

    pub fn trusts(&self, addr: IpAddr) -> bool {
        match self {
            TrustedProxies::Everyone => true,
            TrustedProxies::Nobody => false,
            TrustedProxies::Networks(networks) => {
                let addr = addr.to_canonical();
                networks.iter().any(|network| network.contains(&addr))
            }
        }
    }

    /// The address a request comes from: the peer when it is not trusted;
    /// otherwise X-Forwarded-For read from the right, skipping trusted
    /// hops, up to the first address that is not trusted (or the leftmost,
    /// when all are). An entry that is not an address ends the walk at the
    /// hop that reported it. `forwarded_for`: whether the head holds
    /// X-Forwarded-For (the caller's one pass over the head saw it).
    pub fn client(&self, peer: SocketAddr, headers: &HeaderMap, forwarded_for: bool) -> ClientAddr {
        if !forwarded_for || !self.trusts(peer.ip()) {
            return ClientAddr::Peer(peer);
        }
        let mut client = ClientAddr::Peer(peer);
        let entries = headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .rev()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.rsplit(','));
        for entry in entries {
            let Some(addr) = parse_hop(entry.trim()) else {
                break;
            };
            client = ClientAddr::Forwarded(addr);
            if !self.trusts(addr) {
                break;
            }
        }
        client
    }
}

impl fmt::Display for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrustedProxies::Everyone => f.write_str("every peer"),
            TrustedProxies::Nobody => f.write_str("no peer"),
            TrustedProxies::Networks(networks) => {
                let list: Vec<String> = networks.iter().map(IpNet::to_string).collect();
                f.write_str(&list.join(", "))
            }
        }
    }
}

/// One X-Forwarded-For entry: an address, optionally with a port
/// (`192.0.2.1:4711`, `[2001:db8::1]:4711`).
fn parse_hop(entry: &str) -> Option<IpAddr> {
    if let Ok(addr) = entry.parse::<IpAddr>() {
        return Some(addr.to_canonical());
    }
    entry
        .parse::<SocketAddr>()
        .ok()
        .map(|s| s.ip().to_canonical())
}

/// The client's address as logged: the peer with its port, or the address
/// a trusted proxy reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAddr {
    Peer(SocketAddr),
    Forwarded(IpAddr),
}

impl ClientAddr {
    /// The address as Display spells it, for the request log.
    pub fn text(&self) -> AddrText {
        match *self {
            ClientAddr::Peer(SocketAddr::V4(peer)) => AddrText::ipv4(*peer.ip(), Some(peer.port())),
            ClientAddr::Forwarded(IpAddr::V4(ip)) => AddrText::ipv4(ip, None),
            other => AddrText::displayed(other),
        }
    }
}

/// An address spelled out on the stack, as Display spells it. An IPv4 one
/// (most clients) is written digit by digit: through `fmt` the log line's
/// and X-Forwarded-For's addresses cost about 1,000 instructions a request.
pub struct AddrText {
    /// Room for the longest, "[v6%scope]:port".
    bytes: [u8; 64],
    len: usize,
}

impl AddrText {
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(ip) => AddrText::ipv4(ip, None),
            IpAddr::V6(_) => AddrText::displayed(ip),
        }
    }

    fn ipv4(ip: Ipv4Addr, port: Option<u16>) -> Self {
        let mut text = AddrText {
            bytes: [0; 64],
            len: 0,
        };
        let mut digits = itoa::Buffer::new();
        for (i, octet) in ip.octets().into_iter().enumerate() {
            if i > 0 {
                text.push(b".");
            }
            text.push(digits.format(octet).as_bytes());
        }
        if let Some(port) = port {
            text.push(b":");
            text.push(digits.format(port).as_bytes());
        }
        text
    }

    fn displayed(value: impl fmt::Display) -> Self {
        let mut text = AddrText {
            bytes: [0; 64],
            len: 0,
        };
        let mut room = &mut text.bytes[..];
        // Cannot fail: the longest address fits.
        let _ = std::io::Write::write_fmt(&mut room, format_args!("{value}"));
        text.len = 64 - room.len();
        text
    }

    fn push(&mut self, part: &[u8]) {
        self.bytes[self.len..self.len + part.len()].copy_from_slice(part);
        self.len += part.len();
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII is ever written.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

impl fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientAddr::Peer(addr) => addr.fmt(f),
            ClientAddr::Forwarded(addr) => addr.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::headers;

    fn peer(addr: &str) -> SocketAddr {
        SocketAddr::new(addr.parse().unwrap(), 40000)
    }

    #[test]
    fn addresses_are_spelled_as_display_spells_them() {
        for peer in [
            "192.0.2.10:4711",
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "[::1]:80",
            "[fe80::1%7]:443",
            "[::ffff:192.0.2.1]:8080",
        ] {
            let addr = ClientAddr::Peer(peer.parse().unwrap());
            assert_eq!(addr.text().as_str(), addr.to_string());
        }
        for forwarded in ["10.0.0.255", "2001:db8::1", "::ffff:10.1.2.3"] {
            let ip: IpAddr = forwarded.parse().unwrap();
            assert_eq!(ClientAddr::Forwarded(ip).text().as_str(), forwarded);
            assert_eq!(AddrText::of(ip).as_str(), forwarded);
        }
    }

    #[test]
    fn the_default_list_trusts_loopback_and_private_ranges_only() {
        let trusted = TrustedProxies::parse(DEFAULT_TRUSTED).unwrap();
        for addr in [
            "127.0.0.1",
            "127.9.9.9",
            "::1",
            "10.1.2.3",
            "172.31.255.1",
            "192.168.0.9",
            "fd00::5",
            "::ffff:10.0.0.1",
        ] {
            assert!(trusted.trusts(addr.parse().unwrap()), "{addr}");
        }
        for addr in ["8.8.8.8", "172.32.0.1", "192.169.0.1", "2001:db8::1", "::"] {
            assert!(!trusted.trusts(addr.parse().unwrap()), "{addr}");
        }
    }

    #[test]
    fn lists_take_networks_and_addresses_and_refuse_anything_else() {
        let trusted = TrustedProxies::parse("203.0.113.7 10.0.0.0/8,2001:db8::/32").unwrap();
        assert!(trusted.trusts("203.0.113.7".parse().unwrap()));
        assert!(!trusted.trusts("203.0.113.8".parse().unwrap()));
        assert!(trusted.trusts("2001:db8::9".parse().unwrap()));
        assert!(TrustedProxies::parse("10.0.0.0/33").is_none());
        assert!(TrustedProxies::parse("localhost").is_none());
        assert_eq!(
            TrustedProxies::parse("10.1.2.3/8"),
            TrustedProxies::parse("10.0.0.0/8")
        );
    }

    #[test]
    fn the_client_is_the_first_untrusted_hop_from_the_right() {
        let trusted = TrustedProxies::parse(DEFAULT_TRUSTED).unwrap();
        let chain = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.0.0.4")]);
        assert_eq!(
            trusted
                .client(
                    peer("10.0.0.2"),
                    &chain,
                    chain.contains_key("x-forwarded-for")
                )
                .to_string(),
            "203.0.113.9"
        );
        // An untrusted peer's list is not read at all.
        assert_eq!(
            trusted
                .client(
                    peer("8.8.8.8"),
                    &chain,
                    chain.contains_key("x-forwarded-for")
                )
                .to_string(),
            "8.8.8.8:40000"
        );
        // All trusted: the leftmost.
        let inside = headers(&[
            ("x-forwarded-for", "10.9.9.9"),
            ("x-forwarded-for", "10.0.0.4"),
        ]);
        assert_eq!(
            trusted
                .client(
                    peer("127.0.0.1"),
                    &inside,
                    inside.contains_key("x-forwarded-for")
                )
                .to_string(),
            "10.9.9.9"
        );
        // Garbage stops the walk at the hop that reported it.
        let garbage = headers(&[("x-forwarded-for", "evil, 10.0.0.4")]);
        assert_eq!(
            trusted
                .client(
                    peer("127.0.0.1"),
                    &garbage,
                    garbage.contains_key("x-forwarded-for")
                )
                .to_string(),
            "10.0.0.4"
        );
        let ported = headers(&[("x-forwarded-for", "[2001:db8::1]:443")]);
        assert_eq!(
            trusted
                .client(
                    peer("127.0.0.1"),
                    &ported,
                    ported.contains_key("x-forwarded-for")
                )
                .to_string(),
            "2001:db8::1"
        );
        assert_eq!(
            TrustedProxies::Nobody
                .client(
                    peer("127.0.0.1"),
                    &chain,
                    chain.contains_key("x-forwarded-for")
                )
                .to_string(),
            "127.0.0.1:40000"
        );
    }
}
