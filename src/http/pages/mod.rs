//! Pages for people: the download confirmation page, the upload page, and error pages, each a
//! self-contained HTML response (no external fonts, scripts or images; no cookies) behind a
//! strict Content-Security-Policy. The routes that decide when to show them are in
//! [`crate::transfer::confirm`].

pub mod assets;
pub mod templates;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::Markup;

use crate::http::error::{ApiError, FailedCheck};
use crate::token::Direction;
pub use templates::{DownloadView, ErrorView, UploadView};

pub fn download_page(view: &DownloadView) -> Response {
    respond(StatusCode::OK, templates::download(view))
}

pub fn upload_page(view: &UploadView) -> Response {
    // The page's own connection is not left idle for its upload to reuse (see
    // `fresh_connection_next` in the resumable uploads).
    crate::http::close_after(respond(StatusCode::OK, templates::upload(view)))
}

/// The HTML form of a transfer error, with the status the JSON form would have had.
/// `direction` is known when the token verified, and picks the wording.
/// The headers that carry meaning (`Retry-After`, `Content-Range`) and the failed-check mark
/// are the JSON answer's own, so a page never says less than the JSON would have.
pub fn error_page(error: &ApiError, direction: Option<Direction>) -> Response {
    let (title, explanation) = words(error, direction);
    let mut page = respond(
        error.status(),
        templates::error(&ErrorView { title, explanation }),
    );
    let json = error.clone().into_response();
    for name in [header::RETRY_AFTER, header::CONTENT_RANGE] {
        if let Some(v) = json.headers().get(&name) {
            page.headers_mut().insert(name, v.clone());
        }
    }
    if let Some(mark) = json.extensions().get::<FailedCheck>() {
        page.extensions_mut().insert(*mark);
    }
    page
}

/// What a person is told about each way a link can fail.
pub fn words(error: &ApiError, direction: Option<Direction>) -> (&'static str, &'static str) {
    let upload = direction == Some(Direction::Upload);
    match error {
        ApiError::Used if upload => (
            "This link has already been used",
            "A file was already uploaded through this link, and a link works only once. \
             If you need to send another file, ask the sender for a new link.",
        ),
        ApiError::Used => (
            "This link has already been used",
            "The file was already downloaded through this link, and a link works only once. \
             If you still need the file, ask the sender for a new link.",
        ),
        ApiError::Revoked => (
            "This link was cancelled",
            "The sender withdrew this link before it was used. Ask them for a new one if you \
             still need it.",
        ),
        ApiError::Expired => (
            "This link has expired",
            "Links work only for a limited time, and this one's time is up. Ask the sender for \
             a new link.",
        ),
        ApiError::InProgress => (
            "This link is in use right now",
            "A transfer through this link is running at this moment. If it was yours, wait for \
             it to finish; otherwise try again in a minute.",
        ),
        ApiError::Forbidden(_) => (
            "This link cannot be used from here",
            "The sender restricted this link to certain networks, and yours is not one of them.",
        ),
        ApiError::RateLimited { .. } => (
            "Too many attempts from your network",
            "This server has seen many invalid links from your network address in the last \
             minute, so it is pausing requests from it. Nothing was used up: wait a minute and \
             try again.",
        ),
        ApiError::Overloaded(_) => (
            "The server is busy",
            "Too many transfers are running right now. Nothing was used up: try again in a \
             moment.",
        ),
        ApiError::Unavailable => (
            "Temporarily unavailable",
            "The server cannot check links right now. Nothing was used up: try again in a minute.",
        ),
        ApiError::NotFound | ApiError::BadToken | ApiError::MissingFile(_) => (
            "This link is not valid",
            "The link may be incomplete (check that it was copied whole), or the file it \
             pointed to is no longer there. Ask the sender for a new link.",
        ),
        _ => (
            "Something went wrong",
            "The transfer did not happen and the link was not used up. Try again, or ask the \
             sender for a new link.",
        ),
    }
}

fn respond(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, markup.into_string()).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Ok(csp) = HeaderValue::from_str(&assets::CONTENT_SECURITY_POLICY) {
        h.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    crate::http::private_headers(h);
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // The same URL answers bytes or a page depending on Accept.
    h.insert(header::VARY, HeaderValue::from_static("Accept"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_pages_keep_the_json_status_and_send_the_security_headers() {
        for (e, status) in [
            (ApiError::Used, 404),
            (ApiError::Revoked, 404),
            (ApiError::NotFound, 404),
            (ApiError::Expired, 410),
            (ApiError::InProgress, 409),
            (ApiError::Unavailable, 503),
        ] {
            let r = error_page(&e, Some(Direction::Download));
            assert_eq!(r.status().as_u16(), status);
            let h = r.headers();
            assert_eq!(h[header::CONTENT_TYPE], "text/html; charset=utf-8");
            assert_eq!(h[header::REFERRER_POLICY], "no-referrer");
            assert_eq!(h[header::CACHE_CONTROL], "no-store");
            assert!(
                h[header::CONTENT_SECURITY_POLICY]
                    .to_str()
                    .unwrap()
                    .starts_with("default-src 'none'")
            );
        }
    }

    #[test]
    fn the_words_say_which_failure_it_was() {
        assert!(
            words(&ApiError::Used, Some(Direction::Download))
                .1
                .contains("downloaded")
        );
        assert!(
            words(&ApiError::Used, Some(Direction::Upload))
                .1
                .contains("uploaded")
        );
        assert!(words(&ApiError::Expired, None).0.contains("expired"));
        assert!(words(&ApiError::Revoked, None).0.contains("cancelled"));
    }
}
