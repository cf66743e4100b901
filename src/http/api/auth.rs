//! Bearer authentication for `/api/*` and `/mcp`: the token from the `Authorization` header,
//! checked against the configured API tokens ([`crate::access`]).

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use crate::access::Caller;
use crate::http::error::ApiError;
use crate::state::App;

impl FromRequestParts<Arc<App>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let presented = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, rest) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
            .ok_or(ApiError::Unauthorized)?;
        app.api_tokens
            .authenticate(presented)
            .ok_or(ApiError::Unauthorized)
    }
}
