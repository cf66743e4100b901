//! Zero-copy file bodies on plain HTTP: the kernel moves the file's bytes to the socket with
//! `sendfile(2)`; they never pass through user space.
//!
//! hyper writes whatever a body yields, so the body cannot hand it a file descriptor. Instead
//! it yields *stand-ins*: chunks of the right length that point into one reserved region of
//! address space ([`stand_in`]), each queued with the file region it stands for in the
//! connection's [`Outbox`]. hyper keeps the chunks as they are (it queues them and writes them
//! with `writev`; [`crate::http::net`] asks hyper for that strategy on plain connections) and
//! counts them against `Content-Length` as usual. When a write reaches a stand-in, the
//! connection's socket wrapper ([`crate::http::conn::FlushTracked`]) sends the queued file
//! region with `sendfile` in its place ([`poll_send`]). Everything the wrapper does for other
//! writes holds for these too: the transfer's fence, the byte count a lease renews on, the
//! stall timer, and the flush count a link burns on. A stand-in is never written as bytes:
//! one that has no matching region fails the connection.
//!
//! While hyper works through stand-ins the socket is corked (`TCP_CORK`), and it is uncorked
//! when hyper flushes, that is, once it has handed every byte it holds to the kernel. Every
//! socket has `TCP_NODELAY`, under which each `sendfile` call pushed its own segments; corked,
//! the kernel fills each segment first. A 1 GiB download took 390–440 ms of server CPU instead
//! of 460–580 ms and went from 0.72–0.93 of nginx's rate to 1.02–1.23 (docs/benchmarks.md).
//! Uncorking on the flush keeps the last partial segment from waiting for the kernel's 200 ms
//! cork timeout.
//!
//! The stand-in region is a zeroed allocation that is never written or read, so the kernel
//! backs it with no memory. Only plain TCP connections take stand-ins: under TLS the bytes must
//! pass through the encryption, which would read them, so TLS keeps the copying path.
//!
//! The file is opened (through the sandbox) before the body exists, so this takes an open disk
//! file and a socket, and knows nothing of links or storage.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures_util::Stream;
use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::http::affinity;

/// The longest stand-in, and so the most one `sendfile` call is asked to move. Larger calls
/// mean fewer trips through hyper; the region costs address space, not memory.
const STAND_IN: usize = 4 * 1024 * 1024;

/// The reserved region every stand-in points into: allocated zeroed when the first stand-in is
/// made (the kernel maps zero pages lazily, so untouched it occupies no memory) and never
/// touched.
static REGION: OnceLock<&'static [u8]> = OnceLock::new();

fn region() -> &'static [u8] {
    REGION.get_or_init(|| Box::leak(vec![0u8; STAND_IN].into_boxed_slice()))
}

/// A chunk of `len` bytes (at most [`STAND_IN`]) standing for file bytes.
fn stand_in(len: usize) -> Bytes {
    Bytes::from_static(&region()[..len])
}

/// Whether `buf` is (part of) a stand-in, not bytes to write. Asked on every write of every
/// connection, so it never allocates the region itself.
pub fn is_stand_in(buf: &[u8]) -> bool {
    let Some(region) = REGION.get() else {
        return false;
    };
    let start = region.as_ptr() as usize;
    let p = buf.as_ptr() as usize;
    !buf.is_empty() && p >= start && p + buf.len() <= start + region.len()
}

/// The file regions a connection's stand-ins stand for, in the order hyper will write them.
#[derive(Debug, Default)]
pub struct Outbox {
    queue: Mutex<VecDeque<Region>>,
    /// Whether the socket is corked (`TCP_CORK`) for a file region in flight.
    corked: AtomicBool,
}

/// `len` bytes of `file` from `offset`, still to be sent.
#[derive(Debug)]
struct Region {
    file: Arc<File>,
    offset: u64,
    len: u64,
}

impl Outbox {
    fn push(&self, region: Region) {
        self.lock().push_back(region);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Region>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Called when hyper has handed every byte it holds to the socket: a corked socket sends
    /// what it held back (the last partial segment of a file region).
    pub fn uncork(&self, socket: &TcpStream) {
        if self.corked.swap(false, Ordering::Relaxed) {
            let _ = rustix::net::sockopt::set_tcp_cork(socket, false);
        }
    }
}

/// A file region as a stream of stand-ins, for a connection whose writes go through
/// [`poll_send`]. The file is read by the kernel only as the socket takes the bytes.
pub struct FileChunks {
    file: Arc<File>,
    offset: u64,
    remaining: u64,
    outbox: Arc<Outbox>,
    /// A large region frees its loop's pin until its last stand-in is handed out (up to one
    /// stand-in before its last byte leaves) ([`affinity`]).
    _released: affinity::Released,
}

impl FileChunks {
    /// `len` bytes of `file` from `offset`, to be sent on the connection that owns `outbox`.
    pub fn new(file: File, offset: u64, len: u64, outbox: Arc<Outbox>) -> Self {
        FileChunks {
            file: Arc::new(file),
            offset,
            remaining: len,
            outbox,
            _released: affinity::Released::for_len(len),
        }
    }
}

impl Stream for FileChunks {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let len = self.remaining.min(STAND_IN as u64);
        // Queued as the stand-in is handed out: hyper buffers every chunk it is given, in
        // order, so the queue and hyper's buffer hold the same regions in the same order.
        self.outbox.push(Region {
            file: self.file.clone(),
            offset: self.offset,
            len,
        });
        self.offset += len;
        self.remaining -= len;
        Poll::Ready(Some(Ok(stand_in(len as usize))))
    }
}

/// Sends, in place of the stand-in `buf` that hyper is writing, the file bytes it stands for:
/// as many as the socket takes now. Returns how many, which hyper counts off the stand-in.
pub fn poll_send(
    socket: &TcpStream,
    outbox: &Outbox,
    buf: &[u8],
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    let (file, offset, len) = {
        let queue = outbox.lock();
        match queue.front() {
            // hyper writes what is left of a stand-in, so the front region's remainder and
            // the stand-in's must agree; anything else is a bug, and zeros must never leave.
            Some(r) if r.len == buf.len() as u64 => (r.file.clone(), r.offset, buf.len()),
            _ => return Poll::Ready(Err(io::Error::other("zero-copy stand-in out of step"))),
        }
    };
    // Corked while hyper works through file regions, so that the kernel fills every segment
    // instead of pushing one per call (TCP_NODELAY is on); uncorked when hyper flushes.
    if !outbox.corked.swap(true, Ordering::Relaxed) {
        let _ = rustix::net::sockopt::set_tcp_cork(socket, true);
    }
    let sent = loop {
        ready!(socket.poll_write_ready(cx))?;
        let attempt = socket.try_io(Interest::WRITABLE, || {
            let mut at = offset;
            rustix::fs::sendfile(socket, &*file, Some(&mut at), len).map_err(io::Error::from)
        });
        match attempt {
            Ok(0) => {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shrank while being sent",
                )));
            }
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Poll::Ready(Err(e)),
        }
    };
    let mut queue = outbox.lock();
    if let Some(front) = queue.front_mut() {
        front.offset += sent as u64;
        front.len -= sent as u64;
        if front.len == 0 {
            queue.pop_front();
        }
    }
    Poll::Ready(Ok(sent))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    #[tokio::test]
    async fn stand_ins_cover_the_region_in_order_and_are_recognised() {
        let tmp = tempfile::tempfile().unwrap();
        let outbox = Arc::new(Outbox::default());
        let len = 2 * STAND_IN as u64 + 5;
        let chunks: Vec<Bytes> = FileChunks::new(tmp, 7, len, outbox.clone())
            .map(Result::unwrap)
            .collect()
            .await;
        assert_eq!(
            chunks.iter().map(Bytes::len).collect::<Vec<_>>(),
            [STAND_IN, STAND_IN, 5]
        );
        assert!(chunks.iter().all(|c| is_stand_in(c)));
        assert!(is_stand_in(&chunks[0][10..20]), "a partly written stand-in");
        assert!(!is_stand_in(b"real bytes"));
        assert!(!is_stand_in(&[]));
        let queue = outbox.lock();
        let offsets: Vec<(u64, u64)> = queue.iter().map(|r| (r.offset, r.len)).collect();
        assert_eq!(
            offsets,
            [
                (7, STAND_IN as u64),
                (7 + STAND_IN as u64, STAND_IN as u64),
                (7 + 2 * STAND_IN as u64, 5)
            ]
        );
    }
}
