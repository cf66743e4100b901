//! Files in an S3-compatible bucket (`BURNLINK_ROOT=s3://BUCKET/PREFIX`, a real moto server on
//! loopback, seeded and checked with boto3): the same headers, codes and archives as on disk
//! (each test body runs on both), and what only a bucket has: keys it cannot hold, an endpoint
//! that is down or slow, replicas sharing nothing but the bucket and Redis.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::support::moto::{BOTH, Backend, Moto, Sandbox};
use crate::support::nginx::Nginx;
use crate::support::redis_server::RedisServer;
use crate::support::*;

/// The headers a download carries, without the per-response ones.
fn stable_headers(r: &reqwest::Response) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = r
        .headers()
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "date" | "last-modified"))
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

async fn downloads(backend: Backend) -> Option<Vec<Vec<(String, String)>>> {
    let b = Sandbox::start(backend, &[])?;
    let s = &b.server;
    let data = pattern(300_000);
    b.put("docs/Grüße report.pdf", &data);
    let url = s.mint("docs/Grüße report.pdf").await;
    let mut seen = Vec::new();

    // HEAD: metadata only, never burns.
    let head = s.client.head(&url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["content-length"],
        data.len().to_string().as_str()
    );
    assert!(head.headers().contains_key("last-modified"), "{}", b.name());
    seen.push(stable_headers(&head));
    assert_eq!(s.state(&url).await, "unused");

    // A range that misses the file is 416 and holds nothing.
    let r = s
        .client
        .get(&url)
        .header("range", "bytes=400000-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416, "{}", b.name());
    // A range without the last byte: 206, and the link stays unused.
    let r = s
        .client
        .get(&url)
        .header("range", "bytes=1000-1999")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes 1000-1999/{}", data.len()).as_str()
    );
    seen.push(stable_headers(&r));
    assert_eq!(&r.bytes().await.unwrap()[..], &data[1000..2000]);
    assert_eq!(s.settled_state(&url).await, "unused");

    // The whole file: 200, then burned.
    let r = s.get(&url).await;
    assert_eq!(r.status(), 200);
    seen.push(stable_headers(&r));
    assert_eq!(sha256(&r.bytes().await.unwrap()), sha256(&data));
    assert_eq!(s.settled_state(&url).await, "used");
    assert_eq!(error_code(s.get(&url).await).await, (404, "used".into()));
    Some(seen)
}

#[tokio::test]
async fn downloads_carry_the_same_headers_and_codes_from_a_bucket_as_from_disk() {
    let Some(disk) = downloads(Backend::Disk).await else {
        return;
    };
    let Some(bucket) = downloads(Backend::Bucket).await else {
        return;
    };
    assert_eq!(disk, bucket);
}

async fn mint_checks(backend: Backend) {
    let Some(b) = Sandbox::start(backend, &[("BURNLINK_MAX_DOWNLOAD_BYTES", "1000")]) else {
        return;
    };
    let s = &b.server;
    b.put("dir/a.txt", &pattern(600));
    b.put("dir/sub/b.txt", &pattern(300));
    b.put("big/x.bin", &pattern(700));
    b.put("big/y.bin", &pattern(700));
    b.put("f.txt", b"f");
    let mint = |body: Value| async move {
        let (status, v) = s.mint_raw(Some(API_TOKEN), body).await;
        (status, v["error"].as_str().unwrap_or("").to_string(), v)
    };
    let (status, _, v) = mint(json!({ "path": "dir" })).await;
    assert_eq!((status, v["kind"].as_str()), (201, Some("directory")));
    assert_eq!(v["size"], 900, "a directory's size is the sum of its files");
    let (status, _, v) = mint(json!({ "path": "f.txt" })).await;
    assert_eq!((status, v["size"].as_u64()), (201, Some(1)));
    for (body, want) in [
        (json!({ "path": "missing.txt" }), (404, "not_found")),
        (json!({ "path": "../x" }), (403, "forbidden")),
        (json!({ "path": "dir/../../x" }), (403, "forbidden")),
        (json!({ "path": "/etc/passwd" }), (403, "forbidden")),
        (json!({ "path": "big" }), (413, "too_large")),
        (
            json!({ "path": "dir", "direction": "upload" }),
            (400, "bad_request"),
        ),
        (
            json!({ "path": "f.txt", "direction": "upload", "overwrite": false }),
            (409, "exists"),
        ),
        (
            json!({ "path": "s/x", "session": "a/b" }),
            (400, "bad_request"),
        ),
    ] {
        let (status, code, v) = mint(body.clone()).await;
        assert_eq!((status, code.as_str()), want, "{} {body} {v}", b.name());
    }
}

#[tokio::test]
async fn mint_time_checks_answer_the_same_codes_on_a_bucket_as_on_disk() {
    for backend in BOTH {
        mint_checks(backend).await;
    }
}

#[tokio::test]
async fn keys_a_bucket_cannot_hold_plainly_are_refused_and_absolute_paths_name_the_bucket() {
    let Some(b) = Sandbox::start(Backend::Bucket, &[]) else {
        return;
    };
    let s = &b.server;
    b.put("f.txt", b"f");
    let long = "a/".repeat(600);
    for (path, want) in [
        ("a\u{1}b.txt", 400),
        (long.as_str(), 400),
        ("s3://burnlink-test/sandbox/f.txt", 201),
        ("s3://burnlink-test/other/f.txt", 403),
        ("s3://burnlink-test/sandboxx/f.txt", 403),
        ("s3://another/sandbox/f.txt", 403),
    ] {
        let (status, v) = s.mint_raw(Some(API_TOKEN), json!({ "path": path })).await;
        assert_eq!(status, want, "{path:?} {v}");
    }
}

async fn archive(backend: Backend) {
    if !require_tools(&["curl", "python3", "unzip"]) {
        return;
    }
    let Some(b) = Sandbox::start(backend, &[]) else {
        return;
    };
    let s = &b.server;
    b.put("tree/a.txt", b"alpha");
    b.put("tree/sub/b.bin", &pattern(200_000));
    b.put("tree/empty/", b"");
    b.put("other.txt", b"not in the tree");
    let url = s.mint("tree").await;
    assert!(url.ends_with("/tree.zip"), "{url}");
    let zip = s.dir.path().join("tree.zip");
    let (code, headers) = archive::curl_to_file(&url, &zip);
    assert_eq!(code, 0, "{}", b.name());
    assert!(headers.starts_with("HTTP/1.1 200"), "{headers}");
    assert!(headers.contains("application/zip"), "{headers}");
    archive::unzip_test(&zip);
    let info = archive::python_zipinfo(&zip);
    let names = archive::names(&info);
    for name in ["a.txt", "sub/b.bin", "empty/"] {
        assert!(names.contains(&name.to_string()), "{} {names:?}", b.name());
    }
    assert!(
        !names
            .iter()
            .any(|n| n.contains("other") || n.starts_with("tree"))
    );
    let out = s.dir.path().join("out");
    archive::unzip_into(&zip, &out);
    assert_eq!(std::fs::read(out.join("a.txt")).unwrap(), b"alpha");
    assert_eq!(
        sha256(&std::fs::read(out.join("sub/b.bin")).unwrap()),
        sha256(&pattern(200_000))
    );
    assert!(out.join("empty").is_dir());
    assert_eq!(s.settled_state(&url).await, "used");
}

#[tokio::test]
async fn a_key_prefix_streams_as_the_same_zip_as_a_directory() {
    for backend in BOTH {
        archive(backend).await;
    }
}

async fn mid_upload_race(backend: Backend) {
    let Some(b) = Sandbox::start(backend, &[]) else {
        return;
    };
    let s = &b.server;
    let minted = s
        .mint_upload(json!({ "path": "race.bin", "overwrite": false }))
        .await;
    let url = minted["url"].as_str().unwrap().to_string();
    // A body that arrives in two halves, with someone else's object landing in between.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let body = reqwest::Body::wrap_stream(futures_util::stream::unfold(rx, |mut rx| async {
        rx.recv().await.map(|chunk| (chunk, rx))
    }));
    let upload = tokio::spawn({
        let client = s.client.clone();
        async move { client.put(url).body(body).send().await.unwrap() }
    });
    // More than a part (PART_SIZE is 8 MiB), so the bucket holds a part of it below.
    tx.send(Ok(pattern(9 * 1024 * 1024))).await.unwrap();
    match &b.moto {
        Some(moto) => {
            // Bounded: 200 looks, 50 ms apart.
            let mut parts = 0;
            for _ in 0..200 {
                parts = moto.uploaded_parts();
                if parts >= 1 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert!(parts >= 1, "a part was uploaded: {parts}");
            assert!(!moto.exists("race.bin"), "HEAD of the destination is 404");
        }
        None => tokio::time::sleep(Duration::from_millis(500)).await,
    }
    // Nothing of an upload in progress is visible at its destination.
    assert_eq!(
        s.state(minted["url"].as_str().unwrap()).await,
        "in_progress"
    );
    assert!(b.read("race.bin").is_none(), "{}", b.name());
    b.put("race.bin", b"someone else's");
    if let Some(moto) = &b.moto {
        assert!(moto.exists("race.bin"), "the look above can see an object");
    }
    tx.send(Ok(pattern(1024))).await.unwrap();
    drop(tx);
    let r = upload.await.unwrap();
    assert_eq!(error_code(r).await, (409, "exists".into()), "{}", b.name());
    assert_eq!(b.read("race.bin").unwrap(), b"someone else's");
    assert_eq!(b.leftovers(), 0, "{}", b.name());
}

#[tokio::test]
async fn overwrite_false_is_a_conditional_create_even_against_an_object_that_lands_mid_upload() {
    for backend in BOTH {
        mid_upload_race(backend).await;
    }
}

#[tokio::test]
async fn the_cli_mints_against_the_bucket() {
    let Some(b) = Sandbox::start(Backend::Bucket, &[]) else {
        return;
    };
    let s = &b.server;
    b.put("ci/artifact.tgz", b"artifact");
    let moto = b.moto.as_ref().unwrap();
    // A fresh command each time: `args` appends.
    let cli = |path: &str| {
        let mut cli = std::process::Command::new(bin());
        cli.current_dir(s.dir.path())
            .env("BURNLINK_KEYS", KEYS)
            .env("BURNLINK_BASE_URL", &s.base)
            .args(["mint", path]);
        for (k, v) in moto.env() {
            cli.env(k, v);
        }
        cli.output().unwrap()
    };
    let out = cli("ci/artifact.tgz");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let r = s.get(&url).await;
    assert_eq!(r.status(), 200);
    assert_eq!(&r.bytes().await.unwrap()[..], b"artifact");

    let out = cli("ci/missing.tgz");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("ci/missing.tgz: no such file"), "{stderr}");
}

/// A port that accepts connections and never answers: a bucket that hangs.
fn silent_endpoint() -> (std::net::TcpListener, String) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    (listener, endpoint)
}

#[tokio::test]
async fn a_bucket_down_or_slow_is_503_unavailable_and_readyz_recovers_without_a_restart() {
    let Some(mut moto) = Moto::start() else {
        return;
    };
    let env = moto.env();
    let refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let s = Server::start_with(&refs);
    moto.put("f.txt", b"content");
    let url = s.mint("f.txt").await;
    let readyz = |s: &Server| {
        let client = s.client.clone();
        let base = s.base.clone();
        async move {
            let r = client.get(format!("{base}/readyz")).send().await.unwrap();
            r.status().as_u16()
        }
    };
    assert_eq!(readyz(&s).await, 200);

    let up = s
        .mint_upload(json!({ "path": "new.txt", "overwrite": true }))
        .await;

    // Down: every route that needs the bucket says 503 `unavailable`, quickly; nothing burns.
    moto.stop();
    let started = Instant::now();
    assert_eq!(readyz(&s).await, 503);
    assert_eq!(
        error_code(s.get(&url).await).await,
        (503, "unavailable".into())
    );
    let (status, v) = s
        .mint_raw(Some(API_TOKEN), json!({ "path": "f.txt" }))
        .await;
    assert_eq!((status, v["error"].as_str()), (503, Some("unavailable")));
    let r = s
        .client
        .put(up["url"].as_str().unwrap())
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (503, "unavailable".into()));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(s.settled_state(&url).await, "unused");

    // Back (moto starts empty): service resumes without restarting burnlink.
    moto.restart();
    moto.put("f.txt", b"content");
    assert_eq!(readyz(&s).await, 200);
    let r = s.get(&url).await;
    assert_eq!(r.status(), 200);
    assert_eq!(&r.bytes().await.unwrap()[..], b"content");

    // Slow: an endpoint that accepts and never answers is 503 within the call bound.
    let (_listener, endpoint) = silent_endpoint();
    let env = moto.env_for(&endpoint);
    let refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let slow = Server::start_with(&refs);
    let token = sign(&claims(
        burnlink::token::Direction::Download,
        "f.txt",
        now() + 600,
    ));
    let started = Instant::now();
    let r = slow
        .get(&format!("{}/transfer/{token}/f.txt", slow.base))
        .await;
    assert_eq!(error_code(r).await, (503, "unavailable".into()));
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(readyz(&slow).await, 503);
}

#[tokio::test]
async fn a_transfer_cut_by_the_bucket_never_burns_the_link() {
    let Some(mut moto) = Moto::start() else {
        return;
    };
    let env = moto.env();
    let refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let s = Server::start_with(&refs);
    let data = pattern(64 * 1024 * 1024);
    moto.put("big.bin", &data);
    let url = s.mint("big.bin").await;
    let r = s.get(&url).await;
    assert_eq!(r.status(), 200);
    let mut stream = r.bytes_stream();
    let mut got = 0usize;
    while got < 1024 * 1024 {
        got += stream.next().await.unwrap().unwrap().len();
    }
    moto.stop();
    let mut failed = false;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(c) => got += c.len(),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert!(
        failed && got < data.len(),
        "the response must be cut: {got} bytes"
    );
    assert_eq!(s.settled_state(&url).await, "unused");

    // An upload whose bucket goes away after its first part: refused, the link stays usable.
    moto.restart();
    let minted = s.mint_upload(json!({ "path": "up.bin" })).await;
    let url = minted["url"].as_str().unwrap().to_string();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let body = reqwest::Body::wrap_stream(futures_util::stream::unfold(rx, |mut rx| async {
        rx.recv().await.map(|chunk| (chunk, rx))
    }));
    let upload = tokio::spawn({
        let (client, url) = (s.client.clone(), url.clone());
        async move { client.put(url).body(body).send().await }
    });
    tx.send(Ok(pattern(9 * 1024 * 1024))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    moto.stop();
    for _ in 0..4 {
        if tx.send(Ok(pattern(4 * 1024 * 1024))).await.is_err() {
            break;
        }
    }
    drop(tx);
    match upload.await.unwrap() {
        Ok(r) => assert_eq!(error_code(r).await, (503, "unavailable".into())),
        // The server may answer and close before the body is all sent.
        Err(e) => assert!(e.is_request() || e.is_body(), "{e}"),
    }
    assert_eq!(s.settled_state(&url).await, "unused");
}

#[tokio::test]
async fn three_replicas_on_one_bucket_and_one_redis_behind_nginx_act_as_one() {
    let Some(nginx_bin) = require_tool("nginx") else {
        return;
    };
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let Some(moto) = Moto::start() else {
        return;
    };
    let lb_port = free_port();
    let lb_base = format!("http://127.0.0.1:{lb_port}");
    let mut env = moto.env();
    env.push(("BURNLINK_LEDGER".into(), redis.url()));
    env.push(("BURNLINK_BASE_URL".into(), lb_base.clone()));
    env.push(("BURNLINK_TRUSTED_PROXIES".into(), "127.0.0.1/32".into()));
    let refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let replicas: Vec<Arc<Server>> = (0..3)
        .map(|_| Arc::new(Server::start_with(&refs)))
        .collect();
    let upstreams: Vec<String> = replicas
        .iter()
        .map(|s| s.base.trim_start_matches("http://").to_string())
        .collect();
    let lb = Nginx::start(&nginx_bin, lb_port, &upstreams);

    // An upload minted on the first replica, used through the second.
    let minted = replicas[0]
        .mint_upload(json!({ "path": "shared/report.bin" }))
        .await;
    let url = minted["url"].as_str().unwrap();
    let token = burnlink::token::extract_token(url);
    let data = pattern(9 * 1024 * 1024);
    let r = replicas[1]
        .client
        .put(format!("{}/transfer/{token}", replicas[1].base))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    assert_eq!(
        sha256(&moto.get("shared/report.bin").unwrap()),
        sha256(&data)
    );

    // A download of it minted on the second, fetched from the third, then refused everywhere.
    let url = replicas[1].mint("shared/report.bin").await;
    let token = burnlink::token::extract_token(&url).to_string();
    let r = replicas[2]
        .get(&format!("{}/transfer/{token}", replicas[2].base))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(sha256(&r.bytes().await.unwrap()), sha256(&data));
    for s in &replicas {
        let r = s.get(&format!("{}/transfer/{token}", s.base)).await;
        assert_eq!(error_code(r).await, (404, "used".into()));
    }

    // Through the balancer: a link of one use, fetched by 12 clients at once, is one 200.
    let url = replicas[0].mint("shared/report.bin").await;
    assert!(url.starts_with(&lb.base()), "{url}");
    let mut tasks = Vec::new();
    for i in 0..12 {
        let (s, url) = (replicas[i % 3].clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let r = s.get(&url).await;
            let status = r.status().as_u16();
            let _ = r.bytes().await;
            status
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            200 => ok += 1,
            404 | 409 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(ok, 1);
}

#[tokio::test]
async fn a_256_mib_upload_and_download_through_a_bucket_keep_peak_memory_under_64_mib() {
    if require_tool("curl").is_none() {
        return;
    }
    let size: u64 = 256 * 1024 * 1024;
    let limit = (2 * size).to_string();
    let env = [
        ("BURNLINK_MAX_UPLOAD_BYTES", limit.as_str()),
        ("BURNLINK_MAX_DOWNLOAD_BYTES", limit.as_str()),
    ];
    let Some(b) = Sandbox::start(Backend::Bucket, &env) else {
        return;
    };
    let s = &b.server;
    // Sparse source outside the sandbox; `-T` streams it.
    let src = s.dir.path().join("huge.bin");
    std::fs::File::create(&src).unwrap().set_len(size).unwrap();
    let minted = s.mint_upload(json!({ "path": "huge.bin" })).await;
    let url = minted["url"].as_str().unwrap();
    let (status, body) = curl_status(&["-T", src.to_str().unwrap(), url]);
    assert_eq!(status, 201, "{body}");
    assert_eq!(b.leftovers(), 0);
    println!(
        "server peak RSS after the upload: {} KiB",
        vm_hwm_kib(s.pid())
    );

    let url = s.mint("huge.bin").await;
    let out = s.dir.path().join("back.bin");
    let status = curl()
        .args(["--fail", "-o"])
        .arg(&out)
        .arg(&url)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(std::fs::metadata(&out).unwrap().len(), size);
    assert_eq!(s.settled_state(&url).await, "used");

    let peak = vm_hwm_kib(s.pid());
    println!("server peak RSS after 256 MiB up and down through a bucket: {peak} KiB");
    assert!(peak < 64 * 1024, "peak RSS {peak} KiB");
}
