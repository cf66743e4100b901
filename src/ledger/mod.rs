//! The nonce ledger: what makes a signed link single-use.
//!
//! A token proves a link is genuine; the ledger remembers what happened to it. A link that was
//! never touched has no entry at all, so the ledger only holds links that are in flight, burned,
//! revoked or partly used, and each entry can be dropped once its token has expired (an expired
//! token is refused before the ledger is asked).
//!
//! A link may allow several uses (`max_uses`, signed in the token, default 1). Then up to as
//! many leases run at once as uses remain (`uses + leases ≤ max_uses`; the rest are `Busy`),
//! each commit consumes one use, and the commit of the last burns the link. A release or a
//! lapsed lease consumes nothing. A single-use link is the case `max_uses = 1` of the same rules.
//!
//! Every transition is one call, so a shared implementation (Redis) can make each one a single
//! atomic round trip:
//!
//! ```text
//!            lease(owner)              commit(owner), last use
//!   unused ───────────────▶ leased ─────────────────▶ burned
//!      ▲                      │  │  │
//!      │                      │  │  └─ commit(owner), uses remain: unused (one use fewer)
//!      └── release(owner) ────┘  └─ lease lifetime passes without renew(owner): unused again
//!   unused | leased ── revoke ──▶ revoked
//! ```
//!
//! Leases are fenced: only the owner that took a lease can renew, commit or release it, so a
//! transfer whose lease lapsed (its replica stalled) cannot burn a link someone else now holds.

pub mod memory;
pub mod redis;
pub mod redis_conn;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
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
/// For a link of several uses: `InProgress` while a transfer runs, `Unused` while uses remain,
/// `Used` when none remain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    Unused,
    InProgress,
    Used(Option<Receipt>),
    Revoked,
}

/// A link's state with its count of completed transfers, read in one step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    pub state: LinkState,
    /// Completed transfers so far.
    pub uses: u16,
    /// The last completed upload's receipt, also while uses remain.
    pub receipt: Option<Receipt>,
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

/// What a call on the download path ([`Ledger::lease`], [`Ledger::commit`],
/// [`StatsStore::record_use`]) returns: either answered already, or a future to wait on.
///
/// An in-process ledger decides under a lock and has its answer before it returns; boxing a
/// future for that (as `async_trait` does for every call) was three of a download's eight
/// heap allocations. A remote ledger still returns a boxed future. The other calls are rarer
/// and keep `async_trait`'s form.
///
/// [`StatsStore::record_use`]: crate::stats::StatsStore::record_use
pub enum Answer<'a, T> {
    Now(std::future::Ready<T>),
    Later(Pin<Box<dyn Future<Output = T> + Send + 'a>>),
}

impl<'a, T> Answer<'a, T> {
    pub fn now(value: T) -> Self {
        Answer::Now(std::future::ready(value))
    }

    pub fn later(future: impl Future<Output = T> + Send + 'a) -> Self {
        Answer::Later(Box::pin(future))
    }
}

impl<T> Future for Answer<'_, T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match self.get_mut() {
            Answer::Now(ready) => Pin::new(ready).poll(cx),
            Answer::Later(future) => future.as_mut().poll(cx),
        }
    }
}

/// The ledger's transitions. Implementations must make each call atomic with respect to every
/// other call on the same nonce, across every process that shares the ledger.
#[async_trait]
pub trait Ledger: Send + Sync + 'static {
    /// Takes a lease for `owner` unless the link is burned or revoked, or as many leases run
    /// as uses remain (`max_uses`, from the token, at least 1). `expires_at` (unix seconds) is
    /// the token's expiry, after which the entry may be forgotten. An `owner` that already
    /// holds a lease (or held one that lapsed) takes it again rather than a second one.
    fn lease<'a>(
        &'a self,
        nonce: &'a Nonce,
        owner: Owner,
        expires_at: u64,
        lifetime: Duration,
        max_uses: u16,
    ) -> Answer<'a, Result<Acquire, LedgerError>>;

    /// Extends `owner`'s lease by `lifetime` from now. `false` when `owner` no longer holds it
    /// (it lapsed and someone else took it, or the link was revoked).
    async fn renew(
        &self,
        nonce: &Nonce,
        owner: Owner,
        lifetime: Duration,
    ) -> Result<bool, LedgerError>;

    /// Consumes one use if `owner` still holds its lease, and burns the link with the last.
    /// `Some(uses)`: the count of completed transfers now; `None` when `owner` does not hold
    /// a lease, in which case nothing changed.
    fn commit<'a>(
        &'a self,
        nonce: &'a Nonce,
        owner: Owner,
        receipt: Option<Receipt>,
    ) -> Answer<'a, Result<Option<u16>, LedgerError>>;

    /// Gives the lease back if `owner` still holds it, so the link can be used again.
    async fn release(&self, nonce: &Nonce, owner: Owner) -> Result<(), LedgerError>;

    /// Burns a link that was not used, for `DELETE /api/links/{token}` and `burnlink revoke`.
    async fn revoke(&self, nonce: &Nonce, expires_at: u64) -> Result<Revoke, LedgerError>;

    /// The state and the count of completed transfers, in one atomic read.
    async fn usage(&self, nonce: &Nonce) -> Result<Usage, LedgerError>;

    async fn state(&self, nonce: &Nonce) -> Result<LinkState, LedgerError> {
        Ok(self.usage(nonce).await?.state)
    }

    /// Cheap reachability check for `/readyz`.
    async fn ping(&self) -> Result<(), LedgerError>;

    /// How many entries the ledger holds (for metrics and the compactness bench).
    async fn entries(&self) -> Result<u64, LedgerError>;

    /// Whether calls are answered inside this process, at once. Only then may a connection
    /// wait for a commit before reading its next request (the express lane does): a remote
    /// ledger's commit costs a round trip, a replica `WAIT` or a retry after a failover,
    /// which must hold up that transfer alone.
    fn in_process(&self) -> bool {
        false
    }
}

/// The conformance suite every [`Ledger`] implementation must pass: the transition rules above,
/// one async function per rule. Each rule uses nonces of its own, so the whole suite can run
/// on one ledger, one rule after the other ([`run_all`](suite::run_all)).
///
/// It is public (and compiled in every build, not only under `cfg(test)`) so that integration
/// tests and benches can drive it against real servers, such as a Redis started for the test,
/// which unit tests cannot reach (every Redis topology: one node, TLS, Cluster, Sentinel); it
/// is not part of the service's API, hence hidden from docs.
#[doc(hidden)]
pub mod suite {
    use super::*;
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Arc;

    /// One rule of the suite, on a ledger the other rules may share.
    pub type Rule = fn(Arc<dyn Ledger>) -> Pin<Box<dyn Future<Output = ()> + Send>>;

    /// Every rule, by name. Every deployment (the memory ledger, one Redis, TLS, Cluster,
    /// Sentinel) runs this list rather than naming rules, so a rule added here runs everywhere.
    pub const RULES: &[(&str, Rule)] = &[
        ("lease_commit_burns", |l| {
            Box::pin(async move { lease_commit_burns(&*l).await })
        }),
        ("release_makes_it_usable_again", |l| {
            Box::pin(async move { release_makes_it_usable_again(&*l).await })
        }),
        ("revoke_rules", |l| {
            Box::pin(async move { revoke_rules(&*l).await })
        }),
        ("race_has_one_winner", |l| Box::pin(race_has_one_winner(l))),
        ("several_uses_are_counted", |l| {
            Box::pin(async move { several_uses_are_counted(&*l).await })
        }),
        ("revoke_stops_remaining_uses", |l| {
            Box::pin(async move { revoke_stops_remaining_uses(&*l).await })
        }),
        ("race_several_uses", |l| Box::pin(race_several_uses(l))),
        ("a_lapsed_lease_frees_its_use_and_fences_its_owner", |l| {
            Box::pin(async move { a_lapsed_lease_frees_its_use_and_fences_its_owner(&*l).await })
        }),
    ];

    /// Runs every rule of [`RULES`] on `l`, in order, naming each on stderr first so that a
    /// failure shows which rule (and which deployment, `label`) broke.
    pub async fn run_all(label: &str, l: Arc<dyn Ledger>) {
        for (name, rule) in RULES {
            eprintln!("ledger suite [{label}]: {name}");
            rule(l.clone()).await;
        }
    }

    fn nonce(n: u8) -> Nonce {
        [n; 16]
    }

    const FAR: u64 = u64::MAX / 2;
    const LEASE: Duration = Duration::from_secs(30);

    pub async fn lease_commit_burns(l: &dyn Ledger) {
        let (a, b) = (Owner(1), Owner(2));
        assert_eq!(l.state(&nonce(1)).await.unwrap(), LinkState::Unused);
        assert_eq!(
            l.lease(&nonce(1), a, FAR, LEASE, 1).await.unwrap(),
            Acquire::Granted
        );
        assert_eq!(l.state(&nonce(1)).await.unwrap(), LinkState::InProgress);
        assert_eq!(
            l.lease(&nonce(1), b, FAR, LEASE, 1).await.unwrap(),
            Acquire::Busy
        );
        assert!(l.renew(&nonce(1), a, LEASE).await.unwrap());
        assert!(!l.renew(&nonce(1), b, LEASE).await.unwrap());
        assert!(
            l.commit(&nonce(1), b, None).await.unwrap().is_none(),
            "fenced"
        );
        assert!(l.commit(&nonce(1), a, None).await.unwrap().is_some());
        assert_eq!(l.state(&nonce(1)).await.unwrap(), LinkState::Used(None));
        assert_eq!(
            l.lease(&nonce(1), b, FAR, LEASE, 1).await.unwrap(),
            Acquire::Used
        );
        assert!(
            l.commit(&nonce(1), a, None).await.unwrap().is_none(),
            "commit twice"
        );
    }

    pub async fn release_makes_it_usable_again(l: &dyn Ledger) {
        let (a, b) = (Owner(1), Owner(2));
        assert_eq!(
            l.lease(&nonce(2), a, FAR, LEASE, 1).await.unwrap(),
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
            l.lease(&nonce(2), b, FAR, LEASE, 1).await.unwrap(),
            Acquire::Granted
        );
        let receipt = Receipt {
            bytes: 5,
            sha256: [9; 32],
        };
        assert!(
            l.commit(&nonce(2), b, Some(receipt))
                .await
                .unwrap()
                .is_some()
        );
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
            l.lease(&nonce(3), Owner(1), FAR, LEASE, 1).await.unwrap(),
            Acquire::Revoked
        );
        // Revoking a link in flight wins: the running transfer cannot commit it.
        assert_eq!(
            l.lease(&nonce(4), Owner(1), FAR, LEASE, 1).await.unwrap(),
            Acquire::Granted
        );
        assert_eq!(l.revoke(&nonce(4), FAR).await.unwrap(), Revoke::Revoked);
        assert!(l.commit(&nonce(4), Owner(1), None).await.unwrap().is_none());
        assert!(!l.renew(&nonce(4), Owner(1), LEASE).await.unwrap());
        assert_eq!(l.state(&nonce(4)).await.unwrap(), LinkState::Revoked);
        // A used link stays used.
        assert_eq!(
            l.lease(&nonce(5), Owner(1), FAR, LEASE, 1).await.unwrap(),
            Acquire::Granted
        );
        assert!(l.commit(&nonce(5), Owner(1), None).await.unwrap().is_some());
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
                let got = l.lease(&n, owner, FAR, LEASE, 1).await.unwrap();
                let committed = if got == Acquire::Granted {
                    l.commit(&n, owner, None).await.unwrap().is_some()
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

    /// A link of three uses: three leases at once and no more, each commit consumes one, a
    /// release consumes none, the last commit burns it; an owner taking its lease again does
    /// not take a second one.
    pub async fn several_uses_are_counted(l: &dyn Ledger) {
        let n = nonce(7);
        let o = |i: u128| Owner(700 + i);
        for i in 0..3 {
            assert_eq!(
                l.lease(&n, o(i), FAR, LEASE, 3).await.unwrap(),
                Acquire::Granted
            );
        }
        assert_eq!(
            l.lease(&n, o(0), FAR, LEASE, 3).await.unwrap(),
            Acquire::Granted,
            "the same owner again"
        );
        assert_eq!(
            l.lease(&n, o(3), FAR, LEASE, 3).await.unwrap(),
            Acquire::Busy
        );
        let u = l.usage(&n).await.unwrap();
        assert_eq!((u.state, u.uses), (LinkState::InProgress, 0));
        assert_eq!(l.commit(&n, o(0), None).await.unwrap(), Some(1));
        assert_eq!(
            l.commit(&n, o(0), None).await.unwrap(),
            None,
            "once per lease"
        );
        assert!(!l.renew(&n, o(9), LEASE).await.unwrap(), "fenced");
        assert!(l.renew(&n, o(1), LEASE).await.unwrap());
        l.release(&n, o(1)).await.unwrap();
        l.release(&n, o(2)).await.unwrap();
        let u = l.usage(&n).await.unwrap();
        assert_eq!(
            (u.state, u.uses),
            (LinkState::Unused, 1),
            "released: no use"
        );
        assert_eq!(
            l.lease(&n, o(4), FAR, LEASE, 3).await.unwrap(),
            Acquire::Granted
        );
        assert_eq!(
            l.lease(&n, o(5), FAR, LEASE, 3).await.unwrap(),
            Acquire::Granted
        );
        assert_eq!(
            l.lease(&n, o(6), FAR, LEASE, 3).await.unwrap(),
            Acquire::Busy,
            "one use done, two in flight"
        );
        let receipt = Receipt {
            bytes: 3,
            sha256: [3; 32],
        };
        assert_eq!(l.commit(&n, o(4), Some(receipt)).await.unwrap(), Some(2));
        let u = l.usage(&n).await.unwrap();
        assert_eq!((u.state, u.uses), (LinkState::InProgress, 2));
        assert_eq!(u.receipt, Some(receipt), "the last upload's receipt");
        assert_eq!(l.commit(&n, o(5), None).await.unwrap(), Some(3));
        let u = l.usage(&n).await.unwrap();
        assert!(matches!(u.state, LinkState::Used(_)), "{u:?}");
        assert_eq!(u.uses, 3);
        assert_eq!(
            l.lease(&n, o(7), FAR, LEASE, 3).await.unwrap(),
            Acquire::Used
        );
        assert_eq!(l.revoke(&n, FAR).await.unwrap(), Revoke::AlreadyUsed);
    }

    /// Revoking a link of several uses stops the remaining ones, also for a transfer running.
    pub async fn revoke_stops_remaining_uses(l: &dyn Ledger) {
        let n = nonce(8);
        assert_eq!(
            l.lease(&n, Owner(1), FAR, LEASE, 4).await.unwrap(),
            Acquire::Granted
        );
        assert_eq!(l.commit(&n, Owner(1), None).await.unwrap(), Some(1));
        assert_eq!(
            l.lease(&n, Owner(2), FAR, LEASE, 4).await.unwrap(),
            Acquire::Granted
        );
        assert_eq!(l.revoke(&n, FAR).await.unwrap(), Revoke::Revoked);
        assert_eq!(l.commit(&n, Owner(2), None).await.unwrap(), None);
        assert!(!l.renew(&n, Owner(2), LEASE).await.unwrap());
        assert_eq!(
            l.lease(&n, Owner(3), FAR, LEASE, 4).await.unwrap(),
            Acquire::Revoked
        );
        let u = l.usage(&n).await.unwrap();
        assert_eq!((u.state, u.uses), (LinkState::Revoked, 1));
        assert_eq!(l.revoke(&n, FAR).await.unwrap(), Revoke::AlreadyRevoked);
        // A dropped lease gives its slot back and leaves nothing behind.
        let m = nonce(9);
        assert_eq!(
            l.lease(&m, Owner(1), FAR, LEASE, 2).await.unwrap(),
            Acquire::Granted
        );
        l.release(&m, Owner(1)).await.unwrap();
        let u = l.usage(&m).await.unwrap();
        assert_eq!((u.state, u.uses), (LinkState::Unused, 0));
    }

    /// 64 tasks race for a 3-use link, each retrying while it is busy: exactly three commits.
    pub async fn race_several_uses(l: Arc<dyn Ledger>) {
        let n = nonce(10);
        let mut tasks = Vec::new();
        for i in 0..64u128 {
            let l = l.clone();
            tasks.push(tokio::spawn(async move {
                let owner = Owner(2000 + i);
                for _ in 0..200 {
                    match l.lease(&n, owner, FAR, LEASE, 3).await.unwrap() {
                        Acquire::Granted => {
                            return l.commit(&n, owner, None).await.unwrap().is_some();
                        }
                        Acquire::Busy => tokio::task::yield_now().await,
                        Acquire::Used => return false,
                        Acquire::Revoked => panic!("not revoked"),
                    }
                }
                false
            }));
        }
        let mut committed = 0;
        for t in tasks {
            committed += t.await.unwrap() as u32;
        }
        assert_eq!(committed, 3);
        let u = l.usage(&n).await.unwrap();
        assert!(matches!(u.state, LinkState::Used(_)), "{u:?}");
        assert_eq!(u.uses, 3);
    }

    /// A lease that nobody renews lapses on the ledger's own clock (Redis: the key's `PX`):
    /// the link becomes usable again, a several-use link gets the use back, and the owner
    /// whose lease lapsed can neither renew nor commit once someone else holds it. Real time
    /// passes here, so the lease is short; it must still outlast the few calls made under it
    /// on a loaded machine, hence a second rather than less.
    pub async fn a_lapsed_lease_frees_its_use_and_fences_its_owner(l: &dyn Ledger) {
        let (one, two) = (nonce(11), nonce(12));
        let short = Duration::from_millis(1000);
        assert_eq!(
            l.lease(&one, Owner(1), FAR, short, 1).await.unwrap(),
            Acquire::Granted
        );
        assert_eq!(
            l.lease(&one, Owner(2), FAR, short, 1).await.unwrap(),
            Acquire::Busy
        );
        for o in [1, 2] {
            assert_eq!(
                l.lease(&two, Owner(o), FAR, short, 2).await.unwrap(),
                Acquire::Granted
            );
        }
        assert_eq!(
            l.lease(&two, Owner(3), FAR, short, 2).await.unwrap(),
            Acquire::Busy
        );
        assert_eq!(l.commit(&two, Owner(2), None).await.unwrap(), Some(1));
        // The owners' replica "dies": nobody renews, and the leases lapse.
        tokio::time::sleep(short + Duration::from_millis(500)).await;

        assert_eq!(l.state(&one).await.unwrap(), LinkState::Unused);
        assert!(!l.renew(&one, Owner(1), short).await.unwrap());
        assert_eq!(
            l.lease(&one, Owner(2), FAR, LEASE, 1).await.unwrap(),
            Acquire::Granted
        );
        assert!(
            l.commit(&one, Owner(1), None).await.unwrap().is_none(),
            "the owner of a lapsed lease cannot burn"
        );
        assert!(l.commit(&one, Owner(2), None).await.unwrap().is_some());
        assert_eq!(l.state(&one).await.unwrap(), LinkState::Used(None));

        let u = l.usage(&two).await.unwrap();
        assert_eq!(
            (u.state, u.uses),
            (LinkState::Unused, 1),
            "the lapsed lease gave its use back, the commit kept its own"
        );
        assert!(!l.renew(&two, Owner(1), short).await.unwrap());
        assert_eq!(
            l.lease(&two, Owner(3), FAR, LEASE, 2).await.unwrap(),
            Acquire::Granted
        );
        assert_eq!(l.commit(&two, Owner(1), None).await.unwrap(), None);
        assert_eq!(l.commit(&two, Owner(3), None).await.unwrap(), Some(2));
        assert!(matches!(l.state(&two).await.unwrap(), LinkState::Used(_)));
    }
}
