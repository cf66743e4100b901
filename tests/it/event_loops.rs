//! Both ways of running the server (event loops sharing one listening socket, and one shared
//! work-stealing runtime) serve the same bytes and burn the same way;
//! on plain HTTP large files go out with `sendfile`, ranges and keep-alive included.

use crate::support::*;

/// Small files (sent from memory) and large ones (sent by the kernel), whole and as ranges,
/// several on one keep-alive connection: every body is the file's bytes, and each link burns
/// exactly when its final byte went out.
#[tokio::test]
async fn every_download_is_the_files_bytes_whatever_the_event_loops() {
    for workers in ["0", "1", "3"] {
        let s = Server::start_with(&[("BURNLINK_WORKERS", workers)]);
        let small = pattern(4096);
        let big = pattern(5 * 1024 * 1024 + 123);
        s.write("small.bin", &small);
        s.write("big.bin", &big);

        // One client: its requests reuse one connection, so zero-copy responses follow each
        // other (and small ones) on the same socket.
        for (name, data) in [("big.bin", &big), ("small.bin", &small), ("big.bin", &big)] {
            let url = s.mint(name).await;
            let resp = s.get(&url).await;
            assert_eq!(resp.status(), 200, "workers={workers} {name}");
            let body = resp.bytes().await.unwrap();
            assert_eq!(sha256(&body), sha256(data), "workers={workers} {name}");
            assert_eq!(s.settled_state(&url).await, "used", "workers={workers}");
        }

        // A range from inside the file: the kernel sends from that offset; no burn without
        // the final byte, then the tail burns.
        let url = s.mint("big.bin").await;
        let (from, to) = (1_000_003usize, 4_000_000usize);
        let resp = s
            .client
            .get(&url)
            .header("range", format!("bytes={from}-{to}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 206, "workers={workers}");
        assert_eq!(&resp.bytes().await.unwrap()[..], &big[from..=to]);
        assert_eq!(s.settled_state(&url).await, "unused", "workers={workers}");
        let resp = s
            .client
            .get(&url)
            .header("range", format!("bytes={}-", big.len() - 70_000))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 206);
        assert_eq!(&resp.bytes().await.unwrap()[..], &big[big.len() - 70_000..]);
        assert_eq!(s.settled_state(&url).await, "used", "workers={workers}");

        // curl too (its own connection handling), and a spent link stays spent.
        let url = s.mint("big.bin").await;
        let out = s.dir.path().join("curl.bin");
        let (code, _) = curl_status(&["-s", "-o", out.to_str().unwrap(), &url]);
        assert_eq!(code, 200, "workers={workers}");
        assert_eq!(sha256_file(&out), sha256(&big));
        assert_eq!(s.settled_state(&url).await, "used");
        assert_eq!(error_code(s.get(&url).await).await, (404, "used".into()));
    }
}

/// The CPUs in a `Cpus_allowed_list` line of `/proc/.../status` ("0-1", "0,2-3").
fn cpu_list(status: &str) -> Vec<usize> {
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .expect("a Cpus_allowed_list line")
        .trim();
    let mut cpus = Vec::new();
    for part in list.split(',') {
        match part.split_once('-') {
            Some((a, b)) => cpus.extend(a.parse::<usize>().unwrap()..=b.parse().unwrap()),
            None => cpus.push(part.parse().unwrap()),
        }
    }
    cpus
}

/// Each event loop thread's name and the CPUs it may run on, in loop order. Waits (up to 5 s)
/// until `loops` loop threads exist and have set themselves up.
fn loop_cpus(pid: u32, loops: usize) -> Vec<Vec<usize>> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let mut found = Vec::new();
        for task in std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .flatten()
        {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if let Some(i) = comm.trim().strip_prefix("burnlink-loop-") {
                let status = std::fs::read_to_string(task.path().join("status")).unwrap();
                found.push((i.parse::<usize>().unwrap(), cpu_list(&status)));
            }
        }
        found.sort();
        if found.len() == loops || std::time::Instant::now() > deadline {
            assert_eq!(found.len(), loops, "event loop threads of {pid}");
            return found.into_iter().map(|(_, cpus)| cpus).collect();
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// With as many loops as CPUs the process may use, each loop runs on a CPU of its own (the
/// default); `off` leaves every loop free to run anywhere; `on` pins even more loops than
/// CPUs, round the CPUs; and with more loops than CPUs the default leaves them unpinned. A
/// pinned server still serves.
#[tokio::test]
async fn event_loops_are_pinned_one_per_cpu_when_they_match_the_cpus() {
    let allowed = cpu_list(&std::fs::read_to_string("/proc/self/status").unwrap());
    let n = allowed.len().to_string();
    let more = (allowed.len() + 1).to_string();
    let one_each: Vec<Vec<usize>> = allowed.iter().map(|&c| vec![c]).collect();

    let s = Server::start_with(&[("BURNLINK_WORKERS", n.as_str())]);
    assert_eq!(
        loop_cpus(s.pid(), allowed.len()),
        one_each,
        "default, {n} loops"
    );
    let small = pattern(4096);
    s.write("small.bin", &small);
    for _ in 0..8 {
        let url = s.mint("small.bin").await;
        let resp = s.get(&url).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(&resp.bytes().await.unwrap()[..], &small[..]);
    }

    let s = Server::start_with(&[
        ("BURNLINK_WORKERS", n.as_str()),
        ("BURNLINK_PIN_LOOPS", "off"),
    ]);
    assert_eq!(
        loop_cpus(s.pid(), allowed.len()),
        vec![allowed.clone(); allowed.len()],
        "off"
    );

    let s = Server::start_with(&[("BURNLINK_WORKERS", more.as_str())]);
    assert_eq!(
        loop_cpus(s.pid(), allowed.len() + 1),
        vec![allowed.clone(); allowed.len() + 1],
        "default, {more} loops"
    );

    let s = Server::start_with(&[
        ("BURNLINK_WORKERS", more.as_str()),
        ("BURNLINK_PIN_LOOPS", "on"),
    ]);
    let mut round: Vec<Vec<usize>> = one_each.clone();
    round.push(vec![allowed[0]]);
    assert_eq!(loop_cpus(s.pid(), allowed.len() + 1), round, "on");
}

/// A pinned loop sending a large file may run on any CPU until the transfer ends, then is
/// pinned again: pinned, it shared its core with the receiving `curl` in nearly every sample.
#[tokio::test]
async fn a_loop_sending_a_large_file_is_unpinned_until_it_ends() {
    let allowed = cpu_list(&std::fs::read_to_string("/proc/self/status").unwrap());
    if allowed.len() < 2 {
        eprintln!("skipped: with one CPU a loop has nowhere else to run");
        return;
    }
    let n = allowed.len().to_string();
    let one_each: Vec<Vec<usize>> = allowed.iter().map(|&c| vec![c]).collect();
    let s = Server::start_with(&[("BURNLINK_WORKERS", n.as_str())]);
    let big = pattern(64 * 1024 * 1024);
    s.write("big.bin", &big);
    let url = s.mint("big.bin").await;
    let mut resp = s.get(&url).await;
    assert_eq!(resp.status(), 200);
    // The client reads one piece and waits: the server is still sending.
    let mut got = resp.chunk().await.unwrap().unwrap().to_vec();
    let during = loop_cpus(s.pid(), allowed.len());
    assert!(
        during.contains(&allowed)
            && during.iter().filter(|c| c.len() == 1).count() == allowed.len() - 1,
        "one loop free to run anywhere while it sends, the others pinned: {during:?}"
    );
    while let Some(piece) = resp.chunk().await.unwrap() {
        got.extend_from_slice(&piece);
    }
    assert_eq!(sha256(&got), sha256(&big));
    assert_eq!(s.settled_state(&url).await, "used");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while loop_cpus(s.pid(), allowed.len()) != one_each && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(
        loop_cpus(s.pid(), allowed.len()),
        one_each,
        "every loop pinned again after the transfer"
    );
}

/// A plain-HTTP download connection moves, between two requests, to the pinned loop on the CPU
/// its requests arrive on (on loopback, the CPU the client sent them from): the client's thread
/// is held to one loop's CPU, then the other's, then the first's again. Every answer on the way
/// is the file's bytes and burns its link, and the loops' connection counts come back to what
/// they were once the client closes.
#[tokio::test]
async fn a_download_connection_moves_to_the_loop_on_the_cpu_its_requests_come_from() {
    const PER_PHASE: usize = 64;
    let allowed = cpu_list(&std::fs::read_to_string("/proc/self/status").unwrap());
    if allowed.len() < 2 {
        assert!(
            !tools::in_ci(),
            "CI: this test needs two CPUs, the machine has one"
        );
        eprintln!("skipped: with one CPU there is no other loop to move to");
        return;
    }
    let s = Server::start_with(&[("BURNLINK_WORKERS", "2"), ("BURNLINK_PIN_LOOPS", "on")]);
    assert_eq!(
        loop_cpus(s.pid(), 2),
        vec![vec![allowed[0]], vec![allowed[1]]]
    );
    let small = pattern(4096);
    s.write("small.bin", &small);
    let phases = [1usize, 0, 1];
    let mut urls = Vec::new();
    for _ in 0..phases.len() * PER_PHASE {
        urls.push(s.mint("small.bin").await);
    }
    let moved = |text: &str, l: &str| {
        metric_sample(text, "burnlink_connections_moved_total", &[("loop", l)])
            .unwrap_or_else(|| panic!("no moved series for loop {l} in\n{text}"))
    };
    let idle = open_connections(&scrape_metrics(&s).await);

    // One keep-alive connection, written and read by a thread held to one CPU at a time.
    let addr = s.base.trim_start_matches("http://").to_string();
    let mut conn = std::net::TcpStream::connect(&addr).unwrap();
    conn.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut before = scrape_metrics(&s).await;
    for (phase, &to) in phases.iter().enumerate() {
        let cpu = allowed[to];
        let batch: Vec<String> = urls[phase * PER_PHASE..(phase + 1) * PER_PHASE]
            .iter()
            .map(|url| url.strip_prefix(&s.base).unwrap().to_string())
            .collect();
        let expect = small.clone();
        conn = tokio::task::spawn_blocking(move || {
            let mut set = rustix::thread::CpuSet::new();
            set.set(cpu);
            rustix::thread::sched_setaffinity(None, &set).unwrap();
            for path in &batch {
                let body = raw_get(&mut conn, path);
                assert_eq!(body, expect, "phase {phase}: {path}");
            }
            conn
        })
        .await
        .unwrap();
        let after = scrape_metrics(&s).await;
        let (l, other) = (to.to_string(), (1 - to).to_string());
        let came = moved(&after, &l) - moved(&before, &l);
        // The first phase may find the connection on its CPU's loop already.
        if phase == 0 {
            assert!(came <= 1.0, "phase {phase}: moved to loop {l} {came} times");
        } else {
            assert_eq!(came, 1.0, "phase {phase}: moves to loop {l}\n{after}");
        }
        assert_eq!(
            moved(&after, &other),
            moved(&before, &other),
            "phase {phase}: nothing moves away from the client's CPU"
        );
        before = after;
    }
    for url in &urls {
        assert_eq!(s.settled_state(url).await, "used");
    }

    drop(conn);
    let now = open_connections_once(&s, idle).await;
    assert_eq!(now, idle, "connection counts after the close");
}

/// One `GET` of `path` on a keep-alive connection, read to the end of its body
/// (`Content-Length`); panics on anything but a 200.
fn raw_get(conn: &mut std::net::TcpStream, path: &str) -> Vec<u8> {
    use std::io::{Read, Write};
    // In one write: a head that arrives in pieces is hyper's, and hyper's connections stay.
    conn.write_all(format!("GET {path} HTTP/1.1\r\nhost: t\r\n\r\n").as_bytes())
        .unwrap();
    let mut got = Vec::new();
    let mut piece = [0u8; 8192];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_string();
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().unwrap())
                })
                .expect("a content-length");
            while got.len() < end + 4 + len {
                let n = conn.read(&mut piece).unwrap();
                assert!(n > 0, "closed mid-body");
                got.extend_from_slice(&piece[..n]);
            }
            return got[end + 4..end + 4 + len].to_vec();
        }
        let n = conn.read(&mut piece).unwrap();
        assert!(n > 0, "closed before the head");
        got.extend_from_slice(&piece[..n]);
    }
}
