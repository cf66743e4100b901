//! Links for several uses (`max_uses`): at most as many transfers at once as uses remain (the
//! rest 409), each completed transfer consumes one, a dropped one consumes none, the last one
//! burns the link, and a revocation stops the rest. Downloads and uploads alike.

use crate::support::*;
use futures_util::StreamExt;
use serde_json::{Value, json};

/// Mints a download link with `max_uses` and returns (url, mint response).
async fn mint_uses(s: &Server, path: &str, uses: u64) -> (String, Value) {
    let (status, body) = s
        .mint_raw(Some(API_TOKEN), json!({ "path": path, "max_uses": uses }))
        .await;
    assert_eq!(status, 201, "{body}");
    (body["url"].as_str().unwrap().to_string(), body)
}

async fn status(s: &Server, url: &str) -> Value {
    s.link_api(reqwest::Method::GET, url, Some(API_TOKEN))
        .await
        .json()
        .await
        .unwrap()
}

/// `n` concurrent GETs of `url`: how many completed with the whole body, and every status.
pub async fn concurrent_gets(urls: Vec<String>, len: usize) -> (usize, Vec<u16>) {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .unwrap();
    let tasks: Vec<_> = urls
        .into_iter()
        .map(|url| {
            let client = client.clone();
            tokio::spawn(async move {
                let resp = client.get(&url).send().await.unwrap();
                let code = resp.status().as_u16();
                let body = resp.bytes().await.unwrap();
                (code, code == 200 && body.len() == len)
            })
        })
        .collect();
    let mut complete = 0;
    let mut codes = Vec::new();
    for t in tasks {
        let (code, whole) = t.await.unwrap();
        complete += whole as usize;
        codes.push(code);
    }
    (complete, codes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_three_use_link_under_32_concurrent_gets_gives_exactly_three_downloads() {
    let s = Server::start();
    let data = pattern(512 * 1024);
    s.write("three.bin", &data);
    let (url, minted) = mint_uses(&s, "three.bin", 3).await;
    assert_eq!(minted["max_uses"], 3);
    let st = status(&s, &url).await;
    assert_eq!(
        (st["state"].as_str(), st["uses"].as_u64()),
        (Some("unused"), Some(0))
    );
    assert_eq!(st["max_uses"], 3);

    let (complete, codes) = concurrent_gets(vec![url.clone(); 32], data.len()).await;
    assert_eq!(complete, 3, "{codes:?}");
    assert!(
        codes.iter().all(|c| [200, 404, 409].contains(c)),
        "{codes:?}"
    );
    assert_eq!(s.settled_state(&url).await, "used");
    let st = status(&s, &url).await;
    assert_eq!(st["uses"], 3);
    let (code, error) = error_code(s.get(&url).await).await;
    assert_eq!((code, error.as_str()), (404, "used"));
}

#[tokio::test]
async fn a_dropped_download_of_a_two_use_link_consumes_no_use() {
    let s = Server::start();
    let data = pattern(16 * 1024 * 1024);
    s.write("two.bin", &data);
    let (url, _) = mint_uses(&s, "two.bin", 2).await;

    let resp = s.get(&url).await;
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let mut got = 0usize;
    while got < 256 * 1024 {
        got += stream.next().await.unwrap().unwrap().len();
    }
    drop(stream);
    assert_eq!(s.settled_state(&url).await, "unused");
    assert_eq!(status(&s, &url).await["uses"], 0, "two uses left");

    for uses in 1..=2 {
        let body = s.get(&url).await.bytes().await.unwrap();
        assert_eq!(sha256(&body), sha256(&data));
        let st = status(&s, &url).await;
        if st["state"] == "in_progress" {
            assert_eq!(
                s.settled_state(&url).await,
                if uses == 2 { "used" } else { "unused" }
            );
        }
        assert_eq!(status(&s, &url).await["uses"], uses);
    }
    assert_eq!(s.settled_state(&url).await, "used");
    let (code, error) = error_code(s.get(&url).await).await;
    assert_eq!((code, error.as_str()), (404, "used"));
}

#[tokio::test]
async fn an_n_use_upload_link_takes_n_uploads_each_replacing_the_file() {
    let s = Server::start();
    let minted = s
        .mint_upload(json!({ "path": "in/report.txt", "max_uses": 3 }))
        .await;
    assert_eq!(minted["max_uses"], 3);
    let url = minted["url"].as_str().unwrap().to_string();
    for i in 1..=3u64 {
        let body = format!("version {i}");
        let resp = s.client.put(&url).body(body.clone()).send().await.unwrap();
        assert_eq!(resp.status(), 201);
        assert_eq!(
            std::fs::read_to_string(s.root.join("in/report.txt")).unwrap(),
            body
        );
        assert_eq!(
            s.settled_state(&url).await,
            if i == 3 { "used" } else { "unused" }
        );
        let st = status(&s, &url).await;
        assert_eq!(st["uses"], i);
        assert_eq!(st["bytes"], body.len() as u64, "the last upload's receipt");
        assert_eq!(st["sha256"], hex(&sha256(body.as_bytes())));
    }
    let resp = s.client.put(&url).body("four").send().await.unwrap();
    let (code, error) = error_code(resp).await;
    assert_eq!((code, error.as_str()), (404, "used"));
    assert_eq!(
        std::fs::read_to_string(s.root.join("in/report.txt")).unwrap(),
        "version 3"
    );
}

#[tokio::test]
async fn a_several_use_upload_link_without_overwrite_is_refused_once_the_file_exists() {
    let s = Server::start();
    let minted = s
        .mint_upload(json!({ "path": "once.txt", "max_uses": 2, "overwrite": false }))
        .await;
    let url = minted["url"].as_str().unwrap().to_string();
    let resp = s.client.put(&url).body("first").send().await.unwrap();
    assert_eq!(resp.status(), 201);
    let resp = s.client.put(&url).body("second").send().await.unwrap();
    let (code, error) = error_code(resp).await;
    assert_eq!((code, error.as_str()), (409, "exists"));
    assert_eq!(
        std::fs::read_to_string(s.root.join("once.txt")).unwrap(),
        "first"
    );
    let st = status(&s, &url).await;
    assert_eq!(
        (st["state"].as_str(), st["uses"].as_u64()),
        (Some("unused"), Some(1))
    );
}

#[tokio::test]
async fn revoking_a_several_use_link_stops_the_remaining_uses() {
    let s = Server::start();
    s.write("r.txt", b"revocable");
    let (url, _) = mint_uses(&s, "r.txt", 5).await;
    assert_eq!(s.get(&url).await.bytes().await.unwrap(), &b"revocable"[..]);
    s.settled_state(&url).await;
    let resp = s
        .link_api(reqwest::Method::DELETE, &url, Some(API_TOKEN))
        .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        (body["state"].as_str(), body["uses"].as_u64()),
        (Some("revoked"), Some(1))
    );
    let (code, error) = error_code(s.get(&url).await).await;
    assert_eq!((code, error.as_str()), (404, "revoked"));
    let st = status(&s, &url).await;
    assert_eq!(
        (
            st["state"].as_str(),
            st["uses"].as_u64(),
            st["max_uses"].as_u64()
        ),
        (Some("revoked"), Some(1), Some(5))
    );
}

#[tokio::test]
async fn max_uses_is_clamped_to_the_ceiling_and_zero_is_refused() {
    let s = Server::start_with(&[("BURNLINK_MAX_USES", "4")]);
    s.write("c.txt", b"c");
    let (_, minted) = mint_uses(&s, "c.txt", 1000).await;
    assert_eq!(minted["max_uses"], 4);
    let (_, minted) = s
        .mint_raw(Some(API_TOKEN), json!({ "path": "c.txt" }))
        .await;
    assert_eq!(minted["max_uses"], 1, "one use by default");
    let (status, body) = s
        .mint_raw(Some(API_TOKEN), json!({ "path": "c.txt", "max_uses": 0 }))
        .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("bad_request")));
}
