//! Temporary files for uploads: created beside the destination, moved into place atomically,
//! and never left behind.
//!
//! An upload is written to `.burnlink-<random>.part` in the destination's directory (same file
//! system, so the final rename is atomic), fsynced, and renamed over the destination, or, when
//! the link forbids overwriting, renamed with `RENAME_NOREPLACE` so a file that appeared during
//! the upload is never replaced (no check-then-rename race). A [`Staged`] file that is dropped
//! without being persisted removes itself.
//!
//! A crash leaves its temporary behind, so start-up sweeps them away ([`sweep`]). Replicas may
//! share the sandbox root, so the sweep must not remove another process's upload in flight:
//! each writer holds an exclusive `flock` on its temporary for as long as it is open, the
//! kernel drops that lock when the process dies, and the sweep only removes files it can lock.
//!
//! A resumable upload's partial file is a [`Staged`] that outlives its requests: its name is
//! derived from the link (`.burnlink-<nonce hex>-<expiry>-<length>[-<sha256 hex>].part`, the
//! digest the client announced for the whole file, if any), so any request on
//! the link, on any replica sharing the root, finds it again; its durable offset is its synced
//! length. It is kept when dropped, removed when terminated, and the sweeps remove it only
//! once the link's expiry (in its name) has passed.

use std::io;

use cap_std::fs::{Dir, OpenOptions, OpenOptionsExt};
use rustix::fs::{AtFlags, FlockOperation, RenameFlags};

const PREFIX: &str = ".burnlink-";
const SUFFIX: &str = ".part";

/// How deep the start-up sweep descends; deeper trees are left alone rather than walked
/// without bound.
const SWEEP_MAX_DEPTH: usize = 64;

/// An upload's temporary file, locked while it is open.
pub struct Staged {
    dir: Dir,
    temp_name: String,
    file: std::fs::File,
    persisted: bool,
    /// A partial upload: kept when dropped unpersisted (see [`Staged::discard`]).
    keep: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// `overwrite = false` and something is at the destination now.
    #[error("the destination exists")]
    Exists,
    /// The caller's hold on the upload ended before the rename; nothing moved.
    #[error("the upload's lease was lost before it could land")]
    LeaseLost,
    #[error("{0}")]
    Io(#[from] io::Error),
}

impl Staged {
    /// Creates a fresh temporary in `dir`, locked before its name appears, so the sweep can
    /// never take a live upload for an orphan. Blocking.
    pub fn create(dir: Dir) -> io::Result<Staged> {
        let temp_name = format!("{PREFIX}{:032x}{SUFFIX}", rand::random::<u128>());
        let file = match create_locked_unnamed(&dir, &temp_name) {
            Ok(file) => file,
            // File systems without O_TMPFILE (NFS, some FUSE), or no /proc: name first, lock
            // right after. A sweep running in exactly that instant could remove the file; the
            // upload then fails cleanly at the rename and the link stays usable.
            Err(_) => {
                let mut options = OpenOptions::new();
                options.write(true).create_new(true);
                let file = dir.open_with(&temp_name, &options)?.into_std();
                rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive)
                    .map_err(io::Error::from)?;
                file
            }
        };
        Ok(Staged {
            dir,
            temp_name,
            file,
            persisted: false,
            keep: false,
        })
    }

    /// Creates the partial file `name` (from [`partial_name`]), replacing nothing, locked.
    /// Blocking.
    pub fn create_partial(dir: Dir, name: &str) -> io::Result<Staged> {
        let mut options = OpenOptions::new();
        options.read(true).write(true).create_new(true);
        let file = dir.open_with(name, &options)?.into_std();
        rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive)
            .map_err(io::Error::from)?;
        Ok(Staged {
            dir,
            temp_name: name.to_string(),
            file,
            persisted: false,
            keep: true,
        })
    }

    /// Opens the partial file `name` to append to it, locked (`WouldBlock`: another writer
    /// holds it). The file position is at its end. Blocking.
    pub fn resume_partial(dir: Dir, name: &str) -> io::Result<Staged> {
        use std::io::Seek;
        let mut options = OpenOptions::new();
        options
            .read(true)
            .write(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32);
        let mut file = dir.open_with(name, &options)?.into_std();
        if !file.metadata()?.is_file() {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "not a file"));
        }
        rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive)
            .map_err(io::Error::from)?;
        file.seek(io::SeekFrom::End(0))?;
        Ok(Staged {
            dir,
            temp_name: name.to_string(),
            file,
            persisted: false,
            keep: true,
        })
    }

    /// Whether this is a partial upload, kept when dropped.
    pub fn is_partial(&self) -> bool {
        self.keep
    }

    /// The file's length: for a synced partial file, its durable offset. Blocking.
    pub fn offset(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    /// Reads the whole file from its start in batches of `batch` bytes, for hashing a partial
    /// upload at completion in constant memory. Blocking.
    pub fn read_back(&self, batch: usize, mut each: impl FnMut(&[u8])) -> io::Result<u64> {
        use std::os::unix::fs::FileExt;
        let mut buf = vec![0u8; batch];
        let mut at = 0u64;
        loop {
            let n = self.file.read_at(&mut buf, at)?;
            if n == 0 {
                return Ok(at);
            }
            each(&buf[..n]);
            at += n as u64;
        }
    }

    /// Removes the file (a partial one too). Blocking.
    pub fn discard(mut self) {
        self.keep = false;
        drop(self);
    }

    pub fn file(&mut self) -> &mut std::fs::File {
        &mut self.file
    }

    /// Flushes the written bytes to stable storage. Blocking.
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_all()
    }

    /// Moves the (already synced) file to `name` in its directory and syncs the directory, so
    /// the new name survives a crash. `still_held` is asked right before the rename, the last
    /// moment at which the upload can still back out. With `overwrite = false` an existing
    /// `name` (a file, a directory, a symlink) wins and nothing moves; with `overwrite = true`
    /// a directory in the way wins too. Once the name exists the upload has landed, so a
    /// failure to sync the directory afterwards is logged rather than reported. Blocking.
    pub fn persist(
        mut self,
        name: &str,
        overwrite: bool,
        still_held: impl FnOnce() -> bool,
    ) -> Result<(), PersistError> {
        if !still_held() {
            return Err(PersistError::LeaseLost);
        }
        if overwrite {
            match rustix::fs::renameat(&self.dir, &self.temp_name, &self.dir, name) {
                Ok(()) => {}
                Err(
                    rustix::io::Errno::ISDIR
                    | rustix::io::Errno::NOTEMPTY
                    | rustix::io::Errno::EXIST,
                ) => {
                    return Err(PersistError::Exists);
                }
                Err(e) => return Err(io::Error::from(e).into()),
            }
        } else {
            self.rename_noreplace(name)?;
        }
        self.persisted = true;
        if let Err(e) = crate::sandbox::sync_dir(&self.dir) {
            tracing::error!(error = %e, "an upload landed but its directory could not be synced");
        }
        Ok(())
    }

    fn rename_noreplace(&mut self, name: &str) -> Result<(), PersistError> {
        let (dir, temp) = (&self.dir, self.temp_name.as_str());
        match rustix::fs::renameat_with(dir, temp, dir, name, RenameFlags::NOREPLACE) {
            Ok(()) => Ok(()),
            Err(rustix::io::Errno::EXIST) => Err(PersistError::Exists),
            // File systems without RENAME_NOREPLACE (NFS, some FUSE): a hard link fails just
            // as atomically when the name is taken.
            Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => {
                match rustix::fs::linkat(dir, temp, dir, name, AtFlags::empty()) {
                    Ok(()) => {
                        // Landed. The temporary name is now a second name of the same file.
                        self.persisted = true;
                        if let Err(e) = rustix::fs::unlinkat(dir, temp, AtFlags::empty()) {
                            tracing::warn!(error = %e, file = temp, "could not remove a temporary name");
                        }
                        Ok(())
                    }
                    Err(rustix::io::Errno::EXIST) => Err(PersistError::Exists),
                    Err(e) => Err(io::Error::from(e).into()),
                }
            }
            Err(e) => Err(io::Error::from(e).into()),
        }
    }
}

/// An unnamed file in `dir` (O_TMPFILE), locked, then given `name` through /proc (linkat of
/// an O_TMPFILE needs no privilege that way). Blocking.
fn create_locked_unnamed(dir: &Dir, name: &str) -> io::Result<std::fs::File> {
    use rustix::fs::{Mode, OFlags};
    use std::os::fd::AsRawFd;
    let fd = rustix::fs::openat(
        dir,
        ".",
        OFlags::TMPFILE | OFlags::WRONLY | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )?;
    rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive)?;
    let proc_path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    rustix::fs::linkat(
        rustix::fs::CWD,
        proc_path.as_str(),
        dir,
        name,
        AtFlags::SYMLINK_FOLLOW,
    )?;
    Ok(std::fs::File::from(fd))
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.persisted
            && !self.keep
            && let Err(e) = self.dir.remove_file(&self.temp_name)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(error = %e, file = %self.temp_name, "could not remove an upload's temporary file");
        }
    }
}

/// Whether a directory entry is an upload's temporary (also left out of directory archives).
pub fn is_temporary(name: &str) -> bool {
    name.len() > PREFIX.len() + SUFFIX.len() && name.starts_with(PREFIX) && name.ends_with(SUFFIX)
}

/// A resumable upload's partial file, as its name describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partial {
    pub name: String,
    /// The upload's total length.
    pub length: u64,
    /// The SHA-256 the client announced for the whole file at creation.
    pub sha256: Option<[u8; 32]>,
}

/// The partial file of a resumable upload on the link with nonce `nonce_hex`, expiring at
/// `expires_at` (Unix seconds), of `length` bytes in all, with the whole file's announced
/// SHA-256 if any.
pub fn partial_name(
    nonce_hex: &str,
    expires_at: u64,
    length: u64,
    sha256: Option<&[u8; 32]>,
) -> String {
    match sha256 {
        Some(d) => format!(
            "{PREFIX}{nonce_hex}-{expires_at}-{length}-{}{SUFFIX}",
            crate::token::hex(d)
        ),
        None => format!("{PREFIX}{nonce_hex}-{expires_at}-{length}{SUFFIX}"),
    }
}

/// The partial upload `name` describes, if it is the one of the link with nonce `nonce_hex`
/// (the same names serve partial objects in a bucket).
pub fn partial_of(name: &str, nonce_hex: &str) -> Option<Partial> {
    let (nonce, _, length, sha256) = parse_partial(name)?;
    (nonce == nonce_hex).then(|| Partial {
        name: name.to_string(),
        length,
        sha256,
    })
}

/// The link expiry (Unix seconds) a partial upload's name carries, if it is one.
pub fn partial_expiry(name: &str) -> Option<u64> {
    parse_partial(name).map(|(_, expires_at, _, _)| expires_at)
}

/// The nonce, expiry, length and digest a partial file's name carries, if it is one.
fn parse_partial(name: &str) -> Option<(&str, u64, u64, Option<[u8; 32]>)> {
    let inner = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    let mut parts = inner.split('-');
    let (nonce, expires, length) = (parts.next()?, parts.next()?, parts.next()?);
    let sha256 = match parts.next() {
        None => None,
        Some(h) => Some(unhex(h)?),
    };
    if parts.next().is_some() || nonce.is_empty() || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some((nonce, expires.parse().ok()?, length.parse().ok()?, sha256))
}

fn unhex(h: &str) -> Option<[u8; 32]> {
    if h.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(h.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The partial file of the link with nonce `nonce_hex` in `dir`, if any. Blocking.
pub fn find_partial(dir: &Dir, nonce_hex: &str) -> io::Result<Option<Partial>> {
    for entry in dir.entries()? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some((nonce, _, length, sha256)) = parse_partial(name)
            && nonce == nonce_hex
        {
            return Ok(Some(Partial {
                name: name.to_string(),
                length,
                sha256,
            }));
        }
    }
    Ok(None)
}

/// Removes temporaries that no live process holds, and partial uploads whose link expired,
/// anywhere under `root`, without following symlinks. Returns how many it removed. Blocking;
/// run at start-up and periodically.
pub fn sweep(root: &Dir) -> usize {
    let mut removed = 0;
    let now = crate::token::unix_now();
    let Ok(start) = root.open_dir(".") else {
        return 0;
    };
    let mut stack = vec![(start, 0usize)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(entries) = dir.entries() else { continue };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if kind.is_dir() {
                if depth < SWEEP_MAX_DEPTH
                    && let Ok(sub) = dir.open_dir(name)
                {
                    stack.push((sub, depth + 1));
                }
            } else if kind.is_file()
                && is_temporary(name)
                && !unexpired_partial(name, now)
                && orphaned(&dir, name)
            {
                match dir.remove_file(name) {
                    Ok(()) => removed += 1,
                    Err(e) => {
                        tracing::warn!(error = %e, file = name, "could not remove a stale upload")
                    }
                }
            }
        }
    }
    removed
}

/// A resumable upload's partial file whose link has not expired yet: kept for its client.
fn unexpired_partial(name: &str, now: u64) -> bool {
    parse_partial(name).is_some_and(|(_, expires_at, _, _)| expires_at > now)
}

/// A temporary whose lock can be taken has no writer left: its process died mid-upload.
fn orphaned(dir: &Dir, name: &str) -> bool {
    let mut options = OpenOptions::new();
    // A FIFO swapped in must not block the sweep.
    options
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32);
    match dir.open_with(name, &options) {
        Ok(file) => rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive).is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cap_std::ambient_authority;
    use std::io::Write;

    fn dir(path: &std::path::Path) -> Dir {
        Dir::open_ambient_dir(path, ambient_authority()).unwrap()
    }

    fn names(path: &std::path::Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn persists_atomically_and_cleans_up_when_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = Staged::create(dir(tmp.path())).unwrap();
        s.file().write_all(b"new").unwrap();
        s.sync().unwrap();
        assert_eq!(names(tmp.path()).len(), 1);
        s.persist("dest.txt", true, || true).unwrap();
        assert_eq!(names(tmp.path()), vec!["dest.txt"]);
        assert_eq!(std::fs::read(tmp.path().join("dest.txt")).unwrap(), b"new");

        let mut s = Staged::create(dir(tmp.path())).unwrap();
        s.file().write_all(b"abandoned").unwrap();
        drop(s);
        assert_eq!(names(tmp.path()), vec!["dest.txt"], "no temporary left");
    }

    #[test]
    fn a_lost_hold_moves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("dest.txt"), b"old").unwrap();
        let mut s = Staged::create(dir(tmp.path())).unwrap();
        s.file().write_all(b"new").unwrap();
        assert!(matches!(
            s.persist("dest.txt", true, || false),
            Err(PersistError::LeaseLost)
        ));
        assert_eq!(names(tmp.path()), vec!["dest.txt"]);
        assert_eq!(std::fs::read(tmp.path().join("dest.txt")).unwrap(), b"old");
        // A directory in the way wins over a replacing upload too.
        std::fs::create_dir(tmp.path().join("sub")).unwrap();
        let s = Staged::create(dir(tmp.path())).unwrap();
        assert!(matches!(
            s.persist("sub", true, || true),
            Err(PersistError::Exists)
        ));
        assert_eq!(names(tmp.path()), vec!["dest.txt", "sub"]);
    }

    #[test]
    fn no_overwrite_never_replaces_what_is_there() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("dest.txt"), b"old").unwrap();
        std::fs::create_dir(tmp.path().join("sub")).unwrap();
        std::os::unix::fs::symlink("/nonexistent", tmp.path().join("dangling")).unwrap();
        for name in ["dest.txt", "sub", "dangling"] {
            let mut s = Staged::create(dir(tmp.path())).unwrap();
            s.file().write_all(b"new").unwrap();
            assert!(
                matches!(s.persist(name, false, || true), Err(PersistError::Exists)),
                "{name}"
            );
        }
        assert_eq!(std::fs::read(tmp.path().join("dest.txt")).unwrap(), b"old");
        assert_eq!(names(tmp.path()), vec!["dangling", "dest.txt", "sub"]);

        let s = Staged::create(dir(tmp.path())).unwrap();
        s.persist("fresh.txt", false, || true).unwrap();
        assert!(tmp.path().join("fresh.txt").exists());
    }

    #[test]
    fn partials_survive_drops_and_sweeps_until_their_link_expires() {
        let tmp = tempfile::tempdir().unwrap();
        let now = crate::token::unix_now();
        let live = partial_name("ab01", now + 3600, 10, None);
        let dead = partial_name("cd02", now - 1, 10, Some(&[7; 32]));
        let mut s = Staged::create_partial(dir(tmp.path()), &live).unwrap();
        s.file().write_all(b"12345").unwrap();
        s.sync().unwrap();
        drop(s);
        std::fs::write(tmp.path().join(&dead), b"old").unwrap();
        assert_eq!(sweep(&dir(tmp.path())), 1);
        assert_eq!(names(tmp.path()), vec![live.clone()]);
        let found = find_partial(&dir(tmp.path()), "ab01").unwrap().unwrap();
        assert_eq!(
            (found.name, found.length, found.sha256),
            (live.clone(), 10, None)
        );
        let with_digest = partial_name("ef03", now + 60, 3, Some(&[0xab; 32]));
        assert_eq!(parse_partial(&with_digest).unwrap().3, Some([0xab; 32]));
        assert!(with_digest.len() < 255);
        assert!(find_partial(&dir(tmp.path()), "ab0").unwrap().is_none());
        let mut s = Staged::resume_partial(dir(tmp.path()), &live).unwrap();
        assert_eq!(s.offset().unwrap(), 5);
        assert!(
            Staged::resume_partial(dir(tmp.path()), &live).is_err(),
            "one writer at a time"
        );
        s.file().write_all(b"67890").unwrap();
        let mut seen = Vec::new();
        s.read_back(3, |b| seen.extend_from_slice(b)).unwrap();
        assert_eq!(seen, b"1234567890");
        s.persist("dest", false, || true).unwrap();
        assert_eq!(names(tmp.path()), vec!["dest"]);
        let s = Staged::create_partial(dir(tmp.path()), &live).unwrap();
        s.discard();
        assert_eq!(names(tmp.path()), vec!["dest"]);
    }

    #[test]
    fn sweep_removes_orphans_but_not_live_uploads() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("a/b")).unwrap();
        let orphan = tmp
            .path()
            .join("a/b/.burnlink-0123456789abcdef0123456789abcdef.part");
        std::fs::write(&orphan, b"left by a crash").unwrap();
        std::fs::write(tmp.path().join("a/.burnlink-notes.txt"), b"a user's file").unwrap();
        std::fs::write(tmp.path().join("a/.burnlink-.part"), b"too short a name").unwrap();
        let live = Staged::create(dir(&tmp.path().join("a"))).unwrap();

        assert_eq!(sweep(&dir(tmp.path())), 1);
        assert!(!orphan.exists());
        assert_eq!(
            names(&tmp.path().join("a")).len(),
            4,
            "live upload and user files kept"
        );
        drop(live);
        assert_eq!(names(&tmp.path().join("a")).len(), 3);
    }
}
