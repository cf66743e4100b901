//! What the MCP tools act on: the running server (`/mcp`) or a stand-alone minter (`burnlink mcp`).
//!
//! Inside the server the tools go through the same paths as the HTTP API ([`App::mint`],
//! [`link_status`]), so counting, audit lines and status answers cannot drift apart. On stdio
//! there is only the key and the files: links are minted locally (any replica accepts them),
//! counted in this process, and a link's status is asked of the server's API.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::api::auth::Caller;
use crate::api::links::link_status;
use crate::error::ApiError;
use crate::links::{Limits, MintRequest, Minted, Minter, unix_now};
use crate::sandbox::{Sandbox, SessionId};
use crate::server::App;
use crate::stats::{MemoryStats, Statistics, StatsStore};
use crate::telemetry::audit_mint;
use crate::token::extract_token;

pub enum Backend {
    Server(Arc<App>),
    Local(Box<Local>),
}

/// `burnlink mcp`: mints with the shared key, no HTTP server in this process.
pub struct Local {
    pub minter: Arc<Minter>,
    pub sandbox: Sandbox,
    pub limits: Limits,
    pub stats: MemoryStats,
    /// `None` when no API token is configured: `get_link_status` is then not offered.
    pub status: Option<StatusClient>,
}

/// Asks `GET {base}/api/links/{token}` of the server, with the first configured API token.
pub struct StatusClient {
    pub base_url: String,
    pub api_token: String,
    pub http: crate::http_client::HttpClient,
}

impl StatusClient {
    /// Over http or https ([`crate::http_client`]); fails only on an unreadable
    /// `SSL_CERT_FILE`.
    pub fn new(base_url: String, api_token: String) -> Result<Self, String> {
        Ok(StatusClient {
            base_url,
            api_token,
            http: crate::http_client::client(Duration::from_secs(15))?,
        })
    }
}

/// A failure to report to the model, already worded (the server's own code and message when
/// the server answered).
pub struct RemoteError {
    pub code: String,
    pub message: String,
}

pub enum BackendError {
    Api(ApiError),
    Remote(RemoteError),
}

impl From<ApiError> for BackendError {
    fn from(e: ApiError) -> Self {
        BackendError::Api(e)
    }
}

impl Backend {
    pub fn limits(&self) -> Limits {
        match self {
            Backend::Server(app) => crate::server::limits(&app.config),
            Backend::Local(l) => l.limits.clone(),
        }
    }

    pub fn sandbox(&self) -> &Sandbox {
        match self {
            Backend::Server(app) => &app.sandbox,
            Backend::Local(l) => &l.sandbox,
        }
    }

    /// Whether `get_link_status` can be answered here.
    pub fn offers_status(&self) -> bool {
        match self {
            Backend::Server(_) => true,
            Backend::Local(l) => l.status.is_some(),
        }
    }

    pub async fn mint(
        &self,
        request: MintRequest,
        client: Option<IpAddr>,
    ) -> Result<Minted, ApiError> {
        match self {
            Backend::Server(app) => app.mint(request, "mcp", client).await,
            Backend::Local(l) => {
                let minter = l.minter.clone();
                let minted = tokio::task::spawn_blocking(move || minter.mint(request, unix_now()))
                    .await
                    .map_err(|_| ApiError::Internal)??;
                let claims = &minted.claims;
                // Cannot fail: the store is in memory.
                let _ = l
                    .stats
                    .record_mint(claims.session.as_deref(), claims.expires_at)
                    .await;
                audit_mint(claims, "mcp-stdio", None);
                Ok(minted)
            }
        }
    }

    /// The counters of one sandbox (`None` = links minted at the root).
    pub async fn stats(&self, session: Option<&SessionId>) -> Result<Statistics, ApiError> {
        let filter = Some(session.map(SessionId::as_str));
        let store: &dyn StatsStore = match self {
            Backend::Server(app) => app.stats.as_ref(),
            Backend::Local(l) => &l.stats,
        };
        Ok(store.snapshot(filter, unix_now()).await?)
    }

    /// The body of `GET /api/links/{token}` for a token or any URL carrying one.
    pub async fn status(&self, caller: &Caller, url_or_token: &str) -> Result<Value, BackendError> {
        let token = extract_token(url_or_token.trim());
        match self {
            Backend::Server(app) => Ok(link_status(app, caller, token).await?),
            Backend::Local(l) => {
                let client = l.status.as_ref().ok_or(ApiError::NotFound)?;
                remote_status(client, token).await
            }
        }
    }
}

async fn remote_status(client: &StatusClient, token: &str) -> Result<Value, BackendError> {
    let remote = |code: &str, message: String| {
        BackendError::Remote(RemoteError {
            code: code.into(),
            message,
        })
    };
    let url = format!("{}/api/links/{token}", client.base_url);
    let (status, body) = client
        .http
        .call(hyper::Method::GET, &url, &client.api_token)
        .await
        // The error leaves out the URL: it carries the live token.
        .map_err(|e| {
            remote(
                "unavailable",
                format!(
                    "cannot reach the burnlink server at {}: {e}",
                    client.base_url
                ),
            )
        })?;
    if status.is_success() {
        return Ok(body);
    }
    Err(remote(
        body["error"].as_str().unwrap_or("internal"),
        body["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("the server answered {status}")),
    ))
}
