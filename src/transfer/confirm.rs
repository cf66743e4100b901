//! Keeping link previewers and mail scanners from burning links meant for people.
//!
//! A `GET` that prefers HTML ([`accept`]) is a browser, or something pretending to be one
//! (Slack, Teams, mail scanners): it gets a page and the link stays unused. The page's
//! Download button is a form that `POST`s `burnlink=download` back to the same URL; only that
//! request streams the file (with `Content-Disposition: attachment`, so the browser saves it)
//! and burns the link. A POST form is the one kind of request previewers do not make: they
//! follow links, and some run scripts, but they do not submit forms. It needs neither cookies
//! nor JavaScript, and posting to the same URL keeps working behind a proxy that adds a path
//! prefix.
//!
//! Everyone else (`*/*` or no `Accept`: curl, wget, CI jobs, HTTP libraries) gets the bytes at
//! once, exactly as before; `HEAD` never comes here. An upload link opened in a browser gets
//! the upload page. Failures are HTML pages for browsers and the usual JSON for the rest.

use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, header};
use axum::response::{IntoResponse, Response};

use super::accept::prefers_html;
use super::download::{self, TokenPath, refuse_if_spent};
use super::{check_client, upload};
use crate::error::ApiError;
use crate::links::unix_now;
use crate::net::ConnInfo;
use crate::pages::{self, DownloadView, UploadView};
use crate::sandbox::{self, Kind, SessionId};
use crate::server::App;
use crate::token::{Claims, Direction, hex};

/// The form field the Download button sends; any other POST on a download link is refused
/// as "not found", as a POST on a download link always was.
const CONFIRM_FIELD: &str = "burnlink=download";

/// `GET` on a transfer URL.
pub async fn get(
    State(app): State<Arc<App>>,
    Extension(conn): Extension<ConnInfo>,
    Path(params): Path<TokenPath>,
    headers: HeaderMap,
) -> Response {
    if !prefers_html(&headers) {
        return bytes(app, conn, params, headers).await.into_response();
    }
    let claims = match verified(&app, &params.token, &conn, &headers) {
        Ok(c) => c,
        Err(e) => return pages::error_page(&e, None),
    };
    let direction = claims.direction;
    let page = match direction {
        Direction::Upload => upload_page(&app, &claims).await,
        Direction::Download if app.config.browser_confirm => download_page(&app, &claims).await,
        // The page is turned off: browsers get the bytes too, but failures still in words.
        Direction::Download => bytes(app, conn, params, headers).await,
    };
    page.unwrap_or_else(|e| pages::error_page(&e, Some(direction)))
}

/// `POST` on `/transfer/{token}[/{name}]`: the Download button on a download link, an upload
/// on an upload link.
pub async fn post(
    State(app): State<Arc<App>>,
    Extension(conn): Extension<ConnInfo>,
    Path(params): Path<TokenPath>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let is_download = app
        .keyring
        .verify(&params.token)
        .is_ok_and(|v| v.claims.direction == Direction::Download);
    if is_download {
        confirmed(app, conn, params, headers, body).await
    } else {
        upload::upload(State(app), Extension(conn), Path(params), headers, body)
            .await
            .into_response()
    }
}

/// `POST` on `/api/download/{token}`, the alias: only the Download button.
pub async fn post_alias(
    State(app): State<Arc<App>>,
    Extension(conn): Extension<ConnInfo>,
    Path(params): Path<TokenPath>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    confirmed(app, conn, params, headers, body).await
}

/// The download route's GET: the bytes, the lease and the burn, for every request that is not
/// shown a page.
async fn bytes(
    app: Arc<App>,
    conn: ConnInfo,
    params: TokenPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    download::download(
        State(app),
        Extension(conn),
        Method::GET,
        Path(params),
        headers,
    )
    .await
}

/// The Download button's request: the whole download route, burn included.
async fn confirmed(
    app: Arc<App>,
    conn: ConnInfo,
    params: TokenPath,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let html = prefers_html(&headers);
    let result = if is_confirmation(&headers, body).await {
        bytes(app, conn, params, headers).await
    } else {
        Err(ApiError::NotFound)
    };
    match result {
        Ok(r) => r,
        Err(e) if html => pages::error_page(&e, Some(Direction::Download)),
        Err(e) => e.into_response(),
    }
}

/// Whether a POST body is the confirmation form (`application/x-www-form-urlencoded` with
/// `burnlink=download`). The body is read only up to a few hundred bytes.
async fn is_confirmation(headers: &HeaderMap, body: Body) -> bool {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !is_form {
        return false;
    }
    match axum::body::to_bytes(body, 512).await {
        Ok(bytes) => bytes
            .split(|b| *b == b'&')
            .any(|pair| pair == CONFIRM_FIELD.as_bytes()),
        Err(_) => false,
    }
}

/// Verifies the token in either direction, its expiry and its client restriction, as the
/// transfer routes do: a bad token is "not found" and says nothing more.
fn verified(
    app: &App,
    token: &str,
    conn: &ConnInfo,
    headers: &HeaderMap,
) -> Result<Claims, ApiError> {
    let claims = app
        .keyring
        .verify(token)
        .map_err(|_| ApiError::NotFound)?
        .claims;
    if claims.is_expired(unix_now()) {
        return Err(ApiError::Expired);
    }
    let client = conn.client_ip(headers, &app.config.trusted_proxies);
    check_client(&claims, client)?;
    Ok(claims)
}

/// The confirmation page: only for a link that could still be used, and a file that is
/// still there. Reads the ledger and the file system; changes nothing.
async fn download_page(app: &App, claims: &Claims) -> Result<Response, ApiError> {
    refuse_if_spent(app.ledger.state(&claims.nonce).await?)?;
    let sandbox = app.sandbox.clone();
    let session = claims.session.clone();
    let path = claims.path.clone();
    let meta = tokio::task::spawn_blocking(move || {
        let session = session.as_deref().map(SessionId::parse).transpose()?;
        let meta = sandbox.stat(session.as_ref(), &path)?;
        sandbox::kind_of(&meta).map(|kind| (kind, meta.len()))
    })
    .await
    .map_err(|_| ApiError::Internal)?
    .map_err(|_| ApiError::NotFound)?;
    let (name, size) = match meta {
        (Kind::File, len) => (sandbox::file_name(&claims.path).to_string(), Some(len)),
        // The same name the archive is served under (the sandbox's own name for `.`).
        (Kind::Directory, _) => {
            let session = claims
                .session
                .as_deref()
                .and_then(|s| SessionId::parse(s).ok());
            let name = crate::archive::archive_name(&app.sandbox, session.as_ref(), &claims.path);
            (name, None)
        }
    };
    Ok(pages::download_page(&DownloadView {
        name: &name,
        size,
        expires_at: claims.expires_at,
        now: unix_now(),
    }))
}

async fn upload_page(app: &App, claims: &Claims) -> Result<Response, ApiError> {
    refuse_if_spent(app.ledger.state(&claims.nonce).await?)?;
    let cap = claims
        .max_bytes
        .unwrap_or(u64::MAX)
        .min(app.config.max_upload_bytes);
    Ok(pages::upload_page(&UploadView {
        name: sandbox::file_name(&claims.path),
        cap,
        expires_at: claims.expires_at,
        now: unix_now(),
        sha256: claims.sha256.map(|d| hex(&d)),
        overwrite: claims.overwrite,
    }))
}
