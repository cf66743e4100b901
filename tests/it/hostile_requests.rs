//! A few thousand malformed requests against the running server: raw garbage, broken request
//! lines, odd and huge headers, malformed tokens, bad JSON, bad ranges. Afterwards the server
//! is healthy, never answered 5xx, and its links still work exactly once.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::support::*;

/// A tiny deterministic generator, so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
    /// `s` with a few bytes replaced, inserted or deleted.
    fn mutate(&mut self, s: &str) -> Vec<u8> {
        let mut b = s.as_bytes().to_vec();
        for _ in 0..1 + self.below(4) {
            let i = self.below(b.len() + 1);
            match self.below(3) {
                0 if i < b.len() => b[i] = self.next() as u8,
                1 => b.insert(i, self.next() as u8),
                _ if i < b.len() => {
                    b.remove(i);
                }
                _ => {}
            }
        }
        b
    }
}

/// One malformed request, as raw bytes.
fn hostile(rng: &mut Rng, token: &str, keeper: &str) -> Vec<u8> {
    let req = |line: &str, headers: &str, body: &[u8]| {
        let mut v = format!("{line}\r\nHost: x\r\nConnection: close\r\n{headers}\r\n").into_bytes();
        v.extend_from_slice(body);
        v
    };
    match rng.below(10) {
        // Raw garbage.
        0 => {
            let n = rng.below(3000);
            rng.bytes(n)
        }
        // Broken request lines.
        1 => {
            let line = rng.pick(&[
                "GET",
                "GET / HTTP/9.9",
                "GET /transfer/%zz HTTP/1.1",
                "FOO /transfer/x HTTP/1.1",
                " GET / HTTP/1.1",
                "GET /\0 HTTP/1.1",
                "GET http://[::1 HTTP/1.1",
                "GET //////// HTTP/1.0",
                "\r\n\r\nGET / HTTP/1.1",
                "GET /transfer/a/b/c/d/e HTTP/1.1",
            ]);
            let mut v = rng.mutate(line);
            v.extend_from_slice(b"\r\nHost: x\r\n\r\n");
            v
        }
        // Odd headers.
        2 => {
            let headers = rng.pick(&[
                "Content-Length: -1\r\n",
                "Content-Length: 5\r\nContent-Length: 6\r\n",
                "Content-Length: 99999999999999999999\r\n",
                "Transfer-Encoding: chunked\r\n",
                "Transfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n",
                "X-No-Colon\r\n",
                ": empty-name\r\n",
                "X-Forwarded-For: ::::, 999.1.1.1, [zz]\r\n",
                "Authorization: Bearer \r\n",
                "Authorization: Basic AAAA\r\n",
                "Range: bytes=\r\n",
                "Accept: \u{1}\r\n",
            ]);
            let mut v = req("POST /transfer/abc HTTP/1.1", headers, b"zz\r\n");
            let at = rng.below(v.len());
            if rng.below(2) == 0 {
                v[at] = rng.next() as u8;
            }
            v
        }
        // Many or long headers.
        3 => {
            let n = 1 + rng.below(300);
            let headers: String = (0..n)
                .map(|i| format!("X-H{i}: {}\r\n", "v".repeat(rng.below(400))))
                .collect();
            req("GET /healthz HTTP/1.1", &headers, b"")
        }
        // Malformed tokens on transfer routes.
        4 => {
            let mut t = rng.mutate(token);
            if t == token.as_bytes() {
                // A mutation that undid itself would be the genuine link.
                t.push(b'!');
            }
            let t = percent_encoding::percent_encode(&t, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
            let method = rng.pick(&["GET", "HEAD", "POST", "PUT", "DELETE"]);
            req(
                &format!("{method} /transfer/{t}/x HTTP/1.1"),
                "Content-Length: 0\r\n",
                b"",
            )
        }
        5 => {
            let t = rng.pick(&["..", "%2e%2e", "a".repeat(9000).leak(), "%00", "~", "A", ""]);
            req(&format!("GET /transfer/{t} HTTP/1.1"), "", b"")
        }
        // Bad JSON on the minting API, with a valid bearer token.
        6 | 7 => {
            let body = match rng.below(4) {
                0 => rng.mutate(r#"{"path":"f.txt","ttl_seconds":60,"direction":"download"}"#),
                1 => "[".repeat(rng.below(5000)).into_bytes(),
                2 => {
                    let n = rng.below(500);
                    rng.bytes(n)
                }
                _ => rng
                    .pick(&[
                        r#"{"path":1}"#,
                        r#"{"path":"f.txt","ttl_seconds":1e999}"#,
                        r#"{"path":"f.txt","ttl_seconds":-9223372036854775809}"#,
                        r#"{"path":"f.txt","ip":"300.0.0.0/99"}"#,
                        r#"{"path":"f.txt","sha256":"zz"}"#,
                        r#"{"path":"\u0000"}"#,
                        r#"{"path":"f.txt","session":"../.."}"#,
                        r#"{"file_path":"f.txt","expiry_minutes":"x"}"#,
                    ])
                    .as_bytes()
                    .to_vec(),
            };
            let route = rng.pick(&["/api/links", "/api/download/generate"]);
            let headers = format!(
                "Authorization: Bearer {API_TOKEN}\r\nContent-Length: {}\r\n",
                body.len()
            );
            req(&format!("POST {route} HTTP/1.1"), &headers, &body)
        }
        // Bad ranges on a genuine link: HEAD never burns and an unsatisfiable GET is a 416,
        // so the link must survive all of them.
        8 => {
            let valid = rng.pick(&["bytes=0-1", "bytes=-5", "bytes=1-0", "bytes=0-1,2-3"]);
            let range = rng.mutate(valid);
            let range: String = String::from_utf8_lossy(&range)
                .chars()
                .filter(|c| !c.is_control())
                .collect();
            req(
                &format!("HEAD /transfer/{keeper} HTTP/1.1"),
                &format!("Range: {range}\r\n"),
                b"",
            )
        }
        _ => {
            let range = rng.pick(&[
                "bytes=99999999-",
                "bytes=1000000000-1000000001",
                "bytes=4096-",
            ]);
            req(
                &format!("GET /transfer/{keeper} HTTP/1.1"),
                &format!("Range: {range}\r\n"),
                b"",
            )
        }
    }
}

/// Sends `bytes` on a fresh connection and returns the first line of the answer (empty if the
/// server just closed).
fn send(addr: &str, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = stream.write_all(bytes);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while out.len() < 64 * 1024 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

#[tokio::test]
async fn thousands_of_malformed_requests_leave_the_server_healthy_and_its_links_working() {
    // Failed token checks are limited per address by default; here every request comes from
    // loopback, so the limit is lifted to let each one reach its handler.
    let s = Server::start_with(&[("BURNLINK_RATE_FAILED_PER_MIN", "0")]);
    let data = pattern(4096);
    s.write("f.txt", &data);
    let keeper_url = s.mint("f.txt").await;
    let keeper = burnlink::token::extract_token(&keeper_url).to_string();
    let other_url = s.mint("f.txt").await;
    let other = burnlink::token::extract_token(&other_url).to_string();
    let addr = s.base.trim_start_matches("http://").to_string();

    const WORKERS: u64 = 8;
    const PER_WORKER: usize = 400;
    let mut handles = Vec::new();
    for w in 0..WORKERS {
        let (addr, token, keeper) = (addr.clone(), other.clone(), keeper.clone());
        handles.push(tokio::task::spawn_blocking(move || {
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((w + 1) * 0x1234_5678_9abc));
            let mut statuses = Vec::new();
            for _ in 0..PER_WORKER {
                let request = hostile(&mut rng, &token, &keeper);
                statuses.push(send(&addr, &request));
            }
            statuses
        }));
    }
    let mut answered = 0;
    for h in handles {
        for line in h.await.unwrap() {
            assert!(!line.starts_with("HTTP/1.1 5"), "server error: {line}");
            if line.starts_with("HTTP/1.") {
                answered += 1;
            }
        }
    }
    let total = WORKERS as usize * PER_WORKER;
    assert!(
        answered > total / 2,
        "only {answered} of {total} got an answer"
    );

    // Healthy, and both links work exactly once.
    assert_eq!(s.get(&format!("{}/healthz", s.base)).await.status(), 200);
    assert_eq!(s.get(&format!("{}/readyz", s.base)).await.status(), 200);
    for url in [&keeper_url, &other_url] {
        assert_eq!(s.state(url).await, "unused", "{url}");
        let r = s.get(url).await;
        assert_eq!(r.status(), 200);
        assert_eq!(sha256(&r.bytes().await.unwrap()), sha256(&data));
        assert_eq!(s.settled_state(url).await, "used");
    }
    let r = s.get(&format!("{}/metrics", s.base)).await;
    assert!(r.text().await.unwrap().contains("burnlink_transfers_total"));
}
