//! `burnlink get` and `burnlink put`: the client for burnlink links, in the same binary, so a
//! CI job or a person on a terminal gets what curl cannot give: a download that resumes into a
//! `.part` file and checks what arrived, an upload that resumes from the server's offset
//! (tus 1.0, the protocol the server speaks) with its digest announced, progress, and an exit
//! status per contract error code.
//!
//! An edge like `cli.rs`: it talks to a server through [`crate::http_client`] (the one
//! outbound client) and knows the server only by its contract (routes, headers, error codes);
//! from the core it uses the token's public layout to name an upload's destination.

pub mod get;
pub mod progress;
pub mod put;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::Uri;
use hyper::body::Incoming;

use crate::token::{extract_token, is_token_shaped};

/// How long a transfer may go without a byte moving before the connection counts as dead.
pub const IDLE: Duration = Duration::from_secs(60);

/// Attempts of one transfer in all (requests, `HEAD` included), whatever progress they make:
/// a bound on the loop even when every attempt moves a few bytes and drops (docs/cli.md).
pub const MAX_ATTEMPTS: u32 = 200;

/// Why a `get` or a `put` failed. Each kind has its exit status ([`ClientError::exit_code`],
/// the table in docs/cli.md), so a CI step fails with a status a script can test.
#[derive(Clone, Debug)]
pub enum ClientError {
    /// The server answered with a contract error code (`used`, `expired`, …).
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    /// The server could not be reached, or the connection kept dropping, retries used up.
    Network(String),
    /// What arrived failed a check: its size, a directory's zip, the upload's digest.
    Verify(String),
    /// The server's certificate is not trusted: retrying cannot help.
    Tls(String),
    /// The destination file exists and `--force` was not given: what to say about it (the
    /// destination, and the `.part` kept when a download already arrived).
    Exists(String),
    /// The local file is not the one the link promises (its `sha256`): nothing was sent.
    Mismatch(String),
    /// Anything else: a local file that cannot be read or written, a bad URL.
    Local(String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Refused {
                status,
                code,
                message,
            } if message.is_empty() => write!(f, "{code} (HTTP {status})"),
            ClientError::Refused {
                status,
                code,
                message,
            } => write!(f, "{code} (HTTP {status}): {message}"),
            ClientError::Network(m) => write!(f, "network: {m}"),
            ClientError::Tls(m) => write!(
                f,
                "TLS: {m} (trust the server's CA with --cacert FILE or SSL_CERT_FILE)"
            ),
            ClientError::Verify(m) => write!(f, "check failed: {m}"),
            ClientError::Exists(m) => write!(f, "exists: {m}"),
            ClientError::Mismatch(m) => write!(f, "digest_mismatch: {m}"),
            ClientError::Local(m) => f.write_str(m),
        }
    }
}

impl ClientError {
    /// The destination exists and `--force` was not given; `kept` names the `.part` (and its
    /// size) that holds a download made already, so a re-run with `--force` places it.
    pub fn exists(dest: &std::path::Path, kept: Option<(&std::path::Path, u64)>) -> ClientError {
        ClientError::Exists(match kept {
            Some((part, len)) => format!(
                "{} (use --force to replace it; {} holds the {len} bytes received, and a re-run \
                 with --force puts them in place without the link)",
                dest.display(),
                part.display()
            ),
            None => format!("{} (use --force to replace it)", dest.display()),
        })
    }

    /// The same error, saying that `part` keeps `len` bytes for a later run: a refusal reads
    /// `link used; X.part holds N bytes`.
    pub fn keeping(self, part: &std::path::Path, len: u64) -> ClientError {
        let kept = format!("{} holds {len} bytes", part.display());
        match self {
            ClientError::Refused {
                status,
                code,
                message,
            } => {
                let message = if message.is_empty() {
                    format!("link {code}; {kept}")
                } else {
                    format!("link {code}: {message}; {kept}")
                };
                ClientError::Refused {
                    status,
                    code,
                    message,
                }
            }
            ClientError::Network(m) => ClientError::Network(format!("{m}; {kept}")),
            ClientError::Tls(m) => ClientError::Tls(format!("{m}; {kept}")),
            ClientError::Local(m) => ClientError::Local(format!("{m}; {kept}")),
            other => other,
        }
    }

    /// The exit status: stable, one per contract error code a transfer can meet (docs/cli.md).
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Refused { code, status, .. } => match code.as_str() {
                "not_found" => 3,
                "used" => 4,
                "revoked" => 5,
                "expired" => 6,
                "in_progress" => 7,
                "too_large" => 8,
                "digest_mismatch" => 9,
                "exists" => 10,
                "unavailable" | "rate_limited" => 11,
                _ if *status >= 500 => 11,
                _ => 1,
            },
            ClientError::Exists(_) => 10,
            ClientError::Mismatch(_) => 9,
            ClientError::Network(_) | ClientError::Tls(_) => 12,
            ClientError::Verify(_) => 13,
            ClientError::Local(_) => 1,
        }
    }

    /// Worth another attempt: the link is busy for a moment, the server is overloaded or
    /// restarting. Every other refusal (`used`, `expired`, …) stays what it is.
    fn is_transient(&self) -> bool {
        match self {
            ClientError::Refused { code, status, .. } => {
                matches!(
                    code.as_str(),
                    "in_progress" | "unavailable" | "rate_limited"
                ) || *status >= 500
            }
            ClientError::Network(_) => true,
            _ => false,
        }
    }
}

/// A link as the user gave it: the URL to send requests to, and how to show it without the
/// token (which is the whole authorization, and lands in CI logs otherwise).
#[derive(Clone, Debug)]
pub struct Link {
    pub uri: Uri,
    pub token: String,
    /// The URL with the token replaced by `…`.
    pub shown: String,
    /// The last path segment after the token (minted URLs end in the file name).
    pub name_hint: Option<String>,
}

impl Link {
    pub fn parse(url: &str) -> Result<Link, ClientError> {
        let url = url.trim();
        let token = extract_token(url).to_string();
        if !(url.starts_with("http://") || url.starts_with("https://")) || !is_token_shaped(&token)
        {
            return Err(ClientError::Local(
                "expected a burnlink link: http(s)://HOST/transfer/TOKEN[/NAME]".into(),
            ));
        }
        let shown = url.replace(&token, "…");
        let uri: Uri = url
            .parse()
            .map_err(|_| ClientError::Local(format!("not a valid URL: {shown}")))?;
        let name_hint = uri
            .path()
            .split_once(&token)
            .and_then(|(_, rest)| rest.trim_start_matches('/').split('/').next())
            .filter(|s| !s.is_empty())
            .map(|s| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            });
        Ok(Link {
            uri,
            token,
            shown,
            name_hint,
        })
    }

    /// A failed exchange: a certificate problem is final, anything else (refused, reset,
    /// timed out) is worth another attempt.
    pub fn transport_error(&self, text: &str) -> ClientError {
        let text = self.redact(text);
        if text.contains("certificate") {
            ClientError::Tls(text)
        } else {
            ClientError::Network(text)
        }
    }

    /// Removes the token from a message that might quote the URL (errors from below).
    pub fn redact(&self, text: &str) -> String {
        text.replace(&self.token, "…")
    }
}

/// Counts failures that made no progress, and waits between attempts: 250 ms doubling to
/// 8 s, with jitter so that many CI jobs dropped at once do not come back in step.
pub struct Retry {
    limit: u32,
    failures: u32,
    attempts: u32,
}

impl Retry {
    pub fn new(limit: u32) -> Self {
        Retry {
            limit,
            failures: 0,
            attempts: 0,
        }
    }

    /// Counts one attempt; refuses past the overall bound.
    pub fn attempt(&mut self) -> Result<(), ClientError> {
        self.attempts += 1;
        if self.attempts > MAX_ATTEMPTS {
            return Err(ClientError::Network(format!(
                "gave up after {MAX_ATTEMPTS} attempts"
            )));
        }
        Ok(())
    }

    /// Bytes moved: the next failure starts a fresh count.
    pub fn progressed(&mut self) {
        self.failures = 0;
    }

    /// After a failure: `Err` with it when it is final or the retries are used up; otherwise
    /// how long to wait before the next attempt.
    pub fn failed(&mut self, error: ClientError) -> Result<Duration, ClientError> {
        if !error.is_transient() || self.failures >= self.limit {
            return Err(error);
        }
        self.failures += 1;
        let base = Duration::from_millis(250) * 2u32.pow(self.failures.min(6) - 1);
        let base = base.min(Duration::from_secs(8));
        let jitter = base.mul_f64(rand::random::<f64>() * 0.25);
        Ok(base + jitter)
    }
}

/// An error answer as the contract writes it, `{"error": CODE, "message": TEXT}`; a body
/// that is not (a proxy's page) becomes `http_STATUS`.
pub async fn refusal(link: &Link, response: hyper::Response<Incoming>) -> ClientError {
    let status = response.status().as_u16();
    let body = tokio::time::timeout(
        IDLE,
        http_body_util::Limited::new(response.into_body(), 64 << 10).collect(),
    )
    .await
    .ok()
    .and_then(Result::ok)
    .map(|b| b.to_bytes())
    .unwrap_or_default();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    ClientError::Refused {
        status,
        code: json["error"]
            .as_str()
            .map_or_else(|| code_for_status(status), str::to_string),
        message: link.redact(json["message"].as_str().unwrap_or_default()),
    }
}

/// The code an answer without a JSON body stands for (a `HEAD` has no body; a proxy's
/// error page is not ours).
fn code_for_status(status: u16) -> String {
    match status {
        409 => "in_progress",
        410 => "expired",
        429 => "rate_limited",
        503 => "unavailable",
        _ => return format!("http_{status}"),
    }
    .to_string()
}

/// The next piece of a response body, or `None` at its end; a connection silent for [`IDLE`]
/// is an error like a dropped one.
pub async fn next_chunk(body: &mut Incoming) -> Result<Option<Bytes>, String> {
    loop {
        match tokio::time::timeout(IDLE, body.frame()).await {
            Err(_) => return Err(format!("nothing received for {}s", IDLE.as_secs())),
            Ok(None) => return Ok(None),
            Ok(Some(Err(e))) => return Err(crate::http_client::describe(&e)),
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    return Ok(Some(data));
                }
            }
        }
    }
}

pub fn header_str<'a>(response: &'a hyper::Response<Incoming>, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

pub fn header_u64(response: &hyper::Response<Incoming>, name: &str) -> Option<u64> {
    header_str(response, name).and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "AQJ0MQABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f";

    #[test]
    fn a_link_is_shown_without_its_token() {
        let link = Link::parse(&format!(
            "https://files.example/transfer/{TOKEN}/q3%20report.pdf"
        ))
        .unwrap();
        assert_eq!(
            link.shown,
            "https://files.example/transfer/…/q3%20report.pdf"
        );
        assert_eq!(link.name_hint.as_deref(), Some("q3 report.pdf"));
        assert!(
            !link
                .redact(&format!("error for /transfer/{TOKEN}"))
                .contains(TOKEN)
        );
        assert!(Link::parse(TOKEN).is_err(), "a bare token has no server");
        assert!(Link::parse("https://x/transfer/a%2F..").is_err());
    }

    #[test]
    fn exit_codes_follow_the_contract_codes() {
        let refused = |code: &str, status| ClientError::Refused {
            status,
            code: code.into(),
            message: String::new(),
        };
        assert_eq!(refused("used", 404).exit_code(), 4);
        assert_eq!(refused("expired", 410).exit_code(), 6);
        assert_eq!(refused("not_found", 404).exit_code(), 3);
        assert_eq!(refused("http_502", 502).exit_code(), 11);
        assert_eq!(refused("forbidden", 403).exit_code(), 1);
        assert_eq!(ClientError::Network(String::new()).exit_code(), 12);
        assert_eq!(ClientError::Verify(String::new()).exit_code(), 13);
    }

    #[test]
    fn only_passing_trouble_is_retried() {
        let mut retry = Retry::new(2);
        let busy = || ClientError::Refused {
            status: 409,
            code: "in_progress".into(),
            message: String::new(),
        };
        assert!(retry.failed(busy()).is_ok());
        assert!(retry.failed(busy()).is_ok());
        assert!(retry.failed(busy()).is_err(), "retries used up");
        retry.progressed();
        assert!(
            retry.failed(busy()).is_ok(),
            "progress starts a fresh count"
        );
        let used = ClientError::Refused {
            status: 404,
            code: "used".into(),
            message: String::new(),
        };
        assert!(retry.failed(used).is_err(), "a used link stays used");
    }
}
