//! Every integration test, in one binary: each module is named for the behaviour it proves.
//! Helpers (starting the server and the real tools it is tested against, and the one rule for
//! skipping when a tool is missing) live in [`support`].

mod support;

mod browser;
mod cli;
mod client_address;
mod constant_memory;
mod directory_archive;
mod directory_archive_large;
mod download_status;
mod dropped_connection;
mod error_map;
mod file_names;
mod hostile_properties;
mod hostile_requests;
mod ledger_suite;
mod mcp;
mod metrics;
mod minting_api;
mod previewers;
mod rate_limits;
mod redis_deployments;
mod replicas;
mod request_bounds;
mod resume;
mod sandbox_escape;
mod secrets_in_logs;
mod shutdown;
mod single_use;
mod stalled_client;
mod stats_redis;
mod tls;
mod upload_memory;
mod uploads;
