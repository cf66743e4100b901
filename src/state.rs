//! The state every request shares: configuration, keys, the ledger, the sandbox and the
//! services built on them. Built once by `burnlink serve`; the HTTP edge and MCP over HTTP
//! read it. It holds core types only, so it sits between the core and the edges.

use std::sync::Arc;

use tokio_util::task::TaskTracker;

use crate::access::ApiTokens;
use crate::archive;
use crate::config::Config;
use crate::lease::LeaseKeeper;
use crate::ledger::Ledger;
use crate::links::LinkService;
use crate::oauth::Verifier;
use crate::ratelimit::RateLimits;
use crate::stats::StatsStore;
use crate::storage::Storage;
use crate::token::Keyring;

pub struct App {
    pub config: Config,
    pub keyring: Arc<Keyring>,
    pub api_tokens: ApiTokens,
    /// OAuth access tokens (`BURNLINK_OAUTH_ISSUER`), checked after the static tokens; `None`
    /// when OAuth is off.
    pub oauth: Option<Arc<Verifier>>,
    pub ledger: Arc<dyn Ledger>,
    pub stats: Arc<dyn StatsStore>,
    /// Where files live: a directory or a bucket.
    pub storage: Storage,
    /// Mint, status and revoke, with counting, audit, metrics and the mint rate limit.
    pub links: Arc<LinkService>,
    /// Takes the leases transfers hold their links by.
    pub leases: LeaseKeeper,
    /// Work that outlives a response (settling a transfer's lease), so shutdown can wait for it.
    pub tasks: TaskTracker,
    pub rate_limits: Arc<RateLimits>,
    /// The threads directory archives may take.
    pub archives: archive::Slots,
}
