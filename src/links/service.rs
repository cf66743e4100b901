//! Minting, status and revocation as one service, for every front end: the HTTP API, MCP over
//! HTTP and stdio, and the CLI.
//!
//! Whatever asks, a mint passes the same steps in the same order: the caller's session rules,
//! the mint rate limit, the minter's sandbox and size checks, counting in the stats, the
//! `burnlink_links_minted_total` metric and an audit line. Status and revocation verify the
//! token, hold the caller to its session, ask the ledger and answer one typed [`LinkStatus`].
//! Free of HTTP: its [`ServiceError`] maps onto the documented error codes, and each edge decides
//! how a code looks on its wire.

use std::net::IpAddr;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Limits, MintError, MintRequest, Minted, Minter, rfc3339};
use crate::access::{AccessError, Caller, Scope};
use crate::ledger::{Ledger, LedgerError, LinkState, Revoke, Usage};
use crate::ratelimit::{RateLimited, RateLimits};
use crate::session::SessionId;
use crate::stats::{Statistics, StatsStore};
use crate::storage::Storage;
use crate::text::LogSafe;
use crate::token::{Claims, Direction, Keyring, hex, unix_now};
use crate::webhooks::{Completed, Event, Webhooks};

/// Everything the service can refuse, in the terms users see.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Mint(#[from] MintError),
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error(transparent)]
    RateLimited(#[from] RateLimited),
    /// The token does not verify (malformed, forged, unknown key): "no such link".
    #[error("no such link")]
    UnknownLink,
    #[error("this link has expired")]
    Expired,
    #[error("this link has already been used")]
    Used,
    /// The ledger or the stats store did not answer: fail closed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// Work handed to the blocking pool did not come back (a panic, or shutdown).
    #[error("the request was interrupted")]
    Interrupted,
}

/// `GET /api/links/{token}`, MCP's `get_link_status` and `DELETE /api/links/{token}`: what the
/// ledger knows of a link. A link in flight or finished says so even past its expiry; an
/// untouched link past its expiry is `expired`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LinkStatus {
    /// `unused`, `in_progress`, `used`, `revoked` or `expired`. `used` means the person or job
    /// has downloaded (or uploaded) it.
    pub state: StateName,
    /// `download` or `upload`.
    #[schemars(with = "String")]
    pub direction: Direction,
    /// The path the link is for, relative to its sandbox.
    pub path: String,
    /// When the link stops (or stopped) working (RFC 3339, UTC).
    pub expires_at: String,
    /// How many completed transfers the link allows.
    #[serde(default = "one")]
    pub max_uses: u16,
    /// How many transfers completed so far.
    #[serde(default)]
    pub uses: u16,
    /// Bytes received, once an upload is in place.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "u64")]
    pub bytes: Option<u64>,
    /// SHA-256 (hex) of the uploaded file, once an upload is in place.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub sha256: Option<String>,
}

/// A server older than `max_uses` (asked by `burnlink mcp` over stdio) answers without it:
/// its links allow one use.
fn one() -> u16 {
    1
}

/// A link's state as the status answer names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StateName {
    Unused,
    InProgress,
    Used,
    Revoked,
    Expired,
}

impl LinkStatus {
    /// For a link of several uses: `in_progress` while a transfer runs, `unused` while uses
    /// remain, `used` when none remain; `bytes` and `sha256` are the last upload's.
    pub fn new(claims: &Claims, usage: Usage, now_unix: u64) -> Self {
        let state = match usage.state {
            LinkState::Used(_) => StateName::Used,
            LinkState::Revoked => StateName::Revoked,
            LinkState::InProgress => StateName::InProgress,
            LinkState::Unused if claims.is_expired(now_unix) => StateName::Expired,
            LinkState::Unused => StateName::Unused,
        };
        let receipt = match usage.state {
            LinkState::Used(Some(r)) => Some(r),
            _ => usage.receipt,
        };
        LinkStatus {
            state,
            direction: claims.direction,
            path: claims.path.to_string(),
            expires_at: rfc3339(claims.expires_at),
            max_uses: claims.max_uses,
            uses: usage.uses.min(claims.max_uses),
            bytes: receipt.map(|r| r.bytes),
            sha256: receipt.map(|r| hex(&r.sha256)),
        }
    }
}

/// Who is minting, for the audit line and the rate limit.
#[derive(Clone, Copy, Debug)]
pub struct Origin {
    /// The front end: `api`, `api-compat`, `mcp`, `mcp-stdio`, `cli`.
    pub via: &'static str,
    /// The client's address, when the mint came over the network.
    pub client: Option<IpAddr>,
}

pub struct LinkService {
    minter: Arc<Minter>,
    keyring: Arc<Keyring>,
    /// `None` where no ledger is reachable from this process (`burnlink mcp` and the CLI mint
    /// offline; they ask the server for status).
    ledger: Option<Arc<dyn Ledger>>,
    stats: Arc<dyn StatsStore>,
    rate_limits: Option<Arc<RateLimits>>,
    /// Where `link.revoked` goes, when configured.
    webhooks: Option<Webhooks>,
}

impl LinkService {
    pub fn new(
        minter: Arc<Minter>,
        keyring: Arc<Keyring>,
        ledger: Option<Arc<dyn Ledger>>,
        stats: Arc<dyn StatsStore>,
        rate_limits: Option<Arc<RateLimits>>,
    ) -> Self {
        LinkService {
            minter,
            keyring,
            ledger,
            stats,
            rate_limits,
            webhooks: None,
        }
    }

    /// Sends `link.revoked` on each revocation.
    pub fn with_webhooks(mut self, webhooks: Option<Webhooks>) -> Self {
        self.webhooks = webhooks;
        self
    }

    /// A service for a process that mints on its own with the shared key (`burnlink mcp`, the
    /// CLI): no ledger (it asks the server for status), no rate limit (its one caller started
    /// it), stats of what it minted itself.
    pub fn local(
        keyring: Arc<Keyring>,
        storage: Storage,
        limits: Limits,
        base_url: String,
        stats: Arc<dyn StatsStore>,
    ) -> Self {
        let minter = Arc::new(Minter::new(keyring.clone(), storage, limits, base_url));
        LinkService::new(minter, keyring, None, stats, None)
    }

    pub fn limits(&self) -> &Limits {
        self.minter.limits()
    }

    pub fn minter(&self) -> &Minter {
        &self.minter
    }

    /// Mints a link: rate limit, checks, signature, then counting, the metric and an audit
    /// line. Counting is best effort: minting needs only the key, so it keeps working when
    /// the shared store is down.
    pub async fn mint(&self, request: MintRequest, origin: Origin) -> Result<Minted, ServiceError> {
        if let Some(limits) = &self.rate_limits {
            limits.check_mint(origin.client)?;
        }
        // Minting stats the file system; keep that off the async workers.
        let minter = self.minter.clone();
        let minted = tokio::task::spawn_blocking(move || minter.mint(request, unix_now()))
            .await
            .map_err(|_| ServiceError::Interrupted)??;
        let claims = &minted.claims;
        if let Err(e) = self
            .stats
            .record_mint(
                claims.session.as_ref().map(SessionId::as_str),
                claims.expires_at,
            )
            .await
        {
            tracing::warn!(error = %e, "could not count a minted link");
        }
        crate::telemetry::audit_mint(claims, origin.via, origin.client);
        crate::metrics::link_minted(claims.direction.as_str());
        Ok(minted)
    }

    /// [`LinkService::mint`] for an authenticated caller: the scope the link's direction needs
    /// (`links:download` or `links:upload`) is checked first. Every front end with a caller
    /// (the API, MCP over HTTP) mints through this.
    pub async fn mint_for(
        &self,
        caller: &Caller,
        request: MintRequest,
        origin: Origin,
    ) -> Result<Minted, ServiceError> {
        caller.require(Scope::to_mint(
            request.direction.unwrap_or(Direction::Download),
        ))?;
        self.mint(request, origin).await
    }

    /// The status of a link the caller may see (scope `links:read`).
    pub async fn status(&self, caller: &Caller, token: &str) -> Result<LinkStatus, ServiceError> {
        caller.require(Scope::Read)?;
        let claims = self.verified_for(caller, token)?;
        let usage = self.ledger()?.usage(&claims.nonce).await?;
        Ok(LinkStatus::new(&claims, usage, unix_now()))
    }

    /// Burns a link before it is used; a running transfer can then not commit.
    /// Needs the scope `links:revoke`.
    pub async fn revoke(&self, caller: &Caller, token: &str) -> Result<LinkStatus, ServiceError> {
        caller.require(Scope::Revoke)?;
        let claims = self.verified_for(caller, token)?;
        if claims.is_expired(unix_now()) {
            return Err(ServiceError::Expired);
        }
        let ledger = self.ledger()?;
        match ledger.revoke(&claims.nonce, claims.expires_at).await? {
            outcome @ (Revoke::Revoked | Revoke::AlreadyRevoked) => {
                tracing::info!(
                    target: "burnlink::audit",
                    event = "revoke",
                    link = %claims.link_id(),
                    session = claims.session.as_ref().map_or("-", SessionId::as_str),
                    path = %LogSafe(&claims.path),
                );
                // The uses completed before the revocation, for the answer.
                let uses = match ledger.usage(&claims.nonce).await {
                    Ok(u) => u.uses,
                    Err(_) => 0,
                };
                if let (Revoke::Revoked, Some(webhooks)) = (outcome, &self.webhooks) {
                    let done = Completed {
                        uses,
                        ..Completed::default()
                    };
                    webhooks.emit(Event::new("link.revoked", &claims, done));
                }
                let usage = Usage {
                    state: LinkState::Revoked,
                    uses,
                    receipt: None,
                };
                Ok(LinkStatus::new(&claims, usage, unix_now()))
            }
            Revoke::AlreadyUsed => Err(ServiceError::Used),
        }
    }

    /// [`LinkService::stats`] for an authenticated caller (scope `links:read`).
    pub async fn stats_for(
        &self,
        caller: &Caller,
        filter: Option<Option<&SessionId>>,
    ) -> Result<Statistics, ServiceError> {
        caller.require(Scope::Read)?;
        self.stats(filter).await
    }

    /// The counters of links minted here: all of them (`None`), or one sandbox's
    /// (`Some(None)` = the root).
    pub async fn stats(
        &self,
        filter: Option<Option<&SessionId>>,
    ) -> Result<Statistics, ServiceError> {
        let filter = filter.map(|s| s.map(SessionId::as_str));
        Ok(self.stats.snapshot(filter, unix_now()).await?)
    }

    fn ledger(&self) -> Result<&Arc<dyn Ledger>, ServiceError> {
        self.ledger.as_ref().ok_or(ServiceError::UnknownLink)
    }

    /// A token this caller may ask about. Any token fault is "no such link", as on the
    /// transfer routes.
    fn verified_for(&self, caller: &Caller, token: &str) -> Result<Claims, ServiceError> {
        let claims = self
            .keyring
            .verify(token)
            .map_err(|_| ServiceError::UnknownLink)?
            .claims;
        caller.may_act_on(claims.session.as_ref())?;
        Ok(claims)
    }
}

/// The older download API's `expiry_minutes` as a TTL in seconds: 5 minutes when absent, at
/// most 60, refused when not positive. Shared by `POST /api/download/generate` and MCP's
/// `generate_download_link`.
pub fn expiry_seconds(minutes: Option<i64>) -> Result<i64, MintError> {
    const DEFAULT_MINUTES: i64 = 5;
    const MAX_MINUTES: i64 = 60;
    let minutes = minutes.unwrap_or(DEFAULT_MINUTES);
    if minutes <= 0 {
        return Err(MintError::InvalidTtl);
    }
    Ok(minutes.min(MAX_MINUTES) * 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{MemoryLedger, Receipt};
    use crate::stats::MemoryStats;

    fn service(root: &std::path::Path, mint_per_s: u32) -> LinkService {
        let keyring = Arc::new(Keyring::parse(&crate::token::generate_key_entry()).unwrap());
        let limits = Limits {
            ttl_default: 3600,
            ttl_max: 86400,
            max_download_bytes: 1 << 20,
            max_upload_bytes: 1 << 20,
            upload_extensions: None,
            max_uses: 100,
        };
        let minter = Arc::new(Minter::new(
            keyring.clone(),
            Storage::Disk(crate::sandbox::Sandbox::open(root).unwrap()),
            limits,
            "http://h".into(),
        ));
        let rate = crate::config::RateConfig {
            mint_per_s,
            mint_burst: mint_per_s,
            failed_per_min: 0,
        };
        LinkService::new(
            minter,
            keyring,
            Some(Arc::new(MemoryLedger::new())),
            Arc::new(MemoryStats::default()),
            Some(Arc::new(RateLimits::new(&rate))),
        )
    }

    fn request(path: &str) -> MintRequest {
        MintRequest {
            path: path.into(),
            ..MintRequest::default()
        }
    }

    const API: Origin = Origin {
        via: "api",
        client: Some(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)),
    };

    #[tokio::test]
    async fn mints_are_counted_and_rate_limited_whoever_asks() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"x").unwrap();
        let s = service(dir.path(), 2);
        s.mint(request("f"), API).await.unwrap();
        s.mint(request("f"), API).await.unwrap();
        let e = s.mint(request("f"), API).await.unwrap_err();
        assert!(matches!(e, ServiceError::RateLimited(_)), "{e:?}");
        let counted = s.stats(None).await.unwrap();
        assert_eq!(counted.total_tokens, 2);
    }

    #[tokio::test]
    async fn status_and_revoke_answer_one_typed_status() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"x").unwrap();
        let s = service(dir.path(), 0);
        let open = Caller::with_all_scopes(None);
        let minted = s.mint(request("f"), API).await.unwrap();
        let status = s.status(&open, &minted.token).await.unwrap();
        assert_eq!(status.state, StateName::Unused);
        assert_eq!(
            serde_json::to_value(&status).unwrap(),
            serde_json::json!({
                "state": "unused", "direction": "download", "path": "f",
                "expires_at": minted.expires_at, "max_uses": 1, "uses": 0,
            })
        );
        let pinned = Caller::with_all_scopes(Some(SessionId::parse("other").unwrap()));
        assert!(matches!(
            s.status(&pinned, &minted.token).await,
            Err(ServiceError::Access(AccessError::Pinned(_)))
        ));
        assert!(matches!(
            s.status(&open, "garbage").await,
            Err(ServiceError::UnknownLink)
        ));
        let revoked = s.revoke(&open, &minted.token).await.unwrap();
        assert_eq!(revoked.state, StateName::Revoked);
        assert_eq!(
            s.status(&open, &minted.token).await.unwrap().state,
            StateName::Revoked
        );
    }

    #[tokio::test]
    async fn each_call_needs_its_scope() {
        use crate::access::Scopes;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"x").unwrap();
        let s = service(dir.path(), 0);
        let all = Caller::with_all_scopes(None);
        let token = s.mint_for(&all, request("f"), API).await.unwrap().token;
        let only = |names: &str| Caller {
            pinned: None,
            scopes: Scopes::from_claim(names.split(' ')),
        };
        let missing = |e: ServiceError| match e {
            ServiceError::Access(AccessError::MissingScope(s)) => s,
            other => panic!("{other:?}"),
        };
        let reader = only("links:read");
        let e = s.mint_for(&reader, request("f"), API).await.unwrap_err();
        assert_eq!(missing(e), Scope::Download);
        let upload = MintRequest {
            direction: Some(Direction::Upload),
            ..request("g")
        };
        let downloader = only("links:download");
        let e = s
            .mint_for(&downloader, upload.clone(), API)
            .await
            .unwrap_err();
        assert_eq!(missing(e), Scope::Upload);
        s.mint_for(&only("links:upload"), upload, API)
            .await
            .unwrap();
        s.mint_for(&downloader, request("f"), API).await.unwrap();
        assert_eq!(
            missing(s.status(&downloader, &token).await.unwrap_err()),
            Scope::Read
        );
        s.status(&reader, &token).await.unwrap();
        assert_eq!(
            missing(s.stats_for(&downloader, None).await.unwrap_err()),
            Scope::Read
        );
        s.stats_for(&reader, None).await.unwrap();
        assert_eq!(
            missing(s.revoke(&reader, &token).await.unwrap_err()),
            Scope::Revoke
        );
        s.revoke(&only("links:revoke"), &token).await.unwrap();
    }

    #[test]
    fn a_receipt_shows_in_the_status() {
        let claims = Claims::new(Direction::Upload, None, "u.bin".into(), 10);
        let receipt = Receipt {
            bytes: 3,
            sha256: [0xab; 32],
        };
        let used = |state| Usage {
            state,
            uses: 1,
            receipt: Some(receipt),
        };
        let status = LinkStatus::new(&claims, used(LinkState::Used(Some(receipt))), 100);
        assert_eq!(status.state, StateName::Used);
        assert_eq!(status.bytes, Some(3));
        assert_eq!(status.sha256.as_deref(), Some(&*"ab".repeat(32)));
        assert_eq!((status.uses, status.max_uses), (1, 1));
        let untouched = Usage {
            state: LinkState::Unused,
            uses: 0,
            receipt: None,
        };
        let untouched = LinkStatus::new(&claims, untouched, 100);
        assert_eq!(untouched.state, StateName::Expired);
    }

    #[test]
    fn compat_expiry_minutes() {
        assert_eq!(expiry_seconds(None).unwrap(), 300);
        assert_eq!(expiry_seconds(Some(90)).unwrap(), 3600);
        assert!(matches!(
            expiry_seconds(Some(0)),
            Err(MintError::InvalidTtl)
        ));
    }
}
