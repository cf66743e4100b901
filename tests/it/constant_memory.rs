//! Downloads stream from disk: the server's peak memory does not grow with the file.

use crate::support::*;
use futures_util::StreamExt;

#[tokio::test]
async fn a_512_mib_download_keeps_peak_memory_under_64_mib() {
    // The default download ceiling is 100 MiB; raise it for this test.
    let s = Server::start_with(&[("BURNLINK_MAX_DOWNLOAD_BYTES", "1073741824")]);
    // Sparse: costs no disk, reads as zeros at page-cache speed.
    let f = std::fs::File::create(s.root.join("huge.bin")).unwrap();
    f.set_len(512 * 1024 * 1024).unwrap();
    drop(f);
    let url = s.mint("huge.bin").await;
    let resp = s.get(&url).await;
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let mut total = 0u64;
    while let Some(chunk) = stream.next().await {
        total += chunk.unwrap().len() as u64;
    }
    assert_eq!(total, 512 * 1024 * 1024);
    assert_eq!(s.settled_state(&url).await, "used");
    let peak = vm_hwm_kib(s.pid());
    assert!(peak < 64 * 1024, "peak RSS {peak} KiB");
    println!("server peak RSS after a 512 MiB download: {peak} KiB");
}
