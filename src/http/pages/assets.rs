//! The pages' only style sheet and script, compiled into the binary and inlined into each
//! page, so a page is one response with nothing fetched from anywhere else. The
//! Content-Security-Policy allows exactly these two by hash.

use std::sync::LazyLock;

use base64ct::{Base64, Encoding};
use sha2::{Digest, Sha256};

pub const CSS: &str = include_str!("page.css");
pub const JS: &str = include_str!("page.js");

/// `'sha256-…'` of an inline element's exact text, as CSP hash sources want it.
fn csp_hash(text: &str) -> String {
    format!("'sha256-{}'", Base64::encode_string(&Sha256::digest(text)))
}

/// The policy every page is sent with: nothing but the inline style and script above, network
/// requests and form posts only to this origin, no framing, no `<base>` tricks.
pub static CONTENT_SECURITY_POLICY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "default-src 'none'; style-src {}; script-src {}; connect-src 'self'; \
         form-action 'self'; img-src data:; base-uri 'none'; frame-ancestors 'none'",
        csp_hash(CSS),
        csp_hash(JS)
    )
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_is_strict_and_pins_both_inline_elements() {
        let csp = CONTENT_SECURITY_POLICY.as_str();
        assert!(csp.starts_with("default-src 'none';"));
        assert!(!csp.contains("unsafe"));
        assert!(!csp.contains("http"), "no external origin: {csp}");
        assert_eq!(csp.matches("'sha256-").count(), 2);
        assert!(csp.contains(&csp_hash(JS)));
        // A known vector: sha256("") in base64.
        assert_eq!(
            csp_hash(""),
            "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='"
        );
    }
}
