//! The older download API, kept so existing callers keep working:
//! `POST /api/download/generate` and `GET /api/download/stats`.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Value, json};

use super::ApiJson;
use super::auth::Caller;
use crate::error::ApiError;
use crate::links::{MintRequest, unix_now};
use crate::net::ConnInfo;
use crate::server::App;
use crate::token::Direction;

/// The old API's default and ceiling, in minutes.
const DEFAULT_MINUTES: i64 = 5;
const MAX_MINUTES: i64 = 60;

/// The old API's `expiry_minutes` as a TTL in seconds: 5 minutes when absent, at most 60,
/// refused when not positive. Shared with MCP's `generate_download_link`.
pub fn expiry_seconds(minutes: Option<i64>) -> Result<i64, ApiError> {
    let minutes = minutes.unwrap_or(DEFAULT_MINUTES);
    if minutes <= 0 {
        return Err(ApiError::InvalidTtl);
    }
    Ok(minutes.min(MAX_MINUTES) * 60)
}

#[derive(Deserialize)]
pub struct GenerateBody {
    session_id: Option<String>,
    file_path: String,
    expiry_minutes: Option<i64>,
}

pub async fn generate(
    State(app): State<Arc<App>>,
    caller: Caller,
    Extension(conn): Extension<ConnInfo>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<GenerateBody>,
) -> Result<Json<Value>, ApiError> {
    let request = MintRequest {
        session: caller.session_for(body.session_id.as_deref())?,
        path: body.file_path,
        direction: Some(Direction::Download),
        ttl_seconds: Some(expiry_seconds(body.expiry_minutes)?),
        ..MintRequest::default()
    };
    let client = conn.client_ip(&headers, &app.config.trusted_proxies);
    let minted = app.mint(request, "api-compat", Some(client)).await?;
    Ok(Json(json!({
        "token": minted.token,
        "download_url": minted.url,
        "expires_at": minted.expires_at,
        "file_type": minted.kind,
        "message": format!(
            "Download link for {} created; it works once and expires at {}.",
            minted.path, minted.expires_at
        ),
    })))
}

#[derive(Deserialize)]
pub struct StatsQuery {
    session_id: Option<String>,
}

pub async fn stats(
    State(app): State<Arc<App>>,
    caller: Caller,
    Query(q): Query<StatsQuery>,
) -> Result<Json<Value>, ApiError> {
    // A pinned caller sees its own session; an unpinned one sees everything unless it asks.
    let session = match (&caller.pinned, q.session_id.as_deref()) {
        (None, None) => None,
        _ => Some(caller.session_for(q.session_id.as_deref())?),
    };
    let filter = session.as_ref().map(|s| s.as_ref().map(|s| s.as_str()));
    let statistics = app.stats.snapshot(filter, unix_now()).await?;
    Ok(Json(json!({ "statistics": statistics })))
}
