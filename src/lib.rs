//! burnlink: one-time, expiring capability URLs for files in a sandbox directory.
//!
//! Layers point down only (`docs/architecture.md`):
//!
//! - the core, free of HTTP: [`token`], [`session`], [`sandbox`], [`ledger`] and [`lease`],
//!   [`links`] (minting, and the service that mints, answers status and revokes), [`access`],
//!   [`oauth`] (OAuth access tokens),
//!   [`archive`], [`staging`], [`stats`], [`ratelimit`], [`metrics`], [`telemetry`],
//!   [`text`], [`config`], [`tls`];
//! - the shared state, [`state`];
//! - the edges: [`http`] (router, link gate, the one error map, handlers, pages, middlewares,
//!   the connection loop), [`mcp`] (tools over the links service), [`cli`], [`client`]
//!   (`burnlink get` and `put`), and [`http_client`], the one outbound HTTPS client the CLI,
//!   the client and MCP on stdio share;
//! - [`server`], which assembles the parts and runs them.
// Audited exceptions: `server.rs` (the allocator's tuning for a bucket sandbox), and in test
// builds only the counting allocator of `alloc_count.rs`.
#![deny(unsafe_code)]

#[cfg(test)]
mod alloc_count;

pub mod access;
pub mod archive;
pub mod cli;
pub mod client;
pub mod config;
pub mod http;
pub mod http_client;
pub mod lease;
pub mod ledger;
pub mod links;
pub mod mcp;
pub mod metrics;
pub mod oauth;
pub mod ratelimit;
pub mod sandbox;
pub mod server;
pub mod session;
mod sharded;
pub mod staging;
pub mod state;
pub mod stats;
pub mod storage;
pub mod telemetry;
pub mod text;
pub mod tls;
pub mod token;
pub mod webhooks;
