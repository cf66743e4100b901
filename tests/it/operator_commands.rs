//! The commands operators and packaging scripts use: `--version` (with the git commit),
//! `check-config` (the effective configuration, secrets masked; exit 1 with one line on an
//! error), `healthcheck` (the container's probe) and `keygen --api-token`.

use std::process::{Command, Output};

use crate::support::*;

/// The binary with an environment of `vars` only (no `.env`: a fresh directory).
fn burnlink(dir: &std::path::Path, args: &[&str], vars: &[(&str, &str)]) -> Output {
    Command::new(bin())
        .args(args)
        .current_dir(dir)
        .env_clear()
        .envs(vars.iter().copied())
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).to_string()
}

#[test]
fn version_names_the_release_and_the_commit() {
    let dir = tempfile::tempdir().unwrap();
    let out = burnlink(dir.path(), &["--version"], &[]);
    assert!(out.status.success());
    let line = text(&out.stdout);
    let expected_commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| text(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    assert_eq!(
        line.trim(),
        format!("burnlink {} ({expected_commit})", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn check_config_prints_the_effective_configuration_with_secrets_masked() {
    let dir = tempfile::tempdir().unwrap();
    let vars = [
        ("BURNLINK_KEYS", KEYS),
        ("BURNLINK_API_TOKENS", "sekrit-api-token,pinned-sekrit@s1"),
        ("BURNLINK_LEDGER", "redis://app:redis-pass@127.0.0.1:6379/0"),
        ("BURNLINK_BIND", "127.0.0.1:9123"),
        ("BURNLINK_TTL_MAX_S", "600"),
    ];
    let out = burnlink(dir.path(), &["check-config"], &vars);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    for line in [
        "BURNLINK_BIND=127.0.0.1:9123",
        "BURNLINK_BASE_URL=http://127.0.0.1:9123 (default, from BURNLINK_BIND)",
        "BURNLINK_KEYS=t1:****",
        "BURNLINK_LEDGER=redis://app:****@127.0.0.1:6379/0",
        "BURNLINK_TTL_MAX_S=600",
        "BURNLINK_TTL_DEFAULT_S=600",
        "BURNLINK_ROOT=./data",
    ] {
        assert!(
            stdout.lines().any(|l| l.starts_with(line)),
            "{line}:\n{stdout}"
        );
    }
    let secret = KEYS.split_once(':').unwrap().1;
    for s in [secret, "sekrit", "redis-pass"] {
        assert!(!stdout.contains(s) && !stderr.contains(s), "{s} leaked");
    }
    assert_eq!(
        stdout.lines().count(),
        burnlink::config::KNOWN_VARS.len(),
        "one line per variable"
    );
    assert!(
        !dir.path().join("data").exists(),
        "checking creates nothing"
    );

    // A typo is warned about; a bad value is exit 1 with the one-line error.
    let out = burnlink(
        dir.path(),
        &["check-config"],
        &[("BURNLINK_BIDN", "x"), ("BURNLINK_KEYS", KEYS)],
    );
    assert!(out.status.success());
    assert!(text(&out.stderr).contains("BURNLINK_BIDN is not a burnlink variable"));
    let out = burnlink(dir.path(), &["check-config"], &[("BURNLINK_BIND", "nope")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("burnlink: BURNLINK_BIND:"), "{err}");
}

#[tokio::test]
async fn healthcheck_asks_the_local_server_and_exits_0_or_1() {
    let s = Server::start();
    let port = s.base.rsplit(':').next().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    for bind in [format!("127.0.0.1:{port}"), format!("0.0.0.0:{port}")] {
        let out = burnlink(dir.path(), &["healthcheck"], &[("BURNLINK_BIND", &bind)]);
        assert!(out.status.success(), "{bind}: {}", text(&out.stderr));
    }
    drop(s);
    let dead = format!("127.0.0.1:{}", free_port());
    let out = burnlink(
        dir.path(),
        &["healthcheck", "--timeout", "1"],
        &[("BURNLINK_BIND", &dead)],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("unhealthy"),
        "{}",
        text(&out.stderr)
    );
    // Something that is not burnlink answering 404 on /healthz is unhealthy too.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let other = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        if let Ok((mut conn, _)) = listener.accept() {
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n");
        }
    });
    let out = burnlink(dir.path(), &["healthcheck"], &[("BURNLINK_BIND", &other)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("404"), "{}", text(&out.stderr));
    // A configuration error is exit 1 as well (2 is reserved in container health checks).
    let out = burnlink(dir.path(), &["healthcheck"], &[("BURNLINK_BIND", "nope")]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn keygen_makes_keys_and_api_tokens_the_configuration_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let key = text(&burnlink(dir.path(), &["keygen"], &[]).stdout);
    let token = text(&burnlink(dir.path(), &["keygen", "--api-token"], &[]).stdout);
    let (key, token) = (key.trim(), token.trim());
    assert!(token.starts_with("bl_") && token.len() >= 40, "{token}");
    assert_ne!(
        token,
        text(&burnlink(dir.path(), &["keygen", "--api-token"], &[]).stdout).trim()
    );
    let out = burnlink(
        dir.path(),
        &["check-config"],
        &[("BURNLINK_KEYS", key), ("BURNLINK_API_TOKENS", token)],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
}
