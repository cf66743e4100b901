//! What one connection may make the server wait for or hold: a slow request head, a huge
//! header, a huge JSON body.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::*;
use serde_json::json;

fn connect(s: &Server) -> TcpStream {
    let addr = s.base.trim_start_matches("http://");
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
}

/// Reads until the server closes (or 20 s pass); what it sent.
fn read_to_close(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).to_string()
}

#[tokio::test]
async fn a_client_that_stalls_inside_its_request_head_is_disconnected() {
    // The head timeout follows BURNLINK_IDLE_TIMEOUT_S when that is under 30 s.
    let s = Server::start_with(&[("BURNLINK_IDLE_TIMEOUT_S", "2")]);
    let stalls = tokio::task::spawn_blocking({
        let mut stream = connect(&s);
        move || {
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Half: abc")
                .unwrap();
            let start = Instant::now();
            let answer = read_to_close(&mut stream);
            (start.elapsed(), answer)
        }
    });
    let (waited, answer) = stalls.await.unwrap();
    assert!(
        waited < Duration::from_secs(15),
        "still connected after {waited:?}"
    );
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    // Other clients were served all along.
    assert_eq!(s.get(&format!("{}/healthz", s.base)).await.status(), 200);
}

#[tokio::test]
async fn a_100_kib_header_is_refused() {
    let s = Server::start();
    let answer = tokio::task::spawn_blocking({
        let mut stream = connect(&s);
        move || {
            let big = "a".repeat(100 * 1024);
            // The server may close before the whole header is written; that is a refusal too.
            let _ = stream.write_all(
                format!(
                    "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: {big}\r\n\r\n"
                )
                .as_bytes(),
            );
            read_to_close(&mut stream)
        }
    })
    .await
    .unwrap();
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{}",
        &answer[..answer.len().min(200)]
    );
    assert!(!answer.contains("\"ok\""), "the request was not served");
    assert_eq!(s.get(&format!("{}/healthz", s.base)).await.status(), 200);
}

#[tokio::test]
async fn a_json_body_over_64_kib_is_413_and_nothing_is_minted() {
    let s = Server::start();
    s.write("f.txt", b"f");
    let padding = "x".repeat(1024 * 1024);
    // A client per request: the server closes a connection whose body it did not read, and a
    // pooled connection would be reused after that.
    let r = reqwest::Client::new()
        .post(format!("{}/api/links", s.base))
        .bearer_auth(API_TOKEN)
        .json(&json!({ "path": "f.txt", "session": padding }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"], "too_large");
    assert!(v["message"].as_str().unwrap().contains("65536"), "{v}");
    // Just under the limit is read (and refused for its content, not its size).
    let r = reqwest::Client::new()
        .post(format!("{}/api/links", s.base))
        .bearer_auth(API_TOKEN)
        .json(&json!({ "path": "f.txt", "session": "y".repeat(60 * 1024) }))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (400, "bad_request".into()));
    assert!(!s.log().contains("event=\"mint\""));
}
