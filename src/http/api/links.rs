//! `POST /api/links`, `GET` and `DELETE /api/links/{token}`, `/healthz`, `/readyz`: thin
//! fronts on the links service.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::ApiJson;
use crate::access::Caller;
use crate::http::error::ApiError;
use crate::http::gate::{ClientIp, LinkToken};
use crate::links::{LinkStatus, MintRequest, Minted, Origin, parse_ip, parse_sha256_hex};
use crate::state::App;
use crate::token::Direction;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkBody {
    path: String,
    direction: Option<Direction>,
    ttl_seconds: Option<i64>,
    session: Option<String>,
    max_bytes: Option<u64>,
    sha256: Option<String>,
    overwrite: Option<bool>,
    ip: Option<String>,
    max_uses: Option<u64>,
}

pub async fn create(
    State(app): State<Arc<App>>,
    caller: Caller,
    ClientIp(client): ClientIp,
    ApiJson(body): ApiJson<LinkBody>,
) -> Result<(StatusCode, Json<Minted>), ApiError> {
    let request = MintRequest {
        session: caller.session_for(body.session.as_deref())?,
        path: body.path,
        direction: body.direction,
        ttl_seconds: body.ttl_seconds,
        max_bytes: body.max_bytes,
        sha256: body.sha256.as_deref().map(parse_sha256_hex).transpose()?,
        overwrite: body.overwrite,
        ip: body.ip.as_deref().map(parse_ip).transpose()?,
        max_uses: body.max_uses,
    };
    let origin = Origin {
        via: "api",
        client: Some(client),
    };
    let minted = app.links.mint_for(&caller, request, origin).await?;
    Ok((StatusCode::CREATED, Json(minted)))
}

pub async fn status(
    State(app): State<Arc<App>>,
    caller: Caller,
    LinkToken(token): LinkToken,
) -> Result<Json<LinkStatus>, ApiError> {
    Ok(Json(app.links.status(&caller, &token).await?))
}

pub async fn revoke(
    State(app): State<Arc<App>>,
    caller: Caller,
    LinkToken(token): LinkToken,
) -> Result<Json<LinkStatus>, ApiError> {
    Ok(Json(app.links.revoke(&caller, &token).await?))
}

pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

pub async fn readyz(State(app): State<Arc<App>>) -> Result<Json<Value>, ApiError> {
    app.ledger.ping().await?;
    app.storage.ping().await?;
    Ok(Json(json!({ "status": "ready" })))
}
