//! The accept loop: TCP options, per-connection facts for handlers, graceful shutdown.
//!
//! burnlink runs its own small loop over hyper instead of `axum::serve` for two reasons. It
//! sets TCP_NODELAY on every socket (without it a keep-alive client waits ~40 ms on a delayed
//! ACK per response). And it wraps every connection in [`FlushTracked`], which lets a download
//! learn when its last bytes have left hyper's buffer for the kernel (the documented moment at
//! which a link burns), counts the bytes the kernel accepted (what a lease renews on), and
//! refuses writes once the running transfer's lease may have lapsed (its fence).

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::http::HeaderMap;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use ipnet::IpNet;
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// What a handler may know about the connection its request came on.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// Counts completed flushes of the connection: every time hyper has handed all its buffered
    /// bytes to the kernel. Closed when the connection ends.
    pub flushed: watch::Receiver<u64>,
    pub state: Arc<ConnState>,
}

/// Per-connection state shared between the socket wrapper and the transfer using it.
#[derive(Debug, Default)]
pub struct ConnState {
    written: AtomicU64,
    fence: Mutex<Option<Fence>>,
}

/// "No byte may leave after `until`", set by the transfer `owner` whose lease ends then.
#[derive(Clone, Copy, Debug)]
struct Fence {
    owner: u64,
    until: Instant,
}

impl ConnState {
    /// Bytes the kernel has accepted on this connection so far: what a lease renews on.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Stops writes on this connection after `until`, on behalf of transfer `owner`. A response
    /// whose lease may have lapsed must not keep sending (another transfer may hold the link);
    /// fencing the socket also stops what is already in hyper's buffer.
    pub fn fence_until(&self, owner: u64, until: Instant) {
        *self.lock() = Some(Fence { owner, until });
    }

    /// Removes `owner`'s fence, unless a later transfer on this connection replaced it.
    pub fn lift_fence(&self, owner: u64) {
        let mut fence = self.lock();
        if fence.is_some_and(|f| f.owner == owner) {
            *fence = None;
        }
    }

    pub fn fenced(&self) -> bool {
        self.lock().is_some_and(|f| Instant::now() >= f.until)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Fence>> {
        self.fence.lock().unwrap_or_else(|p| p.into_inner())
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
    pub fn new(inner: T, write_idle: Duration) -> (Self, watch::Receiver<u64>, Arc<ConnState>) {
        let (flushes, rx) = watch::channel(0);
        let state = Arc::new(ConnState::default());
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
}

fn fenced_off() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "the transfer's lease ran out",
    )
}

impl<T: AsyncWrite> FlushTracked<T> {
    /// What every write goes through: the fence, the byte count and the stall timer.
    fn guarded_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        write: impl FnOnce(Pin<&mut T>, &mut Context<'_>) -> Poll<io::Result<usize>>,
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

impl<T: AsyncRead> AsyncRead for FlushTracked<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.project().inner.poll_read(cx, buf)
    }
}

impl<T: AsyncWrite> AsyncWrite for FlushTracked<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.guarded_write(cx, |io, cx| io.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.guarded_write(cx, |io, cx| io.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    /// hyper calls this only after its own write buffer is empty, so a completed flush means
    /// every byte hyper was given is in the kernel's socket buffer.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        let result = this.inner.poll_flush(cx);
        if let Poll::Ready(Ok(())) = result {
            this.flushes.send_modify(|n| *n += 1);
        }
        result
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
}

/// How long cut-off transfers get to release their leases once the grace period is over.
const CUT_SETTLE: Duration = Duration::from_secs(5);

/// Serves `router` on `listener` (over TLS when `tls` is given) until `shutdown` resolves, then
/// waits up to `grace` for open connections to finish and for `tasks` (the work that settles
/// their transfers) to end. Connections still open after that are cut: dropping them aborts
/// their transfers, which release their leases (and log it) before this returns.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    tls: Option<TlsAcceptor>,
    shutdown: impl std::future::Future<Output = ()>,
    grace: Duration,
    tasks: TaskTracker,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let cut = CancellationToken::new();
    let conns = TaskTracker::new();
    let mut shutdown = pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            // Shutdown first: once it is asked for, no further connection is taken.
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        // Under TLS too, the tracker wraps the TCP stream itself: a completed flush still
        // means "every byte is in the kernel's socket buffer".
        let (io, flushed, state) = FlushTracked::new(stream, limits.write_idle);
        let info = ConnInfo {
            peer,
            flushed,
            state,
        };
        let (router, watcher, cut, tls) =
            (router.clone(), graceful.watcher(), cut.clone(), tls.clone());
        conns.spawn(async move {
            let served = async {
                match tls {
                    None => serve_conn(TokioIo::new(io), router, info, limits, watcher).await,
                    Some(acceptor) => {
                        // The handshake is bounded like a request head.
                        match tokio::time::timeout(limits.header_read_timeout, acceptor.accept(io))
                            .await
                        {
                            Ok(Ok(io)) => {
                                serve_conn(TokioIo::new(io), router, info, limits, watcher).await
                            }
                            Ok(Err(e)) => {
                                tracing::debug!(error = %e, %peer, "TLS handshake failed")
                            }
                            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                        }
                    }
                }
            };
            tokio::select! {
                () = served => {}
                () = cut.cancelled() => {}
            }
        });
    }
    drop(listener);
    let drained = async {
        graceful.shutdown().await;
        tasks.close();
        tasks.wait().await;
    };
    tokio::select! {
        () = drained => tracing::info!("all connections closed and transfers settled"),
        () = tokio::time::sleep(grace) => {
            tracing::warn!(grace_s = grace.as_secs(), "shutdown grace period over; cutting remaining transfers");
            cut.cancel();
            conns.close();
            tasks.close();
            let settled = async {
                conns.wait().await;
                tasks.wait().await;
            };
            if tokio::time::timeout(CUT_SETTLE, settled).await.is_err() {
                tracing::warn!("some transfers did not settle; their leases lapse by themselves");
            }
        }
    }
}

/// Serves one connection's requests, each carrying the connection's [`ConnInfo`].
async fn serve_conn<I>(
    io: I,
    router: Router,
    info: ConnInfo,
    limits: ConnLimits,
    watcher: hyper_util::server::graceful::Watcher,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let peer = info.peer;
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(info.clone());
        router.clone().oneshot(req.map(axum::body::Body::new))
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // A head that arrives in one read is checked against `max_header_size`; one that
        // arrives in pieces against `max_buf_size`. Either way: 431 and the connection closes.
        .max_header_size(limits.max_header_bytes)
        .max_buf_size(limits.max_header_bytes.max(8192));
    let conn = builder.serve_connection(io, service);
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(error = %e, %peer, "connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
