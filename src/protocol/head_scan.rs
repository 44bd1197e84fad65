//! Watches the raw bytes of HTTP/1 request heads for a header block that
//! carries both Content-Length and Transfer-Encoding. hyper resolves that
//! shape safely, but quietly; thrust refuses it with 400 instead, as a front
//! server should, so a smuggling attempt is visible and never forwarded.

/// Longest header-name prefix the scanner needs to recognise.
const PREFIX: usize = 18;

#[derive(Default)]
pub struct HeadScanner {
    line: [u8; PREFIX],
    line_len: usize,
    lines: usize,
    content_length: bool,
    transfer_encoding: bool,
    done: bool,
}

impl HeadScanner {
    /// Starts watching for a new request head.
    pub fn restart(&mut self) {
        *self = HeadScanner::default();
    }

    /// Feeds bytes read from the client. Returns `Some(ambiguous)` when the
    /// head ended within them.
    pub fn feed(&mut self, bytes: &[u8]) -> Option<bool> {
        if self.done {
            return None;
        }
        for &b in bytes {
            if b == b'\n' {
                let line = &self.line[..self.line_len];
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if line.is_empty() && self.lines > 0 {
                    self.done = true;
                    return Some(self.content_length && self.transfer_encoding);
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

    fn scan(chunks: &[&[u8]]) -> Option<bool> {
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
            Some(true)
        );
        assert_eq!(
            scan(&[b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"]),
            Some(false)
        );
        assert_eq!(
            scan(&[b"GET / HTTP/1.1\r\nX-Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"]),
            Some(false)
        );
        assert_eq!(scan(&[b"GET / HTTP/1.1\r\nHost: a"]), None);
    }

    #[test]
    fn ignores_the_request_line_and_leading_blank_lines() {
        assert_eq!(
            scan(&[b"\r\nGET /content-length: HTTP/1.1\r\n\r\n"]),
            Some(false)
        );
    }
}
