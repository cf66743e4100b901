//! The nonce ledger: what makes a signed link single-use.
//!
//! A token proves a link is genuine; the ledger remembers what happened to it. A link that was
//! never touched has no entry at all, so the ledger only holds links that are in flight, burned
//! or revoked, and each entry can be dropped once its token has expired (an expired token is
//! refused before the ledger is asked).
//!
//! Every transition is one call, so a shared implementation (Redis) can make each one a single
//! atomic round trip:
//!
//! ```text
//!            lease(owner)              commit(owner)
//!   unused ───────────────▶ leased ─────────────────▶ burned
//!      ▲                      │  │
//!      └── release(owner) ────┘  └─ lease lifetime passes without renew(owner): unused again
//!   unused | leased ── revoke ──▶ revoked
//! ```
//!
//! Leases are fenced: only the owner that took a lease can renew, commit or release it, so a
//! transfer whose lease lapsed (its replica stalled) cannot burn a link someone else now holds.

pub mod memory;
pub mod redis;
pub mod redis_conn;

use std::time::Duration;

use async_trait::async_trait;

use crate::token::Nonce;

pub use memory::MemoryLedger;
pub use redis::RedisLedger;

/// Identifies one transfer attempt. Random, so replicas need not coordinate to pick one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Owner(pub u128);

impl Owner {
    pub fn random() -> Self {
        Owner(rand::random())
    }
}

/// What a finished upload left behind, so `GET /api/links/{token}` can tell the agent that
/// minted the link what arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Receipt {
    pub bytes: u64,
    pub sha256: [u8; 32],
}

/// The answer to a lease request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acquire {
    Granted,
    /// Another transfer holds the lease right now.
    Busy,
    Used,
    Revoked,
}

/// What the ledger knows about a link (expiry is the token's business, not the ledger's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    Unused,
    InProgress,
    Used(Option<Receipt>),
    Revoked,
}

/// The answer to a revoke request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Revoke {
    /// The link was unused or in flight and is now revoked; a running transfer cannot commit.
    Revoked,
    AlreadyRevoked,
    /// A transfer completed first; the link stays `used`.
    AlreadyUsed,
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The ledger cannot be reached. Transfers fail closed on this: serving without the ledger
    /// would let a link be used twice.
    #[error("ledger unavailable: {0}")]
    Unavailable(String),
}

/// The ledger's transitions. Implementations must make each call atomic with respect to every
/// other call on the same nonce, across every process that shares the ledger.
#[async_trait]
pub trait Ledger: Send + Sync + 'static {
    /// Takes the lease for `owner` unless the link is leased, burned or revoked. `expires_at`
    /// (unix seconds) is the token's expiry, after which the entry may be forgotten.
    async fn lease(
        &self,
        nonce: &Nonce,
        owner: Owner,
        expires_at: u64,
        lifetime: Duration,
    ) -> Result<Acquire, LedgerError>;

    /// Extends `owner`'s lease by `lifetime` from now. `false` when `owner` no longer holds it
    /// (it lapsed and someone else took it, or the link was revoked).
    async fn renew(
        &self,
        nonce: &Nonce,
        owner: Owner,
        lifetime: Duration,
    ) -> Result<bool, LedgerError>;

    /// Burns the link if `owner` still holds the lease. `false` when it does not, in which case
    /// nothing changed.
    async fn commit(
        &self,
        nonce: &Nonce,
        owner: Owner,
        receipt: Option<Receipt>,
    ) -> Result<bool, LedgerError>;

    /// Gives the lease back if `owner` still holds it, so the link can be used again.
    async fn release(&self, nonce: &Nonce, owner: Owner) -> Result<(), LedgerError>;

    /// Burns a link that was not used, for `DELETE /api/links/{token}` and `burnlink revoke`.
    async fn revoke(&self, nonce: &Nonce, expires_at: u64) -> Result<Revoke, LedgerError>;

    async fn state(&self, nonce: &Nonce) -> Result<LinkState, LedgerError>;

    /// Cheap reachability check for `/readyz`.
    async fn ping(&self) -> Result<(), LedgerError>;

    /// How many entries the ledger holds (for metrics and the compactness bench).
    async fn entries(&self) -> Result<u64, LedgerError>;
}

/// The conformance suite every [`Ledger`] implementation must pass: the transition rules above,
/// one async function per rule, each taking a fresh ledger.
///
/// It is public (and compiled in every build, not only under `cfg(test)`) so that integration
/// tests and benches can drive it against real servers, such as a Redis started for the test,
/// which unit tests cannot reach (every Redis topology: one node, TLS, Cluster, Sentinel); it is not part of the service's API, hence hidden from docs.
#[doc(hidden)]
pub mod suite {
    use super::*;
    use std::sync::Arc;

    fn nonce(n: u8) -> Nonce {
        [n; 16]
    }

    const FAR: u64 = u64::MAX / 2;
    const LEASE: Duration = Duration::from_secs(30);

    pub async fn lease_commit_burns(l: &dyn Ledger) {
        let (a, b) = (Owner(1), Owner(2));
        assert_eq!(l.state(&nonce(1)).await.unwrap(), LinkState::Unused);
        assert_eq!(
            l.lease(&nonce(1), a, FAR, LEASE).await.unwrap(),
            Acquire::Granted
        );
        assert_eq!(l.state(&nonce(1)).await.unwrap(), LinkState::InProgress);
        assert_eq!(
            l.lease(&nonce(1), b, FAR, LEASE).await.unwrap(),
            Acquire::Busy
        );
        assert!(l.renew(&nonce(1), a, LEASE).await.unwrap());
        assert!(!l.renew(&nonce(1), b, LEASE).await.unwrap());
        assert!(!l.commit(&nonce(1), b, None).await.unwrap(), "fenced");
        assert!(l.commit(&nonce(1), a, None).await.unwrap());
        assert_eq!(l.state(&nonce(1)).await.unwrap(), LinkState::Used(None));
        assert_eq!(
            l.lease(&nonce(1), b, FAR, LEASE).await.unwrap(),
            Acquire::Used
        );
        assert!(!l.commit(&nonce(1), a, None).await.unwrap(), "commit twice");
    }

    pub async fn release_makes_it_usable_again(l: &dyn Ledger) {
        let (a, b) = (Owner(1), Owner(2));
        assert_eq!(
            l.lease(&nonce(2), a, FAR, LEASE).await.unwrap(),
            Acquire::Granted
        );
        l.release(&nonce(2), b).await.unwrap();
        assert_eq!(
            l.state(&nonce(2)).await.unwrap(),
            LinkState::InProgress,
            "a stranger cannot release"
        );
        l.release(&nonce(2), a).await.unwrap();
        assert_eq!(l.state(&nonce(2)).await.unwrap(), LinkState::Unused);
        assert_eq!(
            l.lease(&nonce(2), b, FAR, LEASE).await.unwrap(),
            Acquire::Granted
        );
        let receipt = Receipt {
            bytes: 5,
            sha256: [9; 32],
        };
        assert!(l.commit(&nonce(2), b, Some(receipt)).await.unwrap());
        assert_eq!(
            l.state(&nonce(2)).await.unwrap(),
            LinkState::Used(Some(receipt))
        );
    }

    pub async fn revoke_rules(l: &dyn Ledger) {
        assert_eq!(l.revoke(&nonce(3), FAR).await.unwrap(), Revoke::Revoked);
        assert_eq!(
            l.revoke(&nonce(3), FAR).await.unwrap(),
            Revoke::AlreadyRevoked
        );
        assert_eq!(
            l.lease(&nonce(3), Owner(1), FAR, LEASE).await.unwrap(),
            Acquire::Revoked
        );
        // Revoking a link in flight wins: the running transfer cannot commit it.
        assert_eq!(
            l.lease(&nonce(4), Owner(1), FAR, LEASE).await.unwrap(),
            Acquire::Granted
        );
        assert_eq!(l.revoke(&nonce(4), FAR).await.unwrap(), Revoke::Revoked);
        assert!(!l.commit(&nonce(4), Owner(1), None).await.unwrap());
        assert!(!l.renew(&nonce(4), Owner(1), LEASE).await.unwrap());
        assert_eq!(l.state(&nonce(4)).await.unwrap(), LinkState::Revoked);
        // A used link stays used.
        assert_eq!(
            l.lease(&nonce(5), Owner(1), FAR, LEASE).await.unwrap(),
            Acquire::Granted
        );
        assert!(l.commit(&nonce(5), Owner(1), None).await.unwrap());
        assert_eq!(l.revoke(&nonce(5), FAR).await.unwrap(), Revoke::AlreadyUsed);
        assert_eq!(l.state(&nonce(5)).await.unwrap(), LinkState::Used(None));
    }

    /// 64 tasks race for one nonce; exactly one may win, and only it can burn the link.
    pub async fn race_has_one_winner(l: Arc<dyn Ledger>) {
        let n = nonce(6);
        let mut tasks = Vec::new();
        for i in 0..64u128 {
            let l = l.clone();
            tasks.push(tokio::spawn(async move {
                let owner = Owner(1000 + i);
                let got = l.lease(&n, owner, FAR, LEASE).await.unwrap();
                let committed = if got == Acquire::Granted {
                    l.commit(&n, owner, None).await.unwrap()
                } else {
                    false
                };
                (got, committed)
            }));
        }
        let mut granted = 0;
        let mut committed = 0;
        for t in tasks {
            let (got, c) = t.await.unwrap();
            assert!(
                matches!(got, Acquire::Granted | Acquire::Busy | Acquire::Used),
                "{got:?}"
            );
            granted += (got == Acquire::Granted) as u32;
            committed += c as u32;
        }
        assert_eq!(granted, 1);
        assert_eq!(committed, 1);
        assert_eq!(l.state(&n).await.unwrap(), LinkState::Used(None));
    }
}
