//! The one outbound HTTP client: burnlink's calls to a burnlink server (`burnlink revoke`, the
//! stdio MCP server's `get_link_status`, `burnlink get` and `burnlink put`), to the OAuth
//! issuer (its metadata and keys) and to the webhook receiver. Plain HTTP, or HTTPS with
//! rustls on the `ring` provider (no C build), trusting the system's roots plus the PEM file
//! named by `SSL_CERT_FILE`, the usual variable (a private CA, or a self-signed server
//! certificate), or by `--cacert` on `get`/`put`. Redirects are not followed: every caller
//! talks to one URL it was given.
//!
//! Unlike most clients, `SSL_CERT_FILE` adds to the system's roots here instead of replacing
//! them, so pointing it at a test CA does not break public servers.
//!
//! Proxies come from the usual variables (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`,
//! `NO_PROXY`, lower case too, read as curl reads them): HTTPS goes through a `CONNECT`
//! tunnel, plain HTTP is sent to the proxy in absolute form. CI runners behind a corporate
//! proxy have nothing else to reach the server through.
//!
//! Built on hyper with hyper-rustls rather than reqwest: reqwest 0.13 offers `ring` only as
//! `rustls-no-provider`, under which every reqwest client built elsewhere in the process
//! panics unless a provider was installed first.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode, Uri, header};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio_rustls::rustls::{self, RootCertStore};

/// Errors a request body may end with (a file that cannot be read while it uploads).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The request body every call takes: a small fixed body, or a stream (`burnlink put`).
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A body of these bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|e| match e {})
        .boxed_unsync()
}

/// What burnlink's own requests call themselves (`burnlink get`/`put`).
pub const USER_AGENT: &str = concat!("burnlink/", env!("CARGO_PKG_VERSION"));

/// How long opening a connection (TCP and proxy handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Answers larger than this are cut off (API answers are small JSON documents).
const MAX_BODY: usize = 1 << 20;

/// A client for JSON API calls with a bearer token; cheap to clone.
#[derive(Clone)]
pub struct HttpClient {
    inner: HyperClient<hyper_rustls::HttpsConnector<ProxyConnector>, Body>,
    proxies: Arc<Matcher>,
    timeout: Duration,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl HttpClient {
    /// `method` on `url` with `Authorization: Bearer {token}`, the whole exchange within the
    /// client's timeout. Returns the status and the body as JSON (`Null` when it is not
    /// JSON). The error never carries the URL, which may hold a live token.
    pub async fn call(
        &self,
        method: Method,
        url: &str,
        token: &str,
    ) -> Result<(StatusCode, serde_json::Value), String> {
        let request = Request::builder()
            .method(method)
            .uri(url)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::ACCEPT, "application/json")
            .body(full(Bytes::new()))
            .map_err(|_| "not a valid URL".to_string())?;
        let (status, body) = self.exchange(request, MAX_BODY).await?;
        Ok((status, serde_json::from_slice(&body).unwrap_or_default()))
    }

    /// Sends `request` and reads an answer of at most `max_body` bytes, the whole exchange
    /// within the client's timeout. The error names what failed (connecting, TLS, the
    /// timeout, a body too large), never the URL.
    pub async fn exchange(
        &self,
        request: Request<Body>,
        max_body: usize,
    ) -> Result<(StatusCode, Bytes), String> {
        let exchange = async {
            let response = self.send(request).await?;
            let status = response.status();
            let body = http_body_util::Limited::new(response.into_body(), max_body)
                .collect()
                .await
                .map_err(|e| format!("reading the answer failed: {e}"))?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| format!("no answer within {:?}", self.timeout))?
    }
}

impl HttpClient {
    /// Sends one request and returns the answer as soon as its head is in; the body streams.
    /// No overall time limit (a transfer takes as long as it takes): the caller bounds the
    /// wait between bytes. The error never carries the URL.
    pub async fn send(&self, mut request: Request<Body>) -> Result<Response<Incoming>, String> {
        if request.uri().scheme_str() == Some("http")
            && let Some(auth) = self
                .proxies
                .intercept(request.uri())
                .and_then(|i| i.basic_auth().cloned())
        {
            request
                .headers_mut()
                .insert(header::PROXY_AUTHORIZATION, auth);
        }
        self.inner.request(request).await.map_err(|e| describe(&e))
    }
}

/// An error and its causes on one line (a TLS failure sits a few levels down). The hyper
/// client's errors never carry the URL.
pub fn describe(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// A client whose calls each take at most `timeout`. The error names what could not be read.
pub fn client(timeout: Duration) -> Result<HttpClient, String> {
    client_with(timeout, None)
}

/// [`client`], trusting the certificates in `ca_file` too (`--cacert`).
pub fn client_with(timeout: Duration, ca_file: Option<&Path>) -> Result<HttpClient, String> {
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS set-up failed: {e}"))?
    .with_root_certificates(roots(ca_file)?)
    .with_no_client_auth();
    let mut tcp = HttpConnector::new();
    // The scheme is the TLS layer's business (and a tunnel's destination is https).
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let proxies = Arc::new(Matcher::from_env());
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(ProxyConnector {
            tcp,
            proxies: proxies.clone(),
        });
    Ok(HttpClient {
        inner: HyperClient::builder(TokioExecutor::new()).build(connector),
        proxies,
        timeout,
    })
}

/// Opens the TCP connection a request needs: straight to the server, a `CONNECT` tunnel
/// through the proxy for HTTPS, or to the proxy itself for plain HTTP (marked as proxied, so
/// hyper writes the request line in absolute form).
#[derive(Clone)]
pub struct ProxyConnector {
    tcp: HttpConnector,
    proxies: Arc<Matcher>,
}

type Connecting = Pin<Box<dyn Future<Output = Result<ProxiedStream, BoxError>> + Send>>;

impl tower::Service<Uri> for ProxyConnector {
    type Response = ProxiedStream;
    type Error = BoxError;
    type Future = Connecting;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.tcp.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let mut tcp = self.tcp.clone();
        let intercept = self.proxies.intercept(&dst);
        Box::pin(async move {
            let Some(proxy) = intercept else {
                let io = tcp.call(dst).await?;
                return Ok(ProxiedStream { io, proxied: false });
            };
            if dst.scheme_str() == Some("https") {
                let mut tunnel = Tunnel::new(proxy.uri().clone(), tcp);
                if let Some(auth) = proxy.basic_auth() {
                    tunnel = tunnel.with_auth(auth.clone());
                }
                let io = tunnel
                    .call(dst)
                    .await
                    .map_err(|e| format!("proxy tunnel: {e}"))?;
                Ok(ProxiedStream { io, proxied: false })
            } else {
                let io = tcp.call(proxy.uri().clone()).await?;
                Ok(ProxiedStream { io, proxied: true })
            }
        })
    }
}

/// A TCP stream that knows whether it leads to a plain-HTTP proxy.
pub struct ProxiedStream {
    io: TokioIo<tokio::net::TcpStream>,
    proxied: bool,
}

impl Connection for ProxiedStream {
    fn connected(&self) -> Connected {
        self.io.connected().proxy(self.proxied)
    }
}

impl hyper::rt::Read for ProxiedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for ProxiedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Where distributions keep the system's CA bundle (read when `SSL_CERT_FILE` hides it from
/// the platform loader).
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// The roots outbound TLS clients trust (the bucket's too, `crate::storage`), plus the
/// certificates in `ca_file` (`--cacert`).
pub fn roots(ca_file: Option<&Path>) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    if let Some(file) = ca_file {
        let extra = pem_certificates(file)
            .map_err(|e| format!("--cacert: cannot read `{}`: {e}", file.display()))?;
        if extra.is_empty() {
            return Err(format!(
                "--cacert: `{}` holds no PEM certificate",
                file.display()
            ));
        }
        roots.add_parsable_certificates(extra);
    }
    match std::env::var_os("SSL_CERT_FILE").filter(|f| !f.is_empty()) {
        None => {
            // Errors here (an unreadable directory) leave whatever did load.
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        }
        Some(file) => {
            let file = Path::new(&file);
            let extra = pem_certificates(file)
                .map_err(|e| format!("SSL_CERT_FILE: cannot read `{}`: {e}", file.display()))?;
            if extra.is_empty() {
                return Err(format!(
                    "SSL_CERT_FILE: `{}` holds no PEM certificate",
                    file.display()
                ));
            }
            roots.add_parsable_certificates(extra);
            if let Some(bundle) = SYSTEM_BUNDLES.iter().map(Path::new).find(|p| p.is_file()) {
                roots.add_parsable_certificates(pem_certificates(bundle).unwrap_or_default());
            }
        }
    }
    Ok(roots)
}

fn pem_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_file_iter(path)
        .map_err(|e| e.to_string())?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())
}
