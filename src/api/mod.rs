//! The minting and status API (`/api/*`, bearer auth) and the health routes.

pub mod auth;
pub mod compat;
pub mod links;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::server::App;

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
/// `application/x-www-form-urlencoded`, and a CI job should not fail on that. The body size is
/// bounded by axum's default body limit (2 MiB).
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let body = Bytes::from_request(req, state)
            .await
            .map_err(|rejection| ApiError::BadRequest(rejection.body_text()))?;
        serde_json::from_slice(&body)
            .map(ApiJson)
            .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
    }
}
