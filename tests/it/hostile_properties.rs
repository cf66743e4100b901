//! Property tests over the pure functions that read attacker-controlled input: thousands of
//! random and mutated tokens, paths, `Range` headers, file names, `Content-Digest` values,
//! `X-Forwarded-For` headers and JSON bodies. Nothing panics, and the invariants hold: no
//! forged token verifies, no path escapes, header values are always valid.

use std::net::IpAddr;
use std::path::Path;

use axum::http::{HeaderMap, HeaderValue};
use base64ct::{Base64, Encoding};
use burnlink::http::transfer::digest::Expected;
use burnlink::http::transfer::range::{Decision, decide};
use burnlink::token::{Claims, Direction, Keyring, extract_token};
use proptest::prelude::*;

const KEYS: &str = "t1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";

fn keyring() -> Keyring {
    Keyring::parse(KEYS).unwrap()
}

fn valid_token() -> String {
    let mut c = Claims::new(
        Direction::Download,
        Some(burnlink::session::SessionId::parse("s1").unwrap()),
        "docs/a.pdf".into(),
        4_000_000_000,
    );
    c.max_bytes = Some(10);
    keyring().sign(&c)
}

/// One edit to a string: replace, insert or delete a byte at a position.
#[derive(Clone, Debug)]
enum Edit {
    Replace(prop::sample::Index, u8),
    Insert(prop::sample::Index, u8),
    Delete(prop::sample::Index),
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    prop::collection::vec(
        prop_oneof![
            (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Replace(i, b)),
            (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Insert(i, b)),
            any::<prop::sample::Index>().prop_map(Edit::Delete),
        ],
        1..6,
    )
}

/// Applies edits to `base`'s bytes; the result may not be UTF-8 (lossily converted).
fn mutate(base: &str, edits: &[Edit]) -> String {
    let mut bytes = base.as_bytes().to_vec();
    for e in edits {
        match *e {
            Edit::Replace(i, b) if !bytes.is_empty() => {
                let i = i.index(bytes.len());
                bytes[i] = b;
            }
            Edit::Insert(i, b) => {
                let i = i.index(bytes.len() + 1);
                bytes.insert(i, b);
            }
            Edit::Delete(i) if !bytes.is_empty() => {
                let i = i.index(bytes.len());
                bytes.remove(i);
            }
            _ => {}
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn mutated_tokens_never_verify(edits in edits()) {
        let token = valid_token();
        let mutated = mutate(&token, &edits);
        if mutated != token {
            prop_assert!(keyring().verify(&mutated).is_err(), "{mutated}");
        }
    }

    #[test]
    fn random_tokens_never_verify_and_never_panic(s in "\\PC{0,400}", raw in prop::collection::vec(any::<u8>(), 0..300)) {
        let k = keyring();
        prop_assert!(k.verify(&s).is_err());
        // Random bytes that do decode, of every length around a real token's.
        let encoded = base64ct::Base64UrlUnpadded::encode_string(&raw);
        prop_assert!(k.verify(&encoded).is_err());
        let found = extract_token(&s);
        prop_assert!(s.contains(found));
    }

    #[test]
    fn a_normalized_path_never_leaves_its_base(input in "(\\PC|/|\\.|\\.\\.|%2e|\\\\|\\x00){0,40}", edits in edits()) {
        let base = Path::new("/srv/data/s1");
        for candidate in [input.clone(), mutate("docs/../a.pdf", &edits), mutate("/srv/data/s1/a/b", &edits)] {
            if let Ok(p) = burnlink::sandbox::normalize(base, &candidate) {
                prop_assert!(!p.starts_with('/'), "{p}");
                prop_assert!(!p.contains('\0'));
                prop_assert!(p == "." || p.split('/').all(|c| !c.is_empty() && c != "." && c != ".."), "{p}");
                prop_assert!(base.join(&p).starts_with(base));
            }
        }
    }

    #[test]
    fn ranges_stay_inside_the_file(header in "\\PC{0,60}", edits in edits(), size in 0u64..100_000) {
        for h in [header.clone(), mutate("bytes=100-2000", &edits), mutate("bytes=-500", &edits)] {
            match decide(Some(&h), size) {
                Decision::Partial(r) => {
                    prop_assert!(r.start() <= r.end());
                    prop_assert!(*r.end() < size, "{h} {size} {r:?}");
                }
                Decision::Unsatisfiable | Decision::Full => {}
            }
        }
    }

    #[test]
    fn content_disposition_is_always_a_valid_header(name in "\\PC{0,80}|[\\x00-\\x7f]{0,80}", edits in edits()) {
        for n in [name.clone(), mutate("résumé \"final\".pdf", &edits)] {
            let v = burnlink::http::transfer::disposition::attachment(&n, &mut Default::default());
            prop_assert!(HeaderValue::from_bytes(v.as_bytes()).is_ok());
            prop_assert!(v.as_bytes().iter().all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f)));
            prop_assert!(v.as_bytes().starts_with(b"attachment"));
        }
    }

    #[test]
    fn content_digest_headers_never_panic_and_decode_exactly(raw in prop::collection::vec(any::<u8>(), 0..120), digest in any::<[u8; 32]>(), edits in edits()) {
        let _ = Expected::default().with_header(Some(&raw));
        let good = format!("sha-256=:{}:, md5=:AAAA:", Base64::encode_string(&digest));
        let parsed = Expected::default().with_header(Some(good.as_bytes())).unwrap();
        prop_assert_eq!(parsed.header_sha256, Some(digest));
        let mutated = mutate(&good, &edits);
        if let Ok(e) = Expected::default().with_header(Some(mutated.as_bytes())) {
            // Whatever was accepted is a whole digest or nothing.
            prop_assert!(e.header_sha256.is_none_or(|d| d.len() == 32));
        }
    }

    #[test]
    fn forwarded_for_yields_the_peer_or_an_address_from_the_header(value in "[0-9a-f.:, \\[\\]]{0,60}|\\PC{0,40}", trusted in any::<bool>()) {
        let peer: IpAddr = "10.0.0.2".parse().unwrap();
        let nets = if trusted { vec!["10.0.0.0/8".parse().unwrap()] } else { vec![] };
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert("x-forwarded-for", v);
        }
        let ip = burnlink::http::conn::client_ip(peer, &h, &nets);
        if !trusted {
            prop_assert_eq!(ip, peer);
        } else if ip != peer {
            prop_assert!(value.contains(&ip.to_string()) || value.contains(&format!("{ip:?}")) || value.contains('['), "{ip} from {value}");
        }
    }

    #[test]
    fn api_json_bodies_never_panic(raw in prop::collection::vec(any::<u8>(), 0..200), edits in edits()) {
        let valid = r#"{"path":"a/b.pdf","direction":"upload","ttl_seconds":60,"session":"s1","max_bytes":10,"sha256":"00","overwrite":false,"ip":"10.0.0.0/8"}"#;
        for body in [raw.clone(), mutate(valid, &edits).into_bytes()] {
            let _ = serde_json::from_slice::<burnlink::http::api::links::LinkBody>(&body);
            let _ = serde_json::from_slice::<burnlink::http::api::compat::GenerateBody>(&body);
        }
        prop_assert!(serde_json::from_slice::<burnlink::http::api::links::LinkBody>(valid.as_bytes()).is_ok());
    }

    #[test]
    fn field_parsers_never_panic(s in "\\PC{0,80}") {
        let _ = burnlink::links::parse_ip(&s);
        let _ = burnlink::links::parse_sha256_hex(&s);
        let _ = burnlink::cli::parse_ttl(&s);
        let _ = Keyring::parse(&s);
        let _ = burnlink::access::ApiTokens::parse(&s);
        let _ = burnlink::sandbox::SessionId::parse(&s);
    }

    /// Whatever a name on disk holds, its zip entry holds no separator or drive letter another
    /// extractor could follow, and two names never become one entry.
    #[test]
    fn zip_entry_names_are_inert_and_one_to_one(a in "(?s).{0,40}", b in "(?s).{0,40}") {
        let (ea, eb) = (burnlink::archive::stream::entry_name(&a), burnlink::archive::stream::entry_name(&b));
        prop_assert!(!ea.contains('\\') && !ea.contains(':') && !ea.chars().any(char::is_control), "{}", ea);
        prop_assert_eq!(ea == eb, a == b);
    }

    /// A file name in `Content-Disposition`, either form, carries no control or bidi
    /// character, even percent-encoded.
    #[test]
    fn dispositions_carry_no_bidi_or_control(name in "(?s).{0,40}") {
        let v = burnlink::http::transfer::disposition::attachment(&name, &mut Default::default());
        let decoded = percent_encoding::percent_decode(v.as_bytes()).decode_utf8_lossy().to_string();
        prop_assert!(!decoded.chars().any(burnlink::text::is_unsafe), "{:?}", decoded);
    }

    /// A path in a text log stays one value on one line.
    #[test]
    fn log_values_stay_on_their_line(path in "(?s).{0,60}") {
        let line = format!("path={} outcome=ok", burnlink::text::LogSafe(&path));
        prop_assert!(!line.contains('\n') && !line.contains('\r'));
        prop_assert!(line.ends_with(" outcome=ok"));
    }

    /// Nothing that is not token-shaped is ever used as a token.
    #[test]
    fn only_token_shaped_strings_pass(s in "(?s).{0,40}") {
        let shaped = burnlink::token::is_token_shaped(&s);
        prop_assert_eq!(shaped, s.len() >= 2 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    }
}

#[test]
fn deeply_nested_json_is_refused_not_a_stack_overflow() {
    let deep = "[".repeat(100_000);
    assert!(serde_json::from_str::<burnlink::http::api::links::LinkBody>(&deep).is_err());
    let deep = format!("{{\"path\":{}", "{\"a\":".repeat(50_000));
    assert!(serde_json::from_str::<burnlink::http::api::links::LinkBody>(&deep).is_err());
}
