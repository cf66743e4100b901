//! `burnlink get URL`: downloads a link into a `.part` file beside the destination, resumes it
//! with a `Range` request after a dropped connection (the server burns the link only with the
//! file's final byte, so a drop costs nothing but time), checks what arrived (the size; for a
//! directory, that the zip is whole), and only then renames it into place.
//!
//! Beside the `.part` a small record, `NAME.part.burnlink` (JSON), says which link its bytes
//! came from (the link's short id, never the token) and what the server said of the file (its
//! size and `Last-Modified`). Bytes are appended only to a `.part` of the same link and the
//! same file, so a stale `.part` (another link, a file changed since) is never spliced onto;
//! and a `.part` recorded whole is put in place without asking the server, which has burned the
//! link by then. The `.part` is held under an advisory lock (`flock`) while a run works on it,
//! so two runs to one destination cannot interleave their bytes.

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use hyper::{Method, Request, StatusCode, header};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::progress::{Mode, Progress};
use super::{ClientError, IDLE, Link, Retry, header_str, next_chunk, refusal};
use crate::http_client::{self, HttpClient};
use crate::token::{Direction, hex, read_unverified};

pub struct GetOptions {
    pub url: String,
    /// `-o FILE`: where to save (a directory: under the link's file name in it); otherwise
    /// under the link's file name in the current directory.
    pub output: Option<PathBuf>,
    pub force: bool,
    pub quiet: bool,
    pub retries: u32,
    pub cacert: Option<PathBuf>,
}

/// What a `HEAD` (which never burns) says about the link's file.
#[derive(Debug, Default)]
struct Meta {
    name: Option<String>,
    /// The file's size; unknown for a directory (its zip is built while it streams).
    size: Option<u64>,
    last_modified: Option<String>,
}

impl Meta {
    fn of(response: &hyper::Response<hyper::body::Incoming>) -> Meta {
        let ranges = header_str(response, "accept-ranges") == Some("bytes");
        Meta {
            // Read as bytes, not as visible ASCII: a server may put the name's UTF-8 in the
            // quoted `filename` (burnlink's does, beside `filename*`), and a value that is not
            // ASCII would otherwise lose the name altogether.
            name: response
                .headers()
                .get(header::CONTENT_DISPOSITION)
                .map(|v| String::from_utf8_lossy(v.as_bytes()))
                .as_deref()
                .and_then(disposition_name),
            size: ranges
                .then(|| super::header_u64(response, "content-length"))
                .flatten(),
            last_modified: header_str(response, "last-modified").map(str::to_string),
        }
    }
}

/// The record beside a `.part`: whose bytes it holds, of which file.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    /// The link's short id (the start of its nonce, as the server's audit lines show it).
    link: String,
    /// The file's size; for a directory's zip, set only once the whole zip arrived and was
    /// checked. A `.part` this long is whole.
    size: Option<u64>,
    last_modified: Option<String>,
}

/// Downloads the link; returns where the file now is.
pub async fn get(options: GetOptions) -> Result<PathBuf, ClientError> {
    let link = Link::parse(&options.url)?;
    let claims = read_unverified(&link.token).ok();
    // The server would answer `not_found` (a wrong direction looks like no link at all);
    // the holder of the link can be told plainly.
    if claims
        .as_ref()
        .is_some_and(|c| c.direction == Direction::Upload)
    {
        return Err(ClientError::Local(
            "that is an upload link: `burnlink put URL FILE` sends a file to it".into(),
        ));
    }
    let identity = match &claims {
        Some(c) => c.short_id(),
        // Not a token this build can read: a digest of it, which cannot be turned back.
        None => hex(&Sha256::digest(link.token.as_bytes())[..6]),
    };
    let hinted_name = link
        .name_hint
        .as_deref()
        .and_then(safe_name)
        .unwrap_or_else(|| "download".to_string());
    let hinted = destination(options.output.as_deref(), &hinted_name);
    // An earlier run got every byte (and then stopped, or found the destination taken): the
    // link is burned by now, and the bytes need no server.
    if let Some(done) = place_whole(&hinted, &identity, options.force, options.quiet)? {
        return Ok(done);
    }
    let http =
        http_client::client_with(IDLE, options.cacert.as_deref()).map_err(ClientError::Local)?;
    let mut retry = Retry::new(options.retries);
    let meta = match head(&http, &link, &mut retry).await {
        Ok(meta) => meta,
        Err(e) => return Err(kept_for_later(e, &hinted, &identity)),
    };
    let name = meta
        .as_ref()
        .and_then(|m| m.name.clone())
        .unwrap_or(hinted_name);
    let dest = destination(options.output.as_deref(), &name);
    if dest != hinted
        && let Some(done) = place_whole(&dest, &identity, options.force, options.quiet)?
    {
        return Ok(done);
    }
    if !options.force && dest.exists() {
        return Err(ClientError::exists(&dest, None));
    }
    let part = Part::open(&part_path(&dest), true)?.ok_or_else(|| {
        ClientError::Local(format!("{}: cannot be created", part_path(&dest).display()))
    })?;
    let meta = meta.unwrap_or_default();
    let mut progress = Progress::new(
        Mode::pick(options.quiet),
        format!("get {name}"),
        meta.size,
        0,
    );
    let result = fetch(
        &http,
        &link,
        &identity,
        &meta,
        &part,
        &mut retry,
        &mut progress,
    )
    .await;
    let archive = match result {
        Ok(archive) => archive,
        Err(e) => {
            progress.abandon();
            return Err(part.give_up(e, &identity));
        }
    };
    progress.finish();
    let checked = part.path.clone();
    if archive {
        let verdict = tokio::task::spawn_blocking(move || check_zip(&checked))
            .await
            .map_err(|e| ClientError::Local(e.to_string()))?;
        if let Err(e) = verdict {
            return Err(part.give_up(e, &identity));
        }
    }
    // Whole and checked: recorded as such, so a run after a failed rename below places it.
    let len = part.len()?;
    let mut record = part.record().unwrap_or_default();
    record.link = identity;
    record.size = Some(len);
    part.write_record(&record)?;
    match place(&part.path, &dest, options.force) {
        Ok(()) => {
            part.forget();
            Ok(dest)
        }
        Err(ClientError::Exists(_)) => Err(ClientError::exists(&dest, Some((&part.path, len)))),
        Err(e) => Err(e),
    }
}

/// A failure before the `.part` was touched: the error names the bytes it keeps for this
/// link, if any, as after a failed transfer.
fn kept_for_later(error: ClientError, dest: &Path, identity: &str) -> ClientError {
    match Part::open(&part_path(dest), false) {
        Ok(Some(part)) if part.record().is_some_and(|r| r.link == identity) => match part.len() {
            Ok(len) if len > 0 => error.keeping(&part.path, len),
            _ => error,
        },
        _ => error,
    }
}

/// `-o DIR`: under the name in that directory; `-o FILE`: that file; else the name here.
fn destination(output: Option<&Path>, name: &str) -> PathBuf {
    match output {
        Some(dir) if dir.is_dir() => dir.join(name),
        Some(file) => file.to_path_buf(),
        None => PathBuf::from(name),
    }
}

/// Puts a `.part` recorded whole for this link in place, without a request. `None` when there
/// is none (or it is not whole, or another link's).
fn place_whole(
    dest: &Path,
    identity: &str,
    force: bool,
    quiet: bool,
) -> Result<Option<PathBuf>, ClientError> {
    let Some(part) = Part::open(&part_path(dest), false)? else {
        return Ok(None);
    };
    let len = part.len()?;
    let whole = part
        .record()
        .is_some_and(|r| r.link == identity && r.size == Some(len));
    if !whole {
        return Ok(None);
    }
    if !force && dest.exists() {
        return Err(ClientError::exists(dest, Some((&part.path, len))));
    }
    match place(&part.path, dest, force) {
        Ok(()) => {}
        Err(ClientError::Exists(_)) => {
            return Err(ClientError::exists(dest, Some((&part.path, len))));
        }
        Err(e) => return Err(e),
    }
    part.forget();
    if !quiet {
        eprintln!(
            "burnlink: get {}: every byte was in {} already ({len} bytes)",
            dest.display(),
            part.path.display()
        );
    }
    Ok(Some(dest.to_path_buf()))
}

/// The `.part` file, open and locked (`flock`, exclusive) for as long as this value lives, with
/// its record beside it.
struct Part {
    path: PathBuf,
    record_path: PathBuf,
    file: std::fs::File,
}

impl Part {
    /// Opens and locks the `.part` (creating it when `create`; `None` when it is missing and
    /// not to be created). Another run holding it is an error at once: waiting would only
    /// fetch what that run is fetching.
    fn open(path: &Path, create: bool) -> Result<Option<Part>, ClientError> {
        let local = |e: std::io::Error| ClientError::Local(format!("{}: {e}", path.display()));
        // A run that finished meanwhile removed the name it locked: lock what the name is now.
        for _ in 0..8 {
            let file = match std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(create)
                .truncate(false)
                .open(path)
            {
                Ok(f) => f,
                Err(e) if !create && e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(local(e)),
            };
            match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => {}
                Err(rustix::io::Errno::WOULDBLOCK) => {
                    return Err(ClientError::Local(format!(
                        "{}: another `burnlink get` is downloading into it",
                        path.display()
                    )));
                }
                Err(e) => return Err(local(e.into())),
            }
            let held = file.metadata().map_err(local)?;
            match std::fs::metadata(path) {
                Ok(now) if now.dev() == held.dev() && now.ino() == held.ino() => {
                    let mut record_path = path.as_os_str().to_os_string();
                    record_path.push(".burnlink");
                    return Ok(Some(Part {
                        path: path.to_path_buf(),
                        record_path: record_path.into(),
                        file,
                    }));
                }
                Err(e) if !create && e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                _ => continue,
            }
        }
        Err(ClientError::Local(format!(
            "{}: kept changing while it was being locked",
            path.display()
        )))
    }

    fn len(&self) -> Result<u64, ClientError> {
        self.file
            .metadata()
            .map(|m| m.len())
            .map_err(|e| ClientError::Local(format!("{}: {e}", self.path.display())))
    }

    /// The record, when there is one that reads.
    fn record(&self) -> Option<Record> {
        let text = std::fs::read(&self.record_path).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Written in place: only a run holding the lock reads or writes it, and a torn record
    /// does not parse, so the `.part` is then merely not trusted.
    fn write_record(&self, record: &Record) -> Result<(), ClientError> {
        let json = serde_json::to_vec(record).unwrap_or_default();
        std::fs::write(&self.record_path, json)
            .map_err(|e| ClientError::Local(format!("{}: {e}", self.record_path.display())))
    }

    /// The `.part` became the destination: its record goes.
    fn forget(&self) {
        let _ = std::fs::remove_file(&self.record_path);
    }

    /// After a failure: the `.part` stays for a later run when it holds this link's bytes, and
    /// the error says so; an empty one, or one that failed a check, goes.
    fn give_up(&self, error: ClientError, identity: &str) -> ClientError {
        let len = self.len().unwrap_or(0);
        if len == 0 || matches!(error, ClientError::Verify(_)) {
            let _ = std::fs::remove_file(&self.path);
            self.forget();
            return error;
        }
        if self.record().is_some_and(|r| r.link == identity) {
            error.keeping(&self.path, len)
        } else {
            error
        }
    }
}

/// `HEAD` for the name, size and `Last-Modified`, retried as a `GET` is through passing
/// trouble (overload, a restart). `None` when the server refuses for good: the `GET` that
/// follows learns why from the error body (`HEAD` has none), and an error answer never burns
/// the link.
async fn head(
    http: &HttpClient,
    link: &Link,
    retry: &mut Retry,
) -> Result<Option<Meta>, ClientError> {
    loop {
        retry.attempt()?;
        let request = request(link, Method::HEAD, None)?;
        match tokio::time::timeout(IDLE, http.send(request)).await {
            Ok(Ok(response)) if response.status() == StatusCode::OK => {
                return Ok(Some(Meta::of(&response)));
            }
            Ok(Ok(response)) => {
                let error = refusal(link, response).await;
                if !error.is_transient() {
                    return Ok(None);
                }
                wait(retry, error, None).await?;
            }
            Ok(Err(e)) => wait(retry, link.transport_error(&e), None).await?,
            Err(_) => wait(retry, ClientError::Network("no answer".into()), None).await?,
        }
    }
}

/// Sleeps before the next attempt, or returns the error when there is to be none.
async fn wait(
    retry: &mut Retry,
    error: ClientError,
    progress: Option<&Progress>,
) -> Result<(), ClientError> {
    let pause = retry.failed(error.clone())?;
    if let Some(p) = progress {
        p.note(&format!("{error}; retrying in {:.1}s", pause.as_secs_f64()));
    }
    tokio::time::sleep(pause).await;
    Ok(())
}

fn request(
    link: &Link,
    method: Method,
    range_from: Option<u64>,
) -> Result<Request<http_client::Body>, ClientError> {
    let mut builder = Request::builder()
        .method(method)
        .uri(link.uri.clone())
        // Not `text/html`: a browser's Accept gets the confirmation page, not the bytes.
        .header(header::ACCEPT, "*/*")
        .header(header::USER_AGENT, http_client::USER_AGENT);
    if let Some(from) = range_from {
        builder = builder.header(header::RANGE, format!("bytes={from}-"));
    }
    builder
        .body(http_client::full(bytes::Bytes::new()))
        .map_err(|_| ClientError::Local(format!("not a valid URL: {}", link.shown)))
}

/// Both known and different: a file changed, or another one.
fn differ<T: PartialEq>(a: Option<&T>, b: Option<&T>) -> bool {
    matches!((a, b), (Some(a), Some(b)) if a != b)
}

/// The transfer loop: each attempt asks for what the `.part` file lacks. Returns whether the
/// body was a directory's zip.
async fn fetch(
    http: &HttpClient,
    link: &Link,
    identity: &str,
    meta: &Meta,
    part: &Part,
    retry: &mut Retry,
    progress: &mut Progress,
) -> Result<bool, ClientError> {
    let local = |e: std::io::Error| ClientError::Local(format!("{}: {e}", part.path.display()));
    let mut size = meta.size;
    let mut modified = meta.last_modified.clone();
    // What the `.part` holds is resumed only when it is this link's bytes of this file. Else
    // it is asked for from the start, and replaced only once the server's bytes come (a
    // refusal leaves it as it was).
    let mut trusted = match part.record() {
        Some(r)
            if r.link == identity
                && !differ(r.size.as_ref(), meta.size.as_ref())
                && !differ(r.last_modified.as_ref(), meta.last_modified.as_ref()) =>
        {
            size = size.or(r.size);
            modified = modified.or(r.last_modified);
            true
        }
        _ => false,
    };
    let mut announced = false;
    let mut reached = 0;
    loop {
        retry.attempt()?;
        let len = part.len()?;
        if size.is_some_and(|s| len > s) {
            trusted = false;
        }
        let have = if trusted { len } else { 0 };
        if have > 0 && Some(have) == size {
            // A `.part` already whole (an earlier run stopped before renaming it).
            progress.set(have);
            return Ok(false);
        }
        if !announced && have > 0 {
            progress.note(&format!("resuming at byte {have}"));
        }
        if !announced || have < reached {
            progress.restart_at(have);
        }
        announced = true;
        // With bytes in hand, a range is asked for even when the server's support for it is
        // unknown (no `HEAD` answer): 206, 200 or 416 says what to do with them.
        let request = request(link, Method::GET, (have > 0).then_some(have))?;
        let response = match tokio::time::timeout(IDLE, http.send(request)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                wait(retry, link.transport_error(&e), Some(&*progress)).await?;
                continue;
            }
            Err(_) => {
                wait(
                    retry,
                    ClientError::Network("no answer".into()),
                    Some(&*progress),
                )
                .await?;
                continue;
            }
        };
        let status = response.status();
        let answer_modified = header_str(&response, "last-modified").map(str::to_string);
        let start = match status {
            StatusCode::OK => {
                let m = Meta::of(&response);
                size = m.size;
                modified = m.last_modified;
                progress.set_total(size);
                if have > 0 {
                    progress.restart_at(0);
                }
                0
            }
            StatusCode::PARTIAL_CONTENT => {
                match header_str(&response, "content-range").and_then(content_range) {
                    Some((from, total))
                        if from == have
                            && size.is_none_or(|s| s == total)
                            && !differ(modified.as_ref(), answer_modified.as_ref()) =>
                    {
                        size = Some(total);
                        modified = modified.or(answer_modified);
                        progress.set_total(size);
                        from
                    }
                    // Not the range asked for, or the file changed: start over.
                    _ => {
                        trusted = false;
                        continue;
                    }
                }
            }
            StatusCode::RANGE_NOT_SATISFIABLE => {
                trusted = false;
                continue;
            }
            s if s.is_client_error() || s.is_server_error() => {
                let error = refusal(link, response).await;
                wait(retry, error, Some(&*progress)).await?;
                continue;
            }
            s => {
                return Err(ClientError::Local(format!(
                    "unexpected answer {s} from {}",
                    link.shown
                )));
            }
        };
        let archive = header_str(&response, "content-type") == Some("application/zip")
            && header_str(&response, "accept-ranges") != Some("bytes");
        // From here the `.part` holds this link's bytes of this file (cut first: a record
        // must never vouch for bytes another link left).
        let mut file = &part.file;
        file.set_len(start).map_err(local)?;
        part.write_record(&Record {
            link: identity.to_string(),
            size: if archive { None } else { size },
            last_modified: modified.clone(),
        })?;
        trusted = true;
        file.seek(SeekFrom::Start(start)).map_err(local)?;
        let mut out = std::io::BufWriter::with_capacity(256 << 10, file);
        let mut body = response.into_body();
        let mut at = start;
        let outcome = loop {
            match next_chunk(&mut body).await {
                Ok(Some(chunk)) => {
                    out.write_all(&chunk).map_err(local)?;
                    at += chunk.len() as u64;
                    retry.progressed();
                    progress.set(at);
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        out.flush().map_err(local)?;
        drop(out);
        reached = at;
        match outcome {
            Ok(()) => match size {
                Some(s) if at < s => {
                    let e = ClientError::Network(format!("the answer ended at byte {at} of {s}"));
                    wait(retry, e, Some(&*progress)).await?;
                }
                Some(s) if at > s => {
                    return Err(ClientError::Verify(format!(
                        "received {at} bytes, the server announced {s}"
                    )));
                }
                _ => {
                    part.file.sync_all().map_err(local)?;
                    return Ok(archive);
                }
            },
            Err(e) => {
                let e = ClientError::Network(format!("connection lost at byte {at}: {e}"));
                wait(retry, e, Some(&*progress)).await?;
            }
        }
    }
}

/// `bytes FROM-TO/TOTAL` → (FROM, TOTAL).
fn content_range(v: &str) -> Option<(u64, u64)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (span, total) = rest.split_once('/')?;
    let (from, _) = span.split_once('-')?;
    Some((from.trim().parse().ok()?, total.trim().parse().ok()?))
}

/// `NAME.part` beside the destination.
fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    dest.with_file_name(name)
}

/// Reads every entry of the archive to its end, so each entry's CRC-32 and size are checked,
/// and the central directory must be there: a zip cut short fails here.
fn check_zip(path: &Path) -> Result<(), ClientError> {
    let bad = |e: String| ClientError::Verify(format!("the directory's zip is not whole: {e}"));
    let file = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
    let mut archive =
        zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|e| bad(e.to_string()))?;
    let mut buf = vec![0u8; 64 << 10];
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(|e| bad(e.to_string()))?;
        loop {
            match entry.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => return Err(bad(format!("entry {i}: {e}"))),
            }
        }
    }
    Ok(())
}

/// Moves the checked `.part` into place: never over an existing file without `--force`, even
/// one that appeared during the download (a hard link fails when the name is taken).
fn place(part: &Path, dest: &Path, force: bool) -> Result<(), ClientError> {
    let local = |e: std::io::Error| ClientError::Local(format!("{}: {e}", dest.display()));
    if force {
        return std::fs::rename(part, dest).map_err(local);
    }
    match std::fs::hard_link(part, dest) {
        Ok(()) => std::fs::remove_file(part).map_err(local),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(ClientError::Exists(dest.display().to_string()))
        }
        // A file system without hard links: check, then rename.
        Err(_) if dest.exists() => Err(ClientError::Exists(dest.display().to_string())),
        Err(_) => std::fs::rename(part, dest).map_err(local),
    }
}

/// The file name from `Content-Disposition`: `filename*` (RFC 5987, UTF-8) first, then
/// `filename`; made safe to create in the current directory.
pub fn disposition_name(value: &str) -> Option<String> {
    let mut plain = None;
    let mut extended = None;
    for param in split_params(value) {
        let Some((key, val)) = param.split_once('=') else {
            continue;
        };
        match key.trim().to_ascii_lowercase().as_str() {
            "filename*" => {
                let val = val.trim();
                let encoded = val
                    .strip_prefix("UTF-8''")
                    .or_else(|| val.strip_prefix("utf-8''"));
                extended = encoded.map(|e| {
                    percent_encoding::percent_decode_str(e)
                        .decode_utf8_lossy()
                        .into_owned()
                });
            }
            "filename" => {
                let val = val.trim();
                let unquoted = val
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .map(|v| v.replace("\\\"", "\"").replace("\\\\", "\\"))
                    .unwrap_or_else(|| val.to_string());
                plain = Some(unquoted);
            }
            _ => {}
        }
    }
    extended
        .as_deref()
        .and_then(safe_name)
        .or_else(|| plain.as_deref().and_then(safe_name))
}

/// `;`-separated parameters, with `;` inside a quoted string kept.
fn split_params(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ';' if !quoted => {
                out.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&value[start..]);
    out
}

/// The longest name derived from the destination's: the `.part` file's record.
const LONGEST_SUFFIX: &str = ".part.burnlink";

/// Most file systems take names of at most 255 bytes.
const NAME_MAX: usize = 255;

/// A name safe to create here: its last component only (no `/` or `\`), no control or
/// bidirectional control characters, not `.`/`..`, not hidden, and short enough that the
/// longest name made from it (`NAME.part.burnlink`) fits 255 bytes: a longer stem is cut,
/// its extension kept.
pub fn safe_name(raw: &str) -> Option<String> {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = last
        .chars()
        .filter(|c| !crate::text::is_unsafe(*c))
        .collect();
    let cleaned = cleaned.trim().trim_start_matches('.').to_string();
    if cleaned.is_empty() {
        return None;
    }
    let max = NAME_MAX - LONGEST_SUFFIX.len();
    if cleaned.len() <= max {
        return Some(cleaned);
    }
    // The extension (a short tail after the last dot) says what the file is: keep it.
    let ext = cleaned
        .rfind('.')
        .map(|i| &cleaned[i..])
        .filter(|e| e.len() <= 32)
        .unwrap_or("");
    let stem = &cleaned[..cleaned.len() - ext.len()];
    let mut end = max - ext.len();
    while !stem.is_char_boundary(end) {
        end -= 1;
    }
    Some(format!("{}{ext}", &stem[..end]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_content_disposition_cannot_leave_the_directory() {
        let cd = "attachment; filename=\"q3.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf";
        assert_eq!(disposition_name(cd).as_deref(), Some("résumé.pdf"));
        assert_eq!(
            disposition_name("attachment; filename=\"a;b.txt\"").as_deref(),
            Some("a;b.txt")
        );
        assert_eq!(
            disposition_name("attachment; filename*=UTF-8''..%2F..%2Fetc%2Fpasswd").as_deref(),
            Some("passwd")
        );
        assert_eq!(
            disposition_name("attachment; filename=\"..\\\\evil.exe\"").as_deref(),
            Some("evil.exe")
        );
        assert_eq!(disposition_name("attachment; filename=\"..\""), None);
        assert_eq!(
            disposition_name("attachment; filename*=UTF-8''a%E2%80%AEtxt.exe").as_deref(),
            Some("atxt.exe")
        );
        assert_eq!(disposition_name("attachment"), None);
    }

    /// A zip cut anywhere, even at an entry boundary, is not taken for a whole one.
    #[test]
    fn a_zip_cut_short_fails_the_check() {
        let dir = tempfile::tempdir().unwrap();
        let whole = dir.path().join("whole.zip");
        let mut writer = zip::ZipWriter::new(std::fs::File::create(&whole).unwrap());
        for name in ["a.txt", "b/c.bin"] {
            writer
                .start_file(name, zip::write::SimpleFileOptions::default())
                .unwrap();
            writer.write_all(&[7u8; 10_000]).unwrap();
        }
        writer.finish().unwrap();
        check_zip(&whole).unwrap();
        let bytes = std::fs::read(&whole).unwrap();
        let cut = dir.path().join("cut.zip");
        for len in [bytes.len() - 1, bytes.len() - 22, bytes.len() / 2, 30] {
            std::fs::write(&cut, &bytes[..len]).unwrap();
            assert!(
                matches!(check_zip(&cut), Err(ClientError::Verify(_))),
                "cut at {len} of {}",
                bytes.len()
            );
        }
    }

    #[test]
    fn content_range_is_read() {
        assert_eq!(content_range("bytes 100-199/1000"), Some((100, 1000)));
        assert_eq!(content_range("bytes */1000"), None);
    }

    #[test]
    fn a_long_name_is_cut_so_its_part_record_fits() {
        let long = format!("{}.tar.gz", "é".repeat(200));
        let name = safe_name(&long).unwrap();
        assert!(name.ends_with(".gz"), "{name}");
        assert!(name.starts_with("éé"));
        assert!(
            name.len() + LONGEST_SUFFIX.len() <= NAME_MAX,
            "{}",
            name.len()
        );
        let record = format!("{name}{LONGEST_SUFFIX}");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(&record), b"{}").expect("the longest derived name fits");
        let plain = "a".repeat(300);
        assert_eq!(
            safe_name(&plain).unwrap().len(),
            NAME_MAX - LONGEST_SUFFIX.len()
        );
        assert_eq!(safe_name("short.txt").as_deref(), Some("short.txt"));
        assert_eq!(
            safe_name("a\u{200E}b\u{200F}c\u{061C}.txt").as_deref(),
            Some("abc.txt")
        );
    }

    #[test]
    fn the_part_file_sits_beside_the_destination() {
        assert_eq!(
            part_path(Path::new("out/a.tar.gz")),
            PathBuf::from("out/a.tar.gz.part")
        );
    }
}
