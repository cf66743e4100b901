//! A real OAuth authorization server for the OAuth tests: node-oidc-provider
//! (`tests/it/oidc_provider.mjs`) on a free loopback port, issuing JWT access tokens for
//! burnlink through the client credentials grant. Stopped by PID when dropped.
//!
//! Its signing key is written to its directory, so a test can also forge tokens with the very
//! key the server trusts (expired, for another issuer…) and check they are refused. It can
//! serve HTTPS with a test CA's certificate, and rotate its key on the same address.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use super::redis_modes::Certs;
use super::{OIDC_PROVIDER, free_port, require_tool};

pub struct OidcProvider {
    child: Child,
    pub issuer: String,
    dir: tempfile::TempDir,
    port: u16,
    /// The certificate and key it serves HTTPS with, and the CA that signed them.
    tls: Option<(PathBuf, PathBuf, PathBuf)>,
    /// How many times it started with this key directory (each start adds a key).
    generation: u32,
}

impl OidcProvider {
    /// Starts the provider, or `None` when node or the package is missing (skip rule).
    pub fn start() -> Option<Self> {
        Self::start_tls(None)
    }

    /// Starts it serving HTTPS with `certs`' server certificate when given.
    pub fn start_tls(certs: Option<&Certs>) -> Option<Self> {
        let module = require_tool(OIDC_PROVIDER)?;
        let tls = certs.map(|c| (c.server_cert.clone(), c.server_key.clone(), c.ca.clone()));
        // A port probed free can be taken before node binds it: try a few.
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let port = free_port();
            if let Some((child, issuer)) = launch(&module, port, dir.path(), tls.as_ref()) {
                return Some(OidcProvider {
                    child,
                    issuer,
                    dir,
                    port,
                    tls,
                    generation: 1,
                });
            }
        }
        panic!("oidc-provider did not start on any of 5 free ports");
    }

    /// Rotates the signing key the way an issuer does: stops, and starts again on the same
    /// address with a new key that signs from now on, the earlier ones still published.
    pub fn rotate(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let module = require_tool(OIDC_PROVIDER).expect("node was there a moment ago");
        let (child, issuer) = launch(&module, self.port, self.dir.path(), self.tls.as_ref())
            .expect("the provider restarts on its port");
        assert_eq!(issuer, self.issuer);
        self.child = child;
        self.generation += 1;
    }

    /// An access token from the token endpoint (client credentials), for `resource`, with
    /// `scope` when given (else every scope the client may have). Panics unless issued.
    pub async fn token(&self, client: &str, scope: Option<&str>, resource: &str) -> String {
        let (status, body) = self.token_response(client, scope, resource).await;
        assert_eq!(status, 200, "token endpoint: {body}");
        body["access_token"].as_str().unwrap().to_string()
    }

    /// The token endpoint's status and JSON answer, asked with curl (which speaks HTTPS to
    /// the provider with the test CA).
    pub async fn token_response(
        &self,
        client: &str,
        scope: Option<&str>,
        resource: &str,
    ) -> (u16, Value) {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--max-time", "20", "-w", "\n%{http_code}"])
            .arg("-u")
            .arg(format!("{client}:{client}-secret"))
            .args(["-d", "grant_type=client_credentials"])
            .arg("--data-urlencode")
            .arg(format!("resource={resource}"));
        if let Some(scope) = scope {
            cmd.arg("--data-urlencode").arg(format!("scope={scope}"));
        }
        if let Some((_, _, ca)) = &self.tls {
            cmd.arg("--cacert").arg(ca);
        }
        cmd.arg(format!("{}/token", self.issuer));
        let out = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .unwrap()
            .expect("run curl");
        let text = String::from_utf8_lossy(&out.stdout);
        let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (
            status.trim().parse().unwrap_or(0),
            serde_json::from_str(body).unwrap_or(Value::Null),
        )
    }

    /// The provider's signing key (PKCS#1 DER), to forge tokens the server would trust.
    pub fn private_key_der(&self) -> Vec<u8> {
        std::fs::read(self.dir.path().join("key.der")).unwrap()
    }

    /// Its public key (SPKI PEM), for the key-confusion attack.
    pub fn public_key_pem(&self) -> Vec<u8> {
        std::fs::read(self.dir.path().join("public.pem")).unwrap()
    }

    /// The key id its tokens carry now (the newest key's).
    pub fn kid(&self) -> String {
        format!("test-key-{}", self.generation)
    }
}

/// Starts node on `port` with the keys in `dir`; `None` when it did not become ready (the
/// port was taken).
fn launch(
    module: &Path,
    port: u16,
    dir: &Path,
    tls: Option<&(PathBuf, PathBuf, PathBuf)>,
) -> Option<(Child, String)> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/oidc_provider.mjs");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("provider.log"))
        .unwrap();
    let mut cmd = Command::new("node");
    cmd.arg(&script)
        .arg(module)
        .arg(port.to_string())
        .arg("urn:burnlink:unused-default")
        .arg(dir);
    if let Some((cert, key, _)) = tls {
        cmd.arg(cert).arg(key);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("start node");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(issuer) = line.strip_prefix("ready ") {
                let _ = tx.send(issuer.to_string());
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(issuer) => Some((child, issuer)),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            None
        }
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
