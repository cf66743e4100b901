//! The lease keeper: how a transfer holds its link, for downloads and uploads alike.
//!
//! A transfer takes the link's lease before it moves a byte, renews it while bytes flow, acts
//! (hands over the last byte, renames the upload into place) only while the lease is known to
//! be held, and then commits (burns, and counts the use) or releases it. The ledger makes each
//! step one atomic, fenced call; this module keeps the clock side of it in one place: the
//! renewal period and the safety margin below.
//!
//! Free of HTTP: the transfer routes turn a [`LeaseError`] into a status, and tie the
//! [`Lease::valid_until`] deadline to the connection themselves.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::{Instant, Interval, MissedTickBehavior};

use crate::ledger::{Acquire, Ledger, LedgerError, LinkState, Owner, Receipt};
use crate::metrics::ActiveTransfer;
use crate::session::SessionId;
use crate::stats::StatsStore;
use crate::token::{Claims, Nonce};
use crate::webhooks::{Completed, Event, Webhooks};

/// Taken off every lease deadline before acting on it. A lease's deadline is computed from a
/// moment taken *before* the ledger was asked, so it is never later than the ledger's own; the
/// margin covers what happens after the check: the memory ledger's whole-millisecond clock,
/// Redis's expiry accuracy, and the act itself (a socket write of the next chunk, a `rename`
/// on a busy blocking pool). A quarter second is far more than those and far less than any
/// lease (at least one second).
pub const MARGIN: Duration = Duration::from_millis(250);

/// How long a commit is tried again when the ledger fails it (see [`Lease::commit`]): a
/// failover's worth, and short enough that an upload's answer does not wait on a ledger that
/// is down for good.
const COMMIT_RETRY: Duration = Duration::from_secs(3);

/// Renewals happen every third of the lease's lifetime: one renewal may fail or be late (a slow
/// ledger call is bounded at 2 s, the shortest lease is 1 s) and the next still lands before
/// the lease lapses. Never more often than every 100 ms, so a tiny lease does not hammer the
/// ledger.
pub fn period(lifetime: Duration) -> Duration {
    (lifetime / 3).max(Duration::from_millis(100))
}

/// Why a lease was not had.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("another transfer holds this link right now")]
    Busy,
    #[error("the link has already been used")]
    Used,
    #[error("the link was revoked")]
    Revoked,
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// Takes leases for the transfers of one server: the ledger to ask, the stats to count a
/// completed use in, and the lifetime of every lease (`BURNLINK_LEASE_S`).
#[derive(Clone)]
pub struct LeaseKeeper {
    ledger: Arc<dyn Ledger>,
    stats: Arc<dyn StatsStore>,
    lifetime: Duration,
    /// Where `link.transferred` goes after each completed transfer, when configured.
    webhooks: Option<Webhooks>,
}

impl LeaseKeeper {
    pub fn new(ledger: Arc<dyn Ledger>, stats: Arc<dyn StatsStore>, lifetime: Duration) -> Self {
        LeaseKeeper {
            ledger,
            stats,
            lifetime,
            webhooks: None,
        }
    }

    /// Sends `link.transferred` after each completed transfer.
    pub fn with_webhooks(mut self, webhooks: Option<Webhooks>) -> Self {
        self.webhooks = webhooks;
        self
    }

    /// Takes the link's lease for a fresh owner, or says why not. `client` is the address the
    /// transfer comes from, for the webhook event.
    pub async fn acquire(&self, claims: &Claims, client: IpAddr) -> Result<Lease, LeaseError> {
        let owner = Owner::random();
        // Taken before the ledger is asked, so the deadline computed from it is never later
        // than the ledger's.
        let asked_at = Instant::now();
        match self
            .ledger
            .lease(
                &claims.nonce,
                owner,
                claims.expires_at,
                self.lifetime,
                claims.max_uses,
            )
            .await?
        {
            Acquire::Granted => Ok(Lease {
                keeper: self.clone(),
                nonce: claims.nonce,
                expires_at: claims.expires_at,
                max_uses: claims.max_uses,
                uses: None,
                claims: self.webhooks.as_ref().map(|_| Box::new(claims.clone())),
                client,
                bytes: 0,
                session: claims.session.clone(),
                owner,
                valid_until: Mutex::new(Until::Own(asked_at + self.lifetime - MARGIN)),
                settled: false,
                _active: ActiveTransfer::start(),
            }),
            Acquire::Busy => Err(LeaseError::Busy),
            Acquire::Used => Err(LeaseError::Used),
            Acquire::Revoked => Err(LeaseError::Revoked),
        }
    }
}

/// A held lease on one link. Dropping it unsettled releases it, so every early return is safe.
pub struct Lease {
    keeper: LeaseKeeper,
    nonce: Nonce,
    expires_at: u64,
    max_uses: u16,
    /// Completed transfers of the link once this one committed.
    uses: Option<u16>,
    /// The link, for the webhook event (only kept when webhooks are on).
    claims: Option<Box<Claims>>,
    client: IpAddr,
    /// Bytes a download handed over, for the webhook event.
    bytes: u64,
    session: Option<SessionId>,
    owner: Owner,
    /// Until when acting is safe: the last known ledger deadline less [`MARGIN`].
    valid_until: Mutex<Until>,
    settled: bool,
    _active: ActiveTransfer,
}

/// Where a lease keeps its deadline: in the lease until something asks for a [`Deadline`]
/// handle, then in a cell the lease and its handles share. Only uploads ask (blocking code
/// checks the handle right before it renames), so a download's lease allocates nothing for it.
/// Both forms sit behind the lease's one lock, so there is one value at any time.
enum Until {
    Own(Instant),
    Shared(Arc<Mutex<Instant>>),
}

/// A read-only view of a lease's deadline, for code that cannot hold the lease itself (a
/// rename on the blocking pool). It follows every later renewal of the lease.
#[derive(Clone)]
pub struct Deadline(Arc<Mutex<Instant>>);

impl Deadline {
    /// Whether the lease is still known to be held right now.
    pub fn holds(&self) -> bool {
        Instant::now() < *lock(&self.0)
    }
}

impl Lease {
    /// When acting stops being safe unless the lease is renewed.
    pub fn valid_until(&self) -> Instant {
        match &*lock(&self.valid_until) {
            Until::Own(at) => *at,
            Until::Shared(cell) => *lock(cell),
        }
    }

    /// Whether the lease was taken or renewed within the last renewal [`period`]: renewing it
    /// now would buy nothing the next tick does not. A 4 KiB download delivers its last byte
    /// right after taking the lease; this spares it a second ledger call (a Redis round trip).
    pub fn fresh(&self) -> bool {
        let lifetime = self.keeper.lifetime;
        let since_renewal =
            (Instant::now() + lifetime).saturating_duration_since(self.valid_until() + MARGIN);
        since_renewal < period(lifetime)
    }

    pub fn deadline(&self) -> Deadline {
        let mut until = lock(&self.valid_until);
        let cell = match &*until {
            Until::Shared(cell) => cell.clone(),
            Until::Own(at) => {
                let cell = Arc::new(Mutex::new(*at));
                *until = Until::Shared(cell.clone());
                cell
            }
        };
        Deadline(cell)
    }

    /// A timer that ticks every renewal [`period`], the first tick one period from now.
    pub fn ticker(&self) -> Interval {
        let period = period(self.keeper.lifetime);
        let mut tick = tokio::time::interval_at(Instant::now() + period, period);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        tick
    }

    /// Extends the lease by its lifetime. `Ok(false)`: it was lost (lapsed and taken, or
    /// revoked), and the deadline is now. On a ledger error the old deadline stands: writes and
    /// renames stop there unless a later renewal gets through.
    pub async fn renew(&self) -> Result<bool, LedgerError> {
        let asked_at = Instant::now();
        let held = self
            .keeper
            .ledger
            .renew(&self.nonce, self.owner, self.keeper.lifetime)
            .await?;
        self.set_deadline(held, asked_at);
        Ok(held)
    }

    /// Renews, or, when the lease lapsed while the client paused and nobody else took the
    /// link, takes it again for the same owner: the link was free, so this transfer may go on.
    /// Otherwise says who has the link now.
    pub async fn hold(&self) -> Result<(), LeaseError> {
        let asked_at = Instant::now();
        let ledger = &self.keeper.ledger;
        let lifetime = self.keeper.lifetime;
        let held = ledger.renew(&self.nonce, self.owner, lifetime).await? || {
            ledger
                .lease(
                    &self.nonce,
                    self.owner,
                    self.expires_at,
                    lifetime,
                    self.max_uses,
                )
                .await?
                == Acquire::Granted
        };
        self.set_deadline(held, asked_at);
        if held {
            return Ok(());
        }
        Err(match ledger.state(&self.nonce).await? {
            LinkState::Revoked => LeaseError::Revoked,
            LinkState::Used(_) => LeaseError::Used,
            LinkState::InProgress | LinkState::Unused => LeaseError::Busy,
        })
    }

    fn set_deadline(&self, held: bool, asked_at: Instant) {
        let at = if held {
            asked_at + self.keeper.lifetime - MARGIN
        } else {
            asked_at
        };
        match &mut *lock(&self.valid_until) {
            Until::Own(own) => *own = at,
            Until::Shared(cell) => *lock(cell) = at,
        }
    }

    /// Consumes one use of the link (with an upload's receipt), burning it with the last, and
    /// counts a burned link. `Ok(false)`: the lease was lost (lapsed and taken, or revoked) and
    /// nothing was consumed. A ledger failure is asked again for a moment ([`COMMIT_RETRY`]).
    /// Counting is best effort: the transfer happened whatever the stats store says.
    pub async fn commit(&mut self, receipt: Option<Receipt>) -> Result<bool, LedgerError> {
        self.settled = true;
        let uses = self.commit_call(receipt).await?;
        self.uses = uses;
        if let (Some(uses), Some(webhooks), Some(claims)) =
            (uses, &self.keeper.webhooks, &self.claims)
        {
            let done = Completed {
                bytes: receipt.map_or(self.bytes, |r| r.bytes),
                sha256: receipt.map(|r| r.sha256),
                uses,
                client: Some(self.client),
            };
            webhooks.emit(Event::new("link.transferred", claims, done));
        }
        let burned = uses.is_some_and(|u| u >= self.max_uses);
        if burned
            && let Err(e) = self
                .keeper
                .stats
                .record_use(
                    self.session.as_ref().map(SessionId::as_str),
                    self.expires_at,
                )
                .await
        {
            tracing::warn!(error = %e, "could not count a used link");
        }
        Ok(uses.is_some())
    }

    /// The ledger's commit, asked again after a failure while the lease still stands and for
    /// at most [`COMMIT_RETRY`]. The transfer is done by now (the bytes delivered, the upload
    /// in place), and a commit that never lands leaves a one-time link usable. A Redis
    /// failover refuses connections or answers `MOVED` for a moment, well inside a lease. Safe
    /// to repeat: the commit is fenced by the owner, so one that landed but whose answer was
    /// lost finds no lease the second time and counts nothing twice.
    async fn commit_call(&self, receipt: Option<Receipt>) -> Result<Option<u16>, LedgerError> {
        let give_up = (self.valid_until() + MARGIN).min(Instant::now() + COMMIT_RETRY);
        let mut pause = Duration::from_millis(25);
        loop {
            match self
                .keeper
                .ledger
                .commit(&self.nonce, self.owner, receipt)
                .await
            {
                Err(e) if Instant::now() + pause < give_up => {
                    tracing::warn!(error = %e, "could not commit a transfer; trying again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(400));
                }
                answer => return answer,
            }
        }
    }

    /// [`Lease::commit`] for a download that handed over `bytes`.
    pub async fn commit_delivered(&mut self, bytes: u64) -> Result<bool, LedgerError> {
        self.bytes = bytes;
        self.commit(None).await
    }

    /// How many transfers of the link completed, counting this one, once it committed.
    pub fn uses(&self) -> Option<u16> {
        self.uses
    }

    /// Whether [`Lease::commit`] is answered inside this process, at once: the memory ledger
    /// and stats. Otherwise a commit may wait on the network (a round trip, a replica `WAIT`,
    /// a retry through a failover) and a caller that must not wait spawns it.
    pub fn commits_in_process(&self) -> bool {
        self.keeper.ledger.in_process() && self.keeper.stats.in_process()
    }

    /// The number of completed transfers the link allows.
    pub fn max_uses(&self) -> u16 {
        self.max_uses
    }

    /// Gives the link back at once, rather than after the lease lapses.
    pub async fn release(&mut self) {
        self.settled = true;
        release(&self.keeper.ledger, &self.nonce, self.owner).await;
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let (ledger, nonce, owner) = (self.keeper.ledger.clone(), self.nonce, self.owner);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { release(&ledger, &nonce, owner).await });
        }
    }
}

async fn release(ledger: &Arc<dyn Ledger>, nonce: &Nonce, owner: Owner) {
    if let Err(e) = ledger.release(nonce, owner).await {
        // The lease lapses by itself after its lifetime.
        tracing::warn!(error = %e, "could not release a lease; it will lapse");
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::MemoryLedger;
    use crate::session::SessionId;
    use crate::stats::MemoryStats;
    use crate::token::{Direction, unix_now};

    fn keeper(lifetime: Duration) -> (LeaseKeeper, Arc<MemoryStats>) {
        let stats = Arc::new(MemoryStats::default());
        let keeper = LeaseKeeper::new(Arc::new(MemoryLedger::new()), stats.clone(), lifetime);
        (keeper, stats)
    }

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn claims() -> Claims {
        Claims::new(
            Direction::Download,
            Some(SessionId::parse("s1").unwrap()),
            "f".into(),
            unix_now() + 3600,
        )
    }

    #[test]
    fn the_period_is_a_third_of_the_lifetime_but_not_below_100_ms() {
        assert_eq!(period(Duration::from_secs(30)), Duration::from_secs(10));
        assert_eq!(
            period(Duration::from_millis(150)),
            Duration::from_millis(100)
        );
    }

    #[tokio::test]
    async fn one_holder_at_a_time_and_commit_burns_and_counts() {
        let (keeper, stats) = keeper(Duration::from_secs(5));
        let c = claims();
        let mut lease = keeper.acquire(&c, LOCAL).await.unwrap();
        assert!(lease.valid_until() <= Instant::now() + Duration::from_secs(5) - MARGIN);
        assert!(lease.deadline().holds());
        assert!(matches!(
            keeper.acquire(&c, LOCAL).await,
            Err(LeaseError::Busy)
        ));
        assert!(lease.renew().await.unwrap());
        assert!(lease.commit(None).await.unwrap());
        assert!(matches!(
            keeper.acquire(&c, LOCAL).await,
            Err(LeaseError::Used)
        ));
        let s = stats.snapshot(None, unix_now()).await.unwrap();
        assert_eq!(s.used_tokens, 1, "{s:?}");
    }

    /// A keeper on a memory ledger whose next `failing` commits fail, as a Redis failover
    /// fails them.
    fn failing_keeper(failing: u32, lifetime: Duration) -> LeaseKeeper {
        let ledger = MemoryLedger::new();
        ledger.fail_commits(failing);
        LeaseKeeper::new(Arc::new(ledger), Arc::new(MemoryStats::default()), lifetime)
    }

    /// A commit the ledger fails for a moment (a failover) is asked again and burns the link;
    /// one it keeps failing gives up within the bound, leaving the error to the caller.
    #[tokio::test(start_paused = true)]
    async fn a_commit_the_ledger_fails_for_a_moment_still_burns() {
        let c = claims();
        let keeper = failing_keeper(3, Duration::from_secs(30));
        let mut lease = keeper.acquire(&c, LOCAL).await.unwrap();
        assert!(lease.commit(None).await.unwrap());
        assert!(matches!(
            keeper.acquire(&c, LOCAL).await,
            Err(LeaseError::Used)
        ));

        let keeper = failing_keeper(u32::MAX, Duration::from_secs(30));
        let mut lease = keeper.acquire(&c, LOCAL).await.unwrap();
        let asked = Instant::now();
        assert!(lease.commit(None).await.is_err());
        assert!(asked.elapsed() <= COMMIT_RETRY, "{:?}", asked.elapsed());
        assert!(
            asked.elapsed() >= Duration::from_secs(1),
            "{:?}",
            asked.elapsed()
        );

        // Never past the lease: a short one stops the retries at its end.
        let keeper = failing_keeper(u32::MAX, Duration::from_secs(1));
        let mut lease = keeper.acquire(&c, LOCAL).await.unwrap();
        let asked = Instant::now();
        assert!(lease.commit(None).await.is_err());
        assert!(
            asked.elapsed() <= Duration::from_secs(1),
            "{:?}",
            asked.elapsed()
        );
    }

    #[tokio::test]
    async fn release_and_drop_free_the_link() {
        let (keeper, _) = keeper(Duration::from_secs(5));
        let c = claims();
        let mut lease = keeper.acquire(&c, LOCAL).await.unwrap();
        lease.release().await;
        let lease = keeper.acquire(&c, LOCAL).await.unwrap();
        drop(lease);
        // The drop releases on a spawned task.
        for _ in 0..100 {
            if keeper.acquire(&c, LOCAL).await.is_ok() {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("a dropped lease was not released");
    }

    #[tokio::test]
    async fn a_lapsed_lease_is_retaken_by_hold_unless_someone_else_took_it() {
        let (keeper, _) = keeper(Duration::from_millis(1_000));
        let c = claims();
        let lease = keeper.acquire(&c, LOCAL).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        assert!(!lease.deadline().holds(), "the deadline passed");
        lease.hold().await.expect("nobody took it: retaken");
        assert!(lease.deadline().holds());

        tokio::time::sleep(Duration::from_millis(1_100)).await;
        let mut other = keeper
            .acquire(&c, LOCAL)
            .await
            .expect("lapsed: free for another");
        assert!(!lease.renew().await.unwrap());
        assert!(!lease.deadline().holds(), "a lost lease's deadline is now");
        assert!(matches!(lease.hold().await, Err(LeaseError::Busy)));
        other.release().await;
    }

    /// A download's lease, from taking it to its burn, allocates nothing once the ledger's
    /// maps have room: its deadline stays in the lease (no handle is asked for) and the memory
    /// ledger and stats answer at once.
    #[test]
    fn a_downloads_lease_allocates_nothing() {
        use futures_util::FutureExt;
        let (keeper, stats) = keeper(Duration::from_secs(30));
        let spend = |c: &Claims| {
            let mut lease = keeper.acquire(c, LOCAL).now_or_never().unwrap().unwrap();
            assert!(lease.fresh());
            let burned = lease.commit_delivered(4096).now_or_never().unwrap();
            assert!(burned.unwrap());
        };
        let (warm, mut measured) = (claims(), claims());
        // The ledger's shard is picked by the nonce's first byte: the same as the warm-up's.
        measured.nonce[0] = warm.nonce[0];
        spend(&warm);
        let made = crate::alloc_count::allocations(|| spend(&measured));
        assert_eq!(made, 0);
        let counted = stats.snapshot(None, unix_now()).now_or_never().unwrap();
        assert_eq!(counted.unwrap().used_tokens, 2);
    }

    /// A handle taken before a renewal (an upload takes one before its rename) sees the
    /// renewed deadline, and sees it fall to now when the lease is lost.
    #[tokio::test(start_paused = true)]
    async fn a_deadline_handle_follows_the_leases_renewals() {
        let (keeper, _) = keeper(Duration::from_secs(30));
        let c = claims();
        let lease = keeper.acquire(&c, LOCAL).await.unwrap();
        let handle = lease.deadline();
        assert!(handle.holds());
        tokio::time::advance(Duration::from_secs(20)).await;
        assert!(lease.renew().await.unwrap());
        tokio::time::advance(Duration::from_secs(20)).await;
        assert!(
            handle.holds(),
            "past the first deadline, within the renewed one"
        );
        assert_eq!(handle.holds(), lease.deadline().holds());

        keeper.ledger.revoke(&c.nonce, c.expires_at).await.unwrap();
        assert!(!lease.renew().await.unwrap());
        assert!(
            !handle.holds(),
            "a lost lease's deadline is now, for every handle"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_is_fresh_for_one_period_after_each_renewal() {
        let (keeper, _) = keeper(Duration::from_secs(30));
        let lease = keeper.acquire(&claims(), LOCAL).await.unwrap();
        assert!(lease.fresh(), "just taken");
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(lease.fresh(), "9 s into a 10 s period");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(!lease.fresh(), "a period has passed");
        assert!(lease.renew().await.unwrap());
        assert!(lease.fresh(), "just renewed");
    }
}
