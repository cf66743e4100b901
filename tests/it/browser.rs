//! The pages as a person uses them: headless Chromium (Debian's `chromium`) driven through
//! `chromedriver` over WebDriver, against the real server. One browser session walks through
//! every page; a screenshot of each is kept (the directory is printed).
//!
//! Needs /usr/bin/chromium and /usr/bin/chromedriver (or `BURNLINK_CHROMIUM` and
//! `BURNLINK_CHROMEDRIVER`); missing, it goes by [`crate::support::require_tool`].

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::chromium::{Driver, browser, tools};
use crate::support::*;
use burnlink::token::Direction;
use fantoccini::{Client, Locator};
use serde_json::json;

/// The whole walk-through is bounded; each wait inside it is bounded too.
const WHOLE_TEST: Duration = Duration::from_secs(180);
const WAIT: Duration = Duration::from_secs(20);

fn screenshot_dir() -> PathBuf {
    let dir = std::env::var_os("BURNLINK_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            // CARGO_TARGET_TMPDIR is `<target>/tmp`: keep them beside it, in the target dir,
            // and only this run's.
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
                .parent()
                .unwrap()
                .join("browser-screenshots");
            let _ = std::fs::remove_dir_all(&dir);
            dir
        });
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn snap(c: &Client, dir: &Path, name: &str) {
    let png = c.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "{name} is not a PNG");
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// The same page as a phone shows it.
async fn snap_phone(c: &Client, dir: &Path, name: &str) {
    c.set_window_size(390, 844).await.unwrap();
    snap(c, dir, name).await;
    c.set_window_size(1024, 800).await.unwrap();
}

async fn text_of(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Waits (bounded) until the element's text contains `want`.
async fn wait_text(c: &Client, css: &str, want: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = text_of(c, css).await;
        if text.contains(want) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{css} never said {want:?}; it says {text:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits (bounded) for a finished download: the file exists and Chromium's `.crdownload` is gone.
async fn wait_download(dir: &Path, name: &str) -> Vec<u8> {
    let deadline = Instant::now() + WAIT;
    loop {
        let partial = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".crdownload"));
        let path = dir.join(name);
        if path.exists() && !partial {
            return std::fs::read(path).unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "no download of {name} within {WAIT:?}; the directory holds {:?}",
            std::fs::read_dir(dir)
                .unwrap()
                .flatten()
                .map(|e| e.file_name())
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_downloads_and_uploads_through_the_pages() {
    let Some(tools) = tools() else { return };
    let s = Server::start();
    let scratch = tempfile::tempdir().unwrap();
    let downloads = scratch.path().join("downloads");
    let profile = scratch.path().join("profile");
    std::fs::create_dir_all(&downloads).unwrap();
    let driver = Driver::start(&tools, &scratch.path().join("chromedriver.log"));
    let shots = screenshot_dir();
    println!("browser screenshots: {}", shots.display());

    let c = browser(&tools, &driver, &profile, &downloads).await;
    let walk = tokio::time::timeout(WHOLE_TEST, walk_through(&s, &c, &downloads, &shots)).await;
    let _ = c.close().await;
    walk.unwrap_or_else(|_| panic!("the browser walk-through took over {WHOLE_TEST:?}"));
}

async fn walk_through(s: &Server, c: &Client, downloads: &Path, shots: &Path) {
    // Download: the page shows, and showing it burns nothing.
    let data = pattern(300_000);
    s.write("reports/quarterly report.csv", &data);
    let url = s.mint("reports/quarterly report.csv").await;
    c.goto(&url).await.unwrap();
    assert_eq!(text_of(c, "h1").await, "A file is ready for you");
    assert_eq!(text_of(c, ".name").await, "quarterly report.csv");
    let body = text_of(c, "main").await;
    assert!(body.contains("300 KB (300,000 bytes)"), "{body}");
    // The inline script ran under the CSP: it rewrote the expiry into local time.
    let expiry = text_of(c, "time").await;
    assert!(
        !expiry.contains("UTC"),
        "the page's script did not run: {expiry:?}"
    );
    snap(c, shots, "1-download-page").await;
    snap_phone(c, shots, "1-download-page-phone").await;
    assert_eq!(s.state(&url).await, "unused");

    // The button transfers the file and burns the link.
    c.find(Locator::Id("download-button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let got = wait_download(downloads, "quarterly report.csv").await;
    assert_eq!(got.len(), data.len());
    assert_eq!(
        sha256(&got),
        sha256(&data),
        "the download arrived identical"
    );
    assert_eq!(s.settled_state(&url).await, "used");
    assert!(text_of(c, "#download-note").await.contains("starting"));
    snap(c, shots, "2-download-clicked").await;

    // Opened again: the page says it was used.
    c.goto(&url).await.unwrap();
    assert_eq!(text_of(c, "h1").await, "This link has already been used");
    snap(c, shots, "3-download-used").await;

    // Expired, in words.
    let expired = format!(
        "{}/transfer/{}/old.txt",
        s.base,
        sign(&claims(Direction::Download, "old.txt", now() - 60))
    );
    c.goto(&expired).await.unwrap();
    assert_eq!(text_of(c, "h1").await, "This link has expired");
    snap(c, shots, "4-expired").await;

    // Upload: pick a file, watch it go, and it lands identical.
    let minted = s
        .mint_upload(json!({ "path": "inbox/scan 01.bin", "max_bytes": 5_000_000 }))
        .await;
    let up = minted["url"].as_str().unwrap().to_string();
    c.goto(&up).await.unwrap();
    assert_eq!(text_of(c, "h1").await, "Send a file");
    assert!(text_of(c, "main").await.contains("5.0 MB"));
    snap(c, shots, "5-upload-page").await;
    snap_phone(c, shots, "5-upload-page-phone").await;
    let payload = pattern(1_500_000);
    let src = s.dir.path().join("to send.bin");
    std::fs::write(&src, &payload).unwrap();
    c.find(Locator::Id("file"))
        .await
        .unwrap()
        .send_keys(src.to_str().unwrap())
        .await
        .unwrap();
    c.find(Locator::Id("upload-button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let done = wait_text(c, "#status", "Done").await;
    assert!(done.contains("to send.bin arrived (1.5 MB)"), "{done}");
    assert!(
        done.contains("was saved as scan 01.bin"),
        "the page names the destination: {done}"
    );
    assert!(
        text_of(c, "#digest")
            .await
            .contains(&hex(&sha256(&payload)))
    );
    snap(c, shots, "6-upload-done").await;
    let landed = std::fs::read(s.root.join("inbox/scan 01.bin")).unwrap();
    assert_eq!(
        sha256(&landed),
        sha256(&payload),
        "the upload landed identical"
    );
    assert_eq!(s.state(&up).await, "used");
    c.goto(&up).await.unwrap();
    assert_eq!(text_of(c, "h1").await, "This link has already been used");

    // Too large for the link: said before a byte is sent.
    let minted = s
        .mint_upload(json!({ "path": "small.bin", "max_bytes": 1000 }))
        .await;
    let small = minted["url"].as_str().unwrap().to_string();
    c.goto(&small).await.unwrap();
    c.find(Locator::Id("file"))
        .await
        .unwrap()
        .send_keys(src.to_str().unwrap())
        .await
        .unwrap();
    let said = wait_text(c, "#status", "more than this link accepts").await;
    assert!(said.contains("1.0 KB"), "{said}");
    let button = c.find(Locator::Id("upload-button")).await.unwrap();
    assert!(!button.is_enabled().await.unwrap());
    snap(c, shots, "7-upload-too-large").await;
    assert_eq!(s.state(&small).await, "unused");

    // A refusal after the whole body was read (422: not the expected file) in words.
    let minted = s
        .mint_upload(json!({ "path": "expected.bin", "sha256": hex(&sha256(b"another file")) }))
        .await;
    let digest = minted["url"].as_str().unwrap().to_string();
    c.goto(&digest).await.unwrap();
    c.find(Locator::Id("file"))
        .await
        .unwrap()
        .send_keys(src.to_str().unwrap())
        .await
        .unwrap();
    c.find(Locator::Id("upload-button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(c, "#status", "checksum does not match").await;
    snap(c, shots, "8-upload-digest-mismatch").await;
    assert!(!s.root.join("expected.bin").exists());
    assert_eq!(s.settled_state(&digest).await, "unused");

    // A refusal from the server (409 exists: the file appeared after minting) in words.
    let minted = s
        .mint_upload(json!({ "path": "keep.txt", "overwrite": false }))
        .await;
    let keep = minted["url"].as_str().unwrap().to_string();
    c.goto(&keep).await.unwrap();
    s.write("keep.txt", b"already here");
    c.find(Locator::Id("file"))
        .await
        .unwrap()
        .send_keys(src.to_str().unwrap())
        .await
        .unwrap();
    c.find(Locator::Id("upload-button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(c, "#status", "already there").await;
    snap(c, shots, "9-upload-exists").await;
    assert_eq!(
        std::fs::read(s.root.join("keep.txt")).unwrap(),
        b"already here"
    );
    assert_eq!(s.settled_state(&keep).await, "unused");
}
