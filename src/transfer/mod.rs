//! The transfer routes: where a token is spent.
//!
//! Each handler reads like the contract: verify the token, take the link's lease, stream,
//! and commit or release (see [`delivery`]).

pub mod archive;
pub mod delivery;
pub mod digest;
pub mod disposition;
pub mod download;
pub mod range;
pub mod upload;

use std::net::IpAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;

use crate::error::ApiError;
use crate::server::App;
use crate::token::{Claims, Direction};

pub fn routes() -> Router<Arc<App>> {
    let download = get(download::download).head(download::download);
    // Minted upload URLs carry the cosmetic name too, so both forms take an upload.
    let transfer = download.clone().post(upload::upload).put(upload::upload);
    Router::new()
        .route("/transfer/{token}", transfer.clone())
        .route("/transfer/{token}/{name}", transfer)
        .route("/api/download/{token}", download)
}

/// Verifies a token for use in `direction` at `now`. Every way a token can be wrong (bad
/// encoding, unknown key, forged, meant for the other direction) is the same "not found", so a
/// prober learns nothing; only a genuine but expired link says so.
pub fn authorize(
    app: &App,
    token: &str,
    direction: Direction,
    now_unix: u64,
) -> Result<Claims, ApiError> {
    let verified = app.keyring.verify(token).map_err(|_| ApiError::NotFound)?;
    let claims = verified.claims;
    if claims.direction != direction {
        return Err(ApiError::NotFound);
    }
    if claims.is_expired(now_unix) {
        return Err(ApiError::Expired);
    }
    Ok(claims)
}

/// Enforces a link's `ip` constraint against the client address (the peer, or what a trusted
/// proxy forwarded).
pub fn check_client(claims: &Claims, client: IpAddr) -> Result<(), ApiError> {
    match claims.ip {
        Some(net) if !net.contains(&client) => Err(ApiError::Forbidden(
            "this link is restricted to other client addresses".into(),
        )),
        _ => Ok(()),
    }
}
