//! Webhooks against a real receiver that verifies every request with the official Standard
//! Webhooks library (tests/it/webhook_receiver.py): signed events with the documented body,
//! retries with one id, a receiver down for a while, and with Redis, an event a killed replica
//! had not delivered yet delivered by another.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::redis_server::RedisServer;
use crate::support::*;

/// 32 bytes of key, as `whsec_` + standard base64.
const SECRET: &str = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// The Python receiver on a fixed port, logging to a file; stopped (by PID) on drop.
struct Receiver {
    child: Child,
}

impl Receiver {
    fn start(py: &Path, port: u16, log: &Path, fail_first: u32) -> Receiver {
        Self::start_tls(py, port, log, fail_first, None)
    }

    /// Serving HTTPS with `tls` (certificate, key) when given.
    fn start_tls(
        py: &Path,
        port: u16,
        log: &Path,
        fail_first: u32,
        tls: Option<(&Path, &Path)>,
    ) -> Receiver {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/webhook_receiver.py");
        let mut cmd = Command::new(py);
        cmd.arg(script)
            .arg(port.to_string())
            .arg(SECRET)
            .arg(log)
            .arg(fail_first.to_string());
        if let Some((cert, key)) = tls {
            cmd.arg(cert).arg(key);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the webhook receiver");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the receiver did not start within 20 s");
        assert_eq!(line.trim(), "ready");
        Receiver { child }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every request the receiver logged.
fn received(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Waits (bounded) until `n` events were answered 200; returns every request logged.
async fn wait_delivered(log: &Path, n: usize, limit: Duration) -> Vec<Value> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let all = received(log);
        if all.iter().filter(|r| r["status"] == 200).count() >= n {
            return all;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{n} deliveries expected within {limit:?}; got {all:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn body(r: &Value) -> Value {
    serde_json::from_str(r["body"].as_str().unwrap()).unwrap()
}

fn setup() -> Option<(PathBuf, tempfile::TempDir, u16)> {
    let py = require_tool(WEBHOOKS_PYTHON)?;
    let dir = tempfile::tempdir().unwrap();
    Some((py, dir, free_port()))
}

fn env(port: u16) -> String {
    format!("http://127.0.0.1:{port}/hooks")
}

#[tokio::test]
async fn events_are_signed_and_a_failing_receiver_gets_the_same_id_until_it_answers() {
    let Some((py, dir, port)) = setup() else {
        return;
    };
    let log = dir.path().join("hooks.jsonl");
    let _receiver = Receiver::start(&py, port, &log, 2);
    let url = env(port);
    let s = Server::start_with(&[
        ("BURNLINK_WEBHOOK_URL", &url),
        ("BURNLINK_WEBHOOK_SECRET", SECRET),
    ]);
    s.write("r/report.txt", b"hello hooks");
    let (status, minted) = s
        .mint_raw(
            Some(API_TOKEN),
            json!({ "path": "r/report.txt", "max_uses": 2 }),
        )
        .await;
    assert_eq!(status, 201);
    let link = minted["url"].as_str().unwrap().to_string();
    let token = minted["token"].as_str().unwrap().to_string();
    assert_eq!(
        s.get(&link).await.bytes().await.unwrap(),
        &b"hello hooks"[..]
    );

    // 500, 500, then 200: three requests, one id, each verified by the library.
    let all = wait_delivered(&log, 1, Duration::from_secs(30)).await;
    assert_eq!(all.len(), 3, "{all:#?}");
    assert!(all.iter().all(|r| r["verified"] == true), "{all:#?}");
    assert!(all.iter().all(|r| r["id"] == all[0]["id"]), "{all:#?}");
    let statuses: Vec<_> = all.iter().map(|r| r["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, [500, 500, 200]);
    let event = body(&all[2]);
    assert_eq!(event["type"], "link.transferred");
    assert!(event["timestamp"].as_str().unwrap().ends_with('Z'));
    let claims = burnlink::token::Keyring::parse(KEYS)
        .unwrap()
        .verify(&token)
        .unwrap()
        .claims;
    assert_eq!(
        event["data"],
        json!({
            "link": claims.short_id(), "direction": "download", "path": "r/report.txt",
            "session": null, "bytes": 11, "uses": 1, "max_uses": 2, "client": "127.0.0.1",
        })
    );

    // An upload carries its digest; a revocation says so.
    let up = s.mint_upload(json!({ "path": "in/u.bin" })).await;
    let resp = s
        .client
        .put(up["url"].as_str().unwrap())
        .body("up!")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let resp = s
        .link_api(reqwest::Method::DELETE, &link, Some(API_TOKEN))
        .await;
    assert_eq!(resp.status(), 200);
    let all = wait_delivered(&log, 3, Duration::from_secs(30)).await;
    let events: Vec<Value> = all
        .iter()
        .filter(|r| r["status"] == 200)
        .map(body)
        .collect();
    let upload = events
        .iter()
        .find(|e| e["data"]["direction"] == "upload")
        .unwrap();
    assert_eq!(upload["data"]["sha256"], hex(&sha256(b"up!")));
    assert_eq!(upload["data"]["bytes"], 3);
    let revoked = events.iter().find(|e| e["type"] == "link.revoked").unwrap();
    assert_eq!(revoked["data"]["link"], claims.short_id());
    assert_eq!(revoked["data"]["uses"], 1);

    // Neither tokens nor the secret travel in events or the log.
    let secret_b64 = SECRET.trim_start_matches("whsec_");
    for r in &all {
        let text = r["body"].as_str().unwrap();
        assert!(!text.contains(&token) && !text.contains(secret_b64));
    }
    let server_log = s.log();
    assert!(!server_log.contains(secret_b64), "secret in the log");
    assert!(
        !server_log.contains("/hooks"),
        "the webhook URL is not logged"
    );
}

#[tokio::test]
async fn a_receiver_that_is_down_for_a_while_gets_every_event_once_it_is_back() {
    let Some((py, dir, port)) = setup() else {
        return;
    };
    let log = dir.path().join("hooks.jsonl");
    let url = env(port);
    let s = Server::start_with(&[
        ("BURNLINK_WEBHOOK_URL", &url),
        ("BURNLINK_WEBHOOK_SECRET", SECRET),
    ]);
    s.write("f.txt", b"f");
    for _ in 0..3 {
        let link = s.mint("f.txt").await;
        assert_eq!(s.get(&link).await.status(), 200);
    }
    // Nobody listens for a while: the events are retried, not lost.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _receiver = Receiver::start(&py, port, &log, 0);
    let all = wait_delivered(&log, 3, Duration::from_secs(30)).await;
    let mut ids: Vec<_> = all.iter().map(|r| r["id"].as_str().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "each event once: {all:#?}");
    assert!(all.iter().all(|r| r["verified"] == true));
    // The receiver writes its line before it answers, so the server counts the last delivery
    // a moment after the line appears: wait for the count, within a bound.
    let mut metrics = String::new();
    for _ in 0..50 {
        metrics = s
            .api(reqwest::Method::GET, "/metrics", None)
            .await
            .text()
            .await
            .unwrap();
        if metrics.contains("burnlink_webhook_events_sent_total 3") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        metrics.contains("burnlink_webhook_events_sent_total 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("burnlink_webhook_retries_total"),
        "{metrics}"
    );
}

/// An `https://` receiver with credentials in its URL: the event arrives over TLS (the test CA
/// trusted through `SSL_CERT_FILE`), verified, with the credentials as HTTP Basic
/// authentication; neither they nor the URL appear in the log. Untrusted, it is retried, not
/// sent in the clear.
#[tokio::test]
async fn an_https_receiver_gets_signed_events_with_the_urls_credentials() {
    let Some((py, dir, port)) = setup() else {
        return;
    };
    let Some(certs) = crate::support::redis_modes::Certs::make("webhooks-https") else {
        return;
    };
    let log = dir.path().join("hooks.jsonl");
    let _receiver = Receiver::start_tls(
        &py,
        port,
        &log,
        0,
        Some((&certs.server_cert, &certs.server_key)),
    );
    let url = format!("https://hook:s3cr%3At@127.0.0.1:{port}/hooks");
    let ca = certs.ca.display().to_string();
    let s = Server::start_with(&[
        ("BURNLINK_WEBHOOK_URL", &url),
        ("BURNLINK_WEBHOOK_SECRET", SECRET),
        ("SSL_CERT_FILE", &ca),
    ]);
    s.write("f.txt", b"f");
    let link = s.mint("f.txt").await;
    assert_eq!(s.get(&link).await.status(), 200);
    let all = wait_delivered(&log, 1, Duration::from_secs(20)).await;
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!(all[0]["verified"], true);
    use base64ct::Encoding;
    let basic = format!("Basic {}", base64ct::Base64::encode_string(b"hook:s3cr:t"));
    assert_eq!(all[0]["authorization"], basic.as_str());
    assert_eq!(body(&all[0])["type"], "link.transferred");
    for secret in ["s3cr", "hook:", "/hooks"] {
        assert!(!s.log().contains(secret), "{secret} in the log");
    }

    // The same receiver with its CA not trusted: never delivered, retried and logged.
    let untrusted = Server::start_with(&[
        ("BURNLINK_WEBHOOK_URL", &url),
        ("BURNLINK_WEBHOOK_SECRET", SECRET),
    ]);
    untrusted.write("f.txt", b"f");
    let link = untrusted.mint("f.txt").await;
    assert_eq!(untrusted.get(&link).await.status(), 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !untrusted.log().contains("webhook not delivered; retrying") {
        assert!(std::time::Instant::now() < deadline, "{}", untrusted.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(received(&log).len(), 1, "nothing reached the receiver");
}

/// Two replicas on one Redis, the receiver down: the replica that completed the transfer (and
/// holds its event pending) is killed (SIGKILL) before it could deliver; once the receiver is
/// up, the other replica takes the event over and delivers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_an_event_a_killed_replica_did_not_deliver_is_delivered_by_another() {
    let Some((py, dir, port)) = setup() else {
        return;
    };
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let log = dir.path().join("hooks.jsonl");
    let url = env(port);
    let redis_url = redis.url();
    let root = tempfile::tempdir().unwrap();
    let root_s = root.path().display().to_string();
    let env = [
        ("BURNLINK_LEDGER", redis_url.as_str()),
        ("BURNLINK_ROOT", root_s.as_str()),
        ("BURNLINK_WEBHOOK_URL", url.as_str()),
        ("BURNLINK_WEBHOOK_SECRET", SECRET),
    ];
    // Replica A completes a transfer while the receiver is down, and holds the event pending.
    let a = Server::start_with(&env);
    std::fs::write(root.path().join("f.txt"), b"f").unwrap();
    let link = a.mint("f.txt").await;
    assert_eq!(a.get(&link).await.status(), 200);
    let mut pending = String::new();
    for _ in 0..100 {
        pending = redis.command("XPENDING burnlink:{webhooks}:events burnlink");
        if pending.contains(&format!("{}-", a.pid())) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        pending.contains(&format!("{}-", a.pid())),
        "A holds the event: {pending}"
    );
    let stream = redis.command("XRANGE burnlink:{webhooks}:events - +");
    let at = stream.find("msg_").expect("the event's id in the stream");
    let event_id = stream[at..at + 36].to_string();
    // Replica B runs; A is killed (SIGKILL) before it could deliver.

    let b = Server::start_with(&env);
    let pid = rustix::process::Pid::from_raw(a.pid() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
    drop(a);
    assert!(received(&log).is_empty());

    let _receiver = Receiver::start(&py, port, &log, 0);
    let all = wait_delivered(&log, 1, Duration::from_secs(60)).await;
    let delivered: Vec<_> = all.iter().filter(|r| r["status"] == 200).collect();
    assert_eq!(delivered.len(), 1, "{all:#?}");
    assert_eq!(delivered[0]["verified"], true);
    assert_eq!(delivered[0]["id"], event_id.as_str(), "the same webhook-id");
    assert_eq!(body(delivered[0])["type"], "link.transferred");
    // Acknowledged and removed once delivered.
    let mut left = String::new();
    for _ in 0..50 {
        left = redis.command("XLEN burnlink:{webhooks}:events");
        if left == ":0" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, ":0");
    assert!(b.log().contains("taking over events"), "{}", b.log());
}
