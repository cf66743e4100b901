//! The rate-limit step of the edge middleware: refuses clients over their failed-check allowance and feeds the
//! allowance from what each guarded route answered ([`crate::ratelimit`] holds the limiters).

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::http::conn::ConnInfo;
use crate::http::error::{ApiError, FailedCheck};
use crate::http::pages;
use crate::http::transfer::accept::prefers_html;
use crate::state::App;

/// Routes that are never limited: probes and scrapes must keep answering whatever a client
/// behind the same address did.
const UNGUARDED: &[&str] = &["/healthz", "/readyz", "/metrics"];

/// Part of the edge middleware ([`crate::http::edge`]): counts the failed checks a route marked on its answer
/// ([`FailedCheck`]: a link token that does not verify, a wrong bearer token) and answers a
/// failure past the address's allowance with 429 instead. Everything else passes untouched, so
/// a valid link or bearer token is served whatever else came from the same address. A missing
/// file behind a genuine link is not a guess and is not marked.
pub async fn guard(app: &App, request: Request, next: Next) -> Response {
    if !app.rate_limits.limits_failures() {
        return next.run(request).await;
    }
    let unguarded = request
        .extensions()
        .get::<MatchedPath>()
        .is_some_and(|r| UNGUARDED.contains(&r.as_str()));
    let client = request
        .extensions()
        .get::<ConnInfo>()
        .map(|conn| conn.client_ip(request.headers(), &app.config.trusted_proxies));
    let (Some(client), false) = (client, unguarded) else {
        return next.run(request).await;
    };
    let html = prefers_html(request.headers());
    let response = next.run(request).await;
    if response.extensions().get::<FailedCheck>().is_none() {
        return response;
    }
    match app.rate_limits.record_failure(client) {
        Ok(()) => response,
        Err(limited) => {
            let e = ApiError::from(limited);
            // A person in a browser is told in words; everyone else gets the JSON.
            let mut refused = if html {
                pages::error_page(&e, None)
            } else {
                e.into_response()
            };
            // Still a failed check, for anything further out that counts them.
            refused.extensions_mut().insert(FailedCheck);
            refused
        }
    }
}
