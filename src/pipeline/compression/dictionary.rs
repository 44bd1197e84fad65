//! Compression dictionaries (RFC 9842) for fingerprinted JS and CSS, with
//! THRUST_COMPRESSION_DICTIONARIES. A stored asset named `name-<hex>.js`
//! is offered to the browser as a dictionary for the later versions of its
//! name (`Use-As-Dictionary: match="/dir/name-*.js"`); when a browser asks
//! for a new version holding an old one (`Available-Dictionary`, `dcz` in
//! Accept-Encoding), the answer is the new version compressed against the
//! old: a Zstandard frame behind the RFC's 40-byte header.
//!
//! Everything is made from the identity bytes of a version: a browser
//! hashes the decoded body it keeps as a dictionary, and decodes a `dcz`
//! answer to the script itself. A body stored encoded (a precompressed
//! `.br` file Rails names, an app's gzip) is decoded first. Dictionaries
//! are known by the SHA-256 of those bytes and the scopes they were served
//! in (host, forwarded origin, name pattern; kept as keyed hashes), so one
//! is only ever used for the same asset family of the same site. They come
//! from stored answers and from the earlier versions lying beside a stored
//! file (what Kamal's asset bridging keeps after a deploy). A delta is
//! keyed by the dictionary's hash and the identity hash of the stored
//! entry it stands for (`Entry::identity`), so it goes out only for the
//! bytes it was made from. Dictionaries and deltas are held in caches
//! weighed in bytes, each entry with its overhead, within one budget (half
//! each).

use std::hash::BuildHasher;
use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Mutex};

use base64::Engine;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::config::Encoding;
use crate::http::accept_encoding;
use crate::pipeline::asset_name;

/// A SHA-256 digest.
pub type Digest = [u8; 32];

pub const USE_AS_DICTIONARY: HeaderName = HeaderName::from_static("use-as-dictionary");
pub const AVAILABLE_DICTIONARY: HeaderName = HeaderName::from_static("available-dictionary");

/// RFC 9842 §5.2: what precedes the hash and the Zstandard frame.
const DCZ_MAGIC: [u8; 8] = [0x5e, 0x2a, 0x4d, 0x18, 0x20, 0x00, 0x00, 0x00];
/// Deltas are made once per (dictionary, asset) and kept, but several at
/// each store: level 12 made a 1% change to a 300 KB script 274 bytes in
/// about 2 ms, level 19 190 bytes in 32 ms (Python's zstandard, the same
/// library; `cargo bench --bench hot_paths -- "dcz delta"` for thrust's).
const DCZ_LEVEL: i32 = 12;
/// 8 MiB, what every decoder must accept (RFC 9659); assets are far smaller.
const DCZ_WINDOW_LOG: u32 = 23;
/// Earlier versions read from beside a stored file, newest first.
const SIBLINGS: usize = 4;
/// Scopes (host, origin, family) remembered per dictionary.
const SCOPES: usize = 16;
/// What a dictionary or a delta holds besides its bytes: the cache's
/// entry, the key, a dictionary's scopes.
const OVERHEAD: usize = 256;

/// The name family of a fingerprinted JS or CSS path: its directory, what
/// every version's name starts (`name-`) and ends (`.js`) with, and what
/// the browser fetches it as.
#[derive(Clone, Debug, PartialEq)]
pub struct Family {
    dir: String,
    prefix: String,
    suffix: String,
    dest: &'static str,
}

/// The family of `path` (no query), if it names a fingerprinted JS or CSS
/// file with nothing in its name a URL pattern would read as syntax.
pub fn family(path: &str) -> Option<Family> {
    let (dir, name) = path.rsplit_once('/')?;
    if !asset_name::fingerprinted(Path::new(name)) {
        return None;
    }
    let (stem_and_digest, extension) = name.rsplit_once('.')?;
    let dest = match extension {
        "js" | "mjs" => "script",
        "css" => "style",
        _ => return None,
    };
    let (stem, digest) = stem_and_digest.rsplit_once('-')?;
    let plain = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'.' | b'-'))
    };
    if stem.is_empty() || digest.len() < 7 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (plain(dir) && plain(stem)).then(|| Family {
        dir: dir.to_string(),
        prefix: format!("{stem}-"),
        suffix: format!(".{extension}"),
        dest,
    })
}

impl Family {
    /// The URL pattern that matches every version (`/dir/name-*.js`).
    fn pattern(&self) -> String {
        format!("{}/{}*{}", self.dir, self.prefix, self.suffix)
    }

    /// The `Use-As-Dictionary` value for an answer of this family.
    pub fn header(&self) -> HeaderValue {
        let pattern = self.pattern();
        let text = format!("match=\"{pattern}\", match-dest=(\"{}\")", self.dest);
        HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("match=\"\""))
    }

    /// Whether a file name beside a version of this family is another one.
    fn has_sibling(&self, name: &str) -> bool {
        name.len() > self.prefix.len() + self.suffix.len()
            && name.starts_with(&self.prefix)
            && name.ends_with(&self.suffix)
            && asset_name::fingerprinted(Path::new(name))
    }
}

/// What a request brings to dictionary compression.
#[derive(Clone)]
pub struct Offer {
    /// Host, forwarded origin and family: where a dictionary may be used.
    scope: String,
    pub family: Family,
    /// The dictionary the client holds, when it also accepts `dcz`.
    wanted: Option<Digest>,
}

impl Offer {
    /// Whether the client holds a dictionary and takes `dcz`.
    pub fn wants_delta(&self) -> bool {
        self.wanted.is_some()
    }

    /// For a GET of `target` on `host` (with the forwarded `origin`).
    pub fn of(host: &str, origin: &str, target: &str, headers: &HeaderMap) -> Option<Offer> {
        let path = target.split('?').next().unwrap_or(target);
        let family = family(path)?;
        let scope = format!("{host}\n{origin}\n{}", family.pattern());
        let wanted = accept_encoding::lists(headers, "dcz")
            .then(|| available(headers))
            .flatten();
        Some(Offer {
            scope,
            family,
            wanted,
        })
    }
}

/// The hash in `Available-Dictionary` (a structured-field byte sequence).
fn available(headers: &HeaderMap) -> Option<Digest> {
    let value = headers.get(AVAILABLE_DICTIONARY)?.to_str().ok()?.trim();
    let encoded = value.strip_prefix(':')?.strip_suffix(':')?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    bytes.try_into().ok()
}

pub fn sha256(bytes: &[u8]) -> Digest {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// `body` compressed against `dictionary` (whose hash is `hash`), as `dcz`.
pub fn dcz(dictionary: &[u8], hash: &Digest, body: &[u8]) -> std::io::Result<Bytes> {
    let mut compressor = zstd::bulk::Compressor::with_dictionary(DCZ_LEVEL, dictionary)?;
    compressor.set_parameter(zstd::zstd_safe::CParameter::WindowLog(DCZ_WINDOW_LOG))?;
    let frame = compressor.compress(body)?;
    let mut out = Vec::with_capacity(DCZ_MAGIC.len() + hash.len() + frame.len());
    out.extend_from_slice(&DCZ_MAGIC);
    out.extend_from_slice(hash);
    out.extend_from_slice(&frame);
    Ok(Bytes::from(out))
}

/// A version that may serve as a dictionary (its identity bytes), and the
/// keyed hashes of the scopes it was seen in (the same bytes may be served
/// under several hosts): at most `SCOPES`, so made-up Hosts cannot grow it.
struct Known {
    body: Bytes,
    scopes: Mutex<Vec<u64>>,
}

impl Known {
    fn in_scope(&self, scope: u64) -> bool {
        self.scopes
            .lock()
            .is_ok_and(|scopes| scopes.contains(&scope))
    }
}

/// The dictionaries thrust knows and the deltas it has made, each within a
/// byte budget. Deltas are keyed by content (dictionary and identity
/// hashes), so the same asset reached under another Host costs no new
/// compression.
#[derive(Clone)]
pub struct Dictionaries {
    known: moka::sync::Cache<Digest, Arc<Known>>,
    /// (dictionary, the identity bytes made from it) → the `dcz` body.
    deltas: moka::sync::Cache<(Digest, Digest), Bytes>,
    /// Keys the scopes' hashes.
    scope_hasher: std::hash::RandomState,
    /// The largest identity body learned (what decoding may produce).
    largest: usize,
}

impl Dictionaries {
    /// Within `budget` bytes: half for dictionaries, half for deltas, each
    /// weighed with its overhead.
    pub fn new(budget: u64) -> Self {
        let weigh = |bytes: usize| u32::try_from(bytes + OVERHEAD).unwrap_or(u32::MAX);
        Dictionaries {
            known: moka::sync::Cache::builder()
                .max_capacity(budget / 2)
                .weigher(move |_, known: &Arc<Known>| weigh(known.body.len()))
                .build(),
            deltas: moka::sync::Cache::builder()
                .max_capacity(budget / 2)
                .weigher(move |_, delta: &Bytes| weigh(delta.len()))
                .build(),
            scope_hasher: std::hash::RandomState::new(),
            largest: usize::try_from(budget / 2).unwrap_or(usize::MAX),
        }
    }

    /// The delta for `offer`'s wanted dictionary to the version whose
    /// identity bytes hash to `identity`, when the dictionary is known in
    /// the offer's scope and the delta was made.
    pub fn delta(&self, offer: &Offer, identity: Option<Digest>) -> Option<Bytes> {
        let wanted = offer.wanted?;
        let known = self.known.get(&wanted)?;
        if !known.in_scope(self.scope_hash(offer)) {
            return None;
        }
        self.deltas.get(&(wanted, identity?))
    }

    /// Learns `body`, a stored version of `offer`'s family encoded as
    /// `encoding` says (its Content-Encoding; none: identity), and its
    /// earlier versions beside `file` when it came from one; then makes
    /// the deltas from each known earlier version in the scope to it. The
    /// SHA-256 of its identity bytes, which the stored entry keeps
    /// (`Entry::identity`); None when they could not be had (an encoding
    /// thrust does not decode, or larger than a dictionary may be). Runs on
    /// the blocking pool (decoding, hashing and compressing are CPU work).
    pub fn learn(
        &self,
        offer: &Offer,
        body: &Bytes,
        encoding: Option<&HeaderValue>,
        file: Option<&Path>,
    ) -> Option<Digest> {
        let identity = identity(body, encoding, self.largest)?;
        let own = sha256(&identity);
        let scope = self.scope_hash(offer);
        self.know(own, identity.clone(), scope);
        if let Some(file) = file {
            for sibling in siblings(&offer.family, file, identity.len()) {
                self.know(sha256(&sibling), sibling, scope);
            }
        }
        let earlier: Vec<(Digest, Arc<Known>)> = self
            .known
            .iter()
            .filter(|(hash, known)| **hash != own && known.in_scope(scope))
            .map(|(hash, known)| (*hash, known))
            .collect();
        for (hash, known) in earlier {
            let key = (hash, own);
            if self.deltas.contains_key(&key) {
                continue;
            }
            match dcz(&known.body, &hash, &identity) {
                Ok(delta) => self.deltas.insert(key, delta),
                Err(e) => tracing::debug!(error = %e, "Dictionary delta not made"),
            }
        }
        Some(own)
    }

    /// Bytes held, as weighed (after pending maintenance).
    pub fn held(&self) -> u64 {
        self.known.run_pending_tasks();
        self.deltas.run_pending_tasks();
        self.known.weighted_size() + self.deltas.weighted_size()
    }

    fn scope_hash(&self, offer: &Offer) -> u64 {
        self.scope_hasher.hash_one(&offer.scope)
    }

    /// Records that `body` (hashing to `hash`) was served in `scope`.
    fn know(&self, hash: Digest, body: Bytes, scope: u64) {
        let known = self.known.get_with(hash, || {
            Arc::new(Known {
                body,
                scopes: Mutex::new(Vec::new()),
            })
        });
        let Ok(mut scopes) = known.scopes.lock() else {
            return;
        };
        if !scopes.contains(&scope) {
            // Bounded: a flood of made-up Host values cannot grow it.
            if scopes.len() == SCOPES {
                scopes.remove(0);
            }
            scopes.push(scope);
        }
    }
}

/// `body`'s identity bytes: itself, or decoded from its Content-Encoding
/// (br, gzip, zstd), at most `limit` bytes of it (a decompression bomb
/// stops there).
fn identity(body: &Bytes, encoding: Option<&HeaderValue>, limit: usize) -> Option<Bytes> {
    let Some(encoding) = encoding else {
        return (body.len() <= limit).then(|| body.clone());
    };
    let name = encoding.to_str().ok()?.trim();
    let encoding = [Encoding::Brotli, Encoding::Gzip, Encoding::Zstd]
        .into_iter()
        .find(|e| name.eq_ignore_ascii_case(e.token()))?;
    let reader: Box<dyn Read + '_> = match encoding {
        Encoding::Brotli => Box::new(brotli::Decompressor::new(&body[..], 4096)),
        Encoding::Gzip => Box::new(flate2::read::GzDecoder::new(&body[..])),
        Encoding::Zstd => Box::new(zstd::stream::read::Decoder::new(&body[..]).ok()?),
    };
    let mut decoded = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    reader.take(cap).read_to_end(&mut decoded).ok()?;
    (decoded.len() <= limit).then(|| Bytes::from(decoded))
}

/// Up to `SIBLINGS` earlier versions of `family` beside `file` (which may
/// be a precompressed `.br` or `.gz`: the versions are the plain files),
/// newest first, each no larger than four times `size`, the identity
/// bytes of the version `file` holds.
fn siblings(family: &Family, file: &Path, size: usize) -> Vec<Bytes> {
    let Some(dir) = file.parent() else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let limit = u64::try_from(size).unwrap_or(u64::MAX).saturating_mul(4);
    let encoded = file.extension().is_some_and(|ext| {
        [Encoding::Brotli, Encoding::Gzip, Encoding::Zstd]
            .iter()
            .any(|e| ext == e.extension())
    });
    let plain = if encoded {
        file.with_extension("")
    } else {
        file.to_path_buf()
    };
    let mut found: Vec<(std::time::SystemTime, std::path::PathBuf)> = entries
        .filter_map(Result::ok)
        // Not the version itself, nor its plain file beside a `.br`.
        .filter(|e| e.path() != file && e.path() != plain)
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| family.has_sibling(n))
        })
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            let modified = meta.modified().ok()?;
            (meta.is_file() && meta.len() <= limit).then(|| (modified, e.path()))
        })
        .collect();
    found.sort_by_key(|f| std::cmp::Reverse(f.0));
    found
        .into_iter()
        .take(SIBLINGS)
        .filter_map(|(_, path)| std::fs::read(path).ok().map(Bytes::from))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprinted_scripts_and_styles_have_a_family() {
        let script = family("/assets/application-4f1e2a9b.js").unwrap();
        assert_eq!(
            script.header(),
            "match=\"/assets/application-*.js\", match-dest=(\"script\")"
        );
        let style = family("/assets/admin/app.bundle-0123456789abcdef.css").unwrap();
        assert_eq!(
            style.header(),
            "match=\"/assets/admin/app.bundle-*.css\", match-dest=(\"style\")"
        );
        for path in [
            "/assets/application.js",
            "/assets/application-4f1e2a9b.png",
            "/assets/app(x)-4f1e2a9b.js",
            "/assets/-4f1e2a9b.js",
            "/assets/app-4f1e2.js",
        ] {
            assert_eq!(family(path), None, "{path}");
        }
    }

    #[test]
    fn the_wanted_dictionary_needs_dcz_and_a_sha256() {
        let hash = sha256(b"v1");
        let encoded = base64::engine::general_purpose::STANDARD.encode(hash);
        let headers = |accept: &'static str, available: String| {
            let mut h = HeaderMap::new();
            h.insert(
                http::header::ACCEPT_ENCODING,
                HeaderValue::from_static(accept),
            );
            h.insert(
                AVAILABLE_DICTIONARY,
                HeaderValue::from_str(&available).unwrap(),
            );
            h
        };
        let target = "/assets/app-4f1e2a9b.js";
        let offer = |h: &HeaderMap| Offer::of("h", "", target, h).unwrap().wanted;
        assert_eq!(
            offer(&headers("dcz, br", format!(":{encoded}:"))),
            Some(hash)
        );
        assert_eq!(offer(&headers("br, gzip", format!(":{encoded}:"))), None);
        assert_eq!(offer(&headers("dcz;q=0, br", format!(":{encoded}:"))), None);
        assert_eq!(offer(&headers("dcz", encoded.clone())), None);
        assert_eq!(offer(&headers("dcz", ":AAAA:".into())), None);
    }

    #[test]
    fn a_delta_decodes_with_its_dictionary_to_the_new_version() {
        let old: Vec<u8> = (0..50_000u32)
            .flat_map(|i| format!("line {i};\n").into_bytes())
            .collect();
        let mut new = old.clone();
        new.splice(1000..1010, b"changed!!!".iter().copied());
        let hash = sha256(&old);
        let delta = dcz(&old, &hash, &new).unwrap();
        assert_eq!(&delta[..8], &DCZ_MAGIC);
        assert_eq!(&delta[8..40], &hash);
        assert!(delta.len() < 200, "{} bytes", delta.len());
        let mut decoder = zstd::bulk::Decompressor::with_dictionary(&old).unwrap();
        let decoded = decoder.decompress(&delta[40..], new.len()).unwrap();
        assert_eq!(decoded, new);
    }

    /// A browser's request headers holding `dictionary` and taking dcz.
    fn holding(dictionary: &[u8]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::ACCEPT_ENCODING,
            HeaderValue::from_static("dcz"),
        );
        let held = base64::engine::general_purpose::STANDARD.encode(sha256(dictionary));
        headers.insert(
            AVAILABLE_DICTIONARY,
            HeaderValue::from_str(&format!(":{held}:")).unwrap(),
        );
        headers
    }

    #[test]
    fn earlier_versions_beside_a_file_are_learned_for_its_scope_only() {
        let dir = tempfile::tempdir().unwrap();
        let v1: Vec<u8> = (0..20_000u32)
            .flat_map(|i| format!("f{i}();\n").into_bytes())
            .collect();
        let mut v2 = v1.clone();
        v2.extend_from_slice(b"extra();\n");
        std::fs::write(dir.path().join("app-1111111a.js"), &v1).unwrap();
        std::fs::write(dir.path().join("other-2222222b.js"), b"x").unwrap();
        let file = dir.path().join("app-3333333c.js");
        std::fs::write(&file, &v2).unwrap();
        let headers = holding(&v1);
        let dictionaries = Dictionaries::new(64 << 20);
        let offer = Offer::of("a.test", "", "/assets/app-3333333c.js", &headers).unwrap();
        let identity = dictionaries.learn(&offer, &Bytes::from(v2.clone()), None, Some(&file));
        assert_eq!(identity, Some(sha256(&v2)));
        let delta = dictionaries
            .delta(&offer, identity)
            .expect("a delta from the version beside it");
        let mut decoder = zstd::bulk::Decompressor::with_dictionary(&v1).unwrap();
        assert_eq!(decoder.decompress(&delta[40..], v2.len()).unwrap(), v2);
        // Another host has nothing learned for it...
        let elsewhere = Offer::of("b.test", "", "/assets/app-3333333c.js", &headers).unwrap();
        assert!(dictionaries.delta(&elsewhere, identity).is_none());
        // ...and once it has, the delta already made serves it: the same
        // bytes under another Host cost no compression.
        dictionaries.deltas.run_pending_tasks();
        let made = dictionaries.deltas.entry_count();
        dictionaries.learn(&elsewhere, &Bytes::from(v2.clone()), None, Some(&file));
        dictionaries.deltas.run_pending_tasks();
        assert_eq!(dictionaries.deltas.entry_count(), made);
        assert_eq!(dictionaries.delta(&elsewhere, identity), Some(delta));
    }

    #[test]
    fn an_encoded_version_is_learned_and_delta_encoded_as_its_identity_bytes() {
        let v1: Vec<u8> = (0..20_000u32)
            .flat_map(|i| format!("g{i}();\n").into_bytes())
            .collect();
        let mut v2 = v1.clone();
        v2.extend_from_slice(b"more();\n");
        let mut brotli_v2 = Vec::new();
        brotli::BrotliCompress(&mut &v2[..], &mut brotli_v2, &Default::default()).unwrap();
        let headers = holding(&v1);
        let dictionaries = Dictionaries::new(64 << 20);
        let v1_offer = Offer::of("a.test", "", "/assets/lib-1111111a.js", &headers).unwrap();
        let v2_offer = Offer::of("a.test", "", "/assets/lib-2222222b.js", &headers).unwrap();
        // Version 1 stored as identity, version 2 as the .br file Rails names.
        dictionaries.learn(&v1_offer, &Bytes::from(v1.clone()), None, None);
        let br = HeaderValue::from_static("br");
        let identity = dictionaries.learn(&v2_offer, &Bytes::from(brotli_v2), Some(&br), None);
        assert_eq!(
            identity,
            Some(sha256(&v2)),
            "hashed as the browser hashes it"
        );
        let delta = dictionaries.delta(&v2_offer, identity).unwrap();
        let mut decoder = zstd::bulk::Decompressor::with_dictionary(&v1).unwrap();
        assert_eq!(decoder.decompress(&delta[40..], v2.len() + 1).unwrap(), v2);
        // An encoding thrust does not decode, or a body past the limit: not learned.
        let odd = HeaderValue::from_static("compress");
        assert_eq!(
            dictionaries.learn(&v2_offer, &Bytes::from(v2.clone()), Some(&odd), None),
            None
        );
        let small = Dictionaries::new(1000);
        assert_eq!(
            small.learn(&v2_offer, &Bytes::from(v2.clone()), None, None),
            None
        );
    }
}
