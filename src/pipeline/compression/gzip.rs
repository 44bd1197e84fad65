//! gzip (RFC 1952) written by thrust around a raw deflate stream, so that
//! the deflate state can be kept and reused: zlib-rs's state is several
//! large buffers, and building and dropping it for every response left the
//! allocator holding ten times the bytes in use (benches/RESULTS.md, "Pages
//! compressed on the fly"). Each thread keeps a few states, reset between
//! responses; a reset state starts with empty match tables, so nothing of
//! one response can be referenced by the next.

use std::cell::RefCell;
use std::io;

use flate2::{Compress, Compression, Crc, FlushCompress, Status};

/// Deflate states a thread keeps for the next responses.
const KEPT_PER_THREAD: usize = 4;
/// zlib's default, as nginx's gzip_comp_level is usually set.
const LEVEL: u32 = 6;

thread_local! {
    static KEPT: RefCell<Vec<Compress>> = const { RefCell::new(Vec::new()) };
}

/// One response's gzip stream.
pub struct GzipStream {
    /// Always Some until dropped (taken back to the thread's states then).
    deflate: Option<Compress>,
    crc: Crc,
    /// The header, sent before the first compressed bytes.
    header: Vec<u8>,
}

impl GzipStream {
    /// A stream with `padding` bytes of header comment (BREACH padding; a
    /// comment is followed by a NUL, so it adds `padding + 1`).
    pub fn new(padding: usize) -> Self {
        let deflate = KEPT
            .with(|kept| kept.borrow_mut().pop())
            .unwrap_or_else(|| Compress::new(Compression::new(LEVEL), false));
        const FCOMMENT: u8 = 0x10;
        const OS_UNKNOWN: u8 = 255;
        let flags = if padding > 0 { FCOMMENT } else { 0 };
        // Magic, deflate, flags, no modification time, no extra flags, OS.
        let mut header = vec![0x1f, 0x8b, 8, flags, 0, 0, 0, 0, 0, OS_UNKNOWN];
        if padding > 0 {
            header.resize(header.len() + padding, b' ');
            header.push(0);
        }
        GzipStream {
            deflate: Some(deflate),
            crc: Crc::new(),
            header,
        }
    }

    /// Compresses `data` and flushes it to a byte boundary (a client can
    /// decode everything sent so far); returns the bytes to send.
    pub fn chunk(&mut self, data: &[u8]) -> io::Result<Vec<u8>> {
        self.crc.update(data);
        let mut out = std::mem::take(&mut self.header);
        self.deflate(data, &mut out, FlushCompress::Sync)?;
        Ok(out)
    }

    /// Ends the stream: the last deflate block and the trailer (CRC-32 and
    /// length, little-endian).
    pub fn finish(mut self) -> io::Result<Vec<u8>> {
        let mut out = std::mem::take(&mut self.header);
        self.deflate(&[], &mut out, FlushCompress::Finish)?;
        out.extend_from_slice(&self.crc.sum().to_le_bytes());
        out.extend_from_slice(&self.crc.amount().to_le_bytes());
        Ok(out)
    }

    fn deflate(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<u8>,
        flush: FlushCompress,
    ) -> io::Result<()> {
        let Some(deflate) = self.deflate.as_mut() else {
            return Err(io::Error::other("gzip stream already ended"));
        };
        loop {
            out.reserve(input.len() / 2 + 256);
            let read_before = deflate.total_in();
            let status = deflate
                .compress_vec(input, out, flush)
                .map_err(io::Error::other)?;
            let read = usize::try_from(deflate.total_in() - read_before).unwrap_or(input.len());
            input = &input[read.min(input.len())..];
            let done = match status {
                Status::StreamEnd => true,
                // A flush is complete once deflate leaves output room unused.
                Status::Ok | Status::BufError => {
                    !matches!(flush, FlushCompress::Finish)
                        && input.is_empty()
                        && out.len() < out.capacity()
                }
            };
            if done {
                return Ok(());
            }
        }
    }
}

impl Drop for GzipStream {
    fn drop(&mut self) {
        if let Some(mut deflate) = self.deflate.take() {
            deflate.reset();
            KEPT.with(|kept| {
                let mut kept = kept.borrow_mut();
                if kept.len() < KEPT_PER_THREAD {
                    kept.push(deflate);
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn a_kept_state_starts_each_response_clean() {
        // A response abandoned mid-stream (its client left) gives its state
        // back; the next one on this thread decodes to its own bytes only,
        // and its CRC and length cover only them.
        let mut abandoned = GzipStream::new(0);
        abandoned
            .chunk(b"secret=1234567890 ".repeat(50).as_slice())
            .unwrap();
        drop(abandoned);
        for round in 0..3 {
            let body = format!("response {round}: ").repeat(200);
            let mut stream = GzipStream::new(round);
            let mut sent = stream.chunk(body.as_bytes()).unwrap();
            sent.extend_from_slice(&stream.finish().unwrap());
            assert_eq!(gunzip(&sent), body.as_bytes(), "round {round}");
        }
    }

    #[test]
    fn large_and_empty_bodies_round_trip() {
        let large: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        for body in [&large[..], &[][..]] {
            let mut stream = GzipStream::new(7);
            let mut sent = stream.chunk(body).unwrap();
            sent.extend_from_slice(&stream.finish().unwrap());
            assert_eq!(gunzip(&sent), body);
        }
    }
}
