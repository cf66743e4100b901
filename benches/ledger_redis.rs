//! The Redis ledger against real redis-servers on loopback, started by the bench itself: burns
//! per second, one transfer at a time and 64 at once, on one node, one node over TLS and a
//! 3-primary cluster side by side in one run (printed as a table), and the latency of single
//! transitions on one node (criterion). Skips with a message when redis-server, redis-cli or
//! openssl is missing.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use burnlink::ledger::redis_conn::{RedisHandle, RedisOptions};
use burnlink::ledger::{Acquire, Ledger, Owner, RedisLedger};
use burnlink::token::unix_now;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const LEASE: Duration = Duration::from_secs(30);

/// Throwaway redis-servers (no persistence, their own directory), killed on drop. The bench's
/// own: benches do not reach into tests/.
struct Deployment {
    name: &'static str,
    children: Vec<Child>,
    options: RedisOptions,
    _dir: tempfile::TempDir,
}

impl Drop for Deployment {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn redis(bin: &Path, dir: &Path, name: &str, extra: &[String]) -> Child {
    let node_dir = dir.join(name);
    std::fs::create_dir_all(&node_dir).unwrap();
    Command::new(bin)
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(&node_dir)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn redis-server")
}

fn run(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Polls `f` every 50 ms for at most `limit`.
fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn cli_ok(cli: &Path, port: u16, args: &[&str], expect: &str) -> bool {
    Command::new(cli)
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(expect))
}

fn single(bin: &Path, cli: &Path) -> Deployment {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = redis(
        bin,
        dir.path(),
        "single",
        &["--port".into(), port.to_string()],
    );
    assert!(
        wait_until(Duration::from_secs(10), || cli_ok(
            cli,
            port,
            &["PING"],
            "PONG"
        )),
        "redis-server did not start"
    );
    Deployment {
        name: "one node",
        children: vec![child],
        options: RedisOptions::new(format!("redis://127.0.0.1:{port}/0")),
        _dir: dir,
    }
}

/// One node speaking TLS only, its certificate signed by a CA made here with openssl and
/// trusted as `BURNLINK_REDIS_CA` would be.
fn tls(bin: &Path, cli: &Path) -> Option<Deployment> {
    let openssl = program("openssl")?;
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).display().to_string();
    std::fs::write(
        p("leaf.ext"),
        "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\n",
    )
    .unwrap();
    let made = run(Command::new(&openssl).args([
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=bench-ca",
        "-keyout",
        &p("ca.key"),
        "-out",
        &p("ca.pem"),
    ])) && run(Command::new(&openssl).args([
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        &p("server.key"),
        "-out",
        &p("server.csr"),
    ])) && run(Command::new(&openssl).args([
        "x509",
        "-req",
        "-in",
        &p("server.csr"),
        "-CA",
        &p("ca.pem"),
        "-CAkey",
        &p("ca.key"),
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        &p("leaf.ext"),
        "-out",
        &p("server.pem"),
    ]));
    assert!(made, "openssl could not make the bench's certificates");
    let port = free_port();
    let plain = free_port();
    let args: Vec<String> = [
        "--port",
        &plain.to_string(),
        "--tls-port",
        &port.to_string(),
        "--tls-cert-file",
        &p("server.pem"),
        "--tls-key-file",
        &p("server.key"),
        "--tls-ca-cert-file",
        &p("ca.pem"),
        "--tls-auth-clients",
        "no",
    ]
    .map(String::from)
    .to_vec();
    let child = redis(bin, dir.path(), "tls", &args);
    assert!(
        wait_until(Duration::from_secs(10), || cli_ok(
            cli,
            plain,
            &["PING"],
            "PONG"
        )),
        "redis-server (TLS) did not start"
    );
    let mut options = RedisOptions::new(format!("rediss://127.0.0.1:{port}/0"));
    options.ca = Some(dir.path().join("ca.pem"));
    Some(Deployment {
        name: "one node, TLS",
        children: vec![child],
        options,
        _dir: dir,
    })
}

/// Three primaries with one replica each, made by `redis-cli --cluster create`.
fn cluster(bin: &Path, cli: &Path) -> Deployment {
    let dir = tempfile::tempdir().unwrap();
    let ports: Vec<u16> = (0..6).map(|_| free_port()).collect();
    let children = ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            let args: Vec<String> = [
                "--port",
                &port.to_string(),
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "2000",
            ]
            .map(String::from)
            .to_vec();
            redis(bin, dir.path(), &format!("node-{i}"), &args)
        })
        .collect();
    let deployment = Deployment {
        name: "cluster, 3 primaries",
        children,
        options: RedisOptions::new(format!(
            "redis+cluster://127.0.0.1:{},127.0.0.1:{}",
            ports[0], ports[1]
        )),
        _dir: dir,
    };
    for port in &ports {
        assert!(
            wait_until(Duration::from_secs(10), || cli_ok(
                cli,
                *port,
                &["PING"],
                "PONG"
            )),
            "a cluster node did not start"
        );
    }
    let mut create = Command::new(cli);
    create.args(["--cluster", "create"]);
    for port in &ports {
        create.arg(format!("127.0.0.1:{port}"));
    }
    create.args(["--cluster-replicas", "1", "--cluster-yes"]);
    assert!(run(&mut create), "redis-cli --cluster create failed");
    let ok = wait_until(Duration::from_secs(20), || {
        ports.iter().all(|p| {
            cli_ok(cli, *p, &["CLUSTER", "INFO"], "cluster_state:ok")
                && cli_ok(cli, *p, &["CLUSTER", "INFO"], "cluster_slots_ok:16384")
        })
    });
    assert!(ok, "the cluster did not become ok");
    deployment
}

fn nonce(i: u64) -> [u8; 16] {
    let mut n = [0u8; 16];
    n[..8].copy_from_slice(&i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
    n[8..].copy_from_slice(&i.to_le_bytes());
    n
}

/// `tasks` concurrent transfers burn `total` fresh links (lease + commit each) through one
/// connection manager, as one replica would under load.
fn burns_per_second(rt: &tokio::runtime::Runtime, ledger: &Arc<RedisLedger>, tasks: u64) -> f64 {
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
                    let got = ledger.lease(&n, owner, expires_at, LEASE, 1).await.unwrap();
                    assert_eq!(got, Acquire::Granted);
                    assert!(ledger.commit(&n, owner, None).await.unwrap().is_some());
                }
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
    });
    TOTAL as f64 / started.elapsed().as_secs_f64()
}

/// The side-by-side table: each deployment started, measured at 1 and 64 transfers in
/// flight, and stopped before the next starts (so they never share the two cores).
fn side_by_side(rt: &tokio::runtime::Runtime, bin: &Path, cli: &Path) {
    println!("ledger/redis: 40,000 burns (lease + commit) per cell, one connection handle");
    println!("| deployment | 1 at a time (burns/s) | 64 in flight (burns/s) |");
    println!("|---|---|---|");
    type Start = fn(&Path, &Path) -> Option<Deployment>;
    let starts: [Start; 3] = [|b, c| Some(single(b, c)), tls, |b, c| Some(cluster(b, c))];
    for start in starts {
        let Some(deployment) = start(bin, cli) else {
            println!("| (TLS skipped: openssl is not installed) | | |");
            continue;
        };
        // The handle spawns its connection tasks on the runtime it is opened in.
        let ledger = {
            let _runtime = rt.enter();
            Arc::new(RedisLedger::new(
                RedisHandle::open(&deployment.options).expect("open the handle"),
            ))
        };
        let reachable = wait_until(Duration::from_secs(10), || {
            rt.block_on(ledger.ping()).is_ok()
        });
        assert!(
            reachable,
            "{}: the ledger cannot reach Redis",
            deployment.name
        );
        let one = burns_per_second(rt, &ledger, 1);
        let many = burns_per_second(rt, &ledger, 64);
        println!("| {} | {one:.0} | {many:.0} |", deployment.name);
    }
}

fn bench(c: &mut Criterion) {
    let (Some(bin), Some(cli)) = (program("redis-server"), program("redis-cli")) else {
        println!("ledger/redis: SKIPPED, redis-server or redis-cli is not installed");
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    side_by_side(&rt, &bin, &cli);

    let server = single(&bin, &cli);
    let ledger = {
        let _runtime = rt.enter();
        Arc::new(RedisLedger::new(
            RedisHandle::open(&server.options).expect("open the handle"),
        ))
    };
    rt.block_on(ledger.ping()).unwrap();
    let expires_at = unix_now() + 3600;
    let mut group = c.benchmark_group("ledger/redis");
    group.throughput(Throughput::Elements(1));
    let mut i = 0u64;
    group.bench_function("lease_commit", |b| {
        b.iter(|| {
            i += 1;
            let n = nonce(i);
            rt.block_on(async {
                ledger
                    .lease(&n, Owner(7), expires_at, LEASE, 1)
                    .await
                    .unwrap();
                ledger.commit(&n, Owner(7), None).await.unwrap()
            })
        })
    });
    group.bench_function("lease_on_burned", |b| {
        let n = nonce(1);
        b.iter(|| {
            rt.block_on(ledger.lease(&n, Owner(8), expires_at, LEASE, 1))
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
