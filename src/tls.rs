//! Optional HTTPS: a rustls acceptor from PEM files (`BURNLINK_TLS_CERT`, `BURNLINK_TLS_KEY`).
//!
//! rustls runs on the `ring` provider, which builds in seconds, rather than the default
//! aws-lc-rs (a CMake C build). Certificates are read once at start-up; renewing one means a
//! restart (SIGTERM drains running transfers first).

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto::ring;

use crate::config::TlsFiles;

/// Why TLS could not be set up; printed as the one start-up line.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("BURNLINK_TLS_CERT: cannot read a PEM certificate chain from `{path}`: {reason}")]
    Cert { path: String, reason: String },
    #[error("BURNLINK_TLS_KEY: cannot read a PEM private key from `{path}`: {reason}")]
    Key { path: String, reason: String },
    #[error("BURNLINK_TLS_KEY: the key does not suit the certificate: {0}")]
    Config(String),
}

pub fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, TlsError> {
    let certs = load_certs(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| TlsError::Key {
        path: files.key.display().to_string(),
        reason: e.to_string(),
    })?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    // The server speaks HTTP/1.1 only.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bad = |reason: String| TlsError::Cert {
        path: path.display().to_string(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no CERTIFICATE block found".into()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_or_wrong_files_name_the_variable() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not pem").unwrap();
        let files = |cert: &Path, key: &Path| TlsFiles {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
        };
        let e = acceptor(&files(&dir.path().join("none.pem"), &junk))
            .err()
            .expect("refused");
        assert!(e.to_string().starts_with("BURNLINK_TLS_CERT:"), "{e}");
        let e = acceptor(&files(&junk, &junk)).err().expect("refused");
        assert!(e.to_string().starts_with("BURNLINK_TLS_CERT:"), "{e}");
    }
}
