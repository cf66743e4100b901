//! SIGTERM and SIGINT: stop accepting, let a running transfer finish, exit 0; a transfer still
//! running when the grace period ends is cut off and its lease released.

use std::time::Duration;

use crate::support::redis_server::RedisServer;
use crate::support::*;
use futures_util::StreamExt;

use rustix::process::Signal;

fn signal(pid: u32, signal: Signal) {
    let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
    rustix::process::kill_process(pid, signal).unwrap();
}

#[tokio::test]
async fn sigterm_lets_a_running_download_finish_and_exits_0() {
    drains_on(Signal::TERM, "SIGTERM: draining").await;
}

#[tokio::test]
async fn sigint_lets_a_running_download_finish_and_exits_0() {
    drains_on(Signal::INT, "SIGINT: draining").await;
}

async fn wait_for_log(s: &Server, needle: &str) {
    for _ in 0..100 {
        if s.log().contains(needle) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no `{needle}` in the log after 5 s:\n{}", s.log());
}

async fn drains_on(sig: Signal, announced: &str) {
    let mut s = Server::start();
    let data = pattern(24 * 1024 * 1024);
    s.write("f.bin", &data);
    let url = s.mint("f.bin").await;

    let resp = s.get(&url).await;
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let mut body = Vec::new();
    body.extend_from_slice(&stream.next().await.unwrap().unwrap());

    signal(s.pid(), sig);
    wait_for_log(&s, announced).await;
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
    assert_eq!(status, Some(0), "exit status after {announced}");
    // The transfer was settled before the process ended.
    assert!(s.log().contains("outcome=\"completed\""), "{}", s.log());
}

#[tokio::test]
async fn a_transfer_still_running_after_the_grace_period_is_cut_and_released() {
    let mut s = Server::start_with(&[("BURNLINK_SHUTDOWN_GRACE_S", "1")]);
    let data = pattern(48 * 1024 * 1024);
    s.write("big.bin", &data);
    let url = s.mint("big.bin").await;
    let resp = s.get(&url).await;
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    assert!(!stream.next().await.unwrap().unwrap().is_empty());
    assert_eq!(s.state(&url).await, "in_progress");

    // The client stops reading; the server is told to stop.
    signal(s.pid(), Signal::TERM);
    let status = s.wait_exit(Duration::from_secs(15));
    assert_eq!(status, Some(0), "exit status after a cut-off");
    let log = s.log();
    assert!(log.contains("cutting remaining transfers"), "{log}");
    // The cut transfer settled before the process ended: released, not burned.
    let audit = log
        .lines()
        .find(|l| l.contains("event=\"transfer\""))
        .unwrap_or_else(|| panic!("no transfer audit line:\n{log}"));
    assert!(audit.contains("outcome=\"aborted\""), "{audit}");
    assert!(!log.contains("did not settle"), "{log}");
    drop(stream);
}

/// With Redis, the express lane burns a delivered link in a task of its own, and shutdown
/// waits for it as for any transfer's settling. Here the burn's replica `WAIT` (one replica
/// asked for, none present) takes 800 ms: SIGTERM right after the download still ends with the
/// burn done and its shortfall logged before the process exits, and the link spent.
#[tokio::test]
async fn sigterm_right_after_a_download_waits_for_its_burn() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let ledger = redis.url();
    let mut s = Server::start_with(&[
        ("BURNLINK_LEDGER", &ledger),
        ("BURNLINK_LEDGER_REPLICAS", "1"),
    ]);
    s.write("f.txt", b"burned before the exit");
    let link = s.mint("f.txt").await;
    let out = curl()
        .args(["-o", "/dev/null", "-w", "%{http_code}", &link])
        .output()
        .expect("run curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "{out:?}");
    signal(s.pid(), Signal::TERM);
    assert_eq!(s.wait_exit(Duration::from_secs(10)), Some(0), "{}", s.log());
    let log = s.log();
    assert!(
        log.contains("outcome=\"completed\""),
        "not burned before the exit:\n{log}"
    );
    assert!(log.contains("fewer Redis replicas"), "{log}");
    let other = Server::start_with(&[("BURNLINK_LEDGER", &ledger)]);
    assert_eq!(other.settled_state(&link).await, "used");
}
