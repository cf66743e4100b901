//! A whole session at `trace` level, in text and in JSON: no link token, signing key or API
//! token ever reaches the server's log.

use crate::support::*;
use burnlink::token::{Direction, extract_token};
use reqwest::Method;
use serde_json::json;

/// Runs mints, downloads, an upload, status calls, a revoke and every kind of refusal; returns
/// every secret the session handled.
async fn session(s: &Server) -> Vec<String> {
    let mut secrets = vec![
        KEYS.split_once(':').unwrap().1.to_string(),
        API_TOKEN.to_string(),
        PINNED_TOKEN.to_string(),
        "wrong-api-token".to_string(),
    ];
    s.write("docs/report.pdf", &pattern(100_000));
    let download = s.mint("docs/report.pdf").await;
    let revoked = s.mint("docs/report.pdf").await;
    let upload = s
        .mint_upload(json!({ "path": "in/a.bin", "max_bytes": 1000 }))
        .await["url"]
        .as_str()
        .unwrap()
        .to_string();
    let compat: serde_json::Value = s
        .client
        .post(format!("{}/api/download/generate", s.base))
        .bearer_auth(PINNED_TOKEN)
        .json(&json!({ "file_path": "missing.txt" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(compat["error"], "not_found");
    let expired = sign(&claims(Direction::Download, "docs/report.pdf", now() - 5));
    let mut forged = extract_token(&download).to_string();
    forged.insert(10, 'x');
    for url in [&download, &revoked, &upload] {
        secrets.push(extract_token(url).to_string());
    }
    secrets.push(expired.clone());
    secrets.push(forged.clone());

    // Downloads: HEAD, a range, the whole file, again (used).
    assert_eq!(s.client.head(&download).send().await.unwrap().status(), 200);
    let r = s
        .client
        .get(&download)
        .header("range", "bytes=0-9")
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().len(), 10);
    assert_eq!(s.settled_state(&download).await, "unused");
    assert_eq!(s.get(&download).await.bytes().await.unwrap().len(), 100_000);
    assert_eq!(s.settled_state(&download).await, "used");
    assert_eq!(error_code(s.get(&download).await).await.1, "used");
    // Uploads: too large, digest mismatch, then fine.
    let r = s
        .client
        .put(&upload)
        .body(vec![0u8; 2000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let r = s
        .client
        .put(&upload)
        .header(
            "content-digest",
            "sha-256=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:",
        )
        .body(vec![1u8; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let r = s
        .client
        .post(&upload)
        .body(vec![1u8; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // Status, revoke, refusals.
    assert_eq!(s.state(&upload).await, "used");
    let r = s.link_api(Method::DELETE, &revoked, Some(API_TOKEN)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(error_code(s.get(&revoked).await).await.1, "revoked");
    let r = s.link_api(Method::GET, &revoked, Some(PINNED_TOKEN)).await;
    assert_eq!(r.status(), 403);
    for (token, code) in [(&expired, "expired"), (&forged, "not_found")] {
        let r = s.get(&format!("{}/transfer/{token}/x", s.base)).await;
        assert_eq!(error_code(r).await.1, code);
    }
    let r = s
        .link_api(Method::GET, &download, Some("wrong-api-token"))
        .await;
    assert_eq!(r.status(), 401);
    let r = s
        .client
        .post(format!("{}/api/links", s.base))
        .bearer_auth(API_TOKEN)
        .body("{\"path\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    secrets
}

async fn check(format: &str) {
    let s = Server::start_with(&[("BURNLINK_LOG", "trace"), ("BURNLINK_LOG_FORMAT", format)]);
    let secrets = session(&s).await;
    // Let the last transfers settle and log.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let log = s.log();
    assert!(log.contains("event"), "the log has audit lines: {log}");
    assert!(
        log.contains("digest_mismatch") && log.contains("revoke"),
        "{log}"
    );
    for secret in &secrets {
        assert!(
            !log.contains(secret.as_str()),
            "{format} log contains a secret: {secret}"
        );
    }
}

#[tokio::test]
async fn no_secret_in_a_trace_level_text_log() {
    check("text").await;
}

#[tokio::test]
async fn no_secret_in_a_trace_level_json_log() {
    check("json").await;
}
