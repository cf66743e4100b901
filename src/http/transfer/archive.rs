//! `GET` and `HEAD` on a directory link: the directory as a zip built while it streams.
//!
//! The archive's length is not known before it is written, so there is no `Content-Length`
//! (the body is chunked) and no ranges: `Accept-Ranges: none`, and a `Range` header gets the
//! whole archive with 200. The link burns through the same delivery as a file: when the
//! archive's last byte has been handed to the connection.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;

use super::delivery::{self, Settle};
use super::disposition;
use super::values::Values;
use crate::archive::stream::Tree;
use crate::archive::{self, stream};
use crate::http::error::ApiError;
use crate::http::gate::Link;
use crate::state::App;
use crate::telemetry::TransferAudit;
use crate::token::Claims;

/// Answers `HEAD` without building anything.
pub fn head(claims: &Claims) -> Response {
    // A body of unknown length, as the GET's: an empty body would make hyper announce
    // `Content-Length: 0`, which is not the archive's length.
    let unknown = futures_util::stream::empty::<Result<bytes::Bytes, std::io::Error>>();
    let mut response = Response::new(Body::from_stream(unknown));
    headers(response.headers_mut(), claims);
    response
}

/// Streams the directory's archive, from `tree`, under the link's lease.
pub async fn get(app: &Arc<App>, link: &Link, tree: Tree) -> Result<Response, ApiError> {
    let claims = &link.claims;
    // A thread of its own first: when none is free the link is not even leased.
    let slot = app.archives.try_take().ok_or_else(|| {
        ApiError::Overloaded(format!(
            "{} directory archives are being sent right now; retry in a moment",
            archive::MAX_CONCURRENT
        ))
    })?;
    let lease = app.leases.acquire(claims, link.client).await?;
    let archive = stream::start(
        tree,
        claims.path.to_string(),
        stream::Settings::default(),
        slot,
    );
    let settle = Settle {
        audit: TransferAudit::new(claims, link.client),
    };
    let body = delivery::deliver_stream(lease, archive, &link.conn, &app.tasks, settle);
    let mut response = Response::new(Body::new(body));
    headers(response.headers_mut(), claims);
    Ok(response)
}

fn headers(h: &mut HeaderMap, claims: &Claims) {
    let name = archive::archive_name(&claims.path);
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/zip"),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        disposition::attachment(&name, &mut Values::default()),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("none"));
    crate::http::private_headers(h);
}
