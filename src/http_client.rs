//! The one HTTP client builder for burnlink's own calls to a burnlink server (`burnlink
//! revoke`, the stdio MCP server's `get_link_status`): plain HTTP, or HTTPS with rustls on the
//! `ring` provider (no C build), trusting the system's roots plus the PEM file named by
//! `SSL_CERT_FILE`, the usual variable (a private CA, or a self-signed server certificate).
//!
//! Unlike most clients, `SSL_CERT_FILE` adds to the system's roots here instead of replacing
//! them, so pointing it at a test CA does not break public servers.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio_rustls::rustls::{self, RootCertStore};

/// Where distributions keep the system's CA bundle (read when `SSL_CERT_FILE` hides it from
/// the platform loader).
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// A client with `timeout` for whole requests. The error names what could not be read.
pub fn client(timeout: Duration) -> Result<reqwest::Client, String> {
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS set-up failed: {e}"))?
    .with_root_certificates(roots()?)
    .with_no_client_auth();
    let mut tls = tls;
    // This build speaks HTTP/1.1 only.
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(timeout)
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

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
