//! Bearer authentication for `/api/*` and `/mcp`: the token from the `Authorization` header,
//! checked against the configured API tokens ([`crate::access`]) first, then, when
//! `BURNLINK_OAUTH_ISSUER` is set, as an OAuth access token ([`crate::oauth`]).

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use crate::access::Caller;
use crate::http::error::ApiError;
use crate::oauth::Verifier;
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
        if let Some(caller) = app.api_tokens.authenticate(presented) {
            return Ok(caller);
        }
        match &app.oauth {
            Some(verifier) if Verifier::looks_like_jwt(presented) => {
                Ok(verifier.verify(presented).await?)
            }
            _ => Err(ApiError::Unauthorized),
        }
    }
}
