//! What the MCP tools act on: the links service of the running server (`/mcp`) or of a
//! stand-alone minter (`burnlink mcp`).
//!
//! Both mint through [`LinkService`], so counting, the metric, audit lines and the mint rate
//! limit cannot drift apart between the API and the tools. On stdio there is only the key and
//! the files: links are minted locally (any replica accepts them), counted in this process,
//! and a link's status is asked of the server's API.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::access::Caller;
use crate::links::{LinkService, LinkStatus, MintRequest, Minted, Origin, ServiceError};
use crate::session::SessionId;
use crate::state::App;
use crate::stats::Statistics;
use crate::token::{extract_token, is_token_shaped};

pub struct Backend {
    links: Arc<LinkService>,
    /// The front end named in audit lines: `mcp` or `mcp-stdio`.
    via: &'static str,
    status: Status,
}

/// Where `get_link_status` gets its answer.
enum Status {
    /// From the links service, which holds the ledger (inside the server).
    Service,
    /// From the server's API (on stdio, with the first configured API token).
    Remote(Box<StatusClient>),
    /// Not offered (stdio without an API token).
    Off,
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
    Service(ServiceError),
    Remote(RemoteError),
}

impl From<ServiceError> for BackendError {
    fn from(e: ServiceError) -> Self {
        BackendError::Service(e)
    }
}

impl Backend {
    /// The tools inside `burnlink serve`.
    pub fn server(app: &App) -> Self {
        Backend {
            links: app.links.clone(),
            via: "mcp",
            status: Status::Service,
        }
    }

    /// The tools of `burnlink mcp`, asking `status` (when given) for link status.
    pub fn local(links: Arc<LinkService>, status: Option<StatusClient>) -> Self {
        Backend {
            links,
            via: "mcp-stdio",
            status: status.map_or(Status::Off, |c| Status::Remote(Box::new(c))),
        }
    }

    pub fn links(&self) -> &LinkService {
        &self.links
    }

    /// Whether `get_link_status` can be answered here.
    pub fn offers_status(&self) -> bool {
        !matches!(self.status, Status::Off)
    }

    pub async fn mint(
        &self,
        caller: &Caller,
        request: MintRequest,
        client: Option<IpAddr>,
    ) -> Result<Minted, ServiceError> {
        let origin = Origin {
            via: self.via,
            client,
        };
        self.links.mint_for(caller, request, origin).await
    }

    /// The counters of one sandbox (`None` = links minted at the root).
    pub async fn stats(
        &self,
        caller: &Caller,
        session: Option<&SessionId>,
    ) -> Result<Statistics, ServiceError> {
        self.links.stats_for(caller, Some(session)).await
    }

    /// The status of a link, from a token or any URL carrying one.
    pub async fn status(
        &self,
        caller: &Caller,
        url_or_token: &str,
    ) -> Result<LinkStatus, BackendError> {
        let token = extract_token(url_or_token.trim());
        // Before any use: a token from the model's input goes into a URL path below.
        if !is_token_shaped(token) {
            return Err(ServiceError::UnknownLink.into());
        }
        match &self.status {
            Status::Service => Ok(self.links.status(caller, token).await?),
            Status::Remote(client) => {
                caller
                    .require(crate::access::Scope::Read)
                    .map_err(ServiceError::from)?;
                remote_status(client, token).await
            }
            Status::Off => Err(ServiceError::UnknownLink.into()),
        }
    }
}

async fn remote_status(client: &StatusClient, token: &str) -> Result<LinkStatus, BackendError> {
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
        return serde_json::from_value(body).map_err(|e| {
            remote(
                "internal",
                format!("the server's status answer was not understood: {e}"),
            )
        });
    }
    Err(remote(
        body["error"].as_str().unwrap_or("internal"),
        body["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("the server answered {status}")),
    ))
}
