//! Every row of the contract's status table that applies to downloads, against the real binary.

use crate::support::*;
use burnlink::token::Direction;
use reqwest::Method;
use reqwest::header;

#[tokio::test]
async fn success_carries_the_contract_headers_and_burns() {
    let s = Server::start();
    s.write("report.pdf", b"%PDF-1.7 hello");
    let url = s.mint("report.pdf").await;
    assert!(url.ends_with("/report.pdf"), "{url}");
    assert_eq!(s.state(&url).await, "unused");

    let resp = s.get(&url).await;
    assert_eq!(resp.status(), 200);
    let h = resp.headers().clone();
    assert_eq!(h[header::CONTENT_TYPE], "application/pdf");
    assert_eq!(h[header::CONTENT_LENGTH], "14");
    assert_eq!(h[header::CACHE_CONTROL], "no-store");
    assert_eq!(h[header::REFERRER_POLICY], "no-referrer");
    assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(h[header::ACCEPT_RANGES], "bytes");
    assert_eq!(
        h[header::CONTENT_DISPOSITION],
        "attachment; filename=\"report.pdf\"; filename*=UTF-8''report.pdf"
    );
    assert_eq!(resp.bytes().await.unwrap().as_ref(), b"%PDF-1.7 hello");

    assert_eq!(s.settled_state(&url).await, "used");
    assert_eq!(error_code(s.get(&url).await).await, (404, "used".into()));
}

#[tokio::test]
async fn the_name_segment_is_cosmetic_and_the_compat_alias_works() {
    let s = Server::start();
    s.write("a.txt", b"aaa");
    let url = s.mint("a.txt").await;
    let token = burnlink::token::extract_token(&url).to_string();

    // HEAD on every route shape answers metadata and never burns.
    for u in [
        url.clone(),
        format!("{}/transfer/{token}", s.base),
        format!("{}/transfer/{token}/anything-else.bin", s.base),
        format!("{}/api/download/{token}", s.base),
    ] {
        let r = s.client.head(&u).send().await.unwrap();
        assert_eq!(r.status(), 200, "{u}");
        assert_eq!(r.headers()[header::CONTENT_LENGTH], "3");
    }
    assert_eq!(s.state(&url).await, "unused");

    let r = s.get(&format!("{}/api/download/{token}", s.base)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"aaa");
    assert_eq!(s.settled_state(&url).await, "used");
    let r = s.client.head(&url).send().await.unwrap();
    assert_eq!(r.status(), 404, "HEAD reports a used link too");
}

#[tokio::test]
async fn malformed_tampered_unknown_key_and_wrong_direction_are_not_found() {
    let s = Server::start();
    s.write("f.txt", b"data");
    let url = s.mint("f.txt").await;
    let token = burnlink::token::extract_token(&url).to_string();

    let mut tampered = token.clone().into_bytes();
    let i = tampered.len() / 2;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();

    let other_key =
        burnlink::token::Keyring::parse(&burnlink::token::generate_key_entry()).unwrap();
    let unknown_key = other_key.sign(&claims(Direction::Download, "f.txt", now() + 600));
    let upload_token = sign(&claims(Direction::Upload, "f.txt", now() + 600));

    for (what, t) in [
        ("malformed", "not-a-token".to_string()),
        ("empty-ish", "A".to_string()),
        ("tampered", tampered),
        ("truncated", token[..token.len() - 4].to_string()),
        ("unknown key", unknown_key),
        ("wrong direction", upload_token),
    ] {
        let r = s.get(&format!("{}/transfer/{t}", s.base)).await;
        assert_eq!(error_code(r).await, (404, "not_found".into()), "{what}");
    }
    // None of that touched the real link.
    let r = s.get(&url).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn expired_is_gone_and_revoked_is_not_found() {
    let s = Server::start();
    s.write("f.txt", b"data");
    let expired = sign(&claims(Direction::Download, "f.txt", now() - 5));
    let r = s.get(&format!("{}/transfer/{expired}/f.txt", s.base)).await;
    assert_eq!(error_code(r).await, (410, "expired".into()));

    let url = s.mint("f.txt").await;
    let token = burnlink::token::extract_token(&url).to_string();
    let r = s.link_api(Method::DELETE, &token, Some(API_TOKEN)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(error_code(s.get(&url).await).await, (404, "revoked".into()));
    assert_eq!(s.state(&url).await, "revoked");
}

#[tokio::test]
async fn ranges_give_206_and_unsatisfiable_gives_416_without_burning() {
    let s = Server::start();
    let data = pattern(1000);
    s.write("r.bin", &data);
    let url = s.mint("r.bin").await;

    let r = s
        .client
        .get(&url)
        .header(header::RANGE, "bytes=2000-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(r.headers()[header::CONTENT_RANGE], "bytes */1000");
    assert_eq!(error_code(r).await.1, "range_not_satisfiable");
    assert_eq!(s.settled_state(&url).await, "unused");

    let r = s
        .client
        .get(&url)
        .header(header::RANGE, "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()[header::CONTENT_RANGE], "bytes 10-19/1000");
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[10..20]);
    assert_eq!(
        s.settled_state(&url).await,
        "unused",
        "a middle range does not burn"
    );

    // Several ranges: the whole file, 200 (and that burns).
    let r = s
        .client
        .get(&url)
        .header(header::RANGE, "bytes=0-1,5-6")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[..]);
    assert_eq!(s.settled_state(&url).await, "used");

    // A tail probe delivers the final byte, so it burns.
    let url = s.mint("r.bin").await;
    let r = s
        .client
        .get(&url)
        .header(header::RANGE, "bytes=-100")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[900..]);
    assert_eq!(s.settled_state(&url).await, "used");
}

#[tokio::test]
async fn a_link_to_a_file_that_is_gone_is_not_found_and_stays_usable() {
    let s = Server::start();
    let p = s.write("later.txt", b"v1");
    let url = s.mint("later.txt").await;
    std::fs::remove_file(&p).unwrap();
    assert_eq!(
        error_code(s.get(&url).await).await,
        (404, "not_found".into())
    );
    assert_eq!(s.settled_state(&url).await, "unused");
    std::fs::write(&p, b"v2").unwrap();
    let r = s.get(&url).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"v2");
}

#[tokio::test]
async fn an_ip_restricted_link_refuses_other_clients() {
    let s = Server::start();
    s.write("f.txt", b"data");
    let mut c = claims(Direction::Download, "f.txt", now() + 600);
    c.ip = Some("203.0.113.0/24".parse().unwrap());
    let t = sign(&c);
    let r = s.get(&format!("{}/transfer/{t}", s.base)).await;
    assert_eq!(error_code(r).await, (403, "forbidden".into()));
    let mut c = claims(Direction::Download, "f.txt", now() + 600);
    c.ip = Some("127.0.0.0/8".parse().unwrap());
    let t = sign(&c);
    assert_eq!(
        s.get(&format!("{}/transfer/{t}", s.base)).await.status(),
        200
    );
}
