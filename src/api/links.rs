//! `POST /api/links`, `GET` and `DELETE /api/links/{token}`, `/healthz`, `/readyz`.

use std::sync::Arc;

use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::ApiJson;
use super::auth::Caller;
use crate::error::ApiError;
use crate::ledger::{LinkState, Revoke};
use crate::links::{MintRequest, Minted, parse_ip, parse_sha256_hex, rfc3339, unix_now};
use crate::net::ConnInfo;
use crate::server::App;
use crate::token::{Claims, Direction, hex};

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
}

pub async fn create(
    State(app): State<Arc<App>>,
    caller: Caller,
    Extension(conn): Extension<ConnInfo>,
    headers: HeaderMap,
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
    };
    let client = conn.client_ip(&headers, &app.config.trusted_proxies);
    let minted = app.mint(request, "api", Some(client)).await?;
    Ok((StatusCode::CREATED, Json(minted)))
}

pub async fn status(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(token): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(link_status(&app, &caller, &token).await?))
}

/// What `GET /api/links/{token}` answers, for any front end (the API, MCP's `get_link_status`).
pub async fn link_status(app: &App, caller: &Caller, token: &str) -> Result<Value, ApiError> {
    let claims = verified_for(app, caller, token)?;
    let state = app.ledger.state(&claims.nonce).await?;
    Ok(status_json(&claims, state, unix_now()))
}

pub async fn revoke(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(token): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let claims = verified_for(&app, &caller, &token)?;
    if claims.is_expired(unix_now()) {
        return Err(ApiError::Expired);
    }
    match app.ledger.revoke(&claims.nonce, claims.expires_at).await? {
        Revoke::Revoked | Revoke::AlreadyRevoked => {
            tracing::info!(
                target: "burnlink::audit",
                event = "revoke",
                link = %claims.short_id(),
                session = claims.session.as_deref().unwrap_or("-"),
                path = %claims.path,
            );
            Ok(Json(status_json(&claims, LinkState::Revoked, unix_now())))
        }
        Revoke::AlreadyUsed => Err(ApiError::Used),
    }
}

/// A token this caller may ask about. Any token fault is "not found", as on transfer routes.
fn verified_for(app: &App, caller: &Caller, token: &str) -> Result<Claims, ApiError> {
    let claims = app
        .keyring
        .verify(token)
        .map_err(|_| ApiError::NotFound)?
        .claims;
    caller.may_act_on(claims.session.as_deref())?;
    Ok(claims)
}

/// The body of `GET /api/links/{token}`. A link in flight or finished says so even past its
/// expiry; an untouched link past its expiry is `expired`.
pub fn status_json(claims: &Claims, state: LinkState, now_unix: u64) -> Value {
    let (name, receipt) = match state {
        LinkState::Used(receipt) => ("used", receipt),
        LinkState::Revoked => ("revoked", None),
        LinkState::InProgress => ("in_progress", None),
        LinkState::Unused if claims.is_expired(now_unix) => ("expired", None),
        LinkState::Unused => ("unused", None),
    };
    let mut v = json!({
        "state": name,
        "direction": claims.direction,
        "path": claims.path,
        "expires_at": rfc3339(claims.expires_at),
    });
    if let Some(r) = receipt {
        v["bytes"] = json!(r.bytes);
        v["sha256"] = json!(hex(&r.sha256));
    }
    v
}

pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

pub async fn readyz(State(app): State<Arc<App>>) -> Result<Json<Value>, ApiError> {
    app.ledger.ping().await?;
    Ok(Json(json!({ "status": "ready" })))
}
