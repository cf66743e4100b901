//! `burnlink get` and `burnlink put` against the real server: downloads and uploads that
//! survive a connection cut three times (through a loopback relay that counts the bytes),
//! exit statuses per contract code, progress lines in a log, directory links saved as zips
//! that Info-ZIP accepts, and proxies from the environment. The checks the real server never
//! trips (a zip cut short, more bytes than announced, another digest) are reached through a
//! tiny fake server, as fault injection.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::redis_modes::Certs;
use crate::support::redis_server::RedisServer;
use crate::support::relay::{ConnectProxy, Flow, Relay};
use crate::support::{self, Server, bin, claims, hex, now, require_tool, sign};
use burnlink::token::Direction;

const BIG: u64 = 256 << 20;

/// Servers that take the big transfer both ways.
fn big_server() -> Server {
    let limit = (BIG + (1 << 20)).to_string();
    Server::start_with(&[
        ("BURNLINK_MAX_DOWNLOAD_BYTES", &limit),
        ("BURNLINK_MAX_UPLOAD_BYTES", &limit),
    ])
}

/// The client, with no proxy or CA settings from the machine running the tests.
fn burnlink(cwd: &Path, args: &[&str]) -> Output {
    burnlink_with(cwd, args, &[])
}

/// [`burnlink`] with `env` set on top.
fn burnlink_with(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin());
    cmd.args(args).current_dir(cwd);
    for var in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "no_proxy",
        "SSL_CERT_FILE",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run burnlink")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Writes `len` pattern bytes to `path` a MiB at a time; returns their SHA-256.
fn write_big(path: &Path, len: u64) -> [u8; 32] {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut hasher = Sha256::new();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut chunk = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        for word in chunk.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes());
        }
        let n = left.min(chunk.len() as u64) as usize;
        file.write_all(&chunk[..n]).unwrap();
        hasher.update(&chunk[..n]);
        left -= n as u64;
    }
    file.flush().unwrap();
    hasher.finalize().into()
}

fn sha256_of(path: &Path) -> [u8; 32] {
    use std::io::Read;
    let mut hasher = Sha256::new();
    let mut file = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    hasher.finalize().into()
}

/// The link's URL with the relay in place of the server.
fn via(relay: &Relay, url: &str) -> String {
    let path = &url[url.find("/transfer/").unwrap()..];
    format!("{}{path}", relay.base())
}

#[tokio::test]
async fn get_resumes_a_256_mib_download_cut_three_times() {
    let server = big_server();
    let digest = write_big(&server.root.join("big/disk.img"), BIG);
    let url = server.mint("big/disk.img").await;
    let addr = server.base.trim_start_matches("http://").parse().unwrap();
    let relay = Relay::start(addr, Flow::Down, 64 << 20, 3);
    let out_dir = tempfile::tempdir().unwrap();
    let run = burnlink(out_dir.path(), &["get", &via(&relay, &url)]);
    let stderr = text(&run.stderr);
    assert!(run.status.success(), "get failed: {stderr}");
    let saved = out_dir.path().join("disk.img");
    assert_eq!(
        text(&run.stdout).trim(),
        "disk.img",
        "stdout is the saved path only"
    );
    assert_eq!(sha256_of(&saved), digest, "byte-identical");
    assert!(!out_dir.path().join("disk.img.part").exists());
    assert_eq!(relay.cuts_left(), 0, "the relay cut three times");
    assert!(
        relay.connections() >= 4,
        "{} connections",
        relay.connections()
    );
    let moved = relay.bytes(Flow::Down);
    assert!(
        (moved as f64) < 1.3 * BIG as f64,
        "{moved} bytes sent for a {BIG}-byte file"
    );
    assert!(
        stderr.contains("retrying"),
        "the drops are reported: {stderr}"
    );
    let token = burnlink::token::extract_token(&url);
    assert!(
        !stderr.contains(token),
        "the token is not printed: {stderr}"
    );
    assert_eq!(server.settled_state(&url).await, "used");
    eprintln!(
        "get: {BIG} bytes through 3 cuts, {moved} bytes sent ({:.3}x), {} connections",
        moved as f64 / BIG as f64,
        relay.connections()
    );
}

#[tokio::test]
async fn put_resumes_a_256_mib_upload_cut_three_times() {
    let server = big_server();
    let local = tempfile::tempdir().unwrap();
    let source = local.path().join("build.tgz");
    let digest = write_big(&source, BIG);
    let minted = server
        .mint_upload(json!({ "path": "incoming/build.tgz", "max_bytes": BIG }))
        .await;
    let url = minted["url"].as_str().unwrap();
    let addr = server.base.trim_start_matches("http://").parse().unwrap();
    let relay = Relay::start(addr, Flow::Up, 64 << 20, 3);
    let run = burnlink(
        local.path(),
        &["put", &via(&relay, url), "build.tgz", "--json"],
    );
    let stderr = text(&run.stderr);
    assert!(run.status.success(), "put failed: {stderr}");
    let token = burnlink::token::extract_token(url);
    assert!(
        !stderr.contains(token),
        "the token is not printed: {stderr}"
    );
    let receipt: Value = serde_json::from_slice(&run.stdout).expect("one JSON receipt");
    assert_eq!(
        receipt,
        json!({ "path": "incoming/build.tgz", "bytes": BIG, "sha256": hex(&digest) })
    );
    assert_eq!(
        sha256_of(&server.root.join("incoming/build.tgz")),
        digest,
        "byte-identical"
    );
    assert!(
        server.temporaries().is_empty(),
        "{:?}",
        server.temporaries()
    );
    assert_eq!(relay.cuts_left(), 0, "the relay cut three times");
    let moved = relay.bytes(Flow::Up);
    assert!(
        (moved as f64) < 1.3 * BIG as f64,
        "{moved} bytes sent for a {BIG}-byte file"
    );
    assert_eq!(server.settled_state(url).await, "used");
    eprintln!(
        "put: {BIG} bytes through 3 cuts, {moved} bytes sent ({:.3}x), {} connections",
        moved as f64 / BIG as f64,
        relay.connections()
    );
}

/// A CI step fails with the contract's code as its status, and says why, without the token.
#[tokio::test]
async fn a_used_or_expired_link_exits_with_its_code() {
    let server = Server::start();
    server.write("r.txt", b"hello");
    let url = server.mint("r.txt").await;
    assert_eq!(server.get(&url).await.status(), 200);
    assert_eq!(server.settled_state(&url).await, "used");
    let dir = tempfile::tempdir().unwrap();
    let run = burnlink(dir.path(), &["get", &url]);
    assert_eq!(run.status.code(), Some(4), "used → 4");
    let stderr = text(&run.stderr);
    assert!(stderr.contains("used"), "{stderr}");
    let token = burnlink::token::extract_token(&url);
    assert!(
        !stderr.contains(token),
        "the token is not printed: {stderr}"
    );
    assert!(run.stdout.is_empty());
    assert!(!dir.path().join("r.txt").exists());
    assert!(
        !dir.path().join("r.txt.part").exists(),
        "no empty .part is left"
    );

    let expired = sign(&claims(Direction::Download, "r.txt", now() - 5));
    let run = burnlink(
        dir.path(),
        &["get", &format!("{}/transfer/{expired}/r.txt", server.base)],
    );
    assert_eq!(
        run.status.code(),
        Some(6),
        "expired → 6: {}",
        text(&run.stderr)
    );

    let up = server.mint_upload(json!({ "path": "in/x.bin" })).await;
    let up = up["url"].as_str().unwrap();
    std::fs::write(dir.path().join("x.bin"), b"once").unwrap();
    let first = burnlink(dir.path(), &["put", up, "x.bin", "-q"]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert!(first.stderr.is_empty(), "--quiet: {}", text(&first.stderr));
    // The same bytes again (a CI step re-run after the answer was lost): already in place.
    let again = burnlink(dir.path(), &["put", up, "x.bin"]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(text(&again.stderr).contains("already in place"));
    // Other bytes: the link is used.
    std::fs::write(dir.path().join("x.bin"), b"twice").unwrap();
    let other = burnlink(dir.path(), &["put", up, "x.bin"]);
    assert_eq!(other.status.code(), Some(4), "{}", text(&other.stderr));
    assert_eq!(
        std::fs::read(server.root.join("in/x.bin")).unwrap(),
        b"once"
    );
}

/// Without a terminal, progress comes as plain lines on stderr; stdout holds only the result;
/// an existing file is not replaced without --force.
#[tokio::test]
async fn progress_is_plain_lines_when_stderr_is_not_a_terminal() {
    let server = Server::start();
    server.write("logs/app.log", &support::pattern(3 << 20));
    let dir = tempfile::tempdir().unwrap();
    let url = server.mint("logs/app.log").await;
    let run = burnlink(dir.path(), &["get", &url]);
    let stderr = text(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert_eq!(text(&run.stdout), "app.log\n");
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("burnlink: get app.log: ")),
        "{stderr}"
    );
    assert!(lines.iter().any(|l| l.contains("of 3.0 MiB")), "{stderr}");
    assert!(
        lines.last().unwrap().contains("3.0 MiB in "),
        "a closing line with the total: {stderr}"
    );
    assert!(!stderr.contains('\r'), "no bar redraws in a log");

    let again = server.mint("logs/app.log").await;
    let refused = burnlink(dir.path(), &["get", &again, "--quiet"]);
    assert_eq!(refused.status.code(), Some(10), "exists → 10");
    assert_eq!(server.state(&again).await, "unused", "nothing was fetched");
    let forced = burnlink(dir.path(), &["get", &again, "--force", "--quiet"]);
    assert!(forced.status.success(), "{}", text(&forced.stderr));
    assert!(forced.stderr.is_empty(), "--quiet prints nothing");

    let up = server.mint_upload(json!({ "path": "in/notes.txt" })).await;
    let mut put = Command::new(bin())
        .args(["put", up["url"].as_str().unwrap(), "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    put.stdin
        .take()
        .unwrap()
        .write_all(b"from stdin\n")
        .unwrap();
    let put = put.wait_with_output().unwrap();
    assert!(put.status.success(), "{}", text(&put.stderr));
    let expected = hex(&support::sha256(b"from stdin\n"));
    assert_eq!(
        text(&put.stdout),
        format!("path: in/notes.txt\nbytes: 11\nsha256: {expected}\n")
    );
    assert!(text(&put.stderr).starts_with("burnlink: put stdin: "));
    assert_eq!(
        std::fs::read(server.root.join("in/notes.txt")).unwrap(),
        b"from stdin\n"
    );
}

#[tokio::test]
async fn a_directory_link_saves_a_zip_unzip_accepts() {
    let Some(_) = require_tool("unzip") else {
        return;
    };
    let server = Server::start();
    server.write("site/index.html", b"<h1>hi</h1>");
    // Large enough that the cut below comes long before the server has handed the whole
    // archive to the kernel (which would count as delivered, and burn the link).
    server.write("site/img/logo.bin", &support::pattern(24 << 20));
    server.write("site/empty.txt", b"");
    let url = server.mint("site").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("downloads")).unwrap();
    // Cut once mid-archive: a zip built while it streams cannot resume, so it starts over.
    let addr = server.base.trim_start_matches("http://").parse().unwrap();
    let relay = Relay::start(addr, Flow::Down, 1 << 20, 1);
    let run = burnlink(dir.path(), &["get", &via(&relay, &url), "-o", "downloads"]);
    assert_eq!(relay.cuts_left(), 0, "the archive was cut once");
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert_eq!(text(&run.stdout), "downloads/site.zip\n");
    let zip = dir.path().join("downloads/site.zip");
    support::archive::unzip_test(&zip);
    let out = dir.path().join("x");
    support::archive::unzip_into(&zip, &out);
    assert_eq!(
        std::fs::read(out.join("img/logo.bin")).unwrap(),
        support::pattern(24 << 20)
    );
    assert_eq!(
        std::fs::read(out.join("index.html")).unwrap(),
        b"<h1>hi</h1>"
    );
    assert_eq!(server.settled_state(&url).await, "used");
}

/// `HTTP_PROXY` from the environment: the request goes to the proxy (here the relay, which
/// passes it on to the server) in absolute form, for a host that does not even resolve.
#[tokio::test]
async fn get_goes_through_the_proxy_from_the_environment() {
    let server = Server::start();
    server.write("p.txt", b"proxied");
    let url = server.mint("p.txt").await;
    let addr = server.base.trim_start_matches("http://").parse().unwrap();
    let proxy = Relay::start(addr, Flow::Down, u64::MAX, 0);
    let path = &url[url.find("/transfer/").unwrap()..];
    let unresolvable = format!("http://burnlink.invalid{path}");
    let dir = tempfile::tempdir().unwrap();
    let run = Command::new(bin())
        .args(["get", &unresolvable, "-o", "out.txt", "-q"])
        .current_dir(dir.path())
        .env("HTTP_PROXY", proxy.base())
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert_eq!(
        std::fs::read(dir.path().join("out.txt")).unwrap(),
        b"proxied"
    );
    assert!(
        proxy.bytes(Flow::Up) > 0,
        "the request went through the proxy"
    );

    // NO_PROXY: the server is asked directly; the proxy named (a dead port) is not used.
    let direct = server.mint("p.txt").await;
    let run = Command::new(bin())
        .args(["get", &direct, "-o", "direct.txt", "-q"])
        .current_dir(dir.path())
        .env(
            "HTTP_PROXY",
            format!("http://127.0.0.1:{}", support::free_port()),
        )
        .env("NO_PROXY", "127.0.0.1")
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert_eq!(
        std::fs::read(dir.path().join("direct.txt")).unwrap(),
        b"proxied"
    );
}

/// `HTTPS_PROXY`: HTTPS goes through a `CONNECT` tunnel, TLS end to end with the server.
#[tokio::test]
async fn https_goes_through_a_connect_tunnel() {
    let Some(certs) = Certs::make("https_goes_through_a_connect_tunnel") else {
        return;
    };
    let server = Server::start_with(&[
        (
            "BURNLINK_TLS_CERT",
            &certs.server_cert.display().to_string(),
        ),
        ("BURNLINK_TLS_KEY", &certs.server_key.display().to_string()),
    ]);
    server.write("t.txt", b"tunnelled");
    let token = sign(&claims(Direction::Download, "t.txt", now() + 600));
    let url = format!("{}/transfer/{token}/t.txt", server.base);
    let proxy = ConnectProxy::start();
    let dir = tempfile::tempdir().unwrap();
    let run = Command::new(bin())
        .args(["get", &url, "-q", "--cacert"])
        .arg(&certs.ca)
        .current_dir(dir.path())
        .env("HTTPS_PROXY", proxy.url())
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert_eq!(
        std::fs::read(dir.path().join("t.txt")).unwrap(),
        b"tunnelled"
    );
    assert!(
        proxy.tunnels() >= 1,
        "the connection was a tunnel through the proxy"
    );
}

/// HTTPS: a server whose CA is not trusted is refused at once (exit 12, no retry loop), and trusted with
/// `--cacert` for `get` and `SSL_CERT_FILE` for `put`.
#[tokio::test]
async fn https_trusts_the_ca_file_it_is_given() {
    let Some(certs) = Certs::make("https_trusts_the_ca_file_it_is_given") else {
        return;
    };
    let (cert, key, ca) = (
        certs.server_cert.display().to_string(),
        certs.server_key.display().to_string(),
        certs.ca.display().to_string(),
    );
    let server = Server::start_with(&[("BURNLINK_TLS_CERT", &cert), ("BURNLINK_TLS_KEY", &key)]);
    server.write("secure/r.bin", &support::pattern(100_000));
    let token = sign(&claims(Direction::Download, "secure/r.bin", now() + 600));
    let url = format!("{}/transfer/{token}/r.bin", server.base);
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let untrusted = burnlink(dir.path(), &["get", &url, "-q"]);
    assert_eq!(
        untrusted.status.code(),
        Some(12),
        "{}",
        text(&untrusted.stderr)
    );
    assert!(text(&untrusted.stderr).contains("--cacert"));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "an untrusted certificate is not retried"
    );
    let run = burnlink(dir.path(), &["get", &url, "-q", "--cacert", &ca]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert_eq!(
        std::fs::read(dir.path().join("r.bin")).unwrap(),
        support::pattern(100_000)
    );

    let up = sign(&claims(Direction::Upload, "in/u.bin", now() + 600));
    std::fs::write(dir.path().join("u.bin"), b"over tls").unwrap();
    let run = Command::new(bin())
        .args([
            "put",
            &format!("{}/transfer/{up}/u.bin", server.base),
            "u.bin",
        ])
        .current_dir(dir.path())
        .env("SSL_CERT_FILE", &ca)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert_eq!(
        std::fs::read(server.root.join("in/u.bin")).unwrap(),
        b"over tls"
    );
}

/// A `.part` an earlier run left (it gave up after a cut) is continued, not fetched again;
/// when the link was used meanwhile, the `.part` is kept and the error says so.
#[tokio::test]
async fn get_continues_the_part_file_an_earlier_run_left() {
    let server = Server::start();
    // Well past each cut, more is left than the server's socket buffer holds (4 MiB at most
    // here): the server counts bytes in that buffer as delivered, so a file whose rest fits in
    // it would burn at the cut.
    const SIZE: usize = 12 << 20;
    let data = support::pattern(SIZE);
    server.write("a.bin", &data);
    let url = server.mint("a.bin").await;
    let dir = tempfile::tempdir().unwrap();
    let addr = server.base.trim_start_matches("http://").parse().unwrap();
    let cutting = Relay::start(addr, Flow::Down, 3 << 20, 1);
    let first = burnlink(
        dir.path(),
        &["get", &via(&cutting, &url), "--retries", "0", "-q"],
    );
    assert_eq!(first.status.code(), Some(12), "{}", text(&first.stderr));
    let kept = std::fs::metadata(dir.path().join("a.bin.part"))
        .unwrap()
        .len();
    assert!(kept > 2 << 20, "{kept}");
    assert!(
        text(&first.stderr).contains(&format!("a.bin.part holds {kept} bytes")),
        "{}",
        text(&first.stderr)
    );
    let relay = Relay::start(addr, Flow::Down, u64::MAX, 0);
    let run = burnlink(dir.path(), &["get", &via(&relay, &url)]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert_eq!(std::fs::read(dir.path().join("a.bin")).unwrap(), data);
    assert!(!dir.path().join("a.bin.part").exists());
    assert!(!dir.path().join("a.bin.part.burnlink").exists());
    let moved = relay.bytes(Flow::Down);
    assert!(
        moved < (SIZE as u64 - kept) + 4096,
        "only the missing bytes were fetched: {moved}"
    );
    assert!(
        text(&run.stderr).contains(&format!("resuming at byte {kept}")),
        "{}",
        text(&run.stderr)
    );

    // Cut again, and the link used by someone else before the re-run: exit 4, the bytes kept.
    let other = server.mint("a.bin").await;
    let cutting = Relay::start(addr, Flow::Down, 1 << 20, 1);
    std::fs::remove_file(dir.path().join("a.bin")).unwrap();
    let first = burnlink(
        dir.path(),
        &["get", &via(&cutting, &other), "--retries", "0", "-q"],
    );
    assert_eq!(first.status.code(), Some(12), "{}", text(&first.stderr));
    let kept = std::fs::metadata(dir.path().join("a.bin.part"))
        .unwrap()
        .len();
    // The server lets go of the link when it sees the cut, which can be just after the client
    // gave up: a plain GET sent sooner would find it busy (409).
    assert_eq!(server.settled_state(&other).await, "unused");
    assert_eq!(server.get(&other).await.bytes().await.unwrap().len(), SIZE);
    let refused = burnlink(dir.path(), &["get", &other]);
    assert_eq!(refused.status.code(), Some(4), "{}", text(&refused.stderr));
    assert!(
        text(&refused.stderr).contains("link used"),
        "{}",
        text(&refused.stderr)
    );
    assert!(
        text(&refused.stderr).contains(&format!("a.bin.part holds {kept} bytes")),
        "{}",
        text(&refused.stderr)
    );
    assert!(std::fs::read(dir.path().join("a.bin.part")).unwrap() == data[..kept as usize]);
}

/// The server overloaded (its ledger down: 503 `unavailable`, to `HEAD` as to `GET`): the
/// `.part` an earlier run left is neither emptied nor removed, and the error names it.
#[tokio::test]
async fn a_part_survives_a_server_that_answers_503() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let server = Server::start_with(&[("BURNLINK_LEDGER", &redis.url())]);
    let data = support::pattern(2 << 20);
    server.write("s.bin", &data);
    let url = server.mint("s.bin").await;
    let dir = tempfile::tempdir().unwrap();
    let addr = server.base.trim_start_matches("http://").parse().unwrap();
    let cutting = Relay::start(addr, Flow::Down, 1 << 20, 1);
    let first = burnlink(
        dir.path(),
        &["get", &via(&cutting, &url), "--retries", "0", "-q"],
    );
    assert_eq!(first.status.code(), Some(12), "{}", text(&first.stderr));
    let kept = std::fs::read(dir.path().join("s.bin.part")).unwrap();
    assert!(!kept.is_empty());
    redis.stop();
    let run = burnlink(dir.path(), &["get", &url, "--retries", "1", "-q"]);
    assert_eq!(run.status.code(), Some(11), "{}", text(&run.stderr));
    assert!(
        text(&run.stderr).contains(&format!("s.bin.part holds {} bytes", kept.len())),
        "{}",
        text(&run.stderr)
    );
    assert!(std::fs::read(dir.path().join("s.bin.part")).unwrap() == kept);
}

/// Runs `get URL` (into `dir`) through a relay that pauses the download mid-way, and makes
/// the destination `name` appear meanwhile.
fn get_while_the_destination_appears(server: &Server, url: &str, dir: &Path, name: &str) -> Output {
    let addr = server.base.trim_start_matches("http://").parse().unwrap();
    let relay = Relay::start(addr, Flow::Down, u64::MAX, 0);
    relay.hold_after(256 << 10);
    let child = Command::new(bin())
        .args(["get", &via(&relay, url)])
        .current_dir(dir)
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while relay.bytes(Flow::Down) < 256 << 10 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(relay.bytes(Flow::Down) >= 256 << 10, "the download began");
    std::fs::write(dir.join(name), b"someone else's file").unwrap();
    relay.release();
    child.wait_with_output().unwrap()
}

/// The destination appears while the download runs: exit 10, and the whole `.part` is kept
/// and named (the link is burned by now). A re-run with --force puts it in place without
/// asking the server, whose `HEAD` would answer 404 `used`.
#[tokio::test]
async fn a_whole_part_is_placed_after_the_link_is_burned() {
    let server = Server::start();
    let data = support::pattern(2 << 20);
    server.write("w.bin", &data);
    let url = server.mint("w.bin").await;
    let dir = tempfile::tempdir().unwrap();
    let first = get_while_the_destination_appears(&server, &url, dir.path(), "w.bin");
    assert_eq!(first.status.code(), Some(10), "{}", text(&first.stderr));
    assert!(
        text(&first.stderr).contains(&format!("w.bin.part holds the {} bytes", data.len())),
        "{}",
        text(&first.stderr)
    );
    assert_eq!(server.settled_state(&url).await, "used");
    assert!(std::fs::read(dir.path().join("w.bin.part")).unwrap() == data);

    let again = burnlink(dir.path(), &["get", &url]);
    assert_eq!(again.status.code(), Some(10), "{}", text(&again.stderr));
    assert!(
        text(&again.stderr).contains("w.bin.part"),
        "{}",
        text(&again.stderr)
    );

    let addr = server.base.trim_start_matches("http://").parse().unwrap();
    let relay = Relay::start(addr, Flow::Down, u64::MAX, 0);
    let forced = burnlink(dir.path(), &["get", &via(&relay, &url), "--force"]);
    assert!(forced.status.success(), "{}", text(&forced.stderr));
    assert_eq!(text(&forced.stdout), "w.bin\n");
    assert!(std::fs::read(dir.path().join("w.bin")).unwrap() == data);
    assert!(!dir.path().join("w.bin.part").exists());
    assert!(!dir.path().join("w.bin.part.burnlink").exists());
    assert_eq!(relay.connections(), 0, "the server was not asked");
}

/// A `.part` of the very size of the file but from another link (of other bytes then) is
/// neither taken for whole nor appended to; one locked by another run is left alone.
#[tokio::test]
async fn a_stale_part_from_another_link_is_not_trusted() {
    let server = Server::start();
    let old = support::pattern(1 << 20);
    server.write("v.bin", &old);
    let first_url = server.mint("v.bin").await;
    let dir = tempfile::tempdir().unwrap();
    let first = get_while_the_destination_appears(&server, &first_url, dir.path(), "v.bin");
    assert_eq!(first.status.code(), Some(10), "{}", text(&first.stderr));
    assert!(std::fs::read(dir.path().join("v.bin.part")).unwrap() == old);
    std::fs::remove_file(dir.path().join("v.bin")).unwrap();
    let new: Vec<u8> = old.iter().map(|b| b ^ 0x5a).collect();
    server.write("v.bin", &new);
    let url = server.mint("v.bin").await;

    let run = burnlink(dir.path(), &["get", &url, "-q"]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert!(
        std::fs::read(dir.path().join("v.bin")).unwrap() == new,
        "the new bytes, not the stale .part"
    );
    assert!(!dir.path().join("v.bin.part").exists());
    assert_eq!(server.settled_state(&url).await, "used");

    // Another run holds the `.part`: this one leaves it and the link alone.
    let url = server.mint("v.bin").await;
    std::fs::remove_file(dir.path().join("v.bin")).unwrap();
    std::fs::write(dir.path().join("v.bin.part"), b"another run's bytes").unwrap();
    let part = std::fs::File::open(dir.path().join("v.bin.part")).unwrap();
    rustix::fs::flock(&part, rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();
    let locked = burnlink(dir.path(), &["get", &url, "-q"]);
    assert_eq!(locked.status.code(), Some(1), "{}", text(&locked.stderr));
    assert!(
        text(&locked.stderr).contains("another `burnlink get`"),
        "{}",
        text(&locked.stderr)
    );
    assert_eq!(server.state(&url).await, "unused");
    assert_eq!(
        std::fs::read(dir.path().join("v.bin.part")).unwrap(),
        b"another run's bytes"
    );
    drop(part);
}

/// A link that promises another digest: refused (exit 9) before a byte is sent, and nothing
/// lands.
#[tokio::test]
async fn put_of_other_bytes_than_the_link_promises_exits_9() {
    let server = Server::start();
    let minted = server
        .mint_upload(json!({ "path": "in/p.bin", "sha256": hex(&support::sha256(b"promised")) }))
        .await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.bin"), b"something else").unwrap();
    let addr = server.base.trim_start_matches("http://").parse().unwrap();
    let relay = Relay::start(addr, Flow::Up, u64::MAX, 0);
    let run = burnlink(
        dir.path(),
        &[
            "put",
            &via(&relay, minted["url"].as_str().unwrap()),
            "p.bin",
            "-q",
            "--retries",
            "0",
        ],
    );
    assert_eq!(run.status.code(), Some(9), "{}", text(&run.stderr));
    assert!(text(&run.stderr).contains("digest_mismatch"));
    assert_eq!(relay.connections(), 0, "refused before asking the server");
    assert_eq!(
        server.state(minted["url"].as_str().unwrap()).await,
        "unused"
    );
    assert!(!server.root.join("in/p.bin").exists());
    assert!(run.stdout.is_empty());
}

/// On a terminal (util-linux `script` gives it one) the progress is a bar redrawn in place,
/// cleared at the end for the closing line; no plain progress lines.
#[tokio::test]
async fn progress_is_a_bar_on_a_terminal() {
    let Some(script) = require_tool("script") else {
        return;
    };
    let server = Server::start();
    server.write("t.bin", &support::pattern(8 << 20));
    let url = server.mint("t.bin").await;
    let dir = tempfile::tempdir().unwrap();
    let command = format!("{} get '{url}' -o t.bin", bin());
    let run = Command::new(script)
        .args(["-qefc", &command, "/dev/null"])
        .current_dir(dir.path())
        .env("TERM", "xterm")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let seen = text(&run.stdout);
    assert!(run.status.success(), "{seen}");
    assert_eq!(
        std::fs::read(dir.path().join("t.bin")).unwrap(),
        support::pattern(8 << 20)
    );
    assert!(
        seen.contains('\u{1b}'),
        "the bar is drawn and cleared with terminal escapes: {seen:?}"
    );
    assert!(seen.contains("8.0 MiB in "), "the closing line: {seen:?}");
    assert!(!seen.contains("of 8.0 MiB ("), "no plain lines: {seen:?}");
}

/// An unfinished upload an earlier run left (here begun with curl, as tus by hand) is
/// continued from the server's offset; over the cap is refused before any byte is sent.
#[tokio::test]
async fn put_continues_the_upload_an_earlier_run_left() {
    let server = Server::start();
    let data = support::pattern(4 << 20);
    let minted = server
        .mint_upload(json!({ "path": "in/resumed.bin" }))
        .await;
    let url = minted["url"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("first.bin"), &data[..3 << 20]).unwrap();
    std::fs::write(dir.path().join("resumed.bin"), &data).unwrap();
    let digest = format!(
        "content-digest: sha-256=:{}:",
        <base64ct::Base64 as base64ct::Encoding>::encode_string(&support::sha256(&data))
    );
    let (status, _) = support::curl_status(&[
        "-X",
        "POST",
        "-H",
        "tus-resumable: 1.0.0",
        "-H",
        &format!("upload-length: {}", data.len()),
        "-H",
        &digest,
        "-H",
        "content-type: application/offset+octet-stream",
        "--data-binary",
        &format!("@{}", dir.path().join("first.bin").display()),
        url,
    ]);
    assert_eq!(status, 201, "the earlier run's creation");
    let addr = server.base.trim_start_matches("http://").parse().unwrap();
    let relay = Relay::start(addr, Flow::Up, u64::MAX, 0);
    let run = burnlink(dir.path(), &["put", &via(&relay, url), "resumed.bin"]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert_eq!(
        std::fs::read(server.root.join("in/resumed.bin")).unwrap(),
        data
    );
    let moved = relay.bytes(Flow::Up);
    assert!(
        moved < (1 << 20) + 4096,
        "only the missing MiB was sent: {moved}"
    );

    // Begun by an earlier run for other bytes of the same length: the digest announced then
    // does not match, the server removes it, and put starts over.
    let other = server.mint_upload(json!({ "path": "in/other.bin" })).await;
    let other = other["url"].as_str().unwrap();
    let mut stale = data.clone();
    *stale.last_mut().unwrap() ^= 1;
    let stale_digest = format!(
        "content-digest: sha-256=:{}:",
        <base64ct::Base64 as base64ct::Encoding>::encode_string(&support::sha256(&stale))
    );
    std::fs::write(dir.path().join("stale.bin"), &stale[..1 << 20]).unwrap();
    let (status, _) = support::curl_status(&[
        "-X",
        "POST",
        "-H",
        "tus-resumable: 1.0.0",
        "-H",
        &format!("upload-length: {}", data.len()),
        "-H",
        &stale_digest,
        "-H",
        "content-type: application/offset+octet-stream",
        "--data-binary",
        &format!("@{}", dir.path().join("stale.bin").display()),
        other,
    ]);
    assert_eq!(status, 201);
    let run = burnlink(dir.path(), &["put", other, "resumed.bin"]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert!(
        text(&run.stderr).contains("starting over"),
        "{}",
        text(&run.stderr)
    );
    assert_eq!(
        std::fs::read(server.root.join("in/other.bin")).unwrap(),
        data
    );

    let capped = server
        .mint_upload(json!({ "path": "in/capped.bin", "max_bytes": 1000 }))
        .await;
    let capped = capped["url"].as_str().unwrap();
    let relay = Relay::start(addr, Flow::Up, u64::MAX, 0);
    let run = burnlink(
        dir.path(),
        &["put", &via(&relay, capped), "resumed.bin", "-q"],
    );
    assert_eq!(
        run.status.code(),
        Some(8),
        "too_large → 8: {}",
        text(&run.stderr)
    );
    assert!(relay.bytes(Flow::Up) < 4096, "no byte of the file was sent");
    assert_eq!(server.state(capped).await, "unused");
}

/// A link of the wrong direction is named as such, before any request (the port here has no
/// server at all).
#[test]
fn the_wrong_direction_is_named_before_any_request() {
    let base = format!("http://127.0.0.1:{}", support::free_port());
    let up = sign(&claims(Direction::Upload, "in/a.bin", now() + 600));
    let down = sign(&claims(Direction::Download, "a.bin", now() + 600));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.bin"), b"x").unwrap();
    let get = burnlink(dir.path(), &["get", &format!("{base}/transfer/{up}/a.bin")]);
    assert_eq!(get.status.code(), Some(1));
    assert!(
        text(&get.stderr).contains("that is an upload link"),
        "{}",
        text(&get.stderr)
    );
    let put = burnlink(
        dir.path(),
        &["put", &format!("{base}/transfer/{down}/a.bin"), "a.bin"],
    );
    assert_eq!(put.status.code(), Some(1));
    assert!(
        text(&put.stderr).contains("that is a download link"),
        "{}",
        text(&put.stderr)
    );
    assert!(!text(&put.stderr).contains(&down), "no token in messages");
}

fn b64(bytes: &[u8]) -> String {
    <base64ct::Base64 as base64ct::Encoding>::encode_string(bytes)
}

/// The lines of the head of the first request in `sent` that starts with `method`.
fn request_head(sent: &[u8], method: &str) -> Option<Vec<String>> {
    let line = format!("{method} ");
    let start = sent
        .windows(line.len())
        .position(|w| w == line.as_bytes())?;
    let rest = &sent[start..];
    let end = rest.windows(4).position(|w| w == b"\r\n\r\n")?;
    Some(
        String::from_utf8_lossy(&rest[..end])
            .split("\r\n")
            .map(str::to_string)
            .collect(),
    )
}

/// A header's value in a request head (names compared without case).
fn head_value<'a>(head: &'a [String], name: &str) -> Option<&'a str> {
    head.iter().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// `HTTP_PROXY` for `put`: every request goes to the proxy (the relay, which keeps what it
/// passes) in absolute form, for a host that does not even resolve; the creation announces the
/// file's SHA-256 as `Content-Digest`. With `NO_PROXY` the server is asked directly.
#[tokio::test]
async fn put_goes_through_the_proxy_and_announces_the_files_digest() {
    let server = Server::start();
    let minted = server
        .mint_upload(json!({ "path": "in/proxied.bin" }))
        .await;
    let url = minted["url"].as_str().unwrap();
    let addr = server.base.trim_start_matches("http://").parse().unwrap();
    let proxy = Relay::start(addr, Flow::Up, u64::MAX, 0);
    proxy.record_up(1 << 20);
    let data = support::pattern(100_000);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("proxied.bin"), &data).unwrap();
    let path = &url[url.find("/transfer/").unwrap()..];
    let unresolvable = format!("http://burnlink.invalid{path}");
    let run = burnlink_with(
        dir.path(),
        &["put", &unresolvable, "proxied.bin", "-q"],
        &[("HTTP_PROXY", &proxy.base())],
    );
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert!(
        std::fs::read(server.root.join("in/proxied.bin")).unwrap() == data,
        "landed byte-identical"
    );
    let sent = proxy.recorded_up();
    let post = request_head(&sent, "POST").expect("the creation went through the proxy");
    assert!(
        post[0].starts_with("POST http://burnlink.invalid/transfer/"),
        "absolute form to the proxy: {}",
        post[0]
    );
    let promised = format!("sha-256=:{}:", b64(&support::sha256(&data)));
    assert_eq!(
        head_value(&post, "content-digest"),
        Some(promised.as_str()),
        "{post:?}"
    );
    assert_eq!(
        head_value(&post, "upload-length"),
        Some(data.len().to_string().as_str())
    );
    let patch = request_head(&sent, "PATCH").expect("the bytes went through the proxy");
    assert!(patch[0].starts_with("PATCH http://burnlink.invalid/"));

    // NO_PROXY: the server is asked directly; the proxy named (a dead port) is not used.
    let direct = server.mint_upload(json!({ "path": "in/direct.bin" })).await;
    let dead = format!("http://127.0.0.1:{}", support::free_port());
    let run = burnlink_with(
        dir.path(),
        &["put", direct["url"].as_str().unwrap(), "proxied.bin", "-q"],
        &[("HTTP_PROXY", &dead), ("NO_PROXY", "127.0.0.1")],
    );
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert!(std::fs::read(server.root.join("in/direct.bin")).unwrap() == data);
}

/// The bytes the server receives differ from the bytes `put` hashed (the file is rewritten
/// after the hash, while the relay holds the server's first answer): the server refuses the
/// digest announced at creation (422), `put` exits 9, nothing lands, and the link is still
/// unused, so the file as it is now can be put through it.
#[tokio::test]
async fn put_of_a_file_changed_after_hashing_exits_9_and_the_link_stays_usable() {
    let server = Server::start();
    let minted = server
        .mint_upload(json!({ "path": "in/changed.bin" }))
        .await;
    let url = minted["url"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let hashed = support::pattern(1 << 20);
    std::fs::write(dir.path().join("changed.bin"), &hashed).unwrap();
    let addr = server.base.trim_start_matches("http://").parse().unwrap();
    let relay = Relay::start(addr, Flow::Up, u64::MAX, 0);
    // No answer passes: `put` hashes the whole file before its first request (`HEAD`), then
    // waits for the answer before it creates the upload and reads the file again to send it.
    relay.hold_after(0);
    let child = Command::new(bin())
        .args(["put", &via(&relay, url), "changed.bin", "--retries", "0"])
        .current_dir(dir.path())
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while relay.bytes(Flow::Up) == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(relay.bytes(Flow::Up) > 0, "put sent its first request");
    // Same length, same file (put holds it open), other bytes.
    let sent: Vec<u8> = hashed.iter().map(|b| b ^ 0xff).collect();
    std::fs::write(dir.path().join("changed.bin"), &sent).unwrap();
    relay.release();
    let run = child.wait_with_output().unwrap();
    let stderr = text(&run.stderr);
    assert_eq!(run.status.code(), Some(9), "{stderr}");
    assert!(stderr.contains("digest_mismatch (HTTP 422)"), "{stderr}");
    assert!(run.stdout.is_empty());
    assert!(
        relay.bytes(Flow::Up) > 1 << 20,
        "the changed bytes were sent"
    );
    assert!(
        !server.root.join("in/changed.bin").exists(),
        "nothing landed"
    );
    assert!(
        server.temporaries().is_empty(),
        "{:?}",
        server.temporaries()
    );
    assert_eq!(server.state(url).await, "unused");

    let again = burnlink(dir.path(), &["put", url, "changed.bin", "--json", "-q"]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    let receipt: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(receipt["sha256"], hex(&support::sha256(&sent)));
    assert!(std::fs::read(server.root.join("in/changed.bin")).unwrap() == sent);
    assert_eq!(server.settled_state(url).await, "used");
}

/// A token the server does not verify (signed with a key it does not hold, or with its key id
/// and another secret), or one that cannot even be read: `not_found`, exit 3 for `get`; `put`
/// exits 3 for a forged token and refuses an unreadable one before any request (exit 1). A
/// revoked link: exit 5, both ways. Nothing is saved or lands.
#[tokio::test]
async fn a_forged_or_revoked_link_exits_with_its_code() {
    let server = Server::start();
    server.write("f.txt", b"file");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("up.bin"), b"upload").unwrap();
    let secret = <base64ct::Base64UrlUnpadded as base64ct::Encoding>::encode_string(&[7u8; 32]);
    let forged_with = |keys: &str, direction, path: &str| {
        burnlink::token::Keyring::parse(keys)
            .unwrap()
            .sign(&claims(direction, path, now() + 600))
    };
    let unreadable = "A".repeat(60);
    for (why, keys) in [
        ("an unknown key", format!("t9:{secret}")),
        ("a bad signature", format!("t1:{secret}")),
    ] {
        let down = forged_with(&keys, Direction::Download, "f.txt");
        let run = burnlink(
            dir.path(),
            &["get", &format!("{}/transfer/{down}/f.txt", server.base)],
        );
        assert_eq!(run.status.code(), Some(3), "{why}: {}", text(&run.stderr));
        assert!(text(&run.stderr).contains("not_found"), "{why}");
        let up = forged_with(&keys, Direction::Upload, "in/up.bin");
        let run = burnlink(
            dir.path(),
            &[
                "put",
                &format!("{}/transfer/{up}/up.bin", server.base),
                "up.bin",
            ],
        );
        assert_eq!(run.status.code(), Some(3), "{why}: {}", text(&run.stderr));
        assert!(text(&run.stderr).contains("not_found"), "{why}");
    }
    let run = burnlink(
        dir.path(),
        &["get", &format!("{}/transfer/{unreadable}", server.base)],
    );
    assert_eq!(run.status.code(), Some(3), "{}", text(&run.stderr));
    let run = burnlink(
        dir.path(),
        &[
            "put",
            &format!("{}/transfer/{unreadable}", server.base),
            "up.bin",
        ],
    );
    assert_eq!(run.status.code(), Some(1), "{}", text(&run.stderr));
    assert!(text(&run.stderr).contains("not a burnlink link"));

    let url = server.mint("f.txt").await;
    let up = server.mint_upload(json!({ "path": "in/up.bin" })).await;
    let up = up["url"].as_str().unwrap();
    for link in [url.as_str(), up] {
        let revoked = server
            .link_api(reqwest::Method::DELETE, link, Some(support::API_TOKEN))
            .await;
        assert_eq!(revoked.status(), 200);
    }
    let run = burnlink(dir.path(), &["get", &url]);
    assert_eq!(run.status.code(), Some(5), "{}", text(&run.stderr));
    assert!(text(&run.stderr).contains("revoked"));
    let run = burnlink(dir.path(), &["put", up, "up.bin"]);
    assert_eq!(run.status.code(), Some(5), "{}", text(&run.stderr));
    assert!(text(&run.stderr).contains("revoked"));

    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["up.bin"], "nothing saved, no .part left");
    assert!(!server.root.join("in/up.bin").exists());
    assert_eq!(server.state(&url).await, "revoked");
}

/// A link busy in another transfer (a download held mid-way by the relay) answers 409
/// `in_progress`: `get` retries it (`--retries 2`: at least 0.25 + 0.5 s of backoff), then
/// exits 7 with nothing saved; the other transfer then completes and burns the link.
#[tokio::test]
async fn a_link_busy_in_another_transfer_exits_7() {
    let server = Server::start();
    // Far more than the server's socket buffers hold, so the held transfer is still running.
    let data = support::pattern(16 << 20);
    server.write("busy.bin", &data);
    let url = server.mint("busy.bin").await;
    let addr = server.base.trim_start_matches("http://").parse().unwrap();
    let relay = Relay::start(addr, Flow::Down, u64::MAX, 0);
    relay.hold_after(256 << 10);
    let holder = server.client.get(via(&relay, &url)).send().await.unwrap();
    assert_eq!(holder.status(), 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while relay.bytes(Flow::Down) < 256 << 10 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(server.state(&url).await, "in_progress");
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let run = burnlink(dir.path(), &["get", &url, "--retries", "2"]);
    let took = started.elapsed();
    assert_eq!(run.status.code(), Some(7), "{}", text(&run.stderr));
    assert!(
        text(&run.stderr).contains("in_progress"),
        "{}",
        text(&run.stderr)
    );
    assert!(
        took >= std::time::Duration::from_millis(750),
        "retried with backoff first: {took:?}"
    );
    assert!(took < std::time::Duration::from_secs(20), "{took:?}");
    assert!(run.stdout.is_empty());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing saved, no .part left"
    );
    relay.release();
    let body = holder.bytes().await.unwrap();
    assert!(body == data, "the other transfer completes");
    assert_eq!(server.settled_state(&url).await, "used");
}

/// A URL without the name segment (`/transfer/{token}`), or with a segment naming another
/// file: the file is saved under the name the server's `Content-Disposition` gives.
#[tokio::test]
async fn get_saves_under_the_servers_name_not_the_urls() {
    let server = Server::start();
    server.write("reports/q3 résumé.pdf", b"%PDF-1.7 q3");
    for tail in ["", "/other-name.txt"] {
        let url = server.mint("reports/q3 résumé.pdf").await;
        let token = burnlink::token::extract_token(&url);
        let given = format!("{}/transfer/{token}{tail}", server.base);
        let dir = tempfile::tempdir().unwrap();
        let run = burnlink(dir.path(), &["get", &given, "-q"]);
        assert!(run.status.success(), "{tail:?}: {}", text(&run.stderr));
        assert_eq!(text(&run.stdout), "q3 résumé.pdf\n", "{tail:?}");
        assert_eq!(
            std::fs::read(dir.path().join("q3 résumé.pdf")).unwrap(),
            b"%PDF-1.7 q3"
        );
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["q3 résumé.pdf"], "{tail:?}");
    }
}

/// Fault injection: the real server never sends a zip cut short or more bytes than it
/// announced, nor lands bytes of another digest than the one announced, so these tests put a
/// tiny HTTP server in its place that answers each request
/// (one per connection, then `connection: close`) with the bytes `answer` makes of the
/// request's head. Returns its base URL and the number of requests it answered.
async fn fake_server(
    answer: impl Fn(&str) -> Vec<u8> + Send + Sync + 'static,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicU32>) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let answered = Arc::new(AtomicU32::new(0));
    let count = answered.clone();
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let (answer, count) = (answer.clone(), count.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    let read = tokio::time::timeout(
                        std::time::Duration::from_secs(10),
                        conn.read(&mut buf),
                    )
                    .await;
                    match read {
                        Ok(Ok(n)) if n > 0 && head.len() < 64 << 10 => {
                            head.extend_from_slice(&buf[..n])
                        }
                        _ => return,
                    }
                }
                // The request's body is read before the answer: a connection closed on
                // unread bytes is reset, and the answer could be lost with it.
                let end = head.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                let request = String::from_utf8_lossy(&head[..end]).into_owned();
                let length: usize = request
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                let mut body = head.len() - end;
                while body < length {
                    let read = tokio::time::timeout(
                        std::time::Duration::from_secs(10),
                        conn.read(&mut buf),
                    )
                    .await;
                    match read {
                        Ok(Ok(n)) if n > 0 => body += n,
                        _ => return,
                    }
                }
                let reply = answer(&request);
                count.fetch_add(1, Ordering::SeqCst);
                let _ = conn.write_all(&reply).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    (base, answered)
}

/// Fault injection: a server that takes the upload but states another digest of it than the
/// one `put` announced and sent (the real server refuses such bytes with 422 instead): `put`
/// exits 13 and prints no receipt.
#[tokio::test]
async fn put_exits_13_when_the_server_states_another_digest() {
    let token = sign(&claims(Direction::Upload, "in/d.bin", now() + 600));
    let data = support::pattern(100_000);
    let size = data.len();
    let other = b64(&support::sha256(b"other bytes"));
    let (base, answered) = fake_server(move |request| {
        let tus = ("tus-resumable".to_string(), "1.0.0".to_string());
        let at = |n: usize| ("upload-offset".to_string(), n.to_string());
        if request.starts_with("HEAD ") {
            canned(
                "404 Not Found",
                &[tus, ("content-length".into(), "0".into())],
                b"",
            )
        } else if request.starts_with("POST ") {
            canned(
                "201 Created",
                &[tus, at(0), ("content-length".into(), "0".into())],
                b"",
            )
        } else {
            let digest = ("repr-digest".to_string(), format!("sha-256=:{other}:"));
            canned("204 No Content", &[tus, at(size), digest], b"")
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("d.bin"), &data).unwrap();
    let cwd = dir.path().to_path_buf();
    let given = format!("{base}/transfer/{token}/d.bin");
    let run = tokio::task::spawn_blocking(move || {
        burnlink(&cwd, &["put", &given, "d.bin", "--retries", "0", "-q"])
    })
    .await
    .unwrap();
    let stderr = text(&run.stderr);
    assert_eq!(run.status.code(), Some(13), "{stderr}");
    assert!(
        stderr.contains("check failed: the server's digest of the file differs"),
        "{stderr}"
    );
    assert!(run.stdout.is_empty(), "no receipt");
    assert_eq!(answered.load(std::sync::atomic::Ordering::SeqCst), 3);
}

/// An HTTP/1.1 answer: the status line, `headers`, `connection: close`, then `body`.
fn canned(status: &str, headers: &[(String, String)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("connection: close\r\n\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// The real server's headers, without those about the connection and the body's framing.
fn replayable(headers: &reqwest::header::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(k, _)| {
            ![
                "content-length",
                "transfer-encoding",
                "connection",
                "keep-alive",
            ]
            .contains(&k.as_str())
        })
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
        .collect()
}

/// A directory's zip that arrives cut short (a complete HTTP answer, its `Content-Length`
/// that of the cut body, the real server's headers otherwise) fails the zip check: exit 13,
/// and neither the destination nor a `.part` is left. The same answer with the whole zip is
/// saved, so the cut alone made the difference.
#[tokio::test]
async fn a_directory_zip_cut_short_exits_13_and_saves_nothing() {
    let server = Server::start();
    server.write("site/index.html", b"<h1>hi</h1>");
    server.write("site/img/logo.bin", &support::pattern(300_000));
    let url = server.mint("site").await;
    let head = server.client.head(&url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    let head_headers = replayable(head.headers());
    let whole = server.get(&url).await;
    assert_eq!(whole.status(), 200);
    let get_headers = replayable(whole.headers());
    assert!(
        get_headers
            .iter()
            .any(|(k, v)| k == "content-type" && v == "application/zip"),
        "{get_headers:?}"
    );
    let zip = whole.bytes().await.unwrap().to_vec();
    let path = url[url.find("/transfer/").unwrap()..].to_string();
    for (cut, len) in [(true, zip.len() / 2), (false, zip.len())] {
        let body = zip[..len].to_vec();
        let (head_headers, mut get_headers) = (head_headers.clone(), get_headers.clone());
        get_headers.push(("content-length".into(), len.to_string()));
        let (base, answered) = fake_server(move |request| {
            if request.starts_with("HEAD ") {
                canned("200 OK", &head_headers, b"")
            } else {
                canned("200 OK", &get_headers, &body)
            }
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let cwd = dir.path().to_path_buf();
        let given = format!("{base}{path}");
        let run = tokio::task::spawn_blocking(move || {
            burnlink(&cwd, &["get", &given, "--retries", "0", "-q"])
        })
        .await
        .unwrap();
        assert!(answered.load(std::sync::atomic::Ordering::SeqCst) >= 1);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        if cut {
            assert_eq!(run.status.code(), Some(13), "{}", text(&run.stderr));
            assert!(
                text(&run.stderr).contains("check failed: the directory's zip is not whole"),
                "{}",
                text(&run.stderr)
            );
            assert!(run.stdout.is_empty());
            assert!(names.is_empty(), "nothing saved, no .part kept: {names:?}");
        } else {
            assert!(run.status.success(), "{}", text(&run.stderr));
            assert_eq!(text(&run.stdout), "site.zip\n");
            assert!(std::fs::read(dir.path().join("site.zip")).unwrap() == zip);
        }
    }
}

/// Fault injection again: a resumed download whose `206` carries more bytes than the file's
/// announced size fails the size check (exit 13), and the `.part` is dropped, not kept for a
/// later run. The first run (the answer cut at half, `--retries 0`) leaves the `.part` the
/// second resumes.
#[tokio::test]
async fn more_bytes_than_announced_exits_13() {
    const SIZE: usize = 1 << 20;
    const HALF: usize = SIZE / 2;
    const EXTRA: usize = 1000;
    let data = support::pattern(SIZE + EXTRA);
    let token = sign(&claims(Direction::Download, "f.bin", now() + 600));
    let headers = |len: usize| {
        vec![
            (
                "content-type".to_string(),
                "application/octet-stream".to_string(),
            ),
            ("accept-ranges".into(), "bytes".into()),
            (
                "last-modified".into(),
                "Sat, 05 Dec 2026 10:00:00 GMT".into(),
            ),
            (
                "content-disposition".into(),
                "attachment; filename=\"f.bin\"".into(),
            ),
            ("content-length".into(), len.to_string()),
        ]
    };
    let (base, _) = fake_server(move |request| {
        let range = request.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("range")
                .then(|| v.trim().to_string())
        });
        if request.starts_with("HEAD ") {
            canned("200 OK", &headers(SIZE), b"")
        } else if range.as_deref() == Some(&format!("bytes={HALF}-")) {
            let mut h = headers(SIZE - HALF + EXTRA);
            h.push((
                "content-range".into(),
                format!("bytes {HALF}-{}/{SIZE}", SIZE - 1),
            ));
            canned("206 Partial Content", &h, &data[HALF..])
        } else {
            // Announces the whole file, sends half, closes: a dropped connection.
            canned("200 OK", &headers(SIZE), &data[..HALF])
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let given = format!("{base}/transfer/{token}/f.bin");
    let run = |args: Vec<String>| {
        let cwd = dir.path().to_path_buf();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            burnlink(&cwd, &args)
        })
    };
    let args = vec![
        "get".to_string(),
        given.clone(),
        "--retries".into(),
        "0".into(),
        "-q".into(),
    ];
    let first = run(args.clone()).await.unwrap();
    assert_eq!(first.status.code(), Some(12), "{}", text(&first.stderr));
    assert!(
        text(&first.stderr).contains(&format!("f.bin.part holds {HALF} bytes")),
        "{}",
        text(&first.stderr)
    );
    let second = run(args).await.unwrap();
    let stderr = text(&second.stderr);
    assert_eq!(second.status.code(), Some(13), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "received {} bytes, the server announced {SIZE}",
            SIZE + EXTRA
        )),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing saved, the .part and its record dropped"
    );
}
