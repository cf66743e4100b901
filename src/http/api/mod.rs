//! The minting and status API (`/api/*`, bearer auth) and the health routes.

pub mod auth;
pub mod compat;
pub mod links;

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequest, Request};
use axum::routing::{get, post};
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
/// up to [`API_BODY_LIMIT`]; a larger one is 413 `too_large`.
pub struct ApiJson<T>(pub T);

/// The largest JSON body `/api/*` reads. A mint request is a few hundred bytes; this bounds
/// what one request can make the server buffer.
pub const API_BODY_LIMIT: usize = 64 * 1024;

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        let body = axum::body::to_bytes(req.into_body(), API_BODY_LIMIT)
            .await
            .map_err(|e| {
                if is_length_limit(&e) {
                    ApiError::TooLarge(format!("the JSON body is over {API_BODY_LIMIT} bytes"))
                } else {
                    ApiError::BadRequest(format!("could not read the request body: {e}"))
                }
            })?;
        serde_json::from_slice(&body)
            .map(ApiJson)
            .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
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
