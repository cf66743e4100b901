//! One error map: the same fault on disk gets the same status and code on every transfer path
//! (a file download, a directory archive, the confirmation page a browser sees, an upload),
//! and a refused upload is audited and leaves the link usable.

use std::os::unix::fs::symlink;
use std::path::Path;

use serde_json::json;

use crate::support::Server;

/// The four transfer paths for one server: their answers as (status, code), the code read from
/// the JSON body or, for the page, from the status alone.
async fn answers(
    s: &Server,
    file: &str,
    dir: &str,
    upload: &str,
) -> Vec<(&'static str, u16, String)> {
    let mut out = Vec::new();
    for (what, url) in [("download", file), ("directory", dir)] {
        let r = s.get(url).await;
        let status = r.status().as_u16();
        let body: serde_json::Value = r.json().await.unwrap_or_default();
        out.push((
            what,
            status,
            body["error"].as_str().unwrap_or("?").to_string(),
        ));
    }
    let page = s
        .client
        .get(file)
        .header("Accept", "text/html")
        .send()
        .await
        .unwrap();
    let status = page.status().as_u16();
    let html = page.text().await.unwrap();
    assert!(
        html.starts_with("<!DOCTYPE html>"),
        "a browser gets a page: {html}"
    );
    out.push(("confirmation page", status, code_of(status).into()));
    let r = s.client.put(upload).body("new bytes").send().await.unwrap();
    let status = r.status().as_u16();
    let body: serde_json::Value = r.json().await.unwrap_or_default();
    out.push((
        "upload",
        status,
        body["error"].as_str().unwrap_or("?").to_string(),
    ));
    out
}

/// The page carries no JSON; its status names the code as the JSON would.
fn code_of(status: u16) -> &'static str {
    match status {
        404 => "not_found",
        500 => "internal",
        _ => "?",
    }
}

fn replace_with_symlink(target: &Path, link: &Path) {
    if link.is_dir() {
        std::fs::remove_dir_all(link).unwrap();
    } else {
        std::fs::remove_file(link).unwrap();
    }
    symlink(target, link).unwrap();
}

async fn mint_all(s: &Server) -> (String, String, String) {
    s.write("f.txt", b"file");
    s.write("photos/a.jpg", b"jpeg");
    s.write("inbox/keep.txt", b"keep");
    let file = s.mint("f.txt").await;
    let dir = s.mint("photos").await;
    let upload = s.mint_upload(json!({ "path": "inbox/new.txt" })).await["url"]
        .as_str()
        .unwrap()
        .to_string();
    (file, dir, upload)
}

#[tokio::test]
async fn a_path_that_escaped_since_minting_is_not_found_on_every_path() {
    let s = Server::start();
    let (file, dir, upload) = mint_all(&s).await;
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), b"secret").unwrap();
    replace_with_symlink(&outside.path().join("secret"), &s.root.join("f.txt"));
    replace_with_symlink(outside.path(), &s.root.join("photos"));
    replace_with_symlink(outside.path(), &s.root.join("inbox"));
    for (what, status, code) in answers(&s, &file, &dir, &upload).await {
        assert_eq!((status, code.as_str()), (404, "not_found"), "{what}");
    }
    assert!(
        !outside.path().join("new.txt").exists(),
        "nothing was written outside"
    );
}

#[tokio::test]
async fn an_io_fault_is_internal_on_every_path_and_leaves_the_links_usable() {
    let s = Server::start();
    let (file, dir, upload) = mint_all(&s).await;
    // A symlink that points at itself: resolving it fails with ELOOP, a genuine I/O error
    // (not a missing file, not an escape), whatever user the tests run as.
    for name in ["f.txt", "photos", "inbox"] {
        let link = s.root.join(name);
        replace_with_symlink(Path::new(name), &link);
    }
    for (what, status, code) in answers(&s, &file, &dir, &upload).await {
        assert_eq!((status, code.as_str()), (500, "internal"), "{what}");
    }
    let log = s.log();
    assert!(
        log.lines().any(|l| l.contains("burnlink::audit")
            && l.contains("direction=\"upload\"")
            && l.contains("outcome=\"failed\"")),
        "the refused upload is audited: {log}"
    );

    // Repaired, every link still works: nothing was used up.
    for name in ["f.txt", "photos", "inbox"] {
        std::fs::remove_file(s.root.join(name)).unwrap();
    }
    s.write("f.txt", b"file");
    s.write("photos/a.jpg", b"jpeg");
    std::fs::create_dir_all(s.root.join("inbox")).unwrap();
    assert_eq!(s.get(&file).await.bytes().await.unwrap().as_ref(), b"file");
    let zip = s.get(&dir).await;
    assert_eq!(zip.status(), 200);
    assert!(zip.bytes().await.unwrap().starts_with(b"PK"));
    let r = s
        .client
        .put(&upload)
        .body("new bytes")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        std::fs::read(s.root.join("inbox/new.txt")).unwrap(),
        b"new bytes"
    );
    for url in [&file, &dir, &upload] {
        assert_eq!(s.settled_state(url).await, "used");
    }
}
