//! Logging set-up and the audit trail.
//!
//! Audit lines go through `tracing` under the `burnlink::audit` target, one per mint and one per
//! transfer, so they land wherever the logs go and can be filtered on their own. They carry a
//! short link id (part of the nonce), never the token, a key or an API token.

use std::net::IpAddr;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;
use crate::session::SessionId;
use crate::text::LogSafe;
use crate::token::{Claims, LinkId};

/// Installs the global subscriber. Logs go to stderr; stdout is kept for what the CLI prints.
pub fn init(filter: &str, format: LogFormat) {
    // rmcp logs every MCP request's life cycle at info (several lines per `/mcp` call); keep
    // it to warnings unless BURNLINK_LOG names it.
    let filter = if filter.contains("rmcp") {
        filter.to_string()
    } else {
        format!("{filter},rmcp=warn")
    };
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new("info,rmcp=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Who moved what: the fields every transfer audit line carries.
#[derive(Clone, Debug)]
pub struct TransferAudit {
    pub link: LinkId,
    pub direction: &'static str,
    pub session: Option<SessionId>,
    pub path: crate::token::LinkPath,
    pub client: IpAddr,
}

impl TransferAudit {
    pub fn new(claims: &Claims, client: IpAddr) -> Self {
        TransferAudit {
            link: claims.link_id(),
            direction: claims.direction.as_str(),
            session: claims.session.clone(),
            path: claims.path.clone(),
            client,
        }
    }

    /// The one place every transfer outcome passes: the audit line and the transfer metrics.
    pub fn log(&self, outcome: &'static str, bytes: u64) {
        crate::metrics::transfer_settled(self.direction, outcome, bytes);
        tracing::info!(
            target: "burnlink::audit",
            event = "transfer",
            link = %self.link,
            direction = self.direction,
            session = self.session.as_ref().map_or("-", SessionId::as_str),
            path = %LogSafe(&self.path),
            outcome,
            bytes,
            client = %self.client,
        );
    }
}

pub fn audit_mint(claims: &Claims, via: &str, client: Option<IpAddr>) {
    tracing::info!(
        target: "burnlink::audit",
        event = "mint",
        link = %claims.link_id(),
        direction = claims.direction.as_str(),
        session = claims.session.as_ref().map_or("-", SessionId::as_str),
        path = %LogSafe(&claims.path),
        via,
        expires_at = claims.expires_at,
        client = %client.map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
    );
}
