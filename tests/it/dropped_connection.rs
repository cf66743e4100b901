//! A download cut off half-way leaves the link usable, and it then delivers the whole file,
//! on disk and in a bucket.

use crate::support::moto::{BOTH, Backend, Sandbox};
use crate::support::*;
use futures_util::StreamExt;

#[tokio::test]
async fn aborted_after_one_mib_of_64_the_link_still_delivers_the_identical_file() {
    for backend in BOTH {
        aborted_then_whole(backend).await;
    }
}

async fn aborted_then_whole(backend: Backend) {
    let Some(b) = Sandbox::start(backend, &[]) else {
        return;
    };
    let s = &b.server;
    let data = pattern(64 * 1024 * 1024);
    b.put("big.bin", &data);
    let url = s.mint("big.bin").await;

    let resp = s.get(&url).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.content_length(), Some(data.len() as u64));
    let mut stream = resp.bytes_stream();
    let mut got = 0usize;
    while got < 1024 * 1024 {
        got += stream.next().await.unwrap().unwrap().len();
    }
    drop(stream); // closes the connection mid-body

    assert_eq!(s.settled_state(&url).await, "unused");
    let resp = s.get(&url).await;
    assert_eq!(resp.status(), 200);
    let body = resp.bytes().await.unwrap();
    assert_eq!(body.len(), data.len());
    assert_eq!(sha256(&body), sha256(&data));
    assert_eq!(s.settled_state(&url).await, "used");
    assert!(
        s.log().contains("outcome=\"aborted\""),
        "the cut transfer is audited"
    );
}
