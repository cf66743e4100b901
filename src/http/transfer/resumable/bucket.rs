//! Resumable uploads when files live in a bucket: the same routes, codes and guarantees as on
//! disk, with the unfinished data in an S3 multipart upload on the destination and a small
//! state object beside it ([`crate::storage::bucket::Partial`]).
//!
//! A request streams its body, after the tail the previous request left, into parts of
//! [`PART_SIZE`] (one in flight while the next is gathered, as a plain upload), hashing each
//! part as it goes out; whatever is left under a part becomes the new tail. Then either the
//! upload is complete (the tail goes out as the last part, the SHA-256 over everything is
//! checked, and only then is the multipart upload completed, with `If-None-Match: *` for
//! `overwrite=false`), or the state object is rewritten with the new parts, hash state and
//! tail, which makes the new offset durable. A connection that drops records what arrived,
//! as the disk keeps the bytes it synced.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::{Job, repr_digest};
use crate::http::error::ApiError;
use crate::http::transfer::upload::{self, Burn, Chunk, Stop};
use crate::ledger::Receipt;
use crate::sandbox::SandboxError;
use crate::storage::bucket::{Bucket, CompleteError, PART_SIZE, Partial, Upload};
use crate::token::Claims;

/// Chunks queued between the socket and the part writer.
const QUEUE: usize = 16;

/// Starts a fresh resumable upload to the link's destination, after abandoning an unfinished
/// one of the same link. A destination that may not be replaced and exists is refused here,
/// before a byte is read; the completion checks again, atomically.
pub(super) async fn create(
    bucket: &Bucket,
    claims: &Claims,
    nonce_hex: &str,
    name: &str,
    length: u64,
    announced: Option<[u8; 32]>,
) -> Result<Partial, ApiError> {
    let (session, rel) = (claims.session.as_ref(), &*claims.path);
    if !claims.overwrite && bucket.head(session, rel).await?.is_some() {
        return Err(upload::exists());
    }
    if let Some(old) = bucket.load_partial(session, rel, nonce_hex).await? {
        bucket.remove_partial(old).await?;
    }
    Ok(bucket
        .create_partial(session, rel, name, length, announced)
        .await?)
}

/// What one request appended.
struct Appended {
    upload: Upload,
    /// SHA-256 over every byte in parts, those sent before this request included.
    hasher: Sha256,
    /// The bytes after the last whole part.
    tail: Vec<Bytes>,
    tail_len: u64,
    /// Bytes this request put into parts (the previous tail included).
    added: u64,
}

impl Job {
    /// Appends `body` (if any) to `partial`, then completes the upload when it is whole, or
    /// records the new offset and releases the link for the next request.
    pub(super) async fn append_bucket(
        mut self,
        bucket: Arc<Bucket>,
        partial: Partial,
        body: Option<Body>,
    ) -> Result<Response, ApiError> {
        self.receive.cap = self.length.saturating_sub(partial.offset());
        let mut received = 0;
        let result = self
            .append_bucket_inner(&bucket, partial, body, &mut received)
            .await;
        self.settle(result, received).await
    }

    async fn append_bucket_inner(
        &mut self,
        bucket: &Bucket,
        mut partial: Partial,
        body: Option<Body>,
        received: &mut u64,
    ) -> Result<(Response, Option<Burn>), ApiError> {
        let upload = bucket.resume(&partial, !self.receive.claims.overwrite);
        let hasher = partial.hasher.clone();
        let tail = std::mem::take(&mut partial.tail);
        let (appended, refused) = match body {
            None => {
                let tail_len = tail.iter().map(|b| b.len() as u64).sum();
                let appended = Appended {
                    upload,
                    hasher,
                    tail,
                    tail_len,
                    added: 0,
                };
                (appended, None)
            }
            Some(body) => {
                let (tx, rx) = mpsc::channel(QUEUE);
                let writer = tokio::spawn(write_parts(upload, hasher, tail, rx));
                let streamed = match self.receive.stream_body(body, &tx, received).await {
                    Ok(()) => tx.send(Chunk::End).await.map_err(|_| Stop::WriterGone),
                    Err(stop) => Err(stop),
                };
                drop(tx);
                // Waits for the part in flight, renewing the lease meanwhile.
                let appended = self
                    .receive
                    .keep(writer)
                    .await
                    .map_err(|_| ApiError::Internal)??;
                let refused = match streamed {
                    Ok(()) => None,
                    Err(Stop::Refuse(e)) => Some(e),
                    Err(Stop::WriterGone) => Some(ApiError::Internal),
                };
                (appended, refused)
            }
        };
        let stored = partial.stored + appended.added;
        let offset = stored + appended.tail_len;
        if refused.is_some() || offset < self.length {
            // Keep what arrived: that is the offset now, for this client or another replica.
            partial.record(&appended.upload, stored, appended.hasher, appended.tail);
            let saved = self.receive.keep(bucket.save_partial(&mut partial)).await;
            if let Some(refused) = refused {
                if let Err(e) = saved {
                    tracing::warn!(error = %e, "could not record an interrupted upload's progress");
                }
                return Err(refused);
            }
            saved?;
            let mut response = StatusCode::NO_CONTENT.into_response();
            response
                .headers_mut()
                .insert("upload-offset", HeaderValue::from(offset));
            return Ok((response, None));
        }
        self.complete(bucket, partial, appended).await
    }

    /// Every byte is in: sends the tail as the last part, checks the whole file's digest and
    /// completes the multipart upload under the lease, then burns the link.
    async fn complete(
        &mut self,
        bucket: &Bucket,
        partial: Partial,
        appended: Appended,
    ) -> Result<(Response, Option<Burn>), ApiError> {
        let Appended {
            mut upload,
            mut hasher,
            tail,
            tail_len,
            ..
        } = appended;
        for chunk in &tail {
            hasher.update(chunk);
        }
        // S3 needs one part at least, and takes a last part of any size.
        if tail_len > 0 || upload.parts().is_empty() {
            upload.put(tail.into_iter().collect()).await?;
        }
        // The last part arrives before the lease is checked, so nothing slow stands between
        // that check and the completion (as a plain upload waits for its last part).
        self.receive.keep(upload.settle()).await?;
        let sha256: [u8; 32] = hasher.finalize().into();
        if !self.receive.expected.matches(&sha256, None) {
            // It can never land: nothing of it is kept, the link stays usable.
            upload.abort().await;
            forget(bucket, &partial).await;
            return Err(ApiError::DigestMismatch);
        }
        // Completed only under a lease this request still holds, as the disk's rename.
        self.receive.hold().await?;
        if !self.receive.lease.deadline().holds() {
            return Err(ApiError::InProgress);
        }
        match self.receive.keep(upload.complete()).await {
            Ok(()) => {}
            Err(CompleteError::Exists) => {
                forget(bucket, &partial).await;
                return Err(upload::exists());
            }
            Err(CompleteError::Storage(e)) => return Err(e.into()),
        }
        let receipt = Receipt {
            bytes: self.length,
            sha256,
        };
        // Burned first: the object is in place, and nothing slow may come between.
        let burned = self.receive.burn(receipt).await;
        forget(bucket, &partial).await;
        let mut response = StatusCode::NO_CONTENT.into_response();
        let h = response.headers_mut();
        h.insert("upload-offset", HeaderValue::from(self.length));
        if let Ok(v) = HeaderValue::from_str(&repr_digest(&sha256)) {
            h.insert("repr-digest", v);
        }
        Ok((response, Some(burned)))
    }
}

/// Removes the state object of an upload that ended (landed, or can never land). A failure
/// does not change the answer: the sweep removes the object once the link has expired, and
/// until then it names an upload that no longer exists.
async fn forget(bucket: &Bucket, partial: &Partial) {
    if let Err(e) = bucket.delete_state(partial.state_path()).await {
        tracing::warn!(error = %e, "a resumable upload ended but its state object stays");
    }
}

/// Gathers the previous tail and the body into parts of exactly [`PART_SIZE`] and sends each
/// (hashed first, so the hash state always covers exactly the parts sent), one in flight while
/// the next is gathered. Ends when the body does or the queue closes (the connection dropped
/// or the request was refused), with every part sent settled and the rest as the new tail.
async fn write_parts(
    mut upload: Upload,
    mut hasher: Sha256,
    tail: Vec<Bytes>,
    mut rx: mpsc::Receiver<Chunk>,
) -> Result<Appended, SandboxError> {
    let mut part: Vec<Bytes> = Vec::new();
    let mut len = 0usize;
    let mut added = 0u64;
    let mut pending = tail.into_iter();
    loop {
        let mut data = match pending.next() {
            Some(data) => data,
            None => match rx.recv().await {
                Some(Chunk::Data(data)) => data,
                Some(Chunk::End) | None => break,
            },
        };
        while !data.is_empty() {
            let take = (PART_SIZE - len).min(data.len());
            part.push(data.split_to(take));
            len += take;
            if len == PART_SIZE {
                let full = std::mem::take(&mut part);
                for chunk in &full {
                    hasher.update(chunk);
                }
                len = 0;
                added += PART_SIZE as u64;
                upload.put(full.into_iter().collect()).await?;
            }
        }
    }
    upload.settle().await?;
    Ok(Appended {
        upload,
        hasher,
        tail: part,
        tail_len: len as u64,
        added,
    })
}
