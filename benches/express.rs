//! The express lane's own work per request (`src/http/express.rs`): reading a request head and
//! writing a response head. Both run once per small download, beside the gate, the ledger and
//! six system calls, so they must stay small, and they must not allocate: a counting allocator
//! checks that, and the bench fails if either does.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use burnlink::http::express::{parse, response_head};
use criterion::{Criterion, criterion_group, criterion_main};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A download's request head as curl sends it, with a token of the usual length.
const HEAD: &[u8] = b"GET /transfer/AQlrZTM0YWM2YzgAAAAAAGsVkVUVjyOTS8cs1uPxBBNz917TAAVhLnR4dH8QrWhQm_howKJ4V6Jmlaw2PZRjS5_tBVll_yWWJ7F6/small.bin HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n";

/// The headers of a small file's answer (`download::ready_small`).
fn file_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"small.bin\"; filename*=UTF-8''small.bin"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    burnlink::http::private_headers(&mut h);
    h.insert(
        header::LAST_MODIFIED,
        HeaderValue::from_static("Sun, 06 Dec 2026 15:46:12 GMT"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(4096u64));
    h
}

/// Allocations made by `f` run 1,000 times, after one run to warm up (buffers reserved, the
/// date formatted for this second).
fn allocations(mut f: impl FnMut()) -> u64 {
    f();
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..1000 {
        f();
    }
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

fn bench(c: &mut Criterion) {
    assert!(parse(HEAD).is_some(), "the lane takes this head");
    let headers = file_headers();
    let mut out = Vec::with_capacity(512);

    // A new second formats the date once; 1,000 runs take well under a second, so at most one
    // of them can.
    let parsing = allocations(|| {
        black_box(parse(black_box(HEAD)));
    });
    let writing =
        allocations(|| response_head(black_box(&mut out), StatusCode::OK, black_box(&headers)));
    assert_eq!(parsing, 0, "reading a head allocated");
    assert!(
        writing <= 1,
        "writing a head allocated {writing} times in 1,000"
    );
    println!("allocations per 1,000 requests: reading heads {parsing}, writing heads {writing}");

    let mut group = c.benchmark_group("express");
    group.bench_function("parse", |b| {
        b.iter(|| parse(black_box(HEAD)).map(|r| r.len))
    });
    group.bench_function("response_head", |b| {
        b.iter(|| response_head(black_box(&mut out), StatusCode::OK, black_box(&headers)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
