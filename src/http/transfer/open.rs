//! Opening a link's path again at transfer time, on the blocking pool, for every transfer
//! route: the file download, the directory archive, the confirmation page and the upload.
//!
//! Whatever happened on disk since minting is judged the same way on all four, because every
//! failure here is a [`SandboxError`] and becomes HTTP through the one `From` impl in
//! [`crate::http::error`]: gone, escaped or replaced is "not found", a real I/O failure is 500.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use crate::archive::stream::Tree;
use crate::archive::walk::{self, WalkError};
use crate::http::error::ApiError;
use crate::sandbox::{self, Kind, Sandbox, SandboxError};
use crate::storage::Storage;
use crate::storage::bucket::{self, Bucket};
use crate::token::Claims;

/// Runs `work` on the blocking pool; its error and a lost task become HTTP in one place.
pub async fn on_pool<T, E>(
    work: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, ApiError>
where
    T: Send + 'static,
    E: Send + 'static,
    ApiError: From<E>,
{
    Ok(tokio::task::spawn_blocking(work).await??)
}

/// What a download link names now. Lives on the stack for one call, so the size difference of
/// its variants costs nothing worth a heap allocation on every download.
#[allow(clippy::large_enum_variant)]
pub enum Target {
    /// A regular file; a small one comes with its bytes, read in the same trip.
    File {
        file: std::fs::File,
        meta: std::fs::Metadata,
        bytes: Option<Bytes>,
    },
    /// A directory, as the tree to archive it from.
    Directory { tree: Tree },
    /// An object in a bucket, read later in the ranges the request asks for.
    Object {
        bucket: Arc<Bucket>,
        object: bucket::Object,
    },
}

/// Files up to this size are read whole in the same trip to the blocking pool that opens them.
/// The profile of 4 KiB one-time downloads at concurrency 32 was dominated by thread wake-ups
/// (futex waits and `try_to_wake_up`), one per trip: opening and reading in one trip halves them
/// (figures in docs/benchmarks.md). 64 KiB per request in flight is still small.
pub const PREFETCH_MAX: u64 = 64 * 1024;

/// Opens a download link's file or directory. With `prefetch`, a small file's bytes come
/// along; when the kernel can open and read it from its caches without blocking, that happens
/// right here on the async worker and the blocking pool is not involved at all.
pub async fn target(
    storage: &Storage,
    claims: &Claims,
    prefetch: bool,
) -> Result<Target, ApiError> {
    let sandbox = match storage {
        Storage::Disk(sandbox) => sandbox,
        Storage::Bucket(bucket) => return object_target(bucket, claims).await,
    };
    if prefetch && let Some(hit) = from_cache(sandbox, claims) {
        return Ok(hit);
    }
    let sandbox = sandbox.clone();
    let (session, path) = (claims.session.clone(), claims.path.clone());
    on_pool(move || {
        let session = session.as_ref();
        match sandbox.open_file(session, &path) {
            Ok((file, meta)) => {
                let bytes = if prefetch {
                    read_small(&file, &meta)
                } else {
                    None
                };
                Ok(Target::File { file, meta, bytes })
            }
            Err(SandboxError::NotAFileOrDirectory) => {
                let base = sandbox.session_dir(session)?;
                if base.metadata(&*path)?.is_dir() {
                    Ok(Target::Directory {
                        tree: Tree::Disk(base),
                    })
                } else {
                    Err(SandboxError::NotAFileOrDirectory)
                }
            }
            Err(e) => Err(e),
        }
    })
    .await
}

/// What a download link names in a bucket: an object, or a prefix to archive.
async fn object_target(bucket: &Arc<Bucket>, claims: &Claims) -> Result<Target, ApiError> {
    let session = claims.session.as_ref();
    match bucket.stat(session, &claims.path).await? {
        bucket::Entry::File(object) => Ok(Target::Object {
            bucket: bucket.clone(),
            object,
        }),
        bucket::Entry::Directory => Ok(Target::Directory {
            tree: Tree::Bucket {
                bucket: bucket.clone(),
                session: claims.session.clone(),
            },
        }),
    }
}

/// A small file's whole content, read at explicit offsets so the file offset stays where the
/// streaming path expects it. A file that shrank since its metadata was read takes the
/// streaming path, which fails the response when it comes up short.
fn read_small(file: &std::fs::File, meta: &std::fs::Metadata) -> Option<Bytes> {
    if meta.len() > PREFETCH_MAX {
        return None;
    }
    let mut buf = vec![0u8; meta.len() as usize];
    std::os::unix::fs::FileExt::read_exact_at(file, &mut buf, 0).ok()?;
    Some(Bytes::from(buf))
}

thread_local! {
    /// Where a thread reads small files' bytes for [`from_cache`]. Each read takes the next
    /// part of one block and hands it out as `Bytes`; once the responses have been written
    /// and dropped their parts, `BytesMut::reserve` finds the block unshared and starts it
    /// over, so a loop serving small files allocates nothing for their bytes. While a
    /// response still holds its part (a slow client), later reads take the rest of the block
    /// or new memory, and the old block is freed with the last response holding it. A block
    /// grows to fit the largest file read (by doubling, so under twice [`PREFETCH_MAX`]): that
    /// bounds what one held response keeps alive, and what stays behind per thread.
    static SMALL: std::cell::RefCell<bytes::BytesMut> = std::cell::RefCell::new(bytes::BytesMut::new());
}

/// The non-blocking fast path: `RESOLVE_CACHED` for the path, then `RWF_NOWAIT` for a small
/// file's bytes, read into this thread's [`SMALL`]. `None` sends the request to the blocking
/// pool.
fn from_cache(sandbox: &Sandbox, claims: &Claims) -> Option<Target> {
    let (file, meta) = sandbox.open_file_cached(claims.session.as_ref(), &claims.path)?;
    if meta.len() > PREFETCH_MAX {
        // Large files stream through the blocking pool anyway; this saved the open's trip.
        return Some(Target::File {
            file,
            meta,
            bytes: None,
        });
    }
    SMALL.with_borrow_mut(|buf| {
        buf.clear();
        buf.resize(meta.len() as usize, 0);
        let read = read_cached(&file, &meta, buf);
        // Not all in the page cache (EAGAIN), short, or failed: the blocking path decides.
        match read {
            Ok(n) if n == buf.len() => Some(Target::File {
                file,
                meta,
                bytes: Some(buf.split().freeze()),
            }),
            _ => None,
        }
    })
}

/// Reads all of `buf` from the start of `file` if the kernel can do it without waiting for a
/// device.
fn read_cached(
    file: &std::fs::File,
    meta: &std::fs::Metadata,
    buf: &mut [u8],
) -> rustix::io::Result<usize> {
    // tmpfs does not take `RWF_NOWAIT` (Linux 6.18 still says EOPNOTSUPP), and without this
    // every small download from it took the blocking pool and opened its file again: 0.37-0.63
    // of nginx's rate at c=32 (docs/benchmarks.md, the eighth pass). Its pages are memory, so a
    // plain read cannot wait for a device. The filesystem last found to be such is remembered,
    // so its later downloads skip the refused call and the check.
    static IN_MEMORY: AtomicU64 = AtomicU64::new(u64::MAX);
    let dev = std::os::unix::fs::MetadataExt::dev(meta);
    if dev == IN_MEMORY.load(Ordering::Relaxed) {
        return rustix::io::pread(file, buf, 0);
    }
    match rustix::io::preadv2(
        file,
        &mut [std::io::IoSliceMut::new(buf)],
        0,
        rustix::io::ReadWriteFlags::NOWAIT,
    ) {
        Err(rustix::io::Errno::OPNOTSUPP) if memory_backed(file) => {
            IN_MEMORY.store(dev, Ordering::Relaxed);
            rustix::io::pread(file, buf, 0)
        }
        other => other,
    }
}

/// Whether `file` lives on a filesystem kept in memory (tmpfs, ramfs), where reading never
/// waits for a device. (tmpfs pages may be in swap; a read then waits as a page fault would.)
fn memory_backed(file: &std::fs::File) -> bool {
    const TMPFS_MAGIC: u64 = 0x0102_1994;
    const RAMFS_MAGIC: u64 = 0x8584_58f6;
    rustix::fs::fstatfs(file).is_ok_and(|fs| matches!(fs.f_type as u64, TMPFS_MAGIC | RAMFS_MAGIC))
}

/// What the confirmation page shows of a download link's target, without opening it for
/// reading: its kind and size (a directory's is the sum of its files, as at mint; none for a
/// tree past the archive limits, whose download will say why).
pub async fn describe(storage: &Storage, claims: &Claims) -> Result<(Kind, Option<u64>), ApiError> {
    let sandbox: Sandbox = match storage {
        Storage::Disk(sandbox) => sandbox.clone(),
        Storage::Bucket(bucket) => {
            let session = claims.session.as_ref();
            return match bucket.stat(session, &claims.path).await? {
                bucket::Entry::File(object) => Ok((Kind::File, Some(object.size))),
                bucket::Entry::Directory => {
                    match walk::summarize_bucket(bucket, session, &claims.path, walk::LIMITS).await
                    {
                        Ok(summary) => Ok((Kind::Directory, Some(summary.bytes))),
                        Err(WalkError::Sandbox(e)) => Err(e.into()),
                        Err(_) => Ok((Kind::Directory, None)),
                    }
                }
            };
        }
    };
    let (session, path) = (claims.session.clone(), claims.path.clone());
    on_pool(move || {
        let meta = sandbox.stat(session.as_ref(), &path)?;
        match sandbox::kind_of(&meta)? {
            Kind::File => Ok((Kind::File, Some(meta.len()))),
            Kind::Directory => {
                let base = sandbox.session_dir(session.as_ref())?;
                match walk::summarize(&base, &path, walk::LIMITS) {
                    Ok(summary) => Ok((Kind::Directory, Some(summary.bytes))),
                    Err(WalkError::Sandbox(e)) => Err(e),
                    Err(_) => Ok((Kind::Directory, None)),
                }
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 4 KiB file on tmpfs, its bytes, and a download link's claims for it; `None` (after
    /// saying why) where this machine has no tmpfs at `/dev/shm`, which fails under `CI`.
    fn small_file_on_tmpfs() -> Option<(tempfile::TempDir, Vec<u8>, Sandbox, Claims)> {
        let shm = std::path::Path::new("/dev/shm");
        if !shm.is_dir() {
            assert!(
                std::env::var_os("CI").is_none(),
                "/dev/shm (tmpfs) is missing"
            );
            eprintln!("skipped: no /dev/shm on this machine");
            return None;
        }
        let dir = tempfile::tempdir_in(shm).unwrap();
        let bytes: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.path().join("small.bin"), &bytes).unwrap();
        let file = std::fs::File::open(dir.path().join("small.bin")).unwrap();
        assert!(memory_backed(&file), "/dev/shm is not tmpfs here");
        let sandbox = Sandbox::open(dir.path()).unwrap();
        let claims = Claims::new(
            crate::token::Direction::Download,
            None,
            "small.bin".into(),
            u64::MAX,
        );
        Some((dir, bytes, sandbox, claims))
    }

    fn cached_bytes(sandbox: &Sandbox, claims: &Claims) -> Bytes {
        match from_cache(sandbox, claims) {
            Some(Target::File {
                bytes: Some(read), ..
            }) => read,
            Some(_) => panic!("opened, but the bytes were left for the blocking pool"),
            None => panic!("sent to the blocking pool"),
        }
    }

    /// A small file on tmpfs is read right on the event loop, bytes and all, as one in the
    /// page cache of a disk is: tmpfs refuses `RWF_NOWAIT`, and a refusal used to send every
    /// such download to the blocking pool.
    #[test]
    fn a_small_file_on_tmpfs_is_read_without_the_blocking_pool() {
        let Some((_dir, bytes, sandbox, claims)) = small_file_on_tmpfs() else {
            return;
        };
        // Twice: the first finds the filesystem in memory, the second remembers it.
        for _ in 0..2 {
            assert_eq!(&cached_bytes(&sandbox, &claims)[..], &bytes[..]);
        }
    }

    /// A thread reading small files one response after another reuses one buffer and
    /// allocates nothing for their bytes; a response still holding its bytes keeps them intact
    /// while the next read takes other memory.
    #[test]
    fn small_files_are_read_into_memory_the_last_response_gave_back() {
        let Some((_dir, bytes, sandbox, claims)) = small_file_on_tmpfs() else {
            return;
        };
        let first = cached_bytes(&sandbox, &claims);
        let at = first.as_ptr();
        drop(first);
        let made = crate::alloc_count::allocations(|| {
            let again = cached_bytes(&sandbox, &claims);
            assert_eq!(again.as_ptr(), at, "the buffer given back was not reused");
            assert_eq!(&again[..], &bytes[..]);
        });
        assert_eq!(made, 0);

        let held = cached_bytes(&sandbox, &claims);
        let next = cached_bytes(&sandbox, &claims);
        assert_ne!(held.as_ptr(), next.as_ptr());
        assert_eq!(&held[..], &bytes[..]);
        assert_eq!(&next[..], &bytes[..]);
    }
}
