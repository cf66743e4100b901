//! SIGTERM: stop accepting, let a running transfer finish, exit 0.

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;

fn sigterm(pid: u32) {
    let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
}

#[tokio::test]
async fn sigterm_lets_a_running_download_finish_and_exits_0() {
    let mut s = Server::start();
    let data = pattern(24 * 1024 * 1024);
    s.write("f.bin", &data);
    let url = s.mint("f.bin").await;

    let resp = s.get(&url).await;
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let mut body = Vec::new();
    body.extend_from_slice(&stream.next().await.unwrap().unwrap());

    sigterm(s.pid());
    for _ in 0..100 {
        if s.log().contains("SIGTERM: draining") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(s.log().contains("SIGTERM: draining"), "{}", s.log());
    // New connections are refused while the running transfer goes on.
    let refused = reqwest::Client::new()
        .get(format!("{}/healthz", s.base))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    assert!(refused.is_err(), "still accepting after SIGTERM");

    while let Some(chunk) = stream.next().await {
        body.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(sha256(&body), sha256(&data));
    let status = s.wait_exit(Duration::from_secs(10));
    assert_eq!(status, Some(0), "exit status after SIGTERM");
    // The transfer was settled before the process ended.
    assert!(s.log().contains("outcome=\"completed\""), "{}", s.log());
}
