//! `/mcp`: the MCP tools over streamable HTTP, behind the same bearer auth as `/api/*`.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::middleware::{self, Next};
use axum::response::IntoResponse;
use axum::response::Response;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};

use crate::access::Caller;
use crate::http::api::read_body;
use crate::http::error::{ApiError, code_for_status};
use crate::http::gate::ClientIp;
use crate::mcp::{Backend, BurnlinkMcp, RemoteCaller};
use crate::state::App;

/// `/mcp`, behind the same bearer auth as `/api/*`.
///
/// Stateless, with plain JSON answers: every tool call stands alone, so any replica behind a
/// load balancer can answer any request with no sticky sessions and no shared session store.
pub fn routes(app: Arc<App>) -> Router<Arc<App>> {
    // The bound port may differ from the configured one (port 0), but hosts are matched
    // without their port, so the configured address gives the right host.
    let (base_url, _) = app.config.resolve_base_url(app.config.bind);
    let hosts = allowed_hosts(app.config.mcp_allowed_hosts.as_deref(), &base_url);
    let mut config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None);
    config = if hosts.iter().any(|h| h == "*") {
        config.disable_allowed_hosts()
    } else {
        config.with_allowed_hosts(hosts)
    };
    let handler = BurnlinkMcp::new(Backend::server(&app));
    let service = StreamableHttpService::new(
        move || Ok(handler.clone()),
        Arc::new(NeverSessionManager::default()),
        config,
    );
    Router::new()
        .route_service("/mcp", service)
        .layer(middleware::map_response(json_errors))
        .layer(middleware::from_fn_with_state(app, bearer))
}

/// rmcp answers its own HTTP-level refusals (a foreign `Host`, a wrong method or `Accept`) in
/// plain text; burnlink's error bodies are JSON `{error, message}` everywhere (`docs/http-api.md`).
/// JSON-RPC answers are JSON already and pass through untouched.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let message = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let code = code_for_status(status);
    parts.headers.remove(CONTENT_LENGTH);
    parts
        .headers
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let body = serde_json::json!({ "error": code, "message": message }).to_string();
    Response::from_parts(parts, Body::from(body))
}

/// Puts the authenticated caller and its address into the request, where the tools find them
/// (with its pinned session) through rmcp's `http::request::Parts`. Without a valid token the
/// answer is the API's JSON 401, before rmcp sees the request.
///
/// The JSON-RPC body is read here, within [`MCP_BODY_LIMIT`] and the idle timeout, before the
/// SDK sees it: no MCP request holds a connection or a buffer for as long as its client likes.
/// It is read before a 401 too: an OAuth client answers the 401 by fetching a token and
/// sending the request again on the same connection, and hyper closes a connection whose
/// request body was left unread (it cannot find where the next request starts), which such a
/// client sees as "server disconnected".
async fn bearer(
    State(app): State<Arc<App>>,
    caller: Result<Caller, ApiError>,
    ClientIp(client): ClientIp,
    req: Request,
    next: Next,
) -> Response {
    let (mut parts, body) = req.into_parts();
    let body = read_body(body, MCP_BODY_LIMIT, app.config.idle_timeout).await;
    let caller = match caller {
        Ok(caller) => caller,
        Err(e) => return e.into_response(),
    };
    let body = match body {
        Ok(bytes) => bytes,
        Err(e) => return e.into_response(),
    };
    parts.extensions.insert(RemoteCaller { caller, client });
    next.run(Request::from_parts(parts, Body::from(body))).await
}

/// The largest MCP request read: a tool call is a few hundred bytes.
const MCP_BODY_LIMIT: usize = 256 * 1024;

/// `BURNLINK_MCP_ALLOWED_HOSTS` as given, else the base URL's host and loopback. A host
/// without a port allows any port (rmcp's rule), so `files.example.com` covers a load balancer
/// on 443 and a direct hit on 8000 alike.
pub fn allowed_hosts(configured: Option<&[String]>, base_url: &str) -> Vec<String> {
    if let Some(list) = configured {
        return list.to_vec();
    }
    let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "::1"]
        .into_iter()
        .map(String::from)
        .collect();
    let authority = base_url
        .split_once("://")
        .map_or(base_url, |(_, rest)| rest)
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default();
    if let Ok(a) = authority.parse::<axum::http::uri::Authority>() {
        let host = a.host().trim_matches(['[', ']']).to_ascii_lowercase();
        if !hosts.contains(&host) {
            hosts.push(host);
        }
    }
    hosts
}

#[cfg(test)]
mod tests {
    use super::allowed_hosts;

    #[test]
    fn default_hosts_are_the_base_url_host_and_loopback() {
        let h = allowed_hosts(None, "https://Files.Example.com:8443/prefix");
        assert_eq!(h, ["localhost", "127.0.0.1", "::1", "files.example.com"]);
        let h = allowed_hosts(None, "http://127.0.0.1:8000");
        assert_eq!(h, ["localhost", "127.0.0.1", "::1"]);
        let h = allowed_hosts(None, "http://[2001:db8::1]:80");
        assert_eq!(h[3], "2001:db8::1");
    }

    #[test]
    fn a_configured_list_replaces_the_default() {
        let given = vec!["mcp.example.com".to_string()];
        assert_eq!(allowed_hosts(Some(&given), "http://127.0.0.1:1"), given);
    }
}
