//! `Content-Disposition: attachment` with both name forms.
//!
//! `filename*` (RFC 5987, percent-encoded UTF-8) is what browsers use. `filename` is kept for
//! clients that only read that form (`curl -OJ` among them); it carries the name's UTF-8 bytes
//! as they are, with the characters that could break out of the quoted string, or be read as
//! a path, replaced by `_`.

use axum::http::HeaderValue;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::fields::Out;
use super::values::Values;
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

/// Room that `attachment(name)` cannot outgrow: the fixed text and `download` fit in 64 bytes,
/// the plain form is at most the name's length (a replacement `_` is no longer than what it
/// replaces, and neither is `displayable`'s) and the encoded form at most three times it.
pub(super) fn room(name: &str) -> usize {
    64 + 4 * name.len()
}

pub fn attachment(name: &str, values: &mut Values) -> HeaderValue {
    // Control characters are gone, so only bytes HeaderValue accepts remain; the fallback is
    // there so a surprise can never become a panic.
    values
        .value(room(name), |out| write(name, out))
        .unwrap_or_else(|| HeaderValue::from_static("attachment"))
}

/// The value of [`attachment`], written into `out` (within [`room`]).
pub fn write(name: &str, out: &mut impl Out) {
    // Both forms from a name without control or bidi characters: `filename*` would otherwise
    // carry them percent-encoded, and a browser decodes them back.
    let name = &*displayable(name);
    out.put_slice(b"attachment; filename=\"");
    let plain_at = out.filled().len();
    // What could end the quoted string or read as a path becomes `_`. Those are all ASCII, so
    // the name goes out in runs between them, and a multi-byte character whole.
    let bytes = name.as_bytes();
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if matches!(b, b'"' | b'\\' | b'/' | b'%') || b.is_ascii_control() {
            out.put_slice(&bytes[run..i]);
            out.put_u8(b'_');
            run = i + 1;
        }
    }
    out.put_slice(&bytes[run..]);
    if matches!(&out.filled()[plain_at..], b"" | b"." | b"..") {
        out.truncate(plain_at);
        out.put_slice(b"download");
    }
    out.put_slice(b"\"; filename*=UTF-8''");
    for piece in utf8_percent_encode(name, ATTR_CHAR) {
        out.put_slice(piece.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn attachment(name: &str) -> HeaderValue {
        super::attachment(name, &mut Values::default())
    }

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
