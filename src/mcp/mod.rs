//! MCP: the minting tools for LLM agents, over streamable HTTP at `/mcp` (mounted by
//! [`crate::http::mcp`]) and over stdio ([`stdio`]).
//!
//! Built on rmcp, the official Rust SDK, so the protocol (versions, sessions, SSE, stdio
//! framing, DNS-rebinding guard) is the SDK's job and this module only holds the tools, which
//! act through the same [`crate::links::LinkService`] as the HTTP API.

mod backend;
mod reply;
pub mod stdio;
mod tools;
mod types;

use std::net::IpAddr;

pub use backend::Backend;
pub use tools::BurnlinkMcp;

use crate::access::Caller;

/// Who called a tool over HTTP: put into the request by the `/mcp` mount after bearer
/// authentication, read by the tools through rmcp's `http::request::Parts`.
#[derive(Clone, Debug)]
pub struct RemoteCaller {
    pub caller: Caller,
    /// The client's address, for the mint rate limit and the audit line.
    pub client: IpAddr,
}
