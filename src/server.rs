//! `burnlink serve`: assembling the application and running it.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::middleware;
use axum::routing::get;
use tokio_util::task::TaskTracker;

use crate::api;
use crate::api::auth::ApiTokens;
use crate::config::{Config, LedgerKind};
use crate::error::ApiError;
use crate::ledger::{Ledger, MemoryLedger, RedisLedger};
use crate::links::{Limits, MintError, MintRequest, Minted, Minter, unix_now};
use crate::net::{self, ConnLimits};
use crate::ratelimit::RateLimits;
use crate::sandbox::Sandbox;
use crate::stats::{MemoryStats, RedisStats, StatsStore};
use crate::telemetry::audit_mint;
use crate::token::{Keyring, generate_key_entry};
use crate::transfer;

/// Everything a request handler may need, shared by all of them.
pub struct App {
    pub config: Config,
    pub keyring: Arc<Keyring>,
    pub api_tokens: ApiTokens,
    pub ledger: Arc<dyn Ledger>,
    pub stats: Arc<dyn StatsStore>,
    pub sandbox: Sandbox,
    pub minter: Arc<Minter>,
    /// Work that outlives a response (settling a transfer's lease), so shutdown can wait for it.
    pub tasks: TaskTracker,
    pub rate_limits: Arc<RateLimits>,
}

impl App {
    /// Mints through the server: the minter's checks, then counting and an audit line.
    /// Counting is best effort: minting needs only the key, so it keeps working when the
    /// shared store is down.
    pub async fn mint(
        &self,
        request: MintRequest,
        via: &str,
        client: Option<IpAddr>,
    ) -> Result<Minted, ApiError> {
        self.rate_limits.check_mint(client)?;
        let minted = mint_blocking(self, request).await?;
        let claims = &minted.claims;
        if let Err(e) = self
            .stats
            .record_mint(claims.session.as_deref(), claims.expires_at)
            .await
        {
            tracing::warn!(error = %e, "could not count a minted link");
        }
        audit_mint(claims, via, client);
        crate::metrics::link_minted(claims.direction.as_str());
        Ok(minted)
    }
}

async fn mint_blocking(app: &App, request: MintRequest) -> Result<Minted, MintError> {
    // Minting stats the file system; keep that off the async workers.
    let minter = app.minter.clone();
    tokio::task::spawn_blocking(move || minter.mint(request, unix_now()))
        .await
        .map_err(|_| MintError::BadRequest("minting was interrupted".into()))?
}

/// What went wrong before the server could start; printed as one line.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("BURNLINK_ROOT: cannot create or open `{path}`: {source}")]
    Root {
        path: String,
        source: std::io::Error,
    },
    #[error("BURNLINK_BIND: cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    /// Already names its variable (`BURNLINK_LEDGER`, `BURNLINK_REDIS_CA`, …).
    #[error("{0}")]
    Redis(String),
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsError),
}

pub fn limits(config: &Config) -> Limits {
    Limits {
        ttl_default: config.ttl_default,
        ttl_max: config.ttl_max,
        max_download_bytes: config.max_download_bytes,
        max_upload_bytes: config.max_upload_bytes,
        upload_extensions: config.upload_extensions.clone(),
    }
}

pub fn open_sandbox(config: &Config) -> Result<Sandbox, StartError> {
    Sandbox::open(&config.root).map_err(|source| StartError::Root {
        path: config.root.display().to_string(),
        source,
    })
}

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .merge(transfer::routes())
        .merge(api::routes())
        .merge(crate::mcp::routes(app.clone()))
        .route("/metrics", get(crate::metrics::scrape))
        // Route layers cover the routes added above them: keep new routes above these lines.
        // The outer one times the whole request, 429s included.
        .route_layer(middleware::from_fn_with_state(
            app.clone(),
            crate::ratelimit::guard,
        ))
        .route_layer(middleware::from_fn(crate::metrics::track))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(app)
}

/// Runs the server until SIGTERM or SIGINT.
pub async fn run(mut config: Config) -> Result<(), StartError> {
    for var in Config::unknown_vars() {
        tracing::warn!(variable = %var, "unknown BURNLINK_* variable ignored (a typo?)");
    }
    let sandbox = open_sandbox(&config)?;
    let tls = config.tls.as_ref().map(crate::tls::acceptor).transpose()?;
    crate::metrics::install();
    let (ledger, stats) = open_ledger(&config.ledger).await?;
    sweep_stale_uploads(&sandbox);
    let keyring = Arc::new(match config.keys.take() {
        Some(k) => k,
        None => {
            tracing::warn!(
                "BURNLINK_KEYS is not set: using a random key for this process only. Links stop \
                 working when it restarts and other replicas reject them. Run `burnlink keygen` \
                 and set BURNLINK_KEYS."
            );
            let entry = generate_key_entry();
            // Printed on stdout, once, and never logged, so a developer can mint with the CLI
            // against this server (or keep the key in `.env`).
            println!("BURNLINK_KEYS={entry}   (generated for this run; links die with it)");
            Keyring::parse(&entry).expect("a generated key entry parses")
        }
    });
    let api_tokens = match config.api_tokens.take() {
        Some(t) => t,
        None => {
            let (tokens, plain) = ApiTokens::generate();
            // Printed on stdout, once, and never logged: log lines must not carry secrets.
            println!(
                "BURNLINK_API_TOKENS={plain}   (generated for this run; set it to keep it across restarts)"
            );
            tokens
        }
    };

    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.bind,
            source,
        })?;
    let bound = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.bind,
        source,
    })?;
    let (base_url, guessed) = config.resolve_base_url(bound);
    if guessed {
        tracing::warn!(
            %base_url,
            "BURNLINK_BIND is a wildcard address and BURNLINK_BASE_URL is unset: links will point \
             at loopback. Set BURNLINK_BASE_URL to the address people reach this server at."
        );
    }

    let minter = Arc::new(Minter::new(
        keyring.clone(),
        sandbox.clone(),
        limits(&config),
        base_url.clone(),
    ));
    let grace = config.shutdown_grace;
    let conn_limits = ConnLimits {
        // A request head gets 30 s, or the idle timeout if that is shorter: a client that
        // trickles a header is as idle as one that sends nothing.
        header_read_timeout: Duration::from_secs(30).min(config.idle_timeout),
        write_idle: config.idle_timeout,
        max_header_bytes: 64 * 1024,
    };
    let rate_limits = Arc::new(RateLimits::new(&config.rate));
    let app = Arc::new(App {
        config,
        keyring,
        api_tokens,
        ledger,
        stats,
        sandbox,
        minter,
        rate_limits,
        tasks: TaskTracker::new(),
    });
    app.rate_limits.spawn_sweeper();

    // A stable line on stdout that scripts and tests can wait for.
    let scheme = app.config.scheme();
    println!("burnlink listening on {scheme}://{bound} (links: {base_url})");
    tracing::info!(%bound, %base_url, "listening");
    let tasks = app.tasks.clone();
    net::serve(
        listener,
        router(app),
        conn_limits,
        tls,
        shutdown_signal(),
        grace,
        tasks,
    )
    .await;
    tracing::info!("stopped");
    Ok(())
}

/// The ledger and the stats store: both in this process, or both in one shared Redis.
///
/// A Redis that is down at start does not stop the replica: the connection is made lazily and
/// retried on every call, `/readyz` fails and transfers answer 503 until Redis answers, and
/// minting (which needs only the key) works throughout.
async fn open_ledger(
    kind: &LedgerKind,
) -> Result<(Arc<dyn Ledger>, Arc<dyn StatsStore>), StartError> {
    Ok(match kind {
        LedgerKind::Memory => {
            let ledger = Arc::new(MemoryLedger::new());
            ledger.spawn_purger(Duration::from_secs(30));
            (ledger, Arc::new(MemoryStats::default()))
        }
        LedgerKind::Redis(options) => {
            let handle = crate::ledger::redis::RedisHandle::open(options)
                .map_err(|e| StartError::Redis(e.to_string()))?;
            let ledger = RedisLedger::with_replicas(handle.clone(), options.replicas);
            if options.replicas > 0 {
                crate::metrics::expose_ledger_unreplicated();
            }
            // The URL may hold a password: log neither it nor an echo of it in the error.
            match ledger.ping().await {
                Ok(()) => tracing::info!("ledger: Redis reachable"),
                Err(e) => tracing::warn!(
                    error = %redact(&e.to_string(), &options.url),
                    "ledger: Redis is not reachable yet; transfers answer 503 and /readyz fails \
                     until it is (minting keeps working)"
                ),
            }
            (Arc::new(ledger), Arc::new(RedisStats::new(handle)))
        }
    })
}

/// `message` without the password of `url`, if it has one.
fn redact(message: &str, url: &str) -> String {
    match crate::ledger::redis::Target::parse(url)
        .ok()
        .and_then(|t| t.password())
    {
        Some(p) => message.replace(&p, "***"),
        None => message.to_string(),
    }
}

/// Removes temporaries that crashed uploads left behind, in the background so a large tree
/// does not delay start-up; uploads still running in other replicas are left alone
/// ([`crate::staging`]).
fn sweep_stale_uploads(sandbox: &Sandbox) {
    let sandbox = sandbox.clone();
    tokio::task::spawn_blocking(move || {
        let removed = crate::staging::sweep(sandbox.root_dir());
        if removed > 0 {
            tracing::info!(removed, "removed temporary files of interrupted uploads");
        }
    });
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: draining"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: draining"),
    }
}
