//! The link gate: the one place a transfer request becomes a verified link.
//!
//! Every transfer handler takes a [`Link`] (or `Result<Link, ApiError>` when it words failures
//! as a page), so the token is verified once per request, before anything else is looked at,
//! and no handler checks expiry, the client address or the session again. The direction is the
//! handler's business ([`Link::expect`]): the same URL serves both directions for some methods.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Path};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use serde::Deserialize;

use crate::http::conn::ConnInfo;
use crate::http::error::ApiError;
use crate::state::App;
use crate::token::{Claims, Direction, unix_now};

/// A genuine, unexpired link whose client restriction admits this request's client.
#[derive(Clone, Debug)]
pub struct Link {
    pub claims: Claims,
    /// The client's address: the peer's, or what a trusted proxy forwarded.
    pub client: IpAddr,
    pub conn: ConnInfo,
}

#[derive(Deserialize)]
struct TokenPath {
    /// The `{name}` segment, when present, is cosmetic (so `curl -O` saves under a real name)
    /// and is not read at all.
    token: String,
}

impl Link {
    /// This link, if it moves bytes in `direction`; otherwise "not found", like any link that
    /// does not exist for this route.
    pub fn expect(self, direction: Direction) -> Result<Link, ApiError> {
        if self.claims.direction == direction {
            Ok(self)
        } else {
            Err(ApiError::NotFound)
        }
    }
}

/// The `{token}` segment of a route, as given: for the API routes that look a link up
/// (`/api/links/{token}`). A segment that cannot be a token (not even UTF-8) is a bad token
/// there too, answered and counted like any other.
pub struct LinkToken(pub String);

impl<S: Send + Sync> FromRequestParts<S> for LinkToken {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(TokenPath { token }) = Path::<TokenPath>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::BadToken)?;
        Ok(LinkToken(token))
    }
}

impl FromRequestParts<Arc<App>> for Link {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let LinkToken(token) = LinkToken::from_request_parts(parts, app).await?;
        let conn = parts
            .extensions
            .get::<ConnInfo>()
            .cloned()
            .ok_or(ApiError::Internal)?;
        Link::admit(app, &token, conn, &parts.headers)
    }
}

impl Link {
    /// The gate itself, for a token taken from the path: the extractor above and the express
    /// lane ([`crate::http::express`]) both come through here.
    pub fn admit(
        app: &App,
        token: &str,
        conn: ConnInfo,
        headers: &HeaderMap,
    ) -> Result<Link, ApiError> {
        let claims = app.keyring.verify(token)?.claims;
        // Only a genuine link may say it expired; everything else above was "not found".
        if claims.is_expired(unix_now()) {
            return Err(ApiError::Expired);
        }
        let client = conn.client_ip(headers, &app.config.trusted_proxies);
        if let Some(net) = claims.ip
            && !net.contains(&client)
        {
            return Err(ApiError::Forbidden(
                "this link is restricted to other client addresses".into(),
            ));
        }
        Ok(Link {
            claims,
            client,
            conn,
        })
    }
}

/// The client's address (the peer's, or what a trusted proxy forwarded), for the routes that
/// need it without a link: minting (its rate limit and audit line) and `/mcp`.
#[derive(Clone, Copy, Debug)]
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<Arc<App>> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let conn = parts
            .extensions
            .get::<ConnInfo>()
            .ok_or(ApiError::Internal)?;
        Ok(ClientIp(
            conn.client_ip(&parts.headers, &app.config.trusted_proxies),
        ))
    }
}
