//! The five MCP tools. Each one is a thin front on what the HTTP API does: decide the session,
//! build a [`MintRequest`], mint through the backend, and word the result for a model.

use std::net::IpAddr;
use std::sync::Arc;

use axum::http::request::Parts;
use rmcp::handler::server::common::{FromContextPart, schema_for_output, schema_for_type};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::model::{
    CallToolResult, ContentBlock, Implementation, ListPromptsRequestMethod, ListPromptsResult,
    ListResourceTemplatesRequestMethod, ListResourceTemplatesResult, ListResourcesRequestMethod,
    ListResourcesResult, PaginatedRequestParams, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use serde::de::DeserializeOwned;

use super::RemoteCaller;
use super::backend::{Backend, BackendError};
use super::reply;
use super::types::*;
use crate::access::Caller;
use crate::links::{
    Limits, LinkStatus, MintRequest, Minted, ServiceError, expiry_seconds, parse_sha256_hex,
};
use crate::session::SessionId;
use crate::token::Direction;

/// The MCP server: one per `/mcp` request (cheap: two `Arc`s) or one per stdio process.
#[derive(Clone)]
pub struct BurnlinkMcp {
    backend: Arc<Backend>,
    tool_router: Arc<ToolRouter<Self>>,
}

/// Tool arguments, or why they could not be read. Bad arguments are the model's to fix, so
/// they come back as a tool error it can read, not as a protocol error it never sees.
pub struct Args<T>(Result<T, String>);

impl<S, T: DeserializeOwned> FromContextPart<ToolCallContext<'_, S>> for Args<T> {
    fn from_context_part(context: &mut ToolCallContext<'_, S>) -> Result<Self, ErrorData> {
        let arguments = context.arguments.take().unwrap_or_default();
        Ok(Args(
            serde_json::from_value(serde_json::Value::Object(arguments))
                .map_err(|e| format!("bad_request: invalid arguments: {e}")),
        ))
    }
}

macro_rules! args {
    ($args:expr) => {
        match $args.0 {
            Ok(a) => a,
            Err(message) => return reply::error(message),
        }
    };
}

impl BurnlinkMcp {
    pub fn new(backend: Backend) -> Self {
        let backend = Arc::new(backend);
        let mut router = Self::tool_router();
        if !backend.offers_status() {
            router.remove_route("get_link_status");
        }
        let router = with_limits(router, backend.links().limits());
        BurnlinkMcp {
            backend,
            tool_router: Arc::new(router),
        }
    }

    /// Who is calling, and from where. Over HTTP the bearer middleware put the [`Caller`]
    /// (with its pinned session and scopes) into the request; a request without one is
    /// refused, which cannot happen behind that middleware but fails closed if it ever did. On
    /// stdio the process holds the key itself, so the caller is unpinned with every scope.
    fn caller(&self, ctx: &RequestContext<RoleServer>) -> Result<(Caller, Option<IpAddr>), String> {
        let Some(parts) = ctx.extensions.get::<Parts>() else {
            return Ok((Caller::with_all_scopes(None), None));
        };
        parts
            .extensions
            .get::<RemoteCaller>()
            .map(|r| (r.caller.clone(), Some(r.client)))
            .ok_or_else(|| "unauthorized: missing or invalid bearer token".to_string())
    }

    fn session(&self, caller: &Caller, asked: Option<&str>) -> Result<Option<SessionId>, String> {
        caller
            .session_for(asked)
            .map_err(|e| reply::explain(&e.into(), self.backend.as_ref(), None))
    }

    async fn mint(
        &self,
        ctx: &RequestContext<RoleServer>,
        asked_session: Option<&str>,
        build: impl FnOnce(Option<SessionId>) -> Result<MintRequest, ServiceError>,
    ) -> Result<(Minted, Option<SessionId>), String> {
        let (caller, client) = self.caller(ctx)?;
        let session = self.session(&caller, asked_session)?;
        let request = build(session.clone())
            .map_err(|e| reply::explain(&e, &self.backend, session.as_ref()))?;
        let minted = self
            .backend
            .mint(&caller, request, client)
            .await
            .map_err(|e| reply::explain(&e, &self.backend, session.as_ref()))?;
        Ok((minted, session))
    }
}

#[tool_router]
impl BurnlinkMcp {
    #[tool(
        description = "Create a one-time download link for a file in the burnlink sandbox, so a \
            person or a job can fetch the file without its bytes passing through this \
            conversation. The URL works exactly once (it is used up when a download completes) \
            and expires after ttl_seconds. Give the URL to the person or job exactly as it is \
            returned; do not open, fetch, shorten or alter it yourself, since fetching it uses \
            it up. Returns url, path, kind, size, expires_at and expires_in_seconds (the \
            lifetime in force; `note` says when a value was clamped). Fails if the path is \
            outside the sandbox, does not exist, or the file is over the download ceiling.",
        title = "Create a one-time download link",
        input_schema = schema_for_type::<CreateDownloadArgs>(),
        output_schema = schema_for_output::<DownloadLink>(),
        annotations(
            title = "Create a one-time download link",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn create_download_link(
        &self,
        args: Args<CreateDownloadArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        let a = args!(args);
        let limits = self.backend.links().limits().clone();
        let result = self
            .mint(&ctx, a.session.as_deref(), |session| {
                Ok(MintRequest {
                    path: a.path,
                    direction: Some(Direction::Download),
                    ttl_seconds: a.ttl_seconds,
                    session,
                    max_uses: a.max_uses,
                    ..MintRequest::default()
                })
            })
            .await;
        let (minted, _) = match result {
            Ok(m) => m,
            Err(message) => return reply::error(message),
        };
        let out = DownloadLink {
            note: ttl_note(a.ttl_seconds, &limits),
            url: minted.url.clone(),
            path: minted.path.clone(),
            kind: minted.kind.to_string(),
            size: minted.size,
            expires_at: minted.expires_at.clone(),
            expires_in_seconds: minted.expires_in_seconds,
            max_uses: minted.max_uses,
        };
        reply::link(&out, &minted, "Download once")
    }

    #[tool(
        description = "Create a one-time upload link: a URL a person or a job uses to put one \
            file into the burnlink sandbox at `path`, without the bytes passing through this \
            conversation. A job uploads the raw bytes with `curl --data-binary @FILE URL` (POST \
            or PUT, never a multipart form); a person opens the URL in a browser and picks the \
            file. The URL works for one successful upload and expires after ttl_seconds. Give \
            it to the person or job exactly as it is returned; do not use it yourself. Limit \
            the size with max_bytes and pin the content with sha256 when you know them. \
            Returns url, path, expires_at, expires_in_seconds and max_bytes (the values in \
            force; `note` says when one was clamped). Use get_link_status later to learn \
            whether the file has arrived.",
        title = "Create a one-time upload link",
        input_schema = schema_for_type::<CreateUploadArgs>(),
        output_schema = schema_for_output::<UploadLink>(),
        annotations(
            title = "Create a one-time upload link",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn create_upload_link(
        &self,
        args: Args<CreateUploadArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        let a = args!(args);
        let limits = self.backend.links().limits().clone();
        let notes: Vec<String> = [
            ttl_note(a.ttl_seconds, &limits),
            a.max_bytes
                .filter(|m| *m > limits.max_upload_bytes)
                .map(|m| {
                    format!(
                        "max_bytes {m} is above this server's upload ceiling; {} is in force",
                        limits.max_upload_bytes
                    )
                }),
        ]
        .into_iter()
        .flatten()
        .collect();
        let result = self
            .mint(&ctx, a.session.as_deref(), |session| {
                Ok(MintRequest {
                    path: a.path,
                    direction: Some(Direction::Upload),
                    ttl_seconds: a.ttl_seconds,
                    session,
                    max_bytes: a.max_bytes,
                    sha256: a.sha256.as_deref().map(parse_sha256_hex).transpose()?,
                    overwrite: a.overwrite,
                    ip: None,
                    max_uses: a.max_uses,
                })
            })
            .await;
        let (minted, _) = match result {
            Ok(m) => m,
            Err(message) => return reply::error(message),
        };
        let out = UploadLink {
            url: minted.url.clone(),
            path: minted.path.clone(),
            expires_at: minted.expires_at.clone(),
            expires_in_seconds: minted.expires_in_seconds,
            max_bytes: minted.max_bytes.unwrap_or(limits.max_upload_bytes),
            max_uses: minted.max_uses,
            note: (!notes.is_empty()).then(|| notes.join("; ")),
        };
        reply::link(&out, &minted, "Upload once")
    }

    #[tool(
        description = "Create a one-time download link and return only its URL, as plain text \
            (the older burnlink tool; create_download_link gives more detail). The link \
            expires after expiry_minutes (default 5, at most 60) and works exactly once: give \
            the URL to the person or job exactly as it is, and do not fetch it yourself.",
        title = "Generate a download link (URL only)",
        input_schema = schema_for_type::<GenerateArgs>(),
        annotations(
            title = "Generate a download link (URL only)",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn generate_download_link(
        &self,
        args: Args<GenerateArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        let a = args!(args);
        let result = self
            .mint(&ctx, a.session.as_deref(), |session| {
                Ok(MintRequest {
                    path: a.path,
                    direction: Some(Direction::Download),
                    ttl_seconds: Some(expiry_seconds(a.expiry_minutes)?),
                    session,
                    ..MintRequest::default()
                })
            })
            .await;
        match result {
            Ok((minted, _)) => CallToolResult::success(vec![ContentBlock::text(minted.url)]),
            Err(message) => reply::error(message),
        }
    }

    #[tool(
        description = "Report how many links were minted in this sandbox session and how many \
            of them are still active, used (transferred) or expired. Returns session_id (null \
            for the root sandbox), working_directory (the sandbox link paths are relative to: `/` \
            for the root sandbox, `/SESSION` for a session's) and statistics.",
        title = "Link statistics of a session",
        input_schema = schema_for_type::<StatsArgs>(),
        output_schema = schema_for_output::<SessionStats>(),
        annotations(
            title = "Link statistics of a session",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn list_download_stats(
        &self,
        args: Args<StatsArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        let a = args!(args);
        let session = match self
            .caller(&ctx)
            .and_then(|(caller, _)| Ok((self.session(&caller, a.session.as_deref())?, caller)))
        {
            Ok(s) => s,
            Err(message) => return reply::error(message),
        };
        let (session, caller) = session;
        match self.backend.stats(&caller, session.as_ref()).await {
            Ok(statistics) => reply::structured(&SessionStats {
                session_id: session.as_ref().map(|s| s.as_str().to_string()),
                working_directory: reply::sandbox_label(session.as_ref()),
                statistics: statistics.into(),
            }),
            Err(e) => reply::error(reply::explain(&e, &self.backend, session.as_ref())),
        }
    }

    #[tool(
        description = "Ask whether a link minted earlier has been used: state is unused, \
            in_progress, used (the person or job has downloaded or uploaded the file), revoked \
            or expired; an upload link in place also reports bytes and sha256. Pass the link's \
            url (or its token). Asking does not use the link up.",
        title = "Status of a link",
        input_schema = schema_for_type::<StatusArgs>(),
        output_schema = schema_for_output::<LinkStatus>(),
        annotations(
            title = "Status of a link",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn get_link_status(
        &self,
        args: Args<StatusArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        let a = args!(args);
        let Some(link) = a.url.or(a.token).filter(|s| !s.trim().is_empty()) else {
            return reply::error("bad_request: pass the link's `url` (or its `token`)".into());
        };
        let caller = match self.caller(&ctx) {
            Ok((caller, _)) => caller,
            Err(message) => return reply::error(message),
        };
        match self.backend.status(&caller, &link).await {
            Ok(v) => reply::structured(&v),
            Err(BackendError::Service(e)) => reply::error(reply::explain(&e, &self.backend, None)),
            Err(BackendError::Remote(r)) => reply::error(format!("{}: {}", r.code, r.message)),
        }
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for BurnlinkMcp {
    fn get_info(&self) -> ServerConfig {
        let limits = self.backend.links().limits().clone();
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("burnlink", env!("CARGO_PKG_VERSION")))
            .with_instructions(format!(
                "burnlink hands files to people and jobs through one-time, expiring URLs, so \
                 file contents never pass through this conversation. Use create_download_link \
                 to share a file from the sandbox and create_upload_link to receive one; give \
                 the returned URL to the person or job exactly as it is and never open it \
                 yourself (opening it uses it up). Use get_link_status to learn whether it has \
                 been used. Paths are relative to the sandbox. Limits here: default lifetime \
                 {} s, maximum {} s; downloads up to {} bytes; uploads up to {} bytes.",
                limits.ttl_default,
                limits.ttl_max,
                limits.max_download_bytes,
                limits.max_upload_bytes
            ))
    }

    // No prompts or resources: say so with "method not found" (404 over the stateless HTTP
    // revision), as the capabilities above do, instead of rmcp's default empty lists, which
    // tell a client the feature exists.
    async fn list_prompts(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        Err(ErrorData::method_not_found::<ListPromptsRequestMethod>())
    }

    async fn list_resources(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        Err(ErrorData::method_not_found::<ListResourcesRequestMethod>())
    }

    async fn list_resource_templates(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Err(ErrorData::method_not_found::<
            ListResourceTemplatesRequestMethod,
        >())
    }
}

/// Appends this server's concrete limits to the tool descriptions, so a model sees the numbers
/// that apply here rather than "the server's maximum".
fn with_limits(router: ToolRouter<BurnlinkMcp>, limits: &Limits) -> ToolRouter<BurnlinkMcp> {
    let mut out = ToolRouter::new();
    for mut route in router {
        let extra = match route.attr.name.as_ref() {
            "create_download_link" => format!(
                " Here: default lifetime {} s, maximum {} s; files up to {} bytes; max_uses \
                 (default 1) up to {}.",
                limits.ttl_default, limits.ttl_max, limits.max_download_bytes, limits.max_uses
            ),
            "create_upload_link" => format!(
                " Here: default lifetime {} s, maximum {} s; uploads up to {} bytes; max_uses \
                 (default 1) up to {}.",
                limits.ttl_default, limits.ttl_max, limits.max_upload_bytes, limits.max_uses
            ),
            _ => String::new(),
        };
        if let Some(d) = route.attr.description.as_mut() {
            d.to_mut().push_str(&extra);
        }
        out.add_route(route);
    }
    out
}

fn ttl_note(asked: Option<i64>, limits: &Limits) -> Option<String> {
    asked
        .filter(|t| *t > 0 && *t as u64 > limits.ttl_max)
        .map(|t| {
            format!(
                "ttl_seconds {t} is above this server's maximum; the link lives {} s",
                limits.ttl_max
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clamped_ttl_is_noted_and_others_are_not() {
        let limits = Limits {
            ttl_default: 3600,
            ttl_max: 600,
            max_download_bytes: 1,
            max_upload_bytes: 1,
            upload_extensions: None,
            max_uses: 100,
        };
        assert!(ttl_note(Some(601), &limits).unwrap().contains("600 s"));
        assert_eq!(ttl_note(Some(600), &limits), None);
        assert_eq!(ttl_note(None, &limits), None);
        // Refused, not clamped: the error says so instead.
        assert_eq!(ttl_note(Some(-5), &limits), None);
    }
}
