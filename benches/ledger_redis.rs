//! The Redis ledger against a real redis-server on loopback, started by the bench itself:
//! latency of one transition (criterion) and burns per second with many transfers at once
//! (printed). Skips with a message when redis-server is not installed.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use burnlink::ledger::redis::connect;
use burnlink::ledger::{Acquire, Ledger, Owner, RedisLedger};
use burnlink::token::unix_now;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const LEASE: Duration = Duration::from_secs(30);

/// A throwaway `redis-server` on a free loopback port (no persistence, its own directory),
/// killed on drop. The bench's own: benches do not reach into tests/.
struct RedisServer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// `None` when `redis-server` is not installed.
    fn start() -> Option<Self> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let bin = std::env::split_paths(&path)
            .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
            .map(|d| d.join("redis-server"))
            .find(|p| p.is_file())?;
        // A port probed free can be taken before redis binds it: try a few.
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let dir = tempfile::tempdir().unwrap();
            let child = Command::new(&bin)
                .args(["--port", &port.to_string()])
                .args(["--bind", "127.0.0.1"])
                .args(["--save", ""])
                .args(["--appendonly", "no"])
                .arg("--dir")
                .arg(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn redis-server");
            let mut server = RedisServer {
                child,
                port,
                _dir: dir,
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if server.child.try_wait().unwrap().is_some() {
                    break;
                }
                if server.pong() {
                    return Some(server);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("redis-server did not start on any of 5 free ports");
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn pong(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let mut buf = [0u8; 16];
        s.write_all(b"PING\r\n").is_ok()
            && matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nonce(i: u64) -> [u8; 16] {
    let mut n = [0u8; 16];
    n[..8].copy_from_slice(&i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
    n[8..].copy_from_slice(&i.to_le_bytes());
    n
}

/// `tasks` concurrent transfers burn `total` fresh links (lease + commit each) through one
/// connection manager, as one replica would under load.
fn burns_per_second(rt: &tokio::runtime::Runtime, ledger: &Arc<RedisLedger>, tasks: u64) {
    const TOTAL: u64 = 40_000;
    // Fresh nonces for each run: a burned one would not lease again.
    let base = (tasks + 1) << 40;
    let next = Arc::new(AtomicU64::new(base));
    let expires_at = unix_now() + 3600;
    let started = Instant::now();
    rt.block_on(async {
        let mut handles = Vec::new();
        for t in 0..tasks {
            let (ledger, next) = (ledger.clone(), next.clone());
            handles.push(tokio::spawn(async move {
                let owner = Owner(u128::from(t));
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= base + TOTAL {
                        break;
                    }
                    let n = nonce(i);
                    let got = ledger.lease(&n, owner, expires_at, LEASE).await.unwrap();
                    assert_eq!(got, Acquire::Granted);
                    assert!(ledger.commit(&n, owner, None).await.unwrap());
                }
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
    });
    let secs = started.elapsed().as_secs_f64();
    println!(
        "ledger/redis: {TOTAL} burns with {tasks} concurrent transfers in {secs:.2} s: \
         {:.0} burns/s, {:.0} ledger ops/s",
        TOTAL as f64 / secs,
        2.0 * TOTAL as f64 / secs
    );
}

fn bench(c: &mut Criterion) {
    let Some(server) = RedisServer::start() else {
        println!("ledger/redis: SKIPPED, redis-server is not installed");
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ledger = Arc::new(rt.block_on(async { RedisLedger::new(connect(&server.url()).unwrap()) }));
    rt.block_on(ledger.ping()).unwrap();
    for tasks in [1, 64] {
        burns_per_second(&rt, &ledger, tasks);
    }

    let expires_at = unix_now() + 3600;
    let mut group = c.benchmark_group("ledger/redis");
    group.throughput(Throughput::Elements(1));
    let mut i = 0u64;
    group.bench_function("lease_commit", |b| {
        b.iter(|| {
            i += 1;
            let n = nonce(i);
            rt.block_on(async {
                ledger.lease(&n, Owner(7), expires_at, LEASE).await.unwrap();
                ledger.commit(&n, Owner(7), None).await.unwrap()
            })
        })
    });
    group.bench_function("lease_on_burned", |b| {
        let n = nonce(1);
        b.iter(|| {
            rt.block_on(ledger.lease(&n, Owner(8), expires_at, LEASE))
                .unwrap()
        })
    });
    group.bench_function("state", |b| {
        let n = nonce(1);
        b.iter(|| rt.block_on(ledger.state(&n)).unwrap())
    });
    group.finish();
    drop(server);
}

criterion_group!(benches, bench);
criterion_main!(benches);
