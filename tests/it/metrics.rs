//! `/metrics`: Prometheus text after real transfers, with the contract's names and no secrets.

use crate::support::*;
use futures_util::StreamExt;
use serde_json::json;

#[tokio::test]
async fn metrics_count_mints_transfers_bytes_and_latency_without_leaking_links() {
    let s = Server::start();
    let data = pattern(300_000);
    s.write("reports/q3.pdf", &data);
    let first = s.mint("reports/q3.pdf").await;
    let second = s.mint("reports/q3.pdf").await;
    let upload = s.mint_upload(json!({ "path": "in/up.bin" })).await;
    let upload_url = upload["url"].as_str().unwrap();

    // One complete download, one that the client drops early.
    let r = s.get(&first).await;
    assert_eq!(sha256(&r.bytes().await.unwrap()), sha256(&data));
    assert_eq!(s.settled_state(&first).await, "used");
    let r = s
        .client
        .get(&second)
        .header("range", "bytes=0-99")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap().len(), 100);
    assert_eq!(s.settled_state(&second).await, "unused");
    // One upload.
    let body = pattern(5_000);
    let r = s.client.put(upload_url).body(body).send().await.unwrap();
    assert_eq!(r.status(), 201);
    // One refusal: not a transfer, but a request with a status.
    let r = s.get(&format!("{}/transfer/not-a-token", s.base)).await;
    assert_eq!(r.status(), 404);
    // Invented methods, each a new label value if it were used as one. `/mcp` takes every
    // method to the MCP service, which refuses them.
    for method in ["BURNLINKPROBE", "XYZZY"] {
        let r = s
            .client
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                format!("{}/mcp", s.base),
            )
            .send()
            .await
            .unwrap();
        assert!(r.status().is_client_error(), "{method}: {}", r.status());
    }

    let text = scrape_metrics(&s).await;
    let get = |name: &str, labels: &[(&str, &str)]| {
        metric_sample(&text, name, labels).unwrap_or_else(|| panic!("{name} {labels:?} in\n{text}"))
    };
    assert_eq!(
        get("burnlink_links_minted_total", &[("direction", "download")]),
        2.0
    );
    assert_eq!(
        get("burnlink_links_minted_total", &[("direction", "upload")]),
        1.0
    );
    let transfers = |direction, outcome| {
        get(
            "burnlink_transfers_total",
            &[("direction", direction), ("outcome", outcome)],
        )
    };
    assert_eq!(transfers("download", "completed"), 1.0);
    assert_eq!(transfers("download", "partial"), 1.0);
    assert_eq!(transfers("upload", "completed"), 1.0);
    assert_eq!(
        get(
            "burnlink_transfer_bytes_total",
            &[("direction", "download")]
        ),
        (data.len() + 100) as f64
    );
    assert_eq!(
        get("burnlink_transfer_bytes_total", &[("direction", "upload")]),
        5_000.0
    );
    assert_eq!(get("burnlink_active_transfers", &[]), 0.0);
    // Two burned links are in the (memory) ledger.
    assert_eq!(get("burnlink_ledger_entries", &[]), 2.0);
    // Latency by route template and status; a histogram, not a summary.
    assert!(text.contains("# TYPE burnlink_http_request_duration_seconds histogram"));
    let route = [
        ("method", "GET"),
        ("route", "/transfer/{token}/{name}"),
        ("status", "200"),
    ];
    assert_eq!(
        get("burnlink_http_request_duration_seconds_count", &route),
        1.0
    );
    let mut inf = route.to_vec();
    inf.push(("le", "+Inf"));
    assert_eq!(
        get("burnlink_http_request_duration_seconds_bucket", &inf),
        1.0
    );
    assert_eq!(
        get(
            "burnlink_http_request_duration_seconds_count",
            &[("route", "/transfer/{token}"), ("status", "404")]
        ),
        1.0
    );
    assert_eq!(
        get(
            "burnlink_http_request_duration_seconds_count",
            &[
                ("route", "/api/links"),
                ("method", "POST"),
                ("status", "201")
            ]
        ),
        3.0
    );

    // A method the server does not know is `other`, so clients cannot grow the label set.
    assert_eq!(
        get(
            "burnlink_http_request_duration_seconds_count",
            &[("route", "/mcp"), ("method", "other")]
        ),
        2.0
    );
    assert!(!text.contains("BURNLINKPROBE") && !text.contains("XYZZY"));

    // Labels never carry a token, a path or an address.
    for secret in [
        burnlink::token::extract_token(&first),
        burnlink::token::extract_token(&second),
        burnlink::token::extract_token(upload_url),
        "q3.pdf",
        "up.bin",
        "not-a-token",
        "127.0.0.1",
        API_TOKEN,
    ] {
        assert!(!text.contains(secret), "/metrics shows {secret}");
    }
}

#[tokio::test]
async fn a_running_transfer_is_active_until_it_settles() {
    let s = Server::start();
    let data = pattern(48 * 1024 * 1024);
    s.write("big.bin", &data);
    let url = s.mint("big.bin").await;
    let r = s.get(&url).await;
    let mut stream = r.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    assert!(!first.is_empty());
    let text = scrape_metrics(&s).await;
    assert_eq!(
        metric_sample(&text, "burnlink_active_transfers", &[]),
        Some(1.0),
        "{text}"
    );
    drop(stream);
    // The drop settles the transfer (released) just after; bounded wait.
    let mut active = None;
    for _ in 0..100 {
        active = metric_sample(&scrape_metrics(&s).await, "burnlink_active_transfers", &[]);
        if active == Some(0.0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(active, Some(0.0));
    let text = scrape_metrics(&s).await;
    assert_eq!(
        metric_sample(
            &text,
            "burnlink_transfers_total",
            &[("direction", "download"), ("outcome", "aborted")]
        ),
        Some(1.0),
        "{text}"
    );
}

/// Downloads served on many connections, so by both event loops, add up in one series each,
/// and the gauge of running transfers comes back to zero.
#[tokio::test]
async fn downloads_served_by_every_event_loop_add_up_in_one_series() {
    const DOWNLOADS: usize = 32;
    let s = Server::start();
    let data = pattern(4096);
    s.write("small.bin", &data);
    let mut links = Vec::new();
    for _ in 0..DOWNLOADS {
        links.push(s.mint("small.bin").await);
    }
    // A connection per download.
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let got: Vec<usize> = futures_util::stream::iter(links.iter().cloned())
        .map(|url| {
            let fresh = fresh.clone();
            async move {
                let r = fresh.get(url).send().await.unwrap();
                assert_eq!(r.status(), 200);
                r.bytes().await.unwrap().len()
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    assert_eq!(got, vec![data.len(); DOWNLOADS]);
    for url in &links {
        assert_eq!(s.settled_state(url).await, "used");
    }

    let text = scrape_metrics(&s).await;
    let get = |name: &str, labels: &[(&str, &str)]| {
        metric_sample(&text, name, labels).unwrap_or_else(|| panic!("{name} {labels:?} in\n{text}"))
    };
    let n = DOWNLOADS as f64;
    assert_eq!(
        get(
            "burnlink_transfers_total",
            &[("direction", "download"), ("outcome", "completed")]
        ),
        n
    );
    assert_eq!(
        get(
            "burnlink_transfer_bytes_total",
            &[("direction", "download")]
        ),
        n * data.len() as f64
    );
    assert_eq!(
        get(
            "burnlink_http_request_duration_seconds_count",
            &[
                ("method", "GET"),
                ("route", "/transfer/{token}/{name}"),
                ("status", "200")
            ]
        ),
        n
    );
    assert_eq!(get("burnlink_active_transfers", &[]), 0.0);
}

/// The connections on each event loop: every loop has a series from the start, a connection
/// counts on one loop while it is open, and on none once the client has closed it.
#[tokio::test]
async fn each_event_loop_shows_the_connections_open_on_it() {
    const HELD: usize = 5;
    for (workers, loops) in [("3", &["0", "1", "2"][..]), ("0", &["shared"][..])] {
        let s = Server::start_with(&[("BURNLINK_WORKERS", workers)]);
        // The client's scrapes keep one connection open between them.
        let text = scrape_metrics(&s).await;
        for l in loops {
            assert!(
                metric_sample(&text, "burnlink_open_connections", &[("loop", l)]).is_some(),
                "workers={workers}: no series for loop {l} in\n{text}"
            );
        }
        let idle = open_connections(&text);
        assert!(
            idle >= 1.0,
            "workers={workers}: the scrape's own connection: {idle}"
        );

        // Connections a client keeps open, each answered once so the server has taken it.
        let addr = s.base.trim_start_matches("http://").to_string();
        let mut held = Vec::new();
        for _ in 0..HELD {
            let mut c = std::net::TcpStream::connect(&addr).unwrap();
            c.set_read_timeout(Some(std::time::Duration::from_secs(10)))
                .unwrap();
            std::io::Write::write_all(&mut c, b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
            let mut got = [0u8; 12];
            std::io::Read::read_exact(&mut c, &mut got).unwrap();
            assert_eq!(&got, b"HTTP/1.1 200");
            held.push(c);
        }
        assert_eq!(
            open_connections(&scrape_metrics(&s).await),
            idle + HELD as f64,
            "workers={workers}"
        );

        drop(held);
        let now = open_connections_once(&s, idle).await;
        assert_eq!(
            now, idle,
            "workers={workers}: closed connections still counted"
        );
    }
}
