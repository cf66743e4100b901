//! The one outbound HTTP client: burnlink's calls to a burnlink server (`burnlink revoke`, the
//! stdio MCP server's `get_link_status`), to the OAuth issuer (its metadata and keys) and to
//! the webhook receiver. Plain HTTP, or HTTPS with rustls on the `ring` provider (no C build),
//! trusting the system's roots plus the PEM file named by `SSL_CERT_FILE`, the usual variable
//! (a private CA, or a self-signed server certificate). Redirects are not followed: every
//! caller talks to one configured URL.
//!
//! Unlike most clients, `SSL_CERT_FILE` adds to the system's roots here instead of replacing
//! them, so pointing it at a test CA does not break public servers.
//!
//! Built on hyper with hyper-rustls rather than reqwest: reqwest 0.13 offers `ring` only as
//! `rustls-no-provider`, under which every reqwest client built elsewhere in the process
//! panics unless a provider was installed first.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode, header};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio_rustls::rustls::{self, RootCertStore};

/// Answers larger than this are cut off (API answers are small JSON documents).
const MAX_BODY: usize = 1 << 20;

/// A client for JSON API calls with a bearer token; cheap to clone.
#[derive(Clone)]
pub struct HttpClient {
    inner: HyperClient<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
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
            .body(Full::new(Bytes::new()))
            .map_err(|_| "not a valid URL".to_string())?;
        let (status, body) = self.exchange(request, MAX_BODY).await?;
        Ok((status, serde_json::from_slice(&body).unwrap_or_default()))
    }

    /// Sends `request` and reads an answer of at most `max_body` bytes, the whole exchange
    /// within the client's timeout. The error names what failed (connecting, TLS, the
    /// timeout, a body too large), never the URL.
    pub async fn exchange(
        &self,
        request: Request<Full<Bytes>>,
        max_body: usize,
    ) -> Result<(StatusCode, Bytes), String> {
        let exchange = async {
            let response = self.inner.request(request).await.map_err(describe)?;
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

/// The error and its causes (a TLS failure sits a few levels down), without the URL.
fn describe(e: hyper_util::client::legacy::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// A client whose calls each take at most `timeout`. The error names what could not be read.
pub fn client(timeout: Duration) -> Result<HttpClient, String> {
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS set-up failed: {e}"))?
    .with_root_certificates(roots()?)
    .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    Ok(HttpClient {
        inner: HyperClient::builder(TokioExecutor::new()).build(connector),
        timeout,
    })
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

fn roots() -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
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
