//! `GET` and `HEAD` on a download link.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, body::Body};
use serde::Deserialize;

use super::delivery::{self, Lease, Settle};
use super::range::{self, Decision};
use super::{archive, authorize, check_client, disposition};
use crate::error::ApiError;
use crate::ledger::LinkState;
use crate::links::unix_now;
use crate::net::ConnInfo;
use crate::sandbox::{self, SandboxError, SessionId};
use crate::server::App;
use crate::telemetry::TransferAudit;
use crate::token::{Claims, Direction};

#[derive(Deserialize)]
pub struct TokenPath {
    /// The `{name}` segment, when present, is cosmetic (so `curl -O` saves under a real name)
    /// and is not read at all.
    pub(super) token: String,
}

pub async fn download(
    State(app): State<Arc<App>>,
    Extension(conn): Extension<ConnInfo>,
    method: Method,
    Path(params): Path<TokenPath>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let claims = authorize(&app, &params.token, Direction::Download, unix_now())?;
    let client = conn.client_ip(&headers, &app.config.trusted_proxies);
    check_client(&claims, client)?;

    if method == Method::HEAD {
        // Metadata only: never leases, never burns, so link previewers can look freely.
        refuse_if_spent(app.ledger.state(&claims.nonce).await?)?;
        let Some((_, meta)) = open(&app, &claims).await? else {
            return archive::head(&app, &claims).await;
        };
        let mut response = StatusCode::OK.into_response();
        file_headers(response.headers_mut(), &claims, &meta);
        set_len(response.headers_mut(), meta.len());
        return Ok(response);
    }

    // Everything that can fail without touching the link comes first, so a 404 or 416 never
    // holds the lease (a retry right after would otherwise see 409).
    let Some((file, meta)) = open(&app, &claims).await? else {
        return archive::get(&app, &conn, &claims, client).await;
    };
    let size = meta.len();
    let range_header = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, start, len) = match range::decide(range_header, size) {
        Decision::Full => (StatusCode::OK, 0, size),
        Decision::Partial(r) => (
            StatusCode::PARTIAL_CONTENT,
            *r.start(),
            r.end() - r.start() + 1,
        ),
        Decision::Unsatisfiable => {
            // A spent link says so rather than blaming the range.
            refuse_if_spent(app.ledger.state(&claims.nonce).await?)?;
            return Err(ApiError::RangeNotSatisfiable { size });
        }
    };
    let lease = Lease::acquire(&app.ledger, &claims, app.config.lease).await?;
    let burns = start + len == size;

    let mut file = file;
    if start > 0 {
        // lseek only moves the file offset, so it is done here rather than on the blocking pool.
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(start)).map_err(|e| {
            tracing::error!(error = %e, "seek failed");
            ApiError::Internal
        })?;
    }
    let file = tokio::fs::File::from_std(file);
    let settle = Settle {
        stats: app.stats.clone(),
        audit: TransferAudit::new(&claims, client),
        expires_at: claims.expires_at,
    };
    let body = delivery::deliver(lease, file, len, burns, &conn, &app.tasks, settle);

    let mut response = Response::new(Body::new(body));
    *response.status_mut() = status;
    let h = response.headers_mut();
    file_headers(h, &claims, &meta);
    set_len(h, len);
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{size}", start + len - 1))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    Ok(response)
}

fn refuse_if_spent(state: LinkState) -> Result<(), ApiError> {
    match state {
        LinkState::Used(_) => Err(ApiError::Used),
        LinkState::Revoked => Err(ApiError::Revoked),
        LinkState::Unused | LinkState::InProgress => Ok(()),
    }
}

/// Opens the token's file through the sandbox again: whatever happened on disk since minting
/// (deleted, swapped for a symlink out) is "not found" now. `None`: it is not a regular file,
/// so perhaps a directory, served as an archive.
async fn open(
    app: &App,
    claims: &Claims,
) -> Result<Option<(std::fs::File, std::fs::Metadata)>, ApiError> {
    let sandbox = app.sandbox.clone();
    let session = claims.session.clone();
    let path = claims.path.clone();
    let opened = tokio::task::spawn_blocking(move || {
        let session = session.as_deref().map(SessionId::parse).transpose()?;
        sandbox.open_file(session.as_ref(), &path)
    })
    .await
    .map_err(|_| ApiError::Internal)?;
    match opened {
        Ok(opened) => Ok(Some(opened)),
        Err(SandboxError::NotAFileOrDirectory) => Ok(None),
        Err(SandboxError::Io(err)) => {
            tracing::error!(error = %err, "file system error while opening a download");
            Err(ApiError::Internal)
        }
        Err(_) => Err(ApiError::NotFound),
    }
}

fn file_headers(h: &mut HeaderMap, claims: &Claims, meta: &std::fs::Metadata) {
    let name = sandbox::file_name(&claims.path);
    let mime = mime_guess::from_path(name).first_or_octet_stream();
    if let Ok(v) = HeaderValue::from_str(mime.as_ref()) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(header::CONTENT_DISPOSITION, disposition::attachment(name));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(modified) = meta.modified() {
        let date = httpdate(modified);
        if let Ok(v) = HeaderValue::from_str(&date) {
            h.insert(header::LAST_MODIFIED, v);
        }
    }
}

fn set_len(h: &mut HeaderMap, len: u64) {
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn httpdate(t: std::time::SystemTime) -> String {
    use time::macros::format_description;
    let fmt = format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    time::OffsetDateTime::from(t)
        .format(&fmt)
        .unwrap_or_default()
}
