//! The express lane (plain `GET`s of small files answered off the socket) and the router
//! answer alike, and a connection passes from the lane to hyper mid-stream without losing a
//! byte.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::support::*;

/// The response's status line and headers, without `date`, in order.
fn head_without_date(dump: &str) -> Vec<String> {
    dump.lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty() && !l.to_ascii_lowercase().starts_with("date:"))
        .map(str::to_string)
        .collect()
}

/// One GET with curl: the response's head (as [`head_without_date`]) and body.
fn fetch(s: &Server, url: &str) -> (Vec<String>, Vec<u8>) {
    let body = s.dir.path().join("fetched");
    let out = curl()
        .args(["-D", "-", "-o", body.to_str().unwrap(), url])
        .output()
        .expect("run curl");
    assert!(out.status.success(), "{out:?}");
    let head = head_without_date(&String::from_utf8_lossy(&out.stdout));
    (head, std::fs::read(&body).unwrap())
}

/// A plain GET (the lane's) and the same GET with a query (which the lane leaves to the
/// router) carry the same status, headers and body, and each burns its link.
#[tokio::test]
async fn the_lane_and_the_router_answer_a_download_alike() {
    let s = Server::start();
    let data = pattern(4096 + 7);
    s.write("docs/report.pdf", &data);
    let mut heads = Vec::new();
    for suffix in ["", "?via=router"] {
        let url = s.mint("docs/report.pdf").await;
        let (head, body) = fetch(&s, &format!("{url}{suffix}"));
        assert_eq!(body, data, "{suffix:?}");
        assert_eq!(s.settled_state(&url).await, "used", "{suffix:?}");
        heads.push(head);
    }
    assert_eq!(heads[0][0], "HTTP/1.1 200 OK");
    assert_eq!(heads[0], heads[1]);
}

/// One curl, one connection: a download (the lane's), a range (hyper's from then on), another
/// whole download and a spent link. Every answer is right, none opened a new connection, and
/// the whole downloads burned.
#[tokio::test]
async fn one_connection_passes_from_the_lane_to_hyper() {
    let s = Server::start();
    let data = pattern(10_000);
    s.write("a.bin", &data);
    let (first, ranged, third) = (
        s.mint("a.bin").await,
        s.mint("a.bin").await,
        s.mint("a.bin").await,
    );
    let dir = s.dir.path();
    let file = |n: &str| dir.join(n).to_str().unwrap().to_string();
    let w = "%{http_code} %{num_connects}\n";
    let out = curl()
        .args(["-w", w, "-o", &file("1"), &first])
        .args(["--next", "-w", w, "-r", "0-9", "-o", &file("2"), &ranged])
        .args(["--next", "-w", w, "-o", &file("3"), &third])
        .args(["--next", "-w", w, "-o", &file("4"), &first])
        .output()
        .expect("run curl");
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(report, "200 1\n206 0\n200 0\n404 0\n", "{out:?}");
    assert_eq!(std::fs::read(file("1")).unwrap(), data);
    assert_eq!(std::fs::read(file("2")).unwrap(), &data[..10]);
    assert_eq!(std::fs::read(file("3")).unwrap(), data);
    assert_eq!(s.settled_state(&first).await, "used");
    assert_eq!(s.settled_state(&ranged).await, "unused");
    assert_eq!(s.settled_state(&third).await, "used");
}

/// Requests sent back to back in one write (pipelined), the last one the router's; and a head
/// that arrives in two pieces, which the lane hands to hyper as it came.
#[tokio::test]
async fn pipelined_and_split_heads_are_answered_in_order() {
    let s = Server::start();
    s.write("a.txt", b"first file\n");
    s.write("b.txt", b"second file\n");
    let (a, b) = (s.mint("a.txt").await, s.mint("b.txt").await);
    let path = |url: &str| url.strip_prefix(&s.base).unwrap().to_string();
    let addr = s.base.strip_prefix("http://").unwrap().to_string();

    let mut conn = TcpStream::connect(&addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let requests = format!(
        "GET {} HTTP/1.1\r\nHost: x\r\n\r\nGET {} HTTP/1.1\r\nHost: x\r\n\r\n\
         HEAD /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        path(&a),
        path(&b)
    );
    conn.write_all(requests.as_bytes()).unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert_eq!(answer.matches("HTTP/1.1 200 OK\r\n").count(), 3, "{answer}");
    let (at_a, at_b) = (
        answer.find("first file\n").expect("a's body"),
        answer.find("second file\n").expect("b's body"),
    );
    assert!(at_a < at_b, "{answer}");
    assert_eq!(s.settled_state(&a).await, "used");
    assert_eq!(s.settled_state(&b).await, "used");

    let c = s.mint("a.txt").await;
    let mut conn = TcpStream::connect(&addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    conn.write_all(format!("GET {} HTTP/1.1\r\nHo", path(&c)).as_bytes())
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    conn.write_all(b"st: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with("first file\n"), "{answer}");
    assert_eq!(s.settled_state(&c).await, "used");
}

/// The lane's keep-alive limit counts from the end of each answer: a connection whose
/// requests come less than the limit apart stays open however long it lives, and one left
/// idle is closed once the limit has passed.
#[tokio::test]
async fn a_kept_alive_connection_closes_after_the_idle_limit_and_not_before() {
    // The head timeout follows BURNLINK_IDLE_TIMEOUT_S when that is under 30 s.
    let s = Server::start_with(&[("BURNLINK_IDLE_TIMEOUT_S", "2")]);
    s.write("a.txt", b"kept alive\n");
    let mut paths = Vec::new();
    for _ in 0..4 {
        let url = s.mint("a.txt").await;
        paths.push(url.strip_prefix(&s.base).unwrap().to_string());
    }
    let addr = s.base.strip_prefix("http://").unwrap().to_string();
    let (answers, idle_for) = tokio::task::spawn_blocking(move || {
        let mut conn = TcpStream::connect(&addr).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut answers = Vec::new();
        // 4 x 1.2 s: the connection outlives the limit twice over, each wait under it.
        for path in &paths {
            std::thread::sleep(Duration::from_millis(1200));
            conn.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                .unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while !got.ends_with(b"kept alive\n") {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            answers.push(String::from_utf8_lossy(&got).to_string());
        }
        let idle = std::time::Instant::now();
        let mut buf = [0u8; 64];
        let end = conn.read(&mut buf);
        assert!(matches!(end, Ok(0) | Err(_)), "{end:?}");
        (answers, idle.elapsed())
    })
    .await
    .unwrap();
    for answer in &answers {
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answers:?}");
        assert!(answer.ends_with("kept alive\n"), "{answers:?}");
    }
    assert_eq!(answers.len(), 4);
    assert!(
        (Duration::from_millis(1500)..Duration::from_secs(10)).contains(&idle_for),
        "closed after {idle_for:?} idle"
    );
}

/// Behind a trusted proxy the client is the one `X-Forwarded-For` names, for the lane as for
/// the router: on one connection, a link restricted to the client's network is served (the
/// lane's answer), one whose forwarded client is elsewhere is refused and stays unused, and a
/// forwarded chain is walked from the nearest hop (so a client cannot name itself).
#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_client_is_checked() {
    let s = Server::start_with(&[("BURNLINK_TRUSTED_PROXIES", "127.0.0.1")]);
    s.write("f.txt", b"for the forwarded client\n");
    let mut links = Vec::new();
    for _ in 0..3 {
        let (status, body) = s
            .mint_raw(
                Some(API_TOKEN),
                serde_json::json!({ "path": "f.txt", "ip": "203.0.113.0/24" }),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        links.push(body["url"].as_str().unwrap().to_string());
    }
    let dir = s.dir.path();
    let file = |n: &str| dir.join(n).to_str().unwrap().to_string();
    let w = "%{http_code} %{num_connects}\n";
    let xff = |v: &str| format!("X-Forwarded-For: {v}");
    let out = curl()
        .args(["-w", w, "-o", &file("1"), "-H", &xff("203.0.113.9")])
        .arg(&links[0])
        .args([
            "--next",
            "-w",
            w,
            "-o",
            &file("2"),
            "-H",
            &xff("198.51.100.1"),
        ])
        .arg(&links[1])
        .args(["--next", "-w", w, "-o", &file("3")])
        .args(["-H", &xff("203.0.113.9, 198.51.100.1")])
        .arg(&links[2])
        .output()
        .expect("run curl");
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(report, "200 1\n403 0\n403 0\n", "{out:?}");
    assert_eq!(
        std::fs::read(file("1")).unwrap(),
        b"for the forwarded client\n"
    );
    assert_eq!(s.settled_state(&links[0]).await, "used");
    assert_eq!(s.settled_state(&links[1]).await, "unused");
    assert_eq!(s.settled_state(&links[2]).await, "unused");
}

/// A link the ledger refuses (here: spent) is answered by the lane in the error map's words,
/// exactly as the router answers it: same status, headers and body.
#[tokio::test]
async fn the_lane_and_the_router_refuse_a_spent_link_alike() {
    let s = Server::start();
    s.write("f.txt", b"once");
    let url = s.mint("f.txt").await;
    assert_eq!(s.get(&url).await.status(), 200);
    assert_eq!(s.settled_state(&url).await, "used");
    let mut answers = Vec::new();
    for suffix in ["", "?via=router"] {
        let (head, body) = fetch(&s, &format!("{url}{suffix}"));
        answers.push((head, String::from_utf8(body).unwrap()));
    }
    assert_eq!(answers[0].0[0], "HTTP/1.1 404 Not Found", "{answers:?}");
    assert!(answers[0].1.contains("\"used\""), "{answers:?}");
    assert_eq!(answers[0], answers[1]);
}
