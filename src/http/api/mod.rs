//! The minting and status API (`/api/*`, bearer auth) and the health routes.

pub mod auth;
pub mod compat;
pub mod links;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::routing::{get, post};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::http::error::ApiError;
use crate::state::App;

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/api/links", post(links::create))
        .route(
            "/api/links/{token}",
            get(links::status).delete(links::revoke),
        )
        .route("/api/download/generate", post(compat::generate))
        .route("/api/download/stats", get(compat::stats))
        .route("/healthz", get(links::healthz))
        .route("/readyz", get(links::readyz))
}

/// A JSON request body, whatever `Content-Type` says, with failures as the API's JSON 400.
///
/// Lenient on purpose: `curl -d '{…}'` without `-H 'Content-Type: application/json'` sends
/// `application/x-www-form-urlencoded`, and a CI job should not fail on that. The body is read
/// within [`API_BODY_LIMIT`] and the idle timeout ([`read_body`]).
pub struct ApiJson<T>(pub T);

/// The largest JSON body `/api/*` reads. A mint request is a few hundred bytes; this bounds
/// what one request can make the server buffer.
pub const API_BODY_LIMIT: usize = 64 * 1024;

impl<T> FromRequest<Arc<App>> for ApiJson<T>
where
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, app: &Arc<App>) -> Result<Self, ApiError> {
        let body = read_body(req.into_body(), API_BODY_LIMIT, app.config.idle_timeout).await?;
        serde_json::from_slice(&body)
            .map(ApiJson)
            .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
    }
}

/// Reads a whole (small) request body: at most `limit` bytes (413 past it), all of it within
/// `deadline` (408 past it), so no request can hold a connection and a buffer for as long as
/// its client likes. Streams (uploads) have their own per-chunk deadline instead.
pub async fn read_body(body: Body, limit: usize, deadline: Duration) -> Result<Bytes, ApiError> {
    match tokio::time::timeout(deadline, axum::body::to_bytes(body, limit)).await {
        Err(_) => Err(ApiError::Timeout(format!(
            "the request body did not arrive within {} s",
            deadline.as_secs()
        ))),
        Ok(Err(e)) if is_length_limit(&e) => Err(ApiError::TooLarge(format!(
            "the request body is over {limit} bytes"
        ))),
        Ok(Err(e)) => Err(ApiError::BadRequest(format!(
            "could not read the request body: {e}"
        ))),
        Ok(Ok(bytes)) => Ok(bytes),
    }
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = err.source();
    }
    false
}
