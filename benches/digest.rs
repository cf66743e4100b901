//! The upload's hasher over the writer's 1 MiB batches: SHA-256 is the one part of an upload's
//! work that nginx's WebDAV PUT does not do, so its rate is the floor under an upload's CPU
//! (docs/benchmarks.md, "The fourteenth performance pass").

use burnlink::http::transfer::digest::{Expected, Hasher};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn bench(c: &mut Criterion) {
    let batch: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
    let mut group = c.benchmark_group("digest");
    group.throughput(Throughput::Bytes(batch.len() as u64));
    group.bench_function("sha256/1MiB", |b| {
        b.iter(|| {
            let mut hasher = Hasher::new(&Expected::default());
            hasher.update(std::hint::black_box(&batch));
            hasher.finish()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
