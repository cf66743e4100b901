//! The command line: `serve`, `mint`, `keygen`, `inspect`, `revoke`, `mcp`, the client's `get`
//! and `put` (in [`crate::client`]), and for operators `check-config` and `healthcheck`.
//!
//! `mint`, `keygen` and `inspect` work with no server running: anything holding the key can
//! mint links every replica accepts. Results go to stdout, so `URL=$(burnlink mint f)` works;
//! errors go to stderr with a non-zero exit.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::links::{LinkService, MintRequest, Origin, parse_ip, parse_sha256_hex, rfc3339};
use crate::server;
use crate::session::SessionId;
use crate::stats::MemoryStats;
use crate::token::{
    Direction, TokenError, extract_token, generate_key_entry, hex, is_token_shaped, unix_now,
};

/// `0.1.0 (abc1234)`: the crate version and the git commit it was built from (build.rs).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("BURNLINK_GIT_COMMIT"),
    ")"
);

#[derive(Parser)]
#[command(
    name = "burnlink",
    version = VERSION,
    about = "One-time, expiring links to files in a sandbox"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: transfer routes, minting API, /healthz, /readyz.
    Serve,
    /// Mint a link and print its URL (no server needed; uses BURNLINK_KEYS).
    Mint(MintArgs),
    /// Print a fresh `KID:KEY` entry for BURNLINK_KEYS.
    Keygen {
        /// Print a fresh API token for BURNLINK_API_TOKENS instead.
        #[arg(long)]
        api_token: bool,
    },
    /// Verify a token or URL and print its fields; exit 1 with the reason if it is not valid.
    Inspect {
        /// A token or any URL that carries one.
        token_or_url: String,
    },
    /// Burn a link before it is used, through the server at BURNLINK_BASE_URL.
    Revoke {
        /// A token or any URL that carries one.
        token_or_url: String,
    },
    /// MCP server on stdio: mints for the server at BURNLINK_BASE_URL with BURNLINK_KEYS.
    Mcp,
    /// Download a link: resumes after drops, checks what arrived, saves under the link's name.
    Get(GetArgs),
    /// Upload a file (or `-`, standard input) to an upload link, resumably; print the receipt.
    Put(PutArgs),
    /// Read the configuration as `serve` would and print it, secrets masked; exit 1 with the
    /// error if it is invalid.
    CheckConfig,
    /// GET /healthz on the local server at BURNLINK_BIND (a wildcard bind is asked on
    /// loopback); exit 0 when it answers 200, 1 otherwise. For container health checks.
    Healthcheck {
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 3)]
        timeout: u64,
    },
}

#[derive(clap::Args)]
struct MintArgs {
    /// Path inside the sandbox (relative to BURNLINK_ROOT or the session, or absolute inside it).
    path: String,
    /// Mint an upload link instead of a download link.
    #[arg(long)]
    upload: bool,
    /// Lifetime: `90s`, `10m`, `2h`, `1d` or bare seconds.
    #[arg(long, value_parser = parse_ttl)]
    ttl: Option<i64>,
    #[arg(long)]
    session: Option<String>,
    /// Upload cap in bytes.
    #[arg(long)]
    max_bytes: Option<u64>,
    /// Expected SHA-256 of the upload, as 64 hex digits.
    #[arg(long)]
    sha256: Option<String>,
    /// Refuse to replace an existing file on upload.
    #[arg(long)]
    no_overwrite: bool,
    /// Only clients in this CIDR may use the link.
    #[arg(long)]
    ip: Option<String>,
    /// How many completed transfers the link allows (default 1; clamped to BURNLINK_MAX_USES).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    uses: Option<u64>,
    /// Print the whole mint response as JSON instead of the URL.
    #[arg(long)]
    json: bool,
    /// Mint this many independent links for the same path, one per line (for batch jobs and
    /// load tests: one process, one sandbox check per link).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    count: u32,
}

/// What `get` and `put` share.
#[derive(clap::Args)]
struct TransferArgs {
    /// No progress on stderr (errors are still printed).
    #[arg(long, short = 'q')]
    quiet: bool,
    /// Failed attempts in a row (no byte moved) before giving up.
    #[arg(long, value_name = "N", default_value_t = 10)]
    retries: u32,
    /// A PEM file of CA certificates to trust besides the system's (and SSL_CERT_FILE's).
    #[arg(long, value_name = "FILE")]
    cacert: Option<std::path::PathBuf>,
}

#[derive(clap::Args)]
struct GetArgs {
    /// The download link.
    url: String,
    /// Save as FILE, or in FILE under the link's name if it is a directory (default: the
    /// link's file name, in the current directory).
    #[arg(long, short = 'o', value_name = "FILE", conflicts_with = "remote_name")]
    output: Option<std::path::PathBuf>,
    /// Save under the link's file name (the default; for those used to `curl -O`).
    #[arg(long = "remote-name", short = 'O')]
    remote_name: bool,
    /// Replace the destination if it exists.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    common: TransferArgs,
}

#[derive(clap::Args)]
struct PutArgs {
    /// The upload link.
    url: String,
    /// The file to send, or `-` for standard input.
    file: String,
    /// Print the receipt as one JSON object.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    common: TransferArgs,
}

/// `90s`, `10m`, `2h`, `1d` or bare seconds.
pub fn parse_ttl(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let (digits, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 's'),
    };
    let n: i64 = digits
        .parse()
        .map_err(|_| format!("expected a duration like 90s, 10m, 2h or 1d, got `{s}`"))?;
    let factor = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86400,
        _ => return Err(format!("unknown unit `{unit}`: use s, m, h or d")),
    };
    n.checked_mul(factor)
        .ok_or_else(|| "duration is too long".to_string())
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Keygen { api_token } => {
            if api_token {
                println!("{}", crate::access::ApiTokens::generate().1);
            } else {
                println!("{}", generate_key_entry());
            }
            return ExitCode::SUCCESS;
        }
        // Both report a bad configuration with exit 1 (2 means something else to container
        // health checks).
        Command::CheckConfig => return check_config(),
        Command::Healthcheck { timeout } => return healthcheck(timeout),
        // Clients of a server: no BURNLINK_* configuration needed.
        Command::Get(args) => return get(args),
        Command::Put(args) => return put(args),
        _ => {}
    }
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("burnlink: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Serve => serve(config),
        Command::Mint(args) => mint(config, args),
        Command::Inspect { token_or_url } => inspect(config, &token_or_url),
        Command::Revoke { token_or_url } => revoke(config, &token_or_url),
        Command::Mcp => mcp(config),
        Command::Keygen { .. }
        | Command::CheckConfig
        | Command::Healthcheck { .. }
        | Command::Get(_)
        | Command::Put(_) => {
            unreachable!("handled above")
        }
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("burnlink: {message}");
            ExitCode::FAILURE
        }
    }
}

fn get(args: GetArgs) -> ExitCode {
    let options = crate::client::get::GetOptions {
        url: args.url,
        output: args.output,
        force: args.force,
        quiet: args.common.quiet,
        retries: args.common.retries,
        cacert: args.common.cacert,
    };
    let _ = args.remote_name;
    client_outcome(
        runtime()
            .map_err(crate::client::ClientError::Local)
            .and_then(|rt| {
                rt.block_on(crate::client::get::get(options))
                    .map(|path| println!("{}", path.display()))
            }),
    )
}

fn put(args: PutArgs) -> ExitCode {
    let options = crate::client::put::PutOptions {
        url: args.url,
        source: args.file,
        quiet: args.common.quiet,
        retries: args.common.retries,
        cacert: args.common.cacert,
    };
    let json = args.json;
    client_outcome(
        runtime()
            .map_err(crate::client::ClientError::Local)
            .and_then(|rt| {
                let receipt = rt.block_on(crate::client::put::put(options))?;
                if json {
                    println!(
                        "{}",
                        serde_json::to_string(&receipt).unwrap_or_else(|_| "{}".into())
                    );
                } else {
                    println!("path: {}", receipt.path);
                    println!("bytes: {}", receipt.bytes);
                    println!("sha256: {}", receipt.sha256);
                }
                Ok(())
            }),
    )
}

/// Exit 0, or the error on stderr and its status (docs/cli.md lists them per code).
fn client_outcome(result: Result<(), crate::client::ClientError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("burnlink: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn check_config() -> ExitCode {
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("burnlink: {e}");
            return ExitCode::FAILURE;
        }
    };
    for var in Config::unknown_vars() {
        eprintln!("burnlink: warning: {var} is not a burnlink variable (a typo?)");
    }
    for line in config.effective() {
        println!("{line}");
    }
    ExitCode::SUCCESS
}

fn healthcheck(timeout: u64) -> ExitCode {
    let result = Config::from_env()
        .map_err(|e| e.to_string())
        .and_then(|config| probe_health(&config, Duration::from_secs(timeout.max(1))));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("burnlink: unhealthy: {message}");
            ExitCode::FAILURE
        }
    }
}

/// GET /healthz on the address the server binds. This build's HTTP client speaks plain HTTP
/// only, so a server serving TLS itself is checked by connecting to its port.
fn probe_health(config: &Config, timeout: Duration) -> Result<(), String> {
    let mut addr = config.bind;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    if config.tls.is_some() {
        return std::net::TcpStream::connect_timeout(&addr, timeout)
            .map(|_| ())
            .map_err(|e| format!("cannot connect to {addr}: {e}"));
    }
    let url = format!("http://{addr}/healthz");
    runtime()?.block_on(async {
        let request = hyper::Request::get(&url)
            .body(crate::http_client::full(bytes::Bytes::new()))
            .map_err(|e| e.to_string())?;
        let (status, _) = crate::http_client::client(timeout)?
            .exchange(request, 4096)
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("{url} answered {status}"))
        }
    })
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

fn serve(config: Config) -> Result<ExitCode, String> {
    crate::telemetry::init(&config.log, config.log_format);
    runtime()?
        .block_on(server::run(config))
        .map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}

fn mcp(config: Config) -> Result<ExitCode, String> {
    // Logs go to stderr (`telemetry::init`): stdout is the protocol.
    crate::telemetry::init(&config.log, config.log_format);
    runtime()?.block_on(crate::mcp::stdio::run(config))?;
    Ok(ExitCode::SUCCESS)
}

fn mint(mut config: Config, args: MintArgs) -> Result<ExitCode, String> {
    let keyring = config.keys.take().ok_or(
        "BURNLINK_KEYS is not set: links minted with a random key would be refused by the server \
         (run `burnlink keygen` and give the same BURNLINK_KEYS to the server and to this command)",
    )?;
    let storage = config.open_storage().map_err(|e| e.to_string())?;
    let (base_url, _) = config.resolve_base_url(config.bind);
    let links = LinkService::local(
        Arc::new(keyring),
        storage,
        config.limits(),
        base_url,
        Arc::new(MemoryStats::default()),
    );
    let request = MintRequest {
        path: args.path,
        direction: Some(if args.upload {
            Direction::Upload
        } else {
            Direction::Download
        }),
        ttl_seconds: args.ttl,
        session: args
            .session
            .as_deref()
            .map(SessionId::parse)
            .transpose()
            .map_err(|e| format!("--session: {e}"))?,
        max_bytes: args.max_bytes,
        sha256: args
            .sha256
            .as_deref()
            .map(parse_sha256_hex)
            .transpose()
            .map_err(|e| format!("--sha256: {e}"))?,
        overwrite: args.no_overwrite.then_some(false),
        ip: args
            .ip
            .as_deref()
            .map(parse_ip)
            .transpose()
            .map_err(|e| format!("--ip: {e}"))?,
        max_uses: args.uses,
    };
    let origin = Origin {
        via: "cli",
        client: None,
    };
    let runtime = runtime()?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for _ in 0..args.count {
        let minted = runtime
            .block_on(links.mint(request.clone(), origin))
            // Named, so a script minting many paths says which one failed.
            .map_err(|e| format!("{}: {e}", request.path))?;
        let line = match (args.json, args.count) {
            (true, 1) => serde_json::to_string_pretty(&minted).map_err(|e| e.to_string())?,
            (true, _) => serde_json::to_string(&minted).map_err(|e| e.to_string())?,
            (false, _) => minted.url,
        };
        writeln!(out, "{line}").map_err(|e| e.to_string())?;
    }
    out.flush().map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}

fn inspect(mut config: Config, input: &str) -> Result<ExitCode, String> {
    let keyring = config.keys.take().ok_or(
        "BURNLINK_KEYS is not set: a token can only be checked with the keys that signed it",
    )?;
    let token = extract_token(input);
    let verified = match keyring.verify(token) {
        Ok(v) => v,
        Err(e) => {
            let reason = match e {
                TokenError::UnsupportedVersion => "malformed (unsupported token version)",
                TokenError::Malformed => "malformed",
                TokenError::UnknownKey => "unknown key",
                TokenError::BadSignature => "bad signature",
            };
            println!("valid: no");
            println!("reason: {reason}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let c = &verified.claims;
    let now = unix_now();
    let expired = c.is_expired(now);
    println!("valid: {}", if expired { "no" } else { "yes" });
    if expired {
        println!("reason: expired");
    }
    println!("version: {}", crate::token::VERSION);
    println!("key_id: {}", verified.key_id);
    println!("direction: {}", c.direction);
    println!(
        "session: {}",
        c.session.as_ref().map_or("-", |s| s.as_str())
    );
    println!("path: {}", c.path);
    println!("expires_at: {}", rfc3339(c.expires_at));
    println!("expires_in_seconds: {}", c.expires_at.saturating_sub(now));
    println!("link_id: {}", c.link_id());
    println!("max_uses: {}", c.max_uses);
    if let Some(m) = c.max_bytes {
        println!("max_bytes: {m}");
    }
    if let Some(d) = &c.sha256 {
        println!("sha256: {}", hex(d));
    }
    println!("overwrite: {}", c.overwrite);
    if let Some(ip) = c.ip {
        println!("ip: {ip}");
    }
    Ok(if expired {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn revoke(mut config: Config, input: &str) -> Result<ExitCode, String> {
    let api_token = config.api_tokens.take().ok_or(
        "BURNLINK_API_TOKENS is not set: revoking asks the server, with the first API token",
    )?;
    let (base_url, _) = config.resolve_base_url(config.bind);
    let http = crate::http_client::client(std::time::Duration::from_secs(30))?;
    let token = extract_token(input).to_string();
    if !is_token_shaped(&token) {
        return Err("that is not a burnlink link or token".into());
    }
    let url = format!("{base_url}/api/links/{token}");
    runtime()?.block_on(async move {
        let (status, body) = http
            .call(hyper::Method::DELETE, &url, api_token.first())
            .await
            // Without the URL: it carries the live token, and this may land in a CI log.
            .map_err(|e| format!("cannot reach {base_url}: {e}"))?;
        if status.is_success() {
            println!("revoked");
            Ok(ExitCode::SUCCESS)
        } else {
            let code = body["error"].as_str().unwrap_or("error");
            let message = body["message"].as_str().unwrap_or("");
            eprintln!("burnlink: not revoked ({status}): {code}: {message}");
            Ok(ExitCode::FAILURE)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::parse_ttl;

    #[test]
    fn ttl_forms() {
        assert_eq!(parse_ttl("90s"), Ok(90));
        assert_eq!(parse_ttl("10m"), Ok(600));
        assert_eq!(parse_ttl("2h"), Ok(7200));
        assert_eq!(parse_ttl("1d"), Ok(86400));
        assert_eq!(parse_ttl("45"), Ok(45));
        assert!(parse_ttl("10x").is_err());
        assert!(parse_ttl("").is_err());
        assert!(parse_ttl("m").is_err());
    }
}
