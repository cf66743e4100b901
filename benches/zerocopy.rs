//! The zero-copy download path's per-write check: every write on every plain connection asks
//! whether a buffer is a stand-in for file bytes (`is_stand_in`), so it must cost next to
//! nothing next to the system call it precedes.

use std::sync::Arc;

use burnlink::http::transfer::zerocopy::{FileChunks, Outbox, is_stand_in};
use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::{FutureExt, StreamExt};

fn bench(c: &mut Criterion) {
    let file = tempfile::tempfile().unwrap();
    let mut chunks = FileChunks::new(file, 0, 1 << 30, Arc::new(Outbox::default()));
    let stand_in = chunks.next().now_or_never().flatten().unwrap().unwrap();
    let real = vec![7u8; 64 * 1024];
    let mut group = c.benchmark_group("zerocopy");
    group.bench_function("is_stand_in/real_bytes", |b| {
        b.iter(|| is_stand_in(std::hint::black_box(&real)))
    });
    group.bench_function("is_stand_in/stand_in", |b| {
        b.iter(|| is_stand_in(std::hint::black_box(&stand_in)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
