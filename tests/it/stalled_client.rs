//! A client that stops reading neither holds a link forever nor gets a second delivery.

use std::time::Duration;

use crate::support::*;
use futures_util::StreamExt;

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_and_the_link_is_free_again() {
    // Lease 30 s (the default); the write-idle timeout of 3 s is what must free the link.
    let s = Server::start_with(&[("BURNLINK_IDLE_TIMEOUT_S", "3")]);
    let data = pattern(48 * 1024 * 1024);
    s.write("big.bin", &data);
    let url = s.mint("big.bin").await;

    let stalled = s.get(&url).await;
    assert_eq!(stalled.status(), 200);
    assert_eq!(s.state(&url).await, "in_progress");
    let mut freed = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if s.state(&url).await == "unused" {
            freed = true;
            break;
        }
    }
    assert!(
        freed,
        "the stalled transfer still holds the link after 10 s"
    );
    drop(stalled);

    let r = s.get(&url).await;
    assert_eq!(r.status(), 200);
    assert_eq!(sha256(&r.bytes().await.unwrap()), sha256(&data));
    assert_eq!(s.settled_state(&url).await, "used");
}

#[tokio::test]
async fn a_transfer_whose_lease_lapsed_cannot_deliver_the_file_a_second_time() {
    // A 1 s lease, and no idle cut-off to rescue us: the lease alone must fence the stall.
    let s = Server::start_with(&[
        ("BURNLINK_LEASE_S", "1"),
        ("BURNLINK_IDLE_TIMEOUT_S", "3600"),
    ]);
    let data = pattern(48 * 1024 * 1024);
    s.write("big.bin", &data);
    let url = s.mint("big.bin").await;

    // A reads 1 MiB and stalls past its lease.
    let a = s.get(&url).await;
    assert_eq!(a.status(), 200);
    let mut a = a.bytes_stream();
    let mut a_got = 0usize;
    while a_got < 1024 * 1024 {
        a_got += a.next().await.unwrap().unwrap().len();
    }
    let mut lapsed = false;
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if s.state(&url).await == "unused" {
            lapsed = true;
            break;
        }
    }
    assert!(lapsed, "the stalled lease did not lapse");

    // B takes the link and gets the whole file.
    let b = s.get(&url).await;
    assert_eq!(b.status(), 200);
    assert_eq!(sha256(&b.bytes().await.unwrap()), sha256(&data));
    assert_eq!(s.settled_state(&url).await, "used");

    // A resumes reading: it gets what was already buffered, then the server cuts it off.
    let mut a_failed = false;
    while let Some(chunk) = a.next().await {
        match chunk {
            Ok(c) => a_got += c.len(),
            Err(_) => {
                a_failed = true;
                break;
            }
        }
    }
    assert!(a_failed, "A must see a broken transfer");
    assert!(
        a_got < data.len(),
        "A received the whole file too ({a_got} bytes)"
    );
    assert_eq!(s.state(&url).await, "used");
}
