//! Writing one JSON log line by hand: into a buffer the thread keeps, with
//! the time's text made once per second, so a line costs no allocation.
//! Keys are written as given; values are escaped as JSON strings requires,
//! and bytes that are not UTF-8 become U+FFFD.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

struct Scratch {
    line: Vec<u8>,
    /// The second `prefix` spells, and "YYYY-MM-DDTHH:MM:SS." for it.
    second: u64,
    prefix: Vec<u8>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = const {
        RefCell::new(Scratch { line: Vec::new(), second: u64::MAX, prefix: Vec::new() })
    };
}

/// A line being written: fields go after `time`, `level` and `msg`.
pub struct Line<'a> {
    out: &'a mut Vec<u8>,
}

/// Writes `text` as the inside of a JSON string: quotes, backslashes and
/// control characters (and DEL, which terminals act on) escaped.
/// `text` is UTF-8.
fn escaped(out: &mut Vec<u8>, text: &[u8]) {
    let mut rest = text;
    while let Some(at) = first_to_escape(rest) {
        out.extend_from_slice(&rest[..at]);
        match rest[at] {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            other => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX_DIGITS[usize::from(other >> 4)]);
                out.push(HEX_DIGITS[usize::from(other & 0xf)]);
            }
        }
        rest = &rest[at + 1..];
    }
    out.extend_from_slice(rest);
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Where the first byte `escaped` must escape is, looked for eight bytes at
/// a time: a request's line is mostly paths and header values with nothing
/// to escape, and a byte at a time was 2.5% of a request's instructions.
fn first_to_escape(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    // A byte's high bit is set in `below(word, n)` when it is below `n`
    // (n <= 0x80), and possibly in the bytes after a byte that is, as the
    // borrow runs on: the lowest one set is always right. Bytes of 0x80 and
    // above (UTF-8 beyond ASCII) are never set.
    let below = |word: u64, n: u8| word.wrapping_sub(ONES * u64::from(n)) & !word & HIGHS;
    let equal = |word: u64, b: u8| below(word ^ (ONES * u64::from(b)), 1);
    let first = |eight: [u8; 8]| {
        let word = u64::from_le_bytes(eight);
        let hits = below(word, 0x20) | equal(word, b'"') | equal(word, b'\\') | equal(word, 0x7f);
        (hits != 0).then(|| hits.trailing_zeros() as usize / 8)
    };
    let mut chunks = bytes.chunks_exact(8);
    let mut offset = 0;
    for chunk in &mut chunks {
        let mut eight = [0; 8];
        eight.copy_from_slice(chunk);
        if let Some(at) = first(eight) {
            return Some(offset + at);
        }
        offset += 8;
    }
    // The last few bytes as one more word, filled out with a byte never
    // escaped: most values (methods, versions, short paths) are all tail.
    let tail = chunks.remainder();
    if tail.is_empty() {
        return None;
    }
    let mut eight = [b'a'; 8];
    eight[..tail.len()].copy_from_slice(tail);
    first(eight).map(|at| offset + at)
}

/// A field's key as the line spells it.
pub trait Key {
    /// Writes `,"key":`.
    fn write(self, out: &mut Vec<u8>);
}

impl Key for &str {
    fn write(self, out: &mut Vec<u8>) {
        out.extend_from_slice(b",\"");
        out.extend_from_slice(self.as_bytes());
        out.extend_from_slice(b"\":");
    }
}

/// A key spelled `,"key":` at compile time (`spelled!`), written in one
/// copy: the request line's seventeen keys were 900 instructions a request
/// as three copies each.
pub struct Spelled(pub &'static str);

impl Key for Spelled {
    fn write(self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.0.as_bytes());
    }
}

/// `spelled!("path")` is the key `,"path":`.
macro_rules! spelled {
    ($key:literal) => {
        $crate::log::json::Spelled(concat!(",\"", $key, "\":"))
    };
}
pub(crate) use spelled;

impl Line<'_> {
    pub fn text(&mut self, key: impl Key, value: &str) -> &mut Self {
        self.quoted(key, value.as_bytes())
    }

    /// Bytes from the wire (header values): UTF-8 as it is, anything else lossily.
    pub fn bytes(&mut self, key: impl Key, value: &[u8]) -> &mut Self {
        // Header values are ASCII but for rare obs-text: checked first, as
        // a full UTF-8 check costs more than the value's escaping.
        if value.is_ascii() {
            return self.quoted(key, value);
        }
        match std::str::from_utf8(value) {
            Ok(text) => self.text(key, text),
            Err(_) => self.text(key, &String::from_utf8_lossy(value)),
        }
    }

    /// A string field; `utf8` is valid UTF-8.
    fn quoted(&mut self, key: impl Key, utf8: &[u8]) -> &mut Self {
        key.write(self.out);
        self.out.push(b'"');
        escaped(self.out, utf8);
        self.out.push(b'"');
        self
    }

    pub fn number(&mut self, key: impl Key, value: u64) -> &mut Self {
        key.write(self.out);
        self.out
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
        self
    }
}

/// "YYYY-MM-DDTHH:MM:SS.mmmZ" for now, the second's part made once per second.
fn time(scratch: &mut Scratch) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let second = now.as_secs();
    if second != scratch.second {
        scratch.second = second;
        scratch.prefix.clear();
        let whole = UNIX_EPOCH + std::time::Duration::from_secs(second);
        // "2026-12-02T07:29:37Z" without its Z.
        let text = humantime::format_rfc3339_seconds(whole).to_string();
        scratch
            .prefix
            .extend_from_slice(text.trim_end_matches('Z').as_bytes());
        scratch.prefix.push(b'.');
    }
    scratch.line.extend_from_slice(&scratch.prefix);
    let millis = now.subsec_millis();
    for digit in [millis / 100, millis / 10 % 10, millis % 10] {
        scratch.line.push(b'0' + digit as u8);
    }
    scratch.line.push(b'Z');
}

/// Starts a line in `scratch`: time, level and msg.
fn head<'a>(scratch: &'a mut Scratch, level: &str, msg: &str) -> Line<'a> {
    scratch.line.clear();
    scratch.line.extend_from_slice(b"{\"time\":\"");
    time(scratch);
    scratch.line.push(b'"');
    let mut line = Line {
        out: &mut scratch.line,
    };
    line.text(spelled!("level"), level)
        .text(spelled!("msg"), msg);
    line
}

/// Builds one line (time, level, msg, then what `fields` adds) in the
/// thread's buffer and hands it to `done`.
pub fn build(level: &str, msg: &str, fields: impl FnOnce(&mut Line), done: impl FnOnce(&[u8])) {
    SCRATCH.with(|scratch| {
        // Only a line written while writing a line could find it borrowed.
        let Ok(mut scratch) = scratch.try_borrow_mut() else {
            return;
        };
        let mut line = head(&mut scratch, level, msg);
        fields(&mut line);
        line.out.extend_from_slice(b"}\n");
        done(&scratch.line);
    })
}

/// The line the writer adds when lines were dropped.
pub fn dropped_line(out: &mut Vec<u8>, dropped: u64) {
    writer_warning(
        out,
        "Log lines dropped: stdout was not keeping up",
        |line| {
            line.number("dropped", dropped);
        },
    );
}

/// The line that reports lines a failed write to stdout lost.
pub fn lost_line(out: &mut Vec<u8>, lost: u64, error: &str) {
    writer_warning(out, "Log lines lost: writing to stdout failed", |line| {
        line.number("lost", lost).text("error", error);
    });
}

/// A warning the log writer itself adds to the lines it writes.
fn writer_warning(out: &mut Vec<u8>, msg: &str, fields: impl FnOnce(&mut Line)) {
    let mut scratch = Scratch {
        line: Vec::new(),
        second: u64::MAX,
        prefix: Vec::new(),
    };
    let mut line = head(&mut scratch, "WARN", msg);
    fields(&mut line);
    line.out.extend_from_slice(b"}\n");
    out.extend_from_slice(&scratch.line);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(fields: impl FnOnce(&mut Line)) -> serde_json::Value {
        let mut out = Vec::new();
        let mut line = Line { out: &mut out };
        line.out.push(b'{');
        line.out.extend_from_slice(b"\"first\":0");
        fields(&mut line);
        out.push(b'}');
        serde_json::from_slice(&out)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)))
    }

    #[test]
    fn values_are_escaped_into_valid_json() {
        let v = render(|l| {
            l.text("quote", "say \"hi\"\\ \n\t\u{1}\u{7f} é")
                .bytes("raw", b"ok \xff\xfe end")
                .number("n", 42);
        });
        assert_eq!(v["quote"], "say \"hi\"\\ \n\t\u{1}\u{7f} é");
        assert_eq!(v["raw"], "ok \u{fffd}\u{fffd} end");
        assert_eq!(v["n"], 42);
    }

    fn needs_escape(byte: u8) -> bool {
        byte < 0x20 || byte == b'"' || byte == b'\\' || byte == 0x7f
    }

    #[test]
    fn the_first_byte_to_escape_is_found_wherever_it_is() {
        for len in 0..20 {
            for at in 0..len {
                for byte in 0..=255u8 {
                    let mut text = vec![b'a'; len];
                    // A byte to escape after it too: the first must win.
                    if at + 2 < len {
                        text[at + 2] = b'"';
                    }
                    text[at] = byte;
                    let expected = text.iter().position(|&b| needs_escape(b));
                    assert_eq!(first_to_escape(&text), expected, "{text:?}");
                }
            }
        }
        assert_eq!(first_to_escape("é/ünïcode path".as_bytes()), None);
    }

    #[test]
    fn the_time_has_milliseconds_and_the_second_is_reused() {
        let mut scratch = Scratch {
            line: Vec::new(),
            second: u64::MAX,
            prefix: Vec::new(),
        };
        time(&mut scratch);
        let text = String::from_utf8(scratch.line.clone()).unwrap();
        assert_eq!(text.len(), "2026-12-02T07:29:37.123Z".len(), "{text}");
        assert!(humantime::parse_rfc3339(&text).is_ok(), "{text}");
        let second = scratch.second;
        scratch.line.clear();
        time(&mut scratch);
        assert!(scratch.second == second || scratch.second == second + 1);
    }
}
