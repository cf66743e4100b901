//! Configuration from `BURNLINK_*` environment variables (and a `.env` file).
//!
//! Every variable is read as a string by envy and then parsed here, so that a bad value stops
//! start-up with one line naming the variable and what it expects, rather than a serde message.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use crate::access::ApiTokens;
use crate::ledger::redis_conn::{RedisOptions, Target};
use crate::storage::Storage;
use crate::token::Keyring;
use crate::webhooks::{Secret, WebhookConfig};

/// Every variable burnlink reads, without the prefix. Anything else with the prefix is
/// reported as unknown (likely a typo) at start.
pub const KNOWN_VARS: &[&str] = &[
    "ROOT",
    "BIND",
    "BASE_URL",
    "KEYS",
    "API_TOKENS",
    "TTL_DEFAULT_S",
    "TTL_MAX_S",
    "MAX_DOWNLOAD_BYTES",
    "MAX_UPLOAD_BYTES",
    "MAX_USES",
    "LEDGER",
    "LOG",
    "LOG_FORMAT",
    "BROWSER_CONFIRM",
    "UPLOAD_EXTENSIONS",
    "MCP_ALLOWED_HOSTS",
    "TRUSTED_PROXIES",
    "LEASE_S",
    "SHUTDOWN_GRACE_S",
    "IDLE_TIMEOUT_S",
    "TLS_CERT",
    "TLS_KEY",
    "RATE_MINT_PER_S",
    "RATE_MINT_BURST",
    "RATE_FAILED_PER_MIN",
    "MAX_CONNECTIONS",
    "WORKERS",
    "PIN_LOOPS",
    "WEBHOOK_URL",
    "WEBHOOK_SECRET",
    "OAUTH_ISSUER",
    "OAUTH_AUDIENCE",
    "REDIS_CA",
    "REDIS_CERT",
    "REDIS_KEY",
    "LEDGER_REPLICAS",
];

#[derive(Debug, Default, Deserialize)]
struct Raw {
    root: Option<String>,
    bind: Option<String>,
    base_url: Option<String>,
    keys: Option<String>,
    api_tokens: Option<String>,
    ttl_default_s: Option<String>,
    ttl_max_s: Option<String>,
    max_download_bytes: Option<String>,
    max_upload_bytes: Option<String>,
    max_uses: Option<String>,
    ledger: Option<String>,
    log: Option<String>,
    log_format: Option<String>,
    browser_confirm: Option<String>,
    upload_extensions: Option<String>,
    mcp_allowed_hosts: Option<String>,
    trusted_proxies: Option<String>,
    lease_s: Option<String>,
    shutdown_grace_s: Option<String>,
    idle_timeout_s: Option<String>,
    tls_cert: Option<String>,
    tls_key: Option<String>,
    rate_mint_per_s: Option<String>,
    rate_mint_burst: Option<String>,
    rate_failed_per_min: Option<String>,
    max_connections: Option<String>,
    workers: Option<String>,
    pin_loops: Option<String>,
    webhook_url: Option<String>,
    webhook_secret: Option<String>,
    oauth_issuer: Option<String>,
    oauth_audience: Option<String>,
    redis_ca: Option<String>,
    redis_cert: Option<String>,
    redis_key: Option<String>,
    ledger_replicas: Option<String>,
}

/// A variable (or the `.env` file) with a bad value. Displays as the one line start-up prints.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {expected}")]
pub struct ConfigError {
    /// The full variable name (`BURNLINK_BIND`), or `.env`.
    pub var: String,
    pub expected: String,
}

fn bad(var: &'static str, expected: impl Into<String>) -> ConfigError {
    ConfigError {
        var: format!("BURNLINK_{var}"),
        expected: expected.into(),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LedgerKind {
    Memory,
    /// Any Redis form (one node, cluster, sentinel; TLS) with its TLS files and replica count.
    Redis(RedisOptions),
}

#[derive(Debug)]
pub struct Config {
    pub root: PathBuf,
    pub bind: SocketAddr,
    /// Without a trailing slash. `None` until the server knows its port (see `resolve_base_url`).
    pub base_url: Option<String>,
    /// `None` when `BURNLINK_KEYS` is unset: the server then makes a random key.
    pub keys: Option<Keyring>,
    /// `None` when `BURNLINK_API_TOKENS` is unset: the server then makes one.
    pub api_tokens: Option<ApiTokens>,
    pub ttl_default: u64,
    pub ttl_max: u64,
    pub max_download_bytes: u64,
    pub max_upload_bytes: u64,
    /// The ceiling for a link's `max_uses` (requests above it are clamped).
    pub max_uses: u16,
    pub ledger: LedgerKind,
    pub log: String,
    pub log_format: LogFormat,
    pub browser_confirm: bool,
    /// Lower-case, without dots. `None` = any extension.
    pub upload_extensions: Option<Vec<String>>,
    pub mcp_allowed_hosts: Option<Vec<String>>,
    pub trusted_proxies: Vec<IpNet>,
    pub lease: Duration,
    pub shutdown_grace: Duration,
    pub idle_timeout: Duration,
    /// Both set, or neither (then plain HTTP).
    pub tls: Option<TlsFiles>,
    pub rate: RateConfig,
    /// Client connections served at once (`BURNLINK_MAX_CONNECTIONS`); a few more are let in
    /// only for `/healthz` and `/metrics` ([`crate::http::net`]).
    pub max_connections: usize,
    /// Event loops (`BURNLINK_WORKERS`, default one per core): one thread each, all accepting
    /// on one listening socket; 0: one work-stealing runtime for all connections.
    pub workers: usize,
    /// Whether each event loop is held to one CPU (`BURNLINK_PIN_LOOPS`).
    pub pin_loops: PinLoops,
    /// Where link events are POSTed, and the signing secret; `None` = no webhooks.
    pub webhook: Option<WebhookConfig>,
    /// `BURNLINK_OAUTH_ISSUER`: OAuth access tokens from this issuer are accepted beside the
    /// static API tokens. `None` = OAuth off.
    pub oauth_issuer: Option<String>,
    /// `BURNLINK_OAUTH_AUDIENCE`; `None` = the MCP endpoint's URL (see [`Config::oauth`]).
    pub oauth_audience: Option<String>,
}

/// The bounds every mint is held to (from the configuration), whoever
/// mints: the server, `burnlink mcp`, the CLI.
#[derive(Clone, Debug)]
pub struct Limits {
    pub ttl_default: u64,
    pub ttl_max: u64,
    pub max_download_bytes: u64,
    pub max_upload_bytes: u64,
    /// Lower-case extensions an upload destination may have; `None` = any.
    pub upload_extensions: Option<Vec<String>>,
    /// The ceiling for `max_uses` (`BURNLINK_MAX_USES`).
    pub max_uses: u16,
}

/// Whether each event loop runs on one CPU of its own. A loop left to the scheduler shares
/// a core with the other loop at times, and a client's answers then wait for a core to
/// free: on the 2-core bench machine the 4 KiB p99 at 32 connections was above 1 ms in 6 of
/// 10 rounds unpinned (up to 3.5 ms) and at most 0.86 ms in 9 of 10 pinned, at about the
/// same rate. A loop moving a large body is let off its CPU while it does: pinned, it shared
/// its core with the receiving client (docs/benchmarks.md, "The eighth performance pass").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinLoops {
    /// Pin when there is exactly one loop per CPU the process may run on: then the process
    /// owns those CPUs (a dedicated machine, a container given whole CPUs). With fewer loops
    /// than CPUs (a CPU quota, say) pinning would tie a loop to a core other work may need.
    Auto,
    /// Loop `i` on the `i`-th CPU the process may run on, wrapping around.
    On,
    /// Leave placement to the scheduler.
    Off,
}

impl PinLoops {
    pub fn as_str(self) -> &'static str {
        match self {
            PinLoops::Auto => "auto",
            PinLoops::On => "on",
            PinLoops::Off => "off",
        }
    }
}

/// PEM files for serving HTTPS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Per-client-address limits ([`crate::ratelimit`]); 0 turns one off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateConfig {
    /// Mints per second per client; 0 (the default) = unlimited.
    pub mint_per_s: u32,
    /// Mints a client may make at once before `mint_per_s` paces it.
    pub mint_burst: u32,
    /// Failed token checks (forged or malformed links, wrong bearer tokens) per minute per
    /// client, also the burst; 0 = unlimited.
    pub failed_per_min: u32,
}

impl Config {
    /// Reads `./.env` if there is one (the real environment wins), then the environment.
    /// Only the current directory's `.env` counts: one found by walking up into a parent
    /// directory would be a surprise.
    pub fn from_env() -> Result<Self, ConfigError> {
        match dotenvy::from_path(".env") {
            Ok(()) => {}
            Err(e) if e.not_found() => {}
            Err(e) => {
                return Err(ConfigError {
                    var: ".env".into(),
                    expected: format!("cannot be read: {e}"),
                });
            }
        }
        let raw: Raw = envy::prefixed("BURNLINK_")
            .from_env()
            .map_err(|e| ConfigError {
                var: "BURNLINK_*".into(),
                expected: e.to_string(),
            })?;
        Self::from_raw(raw)
    }

    /// Names of `BURNLINK_*` variables in the environment that burnlink does not read.
    pub fn unknown_vars() -> Vec<String> {
        std::env::vars_os()
            .filter_map(|(k, _)| k.into_string().ok())
            .filter(|k| {
                k.strip_prefix("BURNLINK_")
                    .is_some_and(|rest| !KNOWN_VARS.contains(&rest))
            })
            .collect()
    }

    fn from_raw(raw: Raw) -> Result<Self, ConfigError> {
        let bind: SocketAddr = match non_empty(raw.bind) {
            None => "127.0.0.1:8000".parse().expect("valid default"),
            Some(s) => s.parse().map_err(|_| {
                bad(
                    "BIND",
                    format!("expected IP:PORT such as 127.0.0.1:8000, got `{s}`"),
                )
            })?,
        };
        let base_url = match non_empty(raw.base_url) {
            None => None,
            Some(s) => {
                if !(s.starts_with("http://") || s.starts_with("https://")) {
                    return Err(bad(
                        "BASE_URL",
                        format!("expected an http:// or https:// URL, got `{s}`"),
                    ));
                }
                Some(s.trim_end_matches('/').to_string())
            }
        };
        let keys = match non_empty(raw.keys) {
            None => None,
            Some(s) => Some(Keyring::parse(&s).map_err(|e| bad("KEYS", e.to_string()))?),
        };
        let api_tokens = match non_empty(raw.api_tokens) {
            None => None,
            Some(s) => Some(ApiTokens::parse(&s).map_err(|e| bad("API_TOKENS", e))?),
        };
        let ttl_max = positive("TTL_MAX_S", raw.ttl_max_s, 86400)?;
        // An operator who only lowers the maximum gets a default that fits under it; one who
        // sets both inconsistently is told.
        let default_given = non_empty(raw.ttl_default_s.clone()).is_some();
        let ttl_default = positive("TTL_DEFAULT_S", raw.ttl_default_s, 3600.min(ttl_max))?;
        if default_given && ttl_default > ttl_max {
            return Err(bad(
                "TTL_DEFAULT_S",
                format!("must not exceed BURNLINK_TTL_MAX_S ({ttl_max}), got {ttl_default}"),
            ));
        }
        let ledger = ledger(
            raw.ledger,
            raw.redis_ca,
            raw.redis_cert,
            raw.redis_key,
            raw.ledger_replicas,
        )?;
        let log_format = match non_empty(raw.log_format).as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(s) => {
                return Err(bad(
                    "LOG_FORMAT",
                    format!("expected `text` or `json`, got `{s}`"),
                ));
            }
        };
        let browser_confirm = match non_empty(raw.browser_confirm).as_deref() {
            None => true,
            Some(s) => parse_bool(s).ok_or_else(|| {
                bad(
                    "BROWSER_CONFIRM",
                    format!("expected true or false, got `{s}`"),
                )
            })?,
        };
        let upload_extensions = non_empty(raw.upload_extensions).map(|s| {
            s.split(',')
                .map(|e| e.trim().trim_start_matches('.').to_ascii_lowercase())
                .filter(|e| !e.is_empty())
                .collect::<Vec<_>>()
        });
        let mcp_allowed_hosts = non_empty(raw.mcp_allowed_hosts).map(|s| {
            s.split(',')
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
                .collect::<Vec<_>>()
        });
        let trusted_proxies = match non_empty(raw.trusted_proxies) {
            None => Vec::new(),
            Some(s) => s
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| {
                    p.parse::<IpNet>()
                        .or_else(|_| p.parse::<std::net::IpAddr>().map(IpNet::from))
                        .map_err(|_| {
                            bad(
                                "TRUSTED_PROXIES",
                                format!("expected comma-separated CIDRs, got `{p}`"),
                            )
                        })
                })
                .collect::<Result<_, _>>()?,
        };
        let tls = match (non_empty(raw.tls_cert), non_empty(raw.tls_key)) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.into(),
                key: key.into(),
            }),
            (None, Some(_)) => {
                return Err(bad(
                    "TLS_CERT",
                    "must be set together with BURNLINK_TLS_KEY (a PEM certificate chain)",
                ));
            }
            (Some(_), None) => {
                return Err(bad(
                    "TLS_KEY",
                    "must be set together with BURNLINK_TLS_CERT (a PEM private key)",
                ));
            }
        };
        let mint_per_s = count("RATE_MINT_PER_S", raw.rate_mint_per_s, 0)?;
        let rate = RateConfig {
            mint_per_s,
            mint_burst: match non_empty(raw.rate_mint_burst.clone()) {
                None => mint_per_s,
                Some(_) => count("RATE_MINT_BURST", raw.rate_mint_burst, 0)?,
            },
            failed_per_min: count("RATE_FAILED_PER_MIN", raw.rate_failed_per_min, 60)?,
        };
        let max_connections = match count("MAX_CONNECTIONS", raw.max_connections, 4096)? {
            0 => {
                return Err(bad(
                    "MAX_CONNECTIONS",
                    "expected a whole number of at least 1, got `0`",
                ));
            }
            n => n as usize,
        };
        // A loop per core by default: against the shared runtime they served 4 KiB downloads
        // at c=32 1.2-1.4 times as fast, at less CPU per request (docs/benchmarks.md, the
        // third pass).
        let workers = match non_empty(raw.workers) {
            None => std::thread::available_parallelism().map_or(1, usize::from),
            Some(s) => s.parse::<u16>().map(usize::from).map_err(|_| {
                bad(
                    "WORKERS",
                    format!(
                        "expected a whole number of event loops (0 = one shared runtime), got `{s}`"
                    ),
                )
            })?,
        };
        let pin_loops = match non_empty(raw.pin_loops).as_deref() {
            None | Some("auto") => PinLoops::Auto,
            Some("on") => PinLoops::On,
            Some("off") => PinLoops::Off,
            Some(s) => {
                return Err(bad(
                    "PIN_LOOPS",
                    format!("expected `auto`, `on` or `off`, got `{s}`"),
                ));
            }
        };
        if rate.mint_per_s > 0 && rate.mint_burst == 0 {
            return Err(bad(
                "RATE_MINT_BURST",
                "must be at least 1 when BURNLINK_RATE_MINT_PER_S is set",
            ));
        }
        let webhook = webhook(raw.webhook_url, raw.webhook_secret)?;
        let oauth_issuer = match non_empty(raw.oauth_issuer) {
            None => None,
            Some(s) if is_url(&s) => Some(s),
            Some(s) => {
                return Err(bad(
                    "OAUTH_ISSUER",
                    format!("expected the issuer's https:// URL, got `{s}`"),
                ));
            }
        };
        let oauth_audience = match non_empty(raw.oauth_audience) {
            Some(_) if oauth_issuer.is_none() => {
                return Err(bad(
                    "OAUTH_AUDIENCE",
                    "is only read with BURNLINK_OAUTH_ISSUER; set the issuer too",
                ));
            }
            other => other,
        };
        Ok(Config {
            root: PathBuf::from(non_empty(raw.root).unwrap_or_else(|| "./data".into())),
            bind,
            base_url,
            keys,
            api_tokens,
            ttl_default,
            ttl_max,
            max_download_bytes: positive(
                "MAX_DOWNLOAD_BYTES",
                raw.max_download_bytes,
                104_857_600,
            )?,
            max_upload_bytes: positive("MAX_UPLOAD_BYTES", raw.max_upload_bytes, 104_857_600)?,
            max_uses: max_uses(raw.max_uses)?,
            ledger,
            log: non_empty(raw.log).unwrap_or_else(|| "info".into()),
            log_format,
            browser_confirm,
            upload_extensions,
            mcp_allowed_hosts,
            trusted_proxies,
            lease: Duration::from_secs(bounded("LEASE_S", raw.lease_s, 30, 3600)?),
            shutdown_grace: Duration::from_secs(seconds(
                "SHUTDOWN_GRACE_S",
                raw.shutdown_grace_s,
                30,
            )?),
            idle_timeout: Duration::from_secs(bounded(
                "IDLE_TIMEOUT_S",
                raw.idle_timeout_s,
                60,
                86400,
            )?),
            tls,
            rate,
            max_connections,
            workers,
            pin_loops,
            webhook,
            oauth_issuer,
            oauth_audience,
        })
    }

    /// The OAuth settings once the base URL is known: the issuer, and the audience (by
    /// default the MCP endpoint, `{base_url}/mcp`). `None` when OAuth is off.
    pub fn oauth(&self, base_url: &str) -> Option<crate::oauth::OAuthSettings> {
        let issuer = self.oauth_issuer.clone()?;
        let base = base_url.trim_end_matches('/');
        Some(match self.oauth_audience.clone() {
            Some(audience) => crate::oauth::OAuthSettings {
                issuer,
                audience,
                root_resource: None,
            },
            None => crate::oauth::OAuthSettings {
                issuer,
                audience: format!("{base}/mcp"),
                root_resource: Some(base.to_string()),
            },
        })
    }

    /// The base URL links are minted with once the server knows its bound address. With a
    /// wildcard bind and no base URL, loopback is the only address sure to work, and the
    /// caller warns.
    pub fn resolve_base_url(&self, bound: SocketAddr) -> (String, bool) {
        if let Some(url) = &self.base_url {
            return (url.clone(), false);
        }
        let scheme = self.scheme();
        if bound.ip().is_unspecified() {
            (format!("{scheme}://127.0.0.1:{}", bound.port()), true)
        } else {
            (format!("{scheme}://{bound}"), false)
        }
    }

    /// The bounds every mint is held to, whoever mints (server, MCP on stdio, CLI).
    pub fn limits(&self) -> Limits {
        Limits {
            ttl_default: self.ttl_default,
            ttl_max: self.ttl_max,
            max_download_bytes: self.max_download_bytes,
            max_upload_bytes: self.max_upload_bytes,
            upload_extensions: self.upload_extensions.clone(),
            max_uses: self.max_uses,
        }
    }

    /// Opens the sandbox at `BURNLINK_ROOT`: a directory (created if missing) or a bucket.
    pub fn open_storage(&self) -> Result<Storage, ConfigError> {
        Storage::open(&self.root).map_err(|expected| ConfigError {
            var: "BURNLINK_ROOT".into(),
            expected,
        })
    }

    /// The Redis settings, when the ledger is Redis.
    fn redis_options(&self) -> Option<&RedisOptions> {
        match &self.ledger {
            LedgerKind::Redis(o) => Some(o),
            LedgerKind::Memory => None,
        }
    }

    /// `https` when the server terminates TLS itself.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// The effective configuration, one `BURNLINK_NAME=value` line per variable with the
    /// defaults filled in, for `burnlink check-config`. Secrets never appear: the keys show
    /// only the signing key's id, API tokens only that they are set, a Redis URL its password
    /// as `****`.
    pub fn effective(&self) -> Vec<String> {
        const MASK: &str = "****";
        let list = |v: &Option<Vec<String>>, none: &str| match v {
            Some(items) => items.join(","),
            None => none.to_string(),
        };
        let (base_url, _) = self.resolve_base_url(self.bind);
        let lines: Vec<(&str, String)> = vec![
            ("ROOT", self.root.display().to_string()),
            ("BIND", self.bind.to_string()),
            (
                "BASE_URL",
                match &self.base_url {
                    Some(url) => url.clone(),
                    None => format!("{base_url} (default, from BURNLINK_BIND)"),
                },
            ),
            (
                "KEYS",
                match &self.keys {
                    Some(k) => format!(
                        "{}:{MASK} (signing key id; secrets masked)",
                        k.signing_key_id()
                    ),
                    None => {
                        "(unset: serve makes a random key per process; one replica only)".into()
                    }
                },
            ),
            (
                "API_TOKENS",
                match &self.api_tokens {
                    Some(_) => format!("{MASK} (set; masked)"),
                    None => "(unset: serve generates one and prints it once)".into(),
                },
            ),
            ("TTL_DEFAULT_S", self.ttl_default.to_string()),
            ("TTL_MAX_S", self.ttl_max.to_string()),
            ("MAX_DOWNLOAD_BYTES", self.max_download_bytes.to_string()),
            ("MAX_UPLOAD_BYTES", self.max_upload_bytes.to_string()),
            (
                "LEDGER",
                match &self.ledger {
                    LedgerKind::Memory => "memory".into(),
                    LedgerKind::Redis(options) => mask_url_password(&options.url),
                },
            ),
            ("LOG", self.log.clone()),
            (
                "LOG_FORMAT",
                match self.log_format {
                    LogFormat::Text => "text",
                    LogFormat::Json => "json",
                }
                .into(),
            ),
            ("BROWSER_CONFIRM", self.browser_confirm.to_string()),
            ("UPLOAD_EXTENSIONS", list(&self.upload_extensions, "(any)")),
            (
                "MCP_ALLOWED_HOSTS",
                list(
                    &self.mcp_allowed_hosts,
                    "(the base URL's host and loopback)",
                ),
            ),
            (
                "TRUSTED_PROXIES",
                if self.trusted_proxies.is_empty() {
                    "(none)".into()
                } else {
                    let nets: Vec<String> = self
                        .trusted_proxies
                        .iter()
                        .map(ToString::to_string)
                        .collect();
                    nets.join(",")
                },
            ),
            ("LEASE_S", self.lease.as_secs().to_string()),
            (
                "SHUTDOWN_GRACE_S",
                self.shutdown_grace.as_secs().to_string(),
            ),
            ("IDLE_TIMEOUT_S", self.idle_timeout.as_secs().to_string()),
            (
                "TLS_CERT",
                self.tls.as_ref().map_or("(unset: plain HTTP)".into(), |t| {
                    t.cert.display().to_string()
                }),
            ),
            (
                "TLS_KEY",
                self.tls.as_ref().map_or("(unset: plain HTTP)".into(), |t| {
                    t.key.display().to_string()
                }),
            ),
            ("RATE_MINT_PER_S", self.rate.mint_per_s.to_string()),
            ("RATE_MINT_BURST", self.rate.mint_burst.to_string()),
            ("RATE_FAILED_PER_MIN", self.rate.failed_per_min.to_string()),
            ("MAX_CONNECTIONS", self.max_connections.to_string()),
            ("WORKERS", self.workers.to_string()),
            ("PIN_LOOPS", self.pin_loops.as_str().into()),
            ("MAX_USES", self.max_uses.to_string()),
            (
                "WEBHOOK_URL",
                match &self.webhook {
                    // Only where events go: the path or query may carry a receiver's secret.
                    Some(w) => format!("{} (path masked)", url_origin(&w.url)),
                    None => "(unset: no webhooks)".into(),
                },
            ),
            (
                "REDIS_CA",
                self.redis_options()
                    .and_then(|o| o.ca.as_ref())
                    .map_or("(unset)".into(), |p| p.display().to_string()),
            ),
            (
                "REDIS_CERT",
                self.redis_options()
                    .and_then(|o| o.client_cert.as_ref())
                    .map_or("(unset)".into(), |(c, _)| c.display().to_string()),
            ),
            (
                "REDIS_KEY",
                self.redis_options()
                    .and_then(|o| o.client_cert.as_ref())
                    .map_or("(unset)".into(), |(_, k)| k.display().to_string()),
            ),
            (
                "LEDGER_REPLICAS",
                self.redis_options().map_or(0, |o| o.replicas).to_string(),
            ),
            (
                "OAUTH_ISSUER",
                self.oauth_issuer
                    .clone()
                    .unwrap_or_else(|| "(unset: OAuth off)".into()),
            ),
            (
                "OAUTH_AUDIENCE",
                self.oauth_audience
                    .clone()
                    .unwrap_or_else(|| "(default: the MCP endpoint's URL)".into()),
            ),
            (
                "WEBHOOK_SECRET",
                match &self.webhook {
                    Some(_) => format!("{MASK} (set; masked)"),
                    None => "(unset)".into(),
                },
            ),
        ];
        lines
            .into_iter()
            .map(|(name, value)| format!("BURNLINK_{name}={value}"))
            .collect()
    }
}

/// `redis://user:secret@host/0` → `redis://user:****@host/0`; a URL without a password is
/// returned as it is.
fn mask_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_string();
    };
    let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
    let masked = if userinfo.contains(':') {
        format!("{user}:****")
    } else {
        // `redis://secret@host`: a lone userinfo is the password.
        "****".to_string()
    };
    format!("{scheme}://{masked}@{host}{}", &rest[authority_end..])
}

/// `scheme://host[:port]` of a URL, without credentials, path or query.
fn url_origin(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    format!("{scheme}://{host}")
}

fn is_url(s: &str) -> bool {
    (s.starts_with("https://") || s.starts_with("http://")) && !s.contains(char::is_whitespace)
}

/// `BURNLINK_LEDGER` and the Redis variables that go with it.
fn ledger(
    url: Option<String>,
    ca: Option<String>,
    cert: Option<String>,
    key: Option<String>,
    replicas: Option<String>,
) -> Result<LedgerKind, ConfigError> {
    let url = match non_empty(url) {
        None => return Ok(LedgerKind::Memory),
        Some(u) if u == "memory" => return Ok(LedgerKind::Memory),
        Some(u) => u,
    };
    let target = Target::parse(&url)
        .map_err(|e| bad("LEDGER", format!("expected `memory` or a Redis URL ({e})")))?;
    let client_cert = match (non_empty(cert), non_empty(key)) {
        (None, None) => None,
        (Some(c), Some(k)) => Some((PathBuf::from(c), PathBuf::from(k))),
        (Some(_), None) => {
            return Err(bad(
                "REDIS_KEY",
                "must be set together with BURNLINK_REDIS_CERT (the client's PEM private key)",
            ));
        }
        (None, Some(_)) => {
            return Err(bad(
                "REDIS_CERT",
                "must be set together with BURNLINK_REDIS_KEY (the client's PEM certificate)",
            ));
        }
    };
    let ca = non_empty(ca).map(PathBuf::from);
    if !target.tls && (ca.is_some() || client_cert.is_some()) {
        let var = if ca.is_some() {
            "REDIS_CA"
        } else {
            "REDIS_CERT"
        };
        return Err(bad(
            var,
            "is set, but BURNLINK_LEDGER is not a TLS URL (`rediss://`, `rediss+cluster://` \
             or `rediss+sentinel://`): refusing to talk to Redis in plain text",
        ));
    }
    let replicas = match non_empty(replicas) {
        None => 0,
        Some(s) => s.parse::<u32>().ok().filter(|n| *n <= 16).ok_or_else(|| {
            bad(
                "LEDGER_REPLICAS",
                format!("expected a whole number of replicas from 0 to 16, got `{s}`"),
            )
        })?,
    };
    Ok(LedgerKind::Redis(RedisOptions {
        url,
        ca,
        client_cert,
        replicas,
    }))
}

fn non_empty(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

fn seconds(var: &'static str, v: Option<String>, default: u64) -> Result<u64, ConfigError> {
    match non_empty(v) {
        None => Ok(default),
        Some(s) => s
            .parse()
            .map_err(|_| bad(var, format!("expected a whole number, got `{s}`"))),
    }
}

/// A whole number that fits a rate limiter's quota; 0 means "off".
fn count(var: &'static str, v: Option<String>, default: u32) -> Result<u32, ConfigError> {
    match non_empty(v) {
        None => Ok(default),
        Some(s) => s.parse().map_err(|_| {
            bad(
                var,
                format!("expected a whole number (0 = unlimited), got `{s}`"),
            )
        }),
    }
}

fn positive(var: &'static str, v: Option<String>, default: u64) -> Result<u64, ConfigError> {
    match non_empty(v) {
        None => Ok(default),
        Some(s) => match s.parse::<u64>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(bad(
                var,
                format!("expected a positive whole number, got `{s}`"),
            )),
        },
    }
}

/// `BURNLINK_WEBHOOK_URL` and `BURNLINK_WEBHOOK_SECRET`: both or neither. `http://` or
/// `https://`; the URL is never logged.
fn webhook(
    url: Option<String>,
    secret: Option<String>,
) -> Result<Option<WebhookConfig>, ConfigError> {
    let (url, secret) = match (non_empty(url), non_empty(secret)) {
        (None, None) => return Ok(None),
        (Some(_), None) => {
            return Err(bad(
                "WEBHOOK_SECRET",
                "required with BURNLINK_WEBHOOK_URL: the Standard Webhooks secret, `whsec_…`",
            ));
        }
        (None, Some(_)) => {
            return Err(bad(
                "WEBHOOK_URL",
                "required with BURNLINK_WEBHOOK_SECRET: where events are POSTed",
            ));
        }
        (Some(u), Some(s)) => (u, s),
    };
    let parsed = url::Url::parse(url.trim())
        .map_err(|_| bad("WEBHOOK_URL", "expected an http:// or https:// URL"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(bad("WEBHOOK_URL", "expected an http:// or https:// URL"));
    }
    let secret = Secret::parse(&secret).map_err(|e| bad("WEBHOOK_SECRET", e))?;
    Ok(Some(WebhookConfig {
        url: parsed.to_string(),
        secret,
    }))
}

/// `BURNLINK_MAX_USES`: 1 to 65535 (the token holds the count in 16 bits), 100 when unset.
fn max_uses(v: Option<String>) -> Result<u16, ConfigError> {
    let n = positive("MAX_USES", v, 100)?;
    u16::try_from(n).map_err(|_| bad("MAX_USES", format!("expected at most 65535, got {n}")))
}

/// A positive number of seconds no larger than `max` (timers past it are surely a typo).
fn bounded(
    var: &'static str,
    v: Option<String>,
    default: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    let n = positive(var, v, default)?;
    if n > max {
        return Err(bad(var, format!("expected at most {max} seconds, got {n}")));
    }
    Ok(n)
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = Config::from_raw(Raw::default()).unwrap();
        assert_eq!(c.bind.to_string(), "127.0.0.1:8000");
        assert_eq!(c.ttl_default, 3600);
        assert_eq!(c.ttl_max, 86400);
        assert_eq!(c.max_download_bytes, 104_857_600);
        assert_eq!(c.ledger, LedgerKind::Memory);
        assert!(c.browser_confirm);
        assert_eq!(c.lease, Duration::from_secs(30));
        assert_eq!(c.root, PathBuf::from("./data"));
        assert_eq!(
            c.resolve_base_url("127.0.0.1:8000".parse().unwrap()).0,
            "http://127.0.0.1:8000"
        );
    }

    #[test]
    fn a_lower_maximum_lowers_the_default_ttl() {
        let c = Config::from_raw(Raw {
            ttl_max_s: Some("600".into()),
            ..Raw::default()
        })
        .unwrap();
        assert_eq!((c.ttl_default, c.ttl_max), (600, 600));
        let err = Config::from_raw(Raw {
            ttl_max_s: Some("600".into()),
            ttl_default_s: Some("700".into()),
            ..Raw::default()
        })
        .unwrap_err();
        assert_eq!(err.var, "BURNLINK_TTL_DEFAULT_S");
    }

    #[test]
    fn wildcard_bind_uses_loopback_and_warns() {
        let c = Config::from_raw(Raw {
            bind: Some("0.0.0.0:9000".into()),
            ..Raw::default()
        })
        .unwrap();
        assert_eq!(
            c.resolve_base_url("0.0.0.0:9000".parse().unwrap()),
            ("http://127.0.0.1:9000".to_string(), true)
        );
    }

    #[test]
    fn errors_name_the_variable() {
        let cases: Vec<(Raw, &str)> = vec![
            (
                Raw {
                    bind: Some("nope".into()),
                    ..Raw::default()
                },
                "BURNLINK_BIND:",
            ),
            (
                Raw {
                    ttl_max_s: Some("-1".into()),
                    ..Raw::default()
                },
                "BURNLINK_TTL_MAX_S:",
            ),
            (
                Raw {
                    keys: Some("k1:short".into()),
                    ..Raw::default()
                },
                "BURNLINK_KEYS:",
            ),
            (
                Raw {
                    ledger: Some("mysql://x".into()),
                    ..Raw::default()
                },
                "BURNLINK_LEDGER:",
            ),
            (
                Raw {
                    ledger: Some("redis+sentinel://127.0.0.1:26379".into()),
                    ..Raw::default()
                },
                "BURNLINK_LEDGER:",
            ),
            (
                Raw {
                    ledger: Some("rediss://127.0.0.1:6379/0".into()),
                    redis_cert: Some("c.pem".into()),
                    ..Raw::default()
                },
                "BURNLINK_REDIS_KEY:",
            ),
            (
                Raw {
                    ledger: Some("redis://127.0.0.1:6379/0".into()),
                    redis_ca: Some("ca.pem".into()),
                    ..Raw::default()
                },
                "BURNLINK_REDIS_CA:",
            ),
            (
                Raw {
                    ledger: Some("redis://127.0.0.1:6379/0".into()),
                    ledger_replicas: Some("many".into()),
                    ..Raw::default()
                },
                "BURNLINK_LEDGER_REPLICAS:",
            ),
            (
                Raw {
                    log_format: Some("xml".into()),
                    ..Raw::default()
                },
                "BURNLINK_LOG_FORMAT:",
            ),
            (
                Raw {
                    browser_confirm: Some("maybe".into()),
                    ..Raw::default()
                },
                "BURNLINK_BROWSER_CONFIRM:",
            ),
            (
                Raw {
                    trusted_proxies: Some("10.0.0.0/99".into()),
                    ..Raw::default()
                },
                "BURNLINK_TRUSTED_PROXIES:",
            ),
            (
                Raw {
                    base_url: Some("ftp://x".into()),
                    ..Raw::default()
                },
                "BURNLINK_BASE_URL:",
            ),
            (
                Raw {
                    api_tokens: Some("a@bad session".into()),
                    ..Raw::default()
                },
                "BURNLINK_API_TOKENS:",
            ),
            (
                Raw {
                    max_uses: Some("70000".into()),
                    ..Raw::default()
                },
                "BURNLINK_MAX_USES:",
            ),
            (
                Raw {
                    webhook_url: Some("http://127.0.0.1:9/h".into()),
                    ..Raw::default()
                },
                "BURNLINK_WEBHOOK_SECRET:",
            ),
            (
                Raw {
                    webhook_url: Some("ftp://hooks.example/h".into()),
                    webhook_secret: Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()),
                    ..Raw::default()
                },
                "BURNLINK_WEBHOOK_URL:",
            ),
            (
                Raw {
                    webhook_url: Some("http://127.0.0.1:9/h".into()),
                    webhook_secret: Some("not-a-secret".into()),
                    ..Raw::default()
                },
                "BURNLINK_WEBHOOK_SECRET:",
            ),
        ];
        for (raw, prefix) in cases {
            let msg = Config::from_raw(raw).unwrap_err().to_string();
            assert!(msg.starts_with(prefix), "{msg}");
            assert!(!msg.contains('\n'), "one line: {msg}");
        }
    }

    #[test]
    fn rate_limits_and_tls() {
        let c = Config::from_raw(Raw::default()).unwrap();
        assert_eq!(
            c.rate,
            RateConfig {
                mint_per_s: 0,
                mint_burst: 0,
                failed_per_min: 60
            }
        );
        assert!(c.tls.is_none());
        let c = Config::from_raw(Raw {
            rate_mint_per_s: Some("5".into()),
            rate_failed_per_min: Some("0".into()),
            tls_cert: Some("/c.pem".into()),
            tls_key: Some("/k.pem".into()),
            ..Raw::default()
        })
        .unwrap();
        assert_eq!((c.rate.mint_per_s, c.rate.mint_burst), (5, 5));
        assert_eq!(c.rate.failed_per_min, 0);
        assert_eq!(
            c.resolve_base_url("127.0.0.1:8443".parse().unwrap()).0,
            "https://127.0.0.1:8443"
        );
        for (raw, var) in [
            (
                Raw {
                    tls_cert: Some("/c.pem".into()),
                    ..Raw::default()
                },
                "BURNLINK_TLS_KEY:",
            ),
            (
                Raw {
                    tls_key: Some("/k.pem".into()),
                    ..Raw::default()
                },
                "BURNLINK_TLS_CERT:",
            ),
            (
                Raw {
                    rate_mint_per_s: Some("fast".into()),
                    ..Raw::default()
                },
                "BURNLINK_RATE_MINT_PER_S:",
            ),
            (
                Raw {
                    rate_mint_per_s: Some("10".into()),
                    rate_mint_burst: Some("0".into()),
                    ..Raw::default()
                },
                "BURNLINK_RATE_MINT_BURST:",
            ),
            (
                Raw {
                    rate_failed_per_min: Some("-1".into()),
                    ..Raw::default()
                },
                "BURNLINK_RATE_FAILED_PER_MIN:",
            ),
        ] {
            let msg = Config::from_raw(raw).unwrap_err().to_string();
            assert!(msg.starts_with(var), "{msg}");
        }
    }

    #[test]
    fn effective_configuration_masks_secrets() {
        let c = Config::from_raw(Raw {
            keys: Some("k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8".into()),
            api_tokens: Some("very-secret-token@s1".into()),
            ledger: Some("redis://app:hunter2@10.0.0.20:6379/0".into()),
            webhook_url: Some("http://user:pw@hooks.example:8080/in?key=k3y".into()),
            webhook_secret: Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()),
            ..Raw::default()
        })
        .unwrap();
        let text = c.effective().join("\n");
        for secret in [
            "AAECAwQF",
            "very-secret-token",
            "hunter2",
            "pw@",
            "k3y",
            "MfKQ9r8",
        ] {
            assert!(!text.contains(secret), "{secret} leaked:\n{text}");
        }
        assert!(text.contains("BURNLINK_KEYS=k1:****"), "{text}");
        assert!(
            text.contains("BURNLINK_LEDGER=redis://app:****@10.0.0.20:6379/0"),
            "{text}"
        );
        assert!(text.contains("BURNLINK_BIND=127.0.0.1:8000"), "{text}");
        assert_eq!(
            c.effective().len(),
            KNOWN_VARS.len(),
            "one line per variable"
        );
        for var in KNOWN_VARS {
            assert!(text.contains(&format!("BURNLINK_{var}=")), "{var} missing");
        }
        assert_eq!(mask_url_password("redis://h:6379/0"), "redis://h:6379/0");
        assert_eq!(mask_url_password("redis://:pw@h/0"), "redis://:****@h/0");
        assert_eq!(mask_url_password("redis://pw@h"), "redis://****@h");
    }

    #[test]
    fn oauth_settings() {
        let c = Config::from_raw(Raw::default()).unwrap();
        assert!(c.oauth("http://h").is_none());
        let c = Config::from_raw(Raw {
            oauth_issuer: Some("https://as.example.com".into()),
            ..Raw::default()
        })
        .unwrap();
        let o = c.oauth("https://files.example.com/").unwrap();
        assert_eq!(o.issuer, "https://as.example.com");
        assert_eq!(o.audience, "https://files.example.com/mcp");
        assert_eq!(o.root_resource(), "https://files.example.com");
        let c = Config::from_raw(Raw {
            oauth_issuer: Some("https://as.example.com".into()),
            oauth_audience: Some("urn:burnlink".into()),
            ..Raw::default()
        })
        .unwrap();
        let o = c.oauth("http://h").unwrap();
        assert_eq!(o.audience, "urn:burnlink");
        assert_eq!(o.root_resource(), "urn:burnlink");
        for (raw, var) in [
            (
                Raw {
                    oauth_issuer: Some("as.example.com".into()),
                    ..Raw::default()
                },
                "BURNLINK_OAUTH_ISSUER:",
            ),
            (
                Raw {
                    oauth_audience: Some("https://files.example.com/mcp".into()),
                    ..Raw::default()
                },
                "BURNLINK_OAUTH_AUDIENCE:",
            ),
        ] {
            let msg = Config::from_raw(raw).unwrap_err().to_string();
            assert!(msg.starts_with(var), "{msg}");
        }
    }

    #[test]
    fn lists_parse() {
        let c = Config::from_raw(Raw {
            upload_extensions: Some(".PDF, png,,csv".into()),
            trusted_proxies: Some("10.0.0.0/8, 127.0.0.1".into()),
            base_url: Some("https://files.example.com/".into()),
            ..Raw::default()
        })
        .unwrap();
        assert_eq!(c.upload_extensions.unwrap(), vec!["pdf", "png", "csv"]);
        assert_eq!(c.trusted_proxies.len(), 2);
        assert_eq!(c.base_url.unwrap(), "https://files.example.com");
    }
}
