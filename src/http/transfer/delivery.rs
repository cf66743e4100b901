//! Holding a link while its bytes flow, and burning it exactly when they have been handed over.
//!
//! A transfer takes a [`Lease`] on the link's nonce. For a download the lease then moves into a
//! small supervisor task that renews it while the socket accepts bytes, fences the connection
//! so that nothing is written once the lease may have lapsed (another transfer may hold the
//! link by then), and decides the lease's fate once the response body is done with:
//!
//! - the body was dropped after yielding its last byte: the supervisor waits until the
//!   connection has flushed (those bytes are in the kernel's socket buffer), then commits, which
//!   burns the link; if the connection dies first, it releases instead;
//! - the body was dropped early (client went away, read error): release, the link stays usable;
//! - a range that did not include the file's last byte: release.
//!
//! A body of unknown length (a directory's zip) counts as delivered when its stream ends, which
//! the archive stream does only after the archive's last byte; an error cuts the connection.
//!
//! Any lease not handed on (an error before streaming started) is released when dropped.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures_util::Stream;
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, Take};
use tokio::sync::{oneshot, watch};
use tokio_util::io::ReaderStream;
use tokio_util::task::TaskTracker;

use super::zerocopy::{FileChunks, Outbox};
use crate::http::conn::{ConnInfo, ConnState};
use crate::lease::Lease;
use crate::telemetry::TransferAudit;

/// Read size for file bodies. Each read is one hop to the blocking pool, so larger reads cost
/// fewer hops: a 1 GiB download with curl on loopback measured 0.60–0.67 GB/s with 64 KiB and
/// 0.79–1.50 GB/s with 256 KiB (docs/benchmarks.md). 256 KiB per running download is still small.
const CHUNK: usize = 256 * 1024;

/// What the body tells its supervisor when it is dropped.
enum Handoff {
    /// Every byte was given to hyper; `epoch` is the connection's flush count at that moment.
    Delivered {
        epoch: u64,
    },
    Aborted,
}

/// What happens once the transfer is settled: an audit line (the lease counts the use).
pub struct Settle {
    pub audit: TransferAudit,
}

/// Starts streaming `reader` (already positioned, `len` bytes) under `lease` on connection
/// `conn`. `burns` says whether this response carries the file's final byte. The supervisor
/// runs on `tasks`, so shutdown can wait for it to settle the link.
pub fn deliver<R>(
    lease: Lease,
    reader: R,
    len: u64,
    burns: bool,
    conn: &ConnInfo,
    tasks: &TaskTracker,
    settle: Settle,
) -> DeliveryBody<FileStream<R>>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    // A small file needs no 256 KiB buffer.
    let capacity = usize::try_from(len).unwrap_or(CHUNK).clamp(1, CHUNK);
    let stream = ReaderStream::with_capacity(tokio::io::AsyncReadExt::take(reader, len), capacity);
    start(lease, stream, Some(len), burns, conn, tasks, settle)
}

/// Like [`deliver`], for `len` bytes of `file` from `offset` on a plain connection whose
/// socket sends files itself ([`super::zerocopy`]): the bytes go from the page cache to the socket
/// without being copied through this process, under the same lease, fence and burn rule.
#[allow(clippy::too_many_arguments)]
pub fn deliver_zero_copy(
    lease: Lease,
    file: std::fs::File,
    offset: u64,
    len: u64,
    burns: bool,
    conn: &ConnInfo,
    outbox: Arc<Outbox>,
    tasks: &TaskTracker,
    settle: Settle,
) -> DeliveryBody<FileChunks> {
    let stream = FileChunks::new(file, offset, len, outbox);
    start(lease, stream, Some(len), burns, conn, tasks, settle)
}

/// Streams a body of unknown length (a directory's zip) under `lease`. It burns the link when
/// `stream` ends and its last bytes have been flushed; `stream` must end only when complete and
/// yield an error otherwise.
pub fn deliver_stream<S>(
    lease: Lease,
    stream: S,
    conn: &ConnInfo,
    tasks: &TaskTracker,
    settle: Settle,
) -> DeliveryBody<S>
where
    S: Stream<Item = io::Result<Bytes>> + Unpin,
{
    start(lease, stream, None, true, conn, tasks, settle)
}

/// A file region as a stream of chunks.
pub type FileStream<R> = ReaderStream<Take<R>>;

fn start<S>(
    lease: Lease,
    stream: S,
    len: Option<u64>,
    burns: bool,
    conn: &ConnInfo,
    tasks: &TaskTracker,
    settle: Settle,
) -> DeliveryBody<S> {
    let id = conn.state.fence_new(lease.valid_until());
    let sent = Arc::new(AtomicU64::new(0));
    let (tx, rx) = oneshot::channel();
    tasks.spawn(supervise(
        Supervised {
            lease,
            id,
            conn: conn.state.clone(),
            sent: sent.clone(),
            seen: conn.state.written(),
        },
        rx,
        conn.flushed.clone(),
        burns,
        settle,
    ));
    DeliveryBody {
        stream,
        remaining: len.unwrap_or(u64::MAX),
        exact: len.is_some(),
        sent,
        conn: conn.state.clone(),
        handoff: Some(tx),
        flushed: conn.flushed.clone(),
    }
}

/// A lease under supervision, and the connection it fences.
struct Supervised {
    lease: Lease,
    id: u64,
    conn: Arc<ConnState>,
    /// Bytes the body handed to hyper, for the audit line.
    sent: Arc<AtomicU64>,
    /// The socket's byte count at the last renewal.
    seen: u64,
}

impl Supervised {
    /// Renews only while the socket takes bytes: a client that stopped reading does not hold
    /// the link, and the fence stops the connection when the lease runs out.
    async fn renew_if_progressing(&mut self) {
        let now = self.conn.written();
        if now != self.seen && !self.conn.fenced() {
            self.seen = now;
            self.renew().await;
        }
    }

    async fn renew(&self) {
        renew_fenced(&self.lease, &self.conn, self.id).await;
    }
}

/// Renews `lease` and moves transfer `id`'s fence on `conn` to its new deadline. A renew that
/// finds the lease gone (lapsed and taken, or revoked) fences the connection at once; an
/// unreachable ledger leaves the old fence, and writes stop there. Also what the express lane
/// ([`crate::http::express`]) does while a slow client takes a small file.
pub async fn renew_fenced(lease: &Lease, conn: &ConnState, id: u64) {
    if let Err(e) = lease.renew().await {
        tracing::warn!(error = %e, "could not renew a lease");
    }
    conn.fence_until(id, lease.valid_until());
}

impl Drop for Supervised {
    fn drop(&mut self) {
        // However the transfer ended, the next response on this connection is not fenced.
        self.conn.lift_fence(self.id);
    }
}

async fn supervise(
    mut s: Supervised,
    handoff: oneshot::Receiver<Handoff>,
    mut flushed: watch::Receiver<u64>,
    burns: bool,
    settle: Settle,
) {
    let mut tick = s.lease.ticker();
    tokio::pin!(handoff);
    let outcome = loop {
        tokio::select! {
            h = &mut handoff => break h.unwrap_or(Handoff::Aborted),
            _ = tick.tick() => s.renew_if_progressing().await,
        }
    };
    let bytes = s.sent.load(Ordering::Relaxed);
    match outcome {
        Handoff::Delivered { epoch } if burns => {
            // The last bytes are in hyper's buffer, on their way to the socket. Renew now (the
            // body just made progress, unless the lease is fresh anyway) and while they drain;
            // if the client stops reading, the fence or the write-idle timeout ends the
            // connection and this wait with it.
            if !s.conn.fenced() && !s.lease.fresh() {
                s.renew().await;
            }
            let flushed_out = loop {
                tokio::select! {
                    ok = flushed_past(&mut flushed, epoch) => break ok,
                    _ = tick.tick() => s.renew_if_progressing().await,
                }
            };
            if !flushed_out {
                settle.audit.log("aborted", bytes);
                s.lease.release().await;
                return;
            }
            burn(&mut s.lease, bytes, &settle.audit).await;
        }
        Handoff::Delivered { .. } => {
            settle.audit.log("partial", bytes);
            s.lease.release().await;
        }
        Handoff::Aborted => {
            settle.audit.log("aborted", bytes);
            s.lease.release().await;
        }
    }
}

/// Commits a download whose `bytes` are all in the kernel's socket buffer, which burns the
/// link with its last use, and says so in the audit line. Also what the express lane
/// ([`crate::http::express`]) does after its one write.
pub async fn burn(lease: &mut Lease, bytes: u64, audit: &TransferAudit) {
    match lease.commit_delivered(bytes).await {
        Ok(true) => audit.log("completed", bytes),
        Ok(false) => audit.log("lease_lost", bytes),
        Err(e) => {
            tracing::error!(error = %e, "could not burn a delivered link; it stays usable");
            audit.log("commit_failed", bytes);
        }
    }
}

/// Waits until the connection completes a flush after `epoch`; `false` if it closed first.
async fn flushed_past(flushed: &mut watch::Receiver<u64>, epoch: u64) -> bool {
    flushed.wait_for(|n| *n > epoch).await.is_ok()
}

/// A response body streaming a file region (or an archive) in constant memory. See the module
/// docs for what its drop means.
pub struct DeliveryBody<S> {
    stream: S,
    /// Bytes still to send; for a body of unknown length, `u64::MAX` until its stream ends.
    remaining: u64,
    /// Whether the length is known (a file region) or found at the stream's end (an archive).
    exact: bool,
    sent: Arc<AtomicU64>,
    conn: Arc<ConnState>,
    handoff: Option<oneshot::Sender<Handoff>>,
    flushed: watch::Receiver<u64>,
}

impl<S: Stream<Item = io::Result<Bytes>> + Unpin> Body for DeliveryBody<S> {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        // Never hand over more once the lease may have lapsed: another transfer may hold the
        // link, and a one-time link must not be delivered twice.
        if self.conn.fenced() {
            return Poll::Ready(Some(Err(io::Error::other("lease lost"))));
        }
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        match ready!(Pin::new(&mut self.stream).poll_next(cx)) {
            Some(Ok(chunk)) => {
                let n = chunk.len() as u64;
                if self.exact {
                    self.remaining = self.remaining.saturating_sub(n);
                }
                self.sent.fetch_add(n, Ordering::Relaxed);
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            Some(Err(e)) => Poll::Ready(Some(Err(e))),
            None if !self.exact => {
                self.remaining = 0;
                Poll::Ready(None)
            }
            // The file shrank under us: fail the response rather than send a short body that
            // claims to be complete.
            None => Poll::Ready(Some(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while being sent",
            )))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        if self.exact {
            SizeHint::with_exact(self.remaining)
        } else {
            SizeHint::default()
        }
    }
}

impl<S> Drop for DeliveryBody<S> {
    fn drop(&mut self) {
        let handoff = if self.remaining == 0 && !self.conn.fenced() {
            Handoff::Delivered {
                epoch: *self.flushed.borrow(),
            }
        } else {
            Handoff::Aborted
        };
        if let Some(tx) = self.handoff.take() {
            let _ = tx.send(handoff);
        }
    }
}
