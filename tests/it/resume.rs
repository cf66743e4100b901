//! `curl -C -` resumes a broken download; the link burns when the last byte is delivered. On
//! disk and in a bucket (where each range is a ranged `GET` on the object).

use crate::support::moto::{BOTH, Backend, Sandbox};
use crate::support::*;

#[tokio::test]
async fn curl_resumes_a_broken_download() {
    if require_tool("curl").is_none() {
        return;
    }
    for backend in BOTH {
        resumes(backend).await;
    }
}

async fn resumes(backend: Backend) {
    let Some(b) = Sandbox::start(backend, &[]) else {
        return;
    };
    let s = &b.server;
    // Larger than what loopback socket buffers can absorb (tcp_rmem max is 32 MiB here): bytes
    // in the kernel's buffers count as handed over, so a smaller file could burn on the first,
    // throttled attempt.
    let data = pattern(96 * 1024 * 1024);
    b.put("resume.bin", &data);
    let url = s.mint("resume.bin").await;
    let out = s.dir.path().join("resume.bin");

    // First attempt: slow and cut short by curl itself.
    let status = curl()
        .args(["--limit-rate", "2M", "--max-time", "3", "-o"])
        .arg(&out)
        .arg(&url)
        .status()
        .unwrap();
    assert!(!status.success(), "the first attempt must be cut short");
    let partial = std::fs::metadata(&out).unwrap().len() as usize;
    assert!(partial > 0 && partial < data.len(), "partial = {partial}");
    assert_eq!(s.settled_state(&url).await, "unused");

    // Resume from where the file ends.
    let output = curl()
        .args(["--fail", "-C", "-", "-o"])
        .arg(&out)
        .arg(&url)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "resume failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(sha256_file(&out), sha256(&data), "{}", b.name());
    assert_eq!(s.settled_state(&url).await, "used");
}
