//! Test support for the integration tests: starts the real `burnlink` binary on 127.0.0.1:0
//! and talks to it over HTTP; the real tools it is tested with ([`tools`], [`redis_server`],
//! [`nginx`], [`chromium`], [`archive`]); free ports; and [`require_tool`], the one way a test
//! skips when a tool is missing.

pub mod archive;
pub mod chromium;
pub mod haproxy;
pub mod moto;
pub mod nginx;
pub mod oidc;
pub mod redis_modes;
pub mod redis_server;
pub mod relay;
pub mod tools;

pub use tools::{
    MCP_CONFORMANCE, MCP_PYTHON, MCP2_PYTHON, MOTO, OIDC_PROVIDER, TUS_JS, TUSPY, WEBHOOKS_PYTHON,
    conformance_script, require_root, require_tool, require_tools,
};

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use burnlink::token::{Claims, Direction, Keyring};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub const API_TOKEN: &str = "test-api-token";
pub const PINNED_TOKEN: &str = "pinned-token";
/// 32 fixed bytes, so tests can sign tokens the server accepts.
pub const KEYS: &str = "t1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_burnlink")
}

pub struct Server {
    child: Child,
    pub base: String,
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub client: reqwest::Client,
}

impl Server {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a server with the test keys and API tokens, plus `env`.
    pub fn start_with(env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        std::fs::create_dir_all(&root).unwrap();
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let mut cmd = Command::new(bin());
        cmd.arg("serve")
            .current_dir(dir.path())
            .env("BURNLINK_ROOT", &root)
            .env("BURNLINK_BIND", "127.0.0.1:0")
            .env("BURNLINK_KEYS", KEYS)
            .env(
                "BURNLINK_API_TOKENS",
                format!("{API_TOKEN},{PINNED_TOKEN}@s1"),
            )
            .env("BURNLINK_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start burnlink");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("burnlink listening on ") {
                    let addr = rest.split_whitespace().next().unwrap().to_string();
                    let _ = tx.send(addr);
                }
            }
        });
        let base = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(b) => b,
            Err(_) => {
                let _ = child.kill();
                let log =
                    std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
                panic!("burnlink did not start within 20 s; its log:\n{log}");
            }
        };
        Server {
            child,
            base,
            dir,
            root,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
        }
    }

    /// Waits (bounded) for the process to exit and returns its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    pub fn write(&self, rel: &str, bytes: &[u8]) -> PathBuf {
        let p = self.root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
        p
    }

    /// Mints through `POST /api/links`; returns (status, body).
    pub async fn mint_raw(&self, token: Option<&str>, body: Value) -> (u16, Value) {
        let mut req = self
            .client
            .post(format!("{}/api/links", self.base))
            .json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Mints a download link for `path` and returns its URL.
    pub async fn mint(&self, path: &str) -> String {
        let (status, body) = self
            .mint_raw(Some(API_TOKEN), json!({ "path": path }))
            .await;
        assert_eq!(status, 201, "{body}");
        body["url"].as_str().unwrap().to_string()
    }

    /// Mints an upload link with the fields of `body` (`direction` is set) and returns the
    /// mint response.
    pub async fn mint_upload(&self, mut body: Value) -> Value {
        body["direction"] = json!("upload");
        let (status, out) = self.mint_raw(Some(API_TOKEN), body).await;
        assert_eq!(status, 201, "{out}");
        out
    }

    /// Upload temporaries anywhere under the root (there should be none once an upload ended).
    pub fn temporaries(&self) -> Vec<PathBuf> {
        temporaries(&self.root)
    }

    /// `method` on `{base}{path}`, with a bearer token when given.
    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
    ) -> reqwest::Response {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap()
    }

    /// `method` on `/api/links/{token}` for a link given as URL or token.
    pub async fn link_api(
        &self,
        method: reqwest::Method,
        url_or_token: &str,
        token: Option<&str>,
    ) -> reqwest::Response {
        let link = burnlink::token::extract_token(url_or_token);
        self.api(method, &format!("/api/links/{link}"), token).await
    }

    pub async fn get(&self, url: &str) -> reqwest::Response {
        self.client.get(url).send().await.unwrap()
    }

    /// The link's state from `GET /api/links/{token}`.
    pub async fn state(&self, url: &str) -> String {
        let v: Value = self
            .link_api(reqwest::Method::GET, url, Some(API_TOKEN))
            .await
            .json()
            .await
            .unwrap();
        v["state"].as_str().unwrap_or("?").to_string()
    }

    /// The link's state once it is `want`, or the last one seen when `within` runs out
    /// (polled every 25 ms): the caller asserts on it, so a failure names the state it stuck in.
    pub async fn wait_state(&self, url: &str, want: &str, within: Duration) -> String {
        let until = std::time::Instant::now() + within;
        loop {
            let state = self.state(url).await;
            if state == want || std::time::Instant::now() >= until {
                return state;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits (bounded) until the link leaves `in_progress`: a transfer's lease is settled just
    /// after its response ends. An answer without a state (503 while a Redis failover
    /// settles) is asked again too.
    pub async fn settled_state(&self, url: &str) -> String {
        let mut last = String::new();
        for _ in 0..200 {
            last = self.state(url).await;
            if last != "in_progress" && last != "?" {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("link stayed {last} for 5 s");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Signs claims with the test key, as any holder of the key could.
pub fn sign(claims: &Claims) -> String {
    Keyring::parse(KEYS).unwrap().sign(claims)
}

pub fn now() -> u64 {
    burnlink::links::unix_now()
}

pub fn claims(direction: Direction, path: &str, expires_at: u64) -> Claims {
    Claims::new(direction, None, path.to_string(), expires_at)
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

pub fn sha256_file(p: &Path) -> [u8; 32] {
    sha256(&std::fs::read(p).unwrap())
}

/// Deterministic, incompressible-looking bytes.
pub fn pattern(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub async fn error_code(resp: reqwest::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    (status, v["error"].as_str().unwrap_or("").to_string())
}

pub fn curl() -> Command {
    let mut c = Command::new("curl");
    c.args(["--silent", "--show-error"]);
    c
}

pub fn temporaries(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            } else if entry
                .file_name()
                .to_string_lossy()
                .starts_with(".burnlink-")
            {
                found.push(path);
            }
        }
    }
    found
}

/// Peak resident set of a process, from /proc (Linux).
pub fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

pub fn hex(bytes: &[u8]) -> String {
    burnlink::token::hex(bytes)
}

/// Runs curl with `args` plus `-w '\n%{http_code}'`; returns (status, body).
pub fn curl_status(args: &[&str]) -> (u16, String) {
    let out = curl()
        .args(args)
        .args(["-w", "\n%{http_code}"])
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// The value of the `/metrics` sample `name` whose labels include every `labels` pair.
pub fn metric_sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, label_text) = match series.split_once('{') {
                Some((m, rest)) => (m, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let all = labels
                .iter()
                .all(|(k, v)| label_text.split(',').any(|p| p == format!("{k}=\"{v}\"")));
            (metric == name && all).then(|| value.parse().ok())?
        })
}

/// `s`'s `/metrics`, checked to be Prometheus text.
pub async fn scrape_metrics(s: &Server) -> String {
    let r = s.get(&format!("{}/metrics", s.base)).await;
    assert_eq!(r.status(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    r.text().await.unwrap()
}

/// The client connections a server counts open over all its event loops, from its
/// `/metrics` text (`burnlink_open_connections`).
pub fn open_connections(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("burnlink_open_connections{"))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<f64>().unwrap())
        .sum()
}

/// The open connections `s` counts once they are `want` (10 s at most): the server sees a
/// client's close when it next reads that socket.
pub async fn open_connections_once(s: &Server, want: f64) -> f64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut now = open_connections(&scrape_metrics(s).await);
    while now != want && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        now = open_connections(&scrape_metrics(s).await);
    }
    now
}
