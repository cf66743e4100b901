//! Shared statistics in Redis ([`RedisStats`]) on a real `redis-server` (started per test on a
//! free port): they count like the memory store, replicas count together, and a Redis that is
//! down fails a record within its timeout.

use std::time::Duration;

use burnlink::ledger::redis::connect;
use burnlink::stats::{MemoryStats, RedisStats, Statistics, StatsStore};

use crate::support::redis_server::RedisServer;

/// The store's bound on one record (`RECORD_TIMEOUT` in src/stats/redis.rs, private there).
const RECORD_TIMEOUT: Duration = Duration::from_millis(500);

fn tuple(s: Statistics) -> (u64, u64, u64, u64) {
    (
        s.total_tokens,
        s.active_tokens,
        s.used_tokens,
        s.expired_tokens,
    )
}

/// Drives a store through the memory store's test script and returns what it saw.
async fn script(s: &dyn StatsStore) -> Vec<(u64, u64, u64, u64)> {
    let mut seen = Vec::new();
    s.record_mint(Some("a"), 100).await.unwrap();
    s.record_mint(Some("a"), 100).await.unwrap();
    s.record_mint(Some("a"), 200).await.unwrap();
    s.record_mint(None, 200).await.unwrap();
    s.record_use(Some("a"), 100).await.unwrap();
    seen.push(tuple(s.snapshot(Some(Some("a")), 50).await.unwrap()));
    seen.push(tuple(s.snapshot(Some(Some("a")), 150).await.unwrap()));
    s.record_use(Some("a"), 100).await.unwrap();
    seen.push(tuple(s.snapshot(Some(Some("a")), 150).await.unwrap()));
    seen.push(tuple(s.snapshot(Some(None), 150).await.unwrap()));
    seen.push(tuple(s.snapshot(Some(Some("nobody")), 150).await.unwrap()));
    seen.push(tuple(s.snapshot(None, 300).await.unwrap()));
    seen
}

#[tokio::test]
async fn counts_like_the_memory_store() {
    let Some(r) = RedisServer::start() else {
        return;
    };
    let redis = RedisStats::new(connect(&r.url()).unwrap());
    let want = script(&MemoryStats::default()).await;
    assert_eq!(
        want,
        vec![
            (3, 2, 1, 0),
            (3, 1, 1, 1),
            (3, 1, 2, 0),
            (1, 1, 0, 0),
            (0, 0, 0, 0),
            (4, 0, 2, 2)
        ]
    );
    assert_eq!(script(&redis).await, want);
}

/// Two handles stand for two replicas: what one counts, the other reports, and
/// concurrent records are not lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_count_together() {
    let Some(r) = RedisServer::start() else {
        return;
    };
    let a = std::sync::Arc::new(RedisStats::new(connect(&r.url()).unwrap()));
    let b = std::sync::Arc::new(RedisStats::new(connect(&r.url()).unwrap()));
    let mut tasks = Vec::new();
    for i in 0..100u64 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            s.record_mint(Some("s1"), 1_000 + i % 3).await.unwrap();
            if i % 4 == 0 {
                s.record_use(Some("s1"), 1_000 + i % 3).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(tuple(b.snapshot(None, 10).await.unwrap()), (100, 75, 25, 0));
    let later = tuple(a.snapshot(Some(Some("s1")), 5_000).await.unwrap());
    assert_eq!(later, (100, 0, 25, 75));
}

#[tokio::test]
async fn redis_down_is_an_error_within_the_record_timeout() {
    let Some(mut r) = RedisServer::start() else {
        return;
    };
    let s = RedisStats::new(connect(&r.url()).unwrap());
    r.stop();
    let started = std::time::Instant::now();
    assert!(s.record_mint(None, 100).await.is_err());
    assert!(started.elapsed() < RECORD_TIMEOUT + Duration::from_millis(300));
}
