//! Directory archives without HTTP: `write_archive` into a sink, per deflate level and Stored.
//! The compressed size per level is printed once, so speed and ratio can be weighed together.

use std::hint::black_box;
use std::io::Write;

use burnlink::archive::stream::{Settings, write_archive};
use cap_std::ambient_authority;
use cap_std::fs::Dir;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// Counts what it is given.
struct Count(u64);

impl Write for Count {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0 += b.len() as u64;
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// English-like text from a fixed vocabulary, and noise named `.jpg`: 64 files of 256 KiB each.
fn tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let vocab: Vec<String> = (0..2000)
        .map(|_| {
            let len = 2 + next() % 9;
            (0..len)
                .map(|_| (b'a' + (next() % 26) as u8) as char)
                .collect()
        })
        .collect();
    for kind in ["text", "jpg"] {
        std::fs::create_dir_all(dir.path().join(kind)).unwrap();
        for i in 0..64 {
            let mut data = Vec::with_capacity(256 * 1024);
            while data.len() < 256 * 1024 {
                if kind == "text" {
                    data.extend_from_slice(vocab[(next() % 2000) as usize].as_bytes());
                    data.push(if next() % 12 == 0 { b'\n' } else { b' ' });
                } else {
                    data.extend_from_slice(&next().to_le_bytes());
                }
            }
            data.truncate(256 * 1024);
            std::fs::write(dir.path().join(format!("{kind}/f{i}.{kind}")), data).unwrap();
        }
    }
    dir
}

fn archive(c: &mut Criterion) {
    let dir = tree();
    let base = Dir::open_ambient_dir(dir.path(), ambient_authority()).unwrap();
    let mut group = c.benchmark_group("archive_16MiB");
    group.throughput(Throughput::Bytes(64 * 256 * 1024));
    group.sample_size(10);
    for level in [1, 3, 6] {
        let settings = Settings {
            level,
            ..Settings::default()
        };
        let size = write_archive(&base, "text", &settings, Count(0)).unwrap().0;
        println!("deflate level {level}: 16 MiB of text -> {size} bytes");
        group.bench_function(format!("text_deflate_level_{level}"), |b| {
            b.iter(|| black_box(write_archive(&base, "text", &settings, Count(0)).unwrap().0))
        });
    }
    let settings = Settings::default();
    group.bench_function("jpg_stored", |b| {
        b.iter(|| black_box(write_archive(&base, "jpg", &settings, Count(0)).unwrap().0))
    });
    group.finish();
}

criterion_group!(benches, archive);
criterion_main!(benches);
