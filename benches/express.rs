//! The express lane's own work per request (`src/http/express.rs`): reading a request head,
//! opening and reading a small file (`open_small`: its system calls included, the file in
//! memory on tmpfs) and writing its response head straight from the file's fields
//! (`file_head`). They run once per small download, beside the gate, the ledger and six system
//! calls, so they must stay small. `file_headers` and `response_head` are the same head the
//! long way, through a header map (hyper's responses, and the lane before the thirteenth
//! pass), timed for comparison. That the lane's steps allocate nothing once a connection has
//! served its first download is a unit test (`reading_and_writing_heads_allocates_nothing`
//! and `a_files_head_allocates_nothing`), so it is checked in every test run, not only here.

use std::hint::black_box;
use std::time::{Duration, UNIX_EPOCH};

use axum::http::{HeaderMap, StatusCode};
use burnlink::http::express::{file_head, parse, response_head};
use burnlink::http::transfer::download::file_headers;
use burnlink::http::transfer::open::{self, Target};
use burnlink::http::transfer::values::Values;
use burnlink::sandbox::Sandbox;
use burnlink::storage::Storage;
use burnlink::token::{Claims, Direction};
use criterion::{Criterion, criterion_group, criterion_main};

/// A download's request head as curl sends it, with a token of the usual length.
const HEAD: &[u8] = b"GET /transfer/AQlrZTM0YWM2YzgAAAAAAGsVkVUVjyOTS8cs1uPxBBNz917TAAVhLnR4dH8QrWhQm_howKJ4V6Jmlaw2PZRjS5_tBVll_yWWJ7F6/small.bin HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n";

fn bench(c: &mut Criterion) {
    assert!(parse(HEAD).is_some(), "the lane takes this head");
    let claims = Claims::new(Direction::Download, None, "small.bin".into(), 60);
    let modified = Some(UNIX_EPOCH + Duration::from_secs(1_796_571_972));
    let (mut headers, mut values) = (HeaderMap::new(), Values::default());
    file_headers(&mut headers, &claims, modified, 4096, &mut values);
    let mut out = Vec::with_capacity(512);

    let mut group = c.benchmark_group("express");
    group.bench_function("parse", |b| {
        b.iter(|| parse(black_box(HEAD)).map(|r| r.len))
    });
    group.bench_function("file_headers", |b| {
        b.iter(|| {
            file_headers(
                black_box(&mut headers),
                black_box(&claims),
                modified,
                4096,
                &mut values,
            )
        })
    });
    group.bench_function("response_head", |b| {
        b.iter(|| response_head(black_box(&mut out), StatusCode::OK, black_box(&headers)))
    });
    group.bench_function("file_head", |b| {
        b.iter(|| file_head(black_box(&mut out), black_box(&claims), modified, 4096))
    });

    // The file on tmpfs where there is one, as a server's hot files are in the page cache.
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .unwrap();
    std::fs::write(dir.path().join("small.bin"), vec![7u8; 4096]).unwrap();
    let storage = Storage::Disk(Sandbox::open(dir.path()).unwrap());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    group.bench_function("open_small", |b| {
        b.iter(|| {
            runtime.block_on(async {
                match open::target(black_box(&storage), black_box(&claims), true).await {
                    Ok(Target::File {
                        bytes: Some(bytes), ..
                    }) => bytes.len(),
                    _ => panic!("the small file was not read in place"),
                }
            })
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
