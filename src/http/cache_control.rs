//! The `Cache-Control` response header, as the cache needs it.

#[derive(Debug, Default, PartialEq, Eq)]
pub struct CacheControl {
    pub public: bool,
    pub private: bool,
    pub no_store: bool,
    pub no_cache: bool,
    pub max_age: Option<u64>,
    pub s_maxage: Option<u64>,
    /// A directive appeared twice with different values, or a number was
    /// malformed: the response must not be stored.
    pub conflicting: bool,
}

/// Splits on commas outside quoted strings (`private="a, b"`), without
/// allocating: this runs for every response the app sends.
fn directives(value: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(value);
    std::iter::from_fn(move || {
        let text = rest?;
        let mut in_quotes = false;
        let mut escaped = false;
        for (i, c) in text.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if in_quotes => escaped = true,
                '"' => in_quotes = !in_quotes,
                ',' if !in_quotes => {
                    rest = Some(&text[i + 1..]);
                    return Some(&text[..i]);
                }
                _ => {}
            }
        }
        rest = None;
        Some(text)
    })
}

/// Delta-seconds: digits only (optionally quoted), saturating on overflow.
fn seconds(value: &str) -> Option<u64> {
    let value = value.trim().trim_matches('"');
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(value.bytes().fold(0u64, |n, b| {
        n.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    }))
}

impl CacheControl {
    /// Parses every Cache-Control header line of a response.
    pub fn parse<'a>(lines: impl IntoIterator<Item = &'a str>) -> Self {
        let mut cc = CacheControl::default();
        for line in lines {
            for directive in directives(line) {
                let (name, value) = match directive.split_once('=') {
                    Some((n, v)) => (n.trim(), Some(v)),
                    None => (directive.trim(), None),
                };
                let age = |slot: &mut Option<u64>, conflicting: &mut bool| match value
                    .and_then(seconds)
                {
                    Some(v) if slot.is_none_or(|old| old == v) => *slot = Some(v),
                    _ => *conflicting = true,
                };
                let is = |known: &str| name.eq_ignore_ascii_case(known);
                if is("public") {
                    cc.public = true;
                } else if is("private") {
                    cc.private = true;
                } else if is("no-store") {
                    cc.no_store = true;
                } else if is("no-cache") {
                    cc.no_cache = true;
                } else if is("max-age") {
                    age(&mut cc.max_age, &mut cc.conflicting);
                } else if is("s-maxage") {
                    age(&mut cc.s_maxage, &mut cc.conflicting);
                }
            }
        }
        cc
    }

    /// How long a shared cache may keep the response, if it may at all:
    /// `public` with a positive s-maxage (preferred) or max-age, and nothing
    /// forbidding storage.
    pub fn shared_lifetime(&self) -> Option<u64> {
        if !self.public || self.private || self.no_store || self.no_cache || self.conflicting {
            return None;
        }
        self.s_maxage
            .or(self.max_age)
            .filter(|seconds| *seconds > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lifetime(value: &str) -> Option<u64> {
        CacheControl::parse([value]).shared_lifetime()
    }

    #[test]
    fn storable_responses() {
        assert_eq!(lifetime("public, max-age=3600"), Some(3600));
        assert_eq!(lifetime("max-age=60, public, s-maxage=600"), Some(600));
        assert_eq!(
            lifetime("PUBLIC, MAX-AGE=31536000, immutable"),
            Some(31_536_000)
        );
        assert_eq!(lifetime("public, max-age=\"30\""), Some(30));
        assert_eq!(
            CacheControl::parse(["public", "max-age=5"]).shared_lifetime(),
            Some(5)
        );
    }

    #[test]
    fn not_storable() {
        for value in [
            "max-age=3600",
            "public",
            "public, max-age=0",
            "public, s-maxage=0, max-age=60",
            "public, private, max-age=60",
            "public, no-store, max-age=60",
            "public, no-cache, max-age=60",
            "public, max-age=60, max-age=30",
            "public, max-age=-1",
            "public, max-age=1.5",
            "public, max-age=",
            "public, max-age=٣",
            "public, s-max-age=60",
            "",
            ",,,",
        ] {
            assert_eq!(lifetime(value), None, "{value}");
        }
    }

    #[test]
    fn quoted_values_and_hostile_input() {
        assert_eq!(
            lifetime("public, private=\"set-cookie, x\", max-age=5"),
            None
        );
        assert_eq!(lifetime("public, x=\"a, max-age=5\", max-age=7"), Some(7));
        assert_eq!(
            lifetime("public, max-age=99999999999999999999999999"),
            Some(u64::MAX)
        );
        assert_eq!(lifetime("public, max-age=60, max-age=60"), Some(60));
        assert_eq!(lifetime(&"public, ".repeat(10_000)), None);
        assert_eq!(lifetime("public, max-age=60, x=\"unterminated"), Some(60));
    }
}
