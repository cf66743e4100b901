//! Per-client-address rate limits: minting, and failed token checks.
//!
//! Both are GCRA limiters from `governor`, keyed by the client address (the peer, or what a
//! trusted proxy forwarded: the same address audit lines show).
//!
//! - **Minting** (`BURNLINK_RATE_MINT_PER_S`, `BURNLINK_RATE_MINT_BURST`): every mint through
//!   the server (API and MCP alike) passes [`crate::links::LinkService::mint`], which asks
//!   [`RateLimits::check_mint`]. Off by default:
//!   minting already needs a bearer token, and one CI runner may legitimately mint tens of
//!   thousands of links a second.
//! - **Failed token checks** (`BURNLINK_RATE_FAILED_PER_MIN`, default 60, also the burst): a
//!   transfer-route request whose token does not verify, or any request with a wrong bearer
//!   token (401), spends one unit. A client that has spent them all is refused (429) on every
//!   guarded route, valid token or not, until its allowance refills: a guess that happened to
//!   be right would be refused too, so the limit really bounds how fast anyone can guess.
//!   Genuine links that are expired, used or revoked are not failures.
//!
//! A refusal is [`RateLimited`]; the HTTP edge answers it as 429 `rate_limited` with
//! `Retry-After` in seconds, and its middleware feeds the failure gate.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::RateConfig;

/// How often idle per-address state is dropped, so memory follows the active clients only.
const SWEEP: Duration = Duration::from_secs(60);

/// A client that is over its allowance, and how long until it may try again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("too many requests from this address; retry in {retry_after_s} s")]
pub struct RateLimited {
    pub retry_after_s: u64,
}

pub struct RateLimits {
    mint: Option<DefaultKeyedRateLimiter<IpAddr>>,
    failed: Option<FailureGate>,
}

impl RateLimits {
    pub fn new(config: &RateConfig) -> Self {
        let mint = NonZeroU32::new(config.mint_per_s).map(|rate| {
            let burst = NonZeroU32::new(config.mint_burst).unwrap_or(rate);
            RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        let failed = NonZeroU32::new(config.failed_per_min).map(|n| FailureGate {
            limiter: RateLimiter::keyed(Quota::per_minute(n).allow_burst(n)),
            blocked: Mutex::new(HashMap::new()),
            blocked_len: AtomicUsize::new(0),
        });
        RateLimits { mint, failed }
    }

    /// Spends one mint of `client`'s allowance. Mints with no client address (none today
    /// through the server) are not limited.
    pub fn check_mint(&self, client: Option<IpAddr>) -> Result<(), RateLimited> {
        let (Some(limiter), Some(ip)) = (&self.mint, client) else {
            return Ok(());
        };
        limiter.check_key(&ip).map_err(|not_until| {
            let wait = not_until.wait_time_from(limiter.clock().now());
            RateLimited {
                retry_after_s: seconds(wait),
            }
        })
    }

    /// Whether failed checks are limited at all (the middleware skips its work when not).
    pub fn limits_failures(&self) -> bool {
        self.failed.is_some()
    }

    /// Refuses a client that has used up its failed-check allowance.
    pub fn gate(&self, client: IpAddr) -> Result<(), RateLimited> {
        match &self.failed {
            Some(gate) => gate.gate(client, Instant::now()),
            None => Ok(()),
        }
    }

    /// Counts one failed token check of `client`.
    pub fn record_failure(&self, client: IpAddr) {
        if let Some(gate) = &self.failed {
            gate.record(client, Instant::now());
        }
    }

    /// Forgets addresses that have been quiet long enough to be back at a full allowance.
    fn sweep(&self) {
        if let Some(limiter) = &self.mint {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        if let Some(gate) = &self.failed {
            gate.limiter.retain_recent();
            gate.limiter.shrink_to_fit();
            gate.unblock_expired(Instant::now());
        }
    }

    /// Runs [`Self::sweep`] in the background for as long as the limits exist.
    pub fn spawn_sweeper(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SWEEP);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(limits) = weak.upgrade() else { break };
                limits.sweep();
            }
        });
    }
}

/// Failed checks per address, and the addresses refused until a moment.
struct FailureGate {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    blocked: Mutex<HashMap<IpAddr, Instant>>,
    /// Lets the common case (nobody blocked) skip the lock.
    blocked_len: AtomicUsize,
}

impl FailureGate {
    fn gate(&self, client: IpAddr, now: Instant) -> Result<(), RateLimited> {
        if self.blocked_len.load(Ordering::Relaxed) == 0 {
            return Ok(());
        }
        let mut blocked = self.lock();
        match blocked.get(&client) {
            Some(&until) if until > now => Err(RateLimited {
                retry_after_s: seconds(until - now),
            }),
            Some(_) => {
                blocked.remove(&client);
                self.blocked_len.store(blocked.len(), Ordering::Relaxed);
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn record(&self, client: IpAddr, now: Instant) {
        if let Err(not_until) = self.limiter.check_key(&client) {
            let wait = not_until.wait_time_from(self.limiter.clock().now());
            let mut blocked = self.lock();
            blocked.insert(client, now + wait);
            self.blocked_len.store(blocked.len(), Ordering::Relaxed);
            tracing::warn!(
                %client,
                retry_after_s = seconds(wait),
                "too many failed token checks; refusing this client for a while"
            );
        }
    }

    fn unblock_expired(&self, now: Instant) {
        let mut blocked = self.lock();
        blocked.retain(|_, until| *until > now);
        blocked.shrink_to_fit();
        self.blocked_len.store(blocked.len(), Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Instant>> {
        self.blocked.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Whole seconds for `Retry-After`, rounded up so a client that obeys is let in.
fn seconds(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(mint_per_s: u32, mint_burst: u32, failed_per_min: u32) -> RateLimits {
        RateLimits::new(&RateConfig {
            mint_per_s,
            mint_burst,
            failed_per_min,
        })
    }

    #[test]
    fn mints_are_paced_per_address_after_the_burst() {
        let l = limits(1, 3, 0);
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        for _ in 0..3 {
            l.check_mint(Some(a)).unwrap();
        }
        let e = l.check_mint(Some(a)).unwrap_err();
        assert!(e == RateLimited { retry_after_s: 1 }, "{e:?}");
        l.check_mint(Some(b))
            .expect("another address has its own allowance");
        l.check_mint(None).expect("no address, no limit");
    }

    #[test]
    fn off_means_unlimited() {
        let l = limits(0, 0, 0);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..10_000 {
            l.check_mint(Some(a)).unwrap();
            l.record_failure(a);
        }
        l.gate(a).unwrap();
    }

    #[test]
    fn failures_past_the_allowance_block_the_address_until_it_refills() {
        let l = limits(0, 0, 3);
        let (a, b): (IpAddr, IpAddr) =
            ("192.0.2.1".parse().unwrap(), "2001:db8::1".parse().unwrap());
        for _ in 0..3 {
            l.record_failure(a);
            l.gate(a).expect("within the allowance");
        }
        l.record_failure(a);
        let e = l.gate(a).unwrap_err();
        // 3 per minute: one more unit in at most 20 s.
        assert!((1..=20).contains(&e.retry_after_s), "{e:?}");
        l.gate(b).expect("other addresses are not affected");
        let gate = l.failed.as_ref().unwrap();
        gate.unblock_expired(Instant::now() + Duration::from_secs(21));
        assert_eq!(gate.blocked_len.load(Ordering::Relaxed), 0);
        gate.gate(a, Instant::now() + Duration::from_secs(21))
            .unwrap();
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(seconds(Duration::from_millis(1)), 1);
        assert_eq!(seconds(Duration::from_secs(2)), 2);
        assert_eq!(seconds(Duration::from_millis(2001)), 3);
    }
}
