//! The in-process ledger, for a single replica.
//!
//! Entries live in a few mutex-guarded hash maps (sharded by nonce so concurrent transfers
//! rarely contend) and are purged by a background task once their token has expired. A burned
//! entry is a 16-byte key plus about 40 bytes of value; the `ledger` bench measures the real
//! cost per entry including the table's overhead.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use tokio::time::Instant;

use super::{Acquire, Ledger, LedgerError, LinkState, Owner, Receipt, Revoke};
use crate::token::Nonce;

const SHARDS: usize = 16;

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

type Map = HashMap<Nonce, Entry, BuildHasherDefault<NonceHasher>>;

struct Entry {
    /// The token's expiry (unix seconds); u32 lasts until 2106 and keeps the entry small.
    expires_at: u32,
    state: State,
}

enum State {
    /// `until_ms` counts from the ledger's start on tokio's clock, so tests can pause time.
    Leased {
        owner: [u8; 16],
        until_ms: u64,
    },
    Burned,
    /// Uploads keep what arrived; boxed so download entries do not pay for it.
    BurnedWithReceipt(Box<Receipt>),
    Revoked,
}

pub struct MemoryLedger {
    shards: [Mutex<Map>; SHARDS],
    started: Instant,
}

impl Default for MemoryLedger {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryLedger {
    pub fn new() -> Self {
        MemoryLedger {
            shards: std::array::from_fn(|_| Mutex::new(Map::default())),
            started: Instant::now(),
        }
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
            let mut map = lock(shard);
            let before = map.len();
            map.retain(|_, e| {
                u64::from(e.expires_at) > cutoff_unix
                    || matches!(e.state, State::Leased { until_ms, .. } if until_ms > now_ms)
            });
            dropped += before - map.len();
            if map.capacity() > 64 && map.len() < map.capacity() / 4 {
                map.shrink_to_fit();
            }
        }
        dropped
    }

    fn shard(&self, nonce: &Nonce) -> &Mutex<Map> {
        &self.shards[nonce[0] as usize % SHARDS]
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn deadline(&self, lifetime: Duration) -> u64 {
        self.now_ms().saturating_add(lifetime.as_millis() as u64)
    }
}

fn lock(m: &Mutex<Map>) -> std::sync::MutexGuard<'_, Map> {
    // A panic while holding the lock cannot leave an entry half-written (every update is a
    // single assignment), so a poisoned map is still consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn clamp_expiry(expires_at: u64) -> u32 {
    expires_at.min(u64::from(u32::MAX)) as u32
}

#[async_trait]
impl Ledger for MemoryLedger {
    async fn lease(
        &self,
        nonce: &Nonce,
        owner: Owner,
        expires_at: u64,
        lifetime: Duration,
    ) -> Result<Acquire, LedgerError> {
        let now = self.now_ms();
        let until_ms = self.deadline(lifetime);
        let mut map = lock(self.shard(nonce));
        if let Some(entry) = map.get(nonce) {
            match entry.state {
                State::Leased { until_ms, .. } if until_ms > now => return Ok(Acquire::Busy),
                State::Leased { .. } => {} // lapsed: its owner died or stalled
                State::Burned | State::BurnedWithReceipt(_) => return Ok(Acquire::Used),
                State::Revoked => return Ok(Acquire::Revoked),
            }
        }
        map.insert(
            *nonce,
            Entry {
                expires_at: clamp_expiry(expires_at),
                state: State::Leased {
                    owner: owner.0.to_le_bytes(),
                    until_ms,
                },
            },
        );
        Ok(Acquire::Granted)
    }

    async fn renew(
        &self,
        nonce: &Nonce,
        owner: Owner,
        lifetime: Duration,
    ) -> Result<bool, LedgerError> {
        let now = self.now_ms();
        let new_until = self.deadline(lifetime);
        let mut map = lock(self.shard(nonce));
        match map.get_mut(nonce) {
            Some(Entry {
                state: State::Leased { owner: o, until_ms },
                ..
            }) if *o == owner.0.to_le_bytes() && *until_ms > now => {
                *until_ms = new_until;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn commit(
        &self,
        nonce: &Nonce,
        owner: Owner,
        receipt: Option<Receipt>,
    ) -> Result<bool, LedgerError> {
        let now = self.now_ms();
        let mut map = lock(self.shard(nonce));
        match map.get_mut(nonce) {
            Some(entry) => match entry.state {
                State::Leased { owner: o, until_ms }
                    if o == owner.0.to_le_bytes() && until_ms > now =>
                {
                    entry.state = match receipt {
                        Some(r) => State::BurnedWithReceipt(Box::new(r)),
                        None => State::Burned,
                    };
                    Ok(true)
                }
                _ => Ok(false),
            },
            None => Ok(false),
        }
    }

    async fn release(&self, nonce: &Nonce, owner: Owner) -> Result<(), LedgerError> {
        let mut map = lock(self.shard(nonce));
        if let Some(Entry {
            state: State::Leased { owner: o, .. },
            ..
        }) = map.get(nonce)
            && *o == owner.0.to_le_bytes()
        {
            map.remove(nonce);
        }
        Ok(())
    }

    async fn revoke(&self, nonce: &Nonce, expires_at: u64) -> Result<Revoke, LedgerError> {
        let mut map = lock(self.shard(nonce));
        match map.get_mut(nonce) {
            Some(entry) => match entry.state {
                State::Burned | State::BurnedWithReceipt(_) => Ok(Revoke::AlreadyUsed),
                State::Revoked => Ok(Revoke::AlreadyRevoked),
                State::Leased { .. } => {
                    entry.state = State::Revoked;
                    Ok(Revoke::Revoked)
                }
            },
            None => {
                map.insert(
                    *nonce,
                    Entry {
                        expires_at: clamp_expiry(expires_at),
                        state: State::Revoked,
                    },
                );
                Ok(Revoke::Revoked)
            }
        }
    }

    async fn state(&self, nonce: &Nonce) -> Result<LinkState, LedgerError> {
        let now = self.now_ms();
        let map = lock(self.shard(nonce));
        Ok(match map.get(nonce).map(|e| &e.state) {
            None => LinkState::Unused,
            Some(State::Leased { until_ms, .. }) if *until_ms > now => LinkState::InProgress,
            Some(State::Leased { .. }) => LinkState::Unused,
            Some(State::Burned) => LinkState::Used(None),
            Some(State::BurnedWithReceipt(r)) => LinkState::Used(Some(**r)),
            Some(State::Revoked) => LinkState::Revoked,
        })
    }

    async fn ping(&self) -> Result<(), LedgerError> {
        Ok(())
    }

    async fn entries(&self) -> Result<u64, LedgerError> {
        Ok(self.shards.iter().map(|s| lock(s).len() as u64).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::suite;

    #[tokio::test]
    async fn lease_commit_burns() {
        suite::lease_commit_burns(&MemoryLedger::new()).await;
    }

    #[tokio::test]
    async fn release_makes_it_usable_again() {
        suite::release_makes_it_usable_again(&MemoryLedger::new()).await;
    }

    #[tokio::test]
    async fn revoke_rules() {
        suite::revoke_rules(&MemoryLedger::new()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn race_has_one_winner() {
        suite::race_has_one_winner(Arc::new(MemoryLedger::new())).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_lapsed_lease_frees_the_link_and_fences_its_owner() {
        let l = MemoryLedger::new();
        let n = [1u8; 16];
        let lease = Duration::from_secs(30);
        assert_eq!(
            l.lease(&n, Owner(1), u64::MAX, lease).await.unwrap(),
            Acquire::Granted
        );
        tokio::time::advance(Duration::from_secs(20)).await;
        assert!(l.renew(&n, Owner(1), lease).await.unwrap());
        tokio::time::advance(Duration::from_secs(29)).await;
        assert_eq!(
            l.lease(&n, Owner(2), u64::MAX, lease).await.unwrap(),
            Acquire::Busy,
            "renewed lease still held"
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(l.state(&n).await.unwrap(), LinkState::Unused);
        assert!(!l.renew(&n, Owner(1), lease).await.unwrap());
        assert_eq!(
            l.lease(&n, Owner(2), u64::MAX, lease).await.unwrap(),
            Acquire::Granted
        );
        assert!(
            !l.commit(&n, Owner(1), None).await.unwrap(),
            "the dead owner cannot burn"
        );
        assert!(l.commit(&n, Owner(2), None).await.unwrap());
    }

    #[tokio::test]
    async fn purge_forgets_expired_entries_but_not_running_leases() {
        let l = MemoryLedger::new();
        let lease = Duration::from_secs(30);
        for i in 0..100u8 {
            let n = [i; 16];
            l.lease(&n, Owner(1), 1_000 + u64::from(i % 2) * 1_000, lease)
                .await
                .unwrap();
            if i != 0 {
                assert!(l.commit(&n, Owner(1), None).await.unwrap());
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
