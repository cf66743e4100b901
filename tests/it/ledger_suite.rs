//! The ledger conformance suite ([`burnlink::ledger::suite`], lease expiry by `PX` included)
//! against the Redis ledger on a real `redis-server` (started per test on a free port; the
//! in-memory ledger runs the same rules as a unit test in `src/ledger/memory.rs`, the other
//! Redis deployments in `redis_deployments.rs`), plus what only Redis can get wrong: replicas
//! racing over two connections, key lifetimes, Redis down and Redis hung.

use std::sync::Arc;
use std::time::Duration;

use burnlink::ledger::memory::RETAIN_AFTER_EXPIRY_S;
use burnlink::ledger::redis::{OP_TIMEOUT, connect, key};
use burnlink::ledger::{
    Acquire, Ledger, LedgerError, LinkState, Owner, Receipt, RedisLedger, suite,
};
use burnlink::token::unix_now;

use crate::support::redis_modes::CALL_SLACK;
use crate::support::redis_server::RedisServer;

/// The suite against a [`RedisLedger`] on a fresh `redis-server` per test, then what only
/// Redis can get wrong.
mod redis {
    use super::*;

    /// Every rule of the suite ([`suite::RULES`]), one after the other on one Redis, as the
    /// TLS, Cluster and Sentinel deployments run it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn conformance_suite() {
        let Some(r) = RedisServer::start() else {
            return;
        };
        suite::run_all("one node", Arc::new(ledger(&r))).await;
    }

    /// A link of several uses whose lease holder dies: its lease lapses on Redis's clock and
    /// frees its use, the dead owner cannot commit (the suite's rule), and here what only Redis
    /// can get wrong: the key, rewritten by the lapse and the commits, still lives until the
    /// token's expiry plus the retention.
    #[tokio::test]
    async fn a_lapsed_lease_of_a_several_use_link_frees_its_use() {
        let Some(r) = RedisServer::start() else {
            return;
        };
        let l = ledger(&r);
        let n = [11u8; 16];
        let short = Duration::from_millis(300);
        let expires_at = unix_now() + 600;
        for o in [1, 2] {
            assert_eq!(
                l.lease(&n, Owner(o), expires_at, short, 2).await.unwrap(),
                Acquire::Granted
            );
        }
        assert_eq!(
            l.lease(&n, Owner(3), expires_at, short, 2).await.unwrap(),
            Acquire::Busy
        );
        assert_eq!(l.commit(&n, Owner(2), None).await.unwrap(), Some(1));
        tokio::time::sleep(Duration::from_millis(600)).await;
        let u = l.usage(&n).await.unwrap();
        assert_eq!((u.state, u.uses), (LinkState::Unused, 1));
        assert!(!l.renew(&n, Owner(1), short).await.unwrap());
        assert_eq!(
            l.lease(&n, Owner(3), expires_at, Duration::from_secs(30), 2)
                .await
                .unwrap(),
            Acquire::Granted
        );
        assert_eq!(l.commit(&n, Owner(1), None).await.unwrap(), None);
        assert_eq!(l.commit(&n, Owner(3), None).await.unwrap(), Some(2));
        let ttl: i64 = r.command(&format!("TTL {}", key(&n)))[1..].parse().unwrap();
        let want = 600 + RETAIN_AFTER_EXPIRY_S as i64;
        assert!((want - 5..=want).contains(&ttl), "ttl {ttl}");
    }

    fn ledger(server: &RedisServer) -> RedisLedger {
        RedisLedger::new(connect(&server.url()).unwrap())
    }

    /// What one ledger call may take on a Redis that is down or hung: the design's bound plus
    /// the slack a loaded machine needs to notice it passed ([`CALL_SLACK`]).
    const CALL_BOUND: Duration = OP_TIMEOUT.saturating_add(CALL_SLACK);

    async fn timed<T>(call: impl std::future::Future<Output = T>) -> (T, Duration) {
        let started = std::time::Instant::now();
        let out = call.await;
        (out, started.elapsed())
    }

    /// Two handles on one Redis stand for two replicas: 64 tasks split between them race for
    /// one nonce, exactly one wins.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn race_across_two_connections_has_one_winner() {
        let Some(r) = RedisServer::start() else {
            return;
        };
        let (a, b): (Arc<dyn Ledger>, Arc<dyn Ledger>) =
            (Arc::new(ledger(&r)), Arc::new(ledger(&r)));
        let n = [7u8; 16];
        let mut tasks = Vec::new();
        for i in 0..64u128 {
            let l = if i % 2 == 0 { a.clone() } else { b.clone() };
            tasks.push(tokio::spawn(async move {
                l.lease(&n, Owner(i), u64::MAX, Duration::from_secs(30), 1)
                    .await
                    .unwrap()
            }));
        }
        let mut granted = 0;
        for t in tasks {
            granted += (t.await.unwrap() == Acquire::Granted) as u32;
        }
        assert_eq!(granted, 1);
    }

    #[tokio::test]
    async fn keys_expire_with_their_token_and_untouched_links_store_nothing() {
        let Some(r) = RedisServer::start() else {
            return;
        };
        let l = ledger(&r);
        let expires_at = unix_now() + 600;
        let lease = Duration::from_secs(30);

        // Asking about a link, or leasing and releasing it, leaves nothing behind.
        assert_eq!(l.state(&[1; 16]).await.unwrap(), LinkState::Unused);
        l.lease(&[1; 16], Owner(1), expires_at, lease, 1)
            .await
            .unwrap();
        let pttl: i64 = r.command(&format!("PTTL {}", key(&[1; 16])))[1..]
            .parse()
            .unwrap();
        assert!((1..=30_000).contains(&pttl), "lease PX: {pttl}");
        l.release(&[1; 16], Owner(1)).await.unwrap();
        assert_eq!(l.entries().await.unwrap(), 0);

        // A burned link with its receipt, kept until expiry + the retention margin.
        let receipt = Receipt {
            bytes: 1234,
            sha256: std::array::from_fn(|i| i as u8),
        };
        l.lease(&[2; 16], Owner(1), expires_at, lease, 1)
            .await
            .unwrap();
        assert!(
            l.commit(&[2; 16], Owner(1), Some(receipt))
                .await
                .unwrap()
                .is_some()
        );
        assert_eq!(
            l.state(&[2; 16]).await.unwrap(),
            LinkState::Used(Some(receipt))
        );
        let ttl: i64 = r.command(&format!("TTL {}", key(&[2; 16])))[1..]
            .parse()
            .unwrap();
        let want = (600 + RETAIN_AFTER_EXPIRY_S) as i64;
        assert!((want - 5..=want).contains(&ttl), "burned TTL {ttl}");

        // A revoked link likewise.
        l.revoke(&[3; 16], expires_at).await.unwrap();
        let ttl: i64 = r.command(&format!("TTL {}", key(&[3; 16])))[1..]
            .parse()
            .unwrap();
        assert!((want - 5..=want).contains(&ttl), "revoked TTL {ttl}");
        assert_eq!(l.entries().await.unwrap(), 2);
    }

    #[tokio::test]
    async fn redis_down_is_unavailable_fast_and_service_resumes_when_it_returns() {
        let Some(mut r) = RedisServer::start() else {
            return;
        };
        let l = ledger(&r);
        l.ping().await.unwrap();
        r.stop();
        let (lease, took) =
            timed(l.lease(&[1; 16], Owner(1), u64::MAX, Duration::from_secs(30), 1)).await;
        assert!(matches!(lease, Err(LedgerError::Unavailable(_))));
        assert!(
            took <= CALL_BOUND,
            "a lease on a stopped Redis took {took:?}"
        );
        let (ping, took_ping) = timed(l.ping()).await;
        assert!(matches!(ping, Err(LedgerError::Unavailable(_))));
        assert!(
            took_ping <= CALL_BOUND,
            "a ping on a stopped Redis took {took_ping:?}"
        );
        eprintln!(
            "ledger/redis stopped: a lease failed after {took:?}, a ping after {took_ping:?}"
        );
        r.restart();
        let mut ok = false;
        for _ in 0..50 {
            if l.ping().await.is_ok() {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(ok, "the handle reconnects by itself");
        assert_eq!(
            l.lease(&[1; 16], Owner(1), u64::MAX, Duration::from_secs(30), 1)
                .await
                .unwrap(),
            Acquire::Granted
        );
    }

    /// A Redis that hangs (SIGSTOP: connections open, no answers) must not hang transfers.
    #[tokio::test]
    async fn a_hung_redis_times_out_and_answers_are_not_mixed_up_afterwards() {
        let Some(r) = RedisServer::start() else {
            return;
        };
        let l = ledger(&r);
        l.ping().await.unwrap();
        r.pause();
        let (lease, took) =
            timed(l.lease(&[1; 16], Owner(1), u64::MAX, Duration::from_secs(30), 1)).await;
        assert!(matches!(lease, Err(LedgerError::Unavailable(_))));
        assert!(took <= CALL_BOUND, "a lease on a hung Redis took {took:?}");
        let (state, took_state) = timed(l.state(&[2; 16])).await;
        assert!(matches!(state, Err(LedgerError::Unavailable(_))));
        assert!(
            took_state <= CALL_BOUND,
            "a read on a hung Redis took {took_state:?}"
        );
        eprintln!(
            "ledger/redis hung: a lease failed after {took:?}, then a read after {took_state:?}"
        );
        r.resume();
        let mut ok = false;
        for _ in 0..50 {
            if l.ping().await.is_ok() {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(ok);
        // The timed-out lease may have run late (Redis queued it); either way each answer
        // belongs to its own question.
        assert!(
            l.commit(&[2; 16], Owner(1), None)
                .await
                .is_ok_and(|c| c.is_none())
        );
        assert_eq!(
            l.lease(&[3; 16], Owner(3), u64::MAX, Duration::from_secs(30), 1)
                .await
                .unwrap(),
            Acquire::Granted
        );
        assert_eq!(l.state(&[3; 16]).await.unwrap(), LinkState::InProgress);
        assert_eq!(l.state(&[4; 16]).await.unwrap(), LinkState::Unused);
    }

    /// Memory per burned link in Redis (`used_memory` over 5,000 burns), for single-use links
    /// (a string) and 3-use links (a small hash): printed, and the hash held to at most twice
    /// the string's cost.
    #[tokio::test]
    async fn a_burned_several_use_link_stays_compact_in_redis() {
        let Some(r) = RedisServer::start() else {
            return;
        };
        let l = ledger(&r);
        let used_memory = || -> i64 {
            let info = r.command("INFO memory");
            let line = info
                .lines()
                .find(|l| l.starts_with("used_memory:"))
                .unwrap();
            line["used_memory:".len()..].trim().parse().unwrap()
        };
        const N: u32 = 5_000;
        let expires_at = unix_now() + 3600;
        let mut per_link = Vec::new();
        for (uses, tag) in [(1u16, 0u8), (3, 1)] {
            let before = used_memory();
            for i in 0..N {
                let mut n = [tag; 16];
                n[..4].copy_from_slice(&i.to_be_bytes());
                for _ in 0..uses {
                    assert_eq!(
                        l.lease(&n, Owner(1), expires_at, Duration::from_secs(30), uses)
                            .await
                            .unwrap(),
                        Acquire::Granted
                    );
                    assert!(l.commit(&n, Owner(1), None).await.unwrap().is_some());
                }
            }
            let bytes = (used_memory() - before) as f64 / f64::from(N);
            per_link.push(bytes);
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "ledger/redis: a burned link of {uses} use(s) costs {bytes:.0} bytes of used_memory"
            );
        }
        assert!(per_link[1] <= 2.0 * per_link[0], "{per_link:?}");
    }
}
