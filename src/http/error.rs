//! Every HTTP error burnlink answers, and the one place each becomes a status and a JSON body.
//!
//! Layers below (token, sandbox, ledger and lease, links service, access, rate limits) have
//! their own error types and know nothing of HTTP; the `From` impls here decide what each of
//! their cases looks like to a client, so the same fault gets the same status and code on
//! every route. MCP's HTTP refusals map through [`code_for_status`].

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::access::{AccessError, Scope};
use crate::lease::LeaseError;
use crate::ledger::LedgerError;
use crate::links::{MintError, ServiceError};
use crate::oauth::OAuthError;
use crate::ratelimit::RateLimited;
use crate::sandbox::SandboxError;
use crate::token::TokenError;

#[derive(Clone, Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no such link")]
    NotFound,
    /// A token that does not verify: answered exactly like [`ApiError::NotFound`], but marked
    /// ([`FailedCheck`]) so the rate limiter counts it without verifying the token again.
    #[error("no such link")]
    BadToken,
    #[error("this link has already been used")]
    Used,
    #[error("this link was revoked")]
    Revoked,
    #[error("this link has expired")]
    Expired,
    #[error("this link is being used by another transfer right now; retry when it ends")]
    InProgress,
    #[error("{0}")]
    TooLarge(String),
    /// A resumable upload's append at an offset other than the stored one.
    #[error("Upload-Offset {sent} is not the upload's offset {stored}; ask for it with HEAD")]
    OffsetMismatch { sent: u64, stored: u64 },
    /// A resumable-upload protocol version this server does not speak.
    #[error("unsupported protocol version; this server speaks tus 1.0.0")]
    UnsupportedVersion,
    #[error("requested range is not satisfiable")]
    RangeNotSatisfiable { size: u64 },
    #[error("{0}")]
    Exists(String),
    #[error("the upload does not match the expected SHA-256 digest; nothing was written")]
    DigestMismatch,
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    Timeout(String),
    #[error("missing or invalid bearer token")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    /// A valid OAuth access token without the scope the call needs: 403 `forbidden`, with
    /// `WWW-Authenticate: Bearer error="insufficient_scope", scope="…"`.
    #[error("this access token lacks the scope `{0}`; ask the authorization server for it")]
    InsufficientScope(Scope),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    MissingFile(String),
    #[error("this method is not allowed on this route")]
    MethodNotAllowed,
    #[error("ttl must be a positive number of seconds")]
    InvalidTtl,
    #[error("the link ledger is unreachable; try again shortly")]
    Unavailable,
    /// The bucket the files live in did not answer (in time).
    #[error("the file storage is unreachable; try again shortly")]
    StorageUnavailable,
    /// The server is at one of its bounds (connections, archive threads): try again shortly.
    #[error("{0}")]
    Overloaded(String),
    #[error("too many requests from this address; retry in {retry_after_s} s")]
    RateLimited { retry_after_s: u64 },
    #[error("internal error")]
    Internal,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFound
            | ApiError::BadToken
            | ApiError::Used
            | ApiError::Revoked
            | ApiError::MissingFile(_) => StatusCode::NOT_FOUND,
            ApiError::Expired => StatusCode::GONE,
            ApiError::InProgress | ApiError::Exists(_) | ApiError::OffsetMismatch { .. } => {
                StatusCode::CONFLICT
            }
            ApiError::UnsupportedVersion => StatusCode::PRECONDITION_FAILED,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::DigestMismatch => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::InsufficientScope(_) => StatusCode::FORBIDDEN,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::InvalidTtl => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable | ApiError::StorageUnavailable | ApiError::Overloaded(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable code (the list in `docs/http-api.md`).
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::NotFound | ApiError::BadToken | ApiError::MissingFile(_) => "not_found",
            ApiError::Used => "used",
            ApiError::Revoked => "revoked",
            ApiError::Expired => "expired",
            ApiError::InProgress => "in_progress",
            ApiError::TooLarge(_) => "too_large",
            ApiError::OffsetMismatch { .. } => "offset_mismatch",
            ApiError::UnsupportedVersion => "unsupported_version",
            ApiError::RangeNotSatisfiable { .. } => "range_not_satisfiable",
            ApiError::Exists(_) => "exists",
            ApiError::DigestMismatch => "digest_mismatch",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            // No code of its own for a stalled request; the status says it.
            ApiError::Timeout(_) => "bad_request",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) | ApiError::InsufficientScope(_) => "forbidden",
            ApiError::BadRequest(_) | ApiError::MethodNotAllowed => "bad_request",
            ApiError::InvalidTtl => "invalid_ttl",
            ApiError::Unavailable | ApiError::StorageUnavailable | ApiError::Overloaded(_) => {
                "unavailable"
            }
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Internal => "internal",
        }
    }
}

/// Marks a response that refused a credential (a link token that does not verify, a wrong
/// bearer token): what the failed-check rate limit counts.
#[derive(Clone, Copy, Debug)]
pub struct FailedCheck;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = json!({ "error": self.code(), "message": self.to_string() });
        let mut response = (status, Json(body)).into_response();
        if matches!(self, ApiError::Unauthorized | ApiError::BadToken) {
            response.extensions_mut().insert(FailedCheck);
        }
        let headers = response.headers_mut();
        crate::http::private_headers(headers);
        match self {
            ApiError::RangeNotSatisfiable { size } => {
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    headers.insert(header::CONTENT_RANGE, v);
                }
            }
            ApiError::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::InsufficientScope(scope) => {
                let challenge = format!(
                    r#"Bearer error="insufficient_scope", scope="{}""#,
                    scope.as_str()
                );
                if let Ok(v) = HeaderValue::from_str(&challenge) {
                    headers.insert(header::WWW_AUTHENTICATE, v);
                }
            }
            ApiError::InProgress
            | ApiError::Unavailable
            | ApiError::StorageUnavailable
            | ApiError::Overloaded(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            ApiError::OffsetMismatch { stored, .. } => {
                headers.insert("upload-offset", HeaderValue::from(stored));
            }
            ApiError::UnsupportedVersion => {
                headers.insert("tus-version", HeaderValue::from_static("1.0.0"));
            }
            ApiError::RateLimited { retry_after_s } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s.max(1)));
            }
            _ => {}
        }
        response
    }
}

impl From<LedgerError> for ApiError {
    fn from(e: LedgerError) -> Self {
        ApiError::from(&e)
    }
}

impl From<&LedgerError> for ApiError {
    fn from(e: &LedgerError) -> Self {
        tracing::error!(error = %e, "ledger call failed; failing closed");
        ApiError::Unavailable
    }
}

impl From<MintError> for ApiError {
    fn from(e: MintError) -> Self {
        ApiError::from(&e)
    }
}

impl From<&MintError> for ApiError {
    fn from(e: &MintError) -> Self {
        match e {
            MintError::InvalidTtl => ApiError::InvalidTtl,
            MintError::BadRequest(m) => ApiError::BadRequest(m.clone()),
            MintError::Sandbox(SandboxError::BadPath(m)) => ApiError::BadRequest(m.to_string()),
            MintError::Sandbox(SandboxError::Outside) => {
                ApiError::Forbidden("path is outside the sandbox".into())
            }
            MintError::Sandbox(SandboxError::NotFound) => {
                ApiError::MissingFile("no such file or directory in the sandbox".into())
            }
            MintError::Sandbox(SandboxError::NotAFileOrDirectory) => {
                ApiError::BadRequest("path is neither a regular file nor a directory".into())
            }
            MintError::Sandbox(SandboxError::Unavailable(err)) => {
                tracing::error!(error = %err, "storage unavailable while minting");
                ApiError::StorageUnavailable
            }
            MintError::Sandbox(SandboxError::Conflict) => ApiError::InProgress,
            MintError::Sandbox(SandboxError::Io(err)) => {
                tracing::error!(error = %err, "file system error while minting");
                ApiError::Internal
            }
            MintError::TooLarge { size, limit } => ApiError::TooLarge(format!(
                "{size} bytes is over the download ceiling of {limit} bytes"
            )),
            MintError::TreeTooLarge(m) => ApiError::TooLarge(m.clone()),
            MintError::Exists => {
                ApiError::Exists("the destination exists and overwrite is false".into())
            }
        }
    }
}

/// What a transfer finds when it opens its path again: whatever happened on disk since
/// minting (deleted, replaced by something else, swapped for a symlink that leads out) is "no
/// such link" now; only a genuine I/O failure is the server's fault.
impl From<SandboxError> for ApiError {
    fn from(e: SandboxError) -> Self {
        match e {
            SandboxError::Io(err) => {
                tracing::error!(error = %err, "file system error during a transfer");
                ApiError::Internal
            }
            SandboxError::Unavailable(err) => {
                tracing::error!(error = %err, "storage unavailable during a transfer");
                ApiError::StorageUnavailable
            }
            SandboxError::Conflict => ApiError::InProgress,
            SandboxError::BadPath(_)
            | SandboxError::Outside
            | SandboxError::NotFound
            | SandboxError::NotAFileOrDirectory => ApiError::NotFound,
        }
    }
}

/// Every way a token can be wrong is the same "not found", so a prober learns nothing.
impl From<TokenError> for ApiError {
    fn from(_: TokenError) -> Self {
        ApiError::BadToken
    }
}

/// Work sent to the blocking pool that did not come back (it panicked, or the runtime is
/// shutting down).
impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        tracing::error!(error = %e, "a blocking task did not complete");
        ApiError::Internal
    }
}

impl From<AccessError> for ApiError {
    fn from(e: AccessError) -> Self {
        ApiError::from(&e)
    }
}

impl From<&AccessError> for ApiError {
    fn from(e: &AccessError) -> Self {
        match e {
            AccessError::BadSession(_) => ApiError::BadRequest(e.to_string()),
            AccessError::Pinned(_) => ApiError::Forbidden(e.to_string()),
            AccessError::MissingScope(scope) => ApiError::InsufficientScope(*scope),
        }
    }
}

/// An access token that does not verify is a wrong bearer token (401, counted as a failed
/// check); an issuer whose keys cannot be fetched leaves nothing to check it with (503).
impl From<OAuthError> for ApiError {
    fn from(e: OAuthError) -> Self {
        match e {
            OAuthError::Invalid(reason) => {
                tracing::info!(%reason, "access token refused");
                ApiError::Unauthorized
            }
            OAuthError::Unavailable(reason) => {
                tracing::warn!(%reason, "cannot check an access token");
                ApiError::Unavailable
            }
        }
    }
}

impl From<RateLimited> for ApiError {
    fn from(e: RateLimited) -> Self {
        ApiError::RateLimited {
            retry_after_s: e.retry_after_s,
        }
    }
}

impl From<LeaseError> for ApiError {
    fn from(e: LeaseError) -> Self {
        match e {
            LeaseError::Busy => ApiError::InProgress,
            LeaseError::Used => ApiError::Used,
            LeaseError::Revoked => ApiError::Revoked,
            LeaseError::Ledger(e) => e.into(),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        ApiError::from(&e)
    }
}

/// By reference, so MCP can word the same fault with the same code and still pick its hint
/// from the fault itself.
impl From<&ServiceError> for ApiError {
    fn from(e: &ServiceError) -> Self {
        match e {
            ServiceError::Mint(e) => e.into(),
            ServiceError::Access(e) => e.into(),
            ServiceError::RateLimited(e) => (*e).into(),
            ServiceError::UnknownLink => ApiError::BadToken,
            ServiceError::Expired => ApiError::Expired,
            ServiceError::Used => ApiError::Used,
            ServiceError::Ledger(e) => e.into(),
            ServiceError::Interrupted => ApiError::Internal,
        }
    }
}

/// The error code for a bare HTTP status, for answers burnlink did not word itself (the MCP
/// SDK's plain-text refusals): the same table [`ApiError::status`] implies, read backwards.
pub fn code_for_status(status: StatusCode) -> &'static str {
    match status {
        StatusCode::UNAUTHORIZED => ApiError::Unauthorized.code(),
        StatusCode::FORBIDDEN => ApiError::Forbidden(String::new()).code(),
        StatusCode::NOT_FOUND => ApiError::NotFound.code(),
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge(String::new()).code(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(String::new()).code(),
        StatusCode::TOO_MANY_REQUESTS => ApiError::RateLimited { retry_after_s: 1 }.code(),
        StatusCode::SERVICE_UNAVAILABLE => ApiError::Unavailable.code(),
        s if s.is_server_error() => ApiError::Internal.code(),
        _ => ApiError::BadRequest(String::new()).code(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ledger_outage_fails_closed_as_503_unavailable() {
        let e = ApiError::from(LedgerError::Unavailable("connection refused".into()));
        let r = e.into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
    }

    #[test]
    fn a_missing_scope_is_403_naming_the_scope() {
        let r = ApiError::from(AccessError::MissingScope(Scope::Upload)).into_response();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            r.headers()[header::WWW_AUTHENTICATE],
            r#"Bearer error="insufficient_scope", scope="links:upload""#
        );
        assert!(r.extensions().get::<FailedCheck>().is_none());
        let r = ApiError::from(OAuthError::Invalid("expired".into())).into_response();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(r.extensions().get::<FailedCheck>().is_some());
    }

    #[test]
    fn every_code_is_one_of_the_documented_codes() {
        const CODES: &[&str] = &[
            "not_found",
            "used",
            "revoked",
            "expired",
            "in_progress",
            "too_large",
            "digest_mismatch",
            "unsupported_media_type",
            "range_not_satisfiable",
            "exists",
            "unauthorized",
            "forbidden",
            "bad_request",
            "invalid_ttl",
            "unavailable",
            "rate_limited",
            "internal",
        ];
        let all = [
            ApiError::NotFound,
            ApiError::BadToken,
            ApiError::Used,
            ApiError::Revoked,
            ApiError::Expired,
            ApiError::InProgress,
            ApiError::TooLarge(String::new()),
            ApiError::RangeNotSatisfiable { size: 1 },
            ApiError::Exists(String::new()),
            ApiError::DigestMismatch,
            ApiError::UnsupportedMediaType(String::new()),
            ApiError::Timeout(String::new()),
            ApiError::Unauthorized,
            ApiError::Forbidden(String::new()),
            ApiError::InsufficientScope(Scope::Read),
            ApiError::BadRequest(String::new()),
            ApiError::MissingFile(String::new()),
            ApiError::InvalidTtl,
            ApiError::MethodNotAllowed,
            ApiError::Unavailable,
            ApiError::Overloaded(String::new()),
            ApiError::RateLimited { retry_after_s: 1 },
            ApiError::Internal,
        ];
        for e in all {
            assert!(CODES.contains(&e.code()), "{}", e.code());
        }
    }
}
