//! Accept-Encoding negotiation (RFC 9110 §12.5.3): the client's q-values
//! first, the server's order (THRUST_COMPRESSION) breaking ties.

use http::{header, HeaderMap};

use crate::config::Encoding;

impl Encoding {
    pub fn token(self) -> &'static str {
        match self {
            Encoding::Zstd => "zstd",
            Encoding::Brotli => "br",
            Encoding::Gzip => "gzip",
        }
    }

    /// File extension of a precompressed sibling.
    pub fn extension(self) -> &'static str {
        match self {
            Encoding::Zstd => "zst",
            Encoding::Brotli => "br",
            Encoding::Gzip => "gz",
        }
    }
}

/// q-value in thousandths; malformed values count as 0 (not acceptable).
fn quality(params: &str) -> u16 {
    for param in params.split(';') {
        let Some((name, value)) = param.split_once('=') else {
            continue;
        };
        if !name.trim().eq_ignore_ascii_case("q") {
            continue;
        }
        let value = value.trim();
        let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
        if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
            return 0;
        }
        let thousandths: u16 = format!("{fraction:0<3}").parse().unwrap_or(0);
        return match whole {
            "1" if thousandths == 0 => 1000,
            "0" => thousandths,
            _ => 0,
        };
    }
    1000
}

/// The best encoding among `offered` (in server preference order) for a
/// request's Accept-Encoding, or None for identity.
pub fn negotiate(accept_encoding: Option<&str>, offered: &[Encoding]) -> Option<Encoding> {
    let header = accept_encoding?;
    let mut wildcard = None;
    let mut listed: Vec<(&str, u16)> = Vec::new();
    for item in header.split(',') {
        let (coding, params) = item.split_once(';').unwrap_or((item, ""));
        let coding = coding.trim();
        if coding.is_empty() {
            continue;
        }
        let q = quality(params);
        if coding == "*" {
            wildcard = Some(q);
        } else {
            listed.push((coding, q));
        }
    }
    let q_of = |encoding: Encoding| {
        listed
            .iter()
            .filter(|(coding, _)| coding.eq_ignore_ascii_case(encoding.token()))
            .map(|(_, q)| *q)
            .max()
            .or(wildcard)
            .unwrap_or(0)
    };
    let mut best: Option<(Encoding, u16)> = None;
    for &encoding in offered {
        let q = q_of(encoding);
        if q > 0 && best.is_none_or(|(_, best_q)| q > best_q) {
            best = Some((encoding, q));
        }
    }
    best.map(|(encoding, _)| encoding)
}

/// Whether any Accept-Encoding header lists `coding` by name with a
/// q-value above 0, read by the same rules as `negotiate` (a malformed q
/// is 0). The wildcard does not count: `dcz` needs a client that knows it.
pub fn lists(headers: &HeaderMap, coding: &str) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let (name, params) = item.split_once(';').unwrap_or((item, ""));
            name.trim().eq_ignore_ascii_case(coding) && quality(params) > 0
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use Encoding::*;

    const ALL: [Encoding; 3] = [Zstd, Brotli, Gzip];

    #[test]
    fn client_quality_then_server_order() {
        assert_eq!(negotiate(Some("gzip, deflate, br, zstd"), &ALL), Some(Zstd));
        assert_eq!(negotiate(Some("gzip, br"), &ALL), Some(Brotli));
        assert_eq!(negotiate(Some("gzip;q=1.0, br;q=0.5"), &ALL), Some(Gzip));
        assert_eq!(negotiate(Some("gzip"), &[Brotli]), None);
        assert_eq!(negotiate(Some("GZIP"), &ALL), Some(Gzip));
        assert_eq!(negotiate(Some("*"), &ALL), Some(Zstd));
        assert_eq!(negotiate(Some("*;q=0.5, zstd;q=0.1"), &ALL), Some(Brotli));
        assert_eq!(negotiate(Some("br;q=0, *"), &[Brotli, Gzip]), Some(Gzip));
    }

    #[test]
    fn refusals_and_hostile_input() {
        assert_eq!(negotiate(None, &ALL), None);
        assert_eq!(negotiate(Some(""), &ALL), None);
        assert_eq!(negotiate(Some("identity"), &ALL), None);
        assert_eq!(negotiate(Some("gzip;q=0"), &ALL), None);
        assert_eq!(negotiate(Some("gzip;q=0.000"), &ALL), None);
        assert_eq!(negotiate(Some("*;q=0"), &ALL), None);
        for bad in [
            "gzip;q=2",
            "gzip;q=1.5",
            "gzip;q=0.1234",
            "gzip;q=-1",
            "gzip;q=",
            "gzip;q=0.9999999999999999999",
            "gzip;q=١",
        ] {
            assert_eq!(negotiate(Some(bad), &ALL), None, "{bad}");
        }
        assert_eq!(negotiate(Some(",,,gzip,,,"), &ALL), Some(Gzip));
        assert_eq!(
            negotiate(Some("gzip;q=0.1, gzip;q=0.9, br;q=0.5"), &ALL),
            Some(Gzip)
        );
        assert_eq!(negotiate(Some(&"x, ".repeat(10_000)), &ALL), None);
    }

    #[test]
    fn a_coding_is_listed_by_the_same_q_rules() {
        let with = |values: &[&'static str]| {
            let mut headers = HeaderMap::new();
            for v in values {
                headers.append(header::ACCEPT_ENCODING, http::HeaderValue::from_static(v));
            }
            headers
        };
        assert!(lists(&with(&["gzip, dcz"]), "dcz"));
        assert!(lists(&with(&["br", "DCZ;q=0.5"]), "dcz"));
        for refused in ["dcz;q=0", "dcz;q=0.000", "dcz;q=x", "dcz;q=2", "*", "gzip"] {
            assert!(!lists(&with(&[refused]), "dcz"), "{refused}");
        }
    }
}
