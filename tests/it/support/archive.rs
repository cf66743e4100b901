//! Reading archives with tools we did not write: Python's zipfile and Info-ZIP's unzip.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// The tools these helpers run: curl fetches, Python's zipfile and Info-ZIP's unzip read. A
/// test using them starts with `if !require_tools(ARCHIVE_TOOLS) { return; }`.
pub const ARCHIVE_TOOLS: &[&str] = &["curl", "python3", "unzip"];

/// Python's zipfile: `testzip()` (every CRC checked), then per entry its fields and, for
/// entries up to 256 MiB, a SHA-256 of its content.
const ZIPINFO: &str = r#"
import hashlib, json, struct, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
bad = z.testzip()
out = []
for i in z.infolist():
    ids, ut, j = [], None, 0
    while j + 4 <= len(i.extra):
        hid, ln = struct.unpack('<HH', i.extra[j:j+4])
        ids.append(hid)
        if hid == 0x5455 and ln >= 5:
            ut = struct.unpack('<I', i.extra[j+5:j+9])[0]
        j += 4 + ln
    digest = None
    if not i.is_dir() and i.file_size <= 256 * 1024 * 1024:
        h = hashlib.sha256()
        with z.open(i) as f:
            for chunk in iter(lambda: f.read(1 << 20), b''):
                h.update(chunk)
        digest = h.hexdigest()
    out.append(dict(name=i.filename, dir=i.is_dir(), size=i.file_size,
        csize=i.compress_size, method=i.compress_type, flags=i.flag_bits,
        extra_ids=ids, ut=ut, mode=(i.external_attr >> 16) & 0o7777,
        offset=i.header_offset, sha256=digest))
print(json.dumps(dict(bad=bad, entries=out)))
"#;

/// What Python's zipfile reads in the archive at `path`.
pub fn python_zipinfo(path: &Path) -> Value {
    let out = Command::new("python3")
        .args(["-c", ZIPINFO])
        .arg(path)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "python zipfile refused the archive: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["bad"].is_null(), "zipfile.testzip found a bad CRC: {v}");
    v
}

/// The entry called `name` in a [`python_zipinfo`] result.
pub fn entry<'a>(info: &'a Value, name: &str) -> &'a Value {
    info["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no entry {name:?} in {info}"))
}

pub fn names(info: &Value) -> Vec<String> {
    info["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect()
}

/// `unzip -t`: Info-ZIP tests every entry.
pub fn unzip_test(path: &Path) {
    let out = Command::new("unzip").arg("-t").arg(path).output().unwrap();
    assert!(
        out.status.success(),
        "unzip -t failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Extracts with `unzip` into `dest`.
pub fn unzip_into(path: &Path, dest: &Path) {
    let out = Command::new("unzip")
        .arg("-q")
        .arg(path)
        .arg("-d")
        .arg(dest)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "unzip failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Downloads `url` with curl into `dest`; returns (curl exit code, response headers).
pub fn curl_to_file(url: &str, dest: &Path) -> (i32, String) {
    let headers = dest.with_extension("headers");
    let status = super::curl()
        .arg("-o")
        .arg(dest)
        .arg("-D")
        .arg(&headers)
        .arg(url)
        .status()
        .unwrap();
    (
        status.code().unwrap_or(-1),
        std::fs::read_to_string(&headers).unwrap_or_default(),
    )
}
