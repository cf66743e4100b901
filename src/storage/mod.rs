//! Where the sandbox lives: a directory on disk ([`Sandbox`]) or a prefix of an S3-compatible
//! bucket ([`bucket::Bucket`]). Everything above asks [`Storage`]; only a few places (opening a
//! download's bytes, landing an upload, walking a directory for its zip) take the backend's
//! own path, and the disk's stays exactly what it was (file descriptors, `sendfile`-ready).

pub mod bucket;
pub mod s3_http;

use std::sync::Arc;

use crate::sandbox::{Sandbox, SandboxError, SessionId};

pub use bucket::Bucket;

#[derive(Clone, Debug)]
pub enum Storage {
    Disk(Sandbox),
    Bucket(Arc<Bucket>),
}

impl Storage {
    /// `BURNLINK_ROOT`: `s3://BUCKET[/PREFIX]` is a bucket, anything else a directory
    /// (created if missing).
    pub fn open(root: &std::path::Path) -> Result<Storage, String> {
        match root.to_str() {
            Some(url) if url.starts_with("s3://") => {
                Ok(Storage::Bucket(Arc::new(Bucket::open(url)?)))
            }
            _ => Sandbox::open(root)
                .map(Storage::Disk)
                .map_err(|e| format!("cannot create or open `{}`: {e}", root.display())),
        }
    }

    /// The canonical relative form of `input` within the session's sandbox.
    pub fn normalize(
        &self,
        session: Option<&SessionId>,
        input: &str,
    ) -> Result<String, SandboxError> {
        match self {
            Storage::Disk(sandbox) => sandbox.normalize(session, input),
            Storage::Bucket(bucket) => bucket.normalize(session, input),
        }
    }

    /// The directory sandbox, when that is where files live.
    pub fn disk(&self) -> Option<&Sandbox> {
        match self {
            Storage::Disk(sandbox) => Some(sandbox),
            Storage::Bucket(_) => None,
        }
    }

    /// Whether the storage answers, for `/readyz` (a directory always does).
    pub async fn ping(&self) -> Result<(), SandboxError> {
        match self {
            Storage::Disk(_) => Ok(()),
            Storage::Bucket(bucket) => bucket.ping().await,
        }
    }
}
