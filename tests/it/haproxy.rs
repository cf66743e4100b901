//! Three replicas with one Redis behind a real HAProxy configured from the shipped example
//! (`deploy/haproxy/burnlink.cfg.template`): a link works once whichever replica each request
//! lands on, a download streams through (the link is still in progress while the client has
//! read only the start of the file), and so does an upload (the replica writes the first bytes
//! before the client has sent the rest).

use std::time::{Duration, Instant};

use crate::support::haproxy::Haproxy;
use crate::support::redis_server::RedisServer;
use crate::support::*;
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::json;

struct Stack {
    _redis: RedisServer,
    replicas: Vec<Server>,
    lb: Haproxy,
    root: tempfile::TempDir,
}

impl Stack {
    fn start() -> Option<Stack> {
        let bin = require_tool("haproxy")?;
        let redis = RedisServer::start()?;
        let root = tempfile::tempdir().unwrap();
        let lb_port = free_port();
        let lb_base = format!("http://127.0.0.1:{lb_port}");
        let (url, root_s) = (redis.url(), root.path().display().to_string());
        let env = [
            ("BURNLINK_LEDGER", url.as_str()),
            ("BURNLINK_ROOT", root_s.as_str()),
            ("BURNLINK_BASE_URL", lb_base.as_str()),
            ("BURNLINK_TRUSTED_PROXIES", "127.0.0.1/32"),
        ];
        let replicas: Vec<Server> = (0..3).map(|_| Server::start_with(&env)).collect();
        let upstreams: Vec<String> = replicas
            .iter()
            .map(|s| s.base.trim_start_matches("http://").to_string())
            .collect();
        let lb = Haproxy::start(&bin, lb_port, &upstreams);
        Some(Stack {
            _redis: redis,
            replicas,
            lb,
            root,
        })
    }

    async fn mint(&self, body: serde_json::Value) -> String {
        let resp = client()
            .post(format!("{}/api/links", self.lb.base()))
            .bearer_auth(API_TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        let v: serde_json::Value = resp.json().await.unwrap();
        let url = v["url"].as_str().unwrap().to_string();
        assert!(url.starts_with(&self.lb.base()), "links point at HAProxy");
        url
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn through_haproxy_a_link_works_once_across_replicas_and_transfers_stream() {
    let Some(stack) = Stack::start() else {
        return;
    };
    let c = client();

    // Single use across replicas: 24 concurrent GETs spread by round robin, one download.
    let small = pattern(2 * 1024 * 1024);
    std::fs::write(stack.root.path().join("small.bin"), &small).unwrap();
    let url = stack.mint(json!({ "path": "small.bin" })).await;
    let requests = (0..24).map(|_| {
        let (c, url) = (c.clone(), url.clone());
        async move {
            let resp = c.get(&url).send().await.unwrap();
            let status = resp.status().as_u16();
            let body = resp.bytes().await.unwrap();
            (status, sha256(&body))
        }
    });
    let results = futures_util::future::join_all(requests).await;
    let wins: Vec<_> = results.iter().filter(|r| r.0 == 200).collect();
    assert_eq!(
        wins.len(),
        1,
        "{:?}",
        results.iter().map(|r| r.0).collect::<Vec<_>>()
    );
    assert_eq!(wins[0].1, sha256(&small));
    assert!(results.iter().all(|r| matches!(r.0, 200 | 404 | 409)));
    assert_eq!(stack.replicas[0].settled_state(&url).await, "used");
    assert_eq!(
        error_code(c.get(&url).send().await.unwrap()).await,
        (404, "used".to_string())
    );
    // Every replica answered some of them.
    let log = stack.lb.log();
    for r in ["burnlink/r1", "burnlink/r2", "burnlink/r3"] {
        assert!(log.contains(r), "{r} got none:\n{log}");
    }
    // The metrics stay behind the balancer.
    let metrics = c
        .get(format!("{}/metrics", stack.lb.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 403);

    // A download streams: with 1 MiB of 64 read, the replica is still sending (a buffering
    // balancer would have taken it all and the link would be burned already).
    let big = pattern(64 * 1024 * 1024);
    std::fs::write(stack.root.path().join("big.bin"), &big).unwrap();
    let url = stack.mint(json!({ "path": "big.bin" })).await;
    let resp = c.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let mut got: Vec<u8> = Vec::with_capacity(big.len());
    while got.len() < 1024 * 1024 {
        got.extend_from_slice(&stream.next().await.unwrap().unwrap());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        stack.replicas[1].state(&url).await,
        "in_progress",
        "the link burns only when the client has the whole file"
    );
    while let Some(chunk) = stream.next().await {
        got.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(sha256(&got), sha256(&big));
    assert_eq!(stack.replicas[2].settled_state(&url).await, "used");

    // An upload streams: the replica writes (most of) the first MiB while the client holds
    // the rest.
    let url = stack
        .mint(json!({ "path": "in/up.bin", "direction": "upload" }))
        .await;
    let body = pattern(3 * 1024 * 1024);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let chunks = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let upload = tokio::spawn({
        let c = c.clone();
        let url = url.clone();
        async move {
            let resp = c
                .post(&url)
                .body(reqwest::Body::wrap_stream(chunks))
                .send()
                .await
                .unwrap();
            (
                resp.status().as_u16(),
                resp.text().await.unwrap_or_default(),
            )
        }
    });
    tx.send(Ok(Bytes::copy_from_slice(&body[..1024 * 1024])))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let written: u64 = temporaries(stack.root.path())
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum();
        // Most of it: a few buffers' worth may still be on the way.
        if written >= 512 * 1024 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the first MiB did not reach a replica while the rest was held back ({written} bytes \
             written)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tx.send(Ok(Bytes::copy_from_slice(&body[1024 * 1024..])))
        .await
        .unwrap();
    drop(tx);
    let (status, text) = upload.await.unwrap();
    assert_eq!(status, 201, "{text}");
    assert_eq!(
        std::fs::read(stack.root.path().join("in/up.bin")).unwrap(),
        body
    );
    assert_eq!(stack.replicas[0].settled_state(&url).await, "used");
}
