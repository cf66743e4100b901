//! Per-address rate limits: failed token checks and minting answer 429 `rate_limited` with
//! `Retry-After`, keyed by the client address (X-Forwarded-For only from a trusted proxy).

use crate::support::*;
use reqwest::Method;
use serde_json::json;

async fn get_as(s: &Server, url: &str, forwarded_for: Option<&str>) -> reqwest::Response {
    let mut req = s.client.get(url);
    if let Some(ip) = forwarded_for {
        req = req.header("x-forwarded-for", ip);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn too_many_failed_token_checks_slow_the_failures_and_never_the_honest() {
    let s = Server::start_with(&[
        ("BURNLINK_RATE_FAILED_PER_MIN", "5"),
        ("BURNLINK_TRUSTED_PROXIES", "127.0.0.1"),
    ]);
    s.write("f.txt", b"file");
    let used = s.mint("f.txt").await;
    let kept = s.mint("f.txt").await;
    assert_eq!(s.get(&used).await.bytes().await.unwrap().as_ref(), b"file");
    assert_eq!(s.settled_state(&used).await, "used");
    // Genuine links that are spent are not guesses: never limited.
    for _ in 0..20 {
        assert_eq!(error_code(s.get(&used).await).await, (404, "used".into()));
    }

    // Forged tokens: 404 while the allowance (5) lasts, then 429 for each further failure.
    let mut forged = burnlink::token::extract_token(&kept).to_string();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let forged_url = format!("{}/transfer/{forged}/f.txt", s.base);
    let mut codes = Vec::new();
    for _ in 0..8 {
        codes.push(error_code(s.get(&forged_url).await).await.0);
    }
    assert_eq!(codes[..5], [404; 5], "{codes:?}");
    assert_eq!(codes[5..], [429; 3], "{codes:?}");
    // A failure past the allowance carries a Retry-After a client can obey.
    let r = s.get(&forged_url).await;
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=12).contains(&retry), "{retry}");
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"], "rate_limited");
    assert!(v["message"].as_str().unwrap().contains("retry"));

    // The honest user behind the same address is served at once: a valid link, a valid
    // bearer token (many users share one address behind a NAT or a balancer).
    let mine = s.mint("f.txt").await;
    let r = s.get(&mine).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"file");
    // Health and metrics answer too.
    assert_eq!(s.get(&format!("{}/healthz", s.base)).await.status(), 200);
    assert_eq!(s.get(&format!("{}/metrics", s.base)).await.status(), 200);

    // Another client behind the trusted proxy is not affected, and the link still works.
    let r = get_as(&s, &kept, Some("198.51.100.7")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"file");
    // The audit line (written as the transfer settles, just after) names that client.
    for _ in 0..100 {
        if s.log().contains("client=198.51.100.7") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(s.log().contains("client=198.51.100.7"), "{}", s.log());
}

#[tokio::test]
async fn wrong_bearer_tokens_count_as_failed_checks() {
    let s = Server::start_with(&[("BURNLINK_RATE_FAILED_PER_MIN", "3")]);
    let mut codes = Vec::new();
    for _ in 0..6 {
        let r = s.api(Method::POST, "/api/links", Some("guess")).await;
        codes.push(r.status().as_u16());
    }
    assert_eq!(codes, [401, 401, 401, 429, 429, 429]);
    // The right bearer token from the same address is served at once.
    s.write("x", b"x");
    let (status, body) = s.mint_raw(Some(API_TOKEN), json!({ "path": "x" })).await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn minting_is_paced_per_address_when_configured() {
    let s = Server::start_with(&[
        ("BURNLINK_RATE_MINT_PER_S", "1"),
        ("BURNLINK_RATE_MINT_BURST", "2"),
        ("BURNLINK_TRUSTED_PROXIES", "127.0.0.0/8"),
    ]);
    s.write("f.txt", b"f");
    for _ in 0..2 {
        let (status, body) = s
            .mint_raw(Some(API_TOKEN), json!({ "path": "f.txt" }))
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let r = s
        .client
        .post(format!("{}/api/links", s.base))
        .bearer_auth(API_TOKEN)
        .json(&json!({ "path": "f.txt" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(error_code(r).await, (429, "rate_limited".into()));
    // The compatibility route mints through the same limit.
    let r = s
        .client
        .post(format!("{}/api/download/generate", s.base))
        .bearer_auth(API_TOKEN)
        .json(&json!({ "file_path": "f.txt" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    // Another client (as forwarded by the trusted proxy) has its own allowance.
    let r = s
        .client
        .post(format!("{}/api/links", s.base))
        .bearer_auth(API_TOKEN)
        .header("x-forwarded-for", "203.0.113.9")
        .json(&json!({ "path": "f.txt" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let (status, _) = s
        .mint_raw(Some(API_TOKEN), json!({ "path": "f.txt" }))
        .await;
    assert_eq!(status, 429, "still paced");
    assert_eq!(s.get(&format!("{}/healthz", s.base)).await.status(), 200);
}

#[tokio::test]
async fn a_browser_past_its_allowance_is_told_in_words_and_its_bad_links_count() {
    let s = Server::start_with(&[("BURNLINK_RATE_FAILED_PER_MIN", "2")]);
    s.write("f.txt", b"file");
    let kept = s.mint("f.txt").await;
    let forged_url = format!("{}/transfer/not-a-token/f.txt", s.base);
    let page = |url: String| {
        let client = s.client.clone();
        async move {
            let r = client
                .get(url)
                .header("Accept", "text/html,application/xhtml+xml,*/*;q=0.8")
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let retry = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            let html = r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html");
            (status, retry, html, r.text().await.unwrap())
        }
    };
    // Bad links seen as pages count like the JSON ones: 2, plus the one that finds none left.
    let mut codes = Vec::new();
    for _ in 0..4 {
        let (status, _, html, _) = page(forged_url.clone()).await;
        assert!(html);
        codes.push(status);
    }
    assert_eq!(codes, [404, 404, 429, 429]);
    let (status, retry, html, text) = page(forged_url.clone()).await;
    assert_eq!(status, 429);
    assert!(html, "a browser gets a page, not JSON");
    assert!(
        text.contains("Too many attempts from your network"),
        "{text}"
    );
    let retry: u64 = retry.expect("Retry-After on the page").parse().unwrap();
    assert!((1..=31).contains(&retry), "{retry}");
    // curl still gets the JSON.
    assert_eq!(
        error_code(s.get(&forged_url).await).await,
        (429, "rate_limited".into())
    );
    // And the genuine link opens its page at once.
    let (status, _, html, text) = page(kept.clone()).await;
    assert_eq!(status, 200);
    assert!(html && text.contains("Download"), "{text}");
}

#[tokio::test]
async fn a_token_that_is_not_even_utf8_is_a_counted_json_not_found() {
    let s = Server::start_with(&[("BURNLINK_RATE_FAILED_PER_MIN", "2")]);
    let transfer = format!("{}/transfer/%FF%FE/x", s.base);
    let api = "/api/links/%FF%FE";
    assert_eq!(
        error_code(s.get(&transfer).await).await,
        (404, "not_found".into())
    );
    let r = s.api(Method::GET, api, Some(API_TOKEN)).await;
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(error_code(r).await, (404, "not_found".into()));
    // Both counted: the allowance of 2 is spent.
    assert_eq!(
        error_code(s.get(&transfer).await).await,
        (429, "rate_limited".into())
    );
}
