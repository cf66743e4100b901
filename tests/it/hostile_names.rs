//! Names chosen by whoever mints, and other input from outside, turned against readers: log
//! lines, zip extractors, browsers' file names, range arithmetic, burnlink's own temporaries.

use std::path::Path;
use std::process::Command;

use reqwest::header;
use serde_json::{Value, json};

use crate::support::archive::*;
use crate::support::*;

/// A path that, written raw into a text log, would end the line and forge an audit line, then
/// paint the terminal red.
const FORGER: &str = "in/x.txt\n2026-01-01T00:00:00Z  INFO burnlink::audit: event=\"transfer\" \
                      outcome=\"completed\" \u{1b}[31mred.txt";

#[tokio::test]
async fn paths_cannot_forge_text_log_lines_or_reach_a_terminal() {
    let s = Server::start();
    let minted = s.mint_upload(json!({ "path": FORGER })).await;
    let up = minted["url"].as_str().unwrap();
    let r = s.client.put(up).body("bytes").send().await.unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(s.settled_state(up).await, "used");
    let log = s.log();
    assert!(!log.contains('\u{1b}'), "a raw escape reached the log");
    let audit: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("burnlink::audit"))
        .collect();
    // One mint and one transfer, and no third line made up by the path.
    assert_eq!(audit.len(), 2, "{audit:#?}");
    assert!(
        audit.iter().all(|l| l.contains("in/x.txt\\n2026")),
        "{audit:#?}"
    );
}

#[tokio::test]
async fn json_logs_stay_one_object_per_line() {
    let s = Server::start_with(&[("BURNLINK_LOG_FORMAT", "json")]);
    let minted = s.mint_upload(json!({ "path": FORGER })).await;
    let up = minted["url"].as_str().unwrap();
    assert_eq!(
        s.client.put(up).body("b").send().await.unwrap().status(),
        201
    );
    assert_eq!(s.settled_state(up).await, "used");
    let log = s.log();
    let mut audit = 0;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        if v["target"] == "burnlink::audit" {
            audit += 1;
            assert!(v["path"].as_str().unwrap().contains("\\n2026"), "{v}");
        }
    }
    assert_eq!(audit, 2, "{log}");
}

#[tokio::test]
async fn zip_entry_names_are_safe_for_every_extractor() {
    if !require_tools(&["curl", "python3", "unzip", "bsdtar"]) {
        return;
    }
    let s = Server::start();
    let on_disk = [
        "..\\..\\evil.txt",
        "C:\\x.txt",
        "a:b.txt",
        "100%.txt",
        "plain.txt",
    ];
    for (i, name) in on_disk.iter().enumerate() {
        s.write(&format!("tree/{name}"), format!("file {i}").as_bytes());
    }
    let url = s.mint("tree").await;
    let zip = s.dir.path().join("tree.zip");
    let (code, err) = curl_to_file(&url, &zip);
    assert_eq!(code, 0, "{err}");

    let info = python_zipinfo(&zip);
    let listed = names(&info);
    let want = [
        "..%5C..%5Cevil.txt",
        "C%3A%5Cx.txt",
        "a%3Ab.txt",
        "100%25.txt",
        "plain.txt",
    ];
    let mut sorted: Vec<&str> = want.to_vec();
    sorted.sort();
    let mut got: Vec<&str> = listed.iter().map(String::as_str).collect();
    got.sort();
    assert_eq!(got, sorted);
    for name in &listed {
        assert!(!name.contains('\\') && !name.contains(':'), "{name}");
    }
    // Info-ZIP and libarchive both extract every entry inside the destination.
    for (tool, args) in [("unzip", vec!["-q", "-o"]), ("bsdtar", vec!["-x", "-f"])] {
        let dest = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(tool);
        match tool {
            "unzip" => cmd.args(&args).arg(&zip).arg("-d").arg(dest.path()),
            _ => cmd.args(&args).arg(&zip).arg("-C").arg(dest.path()),
        };
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{tool}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for (i, name) in want.iter().enumerate() {
            let p = dest.path().join(name);
            assert_eq!(
                std::fs::read(&p).unwrap(),
                format!("file {i}").as_bytes(),
                "{tool} {p:?}"
            );
        }
        assert!(!dest.path().parent().unwrap().join("evil.txt").exists());
    }
}

#[tokio::test]
async fn an_empty_suffix_range_is_416_and_burns_nothing() {
    let s = Server::start();
    s.write("f.txt", b"0123456789");
    let url = s.mint("f.txt").await;
    let r = s
        .client
        .get(&url)
        .header(header::RANGE, "bytes=-0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(r.headers()[header::CONTENT_RANGE], "bytes */10");
    assert_eq!(s.state(&url).await, "unused");
    assert_eq!(
        s.get(&url).await.bytes().await.unwrap().as_ref(),
        b"0123456789"
    );
}

#[tokio::test]
async fn burnlink_temporary_names_cannot_be_minted() {
    let s = Server::start();
    let name = ".burnlink-0123456789abcdef.part";
    s.write(name, b"someone's upload in flight");
    for body in [
        json!({ "path": name }),
        json!({ "path": name, "direction": "upload" }),
        json!({ "path": format!("dir/{name}"), "direction": "upload" }),
    ] {
        let (status, v) = s.mint_raw(Some(API_TOKEN), body.clone()).await;
        assert_eq!(
            (status, v["error"].as_str()),
            (400, Some("bad_request")),
            "{body}"
        );
    }
}

#[tokio::test]
async fn bidi_controls_never_reach_a_browsers_file_name() {
    let s = Server::start();
    let name = "invoice\u{202E}fdp.exe";
    s.write(name, b"x");
    let url = s.mint(name).await;
    let r = s.get(&url).await;
    assert_eq!(r.status(), 200);
    let cd = r.headers()[header::CONTENT_DISPOSITION].as_bytes().to_vec();
    let cd = String::from_utf8_lossy(&cd);
    assert!(!cd.contains('\u{202E}'), "{cd}");
    assert!(!cd.to_ascii_uppercase().contains("%E2%80%AE"), "{cd}");
    assert!(cd.contains("invoice_fdp.exe"), "{cd}");

    // The marks too (RLM U+200F, LRM U+200E, ALM U+061C): the same set `burnlink get` strips.
    let name = "pay\u{200F}roll\u{200E}\u{061C}.pdf";
    s.write(name, b"y");
    let url = s.mint(name).await;
    let r = s.get(&url).await;
    let cd =
        String::from_utf8_lossy(r.headers()[header::CONTENT_DISPOSITION].as_bytes()).into_owned();
    for mark in ['\u{200F}', '\u{200E}', '\u{061C}'] {
        assert!(!cd.contains(mark), "{cd:?}");
    }
    for encoded in ["%E2%80%8F", "%E2%80%8E", "%D8%9C"] {
        assert!(!cd.to_ascii_uppercase().contains(encoded), "{cd}");
    }
    assert!(cd.contains("pay_roll__.pdf"), "{cd}");
}

#[tokio::test]
async fn a_link_to_the_whole_sandbox_has_a_neutral_name() {
    let s = Server::start();
    s.write("a.txt", b"a");
    let url = s.mint(".").await;
    assert!(url.ends_with("/files.zip"), "{url}");
    let r = s.client.head(&url).send().await.unwrap();
    let cd = r.headers()[header::CONTENT_DISPOSITION]
        .to_str()
        .unwrap()
        .to_string();
    assert!(cd.contains("files.zip"), "{cd}");
    let root = Path::new(&s.root)
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(!cd.contains(&root), "{cd}");
}
