//! HTTPS with `BURNLINK_TLS_CERT` and `BURNLINK_TLS_KEY`: a self-signed certificate made with
//! the `openssl` binary, and `curl --cacert` as the client.

use std::path::Path;
use std::process::Command;

use crate::support::*;
use burnlink::token::Direction;

/// Makes a self-signed certificate for 127.0.0.1 in `dir`; `None` when `openssl` is missing
/// (by [`require_tool`]: a failure under CI, a printed skip otherwise).
fn self_signed(dir: &Path) -> Option<(String, String)> {
    let openssl = require_tool("openssl")?;
    let cert = dir.join("cert.pem").display().to_string();
    let key = dir.join("key.pem").display().to_string();
    let out = Command::new(openssl)
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=burnlink test",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            &key,
            "-out",
            &cert,
        ])
        .output();
    let o = out.expect("run openssl");
    assert!(
        o.status.success(),
        "openssl failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    Some((cert, key))
}

#[tokio::test]
async fn a_download_over_https_works_once() {
    let certs = tempfile::tempdir().unwrap();
    let Some((cert, key)) = self_signed(certs.path()) else {
        return;
    };
    let s = Server::start_with(&[("BURNLINK_TLS_CERT", &cert), ("BURNLINK_TLS_KEY", &key)]);
    assert!(s.base.starts_with("https://127.0.0.1:"), "{}", s.base);
    let data = pattern(3 * 1024 * 1024 + 17);
    s.write("secure/report.bin", &data);
    let token = sign(&claims(
        Direction::Download,
        "secure/report.bin",
        now() + 600,
    ));
    let url = format!("{}/transfer/{token}/report.bin", s.base);
    let out = s.dir.path().join("got.bin");
    let out_s = out.display().to_string();

    let (status, body) = curl_status(&["--cacert", &cert, "-o", &out_s, &url]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(sha256_file(&out), sha256(&data));

    // Burned, as over plain HTTP; the API speaks HTTPS too.
    let (status, body) = curl_status(&["--cacert", &cert, &url]);
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("\"used\""), "{body}");
    let (status, body) = curl_status(&[
        "--cacert",
        &cert,
        "-H",
        &format!("Authorization: Bearer {API_TOKEN}"),
        &format!("{}/api/links/{token}", s.base),
    ]);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"state\":\"used\""), "{body}");

    // Minted links carry the https base URL.
    let (status, body) = curl_status(&[
        "--cacert",
        &cert,
        "-H",
        &format!("Authorization: Bearer {API_TOKEN}"),
        "--json",
        r#"{"path":"secure/report.bin"}"#,
        &format!("{}/api/links", s.base),
    ]);
    assert_eq!(status, 201, "{body}");
    assert!(
        body.contains(&format!("\"url\":\"{}/transfer/", s.base)),
        "{body}"
    );

    // A client that does not trust the certificate, or speaks plain HTTP, gets nothing.
    let (status, _) = curl_status(&[&url]);
    assert_eq!(status, 0);
    let plain = url.replacen("https://", "http://", 1);
    let (status, _) = curl_status(&["--max-time", "5", &plain]);
    assert_ne!(status, 200);
    // And the server is still fine afterwards.
    let (status, _) = curl_status(&["--cacert", &cert, &format!("{}/healthz", s.base)]);
    assert_eq!(status, 200);
}

#[test]
fn a_missing_key_file_stops_start_up_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let Some((cert, _)) = self_signed(dir.path()) else {
        return;
    };
    let out = Command::new(bin())
        .arg("serve")
        .current_dir(dir.path())
        .env("BURNLINK_ROOT", dir.path().join("data"))
        .env("BURNLINK_BIND", "127.0.0.1:0")
        .env("BURNLINK_TLS_CERT", &cert)
        .env("BURNLINK_TLS_KEY", dir.path().join("nope.pem"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("BURNLINK_TLS_KEY"), "{err}");
}
