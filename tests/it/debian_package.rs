//! The Debian package: cargo-deb packs the binary this test binary already has (no release
//! build), `dpkg -i` installs it on this machine, the files, their modes and the hardened
//! systemd unit are checked (`systemd-analyze verify` and `security --offline`, which need no
//! running systemd), the installed binary serves one download with the generated key and
//! token, `dpkg -r` keeps the data and the keys, `dpkg --purge` removes them.
//!
//! It changes the machine, so it runs only as root (under CI it must) and a guard purges the
//! package whatever happens, so it can run again.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::*;

const ENV_FILE: &str = "/etc/burnlink/burnlink.env";
const UNIT: &str = "/usr/lib/systemd/system/burnlink.service";
const STATE_DIR: &str = "/var/lib/burnlink";

/// Runs `cmd`, returning its output; panics with both streams if it fails.
fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// dpkg with `args`, waiting (bounded) while another dpkg or apt holds the lock, as on a
/// machine where someone else installs something at the same time.
fn dpkg(args: &[&str]) -> Output {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = Command::new("dpkg")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
            .expect("run dpkg");
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() && stderr.contains("lock") && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(500));
            continue;
        }
        return out;
    }
}

fn installed() -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", "burnlink"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("installed"))
}

/// Purges the package when dropped: the machine is left as it was found, even after a failed
/// assertion. (The `burnlink` system user stays, as it does after a real purge.)
struct Purge;

impl Drop for Purge {
    fn drop(&mut self) {
        let out = dpkg(&["--purge", "burnlink"]);
        if !out.status.success() {
            eprintln!(
                "could not purge burnlink: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// A process stopped by PID when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn mode(path: &str) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .mode()
        & 0o7777
}

fn owner(path: &str) -> (u32, u32) {
    let m = std::fs::metadata(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    (m.uid(), m.gid())
}

/// `KEY=value` lines of an environment file (comments and blank lines skipped).
fn env_file(path: &str) -> HashMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn id(flag: &str, user: &str) -> u32 {
    let out = run(Command::new("id").args([flag, user]));
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// Builds the .deb with cargo-deb from the debug binary: a copy of it where cargo-deb looks
/// for the release binary (`$CARGO_TARGET_DIR/release/burnlink`), so the package is made by
/// the same configuration operators use, without a release build.
fn build_deb(cargo_deb: &Path, work: &Path) -> PathBuf {
    let target = work.join("target");
    std::fs::create_dir_all(target.join("release")).unwrap();
    std::fs::copy(bin(), target.join("release/burnlink")).unwrap();
    let out_dir = work.join("out");
    let started = Instant::now();
    run(Command::new(cargo_deb)
        .args(["--no-build", "--fast", "--locked", "--offline", "--quiet"])
        .arg("--manifest-path")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
        .arg("--output")
        .arg(&out_dir)
        .env("CARGO_TARGET_DIR", &target));
    eprintln!(
        "cargo-deb packed the debug binary in {:?}",
        started.elapsed()
    );
    std::fs::read_dir(&out_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("a .deb in the output directory")
}

/// Starts the installed binary with the installed environment file, as the service user,
/// on a free loopback port; returns the process and its base URL.
fn serve_as_service_user(env: &HashMap<String, String>, log: &Path) -> (Running, String) {
    let mut cmd = Command::new("setpriv");
    cmd.args([
        "--reuid=burnlink",
        "--regid=burnlink",
        "--init-groups",
        "--",
        "/usr/bin/burnlink",
        "serve",
    ])
    .current_dir(STATE_DIR)
    .env_clear()
    .env("PATH", "/usr/bin:/bin")
    .envs(env)
    // A free port instead of 8000 (which may be taken); everything else as installed.
    .env("BURNLINK_BIND", "127.0.0.1:0")
    .stdout(Stdio::piped())
    .stderr(std::fs::File::create(log).unwrap());
    let mut child = Running(cmd.spawn().expect("start the installed burnlink"));
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.strip_prefix("burnlink listening on ") {
                let _ = tx.send(rest.split_whitespace().next().unwrap().to_string());
            }
        }
    });
    let base = rx
        .recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| {
            panic!(
                "the installed burnlink did not start; its log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            )
        });
    (child, base)
}

#[tokio::test]
async fn the_debian_package_installs_a_hardened_service_and_removes_cleanly() {
    if !require_tools(&[
        "cargo-deb",
        "dpkg",
        "dpkg-deb",
        "systemd-analyze",
        "setpriv",
    ]) {
        return;
    }
    if !require_root("installs the package with dpkg -i") {
        return;
    }
    let cargo_deb = require_tool("cargo-deb").unwrap();
    // A run that died without its guard left the package behind: start clean.
    if installed() {
        drop(Purge);
    }
    let work = tempfile::tempdir().unwrap();
    let deb = build_deb(&cargo_deb, work.path());

    // What is in it.
    let info = run(Command::new("dpkg-deb").arg("--info").arg(&deb));
    let info = String::from_utf8_lossy(&info.stdout).to_string();
    assert!(info.contains("Package: burnlink"), "{info}");
    assert!(info.contains("Depends: libc6"), "{info}");
    let contents = run(Command::new("dpkg-deb").arg("--contents").arg(&deb));
    let contents = String::from_utf8_lossy(&contents.stdout).to_string();
    for path in [
        "./usr/bin/burnlink",
        "./usr/lib/systemd/system/burnlink.service",
        "./usr/share/burnlink/burnlink.env",
    ] {
        assert!(contents.contains(path), "{path} not packed:\n{contents}");
    }
    assert!(
        !contents.contains("./etc/burnlink"),
        "the environment file with its secrets is made at installation, not shipped"
    );

    // Install.
    let _purge = Purge;
    let out = dpkg(&["-i", deb.to_str().unwrap()]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "dpkg -i failed:\n{said}");
    assert!(said.contains("generated a signing key"), "{said}");
    assert!(!said.contains("has an error"), "{said}");
    assert!(installed());

    // Files, owners and modes.
    let (uid, gid) = (id("-u", "burnlink"), id("-g", "burnlink"));
    assert_ne!(uid, 0, "a dedicated user, not root");
    assert_eq!(mode("/usr/bin/burnlink"), 0o755);
    assert_eq!(owner("/usr/bin/burnlink"), (0, 0));
    assert_eq!(mode(UNIT), 0o644);
    assert_eq!(mode(ENV_FILE), 0o600, "the environment file holds secrets");
    assert_eq!(owner(ENV_FILE), (0, 0));
    assert_eq!(mode(STATE_DIR), 0o750);
    assert_eq!(owner(STATE_DIR), (uid, gid));
    let data = format!("{STATE_DIR}/data");
    assert_eq!(owner(&data), (uid, gid));
    let env = env_file(ENV_FILE);
    assert_eq!(env["BURNLINK_ROOT"], data);
    let keys = env["BURNLINK_KEYS"].clone();
    let token = env["BURNLINK_API_TOKENS"].clone();
    assert!(
        burnlink::token::Keyring::parse(&keys).is_ok(),
        "a usable key"
    );
    assert!(
        token.starts_with("bl_") && token.len() > 40,
        "a strong token"
    );
    let env_text = std::fs::read_to_string(ENV_FILE).unwrap();
    for var in ["BURNLINK_KEYS=", "BURNLINK_API_TOKENS="] {
        let lines = env_text.lines().filter(|l| l.starts_with(var)).count();
        assert_eq!(lines, 1, "{var} once:\n{env_text}");
    }

    // The installed binary says what it is.
    let version = run(Command::new("/usr/bin/burnlink").arg("--version"));
    let version = String::from_utf8_lossy(&version.stdout).to_string();
    assert!(
        version.starts_with(&format!("burnlink {} (", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );

    // The unit: the hardening asked for, and systemd's own checks (offline: no systemd needs
    // to be running; `verify` prints unknown or misspelt settings as warnings, so any output
    // is a failure).
    let unit = std::fs::read_to_string(UNIT).unwrap();
    for line in [
        "User=burnlink",
        "EnvironmentFile=/etc/burnlink/burnlink.env",
        "ExecStart=/usr/bin/burnlink serve",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/burnlink",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=\n",
        "SystemCallFilter=@system-service",
    ] {
        assert!(unit.contains(line), "the unit lacks {line:?}");
    }
    let verify = Command::new("systemd-analyze")
        .args(["verify", "--man=no", UNIT])
        .output()
        .unwrap();
    let complaints = format!(
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(
        verify.status.success() && complaints.trim().is_empty(),
        "systemd-analyze verify: {}\n{complaints}",
        verify.status
    );
    // Exposure 0 (locked down) to 100 (fully exposed); systemd prints it as 0.0–10.0.
    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--threshold=20", UNIT])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&security.stdout).to_string();
    assert!(
        security.status.success(),
        "exposure above 2.0:\n{report}{}",
        String::from_utf8_lossy(&security.stderr)
    );

    // check-config reads the installed file as the service would, secrets masked.
    let check = run(Command::new("sh").args([
        "-c",
        "set -a; . /etc/burnlink/burnlink.env; exec /usr/bin/burnlink check-config",
    ]));
    let shown = String::from_utf8_lossy(&check.stdout).to_string();
    assert!(shown.contains(&format!("BURNLINK_ROOT={data}")), "{shown}");
    let secret = keys.split_once(':').unwrap().1;
    assert!(
        !shown.contains(secret) && !shown.contains(&token),
        "{shown}"
    );

    // Installing again (an upgrade, a reinstall) keeps the keys and the token.
    let out = dpkg(&["-i", deb.to_str().unwrap()]);
    assert!(out.status.success());
    assert_eq!(std::fs::read_to_string(ENV_FILE).unwrap(), env_text);

    // The installed binary, with the installed settings, as the service user, serves a link
    // once from the installed data directory.
    let file = format!("{data}/hello.txt");
    std::fs::write(&file, b"from the package").unwrap();
    std::os::unix::fs::chown(&file, Some(uid), Some(gid)).unwrap();
    {
        let (_server, base) = serve_as_service_user(&env, &work.path().join("serve.log"));
        let base = format!("http://{}", base.trim_start_matches("http://"));
        let c = reqwest::Client::new();
        let minted: serde_json::Value = c
            .post(format!("{base}/api/links"))
            .bearer_auth(&token)
            .json(&serde_json::json!({ "path": "hello.txt" }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let url = minted["url"].as_str().expect("a minted URL").to_string();
        let first = c.get(&url).send().await.unwrap();
        assert_eq!(first.status(), 200);
        assert_eq!(&first.bytes().await.unwrap()[..], b"from the package");
        let mut second = 0;
        for _ in 0..100 {
            second = c.get(&url).send().await.unwrap().status().as_u16();
            if second != 409 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(second, 404, "used once");
    }

    // Remove: the program and the unit go; the data, the keys and the user stay.
    let out = dpkg(&["-r", "burnlink"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!Path::new("/usr/bin/burnlink").exists());
    assert!(!Path::new(UNIT).exists());
    assert_eq!(std::fs::read_to_string(ENV_FILE).unwrap(), env_text);
    assert!(Path::new(&file).exists(), "the data stays");

    // Purge: the keys and the data go too.
    let out = dpkg(&["--purge", "burnlink"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!Path::new(ENV_FILE).exists());
    assert!(!Path::new(STATE_DIR).exists());
    assert!(!installed());
}
