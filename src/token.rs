//! The link token: its binary layout, signing and verification, and the keyring.
//!
//! A token is the whole authorization for a transfer, so it must be verifiable by any replica
//! holding the key, with no shared state. Layout (version 1, all integers big-endian):
//!
//! ```text
//! u8  version            (1)
//! u8  key id length      then the key id bytes
//! u8  flags              bit0 upload, bit1 session, bit2 max_bytes, bit3 sha256,
//!                        bit4 no-overwrite, bit5 ip, bit6 max_uses; other bits must be zero
//! u64 expires_at         unix seconds
//! [16] nonce             random, the ledger key
//! [u8 len + session]     if bit1
//! u16 len + path         relative to the session's sandbox, `/`-separated
//! [u64 max_bytes]        if bit2
//! [32 sha256]            if bit3
//! [u8 family, addr, u8 prefix]   if bit5 (family 4 or 6)
//! [u16 max_uses]         if bit6 (at least 2; a token without it allows one use, so every
//!                        token minted before the field existed keeps its meaning)
//! [32] HMAC-SHA256 over everything above
//! ```
//!
//! The whole thing is URL-safe base64 without padding. Only the version and key id are read
//! before the MAC is checked (they say which key to check it with); every other field is parsed
//! only from bytes the MAC has vouched for.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use base64::Engine;
// Tokens use the table-driven codec: a token is no secret to whoever presents it, so a
// decoder that runs in constant time protects nothing there (the MAC is what is compared in
// constant time), and it took a third of `verify` (439 ns against 303, `cargo bench --bench
// token`). Keys, which are secrets, are decoded in constant time (`base64ct`). Both codecs
// refuse padding and stray trailing bits, so each token has one spelling.
use base64::engine::general_purpose::URL_SAFE_NO_PAD as TOKEN_BASE64;
use base64ct::{Base64, Base64Unpadded, Base64Url, Base64UrlUnpadded, Encoding};
use hmac::{Hmac, KeyInit, Mac};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::session::SessionId;

/// The only token layout this build reads and writes.
pub const VERSION: u8 = 1;
/// Bytes of randomness in every nonce (128 bits).
pub const NONCE_LEN: usize = 16;
/// Shortest key accepted in `BURNLINK_KEYS`: HMAC-SHA256 gains nothing from less than its
/// output size, and short keys are the usual way shared secrets end up guessable.
pub const MIN_KEY_LEN: usize = 32;
const MAC_LEN: usize = 32;
const MAX_KID_LEN: usize = 16;

const FLAG_UPLOAD: u8 = 1 << 0;
const FLAG_SESSION: u8 = 1 << 1;
const FLAG_MAX_BYTES: u8 = 1 << 2;
const FLAG_SHA256: u8 = 1 << 3;
const FLAG_NO_OVERWRITE: u8 = 1 << 4;
const FLAG_IP: u8 = 1 << 5;
const FLAG_MAX_USES: u8 = 1 << 6;
const KNOWN_FLAGS: u8 = 0b0111_1111;

type HmacSha256 = Hmac<Sha256>;

/// The random part of a token; the ledger tracks links by it.
pub type Nonce = [u8; NONCE_LEN];

/// Which way the bytes move.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Download,
    Upload,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Download => "download",
            Direction::Upload => "upload",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a token grants. Built by the minter, signed into a token, and recovered by `verify`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    pub direction: Direction,
    /// `None` means the sandbox is `BURNLINK_ROOT` itself. Typed, so a token whose signed
    /// session is not a valid id never verifies (it is `Malformed`), and nothing downstream
    /// parses it again.
    pub session: Option<SessionId>,
    /// Relative to the session's sandbox, `/`-separated, already normalised.
    pub path: LinkPath,
    /// Unix seconds.
    pub expires_at: u64,
    pub nonce: Nonce,
    pub max_bytes: Option<u64>,
    pub sha256: Option<[u8; 32]>,
    pub overwrite: bool,
    pub ip: Option<IpNet>,
    /// How many completed transfers the link allows (at least 1; 1 unless minted otherwise).
    pub max_uses: u16,
}

impl Claims {
    /// Claims with a fresh random nonce and no optional constraints.
    pub fn new(
        direction: Direction,
        session: Option<SessionId>,
        path: String,
        expires_at: u64,
    ) -> Self {
        Claims {
            direction,
            session,
            path: path.into(),
            expires_at,
            nonce: rand::random(),
            max_bytes: None,
            sha256: None,
            overwrite: true,
            ip: None,
            max_uses: 1,
        }
    }

    pub fn is_expired(&self, now_unix: u64) -> bool {
        now_unix >= self.expires_at
    }

    /// A short, non-secret handle for logs: the first 6 bytes of the nonce in hex. It says which
    /// link a line is about without letting a log reader rebuild the token.
    pub fn short_id(&self) -> String {
        self.link_id().to_string()
    }

    /// [`Self::short_id`] before it is formatted: kept by a transfer until its audit line is
    /// written, which is often never (below the log level), so formatting waits until then.
    pub fn link_id(&self) -> LinkId {
        let mut id = [0; 6];
        id.copy_from_slice(&self.nonce[..6]);
        LinkId(id)
    }
}

/// A link's path as its claims carry it. One of up to [`INLINE_PATH`] bytes is held in
/// place, so that verifying a token allocates nothing: a download verifies one per request,
/// and the path on the heap was the last allocation each of them made (docs/benchmarks.md,
/// "The twelfth performance pass"). A longer one is shared, since a transfer's audit line
/// keeps a copy too.
#[derive(Clone)]
pub struct LinkPath(PathRepr);

#[derive(Clone)]
enum PathRepr {
    Inline(u8, [u8; INLINE_PATH]),
    Shared(Arc<str>),
}

/// The longest path held in place: with its length byte and the tag, the path takes 64 bytes.
pub const INLINE_PATH: usize = 62;

impl LinkPath {
    pub fn new(path: &str) -> LinkPath {
        if path.len() <= INLINE_PATH {
            let mut bytes = [0; INLINE_PATH];
            bytes[..path.len()].copy_from_slice(path.as_bytes());
            LinkPath(PathRepr::Inline(path.len() as u8, bytes))
        } else {
            LinkPath(PathRepr::Shared(Arc::from(path)))
        }
    }

    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Whole bytes of a `str`, so always UTF-8: checked again on each read rather than
            // trusted with `unsafe`.
            PathRepr::Inline(len, bytes) => {
                std::str::from_utf8(&bytes[..*len as usize]).unwrap_or("")
            }
            PathRepr::Shared(path) => path,
        }
    }
}

impl std::ops::Deref for LinkPath {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for LinkPath {
    fn from(path: &str) -> LinkPath {
        LinkPath::new(path)
    }
}

impl From<String> for LinkPath {
    fn from(path: String) -> LinkPath {
        LinkPath::new(&path)
    }
}

impl PartialEq for LinkPath {
    fn eq(&self, other: &LinkPath) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for LinkPath {}

impl fmt::Debug for LinkPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for LinkPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for LinkPath {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// The first 6 bytes of a link's nonce: what logs, webhooks and `inspect` call the link
/// (12 hex digits), which names it without being able to use it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkId([u8; 6]);

impl fmt::Display for LinkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// A token whose MAC checked out, with the key id that vouched for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// Shared with the keyring: naming the key costs no allocation per request.
    pub key_id: Arc<str>,
    pub claims: Claims,
}

/// Why a token was refused. The HTTP layer folds all of these into one "not found", so a
/// prober learns nothing; `burnlink inspect` shows them to the operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed")]
    Malformed,
    #[error("unsupported version")]
    UnsupportedVersion,
    #[error("unknown key")]
    UnknownKey,
    #[error("bad signature")]
    BadSignature,
}

/// Why `BURNLINK_KEYS` could not be used.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("expected `kid:BASE64KEY[,kid:BASE64KEY…]`, got an empty list")]
    Empty,
    #[error("entry {0}: expected `kid:BASE64KEY`")]
    Shape(usize),
    #[error("entry {0}: key id must match [A-Za-z0-9_-]{{1,16}}")]
    BadKeyId(usize),
    #[error("entry {0}: key is not valid base64")]
    BadBase64(usize),
    #[error("entry {index}: key has {len} bytes, at least {MIN_KEY_LEN} are required")]
    TooShort { index: usize, len: usize },
    #[error("key id `{0}` appears twice")]
    Duplicate(String),
}

struct Key {
    id: Arc<str>,
    /// Keyed once at start-up; cloning the keyed state per token skips re-deriving the
    /// inner and outer pads on the hot path.
    mac: HmacSha256,
}

/// The signing and verifying keys. The first key signs; every key verifies, so rotation is
/// "prepend the new key everywhere, wait out the longest TTL, drop the old one".
pub struct Keyring {
    keys: Vec<Key>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        let ids: Vec<&str> = self.keys.iter().map(|k| &*k.id).collect();
        f.debug_struct("Keyring").field("key_ids", &ids).finish()
    }
}

impl Keyring {
    /// Parses `kid1:BASE64KEY,kid2:BASE64KEY`. Keys may be URL-safe or standard base64, padded
    /// or not, since operators paste them from many tools.
    pub fn parse(spec: &str) -> Result<Self, KeyError> {
        let mut keys = Vec::new();
        for (index, entry) in spec.split(',').map(str::trim).enumerate() {
            if entry.is_empty() {
                continue;
            }
            let index = index + 1;
            let (id, b64) = entry.split_once(':').ok_or(KeyError::Shape(index))?;
            if !is_valid_key_id(id) {
                return Err(KeyError::BadKeyId(index));
            }
            let secret = decode_any_base64(b64.trim()).ok_or(KeyError::BadBase64(index))?;
            if secret.len() < MIN_KEY_LEN {
                return Err(KeyError::TooShort {
                    index,
                    len: secret.len(),
                });
            }
            if keys.iter().any(|k: &Key| &*k.id == id) {
                return Err(KeyError::Duplicate(id.to_string()));
            }
            keys.push(Key::new(id, &secret));
        }
        if keys.is_empty() {
            return Err(KeyError::Empty);
        }
        Ok(Keyring { keys })
    }

    /// The id of the key that signs new tokens.
    pub fn signing_key_id(&self) -> &str {
        &self.keys[0].id
    }

    /// Encodes and signs `claims` with the first key.
    pub fn sign(&self, claims: &Claims) -> String {
        let key = &self.keys[0];
        let mut buf = Vec::with_capacity(96 + claims.path.len());
        encode_payload(&key.id, claims, &mut buf);
        let mut mac = key.mac.clone();
        mac.update(&buf);
        buf.extend_from_slice(&mac.finalize().into_bytes());
        TOKEN_BASE64.encode(&buf)
    }

    /// Checks a token and returns its claims. Expiry is not checked here: callers decide what
    /// an expired token means (410 on a transfer, a reason in `inspect`).
    pub fn verify(&self, token: &str) -> Result<Verified, TokenError> {
        // Only the length is checked first: the decoder below refuses every byte outside
        // URL-safe base64 (and padding), so a pass of `is_token_shaped` over the bytes would
        // look at each twice. That pass was 3.4 % of the server's user time on small downloads
        // (docs/benchmarks.md, the sixteenth pass).
        if !(2..=MAX_TOKEN_LEN).contains(&token.len()) {
            return Err(TokenError::Malformed);
        }
        // Links are a few hundred characters: those decode on the stack, longer ones (up to
        // MAX_TOKEN_LEN) on the heap.
        let mut on_stack = [0u8; 512];
        let on_heap;
        let raw: &[u8] = if token.len() <= on_stack.len() / 3 * 4 {
            let n = TOKEN_BASE64
                .decode_slice(token, &mut on_stack)
                .map_err(|_| TokenError::Malformed)?;
            &on_stack[..n]
        } else {
            on_heap = TOKEN_BASE64
                .decode(token)
                .map_err(|_| TokenError::Malformed)?;
            &on_heap
        };
        if raw.len() < 2 + MAC_LEN {
            return Err(TokenError::Malformed);
        }
        let (payload, tag) = raw.split_at(raw.len() - MAC_LEN);
        if payload[0] != VERSION {
            return Err(TokenError::UnsupportedVersion);
        }
        let kid_len = payload[1] as usize;
        let kid = payload.get(2..2 + kid_len).ok_or(TokenError::Malformed)?;
        let key = self
            .keys
            .iter()
            .find(|k| k.id.as_bytes() == kid)
            .ok_or(TokenError::UnknownKey)?;
        let mut mac = key.mac.clone();
        mac.update(payload);
        // `verify_slice` compares in constant time.
        mac.verify_slice(tag)
            .map_err(|_| TokenError::BadSignature)?;
        let claims = decode_claims(&payload[2 + kid_len..])?;
        Ok(Verified {
            key_id: key.id.clone(),
            claims,
        })
    }
}

/// The claims a token states, without checking its MAC: for a client that holds a link but not
/// the key and wants to describe it (`burnlink put` names the destination in its receipt, and
/// refuses a download link before sending anything). Nothing read this way may decide access:
/// anyone can write a token that says anything.
pub fn read_unverified(token: &str) -> Result<Claims, TokenError> {
    if !is_token_shaped(token) {
        return Err(TokenError::Malformed);
    }
    let raw = TOKEN_BASE64
        .decode(token)
        .map_err(|_| TokenError::Malformed)?;
    if raw.len() < 2 + MAC_LEN {
        return Err(TokenError::Malformed);
    }
    let payload = &raw[..raw.len() - MAC_LEN];
    if payload[0] != VERSION {
        return Err(TokenError::UnsupportedVersion);
    }
    let kid_len = payload[1] as usize;
    let body = payload.get(2 + kid_len..).ok_or(TokenError::Malformed)?;
    decode_claims(body)
}

impl Key {
    fn new(id: &str, secret: &[u8]) -> Self {
        Key {
            id: id.into(),
            mac: HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length"),
        }
    }
}

/// `[A-Za-z0-9_-]{1,16}`: short enough to cost little in every token, plain enough to paste.
pub fn is_valid_key_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_KID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A fresh `KID:KEY` line for `BURNLINK_KEYS`: 32 random bytes, URL-safe base64 unpadded.
pub fn generate_key_entry() -> String {
    let secret: [u8; 32] = rand::random();
    let kid_bytes: [u8; 4] = rand::random();
    format!(
        "k{}:{}",
        hex(&kid_bytes),
        Base64UrlUnpadded::encode_string(&secret)
    )
}

/// Pulls the token out of what a user pastes: a bare token or any burnlink URL that carries
/// one (`/transfer/T`, `/transfer/T/name`, `/api/download/T`, `/api/links/T`).
/// The longest token accepted: the longest valid one is bounded by the path length field (a
/// 4 KiB path), well under this. Refusing absurd lengths first keeps decoding cheap for junk.
pub const MAX_TOKEN_LEN: usize = 8192;

/// Whether `token` could be a token at all: URL-safe base64 without padding, of a sane length.
/// Checked before a token from outside is used anywhere (verified, or put into a URL path by a
/// client such as `burnlink revoke` or MCP's `get_link_status`), so `..`, `/`, `?` or `%`
/// can never steer a request elsewhere.
pub fn is_token_shaped(token: &str) -> bool {
    (2..=MAX_TOKEN_LEN).contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub fn extract_token(input: &str) -> &str {
    let input = input.trim();
    let without_query = input.split(['?', '#']).next().unwrap_or(input);
    for marker in ["/transfer/", "/api/download/", "/api/links/"] {
        if let Some(pos) = without_query.find(marker) {
            let rest = &without_query[pos + marker.len()..];
            return rest.split('/').next().unwrap_or(rest);
        }
    }
    without_query
}

/// The current time in the unit tokens use for expiry: unix seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn decode_any_base64(s: &str) -> Option<Vec<u8>> {
    Base64UrlUnpadded::decode_vec(s)
        .or_else(|_| Base64Url::decode_vec(s))
        .or_else(|_| Base64::decode_vec(s))
        .or_else(|_| Base64Unpadded::decode_vec(s))
        .ok()
}

fn encode_payload(kid: &str, c: &Claims, buf: &mut Vec<u8>) {
    let mut flags = 0u8;
    if c.direction == Direction::Upload {
        flags |= FLAG_UPLOAD;
    }
    if c.session.is_some() {
        flags |= FLAG_SESSION;
    }
    if c.max_bytes.is_some() {
        flags |= FLAG_MAX_BYTES;
    }
    if c.sha256.is_some() {
        flags |= FLAG_SHA256;
    }
    if !c.overwrite {
        flags |= FLAG_NO_OVERWRITE;
    }
    if c.ip.is_some() {
        flags |= FLAG_IP;
    }
    if c.max_uses > 1 {
        flags |= FLAG_MAX_USES;
    }
    buf.push(VERSION);
    // Key ids are validated at parse time to be at most 16 bytes.
    buf.push(kid.len() as u8);
    buf.extend_from_slice(kid.as_bytes());
    buf.push(flags);
    buf.extend_from_slice(&c.expires_at.to_be_bytes());
    buf.extend_from_slice(&c.nonce);
    if let Some(session) = &c.session {
        // A session id is at most 64 bytes.
        let s = session.as_str().as_bytes();
        buf.push(s.len() as u8);
        buf.extend_from_slice(s);
    }
    let p = &c.path.as_bytes()[..c.path.len().min(u16::MAX as usize)];
    buf.extend_from_slice(&(p.len() as u16).to_be_bytes());
    buf.extend_from_slice(p);
    if let Some(max) = c.max_bytes {
        buf.extend_from_slice(&max.to_be_bytes());
    }
    if let Some(digest) = &c.sha256 {
        buf.extend_from_slice(digest);
    }
    if let Some(net) = c.ip {
        match net.addr() {
            IpAddr::V4(a) => {
                buf.push(4);
                buf.extend_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                buf.push(6);
                buf.extend_from_slice(&a.octets());
            }
        }
        buf.push(net.prefix_len());
    }
    if c.max_uses > 1 {
        buf.extend_from_slice(&c.max_uses.to_be_bytes());
    }
}

/// A cursor over MAC-verified bytes. Any shortfall or leftover is `Malformed`: a valid MAC
/// over a layout this build does not understand must still not be half-read.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], TokenError> {
        if self.buf.len() < n {
            return Err(TokenError::Malformed);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, TokenError> {
        Ok(self.take(1)?[0])
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], TokenError> {
        Ok(self.take(N)?.try_into().expect("length checked"))
    }
    fn u64(&mut self) -> Result<u64, TokenError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    fn text(&mut self, n: usize) -> Result<&'a str, TokenError> {
        std::str::from_utf8(self.take(n)?).map_err(|_| TokenError::Malformed)
    }
}

fn decode_claims(body: &[u8]) -> Result<Claims, TokenError> {
    let mut r = Reader { buf: body };
    let flags = r.u8()?;
    if flags & !KNOWN_FLAGS != 0 {
        return Err(TokenError::Malformed);
    }
    let expires_at = r.u64()?;
    let nonce = r.array::<NONCE_LEN>()?;
    let session = if flags & FLAG_SESSION != 0 {
        let n = r.u8()? as usize;
        Some(SessionId::parse(r.text(n)?).map_err(|_| TokenError::Malformed)?)
    } else {
        None
    };
    let path_len = u16::from_be_bytes(r.array()?) as usize;
    let path = LinkPath::new(r.text(path_len)?);
    let max_bytes = (flags & FLAG_MAX_BYTES != 0).then(|| r.u64()).transpose()?;
    let sha256 = (flags & FLAG_SHA256 != 0)
        .then(|| r.array::<32>())
        .transpose()?;
    let ip = if flags & FLAG_IP != 0 {
        let addr = match r.u8()? {
            4 => IpAddr::V4(Ipv4Addr::from(r.array::<4>()?)),
            6 => IpAddr::V6(Ipv6Addr::from(r.array::<16>()?)),
            _ => return Err(TokenError::Malformed),
        };
        let prefix = r.u8()?;
        Some(IpNet::new(addr, prefix).map_err(|_| TokenError::Malformed)?)
    } else {
        None
    };
    let max_uses = if flags & FLAG_MAX_USES != 0 {
        // Written only for two uses or more: anything else is not a layout this build writes.
        match u16::from_be_bytes(r.array()?) {
            n @ 2.. => n,
            _ => return Err(TokenError::Malformed),
        }
    } else {
        1
    };
    if !r.buf.is_empty() {
        return Err(TokenError::Malformed);
    }
    Ok(Claims {
        direction: if flags & FLAG_UPLOAD != 0 {
            Direction::Upload
        } else {
            Direction::Download
        },
        session,
        path,
        expires_at,
        nonce,
        max_bytes,
        sha256,
        overwrite: flags & FLAG_NO_OVERWRITE == 0,
        ip,
        max_uses,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const K1: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
    const K2: &str = "k2:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8";

    fn sample() -> Claims {
        let mut c = Claims::new(
            Direction::Upload,
            Some(SessionId::parse("sess-1").unwrap()),
            "reports/2026/q3 résumé.pdf".into(),
            1_900_000_000,
        );
        c.max_bytes = Some(1 << 20);
        c.sha256 = Some([7; 32]);
        c.overwrite = false;
        c.ip = Some("10.1.0.0/16".parse().unwrap());
        c.max_uses = 7;
        c
    }

    #[test]
    fn the_link_id_is_the_nonces_first_six_bytes_in_hex() {
        let mut claims = sample();
        claims.nonce = [
            0xab, 0x01, 0x00, 0xff, 0x10, 0x9c, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
        ];
        assert_eq!(claims.link_id().to_string(), "ab0100ff109c");
        assert_eq!(claims.short_id(), "ab0100ff109c");
    }

    /// A download verifies one token per request: one without a session and with a path that
    /// fits in place allocates nothing; a path one byte longer is shared, and allocated once.
    #[test]
    fn verifying_a_token_with_a_short_path_allocates_nothing() {
        let ring = Keyring::parse(K1).unwrap();
        for (len, allocations) in [(1, 0), (INLINE_PATH, 0), (INLINE_PATH + 1, 1)] {
            let mut claims = Claims::new(
                Direction::Download,
                None,
                "é".repeat(len / 2),
                1_900_000_000,
            );
            if len % 2 == 1 {
                claims.path = format!("{}x", claims.path).into();
            }
            assert_eq!(claims.path.len(), len);
            let token = ring.sign(&claims);
            let mut verified = None;
            let made = crate::alloc_count::allocations(|| verified = Some(ring.verify(&token)));
            assert_eq!(made, allocations, "a path of {len} bytes");
            let verified = verified.unwrap().unwrap();
            assert_eq!(verified.claims.path.as_str(), claims.path.as_str());
            assert_eq!(verified.claims, claims);
        }
    }

    #[test]
    fn a_path_reads_the_same_held_in_place_or_shared() {
        let short = LinkPath::new("a/b.txt");
        let long = LinkPath::new(&"d/".repeat(40));
        assert_eq!(&*short, "a/b.txt");
        assert_eq!(long.len(), 80);
        assert_eq!(format!("{short} {short:?}"), "a/b.txt \"a/b.txt\"");
        assert_eq!(
            serde_json::to_string(&long).unwrap(),
            format!("\"{}\"", "d/".repeat(40))
        );
        assert_eq!(LinkPath::from(String::from("a/b.txt")), short);
        assert_ne!(LinkPath::new("a/b.txu"), short);
    }

    #[test]
    fn tokens_of_every_length_verify_on_either_side_of_the_stack_buffer() {
        let ring = Keyring::parse(K1).unwrap();
        let mut lengths = std::collections::BTreeSet::new();
        for n in 1..1200 {
            let mut claims = sample();
            claims.path = "p".repeat(n).into();
            let token = ring.sign(&claims);
            lengths.insert(token.len());
            assert_eq!(ring.verify(&token).unwrap().claims, claims, "{n}");
            // One flipped character is refused on both paths.
            let mut forged = token.into_bytes();
            let last = forged.len() - 2;
            forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
            let forged = String::from_utf8(forged).unwrap();
            assert!(ring.verify(&forged).is_err(), "{n}");
        }
        assert!(lengths.contains(&680), "the boundary");
        assert!(*lengths.first().unwrap() < 600 && *lengths.last().unwrap() > 1500);
    }

    #[test]
    fn round_trip_with_every_field() {
        let ring = Keyring::parse(K1).unwrap();
        let claims = sample();
        let token = ring.sign(&claims);
        let v = ring.verify(&token).unwrap();
        assert_eq!(v.claims, claims);
        assert_eq!(&*v.key_id, "k1");
        assert!(
            !token.contains(['+', '/', '=']),
            "URL-safe, unpadded: {token}"
        );
    }

    /// A client without the key reads what the link states, tampered or not: the reading
    /// never stands in for `verify`.
    #[test]
    fn read_unverified_states_the_claims_whatever_the_mac() {
        let ring = Keyring::parse(K1).unwrap();
        let claims = sample();
        let token = ring.sign(&claims);
        assert_eq!(read_unverified(&token).unwrap(), claims);
        let other = Keyring::parse(K2).unwrap().sign(&claims);
        assert_eq!(read_unverified(&other).unwrap(), claims);
        assert_eq!(ring.verify(&other), Err(TokenError::UnknownKey));
        assert_eq!(read_unverified("a/b"), Err(TokenError::Malformed));
        assert_eq!(read_unverified("AAAA"), Err(TokenError::Malformed));
    }

    #[test]
    fn round_trip_minimal() {
        let ring = Keyring::parse(K1).unwrap();
        let claims = Claims::new(Direction::Download, None, "a".into(), 5);
        assert_eq!(ring.verify(&ring.sign(&claims)).unwrap().claims, claims);
    }

    /// A token minted before `max_uses` existed (no bit6) still verifies, as one use; the
    /// bytes below are such a token's payload, signed here with the same key.
    #[test]
    fn tokens_without_max_uses_allow_one_use() {
        let ring = Keyring::parse(K1).unwrap();
        let mut c = sample();
        c.max_uses = 1;
        let raw = Base64UrlUnpadded::decode_vec(&ring.sign(&c)).unwrap();
        let flags = raw[2 + raw[1] as usize];
        assert_eq!(flags & FLAG_MAX_USES, 0, "one use is written as before");
        assert_eq!(ring.verify(&ring.sign(&c)).unwrap().claims.max_uses, 1);
        // A bit6 field below 2 is not something this build writes.
        let key = &ring.keys[0];
        for bad in [0u16, 1] {
            let mut buf = Vec::new();
            let mut c2 = sample();
            c2.max_uses = 2;
            encode_payload(&key.id, &c2, &mut buf);
            let n = buf.len();
            buf[n - 2..].copy_from_slice(&bad.to_be_bytes());
            let mut mac = key.mac.clone();
            mac.update(&buf);
            buf.extend_from_slice(&mac.finalize().into_bytes());
            let token = Base64UrlUnpadded::encode_string(&buf);
            assert_eq!(ring.verify(&token), Err(TokenError::Malformed), "{bad}");
        }
    }

    #[test]
    fn rotation_old_tokens_verify_until_the_key_is_removed() {
        let old = Keyring::parse(K1).unwrap();
        let token = old.sign(&sample());
        let rotated = Keyring::parse(&format!("{K2},{K1}")).unwrap();
        assert_eq!(rotated.signing_key_id(), "k2");
        assert_eq!(&*rotated.verify(&token).unwrap().key_id, "k1");
        let new_token = rotated.sign(&sample());
        assert_eq!(&*rotated.verify(&new_token).unwrap().key_id, "k2");
        let retired = Keyring::parse(K2).unwrap();
        assert_eq!(retired.verify(&token), Err(TokenError::UnknownKey));
    }

    #[test]
    fn same_key_id_other_secret_is_a_bad_signature() {
        let a = Keyring::parse(K1).unwrap();
        let b = Keyring::parse(&format!("k1:{}", K2.split_once(':').unwrap().1)).unwrap();
        assert_eq!(b.verify(&a.sign(&sample())), Err(TokenError::BadSignature));
    }

    #[test]
    fn unknown_version_is_rejected() {
        let ring = Keyring::parse(K1).unwrap();
        let mut raw = Base64UrlUnpadded::decode_vec(&ring.sign(&sample())).unwrap();
        raw[0] = 2;
        let token = Base64UrlUnpadded::encode_string(&raw);
        assert_eq!(ring.verify(&token), Err(TokenError::UnsupportedVersion));
    }

    #[test]
    fn junk_is_malformed() {
        let ring = Keyring::parse(K1).unwrap();
        for junk in ["", "a", "!!!!", "AAAA", "AQ", &"A".repeat(9000)] {
            assert!(ring.verify(junk).is_err(), "{junk:?}");
        }
        // Padding and the standard alphabet are not the token encoding.
        let token = ring.sign(&sample());
        assert!(ring.verify(&format!("{token}=")).is_err());
    }

    #[test]
    fn every_single_bit_flip_is_rejected() {
        let ring = Keyring::parse(K1).unwrap();
        let raw = Base64UrlUnpadded::decode_vec(&ring.sign(&sample())).unwrap();
        for byte in 0..raw.len() {
            for bit in 0..8 {
                let mut t = raw.clone();
                t[byte] ^= 1 << bit;
                let token = Base64UrlUnpadded::encode_string(&t);
                assert!(
                    ring.verify(&token).is_err(),
                    "flip of byte {byte} bit {bit}"
                );
            }
        }
    }

    #[test]
    fn a_token_has_one_spelling() {
        let ring = Keyring::parse(K1).unwrap();
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut checked = 0;
        // Paths of three lengths: one of them leaves bits unused in the last character.
        for path in ["a.txt", "ab.txt", "abc.txt"] {
            let token = ring.sign(&Claims {
                path: path.into(),
                ..sample()
            });
            assert_eq!(
                token,
                Base64UrlUnpadded::encode_string(&Base64UrlUnpadded::decode_vec(&token).unwrap()),
                "{path}: written as the constant-time codec writes it"
            );
            // The last character carries 2 bits of data (length 2 mod 4) or 4 (3 mod 4); the
            // rest are unused. Setting one of those spells the same bytes, MAC included, so
            // only the decoder's strictness can refuse it.
            let unused = match token.len() % 4 {
                2 => 4,
                3 => 2,
                _ => continue,
            };
            let last = token.as_bytes()[token.len() - 1];
            let at = alphabet.iter().position(|&c| c == last).unwrap();
            for bit in 0..unused {
                let mut other = token[..token.len() - 1].to_string();
                other.push(alphabet[at ^ (1 << bit)] as char);
                assert_eq!(
                    ring.verify(&other).map(|_| ()),
                    Err(TokenError::Malformed),
                    "{path}: {other}"
                );
                checked += 1;
            }
        }
        assert!(checked > 0, "no path left bits unused");
    }

    #[test]
    fn every_truncation_and_extension_is_rejected() {
        let ring = Keyring::parse(K1).unwrap();
        let token = ring.sign(&sample());
        for n in 0..token.len() {
            assert!(ring.verify(&token[..n]).is_err(), "truncated to {n}");
        }
        let raw = Base64UrlUnpadded::decode_vec(&token).unwrap();
        for extra in [&[0u8][..], &[1, 2, 3], &[0; 32]] {
            let mut t = raw.clone();
            t.extend_from_slice(extra);
            assert!(ring.verify(&Base64UrlUnpadded::encode_string(&t)).is_err());
        }
        for suffix in ["A", "AA", "AAAA", "x"] {
            assert!(ring.verify(&format!("{token}{suffix}")).is_err());
        }
    }

    #[test]
    fn keys_parse_rules() {
        assert!(matches!(Keyring::parse(""), Err(KeyError::Empty)));
        assert!(matches!(Keyring::parse("nocolon"), Err(KeyError::Shape(1))));
        assert!(matches!(
            Keyring::parse("k1:c2hvcnQ"),
            Err(KeyError::TooShort { index: 1, len: 5 })
        ));
        assert!(matches!(
            Keyring::parse("bad kid:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"),
            Err(KeyError::BadKeyId(1))
        ));
        assert!(matches!(
            Keyring::parse(&format!("{K1},{K1}")),
            Err(KeyError::Duplicate(_))
        ));
        // Standard padded base64 of the same 32 bytes is accepted too.
        let std = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        let a = Keyring::parse(std).unwrap();
        let b = Keyring::parse(K1).unwrap();
        assert!(b.verify(&a.sign(&sample())).is_ok());
    }

    #[test]
    fn generated_entries_parse() {
        let entry = generate_key_entry();
        let ring = Keyring::parse(&entry).unwrap();
        assert!(is_valid_key_id(ring.signing_key_id()));
        assert_ne!(generate_key_entry(), entry);
    }

    #[test]
    fn token_is_found_in_any_url_shape() {
        assert_eq!(extract_token("abc"), "abc");
        assert_eq!(extract_token("http://h:1/transfer/abc"), "abc");
        assert_eq!(extract_token("http://h/transfer/abc/file.txt?x=1"), "abc");
        assert_eq!(extract_token("https://h/api/download/abc"), "abc");
        assert_eq!(extract_token(" https://h/api/links/abc \n"), "abc");
    }

    /// `verify` leaves the alphabet to the decoder; this holds it to `is_token_shaped`'s rule.
    #[test]
    fn verify_refuses_any_byte_a_token_cannot_hold() {
        let ring = Keyring::parse(K1).unwrap();
        let token = ring.sign(&sample());
        assert!(ring.verify(&token).is_ok());
        let mid = token.len() / 2;
        for c in (0u8..=127)
            .map(char::from)
            .chain(['é', '\u{2044}', '\u{ff0f}'])
        {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                continue;
            }
            for at in [0, mid, token.len()] {
                let mut bad = token.clone();
                bad.insert(at, c);
                assert_eq!(
                    ring.verify(&bad),
                    Err(TokenError::Malformed),
                    "{c:?} at {at}"
                );
                let mut swapped = token.clone();
                swapped.replace_range(
                    at.min(token.len() - 1)..at.min(token.len() - 1) + 1,
                    &c.to_string(),
                );
                assert_eq!(
                    ring.verify(&swapped),
                    Err(TokenError::Malformed),
                    "{c:?} for {at}"
                );
            }
        }
        for len in [0, 1, MAX_TOKEN_LEN + 1] {
            assert_eq!(
                ring.verify(&"A".repeat(len)),
                Err(TokenError::Malformed),
                "{len}"
            );
        }
    }

    #[test]
    fn token_shapes() {
        assert!(is_token_shaped("AbC-_09"));
        for bad in [
            "",
            "a",
            "..",
            "a/b",
            "a?b",
            "a%2e",
            "a b",
            "a=",
            &"a".repeat(MAX_TOKEN_LEN + 1),
        ] {
            assert!(!is_token_shaped(bad), "{bad}");
        }
    }

    fn arb_claims() -> impl Strategy<Value = Claims> {
        (
            any::<bool>(),
            proptest::option::of("[A-Za-z0-9_-]{1,64}"),
            "\\PC{0,200}",
            any::<u64>(),
            any::<[u8; 16]>(),
            proptest::option::of(any::<u64>()),
            proptest::option::of(any::<[u8; 32]>()),
            any::<bool>(),
            proptest::option::of((any::<[u8; 4]>(), 0u8..=32)),
            1u16..,
        )
            .prop_map(
                |(up, session, path, exp, nonce, max, sha, ow, ip, uses)| Claims {
                    direction: if up {
                        Direction::Upload
                    } else {
                        Direction::Download
                    },
                    session: session.map(|s| SessionId::parse(&s).unwrap()),
                    path: path.into(),
                    expires_at: exp,
                    nonce,
                    max_bytes: max,
                    sha256: sha,
                    overwrite: ow,
                    ip: ip.map(|(a, p)| IpNet::new(IpAddr::V4(a.into()), p).unwrap()),
                    max_uses: uses,
                },
            )
    }

    proptest! {
        #[test]
        fn any_claims_round_trip(claims in arb_claims()) {
            let ring = Keyring::parse(K1).unwrap();
            prop_assert_eq!(ring.verify(&ring.sign(&claims)).unwrap().claims, claims);
        }

        #[test]
        fn random_mutations_never_verify(claims in arb_claims(), pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let ring = Keyring::parse(K1).unwrap();
            let mut raw = Base64UrlUnpadded::decode_vec(&ring.sign(&claims)).unwrap();
            let i = pos.index(raw.len());
            prop_assume!(raw[i] != byte);
            raw[i] = byte;
            prop_assert!(ring.verify(&Base64UrlUnpadded::encode_string(&raw)).is_err());
        }

        #[test]
        fn random_strings_never_verify(s in "[A-Za-z0-9_-]{0,300}") {
            let ring = Keyring::parse(K1).unwrap();
            prop_assert!(ring.verify(&s).is_err());
        }
    }
}
