//! Link statistics for the compatibility `GET /api/download/stats` route.
//!
//! Counts what this deployment minted through the server and what transfers burned: `used` =
//! burned by a transfer, `expired` = expired unused, `active` = the rest. Behind a trait so a
//! shared (Redis) store can count across replicas.

pub mod redis;

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use serde::Serialize;

use crate::ledger::{Answer, LedgerError};
use crate::sharded::Sharded;

pub use redis::RedisStats;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Statistics {
    pub total_tokens: u64,
    pub active_tokens: u64,
    pub used_tokens: u64,
    pub expired_tokens: u64,
}

#[async_trait]
pub trait StatsStore: Send + Sync + 'static {
    async fn record_mint(&self, session: Option<&str>, expires_at: u64) -> Result<(), LedgerError>;
    fn record_use<'a>(
        &'a self,
        session: Option<&'a str>,
        expires_at: u64,
    ) -> Answer<'a, Result<(), LedgerError>>;
    /// `session`: `None` = every session together, `Some(None)` = the root sandbox only.
    async fn snapshot(
        &self,
        session: Option<Option<&str>>,
        now_unix: u64,
    ) -> Result<Statistics, LedgerError>;

    /// Whether records are kept inside this process, at once (see [`Ledger::in_process`]).
    ///
    /// [`Ledger::in_process`]: crate::ledger::Ledger::in_process
    fn in_process(&self) -> bool {
        false
    }
}

/// Per-session counters. Links still in their lifetime are bucketed by expiry second so that
/// `expired` can be told from `active`; buckets are folded into plain counters once they pass,
/// at a snapshot or when a counter holds more than [`FOLD_AT`] of them. So memory is bounded
/// by the number of distinct expiry seconds ahead (≤ the maximum TTL), or `FOLD_AT`, per
/// session and thread slot, whether or not anyone asks for the statistics.
#[derive(Default)]
struct Counters {
    minted: u64,
    used: u64,
    expired_minted: u64,
    expired_used: u64,
    /// expiry second → (minted, used) for buckets not yet folded.
    pending: BTreeMap<u64, (u64, u64)>,
    folded_until: u64,
}

/// How many expiry seconds a counter holds before it folds those past without waiting for a
/// snapshot. Below it, recording never reads the clock.
const FOLD_AT: usize = 1024;

impl Counters {
    fn fold(&mut self, now: u64) {
        if now <= self.folded_until {
            return;
        }
        let keep = self.pending.split_off(&(now + 1));
        for (_, (m, u)) in std::mem::replace(&mut self.pending, keep) {
            self.expired_minted += m;
            self.expired_used += u;
        }
        self.folded_until = now;
    }

    /// Adds `other`'s figures, folded to the same second as these, to these.
    fn absorb(&mut self, other: &Counters) {
        self.minted += other.minted;
        self.used += other.used;
        self.expired_minted += other.expired_minted;
        self.expired_used += other.expired_used;
    }

    fn stats(&self) -> Statistics {
        let expired = self.expired_minted.saturating_sub(self.expired_used);
        Statistics {
            total_tokens: self.minted,
            used_tokens: self.used,
            expired_tokens: expired,
            active_tokens: self
                .minted
                .saturating_sub(self.used)
                .saturating_sub(expired),
        }
    }
}

/// Every download's settling records a use, from whichever event loop served it, so the
/// counters are kept per thread (a lock and a map both loops wrote cost them cache misses on
/// every request). A link minted on one thread may be used on another: the figures are derived
/// only after each session's counters are summed.
#[derive(Default)]
pub struct MemoryStats {
    sessions: Sharded<Mutex<Sessions>>,
}

/// The root sandbox's counters apart from the named sessions', so that finding a session's
/// counters takes its name as a `&str` and allocates only for a session seen the first time.
#[derive(Default)]
struct Sessions {
    root: Counters,
    named: HashMap<String, Counters>,
}

impl Sessions {
    fn counters(&mut self, session: Option<&str>) -> &mut Counters {
        let Some(name) = session else {
            return &mut self.root;
        };
        if !self.named.contains_key(name) {
            self.named.insert(name.to_string(), Counters::default());
        }
        self.named.get_mut(name).expect("inserted above")
    }
}

impl MemoryStats {
    fn with<R>(&self, session: Option<&str>, f: impl FnOnce(&mut Counters) -> R) -> R {
        let mut sessions = self
            .sessions
            .mine()
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let counters = sessions.counters(session);
        let answer = f(counters);
        if counters.pending.len() > FOLD_AT {
            counters.fold(crate::token::unix_now());
        }
        answer
    }
}

#[async_trait]
impl StatsStore for MemoryStats {
    async fn record_mint(&self, session: Option<&str>, expires_at: u64) -> Result<(), LedgerError> {
        self.with(session, |c| {
            c.minted += 1;
            if expires_at <= c.folded_until {
                c.expired_minted += 1;
            } else {
                c.pending.entry(expires_at).or_default().0 += 1;
            }
        });
        Ok(())
    }

    fn record_use<'a>(
        &'a self,
        session: Option<&'a str>,
        expires_at: u64,
    ) -> Answer<'a, Result<(), LedgerError>> {
        self.with(session, |c| {
            c.used += 1;
            if expires_at <= c.folded_until {
                c.expired_used += 1;
            } else {
                c.pending.entry(expires_at).or_default().1 += 1;
            }
        });
        Answer::now(Ok(()))
    }

    async fn snapshot(
        &self,
        session: Option<Option<&str>>,
        now_unix: u64,
    ) -> Result<Statistics, LedgerError> {
        // Every slot at once, each folded to one second. A slot that folded itself past
        // `now_unix` (a counter over FOLD_AT, with the wall clock ahead of the time asked for)
        // takes the others with it: folded to different seconds, a link minted in one slot and
        // used in another could count as both used and expired. Only this takes several slot
        // locks, always in the same order.
        let mut slots: Vec<_> = self
            .sessions
            .all()
            .map(|slot| slot.lock().unwrap_or_else(|p| p.into_inner()))
            .collect();
        let at = slots
            .iter()
            .flat_map(|s| std::iter::once(&s.root).chain(s.named.values()))
            .map(|c| c.folded_until)
            .fold(now_unix, u64::max);
        let mut merged: HashMap<Option<String>, Counters> = HashMap::new();
        for sessions in &mut slots {
            let Sessions { root, named } = &mut **sessions;
            let every = std::iter::once((None, root))
                .chain(named.iter_mut().map(|(k, c)| (Some(k.as_str()), c)));
            for (key, counters) in every {
                if let Some(wanted) = session
                    && key != wanted
                {
                    continue;
                }
                counters.fold(at);
                merged
                    .entry(key.map(str::to_owned))
                    .or_default()
                    .absorb(counters);
            }
        }
        let mut total = Statistics::default();
        for counters in merged.values() {
            let s = counters.stats();
            total.total_tokens += s.total_tokens;
            total.active_tokens += s.active_tokens;
            total.used_tokens += s.used_tokens;
            total.expired_tokens += s.expired_tokens;
        }
        Ok(total)
    }

    fn in_process(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Through `dyn StatsStore`, as a download's settling calls it: recording a use is
    /// answered at once and allocates nothing for a counter that exists, the root's or a
    /// session's.
    #[test]
    fn recording_a_use_allocates_nothing() {
        use futures_util::FutureExt;
        let s: &dyn StatsStore = &MemoryStats::default();
        for session in [None, Some("s1")] {
            let record = || s.record_use(session, 100).now_or_never().unwrap().unwrap();
            record();
            assert_eq!(crate::alloc_count::allocations(record), 0, "{session:?}");
        }
    }

    #[tokio::test]
    async fn counts_active_used_and_expired() {
        let s = MemoryStats::default();
        s.record_mint(Some("a"), 100).await.unwrap();
        s.record_mint(Some("a"), 100).await.unwrap();
        s.record_mint(Some("a"), 200).await.unwrap();
        s.record_mint(None, 200).await.unwrap();
        s.record_use(Some("a"), 100).await.unwrap();

        let a = s.snapshot(Some(Some("a")), 50).await.unwrap();
        assert_eq!(
            (
                a.total_tokens,
                a.active_tokens,
                a.used_tokens,
                a.expired_tokens
            ),
            (3, 2, 1, 0)
        );
        let a = s.snapshot(Some(Some("a")), 150).await.unwrap();
        assert_eq!(
            (
                a.total_tokens,
                a.active_tokens,
                a.used_tokens,
                a.expired_tokens
            ),
            (3, 1, 1, 1)
        );
        // A use recorded after its bucket folded still counts once.
        s.record_use(Some("a"), 100).await.unwrap();
        let a = s.snapshot(Some(Some("a")), 150).await.unwrap();
        assert_eq!(
            (a.active_tokens, a.used_tokens, a.expired_tokens),
            (1, 2, 0)
        );
        let root = s.snapshot(Some(None), 150).await.unwrap();
        assert_eq!((root.total_tokens, root.active_tokens), (1, 1));
        let all = s.snapshot(None, 300).await.unwrap();
        assert_eq!(
            (
                all.total_tokens,
                all.active_tokens,
                all.used_tokens,
                all.expired_tokens
            ),
            (4, 0, 2, 2)
        );
    }

    /// A link minted on one thread and used on another, as when the API and a download are
    /// served by different event loops: used, not expired, once its second has passed.
    #[tokio::test]
    async fn a_use_counts_against_a_mint_made_on_another_thread() {
        let s = std::sync::Arc::new(MemoryStats::default());
        let minter = s.clone();
        std::thread::spawn(move || {
            futures_util::FutureExt::now_or_never(minter.record_mint(Some("a"), 100))
                .unwrap()
                .unwrap();
            futures_util::FutureExt::now_or_never(minter.record_mint(Some("a"), 100))
                .unwrap()
                .unwrap();
        })
        .join()
        .unwrap();
        s.record_use(Some("a"), 100).await.unwrap();
        for (now, active, expired) in [(50, 1, 0), (150, 0, 1)] {
            let a = s.snapshot(Some(Some("a")), now).await.unwrap();
            assert_eq!(
                (
                    a.total_tokens,
                    a.active_tokens,
                    a.used_tokens,
                    a.expired_tokens
                ),
                (2, active, 1, expired),
                "at {now}"
            );
        }
    }

    /// A slot that folded itself past the second a snapshot asks about (over `FOLD_AT`
    /// buckets) and one that did not are summed as of the same second: a link minted in one
    /// and used in the other is used, not also expired.
    #[tokio::test]
    async fn slots_folded_to_different_seconds_are_summed_as_of_one() {
        let s = std::sync::Arc::new(MemoryStats::default());
        let minter = s.clone();
        let minted_in = std::thread::spawn(move || {
            futures_util::FutureExt::now_or_never(minter.record_mint(None, 100))
                .unwrap()
                .unwrap();
            minter.sessions.mine() as *const Mutex<Sessions> as usize
        })
        .join()
        .unwrap();
        s.record_use(None, 100).await.unwrap();
        let minted_in = minted_in as *const Mutex<Sessions>;
        if std::ptr::eq(minted_in, s.sessions.mine()) {
            eprintln!("both threads landed in one slot; nothing to fold apart");
        }
        // As `with` does past FOLD_AT: the minting slot folds itself to second 200.
        for slot in s.sessions.all() {
            if std::ptr::eq(slot, minted_in) {
                slot.lock().unwrap().root.fold(200);
            }
        }
        let all = s.snapshot(None, 50).await.unwrap();
        assert_eq!(
            (
                all.total_tokens,
                all.active_tokens,
                all.used_tokens,
                all.expired_tokens
            ),
            (1, 0, 1, 0)
        );
    }

    /// Without a snapshot, the buckets of links already expired are folded all the same once
    /// there are more than `FOLD_AT`, and the figures stay right.
    #[tokio::test]
    async fn expired_buckets_fold_without_a_snapshot() {
        let s = MemoryStats::default();
        let past = crate::token::unix_now() - 10_000;
        for second in past..past + 3_000 {
            s.record_mint(None, second).await.unwrap();
        }
        s.record_use(None, past).await.unwrap();
        let held = s.sessions.mine().lock().unwrap().root.pending.len();
        assert!(held <= FOLD_AT, "{held} buckets held");
        let all = s.snapshot(None, crate::token::unix_now()).await.unwrap();
        assert_eq!(
            (
                all.total_tokens,
                all.active_tokens,
                all.used_tokens,
                all.expired_tokens
            ),
            (3_000, 0, 1, 2_999)
        );
    }
}
