//! Uploads through one-time links, driven with the `curl` binary as a CI job would. The cap,
//! the digests, `overwrite=false` and dropped uploads are proven on disk and in a bucket.

use std::time::Duration;

use crate::support::moto::{BOTH, Backend, Sandbox};
use crate::support::*;
use base64ct::{Base64, Encoding};
use serde_json::{Value, json};

fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body:?}"))
}

/// A file in the test's scratch directory (outside the sandbox), for curl to send.
pub(crate) fn source(s: &Server, name: &str, bytes: &[u8]) -> String {
    let p = s.dir.path().join(name);
    std::fs::write(&p, bytes).unwrap();
    p.to_str().unwrap().to_string()
}

async fn link_status(s: &Server, url: &str) -> Value {
    s.link_api(reqwest::Method::GET, url, Some(API_TOKEN))
        .await
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn curl_post_lands_the_file_and_the_minter_learns_it_arrived() {
    if require_tool("curl").is_none() {
        return;
    }
    let s = Server::start();
    let data = pattern(3 * 1024 * 1024 + 7);
    let src = source(&s, "report.bin", &data);
    let minted = s
        .mint_upload(json!({ "path": "inbox/2026/report.bin", "max_bytes": 10_000_000 }))
        .await;
    assert_eq!(minted["direction"], "upload");
    assert_eq!(minted["max_bytes"], 10_000_000);
    let url = minted["url"].as_str().unwrap();
    assert!(url.ends_with("/report.bin"), "{url}");
    assert_eq!(s.state(url).await, "unused");

    let (status, body) = curl_status(&["--data-binary", &format!("@{src}"), url]);
    assert_eq!(status, 201, "{body}");
    let v = parse(&body);
    assert_eq!(v["path"], "inbox/2026/report.bin");
    assert_eq!(v["bytes"], data.len() as u64);
    assert_eq!(v["sha256"], hex(&sha256(&data)));
    let landed = std::fs::read(s.root.join("inbox/2026/report.bin")).unwrap();
    assert_eq!(
        sha256(&landed),
        sha256(&data),
        "missing parents were created"
    );

    let st = link_status(&s, url).await;
    assert_eq!(st["state"], "used");
    assert_eq!(st["bytes"], data.len() as u64);
    assert_eq!(st["sha256"], hex(&sha256(&data)));

    let (status, body) = curl_status(&["--data-binary", &format!("@{src}"), url]);
    assert_eq!(
        (status, parse(&body)["error"].as_str()),
        (404, Some("used"))
    );
    assert!(s.temporaries().is_empty());
    assert!(s.log().contains("outcome=\"completed\""));
}

#[tokio::test]
async fn curl_put_with_upload_file_replaces_an_existing_file_by_default() {
    if require_tool("curl").is_none() {
        return;
    }
    let s = Server::start();
    s.write("a.txt", b"old contents");
    let src = source(&s, "new.txt", b"new contents");
    let minted = s.mint_upload(json!({ "path": "a.txt" })).await;
    let url = minted["url"].as_str().unwrap();
    let (status, body) = curl_status(&["-T", &src, url]);
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        std::fs::read(s.root.join("a.txt")).unwrap(),
        b"new contents"
    );
    // The short form without the cosmetic name takes uploads too.
    let minted = s.mint_upload(json!({ "path": "b.txt" })).await;
    let token = minted["token"].as_str().unwrap();
    let bare = format!("{}/transfer/{token}", s.base);
    let (status, body) = curl_status(&["-X", "PUT", "--data-binary", "hello", &bare]);
    assert_eq!(status, 201, "{body}");
    assert_eq!(std::fs::read(s.root.join("b.txt")).unwrap(), b"hello");
}

#[tokio::test]
async fn over_the_cap_is_413_and_the_link_stays_usable() {
    if require_tool("curl").is_none() {
        return;
    }
    for backend in BOTH {
        over_the_cap(backend).await;
    }
}

async fn over_the_cap(backend: Backend) {
    let Some(b) = Sandbox::start(backend, &[]) else {
        return;
    };
    let s = &b.server;
    b.put("keep.bin", b"precious");
    let minted = s
        .mint_upload(json!({ "path": "keep.bin", "max_bytes": 1000 }))
        .await;
    let url = minted["url"].as_str().unwrap();
    let big = source(s, "big.bin", &pattern(4 * 1024 * 1024));

    // A Content-Length over the cap is refused before the body is read.
    let (status, body) = curl_status(&["--data-binary", &format!("@{big}"), url]);
    assert_eq!(status, 413, "{body}");
    assert_eq!(parse(&body)["error"], "too_large");

    // Chunked: no length up front, so the count stops it as soon as it passes the cap.
    let (status, body) = curl_status(&[
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        &format!("@{big}"),
        url,
    ]);
    assert_eq!(status, 413, "{body}");

    assert_eq!(s.settled_state(url).await, "unused");
    assert_eq!(b.read("keep.bin").unwrap(), b"precious");
    assert_eq!(b.leftovers(), 0, "{}", b.name());

    // Exactly at the cap is fine.
    let fits = source(s, "fits.bin", &pattern(1000));
    let (status, body) = curl_status(&["--data-binary", &format!("@{fits}"), url]);
    assert_eq!(status, 201, "{body}");
    assert_eq!(b.read("keep.bin").unwrap(), pattern(1000));
}

#[tokio::test]
async fn a_digest_mismatch_is_422_writes_nothing_and_the_link_stays_usable() {
    if require_tool("curl").is_none() {
        return;
    }
    for backend in BOTH {
        digest_mismatch(backend).await;
    }
}

async fn digest_mismatch(backend: Backend) {
    let Some(b) = Sandbox::start(backend, &[]) else {
        return;
    };
    let s = &b.server;
    b.put("doc.pdf", b"the old document");
    let good = b"the new document".to_vec();
    let bad = b"a tampered document".to_vec();
    let (good_src, bad_src) = (source(s, "good", &good), source(s, "bad", &bad));

    // The token's sha256.
    let minted = s
        .mint_upload(json!({ "path": "doc.pdf", "sha256": hex(&sha256(&good)) }))
        .await;
    let url = minted["url"].as_str().unwrap();
    let (status, body) = curl_status(&["--data-binary", &format!("@{bad_src}"), url]);
    assert_eq!(
        (status, parse(&body)["error"].as_str()),
        (422, Some("digest_mismatch"))
    );
    assert_eq!(s.settled_state(url).await, "unused");
    assert_eq!(b.read("doc.pdf").unwrap(), b"the old document");
    assert_eq!(b.leftovers(), 0, "{}", b.name());
    let (status, body) = curl_status(&["--data-binary", &format!("@{good_src}"), url]);
    assert_eq!(status, 201, "{body}");
    assert_eq!(b.read("doc.pdf").unwrap(), good);

    // The client's Content-Digest, on a link without a digest of its own.
    let minted = s.mint_upload(json!({ "path": "other.pdf" })).await;
    let url = minted["url"].as_str().unwrap();
    let header = |d: &[u8]| {
        format!(
            "Content-Digest: sha-256=:{}:",
            Base64::encode_string(&sha256(d))
        )
    };
    let (status, _) = curl_status(&[
        "-H",
        &header(&good),
        "--data-binary",
        &format!("@{bad_src}"),
        url,
    ]);
    assert_eq!(status, 422);
    assert!(b.read("other.pdf").is_none());
    assert_eq!(b.leftovers(), 0, "{}", b.name());
    let (status, body) = curl_status(&[
        "-H",
        &header(&good),
        "--data-binary",
        &format!("@{good_src}"),
        url,
    ]);
    assert_eq!(status, 201, "{body}");
    assert!(s.log().contains("outcome=\"digest_mismatch\""));
}

#[tokio::test]
async fn multipart_is_415_with_a_hint_and_the_link_stays_usable() {
    if require_tool("curl").is_none() {
        return;
    }
    let s = Server::start();
    let src = source(&s, "photo.jpg", b"\xff\xd8\xff raw jpeg bytes");
    let minted = s.mint_upload(json!({ "path": "photo.jpg" })).await;
    let url = minted["url"].as_str().unwrap();
    let (status, body) = curl_status(&["-F", &format!("file=@{src}"), url]);
    assert_eq!(status, 415);
    let v = parse(&body);
    assert_eq!(v["error"], "unsupported_media_type");
    assert!(
        v["message"].as_str().unwrap().contains("--data-binary"),
        "{v}"
    );
    assert_eq!(s.state(url).await, "unused");
    let (status, _) = curl_status(&["--data-binary", &format!("@{src}"), url]);
    assert_eq!(status, 201);
    assert_eq!(
        std::fs::read(s.root.join("photo.jpg")).unwrap(),
        b"\xff\xd8\xff raw jpeg bytes"
    );
}

#[tokio::test]
async fn overwrite_false_never_replaces_a_file_even_one_that_appears_later() {
    if require_tool("curl").is_none() {
        return;
    }
    for backend in BOTH {
        overwrite_false(backend).await;
    }
}

async fn overwrite_false(backend: Backend) {
    let Some(b) = Sandbox::start(backend, &[]) else {
        return;
    };
    let s = &b.server;
    b.put("there.txt", b"mine");
    let (status, body) = s
        .mint_raw(
            Some(API_TOKEN),
            json!({ "path": "there.txt", "direction": "upload", "overwrite": false }),
        )
        .await;
    assert_eq!((status, body["error"].as_str()), (409, Some("exists")));

    let minted = s
        .mint_upload(json!({ "path": "later.txt", "overwrite": false }))
        .await;
    let url = minted["url"].as_str().unwrap();
    b.put("later.txt", b"someone else's");
    let (status, body) = curl_status(&["--data-binary", "upload", url]);
    assert_eq!(
        (status, parse(&body)["error"].as_str()),
        (409, Some("exists"))
    );
    assert_eq!(b.read("later.txt").unwrap(), b"someone else's");
    assert_eq!(s.settled_state(url).await, "unused");
    assert_eq!(b.leftovers(), 0, "{}", b.name());
    b.remove("later.txt");
    let (status, _) = curl_status(&["--data-binary", "upload", url]);
    assert_eq!(status, 201);
    assert_eq!(b.read("later.txt").unwrap(), b"upload");
}

#[tokio::test]
async fn refusals_at_the_transfer_route() {
    if require_tool("curl").is_none() {
        return;
    }
    let s = Server::start();
    let minted = s.mint_upload(json!({ "path": "x.txt" })).await;
    let url = minted["url"].as_str().unwrap();
    // An upload link cannot download, and a download link cannot upload.
    let (status, _) = curl_status(&[url]);
    assert_eq!(status, 404);
    s.write("d.txt", b"download me");
    let download = s.mint("d.txt").await;
    let (status, body) = curl_status(&["--data-binary", "x", &download]);
    assert_eq!(
        (status, parse(&body)["error"].as_str()),
        (404, Some("not_found"))
    );
    assert_eq!(std::fs::read(s.root.join("d.txt")).unwrap(), b"download me");
    // A malformed Content-Digest is a clear 400, not an unchecked upload.
    let (status, body) = curl_status(&[
        "-H",
        "Content-Digest: sha-256=:AAAA:",
        "--data-binary",
        "x",
        url,
    ]);
    assert_eq!(status, 400, "{body}");
    assert_eq!(s.state(url).await, "unused");
    // Mint-time refusals.
    for (body, code) in [
        (json!({ "path": "../up.txt" }), 403),
        (json!({ "path": "." }), 400),
        (json!({ "path": "sub", "sha256": "xyz" }), 400),
    ] {
        let mut body = body;
        body["direction"] = json!("upload");
        std::fs::create_dir_all(s.root.join("sub")).unwrap();
        let (status, out) = s.mint_raw(Some(API_TOKEN), body.clone()).await;
        assert_eq!(status, code, "{body} → {out}");
    }
}

#[tokio::test]
async fn the_extension_allowlist_is_enforced_at_mint() {
    if require_tool("curl").is_none() {
        return;
    }
    let s = Server::start_with(&[("BURNLINK_UPLOAD_EXTENSIONS", "pdf,csv")]);
    s.mint_upload(json!({ "path": "ok/Report.PDF" })).await;
    let (status, body) = s
        .mint_raw(
            Some(API_TOKEN),
            json!({ "path": "evil.sh", "direction": "upload" }),
        )
        .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("bad_request")));
    assert!(
        body["message"].as_str().unwrap().contains("pdf, csv"),
        "{body}"
    );
    // Downloads are not restricted by it.
    s.write("any.sh", b"#!/bin/sh");
    s.mint("any.sh").await;
}

/// Starts curl sending `src` to `url` at about 1 MiB/s, in the background.
fn slow_curl(src: &str, url: &str) -> std::process::Child {
    curl()
        .args([
            "--limit-rate",
            "1M",
            "--data-binary",
            &format!("@{src}"),
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            url,
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits (bounded) until `cond` holds.
async fn wait_for(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    for _ in 0..400 {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn an_upload_dropped_midway_leaves_nothing_and_the_link_usable() {
    if require_tool("curl").is_none() {
        return;
    }
    for backend in BOTH {
        dropped_midway(backend).await;
    }
}

async fn dropped_midway(backend: Backend) {
    let Some(b) = Sandbox::start(backend, &[]) else {
        return;
    };
    let s = &b.server;
    b.put("target.bin", b"untouched");
    let data = pattern(16 * 1024 * 1024);
    let src = source(s, "big.bin", &data);
    let minted = s.mint_upload(json!({ "path": "target.bin" })).await;
    let url = minted["url"].as_str().unwrap();

    let mut child = slow_curl(&src, url);
    wait_for("the upload to start", async || {
        s.state(url).await == "in_progress" && b.leftovers() > 0
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();

    // On disk the temporary goes; in a bucket the multipart upload is aborted.
    wait_for("the leftovers to go", async || b.leftovers() == 0).await;
    assert_eq!(s.settled_state(url).await, "unused");
    assert_eq!(b.read("target.bin").unwrap(), b"untouched");
    assert!(s.log().contains("outcome=\"aborted\""), "{}", s.log());

    let (status, body) = curl_status(&["--data-binary", &format!("@{src}"), url]);
    assert_eq!(status, 201, "{body}");
    assert_eq!(sha256(&b.read("target.bin").unwrap()), sha256(&data));
}

#[tokio::test]
async fn two_concurrent_uploads_on_one_link_give_exactly_one_201() {
    if require_tool("curl").is_none() {
        return;
    }
    let s = Server::start();
    let a = source(&s, "a.bin", &pattern(3 * 1024 * 1024));
    let b = source(&s, "b.bin", &vec![7u8; 3 * 1024 * 1024]);
    let minted = s.mint_upload(json!({ "path": "one.bin" })).await;
    let url = minted["url"].as_str().unwrap();
    let first = slow_curl(&a, url);
    wait_for("the first upload to start", async || {
        s.state(url).await == "in_progress"
    })
    .await;
    let second = slow_curl(&b, url);
    let codes: Vec<String> = [first, second]
        .into_iter()
        .map(|c| String::from_utf8(c.wait_with_output().unwrap().stdout).unwrap())
        .collect();
    let created = codes.iter().filter(|c| c.as_str() == "201").count();
    assert_eq!(created, 1, "{codes:?}");
    assert!(codes.iter().any(|c| c == "409" || c == "404"), "{codes:?}");
    let landed = std::fs::read(s.root.join("one.bin")).unwrap();
    assert_eq!(sha256(&landed), sha256_file(std::path::Path::new(&a)));
    assert_eq!(s.settled_state(url).await, "used");
    assert!(s.temporaries().is_empty());
}

#[tokio::test]
async fn a_stalled_upload_is_dropped_and_the_link_stays_usable() {
    let s = Server::start_with(&[("BURNLINK_IDLE_TIMEOUT_S", "1")]);
    let minted = s.mint_upload(json!({ "path": "slow.txt" })).await;
    let url = minted["url"].as_str().unwrap();
    // Promise 100 bytes, send 5, then nothing.
    let addr = s.base.trim_start_matches("http://").to_string();
    let path = url.trim_start_matches(&s.base).to_string();
    let mut sock = tokio::net::TcpStream::connect(&addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    sock.write_all(
        format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 100\r\n\r\nhello")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), sock.read_to_end(&mut answer))
        .await
        .expect("the server gives up on a stalled upload")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(s.settled_state(url).await, "unused");
    assert!(s.temporaries().is_empty());
    assert!(!s.root.join("slow.txt").exists());
}

#[tokio::test]
async fn stale_temporaries_from_a_crash_are_removed_at_start_up() {
    if require_tool("curl").is_none() {
        return;
    }
    let first = Server::start();
    let root = first.root.clone();
    let minted = first
        .mint_upload(json!({ "path": "deep/dir/crash.bin" }))
        .await;
    let url = minted["url"].as_str().unwrap();
    let src = source(&first, "big.bin", &pattern(16 * 1024 * 1024));
    let mut child = slow_curl(&src, url);
    wait_for("the upload to start", async || {
        !first.temporaries().is_empty()
    })
    .await;
    // The server dies mid-upload: nothing gets to clean up.
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(first.pid() as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    let _ = child.wait();
    let left = temporaries(&root);
    assert_eq!(left.len(), 1, "the crash left its temporary: {left:?}");

    let second = Server::start_with(&[("BURNLINK_ROOT", root.to_str().unwrap())]);
    wait_for("the sweep", async || temporaries(&root).is_empty()).await;
    wait_for("the sweep's log line", async || {
        second.log().contains("removed temporary files")
    })
    .await;
    assert!(!root.join("deep/dir/crash.bin").exists());
    drop(first);
}

/// Sends request headers (and `body`) on a raw socket and returns what the server answers
/// within `limit`.
async fn raw_request(s: &Server, head: &str, body: &[u8], limit: Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = s.base.trim_start_matches("http://").to_string();
    let mut sock = tokio::net::TcpStream::connect(&addr).await.unwrap();
    sock.write_all(head.as_bytes()).await.unwrap();
    sock.write_all(body).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(limit, sock.read(&mut answer))
        .await
        .expect("an answer in time")
        .unwrap();
    String::from_utf8_lossy(&answer[..n]).to_string()
}

#[tokio::test]
async fn a_content_length_over_the_cap_is_refused_without_reading_the_body() {
    let s = Server::start_with(&[("BURNLINK_IDLE_TIMEOUT_S", "60")]);
    let minted = s
        .mint_upload(json!({ "path": "capped.bin", "max_bytes": 1000 }))
        .await;
    let path = minted["url"]
        .as_str()
        .unwrap()
        .trim_start_matches(&s.base)
        .to_string();
    // No body follows: a server that waited for it would not answer within the limit.
    let head = format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n");
    let answer = raw_request(&s, &head, b"", Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("too_large"), "{answer}");
    assert!(s.temporaries().is_empty());
    assert!(!s.root.join("capped.bin").exists());
}

#[tokio::test]
async fn spent_links_say_so_and_touch_nothing_on_disk() {
    if require_tool("curl").is_none() {
        return;
    }
    let s = Server::start();
    let minted = s
        .mint_upload(json!({ "path": "once.txt", "overwrite": false }))
        .await;
    let url = minted["url"].as_str().unwrap();
    assert_eq!(curl_status(&["--data-binary", "first", url]).0, 201);
    // The destination exists now, but the link's state is what a second upload hears.
    let (status, body) = curl_status(&["--data-binary", "second", url]);
    assert_eq!(
        (status, parse(&body)["error"].as_str()),
        (404, Some("used"))
    );
    assert_eq!(std::fs::read(s.root.join("once.txt")).unwrap(), b"first");

    let minted = s.mint_upload(json!({ "path": "ghost/deep/x.txt" })).await;
    let url = minted["url"].as_str().unwrap();
    let revoked = s
        .link_api(reqwest::Method::DELETE, url, Some(API_TOKEN))
        .await;
    assert_eq!(revoked.status(), 200);
    let (status, body) = curl_status(&["--data-binary", "x", url]);
    assert_eq!(
        (status, parse(&body)["error"].as_str()),
        (404, Some("revoked"))
    );
    assert!(
        !s.root.join("ghost").exists(),
        "no directory made for a revoked link"
    );
    assert!(s.temporaries().is_empty());
}

#[tokio::test]
async fn a_sole_uploader_pausing_longer_than_the_lease_still_lands() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = Server::start_with(&[("BURNLINK_LEASE_S", "1"), ("BURNLINK_IDLE_TIMEOUT_S", "20")]);
    let minted = s.mint_upload(json!({ "path": "paused.txt" })).await;
    let path = minted["url"]
        .as_str()
        .unwrap()
        .trim_start_matches(&s.base)
        .to_string();
    let addr = s.base.trim_start_matches("http://").to_string();
    let mut sock = tokio::net::TcpStream::connect(&addr).await.unwrap();
    sock.write_all(
        format!("PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello").as_bytes(),
    )
    .await
    .unwrap();
    // Longer than the lease: it lapses, nobody else wants the link.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    sock.write_all(b"world").await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), sock.read(&mut answer))
        .await
        .expect("an answer in time")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    assert_eq!(
        std::fs::read(s.root.join("paused.txt")).unwrap(),
        b"helloworld"
    );
    assert_eq!(
        s.settled_state(minted["url"].as_str().unwrap()).await,
        "used"
    );
}
