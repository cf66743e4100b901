//! An upload when files live in a bucket: the body streams into a multipart upload, one part
//! in flight while the next is gathered, hashed as it goes. Only when the whole body is in,
//! within the cap and matching its digests, under a lease still held, is the upload completed,
//! which makes the object appear whole and at once; `overwrite=false` completes with
//! `If-None-Match: *`, so S3 itself refuses to replace an object that appeared meanwhile.
//! Every other ending (too large, digest mismatch, client gone, bucket error) aborts the
//! multipart upload, so no parts stay behind, and leaves the link usable.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use object_store::PutPayload;
use serde_json::json;
use tokio::sync::mpsc;

use super::digest::Hasher;
use super::upload::{Burn, Chunk, Receive, Stop, exists};
use crate::http::error::ApiError;
use crate::ledger::Receipt;
use crate::sandbox::SandboxError;
use crate::storage::bucket::{Bucket, CompleteError, PART_SIZE, Upload};
use crate::token::hex;

/// Chunks queued between the socket and the part writer.
const QUEUE: usize = 16;

/// What the part writer hands back: the upload, ready to complete, and the body's digests.
type Written = (Upload, [u8; 32], Option<[u8; 64]>);

impl Receive {
    /// Receives `body` into `bucket` and settles the lease, as [`Receive`] does on disk.
    pub(super) async fn run_in(
        mut self,
        bucket: Arc<Bucket>,
        body: Body,
    ) -> Result<Response, ApiError> {
        let mut received = 0;
        let result = self.receive_in(&bucket, body, &mut received).await;
        self.end(result, received).await
    }

    async fn receive_in(
        &mut self,
        bucket: &Bucket,
        body: Body,
        received: &mut u64,
    ) -> Result<(Response, Burn), ApiError> {
        let session = self.claims.session.clone();
        let path = self.claims.path.clone();
        let create_only = !self.claims.overwrite;
        // Refused before a byte is read; the completion checks again, atomically.
        if create_only && bucket.head(session.as_ref(), &path).await?.is_some() {
            return Err(exists());
        }
        let upload = bucket
            .create_upload(session.as_ref(), &path, create_only)
            .await?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let writer = tokio::spawn(write_parts(upload, rx, Hasher::new(&self.expected)));
        let streamed = match self.stream_body(body, &tx, received).await {
            Ok(()) => tx.send(Chunk::End).await.map_err(|_| Stop::WriterGone),
            Err(stop) => Err(stop),
        };
        drop(tx);
        match streamed {
            Ok(()) => {}
            Err(Stop::WriterGone) => {
                return Err(match writer.await {
                    Ok(Err(e)) => e.into(),
                    _ => ApiError::Internal,
                });
            }
            Err(Stop::Refuse(e)) => {
                // The writer sees the queue close without `End` and aborts the upload; wait
                // for that, so the answer goes out only once nothing is left behind.
                let _ = writer.await;
                return Err(e);
            }
        }
        let (upload, sha256, sha512) =
            self.keep(writer).await.map_err(|_| ApiError::Internal)??;
        if !self.expected.matches(&sha256, sha512.as_ref()) {
            upload.abort().await;
            return Err(ApiError::DigestMismatch);
        }
        // Completed only under a lease this transfer still holds, as the disk's rename.
        if let Err(e) = self.hold().await {
            upload.abort().await;
            return Err(e);
        }
        if !self.lease.deadline().holds() {
            upload.abort().await;
            return Err(ApiError::InProgress);
        }
        match self.keep(upload.complete()).await {
            Ok(()) => {}
            Err(CompleteError::Exists) => return Err(exists()),
            Err(CompleteError::Storage(e)) => return Err(e.into()),
        }
        let receipt = Receipt {
            bytes: *received,
            sha256,
        };
        let burned = self.burn(receipt).await;
        let body = json!({
            "path": self.claims.path,
            "bytes": receipt.bytes,
            "sha256": hex(&receipt.sha256),
        });
        Ok(((StatusCode::CREATED, Json(body)).into_response(), burned))
    }
}

/// Gathers the body into parts of exactly [`PART_SIZE`] (the last one shorter) and sends
/// each, hashing as it goes. A part is the received chunks themselves, split at the boundary,
/// not a copy into one large buffer. A queue that closes without `End` (the upload was refused
/// or abandoned) or a part that fails aborts the upload.
async fn write_parts(
    mut upload: Upload,
    mut rx: mpsc::Receiver<Chunk>,
    mut hasher: Hasher,
) -> Result<Written, SandboxError> {
    let mut part: Vec<Bytes> = Vec::new();
    let mut len = 0usize;
    loop {
        match rx.recv().await {
            Some(Chunk::Data(mut data)) => {
                hasher.update(&data);
                while !data.is_empty() {
                    let take = (PART_SIZE - len).min(data.len());
                    part.push(data.split_to(take));
                    len += take;
                    if len == PART_SIZE {
                        let full: PutPayload = std::mem::take(&mut part).into_iter().collect();
                        len = 0;
                        if let Err(e) = upload.put(full).await {
                            upload.abort().await;
                            return Err(e);
                        }
                    }
                }
            }
            Some(Chunk::End) => break,
            None => {
                upload.abort().await;
                return Err(SandboxError::Unavailable("the upload was abandoned".into()));
            }
        }
    }
    if len > 0
        && let Err(e) = upload.put(part.into_iter().collect()).await
    {
        upload.abort().await;
        return Err(e);
    }
    let (sha256, sha512) = hasher.finish();
    Ok((upload, sha256, sha512))
}
