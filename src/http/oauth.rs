//! The resource-server side of OAuth at the edge: RFC 9728 protected-resource metadata at
//! `/.well-known/oauth-protected-resource` (and its `/mcp`-suffixed form), and the pointer to
//! it in every bearer challenge (`WWW-Authenticate: Bearer resource_metadata="…"`), so a
//! remote MCP client can find the authorization server from a 401 alone. Checking the tokens
//! is [`crate::oauth`]'s; the statuses and challenges are the error map's.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};

use crate::http::error::ApiError;
use crate::state::App;

/// The metadata document's path; the MCP endpoint's own form appends `/mcp`.
pub const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route(METADATA_PATH, get(root_metadata))
        .route(&format!("{METADATA_PATH}/mcp"), get(mcp_metadata))
}

/// The document for the MCP endpoint, the resource its tokens are for.
async fn mcp_metadata(State(app): State<Arc<App>>) -> Result<Json<Value>, ApiError> {
    let settings = app.oauth.as_ref().ok_or(ApiError::NotFound)?.settings();
    Ok(metadata(settings, &settings.audience))
}

/// The document for the server as a whole (RFC 9728 §3.3: the resource a document names is
/// the URL it is found under, so by default the base URL; tokens for it are accepted too).
async fn root_metadata(State(app): State<Arc<App>>) -> Result<Json<Value>, ApiError> {
    let settings = app.oauth.as_ref().ok_or(ApiError::NotFound)?.settings();
    Ok(metadata(settings, settings.root_resource()))
}

/// RFC 9728 §2: the resource, its authorization server, scopes and bearer methods. Without
/// OAuth there is no such document (404).
fn metadata(settings: &crate::oauth::OAuthSettings, resource: &str) -> Json<Value> {
    Json(json!({
        "resource": resource,
        "authorization_servers": [settings.issuer],
        "scopes_supported": crate::oauth::scopes_supported(),
        "bearer_methods_supported": ["header"],
        "resource_name": "burnlink",
    }))
}

/// Where a client finds the metadata: the MCP endpoint's form, under the base URL.
pub fn metadata_url(app: &App) -> String {
    format!("{}{METADATA_PATH}/mcp", app.links.minter().base_url())
}

/// Adds `resource_metadata="…"` to the bearer challenges of 401 and 403 answers when OAuth is
/// on (RFC 9728 §5.1); the challenge itself comes from the error map. Part of the edge
/// middleware ([`crate::http::edge`]).
pub fn challenge(app: &App, response: &mut Response) {
    if app.oauth.is_none()
        || !matches!(
            response.status(),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        )
    {
        return;
    }
    let Some(existing) = response
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.starts_with("Bearer"))
    else {
        return;
    };
    let pointer = format!(r#"resource_metadata="{}""#, metadata_url(app));
    let value = if existing.trim() == "Bearer" {
        format!("Bearer {pointer}")
    } else {
        format!("{existing}, {pointer}")
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
}
