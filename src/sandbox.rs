//! Where links may point: the sandbox root and its per-session directories.
//!
//! Two layers keep every path inside. First a pure, lexical normalisation refuses `..`, NUL
//! bytes and absolute paths outside the sandbox, and gives the canonical relative form that goes
//! into tokens. Then every open goes through a `cap_std::fs::Dir` for the session's directory,
//! which resolves the path beneath that directory (openat2 `RESOLVE_BENEATH` on Linux), so a
//! symlink that points outside — even one swapped in after the link was minted — is refused by
//! the kernel, not by string checks.

use std::fmt;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use cap_std::ambient_authority;
use cap_std::fs::{Dir, Metadata, OpenOptions, OpenOptionsExt};

/// Longest relative path accepted; Linux's PATH_MAX.
pub const MAX_PATH_LEN: usize = 4096;

pub use crate::session::SessionId;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("{0}")]
    BadPath(&'static str),
    #[error("path is outside the sandbox")]
    Outside,
    #[error("no such file or directory")]
    NotFound,
    #[error("neither a regular file nor a directory")]
    NotAFileOrDirectory,
    #[error("file system error: {0}")]
    Io(io::Error),
    /// The storage (an object store) did not answer, or not in time: try again shortly.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// Another writer changed what this one read (a resumable upload's state in a bucket).
    #[error("changed by another writer meanwhile")]
    Conflict,
}

impl From<io::Error> for SandboxError {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => SandboxError::NotFound,
            // cap-std reports an escape (`..` past the base, an absolute symlink, a symlink
            // leading out) as PermissionDenied.
            io::ErrorKind::PermissionDenied => SandboxError::Outside,
            _ => SandboxError::Io(e),
        }
    }
}

/// What a path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Directory,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Directory => "directory",
        }
    }
}

/// The sandbox root, opened once. Cheap to clone.
#[derive(Clone)]
pub struct Sandbox {
    /// Canonical (symlinks resolved). Shared, as the whole struct is cloned per transfer.
    root_path: Arc<Path>,
    /// As configured, made absolute: callers may write absolute paths either way.
    configured_path: Arc<Path>,
    root: Arc<Dir>,
}

impl fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sandbox")
            .field("root", &self.root_path)
            .finish()
    }
}

impl Sandbox {
    /// Opens (creating if missing) the sandbox root.
    pub fn open(root: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(root)?;
        let root_path = root.canonicalize()?;
        let configured_path = std::path::absolute(root)?;
        let root = Dir::open_ambient_dir(&root_path, ambient_authority())?;
        Ok(Sandbox {
            root_path: root_path.into(),
            configured_path: configured_path.into(),
            root: Arc::new(root),
        })
    }

    /// The absolute path of a session's sandbox, as users see it.
    pub fn dir_path(&self, session: Option<&SessionId>) -> PathBuf {
        match session {
            Some(s) => self.root_path.join(s.as_str()),
            None => self.root_path.to_path_buf(),
        }
    }

    /// The canonical relative form of `input` within the session's sandbox (see
    /// [`normalize`]).
    pub fn normalize(
        &self,
        session: Option<&SessionId>,
        input: &str,
    ) -> Result<String, SandboxError> {
        match normalize(&self.dir_path(session), input) {
            Err(SandboxError::Outside) if Path::new(input).is_absolute() => {
                let configured = match session {
                    Some(s) => self.configured_path.join(s.as_str()),
                    None => self.configured_path.to_path_buf(),
                };
                normalize(&configured, input)
            }
            other => other,
        }
    }

    /// Opens the session's directory: every path below is resolved beneath it. Blocking.
    pub fn session_dir(&self, session: Option<&SessionId>) -> Result<Dir, SandboxError> {
        match session {
            // A session id is one plain component, so this cannot climb; cap-std still
            // refuses it if `{root}/{session}` is a symlink out.
            Some(s) => Ok(self.root.open_dir(s.as_str())?),
            None => Ok(self.root.open_dir(".")?),
        }
    }

    /// What `rel` names inside the session's sandbox, following symlinks only while they stay
    /// inside. Blocking.
    pub fn stat(&self, session: Option<&SessionId>, rel: &str) -> Result<Metadata, SandboxError> {
        let dir = self.session_dir(session)?;
        Ok(dir.metadata(rel)?)
    }

    /// Opens a regular file for reading. Blocking. Refuses anything else (a directory, a
    /// device, a FIFO that would block forever).
    pub fn open_file(
        &self,
        session: Option<&SessionId>,
        rel: &str,
    ) -> Result<(std::fs::File, std::fs::Metadata), SandboxError> {
        open_regular(&self.session_dir(session)?, rel)
    }
}

impl Sandbox {
    /// Checks an upload destination at mint time, creating nothing: what is there now, if
    /// anything. A missing parent is fine (uploads create it); a parent that is a file, or a
    /// path leading out of the sandbox, is not. Blocking.
    pub fn upload_destination(
        &self,
        session: Option<&SessionId>,
        rel: &str,
    ) -> Result<Option<Metadata>, SandboxError> {
        let (parent, _) = split_upload_path(rel)?;
        let dir = self.session_dir(session)?;
        match dir.metadata(parent) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(SandboxError::BadPath(
                    "a parent of the destination is a file",
                ));
            }
            Err(e) => {
                return match SandboxError::from(e) {
                    SandboxError::NotFound => Ok(None),
                    other => Err(other),
                };
            }
        }
        match dir.metadata(rel) {
            Ok(meta) => Ok(Some(meta)),
            Err(e) => match SandboxError::from(e) {
                SandboxError::NotFound => Ok(None),
                other => Err(other),
            },
        }
    }

    /// Opens the directory an upload to `rel` lands in, beneath the session's sandbox,
    /// creating missing directories; returns it with the file name. Directories it had to
    /// create are fsynced into their parents, so the path survives a crash along with the
    /// file. Blocking.
    pub fn upload_parent(
        &self,
        session: Option<&SessionId>,
        rel: &str,
    ) -> Result<(Dir, String), SandboxError> {
        let (parent, name) = split_upload_path(rel)?;
        let base = self.session_dir(session)?;
        match base.open_dir(parent) {
            Ok(dir) => return Ok((dir, name.to_string())),
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e.into()),
            Err(_) => {}
        }
        base.create_dir_all(parent)?;
        // Every directory from the session's down to the parent may have gained an entry.
        sync_dir(&base)?;
        let mut prefix = String::new();
        for component in parent.split('/') {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(component);
            let dir = base.open_dir(&prefix)?;
            sync_dir(&dir)?;
        }
        Ok((base.open_dir(parent)?, name.to_string()))
    }

    /// Opens a regular file for reading only if the kernel can resolve the whole path from its
    /// caches (`openat2` with `RESOLVE_CACHED`), so it never blocks and may run on an async
    /// worker. Same confinement as [`Sandbox::open_file`]: `RESOLVE_BENEATH` from the session's
    /// directory, no magic links, `O_NONBLOCK`. `None` whenever it cannot answer that way (not
    /// cached, an escape, anything else): the caller then takes the blocking path, whose answer
    /// is authoritative. A hit is the common case for files that were just minted or served.
    pub fn open_file_cached(
        &self,
        session: Option<&SessionId>,
        rel: &str,
    ) -> Option<(std::fs::File, std::fs::Metadata)> {
        use rustix::fs::{Mode, OFlags, ResolveFlags, openat2};
        use std::os::fd::AsFd;
        let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS | ResolveFlags::CACHED;
        let session_fd;
        let base = match session {
            Some(s) => {
                session_fd = openat2(
                    self.root.as_fd(),
                    s.as_str(),
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                    resolve,
                )
                .ok()?;
                session_fd.as_fd()
            }
            None => self.root.as_fd(),
        };
        let fd = openat2(
            base,
            rel,
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
            resolve,
        )
        .ok()?;
        let file = std::fs::File::from(fd);
        // fstat of an open file reads the in-memory inode.
        let meta = file.metadata().ok()?;
        meta.is_file().then_some((file, meta))
    }

    /// The sandbox root itself, for start-up housekeeping.
    pub fn root_dir(&self) -> &Dir {
        &self.root
    }
}

/// Flushes a directory's entries to stable storage, so a file renamed or created in it
/// survives a crash. cap-std's directory handles are `O_PATH`, which cannot be synced, so the
/// directory is opened once more for reading. Blocking.
pub fn sync_dir(dir: &Dir) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options
        .read(true)
        .custom_flags(rustix::fs::OFlags::DIRECTORY.bits() as i32);
    dir.open_with(".", &options)?.sync_all()
}

/// `a/b/c.txt` → (`a/b`, `c.txt`); `c.txt` → (`.`, `c.txt`). The sandbox itself is no
/// file name to upload to.
fn split_upload_path(rel: &str) -> Result<(&str, &str), SandboxError> {
    if rel == "." || rel.is_empty() {
        return Err(SandboxError::BadPath(
            "an upload needs a file name, not a directory",
        ));
    }
    Ok(rel.rsplit_once('/').unwrap_or((".", rel)))
}

/// Opens `rel` beneath `dir` for reading, if it is a regular file. Blocking.
pub fn open_regular(
    dir: &Dir,
    rel: &str,
) -> Result<(std::fs::File, std::fs::Metadata), SandboxError> {
    // O_NONBLOCK: opening a FIFO swapped in after minting must not block a thread forever;
    // regular files ignore the flag.
    let mut options = OpenOptions::new();
    options
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32);
    let file = dir.open_with(rel, &options)?.into_std();
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(SandboxError::NotAFileOrDirectory);
    }
    Ok((file, meta))
}

/// Checks the kind of an entry the sandbox resolved.
pub fn kind_of(meta: &Metadata) -> Result<Kind, SandboxError> {
    if meta.is_file() {
        Ok(Kind::File)
    } else if meta.is_dir() {
        Ok(Kind::Directory)
    } else {
        Err(SandboxError::NotAFileOrDirectory)
    }
}

/// Turns what a caller wrote into the canonical relative path stored in tokens.
///
/// `input` is relative to `base` or absolute inside it. `.` components and repeated
/// separators vanish; `..` anywhere is refused outright rather than resolved, because a
/// lexical `..` can be re-pointed by a symlink and never has a legitimate use here. The empty
/// result is `"."`, the sandbox itself. Pure: touches no file system.
pub fn normalize(base: &Path, input: &str) -> Result<String, SandboxError> {
    if input.contains('\0') {
        return Err(SandboxError::BadPath("path contains a NUL byte"));
    }
    if input.len() > MAX_PATH_LEN {
        return Err(SandboxError::BadPath("path is too long"));
    }
    let path = Path::new(input);
    let relative = if path.is_absolute() {
        path.strip_prefix(base).map_err(|_| SandboxError::Outside)?
    } else {
        path
    };
    let mut parts: Vec<&str> = Vec::new();
    for component in relative.components() {
        match component {
            Component::Normal(c) => parts.push(
                c.to_str()
                    .ok_or(SandboxError::BadPath("path is not valid UTF-8"))?,
            ),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(SandboxError::Outside);
            }
        }
    }
    if parts.is_empty() {
        return Ok(".".to_string());
    }
    Ok(parts.join("/"))
}

/// The last component of a normalised path, for file names in URLs and headers.
pub fn file_name(rel: &str) -> &str {
    rel.rsplit('/').next().unwrap_or(rel)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn session_ids() {
        assert!(SessionId::parse("abc-DEF_123").is_ok());
        assert!(SessionId::parse(&"a".repeat(64)).is_ok());
        for bad in ["", "a/b", "..", ".", "a b", "é", &"a".repeat(65)] {
            assert!(SessionId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn normalize_rules() {
        let base = Path::new("/srv/data/s1");
        assert_eq!(normalize(base, "a/b.txt").unwrap(), "a/b.txt");
        assert_eq!(normalize(base, "./a//b.txt").unwrap(), "a/b.txt");
        assert_eq!(normalize(base, "/srv/data/s1/a/b.txt").unwrap(), "a/b.txt");
        assert_eq!(normalize(base, "/srv/data/s1").unwrap(), ".");
        assert_eq!(normalize(base, "").unwrap(), ".");
        for bad in [
            "../x",
            "a/../../x",
            "a/..",
            "/etc/passwd",
            "/srv/data/s10/x",
            "/srv/data/x",
            "a\0b",
        ] {
            assert!(normalize(base, bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        /// Whatever goes in, what comes out is relative, has no `..` and no empty component,
        /// so joining it to the base can never name anything outside the base.
        #[test]
        fn normalized_paths_never_escape(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just("..".to_string()), Just(".".to_string()), Just("".to_string()),
                    Just("/".to_string()), Just("%2e%2e".to_string()), Just("\\..".to_string()),
                    "[a-zA-Z0-9._ -]{1,12}", "\\PC{1,6}",
                ],
                0..12,
            ),
            absolute in any::<bool>(),
        ) {
            let base = Path::new("/srv/data/s1");
            let joined = parts.join("/");
            let input = if absolute { format!("/srv/data/s1/{joined}") } else { joined };
            if let Ok(rel) = normalize(base, &input) {
                prop_assert!(!rel.starts_with('/'));
                if rel != "." {
                    for c in rel.split('/') {
                        prop_assert!(!c.is_empty() && c != "." && c != "..", "{rel:?}");
                    }
                }
                let full = base.join(&rel);
                let mut depth: i64 = 0;
                for c in Path::new(&rel).components() {
                    match c {
                        Component::Normal(_) => depth += 1,
                        Component::CurDir => {}
                        _ => depth -= 1000,
                    }
                }
                prop_assert!(depth >= 0);
                prop_assert!(full.starts_with(base));
            }
        }
    }

    fn tree() -> (tempfile::TempDir, Sandbox, PathBuf) {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.txt"), b"secret").unwrap();
        let root = outside.path().join("root");
        std::fs::create_dir_all(root.join("s1/sub")).unwrap();
        std::fs::create_dir_all(root.join("s2")).unwrap();
        std::fs::write(root.join("s1/sub/ok.txt"), b"ok").unwrap();
        std::fs::write(root.join("s2/other.txt"), b"other").unwrap();
        let sb = Sandbox::open(&root).unwrap();
        (outside, sb, root)
    }

    #[test]
    fn opens_inside_and_refuses_escaping_symlinks() {
        let (outside, sb, root) = tree();
        let s1 = SessionId::parse("s1").unwrap();
        let (_, meta) = sb.open_file(Some(&s1), "sub/ok.txt").unwrap();
        assert_eq!(meta.len(), 2);

        // A symlink that stays inside is followed.
        std::os::unix::fs::symlink("sub/ok.txt", root.join("s1/inside-link")).unwrap();
        assert!(sb.open_file(Some(&s1), "inside-link").is_ok());
        // The non-blocking open may always decline (the kernel promises nothing about its
        // caches); when it does answer, it is the same file.
        if let Some((mut f, _)) = sb.open_file_cached(Some(&s1), "inside-link") {
            let mut content = String::new();
            std::io::Read::read_to_string(&mut f, &mut content).unwrap();
            assert_eq!(content, "ok");
        }

        // Absolute and relative symlinks out of the sandbox are refused.
        std::os::unix::fs::symlink(outside.path().join("secret.txt"), root.join("s1/abs")).unwrap();
        std::os::unix::fs::symlink("../../secret.txt", root.join("s1/rel")).unwrap();
        for name in ["abs", "rel"] {
            assert!(
                matches!(sb.open_file(Some(&s1), name), Err(SandboxError::Outside)),
                "{name}"
            );
            assert!(sb.open_file_cached(Some(&s1), name).is_none(), "{name}");
            assert!(matches!(
                sb.stat(Some(&s1), name),
                Err(SandboxError::Outside)
            ));
        }

        // A symlink into another session's sandbox leaves this one, so it is refused too.
        std::os::unix::fs::symlink("../s2/other.txt", root.join("s1/cross")).unwrap();
        assert!(matches!(
            sb.open_file(Some(&s1), "cross"),
            Err(SandboxError::Outside)
        ));
        // ...but from the root sandbox the same file is inside.
        assert!(sb.open_file(None, "s2/other.txt").is_ok());

        assert!(matches!(
            sb.open_file(Some(&s1), "missing"),
            Err(SandboxError::NotFound)
        ));
        assert!(matches!(
            sb.open_file(Some(&s1), "sub"),
            Err(SandboxError::NotAFileOrDirectory)
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// On a real tree with symlinks that lead up, out and across, every path built from
        /// its names either fails or opens a file inside the sandbox.
        #[test]
        fn no_generated_path_opens_a_file_outside(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just("a.txt"), Just("sub"), Just("b.txt"), Just("up"), Just("out"),
                    Just("abs"), Just("secret.txt"), Just(".."), Just("."), Just(""),
                    Just("s2"), Just("other.txt"), Just("cross"),
                ],
                0..7,
            ),
            session in prop_oneof![Just(None), Just(Some("s1")), Just(Some("s2"))],
            absolute in any::<bool>(),
        ) {
            let (outside, sb, root) = symlink_maze();
            let session = session.map(|s| SessionId::parse(s).unwrap());
            let joined = parts.join("/");
            let input = if absolute {
                format!("{}/{joined}", sb.dir_path(session.as_ref()).display())
            } else {
                joined
            };
            let Ok(rel) = sb.normalize(session.as_ref(), &input) else {
                return Ok(());
            };
            // The blocking open and the non-blocking cached one are held to the same rule.
            let opened = [
                sb.open_file(session.as_ref(), &rel).ok(),
                sb.open_file_cached(session.as_ref(), &rel),
            ];
            for (mut file, _) in opened.into_iter().flatten() {
                let mut content = String::new();
                std::io::Read::read_to_string(&mut file, &mut content).unwrap();
                prop_assert!(content.starts_with("inside"), "{input:?} read {content:?}");
                // A session's sandbox is its own directory: nothing of s2 from s1.
                if session.as_ref().is_some_and(|s| s.as_str() == "s1") {
                    prop_assert!(content == "inside s1", "{input:?} read {content:?}");
                }
            }
            drop((outside, root));
        }
    }

    /// root/{a.txt, s1/{a.txt, sub/{b.txt, up -> .., out -> ../../.., abs -> /outside}, cross
    /// -> ../s2/other.txt}, s2/other.txt}, with outside/secret.txt next to root.
    fn symlink_maze() -> (tempfile::TempDir, Sandbox, PathBuf) {
        use std::os::unix::fs::symlink;
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.txt"), b"SECRET").unwrap();
        let root = outside.path().join("root");
        std::fs::create_dir_all(root.join("s1/sub")).unwrap();
        std::fs::create_dir_all(root.join("s2")).unwrap();
        std::fs::write(root.join("a.txt"), b"inside root").unwrap();
        std::fs::write(root.join("s1/a.txt"), b"inside s1").unwrap();
        std::fs::write(root.join("s1/sub/b.txt"), b"inside s1").unwrap();
        std::fs::write(root.join("s2/other.txt"), b"inside s2").unwrap();
        symlink("..", root.join("s1/sub/up")).unwrap();
        symlink("../../..", root.join("s1/sub/out")).unwrap();
        symlink(outside.path(), root.join("s1/sub/abs")).unwrap();
        symlink("../s2/other.txt", root.join("s1/cross")).unwrap();
        symlink(
            outside.path().join("secret.txt"),
            root.join("s2/secret.txt"),
        )
        .unwrap();
        let sb = Sandbox::open(&root).unwrap();
        (outside, sb, root)
    }

    #[test]
    fn the_maze_has_the_escapes_the_property_needs() {
        // Guard against a maze that cannot catch an escape: the raw file system does lead out.
        let (_outside, _sb, root) = symlink_maze();
        assert_eq!(
            std::fs::read(root.join("s1/sub/abs/secret.txt")).unwrap(),
            b"SECRET"
        );
        assert_eq!(
            std::fs::read(root.join("s1/sub/out/secret.txt")).unwrap(),
            b"SECRET"
        );
        assert_eq!(std::fs::read(root.join("s1/cross")).unwrap(), b"inside s2");
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let (_outside, sb, root) = tree();
        let fifo = root.join("s1/pipe");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let s1 = SessionId::parse("s1").unwrap();
        assert!(matches!(
            sb.open_file(Some(&s1), "pipe"),
            Err(SandboxError::NotAFileOrDirectory)
        ));
    }

    #[test]
    fn absolute_paths_through_a_symlinked_root_are_inside() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(outside.path().join("real")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("real"), outside.path().join("link"))
            .unwrap();
        let sb = Sandbox::open(&outside.path().join("link")).unwrap();
        for root in ["real", "link"] {
            let abs = outside.path().join(root).join("a.txt");
            assert_eq!(sb.normalize(None, abs.to_str().unwrap()).unwrap(), "a.txt");
        }
        let other = outside.path().join("elsewhere.txt");
        assert!(sb.normalize(None, other.to_str().unwrap()).is_err());
    }

    #[test]
    fn a_file_swapped_for_an_escaping_symlink_is_refused() {
        let (outside, sb, root) = tree();
        let s1 = SessionId::parse("s1").unwrap();
        assert!(sb.open_file(Some(&s1), "sub/ok.txt").is_ok());
        std::fs::remove_file(root.join("s1/sub/ok.txt")).unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("secret.txt"),
            root.join("s1/sub/ok.txt"),
        )
        .unwrap();
        assert!(matches!(
            sb.open_file(Some(&s1), "sub/ok.txt"),
            Err(SandboxError::Outside)
        ));
        // Swapping a parent directory for a symlink out is refused the same way.
        std::fs::remove_dir_all(root.join("s1/sub")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("s1/sub")).unwrap();
        assert!(matches!(
            sb.open_file(Some(&s1), "sub/secret.txt"),
            Err(SandboxError::Outside)
        ));
    }

    #[test]
    fn a_session_directory_that_is_a_symlink_out_is_refused() {
        let (outside, sb, root) = tree();
        std::os::unix::fs::symlink(outside.path(), root.join("evil")).unwrap();
        let evil = SessionId::parse("evil").unwrap();
        assert!(matches!(
            sb.open_file(Some(&evil), "secret.txt"),
            Err(SandboxError::Outside)
        ));
    }
}
