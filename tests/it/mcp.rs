//! MCP at `/mcp` (streamable HTTP) and `burnlink mcp` (stdio), driven by the official Python MCP
//! SDK (1.x, installed by scripts/test into a virtual environment), then checked with curl.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::support::*;
use serde_json::{Value, json};

/// The venv's python with the `mcp` package, and curl; `None` when either is missing (by
/// [`require_tool`]: a failure under CI, a printed skip otherwise).
pub(crate) fn python() -> Option<PathBuf> {
    let py = require_tool(MCP_PYTHON);
    require_tool("curl")?;
    py
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/mcp_client.py")
}

/// Runs tests/it/mcp_client.py with `args` and `calls`; returns its report. Bounded to 90 s.
pub(crate) fn run_client(py: &Path, args: &[&str], env: &[(&str, &str)], calls: Value) -> Value {
    run_script(py, &script(), args, env, calls)
}

/// Runs a client script of tests/it with `args`, `calls` on its stdin; returns its report.
pub(crate) fn run_script(
    py: &Path,
    script: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    calls: Value,
) -> Value {
    let mut cmd = Command::new(py);
    cmd.arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start the python MCP client");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(calls.to_string().as_bytes())
        .unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = rx
        .recv_timeout(Duration::from_secs(90))
        .expect("the python MCP client did not finish within 90 s")
        .unwrap();
    assert!(
        out.status.success(),
        "python MCP client failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "client report is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

pub(crate) fn over_http(py: &Path, s: &Server, token: &str, calls: Value) -> Value {
    let url = format!("{}/mcp", s.base);
    run_client(py, &["http", &url, token], &[], calls)
}

/// `burnlink mcp` as the SDK's stdio server, for the server `s` (same key, same files).
fn over_stdio(py: &Path, s: &Server, api_tokens: Option<&str>, calls: Value) -> Value {
    over_stdio_with(py, s, api_tokens, &[], calls)
}

fn over_stdio_with(
    py: &Path,
    s: &Server,
    api_tokens: Option<&str>,
    extra: &[(&str, &str)],
    calls: Value,
) -> Value {
    let root = s.root.display().to_string();
    let mut env = vec![
        ("BURNLINK_ROOT", root.as_str()),
        ("BURNLINK_BASE_URL", s.base.as_str()),
        ("BURNLINK_KEYS", KEYS),
        ("BURNLINK_LOG", "info"),
        // Empty = unset, also over an inherited value.
        ("BURNLINK_API_TOKENS", api_tokens.unwrap_or("")),
    ];
    env.extend_from_slice(extra);
    run_client(py, &["stdio", bin()], &env, calls)
}

pub(crate) fn tool_names(report: &Value) -> Vec<String> {
    let mut names: Vec<String> = report["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

/// The `i`th result, which must be a success (no SDK exception, no tool error).
pub(crate) fn ok(report: &Value, i: usize) -> &Value {
    let r = &report["results"][i];
    assert!(r.get("exception").is_none(), "call {i}: {r}");
    assert_eq!(r["isError"], false, "call {i}: {r}");
    r
}

/// The `i`th result, which must be a tool error; returns its text.
pub(crate) fn tool_error(report: &Value, i: usize) -> String {
    let r = &report["results"][i];
    assert!(r.get("exception").is_none(), "call {i}: {r}");
    assert_eq!(r["isError"], true, "call {i} should be a tool error: {r}");
    r["text"][0].as_str().unwrap().to_string()
}

/// structuredContent, and the same JSON as the first text block.
pub(crate) fn structured(r: &Value) -> &Value {
    let text: Value = serde_json::from_str(r["text"][0].as_str().unwrap()).unwrap();
    assert_eq!(text, r["structured"], "text and structuredContent differ");
    &r["structured"]
}

pub(crate) fn curl_get(url: &str, out: &Path) {
    let o = curl()
        .args(["--fail", "-o"])
        .arg(out)
        .arg(url)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

const ALL_TOOLS: [&str; 5] = [
    "create_download_link",
    "create_upload_link",
    "generate_download_link",
    "get_link_status",
    "list_download_stats",
];

#[tokio::test]
async fn tools_over_http_mint_links_curl_can_fetch() {
    let Some(py) = python() else { return };
    let s = Server::start_with(&[("BURNLINK_MAX_DOWNLOAD_BYTES", "100000")]);
    let data = pattern(50_000);
    s.write("reports/q3.bin", &data);
    s.write("big.bin", &pattern(100_001));

    let report = over_http(
        &py,
        &s,
        API_TOKEN,
        json!([
            {"tool": "create_download_link", "args": {"path": "reports/q3.bin"}},
            {"tool": "create_download_link", "args": {"path": "../outside.txt"}},
            {"tool": "create_download_link", "args": {"path": "reports/missing.bin"}},
            {"tool": "create_download_link", "args": {"path": "big.bin"}},
            {"tool": "create_download_link", "args": {"path": "reports/q3.bin", "ttl_seconds": 0}},
            {"tool": "create_download_link", "args": {"path": "reports/q3.bin", "ttl_seconds": 999_999_999}},
            {"tool": "generate_download_link", "args": {"path": "reports/q3.bin", "expiry_minutes": 500}},
            {"tool": "list_download_stats"},
            {"tool": "create_download_link", "args": {"path": 7}},
        ]),
    );
    assert_eq!(tool_names(&report), ALL_TOOLS);
    for tool in report["tools"].as_array().unwrap() {
        assert!(tool["description"].as_str().unwrap().len() > 80, "{tool}");
        assert_eq!(tool["inputSchema"]["type"], "object", "{tool}");
        // One plain type per argument (no `["T", "null"]`), which every client dialect reads.
        for (name, prop) in tool["inputSchema"]["properties"].as_object().unwrap() {
            assert!(prop["type"].is_string(), "{name}: {prop}");
            assert!(prop["description"].is_string(), "{name}: {prop}");
        }
    }
    let create = report["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "create_download_link")
        .unwrap();
    assert!(create["description"].as_str().unwrap().contains("exactly"));
    assert_eq!(create["inputSchema"]["required"], json!(["path"]));
    assert!(create["outputSchema"]["properties"]["url"].is_object());

    // Titles and annotations as clients show them: only the status and stats tools read
    // without changing anything; an upload link may overwrite a file; minting is never
    // idempotent (each call makes a new link); nothing reaches outside this server.
    for tool in report["tools"].as_array().unwrap() {
        let name = tool["name"].as_str().unwrap();
        let a = &tool["annotations"];
        assert!(
            tool["title"].as_str().is_some_and(|t| !t.is_empty()),
            "{tool}"
        );
        assert_eq!(a["title"], tool["title"], "{name}");
        let reads = matches!(name, "get_link_status" | "list_download_stats");
        assert_eq!(a["readOnlyHint"], reads, "{name}");
        assert_eq!(a["destructiveHint"], name == "create_upload_link", "{name}");
        assert_eq!(a["idempotentHint"], reads, "{name}");
        assert_eq!(a["openWorldHint"], false, "{name}");
        // Every tool with structured results declares their schema.
        assert_eq!(
            tool["outputSchema"].is_object(),
            name != "generate_download_link",
            "{name}"
        );
    }
    // Each structured result validates against its tool's output schema (jsonschema).
    for (i, r) in report["results"].as_array().unwrap().iter().enumerate() {
        assert_eq!(r["schemaErrors"], json!([]), "call {i}: {r}");
    }

    // A link, as structured content, as text and as a resource link; curl gets the bytes.
    let r = ok(&report, 0);
    let link = structured(r);
    assert_eq!(link["path"], "reports/q3.bin");
    assert_eq!(link["kind"], "file");
    assert_eq!(link["size"], 50_000);
    assert_eq!(link["expires_in_seconds"], 3600);
    let url = link["url"].as_str().unwrap().to_string();
    assert!(url.starts_with(&format!("{}/transfer/", s.base)), "{url}");
    assert_eq!(r["links"][0]["uri"], url.as_str());
    assert_eq!(r["links"][0]["name"], "q3.bin");

    // Errors are tool errors a model can act on.
    let e = tool_error(&report, 1);
    assert!(
        e.starts_with("forbidden:") && e.contains("inside the sandbox"),
        "{e}"
    );
    let e = tool_error(&report, 2);
    assert!(
        e.starts_with("not_found:") && e.contains("create_upload_link"),
        "{e}"
    );
    let e = tool_error(&report, 3);
    assert!(e.starts_with("too_large:") && e.contains("100000"), "{e}");
    let e = tool_error(&report, 4);
    assert!(
        e.starts_with("invalid_ttl:") && e.contains("positive"),
        "{e}"
    );
    let e = tool_error(&report, 8);
    assert!(e.starts_with("bad_request: invalid arguments"), "{e}");

    // A TTL above the maximum is clamped, and the result says so.
    let clamped = structured(ok(&report, 5));
    assert_eq!(clamped["expires_in_seconds"], 86400);
    assert!(clamped["note"].as_str().unwrap().contains("86400"));

    // The compatibility tool answers the bare URL, with expiry_minutes clamped to 60.
    let r = ok(&report, 6);
    assert!(r["structured"].is_null());
    let bare = r["text"][0].as_str().unwrap();
    assert!(bare.starts_with(&format!("{}/transfer/", s.base)), "{bare}");
    let v: Value = s
        .link_api(reqwest::Method::GET, bare, Some(API_TOKEN))
        .await
        .json()
        .await
        .unwrap();
    let expires = time::OffsetDateTime::parse(
        v["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
    .unix_timestamp() as u64;
    assert!(expires <= now() + 3600 && expires >= now() + 3590, "{v}");

    // Stats count MCP mints like API mints: three links minted at the root so far.
    let stats = structured(ok(&report, 7));
    assert_eq!(stats["session_id"], Value::Null);
    // The sandbox as link paths see it, never its location on the server.
    assert_eq!(stats["working_directory"], "/");
    let root = s.root.canonicalize().unwrap().display().to_string();
    assert!(!report.to_string().contains(&root), "{report}");
    assert_eq!(stats["statistics"]["total_tokens"], 3);
    assert_eq!(stats["statistics"]["active_tokens"], 3);

    let out = s.dir.path().join("fetched.bin");
    curl_get(&url, &out);
    assert_eq!(std::fs::read(&out).unwrap(), data);
    assert_eq!(s.settled_state(&url).await, "used");

    // get_link_status says what GET /api/links/{token} says.
    let token = burnlink::token::extract_token(&url).to_string();
    let report = over_http(
        &py,
        &s,
        API_TOKEN,
        json!([
            {"tool": "get_link_status", "args": {"url": url}},
            {"tool": "get_link_status", "args": {"token": token}},
            {"tool": "get_link_status", "args": {"url": "http://x/transfer/not-a-token"}},
            {"tool": "get_link_status", "args": {}},
            {"tool": "list_download_stats"},
        ]),
    );
    let api: Value = s
        .link_api(reqwest::Method::GET, &url, Some(API_TOKEN))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(structured(ok(&report, 0)), &api);
    assert_eq!(api["state"], "used");
    assert_eq!(structured(ok(&report, 1)), &api);
    assert!(tool_error(&report, 2).starts_with("not_found:"));
    assert!(tool_error(&report, 3).starts_with("bad_request:"));
    assert_eq!(structured(ok(&report, 4))["statistics"]["used_tokens"], 1);
    for (i, r) in report["results"].as_array().unwrap().iter().enumerate() {
        assert_eq!(r["schemaErrors"], json!([]), "call {i}: {r}");
    }

    // Audit lines for MCP mints, like API mints.
    assert!(s.log().contains(r#"via="mcp""#), "{}", s.log());
}

#[tokio::test]
async fn a_pinned_token_mints_only_in_its_session() {
    let Some(py) = python() else { return };
    let s = Server::start();
    s.write("s1/doc.txt", b"session one");
    s.write("s2/doc.txt", b"session two");
    s.write("doc.txt", b"root");

    let report = over_http(
        &py,
        &s,
        PINNED_TOKEN,
        json!([
            {"tool": "create_download_link", "args": {"path": "doc.txt"}},
            {"tool": "create_download_link", "args": {"path": "doc.txt", "session": "s2"}},
            {"tool": "create_download_link", "args": {"path": "doc.txt", "session": "s1"}},
            {"tool": "list_download_stats"},
            {"tool": "list_download_stats", "args": {"session": "s2"}},
        ]),
    );
    let url = structured(ok(&report, 0))["url"]
        .as_str()
        .unwrap()
        .to_string();
    let e = tool_error(&report, 1);
    assert!(e.starts_with("forbidden:") && e.contains("pinned"), "{e}");
    ok(&report, 2);
    let stats = structured(ok(&report, 3));
    assert_eq!(stats["session_id"], "s1");
    assert_eq!(stats["working_directory"], "/s1", "{stats}");
    assert_eq!(stats["statistics"]["total_tokens"], 2);
    assert!(tool_error(&report, 4).starts_with("forbidden:"));

    let out = s.dir.path().join("got.txt");
    curl_get(&url, &out);
    assert_eq!(std::fs::read(&out).unwrap(), b"session one");

    // An unpinned token may pick a session.
    let report = over_http(
        &py,
        &s,
        API_TOKEN,
        json!([{"tool": "create_download_link", "args": {"path": "doc.txt", "session": "s2"}}]),
    );
    let url = structured(ok(&report, 0))["url"]
        .as_str()
        .unwrap()
        .to_string();
    curl_get(&url, &out);
    assert_eq!(std::fs::read(&out).unwrap(), b"session two");
}

#[tokio::test]
async fn tools_over_stdio_mint_for_the_server() {
    let Some(py) = python() else { return };
    let s = Server::start();
    let data = pattern(70_000);
    s.write("out/build.tar", &data);

    let report = over_stdio(
        &py,
        &s,
        Some(API_TOKEN),
        json!([
            {"tool": "create_download_link", "args": {"path": "out/build.tar"}},
            {"tool": "create_download_link", "args": {"path": "/etc/passwd"}},
            {"tool": "list_download_stats"},
        ]),
    );
    assert_eq!(tool_names(&report), ALL_TOOLS);
    let url = structured(ok(&report, 0))["url"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(url.starts_with(&format!("{}/transfer/", s.base)), "{url}");
    assert!(tool_error(&report, 1).starts_with("forbidden:"));
    let stats = structured(ok(&report, 2));
    assert_eq!(stats["session_id"], Value::Null);
    assert_eq!(stats["statistics"]["total_tokens"], 1);

    // The server, which never saw this mint, serves the link: same key.
    let out = s.dir.path().join("build.tar");
    curl_get(&url, &out);
    assert_eq!(std::fs::read(&out).unwrap(), data);
    assert_eq!(s.settled_state(&url).await, "used");

    // get_link_status asks the server's API with the first API token.
    let report = over_stdio(
        &py,
        &s,
        Some(API_TOKEN),
        json!([
            {"tool": "get_link_status", "args": {"url": url}},
            {"tool": "get_link_status", "args": {"url": "nonsense"}},
        ]),
    );
    assert_eq!(structured(ok(&report, 0))["state"], "used");
    assert!(tool_error(&report, 1).starts_with("not_found:"));

    // Without an API token there is nothing to ask the server with: the tool is not offered.
    let report = over_stdio(&py, &s, None, json!([]));
    assert_eq!(
        tool_names(&report),
        [
            "create_download_link",
            "create_upload_link",
            "generate_download_link",
            "list_download_stats"
        ]
    );
}

/// Upload links over both transports, pushed with `curl --data-binary`. Needs the upload
/// route (contract §2), which lands separately from MCP.
#[tokio::test]
async fn upload_links_over_http_and_stdio_take_a_curl_push() {
    let Some(py) = python() else { return };
    let s = Server::start_with(&[("BURNLINK_MAX_UPLOAD_BYTES", "1000000")]);
    let data = pattern(30_000);
    let src = s.dir.path().join("payload.bin");
    std::fs::write(&src, &data).unwrap();

    let http = over_http(
        &py,
        &s,
        API_TOKEN,
        json!([{"tool": "create_upload_link",
                "args": {"path": "incoming/a.bin", "max_bytes": 5_000_000_000u64}}]),
    );
    let stdio = over_stdio_with(
        &py,
        &s,
        Some(API_TOKEN),
        &[("BURNLINK_MAX_UPLOAD_BYTES", "1000000")],
        json!([{"tool": "create_upload_link", "args": {"path": "incoming/b.bin"}}]),
    );
    for (report, dest) in [(&http, "incoming/a.bin"), (&stdio, "incoming/b.bin")] {
        let r = ok(report, 0);
        assert_eq!(r["schemaErrors"], json!([]), "{r}");
        let link = structured(r);
        assert_eq!(link["path"], dest);
        assert_eq!(link["max_bytes"], 1_000_000);
        assert_eq!(link["expires_in_seconds"], 3600);
        let url = link["url"].as_str().unwrap();
        assert_eq!(r["links"][0]["uri"], url);
        let o = curl()
            .args(["--fail", "--data-binary"])
            .arg(format!("@{}", src.display()))
            .arg(url)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(std::fs::read(s.root.join(dest)).unwrap(), data);
        assert_eq!(s.settled_state(url).await, "used");
    }
    let note = structured(ok(&http, 0))["note"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(note.contains("max_bytes"), "{note}");

    // The agent learns that the file arrived, and what it is.
    let url = structured(ok(&http, 0))["url"]
        .as_str()
        .unwrap()
        .to_string();
    let report = over_http(
        &py,
        &s,
        API_TOKEN,
        json!([{"tool": "get_link_status", "args": {"url": url}}]),
    );
    assert_eq!(ok(&report, 0)["schemaErrors"], json!([]));
    let status = structured(ok(&report, 0));
    assert_eq!(status["state"], "used");
    assert_eq!(status["bytes"], 30_000);
    assert_eq!(status["sha256"], burnlink::token::hex(&sha256(&data)));
}

#[tokio::test]
async fn mcp_over_http_needs_the_bearer_token_and_an_allowed_host() {
    let s = Server::start();
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "test", "version": "1"}}});
    let post = |token: Option<&str>, host: Option<&str>| {
        let mut req = s
            .client
            .post(format!("{}/mcp", s.base))
            .header("Accept", "application/json, text/event-stream")
            .json(&init);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(h) = host {
            req = req.header("Host", h);
        }
        req.send()
    };
    for token in [None, Some("wrong-token")] {
        let (status, code) = error_code(post(token, None).await.unwrap()).await;
        assert_eq!((status, code.as_str()), (401, "unauthorized"));
    }
    let r = post(Some(API_TOKEN), None).await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["result"]["serverInfo"]["name"], "burnlink");

    // DNS rebinding: a page on evil.example resolving to this server must be refused.
    let (status, code) =
        error_code(post(Some(API_TOKEN), Some("evil.example")).await.unwrap()).await;
    assert_eq!((status, code.as_str()), (403, "forbidden"));
    // rmcp's other HTTP-level refusals are JSON like every burnlink error.
    let r = s
        .client
        .get(format!("{}/mcp", s.base))
        .bearer_auth(API_TOKEN)
        .header("Accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    let (status, code) = error_code(r).await;
    assert_eq!((status, code.as_str()), (405, "bad_request"));

    // Behind a load balancer: the public host name is allowed once configured, and the
    // configured list replaces the default.
    let lb = Server::start_with(&[("BURNLINK_MCP_ALLOWED_HOSTS", "files.example.com")]);
    let post_lb = |host: &str| {
        lb.client
            .post(format!("{}/mcp", lb.base))
            .header("Accept", "application/json, text/event-stream")
            .header("Host", host)
            .bearer_auth(API_TOKEN)
            .json(&init)
            .send()
    };
    assert_eq!(post_lb("files.example.com").await.unwrap().status(), 200);
    assert_eq!(post_lb("evil.example").await.unwrap().status(), 403);

    // By default the base URL's host is allowed too.
    let named = Server::start_with(&[("BURNLINK_BASE_URL", "https://files.example.org")]);
    let r = named
        .client
        .post(format!("{}/mcp", named.base))
        .header("Accept", "application/json, text/event-stream")
        .header("Host", "files.example.org")
        .bearer_auth(API_TOKEN)
        .json(&init)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// An OAuth client answers a 401 by fetching a token and sending the request again on the
/// same connection. A body that reaches the server after the head (two writes, a busy machine)
/// must still be read before the 401, or the connection closes under the retry.
#[tokio::test]
async fn a_refused_mcp_request_leaves_its_connection_usable() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = Server::start();
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}).to_string();
    let head = |token: &str| {
        format!(
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        )
    };
    let mut conn = tokio::net::TcpStream::connect(s.base.trim_start_matches("http://"))
        .await
        .unwrap();
    conn.write_all(head("wrong-token").as_bytes())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    conn.write_all(body.as_bytes()).await.unwrap();
    let first = read_response(&mut conn).await;
    assert!(first.starts_with("HTTP/1.1 401"), "{first}");
    // The retry, with the token, on the same connection.
    conn.write_all(format!("{}{body}", head(API_TOKEN)).as_bytes())
        .await
        .unwrap();
    let second = read_response(&mut conn).await;
    assert!(second.starts_with("HTTP/1.1 200"), "{second:?}");

    /// One response with a `Content-Length` body, or what arrived before the connection ended.
    async fn read_response(conn: &mut tokio::net::TcpStream) -> String {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        // Bounded: a response is a few hundred bytes.
        for _ in 0..64 {
            let text = String::from_utf8_lossy(&got).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text[..end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap())
                    })
                    .unwrap_or(0);
                if got.len() >= end + 4 + length {
                    return text;
                }
            }
            let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf))
                .await
                .unwrap()
                .unwrap_or(0);
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&got).to_string()
    }
}

#[test]
fn burnlink_mcp_needs_the_shared_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .arg("mcp")
        .current_dir(dir.path())
        .env_remove("BURNLINK_KEYS")
        .env("BURNLINK_ROOT", dir.path().join("data"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "stdout is the protocol's");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("BURNLINK_KEYS is not set"), "{err}");
}

#[tokio::test]
async fn mcp_mints_are_counted_and_rate_limited_like_api_mints() {
    let Some(py) = python() else { return };
    let s = Server::start_with(&[
        ("BURNLINK_RATE_MINT_PER_S", "1"),
        ("BURNLINK_RATE_MINT_BURST", "2"),
    ]);
    s.write("f.txt", b"file");
    let call = json!({ "tool": "create_download_link", "args": { "path": "f.txt" } });
    let report = over_http(&py, &s, API_TOKEN, json!([call, call, call]));
    ok(&report, 0);
    ok(&report, 1);
    let refused = tool_error(&report, 2);
    assert!(refused.starts_with("rate_limited:"), "{refused}");
    let metrics = s
        .get(&format!("{}/metrics", s.base))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("burnlink_links_minted_total{direction=\"download\"} 2"),
        "{metrics}"
    );
}

/// `get_link_status` on stdio puts the token into a URL path of the server's API: a token from
/// the model's input that is not token-shaped is refused before any request is made, so `..`
/// can never send the API token to another route.
#[tokio::test]
async fn stdio_link_status_refuses_what_is_not_a_token() {
    let Some(py) = python() else { return };
    let s = Server::start();
    let report = over_stdio(
        &py,
        &s,
        Some(API_TOKEN),
        json!([
            {"tool": "get_link_status", "args": {"token": "../../metrics"}},
            {"tool": "get_link_status", "args": {"url": "https://h/transfer/..%2F..%2Fmetrics/x"}},
            {"tool": "get_link_status", "args": {"token": "a?b=c"}},
        ]),
    );
    for i in 0..3 {
        let e = tool_error(&report, i);
        assert!(e.starts_with("not_found:"), "{i}: {e}");
    }
}

/// `max_uses` on both create tools: the result reports the value in force (clamped to the
/// ceiling), the link takes that many transfers, and get_link_status counts them.
#[tokio::test]
async fn create_tools_take_max_uses_and_status_counts_the_uses() {
    let Some(py) = python() else { return };
    let s = Server::start_with(&[("BURNLINK_MAX_USES", "5")]);
    s.write("two.txt", b"twice");
    let report = over_http(
        &py,
        &s,
        API_TOKEN,
        json!([
            {"tool": "create_download_link", "args": {"path": "two.txt", "max_uses": 2}},
            {"tool": "create_upload_link", "args": {"path": "in/u.txt", "max_uses": 50}},
        ]),
    );
    let down = structured(ok(&report, 0)).clone();
    assert_eq!(down["max_uses"], 2, "{down}");
    let up = structured(ok(&report, 1)).clone();
    assert_eq!(up["max_uses"], 5, "clamped: {up}");
    let url = down["url"].as_str().unwrap().to_string();
    for _ in 0..2 {
        assert_eq!(s.get(&url).await.bytes().await.unwrap(), &b"twice"[..]);
        s.settled_state(&url).await;
    }
    let report = over_http(
        &py,
        &s,
        API_TOKEN,
        json!([{"tool": "get_link_status", "args": {"url": url}}]),
    );
    let status = structured(ok(&report, 0)).clone();
    assert_eq!(status["state"], "used", "{status}");
    assert_eq!(
        (status["uses"].as_u64(), status["max_uses"].as_u64()),
        (Some(2), Some(2))
    );
}
