//! Resumable uploads (tus 1.0) on upload links: real clients (tus-js-client under node,
//! tuspy) through a relay that cuts their connection several times, and the protocol's
//! answers by hand.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crate::support::moto::{BOTH, Backend, Sandbox};
use crate::support::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MIB: usize = 1024 * 1024;

/// A loopback relay in front of the server (or, round robin per connection, several
/// replicas): forwards every connection, counts the bytes
/// clients send, and cuts a connection once it has carried `cut_after` bytes from its client,
/// `cuts` times in all. Stops when dropped.
struct Relay {
    port: u16,
    sent: Arc<AtomicU64>,
    cuts_left: Arc<AtomicU32>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(upstream: &str, cut_after: u64, cuts: u32) -> Relay {
        Relay::start_many(&[upstream], cut_after, cuts).await
    }

    async fn start_many(upstreams: &[&str], cut_after: u64, cuts: u32) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let upstreams: Vec<String> = upstreams.iter().map(|u| u.to_string()).collect();
        let sent = Arc::new(AtomicU64::new(0));
        let cuts_left = Arc::new(AtomicU32::new(cuts));
        let (s, c) = (sent.clone(), cuts_left.clone());
        let task = tokio::spawn(async move {
            // Bounded: a test makes a handful of connections.
            for i in 0..1000 {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let upstream = &upstreams[i % upstreams.len()];
                let Ok(server) = TcpStream::connect(upstream).await else {
                    return;
                };
                tokio::spawn(relay(client, server, cut_after, s.clone(), c.clone()));
            }
        });
        Relay {
            port,
            sent,
            cuts_left,
            task,
        }
    }

    fn sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }

    fn cuts_made(&self, asked: u32) -> u32 {
        asked - self.cuts_left.load(Ordering::SeqCst)
    }

    /// `url` with the server's address replaced by the relay's.
    fn url(&self, server: &Server, url: &str) -> String {
        url.replace(&server.base, &self.base())
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(
    client: TcpStream,
    server: TcpStream,
    cut_after: u64,
    sent: Arc<AtomicU64>,
    cuts_left: Arc<AtomicU32>,
) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = async {
        let mut buf = vec![0u8; 64 * 1024];
        let mut here = 0u64;
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => n,
            };
            let armed = cuts_left.load(Ordering::SeqCst) > 0;
            let take = if armed {
                n.min((cut_after - here) as usize)
            } else {
                n
            };
            if sw.write_all(&buf[..take]).await.is_err() {
                return false;
            }
            sent.fetch_add(take as u64, Ordering::SeqCst);
            here += take as u64;
            if armed
                && here >= cut_after
                && cuts_left
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| c.checked_sub(1))
                    .is_ok()
            {
                return true;
            }
        }
    };
    let down = tokio::io::copy(&mut sr, &mut cw);
    tokio::select! {
        // Cut or closed by the client: both sides go.
        _ = up => {}
        _ = down => {}
    }
}

/// Mints an upload link for `size` bytes and writes the source file; returns (url, source path,
/// data).
async fn setup(s: &Server, dest: &str, size: usize) -> (String, std::path::PathBuf, Vec<u8>) {
    let data = pattern(size);
    let src = s.dir.path().join("source.bin");
    std::fs::write(&src, &data).unwrap();
    let minted = s
        .mint_upload(json!({ "path": dest, "max_bytes": 100 * MIB }))
        .await;
    (minted["url"].as_str().unwrap().to_string(), src, data)
}

/// Runs a client process (bounded in time) and asserts it succeeded.
fn run(mut cmd: std::process::Command, what: &str) {
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            assert!(
                status.success(),
                "{what} failed: {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            return;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} did not finish within 240 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The relay cut the connection `cuts` times and the client resumed each time rather than
/// starting over: it sent less than 1.3 times the file's `len` bytes in all.
fn assert_resumed(relay: &Relay, label: &str, len: usize, cuts: u32) {
    assert_eq!(relay.cuts_made(cuts), cuts, "the relay cut every time");
    let sent = relay.sent();
    eprintln!(
        "{label}: {sent} bytes from the client for {len} bytes ({:.3}x), {cuts} cuts",
        sent as f64 / len as f64
    );
    assert!(
        (sent as f64) < 1.3 * len as f64,
        "resumed, not restarted: {sent} bytes sent"
    );
}

async fn assert_landed(s: &Server, url: &str, dest: &str, data: &[u8], relay: &Relay, cuts: u32) {
    let landed = s.root.join(dest);
    assert_eq!(sha256_file(&landed), sha256(data), "byte-identical");
    assert_eq!(s.state(url).await, "used");
    assert_resumed(relay, "relay", data.len(), cuts);
    assert!(s.temporaries().is_empty(), "{:?}", s.temporaries());
    // Streamed, never held: the server's peak memory stays well below the file's size.
    let peak = vm_hwm_kib(s.pid());
    eprintln!("server peak RSS: {peak} KiB");
    assert!(peak < 48 * 1024, "peak RSS {peak} KiB");
}

const CUTS: u32 = 3;
const CUT_AFTER: u64 = 12 * MIB as u64;

/// tus-js-client (under node) uploads `size` bytes through a relay that cuts `cuts` times,
/// speaking `protocol` (`tus-v1`, `ietf-draft-03`, `ietf-draft-05`).
async fn tus_js(protocol: &str, size: usize, cut_after: u64, cuts: u32) {
    let Some(modules) = require_tool(TUS_JS) else {
        return;
    };
    let s = Server::start();
    let dest = format!("inbox/js-{protocol}.bin");
    let (url, src, data) = setup(&s, &dest, size).await;
    let relay = Relay::start(s.base.trim_start_matches("http://"), cut_after, cuts).await;
    let script = r#"
const tus = require('tus-js-client');
const fs = require('fs');
const [url, file, protocol] = process.argv.slice(1);
const upload = new tus.Upload(fs.readFileSync(file), {
  endpoint: url,
  protocol,
  retryDelays: [100, 200, 300, 500, 500, 500, 500, 500, 500, 500],
  metadata: { filename: 'js.bin' },
  onError(e) { console.error('error', e); process.exit(1); },
  onSuccess() { console.log('done', upload.url); process.exit(0); },
});
upload.start();
setTimeout(() => { console.error('timeout'); process.exit(2); }, 200000);
"#;
    let mut cmd = std::process::Command::new("node");
    cmd.arg("-e")
        .arg(script)
        .arg(relay.url(&s, &url))
        .arg(&src)
        .arg(protocol)
        .env("NODE_PATH", &modules);
    tokio::task::spawn_blocking(move || run(cmd, "tus-js-client"))
        .await
        .unwrap();
    assert_landed(&s, &url, &dest, &data, &relay, cuts).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tus_js_client_resumes_through_a_cutting_relay() {
    tus_js("tus-v1", 64 * MIB, CUT_AFTER, CUTS).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tus_js_client_speaks_the_ietf_draft_interop_5_through_a_cutting_relay() {
    tus_js("ietf-draft-03", 16 * MIB, 4 * MIB as u64, 2).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tus_js_client_speaks_the_ietf_draft_interop_6_through_a_cutting_relay() {
    tus_js("ietf-draft-05", 16 * MIB, 4 * MIB as u64, 2).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tuspy_resumes_through_a_cutting_relay() {
    let Some(python) = require_tool(TUSPY) else {
        return;
    };
    let s = Server::start();
    let dest = "inbox/py.bin";
    let (url, src, data) = setup(&s, dest, 64 * MIB).await;
    let relay = Relay::start(s.base.trim_start_matches("http://"), CUT_AFTER, CUTS).await;
    let script = r#"
import sys
from tusclient import client
url, path = sys.argv[1], sys.argv[2]
up = client.TusClient(url).uploader(file_path=path, retries=10, retry_delay=0.3)
up.upload()
print("done", up.url)
"#;
    let mut cmd = std::process::Command::new(python);
    cmd.arg("-c").arg(script).arg(relay.url(&s, &url)).arg(&src);
    tokio::task::spawn_blocking(move || run(cmd, "tuspy"))
        .await
        .unwrap();
    assert_landed(&s, &url, dest, &data, &relay, CUTS).await;
}

fn tus(req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    req.header("tus-resumable", "1.0.0")
}

fn patch(s: &Server, url: &str, offset: u64, body: Vec<u8>) -> reqwest::RequestBuilder {
    tus(s.client.patch(url))
        .header("content-type", "application/offset+octet-stream")
        .header("upload-offset", offset.to_string())
        .body(body)
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

async fn create(s: &Server, url: &str, length: u64) -> reqwest::Response {
    tus(s.client.post(url))
        .header("upload-length", length.to_string())
        .send()
        .await
        .unwrap()
}

async fn offset_of(s: &Server, url: &str) -> reqwest::Response {
    tus(s.client.head(url)).send().await.unwrap()
}

async fn by_hand(backend: Backend) {
    let Some(b) = Sandbox::start(backend, &[]) else {
        return;
    };
    let s = &b.server;
    let minted = s
        .mint_upload(json!({ "path": "in/a.bin", "max_bytes": 1000 }))
        .await;
    let url = minted["url"].as_str().unwrap();

    let r = s
        .client
        .request(reqwest::Method::OPTIONS, url)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(header(&r, "tus-version"), "1.0.0");
    assert_eq!(header(&r, "tus-max-size"), "1000");
    assert!(header(&r, "tus-extension").contains("termination"));

    let r = create(s, url, 1001).await;
    assert_eq!(r.status(), 413);
    assert_eq!(header(&r, "tus-resumable"), "1.0.0");
    let r = s
        .client
        .post(url)
        .header("tus-resumable", "0.2.2")
        .header("upload-length", "10")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 412);

    let r = create(s, url, 10).await;
    assert_eq!(r.status(), 201, "{}", b.name());
    assert_eq!(header(&r, "tus-resumable"), "1.0.0");
    // The bytes that follow a creation or an offset go on a fresh connection.
    assert_eq!(header(&r, "connection"), "close");
    let location = header(&r, "location");
    let upload = reqwest::Url::parse(url).unwrap().join(&location).unwrap();
    assert_eq!(upload.as_str(), url, "the upload is the link URL");
    assert_eq!(b.partials(), 1, "the partial file, {}", b.name());
    assert_eq!(s.state(url).await, "unused", "the lease is released");

    let r = offset_of(s, url).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "upload-offset"), "0");
    assert_eq!(header(&r, "upload-length"), "10");
    assert_eq!(header(&r, "cache-control"), "no-store");
    assert_eq!(header(&r, "connection"), "close");

    let r = patch(s, url, 3, b"abc".to_vec()).send().await.unwrap();
    assert_eq!(r.status(), 409, "wrong offset");
    let r = patch(s, url, 0, b"hello".to_vec()).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(header(&r, "upload-offset"), "5");
    let r = tus(s.client.patch(url))
        .header("upload-offset", "5")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415, "PATCH needs offset+octet-stream");
    assert_eq!(header(&offset_of(s, url).await, "upload-offset"), "5");
    // The unfinished upload is no file of the directory's: not counted, not zipped.
    b.put("in/other.txt", b"other");
    let (status, v) = s.mint_raw(Some(API_TOKEN), json!({ "path": "in" })).await;
    assert_eq!(
        (status, v["size"].as_u64()),
        (201, Some(5)),
        "{} {v}",
        b.name()
    );
    let zip = s
        .get(v["url"].as_str().unwrap())
        .await
        .bytes()
        .await
        .unwrap();
    assert!(!zip.windows(10).any(|w| w == b".burnlink-"), "{}", b.name());
    let r = patch(s, url, 5, b"world!".to_vec()).send().await.unwrap();
    assert_eq!(r.status(), 413, "past Upload-Length");

    // Termination frees the link; a fresh upload starts over.
    let r = tus(s.client.delete(url)).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(b.leftovers(), 0, "{}", b.name());
    assert_eq!(offset_of(s, url).await.status(), 404);
    assert_eq!(create(s, url, 4).await.status(), 201);
    let r = patch(s, url, 0, b"done".to_vec()).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(b.read("in/a.bin").unwrap(), b"done");
    assert_eq!(s.state(url).await, "used");
    assert_eq!(b.leftovers(), 0, "{}", b.name());
    assert_eq!(create(s, url, 4).await.status(), 404, "burned");

    // An empty file is complete at creation.
    let minted = s.mint_upload(json!({ "path": "in/empty.bin" })).await;
    let url = minted["url"].as_str().unwrap();
    assert_eq!(create(s, url, 0).await.status(), 201);
    assert_eq!(b.read("in/empty.bin").unwrap(), b"", "{}", b.name());
    assert_eq!(s.state(url).await, "used");
    assert_eq!(b.leftovers(), 0, "{}", b.name());
}

#[tokio::test]
async fn tus_by_hand_offsets_conflicts_termination_and_the_cap() {
    for backend in BOTH {
        by_hand(backend).await;
    }
}

async fn digest_and_overwrite(backend: Backend) {
    let Some(b) = Sandbox::start(backend, &[]) else {
        return;
    };
    let s = &b.server;
    let good = b"the whole file".to_vec();
    let minted = s
        .mint_upload(json!({ "path": "d/x.bin", "sha256": hex(&sha256(&good)) }))
        .await;
    let url = minted["url"].as_str().unwrap();
    assert_eq!(create(s, url, good.len() as u64).await.status(), 201);
    let r = patch(s, url, 0, b"the whole ".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = patch(s, url, 10, b"FILE".to_vec()).send().await.unwrap();
    assert_eq!(r.status(), 422, "mismatch over the whole file");
    assert!(b.read("d/x.bin").is_none(), "nothing visible");
    assert_eq!(b.leftovers(), 0, "{}", b.name());
    assert_eq!(s.state(url).await, "unused", "usable for a fresh attempt");
    assert_eq!(create(s, url, good.len() as u64).await.status(), 201);
    let r = patch(s, url, 0, good.clone()).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(b.read("d/x.bin").unwrap(), good);

    // A Content-Digest at creation is the whole file's, checked at completion.
    let digest = |d: &[u8]| format!("sha-256=:{}:", base64ct::Base64::encode_string(&sha256(d)));
    use base64ct::Encoding;
    let minted = s.mint_upload(json!({ "path": "d/cd.bin" })).await;
    let url = minted["url"].as_str().unwrap();
    for (announced, status) in [(&b"other bytes"[..], 422), (&good[..], 204)] {
        let r = tus(s.client.post(url))
            .header("upload-length", good.len().to_string())
            .header("content-digest", digest(announced))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let r = patch(s, url, 0, good[..4].to_vec()).send().await.unwrap();
        assert_eq!(r.status(), 204);
        let r = patch(s, url, 4, good[4..].to_vec()).send().await.unwrap();
        assert_eq!(r.status(), status);
    }
    assert_eq!(b.read("d/cd.bin").unwrap(), good);

    // overwrite=false: a destination that appeared meanwhile wins at completion.
    let minted = s
        .mint_upload(json!({ "path": "d/y.bin", "overwrite": false }))
        .await;
    let url = minted["url"].as_str().unwrap();
    assert_eq!(create(s, url, 3).await.status(), 201);
    b.put("d/y.bin", b"old");
    let r = patch(s, url, 0, b"new".to_vec()).send().await.unwrap();
    assert_eq!(r.status(), 409);
    assert_eq!(b.read("d/y.bin").unwrap(), b"old");
    assert_eq!(b.leftovers(), 0, "{}", b.name());
}

#[tokio::test]
async fn tus_checks_the_whole_file_digest_and_overwrite_at_completion() {
    for backend in BOTH {
        digest_and_overwrite(backend).await;
    }
}

#[tokio::test]
async fn a_partial_upload_survives_a_restart_and_one_appender_at_a_time() {
    let s = Server::start();
    let minted = s.mint_upload(json!({ "path": "r/z.bin" })).await;
    let url = minted["url"].as_str().unwrap().to_string();
    assert_eq!(create(&s, &url, 8).await.status(), 201);
    assert_eq!(
        patch(&s, &url, 0, b"1234".to_vec())
            .send()
            .await
            .unwrap()
            .status(),
        204
    );

    // A PATCH whose body stalls holds the lease; a second appender gets 409.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    let stream = tokio_stream_from(rx);
    let held = patch(&s, &url, 4, Vec::new()).body(reqwest::Body::wrap_stream(stream));
    let held = tokio::spawn(held.header("content-length", "4").send());
    tx.send(Ok(b"5".to_vec())).await.unwrap();
    let state = s
        .wait_state(&url, "in_progress", Duration::from_secs(2))
        .await;
    assert_eq!(state, "in_progress", "the first appender holds the link");
    let r = patch(&s, &url, 4, b"5678".to_vec()).send().await.unwrap();
    assert_eq!(r.status(), 409, "a second appender is refused meanwhile");
    assert_eq!(header(&r, "tus-resumable"), "1.0.0");
    drop(tx);
    let _ = held.await;

    // A new server process on the same root (its start-up sweep runs, its memory ledger
    // starts empty) resumes it.
    let root = s.root.to_str().unwrap().to_string();
    let s2 = Server::start_with(&[("BURNLINK_ROOT", &root)]);
    let url2 = url.replace(&s.base, &s2.base);
    let mut offset = 0;
    for _ in 0..50 {
        let r = offset_of(&s2, &url2).await;
        assert_eq!(r.status(), 200);
        offset = header(&r, "upload-offset").parse::<u64>().unwrap();
        if offset >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!((4..=5).contains(&offset), "{offset}");
    let rest = &b"12345678"[offset as usize..];
    let r = patch(&s2, &url2, offset, rest.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(std::fs::read(s.root.join("r/z.bin")).unwrap(), b"12345678");
    assert!(s.temporaries().is_empty());
}

/// A stream of the channel's items (reqwest's `wrap_stream` wants a `Stream`).
fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

async fn draft_by_hand(backend: Backend) {
    let Some(b) = Sandbox::start(backend, &[]) else {
        return;
    };
    let s = &b.server;
    for version in ["6", "8"] {
        let path = format!("dr/a{version}.bin");
        let minted = s
            .mint_upload(json!({ "path": path, "max_bytes": 100 }))
            .await;
        let url = minted["url"].as_str().unwrap();
        let draft =
            |req: reqwest::RequestBuilder| req.header("upload-draft-interop-version", version);
        let r = draft(s.client.request(reqwest::Method::OPTIONS, url))
            .send()
            .await
            .unwrap();
        assert_eq!(header(&r, "upload-limit"), "max-size=100");
        let r = draft(s.client.post(url))
            .header("upload-complete", "?0")
            .header("upload-length", "6")
            .body("abc")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        assert_eq!(header(&r, "upload-offset"), "3");
        assert_eq!(header(&r, "upload-complete"), "?0");
        assert_eq!(header(&r, "upload-limit"), "max-size=100");
        assert_eq!(header(&r, "upload-draft-interop-version"), version);
        assert!(!header(&r, "location").is_empty());
        let r = draft(s.client.head(url)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "upload-offset"), "3");
        assert_eq!(header(&r, "upload-length"), "6");
        assert_eq!(header(&r, "upload-complete"), "?0");
        assert_eq!(header(&r, "upload-limit"), "max-size=100");
        let r = draft(s.client.patch(url))
            .header("content-type", "application/partial-upload")
            .header("upload-offset", "1")
            .header("upload-complete", "?1")
            .body("def")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 409);
        assert_eq!(header(&r, "upload-offset"), "3");
        assert_eq!(header(&r, "upload-complete"), "?0");
        let r = draft(s.client.patch(url))
            .header("content-type", "application/partial-upload")
            .header("upload-offset", "3")
            .header("upload-complete", "?1")
            .body("def")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        assert_eq!(header(&r, "upload-complete"), "?1");
        assert_eq!(b.read(&path).unwrap(), b"abcdef", "{}", b.name());
        assert_eq!(s.state(url).await, "used");
    }
    let minted = s.mint_upload(json!({ "path": "dr/v.bin" })).await;
    let url = minted["url"].as_str().unwrap();
    let r = s
        .client
        .head(url)
        .header("upload-draft-interop-version", "2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 412, "an interop version not spoken");

    // Cancellation.
    let draft = |req: reqwest::RequestBuilder| req.header("upload-draft-interop-version", "8");
    let r = draft(s.client.post(url))
        .header("upload-complete", "?0")
        .header("upload-length", "6")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        draft(s.client.delete(url)).send().await.unwrap().status(),
        204
    );
    assert_eq!(b.leftovers(), 0, "{}", b.name());
    assert_eq!(s.state(url).await, "unused");

    // The whole file in the creation request (Upload-Complete: ?1, no Upload-Length).
    let r = draft(s.client.post(url))
        .header("upload-complete", "?1")
        .body("whole")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(header(&r, "upload-complete"), "?1");
    assert_eq!(b.read("dr/v.bin").unwrap(), b"whole");
    assert_eq!(b.leftovers(), 0, "{}", b.name());
}

#[tokio::test]
async fn the_draft_by_hand_offsets_completion_and_versions() {
    for backend in BOTH {
        draft_by_hand(backend).await;
    }
}

/// Two replicas sharing the root and a Redis ledger: an upload started on one resumes on the
/// other, one appender at a time across them, and tus-js-client finishes through a relay that
/// sends each connection to the other replica and cuts twice.
#[tokio::test(flavor = "multi_thread")]
async fn an_upload_started_on_one_replica_resumes_on_another() {
    let Some(redis) = crate::support::redis_server::RedisServer::start() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let (ledger, root_s) = (redis.url(), root.path().display().to_string());
    let env = [
        ("BURNLINK_LEDGER", ledger.as_str()),
        ("BURNLINK_ROOT", &root_s),
    ];
    let a = Server::start_with(&env);
    let b = Server::start_with(&env);
    let on_b = |url: &str| url.replace(&a.base, &b.base);

    let url = a.mint_upload(json!({ "path": "x/r.bin" })).await["url"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(create(&a, &url, 8).await.status(), 201);
    assert_eq!(
        patch(&a, &url, 0, b"1234".to_vec())
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    let r = offset_of(&b, &on_b(&url)).await;
    assert_eq!(
        header(&r, "upload-offset"),
        "4",
        "the durable offset, seen by the other"
    );
    assert_eq!(
        patch(&b, &on_b(&url), 2, b"xx".to_vec())
            .send()
            .await
            .unwrap()
            .status(),
        409
    );
    let r = patch(&b, &on_b(&url), 4, b"5678".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        std::fs::read(root.path().join("x/r.bin")).unwrap(),
        b"12345678"
    );
    assert_eq!(a.state(&url).await, "used");

    let Some(modules) = require_tool(TUS_JS) else {
        return;
    };
    let data = pattern(16 * MIB);
    let src = a.dir.path().join("source.bin");
    std::fs::write(&src, &data).unwrap();
    let url = a.mint_upload(json!({ "path": "x/js.bin" })).await["url"]
        .as_str()
        .unwrap()
        .to_string();
    let upstreams = [
        a.base.trim_start_matches("http://"),
        b.base.trim_start_matches("http://"),
    ];
    let relay = Relay::start_many(&upstreams, 4 * MIB as u64, 2).await;
    let script = r#"
const tus = require('tus-js-client');
const fs = require('fs');
const [url, file] = process.argv.slice(1);
const upload = new tus.Upload(fs.readFileSync(file), {
  endpoint: url,
  retryDelays: [100, 200, 300, 500, 500, 500, 500, 500, 500, 500],
  onError(e) { console.error('error', e); process.exit(1); },
  onSuccess() { process.exit(0); },
});
upload.start();
setTimeout(() => { console.error('timeout'); process.exit(2); }, 200000);
"#;
    let mut cmd = std::process::Command::new("node");
    cmd.arg("-e")
        .arg(script)
        .arg(relay.url(&a, &url))
        .arg(&src)
        .env("NODE_PATH", &modules);
    tokio::task::spawn_blocking(move || run(cmd, "tus-js-client"))
        .await
        .unwrap();
    assert_eq!(sha256_file(&root.path().join("x/js.bin")), sha256(&data));
    assert_eq!(b.state(&on_b(&url)).await, "used");
    assert_eq!(relay.cuts_made(2), 2);
    assert!((relay.sent() as f64) < 1.3 * data.len() as f64);
    assert!(temporaries(root.path()).is_empty());
}

/// The upload page resumes by itself: Chromium sends a file through the relay, which cuts the
/// connection twice mid-upload; the page asks for the offset, sends the rest (the progress bar
/// going on from there) and says it is done.
async fn upload_page(backend: Backend) {
    use crate::support::chromium::{Driver, browser, tools};
    use fantoccini::Locator;
    let Some(tools) = tools() else { return };
    let Some(b) = Sandbox::start(backend, &[]) else {
        return;
    };
    let s = &b.server;
    let size = 8 * MIB;
    let data = pattern(size);
    let src = s.dir.path().join("big file.bin");
    std::fs::write(&src, &data).unwrap();
    let url = s.mint_upload(json!({ "path": "in/page.bin" })).await["url"]
        .as_str()
        .unwrap()
        .to_string();
    let relay = Relay::start(s.base.trim_start_matches("http://"), 3 * MIB as u64, 2).await;

    let scratch = tempfile::tempdir().unwrap();
    let (downloads, profile) = (scratch.path().join("dl"), scratch.path().join("profile"));
    std::fs::create_dir_all(&downloads).unwrap();
    let driver = Driver::start(&tools, &scratch.path().join("chromedriver.log"));
    let c = browser(&tools, &driver, &profile, &downloads).await;
    let walk = async {
        c.goto(&relay.url(s, &url)).await.unwrap();
        c.find(Locator::Id("file"))
            .await
            .unwrap()
            .send_keys(src.to_str().unwrap())
            .await
            .unwrap();
        c.find(Locator::Id("upload-button"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let mut status = String::new();
        for _ in 0..600 {
            status = c
                .find(Locator::Id("status"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            if status.contains("Done") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(status.contains("was saved as page.bin"), "{status}");
        let digest = c
            .find(Locator::Id("digest"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(digest.contains(&hex(&sha256(&data))), "{digest}");
    };
    let walked = tokio::time::timeout(Duration::from_secs(120), walk).await;
    let _ = c.close().await;
    walked.expect("the page finished within 120 s");
    assert_eq!(
        sha256(&b.read("in/page.bin").unwrap()),
        sha256(&data),
        "{}",
        b.name()
    );
    assert_eq!(s.state(&url).await, "used");
    assert_eq!(relay.cuts_made(2), 2, "the relay cut twice");
    eprintln!(
        "relay (page, {}): {} bytes for {size} bytes, 2 cuts",
        b.name(),
        relay.sent()
    );
    // Resumed, not started over (a restart at both cuts, each after 3 MiB, would be 1.75x).
    // Chromium resends a request whose *reused* connection broke at once, body and all, on a
    // new connection; the server refuses that copy (the cut request still holds the link), but
    // what was in flight of its body passed the relay. Before the server closed the connection
    // after the page, a creation and an offset answer, runs under load sent 1.38-1.72x that way;
    // since, of 30 such uploads (15 runs, disk and bucket) 28 sent 1.0006-1.0007x, one 1.008x
    // and one 1.23x (a copy was still resent once, most likely from a connection some other
    // request had left idle). One resent copy of a cut's worth is at most 1.37x; the bound is
    // just above it.
    let bound = 1.4;
    assert!((relay.sent() as f64) < bound * size as f64);
    assert_eq!(b.leftovers(), 0, "{}", b.name());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upload_page_resumes_after_the_network_drops() {
    for backend in BOTH {
        upload_page(backend).await;
    }
}

/// Every byte in but not landed (the server stopped between the last sync and the rename): the
/// next HEAD, which a client reads as "complete", lands it first.
#[tokio::test]
async fn a_complete_but_unlanded_upload_lands_when_its_offset_is_asked() {
    let s = Server::start();
    let url = s.mint_upload(json!({ "path": "h/done.bin" })).await["url"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(create(&s, &url, 4).await.status(), 201);
    let partial = s.temporaries();
    assert_eq!(partial.len(), 1);
    std::fs::write(&partial[0], b"last").unwrap();
    let r = offset_of(&s, &url).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "upload-offset"), "4");
    assert!(header(&r, "repr-digest").starts_with("sha-256=:"));
    assert_eq!(std::fs::read(s.root.join("h/done.bin")).unwrap(), b"last");
    assert_eq!(s.state(&url).await, "used");
    assert!(s.temporaries().is_empty());
    // Asked again once landed (a client whose last answer was lost): complete, not gone.
    let again = offset_of(&s, &url).await;
    assert_eq!(again.status(), 200);
    assert_eq!(header(&again, "upload-offset"), "4");
    assert_eq!(header(&again, "repr-digest"), header(&r, "repr-digest"));
}

/// A partial upload outlives neither its link nor a sweep after that: a server started after
/// the link expired removes it at start-up (the periodic sweep runs the same code).
#[tokio::test]
async fn partial_files_go_when_their_link_expires() {
    let s = Server::start();
    let url = s
        .mint_upload(json!({ "path": "e/gone.bin", "ttl_seconds": 2 }))
        .await["url"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(create(&s, &url, 10).await.status(), 201);
    assert_eq!(
        patch(&s, &url, 0, b"12345".to_vec())
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(s.temporaries().len(), 1);
    tokio::time::sleep(Duration::from_millis(3_100)).await;
    assert_eq!(offset_of(&s, &url).await.status(), 410, "expired");
    let root = s.root.to_str().unwrap().to_string();
    let _later = Server::start_with(&[("BURNLINK_ROOT", &root)]);
    for _ in 0..100 {
        if s.temporaries().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(s.temporaries().is_empty(), "{:?}", s.temporaries());
    assert!(!s.root.join("e/gone.bin").exists());
}

/// tus-js-client, sending `src` to `url` in `chunk` bytes per PATCH (the whole file if
/// `None`), speaking tus 1.0.
fn tus_js_cmd(
    modules: &std::path::Path,
    url: &str,
    src: &std::path::Path,
    chunk: Option<usize>,
) -> std::process::Command {
    let script = r#"
const tus = require('tus-js-client');
const fs = require('fs');
const [url, file, chunk] = process.argv.slice(1);
const options = {
  endpoint: url,
  retryDelays: [100, 200, 300, 500, 500, 500, 500, 500, 500, 500],
  onError(e) { console.error('error', e); process.exit(1); },
  onSuccess() { process.exit(0); },
};
if (chunk !== 'whole') options.chunkSize = Number(chunk);
const upload = new tus.Upload(fs.readFileSync(file), options);
upload.start();
setTimeout(() => { console.error('timeout'); process.exit(2); }, 200000);
"#;
    let mut cmd = std::process::Command::new("node");
    cmd.arg("-e")
        .arg(script)
        .arg(url)
        .arg(src)
        .arg(chunk.map_or("whole".to_string(), |c| c.to_string()))
        .env("NODE_PATH", modules);
    cmd
}

/// tuspy, sending `src` to `url` in PATCHes of `chunk` bytes.
fn tuspy_cmd(
    python: &std::path::Path,
    url: &str,
    src: &std::path::Path,
    chunk: usize,
) -> std::process::Command {
    let script = r#"
import sys
from tusclient import client
url, path, chunk = sys.argv[1], sys.argv[2], int(sys.argv[3])
up = client.TusClient(url).uploader(file_path=path, chunk_size=chunk, retries=10, retry_delay=0.3)
up.upload()
"#;
    let mut cmd = std::process::Command::new(python);
    cmd.arg("-c")
        .arg(script)
        .arg(url)
        .arg(src)
        .arg(chunk.to_string());
    cmd
}

/// What a resumable upload into the bucket must leave: the object byte for byte, the link
/// used, every cut made, no restart from zero, and no multipart upload or state object.
async fn assert_landed_in_bucket(
    b: &Sandbox,
    url: &str,
    dest: &str,
    data: &[u8],
    relay: &Relay,
    cuts: u32,
) {
    let s = &b.server;
    let got = b.read(dest).expect("the object is there");
    assert_eq!(sha256(&got), sha256(data), "byte-identical");
    assert_eq!(s.settled_state(url).await, "used");
    assert_resumed(relay, &format!("relay ({dest})"), data.len(), cuts);
    let moto = b.moto.as_ref().unwrap();
    assert_eq!(moto.open_uploads(), 0, "no multipart upload left");
    assert_eq!(moto.state_objects(), 0, "no state object left");
}

/// tus-js-client (the whole file in one PATCH) and tuspy (1 MiB PATCHes, under S3's 5 MiB
/// minimum part size) through a relay that cuts their connections, into a bucket.
#[tokio::test(flavor = "multi_thread")]
async fn tus_clients_resume_through_a_cutting_relay_into_a_bucket() {
    let Some(modules) = require_tool(TUS_JS) else {
        return;
    };
    let Some(python) = require_tool(TUSPY) else {
        return;
    };
    let Some(b) = Sandbox::start(Backend::Bucket, &[]) else {
        return;
    };
    let s = &b.server;
    let upstream = s.base.trim_start_matches("http://").to_string();

    let (url, src, data) = setup(s, "inbox/js.bin", 24 * MIB).await;
    let relay = Relay::start(&upstream, 10 * MIB as u64, 2).await;
    let cmd = tus_js_cmd(&modules, &relay.url(s, &url), &src, None);
    tokio::task::spawn_blocking(move || run(cmd, "tus-js-client"))
        .await
        .unwrap();
    assert_landed_in_bucket(&b, &url, "inbox/js.bin", &data, &relay, 2).await;
    eprintln!(
        "server peak RSS after tus-js-client: {} KiB",
        vm_hwm_kib(s.pid())
    );

    let (url, src, data) = setup(s, "inbox/py.bin", 20 * MIB).await;
    // tuspy opens a connection per PATCH: cut the first two mid-chunk.
    let relay = Relay::start(&upstream, 600_000, 2).await;
    let cmd = tuspy_cmd(&python, &relay.url(s, &url), &src, MIB);
    tokio::task::spawn_blocking(move || run(cmd, "tuspy"))
        .await
        .unwrap();
    assert_landed_in_bucket(&b, &url, "inbox/py.bin", &data, &relay, 2).await;

    let peak = vm_hwm_kib(s.pid());
    eprintln!("server peak RSS (bucket, resumable): {peak} KiB");
    assert!(peak < 64 * 1024, "peak RSS {peak} KiB");
}

/// Two replicas on one bucket and one Redis, no shared disk: an upload cut mid-way on one
/// reports its durable offset (a whole part plus a tail) on the other, which finishes it in
/// small PATCHes; then tus-js-client finishes through a relay that alternates replicas and
/// cuts twice.
#[tokio::test(flavor = "multi_thread")]
async fn a_bucket_upload_cut_on_one_replica_resumes_on_another() {
    let Some(redis) = crate::support::redis_server::RedisServer::start() else {
        return;
    };
    let Some(moto) = crate::support::moto::Moto::start() else {
        return;
    };
    let mut env = moto.env();
    env.push(("BURNLINK_LEDGER".into(), redis.url()));
    let refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let a = Server::start_with(&refs);
    let bs = Server::start_with(&refs);
    let on_b = |url: &str| url.replace(&a.base, &bs.base);

    let data = pattern(20 * MIB);
    let url = a
        .mint_upload(json!({ "path": "x/r.bin", "max_bytes": 100 * MIB }))
        .await["url"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(create(&a, &url, data.len() as u64).await.status(), 201);
    // 9 MiB, then the connection breaks: a part of 8 MiB and a tail of 1 MiB are kept.
    let cut = 9 * MIB;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let req =
        patch(&a, &url, 0, Vec::new()).body(reqwest::Body::wrap_stream(tokio_stream_from(rx)));
    let sending = tokio::spawn(req.send());
    tx.send(Ok(data[..cut].to_vec())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    // One appender at a time, across replicas: the first holds the link while bytes flow.
    assert_eq!(a.state(&url).await, "in_progress");
    let r = patch(&bs, &on_b(&url), 0, b"x".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (409, "in_progress".into()));
    tx.send(Err(std::io::Error::other("cut"))).await.unwrap();
    drop(tx);
    let _ = sending.await;
    assert_eq!(a.settled_state(&url).await, "unused");
    assert!(moto.get("x/r.bin").is_none(), "nothing visible yet");

    let r = offset_of(&bs, &on_b(&url)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "upload-offset"),
        cut.to_string(),
        "the durable offset, on the other replica"
    );
    assert_eq!(header(&r, "upload-length"), data.len().to_string());
    assert_eq!(
        moto.uploaded_parts(),
        1,
        "one whole part in the multipart upload"
    );
    assert_eq!(moto.state_objects(), 1, "and the tail beside it");
    let r = patch(&bs, &on_b(&url), 3, b"xyz".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409, "wrong offset");
    assert_eq!(header(&r, "upload-offset"), cut.to_string());
    // The rest in PATCHes of 3 MiB, each under S3's minimum part size.
    let mut at = cut;
    while at < data.len() {
        let end = (at + 3 * MIB).min(data.len());
        let r = patch(&bs, &on_b(&url), at as u64, data[at..end].to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204, "at {at}");
        assert_eq!(header(&r, "upload-offset"), end.to_string());
        if end < data.len() {
            assert!(
                moto.get("x/r.bin").is_none(),
                "nothing visible before the last byte"
            );
        }
        at = end;
    }
    assert_eq!(sha256(&moto.get("x/r.bin").unwrap()), sha256(&data));
    assert_eq!(a.state(&url).await, "used");
    assert_eq!(moto.open_uploads() + moto.state_objects(), 0);

    let Some(modules) = require_tool(TUS_JS) else {
        return;
    };
    let data = pattern(24 * MIB);
    let src = a.dir.path().join("source.bin");
    std::fs::write(&src, &data).unwrap();
    let url = a
        .mint_upload(json!({ "path": "x/js.bin", "max_bytes": 100 * MIB }))
        .await["url"]
        .as_str()
        .unwrap()
        .to_string();
    let upstreams = [
        a.base.trim_start_matches("http://"),
        bs.base.trim_start_matches("http://"),
    ];
    let relay = Relay::start_many(&upstreams, 10 * MIB as u64, 2).await;
    let cmd = tus_js_cmd(&modules, &relay.url(&a, &url), &src, None);
    tokio::task::spawn_blocking(move || run(cmd, "tus-js-client"))
        .await
        .unwrap();
    assert_eq!(sha256(&moto.get("x/js.bin").unwrap()), sha256(&data));
    assert_eq!(bs.settled_state(&on_b(&url)).await, "used");
    assert_eq!(relay.cuts_made(2), 2);
    // Resumed, not restarted. After a cut, the replica that had the request is still putting
    // its last part and tail into the bucket; the offset query waits for it (before it did,
    // this came to more than 1.3x under load), so only bytes lost in flight are sent again.
    let sent = relay.sent();
    eprintln!(
        "relay (two replicas, bucket): {sent} bytes for {} bytes ({:.3}x)",
        data.len(),
        sent as f64 / data.len() as f64
    );
    assert!((sent as f64) < 1.3 * data.len() as f64, "{sent} bytes sent");
    assert_eq!(moto.open_uploads() + moto.state_objects(), 0);
}

/// An unfinished upload in the bucket outlives neither its link nor the next sweep: a server
/// started after the link expired aborts its multipart upload and removes its state object.
#[tokio::test]
async fn unfinished_bucket_uploads_go_when_their_link_expires() {
    let Some(b) = Sandbox::start(Backend::Bucket, &[]) else {
        return;
    };
    let s = &b.server;
    let moto = b.moto.as_ref().unwrap();
    let url = s
        .mint_upload(json!({ "path": "e/gone.bin", "ttl_seconds": 2 }))
        .await["url"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(create(s, &url, 10).await.status(), 201);
    let r = patch(s, &url, 0, b"12345".to_vec()).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(b.partials(), 1);
    tokio::time::sleep(Duration::from_millis(3_100)).await;
    assert_eq!(offset_of(s, &url).await.status(), 410, "expired");
    let env = moto.env();
    let refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let _later = Server::start_with(&refs);
    let mut left = usize::MAX;
    for _ in 0..50 {
        left = b.leftovers();
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, 0, "the start-up sweep removed it");
    assert!(b.read("e/gone.bin").is_none());
}
