//! Both ways of running the server (event loops sharing one listening socket, and one shared
//! work-stealing runtime) serve the same bytes and burn the same way;
//! on plain HTTP large files go out with `sendfile`, ranges and keep-alive included.

use crate::support::*;

/// Small files (sent from memory) and large ones (sent by the kernel), whole and as ranges,
/// several on one keep-alive connection: every body is the file's bytes, and each link burns
/// exactly when its final byte went out.
#[tokio::test]
async fn every_download_is_the_files_bytes_whatever_the_event_loops() {
    for workers in ["0", "1", "3"] {
        let s = Server::start_with(&[("BURNLINK_WORKERS", workers)]);
        let small = pattern(4096);
        let big = pattern(5 * 1024 * 1024 + 123);
        s.write("small.bin", &small);
        s.write("big.bin", &big);

        // One client: its requests reuse one connection, so zero-copy responses follow each
        // other (and small ones) on the same socket.
        for (name, data) in [("big.bin", &big), ("small.bin", &small), ("big.bin", &big)] {
            let url = s.mint(name).await;
            let resp = s.get(&url).await;
            assert_eq!(resp.status(), 200, "workers={workers} {name}");
            let body = resp.bytes().await.unwrap();
            assert_eq!(sha256(&body), sha256(data), "workers={workers} {name}");
            assert_eq!(s.settled_state(&url).await, "used", "workers={workers}");
        }

        // A range from inside the file: the kernel sends from that offset; no burn without
        // the final byte, then the tail burns.
        let url = s.mint("big.bin").await;
        let (from, to) = (1_000_003usize, 4_000_000usize);
        let resp = s
            .client
            .get(&url)
            .header("range", format!("bytes={from}-{to}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 206, "workers={workers}");
        assert_eq!(&resp.bytes().await.unwrap()[..], &big[from..=to]);
        assert_eq!(s.settled_state(&url).await, "unused", "workers={workers}");
        let resp = s
            .client
            .get(&url)
            .header("range", format!("bytes={}-", big.len() - 70_000))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 206);
        assert_eq!(&resp.bytes().await.unwrap()[..], &big[big.len() - 70_000..]);
        assert_eq!(s.settled_state(&url).await, "used", "workers={workers}");

        // curl too (its own connection handling), and a spent link stays spent.
        let url = s.mint("big.bin").await;
        let out = s.dir.path().join("curl.bin");
        let (code, _) = curl_status(&["-s", "-o", out.to_str().unwrap(), &url]);
        assert_eq!(code, 200, "workers={workers}");
        assert_eq!(sha256_file(&out), sha256(&big));
        assert_eq!(s.settled_state(&url).await, "used");
        assert_eq!(error_code(s.get(&url).await).await, (404, "used".into()));
    }
}
