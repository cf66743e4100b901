//! Several replicas with one Redis behave as one: a link minted anywhere works once, anywhere,
//! also behind a real nginx balancer; Redis down fails closed and service resumes when it is
//! back; a replica killed mid-transfer does not strand its link.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::nginx::Nginx;
use crate::support::redis_server::RedisServer;
use crate::support::*;
use futures_util::StreamExt;
use serde_json::json;

/// One Redis, `n` replicas sharing keys, API tokens and the sandbox root, and, when asked, an
/// nginx in front of them (then minted URLs point at the balancer).
struct Stack {
    redis: RedisServer,
    replicas: Vec<Server>,
    balancer: Option<Nginx>,
    root: tempfile::TempDir,
}

impl Stack {
    fn start(n: usize, with_balancer: bool, env: &[(&str, &str)]) -> Option<Stack> {
        let nginx_bin = if with_balancer {
            Some(require_tool("nginx")?)
        } else {
            None
        };
        let redis = RedisServer::start()?;
        let root = tempfile::tempdir().unwrap();
        let lb_port = free_port();
        let lb_base = format!("http://127.0.0.1:{lb_port}");
        let url = redis.url();
        let root_s = root.path().display().to_string();
        let mut all_env: Vec<(&str, &str)> = vec![
            ("BURNLINK_LEDGER", &url),
            ("BURNLINK_ROOT", &root_s),
            ("BURNLINK_TRUSTED_PROXIES", "127.0.0.1/32"),
        ];
        if with_balancer {
            all_env.push(("BURNLINK_BASE_URL", &lb_base));
        }
        all_env.extend_from_slice(env);
        let replicas: Vec<Server> = (0..n).map(|_| Server::start_with(&all_env)).collect();
        let balancer = nginx_bin.map(|bin| {
            let upstreams: Vec<String> = replicas
                .iter()
                .map(|s| s.base.trim_start_matches("http://").to_string())
                .collect();
            Nginx::start(&bin, lb_port, &upstreams)
        });
        Some(Stack {
            redis,
            replicas,
            balancer,
            root,
        })
    }

    fn root(&self) -> &Path {
        self.root.path()
    }

    fn write(&self, rel: &str, bytes: &[u8]) -> PathBuf {
        let p = self.root().join(rel);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn lb(&self) -> &Nginx {
        self.balancer.as_ref().unwrap()
    }

    /// Mints through the balancer.
    async fn mint(&self, path: &str) -> String {
        let resp = client()
            .post(format!("{}/api/links", self.lb().base()))
            .bearer_auth(API_TOKEN)
            .json(&json!({ "path": path }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        let v: serde_json::Value = resp.json().await.unwrap();
        let url = v["url"].as_str().unwrap().to_string();
        assert!(
            url.starts_with(&self.lb().base()),
            "links point at the balancer"
        );
        url
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// The same link as seen through another server.
fn via(url: &str, from: &str, to: &str) -> String {
    assert!(url.starts_with(from), "{url} is not on {from}");
    format!("{to}{}", &url[from.len()..])
}

#[tokio::test]
async fn a_link_minted_on_any_replica_works_exactly_once_through_any_other() {
    let Some(stack) = Stack::start(3, false, &[]) else {
        return;
    };
    let data = pattern(300_000);
    stack.write("report.bin", &data);
    let r = &stack.replicas;
    for (minter, user, other) in [(0, 1, 2), (1, 2, 0), (2, 0, 1)] {
        let url = r[minter].mint("report.bin").await;
        let on = |i: usize| via(&url, &r[minter].base, &r[i].base);

        let resp = r[user].get(&on(user)).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(sha256(&resp.bytes().await.unwrap()), sha256(&data));
        assert_eq!(r[other].settled_state(&url).await, "used");
        for i in [other, minter, user] {
            assert_eq!(
                error_code(r[i].get(&on(i)).await).await,
                (404, "used".to_string()),
                "replica {i} after a use on replica {user}"
            );
        }
    }
    // Stats count across replicas: three minted, three used, whichever replica is asked.
    for s in r {
        let v: serde_json::Value = s
            .api(reqwest::Method::GET, "/api/download/stats", Some(API_TOKEN))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(v["statistics"]["total_tokens"], 3, "{v}");
        assert_eq!(v["statistics"]["used_tokens"], 3, "{v}");
    }
    // An upload through one replica: its receipt is stored in Redis, so another reports it.
    let (status, minted) = r[0]
        .mint_raw(
            Some(API_TOKEN),
            json!({ "path": "in/upload.bin", "direction": "upload" }),
        )
        .await;
    assert_eq!(status, 201, "{minted}");
    let up = minted["url"].as_str().unwrap();
    let body = pattern(70_000);
    let resp = client()
        .post(via(up, &r[0].base, &r[1].base))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let status: serde_json::Value = r[2]
        .link_api(reqwest::Method::GET, up, Some(API_TOKEN))
        .await
        .json()
        .await
        .unwrap();
    let digest = hex(&sha256(&body));
    assert_eq!(status["state"], "used", "{status}");
    assert_eq!(status["bytes"], 70_000, "{status}");
    assert_eq!(status["sha256"], digest.as_str(), "{status}");
    assert_eq!(
        std::fs::read(stack.root().join("in/upload.bin")).unwrap(),
        body
    );

    // A revoke on one replica is seen by the others.
    let url = r[0].mint("report.bin").await;
    assert_eq!(
        r[1].link_api(reqwest::Method::DELETE, &url, Some(API_TOKEN))
            .await
            .status()
            .as_u16()
            / 100,
        2
    );
    assert_eq!(
        error_code(r[2].get(&via(&url, &r[0].base, &r[2].base)).await).await,
        (404, "revoked".to_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn through_nginx_48_concurrent_gets_on_one_link_give_exactly_one_download() {
    let Some(stack) = Stack::start(3, true, &[]) else {
        return;
    };
    let data = pattern(8 * 1024 * 1024);
    stack.write("big.bin", &data);
    let url = stack.mint("big.bin").await;
    let c = client();
    let requests = (0..48).map(|_| {
        let (c, url) = (c.clone(), url.clone());
        async move {
            let resp = c.get(&url).send().await.unwrap();
            let status = resp.status().as_u16();
            let body = resp.bytes().await.unwrap();
            if status == 200 {
                (status, String::new(), Some(sha256(&body)))
            } else {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                (status, v["error"].as_str().unwrap().to_string(), None)
            }
        }
    });
    let results = futures_util::future::join_all(requests).await;
    let wins: Vec<_> = results.iter().filter(|r| r.0 == 200).collect();
    assert_eq!(wins.len(), 1, "{results:?}");
    assert_eq!(wins[0].2, Some(sha256(&data)));
    for (status, code, _) in &results {
        assert!(
            matches!(
                (*status, code.as_str()),
                (200, _) | (409, "in_progress") | (404, "used")
            ),
            "{status} {code}"
        );
    }
    // Every replica answered some of them: the balancer really spread the requests.
    let log = stack.lb().access_log();
    for s in &stack.replicas {
        let upstream = s.base.trim_start_matches("http://");
        assert!(log.contains(upstream), "{upstream} got none:\n{log}");
    }
    let s = &stack.replicas[0];
    assert_eq!(s.settled_state(&url).await, "used");
    assert_eq!(
        error_code(c.get(&url).send().await.unwrap()).await,
        (404, "used".to_string())
    );
}

#[tokio::test]
async fn redis_down_fails_closed_and_transfers_resume_when_it_returns() {
    let Some(mut stack) = Stack::start(3, true, &[]) else {
        return;
    };
    stack.write("f.txt", b"hello");
    let before = stack.mint("f.txt").await;
    let c = client();

    stack.redis.stop();
    for _ in 0..3 {
        // Round robin: each replica answers one of these.
        let resp = c.get(&before).send().await.unwrap();
        assert!(resp.headers().contains_key("retry-after"));
        assert_eq!(error_code(resp).await, (503, "unavailable".to_string()));
    }
    for s in &stack.replicas {
        let ready = c.get(format!("{}/readyz", s.base)).send().await.unwrap();
        assert_eq!(ready.status(), 503, "readyz on {}", s.base);
    }
    // Minting needs only the key: it keeps working while Redis is down.
    let during = stack.mint("f.txt").await;

    stack.redis.restart();
    let mut resumed = None;
    for _ in 0..100 {
        let resp = c.get(&before).send().await.unwrap();
        if resp.status() != 503 {
            resumed = Some(resp);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let resp = resumed.expect("transfers resume within 10 s of Redis returning");
    assert_eq!(resp.status(), 200);
    assert_eq!(&resp.bytes().await.unwrap()[..], b"hello");
    let resp = c.get(&during).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    for s in &stack.replicas {
        assert_eq!(s.settled_state(&before).await, "used");
        let ready = c.get(format!("{}/readyz", s.base)).send().await.unwrap();
        assert_eq!(ready.status(), 200, "readyz on {}", s.base);
    }
}

#[tokio::test]
async fn a_replica_killed_mid_download_frees_its_link_after_the_lease() {
    let Some(stack) = Stack::start(2, false, &[("BURNLINK_LEASE_S", "2")]) else {
        return;
    };
    let data = pattern(64 * 1024 * 1024);
    stack.write("big.bin", &data);
    let (a, b) = (&stack.replicas[0], &stack.replicas[1]);
    let url = a.mint("big.bin").await;
    let on_b = via(&url, &a.base, &b.base);

    let resp = a.get(&url).await;
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let mut got = 0usize;
    while got < 1024 * 1024 {
        got += stream.next().await.unwrap().unwrap().len();
    }
    let pid = rustix::process::Pid::from_raw(a.pid() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
    drop(stream);
    let mut dead = false;
    for _ in 0..100 {
        if client()
            .get(format!("{}/healthz", a.base))
            .send()
            .await
            .is_err()
        {
            dead = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(dead, "replica A is gone");

    // The dead replica's lease is still in Redis: the link is busy, not burned.
    assert_eq!(
        error_code(b.get(&on_b).await).await,
        (409, "in_progress".to_string())
    );
    // Nobody renews it, so it lapses within BURNLINK_LEASE_S (polled, bounded).
    let state = b.wait_state(&on_b, "unused", Duration::from_secs(6)).await;
    assert_eq!(state, "unused", "the lease freed itself");
    let resp = b.get(&on_b).await;
    assert_eq!(resp.status(), 200);
    let body = resp.bytes().await.unwrap();
    assert_eq!(sha256(&body), sha256(&data));
    assert_eq!(b.settled_state(&on_b).await, "used");
    assert!(stack.redis.command("PING").contains("PONG"));
}

#[tokio::test]
async fn a_replica_started_while_redis_is_down_serves_once_redis_is_up() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    redis.stop();
    let url = redis.url();
    let s = Server::start_with(&[("BURNLINK_LEDGER", &url)]);
    s.write("f.txt", b"hello");
    assert_eq!(s.get(&format!("{}/readyz", s.base)).await.status(), 503);
    // Minting needs only the key.
    let link = s.mint("f.txt").await;
    assert_eq!(
        error_code(s.get(&link).await).await,
        (503, "unavailable".to_string())
    );
    assert!(s.log().contains("Redis is not reachable yet"));

    redis.restart();
    let mut ready = false;
    for _ in 0..100 {
        if s.get(&format!("{}/readyz", s.base)).await.status() == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        ready,
        "ready within 10 s of Redis coming up, without a restart"
    );
    let resp = s.get(&link).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(&resp.bytes().await.unwrap()[..], b"hello");
    assert_eq!(s.settled_state(&link).await, "used");
}

/// A link of three uses across three replicas on one Redis: 32 concurrent GETs spread over
/// the replicas give exactly three complete downloads in all, then `used` everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_three_use_link_gives_exactly_three_downloads_across_three_replicas() {
    let Some(stack) = Stack::start(3, false, &[]) else {
        return;
    };
    let data = pattern(512 * 1024);
    stack.write("three.bin", &data);
    let r = &stack.replicas;
    let (status, minted) = r[0]
        .mint_raw(
            Some(API_TOKEN),
            json!({ "path": "three.bin", "max_uses": 3 }),
        )
        .await;
    assert_eq!(status, 201, "{minted}");
    let url = minted["url"].as_str().unwrap().to_string();
    let urls = (0..32)
        .map(|i| via(&url, &r[0].base, &r[i % 3].base))
        .collect();
    let (complete, codes) = crate::several_uses::concurrent_gets(urls, data.len()).await;
    assert_eq!(complete, 3, "{codes:?}");
    assert!(
        codes.iter().all(|c| [200, 404, 409].contains(c)),
        "{codes:?}"
    );
    assert_eq!(r[1].settled_state(&url).await, "used");
    for (i, s) in r.iter().enumerate() {
        let v: serde_json::Value = s
            .link_api(reqwest::Method::GET, &url, Some(API_TOKEN))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            (v["uses"].as_u64(), v["max_uses"].as_u64()),
            (Some(3), Some(3)),
            "{v}"
        );
        assert_eq!(
            error_code(s.get(&via(&url, &r[0].base, &s.base)).await).await,
            (404, "used".to_string()),
            "replica {i}"
        );
    }
}
