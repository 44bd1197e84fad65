//! The HTTP/2 connection preface: told apart from an HTTP/1 request where
//! both are served without ALPN (`sniff`), and checked on connections that
//! agreed on `h2` by ALPN (`read`).
//!
//! The h2 crate closes a connection whose preface is wrong without a word
//! (its source marks sending GOAWAY as a TODO). thrust reads the preface
//! first and answers a wrong one as RFC 9113 §3.4 and §5.4.1 describe: its
//! own SETTINGS, then GOAWAY with PROTOCOL_ERROR, then the close — so a
//! client, or a conformance checker, learns why.

use std::io;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Reads until the first bytes either are HTTP/2's preface (true) or
/// cannot be (an HTTP/1 request, or the end): they are returned to be read
/// again by whichever protocol serves the connection.
pub async fn sniff<S: AsyncRead + Unpin>(stream: &mut S) -> io::Result<(bool, Bytes)> {
    let mut read = [0u8; PREFACE.len()];
    let mut filled = 0;
    while filled < PREFACE.len() {
        let n = stream.read(&mut read[filled..]).await?;
        filled += n;
        if n == 0 || read[..filled] != PREFACE[..filled] {
            return Ok((false, Bytes::copy_from_slice(&read[..filled])));
        }
    }
    Ok((true, Bytes::copy_from_slice(&read)))
}

/// An empty SETTINGS frame, then GOAWAY (last stream 0, PROTOCOL_ERROR).
const REFUSAL: [u8; 26] = [
    0, 0, 0, 0x4, 0, 0, 0, 0, 0, // SETTINGS, no parameters
    0, 0, 8, 0x7, 0, 0, 0, 0, 0, // GOAWAY, 8 bytes of payload
    0, 0, 0, 0, // last stream id: none was processed
    0, 0, 0, 0x1, // PROTOCOL_ERROR
];

/// Reads the client's preface: the bytes read (to be handed on) when it is
/// right; `None` once a wrong one has been answered and the connection shut.
pub async fn read<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) -> io::Result<Option<Bytes>> {
    let mut read = [0u8; PREFACE.len()];
    let mut filled = 0;
    while filled < PREFACE.len() {
        let n = stream.read(&mut read[filled..]).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        filled += n;
        // Refused at the first wrong byte, not after 24 of them.
        if read[..filled] != PREFACE[..filled] {
            stream.write_all(&REFUSAL).await?;
            stream.shutdown().await?;
            return Ok(None);
        }
    }
    Ok(Some(Bytes::copy_from_slice(&read)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wrong_preface_gets_settings_and_goaway_a_right_one_is_handed_on() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        client.write_all(b"PRI * HTTP/1.1\r\n").await.unwrap();
        assert_eq!(read(&mut server).await.unwrap(), None);
        drop(server);
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer, REFUSAL);

        let (mut client, mut server) = tokio::io::duplex(1024);
        client.write_all(&PREFACE[..10]).await.unwrap();
        client.write_all(&PREFACE[10..]).await.unwrap();
        assert_eq!(
            read(&mut server).await.unwrap().as_deref(),
            Some(&PREFACE[..])
        );
    }

    #[tokio::test]
    async fn sniffing_tells_http2_from_http1_and_keeps_what_it_read() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        client.write_all(&PREFACE[..5]).await.unwrap();
        client.write_all(&PREFACE[5..]).await.unwrap();
        let (http2, read) = sniff(&mut server).await.unwrap();
        assert!(http2);
        assert_eq!(&read[..], &PREFACE[..]);

        let (mut client, mut server) = tokio::io::duplex(1024);
        client.write_all(b"PRI-ish / HTTP/1.1\r\n").await.unwrap();
        let (http2, read) = sniff(&mut server).await.unwrap();
        assert!(!http2);
        assert_eq!(&read[..], b"PRI-ish / HTTP/1.1\r\n");

        let (client, mut server) = tokio::io::duplex(1024);
        drop(client);
        assert_eq!(sniff(&mut server).await.unwrap(), (false, Bytes::new()));
    }
}
