//! Resumable uploads on upload links: tus 1.0 (core, creation, creation-with-upload,
//! termination), and the IETF draft "Resumable Uploads for HTTP" in the interop versions
//! tus-js-client 4.3 speaks (`Upload-Draft-Interop-Version` 5, its `ietf-draft-03`, and 6, its
//! `ietf-draft-05`) up to the newest (8, drafts 09 and later), selected by that header: the
//! same requests with `Upload-Complete` and `Upload-Limit`, any body type on `PATCH`
//! (`application/partial-upload` from version 6).
//!
//! The upload resource is the link URL itself: creation (`POST` with `Tus-Resumable`) answers
//! with a `Location` relative to the request (its last path segment), so it resolves to the
//! same link URL behind any proxy, and nothing but the token names the upload. `HEAD` gives
//! the offset, `PATCH` appends, `DELETE` terminates, `OPTIONS` says what is spoken.
//!
//! The partial file lives beside the destination under a name derived from the link
//! ([`crate::staging::partial_name`]); its synced length is the offset, so an answer never
//! reports bytes that a crash could lose, and any replica sharing the root resumes it. Each
//! creation and `PATCH` holds the link's lease while its bytes flow and releases it after;
//! the request that brings the last byte hashes the whole file (read back on the blocking
//! pool), checks it against the link's digest, and lands and burns it through the same path
//! as a plain upload ([`super::upload::Receive::land`]).
//!
//! When files live in a bucket, the same requests keep the data in a multipart upload and a
//! state object instead ([`bucket`]); only where the bytes go differs, not the answers.

mod bucket;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::digest::{Expected, Hasher};
use super::download::refuse_if_spent;
use super::upload::{self, Receive, Written, on_blocking, stage_with};
use crate::http::error::ApiError;
use crate::http::gate::Link;
use crate::lease::Lease;
use crate::ledger::{LinkState, Receipt};
use crate::sandbox::SandboxError;
use crate::staging::{Partial, Staged, find_partial, partial_name};
use crate::state::App;
use crate::storage::Storage;
use crate::telemetry::TransferAudit;
use crate::token::{Claims, Direction, Nonce, hex};

const TUS_VERSION: &str = "1.0.0";
const TUS_EXTENSIONS: &str = "creation,creation-with-upload,termination";
const OFFSET_STREAM: &str = "application/offset+octet-stream";

/// Bytes read per batch when a completed upload is hashed back from disk.
const READ_BACK: usize = 256 * 1024;

const INTEROP: &str = "upload-draft-interop-version";

/// The draft interop versions spoken.
const INTEROP_VERSIONS: [u8; 4] = [5, 6, 7, 8];

/// Which resumable protocol a request speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dialect {
    Tus,
    /// The IETF draft, with its interop version.
    Draft(u8),
}

impl Dialect {
    /// The request's protocol and version, or 412 for one not spoken.
    fn of(headers: &HeaderMap) -> Result<Dialect, ApiError> {
        if let Some(v) = headers.get(INTEROP) {
            return std::str::from_utf8(v.as_bytes())
                .ok()
                .and_then(|v| v.trim().parse::<u8>().ok())
                .filter(|v| INTEROP_VERSIONS.contains(v))
                .map(Dialect::Draft)
                .ok_or(ApiError::UnsupportedVersion);
        }
        match headers.get("tus-resumable") {
            Some(v) if v.as_bytes() == TUS_VERSION.as_bytes() => Ok(Dialect::Tus),
            _ => Err(ApiError::UnsupportedVersion),
        }
    }
}

/// Whether a request speaks a resumable protocol (tus says so on every request but
/// `OPTIONS`; the draft with its interop version).
pub fn is_tus(headers: &HeaderMap) -> bool {
    headers.contains_key("tus-resumable") || headers.contains_key(INTEROP)
}

/// Every tus answer carries `Tus-Resumable`, failures included; a draft answer the interop
/// version it was asked in.
fn reply(headers: &HeaderMap, result: Result<Response, ApiError>) -> Response {
    // Refusals of a file that arrived whole (its digest, its destination) end the upload; any
    // other failure leaves it to be resumed (or started afresh).
    let ended = matches!(&result, Err(ApiError::DigestMismatch | ApiError::Exists(_)));
    let mut response = result.unwrap_or_else(IntoResponse::into_response);
    match Dialect::of(headers) {
        Ok(Dialect::Draft(v)) => {
            let h = response.headers_mut();
            h.insert(INTEROP, HeaderValue::from(u16::from(v)));
            // Whether this answer ends the upload: it landed (its digest says so) or it was
            // refused whole.
            if !h.contains_key("upload-complete") {
                let done = ended || h.contains_key("repr-digest");
                let complete = if done { "?1" } else { "?0" };
                h.insert("upload-complete", HeaderValue::from_static(complete));
            }
        }
        _ => {
            response
                .headers_mut()
                .insert("tus-resumable", HeaderValue::from_static(TUS_VERSION));
        }
    }
    response
}

fn check_version(headers: &HeaderMap) -> Result<Dialect, ApiError> {
    Dialect::of(headers)
}

/// The draft's `Upload-Limit`: this link's cap.
fn limit(cap: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("max-size={cap}"))
        .unwrap_or(HeaderValue::from_static("min-size=0"))
}

/// A draft request's `Upload-Complete` (`?1` or `?0`).
fn upload_complete(headers: &HeaderMap) -> Result<Option<bool>, ApiError> {
    match headers.get("upload-complete").map(|v| v.as_bytes()) {
        None => Ok(None),
        Some(b"?1") => Ok(Some(true)),
        Some(b"?0") => Ok(Some(false)),
        Some(_) => Err(ApiError::BadRequest(
            "Upload-Complete must be ?0 or ?1".into(),
        )),
    }
}

fn number(headers: &HeaderMap, name: &str) -> Result<Option<u64>, ApiError> {
    headers
        .get(name)
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| ApiError::BadRequest(format!("invalid {name}")))
        })
        .transpose()
}

fn cap(app: &App, claims: &Claims) -> u64 {
    claims
        .max_bytes
        .unwrap_or(u64::MAX)
        .min(app.config.max_upload_bytes)
}

fn is_offset_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(OFFSET_STREAM))
}

/// `OPTIONS` on an upload link: the versions, extensions and this link's cap.
pub async fn options(State(app): State<Arc<App>>, link: Result<Link, ApiError>) -> Response {
    let headers = HeaderMap::new();
    reply(
        &headers,
        (|| {
            let claims = link?.expect(Direction::Upload)?.claims;
            let mut response = StatusCode::NO_CONTENT.into_response();
            let h = response.headers_mut();
            h.insert("tus-version", HeaderValue::from_static(TUS_VERSION));
            h.insert("tus-extension", HeaderValue::from_static(TUS_EXTENSIONS));
            h.insert("tus-max-size", HeaderValue::from(cap(&app, &claims)));
            h.insert("upload-limit", limit(cap(&app, &claims)));
            crate::http::private_headers(h);
            Ok(response)
        })(),
    )
}

/// `HEAD` on a transfer URL: the offset for a tus client on an upload link, the download's
/// metadata otherwise.
pub async fn head(
    State(app): State<Arc<App>>,
    link: Result<Link, ApiError>,
    headers: HeaderMap,
) -> Response {
    match link {
        Ok(link) if link.claims.direction == Direction::Upload && is_tus(&headers) => {
            fresh_connection_next(reply(&headers, offset(&app, link, &headers).await))
        }
        Ok(link) => super::download::head(State(app), link)
            .await
            .into_response(),
        Err(e) => e.into_response(),
    }
}

async fn offset(app: &Arc<App>, link: Link, headers: &HeaderMap) -> Result<Response, ApiError> {
    let dialect = check_version(headers)?;
    let Link { claims, client, .. } = link;
    let link_claims = claims.clone();
    let mut state = app.ledger.state(&claims.nonce).await?;
    if state == LinkState::InProgress && matches!(app.storage, Storage::Bucket(_)) {
        state = settled(app, &claims.nonce, state).await?;
    }
    match state {
        // Landed already (the answer to the last PATCH may have been lost on the way): the
        // client learns it is complete rather than starting over on a burned link.
        LinkState::Used(Some(receipt)) => return Ok(landed(dialect, &receipt)),
        state => refuse_if_spent(state)?,
    }
    let nonce = hex(&claims.nonce);
    let (offset, length) = match &app.storage {
        // What the state object records is durable already.
        Storage::Bucket(bucket) => bucket
            .partial_offset(claims.session.as_ref(), &claims.path, &nonce)
            .await?
            .ok_or(ApiError::NotFound)?,
        Storage::Disk(_) => {
            stage_with(app, &claims, false, move |dir, _| {
                let Partial { name, length, .. } = find_partial(&dir, &nonce)
                    .map_err(SandboxError::Io)?
                    .ok_or(ApiError::NotFound)?;
                let file = dir.open(&name).map_err(SandboxError::Io)?.into_std();
                // The length first, then the sync: every byte reported is durable.
                let len = file.metadata().map_err(SandboxError::Io)?.len();
                file.sync_data().map_err(SandboxError::Io)?;
                Ok((len, length))
            })
            .await?
            .0
        }
    };
    let mut response = StatusCode::OK.into_response();
    if offset == length {
        // Every byte is in but the upload has not landed (the server stopped, or lost the
        // lease, between the last sync and the rename): land it now, so that a client reading
        // this offset as "complete" is right.
        let landed = append_at(app, claims, client, length, None).await?;
        response.headers_mut().extend(
            landed
                .headers()
                .get_all("repr-digest")
                .iter()
                .map(|v| (header::HeaderName::from_static("repr-digest"), v.clone())),
        );
    }
    let h = response.headers_mut();
    h.insert("upload-offset", HeaderValue::from(offset));
    h.insert("upload-length", HeaderValue::from(length));
    if let Dialect::Draft(_) = dialect {
        let complete = if offset == length { "?1" } else { "?0" };
        h.insert("upload-complete", HeaderValue::from_static(complete));
        h.insert("upload-limit", limit(cap(app, &link_claims)));
    }
    crate::http::private_headers(h);
    Ok(response)
}

/// How long an offset query on a bucket waits for a request that still holds the link.
const SETTLE_WAIT: Duration = Duration::from_secs(3);

/// Waits, within [`SETTLE_WAIT`], until no request holds the link. A client whose connection
/// broke asks for the offset at once, while the request it was sending is still putting its
/// last part and its tail into the bucket (on a disk that is a write to a local file, done by
/// then); the offset read before that would make the client send those bytes again. Past the
/// wait the durable offset is answered as it is.
async fn settled(
    app: &Arc<App>,
    nonce: &Nonce,
    mut state: LinkState,
) -> Result<LinkState, ApiError> {
    let until = tokio::time::Instant::now() + SETTLE_WAIT;
    while state == LinkState::InProgress && tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
        state = app.ledger.state(nonce).await?;
    }
    Ok(state)
}

/// The offset of an upload that has landed: all of it.
fn landed(dialect: Dialect, receipt: &Receipt) -> Response {
    let mut response = StatusCode::OK.into_response();
    let h = response.headers_mut();
    h.insert("upload-offset", HeaderValue::from(receipt.bytes));
    h.insert("upload-length", HeaderValue::from(receipt.bytes));
    if let Ok(v) = HeaderValue::from_str(&repr_digest(&receipt.sha256)) {
        h.insert("repr-digest", v);
    }
    if let Dialect::Draft(_) = dialect {
        h.insert("upload-complete", HeaderValue::from_static("?1"));
    }
    crate::http::private_headers(h);
    response
}

/// The whole file's digest as `Repr-Digest` (RFC 9530) writes it.
fn repr_digest(sha256: &[u8; 32]) -> String {
    use base64ct::{Base64, Encoding};
    format!("sha-256=:{}:", Base64::encode_string(sha256))
}

/// `POST` with `Tus-Resumable` on an upload link: creates the upload (replacing an unfinished
/// one of the same link), with its first bytes when the body carries them.
pub async fn create(
    app: &Arc<App>,
    link: Link,
    headers: &HeaderMap,
    uri: &axum::http::Uri,
    body: Body,
) -> Response {
    fresh_connection_next(reply(
        headers,
        create_inner(app, link, headers, uri, body).await,
    ))
}

/// Closes the connection after a creation or an offset answer, whose next request carries the
/// file's bytes: it then goes out on a fresh connection. A browser resends a request whose
/// *reused* connection broke at once, body and all, on a new connection (Chromium does, for
/// any method), before the page hears of the break; the server must refuse that copy (409: the
/// broken request still holds the link), and whatever of its body was in flight by then was
/// sent for nothing. On a fresh connection the browser reports the break instead, and the page
/// asks for the offset.
fn fresh_connection_next(response: Response) -> Response {
    crate::http::close_after(response)
}

async fn create_inner(
    app: &Arc<App>,
    link: Link,
    headers: &HeaderMap,
    uri: &axum::http::Uri,
    body: Body,
) -> Result<Response, ApiError> {
    let dialect = check_version(headers)?;
    let Link { claims, client, .. } = link.expect(Direction::Upload)?;
    if headers.contains_key("upload-defer-length") {
        return Err(ApiError::BadRequest(
            "Upload-Defer-Length is not supported: send Upload-Length".into(),
        ));
    }
    let complete = upload_complete(headers)?;
    // The draft may leave the length out of a creation that carries the whole file.
    let implied = match (dialect, complete) {
        (Dialect::Draft(_), Some(true)) => upload::content_length(headers)?,
        _ => None,
    };
    let length = number(headers, "upload-length")?
        .or(implied)
        .ok_or_else(|| ApiError::BadRequest("Upload-Length is required".into()))?;
    let cap = cap(app, &claims);
    if length > cap {
        return Err(upload::too_large(cap));
    }
    // A draft creation's body is the upload's first bytes, whatever its type.
    let with_data = dialect != Dialect::Tus || is_offset_stream(headers);
    if !with_data && upload::content_length(headers)?.unwrap_or(0) > 0 {
        return Err(ApiError::UnsupportedMediaType(format!(
            "upload data at creation must be sent as {OFFSET_STREAM}"
        )));
    }
    let location = location(uri)?;
    let lease = app.leases.acquire(&claims, client).await?;
    let nonce = hex(&claims.nonce);
    // The client's digest of the whole file, kept in the partial file's name.
    let announced = Expected::default()
        .with_header(headers.get("content-digest").map(|v| v.as_bytes()))
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if announced.header_sha512.is_some() {
        return Err(ApiError::BadRequest(
            "a resumable upload takes a Content-Digest with sha-256 only".into(),
        ));
    }
    let fresh = partial_name(
        &nonce,
        claims.expires_at,
        length,
        announced.header_sha256.as_ref(),
    );
    if let Storage::Bucket(store) = &app.storage {
        let store = store.clone();
        let job = job(app, claims, lease, client, length, announced.header_sha256);
        let created = bucket::create(
            &store,
            &job.receive.claims,
            &nonce,
            &fresh,
            length,
            announced.header_sha256,
        )
        .await;
        let partial = match created {
            Ok(partial) => partial,
            Err(e) => return Err(job.fail(e).await),
        };
        let body = with_data.then_some(body);
        let response = app
            .tasks
            .spawn(job.append_bucket(store, partial, body))
            .await
            .map_err(|_| ApiError::Internal)??;
        return Ok(created_response(response, location, dialect, cap));
    }
    let staged = stage_with(app, &claims, true, move |dir, _| {
        // A new creation replaces an unfinished upload of the same link.
        if let Some(old) = find_partial(&dir, &nonce).map_err(SandboxError::Io)? {
            let stale =
                Staged::resume_partial(dir.try_clone().map_err(SandboxError::Io)?, &old.name)
                    .map_err(busy_or_io)?;
            stale.discard();
        }
        Staged::create_partial(dir, &fresh).map_err(|e| SandboxError::Io(e).into())
    })
    .await;
    let job = job(app, claims, lease, client, length, announced.header_sha256);
    let (staged, name) = match staged {
        Ok(found) => found,
        Err(e) => return Err(job.fail(e).await),
    };
    let body = with_data.then_some(body);
    let response = app
        .tasks
        .spawn(job.append(staged, name, 0, body))
        .await
        .map_err(|_| ApiError::Internal)??;
    Ok(created_response(response, location, dialect, cap))
}

/// A creation's answer: the first request's, as 201 with the upload's location.
fn created_response(
    mut response: Response,
    location: HeaderValue,
    dialect: Dialect,
    cap: u64,
) -> Response {
    *response.status_mut() = StatusCode::CREATED;
    response.headers_mut().insert(header::LOCATION, location);
    if dialect != Dialect::Tus {
        response.headers_mut().insert("upload-limit", limit(cap));
    }
    response
}

/// `PATCH` on an upload link: appends the body at `Upload-Offset`.
pub async fn patch(
    State(app): State<Arc<App>>,
    link: Result<Link, ApiError>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    reply(&headers, patch_inner(&app, link, &headers, body).await)
}

async fn patch_inner(
    app: &Arc<App>,
    link: Result<Link, ApiError>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let Link { claims, client, .. } = link?.expect(Direction::Upload)?;
    let dialect = check_version(headers)?;
    upload_complete(headers)?;
    if dialect == Dialect::Tus && !is_offset_stream(headers) {
        return Err(ApiError::UnsupportedMediaType(format!(
            "PATCH needs Content-Type: {OFFSET_STREAM}"
        )));
    }
    let sent = number(headers, "upload-offset")?
        .ok_or_else(|| ApiError::BadRequest("Upload-Offset is required".into()))?;
    append_at(app, claims, client, sent, Some(body)).await
}

/// Appends `body` at `sent` under the link's lease, and lands the upload when complete.
async fn append_at(
    app: &Arc<App>,
    claims: Claims,
    client: std::net::IpAddr,
    sent: u64,
    body: Option<Body>,
) -> Result<Response, ApiError> {
    let mut lease = app.leases.acquire(&claims, client).await?;
    let nonce = hex(&claims.nonce);
    if let Storage::Bucket(store) = &app.storage {
        let loaded = store
            .load_partial(claims.session.as_ref(), &claims.path, &nonce)
            .await;
        let partial = match loaded {
            Ok(Some(partial)) if partial.offset() == sent => Ok(partial),
            Ok(Some(partial)) => Err(ApiError::OffsetMismatch {
                sent,
                stored: partial.offset(),
            }),
            Ok(None) => Err(ApiError::NotFound),
            Err(e) => Err(e.into()),
        };
        let partial = match partial {
            Ok(partial) => partial,
            Err(e) => {
                lease.release().await;
                return Err(e);
            }
        };
        let (length, announced) = (partial.length, partial.announced);
        let job = job(app, claims, lease, client, length, announced);
        return app
            .tasks
            .spawn(job.append_bucket(store.clone(), partial, body))
            .await
            .map_err(|_| ApiError::Internal)?;
    }
    let opened = stage_with(app, &claims, false, move |dir, _| {
        let partial = find_partial(&dir, &nonce)
            .map_err(SandboxError::Io)?
            .ok_or(ApiError::NotFound)?;
        let staged = Staged::resume_partial(dir, &partial.name).map_err(busy_or_io)?;
        let stored = staged.offset().map_err(SandboxError::Io)?;
        if stored != sent {
            return Err(ApiError::OffsetMismatch { sent, stored });
        }
        Ok((staged, partial))
    })
    .await;
    let ((staged, partial), name) = match opened {
        Ok(found) => found,
        Err(e) => {
            lease.release().await;
            return Err(e);
        }
    };
    let job = job(app, claims, lease, client, partial.length, partial.sha256);
    app.tasks
        .spawn(job.append(staged, name, sent, body))
        .await
        .map_err(|_| ApiError::Internal)?
}

/// `DELETE` on an upload link: terminates the unfinished upload; the link is free for a fresh
/// one.
pub async fn delete(
    State(app): State<Arc<App>>,
    link: Result<Link, ApiError>,
    headers: HeaderMap,
) -> Response {
    reply(&headers, delete_inner(&app, link, &headers).await)
}

async fn delete_inner(
    app: &Arc<App>,
    link: Result<Link, ApiError>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let Link { claims, client, .. } = link?.expect(Direction::Upload)?;
    check_version(headers)?;
    let mut lease = app.leases.acquire(&claims, client).await?;
    let nonce = hex(&claims.nonce);
    let removed = match &app.storage {
        Storage::Bucket(store) => {
            let (session, path) = (claims.session.as_ref(), &*claims.path);
            match store.load_partial(session, path, &nonce).await {
                Ok(Some(partial)) => store.remove_partial(partial).await.map_err(ApiError::from),
                Ok(None) => Err(ApiError::NotFound),
                Err(e) => Err(e.into()),
            }
        }
        Storage::Disk(_) => stage_with(app, &claims, false, move |dir, _| {
            let partial = find_partial(&dir, &nonce)
                .map_err(SandboxError::Io)?
                .ok_or(ApiError::NotFound)?;
            Staged::resume_partial(dir, &partial.name)
                .map_err(busy_or_io)?
                .discard();
            Ok(())
        })
        .await
        .map(|_| ()),
    };
    lease.release().await;
    removed?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The upload's URL relative to the request's: its last path segment, so it resolves to the
/// link URL the client used, whatever prefix a proxy adds.
fn location(uri: &axum::http::Uri) -> Result<HeaderValue, ApiError> {
    let last = uri.path().rsplit('/').next().unwrap_or_default();
    HeaderValue::from_str(&format!("./{last}")).map_err(|_| ApiError::NotFound)
}

fn busy_or_io(e: std::io::Error) -> ApiError {
    if e.kind() == std::io::ErrorKind::WouldBlock {
        ApiError::InProgress
    } else {
        SandboxError::Io(e).into()
    }
}

fn job(
    app: &Arc<App>,
    claims: Claims,
    lease: Lease,
    client: std::net::IpAddr,
    length: u64,
    announced: Option<[u8; 32]>,
) -> Job {
    let audit = TransferAudit::new(&claims, client);
    let expected = Expected {
        token_sha256: claims.sha256,
        header_sha256: announced,
        ..Expected::default()
    };
    Job {
        receive: Receive {
            app: app.clone(),
            claims,
            lease,
            cap: length,
            expected,
            name: String::new(),
            audit,
        },
        length,
    }
}

/// One leased request of a resumable upload.
struct Job {
    receive: Receive,
    /// The upload's total length.
    length: u64,
}

impl Job {
    async fn fail(mut self, e: ApiError) -> ApiError {
        self.receive.audit.log(upload::outcome(&e), 0);
        self.receive.lease.release().await;
        e
    }

    /// Appends `body` (if any) to the partial file at `offset`, then lands the upload when it
    /// is complete, or releases the link for the next request.
    async fn append(
        mut self,
        staged: Staged,
        name: String,
        offset: u64,
        body: Option<Body>,
    ) -> Result<Response, ApiError> {
        self.receive.name = name;
        self.receive.cap = self.length - offset;
        let mut received = 0;
        let result = self.append_inner(staged, body, &mut received).await;
        self.settle(result, received).await
    }

    /// Ends a request's append, on disk or in a bucket: the lease is released unless the
    /// upload landed (the burn settled it), and the audit line says how it ended.
    async fn settle(
        &mut self,
        result: Result<(Response, Option<upload::Burn>), ApiError>,
        received: u64,
    ) -> Result<Response, ApiError> {
        match &result {
            Ok((_, Some(burned))) => self.receive.audit.log(burned.outcome(), self.length),
            Ok((_, None)) => {
                self.receive.audit.log("partial", received);
                self.receive.lease.release().await;
            }
            Err(e) => {
                self.receive.audit.log(upload::outcome(e), received);
                self.receive.lease.release().await;
            }
        }
        result.map(|(response, _)| response)
    }

    async fn append_inner(
        &mut self,
        staged: Staged,
        body: Option<Body>,
        received: &mut u64,
    ) -> Result<(Response, Option<upload::Burn>), ApiError> {
        let written = match body {
            Some(body) => {
                self.receive
                    .stream_into(staged, body, received)
                    .await?
                    .staged
            }
            None => staged,
        };
        let (written, offset) = on_blocking(move || {
            let len = written.offset()?;
            Ok((written, len))
        })
        .await
        .map_err(|e| upload::internal("reading an upload's offset", e))?;
        let mut response = StatusCode::NO_CONTENT.into_response();
        response
            .headers_mut()
            .insert("upload-offset", HeaderValue::from(offset));
        if offset < self.length {
            return Ok((response, None));
        }
        let expected = self.receive.expected.clone();
        let hashing = on_blocking(move || {
            let mut hasher = Hasher::new(&expected);
            written.read_back(READ_BACK, |b| hasher.update(b))?;
            Ok((written, hasher.finish()))
        });
        let (staged, digests) = self
            .receive
            .keep(hashing)
            .await
            .map_err(|e| upload::internal("hashing an upload", e))?;
        let landed = self
            .receive
            .land(
                Written {
                    staged,
                    digests: Some(digests),
                },
                offset,
            )
            .await;
        match landed {
            Ok((receipt, burned)) => {
                // The whole file's digest (RFC 9530), so a client can show or check it.
                if let Ok(v) = HeaderValue::from_str(&repr_digest(&receipt.sha256)) {
                    response.headers_mut().insert("repr-digest", v);
                }
                Ok((response, Some(burned)))
            }
            Err(e) => {
                if matches!(e, ApiError::Exists(_)) {
                    // It can never land now: nothing of it is kept.
                    self.remove_partial().await;
                }
                Err(e)
            }
        }
    }

    async fn remove_partial(&self) {
        let nonce = hex(&self.receive.claims.nonce);
        let app = &self.receive.app;
        let _ = stage_with(app, &self.receive.claims, false, move |dir, _| {
            if let Some(partial) = find_partial(&dir, &nonce).map_err(SandboxError::Io)? {
                Staged::resume_partial(dir, &partial.name)
                    .map_err(busy_or_io)?
                    .discard();
            }
            Ok(())
        })
        .await;
    }
}
