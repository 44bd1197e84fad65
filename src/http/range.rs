//! The `Range` request header (RFC 9110 §14.2), single ranges only: a
//! multi-range request is answered with the whole representation, which the
//! RFC allows and which avoids multipart bodies.

/// What a Range header asks of a representation of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable Range: answer with the whole representation.
    Whole,
    /// Bytes `start..=end`.
    Part { start: u64, end: u64 },
    /// A syntactically valid range that selects nothing: 416.
    Unsatisfiable,
}

/// Digits only, saturating at u64::MAX so hostile lengths cannot overflow.
fn number(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.bytes().fold(0u64, |n, b| {
        n.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    }))
}

pub fn parse(header: Option<&str>, size: u64) -> RangeRequest {
    let Some(header) = header else {
        return RangeRequest::Whole;
    };
    let Some((unit, spec)) = header.trim().split_once('=') else {
        return RangeRequest::Whole;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
        return RangeRequest::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // Suffix: the last N bytes.
        return match number(last) {
            None => RangeRequest::Whole,
            Some(0) => RangeRequest::Unsatisfiable,
            Some(_) if size == 0 => RangeRequest::Unsatisfiable,
            Some(n) => RangeRequest::Part {
                start: size.saturating_sub(n),
                end: size - 1,
            },
        };
    }
    let Some(start) = number(first) else {
        return RangeRequest::Whole;
    };
    let end = if last.is_empty() {
        u64::MAX
    } else {
        match number(last) {
            Some(end) if end >= start => end,
            _ => return RangeRequest::Whole,
        }
    };
    if start >= size {
        return RangeRequest::Unsatisfiable;
    }
    RangeRequest::Part {
        start,
        end: end.min(size - 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RangeRequest::*;

    #[test]
    fn single_ranges() {
        assert_eq!(parse(Some("bytes=0-99"), 1000), Part { start: 0, end: 99 });
        assert_eq!(
            parse(Some("bytes=500-"), 1000),
            Part {
                start: 500,
                end: 999
            }
        );
        assert_eq!(
            parse(Some("bytes=-100"), 1000),
            Part {
                start: 900,
                end: 999
            }
        );
        assert_eq!(
            parse(Some("bytes=-5000"), 1000),
            Part { start: 0, end: 999 }
        );
        assert_eq!(
            parse(Some("bytes=900-5000"), 1000),
            Part {
                start: 900,
                end: 999
            }
        );
        assert_eq!(parse(Some("Bytes = 1-1"), 1000), Part { start: 1, end: 1 });
    }

    #[test]
    fn unsatisfiable_ranges() {
        assert_eq!(parse(Some("bytes=1000-"), 1000), Unsatisfiable);
        assert_eq!(parse(Some("bytes=-0"), 1000), Unsatisfiable);
        assert_eq!(parse(Some("bytes=0-"), 0), Unsatisfiable);
        assert_eq!(parse(Some("bytes=-1"), 0), Unsatisfiable);
    }

    #[test]
    fn hostile_or_unsupported_input_means_the_whole_file() {
        for header in [
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes",
            "bytes=",
            "bytes=-",
            "bytes=a-b",
            "bytes=5-1",
            "bytes=--1",
            "bytes=+1-2",
            "bytes=1-2-3",
            "bytes=٣-4",
            "bytes= 0x10-20",
        ] {
            assert_eq!(parse(Some(header), 1000), Whole, "{header}");
        }
        assert_eq!(parse(None, 1000), Whole);
    }

    #[test]
    fn huge_numbers_saturate() {
        assert_eq!(
            parse(Some("bytes=99999999999999999999999999-"), 1000),
            Unsatisfiable
        );
        assert_eq!(
            parse(Some("bytes=0-99999999999999999999999999"), 1000),
            Part { start: 0, end: 999 }
        );
        assert_eq!(
            parse(Some("bytes=-99999999999999999999999999"), 1000),
            Part { start: 0, end: 999 }
        );
    }
}
