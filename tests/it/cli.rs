//! `burnlink mint`, `keygen`, `inspect`, `revoke`, and start-up errors.

use std::process::Command;

use crate::support::*;
use burnlink::token::Direction;

fn cli(s: &Server) -> Command {
    let mut c = Command::new(bin());
    c.current_dir(s.dir.path())
        .env("BURNLINK_ROOT", &s.root)
        .env("BURNLINK_KEYS", KEYS)
        .env("BURNLINK_BASE_URL", &s.base)
        .env("BURNLINK_API_TOKENS", API_TOKEN);
    c
}

#[tokio::test]
async fn minted_offline_the_link_works_on_the_server() {
    let s = Server::start();
    s.write("ci/artifact.tgz", b"artifact");
    let out = cli(&s)
        .args(["mint", "ci/artifact.tgz", "--ttl", "10m"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let url = stdout.trim();
    assert_eq!(
        stdout.lines().count(),
        1,
        "only the URL on stdout: {stdout:?}"
    );
    assert!(url.starts_with(&format!("{}/transfer/", s.base)) && url.ends_with("/artifact.tgz"));

    let r = s.get(url).await;
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"artifact");

    let out = cli(&s)
        .args(["mint", "ci/artifact.tgz", "--json", "--ttl", "90s"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["expires_in_seconds"], 90);
    assert_eq!(v["kind"], "file");
    assert_eq!(v["max_uses"], 1);

    // `--uses N`: a link for N downloads, as `inspect` and the server's status say.
    let out = cli(&s)
        .args(["mint", "ci/artifact.tgz", "--uses", "2"])
        .output()
        .unwrap();
    let url = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let out = cli(&s).args(["inspect", &url]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("max_uses: 2"));
    for _ in 0..2 {
        assert_eq!(
            s.get(&url).await.bytes().await.unwrap().as_ref(),
            b"artifact"
        );
        s.settled_state(&url).await;
    }
    assert_eq!(s.settled_state(&url).await, "used");
    let out = cli(&s)
        .args(["mint", "ci/artifact.tgz", "--uses", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());

    for (args, needle) in [
        (vec!["mint", "missing"], "no such file"),
        (vec!["mint", "../x"], "outside the sandbox"),
        (vec!["mint", "ci/artifact.tgz", "--ttl", "ten"], "duration"),
    ] {
        let out = cli(&s).args(&args).output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        assert!(out.stdout.is_empty());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[tokio::test]
async fn count_mints_independent_links_one_per_line() {
    let s = Server::start();
    s.write("f.txt", b"batch");
    let out = cli(&s)
        .args(["mint", "f.txt", "--count", "3"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let urls: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(urls.len(), 3);
    assert!(urls[0] != urls[1] && urls[1] != urls[2] && urls[0] != urls[2]);
    for url in &urls {
        assert_eq!(s.get(url).await.bytes().await.unwrap().as_ref(), b"batch");
        assert_eq!(s.settled_state(url).await, "used");
    }
    let out = cli(&s)
        .args(["mint", "f.txt", "--count", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[tokio::test]
async fn a_ci_job_mints_an_upload_link_and_pushes_with_curl() {
    if require_tool("curl").is_none() {
        return;
    }
    let s = Server::start();
    let artifact = pattern(200_000);
    let src = s.dir.path().join("build.tgz");
    std::fs::write(&src, &artifact).unwrap();
    let digest = hex(&sha256(&artifact));
    let out = cli(&s)
        .args([
            "mint",
            "artifacts/build.tgz",
            "--upload",
            "--max-bytes",
            "300000",
            "--sha256",
            &digest,
            "--no-overwrite",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = String::from_utf8(out.stdout).unwrap().trim().to_string();

    let inspected = cli(&s).args(["inspect", &url]).output().unwrap();
    let text = String::from_utf8_lossy(&inspected.stdout);
    for line in [
        "direction: upload",
        "max_bytes: 300000",
        "overwrite: false",
        &format!("sha256: {digest}"),
    ] {
        assert!(text.contains(line), "{line} in {text}");
    }

    let (status, body) = curl_status(&["--data-binary", &format!("@{}", src.display()), &url]);
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        std::fs::read(s.root.join("artifacts/build.tgz")).unwrap(),
        artifact
    );
    // The destination exists now, so a second no-overwrite link is refused at mint.
    let out = cli(&s)
        .args(["mint", "artifacts/build.tgz", "--upload", "--no-overwrite"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists"));
}

#[test]
fn keygen_prints_one_usable_entry() {
    let out = Command::new(bin()).arg("keygen").output().unwrap();
    assert!(out.status.success());
    let line = String::from_utf8(out.stdout).unwrap();
    let line = line.trim();
    let (kid, key) = line.split_once(':').unwrap();
    assert!(burnlink::token::is_valid_key_id(kid));
    assert_eq!(key.len(), 43, "32 bytes, URL-safe base64 without padding");
    assert!(burnlink::token::Keyring::parse(line).is_ok());
}

#[tokio::test]
async fn inspect_says_why_a_token_is_refused() {
    let s = Server::start();
    s.write("f.txt", b"f");
    let url = s.mint("f.txt").await;
    let out = cli(&s).args(["inspect", &url]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("valid: yes")
            && text.contains("path: f.txt")
            && text.contains("direction: download"),
        "{text}"
    );
    assert!(text.contains("key_id: t1"));

    let expired = sign(&claims(Direction::Download, "f.txt", now() - 1));
    let other = burnlink::token::Keyring::parse(&burnlink::token::generate_key_entry()).unwrap();
    let mut forged = burnlink::token::Keyring::parse(KEYS).unwrap().sign(&claims(
        Direction::Download,
        "f.txt",
        now() + 60,
    ));
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'Q' } else { 'A' });
    for (token, reason) in [
        (expired, "reason: expired"),
        (
            other.sign(&claims(Direction::Download, "f", now() + 60)),
            "reason: unknown key",
        ),
        (forged, "reason: bad signature"),
        ("%%%".to_string(), "reason: malformed"),
    ] {
        let out = cli(&s).args(["inspect", &token]).output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains(reason), "{reason}: {text}");
    }
}

#[tokio::test]
async fn revoke_burns_a_link_through_the_server() {
    let s = Server::start();
    s.write("f.txt", b"f");
    let url = s.mint("f.txt").await;
    let out = cli(&s).args(["revoke", &url]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(error_code(s.get(&url).await).await, (404, "revoked".into()));
}

#[test]
fn a_bad_variable_stops_start_up_with_one_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    for (var, value) in [
        ("BURNLINK_BIND", "not-an-address"),
        ("BURNLINK_KEYS", "k1:tooshort"),
        ("BURNLINK_TTL_DEFAULT_S", "soon"),
        ("BURNLINK_WORKERS", "many"),
        ("BURNLINK_PIN_LOOPS", "yes"),
    ] {
        let out = Command::new(bin())
            .arg("serve")
            .current_dir(dir.path())
            .env("BURNLINK_ROOT", dir.path().join("data"))
            .env(var, value)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{var}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(var), "{err}");
    }
}

#[test]
fn dot_env_is_read_and_the_real_environment_wins() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/f.txt"), b"f").unwrap();
    std::fs::write(
        dir.path().join(".env"),
        format!("BURNLINK_KEYS={KEYS}\nBURNLINK_ROOT=./data\nBURNLINK_TTL_DEFAULT_S=77\n"),
    )
    .unwrap();
    let ttl = |extra: &[(&str, &str)]| {
        let mut c = Command::new(bin());
        c.args(["mint", "f.txt", "--json"]).current_dir(dir.path());
        for (k, v) in extra {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["expires_in_seconds"].as_u64().unwrap()
    };
    assert_eq!(ttl(&[]), 77);
    assert_eq!(ttl(&[("BURNLINK_TTL_DEFAULT_S", "88")]), 88);

    std::fs::write(dir.path().join(".env"), "BURNLINK_KEYS='unterminated\n").unwrap();
    let out = Command::new(bin())
        .args(["mint", "f.txt"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(".env"));
}
