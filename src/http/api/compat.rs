//! The older download API, kept so existing callers keep working:
//! `POST /api/download/generate` and `GET /api/download/stats`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::ApiJson;
use crate::access::Caller;
use crate::http::error::ApiError;
use crate::http::gate::ClientIp;
use crate::links::{MintRequest, Origin, expiry_seconds};
use crate::state::App;
use crate::token::Direction;

#[derive(Deserialize)]
pub struct GenerateBody {
    session_id: Option<String>,
    file_path: String,
    expiry_minutes: Option<i64>,
}

pub async fn generate(
    State(app): State<Arc<App>>,
    caller: Caller,
    ClientIp(client): ClientIp,
    ApiJson(body): ApiJson<GenerateBody>,
) -> Result<Json<Value>, ApiError> {
    let request = MintRequest {
        session: caller.session_for(body.session_id.as_deref())?,
        path: body.file_path,
        direction: Some(Direction::Download),
        ttl_seconds: Some(expiry_seconds(body.expiry_minutes)?),
        ..MintRequest::default()
    };
    let origin = Origin {
        via: "api-compat",
        client: Some(client),
    };
    let minted = app.links.mint(request, origin).await?;
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
    let statistics = app
        .links
        .stats(session.as_ref().map(Option::as_ref))
        .await?;
    Ok(Json(json!({ "statistics": statistics })))
}
