//! Link previewers and mail scanners must not burn links meant for people (contract §2):
//! browsers get a page, programs get the bytes, and only the page's button transfers.
//! Driven over HTTP with reqwest and the curl binary; tests/browser.rs drives a real browser.

use crate::support::*;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap};
use serde_json::{Value, json};

/// What Chromium sends when a person opens a link.
const BROWSER: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,\
                       image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7";

async fn as_browser(s: &Server, url: &str) -> (u16, HeaderMap, String) {
    let r = s
        .client
        .get(url)
        .header(ACCEPT, BROWSER)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.text().await.unwrap())
}

/// The page's Download button: a form POST back to the same URL.
async fn press_download(s: &Server, url: &str) -> reqwest::Response {
    s.client
        .post(url)
        .header(ACCEPT, BROWSER)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body("burnlink=download")
        .send()
        .await
        .unwrap()
}

fn assert_page_headers(h: &HeaderMap) {
    assert_eq!(h[CONTENT_TYPE], "text/html; charset=utf-8");
    assert_eq!(h["cache-control"], "no-store");
    assert_eq!(h["referrer-policy"], "no-referrer");
    let csp = h["content-security-policy"].to_str().unwrap();
    for part in [
        "default-src 'none'",
        "script-src 'sha256-",
        "style-src 'sha256-",
        "form-action 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(part), "{part} missing from {csp}");
    }
}

#[tokio::test]
async fn a_previewer_sees_a_page_and_the_link_still_works_for_curl() {
    if require_tool("curl").is_none() {
        return;
    }
    let s = Server::start();
    let data = pattern(12_345);
    s.write("reports/q3 summary.pdf", &data);
    let url = s.mint("reports/q3 summary.pdf").await;

    // A chat previewer and a mail scanner: GET as a browser (no click), HEAD, a plain
    // `Accept: text/html`.
    let (status, headers, page) = as_browser(&s, &url).await;
    assert_eq!(status, 200);
    assert_page_headers(&headers);
    assert!(page.contains("q3 summary.pdf"), "{page}");
    assert!(page.contains("12 KB (12,345 bytes)"), "{page}");
    assert!(page.contains("Download"));
    assert!(page.contains(r#"<form id="download-form" method="post">"#));
    let head = s.client.head(&url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    let r = s
        .client
        .get(&url)
        .header(ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("q3 summary.pdf"));
    assert_eq!(s.state(&url).await, "unused");

    // curl sends */*: the bytes at once.
    let out = curl().arg(&url).output().unwrap();
    assert!(out.status.success());
    assert_eq!(sha256(&out.stdout), sha256(&data));
    assert_eq!(s.settled_state(&url).await, "used");
}

#[tokio::test]
async fn the_download_button_transfers_and_burns_and_then_the_page_says_used() {
    let s = Server::start();
    let data = pattern(70_000);
    s.write("photo.jpg", &data);
    let url = s.mint("photo.jpg").await;

    let r = press_download(&s, &url).await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment; filename=\"photo.jpg\"")
    );
    assert_eq!(r.headers()[CONTENT_TYPE], "image/jpeg");
    assert_eq!(sha256(&r.bytes().await.unwrap()), sha256(&data));
    assert_eq!(s.settled_state(&url).await, "used");

    let (status, headers, page) = as_browser(&s, &url).await;
    assert_eq!(status, 404);
    assert_page_headers(&headers);
    assert!(page.contains("already been used"), "{page}");
    assert!(page.contains("downloaded"), "{page}");
    // Programs still get the contract's JSON.
    assert_eq!(error_code(s.get(&url).await).await, (404, "used".into()));
    // A second press says so in words too.
    let r = press_download(&s, &url).await;
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("already been used"));
}

#[tokio::test]
async fn programs_get_the_bytes_at_once() {
    if require_tool("curl").is_none() {
        return;
    }
    let s = Server::start();
    let data = pattern(5_000);
    s.write("a.bin", &data);
    for accept in [
        "*/*",
        "",
        "application/octet-stream",
        "text/html;q=0.5, */*",
    ] {
        let url = s.mint("a.bin").await;
        let out = curl()
            .args(["-H", &format!("Accept: {accept}"), &url])
            .output()
            .unwrap();
        assert_eq!(sha256(&out.stdout), sha256(&data), "Accept: {accept:?}");
        assert_eq!(s.settled_state(&url).await, "used", "Accept: {accept:?}");
    }
    // wget's default.
    let url = s.mint("a.bin").await;
    let r = s
        .client
        .get(&url)
        .header(ACCEPT, "*/*")
        .send()
        .await
        .unwrap();
    assert_eq!(sha256(&r.bytes().await.unwrap()), sha256(&data));
}

#[tokio::test]
async fn a_post_that_is_not_the_button_does_not_download() {
    if require_tool("curl").is_none() {
        return;
    }
    let s = Server::start();
    s.write("a.txt", b"hello");
    let url = s.mint("a.txt").await;
    for (ctype, body) in [
        ("application/octet-stream", "burnlink=download"),
        ("application/x-www-form-urlencoded", "burnlink=downloadx"),
        ("application/x-www-form-urlencoded", ""),
    ] {
        let r = s
            .client
            .post(&url)
            .header(CONTENT_TYPE, ctype)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            error_code(r).await,
            (404, "not_found".into()),
            "{ctype} {body}"
        );
    }
    assert_eq!(s.state(&url).await, "unused");
    // curl can press the button too.
    let (status, body) = curl_status(&["-d", "burnlink=download", &url]);
    assert_eq!((status, body.as_str()), (200, "hello"));
}

#[tokio::test]
async fn expired_revoked_and_invalid_links_say_which_in_words() {
    let s = Server::start();
    s.write("a.txt", b"hello");

    let expired = format!(
        "{}/transfer/{}/a.txt",
        s.base,
        sign(&claims(
            burnlink::token::Direction::Download,
            "a.txt",
            now() - 5
        ))
    );
    let (status, headers, page) = as_browser(&s, &expired).await;
    assert_eq!(status, 410);
    assert_page_headers(&headers);
    assert!(page.contains("This link has expired"), "{page}");
    assert_eq!(
        error_code(s.get(&expired).await).await,
        (410, "expired".into())
    );

    let revoked = s.mint("a.txt").await;
    let r = s
        .link_api(reqwest::Method::DELETE, &revoked, Some(API_TOKEN))
        .await;
    assert!(r.status().is_success(), "{}", r.status());
    let (status, _, page) = as_browser(&s, &revoked).await;
    assert_eq!(status, 404);
    assert!(page.contains("This link was cancelled"), "{page}");
    assert_eq!(
        error_code(s.get(&revoked).await).await,
        (404, "revoked".into())
    );

    let tampered = format!("{}/transfer/AAAAbogus/a.txt", s.base);
    let (status, _, page) = as_browser(&s, &tampered).await;
    assert_eq!(status, 404);
    assert!(page.contains("This link is not valid"), "{page}");

    // A file that went away after minting.
    let gone = s.mint("a.txt").await;
    std::fs::remove_file(s.root.join("a.txt")).unwrap();
    let (status, _, page) = as_browser(&s, &gone).await;
    assert_eq!(status, 404);
    assert!(page.contains("no longer there"), "{page}");
}

#[tokio::test]
async fn hostile_file_names_are_shown_escaped() {
    let s = Server::start();
    let name = "<script>alert(1)&\"'.txt";
    s.write(name, b"x");
    let url = s.mint(name).await;
    let (status, _, page) = as_browser(&s, &url).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("&lt;script&gt;alert(1)&amp;&quot;'.txt"),
        "{page}"
    );
    assert!(!page.contains("<script>alert"));
}

#[tokio::test]
async fn an_upload_link_in_a_browser_shows_the_upload_page_and_programs_still_get_404() {
    if require_tool("curl").is_none() {
        return;
    }
    let s = Server::start();
    let minted = s
        .mint_upload(json!({ "path": "in/scan.pdf", "max_bytes": 2_000_000, "overwrite": false }))
        .await;
    let url = minted["url"].as_str().unwrap();
    let (status, headers, page) = as_browser(&s, url).await;
    assert_eq!(status, 200);
    assert_page_headers(&headers);
    // Its connection is not left idle for the upload's bytes to reuse.
    assert_eq!(headers["connection"], "close");
    assert!(page.contains("scan.pdf"));
    assert!(page.contains("2.0 MB"), "{page}");
    assert!(page.contains(r#"data-cap="2000000""#));
    assert!(page.contains(r#"type="file""#));
    assert!(page.contains("will not be replaced"));
    assert!(!page.contains("enctype"), "the form never posts multipart");
    // Downloading an upload link is still "not found" for programs.
    assert_eq!(
        error_code(s.get(url).await).await,
        (404, "not_found".into())
    );
    assert_eq!(s.state(url).await, "unused");

    // The page's request: the raw bytes, as curl sends them.
    let r = s
        .client
        .post(url)
        .header(ACCEPT, "application/json")
        .header(CONTENT_TYPE, "application/octet-stream")
        .body(b"%PDF-1.7 scan".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["bytes"], 13);
    assert_eq!(
        std::fs::read(s.root.join("in/scan.pdf")).unwrap(),
        b"%PDF-1.7 scan"
    );

    let (status, _, page) = as_browser(&s, url).await;
    assert_eq!(status, 404);
    assert!(page.contains("uploaded through this link"), "{page}");
}

#[tokio::test]
async fn the_compat_alias_behaves_the_same() {
    let s = Server::start();
    s.write("a.txt", b"hello");
    let url = s.mint("a.txt").await;
    let token = burnlink::token::extract_token(&url).to_string();
    let alias = format!("{}/api/download/{token}", s.base);
    let (status, _, page) = as_browser(&s, &alias).await;
    assert_eq!(status, 200);
    assert!(page.contains("a.txt"));
    assert_eq!(s.state(&url).await, "unused");
    let r = press_download(&s, &alias).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"hello");
    assert_eq!(s.settled_state(&url).await, "used");
}

#[tokio::test]
async fn with_the_page_turned_off_browsers_get_the_bytes() {
    let s = Server::start_with(&[("BURNLINK_BROWSER_CONFIRM", "false")]);
    s.write("a.txt", b"hello");
    let url = s.mint("a.txt").await;
    let (status, headers, body) = as_browser(&s, &url).await;
    assert_eq!((status, body.as_str()), (200, "hello"));
    assert!(
        headers["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    assert_eq!(s.settled_state(&url).await, "used");
    // Failures are still explained to people.
    let (status, _, page) = as_browser(&s, &url).await;
    assert_eq!(status, 404);
    assert!(page.contains("already been used"), "{page}");
}

#[tokio::test]
async fn a_directory_page_shows_the_sum_of_its_files_and_uses_nothing() {
    let s = Server::start();
    s.write("photos/a.jpg", &[1u8; 1500]);
    s.write("photos/raw/b.jpg", &[2u8; 2500]);
    let url = s.mint("photos").await;
    let r = s
        .client
        .get(&url)
        .header("Accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("photos.zip"), "{html}");
    assert!(
        html.contains("4.0 KB (4,000 bytes), in a folder sent as a zip file"),
        "{html}"
    );
    assert_eq!(s.state(&url).await, "unused");
}
