//! One link, one transfer: concurrent uses get exactly one winner, on disk and in a bucket.

use std::sync::Arc;

use crate::support::moto::{BOTH, Backend, Sandbox};
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_concurrent_gets_give_exactly_one_200() {
    for backend in BOTH {
        thirty_two_concurrent_gets(backend).await;
    }
}

async fn thirty_two_concurrent_gets(backend: Backend) {
    let Some(b) = Sandbox::start(backend, &[]) else {
        return;
    };
    let data = pattern(256 * 1024);
    b.put("one.bin", &data);
    let s = Arc::new(b.server);
    let url = s.mint("one.bin").await;

    let barrier = Arc::new(tokio::sync::Barrier::new(32));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (s, url, barrier) = (s.clone(), url.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let r = s.get(&url).await;
            let status = r.status().as_u16();
            if status == 200 {
                (status, r.bytes().await.unwrap().to_vec(), String::new())
            } else {
                let (st, code) = error_code(r).await;
                (st, Vec::new(), code)
            }
        }));
    }
    let mut ok = 0;
    for t in tasks {
        let (status, body, code) = t.await.unwrap();
        match status {
            200 => {
                ok += 1;
                assert_eq!(sha256(&body), sha256(&data));
            }
            409 => assert_eq!(code, "in_progress"),
            404 => assert_eq!(code, "used"),
            other => panic!("unexpected status {other} ({code})"),
        }
    }
    assert_eq!(ok, 1, "exactly one transfer may succeed");
    assert_eq!(s.settled_state(&url).await, "used");
    assert_eq!(error_code(s.get(&url).await).await, (404, "used".into()));
}

#[tokio::test]
async fn a_link_busy_in_one_transfer_answers_409_to_another() {
    for backend in BOTH {
        busy_link(backend).await;
    }
}

async fn busy_link(backend: Backend) {
    let Some(b) = Sandbox::start(backend, &[]) else {
        return;
    };
    let s = &b.server;
    // Big enough that the first response cannot finish while we do not read it.
    let data = pattern(32 * 1024 * 1024);
    b.put("big.bin", &data);
    let url = s.mint("big.bin").await;

    let first = s.get(&url).await;
    assert_eq!(first.status(), 200);
    assert_eq!(s.state(&url).await, "in_progress");
    assert_eq!(
        error_code(s.get(&url).await).await,
        (409, "in_progress".into())
    );

    // The first client goes away without reading: the link is free again.
    drop(first);
    assert_eq!(s.settled_state(&url).await, "unused");
    let r = s.get(&url).await;
    assert_eq!(r.status(), 200);
    assert_eq!(sha256(&r.bytes().await.unwrap()), sha256(&data));
    assert_eq!(s.settled_state(&url).await, "used");
}
