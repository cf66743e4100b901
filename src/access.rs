//! Who may mint and ask about links: the API tokens (`BURNLINK_API_TOKENS`) and the callers
//! they stand for. Free of HTTP, so the configuration, the links service, MCP and the CLI share
//! it; the HTTP edge only pulls the bearer token out of a request.
//!
//! Tokens are compared as SHA-256 digests in constant time, so neither their content nor their
//! length leaks through timing. A token may be pinned to one session (`tok@session`); a pinned
//! caller acts only inside that session's sandbox.

use base64ct::{Base64UrlUnpadded, Encoding};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::session::SessionId;

/// Why a caller may not act where it asked to.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error("session: {0}")]
    BadSession(#[from] crate::session::BadSession),
    #[error("this API token is pinned to session `{0}`")]
    Pinned(SessionId),
}

struct Entry {
    digest: [u8; 32],
    session: Option<SessionId>,
}

/// The configured API tokens (`BURNLINK_API_TOKENS`). Holds digests only: the plain tokens are
/// not kept in memory longer than parsing takes, except the first one, which `burnlink revoke`
/// needs to call the server.
pub struct ApiTokens {
    entries: Vec<Entry>,
    first: String,
}

impl std::fmt::Debug for ApiTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiTokens({} configured)", self.entries.len())
    }
}

impl ApiTokens {
    /// Parses `tok1,tok2@sessionA`.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut entries = Vec::new();
        let mut first = None;
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (secret, session) = match item.rsplit_once('@') {
                Some((secret, session)) => (
                    secret,
                    Some(SessionId::parse(session).map_err(|_| {
                        format!(
                            "session after `@` must match [A-Za-z0-9_-]{{1,64}}, got `{session}`"
                        )
                    })?),
                ),
                None => (item, None),
            };
            if secret.is_empty() {
                return Err("expected `token[@session][,token…]`, got an empty token".into());
            }
            first.get_or_insert_with(|| secret.to_string());
            entries.push(Entry {
                digest: Sha256::digest(secret.as_bytes()).into(),
                session,
            });
        }
        let first = first.ok_or("expected `token[@session][,token…]`, got an empty list")?;
        Ok(ApiTokens { entries, first })
    }

    /// A fresh random unpinned token, for a server started without any.
    pub fn generate() -> (Self, String) {
        let secret: [u8; 32] = rand::random();
        let token = format!("bl_{}", Base64UrlUnpadded::encode_string(&secret));
        (Self::parse(&token).expect("generated token parses"), token)
    }

    /// The first configured token, which the CLI uses to call the server.
    pub fn first(&self) -> &str {
        &self.first
    }

    /// The caller a presented token stands for, or `None` if it matches no configured token.
    /// Every entry is compared, whatever matched, so timing does not say which one did.
    pub fn authenticate(&self, presented: &str) -> Option<Caller> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found: Option<&Entry> = None;
        for entry in &self.entries {
            if bool::from(entry.digest.ct_eq(&digest)) {
                found = Some(entry);
            }
        }
        found.map(|e| Caller {
            pinned: e.session.clone(),
        })
    }
}

/// An authenticated API caller.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The session the caller's token is pinned to, if any.
    pub pinned: Option<SessionId>,
}

impl Caller {
    /// The session a request acts on: a pinned token's own session, else what was asked for
    /// (`None` = the root sandbox). A pinned token asking for another session is refused.
    pub fn session_for(&self, requested: Option<&str>) -> Result<Option<SessionId>, AccessError> {
        let requested = requested.map(SessionId::parse).transpose()?;
        match (&self.pinned, requested) {
            (Some(pinned), Some(asked)) if *pinned != asked => {
                Err(AccessError::Pinned(pinned.clone()))
            }
            (Some(pinned), _) => Ok(Some(pinned.clone())),
            (None, asked) => Ok(asked),
        }
    }

    /// Whether this caller may see or act on a link of `session`.
    pub fn may_act_on(&self, session: Option<&SessionId>) -> Result<(), AccessError> {
        match &self.pinned {
            Some(pinned) if session != Some(pinned) => Err(AccessError::Pinned(pinned.clone())),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_and_unpinned_tokens() {
        let t = ApiTokens::parse("alpha, beta@s1").unwrap();
        assert_eq!(t.first(), "alpha");
        assert!(t.authenticate("alpha").unwrap().pinned.is_none());
        assert_eq!(
            t.authenticate("beta").unwrap().pinned.unwrap().as_str(),
            "s1"
        );
        assert!(t.authenticate("beta@s1").is_none());
        assert!(t.authenticate("alph").is_none());
        assert!(t.authenticate("").is_none());
    }

    #[test]
    fn session_rules() {
        let pinned = Caller {
            pinned: Some(SessionId::parse("s1").unwrap()),
        };
        assert_eq!(pinned.session_for(None).unwrap().unwrap().as_str(), "s1");
        assert_eq!(
            pinned.session_for(Some("s1")).unwrap().unwrap().as_str(),
            "s1"
        );
        assert!(matches!(
            pinned.session_for(Some("s2")),
            Err(AccessError::Pinned(_))
        ));
        assert!(pinned.may_act_on(None).is_err());
        let open = Caller { pinned: None };
        assert!(open.session_for(None).unwrap().is_none());
        assert!(matches!(
            open.session_for(Some("../x")),
            Err(AccessError::BadSession(_))
        ));
        assert!(
            open.may_act_on(Some(&SessionId::parse("any").unwrap()))
                .is_ok()
        );
    }

    #[test]
    fn bad_specs() {
        assert!(ApiTokens::parse("").is_err());
        assert!(ApiTokens::parse("@s1").is_err());
        assert!(ApiTokens::parse("tok@bad session").is_err());
        let (tokens, plain) = ApiTokens::generate();
        assert!(tokens.authenticate(&plain).is_some());
    }
}
