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

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};

use super::accept::prefers_html;
use super::download::{self, refuse_if_spent};
use super::open;
use super::resumable;
use super::upload;
use crate::http::api::read_body;
use crate::http::error::ApiError;
use crate::http::gate::Link;
use crate::http::pages::{self, DownloadView, UploadView};
use crate::sandbox::{self, Kind};
use crate::state::App;
use crate::token::{Claims, Direction, hex, unix_now};

/// The form field the Download button sends; any other POST on a download link is refused
/// as "not found", as a POST on a download link always was.
const CONFIRM_FIELD: &str = "burnlink=download";

/// `GET` on a transfer URL.
pub async fn get(
    State(app): State<Arc<App>>,
    link: Result<Link, ApiError>,
    headers: HeaderMap,
) -> Response {
    if !prefers_html(&headers) {
        return match link {
            Ok(link) => download::get(&app, link, &headers).await.into_response(),
            Err(e) => e.into_response(),
        };
    }
    let link = match link {
        Ok(link) => link,
        Err(e) => return pages::error_page(&e, None),
    };
    let direction = link.claims.direction;
    let page = match direction {
        Direction::Upload => upload_page(&app, &link.claims).await,
        Direction::Download if app.config.browser_confirm => {
            download_page(&app, &link.claims).await
        }
        // The page is turned off: browsers get the bytes too, but failures still in words.
        Direction::Download => download::get(&app, link, &headers).await,
    };
    page.unwrap_or_else(|e| pages::error_page(&e, Some(direction)))
}

/// `POST` on `/transfer/{token}[/{name}]`: an upload on an upload link, else the Download
/// button. The token is verified before a byte of the body is read.
pub async fn post(
    State(app): State<Arc<App>>,
    link: Result<Link, ApiError>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match link {
        // A resumable (tus or IETF draft) client creating its upload.
        Ok(link) if link.claims.direction == Direction::Upload && resumable::is_tus(&headers) => {
            resumable::create(&app, link, &headers, &uri, body).await
        }
        Ok(link) if link.claims.direction == Direction::Upload => {
            upload::receive(&app, link, &headers, body)
                .await
                .into_response()
        }
        link => post_alias(State(app), link, headers, body).await,
    }
}

/// `POST` on `/api/download/{token}`, the alias: only the Download button.
pub async fn post_alias(
    State(app): State<Arc<App>>,
    link: Result<Link, ApiError>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match link {
        Ok(link) => confirmed(&app, link, headers, body).await,
        Err(e) => failure(e, &headers, None),
    }
}

/// The Download button's request: the whole download route, burn included.
async fn confirmed(app: &Arc<App>, link: Link, headers: HeaderMap, body: Body) -> Response {
    let result = match is_confirmation(&headers, body, app.config.idle_timeout).await {
        Ok(true) => download::get(app, link, &headers).await,
        Ok(false) => Err(ApiError::NotFound),
        Err(e) => Err(e),
    };
    match result {
        Ok(r) => r,
        Err(e) => failure(e, &headers, Some(Direction::Download)),
    }
}

/// A failure in words for a browser, as JSON for everyone else.
fn failure(e: ApiError, headers: &HeaderMap, direction: Option<Direction>) -> Response {
    if prefers_html(headers) {
        pages::error_page(&e, direction)
    } else {
        e.into_response()
    }
}

/// Whether a POST body is the confirmation form (`application/x-www-form-urlencoded` with
/// `burnlink=download`). The body is read only for a verified download link, only up to a few
/// hundred bytes, and only within the idle timeout.
async fn is_confirmation(
    headers: &HeaderMap,
    body: Body,
    deadline: std::time::Duration,
) -> Result<bool, ApiError> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !is_form {
        return Ok(false);
    }
    match read_body(body, 512, deadline).await {
        Ok(bytes) => Ok(bytes
            .split(|b| *b == b'&')
            .any(|pair| pair == CONFIRM_FIELD.as_bytes())),
        Err(ApiError::Timeout(m)) => Err(ApiError::Timeout(m)),
        Err(_) => Ok(false),
    }
}

/// The confirmation page: only for a link that could still be used, and a file or directory
/// that is still there. Reads the ledger and the file system; changes nothing.
async fn download_page(app: &App, claims: &Claims) -> Result<Response, ApiError> {
    refuse_if_spent(app.ledger.state(&claims.nonce).await?)?;
    let (kind, size) = open::describe(&app.storage, claims).await?;
    let name = match kind {
        Kind::File => sandbox::file_name(&claims.path).to_string(),
        // The same name the archive is served under (the sandbox's own name for `.`).
        Kind::Directory => crate::archive::archive_name(&claims.path),
    };
    Ok(pages::download_page(&DownloadView {
        name: &name,
        size,
        directory: kind == Kind::Directory,
        expires_at: claims.expires_at,
        now: unix_now(),
        max_uses: claims.max_uses,
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
        max_uses: claims.max_uses,
    }))
}
