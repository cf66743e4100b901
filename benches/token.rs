//! Minting and verifying tokens: the work done on every link creation and every transfer.

use std::hint::black_box;

use burnlink::token::{Claims, Direction, Keyring};
use criterion::{Criterion, criterion_group, criterion_main};

fn bench(c: &mut Criterion) {
    let ring = Keyring::parse("k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8").unwrap();
    let claims = Claims::new(
        Direction::Download,
        Some("session-42".into()),
        "reports/2026/q3/summary.pdf".into(),
        1_900_000_000,
    );
    let token = ring.sign(&claims);
    let mut forged = token.clone().into_bytes();
    let i = forged.len() - 3;
    forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();

    c.bench_function("token/sign", |b| b.iter(|| ring.sign(black_box(&claims))));
    c.bench_function("token/verify_valid", |b| {
        b.iter(|| ring.verify(black_box(&token)).unwrap())
    });
    c.bench_function("token/verify_forged", |b| {
        b.iter(|| ring.verify(black_box(&forged)).unwrap_err())
    });
    c.bench_function("sandbox/normalize", |b| {
        let base = std::path::Path::new("/srv/burnlink/data/session-42");
        b.iter(|| {
            burnlink::sandbox::normalize(base, black_box("./reports//2026/q3/summary.pdf")).unwrap()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
