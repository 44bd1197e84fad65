//! Follows the raw bytes of an HTTP/1 connection's requests — heads, and the
//! bodies between them skipped by their framing — and watches the heads for
//! what hyper lets through quietly:
//! - a header block carrying both Content-Length and Transfer-Encoding.
//!   hyper resolves that shape safely, but silently; thrust refuses it with
//!   400, as a front server should, so a smuggling attempt is visible and
//!   never forwarded;
//! - a head longer than `MAX_HEAD_BYTES`. hyper checks its buffer limit only
//!   while a head is incomplete, so a large head that arrives in few reads
//!   is parsed whole; thrust refuses it with 431.
//!
//! Bodies are skipped by their own framing, not by watching hyper: when
//! thrust answers before reading a body (a redirect, a 413), hyper may still
//! read the body after the answer, and those bytes are not a new head.

/// Largest request head accepted, request line included.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Longest header-name prefix the scanner needs to recognise.
const PREFIX: usize = 18;

const CONTENT_LENGTH: &[u8] = b"content-length:";
const TRANSFER_ENCODING: &[u8] = b"transfer-encoding:";
/// HTTP/2's preface as a request line, lowercased.
const HTTP2_PREFACE: &[u8] = b"pri * http/2.0";

/// What a complete request head turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Head {
    Fine,
    /// Both Content-Length and Transfer-Encoding: a smuggling shape.
    AmbiguousFraming,
    /// Over `MAX_HEAD_BYTES`.
    TooLarge,
}

/// Where in the byte stream the scanner is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Place {
    /// Between requests: nothing of the next head seen yet.
    #[default]
    Between,
    /// Inside a head.
    Head,
    /// Inside a body of known length: this many bytes left.
    Body(u64),
    /// A chunked body: reading a chunk-size line (its size so far, and
    /// whether the extensions after the digits have started).
    ChunkSize(u64, bool),
    /// Inside a chunk's data: this many bytes left.
    ChunkData(u64),
    /// The line break after a chunk's data.
    ChunkEnd,
    /// The trailer section after the last chunk.
    Trailers,
    /// Framing thrust cannot follow (hyper refuses it and closes): nothing
    /// more is scanned.
    Lost,
}

#[derive(Default)]
pub struct HeadScanner {
    place: Place,
    line: [u8; PREFIX],
    line_len: usize,
    lines: usize,
    bytes: usize,
    content_length: Option<u64>,
    /// The value being read is Content-Length's, and is still digits.
    in_length: bool,
    transfer_encoding: bool,
    /// The last bytes of Transfer-Encoding's value, to see whether the
    /// final coding is `chunked`.
    coding_tail: [u8; 7],
    malformed_length: bool,
    http2: bool,
    /// The line's start rules out all the scanner looks for: the rest of
    /// it is counted, not read byte by byte.
    skip_line: bool,
}

impl HeadScanner {
    /// No request is partly read: the next byte would begin a head.
    pub fn between_requests(&self) -> bool {
        self.place == Place::Between
    }

    /// A head has begun and not ended.
    pub fn in_head(&self) -> bool {
        self.place == Place::Head
    }

    /// Feeds bytes read from the client; `on_head` hears what each head
    /// that ends in them was, in order. True when a new head began in them.
    pub fn feed(&mut self, bytes: &[u8], mut on_head: impl FnMut(Head)) -> bool {
        let mut head_began = false;
        let mut rest = bytes;
        while let Some((&b, after)) = rest.split_first() {
            match self.place {
                Place::Lost => break,
                // Bodies are skipped whole, not byte by byte.
                Place::Body(left) | Place::ChunkData(left) => {
                    let skipped = left.min(rest.len() as u64);
                    rest = &rest[skipped as usize..];
                    let left = left - skipped;
                    self.place = match (self.place, left) {
                        (Place::Body(_), 0) => Place::Between,
                        (Place::Body(_), _) => Place::Body(left),
                        (_, 0) => Place::ChunkEnd,
                        _ => Place::ChunkData(left),
                    };
                    continue;
                }
                Place::Between => {
                    // Blank lines before a request line are allowed.
                    if b != b'\r' && b != b'\n' {
                        *self = HeadScanner {
                            place: Place::Head,
                            ..HeadScanner::default()
                        };
                        head_began = true;
                        continue;
                    }
                }
                Place::Head if self.skip_line && b != b'\n' => {
                    let skipped = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
                    self.bytes += skipped;
                    rest = &rest[skipped..];
                    continue;
                }
                Place::Head => {
                    if let Some(head) = self.head_byte(b) {
                        on_head(head);
                    }
                }
                Place::ChunkSize(size, extension) => self.chunk_size_byte(b, size, extension),
                Place::ChunkEnd => {
                    if b == b'\n' {
                        self.place = Place::ChunkSize(0, false);
                    }
                }
                Place::Trailers => {
                    if b == b'\n' {
                        if self.line_len == 0 {
                            self.place = Place::Between;
                        }
                        self.line_len = 0;
                    } else if b != b'\r' {
                        self.line_len = 1;
                    }
                }
            }
            rest = after;
        }
        head_began
    }

    /// One byte of a head; what the head was when it ends here.
    fn head_byte(&mut self, b: u8) -> Option<Head> {
        self.bytes += 1;
        if b == b'\n' {
            let line = &self.line[..self.line_len];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() && self.lines > 0 {
                return Some(self.end_of_head());
            }
            if self.lines == 0 && line == HTTP2_PREFACE {
                // HTTP/2's preface: what follows is frames, not HTTP/1.
                self.http2 = true;
            }
            if !line.is_empty() {
                self.lines += 1;
            }
            self.line_len = 0;
            self.in_length = false;
            self.skip_line = false;
            return None;
        }
        if self.line_len < PREFIX {
            self.line[self.line_len] = b.to_ascii_lowercase();
            self.line_len += 1;
            let name = &self.line[..self.line_len];
            let may_matter = if self.lines == 0 {
                HTTP2_PREFACE.starts_with(name)
            } else {
                CONTENT_LENGTH.starts_with(name) || TRANSFER_ENCODING.starts_with(name)
            };
            // A line that is `\r` so far may yet be the blank one ending the head.
            if !may_matter && !self.in_length && b != b'\r' {
                self.skip_line = true;
                return None;
            }
            if self.lines > 0 {
                if name == CONTENT_LENGTH {
                    self.in_length = true;
                    self.malformed_length |= self.content_length.is_some();
                    self.content_length = Some(0);
                    return None;
                }
                if name == TRANSFER_ENCODING {
                    self.transfer_encoding = true;
                    self.coding_tail = [0; 7];
                    return None;
                }
            }
        }
        let name = &self.line[..self.line_len.min(PREFIX)];
        if self.in_length {
            match b {
                b'0'..=b'9' => {
                    let length = self.content_length.unwrap_or(0);
                    self.content_length = Some(
                        length
                            .saturating_mul(10)
                            .saturating_add(u64::from(b - b'0')),
                    );
                }
                b' ' | b'\t' | b'\r' => {}
                _ => self.malformed_length = true,
            }
        } else if name.starts_with(TRANSFER_ENCODING) && !matches!(b, b' ' | b'\t' | b'\r') {
            self.coding_tail.rotate_left(1);
            self.coding_tail[6] = b.to_ascii_lowercase();
        }
        None
    }

    /// Judges the head that just ended and moves on to its body.
    fn end_of_head(&mut self) -> Head {
        let head = if self.bytes > MAX_HEAD_BYTES {
            Head::TooLarge
        } else if self.content_length.is_some() && self.transfer_encoding {
            Head::AmbiguousFraming
        } else {
            Head::Fine
        };
        self.place = match (self.content_length, self.transfer_encoding) {
            _ if head != Head::Fine || self.malformed_length || self.http2 => Place::Lost,
            (None, true) if &self.coding_tail == b"chunked" => Place::ChunkSize(0, false),
            // A request whose final coding is not chunked is refused.
            (None, true) => Place::Lost,
            (Some(0), _) | (None, false) => Place::Between,
            (Some(length), _) => Place::Body(length),
        };
        self.line_len = 0;
        head
    }

    fn chunk_size_byte(&mut self, b: u8, size: u64, extension: bool) {
        let digit = (b as char).to_digit(16);
        self.place = match (b, digit) {
            (b'\n', _) if size == 0 => {
                self.line_len = 0;
                Place::Trailers
            }
            (b'\n', _) => Place::ChunkData(size),
            (_, Some(d)) if !extension => {
                if size > u64::MAX >> 4 {
                    Place::Lost
                } else {
                    Place::ChunkSize(size << 4 | u64::from(d), false)
                }
            }
            _ => Place::ChunkSize(size, true),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(chunks: &[&[u8]]) -> Option<Head> {
        let mut s = HeadScanner::default();
        let mut found = Vec::new();
        for chunk in chunks {
            s.feed(chunk, |head| found.push(head));
        }
        found.first().copied()
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

    /// Every head a connection's bytes hold, fed in pieces of `piece` bytes.
    fn heads(stream: &[u8], piece: usize) -> (usize, Vec<Head>, bool) {
        let mut s = HeadScanner::default();
        let (mut began, mut heads) = (0, Vec::new());
        for part in stream.chunks(piece) {
            began += usize::from(s.feed(part, |head| heads.push(head)));
        }
        (began, heads, s.between_requests())
    }

    #[test]
    fn lines_skipped_for_their_start_leave_the_framing_headers_seen() {
        // Lines ruled out at their first bytes (Cookie and Connection share
        // Content-Length's first letter, Trailer Transfer-Encoding's),
        // long ones, and a line of a lone CR before the head's end.
        let filler = format!("User-Agent: {}\r\n", "x".repeat(3000));
        let framed = format!(
            "POST /a HTTP/1.1\r\n{filler}Cookie: a=1\r\nConnection: keep-alive\r\n\
             Content-Length: 12\r\nTrailer: x\r\n\r\nhello world!GET /b HTTP/1.1\r\n\r\n"
        );
        let smuggle = format!(
            "POST /a HTTP/1.1\r\n{filler}Content-Length: 5\r\nTrAnSfEr-Encoding: chunked\r\n\r\n"
        );
        let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        for piece in [1, 2, 3, 7, 64, 4096, 1 << 20] {
            let (_, found, between) = heads(framed.as_bytes(), piece);
            assert_eq!(
                (found, between),
                (vec![Head::Fine, Head::Fine], true),
                "{piece}"
            );
            assert_eq!(
                heads(smuggle.as_bytes(), piece).1,
                vec![Head::AmbiguousFraming],
                "{piece}"
            );
            // Frames follow HTTP/2's preface: nothing more is scanned.
            assert_eq!(
                heads(preface, piece),
                (1, vec![Head::Fine], false),
                "{piece}"
            );
        }
    }

    #[test]
    fn bodies_are_skipped_by_their_framing() {
        // A body that looks like a smuggled head, then a chunked body with
        // an extension and a trailer, then a plain GET.
        let lookalike =
            b"GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut stream = format!(
            "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            lookalike.len()
        )
        .into_bytes();
        stream.extend_from_slice(lookalike);
        stream.extend_from_slice(
            b"POST /b HTTP/1.1\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n\
              18;name=value\r\nGET / HTTP/1.1\r\nX: y\r\n\r\n\r\n\
              0\r\nX-Trailer: 1\r\n\r\n\
              GET /c HTTP/1.1\r\n\r\n",
        );
        // Whatever the pieces, every head is heard, in order.
        for piece in [1, 2, 7, 40, stream.len()] {
            let (began, found, between) = heads(&stream, piece);
            assert_eq!(
                (found, between),
                (vec![Head::Fine; 3], true),
                "pieces of {piece}"
            );
            // Pieces that hold at most one head's start count each start.
            if piece <= 40 {
                assert_eq!(began, 3, "pieces of {piece}");
            }
        }
        let (_, _, between) = heads(&stream[..stream.len() - 3], 5);
        assert!(!between, "inside the last head");
    }

    #[test]
    fn framing_it_cannot_follow_stops_the_scan() {
        for stream in [
            &b"POST / HTTP/1.1\r\nContent-Length: 5x\r\n\r\nGET / HTTP/1.1\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\nGET / HTTP/1.1\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\nGET / HTTP/1.1\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00",
        ] {
            let (began, heads, _) = heads(stream, 3);
            assert_eq!(began, 1, "{}", String::from_utf8_lossy(stream));
            assert_eq!(heads.len(), 1);
        }
    }
}
