//! `burnlink mcp`: the tools on stdin/stdout for a client that starts burnlink itself.
//!
//! No HTTP server runs in this process: it mints with the shared key for the server at
//! `BURNLINK_BASE_URL` (which accepts the links because it holds the same key), reads the same
//! files through `BURNLINK_ROOT`, and asks that server about a link's status. Stdout carries
//! the protocol, so nothing else may be printed there; logs go to stderr.

use std::sync::Arc;

use rmcp::ServiceExt;
use rmcp::transport::stdio;

use super::backend::{Backend, StatusClient};
use super::tools::BurnlinkMcp;
use crate::config::Config;
use crate::links::LinkService;
use crate::stats::MemoryStats;

pub async fn run(mut config: Config) -> Result<(), String> {
    for var in Config::unknown_vars() {
        tracing::warn!(variable = %var, "unknown BURNLINK_* variable ignored (a typo?)");
    }
    let keyring = config.keys.take().ok_or(
        "BURNLINK_KEYS is not set: `burnlink mcp` mints links for the server at \
         BURNLINK_BASE_URL and needs the same BURNLINK_KEYS as that server (run `burnlink \
         keygen` once and give the entry to both)",
    )?;
    if config.base_url.is_none() {
        tracing::warn!(
            "BURNLINK_BASE_URL is not set: links will point at http://{} (set it to the \
             address the server is reached at)",
            config.bind
        );
    }
    let (base_url, _) = config.resolve_base_url(config.bind);
    let storage = config.open_storage().map_err(|e| e.to_string())?;
    let status = config
        .api_tokens
        .take()
        .map(|tokens| StatusClient::new(base_url.clone(), tokens.first().to_string()))
        .transpose()?;
    if status.is_none() {
        tracing::info!("get_link_status is not offered (it needs BURNLINK_API_TOKENS)");
    }
    // Stats count what this process minted; no ledger here (status is asked of the server);
    // no rate limit: the one caller is whoever started this process.
    let links = LinkService::local(
        Arc::new(keyring),
        storage,
        config.limits(),
        base_url.clone(),
        Arc::new(MemoryStats::default()),
    );
    let handler = BurnlinkMcp::new(Backend::local(Arc::new(links), status));
    tracing::info!(%base_url, "MCP server on stdio");
    let running = handler
        .serve(stdio())
        .await
        .map_err(|e| format!("MCP start-up on stdio failed: {e}"))?;
    running
        .waiting()
        .await
        .map_err(|e| format!("MCP stdio session ended with an error: {e}"))?;
    Ok(())
}
