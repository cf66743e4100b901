//! `POST` and `PUT` on an upload link: the raw request body becomes the file the link names.
//!
//! Everything that can be refused without reading the body is refused first (the token, the
//! client address, multipart, a `Content-Length` over the cap, a malformed `Content-Digest`, an
//! existing file that must not be replaced), so those cost nothing and never hold the link.
//! Then the link is leased and the body streams through a bounded channel to a blocking writer
//! that hashes and writes it to a temporary file beside the destination ([`crate::staging`]).
//! Only once the file is synced, its digests checked, the lease confirmed and the file renamed
//! into place does the link burn. Any failure before that drops the temporary and the lease:
//! the link stays usable and the destination is untouched.
//!
//! The receiving runs as a tracked task, not in the handler's future: hyper drops a handler
//! whose client went away, and a rename that happened must still be followed by its commit
//! (and shutdown must wait for it).

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::digest::{Expected, Hasher};
use super::open::on_pool;
use crate::http::affinity;
use crate::http::error::ApiError;
use crate::http::gate::Link;
use crate::lease::{Lease, LeaseError};
use crate::ledger::Receipt;
use crate::sandbox::SandboxError;
use crate::staging::{PersistError, Staged};
use crate::state::App;
use crate::storage::Storage;
use crate::telemetry::TransferAudit;
use crate::token::{Claims, Direction, hex};

/// Chunks queued between the socket and the writer (hyper's reads, at most 64 KiB each):
/// enough to keep the socket side receiving while a batch is written, few enough that an
/// upload holds a few megabytes at most whatever its size.
const QUEUE: usize = 32;

/// The writer gathers this much before each `writev`: large writes, fewer trips to the
/// blocking pool (256 MiB upload figures in docs/benchmarks.md).
const WRITE_BUFFER: usize = 1024 * 1024;

/// At most this many chunks per batch (well under the kernel's `IOV_MAX` of 1024).
const BATCH_CHUNKS: usize = 256;

/// Every this many bytes written, the file's data is synced in the background while the
/// upload goes on. The kernel starts writing dirty pages back on its own only past a share of
/// memory (gigabytes), so without this the whole file would go to disk in the final fsync,
/// after the last byte arrived; with it, the disk works while the network does, and the final
/// fsync has only the tail left.
const SYNC_EVERY: usize = 16 * 1024 * 1024;

/// `PUT`: an upload, whatever the link (a download link is "not found").
pub async fn put(
    State(app): State<Arc<App>>,
    link: Link,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    receive(&app, link, &headers, body).await
}

/// An upload on a verified link (`PUT`, or `POST` on an upload link).
pub async fn receive(
    app: &Arc<App>,
    link: Link,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let Link { claims, client, .. } = link.expect(Direction::Upload)?;
    refuse_multipart(headers)?;
    let cap = claims
        .max_bytes
        .unwrap_or(u64::MAX)
        .min(app.config.max_upload_bytes);
    if let Some(len) = content_length(headers)?
        && len > cap
    {
        return Err(too_large(cap));
    }
    let expected = Expected {
        token_sha256: claims.sha256,
        ..Expected::default()
    }
    .with_header(headers.get("content-digest").map(|v| v.as_bytes()))
    .map_err(|e| ApiError::BadRequest(e.to_string()))?;

    // The lease comes before anything touches the disk: a used or revoked link says so, and
    // creates no directory or temporary.
    let mut lease = app.leases.acquire(&claims, client).await?;
    let audit = TransferAudit::new(&claims, client);
    if let Storage::Bucket(bucket) = &app.storage {
        let job = Receive {
            audit,
            app: app.clone(),
            name: crate::sandbox::file_name(&claims.path).to_string(),
            claims,
            lease,
            cap,
            expected,
        };
        return app.tasks.spawn(job.run_in(bucket.clone(), body)).await?;
    }
    let (staged, name) = match stage(app, &claims).await {
        Ok(staged) => staged,
        Err(e) => {
            audit.log(outcome(&e), 0);
            lease.release().await;
            return Err(e);
        }
    };
    let job = Receive {
        audit,
        app: app.clone(),
        claims,
        lease,
        cap,
        expected,
        name,
    };
    app.tasks.spawn(job.run(staged, body)).await?
}

/// Opens the destination's directory (creating what is missing) and a temporary in it. A
/// destination that must not be replaced and already exists is refused here, before a byte is
/// read; the rename checks again atomically.
async fn stage(app: &App, claims: &Claims) -> Result<(Staged, String), ApiError> {
    stage_with(app, claims, true, |dir, _| {
        Staged::create(dir).map_err(|e| SandboxError::Io(e).into())
    })
    .await
}

/// [`stage`], with the file made by `make` in the destination's directory (a fresh temporary,
/// or a resumable upload's partial file, or only a look at it). `make` gets the directory and
/// the destination's name; `refuse_existing` refuses a destination that may not be replaced.
pub(super) async fn stage_with<T: Send + 'static>(
    app: &App,
    claims: &Claims,
    refuse_existing: bool,
    make: impl FnOnce(cap_std::fs::Dir, &str) -> Result<T, ApiError> + Send + 'static,
) -> Result<(T, String), ApiError> {
    // A bucket's uploads take their own paths (`upload_bucket.rs`, `resumable/bucket.rs`).
    let Some(sandbox) = app.storage.disk().cloned() else {
        return Err(ApiError::Internal);
    };
    let session = claims.session.clone();
    let path = claims.path.clone();
    let overwrite = claims.overwrite;
    on_pool(move || {
        let (dir, name) = match sandbox.upload_parent(session.as_ref(), &path) {
            Ok(found) => found,
            // A file where a directory should be: not a fault of the link, a conflict.
            Err(SandboxError::NotFound | SandboxError::NotAFileOrDirectory) => {
                return Err(ApiError::Exists(
                    "a file is in the way of the destination's directory".into(),
                ));
            }
            // Escaped since minting, or an I/O failure: as on every transfer route.
            Err(e) => return Err(e.into()),
        };
        if refuse_existing && !overwrite && dir.symlink_metadata(&name).is_ok() {
            return Err(exists());
        }
        let staged = make(dir, &name)?;
        Ok((staged, name))
    })
    .await
}

/// A leased upload, ready to receive its body: a plain upload, or one request of a resumable
/// one ([`super::resumable`]), which share the writer and the landing.
pub(super) struct Receive {
    pub app: Arc<App>,
    pub claims: Claims,
    pub lease: Lease,
    /// How many bytes this request's body may carry.
    pub cap: u64,
    pub expected: Expected,
    /// The destination's name in its directory.
    pub name: String,
    pub audit: TransferAudit,
}

/// What the socket side tells the writer thread.
pub(super) enum Chunk {
    Data(Bytes),
    /// The body is complete: sync and hand the file back. A channel that closes without this
    /// means the upload was abandoned.
    End,
}

/// Why streaming the body stopped early.
pub(super) enum Stop {
    /// The writer thread ended (a write failed); its result says why.
    WriterGone,
    Refuse(ApiError),
}

impl From<ApiError> for Stop {
    fn from(e: ApiError) -> Self {
        Stop::Refuse(e)
    }
}

/// The writer thread's result: the synced file and the digests of what it wrote (none for a
/// partial upload, whose digests come from reading the whole file back at completion).
pub(super) struct Written {
    pub staged: Staged,
    pub digests: Option<([u8; 32], Option<[u8; 64]>)>,
}

impl Receive {
    async fn run(mut self, staged: Staged, body: Body) -> Result<Response, ApiError> {
        let mut received = 0;
        let result = self.receive(staged, body, &mut received).await;
        self.end(result, received).await
    }

    /// Ends an upload, on disk or in a bucket: the audit line says how, and a failed one
    /// releases the lease (a landed one's burn settled it). Logged before the release: whoever
    /// finds the link usable again finds the line too.
    pub(super) async fn end(
        &mut self,
        result: Result<(Response, Burn), ApiError>,
        received: u64,
    ) -> Result<Response, ApiError> {
        let outcome = match &result {
            Ok((_, burned)) => burned.outcome(),
            Err(e) => outcome(e),
        };
        self.audit.log(outcome, received);
        if result.is_err() {
            // Usable again at once, rather than after the lease lapses.
            self.lease.release().await;
        }
        result.map(|(response, _)| response)
    }

    async fn receive(
        &mut self,
        staged: Staged,
        body: Body,
        received: &mut u64,
    ) -> Result<(Response, Burn), ApiError> {
        let written = self.stream_into(staged, body, received).await?;
        let (receipt, burned) = self.land(written, *received).await?;
        let body = json!({
            "path": self.claims.path,
            "bytes": receipt.bytes,
            "sha256": hex(&receipt.sha256),
        });
        Ok(((StatusCode::CREATED, Json(body)).into_response(), burned))
    }

    /// Streams `body` into `staged` and syncs it. A plain upload's temporary is hashed as it
    /// streams and removed on any failure; a partial upload's file is not hashed, and on an
    /// interruption keeps (synced) every byte that arrived.
    pub(super) async fn stream_into(
        &mut self,
        staged: Staged,
        body: Body,
        received: &mut u64,
    ) -> Result<Written, ApiError> {
        // A large body frees its loop's pin while it streams in ([`affinity`]).
        let _released = affinity::Released::for_len(http_body::Body::size_hint(&body).lower());
        let (tx, rx) = mpsc::channel(QUEUE);
        let hasher = (!staged.is_partial()).then(|| Hasher::new(&self.expected));
        let writer = tokio::spawn(write(staged, rx, hasher));
        let streamed = match self.stream_body(body, &tx, received).await {
            Ok(()) => tx.send(Chunk::End).await.map_err(|_| Stop::WriterGone),
            Err(stop) => Err(stop),
        };
        drop(tx);
        match streamed {
            Ok(()) => {}
            // The writer stopped on an error; it says which.
            Err(Stop::WriterGone) => return Err(writer_failed(writer.await)),
            Err(Stop::Refuse(e)) => {
                // The writer sees the queue close without `End` and drops the temporary; wait
                // for that, so the answer goes out only once nothing is left behind.
                let _ = writer.await;
                return Err(e);
            }
        }
        // Syncing a large file can outlast a lease; keep renewing while it runs.
        self.keep(writer)
            .await
            .map_err(|_| ApiError::Internal)?
            .map_err(|e| internal("writing an upload", e))
    }

    /// Checks a complete, synced upload's digests, renames it into place under the lease and
    /// burns the link. A mismatch removes the file (the link stays usable).
    pub(super) async fn land(
        &mut self,
        written: Written,
        bytes: u64,
    ) -> Result<(Receipt, Burn), ApiError> {
        let Some((sha256, sha512)) = written.digests else {
            return Err(ApiError::Internal);
        };
        if !self.expected.matches(&sha256, sha512.as_ref()) {
            discard(written.staged).await;
            return Err(ApiError::DigestMismatch);
        }
        // The rename must happen under a lease this transfer still holds, or a second upload
        // that took the link after this one's lease lapsed could land too.
        self.hold().await?;
        let (name, overwrite) = (self.name.clone(), self.claims.overwrite);
        let deadline = self.lease.deadline();
        let landing = tokio::task::spawn_blocking(move || {
            // Checked right before the rename: a lease that lapsed while this thread waited
            // for the pool may be someone else's by now.
            written
                .staged
                .persist(&name, overwrite, || deadline.holds())
        });
        self.keep(landing)
            .await
            .map_err(|_| ApiError::Internal)?
            .map_err(|e| match e {
                PersistError::Exists => exists(),
                PersistError::LeaseLost => ApiError::InProgress,
                PersistError::Io(err) => internal("moving an upload into place", err),
            })?;

        let receipt = Receipt { bytes, sha256 };
        let burned = self.burn(receipt).await;
        Ok((receipt, burned))
    }

    /// Moves the body into the writer's queue, counting it against the cap, renewing the lease
    /// while bytes arrive and giving up on a body that stalls.
    pub(super) async fn stream_body(
        &self,
        body: Body,
        tx: &mpsc::Sender<Chunk>,
        received: &mut u64,
    ) -> Result<(), Stop> {
        let idle = self.app.config.idle_timeout;
        let mut tick = self.lease.ticker();
        let mut stream = body.into_data_stream();
        let mut last_byte = Instant::now();
        let mut renewed_at = 0;
        loop {
            tokio::select! {
                next = stream.next() => match next {
                    None => return Ok(()),
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "upload body ended early");
                        return Err(ApiError::BadRequest("the upload was interrupted".into()).into());
                    }
                    Some(Ok(chunk)) => {
                        *received += chunk.len() as u64;
                        if *received > self.cap {
                            return Err(too_large(self.cap).into());
                        }
                        last_byte = Instant::now();
                        tx.send(Chunk::Data(chunk)).await.map_err(|_| Stop::WriterGone)?;
                    }
                },
                () = tokio::time::sleep_until(last_byte + idle) => {
                    return Err(ApiError::Timeout(format!(
                        "no upload data for {} s; the link is still usable",
                        idle.as_secs()
                    )).into());
                }
                _ = tick.tick() => {
                    // Renew only while bytes arrive: a stalled client does not hold the link.
                    if *received != renewed_at {
                        renewed_at = *received;
                        self.hold().await?;
                    }
                }
            }
        }
    }

    /// Renews (or retakes) the lease; an upload whose lease is gone (revoked, or lapsed and
    /// taken) stops. The lease's deadline follows every answer, so the rename never happens on
    /// a lease that may be gone.
    pub(super) async fn hold(&self) -> Result<(), ApiError> {
        self.lease.hold().await.map_err(|e| {
            if let LeaseError::Ledger(e) = &e {
                tracing::warn!(error = %e, "could not renew an upload's lease");
            }
            e.into()
        })
    }

    /// Runs `work` while renewing the lease on every period, whether or not bytes flow: the
    /// body is complete and the server is the slow one now (syncing, renaming).
    pub(super) async fn keep<F: std::future::Future>(&self, work: F) -> F::Output {
        let mut tick = self.lease.ticker();
        tokio::pin!(work);
        loop {
            tokio::select! {
                out = &mut work => return out,
                // A failure moves `valid_until`, which the rename checks.
                _ = tick.tick() => { let _ = self.hold().await; }
            }
        }
    }

    /// Burns the link now that the file is in place (the lease counts the use). The file
    /// stays whatever the ledger says: it is durably there, so the client hears 201 either
    /// way; the audit line and the metric say whether the link burned.
    pub(super) async fn burn(&mut self, receipt: Receipt) -> Burn {
        match self.lease.commit(Some(receipt)).await {
            Ok(true) => Burn::Burned,
            // Only a revoke between the last renewal and the rename gets here: the rename
            // is fenced by the lease's deadline.
            Ok(false) => {
                tracing::error!(
                    link = %self.claims.link_id(),
                    "an upload landed but the link was revoked or lost just before; not burned"
                );
                Burn::LeaseLost
            }
            Err(e) => {
                tracing::error!(
                    error = %e,
                    link = %self.claims.link_id(),
                    "an upload landed but the link could not be burned; it stays usable"
                );
                Burn::Failed
            }
        }
    }
}

/// Whether the link burned after its upload landed.
#[derive(Clone, Copy, Debug)]
pub(super) enum Burn {
    Burned,
    /// Revoked (or lost) between the last renewal and the commit: the file is in place, the
    /// link is not burned by this upload.
    LeaseLost,
    /// The ledger did not answer: the file is in place and the link stays usable.
    Failed,
}

impl Burn {
    pub(super) fn outcome(self) -> &'static str {
        match self {
            Burn::Burned => "completed",
            Burn::LeaseLost => "completed_lease_lost",
            Burn::Failed => "completed_commit_failed",
        }
    }
}

/// The audit and metric outcome of an upload refused with `e`.
pub(super) fn outcome(e: &ApiError) -> &'static str {
    match e {
        ApiError::TooLarge(_) => "too_large",
        ApiError::DigestMismatch => "digest_mismatch",
        ApiError::Exists(_) => "exists",
        ApiError::Timeout(_) => "stalled",
        ApiError::BadRequest(_) => "aborted",
        _ => "failed",
    }
}

/// The writer: gathers the body into batches (the chunks as they came, never copied) and
/// writes each batch with one `writev` on the blocking pool while another blocking thread
/// hashes the same bytes, then syncs. An upload holds a blocking thread only while a batch is written, never
/// while it waits for a slow client's next bytes, so trickling uploads cannot take the threads
/// every file open needs. The queue in front keeps receiving while a batch is written.
async fn write(
    staged: Staged,
    mut rx: mpsc::Receiver<Chunk>,
    hasher: Option<Hasher>,
) -> std::io::Result<Written> {
    let mut disk = (staged, hasher);
    let mut batch = Batch::default();
    let mut early_sync = EarlySync::default();
    loop {
        match rx.recv().await {
            Some(Chunk::Data(data)) => {
                batch.push(data);
                if batch.full() {
                    let len = batch.len;
                    disk = write_batch(disk, std::mem::take(&mut batch)).await?;
                    early_sync.wrote(len, disk.0.file()).await?;
                }
            }
            Some(Chunk::End) => break,
            None if disk.0.is_partial() => {
                // A resumable upload keeps what arrived, durably: that is its offset now.
                let (staged, _) = write_batch(disk, batch).await?;
                on_blocking(move || staged.sync()).await?;
                return Err(std::io::Error::new(
                    std::io::ErrorKind::Interrupted,
                    "upload interrupted",
                ));
            }
            None => {
                discard(disk.0).await;
                return Err(std::io::Error::new(
                    std::io::ErrorKind::Interrupted,
                    "upload abandoned",
                ));
            }
        }
    }
    let (staged, hasher) = write_batch(disk, batch).await?;
    // An early sync's failure must fail the upload: a later fsync may not report it again.
    early_sync.finish().await?;
    let staged = on_blocking(move || staged.sync().map(|()| staged)).await?;
    Ok(Written {
        staged,
        digests: hasher.map(Hasher::finish),
    })
}

/// The background data syncs of one upload ([`SYNC_EVERY`]): at most one runs at a time.
#[derive(Default)]
struct EarlySync {
    unsynced: usize,
    running: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl EarlySync {
    /// Counts `len` more bytes written to `file`; past [`SYNC_EVERY`], waits for the previous
    /// sync (if it still runs) and starts the next on a duplicate of the descriptor.
    async fn wrote(&mut self, len: usize, file: &std::fs::File) -> std::io::Result<()> {
        self.unsynced += len;
        if self.unsynced < SYNC_EVERY {
            return Ok(());
        }
        self.unsynced = 0;
        self.finish().await?;
        let file = file.try_clone()?;
        self.running = Some(tokio::task::spawn_blocking(move || file.sync_data()));
        Ok(())
    }

    /// Waits for the sync still running, and says whether it failed.
    async fn finish(&mut self) -> std::io::Result<()> {
        match self.running.take() {
            Some(sync) => sync.await.map_err(std::io::Error::other)?,
            None => Ok(()),
        }
    }
}

/// Body chunks gathered for one write.
#[derive(Default)]
struct Batch {
    chunks: Vec<Bytes>,
    len: usize,
}

impl Batch {
    fn push(&mut self, chunk: Bytes) {
        self.len += chunk.len();
        self.chunks.push(chunk);
    }

    fn full(&self) -> bool {
        self.len >= WRITE_BUFFER || self.chunks.len() >= BATCH_CHUNKS
    }
}

/// Appends one batch with `writev` on the blocking pool while the hasher reads the same bytes
/// on another blocking thread, so hashing adds no time to a write. On failure the temporary is
/// dropped (removed) on the pool too.
async fn write_batch(
    (staged, hasher): (Staged, Option<Hasher>),
    batch: Batch,
) -> std::io::Result<(Staged, Option<Hasher>)> {
    if batch.len == 0 {
        return Ok((staged, hasher));
    }
    let chunks = Arc::new(batch.chunks);
    let hashing = hasher.map(|mut hasher| {
        let chunks = chunks.clone();
        tokio::task::spawn_blocking(move || {
            for chunk in chunks.iter() {
                hasher.update(chunk);
            }
            hasher
        })
    });
    let written = on_blocking(move || {
        let mut staged = staged;
        write_all_vectored(staged.file(), &chunks)?;
        Ok(staged)
    })
    .await;
    let hasher = match hashing {
        Some(hashing) => Some(hashing.await.map_err(std::io::Error::other)?),
        None => None,
    };
    Ok((written?, hasher))
}

/// `write_all` for several buffers: `writev` until every byte is written.
fn write_all_vectored(file: &mut std::fs::File, chunks: &[Bytes]) -> std::io::Result<()> {
    use std::io::{IoSlice, Write};
    let mut slices: Vec<IoSlice<'_>> = chunks.iter().map(|c| IoSlice::new(c)).collect();
    let mut bufs = &mut slices[..];
    while !bufs.is_empty() {
        match file.write_vectored(bufs) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

pub(super) async fn on_blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(std::io::Error::other)?
}

/// Removes a temporary that will not be used, off the async workers.
pub(super) async fn discard(staged: Staged) {
    let _ = tokio::task::spawn_blocking(move || staged.discard()).await;
}

fn writer_failed(joined: Result<std::io::Result<Written>, tokio::task::JoinError>) -> ApiError {
    match joined {
        Ok(Err(e)) => internal("writing an upload", e),
        _ => ApiError::Internal,
    }
}

pub(super) fn internal(doing: &str, e: std::io::Error) -> ApiError {
    tracing::error!(error = %e, "file system error while {doing}");
    ApiError::Internal
}

pub(super) fn exists() -> ApiError {
    ApiError::Exists("the destination exists and this link may not replace it".into())
}

pub(super) fn too_large(cap: u64) -> ApiError {
    ApiError::TooLarge(format!(
        "the upload is over this link's cap of {cap} bytes; the link is still usable"
    ))
}

pub(super) fn content_length(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    headers
        .get(header::CONTENT_LENGTH)
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| ApiError::BadRequest("invalid Content-Length".into()))
        })
        .transpose()
}

/// Form uploads wrap the file in MIME parts; storing that wrapper would corrupt the file, so
/// they are refused with the command that works.
fn refuse_multipart(headers: &HeaderMap) -> Result<(), ApiError> {
    let is_multipart = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<mime_guess::mime::Mime>().ok())
        .is_some_and(|m| m.type_() == mime_guess::mime::MULTIPART);
    if is_multipart {
        return Err(ApiError::UnsupportedMediaType(
            "send the file's raw bytes as the request body, not a multipart form: \
             curl --data-binary @FILE URL (or curl -T FILE URL)"
                .into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn multipart_is_refused_and_raw_bodies_are_not() {
        let mut h = HeaderMap::new();
        assert!(refuse_multipart(&h).is_ok());
        for ok in [
            "application/octet-stream",
            "application/x-www-form-urlencoded",
            "text/plain; charset=utf-8",
            "not a mime type",
        ] {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ok));
            assert!(refuse_multipart(&h).is_ok(), "{ok}");
        }
        for bad in [
            "multipart/form-data; boundary=------abc",
            "Multipart/Form-Data; boundary=x",
            "multipart/mixed; boundary=x",
        ] {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(bad));
            let e = refuse_multipart(&h).unwrap_err();
            assert_eq!(e.code(), "unsupported_media_type", "{bad}");
            assert!(e.to_string().contains("--data-binary"));
        }
    }

    #[test]
    fn content_length_is_read_strictly() {
        let mut h = HeaderMap::new();
        assert_eq!(content_length(&h).unwrap(), None);
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("1024"));
        assert_eq!(content_length(&h).unwrap(), Some(1024));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("-1"));
        assert!(content_length(&h).is_err());
    }
}
