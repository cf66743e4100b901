//! Slow and silent clients hold nothing forever: a body is read only after its token checks
//! out and only within the idle timeout; past `BURNLINK_MAX_CONNECTIONS` the server still
//! answers probes; trickling uploads and stalled archive downloads cannot starve the threads
//! everyone else's file opens need.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

/// The `host:port` part of the server's base URL.
fn addr(s: &Server) -> String {
    s.base.trim_start_matches("http://").to_string()
}

/// Sends `head` and reads the status line of the answer, giving up after `limit`.
async fn status_after_head(s: &Server, head: &str, limit: Duration) -> Option<u16> {
    let mut conn = TcpStream::connect(addr(s)).await.unwrap();
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 512];
    let n = tokio::time::timeout(limit, conn.read(&mut buf))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&buf[..n]);
    text.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test]
async fn a_form_post_is_answered_before_its_body_when_the_token_is_bad() {
    let s = Server::start();
    let head = "POST /api/download/not-a-token HTTP/1.1\r\nHost: x\r\n\
                Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 300\r\n\r\n";
    // The body never comes; the answer does, at once.
    let status = status_after_head(&s, head, Duration::from_secs(3)).await;
    assert_eq!(status, Some(404));
}

#[tokio::test]
async fn bodies_that_never_arrive_time_out_and_use_nothing() {
    let s = Server::start_with(&[("BURNLINK_IDLE_TIMEOUT_S", "1")]);
    s.write("f.txt", b"file");
    let url = s.mint("f.txt").await;
    let path = url.trim_start_matches(&s.base).to_string();
    let started = Instant::now();
    let confirm = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: 300\r\n\r\nburnlink="
    );
    let api = format!(
        "POST /api/links HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_TOKEN}\r\n\
         Content-Length: 100\r\n\r\n{{\"path\":"
    );
    let (a, b) = tokio::join!(
        status_after_head(&s, &confirm, Duration::from_secs(10)),
        status_after_head(&s, &api, Duration::from_secs(10)),
    );
    assert_eq!((a, b), (Some(408), Some(408)));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(s.state(&url).await, "unused");
    assert_eq!(s.get(&url).await.bytes().await.unwrap().as_ref(), b"file");
}

#[tokio::test]
async fn past_the_connection_cap_probes_answer_and_the_rest_waits_its_turn() {
    let s = Server::start_with(&[("BURNLINK_MAX_CONNECTIONS", "8")]);
    s.write("f.txt", b"file");
    let url = s.mint("f.txt").await;
    // Eight silent connections take every slot.
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(TcpStream::connect(addr(&s)).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let started = Instant::now();
    let health = fresh
        .get(format!("{}/healthz", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let metrics = fresh
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let refused = fresh.get(&url).send().await.unwrap();
    assert_eq!(error_code(refused).await, (503, "unavailable".into()));
    // Once the silent ones go, the link works, once.
    drop(idle);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = fresh.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"file");
}

/// More slow transfers than the blocking pool has threads (tokio's default is 512): before the
/// fix each held one, and a fresh mint and download waited behind them.
#[tokio::test]
async fn trickling_uploads_and_stalled_archives_do_not_starve_a_fresh_download() {
    const UPLOADS: usize = 300;
    const ARCHIVES: usize = 300;
    let s = Server::start();
    // Incompressible, so a stalled client's socket fills and its archive writer blocks.
    let noise: Vec<u8> = (0..4 << 20)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    s.write("tree/noise.bin", &noise);
    s.write("fresh.bin", &pattern(100_000));

    // Every link first: minting needs the blocking pool too.
    let mut uploads = Vec::new();
    for i in 0..UPLOADS {
        let up = s
            .mint_upload(json!({ "path": format!("in/{i}.bin") }))
            .await["url"]
            .as_str()
            .unwrap()
            .to_string();
        uploads.push(up.trim_start_matches(&s.base).to_string());
    }
    let mut archives = Vec::new();
    for _ in 0..ARCHIVES {
        let zip = s.mint("tree").await;
        archives.push(zip.trim_start_matches(&s.base).to_string());
    }
    let mut conns = Vec::new();
    for path in &uploads {
        let mut c = TcpStream::connect(addr(&s)).await.unwrap();
        c.write_all(
            format!("PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\nx")
                .as_bytes(),
        )
        .await
        .unwrap();
        conns.push(c);
    }
    for path in &archives {
        // A tiny receive window: the server's socket fills after a few kilobytes.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut c = socket.connect(addr(&s).parse().unwrap()).await.unwrap();
        c.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        // Never read: the archive stalls once the socket is full.
        conns.push(c);
    }
    // Let the writers reach their stall, and trickle one more byte into each upload.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for c in conns.iter_mut().take(UPLOADS) {
        let _ = c.write_all(b"y").await;
    }

    let started = Instant::now();
    let answer = tokio::time::timeout(Duration::from_secs(5), async {
        let url = s.mint("fresh.bin").await;
        s.get(&url).await.bytes().await.unwrap()
    })
    .await
    .expect("a fresh mint and download answered");
    let took = started.elapsed();
    assert_eq!(answer.len(), 100_000);
    assert!(took < Duration::from_secs(1), "took {took:?}");
    drop(conns);
}
