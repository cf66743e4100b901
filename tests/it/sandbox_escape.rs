//! Paths never leave the sandbox, at mint time or at transfer time.

use crate::support::*;
use serde_json::json;

#[tokio::test]
async fn hostile_paths_are_refused_at_mint() {
    let s = Server::start();
    let outside = s.dir.path().join("secret.txt");
    std::fs::write(&outside, b"secret").unwrap();
    std::os::unix::fs::symlink(&outside, s.root.join("abs-link")).unwrap();
    std::os::unix::fs::symlink("../secret.txt", s.root.join("rel-link")).unwrap();
    s.write("s1/ok.txt", b"ok");
    std::os::unix::fs::symlink("../s1/ok.txt", s.root.join("s1/self-link")).unwrap();

    for path in [
        "../secret.txt",
        "a/../../secret.txt",
        outside.to_str().unwrap(),
        "abs-link",
        "rel-link",
        "/etc/passwd",
    ] {
        let (st, v) = s.mint_raw(Some(API_TOKEN), json!({"path": path})).await;
        assert_eq!(
            (st, v["error"].as_str().unwrap_or("")),
            (403, "forbidden"),
            "{path}"
        );
    }
    // Inside session s1, a link to `../s1/ok.txt` climbs out of s1 first: refused.
    let (st, _) = s
        .mint_raw(
            Some(API_TOKEN),
            json!({"path": "self-link", "session": "s1"}),
        )
        .await;
    assert_eq!(st, 403);
    let (st, _) = s
        .mint_raw(Some(API_TOKEN), json!({"path": "..", "session": "s1"}))
        .await;
    assert_eq!(st, 403);
}

#[tokio::test]
async fn a_file_swapped_for_an_escaping_symlink_after_minting_is_not_found() {
    let s = Server::start();
    let outside = s.dir.path().join("secret.txt");
    std::fs::write(&outside, b"secret").unwrap();
    let p = s.write("swap.txt", b"innocent");
    let url = s.mint("swap.txt").await;

    std::fs::remove_file(&p).unwrap();
    std::os::unix::fs::symlink(&outside, &p).unwrap();
    let r = s.get(&url).await;
    assert_eq!(error_code(r).await, (404, "not_found".into()));
    let r = s.client.head(&url).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(s.settled_state(&url).await, "unused");
}
