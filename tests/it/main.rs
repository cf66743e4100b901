//! Every integration test, in one binary: each module is named for the behaviour it proves.
//! Helpers (starting the server and the real tools it is tested against, and the one rule for
//! skipping when a tool is missing) live in [`support`].

mod support;

mod browser;
mod cli;
mod client_address;
mod client_commands;
mod constant_memory;
mod debian_package;
mod deploy_examples;
mod directory_archive;
mod directory_archive_large;
mod download_status;
mod dropped_connection;
mod error_map;
mod event_loops;
mod express_lane;
mod file_names;
mod haproxy;
mod hostile_names;
mod hostile_properties;
mod hostile_requests;
mod ledger_suite;
mod mcp;
mod mcp_conformance;
mod metrics;
mod minting_api;
mod oauth;
mod object_storage;
mod operator_commands;
mod previewers;
mod rate_limits;
mod redis_deployments;
mod replicas;
mod request_bounds;
mod resumable_uploads;
mod resume;
mod sandbox_escape;
mod secrets_in_logs;
mod several_uses;
mod shutdown;
mod single_use;
mod slow_clients;
mod stalled_client;
mod stats_redis;
mod tls;
mod upload_memory;
mod uploads;
mod webhooks;
