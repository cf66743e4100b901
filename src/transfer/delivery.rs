//! Holding a link while its bytes flow, and burning it exactly when they have been handed over.
//!
//! A transfer takes a [`Lease`] on the link's nonce. For a download the lease then moves into a
//! small supervisor task that renews it while bytes flow and decides its fate once the response
//! body is done with:
//!
//! - the body was dropped after yielding its last byte: the supervisor waits until the
//!   connection has flushed (those bytes are in the kernel's socket buffer), then commits, which
//!   burns the link; if the connection dies first, it releases instead;
//! - the body was dropped early (client went away, read error): release, the link stays usable;
//! - a range that did not include the file's last byte: release.
//!
//! Any lease not handed on (an error before streaming started) is released when dropped.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, Take};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use tokio_util::io::ReaderStream;

use crate::error::ApiError;
use crate::ledger::{Acquire, Ledger, LedgerError, Owner, Receipt};
use crate::stats::StatsStore;
use crate::telemetry::TransferAudit;
use crate::token::{Claims, Nonce};

/// Read size for file bodies. Each read is one hop to the blocking pool, so larger reads cost
/// fewer hops: a 1 GiB download with curl on loopback measured 0.60–0.67 GB/s with 64 KiB and
/// 0.79–1.50 GB/s with 256 KiB (BENCHMARKS.md). 256 KiB per running download is still small.
const CHUNK: usize = 256 * 1024;

/// A held lease on one link. Releasing on drop makes every early return safe.
pub struct Lease {
    ledger: Arc<dyn Ledger>,
    nonce: Nonce,
    owner: Owner,
    lifetime: Duration,
    settled: bool,
}

impl Lease {
    /// Takes the link's lease, or says why not in the transfer route's terms.
    pub async fn acquire(
        ledger: &Arc<dyn Ledger>,
        claims: &Claims,
        lifetime: Duration,
    ) -> Result<Lease, ApiError> {
        let owner = Owner::random();
        match ledger
            .lease(&claims.nonce, owner, claims.expires_at, lifetime)
            .await?
        {
            Acquire::Granted => Ok(Lease {
                ledger: ledger.clone(),
                nonce: claims.nonce,
                owner,
                lifetime,
                settled: false,
            }),
            Acquire::Busy => Err(ApiError::InProgress),
            Acquire::Used => Err(ApiError::Used),
            Acquire::Revoked => Err(ApiError::Revoked),
        }
    }

    pub async fn renew(&self) -> Result<bool, LedgerError> {
        self.ledger
            .renew(&self.nonce, self.owner, self.lifetime)
            .await
    }

    /// Burns the link. `Ok(false)`: the lease was lost (lapsed or revoked) and nothing burned.
    pub async fn commit(mut self, receipt: Option<Receipt>) -> Result<bool, LedgerError> {
        self.settled = true;
        self.ledger.commit(&self.nonce, self.owner, receipt).await
    }

    pub async fn release(mut self) {
        self.settled = true;
        if let Err(e) = self.ledger.release(&self.nonce, self.owner).await {
            // The lease lapses by itself after its lifetime.
            tracing::warn!(error = %e, "could not release a lease; it will lapse");
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let (ledger, nonce, owner) = (self.ledger.clone(), self.nonce, self.owner);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = ledger.release(&nonce, owner).await {
                    tracing::warn!(error = %e, "could not release a lease; it will lapse");
                }
            });
        }
    }
}

/// What the body tells its supervisor when it is dropped.
enum Handoff {
    /// Every byte was given to hyper; `epoch` is the connection's flush count at that moment.
    Delivered {
        epoch: u64,
    },
    Aborted,
}

/// What happens once the transfer is settled.
pub struct Settle {
    pub stats: Arc<dyn StatsStore>,
    pub audit: TransferAudit,
    pub session: Option<String>,
    pub expires_at: u64,
}

/// Starts streaming `reader` (already positioned, `len` bytes) under `lease`. `burns` says
/// whether this response carries the file's final byte.
pub fn deliver<R>(
    lease: Lease,
    reader: R,
    len: u64,
    burns: bool,
    flushed: watch::Receiver<u64>,
    settle: Settle,
) -> DeliveryBody<R>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    let progress = Arc::new(AtomicU64::new(0));
    let lost = Arc::new(AtomicBool::new(false));
    let valid = Validity::new(lease.lifetime);
    let (tx, rx) = oneshot::channel();
    tokio::spawn(supervise(
        lease,
        rx,
        Shared {
            progress: progress.clone(),
            lost: lost.clone(),
            valid: valid.clone(),
        },
        flushed.clone(),
        burns,
        settle,
    ));
    DeliveryBody {
        stream: ReaderStream::with_capacity(tokio::io::AsyncReadExt::take(reader, len), CHUNK),
        remaining: len,
        progress,
        lost,
        valid,
        handoff: Some(tx),
        flushed,
    }
}

/// Until when the lease is surely still ours, as milliseconds on tokio's clock since `base`.
/// Measured from *before* each renew call, so it never runs past the ledger's own deadline.
#[derive(Clone)]
struct Validity {
    base: Instant,
    until_ms: Arc<AtomicU64>,
}

impl Validity {
    fn new(lifetime: Duration) -> Self {
        let v = Validity {
            base: Instant::now(),
            until_ms: Arc::new(AtomicU64::new(0)),
        };
        v.extend_from(v.base, lifetime);
        v
    }

    fn extend_from(&self, start: Instant, lifetime: Duration) {
        let until = (start + lifetime).saturating_duration_since(self.base);
        self.until_ms
            .store(until.as_millis() as u64, Ordering::Relaxed);
    }

    fn expired(&self) -> bool {
        self.base.elapsed().as_millis() as u64 >= self.until_ms.load(Ordering::Relaxed)
    }
}

/// State the body and its supervisor both see.
struct Shared {
    progress: Arc<AtomicU64>,
    lost: Arc<AtomicBool>,
    valid: Validity,
}

impl Shared {
    async fn renew(&self, lease: &Lease) {
        let start = Instant::now();
        match lease.renew().await {
            Ok(true) => self.valid.extend_from(start, lease.lifetime),
            Ok(false) => self.lost.store(true, Ordering::Relaxed),
            // The ledger is unreachable: the lease runs out at its old deadline, and the body
            // stops sending then.
            Err(e) => tracing::warn!(error = %e, "could not renew a lease"),
        }
    }
}

async fn supervise(
    lease: Lease,
    handoff: oneshot::Receiver<Handoff>,
    shared: Shared,
    mut flushed: watch::Receiver<u64>,
    burns: bool,
    settle: Settle,
) {
    let period = lease.lifetime / 3;
    let mut tick = tokio::time::interval_at(Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = 0;
    tokio::pin!(handoff);
    let outcome = loop {
        tokio::select! {
            h = &mut handoff => break h.unwrap_or(Handoff::Aborted),
            _ = tick.tick() => {
                // Renew only while bytes flow: a client that stopped reading does not hold the
                // link, and once the lease has run out the body refuses to send more.
                let now = shared.progress.load(Ordering::Relaxed);
                if now != seen && !shared.valid.expired() {
                    seen = now;
                    shared.renew(&lease).await;
                }
            }
        }
    };
    let bytes = shared.progress.load(Ordering::Relaxed);
    match outcome {
        Handoff::Delivered { epoch } if burns => {
            // The last bytes are in hyper's buffer, on their way to the socket. Keep the lease
            // while they drain; a client that stops reading is cut off by the connection's
            // write-idle timeout, which ends this wait with a release.
            let flushed_out = loop {
                tokio::select! {
                    ok = flushed_past(&mut flushed, epoch) => break ok,
                    _ = tick.tick() => shared.renew(&lease).await,
                }
            };
            if !flushed_out {
                lease.release().await;
                settle.audit.log("aborted", bytes);
                return;
            }
            match lease.commit(None).await {
                Ok(true) => {
                    if let Err(e) = settle
                        .stats
                        .record_use(settle.session.as_deref(), settle.expires_at)
                        .await
                    {
                        tracing::warn!(error = %e, "could not count a used link");
                    }
                    settle.audit.log("completed", bytes);
                }
                Ok(false) => settle.audit.log("lease_lost", bytes),
                Err(e) => {
                    tracing::error!(error = %e, "could not burn a delivered link; it stays usable");
                    settle.audit.log("commit_failed", bytes);
                }
            }
        }
        Handoff::Delivered { .. } => {
            lease.release().await;
            settle.audit.log("partial", bytes);
        }
        Handoff::Aborted => {
            lease.release().await;
            settle.audit.log("aborted", bytes);
        }
    }
}

/// Waits until the connection completes a flush after `epoch`; `false` if it closed first.
async fn flushed_past(flushed: &mut watch::Receiver<u64>, epoch: u64) -> bool {
    flushed.wait_for(|n| *n > epoch).await.is_ok()
}

/// A response body streaming a file region in constant memory. See the module docs for what
/// its drop means.
pub struct DeliveryBody<R> {
    stream: ReaderStream<Take<R>>,
    remaining: u64,
    progress: Arc<AtomicU64>,
    lost: Arc<AtomicBool>,
    valid: Validity,
    handoff: Option<oneshot::Sender<Handoff>>,
    flushed: watch::Receiver<u64>,
}

impl<R: AsyncRead + Unpin> Body for DeliveryBody<R> {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        // Never send past the lease: once it may have lapsed, another transfer may hold the
        // link, and two full deliveries of a one-time link must not happen.
        if self.lost.load(Ordering::Relaxed) || self.valid.expired() {
            self.lost.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err(io::Error::other("lease lost"))));
        }
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        match ready!(Pin::new(&mut self.stream).poll_next(cx)) {
            Some(Ok(chunk)) => {
                let n = chunk.len() as u64;
                self.remaining = self.remaining.saturating_sub(n);
                self.progress.fetch_add(n, Ordering::Relaxed);
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            Some(Err(e)) => Poll::Ready(Some(Err(e))),
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
        SizeHint::with_exact(self.remaining)
    }
}

impl<R> Drop for DeliveryBody<R> {
    fn drop(&mut self) {
        let handoff = if self.remaining == 0 && !self.lost.load(Ordering::Relaxed) {
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
