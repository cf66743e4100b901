//! One client connection as handlers see it, and the socket wrapper that makes burning safe.
//!
//! Every connection is wrapped in [`FlushTracked`], which lets a download learn when its last
//! bytes have left the server's buffers for the kernel (the documented moment at which a link
//! burns), counts the bytes the kernel accepted (what a lease renews on), and refuses writes
//! once the running transfer's lease may have lapsed (its fence). The accept loop makes these;
//! the gate, the transfers and the express lane read them.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::HeaderMap;
use bytes::Bytes;
use ipnet::IpNet;
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};

use crate::http::transfer::zerocopy::{self, Outbox};

/// What a handler may know about the connection its request came on.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// Counts completed flushes of the connection: every time hyper has handed all its buffered
    /// bytes to the kernel. Closed when the connection ends.
    pub flushed: watch::Receiver<u64>,
    pub state: Arc<ConnState>,
}

/// Per-connection state shared between the socket wrapper and the transfers using it.
#[derive(Debug, Default)]
pub struct ConnState {
    written: AtomicU64,
    /// Transfers started on this connection, which number their fences.
    transfers: AtomicU64,
    /// One fence per transfer on this connection. Usually one; two while a keep-alive
    /// connection's previous transfer waits for its last bytes to drain as the next begins.
    /// Each transfer moves and lifts only its own, so one's cleanup or renewal can never
    /// replace or remove another's.
    fences: Mutex<Vec<Fence>>,
    /// On a plain TCP connection, the file regions that downloads' zero-copy stand-ins stand
    /// for ([`zerocopy`]); `None` under TLS, which must see every byte.
    outbox: Option<Arc<Outbox>>,
}

/// "No byte may leave after `until`", set by the transfer `owner` whose lease ends then.
#[derive(Clone, Copy, Debug)]
struct Fence {
    owner: u64,
    until: Instant,
}

impl ConnState {
    /// Where a download on this connection queues the file regions it sends with zero copy;
    /// `None` when it must stream the bytes (TLS).
    pub fn zero_copy(&self) -> Option<Arc<Outbox>> {
        self.outbox.clone()
    }

    /// Bytes the kernel has accepted on this connection so far: what a lease renews on.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Stops writes on this connection after `until`, on behalf of transfer `owner` (replacing
    /// only `owner`'s own earlier fence). A response whose lease may have lapsed must not keep
    /// sending (another transfer may hold the link); fencing the socket also stops what is
    /// already in hyper's buffer.
    pub fn fence_until(&self, owner: u64, until: Instant) {
        let mut fences = self.lock();
        match fences.iter_mut().find(|f| f.owner == owner) {
            Some(fence) => fence.until = until,
            None => fences.push(Fence { owner, until }),
        }
    }

    /// Fences the connection for a new transfer until `until`, and returns the id its fence
    /// goes by from now on. Ids need only differ between one connection's transfers, so they
    /// are counted here: a counter for the whole process was a line both event loops wrote on
    /// every download (`docs/benchmarks.md`, the fifteenth pass).
    pub fn fence_new(&self, until: Instant) -> u64 {
        let owner = self.transfers.fetch_add(1, Ordering::Relaxed) + 1;
        self.fence_until(owner, until);
        owner
    }

    /// Removes `owner`'s fence; other transfers' fences stay.
    pub fn lift_fence(&self, owner: u64) {
        self.lock().retain(|f| f.owner != owner);
    }

    /// Whether any transfer's fence has passed: the socket then takes no more bytes, since
    /// whatever it would send next may be that transfer's.
    pub fn fenced(&self) -> bool {
        let now = Instant::now();
        self.lock().iter().any(|f| now >= f.until)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Fence>> {
        self.fences.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl ConnInfo {
    /// The client's address: the peer's, or the nearest untrusted hop of `X-Forwarded-For` when
    /// the peer is one of our trusted proxies.
    pub fn client_ip(&self, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
        client_ip(self.peer.ip(), headers, trusted)
    }
}

pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    // On a dual-stack socket IPv4 clients appear as `::ffff:a.b.c.d`; IPv4 CIDRs must match them.
    let peer = peer.to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    // Walk from the nearest hop back; the first one we do not trust is the client. A hop we
    // cannot read stops the walk at the last proxy we trust: whatever stands left of it was
    // written by someone we cannot vouch for (fail closed for `ip`-restricted links).
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Some(ip) = parse_hop(hop) else { break };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    client
}

/// An `X-Forwarded-For` entry: `ip`, `ip:port` or `[ipv6]:port`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|a| a.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

pin_project! {
    /// An I/O stream that counts completed flushes and written bytes, refuses writes past a
    /// transfer's fence, and fails writes that make no progress for `write_idle`: a client that
    /// stops reading must not hold a link (or a connection) forever.
    pub struct FlushTracked<T> {
        #[pin]
        inner: T,
        flushes: watch::Sender<u64>,
        state: Arc<ConnState>,
        write_idle: Duration,
        stalled: Option<Pin<Box<Sleep>>>,
    }
}

impl<T> FlushTracked<T> {
    /// Wraps a connection's socket; `zero_copy` when nothing (no TLS) stands between this
    /// wrapper and hyper, so that downloads may send files with `sendfile`.
    pub fn new(
        inner: T,
        write_idle: Duration,
        zero_copy: bool,
    ) -> (Self, watch::Receiver<u64>, Arc<ConnState>) {
        let (flushes, rx) = watch::channel(0);
        let state = Arc::new(ConnState {
            outbox: zero_copy.then(Arc::default),
            ..ConnState::default()
        });
        (
            FlushTracked {
                inner,
                flushes,
                state: state.clone(),
                write_idle,
                stalled: None,
            },
            rx,
            state,
        )
    }

    /// The socket, to ask it about the connection.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// The socket back, between two requests, to move it to another event loop. The flush
    /// count, byte count and fences are this wrapper's and end with it; the loop that takes
    /// the socket wraps it afresh.
    pub fn into_inner(self) -> T {
        self.inner
    }
}

fn fenced_off() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "the transfer's lease ran out",
    )
}

impl FlushTracked<TcpStream> {
    /// What every write goes through: the fence, the byte count and the stall timer.
    fn guarded_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        write: impl FnOnce(Pin<&mut TcpStream>, &mut Context<'_>) -> Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        if this.state.fenced() {
            return Poll::Ready(Err(fenced_off()));
        }
        let result = write(this.inner, cx);
        if let Poll::Ready(Ok(n)) = &result {
            this.state.written.fetch_add(*n as u64, Ordering::Relaxed);
        }
        watch_stall(result, this.stalled, *this.write_idle, cx)
    }
}

/// Tracks how long a write has been pending; `Err(TimedOut)` once it exceeds `limit`.
fn watch_stall<R>(
    result: Poll<io::Result<R>>,
    stalled: &mut Option<Pin<Box<Sleep>>>,
    limit: Duration,
    cx: &mut Context<'_>,
) -> Poll<io::Result<R>> {
    match result {
        Poll::Pending => {
            let timer = stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
            if timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "client stopped reading",
                )));
            }
            Poll::Pending
        }
        ready => {
            *stalled = None;
            ready
        }
    }
}

impl AsyncRead for FlushTracked<TcpStream> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.project().inner.poll_read(cx, buf)
    }
}

impl AsyncWrite for FlushTracked<TcpStream> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.state.outbox.clone() {
            Some(outbox) if zerocopy::is_stand_in(buf) => {
                self.guarded_write(cx, |io, cx| zerocopy::poll_send(&io, &outbox, buf, cx))
            }
            _ => self.guarded_write(cx, |io, cx| io.poll_write(cx, buf)),
        }
    }

    /// Real bytes go out with `writev` up to the first zero-copy stand-in; a stand-in at the
    /// front goes out with `sendfile` (a short write either way, which hyper continues).
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let Some(outbox) = self.state.outbox.clone() else {
            return self.guarded_write(cx, |io, cx| io.poll_write_vectored(cx, bufs));
        };
        match bufs.iter().position(|b| zerocopy::is_stand_in(b)) {
            None => self.guarded_write(cx, |io, cx| io.poll_write_vectored(cx, bufs)),
            Some(0) => {
                self.guarded_write(cx, |io, cx| zerocopy::poll_send(&io, &outbox, &bufs[0], cx))
            }
            Some(real) => {
                self.guarded_write(cx, |io, cx| io.poll_write_vectored(cx, &bufs[..real]))
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    /// hyper calls this only after its own write buffer is empty, so a completed flush means
    /// every byte hyper was given is in the kernel's socket buffer.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut this = self.project();
        let result = this.inner.as_mut().poll_flush(cx);
        if let Poll::Ready(Ok(())) = result {
            if let Some(outbox) = &this.state.outbox {
                outbox.uncork(&this.inner);
            }
            this.flushes.send_modify(|n| *n += 1);
        }
        result
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

pin_project! {
    /// A connection whose first bytes were read already (by the express lane, which hands the
    /// connection over with them): reads return those before the socket's.
    pub struct Prefixed<T> {
        prefix: Bytes,
        #[pin]
        inner: T,
    }
}

impl<T> Prefixed<T> {
    pub fn new(prefix: Bytes, inner: T) -> Self {
        Prefixed { prefix, inner }
    }
}

impl<T: AsyncRead> AsyncRead for Prefixed<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        if this.prefix.is_empty() {
            return this.inner.poll_read(cx, buf);
        }
        let n = this.prefix.len().min(buf.remaining());
        buf.put_slice(&this.prefix.split_to(n));
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite> AsyncWrite for Prefixed<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

/// Limits on what one connection may make the server hold or wait for.
#[derive(Clone, Copy, Debug)]
pub struct ConnLimits {
    /// How long a request head (and a TLS handshake) may take to arrive.
    pub header_read_timeout: Duration,
    /// How long a write may wait for a client that does not read.
    pub write_idle: Duration,
    pub max_header_bytes: usize,
    /// Client connections served at once; beyond it, a few more are let in for `/healthz`
    /// and `/metrics` only (the accept loop's headroom), and beyond that the server stops accepting until one
    /// closes (the kernel's backlog holds the rest).
    pub max_connections: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two transfers on one keep-alive connection: the first (draining its last bytes) renews
    /// and is cleaned up while the second runs; neither touches the second's fence.
    #[tokio::test]
    async fn a_transfer_moves_and_lifts_only_its_own_fence() {
        let conn = ConnState::default();
        let now = Instant::now();
        let first = conn.fence_new(now + Duration::from_secs(60));
        let second = conn.fence_new(now + Duration::from_millis(20));
        // The first renews: the second's (near) fence stands.
        conn.fence_until(first, now + Duration::from_secs(90));
        assert!(!conn.fenced());
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert!(
            conn.fenced(),
            "the second's fence passed and was not replaced"
        );
        // The first is cleaned up: the second's passed fence still stops the socket.
        conn.lift_fence(first);
        assert!(conn.fenced());
        conn.lift_fence(second);
        assert!(!conn.fenced());
        // And a later transfer's fence outlives an earlier one's lifting.
        let third = conn.fence_new(Instant::now());
        assert!(third != first && third != second);
        conn.lift_fence(second);
        assert!(conn.fenced());
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "203.0.113.9, 10.1.1.1".parse().unwrap());
        assert_eq!(
            client_ip("10.0.0.2".parse().unwrap(), &h, &trusted),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_ip("198.51.100.7".parse().unwrap(), &h, &trusted),
            "198.51.100.7".parse::<IpAddr>().unwrap(),
            "an untrusted peer cannot claim another address"
        );
        // A spoofed left-most entry does not win over the hop our proxy saw.
        h.insert("x-forwarded-for", "1.2.3.4, 198.51.100.8".parse().unwrap());
        assert_eq!(
            client_ip("10.0.0.2".parse().unwrap(), &h, &trusted),
            "198.51.100.8".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_ip("10.0.0.2".parse().unwrap(), &HeaderMap::new(), &trusted),
            "10.0.0.2".parse::<IpAddr>().unwrap()
        );
        // A hop we cannot read stops the walk at our proxy (fail closed); ports are fine.
        h.insert("x-forwarded-for", "1.2.3.4, unknown".parse().unwrap());
        assert_eq!(
            client_ip("10.0.0.2".parse().unwrap(), &h, &trusted),
            "10.0.0.2".parse::<IpAddr>().unwrap()
        );
        h.insert("x-forwarded-for", "198.51.100.9:4711".parse().unwrap());
        assert_eq!(
            client_ip("10.0.0.2".parse().unwrap(), &h, &trusted),
            "198.51.100.9".parse::<IpAddr>().unwrap()
        );
        h.insert("x-forwarded-for", "1.2.3.4, 198.51.100.8".parse().unwrap());
        // IPv4 peers on a dual-stack socket are matched as IPv4.
        assert_eq!(
            client_ip("::ffff:10.0.0.2".parse().unwrap(), &h, &trusted),
            "198.51.100.8".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_ip("::ffff:192.0.2.1".parse().unwrap(), &h, &trusted),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
    }
}
