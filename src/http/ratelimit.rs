//! The rate-limit middleware: refuses clients over their failed-check allowance and feeds the
//! allowance from what each guarded route answered ([`crate::ratelimit`] holds the limiters).

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::http::error::{ApiError, FailedCheck};
use crate::http::net::ConnInfo;
use crate::http::pages;
use crate::http::transfer::accept::prefers_html;
use crate::state::App;

/// Routes that are never limited: probes and scrapes must keep answering whatever a client
/// behind the same address did.
const UNGUARDED: &[&str] = &["/healthz", "/readyz", "/metrics"];

/// Middleware (a route layer): refuses blocked clients, and counts the failed checks the route
/// marked on its answer ([`FailedCheck`]: a link token that does not verify, a wrong bearer
/// token). A missing file behind a genuine link is not a guess and is not marked.
pub async fn guard(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    if !app.rate_limits.limits_failures() {
        return next.run(request).await;
    }
    let route = request.extensions().get::<MatchedPath>().cloned();
    if route
        .as_ref()
        .is_some_and(|r| UNGUARDED.contains(&r.as_str()))
    {
        return next.run(request).await;
    }
    let Some(client) = request
        .extensions()
        .get::<ConnInfo>()
        .map(|conn| conn.client_ip(request.headers(), &app.config.trusted_proxies))
    else {
        return next.run(request).await;
    };
    if let Err(e) = app.rate_limits.gate(client) {
        let e = ApiError::from(e);
        // A person in a browser is told in words; everyone else gets the JSON.
        return if prefers_html(request.headers()) {
            pages::error_page(&e, None)
        } else {
            e.into_response()
        };
    }
    let response = next.run(request).await;
    if response.extensions().get::<FailedCheck>().is_some() {
        app.rate_limits.record_failure(client);
    }
    response
}
