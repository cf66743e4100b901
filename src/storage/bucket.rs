//! The sandbox as a prefix of an S3-compatible bucket (`BURNLINK_ROOT=s3://BUCKET[/PREFIX]`).
//!
//! Keys are `PREFIX/{session}/{path}`; a "directory" is a key prefix ending in `/` (with or
//! without a `/`-terminated marker object). Paths go through the same lexical rules as on disk
//! ([`crate::sandbox::normalize`]), and keys S3 or this client cannot name plainly (control
//! characters, over 1024 bytes) are refused the same way. There are no symlinks, so nothing can
//! lead out once the key is built.
//!
//! Every call is bounded in time ([`CALL_BOUND`], and an idle bound on streamed bodies): a
//! bucket that is down or slow makes the call fail with [`SandboxError::Unavailable`], which
//! transfers answer as 503 `unavailable`, never as a burned or half-served link.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder, S3ConditionalPut};
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{
    BackoffConfig, GetOptions, GetRange, ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload,
    RetryConfig,
};

use super::s3_http::{Connector, CreateOnly};

mod partial;

use crate::sandbox::{self, SandboxError, SessionId};
pub use partial::Partial;

/// The longest any one metadata call (HEAD, LIST page, create, abort) may take, retries
/// included.
pub const CALL_BOUND: Duration = Duration::from_secs(5);

/// A part upload may take longer (it carries [`PART_SIZE`] bytes), and so may completing an
/// upload: S3 assembles the parts before it answers, which takes seconds for large objects.
const PART_BOUND: Duration = Duration::from_secs(60);

/// The longest a streamed object body may pause before the read fails.
const BODY_IDLE: Duration = Duration::from_secs(30);

/// Uploads are sent in parts of this size (S3's minimum is 5 MiB, except for the last part),
/// so an upload holds a part or two in memory whatever its size.
pub const PART_SIZE: usize = 8 * 1024 * 1024;

/// S3's limit on a key's length, in bytes.
const MAX_KEY: usize = 1024;

/// An object's metadata, as a download needs it.
#[derive(Clone, Debug)]
pub struct Object {
    pub size: u64,
    pub modified: SystemTime,
    /// Reads are made conditional on it, so a download never mixes two versions of an object.
    pub etag: Option<String>,
}

/// What a key names.
#[derive(Clone, Debug)]
pub enum Entry {
    File(Object),
    Directory,
}

/// One object under a directory prefix, for archives and sizes.
#[derive(Clone, Debug)]
pub struct Listed {
    /// Relative to the listed directory, `/`-separated.
    pub name: String,
    /// Relative to the session's sandbox: what to read.
    pub rel: String,
    /// A `/`-terminated marker: an empty "directory".
    pub is_dir: bool,
    pub object: Object,
}

pub struct Bucket {
    store: AmazonS3,
    name: String,
    /// Without leading or trailing `/`; empty for the whole bucket.
    prefix: String,
    create_only: CreateOnly,
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bucket")
            .field("name", &self.name)
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl Bucket {
    /// `s3://BUCKET[/PREFIX]`, with credentials, region and endpoint from the standard `AWS_*`
    /// variables. Makes no request: a bucket that is down at start makes `/readyz` fail and
    /// transfers answer 503 until it is back.
    pub fn open(url: &str) -> Result<Bucket, String> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or("expected s3://BUCKET[/PREFIX]")?;
        let (name, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if name.is_empty() {
            return Err("expected s3://BUCKET[/PREFIX]: the bucket name is missing".into());
        }
        let prefix = match sandbox::normalize(std::path::Path::new("/"), prefix) {
            Ok(p) if p == "." => String::new(),
            Ok(p) => p,
            Err(e) => return Err(format!("the prefix is not a plain key prefix: {e}")),
        };
        let create_only = CreateOnly::default();
        // from_env reads AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN,
        // AWS_REGION (AWS_DEFAULT_REGION), AWS_ENDPOINT_URL and AWS_ALLOW_HTTP.
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(name)
            .with_conditional_put(S3ConditionalPut::ETagMatch)
            .with_http_connector(Connector {
                create_only: create_only.clone(),
                connect_within: Duration::from_secs(2),
                // The calls bound themselves (CALL_BOUND, PART_BOUND); this only caps a
                // response that never starts.
                headers_within: PART_BOUND,
            })
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_secs(1),
                    base: 2.0,
                },
                max_retries: 2,
                retry_timeout: PART_BOUND,
            });
        // An endpoint of one's own (MinIO, Garage, Ceph, moto) is addressed path-style.
        if std::env::var_os("AWS_ENDPOINT_URL").is_some_and(|v| !v.is_empty()) {
            builder = builder.with_virtual_hosted_style_request(false);
        }
        if std::env::var_os("AWS_REGION").is_none()
            && std::env::var_os("AWS_DEFAULT_REGION").is_none()
        {
            builder = builder.with_region("us-east-1");
        }
        let store = builder.build().map_err(|e| e.to_string())?;
        Ok(Bucket {
            store,
            name: name.to_string(),
            prefix,
            create_only,
        })
    }

    /// `s3://BUCKET/PREFIX`, as users see it (absolute paths may be written under it).
    pub fn url(&self, session: Option<&SessionId>) -> String {
        let mut url = format!("s3://{}", self.name);
        for part in [self.prefix.as_str(), session.map_or("", |s| s.as_str())] {
            if !part.is_empty() {
                url.push('/');
                url.push_str(part);
            }
        }
        url
    }

    /// The canonical relative form of `input`: the disk's lexical rules, with absolute paths
    /// written as `s3://BUCKET/PREFIX[/SESSION]/...`, and keys S3 cannot hold plainly refused.
    pub fn normalize(
        &self,
        session: Option<&SessionId>,
        input: &str,
    ) -> Result<String, SandboxError> {
        let base = self.url(session);
        let relative = if let Some(rest) = input.strip_prefix(&base) {
            if !(rest.is_empty() || rest.starts_with('/')) {
                return Err(SandboxError::Outside);
            }
            rest.trim_start_matches('/')
        } else if input.starts_with("s3://") || input.starts_with('/') {
            return Err(SandboxError::Outside);
        } else {
            input
        };
        let rel = sandbox::normalize(std::path::Path::new("/"), relative)?;
        if rel.chars().any(char::is_control) {
            return Err(SandboxError::BadPath(
                "path contains a control character, which object keys here may not",
            ));
        }
        if self.key(session, &rel).len() > MAX_KEY {
            return Err(SandboxError::BadPath("path is too long for an object key"));
        }
        Ok(rel)
    }

    fn key(&self, session: Option<&SessionId>, rel: &str) -> String {
        let mut key = self.prefix.clone();
        for part in [session.map_or("", |s| s.as_str()), rel] {
            if !part.is_empty() && part != "." {
                if !key.is_empty() {
                    key.push('/');
                }
                key.push_str(part);
            }
        }
        key
    }

    fn path(&self, session: Option<&SessionId>, rel: &str) -> Result<Path, SandboxError> {
        Path::parse(self.key(session, rel))
            .map_err(|_| SandboxError::BadPath("path is not a valid object key"))
    }

    /// What `rel` names: an object, or a prefix with objects under it. The sandbox itself is
    /// always a directory.
    pub async fn stat(
        &self,
        session: Option<&SessionId>,
        rel: &str,
    ) -> Result<Entry, SandboxError> {
        if rel == "." {
            return Ok(Entry::Directory);
        }
        if let Some(object) = self.head(session, rel).await? {
            return Ok(Entry::File(object));
        }
        if self.any_under(&self.key(session, rel)).await? {
            Ok(Entry::Directory)
        } else {
            Err(SandboxError::NotFound)
        }
    }

    /// Whether any key starts with `dir_key/` (any key at all for the whole bucket): one
    /// listing request for one key.
    async fn any_under(&self, dir_key: &str) -> Result<bool, SandboxError> {
        let prefix = (!dir_key.is_empty()).then(|| format!("{dir_key}/"));
        let options = PaginatedListOptions {
            max_keys: Some(1),
            ..PaginatedListOptions::default()
        };
        let page = bounded(
            CALL_BOUND,
            self.store.list_paginated(prefix.as_deref(), options),
        )
        .await?
        .map_err(classify)?;
        Ok(!page.result.objects.is_empty() || !page.result.common_prefixes.is_empty())
    }

    /// The object at `rel`, if there is one.
    pub async fn head(
        &self,
        session: Option<&SessionId>,
        rel: &str,
    ) -> Result<Option<Object>, SandboxError> {
        let path = self.path(session, rel)?;
        match bounded(CALL_BOUND, self.store.head(&path)).await? {
            Ok(meta) => Ok(Some(object(&meta))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(classify(e)),
        }
    }

    /// `len` bytes of `object` from `start`, streamed, in the version that was looked at: an
    /// object replaced since fails the read rather than mixing versions.
    pub async fn read(
        &self,
        session: Option<&SessionId>,
        rel: &str,
        object: &Object,
        start: u64,
        len: u64,
    ) -> Result<BoxStream<'static, io::Result<Bytes>>, SandboxError> {
        if len == 0 {
            return Ok(futures_util::stream::empty().boxed());
        }
        let path = self.path(session, rel)?;
        let options = GetOptions {
            range: Some(GetRange::Bounded(start..start + len)),
            if_match: object.etag.clone(),
            ..GetOptions::default()
        };
        let got = bounded(CALL_BOUND, self.store.get_opts(&path, options))
            .await?
            .map_err(classify)?;
        let stream = got
            .into_stream()
            .map(|chunk| chunk.map_err(|e| io::Error::other(classify(e))));
        Ok(Idle::new(stream.boxed(), BODY_IDLE).boxed())
    }

    /// The objects under the directory `rel`, in key order, as they are listed.
    pub fn list(
        &self,
        session: Option<&SessionId>,
        rel: &str,
    ) -> Result<BoxStream<'static, Result<Listed, SandboxError>>, SandboxError> {
        let dir = self.path(session, rel)?;
        let dir_key = dir.as_ref().to_string();
        let base = self.key(session, ".");
        let listing = if dir_key.is_empty() {
            self.store.list(None)
        } else {
            self.store.list(Some(&dir))
        };
        let store = self.store.clone();
        let listing = listing.map(|item| item.map_err(classify)).boxed();
        let entries = Idle::new(listing, CALL_BOUND).then(move |item| {
            let (dir_key, base, store) = (dir_key.clone(), base.clone(), store.clone());
            async move {
                let meta = item?;
                let key = meta.location.as_ref();
                if key == dir_key {
                    // The listed directory's own `dir/` marker.
                    return Ok(None);
                }
                // A resumable upload's state object is no file of the user's.
                if meta
                    .location
                    .filename()
                    .is_some_and(crate::staging::is_temporary)
                {
                    return Ok(None);
                }
                let name = strip_dir(&dir_key, key).to_string();
                let rel = strip_dir(&base, key).to_string();
                // object_store drops a marker's trailing `/`: an empty object whose plain key
                // does not exist was a `dir/` marker.
                let is_dir = meta.size == 0
                    && matches!(
                        bounded(CALL_BOUND, store.head(&meta.location)).await?,
                        Err(object_store::Error::NotFound { .. })
                    );
                Ok(Some(Listed {
                    name,
                    rel,
                    is_dir,
                    object: object(&meta),
                }))
            }
        });
        Ok(entries
            .filter_map(|entry| async move { entry.transpose() })
            .boxed())
    }

    /// Starts a multipart upload to `rel`. With `create_only`, its completion carries
    /// `If-None-Match: *`.
    pub async fn create_upload(
        &self,
        session: Option<&SessionId>,
        rel: &str,
        create_only: bool,
    ) -> Result<Upload, SandboxError> {
        let path = self.path(session, rel)?;
        let id = bounded(CALL_BOUND, self.store.create_multipart(&path))
            .await?
            .map_err(classify)?;
        Ok(Upload {
            store: self.store.clone(),
            create_only: self.create_only.clone(),
            path,
            id,
            parts: Vec::new(),
            inflight: None,
            done: false,
            resumable: false,
            create_only_wanted: create_only,
        })
    }

    /// A cheap request that proves the bucket answers and the credentials work, for `/readyz`.
    pub async fn ping(&self) -> Result<(), SandboxError> {
        self.any_under(&self.prefix).await.map(|_| ())
    }
}

/// A multipart upload in progress. It becomes visible only through [`Upload::complete`];
/// dropped or failed before that, it is aborted, so no parts are left behind in the bucket.
pub struct Upload {
    store: AmazonS3,
    create_only: CreateOnly,
    path: Path,
    id: String,
    parts: Vec<PartId>,
    /// The part being sent while the next one is gathered.
    inflight: Option<tokio::task::JoinHandle<Result<PartId, SandboxError>>>,
    done: bool,
    /// A resumable upload's: its parts outlive this request, so only an explicit
    /// [`Upload::abort`] (or a refusal at completion) abandons them.
    resumable: bool,
    /// Completed with `If-None-Match: *` (registered in `create_only` when completing).
    create_only_wanted: bool,
}

/// Why a multipart upload did not complete.
#[derive(Debug, thiserror::Error)]
pub enum CompleteError {
    /// The upload may not replace its destination, and an object is there now.
    #[error("the destination exists")]
    Exists,
    #[error("{0}")]
    Storage(SandboxError),
}

impl Upload {
    /// Sends `data` as the next part. The previous part must have arrived first, so at most
    /// one part is in flight while the next is gathered: memory stays at two parts.
    pub async fn put(&mut self, data: PutPayload) -> Result<(), SandboxError> {
        self.settle().await?;
        let (store, path, id) = (self.store.clone(), self.path.clone(), self.id.clone());
        let idx = self.parts.len();
        self.inflight = Some(tokio::spawn(async move {
            bounded(PART_BOUND, store.put_part(&path, &id, idx, data))
                .await?
                .map_err(classify)
        }));
        Ok(())
    }

    /// Waits for the part in flight, if any.
    pub async fn settle(&mut self) -> Result<(), SandboxError> {
        if let Some(part) = self.inflight.take() {
            let part = part
                .await
                .map_err(|e| SandboxError::Unavailable(format!("a part upload failed: {e}")))??;
            self.parts.push(part);
        }
        Ok(())
    }

    /// Completes the upload: the object appears whole, at once. With `create_only`, only if
    /// nothing is at the destination (S3 checks, atomically). On any failure the upload is
    /// aborted.
    pub async fn complete(mut self) -> Result<(), CompleteError> {
        if let Err(e) = self.settle().await {
            self.abort_now().await;
            return Err(CompleteError::Storage(e));
        }
        if self.create_only_wanted {
            self.create_only.insert(&self.id);
        }
        let parts = std::mem::take(&mut self.parts);
        let done = bounded(
            PART_BOUND,
            self.store.complete_multipart(&self.path, &self.id, parts),
        )
        .await;
        match done {
            Ok(Ok(_)) => {
                self.done = true;
                self.create_only.remove(&self.id);
                Ok(())
            }
            Ok(Err(
                object_store::Error::Precondition { .. }
                | object_store::Error::AlreadyExists { .. },
            )) => {
                // It can never complete now, resumable or not.
                self.abort().await;
                Err(CompleteError::Exists)
            }
            Ok(Err(e)) => {
                self.abort_now().await;
                Err(CompleteError::Storage(classify(e)))
            }
            Err(e) => {
                self.abort_now().await;
                Err(CompleteError::Storage(e))
            }
        }
    }

    /// Abandons the upload and its parts.
    pub async fn abort(mut self) {
        self.resumable = false;
        self.abort_now().await;
    }

    /// The parts sent so far (after [`Upload::settle`]), in order.
    pub fn parts(&self) -> &[PartId] {
        &self.parts
    }

    /// Abandons the upload, unless it is resumable: its parts wait for the next request.
    async fn abort_now(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        self.create_only.remove(&self.id);
        if self.resumable {
            return;
        }
        if let Some(part) = self.inflight.take() {
            let _ = part.await;
        }
        let aborted = bounded(CALL_BOUND, self.store.abort_multipart(&self.path, &self.id)).await;
        if let Err(e) | Ok(Err(e)) = aborted.map(|r| r.map_err(classify)) {
            tracing::warn!(error = %e, "could not abort a multipart upload; a lifecycle rule \
                (AbortIncompleteMultipartUpload) removes it later");
        }
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if self.done || self.resumable {
            return;
        }
        // Dropped mid-way (the task was cancelled): abort on the runtime.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut rest = Upload {
            store: self.store.clone(),
            create_only: self.create_only.clone(),
            path: self.path.clone(),
            id: std::mem::take(&mut self.id),
            parts: Vec::new(),
            inflight: self.inflight.take(),
            done: false,
            resumable: false,
            create_only_wanted: false,
        };
        self.done = true;
        runtime.spawn(async move { rest.abort_now().await });
    }
}

/// `fut`, or [`SandboxError::Unavailable`] once `within` has passed.
async fn bounded<T>(within: Duration, fut: impl Future<Output = T>) -> Result<T, SandboxError> {
    tokio::time::timeout(within, fut).await.map_err(|_| {
        SandboxError::Unavailable(format!("the bucket did not answer within {within:?}"))
    })
}

/// What an object_store failure means to a transfer or a mint.
fn classify(e: object_store::Error) -> SandboxError {
    match e {
        object_store::Error::NotFound { .. } => SandboxError::NotFound,
        // The object changed since it was looked at (the read is conditional on its ETag).
        object_store::Error::Precondition { .. } => SandboxError::NotFound,
        object_store::Error::InvalidPath { .. } => {
            SandboxError::BadPath("path is not a valid object key")
        }
        other => SandboxError::Unavailable(other.to_string()),
    }
}

fn object(meta: &ObjectMeta) -> Object {
    Object {
        size: meta.size,
        modified: meta.last_modified.into(),
        etag: meta.e_tag.clone(),
    }
}

/// `key` relative to the directory key `dir` (`""` is the whole bucket).
fn strip_dir<'k>(dir: &str, key: &'k str) -> &'k str {
    if dir.is_empty() {
        return key;
    }
    key.strip_prefix(dir)
        .and_then(|rest| rest.strip_prefix('/'))
        .unwrap_or(key)
}

/// A stream that fails once its source has been silent for `idle`.
struct Idle<S> {
    inner: S,
    idle: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl<S> Idle<S> {
    fn new(inner: S, idle: Duration) -> Self {
        Idle {
            inner,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
        }
    }
}

impl<S, T, E> Stream for Idle<S>
where
    S: Stream<Item = Result<T, E>> + Unpin,
    E: From<io::Error>,
{
    type Item = Result<T, E>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Poll::Ready(item) = Pin::new(&mut self.inner).poll_next(cx) {
            let deadline = tokio::time::Instant::now() + self.idle;
            self.timer.as_mut().reset(deadline);
            return Poll::Ready(item);
        }
        ready!(self.timer.as_mut().poll(cx));
        Poll::Ready(Some(Err(E::from(io::Error::new(
            io::ErrorKind::TimedOut,
            "the bucket stopped sending",
        )))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_become_keys_under_the_prefix_and_never_leave_it() {
        let b = Bucket::open("s3://bkt/some/prefix/").unwrap();
        let s1 = SessionId::parse("s1").unwrap();
        assert_eq!(b.url(Some(&s1)), "s3://bkt/some/prefix/s1");
        assert_eq!(b.normalize(None, "a//./b.txt").unwrap(), "a/b.txt");
        assert_eq!(b.key(Some(&s1), "a/b.txt"), "some/prefix/s1/a/b.txt");
        assert_eq!(b.key(None, "."), "some/prefix");
        assert_eq!(
            b.normalize(Some(&s1), "s3://bkt/some/prefix/s1/x").unwrap(),
            "x"
        );
        assert_eq!(b.normalize(None, "s3://bkt/some/prefix").unwrap(), ".");
        for outside in [
            "../x",
            "a/../../x",
            "/etc/passwd",
            "s3://bkt/some/prefix2/x",
            "s3://bkt/some/x",
            "s3://other/some/prefix/x",
        ] {
            assert!(
                matches!(b.normalize(None, outside), Err(SandboxError::Outside)),
                "{outside}"
            );
        }
        // A session's absolute paths are its own.
        assert!(b.normalize(Some(&s1), "s3://bkt/some/prefix/s2/x").is_err());
        for odd in ["a\u{7}b", "tab\there", &"k".repeat(1100)] {
            assert!(
                matches!(b.normalize(None, odd), Err(SandboxError::BadPath(_))),
                "{odd:?}"
            );
        }
        assert!(Bucket::open("s3://").is_err());
        assert!(Bucket::open("s3://bkt/../x").is_err());
    }

    #[test]
    fn listed_keys_are_named_relative_to_the_directory() {
        assert_eq!(strip_dir("p/dir", "p/dir/a/b.txt"), "a/b.txt");
        assert_eq!(strip_dir("", "a.txt"), "a.txt");
    }
}
