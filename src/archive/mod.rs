//! Directories as zip archives, built while they stream.
//!
//! [`walk`] lists a directory through the sandbox (what a directory link's size counts and
//! what its archive holds), [`method`] decides Stored or Deflate per file, [`stream`] writes
//! the archive on a thread of its own into the response body, at most [`MAX_CONCURRENT`] at
//! once ([`Slots`]).

pub mod method;
pub mod stream;
pub mod walk;

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::sandbox;

/// The archive's file name: `<dir>.zip`; for a link to a whole sandbox, the neutral
/// `files.zip` (the sandbox's folder name on the server is nobody's business).
pub fn archive_name(rel: &str) -> String {
    if rel == "." {
        return "files.zip".to_string();
    }
    format!("{}.zip", sandbox::file_name(rel))
}

/// How many directory archives may be written at once. The zip writer is synchronous, so each
/// archive holds a thread for as long as its client takes to read it: archives run on threads
/// of their own, never on the blocking pool every file open and upload write needs, and only
/// this many at a time, so a few hundred slow clients cannot starve anyone else. One more is
/// answered 503 `unavailable` with `Retry-After`. Two cores saturate well below this.
pub const MAX_CONCURRENT: usize = 32;

/// The archive threads' allowance.
#[derive(Clone)]
pub struct Slots(Arc<Semaphore>);

/// One archive's right to a thread, held until the archive is written or abandoned.
pub struct Slot(#[allow(dead_code)] OwnedSemaphorePermit);

impl Slots {
    pub fn new(n: usize) -> Self {
        Slots(Arc::new(Semaphore::new(n)))
    }

    /// A slot if one is free now; archives never queue (a queue would only hide the wait).
    pub fn try_take(&self) -> Option<Slot> {
        self.0.clone().try_acquire_owned().ok().map(Slot)
    }
}

impl Default for Slots {
    fn default() -> Self {
        Slots::new(MAX_CONCURRENT)
    }
}
