//! The HTTP edge: the router, the link gate, the one error map, the transfer and API handlers,
//! the pages, the edge middleware (latency, rate limits, OAuth challenges), MCP's mount at `/mcp`, and the
//! connection loop that serves them all.

pub mod affinity;
pub mod api;
pub mod conn;
pub mod error;
pub mod express;
pub mod gate;
pub mod mcp;
pub mod metrics;
pub mod net;
pub mod oauth;
pub mod pages;
pub mod ratelimit;
pub mod switch;
pub mod transfer;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;

use crate::state::App;
use error::ApiError;

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .merge(transfer::routes())
        .merge(api::routes())
        .merge(mcp::routes(app.clone()))
        .merge(oauth::routes())
        .route("/metrics", get(metrics::scrape))
        // A route layer covers the routes added above it: keep new routes above this line.
        .route_layer(middleware::from_fn_with_state(app.clone(), edge))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(app)
}

/// What every routed request passes through, in this order: the latency timer (429s
/// included), the rate-limit guard, the route; then the OAuth pointer on bearer challenges.
/// One middleware rather than one per concern, because each layer costs every request boxed
/// futures and clones of the routes beneath it (counted in docs/benchmarks.md); each concern
/// stays in its own module.
async fn edge(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let mut response = ratelimit::guard(&app, request, next).await;
    metrics::observe(&method, route.as_ref(), response.status(), start);
    oauth::challenge(&app, &mut response);
    response
}

/// Closes the connection once `response` is sent, so that the client's next request goes out
/// on a fresh one (see the callers for why).
pub fn close_after(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// The headers every answer about a link carries, bytes or page: never cached, never a
/// referrer that would leak the capability URL, never content-sniffed.
const PRIVATE: [(HeaderName, &str); 3] = [
    (header::CACHE_CONTROL, "no-store"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
];

/// [`PRIVATE`] into a response's map.
pub fn private_headers(h: &mut HeaderMap) {
    for (name, value) in PRIVATE {
        h.insert(name, HeaderValue::from_static(value));
    }
}

/// [`PRIVATE`] wherever a file's fields go (see [`transfer::fields`]).
pub fn private_fields(out: &mut impl transfer::fields::Fields) {
    for (name, value) in PRIVATE {
        out.fixed(name, value);
    }
}
