//! Minting and verifying tokens, and resolving paths: the work done on every link creation and
//! every transfer.

use std::hint::black_box;

use std::sync::Arc;

use burnlink::links::{Limits, MintRequest, Minter};
use burnlink::sandbox::{Sandbox, SessionId};
use burnlink::token::{Claims, Direction, Keyring};
use criterion::{Criterion, criterion_group, criterion_main};

fn bench(c: &mut Criterion) {
    let ring = Keyring::parse("k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8").unwrap();
    let claims = Claims::new(
        Direction::Download,
        Some(burnlink::session::SessionId::parse("session-42").unwrap()),
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

    // A whole mint as the API and the CLI do it: path rules, a stat through the sandbox, sign.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("session-42/reports")).unwrap();
    std::fs::write(dir.path().join("session-42/reports/q3.pdf"), b"%PDF-1.7").unwrap();
    let sandbox = Sandbox::open(dir.path()).unwrap();
    let minter = Minter::new(
        Arc::new(Keyring::parse("k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8").unwrap()),
        burnlink::storage::Storage::Disk(sandbox.clone()),
        Limits {
            ttl_default: 3600,
            ttl_max: 86400,
            max_download_bytes: 1 << 30,
            max_upload_bytes: 1 << 30,
            upload_extensions: None,
            max_uses: 100,
        },
        "http://127.0.0.1:8000".into(),
    );
    let session = SessionId::parse("session-42").unwrap();
    let request = MintRequest {
        path: "reports/q3.pdf".into(),
        session: Some(session.clone()),
        ..MintRequest::default()
    };
    c.bench_function("links/mint", |b| {
        b.iter(|| {
            minter
                .mint(black_box(request.clone()), 1_800_000_000)
                .unwrap()
        })
    });
    // Path resolution at transfer time, the non-blocking way (cached dentries).
    c.bench_function("sandbox/open_file_cached", |b| {
        b.iter(|| {
            sandbox
                .open_file_cached(Some(&session), black_box("reports/q3.pdf"))
                .unwrap()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
