//! The HTTP side of metrics: the latency middleware and `GET /metrics` ([`crate::metrics`]
//! holds the names and the recorder).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::state::App;

/// Middleware (a route layer, so the route template is known): request latency by method,
/// route template and status. The template (`/transfer/{token}`) never carries the token.
pub async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = request.method().as_str().to_owned();
    let start = Instant::now();
    let response = next.run(request).await;
    crate::metrics::request_finished(
        method,
        route,
        response.status().as_str().to_owned(),
        start.elapsed().as_secs_f64(),
    );
    response
}

/// `GET /metrics`: the Prometheus text format. The ledger's size is read now, so it is never
/// stale; a ledger that cannot answer leaves the last value.
pub async fn scrape(State(app): State<Arc<App>>) -> Response {
    match app.ledger.entries().await {
        Ok(n) => crate::metrics::ledger_entries(n),
        Err(e) => tracing::warn!(error = %e, "could not count ledger entries for /metrics"),
    }
    let body = crate::metrics::render();
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
