//! The express lane: a plain-HTTP `GET` of a small file, answered straight off the socket.
//!
//! That request is most of a busy server's work, and through the general stack (hyper's
//! connection state machine, axum's router and middleware, a header map per request, a
//! supervisor task per transfer) it cost about twice nginx's CPU per request
//! (docs/benchmarks.md). On a plain TCP connection the lane reads each request head itself and
//! serves it when every step succeeds up to the lease. Anything else (another method or route,
//! a header it leaves alone, a page for a browser, any failure before the lease, a head that
//! came in pieces) goes to hyper with the bytes read so far, and the connection stays hyper's
//! from then on. Between two of its requests, with nothing read ahead, the lane may instead
//! give a connection up to another event loop, which serves it from its next request
//! (`Shared::steer` in [`crate::http::net`] says when).
//!
//! So the lane decides nothing of its own. Its requests pass the same gate ([`Link::admit`]),
//! open the file and take the lease the same way ([`download::ready_small`]), carry the same
//! headers, and burn by the same rule ([`delivery::burn`]): once the last byte is in the
//! kernel's socket buffer, which for a small file is the end of its `writev` (one call, unless
//! the client reads slowly). Failures are answered by the handlers and worded by the one error
//! map; the one refusal the lane writes itself is the ledger's refusal of the lease, in the
//! error map's words, because handing it over would make the handler ask the ledger a second
//! time ([`refuse`]). The write goes through the connection's [`FlushTracked`] wrapper, so the
//! transfer's fence and the write-idle timeout hold as they do for hyper's writes, and the
//! lease is renewed while a slow client takes the bytes, as for hyper's downloads.

use std::io::{self, IoSlice};
use std::time::Instant;

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::http::conn::{ConnInfo, ConnLimits, ConnState, FlushTracked};
use crate::http::error::ApiError;
use crate::http::gate::Link;
use crate::http::switch::Lookout;
use crate::http::transfer::accept;
use crate::http::transfer::delivery;
use crate::http::transfer::download;
use crate::http::transfer::fields::HeadFields;
use crate::lease::Lease;
use crate::state::App;
use crate::telemetry::TransferAudit;
use crate::token::Claims;

/// How much one read of a request head may take in. A head that does not fit is left to
/// hyper, which applies the configured limit.
const READ_BUF: usize = 4096;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Headers the lane reads. More than this is left to hyper.
const MAX_HEADERS: usize = 48;

/// Request headers that change what a download answers, or how the connection goes on: a
/// request carrying any of them is hyper's.
const HANDED_OVER: &[&str] = &[
    "range",
    "if-range",
    "content-length",
    "transfer-encoding",
    "expect",
    "upgrade",
    "te",
];

/// How often a connection asks where its requests arrive: every this many requests served.
/// One `getsockopt` per 16 downloads is lost in their cost, and a busy connection still
/// follows its client to another CPU within milliseconds.
const STEER_EVERY: u32 = 16;

/// How the lane left a connection.
pub enum Left {
    /// Hand it to hyper, which reads these bytes (the head the lane did not answer, and
    /// anything after it) before the socket.
    ToHyper(BytesMut),
    /// Done: closed by the client, idle past the head timeout, cut by the fence, or the
    /// server is stopping.
    Closed,
    /// Between two requests, with nothing read ahead: serve it on the event loop of this
    /// number from its next request on.
    Move(usize),
}

/// Serves requests on `io` for as long as the lane can. Every [`STEER_EVERY`] requests, with
/// nothing read ahead, `steer` may name another event loop for the connection.
pub async fn serve(
    io: &mut FlushTracked<TcpStream>,
    info: &ConnInfo,
    app: &App,
    limits: &ConnLimits,
    stop: &Lookout,
    steer: impl Fn(&TcpStream) -> Option<usize>,
) -> Left {
    let mut served: u32 = 0;
    let mut buf = BytesMut::with_capacity(READ_BUF);
    // Each response's head, written straight into this buffer (no header map): allocated
    // once per connection, and large enough for a file name of a few hundred bytes.
    let mut head_out = Vec::with_capacity(512);
    // One wait for the stop per connection, not one per request.
    let stopping = stop.flipped();
    tokio::pin!(stopping);
    // The keep-alive limit's one timer. It is moved on only when it goes off while a later
    // wait has not run out yet: setting and clearing a timer for every request was 1.2-1.4 %
    // of the server's user time on small downloads (docs/benchmarks.md, the sixteenth pass).
    let limit = limits.header_read_timeout;
    let idle = tokio::time::sleep(limit);
    tokio::pin!(idle);
    loop {
        if buf.is_empty() {
            buf.reserve(READ_BUF);
            // The wait for a head's first bytes, which is also the keep-alive idle limit, as
            // in hyper. A head that arrives in pieces goes to hyper, whose own timer then
            // starts afresh: such a head may take up to twice the limit, once per connection.
            let until = tokio::time::Instant::now() + limit;
            let read = loop {
                tokio::select! {
                    biased;
                    () = &mut stopping => return Left::Closed,
                    // Cancel-safe: bytes read are in `buf` whenever this is dropped.
                    read = io.read_buf(&mut buf) => break read,
                    () = &mut idle => {
                        if idle.deadline() >= until {
                            return Left::Closed;
                        }
                        idle.as_mut().reset(until);
                    }
                }
            };
            match read {
                Ok(n) if n > 0 => {}
                _ => return Left::Closed,
            }
        } else if stop.is_on() {
            // Stopping with a pipelined request in hand: the connection closes, as hyper's
            // graceful shutdown closes it after the request it is answering.
            return Left::Closed;
        }
        let Some(request) = parse(&buf) else {
            return Left::ToHyper(buf);
        };
        match answer(io, info, app, &request, &mut head_out).await {
            Answer::Served => {
                buf.advance(request.len);
                served = served.wrapping_add(1);
                if buf.is_empty()
                    && served.is_multiple_of(STEER_EVERY)
                    && let Some(to) = steer(io.get_ref())
                {
                    return Left::Move(to);
                }
            }
            Answer::Declined => return Left::ToHyper(buf),
            Answer::Cut => return Left::Closed,
        }
    }
}

/// A request head the lane takes.
pub struct Request<'b> {
    /// The head's length in bytes.
    pub len: usize,
    pub token: &'b str,
    /// The route's template, for the request metrics (as the router names it).
    pub route: &'static str,
    /// The `X-Forwarded-For` field, which names the client when the peer is a trusted proxy
    /// (the gate decides). A head with more than one is hyper's.
    pub forwarded_for: Option<&'b [u8]>,
}

/// The head at the start of `buf`, if it is complete and a download the lane may answer: `GET`
/// over HTTP/1.1 on a download route, none of [`HANDED_OVER`], a `Connection` field of at
/// most `keep-alive`, at most one `X-Forwarded-For`, and an `Accept` that does not prefer a
/// page ([`accept`]).
pub fn parse(buf: &[u8]) -> Option<Request<'_>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut head = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(len) = head.parse(buf).ok()? else {
        return None;
    };
    if head.method != Some("GET") || head.version != Some(1) {
        return None;
    }
    let (token, route) = route(head.path?)?;
    let mut accepts = accept::Ranks::default();
    let mut forwarded_for = None;
    for field in head.headers.iter() {
        let name = field.name;
        if name.eq_ignore_ascii_case("x-forwarded-for") {
            if forwarded_for.replace(field.value).is_some() {
                return None;
            }
        } else if name.eq_ignore_ascii_case("accept") {
            accepts.add(field.value);
        } else if name.eq_ignore_ascii_case("connection") {
            if !field.value.eq_ignore_ascii_case(b"keep-alive") {
                return None;
            }
        } else if HANDED_OVER.iter().any(|h| name.eq_ignore_ascii_case(h)) {
            return None;
        }
    }
    if accepts.prefers_html() {
        return None;
    }
    Some(Request {
        len,
        token,
        route,
        forwarded_for,
    })
}

/// The token and route template of a download route's path, as the router would match it:
/// `/transfer/{token}`, `/transfer/{token}/{name}` or `/api/download/{token}`. A path with a
/// query, a percent-escape, an empty segment or any byte outside [`plain`] is left to the
/// router (hyper refuses some bytes that `httparse` lets through, such as `<`).
fn route(path: &str) -> Option<(&str, &'static str)> {
    if !path.bytes().all(plain) {
        return None;
    }
    if let Some(rest) = path.strip_prefix("/transfer/") {
        return match rest.split_once('/') {
            None if !rest.is_empty() => Some((rest, "/transfer/{token}")),
            Some((token, name)) if !token.is_empty() && !name.is_empty() && !name.contains('/') => {
                Some((token, "/transfer/{token}/{name}"))
            }
            _ => None,
        };
    }
    let token = path.strip_prefix("/api/download/")?;
    (!token.is_empty() && !token.contains('/')).then_some((token, "/api/download/{token}"))
}

/// Unreserved characters, sub-delimiters, `:`, `@` and `/`: what a path may hold unescaped
/// (RFC 3986), all of which `http::Uri` accepts too.
fn plain(b: u8) -> bool {
    PLAIN[usize::from(b)]
}

/// The punctuation [`plain`] lets through.
const PLAIN_PUNCTUATION: &[u8] = b"-._~!$&'()*+,;=:@/";

/// [`plain`] for every byte, worked out at compile time: every byte of every request's path
/// is checked. Tested byte by byte (a range check, then a search of the punctuation list),
/// the path took about a quarter of the samples in the connection task's own code at c=32;
/// with one load per byte, reading a head takes a quarter less time (docs/benchmarks.md, the
/// fourteenth pass).
const PLAIN: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let mut i = 0;
    while i < PLAIN_PUNCTUATION.len() {
        table[PLAIN_PUNCTUATION[i] as usize] = true;
        i += 1;
    }
    table
};

enum Answer {
    /// Answered and settled; the connection may go on.
    Served,
    /// Not the lane's: hyper answers this request.
    Declined,
    /// The write failed or the fence closed it; a lease taken was released, and the
    /// connection ends.
    Cut,
}

async fn answer(
    io: &mut FlushTracked<TcpStream>,
    info: &ConnInfo,
    app: &App,
    request: &Request<'_>,
    head_out: &mut Vec<u8>,
) -> Answer {
    let start = Instant::now();
    // The gate reads the one header that can name the client; a map without it costs nothing.
    let mut forwarded = HeaderMap::new();
    if let Some(hops) = request.forwarded_for {
        let Ok(hops) = HeaderValue::from_bytes(hops) else {
            return Answer::Declined;
        };
        forwarded.insert(X_FORWARDED_FOR, hops);
    }
    let Ok(link) = Link::admit(app, request.token, info.clone(), &forwarded) else {
        return Answer::Declined;
    };
    let ready = match download::ready_small(app, &link).await {
        Ok(Some(ready)) => ready,
        Ok(None) => return Answer::Declined,
        Err(refusal) => return refuse(io, refusal, request, start, head_out).await,
    };
    let download::Ready {
        mut lease,
        bytes,
        audit,
        modified,
    } = ready;
    let id = info.state.fence_new(lease.valid_until());
    file_head(head_out, &link.claims, modified, bytes.len() as u64);
    let kept = Kept {
        lease: &lease,
        conn: &info.state,
        id,
    };
    let body = bytes.len() as u64;
    // The one writer of an `aborted` line for the lane: on a failed write below, and when
    // this future is dropped mid-write (the shutdown's grace period ended first), as a
    // download hyper serves says it from its supervisor. The lease is released by its drop.
    let unfinished = AbortedIfDropped(&audit, body);
    let written = write_out(io, head_out, &bytes, Some(kept)).await;
    info.state.lift_fence(id);
    // As the router's edge counts it: the response was 200 whether or not its body got out.
    crate::metrics::request_finished("GET", request.route, 200, start.elapsed());
    match written {
        Ok(()) => {
            std::mem::forget(unfinished);
            // The connection's next request waits for nothing but this process: a commit
            // that goes to Redis (a round trip, perhaps a replica `WAIT`) runs on its own, as
            // hyper's downloads settle on their own, and on the tracker that shutdown drains,
            // so a delivered link is burned before the process exits.
            if lease.commits_in_process() {
                delivery::burn(&mut lease, body, &audit).await;
            } else {
                app.tasks
                    .spawn(async move { delivery::burn(&mut lease, body, &audit).await });
            }
            Answer::Served
        }
        Err(e) => {
            tracing::debug!(error = %e, peer = %info.peer, "a download was cut");
            drop(unfinished);
            lease.release().await;
            Answer::Cut
        }
    }
}

/// Writes a download's `aborted` audit line when dropped; forgotten once the write succeeds.
struct AbortedIfDropped<'a>(&'a TransferAudit, u64);

impl Drop for AbortedIfDropped<'_> {
    fn drop(&mut self) {
        self.0.log("aborted", self.1);
    }
}

/// What a write keeps while a slow client takes the bytes: a download's lease, and the
/// connection's fence for its transfer.
struct Kept<'a> {
    lease: &'a Lease,
    conn: &'a ConnState,
    id: u64,
}

/// Writes `head` and `body`: in one `writev` unless the client reads slowly. Then, for a
/// download, each time bytes go out the lease is renewed unless it is fresh, and the fence
/// moves with it, as hyper's downloads renew on progress; a client that stops reading meets
/// the fence or the write-idle timeout.
async fn write_out(
    io: &mut FlushTracked<TcpStream>,
    head: &[u8],
    body: &[u8],
    kept: Option<Kept<'_>>,
) -> io::Result<()> {
    let mut parts = [IoSlice::new(head), IoSlice::new(body)];
    let mut left = &mut parts[..];
    while !left.is_empty() {
        let n = io.write_vectored(left).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut left, n);
        if let Some(k) = &kept
            && !left.is_empty()
            && !k.lease.fresh()
        {
            delivery::renew_fenced(k.lease, k.conn, k.id).await;
        }
    }
    Ok(())
}

/// The ledger's refusal of a link the gate let in (spent, busy, revoked, ledger unreachable),
/// answered by the one error map as the handler would answer it. Not handed to hyper: the
/// handler would ask the ledger again, and wait a second time for one that hangs. These
/// answers are not failed token checks, so the rate limiter has nothing to count.
async fn refuse(
    io: &mut FlushTracked<TcpStream>,
    refusal: ApiError,
    request: &Request<'_>,
    start: Instant,
    head_out: &mut Vec<u8>,
) -> Answer {
    let (parts, body) = refusal.into_response().into_parts();
    let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
        return Answer::Cut;
    };
    let mut headers = parts.headers;
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    response_head(head_out, parts.status, &headers);
    let written = write_out(io, head_out, &body, None).await;
    crate::metrics::request_finished("GET", request.route, parts.status.as_u16(), start.elapsed());
    match written {
        Ok(()) => Answer::Served,
        Err(_) => Answer::Cut,
    }
}

/// A response head with `status`, `headers` and the date, as hyper writes it (lower-case
/// names, `date` last).
pub fn response_head(out: &mut Vec<u8>, status: StatusCode, headers: &HeaderMap) {
    status_line(out, status);
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    end_with_date(out);
}

/// A file's `200 OK` head: the fields hyper's download would carry, in its order
/// ([`download::file_fields`]), written straight into `out` without a map, then the date.
pub fn file_head(
    out: &mut Vec<u8>,
    claims: &Claims,
    modified: Option<std::time::SystemTime>,
    len: u64,
) {
    status_line(out, StatusCode::OK);
    download::file_fields(&mut HeadFields(out), claims, modified, len);
    end_with_date(out);
}

fn status_line(out: &mut Vec<u8>, status: StatusCode) {
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn end_with_date(out: &mut Vec<u8>) {
    out.extend_from_slice(b"date: ");
    date::now(|d| out.extend_from_slice(d));
    out.extend_from_slice(b"\r\n\r\n");
}

/// The `Date` field's value, formatted once a second per thread, on the stack: a head never
/// allocates, whichever second it is written in.
mod date {
    use std::cell::RefCell;
    use std::io::Write;
    use std::time::{Duration, UNIX_EPOCH};

    /// An IMF-fixdate is 29 bytes (`Sun, 06 Nov 1994 08:49:37 GMT`).
    const LEN: usize = 29;

    thread_local! {
        pub(super) static CACHED: RefCell<(u64, [u8; LEN])> = const { RefCell::new((u64::MAX, [0; LEN])) };
    }

    pub fn now(use_it: impl FnOnce(&[u8])) {
        // The field names a second, so the kernel's clock as of its last tick (a few ms at
        // most behind) does: reading it skips the timestamp counter that a precise reading
        // takes, once per response.
        let second = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse).tv_sec;
        let second = u64::try_from(second).unwrap_or(0);
        CACHED.with_borrow_mut(|(at, text)| {
            if *at != second {
                *at = second;
                let now = UNIX_EPOCH + Duration::from_secs(second);
                // httpdate writes exactly LEN bytes for any time it can represent.
                let _ = write!(&mut text[..], "{}", httpdate::HttpDate::from(now));
            }
            use_it(&text[..]);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(lines: &str) -> String {
        format!("{lines}\r\n\r\n")
    }

    #[test]
    fn the_lane_takes_plain_downloads() {
        for (path, route) in [
            ("/transfer/abc", "/transfer/{token}"),
            ("/transfer/abc/report.pdf", "/transfer/{token}/{name}"),
            ("/api/download/abc", "/api/download/{token}"),
        ] {
            let text = head(&format!(
                "GET {path} HTTP/1.1\r\nHost: x\r\nAccept: */*\r\nConnection: Keep-Alive"
            ));
            let request = parse(text.as_bytes()).expect(path);
            assert_eq!((request.token, request.route), ("abc", route));
            assert_eq!(request.len, text.len());
            assert_eq!(request.forwarded_for, None);
        }
        let text = head("GET /transfer/abc HTTP/1.1\r\nX-Forwarded-For: 203.0.113.9, 10.0.0.1");
        let request = parse(text.as_bytes()).expect("one forwarded-for");
        assert_eq!(request.forwarded_for, Some(&b"203.0.113.9, 10.0.0.1"[..]));
    }

    #[test]
    fn everything_else_is_left_to_hyper() {
        for text in [
            head("HEAD /transfer/abc HTTP/1.1"),
            head("POST /transfer/abc HTTP/1.1"),
            head("GET /transfer/abc HTTP/1.0"),
            head("GET /transfer/abc?x=1 HTTP/1.1"),
            head("GET /transfer/a%62c HTTP/1.1"),
            head("GET /transfer/abc/a<b HTTP/1.1"),
            head("GET /transfer/abc/a\"b HTTP/1.1"),
            head("GET /transfer/ HTTP/1.1"),
            head("GET /transfer/abc/ HTTP/1.1"),
            head("GET /transfer/abc/a/b HTTP/1.1"),
            head("GET /api/download/abc/x HTTP/1.1"),
            head("GET /api/links HTTP/1.1"),
            head("GET http://x/transfer/abc HTTP/1.1"),
            head("GET /transfer/abc HTTP/1.1\r\nRange: bytes=0-1"),
            head("GET /transfer/abc HTTP/1.1\r\nconnection: close"),
            head("GET /transfer/abc HTTP/1.1\r\nTransfer-Encoding: chunked"),
            head("GET /transfer/abc HTTP/1.1\r\nContent-Length: 0"),
            head("GET /transfer/abc HTTP/1.1\r\nAccept: text/html,*/*;q=0.8"),
            head("GET /transfer/abc HTTP/1.1\r\nX-Forwarded-For: a\r\nX-Forwarded-For: b"),
            // Not complete yet.
            "GET /transfer/abc HTTP/1.1\r\nHost: x\r\n".to_string(),
        ] {
            assert!(parse(text.as_bytes()).is_none(), "{text:?}");
        }
    }

    /// The table holds RFC 3986's unreserved characters, its sub-delimiters, `:`, `@` and
    /// `/`, and no other byte; `http::Uri` takes each of them in a path.
    #[test]
    fn plain_is_the_unescaped_path_set() {
        let (unreserved, sub_delims, others) = (&b"-._~"[..], &b"!$&'()*+,;="[..], &b":@/"[..]);
        for b in 0..=255u8 {
            let listed = [unreserved, sub_delims, others].concat().contains(&b);
            let want = b.is_ascii_alphanumeric() || listed;
            assert_eq!(plain(b), want, "byte {b:#04x}");
            if want {
                let path = format!("/transfer/a{}b", char::from(b));
                assert!(path.parse::<axum::http::Uri>().is_ok(), "{path:?}");
            }
        }
    }

    /// What the bench `express` times, held here to no allocation: reading a head, and
    /// writing one into a buffer the connection keeps, in any second (the date included).
    #[test]
    fn reading_and_writing_heads_allocates_nothing() {
        let text = head("GET /transfer/abc/report.pdf HTTP/1.1\r\nHost: x\r\nAccept: */*");
        let mut headers = HeaderMap::new();
        headers.insert("content-type", "text/plain".parse().unwrap());
        let mut out = Vec::with_capacity(512);
        response_head(&mut out, StatusCode::OK, &headers);
        let before = out.clone();
        // The date cache is as cold as at each new second.
        date::CACHED.with_borrow_mut(|(at, _)| *at = u64::MAX);
        let made = crate::alloc_count::allocations(|| {
            assert!(parse(text.as_bytes()).is_some());
            response_head(&mut out, StatusCode::OK, &headers);
        });
        assert_eq!(made, 0);
        assert_eq!(out.len(), before.len());
    }

    /// The coarse clock the field is read from is the wall clock, a tick behind at most.
    #[test]
    fn the_date_is_the_wall_clocks() {
        for _ in 0..3 {
            let before = std::time::SystemTime::now() - std::time::Duration::from_secs(2);
            let mut text = Vec::new();
            date::now(|d| text.extend_from_slice(d));
            let after = std::time::SystemTime::now();
            let at = httpdate::parse_http_date(std::str::from_utf8(&text).unwrap()).unwrap();
            assert!(before <= at && at <= after, "{:?}", String::from_utf8(text));
            std::thread::sleep(std::time::Duration::from_millis(400));
        }
    }

    /// The lane's head for a file is the one written from the map hyper's download carries:
    /// the same fields in the same order, byte for byte, whatever the name and the date.
    #[test]
    fn a_files_head_is_the_one_its_map_gives() {
        use crate::http::transfer::download::file_headers;
        use crate::http::transfer::values::Values;
        use crate::token::Direction;
        use std::time::{Duration, UNIX_EPOCH};
        let without_date = |head: Vec<u8>| {
            let text = String::from_utf8(head).unwrap();
            let at = text.find("date: ").expect("a date");
            assert!(text.ends_with(" GMT\r\n\r\n"), "{text}");
            text[..at].to_string()
        };
        for (path, modified) in [
            (
                "dir/résumé 2026.pdf",
                Some(UNIX_EPOCH + Duration::from_secs(784_111_777)),
            ),
            ("noext", None),
            (
                "a\"b%\\c.XLSM",
                Some(UNIX_EPOCH - Duration::from_secs(86_400)),
            ),
            (
                "..",
                Some(UNIX_EPOCH + Duration::from_secs(253_402_300_800)),
            ),
            ("bidi\u{202E}txt.exe", Some(UNIX_EPOCH)),
        ] {
            let claims = Claims::new(Direction::Download, None, path.into(), 60);
            let mut map = HeaderMap::new();
            file_headers(&mut map, &claims, modified, 4096, &mut Values::default());
            let (mut from_map, mut direct) = (Vec::new(), Vec::new());
            response_head(&mut from_map, StatusCode::OK, &map);
            file_head(&mut direct, &claims, modified, 4096);
            assert_eq!(without_date(direct), without_date(from_map), "{path}");
        }
    }

    /// A connection's buffer, once large enough, takes each later file's head without an
    /// allocation.
    #[test]
    fn a_files_head_allocates_nothing() {
        use crate::token::Direction;
        let claims = Claims::new(Direction::Download, None, "dir/résumé 2026.xlsm".into(), 60);
        let modified = Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(784_111_777));
        let mut out = Vec::with_capacity(512);
        file_head(&mut out, &claims, modified, 4096);
        let made = crate::alloc_count::allocations(|| {
            for len in [10, 4096, u64::MAX] {
                file_head(&mut out, &claims, modified, len);
            }
        });
        assert_eq!(made, 0);
    }

    #[test]
    fn the_head_is_hypers() {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", "text/plain".parse().unwrap());
        headers.insert("content-length", "4".parse().unwrap());
        let mut out = Vec::new();
        response_head(&mut out, StatusCode::OK, &headers);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 4\r\ndate: "
            ),
            "{text}"
        );
        assert!(text.ends_with(" GMT\r\n\r\n"), "{text}");
    }
}
