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

use std::io;

use cap_std::fs::{Dir, OpenOptions};
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
}

#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// `overwrite = false` and something is at the destination now.
    #[error("the destination exists")]
    Exists,
    #[error("{0}")]
    Io(#[from] io::Error),
}

impl Staged {
    /// Creates a fresh temporary in `dir`. Blocking.
    pub fn create(dir: Dir) -> io::Result<Staged> {
        let temp_name = format!("{PREFIX}{:032x}{SUFFIX}", rand::random::<u128>());
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        let file = dir.open_with(&temp_name, &options)?.into_std();
        let staged = Staged {
            dir,
            temp_name,
            file,
            persisted: false,
        };
        // Fresh and unshared, so this cannot block; it marks the file as in use for the sweep.
        rustix::fs::flock(&staged.file, FlockOperation::NonBlockingLockExclusive)
            .map_err(io::Error::from)?;
        Ok(staged)
    }

    pub fn file(&mut self) -> &mut std::fs::File {
        &mut self.file
    }

    /// Flushes the written bytes to stable storage. Blocking.
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_all()
    }

    /// Moves the (already synced) file to `name` in its directory and syncs the directory, so
    /// the new name survives a crash. With `overwrite = false` an existing `name` (a file, a
    /// directory, a symlink) wins and nothing moves. Blocking.
    pub fn persist(mut self, name: &str, overwrite: bool) -> Result<(), PersistError> {
        if overwrite {
            rustix::fs::renameat(&self.dir, &self.temp_name, &self.dir, name)
                .map_err(io::Error::from)?;
        } else {
            self.rename_noreplace(name)?;
        }
        self.persisted = true;
        crate::sandbox::sync_dir(&self.dir)?;
        Ok(())
    }

    fn rename_noreplace(&self, name: &str) -> Result<(), PersistError> {
        let (dir, temp) = (&self.dir, self.temp_name.as_str());
        match rustix::fs::renameat_with(dir, temp, dir, name, RenameFlags::NOREPLACE) {
            Ok(()) => Ok(()),
            Err(rustix::io::Errno::EXIST) => Err(PersistError::Exists),
            // File systems without RENAME_NOREPLACE (NFS, some FUSE): a hard link fails just
            // as atomically when the name is taken.
            Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => {
                match rustix::fs::linkat(dir, temp, dir, name, AtFlags::empty()) {
                    Ok(()) => {
                        rustix::fs::unlinkat(dir, temp, AtFlags::empty())
                            .map_err(io::Error::from)?;
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

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.persisted
            && let Err(e) = self.dir.remove_file(&self.temp_name)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(error = %e, file = %self.temp_name, "could not remove an upload's temporary file");
        }
    }
}

fn is_temporary(name: &str) -> bool {
    name.len() > PREFIX.len() + SUFFIX.len() && name.starts_with(PREFIX) && name.ends_with(SUFFIX)
}

/// Removes temporaries that no live process holds, anywhere under `root`, without following
/// symlinks. Returns how many it removed. Blocking; run at start-up.
pub fn sweep(root: &Dir) -> usize {
    let mut removed = 0;
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
            } else if kind.is_file() && is_temporary(name) && orphaned(&dir, name) {
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

/// A temporary whose lock can be taken has no writer left: its process died mid-upload.
fn orphaned(dir: &Dir, name: &str) -> bool {
    let mut options = OpenOptions::new();
    options.read(true);
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
        s.persist("dest.txt", true).unwrap();
        assert_eq!(names(tmp.path()), vec!["dest.txt"]);
        assert_eq!(std::fs::read(tmp.path().join("dest.txt")).unwrap(), b"new");

        let mut s = Staged::create(dir(tmp.path())).unwrap();
        s.file().write_all(b"abandoned").unwrap();
        drop(s);
        assert_eq!(names(tmp.path()), vec!["dest.txt"], "no temporary left");
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
                matches!(s.persist(name, false), Err(PersistError::Exists)),
                "{name}"
            );
        }
        assert_eq!(std::fs::read(tmp.path().join("dest.txt")).unwrap(), b"old");
        assert_eq!(names(tmp.path()), vec!["dangling", "dest.txt", "sub"]);

        let s = Staged::create(dir(tmp.path())).unwrap();
        s.persist("fresh.txt", false).unwrap();
        assert!(tmp.path().join("fresh.txt").exists());
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
