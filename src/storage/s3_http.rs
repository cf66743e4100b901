//! The HTTP stack object_store's S3 client talks through: hyper with hyper-rustls on the
//! `ring` provider, the same TLS stack as burnlink's other outbound clients
//! ([`crate::http_client`]). object_store's own `aws` feature would bring reqwest with
//! aws-lc-rs, a second crypto library and a C build (cmake); `aws-base` plus this connector
//! keeps one.
//!
//! It also carries the one S3 feature object_store does not expose: `If-None-Match: *` on
//! `CompleteMultipartUpload`, S3's conditional create for multipart uploads. An upload that may
//! not replace its destination registers its upload id in [`CreateOnly`]; the completion
//! request for that id gets the header, so an object that appeared meanwhile makes S3 answer
//! 412 instead of being replaced (no check-then-put race).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use http_body_util::BodyExt;
use hyper::Method;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector as TcpConnector;
use hyper_util::rt::TokioExecutor;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpRequestBody,
    HttpResponse, HttpResponseBody, HttpService,
};
use object_store::{ClientConfigKey, ClientOptions};
use tokio_rustls::rustls;

/// Upload ids whose completion must not replace an existing object.
#[derive(Clone, Debug, Default)]
pub struct CreateOnly(Arc<Mutex<HashSet<String>>>);

impl CreateOnly {
    pub fn insert(&self, id: &str) {
        self.0.lock().expect("not poisoned").insert(id.to_string());
    }

    pub fn remove(&self, id: &str) {
        self.0.lock().expect("not poisoned").remove(id);
    }

    fn contains(&self, id: &str) -> bool {
        self.0.lock().expect("not poisoned").contains(id)
    }
}

/// Builds the client object_store calls; `headers_within` bounds the wait for a response's
/// headers (the body streams on, bounded by its reader).
#[derive(Debug)]
pub struct Connector {
    pub create_only: CreateOnly,
    pub connect_within: Duration,
    pub headers_within: Duration,
}

impl HttpConnector for Connector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        // `AWS_ALLOW_HTTP=true` allows a plain-HTTP endpoint; HTTPS only otherwise.
        let allow_http = options
            .get_config_value(&ClientConfigKey::AllowHttp)
            .is_some_and(|v| v == "true");
        let generic = |e: String| object_store::Error::Generic {
            store: "S3",
            source: e.into(),
        };
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| generic(e.to_string()))?
        .with_root_certificates(crate::http_client::roots(None).map_err(generic)?)
        .with_no_client_auth();
        let mut tcp = TcpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(self.connect_within));
        let builder = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls);
        let builder = if allow_http {
            builder.https_or_http()
        } else {
            builder.https_only()
        };
        let connector = builder.enable_http1().wrap_connector(tcp);
        Ok(HttpClient::new(Service {
            inner: HyperClient::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector),
            create_only: self.create_only.clone(),
            headers_within: self.headers_within,
        }))
    }
}

struct Service {
    inner: HyperClient<hyper_rustls::HttpsConnector<TcpConnector>, HttpRequestBody>,
    create_only: CreateOnly,
    headers_within: Duration,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3HttpService").finish()
    }
}

#[async_trait]
impl HttpService for Service {
    async fn call(&self, mut req: HttpRequest) -> Result<HttpResponse, HttpError> {
        if req.method() == Method::POST
            && let Some(id) = upload_id(req.uri().query().unwrap_or(""))
            && self.create_only.contains(&id)
        {
            req.headers_mut().insert(
                hyper::header::IF_NONE_MATCH,
                hyper::header::HeaderValue::from_static("*"),
            );
        }
        let response = tokio::time::timeout(self.headers_within, self.inner.request(req))
            .await
            .map_err(|_| HttpError::new(HttpErrorKind::Timeout, Slow(self.headers_within)))?
            .map_err(|e| {
                let kind = if e.is_connect() {
                    HttpErrorKind::Connect
                } else {
                    HttpErrorKind::Request
                };
                HttpError::new(kind, e)
            })?;
        let (parts, body) = response.into_parts();
        let body = body.map_err(|e| HttpError::new(HttpErrorKind::Interrupted, e));
        Ok(HttpResponse::from_parts(parts, HttpResponseBody::new(body)))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("no response headers within {0:?}")]
struct Slow(Duration);

/// The `uploadId` query parameter, decoded.
fn upload_id(query: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == "uploadId").then(|| {
            percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_upload_id() {
        assert_eq!(upload_id("uploadId=a%2Bb").as_deref(), Some("a+b"));
        assert_eq!(
            upload_id("partNumber=1&uploadId=xyz").as_deref(),
            Some("xyz")
        );
        assert_eq!(upload_id("uploads"), None);
    }
}
