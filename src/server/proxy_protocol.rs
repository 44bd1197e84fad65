//! PROXY protocol v1 and v2 (THRUST_PROXY_PROTOCOL): thrust behind an L4
//! load balancer (AWS NLB, HAProxy, kamal-proxy in TCP mode), which opens
//! each connection with a header naming the client it accepted.
//!
//! The header is read off the socket before anything else (TLS or HTTP),
//! exactly to its last byte, so what follows reaches the handshake or hyper
//! untouched. Its client address replaces the peer's only when the peer is
//! a trusted proxy (THRUST_TRUSTED_PROXIES): from anyone else the header is
//! still required, and read, but not believed. Parsing is the ppp crate's.

use std::net::{IpAddr, SocketAddr};

use ppp::{v1, v2};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// v2's fixed part: the 12-byte signature, version and command, family and
/// protocol, and the length of what follows.
const V2_FIXED: usize = 16;
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// v1's longest header (TCP6 with the longest addresses), CRLF included.
const V1_LONGEST: usize = 107;
/// Addresses and TLVs of a v2 header beyond this are refused: load
/// balancers send a few hundred bytes at most.
const V2_LONGEST_REST: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum ProxyHeaderError {
    #[error("the connection closed or failed before its PROXY header ended: {0}")]
    Read(#[from] std::io::Error),
    #[error("the connection does not start with a PROXY protocol header")]
    Missing,
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(String),
}

/// The client a connection is for: the header's source address, or the
/// peer's own when the header names none (v2 LOCAL, the load balancer's
/// own health checks; v1 UNKNOWN) or the peer is not trusted to say.
pub async fn read(
    stream: &mut TcpStream,
    peer: SocketAddr,
    trusted: impl Fn(IpAddr) -> bool,
) -> Result<SocketAddr, ProxyHeaderError> {
    let header = read_header(stream).await?;
    let named = source(&header)?;
    Ok(match named {
        Some(client) if trusted(peer.ip()) => client,
        _ => peer,
    })
}

/// The header's bytes, read to its end and no further.
async fn read_header(stream: &mut TcpStream) -> Result<Vec<u8>, ProxyHeaderError> {
    let mut header = vec![0u8; V2_SIGNATURE.len()];
    stream.read_exact(&mut header).await?;
    if header == V2_SIGNATURE {
        header.resize(V2_FIXED, 0);
        stream.read_exact(&mut header[V2_SIGNATURE.len()..]).await?;
        let rest = usize::from(u16::from_be_bytes([header[14], header[15]]));
        if rest > V2_LONGEST_REST {
            return Err(ProxyHeaderError::Malformed(format!(
                "{rest} bytes of addresses"
            )));
        }
        header.resize(V2_FIXED + rest, 0);
        stream.read_exact(&mut header[V2_FIXED..]).await?;
        return Ok(header);
    }
    if !header.starts_with(b"PROXY ") {
        return Err(ProxyHeaderError::Missing);
    }
    // v1 ends at its CRLF, at most 107 bytes in: read byte by byte so that
    // none of the client's own bytes are taken.
    while !header.ends_with(b"\r\n") {
        if header.len() >= V1_LONGEST {
            return Err(ProxyHeaderError::Malformed(
                "no CRLF within 107 bytes".into(),
            ));
        }
        header.push(stream.read_u8().await?);
    }
    Ok(header)
}

/// The source address a complete header names, if any.
fn source(header: &[u8]) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let malformed = |e: &dyn std::fmt::Display| ProxyHeaderError::Malformed(e.to_string());
    if !header.starts_with(V2_SIGNATURE) {
        let parsed = v1::Header::try_from(header).map_err(|e| malformed(&e))?;
        return Ok(match parsed.addresses {
            v1::Addresses::Tcp4(ip) => Some(SocketAddr::from((ip.source_address, ip.source_port))),
            v1::Addresses::Tcp6(ip) => Some(SocketAddr::from((ip.source_address, ip.source_port))),
            v1::Addresses::Unknown => None,
        });
    }
    let parsed = v2::Header::try_from(header).map_err(|e| malformed(&e))?;
    Ok(match (parsed.command, parsed.addresses) {
        (v2::Command::Local, _) => None,
        (v2::Command::Proxy, v2::Addresses::IPv4(ip)) => {
            Some(SocketAddr::from((ip.source_address, ip.source_port)))
        }
        (v2::Command::Proxy, v2::Addresses::IPv6(ip)) => {
            Some(SocketAddr::from((ip.source_address, ip.source_port)))
        }
        // Unix sockets and unspecified families carry no client address.
        (v2::Command::Proxy, _) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, family: u8, addresses: &[u8]) -> Vec<u8> {
        let mut header = V2_SIGNATURE.to_vec();
        header.extend([0x20 | command, family]);
        header.extend((addresses.len() as u16).to_be_bytes());
        header.extend(addresses);
        header
    }

    #[test]
    fn each_form_names_its_client_or_none() {
        let v1_tcp4 = b"PROXY TCP4 203.0.113.7 10.0.0.1 56324 80\r\n";
        assert_eq!(
            source(v1_tcp4).unwrap(),
            Some("203.0.113.7:56324".parse().unwrap())
        );
        let v1_tcp6 = b"PROXY TCP6 2001:db8::7 2001:db8::1 4000 443\r\n";
        assert_eq!(
            source(v1_tcp6).unwrap(),
            Some("[2001:db8::7]:4000".parse().unwrap())
        );
        assert_eq!(source(b"PROXY UNKNOWN\r\n").unwrap(), None);
        let tcp4 = v2(1, 0x11, &[198, 51, 100, 9, 10, 0, 0, 1, 0x1f, 0x90, 0, 80]);
        assert_eq!(
            source(&tcp4).unwrap(),
            Some("198.51.100.9:8080".parse().unwrap())
        );
        assert_eq!(source(&v2(0, 0x00, &[])).unwrap(), None, "LOCAL");
        assert!(source(b"PROXY TCP4 not-an-address 10.0.0.1 1 2\r\n").is_err());
        assert!(
            source(&v2(1, 0x11, &[1, 2, 3])).is_err(),
            "addresses cut short"
        );
    }
}
