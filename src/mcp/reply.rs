//! How tool results and tool errors look to a model.
//!
//! Results carry `structuredContent` and the same JSON as text (older clients read only text),
//! and a minted link also as a `resource_link` block for clients that show links. Errors are
//! tool errors (`isError: true`) whose text starts with the contract's error code and says what
//! to do next, since a model can act on a sentence but not on a status code.

use rmcp::model::{CallToolResult, ContentBlock, Resource};
use serde::Serialize;

use super::backend::Backend;
use super::tools::to_value;
use crate::error::ApiError;
use crate::links::Minted;
use crate::sandbox::{SessionId, file_name};

pub fn structured<T: Serialize>(value: &T) -> CallToolResult {
    CallToolResult::structured(to_value(value))
}

/// A minted link: structured JSON, the same as text, then the URL as a resource link.
pub fn link<T: Serialize>(value: &T, minted: &Minted, verb: &str) -> CallToolResult {
    let mut result = structured(value);
    let mut resource = Resource::new(minted.url.clone(), file_name(&minted.path).to_string())
        .with_description(format!(
            "{verb}: a one-time link to {}, valid until {}",
            minted.path, minted.expires_at
        ));
    if let Some(size) = minted.size {
        resource = resource.with_size(size);
    }
    if let Some(mime) = mime_guess::from_path(&minted.path).first_raw() {
        resource = resource.with_mime_type(mime);
    }
    result.content.push(ContentBlock::resource_link(resource));
    result
}

pub fn error(message: String) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message)])
}

/// `code: message` plus what the model can do about it.
pub fn explain(e: &ApiError, backend: &Backend, session: Option<&SessionId>) -> String {
    let limits = backend.limits();
    let dir = backend.sandbox().dir_path(session);
    let dir = dir.display();
    let hint = match e {
        ApiError::Forbidden(m) if m.contains("pinned") => {
            format!("Leave `session` out to act in the token's own session. The sandbox is {dir}.")
        }
        ApiError::Forbidden(_) => format!(
            "Use a path inside the sandbox {dir}, relative to it (no `..`, no symlink that \
             leads out)."
        ),
        ApiError::MissingFile(_) => format!(
            "Check the path: it is looked up in {dir}. To receive a file that does not exist \
             yet, use create_upload_link."
        ),
        ApiError::TooLarge(_) => format!(
            "Files over {} bytes cannot be shared this way; compress or split the file.",
            limits.max_download_bytes
        ),
        ApiError::InvalidTtl => format!(
            "Give a positive lifetime (in seconds: at most {}; larger values are clamped), or \
             leave it out for the default of {} s.",
            limits.ttl_max, limits.ttl_default
        ),
        ApiError::Exists(_) => {
            "Pick another path, or allow overwrite=true to replace the file.".to_string()
        }
        ApiError::NotFound => "The link is not one this server signed (check it was \
             copied whole) or it belongs to another session."
            .to_string(),
        ApiError::Unavailable => "Try again in a few seconds.".to_string(),
        _ => String::new(),
    };
    let base = format!("{}: {}", e.code(), e);
    if hint.is_empty() {
        base
    } else {
        format!("{base}. {hint}")
    }
}
