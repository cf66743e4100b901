//! `GET` and `HEAD` on a download link.

use std::io::Write;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes};

use super::delivery::{self, Settle};
use super::fields::{Fields, MapFields};
use super::open::{self, Target};
use super::range::{self, Decision};
use super::values::Values;
use super::{archive, disposition};
use crate::http::error::ApiError;
use crate::http::gate::Link;
use crate::lease::Lease;
use crate::ledger::LinkState;
use crate::sandbox::{self, SandboxError};
use crate::state::App;
use crate::storage::Storage;
use crate::storage::bucket::{self, Bucket};
use crate::telemetry::TransferAudit;
use crate::token::{Claims, Direction};

/// `HEAD`: metadata only. It never leases and never burns, so link previewers can look freely.
pub async fn head(State(app): State<Arc<App>>, link: Link) -> Result<Response, ApiError> {
    let claims = link.expect(Direction::Download)?.claims;
    refuse_if_spent(app.ledger.state(&claims.nonce).await?)?;
    let (size, modified) = match open::target(&app.storage, &claims, false).await? {
        Target::File { meta, .. } => (meta.len(), meta.modified().ok()),
        Target::Object { object, .. } => (object.size, Some(object.modified)),
        Target::Directory { .. } => return Ok(archive::head(&claims)),
    };
    let mut response = StatusCode::OK.into_response();
    file_headers(
        response.headers_mut(),
        &claims,
        modified,
        size,
        &mut Values::default(),
    );
    Ok(response)
}

/// `GET` for everyone who is not shown a page: the bytes, under the lease, burning the link
/// when the last byte is handed over.
pub async fn get(app: &Arc<App>, link: Link, headers: &HeaderMap) -> Result<Response, ApiError> {
    let link = link.expect(Direction::Download)?;
    let claims = &link.claims;
    // Everything that can fail without touching the link comes first, so a 404 or 416 never
    // holds the lease (a retry right after would otherwise see 409).
    let (file, meta, small) = match open::target(&app.storage, claims, true).await? {
        Target::File { file, meta, bytes } => (file, meta, bytes),
        Target::Directory { tree } => return archive::get(app, &link, tree).await,
        Target::Object { bucket, object } => {
            return get_object(app, &link, headers, &bucket, object).await;
        }
    };
    let size = meta.len();
    let (status, start, len) = plan(app, claims, headers, size).await?;
    let lease = app.leases.acquire(claims, link.client).await?;
    let burns = start + len == size;

    let settle = Settle {
        audit: TransferAudit::new(claims, link.client),
    };
    let conn = &link.conn;
    let body = match (small, conn.state.zero_copy()) {
        // Already in memory: no second trip to the blocking pool.
        (Some(bytes), _) => {
            let region = bytes.slice(start as usize..(start + len) as usize);
            let reader = std::io::Cursor::new(region);
            Body::new(delivery::deliver(
                lease, reader, len, burns, conn, &app.tasks, settle,
            ))
        }
        // Plain HTTP: the kernel sends the file (`sendfile`), nothing is copied through here.
        (None, Some(outbox)) => Body::new(delivery::deliver_zero_copy(
            lease, file, start, len, burns, conn, outbox, &app.tasks, settle,
        )),
        (None, None) => {
            let mut file = file;
            if start > 0 {
                // lseek only moves the file offset, so it is done here rather than on the
                // blocking pool.
                std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(start))
                    .map_err(SandboxError::Io)?;
            }
            let file = tokio::fs::File::from_std(file);
            Body::new(delivery::deliver(
                lease, file, len, burns, conn, &app.tasks, settle,
            ))
        }
    };

    Ok(respond(
        body,
        claims,
        meta.modified().ok(),
        (status, start, len),
        size,
    ))
}

/// A whole small file, leased and ready to go out in one write with its headers: what the
/// express lane ([`crate::http::express`]) serves. The steps and the headers are [`get`]'s for
/// a file read in the same trip that opened it, without a range.
pub struct Ready {
    pub lease: Lease,
    pub bytes: Bytes,
    pub audit: TransferAudit,
    /// The file's date, for its `Last-Modified` ([`file_fields`]).
    pub modified: Option<std::time::SystemTime>,
}

/// [`Ready`] for `link`; `Ok(None)` for anything else up to the lease: another direction, a
/// bucket, a directory, a larger file, a failure to open. The express lane hands those to
/// [`get`], which answers them (failures in its words) as it answers everything else; nothing
/// here has touched the link. `Err`: the ledger refused the lease (spent, busy, revoked,
/// unreachable), which is [`get`]'s answer too; asking again there would cost a second
/// ledger call, and a second timeout when the ledger hangs.
pub async fn ready_small(app: &App, link: &Link) -> Result<Option<Ready>, ApiError> {
    let claims = &link.claims;
    if claims.direction != Direction::Download || !matches!(app.storage, Storage::Disk(_)) {
        return Ok(None);
    }
    let Ok(Target::File {
        meta,
        bytes: Some(bytes),
        ..
    }) = open::target(&app.storage, claims, true).await
    else {
        return Ok(None);
    };
    let lease = app.leases.acquire(claims, link.client).await?;
    Ok(Some(Ready {
        lease,
        bytes,
        audit: TransferAudit::new(claims, link.client),
        modified: meta.modified().ok(),
    }))
}

/// What part of a file of `size` bytes the request gets: everything (200) or one range
/// (206). Decided before the lease is taken, so a 416 never holds the link.
async fn plan(
    app: &App,
    claims: &Claims,
    headers: &HeaderMap,
    size: u64,
) -> Result<(StatusCode, u64, u64), ApiError> {
    let range_header = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    match range::decide(range_header, size) {
        Decision::Full => Ok((StatusCode::OK, 0, size)),
        Decision::Partial(r) => Ok((
            StatusCode::PARTIAL_CONTENT,
            *r.start(),
            r.end() - r.start() + 1,
        )),
        Decision::Unsatisfiable => {
            // A spent link says so rather than blaming the range.
            refuse_if_spent(app.ledger.state(&claims.nonce).await?)?;
            Err(ApiError::RangeNotSatisfiable { size })
        }
    }
}

/// The response around a file's body: status, the file's headers, the length and the range.
fn respond(
    body: Body,
    claims: &Claims,
    modified: Option<std::time::SystemTime>,
    (status, start, len): (StatusCode, u64, u64),
    size: u64,
) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let h = response.headers_mut();
    file_headers(h, claims, modified, len, &mut Values::default());
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{size}", start + len - 1))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    response
}

/// `GET` of an object in a bucket: the same plan, lease and delivery as a file, with the
/// bytes from a ranged `GET` on the object. The read is opened under the lease; a bucket that
/// fails then answers 503 and the lease is released, and one that fails mid-stream cuts the
/// response, which never burns the link.
async fn get_object(
    app: &Arc<App>,
    link: &Link,
    headers: &HeaderMap,
    bucket: &Bucket,
    object: bucket::Object,
) -> Result<Response, ApiError> {
    let claims = &link.claims;
    let size = object.size;
    let (status, start, len) = plan(app, claims, headers, size).await?;
    let lease = app.leases.acquire(claims, link.client).await?;
    let stream = bucket
        .read(claims.session.as_ref(), &claims.path, &object, start, len)
        .await?;
    let reader = tokio_util::io::StreamReader::new(stream);
    let settle = Settle {
        audit: TransferAudit::new(claims, link.client),
    };
    let body = Body::new(delivery::deliver(
        lease,
        reader,
        len,
        start + len == size,
        &link.conn,
        &app.tasks,
        settle,
    ));
    Ok(respond(
        body,
        claims,
        Some(object.modified),
        (status, start, len),
        size,
    ))
}

pub(super) fn refuse_if_spent(state: LinkState) -> Result<(), ApiError> {
    match state {
        LinkState::Used(_) => Err(ApiError::Used),
        LinkState::Revoked => Err(ApiError::Revoked),
        LinkState::Unused | LinkState::InProgress => Ok(()),
    }
}

/// The headers of a file's answer, put into `h` after clearing it (see [`file_fields`]).
/// Clearing drops the views the last answer's values held of `values`, so a map and buffer
/// kept together reuse their memory.
pub fn file_headers(
    h: &mut HeaderMap,
    claims: &Claims,
    modified: Option<std::time::SystemTime>,
    len: u64,
    values: &mut Values,
) {
    h.clear();
    let name = sandbox::file_name(&claims.path);
    // All the values in one buffer, each within its room.
    values.reserve(disposition::room(name) + DATE_ROOM + LEN_ROOM);
    file_fields(&mut MapFields { map: h, values }, claims, modified, len);
}

/// The fields of a file's answer, in this order: type, disposition, ranges, the private
/// headers, the file's date, and `len`, the length of the body sent (the whole file, or a
/// range). One list for hyper's responses (through [`file_headers`]) and the express lane's
/// heads, which write them straight out.
pub fn file_fields(
    out: &mut impl Fields,
    claims: &Claims,
    modified: Option<std::time::SystemTime>,
    len: u64,
) {
    let name = sandbox::file_name(&claims.path);
    let mime = content_type(name);
    // A dozen of mime_guess's entries have capitals (`…macroEnabled.12`); those go out
    // lower-cased, as they did when the guess was parsed into a `Mime`.
    let lowered = mime.bytes().any(|b| b.is_ascii_uppercase())
        && out.written(header::CONTENT_TYPE, mime.len(), |o| {
            for b in mime.bytes() {
                o.put_u8(b.to_ascii_lowercase());
            }
        });
    if !lowered {
        out.fixed(header::CONTENT_TYPE, mime);
    }
    if !out.written(header::CONTENT_DISPOSITION, disposition::room(name), |o| {
        disposition::write(name, o)
    }) {
        // Control characters are gone, so only bytes a field takes remain; the fallback is
        // there so a surprise can never become a panic.
        out.fixed(header::CONTENT_DISPOSITION, "attachment");
    }
    out.fixed(header::ACCEPT_RANGES, "bytes");
    crate::http::private_fields(out);
    if let Some(t) = modified {
        last_modified(out, t);
    }
    out.written(header::CONTENT_LENGTH, LEN_ROOM, |o| {
        o.put_slice(itoa::Buffer::new().format(len).as_bytes());
    });
}

/// The type mime_guess names for `name`'s extension, or `application/octet-stream`.
///
/// Its table is searched with a case-insensitive comparison per step: 0.9 % of the server's
/// CPU for 4 KiB downloads, beside 1.6 % for the token's MAC (`docs/benchmarks.md`, the
/// thirteenth pass). So each thread keeps its last answer, and a server handing out one kind
/// of file looks it up once.
fn content_type(name: &str) -> &'static str {
    // `Path::extension`'s rule for a file name: after the last dot, unless that dot starts it.
    let ext = match name.rfind('.') {
        Some(at) if at > 0 => &name[at + 1..],
        _ => return OCTET_STREAM,
    };
    const KEY: usize = 16;
    thread_local! {
        static LAST: std::cell::Cell<([u8; KEY], usize, &'static str)> =
            const { std::cell::Cell::new(([0; KEY], usize::MAX, OCTET_STREAM)) };
    }
    let guess = || {
        mime_guess::from_ext(ext)
            .first_raw()
            .unwrap_or(OCTET_STREAM)
    };
    if ext.len() > KEY {
        return guess();
    }
    let (key, len, mime) = LAST.get();
    if len == ext.len() && key[..len] == *ext.as_bytes() {
        return mime;
    }
    let mime = guess();
    let mut key = [0; KEY];
    key[..ext.len()].copy_from_slice(ext.as_bytes());
    LAST.set((key, ext.len(), mime));
    mime
}

const OCTET_STREAM: &str = "application/octet-stream";

/// Room for `Content-Length`: `u64::MAX` has 20 digits.
const LEN_ROOM: usize = 20;

/// Room for `Last-Modified`: an IMF-fixdate is 29 bytes, with room left for a year of more
/// digits than four.
const DATE_ROOM: usize = 40;

/// Seconds from the epoch to the end of year 9999, past which `httpdate` does not go.
const HTTPDATE_END: u64 = 253_402_300_800;

/// `Last-Modified: t` as an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`). A time outside the
/// years `time` holds (±9999) goes without the field rather than failing the download.
/// `httpdate` writes the years from 1970 on, several times faster than `time`'s formatter,
/// which is kept for the years before.
fn last_modified(out: &mut impl Fields, t: std::time::SystemTime) -> bool {
    use time::macros::format_description;
    use time::{Duration, OffsetDateTime};
    if let Ok(after) = t.duration_since(std::time::UNIX_EPOCH) {
        if after.as_secs() < HTTPDATE_END {
            return out.written(header::LAST_MODIFIED, DATE_ROOM, |o| {
                modified_text(after.as_secs(), |text| o.put_slice(text));
            });
        }
        return false;
    }
    let fmt = format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    // Not `OffsetDateTime::from(t)`, which panics outside those years.
    let Some(at) = t
        .duration_since(std::time::UNIX_EPOCH)
        .err()
        .and_then(|before| Duration::try_from(before.duration()).ok())
        .and_then(|d| OffsetDateTime::UNIX_EPOCH.checked_sub(d))
    else {
        return false;
    };
    // Writing into memory cannot fail, and an `OffsetDateTime` has every part the format asks.
    out.written(header::LAST_MODIFIED, DATE_ROOM, |o| {
        let _ = at.format_into(&mut o.writer(), &fmt);
    })
}

/// The IMF-fixdate of `secs` after the epoch (before [`HTTPDATE_END`]). Each thread keeps the
/// last one it wrote: a server handing out the same files writes the same few times over.
/// Formatting this field and `Content-Length` through `core::fmt` on every response was 1.6 %
/// of the server's user time on small downloads (docs/benchmarks.md, the sixteenth pass).
fn modified_text(secs: u64, use_it: impl FnOnce(&[u8])) {
    /// An IMF-fixdate is 29 bytes; `httpdate` writes exactly that for the years it holds.
    const LEN: usize = 29;
    thread_local! {
        static LAST: std::cell::RefCell<(u64, [u8; LEN])> =
            const { std::cell::RefCell::new((u64::MAX, [0; LEN])) };
    }
    LAST.with_borrow_mut(|(at, text)| {
        if *at != secs {
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
            let _ = write!(&mut text[..], "{}", httpdate::HttpDate::from(t));
            *at = secs;
        }
        use_it(&text[..]);
    });
}

#[cfg(test)]
mod tests {
    use super::super::fields::HeadFields;
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn last_modified_is_an_imf_fixdate_before_and_after_the_epoch() {
        let at = |s: i64| {
            let d = Duration::from_secs(s.unsigned_abs());
            let t = if s < 0 {
                UNIX_EPOCH - d
            } else {
                UNIX_EPOCH + d
            };
            // Both ways out write the same field, or leave it out alike.
            let (mut map, mut values) = (HeaderMap::new(), Values::default());
            let in_map = last_modified(
                &mut MapFields {
                    map: &mut map,
                    values: &mut values,
                },
                t,
            );
            let mut head = Vec::new();
            let in_head = last_modified(&mut HeadFields(&mut head), t);
            assert_eq!(in_map, in_head);
            assert_eq!(map.contains_key(header::LAST_MODIFIED), in_map);
            let value = map.get(header::LAST_MODIFIED).cloned();
            if let Some(v) = &value {
                assert_eq!(head, [b"last-modified: ", v.as_bytes(), b"\r\n"].concat());
            } else {
                assert!(head.is_empty());
            }
            value
        };
        assert_eq!(at(784_111_777).unwrap(), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(at(0).unwrap(), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(at(-86_400).unwrap(), "Wed, 31 Dec 1969 00:00:00 GMT");
        assert_eq!(at(-1).unwrap(), "Wed, 31 Dec 1969 23:59:59 GMT");
        assert_eq!(
            at(253_402_300_799).unwrap(),
            "Fri, 31 Dec 9999 23:59:59 GMT"
        );
        // Past the years `time` holds, either way: no header, and no panic.
        assert!(at(253_402_300_800).is_none());
        assert!(at(-377_705_116_801).is_none());
        // Each thread keeps the last date it wrote: a second asked after others, and the one
        // next to it, are still their own.
        assert_eq!(at(784_111_777).unwrap(), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(at(784_111_778).unwrap(), "Sun, 06 Nov 1994 08:49:38 GMT");
        assert_eq!(at(784_111_777).unwrap(), "Sun, 06 Nov 1994 08:49:37 GMT");
    }

    /// The one-entry cache answers what mime_guess answers, for names of every shape.
    #[test]
    fn the_type_is_mime_guess_s_whatever_was_asked_before() {
        let names = [
            "report.pdf",
            "a.PDF",
            "report.pdf",
            "photo.jpeg",
            ".bashrc",
            "noext",
            "trailing.",
            "archive.tar.gz",
            "x.averyveryverylongextension",
            "book.xlsm",
            "report.pdf",
        ];
        for name in names.iter().chain(names.iter().rev()) {
            let want = mime_guess::from_path(name)
                .first_raw()
                .unwrap_or("application/octet-stream");
            assert_eq!(content_type(name), want, "{name}");
        }
    }

    #[test]
    fn file_headers_take_the_type_from_the_name_and_fall_back_to_octet_stream() {
        let claims =
            |path: &str| Claims::new(crate::token::Direction::Download, None, path.into(), 60);
        for (path, want) in [
            ("report.pdf", "application/pdf"),
            ("dir/photo.JPG", "image/jpeg"),
            ("notes", "application/octet-stream"),
            ("archive.unknownext", "application/octet-stream"),
            (
                "book.xlsm",
                "application/vnd.ms-excel.sheet.macroenabled.12",
            ),
        ] {
            let mut h = HeaderMap::new();
            file_headers(&mut h, &claims(path), None, 0, &mut Values::default());
            assert_eq!(h[header::CONTENT_TYPE], want, "{path}");
            assert!(!h.contains_key(header::LAST_MODIFIED));
        }
    }

    #[test]
    fn content_length_is_the_decimal_length() {
        let claims = Claims::new(Direction::Download, None, "a.bin".into(), 60);
        let (mut h, mut values) = (HeaderMap::new(), Values::default());
        for len in [0, 4096, u64::MAX] {
            file_headers(&mut h, &claims, None, len, &mut values);
            assert_eq!(h[header::CONTENT_LENGTH], len.to_string().as_str());
        }
    }

    /// A map and a buffer kept together: from the second download on, its headers cost no
    /// allocation.
    #[test]
    fn a_connections_later_downloads_build_their_headers_without_allocating() {
        let (mut h, mut values) = (HeaderMap::new(), Values::default());
        let modified = Some(UNIX_EPOCH + Duration::from_secs(784_111_777));
        let claims = Claims::new(Direction::Download, None, "dir/résumé 2026.pdf".into(), 60);
        file_headers(&mut h, &claims, modified, 4096, &mut values);
        // Copied out: a clone of the map would hold views of the buffer and keep it busy.
        let copy = |h: &HeaderMap| -> Vec<(String, Vec<u8>)> {
            h.iter()
                .filter(|(name, _)| *name != header::CONTENT_LENGTH)
                .map(|(name, value)| (name.to_string(), value.as_bytes().to_vec()))
                .collect()
        };
        let first = copy(&h);
        for len in [4096, 10, 65_536] {
            let made = crate::alloc_count::allocations(|| {
                file_headers(&mut h, &claims, modified, len, &mut values);
            });
            assert_eq!(made, 0, "a download of {len} bytes allocated");
            assert_eq!(h[header::CONTENT_LENGTH], len.to_string().as_str());
        }
        // The same headers as the first time, their values intact after the buffer's reuse.
        assert_eq!(copy(&h), first);
        assert_eq!(
            h[header::CONTENT_DISPOSITION],
            "attachment; filename=\"résumé 2026.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9%202026.pdf"
        );
        assert_eq!(h[header::LAST_MODIFIED], "Sun, 06 Nov 1994 08:49:37 GMT");
    }
}
