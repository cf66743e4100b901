//! `Content-Disposition: attachment` with both name forms.
//!
//! `filename*` (RFC 5987, percent-encoded UTF-8) is what browsers use. `filename` is kept for
//! clients that only read that form (`curl -OJ` among them); it carries the name's UTF-8 bytes
//! as they are, with the characters that could break out of the quoted string, or be read as
//! a path, replaced by `_`.

use axum::http::HeaderValue;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::text::displayable;

/// RFC 5987 attr-char: ALPHA / DIGIT / "!" / "#" / "$" / "&" / "+" / "-" / "." / "^" / "_" /
/// "`" / "|" / "~". Everything else is percent-encoded.
const ATTR_CHAR: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

pub fn attachment(name: &str) -> HeaderValue {
    // Both forms from a name without control or bidi characters: `filename*` would otherwise
    // carry them percent-encoded, and a browser decodes them back.
    let name = &*displayable(name);
    // Built in one buffer that cannot outgrow its capacity: the fixed text and `download` fit
    // in 64 bytes, the plain form is at most the name's length (a replacement `_` is no longer
    // than what it replaces) and the encoded form at most three times it.
    let mut value = String::with_capacity(64 + 4 * name.len());
    value.push_str("attachment; filename=\"");
    let plain_at = value.len();
    value.extend(name.chars().map(|c| match c {
        '"' | '\\' | '/' | '%' => '_',
        c if c.is_control() => '_',
        c => c,
    }));
    if matches!(&value[plain_at..], "" | "." | "..") {
        value.truncate(plain_at);
        value.push_str("download");
    }
    value.push_str("\"; filename*=UTF-8''");
    value.extend(utf8_percent_encode(name, ATTR_CHAR));
    // Control characters are gone, so only bytes HeaderValue accepts remain; the fallback is
    // there so a surprise can never become a panic.
    HeaderValue::from_bytes(value.as_bytes())
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ascii_and_unicode_names() {
        assert_eq!(
            attachment("report.pdf").as_bytes(),
            b"attachment; filename=\"report.pdf\"; filename*=UTF-8''report.pdf"
        );
        let v = attachment("résumé 2026.pdf");
        let s = std::str::from_utf8(v.as_bytes()).unwrap();
        assert!(s.contains("filename=\"résumé 2026.pdf\""), "{s}");
        assert!(
            s.contains("filename*=UTF-8''r%C3%A9sum%C3%A9%202026.pdf"),
            "{s}"
        );
        let v = attachment("a\"b\\c\r\nd");
        assert!(
            std::str::from_utf8(v.as_bytes())
                .unwrap()
                .contains("filename=\"a_b_c__d\"")
        );
    }

    proptest! {
        #[test]
        fn header_is_always_valid_and_quoted_part_is_closed(name in "\\PC{0,40}|[\\x00-\\x7f]{0,40}") {
            let v = attachment(&name);
            let bytes = v.as_bytes();
            prop_assert!(bytes.iter().all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f)));
            let s = String::from_utf8_lossy(bytes);
            if let Some(rest) = s.strip_prefix("attachment; filename=\"") {
                let end = rest.find('"').unwrap();
                let quoted = &rest[..end];
                prop_assert!(!quoted.contains('\\') && !quoted.contains('/'));
                let star = &rest[end..];
                prop_assert!(star.starts_with("\"; filename*=UTF-8''"));
                let encoded = &star["\"; filename*=UTF-8''".len()..];
                prop_assert!(encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~%".contains(&b)));
            } else {
                prop_assert_eq!(s.as_ref(), "attachment");
            }
        }
    }
}
