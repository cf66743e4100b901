//! A loopback TCP relay in front of a server that counts the bytes it passes and cuts the
//! connection after a given number of bytes in one direction, a given number of times: a
//! flaky network, made deterministic, to prove that clients resume. It can also keep what a
//! client sent, for a test to read its requests.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Which way the counted (and cut) bytes flow.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Flow {
    /// Client to server (an upload's body).
    Up,
    /// Server to client (a download's body).
    Down,
}

pub struct Relay {
    pub addr: SocketAddr,
    state: Arc<State>,
}

struct State {
    target: SocketAddr,
    flow: Flow,
    cut_after: u64,
    cuts_left: AtomicU32,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    connections: AtomicU32,
    stop: AtomicBool,
    /// Server-to-client bytes stop passing once this many have passed in all, until
    /// [`Relay::release`]: a download paused mid-way, for a test to act meanwhile.
    hold_after: AtomicU64,
    /// The first client-to-server bytes passed (every connection, in the order passed), up
    /// to [`Relay::record_up`]'s cap: what a client sent, for a test to read its requests.
    recorded_up: Mutex<Vec<u8>>,
    record_up_cap: AtomicU64,
}

impl Relay {
    /// Relays to `target`; each connection whose `flow` bytes exceed `cut_after` is cut, until
    /// `cuts` connections have been cut (later ones pass untouched).
    pub fn start(target: SocketAddr, flow: Flow, cut_after: u64, cuts: u32) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            target,
            flow,
            cut_after,
            cuts_left: AtomicU32::new(cuts),
            bytes_up: AtomicU64::new(0),
            bytes_down: AtomicU64::new(0),
            connections: AtomicU32::new(0),
            stop: AtomicBool::new(false),
            hold_after: AtomicU64::new(u64::MAX),
            recorded_up: Mutex::new(Vec::new()),
            record_up_cap: AtomicU64::new(0),
        });
        let shared = state.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if shared.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(shared.target) else {
                    continue;
                };
                shared.connections.fetch_add(1, Ordering::SeqCst);
                // Small receive buffers: bytes the relay's kernel has taken in but the relay has
                // not passed on are lost at a cut, yet count as delivered for the sender. Kept
                // small, what a cut loses stays far below what the tests' files leave to send.
                for s in [&client, &server] {
                    let _ = rustix::net::sockopt::set_socket_recv_buffer_size(s, RECV_BUFFER);
                }
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let cut = Arc::new(AtomicBool::new(false));
                let pair = [client.try_clone().unwrap(), server.try_clone().unwrap()];
                for (from, to, flow) in [
                    (
                        client.try_clone().unwrap(),
                        server.try_clone().unwrap(),
                        Flow::Up,
                    ),
                    (
                        server.try_clone().unwrap(),
                        client.try_clone().unwrap(),
                        Flow::Down,
                    ),
                ] {
                    let shared = shared.clone();
                    let cut = cut.clone();
                    let pair = [pair[0].try_clone().unwrap(), pair[1].try_clone().unwrap()];
                    std::thread::spawn(move || pump(from, to, flow, &shared, &cut, &pair));
                }
            }
        });
        Relay { addr, state }
    }

    /// `http://ADDR`, to put in front of a link's path.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Bytes passed in `flow`'s direction, over every connection.
    pub fn bytes(&self, flow: Flow) -> u64 {
        match flow {
            Flow::Up => self.state.bytes_up.load(Ordering::SeqCst),
            Flow::Down => self.state.bytes_down.load(Ordering::SeqCst),
        }
    }

    /// Cuts still to come.
    pub fn cuts_left(&self) -> u32 {
        self.state.cuts_left.load(Ordering::SeqCst)
    }

    pub fn connections(&self) -> u32 {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Holds server-to-client bytes once `bytes` have passed (over every connection).
    pub fn hold_after(&self, bytes: u64) {
        self.state.hold_after.store(bytes, Ordering::SeqCst);
    }

    /// Lets held bytes pass again.
    pub fn release(&self) {
        self.state.hold_after.store(u64::MAX, Ordering::SeqCst);
    }

    /// Keeps the first `cap` client-to-server bytes passed from now on, for
    /// [`Relay::recorded_up`].
    pub fn record_up(&self, cap: u64) {
        self.state.record_up_cap.store(cap, Ordering::SeqCst);
    }

    /// The client-to-server bytes kept since [`Relay::record_up`].
    pub fn recorded_up(&self) -> Vec<u8> {
        self.state.recorded_up.lock().unwrap().clone()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

/// The receive buffer of both of a relayed connection's sockets (the kernel doubles it).
const RECV_BUFFER: usize = 128 << 10;

/// Copies `from` to `to`; in the watched direction, once this connection has passed
/// `cut_after` bytes and cuts remain, passes no more and closes both sides.
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    flow: Flow,
    state: &State,
    cut: &AtomicBool,
    pair: &[TcpStream; 2],
) {
    let counter = match flow {
        Flow::Up => &state.bytes_up,
        Flow::Down => &state.bytes_down,
    };
    // A connection that found no cut left when it passed the mark runs to its end.
    let mut watched = flow == state.flow;
    let mut passed = 0u64;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if cut.load(Ordering::SeqCst) {
            break;
        }
        if flow == Flow::Down {
            // Bounded: a test that forgets to release does not hang the relay for ever.
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while counter.load(Ordering::SeqCst) >= state.hold_after.load(Ordering::SeqCst)
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let mut take = n;
        let mut cut_now = false;
        if watched && passed + n as u64 > state.cut_after {
            let claimed = state
                .cuts_left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| c.checked_sub(1))
                .is_ok();
            if claimed {
                take = (state.cut_after - passed) as usize;
                cut_now = true;
            } else {
                watched = false;
            }
        }
        if take > 0 && to.write_all(&buf[..take]).is_err() {
            break;
        }
        if flow == Flow::Up {
            let cap = state.record_up_cap.load(Ordering::SeqCst) as usize;
            let mut kept = state.recorded_up.lock().unwrap();
            let room = cap.saturating_sub(kept.len()).min(take);
            kept.extend_from_slice(&buf[..room]);
        }
        counter.fetch_add(take as u64, Ordering::SeqCst);
        passed += take as u64;
        if cut_now {
            cut.store(true, Ordering::SeqCst);
            break;
        }
    }
    if cut.load(Ordering::SeqCst) {
        for s in pair {
            let _ = s.shutdown(Shutdown::Both);
        }
    } else {
        let _ = to.shutdown(Shutdown::Write);
    }
}

/// A minimal HTTPS proxy: answers one `CONNECT host:port` per connection (loopback targets
/// only), then relays bytes both ways. Counts the tunnels it opened.
pub struct ConnectProxy {
    pub addr: SocketAddr,
    tunnels: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
}

impl ConnectProxy {
    pub fn start() -> ConnectProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let tunnels = Arc::new(AtomicU32::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, halt) = (tunnels.clone(), stop.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if halt.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let count = count.clone();
                std::thread::spawn(move || tunnel(client, &count));
            }
        });
        ConnectProxy {
            addr,
            tunnels,
            stop,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn tunnels(&self) -> u32 {
        self.tunnels.load(Ordering::SeqCst)
    }
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

fn tunnel(mut client: TcpStream, count: &AtomicU32) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(10)));
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
        match client.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let target = head
        .strip_prefix("CONNECT ")
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|t| t.parse::<SocketAddr>().ok())
        .filter(|a| a.ip().is_loopback());
    let Some(target) = target else {
        let _ = client.write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n");
        return;
    };
    let Ok(server) = TcpStream::connect(target) else {
        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n");
        return;
    };
    if client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .is_err()
    {
        return;
    }
    let _ = client.set_read_timeout(None);
    count.fetch_add(1, Ordering::SeqCst);
    let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let (mut c1, mut s1) = (client, server);
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut c1, &mut s1);
        let _ = s1.shutdown(Shutdown::Write);
    });
    let _ = std::io::copy(&mut s2, &mut c2);
    let _ = c2.shutdown(Shutdown::Write);
    let _ = up.join();
}
