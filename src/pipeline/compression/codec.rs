//! Response encoders (gzip, brotli, zstd) that compress a body chunk by
//! chunk, flushing after each so a streamed response (server-sent events)
//! stays live, and that add BREACH padding in each format's own way:
//! gzip a header comment, zstd a skippable frame, brotli a metadata block.

use std::hash::{BuildHasher, Hash};
use std::io::Write;

use bytes::Bytes;

use super::gzip::GzipStream;
use crate::config::Encoding;

const BROTLI_QUALITY: u32 = 5;
const ZSTD_LEVEL: i32 = 3;
/// Window for a body of unknown length: 256 KiB matches nearly all of what
/// a typical response can use, at a fraction of the default's memory.
const UNKNOWN_SIZE_WINDOW_LOG: u32 = 18;

/// The smallest window (log2 bytes) that covers a body of `size` bytes:
/// encoder memory follows the window, and a small response needs no 4 MiB one.
fn window_log(size: Option<u64>) -> u32 {
    match size {
        Some(size) => (64 - size.max(1).leading_zeros()).clamp(10, 22),
        None => UNKNOWN_SIZE_WINDOW_LOG,
    }
}

/// The brotli crate has no hasher of its own for qualities 5 to 9 with a
/// window of 64 KiB or less (C brotli's H40–H42) and falls back to one with
/// a 32 MiB table, most of it written for even a 10 KB body: 10.8 ms and
/// tens of MiB of RSS per compression instead of 0.38 ms (benches/hot_paths.rs,
/// "compress a cached 10 KB variant"). A 128 KiB window
/// keeps it on its H5 hasher (1 MiB) and changes nothing for a small body.
const BROTLI_SMALLEST_WINDOW_LOG: u32 = 17;

/// Padding lengths derived from content with a key chosen at start-up, so the
/// same content always gets the same padding (repeating a request cannot
/// average it away) while other contents get other lengths.
pub struct Jitter {
    key: std::collections::hash_map::RandomState,
    max: u32,
}

impl Jitter {
    pub fn new(max: u32) -> Self {
        Jitter {
            key: std::collections::hash_map::RandomState::new(),
            max,
        }
    }

    /// 1..=max bytes for this content (0 when jitter is off).
    pub fn padding(&self, content: impl Hash) -> usize {
        if self.max == 0 {
            return 0;
        }
        1 + (self.key.hash_one(content) % u64::from(self.max)) as usize
    }
}

enum Codec {
    Gzip(GzipStream),
    Brotli(Box<brotli::CompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

/// One response's encoder.
pub struct Compressor {
    codec: Codec,
    /// Brotli padding waits for the first flush, which leaves the stream
    /// byte-aligned at a meta-block boundary.
    brotli_padding: usize,
}

impl Compressor {
    /// A new encoder; `padding` bytes of jitter go into the output;
    /// `size` is the body's length when known.
    pub fn new(encoding: Encoding, padding: usize, size: Option<u64>) -> std::io::Result<Self> {
        let window = window_log(size);
        let (codec, brotli_padding) = match encoding {
            Encoding::Gzip => (Codec::Gzip(GzipStream::new(padding)), 0),
            Encoding::Brotli => {
                let writer = brotli::CompressorWriter::new(
                    Vec::new(),
                    16 * 1024,
                    BROTLI_QUALITY,
                    window.max(BROTLI_SMALLEST_WINDOW_LOG),
                );
                (Codec::Brotli(Box::new(writer)), padding)
            }
            Encoding::Zstd => {
                let mut out = Vec::new();
                skippable_frame(&mut out, padding);
                (
                    Codec::Zstd(zstd::stream::write::Encoder::new(out, ZSTD_LEVEL)?),
                    0,
                )
            }
        };
        Ok(Compressor {
            codec,
            brotli_padding,
        })
    }

    /// Compresses a chunk and flushes; returns the bytes ready to send.
    pub fn chunk(&mut self, data: &[u8]) -> std::io::Result<Bytes> {
        let out = match &mut self.codec {
            Codec::Gzip(stream) => return Ok(Bytes::from(stream.chunk(data)?)),
            Codec::Brotli(w) => {
                w.write_all(data)?;
                w.flush()?;
                let out = w.get_mut();
                if self.brotli_padding > 0 && !data.is_empty() {
                    metadata_blocks(out, self.brotli_padding);
                    self.brotli_padding = 0;
                }
                out
            }
            Codec::Zstd(w) => {
                w.write_all(data)?;
                w.flush()?;
                w.get_mut()
            }
        };
        Ok(Bytes::from(std::mem::take(out)))
    }

    /// Ends the stream; returns its last bytes.
    pub fn finish(self) -> std::io::Result<Bytes> {
        let out = match self.codec {
            Codec::Gzip(stream) => stream.finish()?,
            Codec::Brotli(w) => w.into_inner(),
            Codec::Zstd(w) => w.finish()?,
        };
        Ok(Bytes::from(out))
    }
}

/// Compresses a whole body at once (for cached responses).
pub fn compress_all(encoding: Encoding, body: &[u8], padding: usize) -> std::io::Result<Bytes> {
    let mut compressor = Compressor::new(encoding, padding, Some(body.len() as u64))?;
    if let Codec::Zstd(encoder) = &mut compressor.codec {
        // The exact size lets zstd shrink its tables to the body, not just its window.
        encoder.set_pledged_src_size(Some(body.len() as u64))?;
    }
    let mut out = compressor.chunk(body)?.to_vec();
    out.extend_from_slice(&compressor.finish()?);
    // Kept for the entry's lifetime: no spare capacity.
    out.shrink_to_fit();
    Ok(Bytes::from(out))
}

/// A zstd skippable frame: magic, little-endian length, ignored bytes.
fn skippable_frame(out: &mut Vec<u8>, padding: usize) {
    if padding == 0 {
        return;
    }
    out.extend_from_slice(&0x184D_2A50u32.to_le_bytes());
    out.extend_from_slice(&(padding as u32).to_le_bytes());
    out.resize(out.len() + padding, 0);
}

/// Brotli metadata meta-blocks (RFC 7932 §9.2) adding exactly `padding`
/// bytes. A block is ISLAST=0, MNIBBLES=0 (code 3), a reserved 0 bit and
/// MSKIPBYTES, zero bits to the byte boundary, then the skipped bytes: with
/// MSKIPBYTES=0 it is one byte long; with MSKIPBYTES=1 it is two header bytes
/// (MSKIPLEN-1 in 8 bits) and 1..=256 skipped bytes.
fn metadata_blocks(out: &mut Vec<u8>, padding: usize) {
    let mut left = padding;
    while left > 0 {
        if left < 3 {
            out.push(0b0000_0110);
            left -= 1;
            continue;
        }
        let skipped = (left - 2).min(256);
        let code = (skipped - 1) as u8;
        out.push(0b0001_0110 | ((code & 0b11) << 6));
        out.push(code >> 2);
        out.resize(out.len() + skipped, 0);
        left -= skipped + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn decode(encoding: Encoding, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match encoding {
            Encoding::Gzip => {
                flate2::read::GzDecoder::new(bytes)
                    .read_to_end(&mut out)
                    .unwrap();
            }
            Encoding::Brotli => {
                brotli::Decompressor::new(bytes, 4096)
                    .read_to_end(&mut out)
                    .unwrap();
            }
            Encoding::Zstd => {
                out = zstd::stream::decode_all(bytes).unwrap();
            }
        }
        out
    }

    const ALL: [Encoding; 3] = [Encoding::Gzip, Encoding::Brotli, Encoding::Zstd];

    /// Bytes that `padding` adds to each format: gzip's comment ends in a NUL,
    /// zstd's skippable frame has an 8-byte header, brotli's blocks are exact.
    fn framing(encoding: Encoding, padding: usize) -> usize {
        match (encoding, padding) {
            (_, 0) => 0,
            (Encoding::Gzip, p) => p + 1,
            (Encoding::Zstd, p) => p + 8,
            (Encoding::Brotli, p) => p,
        }
    }

    #[test]
    fn chunked_output_decodes_for_every_padding() {
        let text = "the quick brown fox jumps over the lazy dog. ".repeat(100);
        for encoding in ALL {
            for padding in [0, 1, 2, 3, 31, 256, 257, 258, 259, 1000] {
                let mut compressor = Compressor::new(encoding, padding, None).unwrap();
                let mut out = Vec::new();
                for chunk in text.as_bytes().chunks(700) {
                    out.extend_from_slice(&compressor.chunk(chunk).unwrap());
                }
                out.extend_from_slice(&compressor.finish().unwrap());
                assert_eq!(
                    decode(encoding, &out),
                    text.as_bytes(),
                    "{encoding:?} padding {padding}"
                );
                let plain = compress_all(encoding, text.as_bytes(), 0).unwrap();
                let padded = compress_all(encoding, text.as_bytes(), padding).unwrap();
                assert_eq!(
                    padded.len() - plain.len(),
                    framing(encoding, padding),
                    "{encoding:?} {padding}"
                );
            }
        }
    }

    #[test]
    fn each_chunk_is_decodable_when_it_is_sent() {
        // What a client has after each flush decodes to everything sent so far.
        for encoding in [Encoding::Gzip, Encoding::Zstd] {
            let mut compressor = Compressor::new(encoding, 5, Some(11)).unwrap();
            let mut sent = compressor.chunk(b"data: one\n\n").unwrap().to_vec();
            let mut partial = Vec::new();
            match encoding {
                Encoding::Gzip => {
                    let _ = flate2::read::GzDecoder::new(sent.as_slice()).read_to_end(&mut partial);
                }
                _ => {
                    let mut decoder = zstd::stream::read::Decoder::new(sent.as_slice()).unwrap();
                    let _ = decoder.read_to_end(&mut partial);
                }
            }
            assert_eq!(partial, b"data: one\n\n", "{encoding:?}");
            sent.extend_from_slice(&compressor.finish().unwrap());
        }
    }

    #[test]
    fn padding_is_stable_per_content_and_bounded() {
        let jitter = Jitter::new(32);
        let a = jitter.padding("/page?q=1");
        assert_eq!(a, jitter.padding("/page?q=1"));
        assert!((1..=32).contains(&a));
        let lengths: std::collections::HashSet<usize> =
            (0..200).map(|i| jitter.padding(i)).collect();
        assert!(lengths.len() > 10, "padding should vary with content");
        assert_eq!(Jitter::new(0).padding("x"), 0);
    }
}
