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
//!   request whose link token does not verify, or one with a wrong bearer token, spends one
//!   unit. Once an address has spent them all, its *failed* checks answer 429 instead of 404 or
//!   401 until the allowance refills; a valid link or a valid bearer token from the same
//!   address is served at once. Many honest users share one address (a NAT, a load balancer
//!   without `BURNLINK_TRUSTED_PROXIES`), so one scanner among them must not lock the others
//!   out; and guessing stays hopeless anyway (a link carries a 128-bit nonce under an
//!   HMAC-SHA256). Genuine links that are expired, used or revoked are not failures.
//!
//! A refusal is [`RateLimited`]; the HTTP edge answers it as 429 `rate_limited` with
//! `Retry-After` in seconds, and its middleware feeds the failure gate.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

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
    failed: Option<DefaultKeyedRateLimiter<IpAddr>>,
}

impl RateLimits {
    pub fn new(config: &RateConfig) -> Self {
        let mint = NonZeroU32::new(config.mint_per_s).map(|rate| {
            let burst = NonZeroU32::new(config.mint_burst).unwrap_or(rate);
            RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        let failed = NonZeroU32::new(config.failed_per_min)
            .map(|n| RateLimiter::keyed(Quota::per_minute(n).allow_burst(n)));
        RateLimits { mint, failed }
    }

    /// Spends one mint of `client`'s allowance. Mints with no client address (the CLI, MCP on
    /// stdio) are not limited.
    pub fn check_mint(&self, client: Option<IpAddr>) -> Result<(), RateLimited> {
        let (Some(limiter), Some(ip)) = (&self.mint, client) else {
            return Ok(());
        };
        spend(limiter, ip)
    }

    /// Whether failed checks are limited at all (the middleware skips its work when not).
    pub fn limits_failures(&self) -> bool {
        self.failed.is_some()
    }

    /// Counts one failed check of `client`; refused when its allowance is spent, so that this
    /// failure is answered as "too many" rather than as itself.
    pub fn record_failure(&self, client: IpAddr) -> Result<(), RateLimited> {
        let Some(limiter) = &self.failed else {
            return Ok(());
        };
        spend(limiter, client).inspect_err(|e| {
            tracing::debug!(%client, retry_after_s = e.retry_after_s, "too many failed checks");
        })
    }

    /// Forgets addresses that have been quiet long enough to be back at a full allowance.
    fn sweep(&self) {
        for limiter in [&self.mint, &self.failed].into_iter().flatten() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
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

fn spend(limiter: &DefaultKeyedRateLimiter<IpAddr>, client: IpAddr) -> Result<(), RateLimited> {
    limiter.check_key(&client).map_err(|not_until| RateLimited {
        retry_after_s: seconds(not_until.wait_time_from(limiter.clock().now())),
    })
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
            l.record_failure(a).unwrap();
        }
    }

    #[test]
    fn failures_past_the_allowance_are_refused_for_that_address_only() {
        let l = limits(0, 0, 3);
        let (a, b): (IpAddr, IpAddr) =
            ("192.0.2.1".parse().unwrap(), "2001:db8::1".parse().unwrap());
        for _ in 0..3 {
            l.record_failure(a).expect("within the allowance");
        }
        let e = l.record_failure(a).unwrap_err();
        // 3 per minute: one more unit in at most 20 s.
        assert!((1..=20).contains(&e.retry_after_s), "{e:?}");
        l.record_failure(b)
            .expect("other addresses are not affected");
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(seconds(Duration::from_millis(1)), 1);
        assert_eq!(seconds(Duration::from_secs(2)), 2);
        assert_eq!(seconds(Duration::from_millis(2001)), 3);
    }
}
