//! The memory ledger: operations per second for a burn (lease + commit), and how many bytes
//! one burned entry costs, measured with a counting allocator. Also a whole download's lease
//! as the lease keeper runs it (take, the check at delivery, commit), with and without the
//! renewal that a fresh lease skips.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use burnlink::lease::LeaseKeeper;
use burnlink::ledger::{Ledger, MemoryLedger, Owner};
use burnlink::stats::MemoryStats;
use burnlink::token::{Claims, Direction, unix_now};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const LEASE: Duration = Duration::from_secs(30);

fn nonce(i: u64) -> [u8; 16] {
    // Spread like random nonces: the shard is picked from the first byte.
    let x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut n = [0u8; 16];
    n[..8].copy_from_slice(&x.to_le_bytes());
    n[8..].copy_from_slice(&i.to_le_bytes());
    n
}

/// Bytes per burned link after `n` links of `uses` uses each were used up (every use a lease
/// and a commit): a link of several uses ends in the same compact entry as a single-use one.
/// The budget is 64 bytes per burned link at 10 million burned links (issue 22); the bench
/// fails if it is exceeded.
///
/// It also prints the longest single use: a shard's map grows by rehashing everything it
/// holds under the shard's lock, so that is how long a transfer (and the event loop running
/// it) can wait on the ledger. And a purge of everything burned that drops nothing, which
/// scans each shard under its lock in turn: the whole, and the average per shard.
fn bytes_per_burned_entry(rt: &tokio::runtime::Runtime, uses: u16, n: u64) {
    let before = LIVE.load(Ordering::Relaxed);
    let ledger = MemoryLedger::new();
    let mut longest = Duration::ZERO;
    rt.block_on(async {
        for i in 0..n {
            let nonce = nonce(i);
            for _ in 0..uses {
                let start = std::time::Instant::now();
                ledger
                    .lease(&nonce, Owner(1), u64::MAX, LEASE, uses)
                    .await
                    .unwrap();
                ledger.commit(&nonce, Owner(1), None).await.unwrap();
                longest = longest.max(start.elapsed());
            }
        }
    });
    let used = LIVE.load(Ordering::Relaxed) - before;
    let per_entry = used as f64 / n as f64;
    println!(
        "ledger/memory: {n} burned entries of {uses} use(s) use {:.1} MiB, {per_entry:.1} bytes per entry; longest use {:.3} ms",
        used as f64 / (1024.0 * 1024.0),
        longest.as_secs_f64() * 1e3,
    );
    let start = std::time::Instant::now();
    assert_eq!(ledger.purge_expired(0), 0);
    let purge = start.elapsed();
    println!(
        "ledger/memory: a purge of {n} entries that keeps them all took {:.1} ms, {:.3} ms per shard",
        purge.as_secs_f64() * 1e3,
        purge.as_secs_f64() * 1e3 / MemoryLedger::SHARDS as f64,
    );
    assert!(
        per_entry <= 64.0,
        "the memory ledger is over its budget of 64 bytes per burned link"
    );
    drop(ledger);
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    bytes_per_burned_entry(&rt, 1, 10_000_000);
    bytes_per_burned_entry(&rt, 3, 1_000_000);

    let ledger = Arc::new(MemoryLedger::new());
    let mut group = c.benchmark_group("ledger/memory");
    group.throughput(Throughput::Elements(1));
    let mut i = 0u64;
    group.bench_function("lease_commit", |b| {
        b.iter(|| {
            i += 1;
            let n = nonce(i);
            rt.block_on(async {
                ledger
                    .lease(&n, Owner(7), u64::MAX, LEASE, 1)
                    .await
                    .unwrap();
                ledger.commit(&n, Owner(7), None).await.unwrap()
            })
        })
    });
    group.bench_function("lease_on_burned", |b| {
        let n = nonce(1);
        b.iter(|| {
            rt.block_on(ledger.lease(&n, Owner(8), u64::MAX, LEASE, 1))
                .unwrap()
        })
    });
    group.finish();

    // A 4 KiB download's lease: taken, the last byte delivered at once, committed. Before a
    // lease's freshness was checked, every delivered download renewed it first.
    let keeper = LeaseKeeper::new(
        Arc::new(MemoryLedger::new()),
        Arc::new(MemoryStats::default()),
        LEASE,
    );
    let client = std::net::IpAddr::from([127, 0, 0, 1]);
    let claims = |i: u64| {
        Claims::new(
            Direction::Download,
            None,
            format!("f{i}"),
            unix_now() + 3600,
        )
    };
    let mut group = c.benchmark_group("lease/download");
    group.throughput(Throughput::Elements(1));
    let mut i = 0u64;
    for (name, always_renew) in [("take_check_commit", false), ("take_renew_commit", true)] {
        group.bench_function(name, |b| {
            b.iter(|| {
                i += 1;
                let c = claims(i);
                rt.block_on(async {
                    let mut lease = keeper.acquire(&c, client).await.unwrap();
                    if always_renew || !lease.fresh() {
                        lease.renew().await.unwrap();
                    }
                    lease.commit_delivered(4096).await.unwrap()
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
