//! The client address in audit lines (and for `ip`-restricted links): the peer's, or
//! `X-Forwarded-For` only when the peer is a trusted proxy.

use crate::support::*;
use serde_json::json;

async fn mint_as(s: &Server, forwarded_for: &str, body: serde_json::Value) -> serde_json::Value {
    let r = s
        .client
        .post(format!("{}/api/links", s.base))
        .bearer_auth(API_TOKEN)
        .header("x-forwarded-for", forwarded_for)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    r.json().await.unwrap()
}

#[tokio::test]
async fn forwarded_for_is_believed_only_from_a_trusted_proxy() {
    let trusting = Server::start_with(&[("BURNLINK_TRUSTED_PROXIES", "127.0.0.0/8")]);
    let wary = Server::start();
    for s in [&trusting, &wary] {
        s.write("f.txt", b"f");
        let minted = mint_as(
            s,
            "203.0.113.7",
            json!({ "path": "f.txt", "ip": "203.0.113.0/24" }),
        )
        .await;
        let url = minted["url"].as_str().unwrap();
        let r = s
            .client
            .get(url)
            .header("x-forwarded-for", "203.0.113.7")
            .send()
            .await
            .unwrap();
        if std::ptr::eq(s, &trusting) {
            assert_eq!(r.status(), 200, "the proxy's word is taken");
            assert_eq!(r.bytes().await.unwrap().as_ref(), b"f");
            assert_eq!(s.settled_state(url).await, "used");
        } else {
            assert_eq!(
                error_code(r).await,
                (403, "forbidden".into()),
                "a forged header is ignored"
            );
        }
    }
    let log = trusting.log();
    let audit: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("burnlink::audit"))
        .collect();
    assert!(
        audit
            .iter()
            .any(|l| l.contains("event=\"mint\"") && l.contains("client=203.0.113.7")),
        "{log}"
    );
    let transfer = audit
        .iter()
        .find(|l| l.contains("event=\"transfer\""))
        .unwrap_or_else(|| panic!("{log}"));
    for field in [
        "client=203.0.113.7",
        "direction=\"download\"",
        "session=\"-\"",
        "path=f.txt",
        "outcome=\"completed\"",
        "bytes=1",
        "link=",
    ] {
        assert!(transfer.contains(field), "{field} in {transfer}");
    }
    let log = wary.log();
    assert!(
        log.lines()
            .any(|l| l.contains("event=\"mint\"") && l.contains("client=127.0.0.1")),
        "{log}"
    );
    assert!(!log.contains("203.0.113.7"), "{log}");
}
