//! The transfer routes: where a token is spent.
//!
//! Each handler reads like the documented semantics: take the verified [`Link`](crate::http::gate::Link),
//! open its path through the sandbox ([`open`]), take the link's lease, stream, and commit or
//! release (see [`delivery`] and [`crate::lease`]).

pub mod accept;
pub mod archive;
pub mod confirm;
pub mod delivery;
pub mod digest;
pub mod disposition;
pub mod download;
pub mod fields;
pub mod open;
pub mod range;
pub mod resumable;
pub mod upload;
pub mod upload_bucket;
pub mod values;
pub mod zerocopy;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;

use crate::state::App;

pub fn routes() -> Router<Arc<App>> {
    // GET shows browsers a page first and gives everyone else the bytes (see `confirm`).
    let download = get(confirm::get).head(download::head);
    // Minted upload URLs carry the cosmetic name too, so both forms take an upload; a POST on a
    // download link is its page's Download button. HEAD, PATCH, DELETE and OPTIONS serve
    // resumable uploads (HEAD on a download link is the download's metadata, as before).
    let transfer = get(confirm::get)
        .head(resumable::head)
        .post(confirm::post)
        .put(upload::put)
        .patch(resumable::patch)
        .delete(resumable::delete)
        .options(resumable::options);
    Router::new()
        .route("/transfer/{token}", transfer.clone())
        .route("/transfer/{token}/{name}", transfer)
        .route("/api/download/{token}", download.post(confirm::post_alias))
}
