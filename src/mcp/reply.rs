//! How tool results and tool errors look to a model.
//!
//! Results carry `structuredContent` and the same JSON as text (older clients read only text),
//! and a minted link also as a `resource_link` block for clients that show links. Errors are
//! tool errors (`isError: true`) whose text starts with the documented error code and says what
//! to do next, since a model can act on a sentence but not on a status code.

use rmcp::model::{CallToolResult, ContentBlock, Resource};
use serde::Serialize;

use super::backend::Backend;
use crate::access::AccessError;
use crate::http::error::ApiError;
use crate::links::{MintError, Minted, ServiceError};
use crate::sandbox::{SandboxError, file_name};
use crate::session::SessionId;

/// Serialises a result for `structuredContent` and the text block.
fn to_value<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or_default()
}

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

/// `code: message` plus what the model can do about it. The code and message are the HTTP
/// API's own for the same fault (one error map); the hint is chosen by the kind of fault.
pub fn explain(e: &ServiceError, backend: &Backend, session: Option<&SessionId>) -> String {
    let limits = backend.links().limits();
    let dir = backend.sandbox().dir_path(session);
    let dir = dir.display();
    let hint = match e {
        ServiceError::Access(AccessError::Pinned(_)) => {
            format!("Leave `session` out to act in the token's own session. The sandbox is {dir}.")
        }
        ServiceError::Mint(MintError::Sandbox(SandboxError::Outside)) => format!(
            "Use a path inside the sandbox {dir}, relative to it (no `..`, no symlink that \
             leads out)."
        ),
        ServiceError::Mint(MintError::Sandbox(SandboxError::NotFound)) => format!(
            "Check the path: it is looked up in {dir}. To receive a file that does not exist \
             yet, use create_upload_link."
        ),
        ServiceError::Mint(MintError::TooLarge { .. } | MintError::TreeTooLarge(_)) => format!(
            "Files over {} bytes cannot be shared this way; compress or split the file.",
            limits.max_download_bytes
        ),
        ServiceError::Mint(MintError::InvalidTtl) => format!(
            "Give a positive lifetime (in seconds: at most {}; larger values are clamped), or \
             leave it out for the default of {} s.",
            limits.ttl_max, limits.ttl_default
        ),
        ServiceError::Mint(MintError::Exists) => {
            "Pick another path, or allow overwrite=true to replace the file.".to_string()
        }
        ServiceError::UnknownLink => "The link is not one this server signed (check it was \
             copied whole) or it belongs to another session."
            .to_string(),
        ServiceError::Ledger(_) => "Try again in a few seconds.".to_string(),
        ServiceError::RateLimited(r) => format!(
            "Too many links were minted from this address; wait {} s and try again.",
            r.retry_after_s
        ),
        _ => String::new(),
    };
    let api = ApiError::from(e);
    let base = format!("{}: {}", api.code(), api);
    if hint.is_empty() {
        base
    } else {
        format!("{base}. {hint}")
    }
}
