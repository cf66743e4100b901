//! `GET` and `HEAD` on a download link.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, body::Body};
use bytes::Bytes;
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
    let Some((file, meta, small)) = open_prefetched(&app, &claims).await? else {
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

    let settle = Settle {
        stats: app.stats.clone(),
        audit: TransferAudit::new(&claims, client),
        expires_at: claims.expires_at,
    };
    let body = match small {
        // Already in memory: no second trip to the blocking pool.
        Some(bytes) => {
            let region = bytes.slice(start as usize..(start + len) as usize);
            let reader = std::io::Cursor::new(region);
            Body::new(delivery::deliver(
                lease, reader, len, burns, &conn, &app.tasks, settle,
            ))
        }
        None => {
            let mut file = file;
            if start > 0 {
                // lseek only moves the file offset, so it is done here rather than on the
                // blocking pool.
                std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(start)).map_err(|e| {
                    tracing::error!(error = %e, "seek failed");
                    ApiError::Internal
                })?;
            }
            let file = tokio::fs::File::from_std(file);
            Body::new(delivery::deliver(
                lease, file, len, burns, &conn, &app.tasks, settle,
            ))
        }
    };

    let mut response = Response::new(body);
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

pub(super) fn refuse_if_spent(state: LinkState) -> Result<(), ApiError> {
    match state {
        LinkState::Used(_) => Err(ApiError::Used),
        LinkState::Revoked => Err(ApiError::Revoked),
        LinkState::Unused | LinkState::InProgress => Ok(()),
    }
}

/// Files up to this size are read whole in the same trip to the blocking pool that opens them.
/// The profile of 4 KiB one-time downloads at concurrency 32 was dominated by thread wake-ups
/// (futex waits and `try_to_wake_up`), one per trip: opening and reading in one trip halves them
/// (figures in BENCHMARKS.md). 64 KiB per request in flight is still small.
const PREFETCH_MAX: u64 = 64 * 1024;

/// [`open`] for a GET: a small file comes back with its bytes already read. When the kernel
/// can open and read it from its caches without blocking, that happens right here on the async
/// worker and the blocking pool is not involved at all.
async fn open_prefetched(
    app: &App,
    claims: &Claims,
) -> Result<Option<(std::fs::File, std::fs::Metadata, Option<Bytes>)>, ApiError> {
    if let Some(hit) = open_from_cache(app, claims) {
        return Ok(Some(hit));
    }
    open_with(app, claims, |file, meta| {
        if meta.len() > PREFETCH_MAX {
            return None;
        }
        let mut buf = vec![0u8; meta.len() as usize];
        // The file offset is left where the streaming path expects it only if nothing was
        // read, so read at explicit offsets. A file that shrank since its metadata was read
        // takes the streaming path, which fails the response when it comes up short.
        std::os::unix::fs::FileExt::read_exact_at(file, &mut buf, 0).ok()?;
        Some(Bytes::from(buf))
    })
    .await
}

/// The non-blocking fast path of [`open_prefetched`]: `RESOLVE_CACHED` for the path, then
/// `RWF_NOWAIT` for a small file's bytes. `None` sends the request to the blocking pool.
fn open_from_cache(
    app: &App,
    claims: &Claims,
) -> Option<(std::fs::File, std::fs::Metadata, Option<Bytes>)> {
    let session = claims
        .session
        .as_deref()
        .map(SessionId::parse)
        .transpose()
        .ok()?;
    let (file, meta) = app
        .sandbox
        .open_file_cached(session.as_ref(), &claims.path)?;
    if meta.len() > PREFETCH_MAX {
        // Large files stream through the blocking pool anyway; this saved the open's trip.
        return Some((file, meta, None));
    }
    let mut buf = vec![0u8; meta.len() as usize];
    let read = rustix::io::preadv2(
        &file,
        &mut [std::io::IoSliceMut::new(&mut buf)],
        0,
        rustix::io::ReadWriteFlags::NOWAIT,
    );
    // Not all in the page cache (EAGAIN), short, or failed: the blocking path decides.
    match read {
        Ok(n) if n == buf.len() => Some((file, meta, Some(Bytes::from(buf)))),
        _ => None,
    }
}

/// Opens the token's file through the sandbox again: whatever happened on disk since minting
/// (deleted, swapped for a symlink out) is "not found" now. `None`: it is not a regular file,
/// so perhaps a directory, served as an archive.
async fn open(
    app: &App,
    claims: &Claims,
) -> Result<Option<(std::fs::File, std::fs::Metadata)>, ApiError> {
    let opened = open_with(app, claims, |_, _| None::<()>).await?;
    Ok(opened.map(|(file, meta, _)| (file, meta)))
}

/// Opens the file on the blocking pool and runs `then` on it there, in the same trip.
async fn open_with<T: Send + 'static>(
    app: &App,
    claims: &Claims,
    then: impl FnOnce(&mut std::fs::File, &std::fs::Metadata) -> Option<T> + Send + 'static,
) -> Result<Option<(std::fs::File, std::fs::Metadata, Option<T>)>, ApiError> {
    let sandbox = app.sandbox.clone();
    let session = claims.session.clone();
    let path = claims.path.clone();
    let opened = tokio::task::spawn_blocking(move || {
        let session = session.as_deref().map(SessionId::parse).transpose()?;
        let (mut file, meta) = sandbox.open_file(session.as_ref(), &path)?;
        let extra = then(&mut file, &meta);
        Ok::<_, SandboxError>((file, meta, extra))
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
