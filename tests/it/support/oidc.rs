//! A real OAuth authorization server for the OAuth tests: node-oidc-provider
//! (`tests/it/oidc_provider.mjs`) on a free loopback port, issuing JWT access tokens for
//! burnlink through the client credentials grant. Stopped by PID when dropped.
//!
//! Its signing key is written to its directory, so a test can also forge tokens with the very
//! key the server trusts (expired, for another issuer…) and check they are refused.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use super::{OIDC_PROVIDER, free_port, require_tool};

pub struct OidcProvider {
    child: Child,
    pub issuer: String,
    dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl OidcProvider {
    /// Starts the provider, or `None` when node or the package is missing (skip rule).
    pub fn start() -> Option<Self> {
        let module = require_tool(OIDC_PROVIDER)?;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/oidc_provider.mjs");
        // A port probed free can be taken before node binds it: try a few.
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let port = free_port();
            let log = std::fs::File::create(dir.path().join("provider.log")).unwrap();
            let mut child = Command::new("node")
                .arg(&script)
                .arg(&module)
                .arg(port.to_string())
                .arg("urn:burnlink:unused-default")
                .arg(dir.path())
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
                Ok(issuer) => {
                    return Some(OidcProvider {
                        child,
                        issuer,
                        dir,
                        http: reqwest::Client::builder()
                            .timeout(Duration::from_secs(20))
                            .build()
                            .unwrap(),
                    });
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
        panic!("oidc-provider did not start on any of 5 free ports");
    }

    /// An access token from the token endpoint (client credentials), for `resource`, with
    /// `scope` when given (else every scope the client may have). Panics unless issued.
    pub async fn token(&self, client: &str, scope: Option<&str>, resource: &str) -> String {
        let (status, body) = self.token_response(client, scope, resource).await;
        assert_eq!(status, 200, "token endpoint: {body}");
        body["access_token"].as_str().unwrap().to_string()
    }

    pub async fn token_response(
        &self,
        client: &str,
        scope: Option<&str>,
        resource: &str,
    ) -> (u16, Value) {
        let enc = |s: &str| {
            percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
        };
        let mut form = format!("grant_type=client_credentials&resource={}", enc(resource));
        if let Some(scope) = scope {
            form.push_str(&format!("&scope={}", enc(scope)));
        }
        let r = self
            .http
            .post(format!("{}/token", self.issuer))
            .basic_auth(client, Some(format!("{client}-secret")))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// The provider's signing key (PKCS#1 DER), to forge tokens the server would trust.
    pub fn private_key_der(&self) -> Vec<u8> {
        std::fs::read(self.dir.path().join("key.der")).unwrap()
    }

    /// Its public key (SPKI PEM), for the key-confusion attack.
    pub fn public_key_pem(&self) -> Vec<u8> {
        std::fs::read(self.dir.path().join("public.pem")).unwrap()
    }

    /// The key id its tokens carry.
    pub fn kid(&self) -> &'static str {
        "test-key-1"
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
