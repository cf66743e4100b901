//! A loopback TCP relay in front of a server that counts the bytes it passes and cuts the
//! connection after a given number of bytes in one direction, a given number of times: a
//! flaky network, made deterministic, to prove that clients resume.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
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
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

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
