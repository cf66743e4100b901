//! A directory link delivers the directory as a zip built while it streams, read back here by
//! Python's zipfile and Info-ZIP's unzip.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use crate::support::archive::*;
use crate::support::*;
use futures_util::StreamExt;
use serde_json::json;

/// 2021-05-06T07:08:09Z
const MTIME: u64 = 1_620_284_889;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// data/{photos/{notes.txt, pic.jpg, random.bin, empty.txt, empty-dir/, sub/{run.sh,
/// deeper/ünïcödé €.txt, back -> ..}, inside-link -> sub/run.sh, shared -> ../shared,
/// escape -> <outside>/secret.txt, escape-dir -> ../..}, shared/s.txt}
fn photos(s: &Server) -> Vec<(&'static str, Vec<u8>)> {
    use std::os::unix::fs::{PermissionsExt, symlink};
    let files: Vec<(&'static str, Vec<u8>)> = vec![
        (
            "notes.txt",
            "All work and no play makes Jack a dull boy.\n"
                .repeat(5000)
                .into_bytes(),
        ),
        ("pic.jpg", pattern(300 * 1024)),
        ("random.bin", pattern(1024 * 1024)),
        ("empty.txt", Vec::new()),
        ("sub/run.sh", b"#!/bin/sh\necho hi\n".to_vec()),
        ("sub/deeper/ünïcödé €.txt", "grüße".as_bytes().to_vec()),
    ];
    for (name, bytes) in &files {
        s.write(&format!("photos/{name}"), bytes);
    }
    let p = s.root.join("photos");
    std::fs::set_permissions(p.join("sub/run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::File::options()
        .write(true)
        .open(p.join("notes.txt"))
        .unwrap()
        .set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(MTIME))
        .unwrap();
    std::fs::create_dir_all(p.join("empty-dir")).unwrap();
    s.write("shared/s.txt", b"shared inside the sandbox");
    std::fs::write(s.dir.path().join("secret.txt"), b"TOP SECRET").unwrap();
    symlink("..", p.join("sub/back")).unwrap();
    symlink("sub/run.sh", p.join("inside-link")).unwrap();
    symlink("../shared", p.join("shared")).unwrap();
    symlink(s.dir.path().join("secret.txt"), p.join("escape")).unwrap();
    symlink("../..", p.join("escape-dir")).unwrap();
    let mut all = files;
    all.push(("inside-link", b"#!/bin/sh\necho hi\n".to_vec()));
    all.push(("shared/s.txt", b"shared inside the sandbox".to_vec()));
    all
}

#[tokio::test]
async fn minting_a_directory_answers_its_kind_total_size_and_a_zip_url() {
    let s = Server::start_with(&[("BURNLINK_MAX_DOWNLOAD_BYTES", "2000000")]);
    let files = photos(&s);
    let total: usize = files.iter().map(|(_, b)| b.len()).sum();
    let (status, body) = s
        .mint_raw(Some(API_TOKEN), json!({ "path": "photos" }))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["kind"], "directory");
    assert_eq!(body["size"], total as u64);
    assert!(body["url"].as_str().unwrap().ends_with("/photos.zip"));

    // The ceiling applies to the sum of the files.
    let big = pattern(1_000_000);
    s.write("photos/more.bin", &big);
    let (status, body) = s
        .mint_raw(Some(API_TOKEN), json!({ "path": "photos" }))
        .await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"], "too_large");

    // The sandbox root itself is a directory too; a symlink out of it is still refused.
    let (status, body) = s
        .mint_raw(Some(API_TOKEN), json!({ "path": "photos/escape-dir" }))
        .await;
    assert_eq!(status, 403, "{body}");

    // The CLI mints the same kind of link, with no server involved.
    let out = std::process::Command::new(bin())
        .args(["mint", "shared", "--json"])
        .env("BURNLINK_ROOT", &s.root)
        .env("BURNLINK_KEYS", KEYS)
        .env("BURNLINK_BASE_URL", &s.base)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["kind"], "directory");
    assert_eq!(v["size"], 25);
    assert!(v["url"].as_str().unwrap().ends_with("/shared.zip"));
}

#[tokio::test]
async fn the_archive_holds_the_tree_byte_for_byte_for_python_and_unzip() {
    if !require_tools(ARCHIVE_TOOLS) {
        return;
    }
    let s = Server::start();
    let files = photos(&s);
    let url = s.mint("photos").await;
    let zip = s.dir.path().join("photos.zip");
    let (code, headers) = curl_to_file(&url, &zip);
    assert_eq!(code, 0, "curl: {headers}");
    let headers = headers.to_ascii_lowercase();
    assert!(headers.starts_with("http/1.1 200"), "{headers}");
    assert!(
        headers.contains("content-type: application/zip"),
        "{headers}"
    );
    assert!(headers.contains("filename=\"photos.zip\""), "{headers}");
    assert!(headers.contains("accept-ranges: none"), "{headers}");
    assert!(headers.contains("transfer-encoding: chunked"), "{headers}");
    assert!(!headers.contains("content-length"), "{headers}");
    assert_eq!(s.settled_state(&url).await, "used");
    assert_eq!(error_code(s.get(&url).await).await, (404, "used".into()));

    let info = python_zipinfo(&zip);
    let mut expected: BTreeSet<String> = files.iter().map(|(n, _)| n.to_string()).collect();
    for d in ["empty-dir/", "shared/", "sub/", "sub/deeper/"] {
        expected.insert(d.to_string());
    }
    let got: BTreeSet<String> = names(&info).into_iter().collect();
    assert_eq!(got, expected, "no <dir>/ prefix, no escape, no loop");
    for (name, bytes) in &files {
        let e = entry(&info, name);
        assert_eq!(e["size"], bytes.len() as u64, "{name}");
        assert_eq!(e["sha256"], hex(&sha256(bytes)), "{name}");
        assert!(
            !e["extra_ids"].as_array().unwrap().contains(&json!(1)),
            "no zip64 field on a small entry: {e}"
        );
    }
    assert_eq!(entry(&info, "notes.txt")["method"], 8, "text is deflated");
    assert!(entry(&info, "notes.txt")["csize"].as_u64().unwrap() < 10_000);
    assert_eq!(entry(&info, "pic.jpg")["method"], 0, "jpeg is stored");
    assert_eq!(entry(&info, "random.bin")["method"], 0, "noise is stored");
    assert_eq!(entry(&info, "empty.txt")["method"], 0);
    assert_eq!(entry(&info, "notes.txt")["ut"], MTIME);
    let unicode = entry(&info, "sub/deeper/ünïcödé €.txt");
    assert_ne!(unicode["flags"].as_u64().unwrap() & 0x800, 0, "UTF-8 flag");
    assert_eq!(entry(&info, "sub/run.sh")["mode"], 0o755);

    unzip_test(&zip);
    let out = s.dir.path().join("extracted");
    unzip_into(&zip, &out);
    for (name, bytes) in &files {
        assert_eq!(&std::fs::read(out.join(name)).unwrap(), bytes, "{name}");
    }
    assert_eq!(std::fs::read_dir(out.join("empty-dir")).unwrap().count(), 0);
    assert!(!out.join("escape").exists() && !out.join("escape-dir").exists());
    let mtime = std::fs::metadata(out.join("notes.txt"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(
        mtime
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
        MTIME
    );
}

#[tokio::test]
async fn head_builds_nothing_and_a_range_gets_the_whole_archive() {
    if !require_tools(ARCHIVE_TOOLS) {
        return;
    }
    let s = Server::start();
    let files = photos(&s);
    let url = s.mint("photos").await;
    let resp = s.client.head(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/zip");
    assert_eq!(resp.headers()["accept-ranges"], "none");
    assert!(resp.headers().get("content-length").is_none());
    assert_eq!(s.state(&url).await, "unused");

    let resp = s
        .client
        .get(&url)
        .header("range", "bytes=0-99")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("content-range").is_none());
    let body = resp.bytes().await.unwrap();
    let zip = s.dir.path().join("ranged.zip");
    std::fs::write(&zip, &body).unwrap();
    let info = python_zipinfo(&zip);
    assert_eq!(names(&info).len(), files.len() + 4);
    assert_eq!(s.settled_state(&url).await, "used");

    // A spent link says so on HEAD too.
    let resp = s.client.head(&url).send().await.unwrap();
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn a_dropped_connection_leaves_the_link_usable() {
    if !require_tools(ARCHIVE_TOOLS) {
        return;
    }
    let s = Server::start();
    for i in 0..4 {
        s.write(&format!("big/part{i}.bin"), &pattern(16 * 1024 * 1024));
    }
    let url = s.mint("big").await;
    let resp = s.get(&url).await;
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let mut got = 0usize;
    while got < 1024 * 1024 {
        got += stream.next().await.unwrap().unwrap().len();
    }
    drop(stream);
    assert_eq!(s.settled_state(&url).await, "unused");

    let zip = s.dir.path().join("big.zip");
    let (code, _) = curl_to_file(&url, &zip);
    assert_eq!(code, 0);
    let info = python_zipinfo(&zip);
    assert_eq!(names(&info).len(), 4);
    assert_eq!(
        entry(&info, "part3.bin")["sha256"],
        hex(&sha256(&pattern(16 * 1024 * 1024)))
    );
    unzip_test(&zip);
    assert_eq!(s.settled_state(&url).await, "used");
    assert!(
        s.log().contains("outcome=\"aborted\""),
        "the cut is audited"
    );
}

#[tokio::test]
async fn a_file_that_shrinks_mid_stream_cuts_the_connection_and_the_link_stays_usable() {
    if !require_tools(ARCHIVE_TOOLS) {
        return;
    }
    let s = Server::start_with(&[("BURNLINK_MAX_DOWNLOAD_BYTES", "1073741824")]);
    s.write("film/a.txt", b"first");
    let movie = s.root.join("film/movie.mp4");
    // Sparse: no disk, read at page-cache speed; stored because of its extension.
    std::fs::File::create(&movie)
        .unwrap()
        .set_len(256 * 1024 * 1024)
        .unwrap();
    let url = s.mint("film").await;

    let resp = s.get(&url).await;
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let mut got = 0u64;
    while got < 1024 * 1024 {
        got += stream.next().await.unwrap().unwrap().len() as u64;
    }
    // The server is at most a few MiB ahead (channel, socket buffers): cut the file well past
    // that, so it finds the file shorter than the header it already wrote.
    std::fs::File::options()
        .write(true)
        .open(&movie)
        .unwrap()
        .set_len(64 * 1024 * 1024)
        .unwrap();
    let mut clean = true;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(chunk))) => got += chunk.len() as u64,
            Ok(Some(Err(_))) => {
                clean = false;
                break;
            }
            Ok(None) => break,
            Err(_) => panic!("no end within 60 s"),
        }
    }
    assert!(
        !clean,
        "the client sees a broken transfer, not a short archive"
    );
    assert!(got < 256 * 1024 * 1024, "{got}");
    assert_eq!(s.settled_state(&url).await, "unused");
    assert!(s.log().contains("shrank"), "{}", s.log());

    // The same link then delivers the directory as it is now.
    let zip = s.dir.path().join("film.zip");
    let (code, _) = curl_to_file(&url, &zip);
    assert_eq!(code, 0);
    let info = python_zipinfo(&zip);
    assert_eq!(entry(&info, "movie.mp4")["size"], 64 * 1024 * 1024);
    assert_eq!(entry(&info, "movie.mp4")["method"], 0);
    unzip_test(&zip);
    assert_eq!(s.settled_state(&url).await, "used");
}

#[tokio::test]
async fn a_directory_gone_since_minting_is_not_found_and_not_burned() {
    let s = Server::start();
    s.write("gone/a.txt", b"a");
    let url = s.mint("gone").await;
    std::fs::remove_dir_all(s.root.join("gone")).unwrap();
    assert_eq!(
        error_code(s.get(&url).await).await,
        (404, "not_found".into())
    );
    // Swapped for a symlink out of the sandbox: still not found.
    std::os::unix::fs::symlink(s.dir.path(), s.root.join("gone")).unwrap();
    assert_eq!(
        error_code(s.get(&url).await).await,
        (404, "not_found".into())
    );
    assert_eq!(s.state(&url).await, "unused");
}
