//! The official MCP conformance runner (`@modelcontextprotocol/conformance` 0.2.0-alpha.12, its
//! newest release, on node 22) against `/mcp`: the server scenarios that apply to any server,
//! the stateless 2026-07-28 revision's and its header checks included. Checks that need the
//! runner's own reference tools are listed, one by one, in `conformance-baseline.yml`.
//!
//! The runner connects without credentials, and `/mcp` rightly refuses that, so it talks to a
//! loopback forwarder that adds a static API token and passes everything else (the `Host`
//! header included, which the DNS-rebinding scenario forges) through unchanged. Scenarios that
//! cannot apply are listed in docs/mcp.md with the reason.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::response::Response;

use crate::support::*;

/// The server scenarios of the runner that apply to burnlink. The others call tools, prompts
/// or resources only its reference server has (docs/mcp.md lists them with the reason).
const SCENARIOS: &[&str] = &[
    "server-initialize",
    "ping",
    "tools-list",
    "dns-rebinding-protection",
    "server-stateless",
    "http-header-validation",
    "caching",
];

struct Forward {
    target: String,
    client: reqwest::Client,
}

async fn forward(State(f): State<Arc<Forward>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut out = f
        .client
        .request(parts.method.clone(), format!("{}{path}", f.target));
    for (name, value) in &parts.headers {
        if !matches!(
            name.as_str(),
            "authorization" | "content-length" | "connection" | "transfer-encoding"
        ) {
            out = out.header(name, value);
        }
    }
    let answer = out.bearer_auth(API_TOKEN).body(body).send().await.unwrap();
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if !matches!(
            name.as_str(),
            "content-length" | "connection" | "transfer-encoding"
        ) {
            response = response.header(name, value);
        }
    }
    let bytes = answer.bytes().await.unwrap_or_default();
    response.body(axum::body::Body::from(bytes)).unwrap()
}

#[tokio::test]
async fn the_official_conformance_runner_passes_the_server_scenarios() {
    let Some(node) = require_tool(MCP_CONFORMANCE) else {
        return;
    };
    let runner = conformance_script();
    let baseline =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/conformance-baseline.yml");
    let s = Server::start();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let state = Arc::new(Forward {
        target: s.base.clone(),
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
    });
    let app = axum::Router::new().fallback(forward).with_state(state);
    let proxy = tokio::spawn(async move { axum::serve(listener, app).await });
    let url = format!("http://127.0.0.1:{port}/mcp");

    for scenario in SCENARIOS {
        let (node, runner, baseline, url, out_dir) = (
            node.clone(),
            runner.clone(),
            baseline.clone(),
            url.clone(),
            s.dir.path().join(format!("conformance-{scenario}")),
        );
        let name = scenario.to_string();
        let (code, output) = tokio::task::spawn_blocking(move || {
            let child = Command::new(&node)
                .arg(&runner)
                .args(["server", "--url", &url, "--scenario", &name])
                .arg("--expected-failures")
                .arg(&baseline)
                .arg("-o")
                .arg(&out_dir)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start the conformance runner");
            let pid = child.id();
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let _ = tx.send(child.wait_with_output());
            });
            match rx.recv_timeout(Duration::from_secs(120)) {
                Ok(out) => {
                    let out = out.unwrap();
                    let text = format!(
                        "{}{}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    );
                    (out.status.code(), text)
                }
                Err(_) => {
                    let _ = Command::new("kill").arg(pid.to_string()).status();
                    panic!("conformance scenario {name} did not finish within 120 s");
                }
            }
        })
        .await
        .unwrap();
        // The exit code judges every check against the baseline: an unlisted failure and a
        // listed check that passes both exit 1.
        assert!(
            code == Some(0),
            "conformance scenario failed (exit {code:?}):\n{output}"
        );
        let summary = output
            .lines()
            .find(|l| l.contains("Passed:"))
            .unwrap_or("")
            .trim();
        let passed: u32 = summary
            .strip_prefix("Passed: ")
            .and_then(|r| r.split('/').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(passed > 0, "{scenario} checked nothing:\n{output}");
        // Straight to stderr, past the harness's capture: the figures show in a passing run.
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            format!("conformance {scenario}: {summary}\n").as_bytes(),
        );
    }
    proxy.abort();
}
