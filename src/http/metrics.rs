//! The HTTP side of metrics: request latency (recorded by the edge middleware) and `GET /metrics` ([`crate::metrics`]
//! holds the names and the recorder).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::state::App;

/// Request latency by method, route template and status, recorded by the edge middleware
/// ([`crate::http::edge`], a route layer, so the template is known). The template
/// (`/transfer/{token}`) never carries the token.
pub fn observe(method: &Method, route: Option<&MatchedPath>, status: StatusCode, start: Instant) {
    crate::metrics::request_finished(
        method_label(method),
        route.map_or("unmatched", MatchedPath::as_str),
        status.as_u16(),
        start.elapsed(),
    );
}

/// The method as a label: the standard ones by name, any other as `other`, so a client
/// inventing methods cannot grow `/metrics`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
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
