//! `burnlink get URL`: downloads a link into a `.part` file beside the destination, resumes it
//! with a `Range` request after a dropped connection (the server burns the link only with the
//! file's final byte, so a drop costs nothing but time), checks what arrived (the size; for a
//! directory, that the zip is whole), and only then renames it into place.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use hyper::{Method, Request, StatusCode, header};

use super::progress::{Mode, Progress};
use super::{ClientError, IDLE, Link, Retry, header_str, next_chunk, refusal};
use crate::http_client::{self, HttpClient};
use crate::token::{Direction, read_unverified};

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
    /// The server takes ranges (files; a directory's zip does not).
    ranges: bool,
}

impl Meta {
    fn of(response: &hyper::Response<hyper::body::Incoming>) -> Meta {
        let ranges = header_str(response, "accept-ranges") == Some("bytes");
        Meta {
            name: header_str(response, "content-disposition").and_then(disposition_name),
            size: ranges
                .then(|| super::header_u64(response, "content-length"))
                .flatten(),
            ranges,
        }
    }
}

/// Downloads the link; returns where the file now is.
pub async fn get(options: GetOptions) -> Result<PathBuf, ClientError> {
    let link = Link::parse(&options.url)?;
    // The server would answer `not_found` (a wrong direction looks like no link at all);
    // the holder of the link can be told plainly.
    if read_unverified(&link.token).is_ok_and(|c| c.direction == Direction::Upload) {
        return Err(ClientError::Local(
            "that is an upload link: `burnlink put URL FILE` sends a file to it".into(),
        ));
    }
    let http =
        http_client::client_with(IDLE, options.cacert.as_deref()).map_err(ClientError::Local)?;
    let mut retry = Retry::new(options.retries);
    let meta = head(&http, &link, &mut retry).await?;
    let name = meta
        .as_ref()
        .and_then(|m| m.name.clone())
        .or_else(|| link.name_hint.as_deref().and_then(safe_name))
        .unwrap_or_else(|| "download".to_string());
    let dest = match options.output.clone() {
        // `-o DIR`: under the link's name in that directory.
        Some(dir) if dir.is_dir() => dir.join(&name),
        Some(file) => file,
        None => PathBuf::from(&name),
    };
    if !options.force && dest.exists() {
        return Err(ClientError::Exists(dest.display().to_string()));
    }
    let part = part_path(&dest);
    let meta = meta.unwrap_or_default();
    let mut progress = Progress::new(
        Mode::pick(options.quiet),
        format!("get {name}"),
        meta.size,
        0,
    );
    let result = fetch(&http, &link, &meta, &part, &mut retry, &mut progress).await;
    let archive = match result {
        Ok(archive) => archive,
        Err(e) => {
            progress.abandon();
            discard_unless_useful(&part, &e);
            return Err(e);
        }
    };
    progress.finish();
    let checked = part.clone();
    if archive {
        let verdict = tokio::task::spawn_blocking(move || check_zip(&checked))
            .await
            .map_err(|e| ClientError::Local(e.to_string()))?;
        if let Err(e) = verdict {
            discard_unless_useful(&part, &e);
            return Err(e);
        }
    }
    place(&part, &dest, options.force)?;
    Ok(dest)
}

/// After a failure the `.part` stays only when a later run can continue it: not when it is
/// empty (the link was refused at once) or failed a check (its bytes are wrong).
fn discard_unless_useful(part: &Path, error: &ClientError) {
    let empty = std::fs::metadata(part).is_ok_and(|m| m.len() == 0);
    if empty || matches!(error, ClientError::Verify(_)) {
        let _ = std::fs::remove_file(part);
    }
}

/// `HEAD` for the name, size and whether ranges work. `None` when the server refuses: the
/// `GET` that follows learns why from the error body (`HEAD` has none), and an error answer
/// never burns the link.
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
            Ok(Ok(_)) => return Ok(None),
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
        .header(
            header::USER_AGENT,
            concat!("burnlink/", env!("CARGO_PKG_VERSION")),
        );
    if let Some(from) = range_from {
        builder = builder.header(header::RANGE, format!("bytes={from}-"));
    }
    builder
        .body(http_client::full(bytes::Bytes::new()))
        .map_err(|_| ClientError::Local(format!("not a valid URL: {}", link.shown)))
}

/// The transfer loop: each attempt asks for what the `.part` file lacks. Returns whether the
/// body was a directory's zip.
async fn fetch(
    http: &HttpClient,
    link: &Link,
    meta: &Meta,
    part: &Path,
    retry: &mut Retry,
    progress: &mut Progress,
) -> Result<bool, ClientError> {
    let local = |e: std::io::Error| ClientError::Local(format!("{}: {e}", part.display()));
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(part)
        .map_err(local)?;
    let mut size = meta.size;
    let mut ranges = meta.ranges;
    let mut announced = false;
    let mut reached = 0;
    loop {
        retry.attempt()?;
        let mut have = file.metadata().map_err(local)?.len();
        if !ranges || size.is_some_and(|s| have > s) {
            have = 0;
            file.set_len(0).map_err(local)?;
        }
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
        let start = match status {
            StatusCode::OK => {
                let m = Meta::of(&response);
                size = m.size;
                ranges = m.ranges;
                progress.set_total(size);
                if have > 0 {
                    progress.restart_at(0);
                }
                0
            }
            StatusCode::PARTIAL_CONTENT => {
                match header_str(&response, "content-range").and_then(content_range) {
                    Some((from, total)) if from == have && size.is_none_or(|s| s == total) => {
                        size = Some(total);
                        from
                    }
                    // Not the range asked for (the file changed?): start over.
                    _ => {
                        ranges = false;
                        continue;
                    }
                }
            }
            StatusCode::RANGE_NOT_SATISFIABLE => {
                file.set_len(0).map_err(local)?;
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
        file.set_len(start).map_err(local)?;
        file.seek(SeekFrom::Start(start)).map_err(local)?;
        let mut out = std::io::BufWriter::with_capacity(256 << 10, &mut file);
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
                    file.sync_all().map_err(local)?;
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

/// A name safe to create here: its last component only (no `/` or `\`), no control or
/// bidirectional-override characters, not `.`/`..`, not hidden, at most 255 bytes.
pub fn safe_name(raw: &str) -> Option<String> {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = last
        .chars()
        .filter(|c| !c.is_control() && !is_bidi_control(*c))
        .collect();
    let cleaned = cleaned.trim().trim_start_matches('.').to_string();
    if cleaned.is_empty() {
        return None;
    }
    let mut end = cleaned.len().min(255);
    while !cleaned.is_char_boundary(end) {
        end -= 1;
    }
    Some(cleaned[..end].to_string())
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{061C}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
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
    fn the_part_file_sits_beside_the_destination() {
        assert_eq!(
            part_path(Path::new("out/a.tar.gz")),
            PathBuf::from("out/a.tar.gz.part")
        );
    }
}
