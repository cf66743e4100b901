//! The tools' arguments and results, with the JSON schemas clients are shown.
//!
//! Field docs become schema descriptions, which is what a model reads before calling a tool:
//! they say what a value is for and its limits, not how it is implemented. Optional fields are
//! described as their plain type and left out of `required` (not as `["T", "null"]`), which
//! clients that map schemas onto a single-`type` dialect (Gemini's function declarations) accept.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::stats::Statistics;

#[derive(Debug, Deserialize, JsonSchema)]
pub struct CreateDownloadArgs {
    /// The file to share, relative to the sandbox (e.g. `reports/q3.pdf`) or an absolute path
    /// inside it.
    pub path: String,
    /// How long the link stays valid, in seconds. Leave it out for the server's default; a
    /// value above the server's maximum is lowered to the maximum (the result says so).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "i64")]
    pub ttl_seconds: Option<i64>,
    /// The sandbox session to act in (letters, digits, `_`, `-`; at most 64). Leave it out
    /// unless you were told to use one; a token pinned to a session always uses its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub session: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct CreateUploadArgs {
    /// Where the uploaded file will be written, relative to the sandbox (e.g.
    /// `incoming/report.pdf`) or an absolute path inside it. Missing parent directories are
    /// created.
    pub path: String,
    /// How long the link stays valid, in seconds. Leave it out for the server's default; a
    /// value above the server's maximum is lowered to the maximum (the result says so).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "i64")]
    pub ttl_seconds: Option<i64>,
    /// The largest upload accepted, in bytes. Above the server's ceiling it is lowered to the
    /// ceiling; the result shows the value in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "u64")]
    pub max_bytes: Option<u64>,
    /// The SHA-256 the uploaded file must have, as 64 hex digits; an upload with another
    /// digest is refused and nothing is written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub sha256: Option<String>,
    /// Whether the upload may replace an existing file (default true). With false, minting
    /// fails if the file exists already.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "bool")]
    pub overwrite: Option<bool>,
    /// The sandbox session to act in (letters, digits, `_`, `-`; at most 64). Leave it out
    /// unless you were told to use one; a token pinned to a session always uses its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub session: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct GenerateArgs {
    /// The file to share, relative to the sandbox or an absolute path inside it.
    pub path: String,
    /// Minutes until the link expires: 5 when left out, at most 60 (larger values are
    /// lowered to 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "i64")]
    pub expiry_minutes: Option<i64>,
    /// The sandbox session to act in. Leave it out unless you were told to use one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub session: Option<String>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct StatsArgs {
    /// The sandbox session to report on. Leave it out for the root sandbox (or, with a token
    /// pinned to a session, for that session).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub session: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct StatusArgs {
    /// The link's full URL as it was handed out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub url: Option<String>,
    /// The link's token, if you have it instead of the URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub token: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct DownloadLink {
    /// The one-time URL. Hand it to the person or job exactly as it is; do not open it
    /// yourself, as that would use it up.
    pub url: String,
    /// The file's path relative to the sandbox.
    pub path: String,
    /// `file` or `directory` (a directory downloads as a zip).
    pub kind: String,
    /// Size in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "u64")]
    pub size: Option<u64>,
    /// When the link stops working (RFC 3339, UTC).
    pub expires_at: String,
    /// Seconds the link is valid for: the lifetime in force after any clamping.
    pub expires_in_seconds: u64,
    /// Set when a requested value was adjusted (e.g. the lifetime was clamped).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub note: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct UploadLink {
    /// The one-time upload URL. Hand it to the person or job exactly as it is. A job uploads
    /// with `curl --data-binary @FILE URL` (raw bytes, not a form); a person opens it in a
    /// browser and picks the file.
    pub url: String,
    /// Where the file will be written, relative to the sandbox.
    pub path: String,
    /// When the link stops working (RFC 3339, UTC).
    pub expires_at: String,
    /// Seconds the link is valid for: the lifetime in force after any clamping.
    pub expires_in_seconds: u64,
    /// The largest upload accepted, in bytes (the value in force after any clamping).
    pub max_bytes: u64,
    /// Set when a requested value was adjusted (e.g. the lifetime or size cap was clamped).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub note: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct SessionStats {
    /// The session reported on; null for the root sandbox.
    pub session_id: Option<String>,
    /// The absolute path of that sandbox on the server.
    pub working_directory: String,
    pub statistics: Counts,
}

/// Links minted here (through the server, or by this `burnlink mcp` process on stdio).
#[derive(Debug, Serialize, JsonSchema)]
pub struct Counts {
    /// All links minted.
    pub total_tokens: u64,
    /// Neither used nor expired yet.
    pub active_tokens: u64,
    /// Burned by a completed transfer.
    pub used_tokens: u64,
    /// Expired without being used.
    pub expired_tokens: u64,
}

impl From<Statistics> for Counts {
    fn from(s: Statistics) -> Self {
        Counts {
            total_tokens: s.total_tokens,
            active_tokens: s.active_tokens,
            used_tokens: s.used_tokens,
            expired_tokens: s.expired_tokens,
        }
    }
}
