//! `POST /api/links`, link status, revocation, the compatibility API and bearer auth.

use crate::support::*;
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test]
async fn mint_response_and_field_errors() {
    let s = Server::start_with(&[
        ("BURNLINK_MAX_DOWNLOAD_BYTES", "100"),
        ("BURNLINK_TTL_MAX_S", "600"),
    ]);
    s.write("docs/a.txt", b"hello");
    s.write("big.bin", &[0u8; 101]);

    let (st, v) = s
        .mint_raw(
            Some(API_TOKEN),
            json!({"path": "docs/a.txt", "ttl_seconds": 60}),
        )
        .await;
    assert_eq!(st, 201);
    assert_eq!(v["path"], "docs/a.txt");
    assert_eq!(v["direction"], "download");
    assert_eq!(v["kind"], "file");
    assert_eq!(v["size"], 5);
    assert_eq!(v["expires_in_seconds"], 60);
    assert!(v["expires_at"].as_str().unwrap().ends_with('Z'));
    assert!(
        v["url"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}/transfer/", s.base))
    );
    assert!(
        v["url"]
            .as_str()
            .unwrap()
            .contains(v["token"].as_str().unwrap())
    );

    // Absolute inside the sandbox is accepted and answered relative.
    let abs = s.root.join("docs/a.txt");
    let (st, v) = s.mint_raw(Some(API_TOKEN), json!({"path": abs})).await;
    assert_eq!((st, v["path"].as_str().unwrap()), (201, "docs/a.txt"));

    // TTL above the maximum is clamped.
    let (st, v) = s
        .mint_raw(
            Some(API_TOKEN),
            json!({"path": "docs/a.txt", "ttl_seconds": 99999}),
        )
        .await;
    assert_eq!((st, v["expires_in_seconds"].as_u64()), (201, Some(600)));

    let cases: Vec<(Value, u16, &str)> = vec![
        (
            json!({"path": "docs/a.txt", "ttl_seconds": 0}),
            422,
            "invalid_ttl",
        ),
        (
            json!({"path": "docs/a.txt", "ttl_seconds": -3}),
            422,
            "invalid_ttl",
        ),
        (json!({"path": "missing.txt"}), 404, "not_found"),
        (json!({"path": "big.bin"}), 413, "too_large"),
        (json!({"path": "../etc/passwd"}), 403, "forbidden"),
        (json!({"path": "/etc/passwd"}), 403, "forbidden"),
        (
            json!({"path": "docs/a.txt", "session": "bad/session"}),
            400,
            "bad_request",
        ),
        (
            json!({"path": "docs/a.txt", "direction": "sideways"}),
            400,
            "bad_request",
        ),
        (
            json!({"path": "docs/a.txt", "sha256": "xyz"}),
            400,
            "bad_request",
        ),
        (json!({"nopath": 1}), 400, "bad_request"),
    ];
    // `curl -d` without a JSON content type still mints.
    let r = s
        .client
        .post(format!("{}/api/links", s.base))
        .bearer_auth(API_TOKEN)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(r#"{"path": "docs/a.txt"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = s
        .client
        .post(format!("{}/api/links", s.base))
        .bearer_auth(API_TOKEN)
        .body("path=docs/a.txt")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (400, "bad_request".into()));

    for (body, status, code) in cases {
        let (st, v) = s.mint_raw(Some(API_TOKEN), body.clone()).await;
        assert_eq!(
            (st, v["error"].as_str().unwrap_or("")),
            (status, code),
            "{body}"
        );
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    }
}

#[tokio::test]
async fn bearer_auth_is_required_and_pinned_tokens_stay_in_their_session() {
    let s = Server::start();
    s.write("root.txt", b"root");
    s.write("s1/mine.txt", b"mine");
    s.write("s2/theirs.txt", b"theirs");

    let (st, v) = s.mint_raw(None, json!({"path": "root.txt"})).await;
    assert_eq!((st, v["error"].as_str().unwrap()), (401, "unauthorized"));
    let (st, _) = s.mint_raw(Some("wrong"), json!({"path": "root.txt"})).await;
    assert_eq!(st, 401);

    // A pinned token with no session acts on its own.
    let (st, v) = s
        .mint_raw(Some(PINNED_TOKEN), json!({"path": "mine.txt"}))
        .await;
    assert_eq!(st, 201, "{v}");
    let r = s.get(v["url"].as_str().unwrap()).await;
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"mine");
    let (st, v) = s
        .mint_raw(
            Some(PINNED_TOKEN),
            json!({"path": "theirs.txt", "session": "s2"}),
        )
        .await;
    assert_eq!((st, v["error"].as_str().unwrap()), (403, "forbidden"));
    let (st, _) = s
        .mint_raw(Some(PINNED_TOKEN), json!({"path": "../s2/theirs.txt"}))
        .await;
    assert_eq!(st, 403);

    // An unpinned token may name any session.
    let (st, v) = s
        .mint_raw(
            Some(API_TOKEN),
            json!({"path": "theirs.txt", "session": "s2"}),
        )
        .await;
    assert_eq!(st, 201);
    let url = v["url"].as_str().unwrap();
    // ...but the pinned token may not look at that link.
    let token = burnlink::token::extract_token(url);
    let r = s.link_api(Method::GET, token, Some(PINNED_TOKEN)).await;
    assert_eq!(r.status(), 403);
    let r = s.link_api(Method::GET, token, None).await;
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn status_and_revoke() {
    let s = Server::start();
    s.write("f.txt", b"f");
    let url = s.mint("f.txt").await;
    let token = burnlink::token::extract_token(&url).to_string();
    let v: Value = s
        .link_api(Method::GET, &token, Some(API_TOKEN))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["state"], "unused");
    assert_eq!(v["direction"], "download");
    assert_eq!(v["path"], "f.txt");

    let r = s
        .api(Method::GET, "/api/links/garbage", Some(API_TOKEN))
        .await;
    assert_eq!(error_code(r).await, (404, "not_found".into()));

    let r = s.get(&url).await;
    assert_eq!(r.status(), 200);
    // Read the body: a client that hangs up before the body arrives leaves the link usable.
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"f");
    assert_eq!(s.settled_state(&url).await, "used");
    // A used link cannot be revoked; it stays used.
    let r = s.link_api(Method::DELETE, &token, Some(API_TOKEN)).await;
    assert_eq!(error_code(r).await, (404, "used".into()));

    let url = s.mint("f.txt").await;
    let token = burnlink::token::extract_token(&url).to_string();
    let r = s.link_api(Method::DELETE, &token, Some(API_TOKEN)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["state"], "revoked");
    assert_eq!(error_code(s.get(&url).await).await, (404, "revoked".into()));
}

#[tokio::test]
async fn compatibility_generate_and_stats() {
    let s = Server::start();
    s.write("s1/old.csv", b"a,b");
    s.write("s2/x.csv", b"x");

    let generate = |body: Value| {
        let s = &s;
        async move {
            let r = s
                .client
                .post(format!("{}/api/download/generate", s.base))
                .bearer_auth(API_TOKEN)
                .json(&body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (st, v) = generate(json!({"session_id": "s1", "file_path": "old.csv"})).await;
    assert_eq!(st, 200, "{v}");
    for field in [
        "token",
        "download_url",
        "expires_at",
        "file_type",
        "message",
    ] {
        assert!(v[field].is_string(), "{field} in {v}");
    }
    let url = v["download_url"].as_str().unwrap().to_string();
    let (st, v2) =
        generate(json!({"session_id": "s1", "file_path": "old.csv", "expiry_minutes": 600})).await;
    assert_eq!(st, 200);
    let exp = time::OffsetDateTime::parse(
        v2["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let left = exp.unix_timestamp() - now() as i64;
    assert!(
        (3590..=3600).contains(&left),
        "clamped to 60 minutes, got {left}s"
    );
    let (st, v3) =
        generate(json!({"session_id": "s1", "file_path": "old.csv", "expiry_minutes": 0})).await;
    assert_eq!((st, v3["error"].as_str().unwrap()), (422, "invalid_ttl"));
    let (st, _) = generate(json!({"session_id": "s2", "file_path": "x.csv"})).await;
    assert_eq!(st, 200);

    let r = s.get(&url).await;
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"a,b");
    assert_eq!(s.settled_state(&url).await, "used");

    let stats = |q: &'static str, token: &'static str| {
        let s = &s;
        async move {
            let r = s
                .api(Method::GET, &format!("/api/download/stats{q}"), Some(token))
                .await;
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    // The use is counted just after the burn becomes visible; allow it a moment.
    let mut v = Value::Null;
    for _ in 0..100 {
        let (st, got) = stats("?session_id=s1", API_TOKEN).await;
        assert_eq!(st, 200);
        v = got;
        if v["statistics"]["used_tokens"] == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        v["statistics"],
        json!({"total_tokens": 2, "active_tokens": 1, "used_tokens": 1, "expired_tokens": 0})
    );
    let (_, v) = stats("", API_TOKEN).await;
    assert_eq!(v["statistics"]["total_tokens"], 3);
    let (_, v) = stats("", PINNED_TOKEN).await;
    assert_eq!(
        v["statistics"]["total_tokens"], 2,
        "a pinned token sees its own session"
    );
    let (st, _) = stats("?session_id=s2", PINNED_TOKEN).await;
    assert_eq!(st, 403);
    let r = s.api(Method::GET, "/api/download/stats", None).await;
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn health_and_readiness() {
    let s = Server::start();
    let r = s.get(&format!("{}/healthz", s.base)).await;
    assert_eq!(r.status(), 200);
    let r = s.get(&format!("{}/readyz", s.base)).await;
    assert_eq!(r.status(), 200);
    let r = s.get(&format!("{}/no/such/route", s.base)).await;
    assert_eq!(error_code(r).await, (404, "not_found".into()));
}

#[tokio::test]
async fn no_token_key_or_api_token_ever_reaches_the_log() {
    let s = Server::start_with(&[("BURNLINK_TYPO_VARIABLE", "1")]);
    s.write("f.txt", b"f");
    let url = s.mint("f.txt").await;
    let token = burnlink::token::extract_token(&url).to_string();
    let r = s.get(&url).await;
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"f");
    assert_eq!(s.settled_state(&url).await, "used");
    let _ = s.get(&url).await; // a refused use is logged too
    let bad = s.api(Method::POST, "/api/links", Some("wrong-token")).await;
    assert_eq!(bad.status(), 401);

    let log = s.log();
    assert!(log.contains("event=\"mint\""), "{log}");
    assert!(log.contains("outcome=\"completed\""), "{log}");
    assert!(
        log.contains("BURNLINK_TYPO_VARIABLE"),
        "unknown variables are warned about"
    );
    let key = KEYS.split_once(':').unwrap().1;
    for secret in [token.as_str(), key, API_TOKEN, PINNED_TOKEN, "wrong-token"] {
        assert!(!log.contains(secret), "log contains a secret: {secret}");
    }
}
