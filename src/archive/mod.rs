//! Directories as zip archives, built while they stream.
//!
//! [`walk`] lists a directory through the sandbox (what a directory link's size counts and
//! what its archive holds), [`method`] decides Stored or Deflate per file, [`stream`] writes
//! the archive on a blocking thread into the response body.

pub mod method;
pub mod stream;
pub mod walk;

use crate::sandbox::{self, Sandbox, SessionId};

/// The archive's file name: `<dir>.zip`; for a link to the sandbox itself, the sandbox
/// directory's name.
pub fn archive_name(sandbox: &Sandbox, session: Option<&SessionId>, rel: &str) -> String {
    let dir = if rel == "." {
        let path = sandbox.dir_path(session);
        path.file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
            .unwrap_or_else(|| "archive".to_string())
    } else {
        sandbox::file_name(rel).to_string()
    };
    format!("{dir}.zip")
}
