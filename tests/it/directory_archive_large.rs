//! Directory archives of gigabytes: memory stays flat, and zip64 appears where it is needed.
//!
//! The big files are sparse (no disk, read at page-cache speed) and named `.mp4`, so they are
//! stored rather than deflated: the point is the archive's size and the server's memory, not
//! deflate speed.

use std::time::Duration;

use crate::support::archive::*;
use crate::support::*;
use futures_util::StreamExt;
use serde_json::json;

const GIB: u64 = 1024 * 1024 * 1024;

fn sparse(path: &std::path::Path, len: u64) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::File::create(path).unwrap().set_len(len).unwrap();
}

#[tokio::test]
async fn a_2_gib_directory_streams_with_peak_memory_under_64_mib() {
    let s = Server::start_with(&[("BURNLINK_MAX_DOWNLOAD_BYTES", "4294967296")]);
    sparse(&s.root.join("videos/one.mp4"), GIB);
    sparse(&s.root.join("videos/two/two.mp4"), GIB);
    s.write("videos/readme.txt", b"two films");
    let url = s.mint("videos").await;
    let resp = s.get(&url).await;
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let mut total = 0u64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    while let Some(chunk) = tokio::time::timeout_at(deadline, stream.next())
        .await
        .expect("2 GiB within 300 s")
    {
        total += chunk.unwrap().len() as u64;
    }
    assert!(total > 2 * GIB, "{total}");
    assert!(total < 2 * GIB + 64 * 1024, "stored, not inflated: {total}");
    assert_eq!(s.settled_state(&url).await, "used");
    let peak = vm_hwm_kib(s.pid());
    println!("server peak RSS after a 2 GiB directory archive: {peak} KiB");
    assert!(peak < 64 * 1024, "peak RSS {peak} KiB");
}

/// Copies stdin to the file named by argv[1], seeking over 1 MiB runs of zeros.
const SPARSE_WRITE: &str = r#"
import sys
zero = bytes(1 << 20)
with open(sys.argv[1], 'wb') as f:
    total = 0
    while True:
        chunk = sys.stdin.buffer.read(1 << 20)
        if not chunk:
            break
        if chunk == zero:
            f.seek(len(chunk), 1)
        else:
            f.write(chunk)
        total += len(chunk)
    f.truncate(total)
"#;

#[tokio::test]
async fn a_5_gib_file_gets_zip64_that_python_and_unzip_accept() {
    if !require_tools(&["bash", "curl", "python3", "unzip"]) {
        return;
    }
    let mut s = Server::start_with(&[("BURNLINK_MAX_DOWNLOAD_BYTES", "10737418240")]);
    s.write("iso/a.txt", b"before the big one");
    sparse(&s.root.join("iso/big.mp4"), 5 * GIB);
    s.write("iso/z.txt", b"after the big one, past 4 GiB");
    let url = s.mint("iso").await;
    let zip = s.dir.path().join("iso.zip");
    // Written sparse (runs of zeros skipped), so 5 GiB costs neither disk nor minutes.
    let status = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -o pipefail; curl --silent --show-error --fail '{url}' | python3 -c \"$SPARSE\" '{}'",
            zip.display()
        ))
        .env("SPARSE", SPARSE_WRITE)
        .status()
        .unwrap();
    assert!(status.success(), "curl | sparse write: {status}");
    // A fresh client: the pooled connection may have idled out during the long download.
    s.client = reqwest::Client::new();
    assert_eq!(s.settled_state(&url).await, "used");
    let len = std::fs::metadata(&zip).unwrap().len();
    assert!(len > 5 * GIB, "{len}");

    let info = python_zipinfo(&zip);
    assert_eq!(names(&info), ["a.txt", "big.mp4", "z.txt"]);
    let zip64 = |name: &str| {
        entry(&info, name)["extra_ids"]
            .as_array()
            .unwrap()
            .contains(&json!(1))
    };
    assert_eq!(entry(&info, "big.mp4")["size"], 5 * GIB);
    assert!(zip64("big.mp4"), "an entry over 4 GiB has zip64 sizes");
    assert!(!zip64("a.txt"), "a small entry at a small offset has none");
    assert!(entry(&info, "z.txt")["offset"].as_u64().unwrap() > 4 * GIB);
    assert!(zip64("z.txt"), "an entry past 4 GiB has a zip64 offset");
    assert_eq!(
        entry(&info, "z.txt")["sha256"],
        sha256(b"after the big one, past 4 GiB")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    unzip_test(&zip);
    std::fs::remove_file(&zip).unwrap();
}
