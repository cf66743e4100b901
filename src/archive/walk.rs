//! Walking a directory inside the sandbox: what a directory link's size counts and what its zip
//! holds.
//!
//! Every path is resolved beneath the session's sandbox (a `cap_std::fs::Dir`), never beneath
//! the walked directory alone: a symlink that leaves the walked directory but stays in the
//! sandbox is followed, one that leaves the sandbox is refused by the kernel and skipped. A
//! symlink back to a directory being walked (a loop) is skipped. Entries come in byte order of
//! their names, directories before what they hold, so the same tree gives the same archive.
//!
//! Memory is bounded by [`Limits`]: only the names of the directories on the current path are
//! held, and their count is capped.

use std::ffi::OsString;
use std::time::SystemTime;

use cap_std::fs::{Dir, MetadataExt};

use crate::sandbox::SandboxError;
use crate::text::LogSafe;

/// Bounds on one walk. The zip writer keeps a central-directory record per entry until the
/// archive ends, so the entry count bounds its memory too.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Names listed, skipped ones included.
    pub max_entries: usize,
    /// Directories nested below the walked one.
    pub max_depth: usize,
    /// Total bytes of the entries' relative names.
    pub max_name_bytes: usize,
}

/// 100,000 entries, 64 levels, 16 MiB of names: far beyond a directory handed to a person, and
/// it keeps the archive writer's bookkeeping to a few tens of MiB at worst.
pub const LIMITS: Limits = Limits {
    max_entries: 100_000,
    max_depth: 64,
    max_name_bytes: 16 * 1024 * 1024,
};

#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    #[error("{0}")]
    Sandbox(#[from] SandboxError),
    #[error("the directory holds more than {0} entries")]
    TooManyEntries(usize),
    #[error("the directory is nested deeper than {0} levels")]
    TooDeep(usize),
    #[error("the directory's entry names take more than {0} bytes")]
    NamesTooLong(usize),
}

impl From<std::io::Error> for WalkError {
    fn from(e: std::io::Error) -> Self {
        WalkError::Sandbox(e.into())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Directory,
}

/// One file or directory of the tree.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Relative to the walked directory, `/`-separated, no trailing slash.
    pub name: String,
    /// Relative to the sandbox: what to open.
    pub rel: String,
    pub kind: EntryKind,
    /// At walk time; files are archived with their size when opened.
    pub size: u64,
    pub modified: Option<SystemTime>,
    pub mode: u32,
}

/// Why a name found in the tree is left out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// A symlink out of the sandbox.
    Escapes,
    /// A symlink to a directory being walked.
    Loop,
    /// Gone since it was listed, or a dangling symlink.
    Vanished,
    /// A FIFO, socket or device.
    Special,
    /// Not valid UTF-8: it cannot be named in a token-relative path.
    NotUtf8,
    /// An upload's temporary file: half-written, never part of the tree.
    UploadInProgress,
}

struct Level {
    /// Sorted descending, so `pop` yields ascending order.
    names: Vec<OsString>,
    /// The level's entry-name prefix (`""` or `"sub/"`).
    prefix: String,
    /// (device, inode), to recognise a loop.
    id: (u64, u64),
}

/// A depth-first walk of `root` (relative to the sandbox `base`). Yields entries until the tree
/// is done or an error ends the walk.
pub struct Walk<'a> {
    base: &'a Dir,
    root: String,
    stack: Vec<Level>,
    limits: Limits,
    listed: usize,
    name_bytes: usize,
    pub skipped: usize,
}

impl<'a> Walk<'a> {
    /// Starts a walk of the directory `root` (a normalised sandbox-relative path). Blocking.
    pub fn new(base: &'a Dir, root: &str, limits: Limits) -> Result<Self, WalkError> {
        let meta = base.metadata(root)?;
        if !meta.is_dir() {
            return Err(SandboxError::NotAFileOrDirectory.into());
        }
        let mut walk = Walk {
            base,
            root: root.to_string(),
            stack: Vec::new(),
            limits,
            listed: 0,
            name_bytes: 0,
            skipped: 0,
        };
        let names = walk.list(root)?;
        walk.stack.push(Level {
            names,
            prefix: String::new(),
            id: (meta.dev(), meta.ino()),
        });
        Ok(walk)
    }

    fn rel(&self, name: &str) -> String {
        if self.root == "." {
            name.to_string()
        } else {
            format!("{}/{name}", self.root)
        }
    }

    fn list(&mut self, rel: &str) -> Result<Vec<OsString>, WalkError> {
        let mut names = Vec::new();
        for entry in self.base.read_dir(rel)? {
            self.listed += 1;
            if self.listed > self.limits.max_entries {
                return Err(WalkError::TooManyEntries(self.limits.max_entries));
            }
            names.push(entry?.file_name());
        }
        names.sort_unstable_by(|a, b| b.cmp(a));
        Ok(names)
    }

    fn skip(&mut self, name: &str, why: Skip) {
        self.skipped += 1;
        tracing::debug!(
            root = %LogSafe(&self.root),
            name = %LogSafe(name),
            ?why,
            "left out of a directory archive"
        );
    }

    fn next_entry(&mut self) -> Result<Option<Entry>, WalkError> {
        loop {
            let Some(level) = self.stack.last_mut() else {
                return Ok(None);
            };
            let Some(os) = level.names.pop() else {
                self.stack.pop();
                continue;
            };
            let prefix = level.prefix.clone();
            let Some(leaf) = os.to_str() else {
                let lossy = format!("{prefix}{}", os.to_string_lossy());
                self.skip(&lossy, Skip::NotUtf8);
                continue;
            };
            let name = format!("{prefix}{leaf}");
            if crate::staging::is_temporary(leaf) {
                self.skip(&name, Skip::UploadInProgress);
                continue;
            }
            let rel = self.rel(&name);
            // Follows symlinks, beneath the sandbox only.
            let meta = match self.base.metadata(&rel) {
                Ok(m) => m,
                Err(e) => match SandboxError::from(e) {
                    SandboxError::NotFound => {
                        self.skip(&name, Skip::Vanished);
                        continue;
                    }
                    SandboxError::Outside => {
                        self.skip(&name, Skip::Escapes);
                        continue;
                    }
                    other => return Err(other.into()),
                },
            };
            let kind = if meta.is_dir() {
                let id = (meta.dev(), meta.ino());
                if self.stack.iter().any(|l| l.id == id) {
                    self.skip(&name, Skip::Loop);
                    continue;
                }
                if self.stack.len() > self.limits.max_depth {
                    return Err(WalkError::TooDeep(self.limits.max_depth));
                }
                let names = match self.list(&rel) {
                    Ok(n) => n,
                    Err(WalkError::Sandbox(SandboxError::NotFound)) => {
                        self.skip(&name, Skip::Vanished);
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                self.stack.push(Level {
                    names,
                    prefix: format!("{name}/"),
                    id,
                });
                EntryKind::Directory
            } else if meta.is_file() {
                EntryKind::File
            } else {
                self.skip(&name, Skip::Special);
                continue;
            };
            self.name_bytes += name.len();
            if self.name_bytes > self.limits.max_name_bytes {
                return Err(WalkError::NamesTooLong(self.limits.max_name_bytes));
            }
            return Ok(Some(Entry {
                size: if kind == EntryKind::File {
                    meta.len()
                } else {
                    0
                },
                modified: meta.modified().ok().map(|t| t.into_std()),
                mode: meta.mode(),
                name,
                rel,
                kind,
            }));
        }
    }
}

impl Iterator for Walk<'_> {
    type Item = Result<Entry, WalkError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.next_entry() {
            Ok(e) => e.map(Ok),
            Err(e) => {
                // An error ends the walk.
                self.stack.clear();
                Some(Err(e))
            }
        }
    }
}

/// What a directory link's mint reports: the sum of its files' sizes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub files: u64,
    pub directories: u64,
    pub bytes: u64,
}

impl Limits {
    /// Whether a listing that has seen `entries` names taking `name_bytes`, the last being
    /// `name` (relative, `/`-separated), is still within bounds. For a bucket's flat listing.
    pub fn check_listed(
        &self,
        entries: usize,
        name_bytes: usize,
        name: &str,
    ) -> Result<(), WalkError> {
        if entries > self.max_entries {
            Err(WalkError::TooManyEntries(self.max_entries))
        } else if name_bytes > self.max_name_bytes {
            Err(WalkError::NamesTooLong(self.max_name_bytes))
        } else if name.split('/').count() > self.max_depth + 1 {
            Err(WalkError::TooDeep(self.max_depth))
        } else {
            Ok(())
        }
    }
}

/// A bucket prefix's [`summarize`]: its objects' sizes added up from a listing, within the
/// same limits.
pub async fn summarize_bucket(
    bucket: &crate::storage::Bucket,
    session: Option<&crate::session::SessionId>,
    root: &str,
    limits: Limits,
) -> Result<Summary, WalkError> {
    use futures_util::StreamExt;
    let mut summary = Summary::default();
    let (mut entries, mut names) = (0usize, 0usize);
    let mut listing = bucket.list(session, root)?;
    while let Some(entry) = listing.next().await {
        let entry = entry?;
        entries += 1;
        names += entry.name.len();
        limits.check_listed(entries, names, &entry.name)?;
        if entry.is_dir {
            summary.directories += 1;
        } else {
            summary.files += 1;
            summary.bytes = summary.bytes.saturating_add(entry.object.size);
        }
    }
    Ok(summary)
}

/// Walks `root` and adds up its files. Blocking.
pub fn summarize(base: &Dir, root: &str, limits: Limits) -> Result<Summary, WalkError> {
    let mut summary = Summary::default();
    for entry in Walk::new(base, root, limits)? {
        let entry = entry?;
        match entry.kind {
            EntryKind::File => {
                summary.files += 1;
                summary.bytes = summary.bytes.saturating_add(entry.size);
            }
            EntryKind::Directory => summary.directories += 1,
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cap_std::ambient_authority;
    use std::os::unix::fs::symlink;

    /// outside/{secret.txt, root/{other/o.txt, d/{a.txt, é.txt, empty/, sub/{b.bin, up -> ..,
    /// sib -> ../../other, out -> ../../../secret.txt, dangling -> nope}}}}
    fn tree() -> (tempfile::TempDir, Dir) {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.txt"), b"secret").unwrap();
        let root = outside.path().join("root");
        std::fs::create_dir_all(root.join("d/sub")).unwrap();
        std::fs::create_dir_all(root.join("d/empty")).unwrap();
        std::fs::create_dir_all(root.join("other")).unwrap();
        std::fs::write(root.join("other/o.txt"), b"o").unwrap();
        std::fs::write(root.join("d/a.txt"), b"aaa").unwrap();
        std::fs::write(root.join("d/é.txt"), b"").unwrap();
        std::fs::write(root.join("d/sub/b.bin"), b"bbbbb").unwrap();
        symlink("..", root.join("d/sub/up")).unwrap();
        symlink("../../other", root.join("d/sub/sib")).unwrap();
        symlink("../../../secret.txt", root.join("d/sub/out")).unwrap();
        symlink("nope", root.join("d/sub/dangling")).unwrap();
        // An upload in progress beside the tree's files: never archived, never counted.
        std::fs::write(
            root.join("d/sub/.burnlink-0123456789abcdef0123456789abcdef.part"),
            b"half-written",
        )
        .unwrap();
        let dir = Dir::open_ambient_dir(&root, ambient_authority()).unwrap();
        (outside, dir)
    }

    fn names(dir: &Dir, root: &str) -> Vec<(String, EntryKind)> {
        Walk::new(dir, root, LIMITS)
            .unwrap()
            .map(|e| e.map(|e| (e.name, e.kind)).unwrap())
            .collect()
    }

    #[test]
    fn walks_in_order_following_only_symlinks_inside_and_skipping_loops() {
        let (_outside, dir) = tree();
        use EntryKind::*;
        assert_eq!(
            names(&dir, "d"),
            vec![
                ("a.txt".to_string(), File),
                ("empty".to_string(), Directory),
                ("sub".to_string(), Directory),
                ("sub/b.bin".to_string(), File),
                ("sub/sib".to_string(), Directory),
                ("sub/sib/o.txt".to_string(), File),
                ("é.txt".to_string(), File),
            ]
        );
        let mut walk = Walk::new(&dir, "d", LIMITS).unwrap();
        assert!(walk.by_ref().all(|e| e.is_ok()));
        assert_eq!(
            walk.skipped, 4,
            "up (loop), out (escapes), dangling, the upload's temporary"
        );
        let rels: Vec<String> = Walk::new(&dir, "d", LIMITS)
            .unwrap()
            .map(|e| e.unwrap().rel)
            .collect();
        assert_eq!(rels[0], "d/a.txt");
        assert_eq!(
            summarize(&dir, "d", LIMITS).unwrap(),
            Summary {
                files: 4,
                directories: 3,
                bytes: 3 + 5 + 1
            }
        );
        // The sandbox root itself.
        assert_eq!(names(&dir, ".")[0], ("d".to_string(), Directory));
    }

    #[test]
    fn refuses_what_is_not_a_directory_or_is_outside() {
        let (_outside, dir) = tree();
        assert!(matches!(
            Walk::new(&dir, "d/a.txt", LIMITS),
            Err(WalkError::Sandbox(SandboxError::NotAFileOrDirectory))
        ));
        assert!(matches!(
            Walk::new(&dir, "missing", LIMITS),
            Err(WalkError::Sandbox(SandboxError::NotFound))
        ));
        assert!(matches!(
            Walk::new(&dir, "d/sub/out", LIMITS),
            Err(WalkError::Sandbox(SandboxError::Outside))
        ));
    }

    #[test]
    fn limits_end_the_walk_with_an_error() {
        let (_outside, dir) = tree();
        let small = |f: fn(&mut Limits)| {
            let mut l = LIMITS;
            f(&mut l);
            summarize(&dir, "d", l)
        };
        assert!(matches!(
            small(|l| l.max_entries = 5),
            Err(WalkError::TooManyEntries(5))
        ));
        assert!(matches!(
            small(|l| l.max_depth = 1),
            Err(WalkError::TooDeep(1))
        ));
        assert!(matches!(
            small(|l| l.max_name_bytes = 10),
            Err(WalkError::NamesTooLong(10))
        ));
        assert!(small(|l| l.max_depth = 2).is_ok());
    }
}
