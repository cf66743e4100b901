//! `GET` and `HEAD` on a directory link: the directory as a zip built while it streams.
//!
//! The archive's length is not known before it is written, so there is no `Content-Length`
//! (the body is chunked) and no ranges: `Accept-Ranges: none`, and a `Range` header gets the
//! whole archive with 200. The link burns through the same delivery as a file: when the
//! archive's last byte has been handed to the connection.

use std::net::IpAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use cap_std::fs::Dir;

use super::delivery::{self, Lease, Settle};
use super::disposition;
use crate::archive::{self, stream};
use crate::error::ApiError;
use crate::net::ConnInfo;
use crate::sandbox::{SandboxError, SessionId};
use crate::server::App;
use crate::telemetry::TransferAudit;
use crate::token::Claims;

/// Answers `HEAD` without building anything.
pub async fn head(app: &App, claims: &Claims) -> Result<Response, ApiError> {
    open(app, claims).await?;
    // A body of unknown length, as the GET's: an empty body would make hyper announce
    // `Content-Length: 0`, which is not the archive's length.
    let unknown = futures_util::stream::empty::<Result<bytes::Bytes, std::io::Error>>();
    let mut response = Response::new(Body::from_stream(unknown));
    headers(response.headers_mut(), app, claims);
    Ok(response)
}

/// Streams the directory's archive under the link's lease.
pub async fn get(
    app: &Arc<App>,
    conn: &ConnInfo,
    claims: &Claims,
    client: IpAddr,
) -> Result<Response, ApiError> {
    let base = open(app, claims).await?;
    let lease = Lease::acquire(&app.ledger, claims, app.config.lease).await?;
    let archive = stream::start(base, claims.path.clone(), stream::Settings::default());
    let settle = Settle {
        stats: app.stats.clone(),
        audit: TransferAudit::new(claims, client),
        expires_at: claims.expires_at,
    };
    let body = delivery::deliver_stream(lease, archive, conn, &app.tasks, settle);
    let mut response = Response::new(Body::new(body));
    headers(response.headers_mut(), app, claims);
    Ok(response)
}

/// The session's sandbox, once the token's path is checked to be a directory inside it.
async fn open(app: &App, claims: &Claims) -> Result<Dir, ApiError> {
    let sandbox = app.sandbox.clone();
    let session = claims.session.clone();
    let path = claims.path.clone();
    let opened = tokio::task::spawn_blocking(move || {
        let session = session.as_deref().map(SessionId::parse).transpose()?;
        let base = sandbox.session_dir(session.as_ref())?;
        if base.metadata(&path)?.is_dir() {
            Ok(base)
        } else {
            Err(SandboxError::NotAFileOrDirectory)
        }
    })
    .await
    .map_err(|_| ApiError::Internal)?;
    opened.map_err(|e| match e {
        SandboxError::Io(err) => {
            tracing::error!(error = %err, "file system error while opening a directory");
            ApiError::Internal
        }
        _ => ApiError::NotFound,
    })
}

fn headers(h: &mut HeaderMap, app: &App, claims: &Claims) {
    let session = claims
        .session
        .as_deref()
        .and_then(|s| SessionId::parse(s).ok());
    let name = archive::archive_name(&app.sandbox, session.as_ref(), &claims.path);
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/zip"),
    );
    h.insert(header::CONTENT_DISPOSITION, disposition::attachment(&name));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("none"));
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
