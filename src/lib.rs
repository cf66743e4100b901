//! burnlink: one-time, expiring capability URLs for files in a sandbox directory.
//!
//! A link is an HMAC-signed token ([`token`]) that any replica holding the key can verify; a
//! small nonce ledger ([`ledger`]) makes each link burn after one successful transfer. Paths are
//! resolved by [`sandbox`]; [`links`] mints; [`transfer`] serves; [`api`] is the bearer-auth
//! minting API; [`error`] is the one place errors become HTTP.
#![forbid(unsafe_code)]

pub mod api;
pub mod archive;
pub mod cli;
pub mod config;
pub mod error;
pub mod http_client;
pub mod ledger;
pub mod links;
pub mod mcp;
pub mod metrics;
pub mod net;
pub mod pages;
pub mod ratelimit;
pub mod sandbox;
pub mod server;
pub mod staging;
pub mod stats;
pub mod telemetry;
pub mod tls;
pub mod token;
pub mod transfer;
