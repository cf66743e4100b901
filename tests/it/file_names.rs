//! Non-ASCII file names survive into the client's file system.

use crate::support::*;

#[tokio::test]
async fn curl_oj_saves_a_non_ascii_name() {
    if require_tool("curl").is_none() {
        return;
    }
    let s = Server::start();
    let name = "Résumé – 履歴書 2026.pdf";
    s.write(name, b"%PDF non-ascii");
    let url = s.mint(name).await;

    let r = s.client.head(&url).send().await.unwrap();
    let cd = String::from_utf8(r.headers()["content-disposition"].as_bytes().to_vec()).unwrap();
    assert!(
        cd.contains(
            "filename*=UTF-8''R%C3%A9sum%C3%A9%20%E2%80%93%20%E5%B1%A5%E6%AD%B4%E6%9B%B8%202026.pdf"
        ),
        "{cd}"
    );

    let cwd = tempfile::tempdir().unwrap();
    let output = curl()
        .args(["--fail", "-O", "-J"])
        .arg(&url)
        .current_dir(cwd.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let saved = cwd.path().join(name);
    assert_eq!(std::fs::read(&saved).unwrap(), b"%PDF non-ascii");
}

#[tokio::test]
async fn curl_o_saves_under_the_url_name() {
    if require_tool("curl").is_none() {
        return;
    }
    let s = Server::start();
    s.write("dir/plain-name.tar.gz", b"tarball");
    let url = s.mint("dir/plain-name.tar.gz").await;
    assert!(url.ends_with("/plain-name.tar.gz"));
    let cwd = tempfile::tempdir().unwrap();
    let status = curl()
        .args(["--fail", "-O"])
        .arg(&url)
        .current_dir(cwd.path())
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        std::fs::read(cwd.path().join("plain-name.tar.gz")).unwrap(),
        b"tarball"
    );
}
