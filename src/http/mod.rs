//! The HTTP edge: the router, the link gate, the one error map, the transfer and API handlers,
//! the pages, the metrics and rate-limit middlewares, MCP's mount at `/mcp`, and the
//! connection loop that serves them all.

pub mod api;
pub mod error;
pub mod gate;
pub mod mcp;
pub mod metrics;
pub mod net;
pub mod pages;
pub mod ratelimit;
pub mod transfer;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware;
use axum::routing::get;

use crate::state::App;
use error::ApiError;

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .merge(transfer::routes())
        .merge(api::routes())
        .merge(mcp::routes(app.clone()))
        .route("/metrics", get(metrics::scrape))
        // Route layers cover the routes added above them: keep new routes above these lines.
        // The outer one times the whole request, 429s included.
        .route_layer(middleware::from_fn_with_state(
            app.clone(),
            ratelimit::guard,
        ))
        .route_layer(middleware::from_fn(metrics::track))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(app)
}

/// The headers every answer about a link carries, bytes or page: never cached, never a
/// referrer that would leak the capability URL, never content-sniffed.
pub fn private_headers(h: &mut HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}
