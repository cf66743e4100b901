//! Links: minting ("this path, this way, for this long" into a signed URL) and the
//! [`service`] that every front end mints, asks and revokes through.
//!
//! The [`Minter`] applies the sandbox rules, TTL bounds and size ceilings and signs; it does
//! not touch the ledger, so minting keeps working when the ledger is down.

pub mod service;

pub use crate::config::Limits;
pub use service::{LinkService, LinkStatus, Origin, ServiceError, expiry_seconds};

use std::sync::Arc;

use ipnet::IpNet;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::archive::{
    self,
    walk::{self, WalkError},
};
use crate::sandbox::{self, Kind, SandboxError};
use crate::session::SessionId;
use crate::storage::{Storage, bucket};
pub use crate::token::unix_now;
use crate::token::{Claims, Direction, Keyring};

/// Characters left as they are in the cosmetic file-name segment of a URL.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A request to mint, already past authentication and with its session decided.
#[derive(Clone, Debug, Default)]
pub struct MintRequest {
    pub path: String,
    pub direction: Option<Direction>,
    /// Seconds; `None` for the default. Signed so that a negative request can be refused with
    /// a clear error instead of failing to parse.
    pub ttl_seconds: Option<i64>,
    pub session: Option<SessionId>,
    pub max_bytes: Option<u64>,
    pub sha256: Option<[u8; 32]>,
    pub overwrite: Option<bool>,
    pub ip: Option<IpNet>,
    /// Completed transfers the link allows; `None` for one. Clamped to the configured ceiling.
    pub max_uses: Option<u64>,
}

/// A minted link, serialised as the `POST /api/links` response.
#[derive(Clone, Debug, Serialize)]
pub struct Minted {
    pub url: String,
    pub token: String,
    pub path: String,
    pub direction: Direction,
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    pub expires_at: String,
    pub expires_in_seconds: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    /// Completed transfers the link allows (the value in force, after clamping).
    pub max_uses: u16,
    #[serde(skip)]
    pub claims: Claims,
}

#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error("ttl must be positive")]
    InvalidTtl,
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Sandbox(#[from] SandboxError),
    #[error("{size} bytes is over the download ceiling of {limit} bytes")]
    TooLarge { size: u64, limit: u64 },
    #[error("the destination exists and overwrite is false")]
    Exists,
    /// A directory past the archive limits (entries, depth).
    #[error("{0}")]
    TreeTooLarge(String),
}

pub struct Minter {
    keyring: Arc<Keyring>,
    storage: Storage,
    limits: Limits,
    base_url: String,
}

impl Minter {
    /// The base URL links are minted under (no trailing slash).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn new(keyring: Arc<Keyring>, storage: Storage, limits: Limits, base_url: String) -> Self {
        Minter {
            keyring,
            storage,
            limits,
            base_url: base_url.trim_end_matches('/').to_string(),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Checks the request against the sandbox and limits and signs a token. Blocking: it
    /// stats the file system, or waits for the bucket (on a runtime's blocking thread).
    pub fn mint(&self, req: MintRequest, now_unix: u64) -> Result<Minted, MintError> {
        let direction = req.direction.unwrap_or(Direction::Download);
        let ttl = match req.ttl_seconds {
            None => self.limits.ttl_default,
            Some(t) if t <= 0 => return Err(MintError::InvalidTtl),
            Some(t) => (t as u64).min(self.limits.ttl_max),
        };
        let max_uses = self.max_uses(req.max_uses)?;
        let session = req.session.as_ref();
        let rel = self.storage.normalize(session, &req.path)?;
        // burnlink's own upload temporaries: never handed out, and never a destination (the
        // start-up sweep would delete the file later).
        if rel.split('/').any(crate::staging::is_temporary) {
            return Err(MintError::BadRequest(
                "names of the form .burnlink-*.part are reserved for burnlink's temporary files"
                    .into(),
            ));
        }
        if direction == Direction::Upload {
            return self.mint_upload(req, rel, ttl, max_uses, now_unix);
        }
        if req.max_bytes.is_some() || req.sha256.is_some() || req.overwrite.is_some() {
            return Err(MintError::BadRequest(
                "max_bytes, sha256 and overwrite apply to upload links only".into(),
            ));
        }
        let (kind, size) = self.stat(session, &rel)?;
        if size > self.limits.max_download_bytes {
            return Err(MintError::TooLarge {
                size,
                limit: self.limits.max_download_bytes,
            });
        }
        let name = match kind {
            Kind::File => sandbox::file_name(&rel).to_string(),
            Kind::Directory => archive::archive_name(&rel),
        };
        let expires_at = now_unix.saturating_add(ttl);
        let mut claims = Claims::new(direction, req.session, rel, expires_at);
        claims.ip = req.ip;
        claims.max_uses = max_uses;
        let token = self.keyring.sign(&claims);
        Ok(Minted {
            url: self.url_for(&token, &name),
            token,
            path: claims.path.to_string(),
            direction,
            kind: kind.as_str(),
            size: Some(size),
            expires_at: rfc3339(expires_at),
            expires_in_seconds: ttl,
            max_bytes: None,
            max_uses,
            claims,
        })
    }

    /// The `max_uses` in force: 1 when not asked, at least 1, at most the configured ceiling.
    fn max_uses(&self, asked: Option<u64>) -> Result<u16, MintError> {
        match asked {
            None => Ok(1),
            Some(0) => Err(MintError::BadRequest("max_uses must be at least 1".into())),
            Some(n) => Ok(n.min(u64::from(self.limits.max_uses.max(1))) as u16),
        }
    }

    /// An upload link: the destination must be a file name inside the sandbox with an allowed
    /// extension, and must not exist when the link may not replace it. The cap in force (the
    /// request's, clamped to the configured maximum) is signed into the token.
    fn mint_upload(
        &self,
        req: MintRequest,
        rel: String,
        ttl: u64,
        max_uses: u16,
        now_unix: u64,
    ) -> Result<Minted, MintError> {
        if let Some(allowed) = &self.limits.upload_extensions {
            let ext = upload_extension(&rel);
            if !ext.as_ref().is_some_and(|e| allowed.contains(e)) {
                return Err(MintError::BadRequest(format!(
                    "uploads here must have one of these extensions: {}",
                    allowed.join(", ")
                )));
            }
        }
        let overwrite = req.overwrite.unwrap_or(true);
        match self.upload_destination(req.session.as_ref(), &rel)? {
            Some(Kind::Directory) => {
                return Err(MintError::BadRequest(
                    "the destination is a directory; name a file inside it".into(),
                ));
            }
            Some(_) if !overwrite => return Err(MintError::Exists),
            _ => {}
        }
        let max_bytes = req
            .max_bytes
            .unwrap_or(self.limits.max_upload_bytes)
            .min(self.limits.max_upload_bytes);
        let expires_at = now_unix.saturating_add(ttl);
        let mut claims = Claims::new(Direction::Upload, req.session, rel, expires_at);
        claims.max_bytes = Some(max_bytes);
        claims.sha256 = req.sha256;
        claims.overwrite = overwrite;
        claims.ip = req.ip;
        claims.max_uses = max_uses;
        let token = self.keyring.sign(&claims);
        let name = sandbox::file_name(&claims.path);
        Ok(Minted {
            url: self.url_for(&token, name),
            token,
            path: claims.path.to_string(),
            direction: Direction::Upload,
            kind: Kind::File.as_str(),
            size: None,
            expires_at: rfc3339(expires_at),
            expires_in_seconds: ttl,
            max_bytes: Some(max_bytes),
            max_uses,
            claims,
        })
    }

    /// What `rel` names and its size: a file's, or the sum of a directory's files' sizes (as
    /// documented). Blocking.
    fn stat(&self, session: Option<&SessionId>, rel: &str) -> Result<(Kind, u64), MintError> {
        let summary = match &self.storage {
            Storage::Disk(sandbox) => {
                let meta = sandbox.stat(session, rel)?;
                if sandbox::kind_of(&meta)? == Kind::File {
                    return Ok((Kind::File, meta.len()));
                }
                let base = sandbox.session_dir(session)?;
                walk::summarize(&base, rel, walk::LIMITS)
            }
            Storage::Bucket(b) => {
                let entry = block_on(b.stat(session, rel))?;
                if let bucket::Entry::File(object) = entry {
                    return Ok((Kind::File, object.size));
                }
                block_on(walk::summarize_bucket(b, session, rel, walk::LIMITS))
            }
        };
        match summary {
            Ok(summary) => Ok((Kind::Directory, summary.bytes)),
            Err(WalkError::Sandbox(e)) => Err(e.into()),
            Err(limit) => Err(MintError::TreeTooLarge(limit.to_string())),
        }
    }

    /// What is at an upload's destination now, if anything; creates nothing. On disk a
    /// missing parent is fine (uploads create it) and a parent that is a file is not; a bucket
    /// has no parents. Blocking.
    fn upload_destination(
        &self,
        session: Option<&SessionId>,
        rel: &str,
    ) -> Result<Option<Kind>, MintError> {
        match &self.storage {
            Storage::Disk(sandbox) => Ok(sandbox.upload_destination(session, rel)?.map(|meta| {
                if meta.is_dir() {
                    Kind::Directory
                } else {
                    Kind::File
                }
            })),
            Storage::Bucket(b) => {
                if rel == "." {
                    return Err(SandboxError::BadPath(
                        "an upload needs a file name, not a directory",
                    )
                    .into());
                }
                match block_on(b.stat(session, rel)) {
                    Ok(bucket::Entry::File(_)) => Ok(Some(Kind::File)),
                    Ok(bucket::Entry::Directory) => Ok(Some(Kind::Directory)),
                    Err(SandboxError::NotFound) => Ok(None),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    /// `{base}/transfer/{token}/{name}`; the name only makes `curl -O` and browsers pick a
    /// sensible file name.
    pub fn url_for(&self, token: &str, name: &str) -> String {
        format!(
            "{}/transfer/{}/{}",
            self.base_url,
            token,
            utf8_percent_encode(name, SEGMENT)
        )
    }
}

/// Waits for a bucket call from the minter, which runs on a blocking thread of the runtime.
fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    tokio::runtime::Handle::current().block_on(fut)
}

/// The lower-case extension of a destination (`report.PDF` → `pdf`); `None` for names without
/// one, including dot files such as `.env`.
fn upload_extension(rel: &str) -> Option<String> {
    let name = sandbox::file_name(rel);
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() && !ext.is_empty() => Some(ext.to_ascii_lowercase()),
        _ => None,
    }
}

/// A SHA-256 digest written as 64 hex digits.
pub fn parse_sha256_hex(s: &str) -> Result<[u8; 32], MintError> {
    let bad = || MintError::BadRequest("sha256 must be 64 hex digits".into());
    let s = s.trim();
    if s.len() != 64 || !s.is_ascii() {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

/// A CIDR (`203.0.113.0/24`) or a bare address (a /32 or /128).
pub fn parse_ip(s: &str) -> Result<IpNet, MintError> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| {
            MintError::BadRequest(format!(
                "ip must be a CIDR such as 203.0.113.0/24, got `{s}`"
            ))
        })
}

/// Unix seconds as RFC 3339 UTC (`2026-11-21T15:04:05Z`).
pub fn rfc3339(unix: u64) -> String {
    OffsetDateTime::from_unix_timestamp(unix.min(253_402_300_799) as i64)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minter(root: &std::path::Path) -> Minter {
        let keyring = Arc::new(Keyring::parse(&crate::token::generate_key_entry()).unwrap());
        Minter::new(
            keyring,
            Storage::Disk(crate::sandbox::Sandbox::open(root).unwrap()),
            Limits {
                ttl_default: 3600,
                ttl_max: 86400,
                max_download_bytes: 10,
                max_upload_bytes: 10,
                upload_extensions: None,
                max_uses: 100,
            },
            "http://h:1/".into(),
        )
    }

    fn req(path: &str) -> MintRequest {
        MintRequest {
            path: path.into(),
            ..MintRequest::default()
        }
    }

    #[test]
    fn mints_a_file_link() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a b.txt"), b"hello").unwrap();
        let m = minter(dir.path());
        let out = m.mint(req("a b.txt"), 1_000).unwrap();
        assert_eq!(out.kind, "file");
        assert_eq!(out.size, Some(5));
        assert_eq!(out.expires_in_seconds, 3600);
        assert_eq!(out.claims.expires_at, 4_600);
        assert_eq!(out.expires_at, "1970-01-01T01:16:40Z");
        assert_eq!(
            out.url,
            format!("http://h:1/transfer/{}/a%20b.txt", out.token)
        );
    }

    #[test]
    fn mints_a_directory_link_with_the_sum_of_its_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("photos/raw")).unwrap();
        std::fs::write(dir.path().join("photos/a.jpg"), b"1234").unwrap();
        std::fs::write(dir.path().join("photos/raw/b.jpg"), b"123456").unwrap();
        let m = minter(dir.path());
        let out = m.mint(req("photos"), 0).unwrap();
        assert_eq!(out.kind, "directory");
        assert_eq!(out.size, Some(10));
        assert!(out.url.ends_with("/photos.zip"), "{}", out.url);
        // The ceiling (10 bytes here) applies to the sum.
        std::fs::write(dir.path().join("photos/raw/c.jpg"), b"1").unwrap();
        assert!(matches!(
            m.mint(req("photos"), 0),
            Err(MintError::TooLarge {
                size: 11,
                limit: 10
            })
        ));
    }

    #[test]
    fn ttl_rules() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"x").unwrap();
        let m = minter(dir.path());
        let mut r = req("f");
        r.ttl_seconds = Some(0);
        assert!(matches!(m.mint(r.clone(), 0), Err(MintError::InvalidTtl)));
        r.ttl_seconds = Some(-5);
        assert!(matches!(m.mint(r.clone(), 0), Err(MintError::InvalidTtl)));
        r.ttl_seconds = Some(10_000_000);
        assert_eq!(m.mint(r, 0).unwrap().expires_in_seconds, 86400);
    }

    #[test]
    fn mints_an_upload_link() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("old.txt"), b"x").unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        let m = minter(dir.path());
        let mut r = req("new/deep/in.csv");
        r.direction = Some(Direction::Upload);
        r.max_bytes = Some(1_000);
        let out = m.mint(r.clone(), 0).unwrap();
        assert_eq!(out.max_bytes, Some(10), "clamped to the configured maximum");
        assert_eq!(out.claims.max_bytes, Some(10));
        assert_eq!(out.size, None);
        assert!(out.claims.overwrite);
        assert!(out.url.ends_with("/in.csv"));

        r.path = "old.txt".into();
        r.overwrite = Some(false);
        assert!(matches!(m.mint(r.clone(), 0), Err(MintError::Exists)));
        r.overwrite = None;
        assert!(m.mint(r.clone(), 0).is_ok(), "replacing is the default");
        for bad in ["d", ".", "old.txt/x.txt"] {
            r.path = bad.into();
            assert!(
                matches!(
                    m.mint(r.clone(), 0),
                    Err(MintError::BadRequest(_) | MintError::Sandbox(_))
                ),
                "{bad}"
            );
        }
        r.path = "../x.txt".into();
        assert!(matches!(
            m.mint(r, 0),
            Err(MintError::Sandbox(SandboxError::Outside))
        ));

        let mut d = req("old.txt");
        d.max_bytes = Some(5);
        assert!(
            matches!(m.mint(d, 0), Err(MintError::BadRequest(_))),
            "upload constraints on a download link"
        );
    }

    #[test]
    fn temporary_names_are_reserved_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        let m = minter(dir.path());
        let name = ".burnlink-0123456789abcdef.part";
        std::fs::write(dir.path().join(name), b"x").unwrap();
        for path in [
            name.to_string(),
            format!("sub/{name}"),
            format!("{name}/x.txt"),
        ] {
            for direction in [Direction::Download, Direction::Upload] {
                let mut r = req(&path);
                r.direction = Some(direction);
                assert!(
                    matches!(m.mint(r, 0), Err(MintError::BadRequest(_))),
                    "{path} {direction}"
                );
            }
        }
    }

    #[test]
    fn max_uses_defaults_to_one_and_is_clamped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"x").unwrap();
        let m = minter(dir.path());
        let out = m.mint(req("f"), 0).unwrap();
        assert_eq!((out.max_uses, out.claims.max_uses), (1, 1));
        let mut r = req("f");
        r.max_uses = Some(3);
        assert_eq!(m.mint(r.clone(), 0).unwrap().claims.max_uses, 3);
        r.max_uses = Some(1_000_000);
        assert_eq!(m.mint(r.clone(), 0).unwrap().max_uses, 100, "clamped");
        r.max_uses = Some(0);
        assert!(matches!(
            m.mint(r.clone(), 0),
            Err(MintError::BadRequest(_))
        ));
        r.direction = Some(Direction::Upload);
        r.max_uses = Some(4);
        assert_eq!(m.mint(r, 0).unwrap().claims.max_uses, 4);
    }

    #[test]
    fn upload_extensions_are_an_allowlist() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = minter(dir.path());
        m.limits.upload_extensions = Some(vec!["pdf".into(), "csv".into()]);
        let mut r = req("a.PDF");
        r.direction = Some(Direction::Upload);
        assert!(m.mint(r.clone(), 0).is_ok());
        for bad in ["a.exe", "noext", ".pdf", "a.pdf.sh", "a."] {
            r.path = bad.into();
            assert!(
                matches!(m.mint(r.clone(), 0), Err(MintError::BadRequest(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn refusals() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("big"), b"01234567890").unwrap();
        let m = minter(dir.path());
        assert!(matches!(
            m.mint(req("big"), 0),
            Err(MintError::TooLarge {
                size: 11,
                limit: 10
            })
        ));
        assert!(matches!(
            m.mint(req("missing"), 0),
            Err(MintError::Sandbox(SandboxError::NotFound))
        ));
        assert!(matches!(
            m.mint(req("../etc/passwd"), 0),
            Err(MintError::Sandbox(SandboxError::Outside))
        ));
        assert!(matches!(
            m.mint(req("/etc/passwd"), 0),
            Err(MintError::Sandbox(SandboxError::Outside))
        ));
    }
}
