//! Sessions: the per-caller sub-sandboxes of `BURNLINK_ROOT`.
//!
//! A session id is parsed once, where it enters (a token, an API body, a pinned API token, a
//! CLI flag), and travels typed from there on, so no layer below can meet an unparsed one and
//! fall back to the root sandbox by mistake.

use std::fmt;
use std::sync::Arc;

/// A validated session id: `[A-Za-z0-9_-]{1,64}`. Its sandbox is `{root}/{session}`. Shared,
/// because a transfer's lease and audit line keep it too: verifying a token allocates it once.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(Arc<str>);

/// A string that is not a session id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("session id must match [A-Za-z0-9_-]{{1,64}}")]
pub struct BadSession;

impl SessionId {
    pub fn parse(s: &str) -> Result<Self, BadSession> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok {
            Ok(SessionId(Arc::from(s)))
        } else {
            Err(BadSession)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for SessionId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids() {
        assert!(SessionId::parse("abc_DEF-09").is_ok());
        assert_eq!(
            SessionId::parse(&"a".repeat(64)).unwrap().as_str().len(),
            64
        );
        for bad in ["", "a b", "../x", "a/b", "é", &"a".repeat(65)] {
            assert_eq!(SessionId::parse(bad), Err(BadSession), "{bad}");
        }
    }
}
