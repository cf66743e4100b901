//! `burnlink put URL FILE|-`: uploads resumably with tus 1.0, the protocol the server speaks
//! on every upload link. The file's SHA-256 is computed while it is read, before the first
//! byte is sent, because the server takes the whole file's `Content-Digest` at creation and
//! checks it when the last byte is in; a file that changes under the upload then fails with
//! `digest_mismatch` instead of landing wrong. Standard input is read once into an unnamed
//! temporary file (it cannot be read again after a drop, and its length is needed up front).
//!
//! It first asks the server (`HEAD`) what the link holds, so a re-run continues an unfinished
//! upload of the same length (a different file is caught by the digest announced at its
//! creation, and then started over) and recognises its own bytes already landed (the last
//! answer lost). Otherwise it creates the upload with no bytes (`POST`: a refusal, such as over
//! the cap, comes before anything is sent) and appends (`PATCH`); after a dropped connection
//! it asks again how much is durably stored and sends the rest from there.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use base64ct::{Base64, Encoding};
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode, header};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::progress::{Mode, Progress};
use super::{ClientError, IDLE, Link, Retry, header_str, header_u64, refusal};
use crate::http_client::{self, BoxError, HttpClient};
use crate::token::{Direction, hex, read_unverified};

pub struct PutOptions {
    pub url: String,
    /// A file, or `-` for standard input.
    pub source: String,
    pub quiet: bool,
    pub retries: u32,
    pub cacert: Option<PathBuf>,
}

/// What `put` prints, in the fields of a plain upload's `201` body: the link's path, and the
/// size and digest `put` read (the digest checked against the server's `Repr-Digest` when it
/// states one), so a script reads the same receipt whichever way the file went up.
#[derive(Debug, Serialize)]
pub struct Receipt {
    /// Where the file landed, relative to the link's session sandbox (the link states it).
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

/// How long the server may take to answer once every byte is sent: it reads the whole file
/// back to hash it before it lands, so a large upload's last answer is slow. While bytes are
/// still going out, the bound is [`IDLE`] without a chunk taken instead (see [`Pulse`]).
const LAST_ANSWER: Duration = Duration::from_secs(15 * 60);

const CHUNK: usize = 256 << 10;

/// Uploads the source through the link and returns the receipt.
pub async fn put(options: PutOptions) -> Result<Receipt, ClientError> {
    let link = Link::parse(&options.url)?;
    let claims = read_unverified(&link.token)
        .map_err(|_| ClientError::Local("that is not a burnlink link".into()))?;
    if claims.direction != Direction::Upload {
        return Err(ClientError::Local(
            "that is a download link: `burnlink get` it, or mint one with --upload".into(),
        ));
    }
    let http =
        http_client::client_with(IDLE, options.cacert.as_deref()).map_err(ClientError::Local)?;
    let source = options.source.clone();
    let (file, size, sha256) = tokio::task::spawn_blocking(move || read_source(&source))
        .await
        .map_err(|e| ClientError::Local(e.to_string()))??;
    // The link states the digest the server will insist on: other bytes are refused here,
    // before a byte is sent, instead of after the whole upload.
    if let Some(promised) = claims.sha256
        && promised != sha256
    {
        return Err(ClientError::Mismatch(format!(
            "{} has SHA-256 {}, the link takes only {}; nothing was sent",
            if options.source == "-" {
                "standard input"
            } else {
                &options.source
            },
            hex(&sha256),
            hex(&promised)
        )));
    }
    let label = if options.source == "-" {
        "put stdin".to_string()
    } else {
        format!("put {}", options.source)
    };
    let progress = Arc::new(Mutex::new(Progress::new(
        Mode::pick(options.quiet),
        label,
        Some(size),
        0,
    )));
    let upload = Upload {
        http,
        link,
        file: Arc::new(file),
        size,
        sha256,
        progress: progress.clone(),
    };
    let result = upload.run(options.retries).await;
    let mut progress = progress.lock().unwrap_or_else(|e| e.into_inner());
    match result {
        Ok(server_sha256) => {
            progress.finish();
            if server_sha256.is_some_and(|d| d != sha256) {
                return Err(ClientError::Verify(
                    "the server's digest of the file differs from the one sent".into(),
                ));
            }
            Ok(Receipt {
                path: claims.path.to_string(),
                bytes: size,
                sha256: hex(&sha256),
            })
        }
        Err(e) => {
            progress.abandon();
            Err(e)
        }
    }
}

/// Opens the file (or spools stdin) and hashes it: (file, length, SHA-256).
fn read_source(source: &str) -> Result<(std::fs::File, u64, [u8; 32]), ClientError> {
    use std::io::{Read, Seek, Write};
    let local = |e: std::io::Error| ClientError::Local(format!("{source}: {e}"));
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    if source == "-" {
        let mut spool = tempfile::tempfile().map_err(local)?;
        let mut stdin = std::io::stdin().lock();
        let mut size = 0u64;
        loop {
            let n = match stdin.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(local(e)),
            };
            hasher.update(&buf[..n]);
            spool.write_all(&buf[..n]).map_err(local)?;
            size += n as u64;
        }
        spool.flush().map_err(local)?;
        spool.rewind().map_err(local)?;
        return Ok((spool, size, hasher.finalize().into()));
    }
    let mut file = std::fs::File::open(source).map_err(local)?;
    let meta = file.metadata().map_err(local)?;
    if !meta.is_file() {
        return Err(ClientError::Local(format!("{source}: not a regular file")));
    }
    let mut size = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(local(e)),
        };
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((file, size, hasher.finalize().into()))
}

struct Upload {
    http: HttpClient,
    link: Link,
    file: Arc<std::fs::File>,
    size: u64,
    sha256: [u8; 32],
    progress: Arc<Mutex<Progress>>,
}

/// What the server holds, as far as the client knows.
enum Known {
    /// No upload exists yet for the link (or it was removed): create one.
    Nothing,
    /// The server has this many bytes.
    At(u64),
    /// Every byte is in and the file landed; the server's digest when it said it.
    Done(Option<[u8; 32]>),
    /// Unknown after a failure: ask.
    Ask,
}

impl Upload {
    /// Creates the upload, then appends until the last byte is in; returns the server's digest
    /// of the whole file, when it gave one.
    async fn run(&self, retries: u32) -> Result<Option<[u8; 32]>, ClientError> {
        let mut retry = Retry::new(retries);
        // First ask: an earlier run may have left an unfinished upload to continue, or even
        // landed the file (its last answer lost).
        let mut known = Known::Ask;
        // The upload continued is one this run did not create: its announced digest may be
        // another file's.
        let mut adopted = true;
        // Whether this run created or appended anything (else a landed file is an earlier one).
        let mut sent = false;
        let mut best = 0;
        loop {
            retry.attempt()?;
            let step = match known {
                Known::Done(Some(digest)) if !sent && digest != self.sha256 => {
                    return Err(ClientError::Refused {
                        status: 404,
                        code: "used".into(),
                        message: "the link was used already, for other bytes".into(),
                    });
                }
                Known::Done(digest) => {
                    if !sent {
                        self.note("already in place: these bytes landed through this link before");
                    }
                    return Ok(digest);
                }
                Known::Nothing => {
                    adopted = false;
                    sent = true;
                    self.create().await
                }
                Known::At(offset) if offset >= self.size => self.ask().await,
                Known::At(offset) => {
                    sent = true;
                    self.append(offset).await
                }
                Known::Ask => self.ask().await,
            };
            match step {
                Ok(next) => {
                    if let Known::At(offset) = next {
                        if offset > best {
                            best = offset;
                            retry.progressed();
                        }
                        self.set_progress(offset);
                    }
                    known = next;
                }
                Err(ClientError::Refused { code, .. }) if adopted && code == "digest_mismatch" => {
                    // The unfinished upload found was of other bytes; the server removed it.
                    self.note(
                        "the unfinished upload on the server held other bytes: starting over",
                    );
                    known = Known::Nothing;
                }
                Err(e) => {
                    let pause = retry.failed(e.clone())?;
                    self.note(&format!("{e}; resuming in {:.1}s", pause.as_secs_f64()));
                    tokio::time::sleep(pause).await;
                    known = Known::Ask;
                }
            }
        }
    }

    fn set_progress(&self, at: u64) {
        if let Ok(mut p) = self.progress.lock() {
            p.set(at);
        }
    }

    fn note(&self, text: &str) {
        if let Ok(p) = self.progress.lock() {
            p.note(text);
        }
    }

    fn base(&self, method: Method) -> hyper::http::request::Builder {
        Request::builder()
            .method(method)
            .uri(self.link.uri.clone())
            .header("tus-resumable", "1.0.0")
            .header(header::USER_AGENT, http_client::USER_AGENT)
    }

    /// `HEAD`: how much the server holds (never takes the link's lease).
    async fn ask(&self) -> Result<Known, ClientError> {
        let request = self
            .base(Method::HEAD)
            .body(http_client::full(Bytes::new()))
            .map_err(|e| ClientError::Local(e.to_string()))?;
        let response = self.exchange(request, None).await?;
        match response.status() {
            StatusCode::OK => {
                let offset = header_u64(&response, "upload-offset").unwrap_or(0);
                let length = header_u64(&response, "upload-length");
                if length.is_some_and(|l| l != self.size) {
                    // Another upload through this link (another run, another file): replace it.
                    return Ok(Known::Nothing);
                }
                if offset >= self.size {
                    return Ok(Known::Done(digest(&response)));
                }
                Ok(Known::At(offset))
            }
            // No unfinished upload (the first request never got through), or a link that is
            // used or revoked: a `HEAD` answer has no body to say which, the creation will.
            StatusCode::NOT_FOUND => Ok(Known::Nothing),
            _ => Err(refusal(&self.link, response).await),
        }
    }

    /// `POST`: creates the upload with its length and the whole file's digest, and no bytes
    /// yet, so a refusal (over the cap, used, expired) comes before any byte is sent.
    async fn create(&self) -> Result<Known, ClientError> {
        let request = self
            .base(Method::POST)
            .header("upload-length", self.size)
            .header(
                "content-digest",
                format!("sha-256=:{}:", Base64::encode_string(&self.sha256)),
            )
            .header(header::CONTENT_LENGTH, 0)
            .body(http_client::full(Bytes::new()))
            .map_err(|e| ClientError::Local(e.to_string()))?;
        self.answer(request, 0, None).await
    }

    /// `PATCH`: the file from `offset` to its end.
    async fn append(&self, offset: u64) -> Result<Known, ClientError> {
        let pulse = Arc::new(Pulse::new());
        let request = self
            .base(Method::PATCH)
            .header(header::CONTENT_TYPE, "application/offset+octet-stream")
            .header(header::CONTENT_LENGTH, self.size - offset)
            .header("upload-offset", offset)
            .body(self.body_from(offset, pulse.clone()))
            .map_err(|e| ClientError::Local(e.to_string()))?;
        self.answer(request, offset, Some(pulse)).await
    }

    /// Sends a creation or an append and reads where the upload stands after it.
    async fn answer(
        &self,
        request: Request<http_client::Body>,
        offset: u64,
        pulse: Option<Arc<Pulse>>,
    ) -> Result<Known, ClientError> {
        let response = self.exchange(request, pulse).await?;
        let status = response.status();
        if status == StatusCode::CREATED || status == StatusCode::NO_CONTENT {
            let at = header_u64(&response, "upload-offset").unwrap_or(offset);
            if at >= self.size {
                return Ok(Known::Done(digest(&response)));
            }
            return Ok(Known::At(at));
        }
        let server_offset = header_u64(&response, "upload-offset");
        let error = refusal(&self.link, response).await;
        match (&error, server_offset) {
            // Our idea of the offset was stale (a request before this one went on after the
            // drop): continue from the server's.
            (ClientError::Refused { code, .. }, Some(at)) if code == "offset_mismatch" => {
                Ok(Known::At(at))
            }
            _ => Err(error),
        }
    }

    /// Sends the request. Without a body (`pulse` is `None`) the answer is due within
    /// [`IDLE`]; with one, the [`Pulse`] watchdog gives the attempt up as dropped.
    async fn exchange(
        &self,
        request: Request<http_client::Body>,
        pulse: Option<Arc<Pulse>>,
    ) -> Result<Response<Incoming>, ClientError> {
        let send = self.http.send(request);
        let Some(pulse) = pulse else {
            return match tokio::time::timeout(IDLE, send).await {
                Ok(Ok(r)) => Ok(r),
                Ok(Err(e)) => Err(self.link.transport_error(&e)),
                Err(_) => Err(ClientError::Network(format!(
                    "no answer within {}s",
                    IDLE.as_secs()
                ))),
            };
        };
        tokio::pin!(send);
        let mut tick = tokio::time::interval(WATCH_EVERY);
        loop {
            tokio::select! {
                sent = &mut send => return sent.map_err(|e| self.link.transport_error(&e)),
                _ = tick.tick() => {
                    if let Some(why) = pulse.verdict(Instant::now()) {
                        return Err(ClientError::Network(why));
                    }
                }
            }
        }
    }

    /// The file from `offset` to its end as a body read in 256 KiB pieces on the blocking
    /// pool (positioned reads: no shared cursor between attempts), moving the progress.
    fn body_from(&self, offset: u64, pulse: Arc<Pulse>) -> http_client::Body {
        let file = self.file.clone();
        let progress = self.progress.clone();
        let end = self.size;
        let stream = futures_util::stream::unfold(offset, move |at| {
            let file = file.clone();
            let progress = progress.clone();
            let pulse = pulse.clone();
            async move {
                if at >= end {
                    return None;
                }
                let want = ((end - at) as usize).min(CHUNK);
                let read = tokio::task::spawn_blocking(move || {
                    let mut buf = vec![0u8; want];
                    read_exact_at(&file, &mut buf, at).map(|()| buf)
                })
                .await;
                let chunk = match read {
                    Ok(Ok(buf)) => buf,
                    Ok(Err(e)) => return Some((Err::<Bytes, BoxError>(e.into()), end)),
                    Err(e) => return Some((Err(e.into()), end)),
                };
                let next = at + chunk.len() as u64;
                pulse.taken(next >= end);
                if let Ok(mut p) = progress.lock() {
                    p.set(next);
                }
                Some((Ok(Bytes::from(chunk)), next))
            }
        });
        StreamBody::new(stream.map(|r| r.map(Frame::data))).boxed_unsync()
    }
}

/// How often the watchdog looks at a request in flight.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// The watchdog of one `PATCH`: when its body last had a chunk taken by the connection, and
/// when the last one went. While bytes are going out, [`IDLE`] without a chunk taken is a
/// dead connection (a 15-minute bound would keep a stalled CI job waiting that long); only
/// after the last chunk does the server get [`LAST_ANSWER`] to check the file and answer.
struct Pulse {
    state: Mutex<(Instant, Option<Instant>)>,
}

impl Pulse {
    fn new() -> Pulse {
        Pulse {
            state: Mutex::new((Instant::now(), None)),
        }
    }

    /// A chunk was taken by the connection; `last` when it was the body's final one.
    fn taken(&self, last: bool) {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.0 = now;
        if last {
            state.1 = Some(now);
        }
    }

    /// Why the attempt is to be given up at `now`, if it is.
    fn verdict(&self, now: Instant) -> Option<String> {
        let (last, finished) = *self.state.lock().unwrap_or_else(|e| e.into_inner());
        match finished {
            None if now.duration_since(last) >= IDLE => Some(format!(
                "nothing sent for {}s: the connection is stuck",
                IDLE.as_secs()
            )),
            Some(done) if now.duration_since(done) >= LAST_ANSWER => Some(format!(
                "no answer within {}s of the last byte",
                LAST_ANSWER.as_secs()
            )),
            _ => None,
        }
    }
}

fn read_exact_at(file: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.read_exact_at(buf, offset)
}

/// `Repr-Digest: sha-256=:B64:`, the server's digest of the whole file.
fn digest(response: &Response<Incoming>) -> Option<[u8; 32]> {
    let value = header_str(response, "repr-digest")?;
    value.split(',').find_map(|item| {
        let b64 = item.trim().strip_prefix("sha-256=:")?.strip_suffix(':')?;
        Base64::decode_vec(b64).ok()?.try_into().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body that stops being taken fails the attempt after IDLE, long before the bound on
    /// the last answer; that bound starts only with the last chunk.
    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_fails_after_idle_and_the_last_answer_gets_longer() {
        let pulse = Pulse::new();
        tokio::time::advance(IDLE - Duration::from_secs(1)).await;
        assert_eq!(pulse.verdict(Instant::now()), None);
        pulse.taken(false);
        tokio::time::advance(IDLE - Duration::from_secs(1)).await;
        assert_eq!(
            pulse.verdict(Instant::now()),
            None,
            "a chunk resets the watch"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        let why = pulse.verdict(Instant::now()).expect("stalled for IDLE");
        assert!(why.contains("nothing sent"), "{why}");

        let pulse = Pulse::new();
        pulse.taken(true);
        tokio::time::advance(IDLE * 5).await;
        assert_eq!(
            pulse.verdict(Instant::now()),
            None,
            "after the last chunk the server has longer than IDLE"
        );
        tokio::time::advance(LAST_ANSWER).await;
        assert!(pulse.verdict(Instant::now()).is_some());
    }
}
