//! The in-process ledger, for a single replica.
//!
//! Most entries are spent links (burned or revoked) waiting for their token to expire, so
//! those live in maps of their own ([`SpentLinks`]): a burned link of one use in a 16-byte
//! bucket (12 bytes of the nonce, see [`SpentKey`], and a 4-byte expiry). The few links in
//! flight or partly used (several uses) and the receipts of uploads have maps of their own.
//! Each shard's
//! maps sit behind one mutex, so every transition is atomic, and shards (picked by nonce) keep
//! concurrent transfers from contending. The `ledger` bench measures bytes per burned entry.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use async_trait::async_trait;
use smallvec::SmallVec;
use tokio::time::Instant;

use super::{Acquire, Answer, Ledger, LedgerError, LinkState, Owner, Receipt, Revoke, Usage};
use crate::token::{Nonce, unix_now};

/// One per value of a nonce's first byte. A map grows by rehashing all it holds at once, and
/// the purge scans a shard whole, both under the shard's lock, so a shard's size is how long
/// a transfer (and the event loop running it) can wait. With 10 million burned links the
/// `ledger` bench's longest single use was 19.6 ms in 16 shards and 1.7 ms in 256, a purge
/// 3.5 ms per shard and 0.18 ms, for the same bytes per entry (`docs/benchmarks.md`, the
/// thirteenth pass).
const SHARDS: usize = 256;

/// How long a burned or revoked entry outlives its token. An expired token is refused before
/// the ledger is asked, so this is not needed for safety; it lets `GET /api/links/{token}` keep
/// answering `used` (and an upload's receipt) for a while after expiry instead of `expired`.
pub const RETAIN_AFTER_EXPIRY_S: u64 = 3600;

/// Nonces are 128 random bits chosen by us and vouched for by the MAC, so an attacker cannot
/// pick colliding keys; hashing them again would only cost time.
#[derive(Default)]
struct NonceHasher(u64);

impl Hasher for NonceHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(word);
        }
    }
}

type Map<V> = HashMap<Nonce, V, BuildHasherDefault<NonceHasher>>;

/// A spent link's key: the nonce's last 12 bytes, in the shard its first byte picks, so 104 of
/// its 128 random bits. A fresh link is taken for a spent one only if all 104 agree: among 10
/// million links the chance that any two do is about 2.5 × 10^-18 (n² / 2^105), and it could
/// only refuse a link, never let a spent one through. In exchange a burned link's bucket takes
/// 16 bytes instead of 24 ([`SpentLinks`]): a load bench that burned more than 917,504 links
/// in ten seconds, where the tables double, went over its 64 MiB without it
/// (`docs/benchmarks.md`, the thirteenth pass).
type SpentKey = [u8; 12];

fn spent_key(nonce: &Nonce) -> SpentKey {
    let mut key = [0; 12];
    key.copy_from_slice(&nonce[4..]);
    key
}

/// Spent links, in two maps. A key is in at most one of them.
#[derive(Default)]
struct SpentLinks {
    /// Links of one use, burned by their transfer: nearly every entry of a busy ledger, so
    /// these keep only the expiry, in 16-byte buckets instead of 20.
    once: HashMap<SpentKey, u32, BuildHasherDefault<NonceHasher>>,
    /// The rest: revoked links, and links of several uses used up.
    other: HashMap<SpentKey, Spent, BuildHasherDefault<NonceHasher>>,
}

impl SpentLinks {
    fn get(&self, nonce: &Nonce) -> Option<Spent> {
        let key = spent_key(nonce);
        match self.once.get(&key) {
            Some(&expires_at) => Some(Spent {
                expires_at,
                uses: 1,
                revoked: false,
            }),
            None => self.other.get(&key).copied(),
        }
    }

    /// Records a link that was not spent before.
    fn insert(&mut self, nonce: &Nonce, spent: Spent) {
        let key = spent_key(nonce);
        if spent.uses == 1 && !spent.revoked {
            self.once.insert(key, spent.expires_at);
        } else {
            self.other.insert(key, spent);
        }
    }

    fn contains(&self, nonce: &Nonce) -> bool {
        self.get(nonce).is_some()
    }

    fn len(&self) -> usize {
        self.once.len() + self.other.len()
    }

    /// Forgets the links whose token expired at or before `cutoff_unix`, and gives back the
    /// memory of a map left mostly empty.
    fn purge(&mut self, cutoff_unix: u64) {
        self.once.retain(|_, e| u64::from(*e) > cutoff_unix);
        self.other
            .retain(|_, s| u64::from(s.expires_at) > cutoff_unix);
        if self.once.capacity() > 64 && self.once.len() < self.once.capacity() / 4 {
            self.once.shrink_to_fit();
        }
        if self.other.capacity() > 64 && self.other.len() < self.other.capacity() / 4 {
            self.other.shrink_to_fit();
        }
    }
}

/// A burned or revoked link.
#[derive(Clone, Copy)]
struct Spent {
    /// The token's expiry (unix seconds); u32 lasts until 2106 and keeps the bucket small.
    expires_at: u32,
    /// Completed transfers (for the status of a revoked link of several uses); fits beside
    /// the expiry without growing the bucket past 24 bytes.
    uses: u16,
    revoked: bool,
}

/// A link in flight, or of several uses with some used and some left.
struct Live {
    expires_at: u64,
    max_uses: u16,
    uses: u16,
    /// The running transfers: owner and lease deadline in milliseconds since the ledger's
    /// start on tokio's clock (so tests can pause time). At most `max_uses - uses` live ones:
    /// one for a one-time link, held inline, so a download's lease allocates nothing here.
    leases: SmallVec<[(Owner, u64); 1]>,
}

impl Live {
    fn live_leases(&self, now_ms: u64) -> usize {
        self.leases
            .iter()
            .filter(|(_, until)| *until > now_ms)
            .count()
    }

    fn owned(&mut self, owner: Owner, now_ms: u64) -> Option<&mut (Owner, u64)> {
        self.leases
            .iter_mut()
            .find(|(o, until)| *o == owner && *until > now_ms)
    }
}

#[derive(Default)]
struct Shard {
    spent: SpentLinks,
    live: Map<Live>,
    /// The last completed upload's receipt, for links spent or still live.
    receipts: Map<Receipt>,
}

pub struct MemoryLedger {
    shards: [Mutex<Shard>; SHARDS],
    started: Instant,
    /// Commits still to fail, for unit tests of what a failing ledger (a Redis failover) does
    /// to the code above it. Not in the built server.
    #[cfg(test)]
    failing_commits: std::sync::atomic::AtomicU32,
}

impl Default for MemoryLedger {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryLedger {
    /// How many shards the nonces are spread over (for the `ledger` bench's figures).
    pub const SHARDS: usize = SHARDS;

    pub fn new() -> Self {
        MemoryLedger {
            shards: std::array::from_fn(|_| Mutex::new(Shard::default())),
            started: Instant::now(),
            #[cfg(test)]
            failing_commits: 0.into(),
        }
    }

    /// Fails the next `n` commits as an unreachable ledger would.
    #[cfg(test)]
    pub(crate) fn fail_commits(&self, n: u32) {
        self.failing_commits
            .store(n, std::sync::atomic::Ordering::SeqCst);
    }

    /// Starts the task that forgets expired entries. It holds only a weak reference, so it
    /// ends by itself when the ledger is dropped.
    pub fn spawn_purger(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let weak: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(ledger) = weak.upgrade() else { break };
                ledger.purge_expired(unix_now().saturating_sub(RETAIN_AFTER_EXPIRY_S));
            }
        })
    }

    /// Drops every entry whose token expired before `cutoff_unix`, except leases still running
    /// (their transfer may be finishing the last bytes). Returns how many were dropped.
    pub fn purge_expired(&self, cutoff_unix: u64) -> usize {
        let now_ms = self.now_ms();
        let mut dropped = 0;
        for shard in &self.shards {
            let mut shard = lock(shard);
            let before = shard.spent.len() + shard.live.len();
            shard.spent.purge(cutoff_unix);
            shard
                .live
                .retain(|_, l| l.expires_at > cutoff_unix || l.live_leases(now_ms) > 0);
            let Shard {
                spent,
                live,
                receipts,
            } = &mut *shard;
            receipts.retain(|nonce, _| spent.contains(nonce) || live.contains_key(nonce));
            dropped += before - (shard.spent.len() + shard.live.len());
        }
        dropped
    }

    fn shard(&self, nonce: &Nonce) -> MutexGuard<'_, Shard> {
        lock(&self.shards[usize::from(nonce[0]) % SHARDS])
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// The deadline `lifetime` after `now_ms`: one clock read per call into the ledger.
    fn deadline(now_ms: u64, lifetime: Duration) -> u64 {
        now_ms.saturating_add(lifetime.as_millis() as u64)
    }

    fn lease_now(
        &self,
        nonce: &Nonce,
        owner: Owner,
        expires_at: u64,
        lifetime: Duration,
        max_uses: u16,
    ) -> Result<Acquire, LedgerError> {
        let now = self.now_ms();
        let until_ms = Self::deadline(now, lifetime);
        let mut shard = self.shard(nonce);
        if let Some(spent) = shard.spent.get(nonce) {
            return Ok(if spent.revoked {
                Acquire::Revoked
            } else {
                Acquire::Used
            });
        }
        let live = shard.live.entry(*nonce).or_insert_with(|| Live {
            expires_at,
            max_uses: max_uses.max(1),
            uses: 0,
            leases: SmallVec::new(),
        });
        // Lapsed leases (owners that died or stalled) free their use; the same owner asking
        // again retakes its own.
        live.leases.retain(|(o, until)| *until > now && *o != owner);
        if usize::from(live.uses) + live.leases.len() >= usize::from(live.max_uses) {
            return Ok(Acquire::Busy);
        }
        live.leases.push((owner, until_ms));
        Ok(Acquire::Granted)
    }

    fn commit_now(
        &self,
        nonce: &Nonce,
        owner: Owner,
        receipt: Option<Receipt>,
    ) -> Result<Option<u16>, LedgerError> {
        #[cfg(test)]
        {
            use std::sync::atomic::Ordering::SeqCst;
            let failing = &self.failing_commits;
            if failing
                .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(LedgerError::Unavailable("failing on purpose".into()));
            }
        }
        let now = self.now_ms();
        let mut shard = self.shard(nonce);
        let Some(live) = shard.live.get_mut(nonce) else {
            return Ok(None);
        };
        let Some(at) = live
            .leases
            .iter()
            .position(|(o, until)| *o == owner && *until > now)
        else {
            return Ok(None);
        };
        live.leases.swap_remove(at);
        live.uses = live.uses.saturating_add(1);
        let uses = live.uses;
        if live.uses >= live.max_uses {
            let expires_at = clamp_expiry(live.expires_at);
            shard.live.remove(nonce);
            shard.spent.insert(
                nonce,
                Spent {
                    expires_at,
                    uses,
                    revoked: false,
                },
            );
        }
        if let Some(r) = receipt {
            shard.receipts.insert(*nonce, r);
        }
        Ok(Some(uses))
    }
}

fn lock(m: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    // Every update under the lock is a handful of map operations that cannot panic halfway
    // in a way that breaks the rules below, so a poisoned shard is still consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn clamp_expiry(expires_at: u64) -> u32 {
    expires_at.min(u64::from(u32::MAX)) as u32
}

#[async_trait]
impl Ledger for MemoryLedger {
    fn lease<'a>(
        &'a self,
        nonce: &'a Nonce,
        owner: Owner,
        expires_at: u64,
        lifetime: Duration,
        max_uses: u16,
    ) -> Answer<'a, Result<Acquire, LedgerError>> {
        Answer::now(self.lease_now(nonce, owner, expires_at, lifetime, max_uses))
    }

    async fn renew(
        &self,
        nonce: &Nonce,
        owner: Owner,
        lifetime: Duration,
    ) -> Result<bool, LedgerError> {
        let now = self.now_ms();
        let until_ms = Self::deadline(now, lifetime);
        let mut shard = self.shard(nonce);
        Ok(
            match shard.live.get_mut(nonce).and_then(|l| l.owned(owner, now)) {
                Some(lease) => {
                    lease.1 = until_ms;
                    true
                }
                None => false,
            },
        )
    }

    fn commit<'a>(
        &'a self,
        nonce: &'a Nonce,
        owner: Owner,
        receipt: Option<Receipt>,
    ) -> Answer<'a, Result<Option<u16>, LedgerError>> {
        Answer::now(self.commit_now(nonce, owner, receipt))
    }

    async fn release(&self, nonce: &Nonce, owner: Owner) -> Result<(), LedgerError> {
        let mut shard = self.shard(nonce);
        if let Some(live) = shard.live.get_mut(nonce) {
            live.leases.retain(|(o, _)| *o != owner);
            if live.uses == 0 && live.leases.is_empty() {
                // Untouched again: nothing to remember.
                shard.live.remove(nonce);
            }
        }
        Ok(())
    }

    async fn revoke(&self, nonce: &Nonce, expires_at: u64) -> Result<Revoke, LedgerError> {
        let mut shard = self.shard(nonce);
        if let Some(spent) = shard.spent.get(nonce) {
            return Ok(if spent.revoked {
                Revoke::AlreadyRevoked
            } else {
                Revoke::AlreadyUsed
            });
        }
        // Transfers in flight lose their leases: they can no longer renew or commit.
        let uses = shard.live.remove(nonce).map_or(0, |l| l.uses);
        shard.spent.insert(
            nonce,
            Spent {
                expires_at: clamp_expiry(expires_at),
                uses,
                revoked: true,
            },
        );
        Ok(Revoke::Revoked)
    }

    async fn usage(&self, nonce: &Nonce) -> Result<Usage, LedgerError> {
        let now = self.now_ms();
        let shard = self.shard(nonce);
        let receipt = shard.receipts.get(nonce).copied();
        if let Some(spent) = shard.spent.get(nonce) {
            let state = if spent.revoked {
                LinkState::Revoked
            } else {
                LinkState::Used(receipt)
            };
            return Ok(Usage {
                state,
                uses: spent.uses,
                receipt,
            });
        }
        Ok(match shard.live.get(nonce) {
            Some(live) => Usage {
                state: if live.live_leases(now) > 0 {
                    LinkState::InProgress
                } else {
                    LinkState::Unused
                },
                uses: live.uses,
                receipt,
            },
            None => Usage {
                state: LinkState::Unused,
                uses: 0,
                receipt: None,
            },
        })
    }

    async fn ping(&self) -> Result<(), LedgerError> {
        Ok(())
    }

    async fn entries(&self) -> Result<u64, LedgerError> {
        Ok(self
            .shards
            .iter()
            .map(|s| {
                let s = lock(s);
                (s.spent.len() + s.live.len()) as u64
            })
            .sum())
    }

    fn in_process(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::suite;

    /// The whole conformance suite, rule after rule on one ledger, as every Redis deployment
    /// runs it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn conformance_suite() {
        suite::run_all("memory", Arc::new(MemoryLedger::new())).await;
    }

    /// Through `dyn Ledger`, as the lease keeper calls it: a one-time link's lease and commit
    /// are answered at once and allocate nothing once the maps have room (a boxed future
    /// each, before [`Answer`]).
    #[test]
    fn a_one_time_download_allocates_nothing_in_the_ledger() {
        use futures_util::FutureExt;
        let l: &dyn Ledger = &MemoryLedger::new();
        let lease = Duration::from_secs(30);
        let spend = |nonce: Nonce| {
            let got = l.lease(&nonce, Owner(7), u64::MAX, lease, 1).now_or_never();
            assert_eq!(got.unwrap().unwrap(), Acquire::Granted);
            let got = l.commit(&nonce, Owner(7), None).now_or_never();
            assert_eq!(got.unwrap().unwrap(), Some(1));
        };
        // Same shard (the first byte picks it), so its maps already have room.
        let (warm, measured) = (
            [1; 16],
            [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16],
        );
        spend(warm);
        let made = crate::alloc_count::allocations(|| spend(measured));
        assert_eq!(made, 0);
        assert_eq!(
            l.lease(&measured, Owner(8), u64::MAX, lease, 1)
                .now_or_never()
                .unwrap()
                .unwrap(),
            Acquire::Used
        );
    }

    #[test]
    fn a_spent_entry_stays_compact() {
        assert_eq!(std::mem::size_of::<(SpentKey, u32)>(), 16);
        assert_eq!(std::mem::size_of::<(SpentKey, Spent)>(), 20);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lapsed_lease_frees_the_link_and_fences_its_owner() {
        let l = MemoryLedger::new();
        let n = [1u8; 16];
        let lease = Duration::from_secs(30);
        assert_eq!(
            l.lease(&n, Owner(1), u64::MAX, lease, 1).await.unwrap(),
            Acquire::Granted
        );
        tokio::time::advance(Duration::from_secs(20)).await;
        assert!(l.renew(&n, Owner(1), lease).await.unwrap());
        tokio::time::advance(Duration::from_secs(29)).await;
        assert_eq!(
            l.lease(&n, Owner(2), u64::MAX, lease, 1).await.unwrap(),
            Acquire::Busy,
            "renewed lease still held"
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(l.state(&n).await.unwrap(), LinkState::Unused);
        assert!(!l.renew(&n, Owner(1), lease).await.unwrap());
        assert_eq!(
            l.lease(&n, Owner(2), u64::MAX, lease, 1).await.unwrap(),
            Acquire::Granted
        );
        assert!(
            l.commit(&n, Owner(1), None).await.unwrap().is_none(),
            "the dead owner cannot burn"
        );
        assert!(l.commit(&n, Owner(2), None).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn purge_forgets_expired_entries_but_not_running_leases() {
        let l = MemoryLedger::new();
        let lease = Duration::from_secs(30);
        for i in 0..100u8 {
            let n = [i; 16];
            l.lease(&n, Owner(1), 1_000 + u64::from(i % 2) * 1_000, lease, 1)
                .await
                .unwrap();
            if i != 0 {
                assert!(l.commit(&n, Owner(1), None).await.unwrap().is_some());
            }
        }
        assert_eq!(l.entries().await.unwrap(), 100);
        // Half expire at 1000, half at 2000; entry 0 is still leased so it stays.
        assert_eq!(l.purge_expired(1_500), 49);
        assert_eq!(l.entries().await.unwrap(), 51);
        assert_eq!(l.state(&[0u8; 16]).await.unwrap(), LinkState::InProgress);
        assert_eq!(l.state(&[1u8; 16]).await.unwrap(), LinkState::Used(None));
        assert_eq!(l.state(&[2u8; 16]).await.unwrap(), LinkState::Unused);
    }

    #[tokio::test(start_paused = true)]
    async fn purger_task_runs_and_stops_with_the_ledger() {
        let l = Arc::new(MemoryLedger::new());
        l.revoke(&[1; 16], 1).await.unwrap();
        l.spawn_purger(Duration::from_secs(1));
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(l.entries().await.unwrap(), 0);
        let weak = Arc::downgrade(&l);
        drop(l);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(
            weak.upgrade().is_none(),
            "purger must not keep the ledger alive"
        );
    }
}
