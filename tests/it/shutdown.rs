//! SIGTERM and SIGINT: stop accepting, let a running transfer finish, exit 0; a transfer still
//! running when the grace period ends is cut off and its lease released.

use std::time::Duration;

use crate::support::redis_server::RedisServer;
use crate::support::*;
use futures_util::StreamExt;

use rustix::process::Signal;

/// The `outcome` of each transfer audit line in `log`, in order.
fn transfer_outcomes(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("event=\"transfer\""))
        .filter_map(|l| l.split("outcome=\"").nth(1)?.split('"').next())
        .collect()
}

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
    let log = stop_past_the_grace_period(&mut s);
    // The cut transfer settled before the process ended: released, not burned.
    assert_eq!(transfer_outcomes(&log).first(), Some(&"aborted"), "{log}");
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
    assert_eq!(curl_status(&["-o", "/dev/null", &link]).0, 200);
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

/// The segment size [`slow_reader`] advertises: small, so the server's send buffer grows little
/// beyond its start, yet large enough that a few pipelined request heads go in one segment and
/// reach the server together.
const SLOW_READER_MSS: usize = 1200;

/// A TCP connection to `addr` that the server can send only a little to before it waits: the
/// client advertises a small segment size ([`SLOW_READER_MSS`]) and keeps a small receive
/// buffer it never reads from. Linux only.
fn slow_reader(addr: std::net::SocketAddr) -> std::net::TcpStream {
    use std::os::fd::FromRawFd;
    let std::net::SocketAddr::V4(v4) = addr else {
        panic!("the test server listens on IPv4 loopback");
    };
    let set = |fd: i32, level: i32, name: i32, value: i32| {
        // SAFETY: a valid socket and a pointer to an i32 of the given size.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                (&value as *const i32).cast(),
                std::mem::size_of::<i32>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "setsockopt {level}/{name}");
    };
    // SAFETY: plain socket calls on a descriptor this function owns until it is wrapped.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0);
        set(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_MAXSEG,
            SLOW_READER_MSS as i32,
        );
        set(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, 2048);
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: v4.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*v4.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        let rc = libc::connect(
            fd,
            (&sin as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert_eq!(rc, 0, "connect: {}", std::io::Error::last_os_error());
        std::net::TcpStream::from_raw_fd(fd)
    }
}

/// The express lane's write of a small file to a client that stops reading, still running
/// when the grace period ends: cut, and its audit line says `aborted`, as for a download hyper
/// serves (above). How much the kernel takes before a write waits depends on its buffers, so
/// the client pipelines several downloads in one segment (the lane answers whole heads; one
/// that came in pieces would go to hyper) and the test waits for the one left writing: those
/// before it burned, those after it not started.
#[tokio::test]
async fn a_lane_download_still_writing_after_the_grace_period_is_audited_as_aborted() {
    use std::io::Write;
    const PIPELINED: usize = 6;
    let mut s = Server::start_with(&[("BURNLINK_SHUTDOWN_GRACE_S", "1")]);
    s.write("small.bin", &pattern(64 * 1024));
    let mut links = Vec::new();
    for _ in 0..PIPELINED {
        links.push(s.mint("small.bin").await);
    }
    let heads: String = links
        .iter()
        .map(|url| {
            let path = url.strip_prefix(&s.base).unwrap();
            format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")
        })
        .collect();
    assert!(heads.len() <= SLOW_READER_MSS, "{} bytes", heads.len());
    let addr = s.base.trim_start_matches("http://").parse().unwrap();
    let mut conn = slow_reader(addr);
    conn.write_all(heads.as_bytes()).unwrap();

    // The states once they hold still for a while (bounded): a write that waits for the
    // reader keeps its link in progress.
    let mut seen = Vec::new();
    let mut still = 0;
    for _ in 0..100 {
        let mut now = Vec::new();
        for url in &links {
            now.push(s.state(url).await);
        }
        still = if now == seen { still + 1 } else { 0 };
        seen = now;
        if still == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let done = seen.iter().take_while(|st| *st == "used").count();
    let mut expected = vec!["used"; done];
    expected.push("in_progress");
    expected.resize(PIPELINED, "unused");
    assert_eq!(seen, expected, "no write waited for the reader");

    let log = stop_past_the_grace_period(&mut s);
    let mut outcomes = vec!["completed"; done];
    outcomes.push("aborted");
    assert_eq!(transfer_outcomes(&log), outcomes, "{log}");
    drop(conn);
}

/// Sends SIGTERM to a server whose transfer will outlast the grace period, and returns its
/// log once it has exited 0 after cutting the transfers still running.
fn stop_past_the_grace_period(s: &mut Server) -> String {
    signal(s.pid(), Signal::TERM);
    let status = s.wait_exit(Duration::from_secs(15));
    assert_eq!(status, Some(0), "exit status after a cut-off");
    let log = s.log();
    assert!(log.contains("cutting remaining transfers"), "{log}");
    log
}
