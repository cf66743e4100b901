//! Every HTTP error burnlink answers, and the one place each becomes a status and a JSON body.
//!
//! Layers below (token, ledger, sandbox, links) have their own error types and know nothing of
//! HTTP; the `From` impls here decide what each of their cases looks like to a client.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::ledger::LedgerError;
use crate::links::MintError;
use crate::sandbox::SandboxError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no such link")]
    NotFound,
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
    #[error("too many requests from this address; retry in {retry_after_s} s")]
    RateLimited { retry_after_s: u64 },
    #[error("internal error")]
    Internal,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFound | ApiError::Used | ApiError::Revoked | ApiError::MissingFile(_) => {
                StatusCode::NOT_FOUND
            }
            ApiError::Expired => StatusCode::GONE,
            ApiError::InProgress | ApiError::Exists(_) => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::DigestMismatch => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::InvalidTtl => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable code of contract §8.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::NotFound | ApiError::MissingFile(_) => "not_found",
            ApiError::Used => "used",
            ApiError::Revoked => "revoked",
            ApiError::Expired => "expired",
            ApiError::InProgress => "in_progress",
            ApiError::TooLarge(_) => "too_large",
            ApiError::RangeNotSatisfiable { .. } => "range_not_satisfiable",
            ApiError::Exists(_) => "exists",
            ApiError::DigestMismatch => "digest_mismatch",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            // §8 has no code of its own for a stalled request; the status says it.
            ApiError::Timeout(_) => "bad_request",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::BadRequest(_) | ApiError::MethodNotAllowed => "bad_request",
            ApiError::InvalidTtl => "invalid_ttl",
            ApiError::Unavailable => "unavailable",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Internal => "internal",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = json!({ "error": self.code(), "message": self.to_string() });
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        match self {
            ApiError::RangeNotSatisfiable { size } => {
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    headers.insert(header::CONTENT_RANGE, v);
                }
            }
            ApiError::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::InProgress | ApiError::Unavailable => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
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
        tracing::error!(error = %e, "ledger call failed; failing closed");
        ApiError::Unavailable
    }
}

impl From<MintError> for ApiError {
    fn from(e: MintError) -> Self {
        match e {
            MintError::InvalidTtl => ApiError::InvalidTtl,
            MintError::BadRequest(m) => ApiError::BadRequest(m),
            MintError::Sandbox(SandboxError::BadSession) => {
                ApiError::BadRequest(SandboxError::BadSession.to_string())
            }
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
            MintError::Sandbox(SandboxError::Io(err)) => {
                tracing::error!(error = %err, "file system error while minting");
                ApiError::Internal
            }
            MintError::TooLarge { size, limit } => ApiError::TooLarge(format!(
                "{size} bytes is over the download ceiling of {limit} bytes"
            )),
            MintError::TreeTooLarge(m) => ApiError::TooLarge(m),
            MintError::Exists => {
                ApiError::Exists("the destination exists and overwrite is false".into())
            }
        }
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
    fn every_code_is_one_of_the_contract_codes() {
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
            ApiError::BadRequest(String::new()),
            ApiError::MissingFile(String::new()),
            ApiError::InvalidTtl,
            ApiError::MethodNotAllowed,
            ApiError::Unavailable,
            ApiError::RateLimited { retry_after_s: 1 },
            ApiError::Internal,
        ];
        for e in all {
            assert!(CODES.contains(&e.code()), "{}", e.code());
        }
    }
}
