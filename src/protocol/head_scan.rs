//! Watches the raw bytes of HTTP/1 request heads for what hyper lets
//! through quietly:
//! - a header block carrying both Content-Length and Transfer-Encoding.
//!   hyper resolves that shape safely, but silently; thrust refuses it with
//!   400, as a front server should, so a smuggling attempt is visible and
//!   never forwarded;
//! - a head longer than `MAX_HEAD_BYTES`. hyper checks its buffer limit only
//!   while a head is incomplete, so a large head that arrives in few reads
//!   is parsed whole; thrust refuses it with 431.

/// Largest request head accepted, request line included.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Longest header-name prefix the scanner needs to recognise.
const PREFIX: usize = 18;

/// What a complete request head turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Head {
    Fine,
    /// Both Content-Length and Transfer-Encoding: a smuggling shape.
    AmbiguousFraming,
    /// Over `MAX_HEAD_BYTES`.
    TooLarge,
}

#[derive(Default)]
pub struct HeadScanner {
    line: [u8; PREFIX],
    line_len: usize,
    lines: usize,
    bytes: usize,
    content_length: bool,
    transfer_encoding: bool,
    done: bool,
}

impl HeadScanner {
    /// Starts watching for a new request head.
    pub fn restart(&mut self) {
        *self = HeadScanner::default();
    }

    /// Feeds bytes read from the client. Returns what the head was when it
    /// ended within them.
    pub fn feed(&mut self, bytes: &[u8]) -> Option<Head> {
        if self.done {
            return None;
        }
        for &b in bytes {
            self.bytes += 1;
            if b == b'\n' {
                let line = &self.line[..self.line_len];
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if line.is_empty() && self.lines > 0 {
                    self.done = true;
                    return Some(if self.bytes > MAX_HEAD_BYTES {
                        Head::TooLarge
                    } else if self.content_length && self.transfer_encoding {
                        Head::AmbiguousFraming
                    } else {
                        Head::Fine
                    });
                }
                if !line.is_empty() {
                    self.lines += 1;
                }
                self.line_len = 0;
            } else if self.line_len < PREFIX {
                self.line[self.line_len] = b.to_ascii_lowercase();
                self.line_len += 1;
                let line = &self.line[..self.line_len];
                if self.lines > 0 {
                    self.content_length |= line == b"content-length:";
                    self.transfer_encoding |= line == b"transfer-encoding:";
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(chunks: &[&[u8]]) -> Option<Head> {
        let mut s = HeadScanner::default();
        chunks.iter().find_map(|c| s.feed(c))
    }

    #[test]
    fn finds_both_framing_headers_across_reads() {
        assert_eq!(
            scan(&[
                b"POST / HTTP/1.1\r\nContent-Len",
                b"gth: 5\r\nTRANSFER-encoding: chunked\r\n\r\n"
            ]),
            Some(Head::AmbiguousFraming)
        );
        assert_eq!(
            scan(&[b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"]),
            Some(Head::Fine)
        );
        assert_eq!(
            scan(&[b"GET / HTTP/1.1\r\nX-Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"]),
            Some(Head::Fine)
        );
        assert_eq!(scan(&[b"GET / HTTP/1.1\r\nHost: a"]), None);
    }

    #[test]
    fn ignores_the_request_line_and_leading_blank_lines() {
        assert_eq!(
            scan(&[b"\r\nGET /content-length: HTTP/1.1\r\n\r\n"]),
            Some(Head::Fine)
        );
    }

    #[test]
    fn counts_every_byte_of_the_head() {
        let line = format!("X-Filler: {}\r\n", "a".repeat(988));
        let head = |lines: usize| format!("GET / HTTP/1.1\r\n{}\r\n", line.repeat(lines));
        let big = head(80);
        let halves: Vec<&[u8]> = big.as_bytes().chunks(40_000).collect();
        assert_eq!(scan(&halves), Some(Head::TooLarge));
        assert_eq!(scan(&[head(60).as_bytes()]), Some(Head::Fine));
        let exact = format!(
            "GET / HTTP/1.1\r\nX: {}\r\n\r\n",
            "a".repeat(MAX_HEAD_BYTES - 23)
        );
        assert_eq!(exact.len(), MAX_HEAD_BYTES);
        assert_eq!(scan(&[exact.as_bytes()]), Some(Head::Fine));
        let over = format!("{}a\r\n\r\n", exact.trim_end());
        assert_eq!(scan(&[over.as_bytes()]), Some(Head::TooLarge));
    }
}
