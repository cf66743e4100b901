//! The minting and status API (`/api/*`, bearer auth) and the health routes.

pub mod auth;
pub mod compat;
pub mod links;

use std::sync::Arc;

use axum::Router;
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

/// `Json<T>` whose rejections are the API's JSON 400, not axum's plain-text ones.
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(ApiError::BadRequest(rejection.body_text())),
        }
    }
}
