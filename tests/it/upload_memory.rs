//! Uploads stream to disk: the server's peak memory does not grow with the body.

use std::io::Read;

use crate::support::*;
use serde_json::json;
use sha2::{Digest, Sha256};

const GIB: u64 = 1024 * 1024 * 1024;

fn sha256_of_file(path: &std::path::Path) -> [u8; 32] {
    let mut f = std::fs::File::open(path).unwrap();
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    h.finalize().into()
}

#[tokio::test]
async fn a_1_gib_upload_keeps_peak_memory_under_64_mib() {
    if require_tool("curl").is_none() {
        return;
    }
    let s = Server::start_with(&[("BURNLINK_MAX_UPLOAD_BYTES", &(2 * GIB).to_string())]);
    // Sparse source outside the sandbox: costs no disk, reads at page-cache speed.
    let src = s.dir.path().join("huge.bin");
    std::fs::File::create(&src).unwrap().set_len(GIB).unwrap();
    let minted = s.mint_upload(json!({ "path": "incoming/huge.bin" })).await;
    let url = minted["url"].as_str().unwrap();

    // `-T` streams the file from disk (curl's --data-binary @file would load it into memory).
    let (status, body) = curl_status(&["-T", src.to_str().unwrap(), url]);
    assert_eq!(status, 201, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["bytes"], GIB);
    let landed = s.root.join("incoming/huge.bin");
    assert_eq!(std::fs::metadata(&landed).unwrap().len(), GIB);
    let digest = sha256_of_file(&landed);
    assert_eq!(v["sha256"], hex(&digest));
    assert_eq!(digest, sha256_of_file(&src));
    assert_eq!(s.state(url).await, "used");

    let peak = vm_hwm_kib(s.pid());
    println!("server peak RSS after a 1 GiB upload: {peak} KiB");
    assert!(peak < 64 * 1024, "peak RSS {peak} KiB");
}
