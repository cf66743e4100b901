//! Writing a directory as a zip, straight into a response body.
//!
//! The `zip` crate's writer is synchronous, so it runs on a blocking thread and hands its output
//! over in 256 KiB pieces through a bounded channel: memory stays at a few pieces whatever the
//! tree's size, and a client that reads slowly slows the writer down instead of filling memory.
//! Nothing is written to disk. With a non-seekable output the writer puts each entry's CRC and
//! sizes in a data descriptor after its data; zip64 fields are asked for only for an entry that
//! may reach 4 GiB (the crate adds the zip64 end records itself once the archive needs them).
//!
//! The end of the stream means a complete archive: the writer sends an explicit end marker only
//! after the central directory, and anything else (a read error, a file that shrank, the writer
//! thread dying) becomes an error, so the response is cut instead of ending short but "complete".

use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::SystemTime;

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use cap_std::fs::Dir;
use futures_util::{Stream, StreamExt};
use tokio::sync::mpsc;
use zip::write::{ExtendedFileOptions, FileOptions, FullFileOptions};
use zip::{CompressionMethod, DateTime, ZipWriter};

use super::Slot;
use super::method::{self, Method};
use super::walk::{self, EntryKind, Limits, Walk};
use crate::sandbox::{self, SandboxError, SessionId};
use crate::storage::Bucket;
use crate::text::LogSafe;

/// Where a directory's entries come from.
pub enum Tree {
    /// The session's sandbox directory, which the walk stays beneath.
    Disk(Dir),
    /// The session's prefix of a bucket.
    Bucket {
        bucket: Arc<Bucket>,
        session: Option<SessionId>,
    },
}

/// Size of the pieces handed to the response, and of file reads.
const PIECE: usize = 256 * 1024;

/// Pieces waiting between the writer thread and the connection.
const QUEUE: usize = 4;

/// How much of a file is looked at to choose Stored or Deflate.
const PROBE: usize = 64 * 1024;

/// An entry at least this large gets zip64 fields. Deflate can grow incompressible data a
/// little (5 bytes per 64 KiB block), so the margin keeps a "small" entry's compressed size
/// under 4 GiB too.
const ZIP64_FROM: u64 = u32::MAX as u64 - 16 * 1024 * 1024;

/// Extended timestamp extra field (Info-ZIP "UT"): the modification time in UTC seconds, which
/// unzip restores exactly; the DOS time fields have 2-second steps and no time zone.
const EXTENDED_TIMESTAMP: u16 = 0x5455;

/// How archives are written.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    pub limits: Limits,
    /// Deflate level (1–9).
    pub level: i64,
}

impl Default for Settings {
    /// Level 1 (docs/benchmarks.md): on generated text it ran at about 4.5 times the speed of level 6
    /// (128 against 28 MiB/s on one loaded core) for an output 39% larger; level 6 would make
    /// the CPU, not the network, the limit of most downloads.
    fn default() -> Self {
        Settings {
            limits: walk::LIMITS,
            level: 1,
        }
    }
}

/// What travels from the writer thread to the response body.
pub enum Piece {
    Data(Bytes),
    /// The archive is complete.
    End,
}

/// Starts writing the directory `root` (relative to the sandbox `base`) on a thread of its own,
/// which holds `slot` until it ends, and returns the stream of its bytes.
pub fn start(tree: Tree, root: String, settings: Settings, slot: Slot) -> ArchiveStream {
    let (tx, rx) = mpsc::channel(QUEUE);
    // The bucket's calls are async: the writer thread waits on them through the runtime.
    let runtime = tokio::runtime::Handle::try_current();
    let failed = tx.clone();
    let spawned = std::thread::Builder::new()
        .name("burnlink-zip".into())
        .spawn(move || {
            let _slot = slot;
            let out = ChannelWriter {
                tx: tx.clone(),
                buf: BytesMut::with_capacity(PIECE),
            };
            let written = match (&tree, runtime) {
                (Tree::Disk(base), _) => write_archive(base, &root, &settings, out),
                (Tree::Bucket { bucket, session }, Ok(rt)) => {
                    let session = session.as_ref();
                    write_bucket_archive(&rt, bucket, session, &root, &settings, out)
                }
                (Tree::Bucket { .. }, Err(e)) => Err(io::Error::other(e)),
            };
            let result = written.and_then(|out| out.end());
            if let Err(e) = result {
                if e.kind() != io::ErrorKind::BrokenPipe {
                    tracing::warn!(error = %e, root = %LogSafe(&root), "directory archive cut off");
                }
                let _ = tx.blocking_send(Err(e));
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start an archive thread");
        let _ = failed.try_send(Err(e));
    }
    ArchiveStream {
        rx,
        state: State::Running,
    }
}

/// Writes the zip of `root` into `out` and returns `out`. Blocking. Entries are named relative
/// to `root`; files that vanish or turn into something else between listing and opening are
/// left out, as symlinks out of the sandbox and loops are; a file that cannot be read in full
/// is an error.
pub fn write_archive<W: Write>(
    base: &Dir,
    root: &str,
    settings: &Settings,
    out: W,
) -> io::Result<W> {
    let mut zip = ZipWriter::new_stream(out);
    let mut buf = vec![0u8; PIECE];
    for entry in Walk::new(base, root, settings.limits).map_err(io::Error::other)? {
        let entry = entry.map_err(io::Error::other)?;
        match entry.kind {
            EntryKind::Directory => {
                let opts = options(entry.modified, entry.mode, Method::Stored, 0, false);
                zip.add_directory(entry_name(&entry.name), opts)?;
            }
            EntryKind::File => add_file(&mut zip, base, &entry, settings, &mut buf)?,
        }
    }
    Ok(zip.finish()?.into_inner())
}

/// The name an entry is written under: the walk's `/`-separated relative name, with the
/// characters that some extractor reads as structure percent-escaped: `\` (a separator to
/// Windows extractors: `..\..\evil.txt`), `:` (a drive letter, `C:\x`, or an NTFS stream) and
/// control characters, and `%` itself so the escaping stays one-to-one (two names on disk can
/// never become one entry). Names never start with `/` and hold no `..` component: the walk
/// builds them from directory entries, which are neither.
pub fn entry_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '%' | '\\' | ':' => out.push_str(&format!("%{:02X}", c as u32)),
            c if c.is_control() => {
                let mut utf8 = [0u8; 4];
                for b in c.encode_utf8(&mut utf8).bytes() {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

fn add_file<W: Write + io::Seek>(
    zip: &mut ZipWriter<W>,
    base: &Dir,
    entry: &walk::Entry,
    settings: &Settings,
    buf: &mut [u8],
) -> io::Result<()> {
    let (mut file, meta) = match sandbox::open_regular(base, &entry.rel) {
        Ok(opened) => opened,
        Err(SandboxError::NotFound | SandboxError::Outside | SandboxError::NotAFileOrDirectory) => {
            tracing::debug!(
                name = %LogSafe(&entry.name),
                "changed since listed; left out of the archive"
            );
            return Ok(());
        }
        Err(e) => return Err(io::Error::other(e)),
    };
    // The size when opened is the size archived: a file that grows meanwhile is cut at it, one
    // that shrinks fails the archive.
    let size = meta.len();
    let head = read_exact_or_shrank(&mut file, &mut buf[..(size as usize).min(PROBE)])?;
    let method = method::choose(&entry.name, head);
    let opts = options(
        meta.modified().ok(),
        std::os::unix::fs::MetadataExt::mode(&meta),
        method,
        settings.level,
        size >= ZIP64_FROM,
    );
    zip.start_file(entry_name(&entry.name), opts)?;
    zip.write_all(head)?;
    let mut left = size - head.len() as u64;
    while left > 0 {
        let want = (left as usize).min(buf.len());
        let got = read_exact_or_shrank(&mut file, &mut buf[..want])?;
        zip.write_all(got)?;
        left -= got.len() as u64;
    }
    Ok(())
}

fn read_exact_or_shrank<'b>(file: &mut impl Read, buf: &'b mut [u8]) -> io::Result<&'b [u8]> {
    file.read_exact(buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            io::Error::new(e.kind(), "a file shrank while being archived")
        } else {
            e
        }
    })?;
    Ok(buf)
}

/// [`write_archive`] for a bucket prefix: entries in key order, `/`-terminated markers as
/// empty directories, each object read in one streamed `GET` (conditional on the version
/// listed; one replaced or deleted meanwhile is left out). The same limits as a walk apply.
/// Blocking: waits on the runtime `rt` for the bucket.
pub fn write_bucket_archive<W: Write>(
    rt: &tokio::runtime::Handle,
    bucket: &Bucket,
    session: Option<&SessionId>,
    root: &str,
    settings: &Settings,
    out: W,
) -> io::Result<W> {
    // The bucket's streams set timers, which need the runtime's context on this thread.
    let _context = rt.enter();
    let mut zip = ZipWriter::new_stream(out);
    let mut buf = vec![0u8; PIECE];
    let limits = settings.limits;
    let mut listing = bucket.list(session, root).map_err(io::Error::other)?;
    let (mut seen, mut names) = (0usize, 0usize);
    while let Some(entry) = rt.block_on(listing.next()) {
        let entry = entry.map_err(io::Error::other)?;
        seen += 1;
        names += entry.name.len();
        limits
            .check_listed(seen, names, &entry.name)
            .map_err(io::Error::other)?;
        let modified = Some(entry.object.modified);
        if entry.is_dir {
            let opts = options(modified, 0o755, Method::Stored, 0, false);
            zip.add_directory(entry_name(&entry.name), opts)?;
            continue;
        }
        let size = entry.object.size;
        let stream = match rt.block_on(bucket.read(session, &entry.rel, &entry.object, 0, size)) {
            Ok(stream) => stream,
            Err(SandboxError::NotFound) => {
                tracing::debug!(
                    name = %LogSafe(&entry.name),
                    "changed since listed; left out of the archive"
                );
                continue;
            }
            Err(e) => return Err(io::Error::other(e)),
        };
        let mut reader = tokio_util::io::SyncIoBridge::new_with_handle(
            tokio_util::io::StreamReader::new(stream),
            rt.clone(),
        );
        let head = read_exact_or_shrank(&mut reader, &mut buf[..(size as usize).min(PROBE)])?;
        let method = method::choose(&entry.name, head);
        let opts = options(modified, 0o644, method, settings.level, size >= ZIP64_FROM);
        zip.start_file(entry_name(&entry.name), opts)?;
        zip.write_all(head)?;
        let mut left = size - head.len() as u64;
        while left > 0 {
            let want = (left as usize).min(buf.len());
            let got = read_exact_or_shrank(&mut reader, &mut buf[..want])?;
            zip.write_all(got)?;
            left -= got.len() as u64;
        }
    }
    Ok(zip.finish()?.into_inner())
}

fn options(
    modified: Option<SystemTime>,
    mode: u32,
    method: Method,
    level: i64,
    large: bool,
) -> FullFileOptions<'static, 'static> {
    let mut opts: FileOptions<'static, 'static, ExtendedFileOptions> = FileOptions::default()
        .unix_permissions(mode & 0o7777)
        .large_file(large);
    opts = match method {
        Method::Stored => opts.compression_method(CompressionMethod::Stored),
        Method::Deflated => opts
            .compression_method(CompressionMethod::Deflated)
            .compression_level(Some(level)),
    };
    if let Some(t) = modified {
        opts = opts.last_modified_time(dos_time(t));
        let secs = t
            .duration_since(SystemTime::UNIX_EPOCH)
            .ok()
            .and_then(|d| u32::try_from(d.as_secs()).ok());
        if let Some(secs) = secs {
            let mut ut = vec![1u8]; // flags: modification time present
            ut.extend_from_slice(&secs.to_le_bytes());
            // Cannot fail: one 9-byte field per entry.
            let _ = opts.add_extra_field(EXTENDED_TIMESTAMP, ut, false);
        }
    }
    opts
}

/// The DOS date and time fields, in UTC, clamped to their 1980–2107 range.
fn dos_time(t: SystemTime) -> DateTime {
    let t = time::OffsetDateTime::from(t);
    let at = |t: time::OffsetDateTime| {
        DateTime::from_date_and_time(
            t.year().clamp(1980, 2107) as u16,
            t.month() as u8,
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
        )
    };
    if t.year() < 1980 {
        DateTime::default()
    } else {
        at(t).unwrap_or_default()
    }
}

/// The writer thread's end of the channel: collects bytes into pieces.
struct ChannelWriter {
    tx: mpsc::Sender<io::Result<Piece>>,
    buf: BytesMut,
}

impl ChannelWriter {
    fn send(&mut self, piece: Piece) -> io::Result<()> {
        self.tx
            .blocking_send(Ok(piece))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }

    fn send_buffered(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let piece = std::mem::replace(&mut self.buf, BytesMut::with_capacity(PIECE)).freeze();
        self.send(Piece::Data(piece))
    }

    /// Sends what is left and the end marker: the archive is complete.
    fn end(mut self) -> io::Result<()> {
        self.send_buffered()?;
        self.send(Piece::End)
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(PIECE - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= PIECE {
            self.send_buffered()?;
        }
        Ok(n)
    }

    /// Pieces go out when full or at the end; a flush mid-archive need not send a small one.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

enum State {
    Running,
    Ended,
    Failed,
}

/// The response end of the channel. Ends only after the writer's end marker; fails otherwise.
pub struct ArchiveStream {
    rx: mpsc::Receiver<io::Result<Piece>>,
    state: State,
}

impl Stream for ArchiveStream {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.state {
            State::Running => {}
            State::Ended => return Poll::Ready(None),
            State::Failed => {
                return Poll::Ready(Some(Err(io::Error::other("the archive failed"))));
            }
        }
        let item = match ready!(self.rx.poll_recv(cx)) {
            Some(Ok(Piece::Data(bytes))) => return Poll::Ready(Some(Ok(bytes))),
            Some(Ok(Piece::End)) => {
                self.state = State::Ended;
                None
            }
            Some(Err(e)) => Some(Err(e)),
            None => Some(Err(io::Error::other("the archive writer stopped early"))),
        };
        if item.is_some() {
            self.state = State::Failed;
        }
        Poll::Ready(item)
    }
}

#[cfg(test)]
mod entry_name_tests {
    use super::entry_name;

    #[test]
    fn structure_characters_are_escaped_one_to_one() {
        assert_eq!(entry_name("a/b.txt"), "a/b.txt");
        assert_eq!(entry_name("..\\..\\evil.txt"), "..%5C..%5Cevil.txt");
        assert_eq!(entry_name("C:\\x"), "C%3A%5Cx");
        assert_eq!(entry_name("100%"), "100%25");
        assert_eq!(entry_name("a\nb"), "a%0Ab");
        assert_ne!(entry_name("a%5Cb"), entry_name("a\\b"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cap_std::ambient_authority;

    #[test]
    fn dos_times_are_utc_and_clamped() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let d = dos_time(t);
        // 2023-11-14 22:13:20 UTC
        assert_eq!(
            (
                d.year(),
                d.month(),
                d.day(),
                d.hour(),
                d.minute(),
                d.second()
            ),
            (2023, 11, 14, 22, 13, 20)
        );
        assert_eq!(dos_time(SystemTime::UNIX_EPOCH), DateTime::default());
    }

    #[test]
    fn a_written_archive_ends_with_the_end_of_central_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("d/e")).unwrap();
        std::fs::write(dir.path().join("d/a.txt"), b"hello ".repeat(100)).unwrap();
        let base = Dir::open_ambient_dir(dir.path(), ambient_authority()).unwrap();
        let out = write_archive(&base, "d", &Settings::default(), Vec::new()).unwrap();
        assert_eq!(&out[..4], b"PK\x03\x04");
        let eocd = out.len() - 22;
        assert_eq!(&out[eocd..eocd + 4], b"PK\x05\x06");
        // Two entries: e/ and a.txt.
        assert_eq!(u16::from_le_bytes([out[eocd + 10], out[eocd + 11]]), 2);
    }

    #[test]
    fn a_missing_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let base = Dir::open_ambient_dir(dir.path(), ambient_authority()).unwrap();
        assert!(write_archive(&base, "nope", &Settings::default(), Vec::new()).is_err());
    }
}
