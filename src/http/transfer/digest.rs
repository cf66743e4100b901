//! What an upload must hash to: the token's `sha256` and the client's `Content-Digest`.
//!
//! `Content-Digest` (RFC 9530) is a structured-field dictionary such as
//! `sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:`; parsing it is left to `sfv`, a
//! maintained RFC 9651 parser, rather than to string splitting. Algorithms other than SHA-256
//! and SHA-512 are ignored (`docs/http-api.md`), but a SHA-256 or SHA-512 member that is not a byte
//! sequence of the right length is refused: a client that sent a digest meant it to be checked.

use sfv::{BareItem, Dictionary, ListEntry, Parser};
use sha2::digest::Digest;
use sha2::{Sha256, Sha512};

/// Every digest an upload is held to. Empty when neither the token nor the client gave one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expected {
    pub token_sha256: Option<[u8; 32]>,
    pub header_sha256: Option<[u8; 32]>,
    pub header_sha512: Option<[u8; 64]>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("Content-Digest is not a valid structured-field dictionary")]
    Malformed,
    #[error("Content-Digest `{0}` must be a byte sequence of {1} bytes (`{0}=:BASE64:`)")]
    BadValue(&'static str, usize),
}

impl Expected {
    /// Reads a `Content-Digest` header value on top of the token's digest.
    pub fn with_header(mut self, header: Option<&[u8]>) -> Result<Self, DigestError> {
        let Some(raw) = header else {
            return Ok(self);
        };
        let dict: Dictionary = Parser::new(raw)
            .parse()
            .map_err(|_| DigestError::Malformed)?;
        self.header_sha256 = member(&dict, "sha-256")?;
        self.header_sha512 = member(&dict, "sha-512")?;
        Ok(self)
    }

    /// Whether a SHA-512 has to be computed at all (it costs as much as the SHA-256).
    pub fn wants_sha512(&self) -> bool {
        self.header_sha512.is_some()
    }

    /// Whether the bytes that arrived match every expectation.
    pub fn matches(&self, sha256: &[u8; 32], sha512: Option<&[u8; 64]>) -> bool {
        let ok256 = [self.token_sha256, self.header_sha256]
            .iter()
            .flatten()
            .all(|want| want == sha256);
        let ok512 = match (self.header_sha512, sha512) {
            (Some(want), Some(got)) => &want == got,
            (Some(_), None) => false,
            (None, _) => true,
        };
        ok256 && ok512
    }
}

fn member<const N: usize>(
    dict: &Dictionary,
    name: &'static str,
) -> Result<Option<[u8; N]>, DigestError> {
    match dict.get(name) {
        None => Ok(None),
        Some(ListEntry::Item(item)) => match &item.bare_item {
            BareItem::ByteSequence(bytes) => bytes
                .as_slice()
                .try_into()
                .map(Some)
                .map_err(|_| DigestError::BadValue(name, N)),
            _ => Err(DigestError::BadValue(name, N)),
        },
        Some(ListEntry::InnerList(_)) => Err(DigestError::BadValue(name, N)),
    }
}

/// Hashes an upload as it streams: SHA-256 always (it is what `GET /api/links/{token}`
/// reports), SHA-512 only when the client asked for it to be checked.
pub struct Hasher {
    sha256: Sha256,
    sha512: Option<Sha512>,
}

impl Hasher {
    pub fn new(expected: &Expected) -> Self {
        Hasher {
            sha256: Sha256::new(),
            sha512: expected.wants_sha512().then(Sha512::new),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        self.sha256.update(data);
        if let Some(h) = &mut self.sha512 {
            h.update(data);
        }
    }

    pub fn finish(self) -> ([u8; 32], Option<[u8; 64]>) {
        (
            self.sha256.finalize().into(),
            self.sha512.map(|h| h.finalize().into()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64ct::{Base64, Encoding};
    use proptest::prelude::*;

    fn digests(data: &[u8]) -> ([u8; 32], [u8; 64]) {
        (Sha256::digest(data).into(), Sha512::digest(data).into())
    }

    #[test]
    fn header_digests_are_read_and_checked() {
        let (s256, s512) = digests(b"hello");
        let header = format!(
            "sha-256=:{}:, sha-512=:{}:, md5=:AAAA:, unixsum=12",
            Base64::encode_string(&s256),
            Base64::encode_string(&s512)
        );
        let e = Expected::default()
            .with_header(Some(header.as_bytes()))
            .unwrap();
        assert_eq!(e.header_sha256, Some(s256));
        assert_eq!(e.header_sha512, Some(s512));
        assert!(e.matches(&s256, Some(&s512)));
        let (other256, other512) = digests(b"hellO");
        assert!(!e.matches(&other256, Some(&s512)));
        assert!(!e.matches(&s256, Some(&other512)));
        assert!(!e.matches(&s256, None), "a wanted sha-512 must be computed");
    }

    #[test]
    fn token_and_header_must_both_match() {
        let (s256, _) = digests(b"a");
        let (t256, _) = digests(b"b");
        let header = format!("sha-256=:{}:", Base64::encode_string(&s256));
        let e = Expected {
            token_sha256: Some(t256),
            ..Expected::default()
        }
        .with_header(Some(header.as_bytes()))
        .unwrap();
        assert!(!e.matches(&s256, None));
        assert!(!e.matches(&t256, None));
        assert!(Expected::default().matches(&s256, None), "nothing expected");
    }

    #[test]
    fn unknown_algorithms_are_ignored_and_bad_values_refused() {
        let e = Expected::default()
            .with_header(Some(b"md5=:AAAA:, crc32c=:AAAAAA==:"))
            .unwrap();
        assert_eq!(e, Expected::default());
        assert_eq!(
            Expected::default().with_header(Some(b"sha-256=:AAAA:")),
            Err(DigestError::BadValue("sha-256", 32))
        );
        assert_eq!(
            Expected::default().with_header(Some(b"sha-256=abc")),
            Err(DigestError::BadValue("sha-256", 32))
        );
        assert_eq!(
            Expected::default().with_header(Some(b"sha-256=:not base64:")),
            Err(DigestError::Malformed)
        );
    }

    #[test]
    fn hasher_matches_one_shot_digests() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let e = Expected {
            header_sha512: Some([0; 64]),
            ..Expected::default()
        };
        let mut h = Hasher::new(&e);
        for chunk in data.chunks(777) {
            h.update(chunk);
        }
        let (s256, s512) = h.finish();
        assert_eq!((s256, s512.unwrap()), digests(&data));
        assert_eq!(Hasher::new(&Expected::default()).finish().1, None);
    }

    proptest! {
        /// Whatever a client sends as Content-Digest, parsing neither panics nor yields a
        /// digest of the wrong length.
        #[test]
        fn any_header_is_handled(raw in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Expected::default().with_header(Some(&raw));
        }
    }
}
