//! OAuth 2.1 access tokens for remote MCP clients and `/api/*`: JWTs from the one
//! authorization server in `BURNLINK_OAUTH_ISSUER`, for the audience `BURNLINK_OAUTH_AUDIENCE`,
//! turned into a typed [`Caller`] with the scopes they were granted.
//!
//! Core logic, free of HTTP server types; the issuer's metadata and keys are fetched through
//! the one outbound client ([`crate::http_client`], so an `https://` issuer works, trusting
//! the system's roots plus `SSL_CERT_FILE`): the discovery document (RFC 8414 `oauth-authorization-server`, else OpenID
//! `openid-configuration`) names the JWKS, whose keys are cached; a token signed with a key id
//! not in the cache refetches them, at most once per [`REFETCH_INTERVAL`], so a flood of made-up
//! key ids costs the issuer one request per interval. Every fetch is bounded in time
//! ([`FETCH_TIMEOUT`]) and size ([`MAX_DOCUMENT_BYTES`]).
//!
//! A token is accepted only when: its algorithm is an asymmetric one (RSA, RSA-PSS, ECDSA,
//! EdDSA; never `none` nor HMAC, so a token "signed" with the public key as an HMAC secret is
//! refused), it is signed by a key the issuer publishes for that algorithm, `iss` is the issuer,
//! `aud` names this resource, and `exp` (required) and `nbf` (when present) hold with
//! [`LEEWAY_S`] seconds of leeway. Its `scope` claim (or `scp`) gives the scopes; a
//! `burnlink_session` claim pins it to a session like `tok@session`.

use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;

use crate::access::{Caller, Scopes};
use crate::session::SessionId;

/// Clock skew allowed on `exp` and `nbf`.
pub const LEEWAY_S: u64 = 30;
/// How long one fetch of the discovery document or the JWKS may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest discovery document or JWKS read.
pub const MAX_DOCUMENT_BYTES: usize = 256 * 1024;
/// The least time between two fetches of the keys (an unknown key id refetches them).
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(10);
/// The longest bearer token looked at as a JWT.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The algorithms an access token may be signed with: asymmetric only.
const ACCEPTED: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// The scopes this resource knows, as its metadata lists them.
pub fn scopes_supported() -> Vec<&'static str> {
    crate::access::Scope::ALL
        .iter()
        .map(|s| s.as_str())
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// The token is not one this resource accepts (the reason is for the log, not the client).
    #[error("access token refused: {0}")]
    Invalid(String),
    /// The issuer's keys could not be fetched, so no token can be checked.
    #[error("the authorization server's keys cannot be fetched: {0}")]
    Unavailable(String),
}

/// The issuer and the audience, from `BURNLINK_OAUTH_ISSUER` and `BURNLINK_OAUTH_AUDIENCE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuthSettings {
    pub issuer: String,
    /// The resource's identifier, which tokens must carry in `aud`: `BURNLINK_OAUTH_AUDIENCE`,
    /// else the MCP endpoint's URL.
    pub audience: String,
    /// With the default audience, the server's base URL: the resource that the root metadata
    /// document describes (RFC 9728 §3.3 ties a document to the URL it is found under, so a
    /// client that discovered the server from its root asks for a token for the root), also
    /// accepted in `aud`. `None` when the operator set the audience: then both documents
    /// name that one.
    pub root_resource: Option<String>,
}

impl OAuthSettings {
    /// What the metadata document at the root names as the resource.
    pub fn root_resource(&self) -> &str {
        self.root_resource.as_deref().unwrap_or(&self.audience)
    }
}

/// Checks access tokens against the issuer's published keys.
pub struct Verifier {
    settings: OAuthSettings,
    http: crate::http_client::HttpClient,
    refetch_interval: Duration,
    cache: Mutex<KeyCache>,
}

#[derive(Default)]
struct KeyCache {
    keys: JwkSet,
    /// When the keys were last asked for (successfully or not).
    fetched: Option<Instant>,
    last_error: Option<String>,
}

/// The claims of an access token this resource reads, past what `jsonwebtoken` validates.
#[derive(Deserialize)]
struct AccessClaims {
    #[serde(default)]
    scope: Option<String>,
    /// Some issuers send the scopes as an array.
    #[serde(default)]
    scp: Option<Vec<String>>,
    #[serde(default)]
    burnlink_session: Option<String>,
}

/// The fields of the issuer's metadata used here.
#[derive(Deserialize)]
struct IssuerMetadata {
    issuer: String,
    jwks_uri: String,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("settings", &self.settings)
            .finish()
    }
}

impl Verifier {
    /// Fails only when the trusted roots cannot be read (an unreadable `SSL_CERT_FILE`).
    pub fn new(settings: OAuthSettings) -> Result<Self, String> {
        Self::with_refetch_interval(settings, REFETCH_INTERVAL)
    }

    pub fn with_refetch_interval(
        settings: OAuthSettings,
        refetch_interval: Duration,
    ) -> Result<Self, String> {
        Ok(Verifier {
            settings,
            http: crate::http_client::client(FETCH_TIMEOUT)?,
            refetch_interval,
            cache: Mutex::new(KeyCache::default()),
        })
    }

    pub fn settings(&self) -> &OAuthSettings {
        &self.settings
    }

    /// Whether `token` looks like a JWT at all (three dot-separated parts), so the edge can
    /// tell a mistyped static token from an access token without asking the issuer.
    pub fn looks_like_jwt(token: &str) -> bool {
        token.len() <= MAX_TOKEN_BYTES && token.split('.').count() == 3
    }

    /// The caller an access token stands for.
    pub async fn verify(&self, token: &str) -> Result<Caller, OAuthError> {
        if !Self::looks_like_jwt(token) {
            return Err(OAuthError::Invalid("not a JWT".into()));
        }
        let header =
            decode_header(token).map_err(|e| OAuthError::Invalid(format!("header: {e}")))?;
        if !ACCEPTED.contains(&header.alg) {
            return Err(OAuthError::Invalid(format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let jwk = self.key_for(header.kid.as_deref(), header.alg).await?;
        let key = DecodingKey::from_jwk(&jwk)
            .map_err(|e| OAuthError::Invalid(format!("the issuer's key is unusable: {e}")))?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = LEEWAY_S;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        validation.set_issuer(&[&self.settings.issuer]);
        match &self.settings.root_resource {
            Some(root) => validation.set_audience(&[&self.settings.audience, root]),
            None => validation.set_audience(&[&self.settings.audience]),
        }
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data = decode::<AccessClaims>(token, &key, &validation)
            .map_err(|e| OAuthError::Invalid(e.to_string()))?;
        caller_from(data.claims)
    }

    /// The issuer's key for `kid` (or, without one, the first key for the algorithm's
    /// family), fetching the keys when none are cached or the id is unknown and the last fetch
    /// is older than the refetch interval.
    async fn key_for(&self, kid: Option<&str>, alg: Algorithm) -> Result<Jwk, OAuthError> {
        let mut cache = self.cache.lock().await;
        if let Some(jwk) = find_key(&cache.keys, kid, alg) {
            return Ok(jwk.clone());
        }
        let may_fetch = cache
            .fetched
            .is_none_or(|at| at.elapsed() >= self.refetch_interval);
        if may_fetch {
            cache.fetched = Some(Instant::now());
            match self.fetch_keys().await {
                Ok(keys) => {
                    tracing::info!(
                        issuer = %self.settings.issuer,
                        keys = keys.keys.len(),
                        "fetched the authorization server's keys"
                    );
                    cache.keys = keys;
                    cache.last_error = None;
                }
                Err(e) => {
                    tracing::warn!(issuer = %self.settings.issuer, error = %e,
                        "cannot fetch the authorization server's keys");
                    cache.last_error = Some(e);
                }
            }
            if let Some(jwk) = find_key(&cache.keys, kid, alg) {
                return Ok(jwk.clone());
            }
        }
        if cache.keys.keys.is_empty() {
            return Err(OAuthError::Unavailable(
                cache
                    .last_error
                    .clone()
                    .unwrap_or_else(|| "no keys yet".into()),
            ));
        }
        Err(OAuthError::Invalid(match kid {
            Some(kid) => format!("the issuer publishes no key `{kid}` for {alg:?}"),
            None => format!("the issuer publishes no key for {alg:?}"),
        }))
    }

    async fn fetch_keys(&self) -> Result<JwkSet, String> {
        let mut errors = Vec::new();
        for url in discovery_urls(&self.settings.issuer) {
            match self.get_json::<IssuerMetadata>(&url).await {
                Ok(meta) if meta.issuer != self.settings.issuer => {
                    // RFC 8414 §3.3: metadata naming another issuer must not be used.
                    return Err(format!(
                        "{url} names the issuer `{}`, not `{}`",
                        meta.issuer, self.settings.issuer
                    ));
                }
                Ok(meta) => return self.get_json::<JwkSet>(&meta.jwks_uri).await,
                Err(e) => errors.push(e),
            }
        }
        Err(errors.join("; "))
    }

    /// GETs a JSON document, bounded in time and size.
    async fn get_json<T: DeserializeOwned>(&self, url: &str) -> Result<T, String> {
        let request = hyper::Request::get(url)
            .header(hyper::header::ACCEPT, "application/json")
            .body(crate::http_client::full(bytes::Bytes::new()))
            .map_err(|_| format!("{url}: not a valid URL"))?;
        let (status, body) = self
            .http
            .exchange(request, MAX_DOCUMENT_BYTES)
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        if !status.is_success() {
            return Err(format!("{url}: {status}"));
        }
        serde_json::from_slice(&body).map_err(|e| format!("{url}: {e}"))
    }
}

/// Where the issuer's metadata may be: RFC 8414's well-known path (inserted before the
/// issuer's path), then OpenID Connect Discovery's (appended to it).
pub fn discovery_urls(issuer: &str) -> Vec<String> {
    let trimmed = issuer.trim_end_matches('/');
    let (origin, path) = match trimmed.split_once("://") {
        Some((scheme, rest)) => match rest.find('/') {
            Some(i) => (format!("{scheme}://{}", &rest[..i]), &rest[i..]),
            None => (trimmed.to_string(), ""),
        },
        None => (trimmed.to_string(), ""),
    };
    let mut urls = vec![
        format!("{origin}/.well-known/oauth-authorization-server{path}"),
        format!("{trimmed}/.well-known/openid-configuration"),
    ];
    if !path.is_empty() {
        urls.push(format!("{origin}/.well-known/openid-configuration{path}"));
    }
    urls
}

/// A signing key for `alg`: the one named `kid`, or without a `kid` the first that fits.
/// Encryption keys, keys declared for another algorithm and symmetric keys never fit.
fn find_key<'a>(keys: &'a JwkSet, kid: Option<&str>, alg: Algorithm) -> Option<&'a Jwk> {
    let fits = |jwk: &&Jwk| {
        let for_signing = !matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption));
        let declared_alg = jwk
            .common
            .key_algorithm
            .map(|a| Algorithm::try_from(a).is_ok_and(|a| a == alg))
            .unwrap_or(true);
        let family = DecodingKey::from_jwk(jwk).is_ok_and(|k| k.family() == alg.family());
        for_signing && declared_alg && family
    };
    match kid {
        Some(kid) => keys
            .keys
            .iter()
            .filter(|k| k.common.key_id.as_deref() == Some(kid))
            .find(fits),
        None => keys.keys.iter().find(fits),
    }
}

fn caller_from(claims: AccessClaims) -> Result<Caller, OAuthError> {
    let mut scopes = Scopes::from_claim(claims.scope.as_deref().unwrap_or("").split(' '));
    if let Some(list) = &claims.scp {
        let more = Scopes::from_claim(list.iter().map(String::as_str));
        scopes = Scopes::from_claim(scopes.iter().chain(more.iter()).map(|s| s.as_str()));
    }
    let pinned = claims
        .burnlink_session
        .as_deref()
        .map(SessionId::parse)
        .transpose()
        .map_err(|_| {
            OAuthError::Invalid("burnlink_session is not a valid session id".to_string())
        })?;
    Ok(Caller { pinned, scopes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::Scope;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn discovery_urls_follow_rfc_8414_then_openid() {
        assert_eq!(
            discovery_urls("https://as.example.com"),
            [
                "https://as.example.com/.well-known/oauth-authorization-server",
                "https://as.example.com/.well-known/openid-configuration"
            ]
        );
        assert_eq!(
            discovery_urls("https://as.example.com/tenant1/"),
            [
                "https://as.example.com/.well-known/oauth-authorization-server/tenant1",
                "https://as.example.com/tenant1/.well-known/openid-configuration",
                "https://as.example.com/.well-known/openid-configuration/tenant1"
            ]
        );
    }

    #[test]
    fn claims_give_scopes_and_a_session() {
        let c = caller_from(AccessClaims {
            scope: Some("links:read links:download".into()),
            scp: Some(vec!["links:revoke".into()]),
            burnlink_session: Some("s1".into()),
        })
        .unwrap();
        assert!(c.scopes.contains(Scope::Read));
        assert!(c.scopes.contains(Scope::Download));
        assert!(c.scopes.contains(Scope::Revoke));
        assert!(!c.scopes.contains(Scope::Upload));
        assert_eq!(c.pinned.unwrap().as_str(), "s1");
        assert!(
            caller_from(AccessClaims {
                scope: None,
                scp: None,
                burnlink_session: Some("../x".into()),
            })
            .is_err()
        );
    }

    fn rsa_jwk(kid: &str) -> serde_json::Value {
        // A 2048-bit RSA public key (n, e) is enough to build a decoding key.
        serde_json::json!({
            "kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "e": "AQAB",
            "n": "4G5MdQV6BGjXzBiYHSQMq4eYspkCmi7Htyy3caF8et93aZPivquzhamTKoK03aUMTc02jmIQ8Qnzh-k0B_lK_B7iAqaNyflc9lMuFmCmSKQ58Gzt9fXkGJnKWRHAcJXBEVGvvQDC8CPxYPJ0bJ50eBY_HfehOEjRhd6taX9CpsSGGACEuCse1XEvPLC6kALKKAGxA8B9H-H8QXcCY3PCyYWgAMuFMM21M3zLIGX4uaUZVuX2YYSYhHenMsrVx14aOfbrvCMsOcH5K63-8h5uRzmJWlmE4c6T_bN5O17mPrp177r0rdEbEdgig3tReQSXXUZGy06WfqVL4wqZ5oCp9Q"
        })
    }

    #[test]
    fn keys_are_found_by_id_and_algorithm_family() {
        let keys: JwkSet = serde_json::from_value(serde_json::json!({
            "keys": [rsa_jwk("a"), rsa_jwk("b")]
        }))
        .unwrap();
        assert_eq!(
            find_key(&keys, Some("b"), Algorithm::RS256)
                .unwrap()
                .common
                .key_id
                .as_deref(),
            Some("b")
        );
        assert!(find_key(&keys, Some("c"), Algorithm::RS256).is_none());
        // Declared RS256: not for PS256, and never for an EC algorithm.
        assert!(find_key(&keys, Some("a"), Algorithm::PS256).is_none());
        assert!(find_key(&keys, None, Algorithm::ES256).is_none());
        assert!(find_key(&keys, None, Algorithm::RS256).is_some());
    }

    /// A loopback issuer that counts the JWKS fetches.
    async fn issuer(jwks: serde_json::Value) -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let (b, h) = (base.clone(), hits.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let mut buf = vec![0u8; 4096];
                let n = sock.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                let (status, body) = if path == "/.well-known/oauth-authorization-server" {
                    let meta = serde_json::json!({"issuer": b, "jwks_uri": format!("{b}/jwks")});
                    ("200 OK", meta.to_string())
                } else if path == "/jwks" {
                    h.fetch_add(1, Ordering::SeqCst);
                    ("200 OK", jwks.to_string())
                } else {
                    ("404 Not Found", "{}".to_string())
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(response.as_bytes()).await;
            }
        });
        (base, hits)
    }

    /// A syntactically fine RS256 token with this key id (its signature is never reached).
    fn token_with_kid(kid: &str) -> String {
        let header = serde_json::json!({"alg": "RS256", "kid": kid, "typ": "JWT"});
        let enc = |v: serde_json::Value| {
            use base64ct::{Base64UrlUnpadded, Encoding};
            Base64UrlUnpadded::encode_string(v.to_string().as_bytes())
        };
        format!(
            "{}.{}.c2ln",
            enc(header),
            enc(serde_json::json!({"exp": 1}))
        )
    }

    #[tokio::test]
    async fn unknown_key_ids_refetch_the_keys_at_most_once_per_interval() {
        let (base, hits) = issuer(serde_json::json!({"keys": [rsa_jwk("known")]})).await;
        let v = Verifier::with_refetch_interval(
            OAuthSettings {
                issuer: base,
                audience: "http://r/mcp".into(),
                root_resource: None,
            },
            Duration::from_millis(300),
        )
        .unwrap();
        // The first token fetches the keys; a known kid is then served from the cache.
        assert!(matches!(
            v.verify(&token_with_kid("known")).await,
            Err(OAuthError::Invalid(_))
        ));
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        v.verify(&token_with_kid("known")).await.unwrap_err();
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        // A flood of made-up key ids: one refetch per interval, not one per token.
        for i in 0..50 {
            v.verify(&token_with_kid(&format!("made-up-{i}")))
                .await
                .unwrap_err();
        }
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_millis(350)).await;
        for i in 0..50 {
            v.verify(&token_with_kid(&format!("again-{i}")))
                .await
                .unwrap_err();
        }
        assert_eq!(hits.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_unreachable_issuer_is_unavailable_and_not_a_token_fault() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let v = Verifier::new(OAuthSettings {
            issuer: format!("http://127.0.0.1:{port}"),
            audience: "http://r/mcp".into(),
            root_resource: None,
        })
        .unwrap();
        assert!(matches!(
            v.verify(&token_with_kid("k")).await,
            Err(OAuthError::Unavailable(_))
        ));
        // Garbage and refused algorithms are refused before any fetch.
        assert!(matches!(
            v.verify("not-a-jwt").await,
            Err(OAuthError::Invalid(_))
        ));
    }
}
