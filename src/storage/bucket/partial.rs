//! A resumable upload's unfinished data in the bucket.
//!
//! The bytes live in an S3 multipart upload on the destination key itself: parts are durable
//! as soon as S3 acknowledges them, and nothing is visible at the destination until the upload
//! is completed (after the whole file's digest was checked). S3 parts must be at least 5 MiB
//! but the last, while resumable clients send chunks of any size and connections drop
//! anywhere, so the bytes after the last whole part (the tail, under [`super::PART_SIZE`]) are kept
//! in a small object beside the destination, named from the link as a partial file on disk is
//! ([`crate::staging::partial_name`]): `.burnlink-<nonce>-<expiry>-<length>[-<sha256>].part`.
//!
//! That object is the upload's only record, written after every request: a first line with
//! the bytes in parts and the length of the JSON that follows (the upload id, the destination
//! key, each part's ETag, and the SHA-256 state over the bytes in parts, so the whole file's
//! digest is known at completion without reading anything back), then the tail. One PUT
//! replaces it, so the offset it reports (bytes in parts + tail) is always durable, and any
//! replica finds it with one listing of `<dir>/.burnlink-<nonce>-`. Each write is conditional
//! on the version read (`If-Match`), so a request that lost its lease cannot undo another's
//! progress. Parts sent but not yet recorded are simply sent again (same part number).

use bytes::{Bytes, BytesMut};
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{
    GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    UpdateVersion,
};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use sha2::digest::common::hazmat::{SerializableState, SerializedState};

use super::{Bucket, CALL_BOUND, PART_BOUND, Upload, bounded, classify};
use crate::sandbox::{SandboxError, SessionId};
use crate::staging;

/// A resumable upload's state, as read from (and written back to) the bucket.
pub struct Partial {
    /// The state object's key, and its version when read.
    path: Path,
    version: Option<String>,
    /// Its name (the link's nonce, expiry, the upload's length and announced digest).
    pub name: String,
    /// The upload's total length.
    pub length: u64,
    /// The whole file's SHA-256 the client announced at creation.
    pub announced: Option<[u8; 32]>,
    dest: Path,
    id: String,
    parts: Vec<PartId>,
    /// Bytes in `parts`.
    pub stored: u64,
    /// SHA-256 over the bytes in `parts`.
    pub hasher: Sha256,
    /// The bytes after the parts, fewer than a part, in the pieces they came in (never
    /// copied into one buffer).
    pub tail: Vec<Bytes>,
}

impl Partial {
    /// The durable offset.
    pub fn offset(&self) -> u64 {
        self.stored + self.tail_len()
    }

    /// The tail's length.
    pub fn tail_len(&self) -> u64 {
        self.tail.iter().map(|b| b.len() as u64).sum()
    }
}

#[derive(Serialize, Deserialize)]
struct Record {
    id: String,
    dest: String,
    parts: Vec<String>,
    /// The serialised SHA-256 state, hex.
    sha256_state: String,
}

/// The longest a state object's first line can be (two decimal numbers).
const FIRST_LINE: usize = 48;

/// The most parts S3 takes in one multipart upload.
const MAX_PARTS: u64 = 10_000;

/// The largest record (upload id, destination, the parts' ETags, the digest state) a state
/// object may carry: 10,000 ETags of a few dozen bytes each stay well under it.
const MAX_RECORD: usize = 1024 * 1024;

/// The largest state object there can be: the first line, the record and a tail shorter than a
/// part. Anything larger is not ours (or is corrupt) and is not read into memory.
const MAX_STATE: u64 = (FIRST_LINE + MAX_RECORD + super::PART_SIZE) as u64;

/// The state object's numbers checked against each other and the upload's length before any
/// is believed: it is read back from the bucket, where anyone with write access may have
/// changed it. `parts` is the number of part ETags, when the record was read.
fn consistent(stored: u64, tail: u64, length: u64, parts: Option<usize>) -> bool {
    let part = super::PART_SIZE as u64;
    stored.is_multiple_of(part)
        && stored / part <= MAX_PARTS
        && parts.is_none_or(|n| n as u64 == stored / part)
        && tail < part
        && stored.checked_add(tail).is_some_and(|end| end <= length)
}

/// `rel`'s directory joined with `name` (a sibling of `rel`).
fn sibling(rel: &str, name: &str) -> String {
    match rel.rsplit_once('/') {
        Some((dir, _)) => format!("{dir}/{name}"),
        None => name.to_string(),
    }
}

fn bad_state(what: &str) -> SandboxError {
    SandboxError::Unavailable(format!(
        "a resumable upload's state object is unreadable: {what}"
    ))
}

fn encode(p: &Partial) -> Result<PutPayload, SandboxError> {
    let record = Record {
        id: p.id.clone(),
        dest: p.dest.as_ref().to_string(),
        parts: p.parts.iter().map(|part| part.content_id.clone()).collect(),
        sha256_state: crate::token::hex(p.hasher.serialize().as_slice()),
    };
    let json = serde_json::to_vec(&record).map_err(|e| bad_state(&e.to_string()))?;
    let mut head = BytesMut::new();
    head.extend_from_slice(format!("{} {}\n", p.stored, json.len()).as_bytes());
    head.extend_from_slice(&json);
    Ok(std::iter::once(head.freeze())
        .chain(p.tail.iter().cloned())
        .collect())
}

/// The first line: bytes in parts, and the JSON's length; and where the JSON starts.
fn first_line(bytes: &[u8]) -> Option<(u64, usize, usize)> {
    let end = bytes.iter().position(|&b| b == b'\n')?;
    let line = std::str::from_utf8(&bytes[..end]).ok()?;
    let (stored, json) = line.split_once(' ')?;
    Some((stored.parse().ok()?, json.parse().ok()?, end + 1))
}

fn unhex(h: &str) -> Option<Vec<u8>> {
    if !h.len().is_multiple_of(2) {
        return None;
    }
    (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(h.get(i..i + 2)?, 16).ok())
        .collect()
}

impl Bucket {
    /// The state object of the link with nonce `nonce_hex` for the destination `rel`, and its
    /// size: one listing of the names that link's partial uploads can have.
    async fn find_partial(
        &self,
        session: Option<&SessionId>,
        rel: &str,
        nonce_hex: &str,
    ) -> Result<Option<(staging::Partial, Path, u64)>, SandboxError> {
        let prefix = self.key(session, &sibling(rel, &format!(".burnlink-{nonce_hex}-")));
        let options = PaginatedListOptions {
            max_keys: Some(16),
            ..PaginatedListOptions::default()
        };
        let page = bounded(
            CALL_BOUND,
            self.store.list_paginated(Some(&prefix), options),
        )
        .await?
        .map_err(classify)?;
        Ok(page.result.objects.into_iter().find_map(|meta| {
            let name = meta.location.filename()?.to_string();
            let partial = staging::partial_of(&name, nonce_hex)?;
            Some((partial, meta.location, meta.size))
        }))
    }

    /// The durable offset and length of the link's unfinished upload to `rel`, if any: its
    /// state object's first line and size, without reading the tail.
    pub async fn partial_offset(
        &self,
        session: Option<&SessionId>,
        rel: &str,
        nonce_hex: &str,
    ) -> Result<Option<(u64, u64)>, SandboxError> {
        let Some((found, path, size)) = self.find_partial(session, rel, nonce_hex).await? else {
            return Ok(None);
        };
        let options = GetOptions {
            range: Some(GetRange::Bounded(0..(FIRST_LINE as u64).min(size))),
            ..GetOptions::default()
        };
        // The size is the one the read itself reports, so it belongs to the same version as
        // the first line: the object may have been rewritten since the listing.
        let (head, size) = match bounded(CALL_BOUND, self.store.get_opts(&path, options)).await? {
            Ok(got) => {
                let size = got.meta.size;
                let head = bounded(CALL_BOUND, got.bytes()).await?.map_err(classify)?;
                (head, size)
            }
            // Completed or terminated between the listing and the read.
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(classify(e)),
        };
        let (stored, json, start) = first_line(&head).ok_or_else(|| bad_state("first line"))?;
        let tail = start
            .checked_add(json)
            .and_then(|end| size.checked_sub(end as u64))
            .ok_or_else(|| bad_state("size"))?;
        if json > MAX_RECORD || !consistent(stored, tail, found.length, None) {
            return Err(bad_state("offsets"));
        }
        Ok(Some((stored + tail, found.length)))
    }

    /// The link's unfinished upload to `rel`, whole (its tail too), if any.
    pub async fn load_partial(
        &self,
        session: Option<&SessionId>,
        rel: &str,
        nonce_hex: &str,
    ) -> Result<Option<Partial>, SandboxError> {
        let Some((found, path, _)) = self.find_partial(session, rel, nonce_hex).await? else {
            return Ok(None);
        };
        let partial = self.read_partial(path, found).await?;
        // The link names the destination; a record that says otherwise is not this upload's.
        if partial
            .as_ref()
            .is_some_and(|p| p.dest != self.path(session, rel).unwrap_or_default())
        {
            return Err(bad_state("destination"));
        }
        Ok(partial)
    }

    async fn read_partial(
        &self,
        path: Path,
        found: staging::Partial,
    ) -> Result<Option<Partial>, SandboxError> {
        let got = match bounded(CALL_BOUND, self.store.get(&path)).await? {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(classify(e)),
        };
        let version = got.meta.e_tag.clone();
        if got.meta.size > MAX_STATE {
            return Err(bad_state("too large"));
        }
        let bytes = bounded(PART_BOUND, got.bytes()).await?.map_err(classify)?;
        let (stored, json, start) = first_line(&bytes).ok_or_else(|| bad_state("first line"))?;
        let end = start
            .checked_add(json)
            .filter(|_| json <= MAX_RECORD)
            .ok_or_else(|| bad_state("record"))?;
        let record: Record = bytes
            .get(start..end)
            .and_then(|j| serde_json::from_slice(j).ok())
            .ok_or_else(|| bad_state("record"))?;
        let tail = (bytes.len() - end) as u64;
        if !consistent(stored, tail, found.length, Some(record.parts.len())) {
            return Err(bad_state("offsets"));
        }
        let state = unhex(&record.sha256_state).ok_or_else(|| bad_state("digest state"))?;
        let state = SerializedState::<Sha256>::try_from(state.as_slice())
            .map_err(|_| bad_state("digest state"))?;
        let hasher = Sha256::deserialize(&state).map_err(|_| bad_state("digest state"))?;
        let dest = Path::parse(&record.dest).map_err(|_| bad_state("destination"))?;
        Ok(Some(Partial {
            path,
            version,
            name: found.name,
            length: found.length,
            announced: found.sha256,
            dest,
            id: record.id,
            parts: record
                .parts
                .into_iter()
                .map(|content_id| PartId { content_id })
                .collect(),
            stored,
            hasher,
            tail: vec![bytes.slice(end..)],
        }))
    }

    /// Starts a resumable upload of `length` bytes to `rel`: a multipart upload on the
    /// destination, and its state object `name` (from [`staging::partial_name`]), created only
    /// if absent.
    pub async fn create_partial(
        &self,
        session: Option<&SessionId>,
        rel: &str,
        name: &str,
        length: u64,
        announced: Option<[u8; 32]>,
    ) -> Result<Partial, SandboxError> {
        let dest = self.path(session, rel)?;
        let path = self.path(session, &sibling(rel, name))?;
        let id = bounded(CALL_BOUND, self.store.create_multipart(&dest))
            .await?
            .map_err(classify)?;
        let mut partial = Partial {
            path,
            version: None,
            name: name.to_string(),
            length,
            announced,
            dest,
            id,
            parts: Vec::new(),
            stored: 0,
            hasher: Sha256::default(),
            tail: Vec::new(),
        };
        if let Err(e) = self.save_partial(&mut partial).await {
            let _ = bounded(
                CALL_BOUND,
                self.store.abort_multipart(&partial.dest, &partial.id),
            )
            .await;
            return Err(e);
        }
        Ok(partial)
    }

    /// Records `partial` (after [`Partial::record`]) durably: created if it was new, else
    /// only over the version it was read at. [`SandboxError::Conflict`]: someone else wrote it.
    pub async fn save_partial(&self, partial: &mut Partial) -> Result<(), SandboxError> {
        let mode = match &partial.version {
            None => PutMode::Create,
            Some(e_tag) => PutMode::Update(UpdateVersion {
                e_tag: Some(e_tag.clone()),
                version: None,
            }),
        };
        let options = PutOptions {
            mode,
            ..PutOptions::default()
        };
        let payload = encode(partial)?;
        match bounded(
            PART_BOUND,
            self.store.put_opts(&partial.path, payload, options),
        )
        .await?
        {
            Ok(put) => {
                partial.version = put.e_tag;
                Ok(())
            }
            Err(
                object_store::Error::Precondition { .. }
                | object_store::Error::AlreadyExists { .. },
            ) => Err(SandboxError::Conflict),
            Err(e) => Err(classify(e)),
        }
    }

    /// Abandons an unfinished upload: its multipart upload and its state object.
    pub async fn remove_partial(&self, partial: Partial) -> Result<(), SandboxError> {
        match bounded(
            CALL_BOUND,
            self.store.abort_multipart(&partial.dest, &partial.id),
        )
        .await?
        {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(classify(e)),
        }
        self.delete_state(&partial.path).await
    }

    /// Removes a state object once its upload completed.
    pub async fn delete_state(&self, path: &Path) -> Result<(), SandboxError> {
        match bounded(CALL_BOUND, self.store.delete(path)).await? {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(classify(e)),
        }
    }

    /// The multipart upload of `partial`, to append parts after its recorded ones (and to
    /// complete it, with `If-None-Match: *` when `create_only`). Dropping it leaves its parts.
    pub fn resume(&self, partial: &Partial, create_only: bool) -> Upload {
        Upload {
            store: self.store.clone(),
            create_only: self.create_only.clone(),
            path: partial.dest.clone(),
            id: partial.id.clone(),
            parts: partial.parts.clone(),
            inflight: None,
            done: false,
            resumable: true,
            create_only_wanted: create_only,
        }
    }

    /// Removes the unfinished uploads of links that have expired, anywhere under the prefix:
    /// one listing of every key, so it runs at start-up and every few minutes, not per
    /// request. Returns how many it removed.
    pub async fn sweep_partials(&self) -> Result<usize, SandboxError> {
        use futures_util::StreamExt;
        let now = crate::token::unix_now();
        let root = self.path(None, ".")?;
        let mut listing = if root.as_ref().is_empty() {
            self.store.list(None)
        } else {
            self.store.list(Some(&root))
        };
        let mut expired = Vec::new();
        while let Some(meta) = bounded(CALL_BOUND, listing.next()).await? {
            let meta = meta.map_err(classify)?;
            let Some(name) = meta.location.filename() else {
                continue;
            };
            if staging::is_temporary(name)
                && staging::partial_expiry(name).is_some_and(|at| at <= now)
            {
                expired.push(meta.location);
            }
        }
        let mut removed = 0;
        for path in expired {
            let Some(name) = path.filename().map(str::to_string) else {
                continue;
            };
            let nonce = name
                .trim_start_matches(".burnlink-")
                .split('-')
                .next()
                .unwrap_or_default()
                .to_string();
            let Some(found) = staging::partial_of(&name, &nonce) else {
                continue;
            };
            // One upload that cannot be removed now does not stop the others; the next sweep
            // tries it again, and the bucket's lifecycle rule is the backstop.
            match self.read_partial(path.clone(), found).await {
                Ok(Some(partial)) => match self.remove_partial(partial).await {
                    Ok(()) => removed += 1,
                    Err(e) => tracing::warn!(error = %e, "could not remove an expired upload"),
                },
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "could not read an expired upload's state"),
            }
        }
        Ok(removed)
    }
}

impl Partial {
    /// Takes what a request appended: the parts `upload` now holds (settled), the hash over
    /// them, and the bytes after them. [`Bucket::save_partial`] makes it durable.
    pub fn record(&mut self, upload: &Upload, stored: u64, hasher: Sha256, tail: Vec<Bytes>) {
        self.parts = upload.parts().to_vec();
        self.stored = stored;
        self.hasher = hasher;
        self.tail = tail;
    }

    /// The state object's key, to remove it once the upload completed.
    pub fn state_path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    #[test]
    fn a_state_object_round_trips_with_its_digest_state() {
        let mut hasher = Sha256::new();
        hasher.update(b"first part bytes, not a whole block");
        let p = Partial {
            path: Path::parse("p/.burnlink-ab-1-100.part").unwrap(),
            version: None,
            name: ".burnlink-ab-1-100.part".into(),
            length: 100,
            announced: None,
            dest: Path::parse("p/dest.bin").unwrap(),
            id: "upload id".into(),
            parts: vec![PartId {
                content_id: "\"etag\"".into(),
            }],
            stored: 35,
            hasher: hasher.clone(),
            tail: vec![Bytes::from_static(b"ta"), Bytes::from_static(b"il")],
        };
        let bytes: Vec<u8> = encode(&p).unwrap().iter().flatten().copied().collect();
        let (stored, json, start) = first_line(&bytes).unwrap();
        assert_eq!(stored, 35);
        assert_eq!(&bytes[start + json..], b"tail");
        let record: Record = serde_json::from_slice(&bytes[start..start + json]).unwrap();
        let state = unhex(&record.sha256_state).unwrap();
        let mut resumed =
            Sha256::deserialize(&SerializedState::<Sha256>::try_from(state.as_slice()).unwrap())
                .unwrap();
        resumed.update(b"tail");
        hasher.update(b"tail");
        assert_eq!(resumed.finalize(), hasher.finalize());
        assert_eq!(sibling("a/b/c.bin", "x"), "a/b/x");
        assert_eq!(sibling("c.bin", "x"), "x");
    }

    /// A state object's numbers are believed only when they agree with each other and the
    /// upload's length: one edited in the bucket must not make an upload of another size land.
    #[test]
    fn a_state_objects_numbers_must_agree() {
        let part = super::super::PART_SIZE as u64;
        let length = 3 * part;
        assert!(consistent(0, 0, length, Some(0)));
        assert!(consistent(part, 5, length, Some(1)));
        assert!(consistent(2 * part, part - 1, length, None));
        // Bytes in parts that are not whole parts, or disagree with the parts listed.
        assert!(!consistent(part + 1, 0, length, None));
        assert!(!consistent(part, 0, length, Some(2)));
        // A tail of a part or more, or more bytes than the upload's length.
        assert!(!consistent(0, part, length, None));
        assert!(!consistent(3 * part, 1, length, None));
        assert!(!consistent(4 * part, 0, length, None));
        // Overflow and S3's part limit.
        assert!(!consistent(u64::MAX - 3, 7, u64::MAX, None));
        assert!(!consistent(10_001 * part, 0, u64::MAX, None));
    }
}
