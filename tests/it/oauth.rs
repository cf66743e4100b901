//! OAuth 2.1 for remote MCP clients and `/api/*`: burnlink as a resource server for a real
//! authorization server (node-oidc-provider on loopback), with its RFC 9728 metadata, bearer
//! challenges, scopes and session claim; the official Python MCP SDK calling the tools with
//! the issued tokens (and getting one itself through discovery); and forged or foreign tokens
//! refused with 401.

use base64ct::{Base64UrlUnpadded, Encoding};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::mcp::{curl_get, ok, over_http, python, run_client, run_script, structured, tool_error};
use crate::support::oidc::OidcProvider;
use crate::support::*;

const ALL_SCOPES: &str = "links:download links:upload links:read links:revoke";

/// A provider and a burnlink server that trusts it; `None` when a tool is missing.
fn start() -> Option<(OidcProvider, Server)> {
    let provider = OidcProvider::start()?;
    let server = Server::start_with(&[("BURNLINK_OAUTH_ISSUER", &provider.issuer)]);
    Some((provider, server))
}

/// burnlink's resource identifier: by default its MCP endpoint.
fn resource(s: &Server) -> String {
    format!("{}/mcp", s.base)
}

fn metadata_url(s: &Server) -> String {
    format!("{}/.well-known/oauth-protected-resource/mcp", s.base)
}

fn www_authenticate(r: &reqwest::Response) -> String {
    r.headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// `POST /api/links` for `path` (download unless `direction` says otherwise).
async fn mint_with(s: &Server, token: &str, body: Value) -> reqwest::Response {
    s.client
        .post(format!("{}/api/links", s.base))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// An MCP `initialize` over HTTP with `token`; returns the response.
async fn mcp_initialize(s: &Server, token: &str) -> reqwest::Response {
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "test", "version": "1"}}});
    s.client
        .post(format!("{}/mcp", s.base))
        .header("Accept", "application/json, text/event-stream")
        .bearer_auth(token)
        .json(&init)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_resource_publishes_its_metadata_and_points_at_it_from_every_challenge() {
    let Some((provider, s)) = start() else { return };
    // RFC 9728 §3.3: each document names the resource whose URL it is found under.
    for (path, named) in [
        ("/.well-known/oauth-protected-resource", s.base.clone()),
        ("/.well-known/oauth-protected-resource/mcp", resource(&s)),
    ] {
        let r = s.get(&format!("{}{path}", s.base)).await;
        assert_eq!(r.status(), 200, "{path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["resource"], named, "{v}");
        assert_eq!(v["authorization_servers"], json!([provider.issuer]));
        assert_eq!(
            v["scopes_supported"],
            json!([
                "links:download",
                "links:upload",
                "links:read",
                "links:revoke"
            ])
        );
        assert_eq!(v["bearer_methods_supported"], json!(["header"]));
    }

    // No token, or a wrong one: 401 with the pointer to the metadata, on /mcp and /api/*.
    let expected = format!(r#"Bearer resource_metadata="{}""#, metadata_url(&s));
    for token in [None, Some("wrong-token"), Some("a.b.c")] {
        let mut req = s
            .client
            .post(format!("{}/mcp", s.base))
            .header("Accept", "application/json, text/event-stream")
            .json(&json!({}));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401);
        assert_eq!(www_authenticate(&r), expected);
        let r = s
            .api(reqwest::Method::GET, "/api/download/stats", token)
            .await;
        assert_eq!(r.status(), 401);
        assert_eq!(www_authenticate(&r), expected);
        assert_eq!(error_code(r).await, (401, "unauthorized".to_string()));
    }

    // Without OAuth there is no metadata and the challenge is plain.
    let plain = Server::start();
    let r = plain
        .get(&format!(
            "{}/.well-known/oauth-protected-resource",
            plain.base
        ))
        .await;
    assert_eq!(r.status(), 404);
    let r = plain
        .api(reqwest::Method::GET, "/api/download/stats", None)
        .await;
    assert_eq!(www_authenticate(&r), "Bearer");
}

#[tokio::test]
async fn access_tokens_act_within_their_scopes_and_session() {
    let Some((provider, s)) = start() else { return };
    s.write("doc.txt", b"root");
    s.write("s1/doc.txt", b"session one");
    let res = resource(&s);

    // Every scope: mint, ask, revoke, as a static token would.
    let agent = provider.token("agent", Some(ALL_SCOPES), &res).await;
    let r = mint_with(&s, &agent, json!({"path": "doc.txt"})).await;
    assert_eq!(r.status(), 201);
    let url = r.json::<Value>().await.unwrap()["url"]
        .as_str()
        .unwrap()
        .to_string();
    let r = s.link_api(reqwest::Method::GET, &url, Some(&agent)).await;
    assert_eq!(r.status(), 200);
    let r = s
        .link_api(reqwest::Method::DELETE, &url, Some(&agent))
        .await;
    assert_eq!(r.status(), 200);

    // links:read only: asks, never mints or revokes; each refusal names the missing scope.
    let reader = provider.token("reader", Some("links:read"), &res).await;
    let url = s.mint("doc.txt").await;
    let r = mint_with(&s, &reader, json!({"path": "doc.txt"})).await;
    let challenge = www_authenticate(&r);
    assert_eq!(error_code(r).await, (403, "forbidden".to_string()));
    assert_eq!(
        challenge,
        format!(
            r#"Bearer error="insufficient_scope", scope="links:download", resource_metadata="{}""#,
            metadata_url(&s)
        )
    );
    let r = s.link_api(reqwest::Method::GET, &url, Some(&reader)).await;
    assert_eq!(r.status(), 200);
    let r = s
        .api(reqwest::Method::GET, "/api/download/stats", Some(&reader))
        .await;
    assert_eq!(r.status(), 200);
    let r = s
        .link_api(reqwest::Method::DELETE, &url, Some(&reader))
        .await;
    assert!(www_authenticate(&r).contains(r#"scope="links:revoke""#));
    assert_eq!(r.status(), 403);
    let r = s
        .client
        .post(format!("{}/api/download/generate", s.base))
        .bearer_auth(&reader)
        .json(&json!({"file_path": "doc.txt"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // A token narrowed to links:download mints downloads, not uploads.
    let downloader = provider.token("agent", Some("links:download"), &res).await;
    let r = mint_with(
        &s,
        &downloader,
        json!({"path": "in/x.bin", "direction": "upload"}),
    )
    .await;
    assert!(www_authenticate(&r).contains(r#"scope="links:upload""#));
    assert_eq!(r.status(), 403);
    let r = mint_with(&s, &downloader, json!({"path": "doc.txt"})).await;
    assert_eq!(r.status(), 201);
    let r = s
        .link_api(reqwest::Method::GET, &url, Some(&downloader))
        .await;
    assert_eq!(r.status(), 403);

    // burnlink_session pins the token like `tok@session`.
    let pinned = provider.token("pinned", Some(ALL_SCOPES), &res).await;
    let r = mint_with(&s, &pinned, json!({"path": "doc.txt", "session": "s2"})).await;
    assert_eq!(error_code(r).await, (403, "forbidden".to_string()));
    let r = mint_with(&s, &pinned, json!({"path": "doc.txt"})).await;
    assert_eq!(r.status(), 201);
    let url = r.json::<Value>().await.unwrap()["url"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(s.get(&url).await.text().await.unwrap(), "session one");

    // Static tokens keep working beside OAuth, with every scope.
    let r = mint_with(&s, API_TOKEN, json!({"path": "doc.txt"})).await;
    assert_eq!(r.status(), 201);
}

/// Header and claims as base64url JSON, and a signature part as given.
fn hand_built(header: Value, claims: &Value, signature: &str) -> String {
    let enc = |v: &Value| Base64UrlUnpadded::encode_string(v.to_string().as_bytes());
    format!("{}.{}.{signature}", enc(&header), enc(claims))
}

fn signed(provider: &OidcProvider, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.into());
    header.typ = Some("at+jwt".into());
    let key = EncodingKey::from_rsa_der(&provider.private_key_der());
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

#[tokio::test]
async fn forged_expired_and_foreign_tokens_are_refused_with_401() {
    let Some((provider, s)) = start() else { return };
    s.write("doc.txt", b"root");
    let res = resource(&s);
    let now = now() as i64;
    let claims = json!({
        "iss": provider.issuer, "aud": res, "sub": "agent", "client_id": "agent",
        "iat": now, "exp": now + 300,
        "scope": "links:download links:upload links:read links:revoke",
    });
    let with = |patch: Value| {
        let mut c = claims.clone();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    let kid = &provider.kid();

    // The control: a token forged with the provider's own key and every claim right passes,
    // so each refusal below is down to the one thing changed.
    let control = signed(&provider, kid, &claims);
    assert_eq!(
        mint_with(&s, &control, json!({"path": "doc.txt"}))
            .await
            .status(),
        201
    );

    // Clocks differ a little between the issuer and the resource server: 30 s of leeway on
    // `exp` and `nbf`, no more (the cases below refuse 60 s).
    for (what, patch) in [
        (
            "expired 10 s ago",
            json!({"iat": now - 900, "exp": now - 10}),
        ),
        ("valid in 10 s", json!({"nbf": now + 10})),
    ] {
        let token = signed(&provider, kid, &with(patch));
        let r = mint_with(&s, &token, json!({"path": "doc.txt"})).await;
        assert_eq!(r.status(), 201, "{what}: within the leeway");
    }

    let real = provider.token("agent", Some(ALL_SCOPES), &res).await;
    let (h, rest) = real.split_once('.').unwrap();
    let (payload, sig) = rest.split_once('.').unwrap();
    let mut body: Value =
        serde_json::from_slice(&Base64UrlUnpadded::decode_vec(payload).unwrap()).unwrap();
    body["burnlink_session"] = json!("someone-else");
    let tampered = format!(
        "{h}.{}.{sig}",
        Base64UrlUnpadded::encode_string(body.to_string().as_bytes())
    );
    let mut hs256 = Header::new(Algorithm::HS256);
    hs256.kid = Some(kid.into());
    let key_confusion = jsonwebtoken::encode(
        &hs256,
        &claims,
        &EncodingKey::from_secret(&provider.public_key_pem()).unwrap(),
    )
    .unwrap();
    let other_audience = provider
        .token("agent", Some(ALL_SCOPES), "http://files.example.net/mcp")
        .await;

    let cases: Vec<(&str, String)> = vec![
        (
            "expired",
            signed(
                &provider,
                kid,
                &with(json!({"iat": now - 900, "exp": now - 300})),
            ),
        ),
        (
            "expired 60 s ago, past the leeway",
            signed(
                &provider,
                kid,
                &with(json!({"iat": now - 900, "exp": now - 60})),
            ),
        ),
        (
            "not yet valid",
            signed(&provider, kid, &with(json!({"nbf": now + 600}))),
        ),
        (
            "valid only in 60 s, past the leeway",
            signed(&provider, kid, &with(json!({"nbf": now + 60}))),
        ),
        (
            "wrong issuer",
            signed(
                &provider,
                kid,
                &with(json!({"iss": "http://127.0.0.1:9/other-issuer"})),
            ),
        ),
        (
            "wrong audience (forged)",
            signed(
                &provider,
                kid,
                &with(json!({"aud": "http://files.example.net/mcp"})),
            ),
        ),
        ("wrong audience (issued)", other_audience),
        (
            "no audience",
            signed(&provider, kid, &with(json!({"aud": null}))),
        ),
        (
            "no expiry",
            signed(&provider, kid, &with(json!({"exp": null}))),
        ),
        (
            "unsigned (alg none)",
            hand_built(json!({"alg": "none", "typ": "JWT"}), &claims, ""),
        ),
        (
            "unsigned (alg none, kid)",
            hand_built(json!({"alg": "none", "kid": kid}), &claims, ""),
        ),
        (
            "key confusion (HS256 keyed with the public key)",
            key_confusion,
        ),
        ("tampered payload", tampered),
        (
            "unknown key id",
            signed(&provider, "not-published", &claims),
        ),
        (
            "bad session claim",
            signed(
                &provider,
                kid,
                &with(json!({"burnlink_session": "../escape"})),
            ),
        ),
        (
            "garbage",
            "eyJhbGciOiJSUzI1NiJ9.e30.c2lnbmF0dXJl".to_string(),
        ),
    ];
    let challenge = format!(r#"Bearer resource_metadata="{}""#, metadata_url(&s));
    for (what, token) in &cases {
        let r = mint_with(&s, token, json!({"path": "doc.txt"})).await;
        assert_eq!(www_authenticate(&r), challenge, "{what}");
        assert_eq!(
            error_code(r).await,
            (401, "unauthorized".to_string()),
            "{what}"
        );
        let r = mcp_initialize(&s, token).await;
        assert_eq!(www_authenticate(&r), challenge, "{what} on /mcp");
        assert_eq!(r.status(), 401, "{what} on /mcp");
    }
    // The real token itself is fine.
    assert_eq!(mcp_initialize(&s, &real).await.status(), 200);
    assert!(!s.log().contains(&real), "tokens are never logged");
}

/// A token for the resource the root document names (the base URL) is accepted too; one for
/// another server is not.
#[tokio::test]
async fn tokens_for_the_root_resource_are_accepted() {
    let Some((provider, s)) = start() else { return };
    s.write("doc.txt", b"root");
    let root = provider.token("agent", Some(ALL_SCOPES), &s.base).await;
    let r = mint_with(&s, &root, json!({"path": "doc.txt"})).await;
    assert_eq!(r.status(), 201);
    let elsewhere = provider
        .token("agent", Some(ALL_SCOPES), "https://files.example.com")
        .await;
    let r = mint_with(&s, &elsewhere, json!({"path": "doc.txt"})).await;
    assert_eq!(r.status(), 401);
}

/// A real issuer is served over HTTPS and rotates its keys: burnlink fetches its metadata and
/// keys over TLS (trusting the test CA through `SSL_CERT_FILE`, beside the system's roots),
/// and a token signed with a key it has not seen yet refetches the keys, at most once per
/// refetch interval; tokens signed with the earlier key keep working.
#[tokio::test]
async fn an_https_issuer_is_trusted_through_its_ca_and_its_key_rotation_is_followed() {
    let Some(certs) = crate::support::redis_modes::Certs::make("oauth-https") else {
        return;
    };
    let Some(mut provider) = OidcProvider::start_tls(Some(&certs)) else {
        return;
    };
    assert!(
        provider.issuer.starts_with("https://"),
        "{}",
        provider.issuer
    );
    let ca = certs.ca.display().to_string();
    let s = Server::start_with(&[
        ("BURNLINK_OAUTH_ISSUER", &provider.issuer),
        ("SSL_CERT_FILE", &ca),
    ]);
    s.write("doc.txt", b"root");
    let res = resource(&s);
    let first = provider.token("agent", Some(ALL_SCOPES), &res).await;
    let r = mint_with(&s, &first, json!({"path": "doc.txt"})).await;
    assert_eq!(r.status(), 201, "{}", s.log());
    let fetched_at = std::time::Instant::now();

    provider.rotate();
    assert_eq!(provider.kid(), "test-key-2");
    let second = provider.token("agent", Some(ALL_SCOPES), &res).await;
    // The new key id is unknown to the cache; the keys were fetched moments ago, so it is
    // refused until the refetch interval (10 s) has passed, then fetched and accepted.
    let r = mint_with(&s, &second, json!({"path": "doc.txt"})).await;
    assert_eq!(r.status(), 401);
    let wait = burnlink::oauth::REFETCH_INTERVAL.saturating_sub(fetched_at.elapsed());
    tokio::time::sleep(wait + std::time::Duration::from_millis(200)).await;
    let r = mint_with(&s, &second, json!({"path": "doc.txt"})).await;
    assert_eq!(r.status(), 201, "{}", s.log());
    // The earlier key is still published: its token still works.
    let r = mint_with(&s, &first, json!({"path": "doc.txt"})).await;
    assert_eq!(r.status(), 201);
    assert_eq!(
        s.log()
            .matches("fetched the authorization server's keys")
            .count(),
        2,
        "{}",
        s.log()
    );

    // The same issuer without its CA trusted: no keys, so no token can be checked (503,
    // fail closed), while the static API tokens keep working.
    let untrusted = Server::start_with(&[("BURNLINK_OAUTH_ISSUER", &provider.issuer)]);
    untrusted.write("doc.txt", b"root");
    let r = mint_with(&untrusted, &second, json!({"path": "doc.txt"})).await;
    assert_eq!(r.status(), 503);
    assert!(
        untrusted
            .log()
            .contains("cannot fetch the authorization server's keys"),
        "{}",
        untrusted.log()
    );
    untrusted.mint("doc.txt").await;
}

#[tokio::test]
async fn the_python_sdk_calls_the_tools_with_issued_tokens() {
    let Some(py) = python() else { return };
    let Some((provider, s)) = start() else { return };
    s.write("reports/q3.txt", b"numbers");
    let res = resource(&s);

    let agent = provider.token("agent", Some(ALL_SCOPES), &res).await;
    let report = over_http(
        &py,
        &s,
        &agent,
        json!([
            {"tool": "create_download_link", "args": {"path": "reports/q3.txt"}},
            {"tool": "create_upload_link", "args": {"path": "in/a.txt"}},
            {"tool": "list_download_stats"},
        ]),
    );
    let url = structured(ok(&report, 0))["url"]
        .as_str()
        .unwrap()
        .to_string();
    ok(&report, 1);
    ok(&report, 2);
    let out = s.dir.path().join("q3.txt");
    curl_get(&url, &out);
    assert_eq!(std::fs::read(&out).unwrap(), b"numbers");

    // links:read: the read-only tools work; minting is a tool error naming the scope.
    let reader = provider.token("reader", Some("links:read"), &res).await;
    let report = over_http(
        &py,
        &s,
        &reader,
        json!([
            {"tool": "create_download_link", "args": {"path": "reports/q3.txt"}},
            {"tool": "create_upload_link", "args": {"path": "in/b.txt"}},
            {"tool": "generate_download_link", "args": {"path": "reports/q3.txt"}},
            {"tool": "get_link_status", "args": {"url": url}},
            {"tool": "list_download_stats"},
        ]),
    );
    for (i, scope) in [
        (0, "links:download"),
        (1, "links:upload"),
        (2, "links:download"),
    ] {
        let e = tool_error(&report, i);
        assert!(e.starts_with("forbidden:") && e.contains(scope), "{e}");
    }
    assert_eq!(structured(ok(&report, 3))["state"], "used");
    // The agent's download and upload links, both at the root.
    assert_eq!(structured(ok(&report, 4))["statistics"]["total_tokens"], 2);
}

#[tokio::test]
async fn the_python_sdk_finds_the_issuer_and_gets_its_own_token() {
    let Some(py) = python() else { return };
    let Some((provider, s)) = start() else { return };
    s.write("out/build.tar", b"artifact");
    let url = resource(&s);
    // The SDK's client-credentials OAuth client: a 401 names the metadata, the metadata names
    // the issuer, the issuer's discovery document names the token endpoint, and the token is
    // asked for this resource.
    let report = run_client(
        &py,
        &["oauth", &url, &provider.issuer, "agent", "agent-secret"],
        &[],
        json!([
            {"tool": "create_download_link", "args": {"path": "out/build.tar"}},
            {"tool": "create_upload_link", "args": {"path": "in/c.txt"}},
        ]),
    );
    let link = structured(ok(&report, 0))["url"]
        .as_str()
        .unwrap()
        .to_string();
    let out = s.dir.path().join("build.tar");
    curl_get(&link, &out);
    assert_eq!(std::fs::read(&out).unwrap(), b"artifact");
    // Asked for no particular scope, the SDK asks for those the metadata lists.
    ok(&report, 1);
}

#[tokio::test]
async fn the_python_sdk_2_calls_the_tools_with_issued_tokens_in_both_revisions() {
    let Some(py) = require_tool(MCP2_PYTHON) else {
        return;
    };
    let Some((provider, s)) = start() else { return };
    s.write("doc.txt", b"two");
    let res = resource(&s);
    let agent = provider.token("agent", Some(ALL_SCOPES), &res).await;
    let reader = provider.token("reader", Some("links:read"), &res).await;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/mcp_client2.py");
    let url = resource(&s);
    for (mode, protocol) in [("2026-07-28", "2026-07-28"), ("legacy", "2025-11-25")] {
        let report = run_script(
            &py,
            &script,
            &[mode, &url, &agent],
            &[],
            json!([
                {"tool": "create_download_link", "args": {"path": "doc.txt"}},
                {"tool": "create_upload_link", "args": {"path": "in/d.txt"}},
                {"tool": "list_download_stats"},
            ]),
        );
        assert_eq!(report["protocol"], protocol);
        for i in 0..3 {
            assert_eq!(ok(&report, i)["schemaErrors"], json!([]), "{mode} call {i}");
        }
    }
    // links:read only, over the stateless revision: minting is a tool error naming the scope.
    let report = run_script(
        &py,
        &script,
        &["2026-07-28", &url, &reader],
        &[],
        json!([{"tool": "create_download_link", "args": {"path": "doc.txt"}}]),
    );
    let e = tool_error(&report, 0);
    assert!(
        e.starts_with("forbidden:") && e.contains("links:download"),
        "{e}"
    );
}
