//! Telling a person's browser from a program by its `Accept` header.
//!
//! Link previewers, mail scanners and people all send `GET`; only people should burn a link.
//! Browsers navigating to a URL list `text/html` first (`text/html,application/xhtml+xml,…,
//! */*;q=0.8`), while curl, wget, CI jobs and HTTP libraries send `*/*` or nothing. A request
//! that ranks an HTML type at least as high as everything else it accepts gets the
//! confirmation page; everything else gets the bytes at once.
//!
//! A tie (`text/html, */*`) goes to the page: naming `text/html` explicitly is what browsers
//! and previewers do, and a previewer must not burn a link. A program that wants the bytes
//! sends `*/*`, no `Accept`, or the file's own type.

use axum::http::{HeaderMap, header};

/// The media types that mean "a page for a person".
const HTML_TYPES: [&str; 2] = ["text/html", "application/xhtml+xml"];

/// Whether the request prefers an HTML page to the raw bytes (see the module docs).
pub fn prefers_html(headers: &HeaderMap) -> bool {
    let mut ranks = Ranks::default();
    for value in headers.get_all(header::ACCEPT) {
        ranks.add(value.as_bytes());
    }
    ranks.prefers_html()
}

/// The best ranks given to HTML and to anything else over a request's `Accept` fields, which
/// are one comma-joined list (RFC 9110 §5.3). Fed field by field, by [`prefers_html`] and by
/// the express lane, which reads raw heads.
#[derive(Default)]
pub struct Ranks {
    html: u16,
    other: u16,
}

impl Ranks {
    /// One field's value. A value that is not visible ASCII is skipped, as `HeaderValue::to_str`
    /// refuses it.
    pub fn add(&mut self, value: &[u8]) {
        if !value.iter().all(|&b| b == b'\t' || (32..127).contains(&b)) {
            return;
        }
        let Ok(value) = std::str::from_utf8(value) else {
            return;
        };
        let (h, o) = rank(value);
        self.html = self.html.max(h);
        self.other = self.other.max(o);
    }

    pub fn prefers_html(&self) -> bool {
        self.html > 0 && self.html >= self.other
    }
}

/// The best quality (in thousandths) given to an HTML type, and to anything else, in one
/// `Accept` value. Malformed elements are skipped, as if absent.
pub fn rank(accept: &str) -> (u16, u16) {
    let mut html = 0;
    let mut other = 0;
    for element in accept.split(',') {
        let Some((media, q)) = parse_element(element) else {
            continue;
        };
        if HTML_TYPES.iter().any(|t| media.eq_ignore_ascii_case(t)) {
            html = html.max(q);
        } else {
            other = other.max(q);
        }
    }
    (html, other)
}

/// `type/subtype *( OWS ";" OWS param )` → (the media range, its q in thousandths).
fn parse_element(element: &str) -> Option<(&str, u16)> {
    let mut parts = element.split(';');
    let media = parts.next()?.trim();
    let (ty, sub) = media.split_once('/')?;
    if !is_token(ty) || !is_token(sub) {
        return None;
    }
    let mut q = 1000;
    for param in parts {
        let (name, value) = param.split_once('=')?;
        if name.trim().eq_ignore_ascii_case("q") {
            q = parse_qvalue(value.trim())?;
            // Parameters after q are accept-extensions; they do not change the rank.
            break;
        }
    }
    Some((media, q))
}

/// RFC 9110 §12.4.2: `0[.ddd]` or `1[.000]`, as thousandths.
fn parse_qvalue(s: &str) -> Option<u16> {
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, f),
        None => (s, ""),
    };
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut thousandths = 0u16;
    for (i, b) in frac.bytes().enumerate() {
        thousandths += u16::from(b - b'0') * [100, 10, 1][i];
    }
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// An RFC 9110 token (`*` included, for wildcards).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use proptest::prelude::*;

    fn with(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::ACCEPT, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn page(accept: &str) -> bool {
        prefers_html(&with(&[accept]))
    }

    #[test]
    fn browsers_get_the_page() {
        // Chromium, Firefox and Safari navigations.
        assert!(page(
            "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,\
             image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"
        ));
        assert!(page(
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        ));
        assert!(page("application/xhtml+xml, */*;q=0.5"));
        assert!(page("TEXT/HTML"));
        assert!(page("text/html;level=1;q=0.9, */*;q=0.1"));
    }

    #[test]
    fn programs_get_the_bytes() {
        assert!(
            !prefers_html(&HeaderMap::new()),
            "no Accept: curl -H 'Accept:'"
        );
        for accept in [
            "*/*",
            "",
            "application/octet-stream",
            "application/json",
            "image/avif,image/webp,*/*;q=0.8", // an <img> fetch
            "text/*",
            "text/html;q=0.5, */*",
            "text/html;q=0, */*;q=0.1",
            "text/html;q=0",
            "text/html, application/pdf;q=1.0, image/png;q=1.0, */*;q=1.001", // bad q ignored → tie
        ] {
            let expect_page = accept.ends_with("*/*;q=1.001");
            assert_eq!(page(accept), expect_page, "{accept:?}");
        }
    }

    #[test]
    fn a_tie_goes_to_the_page() {
        assert!(page("text/html, */*"));
        assert!(page("*/*;q=0.8, text/html;q=0.8"));
    }

    #[test]
    fn several_fields_are_one_list() {
        assert!(prefers_html(&with(&["*/*;q=0.5", "text/html"])));
        assert!(!prefers_html(&with(&["text/html;q=0.5", "*/*"])));
    }

    #[test]
    fn malformed_elements_are_skipped() {
        for accept in [
            "text/html;q=2",
            "text/html;q=abc",
            "html",
            "text/html;q",
            "/html",
        ] {
            assert!(!page(accept), "{accept:?}");
        }
        assert!(page("garbage, text/html"));
        assert!(page("text/html ; q=0.9 , */* ; q=0.8"));
    }

    #[test]
    fn qvalues() {
        assert_eq!(parse_qvalue("1"), Some(1000));
        assert_eq!(parse_qvalue("1.000"), Some(1000));
        assert_eq!(parse_qvalue("0.8"), Some(800));
        assert_eq!(parse_qvalue("0.05"), Some(50));
        assert_eq!(parse_qvalue("0.001"), Some(1));
        assert_eq!(parse_qvalue("0."), Some(0));
        assert_eq!(parse_qvalue("1.001"), None);
        assert_eq!(parse_qvalue("0.0001"), None);
        assert_eq!(parse_qvalue("-0"), None);
        assert_eq!(parse_qvalue(""), None);
    }

    proptest! {
        /// Whatever else is listed, nothing that leaves out the HTML types gets the page, and
        /// an HTML type strictly above everything else always does.
        #[test]
        fn the_page_needs_html_ranked_first(
            others in proptest::collection::vec(
                (prop::sample::select(vec!["*/*", "text/*", "application/json",
                    "image/png", "application/xml", "text/plain"]), 0u16..=1000),
                0..6),
            html in proptest::option::of((prop::sample::select(HTML_TYPES.to_vec()), 0u16..=1000)),
        ) {
            let fmt = |(m, q): (&str, u16)| format!("{m};q={}.{:03}", q / 1000, q % 1000);
            let mut parts: Vec<String> = others.iter().copied().map(fmt).collect();
            if let Some(h) = html {
                parts.push(fmt(h));
            }
            let accept = parts.join(", ");
            let best_other = others.iter().map(|(_, q)| *q).max().unwrap_or(0);
            let expected = html.is_some_and(|(_, q)| q > 0 && q >= best_other);
            prop_assert_eq!(page(&accept), expected, "{}", accept);
        }

        /// Arbitrary bytes never panic.
        #[test]
        fn never_panics(s in "\\PC{0,200}") {
            let _ = rank(&s);
        }
    }
}
