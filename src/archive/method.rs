//! Stored or Deflate, per file.
//!
//! Deflate runs at about 100 MiB/s per core while Stored runs at disk speed, and deflating a
//! JPEG or a tarball gains nothing. So a file is stored when its name or its first bytes say it
//! is already compressed, or when a sample of it looks random (high byte entropy); everything
//! else is deflated.

/// Extensions of formats that are compressed already (lower case). PDF is here too: its
/// streams are mostly deflated inside, and a second pass gains a few percent at most.
const COMPRESSED_EXTENSIONS: &[&str] = &[
    "7z", "aac", "apk", "avi", "avif", "br", "bz2", "cab", "deb", "dmg", "docx", "epub", "flac",
    "gif", "gz", "heic", "heif", "ipa", "jar", "jpeg", "jpg", "jxl", "lz", "lz4", "lzma", "m4a",
    "m4v", "mkv", "mov", "mp3", "mp4", "odp", "ods", "odt", "oga", "ogg", "ogv", "opus", "pdf",
    "png", "pptx", "rar", "rpm", "tbz", "tbz2", "tgz", "txz", "tzst", "war", "webm", "webp", "whl",
    "woff", "woff2", "xlsx", "xz", "zip", "zst",
];

/// Leading bytes (at an offset) of compressed formats, for files whose name says nothing.
const MAGIC: &[(usize, &[u8])] = &[
    (0, b"\xFF\xD8\xFF"),       // JPEG
    (0, b"\x89PNG\r\n\x1A\n"),  // PNG
    (0, b"GIF8"),               // GIF
    (0, b"PK\x03\x04"),         // zip, jar, docx, apk...
    (0, b"\x1F\x8B"),           // gzip
    (0, b"BZh"),                // bzip2
    (0, b"\xFD7zXZ\x00"),       // xz
    (0, b"\x28\xB5\x2F\xFD"),   // zstd
    (0, b"7z\xBC\xAF\x27\x1C"), // 7z
    (0, b"Rar!\x1A\x07"),       // rar
    (0, b"\x04\x22\x4D\x18"),   // lz4
    (0, b"OggS"),               // ogg
    (0, b"fLaC"),               // flac
    (0, b"ID3"),                // mp3 with tags
    (0, b"\x1A\x45\xDF\xA3"),   // matroska, webm
    (0, b"wOFF"),               // woff
    (0, b"wOF2"),               // woff2
    (0, b"%PDF-"),              // pdf
    (4, b"ftyp"),               // mp4, mov, heic, avif
    (8, b"WEBP"),               // webp (after RIFF....)
];

/// Bits per byte above which a sample is taken as already compressed or encrypted. Random and
/// compressed data measure 7.9+ on a 64 KiB sample; text about 4.5, executables 5 to 6.5.
const ENTROPY_THRESHOLD: f64 = 7.5;

/// Samples shorter than this say little about entropy.
const MIN_SAMPLE: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Stored,
    Deflated,
}

/// Picks the method for a file called `name` whose first bytes are `head` (up to the whole
/// file; empty means an empty file).
pub fn choose(name: &str, head: &[u8]) -> Method {
    if head.is_empty() || has_compressed_extension(name) || has_compressed_magic(head) {
        return Method::Stored;
    }
    if head.len() >= MIN_SAMPLE && entropy(head) > ENTROPY_THRESHOLD {
        return Method::Stored;
    }
    Method::Deflated
}

fn has_compressed_extension(name: &str) -> bool {
    let leaf = name.rsplit('/').next().unwrap_or(name);
    match leaf.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => COMPRESSED_EXTENSIONS
            .iter()
            .any(|known| known.eq_ignore_ascii_case(ext)),
        _ => false,
    }
}

fn has_compressed_magic(head: &[u8]) -> bool {
    MAGIC
        .iter()
        .any(|(at, magic)| head.get(*at..*at + magic.len()) == Some(*magic))
}

/// Shannon entropy of the bytes, in bits per byte.
fn entropy(bytes: &[u8]) -> f64 {
    let mut counts = [0u64; 256];
    for &b in bytes {
        counts[b as usize] += 1;
    }
    let n = bytes.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(len: usize) -> Vec<u8> {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn by_extension() {
        let text = b"hello hello hello".repeat(1000);
        assert_eq!(choose("notes.txt", &text), Method::Deflated);
        for name in ["a.JPG", "dir/b.tar.gz", "c.zst", "d.mp4", "e.pdf", "f.Zip"] {
            assert_eq!(choose(name, &text), Method::Stored, "{name}");
        }
        // A dot file is a name, not an extension.
        assert_eq!(choose(".zip", &text), Method::Deflated);
        assert_eq!(choose("zip", &text), Method::Deflated);
    }

    #[test]
    fn by_magic() {
        let mut gz = b"\x1F\x8B\x08\x00".to_vec();
        gz.extend_from_slice(&[0; 100]);
        assert_eq!(choose("blob", &gz), Method::Stored);
        let mut mp4 = b"\x00\x00\x00\x20ftypisom".to_vec();
        mp4.extend_from_slice(&[0; 100]);
        assert_eq!(choose("blob", &mp4), Method::Stored);
        let mut webp = b"RIFF\x00\x00\x00\x00WEBPVP8 ".to_vec();
        webp.extend_from_slice(&[0; 100]);
        assert_eq!(choose("blob", &webp), Method::Stored);
        assert_eq!(
            choose("blob", b"RIFF\x00\x00\x00\x00WAVE"),
            Method::Deflated
        );
    }

    #[test]
    fn by_entropy() {
        assert_eq!(choose("blob", &noise(65536)), Method::Stored);
        assert!(entropy(&noise(65536)) > 7.9);
        assert_eq!(choose("blob", &vec![0u8; 65536]), Method::Deflated);
        assert_eq!(entropy(&[7u8; 100]), 0.0);
        // Too short to judge: deflated.
        assert_eq!(choose("blob", &noise(100)), Method::Deflated);
        let text = "The quick brown fox jumps over the lazy dog. ".repeat(500);
        assert!(entropy(text.as_bytes()) < 5.0);
        assert_eq!(choose("blob", text.as_bytes()), Method::Deflated);
    }

    #[test]
    fn empty_files_are_stored() {
        assert_eq!(choose("empty.txt", b""), Method::Stored);
    }
}
