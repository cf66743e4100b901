//! Redis the way operators run it, started on loopback for tests and benches: TLS (with test
//! certificates made by `openssl`), a Redis Cluster (3 primaries, 1 replica each) and a
//! Sentinel setup (a primary, a replica, 3 sentinels). Every process is a child of the test,
//! in a temp directory, on free 127.0.0.1 ports, and is killed by PID when its guard drops
//! (SIGCONT first, in case a test left it SIGSTOPped). Every wait is bounded.

// The temp directories and processes in these structs are held for their Drop guards (the
// files and children live as long as the struct), not read.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, require_tool};

/// How far past the design's bound (one ledger call, `OP_TIMEOUT`: 2 s) a test lets a ledger
/// call, or a transfer on a hung or dead node, run before calling it a failure. On the
/// project's 2-core machine, with the Redis deployment tests running side by side, the worst
/// case measured (a transfer on a hung cluster primary, cut at the 2 s bound) finished 6 ms
/// past the bound, and one on a hung single node or Sentinel primary 4 ms past the node's
/// 1 s answer time. 500 ms leaves room for a CI machine loaded by the whole suite (debug
/// builds, many servers, browsers) and is still half of that 1 s answer time, so a
/// transfer that waited for a second answer from the hung node would fail the test.
pub const CALL_SLACK: Duration = Duration::from_millis(500);

/// `redis-server` (with `redis-cli` beside it), or `None` when the test should skip
/// ([`require_tool`]: a failure under CI).
pub fn need_redis(_test: &str) -> Option<PathBuf> {
    let server = require_tool("redis-server")?;
    require_tool("redis-cli")?;
    Some(server)
}

fn find_program(name: &str) -> Option<PathBuf> {
    require_tool(name)
}

/// A child process killed (SIGKILL) when dropped.
pub struct Proc {
    child: Option<Child>,
    pub port: u16,
    pub name: String,
}

impl Proc {
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn signal(&self, signal: rustix::process::Signal) {
        if let Some(pid) = self.pid() {
            let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
            let _ = rustix::process::kill_process(pid, signal);
        }
    }

    /// SIGSTOP: the node keeps its sockets but answers nothing, like a hung host.
    pub fn pause(&self) {
        self.signal(rustix::process::Signal::STOP);
    }

    pub fn resume(&self) {
        self.signal(rustix::process::Signal::CONT);
    }

    /// SIGKILL, as in a crash (nothing is saved).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::CONT);
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn(bin: &Path, dir: &Path, name: &str, port: u16, args: &[String]) -> Proc {
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    let child = Command::new(bin)
        .args(args)
        .current_dir(dir)
        .stdout(log)
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
    Proc {
        child: Some(child),
        port,
        name: name.to_string(),
    }
}

/// Sends one inline command to a plain-text port; the raw reply (`+PONG`, `:3`, `-MOVED …`).
pub fn command(port: u16, line: &str) -> String {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    if s.write_all(format!("{line}\r\n").as_bytes()).is_err() {
        return String::new();
    }
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    // Bulk replies may come in pieces: read until a short pause.
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
            }
        }
    }
    String::from_utf8_lossy(&out).trim_end().to_string()
}

/// Polls `ok` every 50 ms for at most `limit`.
pub fn wait_until(limit: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn base_args(port: u16) -> Vec<String> {
    [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    .map(String::from)
    .into_iter()
    // A new replica syncs at once rather than after the default 5 s grouping delay.
    .chain(["--repl-diskless-sync-delay".to_string(), "0".to_string()])
    .collect()
}

/// Test PKI: a CA, a server certificate for 127.0.0.1 and a client certificate both signed by
/// it, and an unrelated CA.
pub struct Certs {
    pub dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub other_ca: PathBuf,
}

fn openssl(args: &[&str]) -> bool {
    match Command::new("openssl").args(args).output() {
        Ok(o) if o.status.success() => true,
        Ok(o) => panic!("openssl {args:?}: {}", String::from_utf8_lossy(&o.stderr)),
        Err(_) => false,
    }
}

impl Certs {
    /// `None` when the test should skip for want of `openssl` ([`require_tool`]).
    pub fn make(test: &str) -> Option<Certs> {
        require_tool("openssl")?;
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        let s = |p: &PathBuf| p.display().to_string();
        let ext = p("leaf.ext");
        std::fs::write(
            &ext,
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
        .unwrap();
        let ca = |name: &str| {
            openssl(&[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN={name}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-keyout",
                &s(&p(&format!("{name}.key"))),
                "-out",
                &s(&p(&format!("{name}.pem"))),
            ])
        };
        let leaf = |name: &str| {
            openssl(&[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-subj",
                &format!("/CN={name}"),
                "-keyout",
                &s(&p(&format!("{name}.key"))),
                "-out",
                &s(&p(&format!("{name}.csr"))),
            ]) && openssl(&[
                "x509",
                "-req",
                "-in",
                &s(&p(&format!("{name}.csr"))),
                "-CA",
                &s(&p("test-ca.pem")),
                "-CAkey",
                &s(&p("test-ca.key")),
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &s(&ext),
                "-out",
                &s(&p(&format!("{name}.pem"))),
            ])
        };
        if !(ca("test-ca") && ca("other-ca") && leaf("server") && leaf("client")) {
            panic!("{test}: openssl could not make the test certificates");
        }
        Some(Certs {
            ca: p("test-ca.pem"),
            server_cert: p("server.pem"),
            server_key: p("server.key"),
            client_cert: p("client.pem"),
            client_key: p("client.key"),
            other_ca: p("other-ca.pem"),
            dir,
        })
    }

    fn server_args(&self, tls_port: u16, auth_clients: bool) -> Vec<String> {
        let s = |p: &PathBuf| p.display().to_string();
        vec![
            "--tls-port".into(),
            tls_port.to_string(),
            "--tls-cert-file".into(),
            s(&self.server_cert),
            "--tls-key-file".into(),
            s(&self.server_key),
            "--tls-ca-cert-file".into(),
            s(&self.ca),
            "--tls-auth-clients".into(),
            if auth_clients { "yes" } else { "no" }.into(),
        ]
    }

    /// `redis-cli` arguments for a TLS connection with the client certificate.
    pub fn cli_args(&self) -> Vec<String> {
        let s = |p: &PathBuf| p.display().to_string();
        vec![
            "--tls".into(),
            "--cacert".into(),
            s(&self.ca),
            "--cert".into(),
            s(&self.client_cert),
            "--key".into(),
            s(&self.client_key),
        ]
    }
}

/// One Redis with a TLS port (and a plain one, for the test's own checks).
pub struct TlsRedis {
    pub dir: tempfile::TempDir,
    pub proc: Proc,
    pub plain_port: u16,
    pub tls_port: u16,
}

impl TlsRedis {
    /// `auth_clients`: `tls-auth-clients yes` (mutual TLS) or `no`.
    pub fn start(bin: &Path, certs: &Certs, auth_clients: bool) -> TlsRedis {
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let (plain_port, tls_port) = (free_port(), free_port());
            let mut args = base_args(plain_port);
            args.extend(certs.server_args(tls_port, auth_clients));
            let mut proc = spawn(bin, dir.path(), "redis-tls", plain_port, &args);
            if wait_until(Duration::from_secs(10), || {
                command(plain_port, "PING") == "+PONG" || !proc.alive()
            }) && proc.alive()
            {
                return TlsRedis {
                    dir,
                    proc,
                    plain_port,
                    tls_port,
                };
            }
        }
        panic!("redis-server with TLS did not start");
    }

    pub fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}/0", self.tls_port)
    }
}

/// A Redis Cluster: 3 primaries with one replica each, made by `redis-cli --cluster create`.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<Proc>,
    /// `Some` when the cluster speaks TLS (the plain ports are then off).
    tls: Option<Vec<String>>,
}

/// Runs `redis-cli` (with `tls`'s arguments, if any) against `port`; its trimmed output.
fn cli(tls: Option<&[String]>, port: u16, args: &[&str]) -> String {
    let mut cmd = Command::new(find_program("redis-cli").unwrap());
    if let Some(tls) = tls {
        cmd.args(tls);
    }
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null());
    match cmd.output() {
        Ok(o) => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        Err(_) => String::new(),
    }
}

/// A port free now whose cluster bus port (+ 10000) is free too.
fn cluster_port() -> u16 {
    for _ in 0..100 {
        let port = free_port();
        if port < 55_536 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
    panic!("no port with a free cluster bus port in 100 tries");
}

impl Cluster {
    pub fn start(bin: &Path, certs: Option<&Certs>) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let tls = certs.map(Certs::cli_args);
        let mut nodes = Vec::new();
        for i in 0..6 {
            // A node also listens on its port + 10000 (the cluster bus), which another process
            // may hold: one that does not answer is started again on other ports.
            let mut started = None;
            for _ in 0..3 {
                let port = cluster_port();
                let mut args = base_args(port);
                args.extend(
                    [
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        &format!("nodes-{i}-{port}.conf"),
                        "--cluster-node-timeout",
                        "1000",
                        // A replica that lost its primary a moment ago may take over at once.
                        "--cluster-replica-validity-factor",
                        "0",
                        // The other primaries keep serving their slots while one is replaced.
                        "--cluster-require-full-coverage",
                        "no",
                    ]
                    .map(String::from),
                );
                if let Some(c) = certs {
                    // TLS only: the announced ports are the TLS ones.
                    args[1] = "0".into();
                    args.extend(c.server_args(port, false));
                    args.extend(
                        ["--tls-cluster", "yes", "--tls-replication", "yes"].map(String::from),
                    );
                }
                let mut node = spawn(bin, dir.path(), &format!("node-{i}"), port, &args);
                if wait_until(Duration::from_secs(10), || {
                    cli(tls.as_deref(), port, &["PING"]) == "PONG"
                }) {
                    started = Some(node);
                    break;
                }
                node.kill();
            }
            let log = std::fs::read_to_string(dir.path().join(format!("node-{i}.log")));
            nodes.push(started.unwrap_or_else(|| {
                panic!("cluster node {i} did not start in 3 tries; its log: {log:?}")
            }));
        }
        let cluster = Cluster { dir, nodes, tls };
        let mut create: Vec<String> = cluster.tls.clone().unwrap_or_default();
        create.push("--cluster".into());
        create.push("create".into());
        for n in &cluster.nodes {
            create.push(format!("127.0.0.1:{}", n.port));
        }
        create.extend(["--cluster-replicas", "1", "--cluster-yes"].map(String::from));
        let out = Command::new(find_program("redis-cli").unwrap())
            .args(&create)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        cluster.wait_ok(Duration::from_secs(20));
        // Every replica in sync with its primary before the test writes anything.
        let synced = wait_until(Duration::from_secs(20), || {
            let roles: Vec<String> = (0..6)
                .map(|i| cluster.cli(i, &["INFO", "replication"]))
                .collect();
            roles
                .iter()
                .filter(|r| r.contains("connected_slaves:1"))
                .count()
                == 3
                && roles
                    .iter()
                    .filter(|r| r.contains("master_link_status:up"))
                    .count()
                    == 3
        });
        assert!(synced, "the cluster's replicas did not sync");
        cluster
    }

    /// Runs `redis-cli` against node `i`; its trimmed output.
    pub fn cli(&self, i: usize, args: &[&str]) -> String {
        cli(self.tls.as_deref(), self.nodes[i].port, args)
    }

    /// Waits until every live node says `cluster_state:ok` and agrees on 3 primaries with
    /// all slots covered.
    pub fn wait_ok(&self, limit: Duration) {
        let ok = wait_until(limit, || {
            (0..self.nodes.len())
                .filter(|i| self.nodes[*i].pid().is_some())
                .all(|i| {
                    let info = self.cli(i, &["CLUSTER", "INFO"]);
                    info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384")
                })
        });
        assert!(ok, "the cluster did not become ok within {limit:?}");
    }

    /// Indexes of the nodes that are primaries right now (as node `asker` sees it).
    pub fn primaries(&self, asker: usize) -> Vec<usize> {
        let nodes = self.cli(asker, &["CLUSTER", "NODES"]);
        let mut out = Vec::new();
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 3 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let port: u16 = fields[1]
                .split('@')
                .next()
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            if let Some(i) = self.nodes.iter().position(|n| n.port == port) {
                out.push(i);
            }
        }
        out.sort();
        out
    }

    /// The node (index) that serves `key`'s slot, as node `asker` sees it.
    pub fn owner_of(&self, asker: usize, key: &str) -> Option<usize> {
        // Each primary answers for its own slots and redirects (`MOVED`) for the others.
        self.primaries(asker).into_iter().find(|i| {
            let out = self.cli(*i, &["EXISTS", key]);
            !out.is_empty() && !out.contains("MOVED")
        })
    }

    /// `host:port,host:port` for the given node indexes.
    pub fn seeds(&self, which: &[usize]) -> String {
        which
            .iter()
            .map(|i| format!("127.0.0.1:{}", self.nodes[*i].port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Distinct keys matching `pattern` on all live primaries.
    pub fn count_keys(&self, pattern: &str) -> usize {
        // Distinct names: with a 1 s node timeout, a loaded machine can see a replica promoted
        // while its old primary is still listed as a primary, both holding the same keys for
        // a moment. A full run here once counted one link's key twice, most likely so.
        let mut names = std::collections::HashSet::new();
        for i in self.primaries(self.live_node()) {
            let found = self.cli(i, &["--scan", "--pattern", pattern]);
            names.extend(found.lines().filter(|l| !l.is_empty()).map(str::to_string));
        }
        names.len()
    }

    pub fn live_node(&self) -> usize {
        self.nodes.iter().position(|n| n.pid().is_some()).unwrap()
    }
}

/// A primary, one replica and three sentinels watching `mymaster`.
pub struct Sentinels {
    pub dir: tempfile::TempDir,
    pub primary: Proc,
    pub replica: Proc,
    pub sentinels: Vec<Proc>,
    /// With TLS: the sentinels' TLS ports (the plain ports stay open for the test's checks;
    /// the sentinels watch the data nodes' TLS ports, so they name those).
    pub sentinel_tls_ports: Vec<u16>,
}

pub const MASTER: &str = "mymaster";

impl Sentinels {
    pub fn start(bin: &Path) -> Sentinels {
        Self::start_with(bin, None)
    }

    /// With `certs`: every node and sentinel also listens on a TLS port, and replication and
    /// the sentinels' own links use TLS.
    pub fn start_with(bin: &Path, certs: Option<&Certs>) -> Sentinels {
        let dir = tempfile::tempdir().unwrap();
        let (pp, rp) = (free_port(), free_port());
        let (ptls, rtls) = (free_port(), free_port());
        let tls_args = |tls_port: u16| -> Vec<String> {
            match certs {
                None => Vec::new(),
                Some(c) => {
                    let mut a = c.server_args(tls_port, false);
                    a.extend(["--tls-replication".to_string(), "yes".to_string()]);
                    a
                }
            }
        };
        // The address the sentinels watch and name: the TLS port when there is one.
        let watched = if certs.is_some() { ptls } else { pp };
        let mut args = base_args(pp);
        args.extend(tls_args(ptls));
        let primary = spawn(bin, dir.path(), "primary", pp, &args);
        assert!(wait_until(Duration::from_secs(10), || command(pp, "PING") == "+PONG"));
        let mut args = base_args(rp);
        args.extend(tls_args(rtls));
        args.extend([
            "--replicaof".into(),
            "127.0.0.1".into(),
            watched.to_string(),
        ]);
        let replica = spawn(bin, dir.path(), "replica", rp, &args);
        assert!(
            wait_until(Duration::from_secs(15), || {
                command(pp, "INFO replication").contains("connected_slaves:1")
                    && command(rp, "INFO replication").contains("master_link_status:up")
            }),
            "the replica did not sync"
        );
        let replica_watched = if certs.is_some() { rtls } else { rp };
        let mut sentinels = Vec::new();
        let mut sentinel_tls_ports = Vec::new();
        for i in 0..3 {
            let port = free_port();
            let conf = dir.path().join(format!("sentinel-{i}.conf"));
            let tls = match certs {
                None => String::new(),
                Some(c) => {
                    let tls_port = free_port();
                    sentinel_tls_ports.push(tls_port);
                    format!(
                        "tls-port {tls_port}\ntls-cert-file {}\ntls-key-file {}\n\
                         tls-ca-cert-file {}\ntls-auth-clients no\ntls-replication yes\n",
                        c.server_cert.display(),
                        c.server_key.display(),
                        c.ca.display()
                    )
                }
            };
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {}\n{tls}\
                     sentinel monitor {MASTER} 127.0.0.1 {watched} 2\n\
                     sentinel down-after-milliseconds {MASTER} 1000\n\
                     sentinel failover-timeout {MASTER} 3000\n\
                     sentinel parallel-syncs {MASTER} 1\n",
                    dir.path().display()
                ),
            )
            .unwrap();
            let args = vec![conf.display().to_string(), "--sentinel".to_string()];
            sentinels.push(spawn(
                bin,
                dir.path(),
                &format!("sentinel-{i}"),
                port,
                &args,
            ));
        }
        let s = Sentinels {
            dir,
            primary,
            replica,
            sentinels,
            sentinel_tls_ports,
        };
        // Each sentinel must know the replica and the two other sentinels before a failover
        // can be agreed on.
        let ready = wait_until(Duration::from_secs(60), || {
            s.sentinels.iter().all(|x| {
                command(x.port, &format!("SENTINEL ckquorum {MASTER}")).contains("3 usable")
                    && command(x.port, &format!("SENTINEL replicas {MASTER}"))
                        .contains(&replica_watched.to_string())
            })
        });
        if !ready {
            // Once, in a full suite run, this wait ran out with nothing to tell why: say what
            // each sentinel sees, and the end of its log.
            let mut seen = String::new();
            for (i, x) in s.sentinels.iter().enumerate() {
                let log = std::fs::read_to_string(s.dir.path().join(format!("sentinel-{i}.log")))
                    .unwrap_or_default();
                let lines: Vec<&str> = log.lines().collect();
                let tail = &lines[lines.len().saturating_sub(15)..];
                seen.push_str(&format!(
                    "\nsentinel {i} (port {}): master {:?}; ckquorum {:?}; replicas watched {}\n  log: {}",
                    x.port,
                    command(x.port, &format!("SENTINEL get-master-addr-by-name {MASTER}")),
                    command(x.port, &format!("SENTINEL ckquorum {MASTER}")),
                    command(x.port, &format!("SENTINEL replicas {MASTER}"))
                        .contains(&replica_watched.to_string()),
                    tail.join("\n  log: "),
                ));
            }
            panic!(
                "the sentinels did not see each other and the replica (port {replica_watched}) within 60 s:{seen}"
            );
        }
        s
    }

    /// `host:port,host:port` of the first `n` sentinels.
    /// `host:port,host:port` of the first `n` sentinels' TLS ports.
    pub fn tls_addrs(&self, n: usize) -> String {
        self.sentinel_tls_ports[..n]
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn addrs(&self, n: usize) -> String {
        self.sentinels[..n]
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The port the sentinels name as primary now.
    pub fn primary_port(&self) -> Option<u16> {
        let reply = command(
            self.sentinels[0].port,
            &format!("SENTINEL get-master-addr-by-name {MASTER}"),
        );
        reply.lines().filter_map(|l| l.parse().ok()).next()
    }
}
